//! The host firewall: the rules an admin writes, and what berth reports
//! about them. Validation lives here so the browser checks a rule with the
//! same code the server uses to refuse it.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// What a matching rule does with a new inbound connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    /// Drop silently: the client waits for a timeout.
    Deny,
    /// Refuse at once (TCP reset, ICMP unreachable).
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Reject => "reject",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    /// ICMP for IPv4 and ICMPv6 for IPv6; takes no ports.
    Icmp,
    /// Every protocol; takes no ports.
    Any,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Any => "any",
        }
    }

    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp)
    }
}

/// How berth's default drop relates to another firewall on the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// berth is the host's firewall: whatever no rule allows is dropped,
    /// for host ports and for ports containers publish alike.
    #[default]
    Standalone,
    /// Another firewall (UFW, firewalld) keeps the host's own policy:
    /// berth's rules still apply everywhere, but its default drop covers
    /// only the ports Docker publishes, the ones the other firewall misses.
    Coexist,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Coexist => "coexist",
        }
    }
}

/// One rule, as written. Rules are read top to bottom; the first that
/// matches decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Optional short name (`[a-z0-9][a-z0-9_-]*`, unique), for scripts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: Action,
    pub protocol: Protocol,
    /// `"22"`, `"8000-8100"`, `"80,443"` or a mix; empty: every port.
    #[serde(default)]
    pub ports: String,
    /// CIDRs or addresses, IPv4 and IPv6; empty: from anywhere.
    #[serde(default)]
    pub sources: Vec<String>,
    /// New connections per source address, e.g. `"6/minute"`
    /// (`second`, `minute`, `hour`); over it they are dropped. Allow rules only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    #[serde(default)]
    pub comment: String,
}

/// The desired firewall: `GET` and `PUT /api/v1/firewall/rules`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FirewallConfig {
    /// Off: berth keeps no table at all. On: the rules plus the default
    /// policy (allow loopback and established traffic, drop other inbound).
    pub enabled: bool,
    #[serde(default)]
    pub mode: Mode,
    pub rules: Vec<Rule>,
}

/// `GET /api/v1/firewall/rules`, and the answer to `PUT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct FirewallRules {
    pub enabled: bool,
    pub mode: Mode,
    pub rules: Vec<Rule>,
    /// Counts every saved change of the desired rules.
    pub revision: i64,
    /// The revision live in the kernel and confirmed; `None`: never applied.
    pub applied_revision: Option<i64>,
    /// Things worth a second look that do not stop the rules being saved.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One line of the ruleset diff in a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DiffLine {
    /// `+` added, `-` removed, ` ` unchanged.
    pub op: String,
    pub text: String,
}

/// `GET /api/v1/firewall/plan`: what applying the desired rules would do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct FirewallPlan {
    pub revision: i64,
    pub applied_revision: Option<i64>,
    /// True when the kernel already holds exactly this ruleset.
    pub up_to_date: bool,
    /// Rule-level changes against the applied rules, in words.
    pub changes: Vec<String>,
    /// berth's table as it would be loaded, in nft's syntax (empty: removed).
    pub ruleset: String,
    /// Line diff of berth's table, live now → after apply.
    pub diff: Vec<DiffLine>,
    /// `nft --check` of the ruleset: `None` when it passed.
    pub check_error: Option<String>,
    /// Why apply would be refused (the lockout guard), if it would.
    pub refused: Option<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// `POST /api/v1/firewall/apply` body (optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// Seconds to wait for `POST /firewall/confirm` before rolling back
    /// (10–600, default 60).
    #[serde(default)]
    pub confirm_seconds: Option<u32>,
}

/// `POST /api/v1/firewall/confirm` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    pub apply_id: i64,
}

/// An apply waiting for its confirmation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PendingApply {
    pub apply_id: i64,
    pub revision: i64,
    /// RFC 3339; berth rolls back at this moment unless confirmed.
    pub deadline: String,
    pub seconds_left: u64,
}

