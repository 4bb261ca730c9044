//! What the firewall tells the admin: the plan before an apply, the status,
//! and the exposure report (every listening and published port, and whether
//! the rules let the outside reach it).

use std::collections::HashMap;
use std::net::IpAddr;

use app::api::firewall::{
    CheckedRule, DiffLine, Exposure, ExposureReport, FirewallConfig, FirewallPlan, FirewallStatus,
    Mode, OtherFirewall, Protocol, Rule,
};
use sqlx::Row;

use super::{compile, Firewall};
use crate::http::error::ApiError;

/// A port Docker publishes on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub protocol: Protocol,
    pub port: u16,
    pub address: String,
    pub container: String,
    pub app: Option<String>,
}

/// Every port running containers publish. An engine that cannot be reached
/// publishes nothing berth can see; the caller says so where it matters.
pub async fn published(apps: &crate::apps::Apps) -> Vec<Published> {
    match try_published(apps).await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "published ports unknown");
            Vec::new()
        }
    }
}

pub(crate) async fn try_published(apps: &crate::apps::Apps) -> anyhow::Result<Vec<Published>> {
    let mut out: Vec<Published> = crate::apps::streams::published_ports(&apps.engine)
        .await?
        .into_iter()
        .filter_map(|p| {
            let protocol = match p.protocol.as_str() {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                _ => return None,
            };
            Some(Published {
                protocol,
                port: p.port,
                address: p.address,
                container: p.container,
                app: p.app,
            })
        })
        .collect();
    out.sort_by(|a, b| (a.port, &a.address).cmp(&(b.port, &b.address)));
    out.dedup();
    Ok(out)
}

/// One rule in words: `allow tcp 22 from 10.0.0.0/8 (6/minute) "ssh"`.
pub fn describe(rule: &Rule) -> String {
    let mut s = format!("{} {}", rule.action.as_str(), rule.protocol.as_str());
    if !rule.ports.trim().is_empty() {
        s.push(' ');
        s.push_str(rule.ports.trim());
    }
    if rule.sources.is_empty() {
        s.push_str(" from anywhere");
    } else {
        s.push_str(&format!(" from {}", rule.sources.join(", ")));
    }
    if let Some(r) = rule.rate_limit.as_deref().filter(|r| !r.trim().is_empty()) {
        s.push_str(&format!(" ({r} per source)"));
    }
    if !rule.comment.is_empty() {
        s.push_str(&format!(" \"{}\"", rule.comment));
    }
    s
}

/// Rule-level changes from `old` to `new`, in words.
pub fn changes(old: Option<&FirewallConfig>, new: &FirewallConfig) -> Vec<String> {
    let mut out = Vec::new();
    let (old_enabled, old_mode, old_rules) = match old {
        Some(o) => (o.enabled, o.mode, o.rules.as_slice()),
        None => (false, Mode::Standalone, &[][..]),
    };
    if old_enabled != new.enabled {
        out.push(if new.enabled {
            "turn the firewall on: default drop of other inbound traffic".to_string()
        } else {
            "turn the firewall off: berth's table is removed".to_string()
        });
    }
    if new.enabled && old_mode != new.mode {
        out.push(format!(
            "mode {} → {}",
            old_mode.as_str(),
            new.mode.as_str()
        ));
    }
    let a: Vec<String> = old_rules.iter().map(describe).collect();
    let b: Vec<String> = new.rules.iter().map(describe).collect();
    for line in diff(&a, &b) {
        match line.op.as_str() {
            "+" => out.push(format!("add: {}", line.text)),
            "-" => out.push(format!("remove: {}", line.text)),
            _ => {}
        }
    }
    out
}

/// A line diff by longest common subsequence, after trimming the common
/// head and tail (so an edit in a long ruleset stays cheap).
pub fn diff(a: &[String], b: &[String]) -> Vec<DiffLine> {
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let line = |op: &str, text: &String| DiffLine {
        op: op.into(),
        text: text.clone(),
    };
    let mut out: Vec<DiffLine> = a[..head].iter().map(|t| line(" ", t)).collect();
    if ma.len().saturating_mul(mb.len()) > 4_000_000 {
        // Too big to align: show it as replaced.
        out.extend(ma.iter().map(|t| line("-", t)));
        out.extend(mb.iter().map(|t| line("+", t)));
    } else {
        let (n, m) = (ma.len(), mb.len());
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * (m + 1) + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * (m + 1) + j + 1] + 1
                } else {
                    lcs[(i + 1) * (m + 1) + j].max(lcs[i * (m + 1) + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && ma[i] == mb[j] {
                out.push(line(" ", &ma[i]));
                i += 1;
                j += 1;
            } else if j < m && (i == n || lcs[i * (m + 1) + j + 1] >= lcs[(i + 1) * (m + 1) + j]) {
                out.push(line("+", &mb[j]));
                j += 1;
            } else {
                out.push(line("-", &ma[i]));
                i += 1;
            }
        }
    }
    out.extend(a[a.len() - tail..].iter().map(|t| line(" ", t)));
    out
}