/// One apply, from start to its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ApplyRecord {
    pub id: i64,
    pub revision: i64,
    /// `pending`, `confirmed`, `rolled_back` or `failed`.
    pub state: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub actor: String,
    /// What happened, e.g. why it rolled back or nft's error.
    pub message: Option<String>,
}

/// Another firewall found on the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct OtherFirewall {
    /// `ufw`, `firewalld`, or `nftables` for another table with an input hook.
    pub name: String,
    pub detail: String,
}

/// `GET /api/v1/firewall`: the firewall's state at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct FirewallStatus {
    /// Whether `nft` can be run (as root, with JSON support).
    pub available: bool,
    /// `nft --version`, or why it cannot be used.
    pub backend: String,
    /// The network namespace berth's rules go to (`None`: the host's).
    pub netns: Option<String>,
    pub enabled: bool,
    pub mode: Mode,
    pub revision: i64,
    pub applied_revision: Option<i64>,
    pub pending: Option<PendingApply>,
    pub last_apply: Option<ApplyRecord>,
    /// Set when berth's table in the kernel differs from what it applied
    /// (removed or edited by hand); berth re-applies it.
    pub drift: Option<String>,
    pub other_firewalls: Vec<OtherFirewall>,
    /// The panel's port, which the lockout guard keeps open for you.
    pub panel_port: u16,
    /// Your address as berth sees it.
    pub your_address: String,
}

/// One port in the exposure report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Exposure {
    /// `tcp` or `udp`.
    pub protocol: String,
    pub port: u16,
    /// The address it listens on, e.g. `0.0.0.0`, `::`, `127.0.0.1`.
    pub address: String,
    /// `host` (a listening socket) or `container` (a published port).
    pub kind: String,
    /// The process, or the container (and its berth app).
    pub owner: String,
    /// `open` (anyone), `restricted` (some sources), `blocked`, or
    /// `local` (bound to loopback: not reachable from outside at all).
    pub reachable: String,
    /// For `restricted`: the sources allowed.
    #[serde(default)]
    pub allowed_from: Vec<String>,
    /// The rule that decides for most sources (index into the rules), if any.
    pub rule: Option<usize>,
}

/// `GET /api/v1/firewall/exposure`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ExposureReport {
    /// Judged against the live rules (a pending apply's, else the confirmed
    /// ones); `false`: nothing was ever applied, so the firewall is off.
    pub applied: bool,
    pub enabled: bool,
    pub ports: Vec<Exposure>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// `GET /api/v1/firewall/presets`: ready-made rules to add.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Preset {
    pub id: String,
    pub name: String,
    pub description: String,
    pub rules: Vec<Rule>,
}

/// A port range, inclusive.
pub type PortRange = (u16, u16);

/// The most ports entries one rule may list.
pub const MAX_PORT_ENTRIES: usize = 64;
/// The most sources one rule may list.
pub const MAX_SOURCES: usize = 1024;
/// The most rules a firewall may hold.
pub const MAX_RULES: usize = 5000;
/// The most set elements they may expand to (each source times each port
/// range), which bounds what one apply asks of the kernel.
pub const MAX_ELEMENTS: usize = 200_000;
const MAX_COMMENT: usize = 100;
const MAX_NAME: usize = 32;

/// `"22"`, `"8000-8100"`, `"80,443"` → sorted ranges; empty → every port.
pub fn parse_ports(text: &str) -> Result<Vec<PortRange>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut ranges = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (port(lo.trim())?, port(hi.trim())?),
            None => {
                let p = port(part)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(format!("`{part}` runs backwards; write it as {hi}-{lo}"));
        }
        ranges.push((lo, hi));
    }
    if ranges.len() > MAX_PORT_ENTRIES {
        return Err(format!(
            "at most {MAX_PORT_ENTRIES} ports or ranges per rule"
        ));
    }
    ranges.sort_unstable();
    // "80-90,85" is 80-90: overlapping and adjacent ranges merge.
    let mut merged: Vec<PortRange> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    Ok(merged)
}

fn port(text: &str) -> Result<u16, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}` is not a port; use a number, a range like 8000-8100 or a list like 80,443"
        ));
    }
    match text.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(format!("port {text} is out of range 1-65535")),
    }
}

/// A CIDR or a single address (as /32 or /128). Host bits must be zero,
/// so `10.0.0.1/8` is refused rather than silently read as `10.0.0.0/8`.
pub fn parse_source(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    // IPv4 packets never carry a mapped address: such a rule would never
    // match, so it is written as IPv4 or not at all.
    let mapped = |ip: &IpAddr| matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
    if text
        .split('/')
        .next()
        .and_then(|a| a.parse::<IpAddr>().ok())
        .is_some_and(|ip| mapped(&ip))
    {
        return Err(format!(
            "`{text}` is an IPv4-mapped address; write it as IPv4"
        ));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let net: IpNet = text
        .parse()
        .map_err(|_| format!("`{text}` is not an address or a CIDR like 203.0.113.0/24"))?;
    if net.trunc() != net {
        return Err(format!(
            "`{text}` has host bits set; the network is {}",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Seconds in the period of a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: RatePeriod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatePeriod {
    Second,
    Minute,
    Hour,
}

impl RatePeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            RatePeriod::Second => "second",
            RatePeriod::Minute => "minute",
            RatePeriod::Hour => "hour",
        }
    }

    pub fn seconds(self) -> u64 {
        match self {
            RatePeriod::Second => 1,
            RatePeriod::Minute => 60,
            RatePeriod::Hour => 3600,
        }
    }
}

pub fn parse_rate(text: &str) -> Result<RateLimit, String> {
    let (count, per) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not a rate like 6/minute"))?;
    let count = count
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|c| (1..=100_000).contains(c))
        .ok_or_else(|| format!("`{text}`: the count must be 1-100000"))?;
    let per = match per.trim() {
        "second" | "s" => RatePeriod::Second,
        "minute" | "min" | "m" => RatePeriod::Minute,
        "hour" | "h" => RatePeriod::Hour,
        other => {
            return Err(format!(
                "`{other}` is not a period; use second, minute or hour"
            ))
        }
    };
    Ok(RateLimit { count, per })
}

/// A rule with its text parsed, ready to compile or to judge traffic by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRule {
    pub action: Action,
    pub protocol: Protocol,
    /// Empty: every port (and always empty for icmp/any).
    pub ports: Vec<PortRange>,
    /// Empty: from anywhere.
    pub sources: Vec<IpNet>,
    pub rate_limit: Option<RateLimit>,
}

impl CheckedRule {
    pub fn matches(&self, protocol: Protocol, port: u16, source: IpAddr) -> bool {
        let proto_ok = match self.protocol {
            Protocol::Any => true,
            p => p == protocol,
        };
        let port_ok =
            self.ports.is_empty() || self.ports.iter().any(|&(lo, hi)| lo <= port && port <= hi);
        let source_ok = self.sources.is_empty() || self.sources.iter().any(|n| n.contains(&source));
        proto_ok && port_ok && source_ok
    }
}

/// A refusal naming the field at fault, e.g. `rules[3].ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Checks one rule; `index` names it in the error.
pub fn check_rule(index: usize, rule: &Rule) -> Result<CheckedRule, FieldError> {
    let at = |field: &str, message: String| FieldError {
        field: format!("rules[{index}].{field}"),
        message,
    };
    if let Some(name) = &rule.name {
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(at(
                "name",
                format!(
                    "a name is 1-{MAX_NAME} of a-z, 0-9, '-' and '_', starting with a letter or digit"
                ),
            ));
        }
    }
    let ports = parse_ports(&rule.ports).map_err(|m| at("ports", m))?;
    if !rule.protocol.has_ports() && !ports.is_empty() {
        return Err(at(
            "ports",
            format!("{} has no ports; leave ports empty", rule.protocol.as_str()),
        ));
    }
    if rule.sources.len() > MAX_SOURCES {
        return Err(at(
            "sources",
            format!("at most {MAX_SOURCES} sources per rule"),
        ));
    }
    let mut sources = Vec::with_capacity(rule.sources.len());
    for (i, s) in rule.sources.iter().enumerate() {
        sources.push(parse_source(s).map_err(|m| at(&format!("sources[{i}]"), m))?);
    }
    let rate_limit = match &rule.rate_limit {
        None => None,
        Some(text) if text.trim().is_empty() => None,
        Some(text) => {
            if rule.action != Action::Allow {
                return Err(at(
                    "rate_limit",
                    "only allow rules take a rate limit".to_string(),
                ));
            }
            Some(parse_rate(text).map_err(|m| at("rate_limit", m))?)
        }
    };
    // nft keeps at most 128 bytes of a comment.
    if rule.comment.len() > MAX_COMMENT {
        return Err(at("comment", format!("at most {MAX_COMMENT} bytes")));
    }
    if rule
        .comment
        .chars()
        .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        return Err(at(
            "comment",
            "a comment cannot hold quotes, backslashes or control characters".to_string(),
        ));
    }
    // "from anywhere" written out is the same as empty.
    if sources.iter().any(|n| n.prefix_len() == 0) {
        let v4 = sources
            .iter()
            .any(|n| n.prefix_len() == 0 && matches!(n, IpNet::V4(_)));
        let v6 = sources
            .iter()
            .any(|n| n.prefix_len() == 0 && matches!(n, IpNet::V6(_)));
        sources.retain(|n| match n {
            IpNet::V4(_) => !v4,
            IpNet::V6(_) => !v6,
        });
        if v4 {
            sources.push("0.0.0.0/0".parse().expect("constant"));
        }
        if v6 {
            sources.push("::/0".parse().expect("constant"));
        }
        if v4 && v6 {
            sources.clear();
        }
    }
    Ok(CheckedRule {
        action: rule.action,
        protocol: rule.protocol,
        ports,
        sources,
        rate_limit,
    })
}