/// Things worth a second look that do not stop the rules being saved.
pub fn warnings(inputs: &compile::Inputs, client: IpAddr) -> Vec<String> {
    let mut out = Vec::new();
    if !inputs.enabled {
        if !inputs.rules.is_empty() {
            out.push(
                "the firewall is off: these rules are kept but not loaded until you turn it on"
                    .into(),
            );
        }
        return out;
    }
    if client.is_loopback() {
        out.push(
            "you are connected over loopback (an SSH tunnel or a proxy on this host): loopback \
             is always let in, so neither the lockout guard nor the confirmation can tell \
             whether the rules would shut you out from outside"
                .into(),
        );
    }
    let judged = |port: u16| compile::judge(inputs, Protocol::Tcp, port, client);
    if !client.is_loopback() && !client.is_unspecified() && judged(22).is_some() {
        out.push(format!(
            "SSH (TCP 22) would be closed to your address {client}: keep another way in"
        ));
    }
    for (i, r) in inputs.rules.iter().enumerate() {
        if shadowed(&inputs.rules[..i], r) {
            out.push(format!(
                "rule {i} never matches: the rules above it catch all its traffic"
            ));
        }
    }
    out
}

/// Whether an earlier rule covers everything `rule` matches.
fn shadowed(earlier: &[CheckedRule], rule: &CheckedRule) -> bool {
    // Cheap tests first: this runs for every pair of rules.
    earlier.iter().any(|e| {
        e.rate_limit.is_none()
            && (e.protocol == Protocol::Any || e.protocol == rule.protocol)
            && (e.ports.is_empty()
                || (!rule.ports.is_empty()
                    && rule
                        .ports
                        .iter()
                        .all(|&(lo, hi)| e.ports.iter().any(|&(a, b)| a <= lo && hi <= b))))
            && (e.sources.is_empty()
                || (!rule.sources.is_empty()
                    && rule
                        .sources
                        .iter()
                        .all(|n| e.sources.iter().any(|m| m.contains(n)))))
    })
}

impl Firewall {
    /// `GET /firewall/plan`.
    pub async fn plan(&self, client: IpAddr) -> Result<FirewallPlan, ApiError> {
        let state = self.state().await?;
        let next_inputs = self.inputs(&state.desired).await?;
        let next = compile::compile(&next_inputs);
        let current = match &state.applied {
            Some(a) => compile::compile(&self.inputs(a).await?),
            None => compile::compile(&compile::Inputs::default()),
        };
        let lines = |t: String| t.lines().map(str::to_string).collect::<Vec<_>>();
        let diff_lines = diff(&lines(current.text()), &lines(next.text()));
        let mut warnings = warnings(&next_inputs, client);
        let live = self.nft.list_table().await;
        let drifted = match &live {
            Ok(l) => state
                .fingerprint
                .as_deref()
                .is_some_and(|f| f != super::nft::fingerprint(l.as_ref())),
            Err(_) => false,
        };
        if drifted {
            warnings.push(
                "berth's table in the kernel is not what berth loaded (changed or removed by \
                 hand); applying replaces it"
                    .into(),
            );
        }
        for other in self.other_firewalls().await {
            warnings.push(format!(
                "{} is active ({}): a connection must pass both firewalls{}",
                other.name,
                other.detail,
                if state.desired.mode == Mode::Standalone {
                    "; consider coexist mode"
                } else {
                    ""
                }
            ));
        }
        let check_error = match self.nft.check(&next.transaction()).await {
            Ok(()) => None,
            Err(e) => Some(e.to_string()),
        };
        let refused = self
            .check(&state.desired, client)
            .err()
            .map(|e| e.to_string());
        Ok(FirewallPlan {
            revision: state.revision,
            applied_revision: state.applied_revision,
            up_to_date: state.applied.as_ref() == Some(&state.desired) && !drifted,
            changes: changes(state.applied.as_ref(), &state.desired),
            ruleset: next.text(),
            diff: diff_lines,
            check_error,
            refused,
            warnings,
        })
    }

    /// UFW, firewalld, or any other table that filters inbound traffic.
    pub async fn other_firewalls(&self) -> Vec<OtherFirewall> {
        let Ok(chains) = self.nft.foreign_chains().await else {
            return Vec::new();
        };
        let mut out: Vec<OtherFirewall> = Vec::new();
        let mut push = |name: &str, detail: String| {
            if !out.iter().any(|o| o.name == name) {
                out.push(OtherFirewall {
                    name: name.into(),
                    detail,
                });
            }
        };
        for c in &chains {
            if c.name.starts_with("ufw-") || c.name.starts_with("ufw6-") {
                push(
                    "ufw",
                    format!("chain {} in table {} {}", c.name, c.family, c.table),
                );
            } else if c.table == "firewalld" {
                push("firewalld", format!("table {} firewalld", c.family));
            }
        }
        for c in &chains {
            let docker = c.name.starts_with("DOCKER") || c.table == "nat";
            // An input chain that drops by default filters; an empty one
            // with policy accept (iptables-nft makes those) does not.
            let filters =
                matches!(c.hook.as_deref(), Some("input")) && c.policy.as_deref() == Some("drop");
            if !docker && filters && c.table != "firewalld" {
                push(
                    "nftables",
                    format!(
                        "table {} {} filters input (chain {})",
                        c.family, c.table, c.name
                    ),
                );
            }
        }
        out
    }