/// Checks every rule, and that names are unique.
pub fn check_config(config: &FirewallConfig) -> Result<Vec<CheckedRule>, FieldError> {
    if config.rules.len() > MAX_RULES {
        return Err(FieldError {
            field: "rules".into(),
            message: format!("at most {MAX_RULES} rules"),
        });
    }
    let mut names = std::collections::HashSet::new();
    let mut checked = Vec::with_capacity(config.rules.len());
    for (i, rule) in config.rules.iter().enumerate() {
        if let Some(name) = &rule.name {
            if !names.insert(name.as_str()) {
                return Err(FieldError {
                    field: format!("rules[{i}].name"),
                    message: format!("the name `{name}` is used by an earlier rule"),
                });
            }
        }
        checked.push(check_rule(i, rule)?);
    }
    let elements: usize = checked
        .iter()
        // No sources means both families: a set element for each.
        .map(|r| r.sources.len().max(2) * r.ports.len().max(1))
        .sum();
    if elements > MAX_ELEMENTS {
        return Err(FieldError {
            field: "rules".into(),
            message: format!(
                "these rules expand to {elements} source-and-port entries; at most {MAX_ELEMENTS}"
            ),
        });
    }
    Ok(checked)
}

/// The verdict for one new connection under checked rules: the index of the
/// deciding rule and its action, or `None` when no rule matches (the default
/// policy decides).
pub fn first_match(
    rules: &[CheckedRule],
    protocol: Protocol,
    port: u16,
    source: IpAddr,
) -> Option<(usize, Action)> {
    rules
        .iter()
        .enumerate()
        .find(|(_, r)| r.matches(protocol, port, source))
        .map(|(i, r)| (i, r.action))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: Action, protocol: Protocol, ports: &str, sources: &[&str]) -> Rule {
        Rule {
            name: None,
            action,
            protocol,
            ports: ports.into(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
            rate_limit: None,
            comment: String::new(),
        }
    }

    #[test]
    fn ports_take_singles_ranges_and_lists() {
        assert_eq!(parse_ports("22"), Ok(vec![(22, 22)]));
        assert_eq!(parse_ports("8000-8100"), Ok(vec![(8000, 8100)]));
        assert_eq!(parse_ports("443, 80"), Ok(vec![(80, 80), (443, 443)]));
        assert_eq!(parse_ports("80-90,85,91"), Ok(vec![(80, 91)]));
        assert_eq!(parse_ports(""), Ok(vec![]));
        for bad in [
            "70000",
            "0",
            "80-",
            "-80",
            "100-90",
            "8o",
            "22;reboot",
            "1,,2",
        ] {
            assert!(parse_ports(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn sources_are_networks_with_no_host_bits() {
        assert_eq!(parse_source("1.2.3.4").unwrap().to_string(), "1.2.3.4/32");
        assert_eq!(
            parse_source("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert!(parse_source("1.2.3.4/33").is_err());
        assert!(parse_source("10.0.0.1/8")
            .unwrap_err()
            .contains("10.0.0.0/8"));
        assert!(parse_source("example.com").is_err());
        assert!(parse_source("1.2.3.4; reboot").is_err());
        assert!(parse_source("::ffff:1.2.3.4")
            .unwrap_err()
            .contains("IPv4-mapped"));
    }

    #[test]
    fn rate_limits_are_allow_only_and_bounded() {
        assert_eq!(
            parse_rate("6/minute"),
            Ok(RateLimit {
                count: 6,
                per: RatePeriod::Minute
            })
        );
        assert!(parse_rate("0/minute").is_err());
        assert!(parse_rate("6/fortnight").is_err());
        let mut r = rule(Action::Deny, Protocol::Tcp, "22", &[]);
        r.rate_limit = Some("6/minute".into());
        assert_eq!(check_rule(0, &r).unwrap_err().field, "rules[0].rate_limit");
    }

    #[test]
    fn errors_name_the_field() {
        let config = FirewallConfig {
            enabled: true,
            mode: Mode::Standalone,
            rules: vec![
                rule(Action::Allow, Protocol::Tcp, "22", &[]),
                rule(
                    Action::Deny,
                    Protocol::Tcp,
                    "80",
                    &["10.0.0.0/8", "1.2.3.4/33"],
                ),
            ],
        };
        let err = check_config(&config).unwrap_err();
        assert_eq!(err.field, "rules[1].sources[1]");
        let mut r = rule(Action::Allow, Protocol::Icmp, "8", &[]);
        assert_eq!(check_rule(2, &r).unwrap_err().field, "rules[2].ports");
        r.ports.clear();
        r.name = Some("ping;reboot".into());
        assert_eq!(check_rule(2, &r).unwrap_err().field, "rules[2].name");
        r.name = None;
        r.comment = "say \"hi\"".into();
        assert_eq!(check_rule(2, &r).unwrap_err().field, "rules[2].comment");
    }

    #[test]
    fn both_anywheres_mean_anywhere() {
        let r = rule(Action::Deny, Protocol::Tcp, "5432", &["0.0.0.0/0", "::/0"]);
        assert!(check_rule(0, &r).unwrap().sources.is_empty());
        let r = rule(
            Action::Deny,
            Protocol::Tcp,
            "5432",
            &["0.0.0.0/0", "10.0.0.0/8"],
        );
        let checked = check_rule(0, &r).unwrap();
        assert_eq!(checked.sources, vec!["0.0.0.0/0".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules: Vec<CheckedRule> = [
            rule(Action::Allow, Protocol::Tcp, "22", &["10.0.0.0/8"]),
            rule(Action::Deny, Protocol::Tcp, "22", &[]),
            rule(Action::Allow, Protocol::Any, "", &[]),
        ]
        .iter()
        .enumerate()
        .map(|(i, r)| check_rule(i, r).unwrap())
        .collect();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            first_match(&rules, Protocol::Tcp, 22, ip("10.1.2.3")),
            Some((0, Action::Allow))
        );
        assert_eq!(
            first_match(&rules, Protocol::Tcp, 22, ip("192.0.2.1")),
            Some((1, Action::Deny))
        );
        assert_eq!(
            first_match(&rules, Protocol::Udp, 53, ip("192.0.2.1")),
            Some((2, Action::Allow))
        );
    }
}