    pub(crate) async fn last_apply(
        &self,
    ) -> Result<Option<app::api::firewall::ApplyRecord>, ApiError> {
        let row = sqlx::query(
            "SELECT id, revision, state, started_at, finished_at, actor, message \
             FROM firewall_applies ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.db)
        .await?;
        Ok(row.map(|r| app::api::firewall::ApplyRecord {
            id: r.get("id"),
            revision: r.get("revision"),
            state: r.get("state"),
            started_at: crate::store::rfc3339(r.get("started_at")),
            finished_at: r
                .get::<Option<i64>, _>("finished_at")
                .map(crate::store::rfc3339),
            actor: r.get("actor"),
            message: r.get("message"),
        }))
    }

    /// `GET /firewall/exposure`: judged by what is live (the pending
    /// apply's rules while one waits, else the confirmed ones).
    pub async fn exposure(&self) -> Result<ExposureReport, ApiError> {
        let state = self.state().await?;
        let live = match self.pending().await? {
            Some(p) => Some(p.config),
            None => state.applied.clone(),
        };
        let mut warnings = Vec::new();
        let config = live.clone().unwrap_or_else(super::off);
        let mut inputs = self.inputs(&config).await?;
        let published = published(&self.apps).await;
        inputs.published = published.iter().map(|p| (p.protocol, p.port)).collect();
        if !config.enabled {
            warnings.push("the firewall is off: every port below that is not local is open".into());
        }
        let mut ports = Vec::new();
        match self.nft.listeners().await {
            Ok(listeners) => {
                for l in listeners {
                    let protocol = if l.protocol == "udp" {
                        Protocol::Udp
                    } else {
                        Protocol::Tcp
                    };
                    ports.push(judge_port(
                        &inputs, protocol, l.port, &l.address, "host", l.process,
                    ));
                }
            }
            Err(e) => warnings.push(format!("listening sockets unknown: {e}")),
        }
        for p in published {
            let owner = match &p.app {
                Some(app) => format!("{} (app {app})", p.container),
                None => p.container.clone(),
            };
            ports.push(judge_port(
                &inputs,
                p.protocol,
                p.port,
                &p.address,
                "container",
                owner,
            ));
        }
        Ok(ExposureReport {
            applied: live.is_some(),
            enabled: config.enabled,
            ports,
            warnings,
        })
    }
}

/// Sources no rule names, to stand for "anyone on the internet".
const STRANGERS: [&str; 6] = [
    "203.0.113.77",
    "198.51.100.77",
    "192.0.2.77",
    "2001:db8:77::77",
    "2001:db8:78::78",
    "100::77",
];

fn judge_port(
    inputs: &compile::Inputs,
    protocol: Protocol,
    port: u16,
    address: &str,
    kind: &str,
    owner: String,
) -> Exposure {
    let mut e = Exposure {
        protocol: protocol.as_str().into(),
        port,
        address: address.into(),
        kind: kind.into(),
        owner,
        reachable: "open".into(),
        allowed_from: Vec::new(),
        rule: None,
    };
    let ip: Option<IpAddr> = address.parse().ok();
    if ip.is_some_and(|ip| ip.is_loopback()) {
        e.reachable = "local".into();
        return e;
    }
    let v4_only = ip.is_some_and(|ip| ip.is_ipv4() && !ip.is_unspecified());
    // The sources of rules about this port: the networks that may be let in.
    let named: Vec<ipnet::IpNet> = inputs
        .rules
        .iter()
        .filter(|r| {
            (r.protocol == protocol || r.protocol == Protocol::Any)
                && (r.ports.is_empty() || r.ports.iter().any(|&(lo, hi)| lo <= port && port <= hi))
        })
        .flat_map(|r| r.sources.clone())
        .collect();
    let stranger = STRANGERS
        .iter()
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .filter(|s| !v4_only || s.is_ipv4())
        .find(|s| !named.iter().any(|n| n.contains(s)));
    let Some(stranger) = stranger else {
        return e;
    };
    let verdict = compile::judge(inputs, protocol, port, stranger);
    if verdict.is_none() {
        e.rule = compile::first_allow(inputs, protocol, port, stranger);
        return e;
    }
    e.rule = verdict.and_then(|(i, _)| i);
    let mut allowed: HashMap<String, ()> = HashMap::new();
    for n in &named {
        if v4_only && n.addr().is_ipv6() {
            continue;
        }
        if compile::judge(inputs, protocol, port, n.network()).is_none() {
            allowed.insert(n.to_string(), ());
        }
    }
    if allowed.is_empty() {
        e.reachable = "blocked".into();
    } else {
        e.reachable = "restricted".into();
        let mut list: Vec<String> = allowed.into_keys().collect();
        list.sort();
        e.allowed_from = list;
    }
    e
}

impl Firewall {
    /// `GET /firewall`.
    pub async fn status(&self, client: IpAddr) -> Result<FirewallStatus, ApiError> {
        let state = self.state().await?;
        let (available, backend) = match self.nft.version().await {
            Ok(v) => (true, v),
            Err(e) => (false, e.to_string()),
        };
        let drift = if available && state.applied.is_some() {
            match self.nft.list_table().await {
                Ok(live) => (state.fingerprint.as_deref()
                    != Some(super::nft::fingerprint(live.as_ref()).as_str()))
                .then(|| "berth's table in the kernel differs from what berth loaded".to_string()),
                Err(e) => Some(e.to_string()),
            }
        } else {
            None
        };
        Ok(FirewallStatus {
            available,
            backend,
            netns: self.settings.netns.clone(),
            enabled: state.desired.enabled,
            mode: state.desired.mode,
            revision: state.revision,
            applied_revision: state.applied_revision,
            pending: self.pending_apply().await?,
            last_apply: self.last_apply().await?,
            drift,
            other_firewalls: if available {
                self.other_firewalls().await
            } else {
                Vec::new()
            },
            panel_port: self.settings.panel_port,
            your_address: client.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::api::firewall::Action;

    fn lines(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn diff_marks_added_and_removed_lines() {
        let d = diff(&lines(&["a", "b", "c", "d"]), &lines(&["a", "c", "x", "d"]));
        let ops: Vec<String> = d.iter().map(|l| format!("{}{}", l.op, l.text)).collect();
        assert_eq!(ops, vec![" a", "-b", " c", "+x", " d"]);
        assert!(diff(&lines(&[]), &lines(&["a"]))[0].op == "+");
    }

    #[test]
    fn a_rule_under_a_wider_one_is_shadowed() {
        let rule = |ports: &str, sources: &[&str]| {
            app::api::firewall::check_rule(
                0,
                &Rule {
                    name: None,
                    action: Action::Allow,
                    protocol: Protocol::Tcp,
                    ports: ports.into(),
                    sources: sources.iter().map(|s| s.to_string()).collect(),
                    rate_limit: None,
                    comment: String::new(),
                },
            )
            .unwrap()
        };
        assert!(shadowed(
            &[rule("1-1000", &[])],
            &rule("22", &["10.0.0.0/8"])
        ));
        assert!(!shadowed(&[rule("22", &["10.0.0.0/8"])], &rule("22", &[])));
    }

    #[test]
    fn exposure_says_who_may_reach_a_port() {
        let checked = |r: Rule| app::api::firewall::check_rule(0, &r).unwrap();
        let allow = Rule {
            name: None,
            action: Action::Allow,
            protocol: Protocol::Tcp,
            ports: "22".into(),
            sources: vec!["10.0.0.0/8".into()],
            rate_limit: None,
            comment: String::new(),
        };
        let open = Rule {
            ports: "443".into(),
            sources: vec![],
            ..allow.clone()
        };
        let inputs = compile::Inputs {
            enabled: true,
            rules: vec![checked(allow), checked(open)],
            ..compile::Inputs::default()
        };
        let e = judge_port(&inputs, Protocol::Tcp, 22, "0.0.0.0", "host", "sshd".into());
        assert_eq!(
            (e.reachable.as_str(), e.allowed_from.clone()),
            ("restricted", vec!["10.0.0.0/8".to_string()])
        );
        let e = judge_port(&inputs, Protocol::Tcp, 443, "::", "host", String::new());
        assert_eq!((e.reachable.as_str(), e.rule), ("open", Some(1)));
        let e = judge_port(
            &inputs,
            Protocol::Tcp,
            5432,
            "0.0.0.0",
            "container",
            String::new(),
        );
        assert_eq!(e.reachable, "blocked");
        let e = judge_port(
            &inputs,
            Protocol::Tcp,
            5432,
            "127.0.0.1",
            "host",
            String::new(),
        );
        assert_eq!(e.reachable, "local");
    }
}
