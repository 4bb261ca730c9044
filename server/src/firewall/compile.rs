//! Turns the admin's rules into berth's nftables table, twice over: as the
//! JSON transaction `nft -j -f -` loads, and as nft's text syntax for the
//! plan a person reads. Both come from one description, so what is shown is
//! what is loaded.
//!
//! Where it hooks, and why: one base chain at `prerouting`, priority -150,
//! after conntrack (-200) and before Docker's DNAT (-100). There a packet
//! for a port a container publishes still carries the host port it was
//! sent to, so one rule covers a host service and a published port alike,
//! and Docker's NAT cannot carry traffic around berth's rules. Only packets
//! addressed to this host are judged (`fib daddr type local`): containers'
//! own traffic and routed traffic pass untouched.
//!
//! Why sets: consecutive rules with the same verdict are folded into one
//! concatenated interval set `source . protocol . port` per address family,
//! so a packet costs one set lookup per change of verdict, not one rule per
//! address; a thousand-address blocklist is one lookup.

use std::net::IpAddr;

use app::api::firewall::{Action, CheckedRule, Mode, PortRange, Protocol, RateLimit};
use ipnet::IpNet;
use serde_json::{json, Value};

pub const TABLE: &str = "berth";
pub const FAMILY: &str = "inet";
/// Between conntrack (-200) and Docker's DNAT (-100).
const PRIORITY: i32 = -150;

/// What the table is built from besides the rules.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub enabled: bool,
    pub mode: Mode,
    pub rules: Vec<CheckedRule>,
    /// Comments of the rules, by index, for the text form.
    pub comments: Vec<String>,
    /// Ports Docker publishes (protocol, host port), for coexist mode.
    pub published: Vec<(Protocol, u16)>,
}

/// berth's table, ready to load or to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Ruleset {
    /// `None`: berth keeps no table (the firewall is off).
    table: Option<Table>,
}

#[derive(Debug, Clone, PartialEq)]
struct Table {
    sets: Vec<Set>,
    inbound: Vec<Stmt>,
    rules: Vec<Stmt>,
}

#[derive(Debug, Clone, PartialEq)]
enum SetKind {
    /// `ipv4_addr . inet_proto . inet_service`, intervals.
    Match4,
    Match6,
    /// `inet_proto . inet_service`: the published ports.
    Published,
    /// Per-source meters for a rate limit, entries expire.
    Meter4 {
        timeout: u64,
    },
    Meter6 {
        timeout: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct Set {
    name: String,
    kind: SetKind,
    elements: Vec<Elem>,
}

/// One set element.
#[derive(Debug, Clone, PartialEq)]
enum Elem {
    Match {
        net: IpNet,
        proto: (u8, u8),
        ports: PortRange,
    },
    Published {
        proto: u8,
        port: u16,
    },
}

/// One rule: its JSON expressions and its text.
#[derive(Debug, Clone, PartialEq)]
struct Stmt {
    expr: Vec<Value>,
    text: String,
    comment: Option<String>,
}

impl Ruleset {
    pub fn is_empty(&self) -> bool {
        self.table.is_none()
    }

    /// The transaction that replaces berth's table in one commit: add (so
    /// that the delete cannot fail), delete, then the whole new table. No
    /// other table is named, so none is touched.
    pub fn transaction(&self) -> Value {
        let table = json!({"family": FAMILY, "name": TABLE});
        let mut cmds = vec![
            json!({"add": {"table": table}}),
            json!({"delete": {"table": table}}),
        ];
        if let Some(t) = &self.table {
            cmds.push(json!({"add": {"table": table}}));
            for set in &t.sets {
                cmds.push(json!({"add": {"set": set.json()}}));
                if !set.elements.is_empty() {
                    cmds.push(json!({"add": {"element": {
                        "family": FAMILY, "table": TABLE, "name": set.name,
                        "elem": set.elements.iter().map(Elem::json).collect::<Vec<_>>(),
                    }}}));
                }
            }
            cmds.push(json!({"add": {"chain": {
                "family": FAMILY, "table": TABLE, "name": "inbound",
                "type": "filter", "hook": "prerouting", "prio": PRIORITY, "policy": "accept",
            }}}));
            cmds.push(
                json!({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": "rules"}}}),
            );
            for (chain, stmts) in [("inbound", &t.inbound), ("rules", &t.rules)] {
                for s in stmts {
                    let mut rule = json!({
                        "family": FAMILY, "table": TABLE, "chain": chain, "expr": s.expr,
                    });
                    if let Some(c) = &s.comment {
                        rule["comment"] = json!(c);
                    }
                    cmds.push(json!({"add": {"rule": rule}}));
                }
            }
        }
        json!({ "nftables": cmds })
    }

    /// nft's text syntax, one element per line so a diff reads well.
    pub fn text(&self) -> String {
        let Some(t) = &self.table else {
            return String::new();
        };
        let mut out = format!("table {FAMILY} {TABLE} {{\n");
        for set in &t.sets {
            set.text(&mut out);
        }
        out.push_str(&format!(
            "\tchain inbound {{\n\t\ttype filter hook prerouting priority {PRIORITY}; policy accept;\n"
        ));
        for s in &t.inbound {
            s.text_into(&mut out);
        }
        out.push_str("\t}\n\tchain rules {\n");
        for s in &t.rules {
            s.text_into(&mut out);
        }
        out.push_str("\t}\n}\n");
        out
    }

    /// How many set elements the table holds (a size figure for benches).
    pub fn element_count(&self) -> usize {
        self.table
            .as_ref()
            .map(|t| t.sets.iter().map(|s| s.elements.len()).sum())
            .unwrap_or(0)
    }

    /// The published ports the table drops by default (coexist mode), sorted.
    pub fn published(&self) -> Vec<(u8, u16)> {
        let mut out: Vec<(u8, u16)> = self
            .table
            .iter()
            .flat_map(|t| &t.sets)
            .filter(|s| s.kind == SetKind::Published)
            .flat_map(|s| &s.elements)
            .filter_map(|e| match e {
                Elem::Published { proto, port } => Some((*proto, *port)),
                Elem::Match { .. } => None,
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// How many rules a packet may walk through in `rules`.
    pub fn rule_count(&self) -> usize {
        self.table.as_ref().map(|t| t.rules.len()).unwrap_or(0)
    }
}

impl Stmt {
    fn new(expr: Vec<Value>, text: impl Into<String>) -> Stmt {
        Stmt {
            expr,
            text: text.into(),
            comment: None,
        }
    }

    fn text_into(&self, out: &mut String) {
        out.push_str("\t\t");
        out.push_str(&self.text);
        if let Some(c) = &self.comment {
            out.push_str(&format!(" comment \"{c}\""));
        }
        out.push('\n');
    }
}

impl Set {
    fn json(&self) -> Value {
        let mut set = json!({"family": FAMILY, "table": TABLE, "name": self.name});
        match self.kind {
            SetKind::Match4 => {
                set["type"] = json!(["ipv4_addr", "inet_proto", "inet_service"]);
                set["flags"] = json!(["interval"]);
            }
            SetKind::Match6 => {
                set["type"] = json!(["ipv6_addr", "inet_proto", "inet_service"]);
                set["flags"] = json!(["interval"]);
            }
            SetKind::Published => set["type"] = json!(["inet_proto", "inet_service"]),
            SetKind::Meter4 { timeout } | SetKind::Meter6 { timeout } => {
                set["type"] = json!(if matches!(self.kind, SetKind::Meter4 { .. }) {
                    "ipv4_addr"
                } else {
                    "ipv6_addr"
                });
                set["size"] = json!(65535);
                // nft marks a set updated from the packet path dynamic by itself (its
                // JSON parser does not take the flag).
                set["flags"] = json!(["timeout"]);
                set["timeout"] = json!(timeout);
            }
        }
        set
    }

    fn text(&self, out: &mut String) {
        let (ty, extra) = match self.kind {
            SetKind::Match4 => (
                "ipv4_addr . inet_proto . inet_service",
                "flags interval;".to_string(),
            ),
            SetKind::Match6 => (
                "ipv6_addr . inet_proto . inet_service",
                "flags interval;".to_string(),
            ),
            SetKind::Published => ("inet_proto . inet_service", String::new()),
            SetKind::Meter4 { timeout } => (
                "ipv4_addr",
                format!("size 65535; flags dynamic,timeout; timeout {timeout}s;"),
            ),
            SetKind::Meter6 { timeout } => (
                "ipv6_addr",
                format!("size 65535; flags dynamic,timeout; timeout {timeout}s;"),
            ),
        };
        out.push_str(&format!("\tset {} {{\n\t\ttype {ty};", self.name));
        if !extra.is_empty() {
            out.push(' ');
            out.push_str(&extra);
        }
        out.push('\n');
        if !self.elements.is_empty() {
            out.push_str("\t\telements = {\n");
            for e in &self.elements {
                out.push_str(&format!("\t\t\t{},\n", e.text()));
            }
            out.push_str("\t\t}\n");
        }
        out.push_str("\t}\n");
    }
}

impl Elem {
    fn json(&self) -> Value {
        match self {
            Elem::Match { net, proto, ports } => {
                let net =
                    json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}});
                json!({"concat": [net, range(proto.0 as u16, proto.1 as u16), range(ports.0, ports.1)]})
            }
            Elem::Published { proto, port } => json!({"concat": [proto, port]}),
        }
    }

    fn text(&self) -> String {
        let span = |lo: u16, hi: u16| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        };
        match self {
            Elem::Match { net, proto, ports } => format!(
                "{net} . {} . {}",
                span(proto.0 as u16, proto.1 as u16),
                span(ports.0, ports.1)
            ),
            Elem::Published { proto, port } => format!("{proto} . {port}"),
        }
    }
}

fn range(lo: u16, hi: u16) -> Value {
    if lo == hi {
        json!(lo)
    } else {
        json!({"range": [lo, hi]})
    }
}

fn match_(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

/// `ip saddr . meta l4proto . th dport` (or `ip6 saddr …`).
fn key(v6: bool) -> Value {
    json!({"concat": [
        payload(if v6 { "ip6" } else { "ip" }, "saddr"),
        meta("l4proto"),
        payload("th", "dport"),
    ]})
}

fn key_text(v6: bool) -> &'static str {
    if v6 {
        "ip6 saddr . meta l4proto . th dport"
    } else {
        "ip saddr . meta l4proto . th dport"
    }
}

/// Protocol numbers as an inclusive range: ICMP differs per family, and
/// "any" is every protocol.
fn proto_span(protocol: Protocol, v6: bool) -> (u8, u8) {
    match protocol {
        Protocol::Tcp => (6, 6),
        Protocol::Udp => (17, 17),
        Protocol::Icmp if v6 => (58, 58),
        Protocol::Icmp => (1, 1),
        Protocol::Any => (0, 255),
    }
}

/// The set elements that stand for `rule` in one address family.
fn elements(rule: &CheckedRule, v6: bool) -> Vec<Elem> {
    let nets: Vec<IpNet> = if rule.sources.is_empty() {
        vec![if v6 {
            "::/0".parse().expect("constant")
        } else {
            "0.0.0.0/0".parse().expect("constant")
        }]
    } else {
        rule.sources
            .iter()
            .filter(|n| matches!(n, IpNet::V6(_)) == v6)
            .copied()
            .collect()
    };
    // ICMP carries no ports; th dport reads other bytes of its header, so
    // the whole range stands for "any".
    let ports = if rule.ports.is_empty() {
        vec![(0, 65535)]
    } else {
        rule.ports.clone()
    };
    let proto = proto_span(rule.protocol, v6);
    let mut out = Vec::with_capacity(nets.len() * ports.len());
    for net in &nets {
        for &p in &ports {
            out.push(Elem::Match {
                net: *net,
                proto,
                ports: p,
            });
        }
    }
    out
}

/// An address range as numbers, for overlap tests within one family.
fn span(net: &IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(n) => (
            u32::from(n.network()).into(),
            u32::from(n.broadcast()).into(),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// Whether two sorted, disjoint lists of networks share an address.
fn nets_meet(a: &[IpNet], b: &[IpNet]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (span(&a[i]), span(&b[j]));
        if x.1 < y.0 {
            i += 1;
        } else if y.1 < x.0 {
            j += 1;
        } else {
            return true;
        }
    }
    false
}

/// Splits one verdict's elements into sets the kernel takes. Its interval
/// sets of concatenations refuse an element that overlaps another, and
/// rules overlap all the time (`1.2.3.0/24` and `1.2.3.4`; "22 from
/// anywhere" and "22,2222 from 10/8"). Within one verdict that is harmless
/// to resolve: a network inside another of the same protocol and ports adds
/// nothing and goes; elements that still cross go to a further set (the
/// verdict is the same whichever matches).
fn fold(elements: Vec<Elem>) -> Vec<Vec<Elem>> {
    // Buckets of one protocol span and one port span, in first-seen order.
    type Bucket = ((u8, u8), PortRange, Vec<IpNet>);
    let mut buckets: Vec<Bucket> = Vec::new();
    for e in elements {
        let Elem::Match { net, proto, ports } = e else {
            continue;
        };
        match buckets.iter_mut().find(|b| b.0 == proto && b.1 == ports) {
            Some(b) => b.2.push(net),
            None => buckets.push((proto, ports, vec![net])),
        }
    }
    // Networks nest or are disjoint: sorted by start, widest first, one
    // inside the last kept is inside a kept one.
    for b in &mut buckets {
        b.2.sort_by_key(|n| (span(n).0, n.prefix_len()));
        let mut kept: Vec<IpNet> = Vec::with_capacity(b.2.len());
        for n in b.2.drain(..) {
            if !kept.last().is_some_and(|k| k.contains(&n)) {
                kept.push(n);
            }
        }
        b.2 = kept;
    }
    let crosses = |a: &Bucket, b: &Bucket| {
        a.0 .0 <= b.0 .1
            && b.0 .0 <= a.0 .1
            && a.1 .0 <= b.1 .1
            && b.1 .0 <= a.1 .1
            && nets_meet(&a.2, &b.2)
    };
    let mut parts: Vec<Vec<Bucket>> = Vec::new();
    for b in buckets {
        match parts.iter_mut().find(|p| !p.iter().any(|c| crosses(c, &b))) {
            Some(p) => p.push(b),
            None => parts.push(vec![b]),
        }
    }
    parts
        .into_iter()
        .map(|p| {
            p.into_iter()
                .flat_map(|(proto, ports, nets)| {
                    nets.into_iter()
                        .map(move |net| Elem::Match { net, proto, ports })
                })
                .collect()
        })
        .collect()
}

fn verdicts(action: Action) -> Vec<(Vec<Value>, String)> {
    match action {
        Action::Allow => vec![(vec![json!({"accept": null})], "accept".into())],
        Action::Deny => vec![(vec![json!({"drop": null})], "drop".into())],
        // A reset for TCP is what a closed port answers; everything else
        // gets ICMP port unreachable.
        Action::Reject => vec![
            (
                vec![
                    match_("==", meta("l4proto"), json!("tcp")),
                    json!({"reject": {"type": "tcp reset"}}),
                ],
                "meta l4proto tcp reject with tcp reset".into(),
            ),
            (
                vec![json!({"reject": {"type": "icmpx", "expr": "port-unreachable"}})],
                "reject with icmpx port-unreachable".into(),
            ),
        ],
    }
}

/// Builds berth's table for these inputs.
pub fn compile(inputs: &Inputs) -> Ruleset {
    if !inputs.enabled {
        return Ruleset { table: None };
    }
    let mut sets = Vec::new();
    let mut rules = Vec::new();
    let rs = &inputs.rules;
    let mut i = 0;
    let mut group = 0;
    while i < rs.len() {
        // A run: consecutive rules with one verdict and no rate limit. Their
        // order does not matter to the outcome, so they share a set.
        let mut j = i + 1;
        if rs[i].rate_limit.is_none() {
            while j < rs.len() && rs[j].action == rs[i].action && rs[j].rate_limit.is_none() {
                j += 1;
            }
        }
        let label = if j - i == 1 {
            format!("rule {i}")
        } else {
            format!("rules {i}-{}", j - 1)
        };
        let comment = if j - i == 1 {
            inputs.comments.get(i).filter(|c| !c.is_empty()).cloned()
        } else {
            Some(label.clone())
        };
        for v6 in [false, true] {
            let elements: Vec<Elem> = rs[i..j].iter().flat_map(|r| elements(r, v6)).collect();
            if elements.is_empty() {
                continue;
            }
            let fam = if v6 { "v6" } else { "v4" };
            let meter = rs[i].rate_limit.map(|limit| {
                let name = format!("m{group}_{fam}");
                let timeout = limit.per.seconds().max(60);
                sets.push(Set {
                    name: name.clone(),
                    kind: if v6 {
                        SetKind::Meter6 { timeout }
                    } else {
                        SetKind::Meter4 { timeout }
                    },
                    elements: Vec::new(),
                });
                (name, limit)
            });
            for (k, part) in fold(elements).into_iter().enumerate() {
                let name = match k {
                    0 => format!("r{group}_{fam}"),
                    k => format!("r{group}_{fam}_{k}"),
                };
                sets.push(Set {
                    name: name.clone(),
                    kind: if v6 { SetKind::Match6 } else { SetKind::Match4 },
                    elements: part,
                });
                let lookup = match_("==", key(v6), json!(format!("@{name}")));
                let lookup_text = format!("{} @{name}", key_text(v6));
                if let Some((meter, limit)) = &meter {
                    rules.push(Stmt {
                        expr: vec![lookup.clone(), meter_update(meter, v6, *limit), json!({"drop": null})],
                        text: format!(
                            "{lookup_text} update @{meter} {{ {} saddr limit rate over {}/{} burst {} packets }} drop",
                            if v6 { "ip6" } else { "ip" },
                            limit.count,
                            limit.per.as_str(),
                            limit.count
                        ),
                        comment: comment.clone(),
                    });
                }
                for (verdict, verdict_text) in verdicts(rs[i].action) {
                    let mut expr = vec![lookup.clone()];
                    expr.extend(verdict);
                    rules.push(Stmt {
                        expr,
                        text: format!("{lookup_text} {verdict_text}"),
                        comment: comment.clone(),
                    });
                }
            }
        }
        group += 1;
        i = j;
    }

    let mut inbound = vec![
        Stmt::new(
            vec![match_("==", meta("iif"), json!("lo")), json!({"accept": null})],
            "iif \"lo\" accept",
        ),
        // Only traffic addressed to this host; containers' own and routed
        // traffic is not berth's to judge.
        Stmt::new(
            vec![
                match_("!=", json!({"fib": {"result": "type", "flags": ["daddr"]}}), json!("local")),
                json!({"return": null}),
            ],
            "fib daddr type != local return",
        ),
        Stmt::new(
            vec![
                match_("in", json!({"ct": {"key": "state"}}), json!(["established", "related"])),
                json!({"accept": null}),
            ],
            "ct state established,related accept",
        ),
        // What IPv4 and IPv6 cannot work without (path MTU, neighbour
        // discovery, DHCP answers), whatever the rules say.
        Stmt::new(
            vec![
                match_(
                    "==",
                    payload("icmp", "type"),
                    json!({"set": ["destination-unreachable", "time-exceeded", "parameter-problem"]}),
                ),
                json!({"accept": null}),
            ],
            "icmp type { destination-unreachable, time-exceeded, parameter-problem } accept",
        ),
        Stmt::new(
            vec![
                match_(
                    "==",
                    payload("icmpv6", "type"),
                    json!({"set": [
                        "destination-unreachable", "packet-too-big", "time-exceeded",
                        "parameter-problem", "nd-router-solicit", "nd-router-advert",
                        "nd-neighbor-solicit", "nd-neighbor-advert",
                    ]}),
                ),
                json!({"accept": null}),
            ],
            "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept",
        ),
        Stmt::new(
            vec![
                match_("==", payload("udp", "sport"), json!(67)),
                match_("==", payload("udp", "dport"), json!(68)),
                json!({"accept": null}),
            ],
            "udp sport 67 udp dport 68 accept",
        ),
        Stmt::new(
            vec![
                match_("==", payload("udp", "sport"), json!(547)),
                match_("==", payload("udp", "dport"), json!(546)),
                json!({"accept": null}),
            ],
            "udp sport 547 udp dport 546 accept",
        ),
    ];
    if inputs.mode == Mode::Standalone {
        inbound.push(Stmt::new(
            vec![
                match_("in", json!({"ct": {"key": "state"}}), json!(["invalid"])),
                json!({"drop": null}),
            ],
            "ct state invalid drop",
        ));
    }
    inbound.push(Stmt::new(
        vec![json!({"jump": {"target": "rules"}})],
        "jump rules",
    ));
    match inputs.mode {
        Mode::Standalone => inbound.push(Stmt {
            expr: vec![json!({"counter": null}), json!({"drop": null})],
            text: "counter drop".into(),
            comment: Some("default policy: drop other inbound".into()),
        }),
        Mode::Coexist => {
            let mut published: Vec<Elem> = inputs
                .published
                .iter()
                .flat_map(|&(p, port)| {
                    let protos: &[u8] = match p {
                        Protocol::Tcp => &[6],
                        Protocol::Udp => &[17],
                        _ => &[],
                    };
                    protos
                        .iter()
                        .map(move |&proto| Elem::Published { proto, port })
                })
                .collect();
            published.sort_by_key(|e| e.text());
            published.dedup();
            sets.push(Set {
                name: "published".into(),
                kind: SetKind::Published,
                elements: published,
            });
            inbound.push(Stmt {
                expr: vec![
                    match_(
                        "==",
                        json!({"concat": [meta("l4proto"), payload("th", "dport")]}),
                        json!("@published"),
                    ),
                    json!({"counter": null}),
                    json!({"drop": null}),
                ],
                text: "meta l4proto . th dport @published counter drop".into(),
                comment: Some("default policy: drop other inbound to published ports".into()),
            });
        }
    }
    Ruleset {
        table: Some(Table {
            sets,
            inbound,
            rules,
        }),
    }
}

fn meter_update(meter: &str, v6: bool, limit: RateLimit) -> Value {
    json!({"set": {
        "op": "update",
        "elem": payload(if v6 { "ip6" } else { "ip" }, "saddr"),
        "set": format!("@{meter}"),
        "stmt": [{"limit": {
            "rate": limit.count, "burst": limit.count, "per": limit.per.as_str(), "inv": true,
        }}],
    }})
}

/// The verdict berth's loaded table gives a new connection, worked out
/// without the kernel: the lockout guard and the exposure report use it.
/// `None` means the table lets it through (accept, or no table at all).
pub fn judge(
    inputs: &Inputs,
    protocol: Protocol,
    port: u16,
    source: IpAddr,
) -> Option<(Option<usize>, Action)> {
    if !inputs.enabled {
        return None;
    }
    if let Some((i, action)) =
        app::api::firewall::first_match(&inputs.rules, protocol, port, source)
    {
        return match action {
            Action::Allow => None,
            a => Some((Some(i), a)),
        };
    }
    let published = inputs.published.contains(&(protocol, port));
    match inputs.mode {
        Mode::Standalone => Some((None, Action::Deny)),
        Mode::Coexist if published => Some((None, Action::Deny)),
        Mode::Coexist => None,
    }
}

/// The allow rule that lets this connection in, if one does.
pub fn first_allow(
    inputs: &Inputs,
    protocol: Protocol,
    port: u16,
    source: IpAddr,
) -> Option<usize> {
    app::api::firewall::first_match(&inputs.rules, protocol, port, source)
        .filter(|(_, a)| *a == Action::Allow)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::api::firewall::{check_rule, Rule};

    fn checked(rules: &[(Action, Protocol, &str, &[&str])]) -> Vec<CheckedRule> {
        rules
            .iter()
            .enumerate()
            .map(|(i, (a, p, ports, sources))| {
                check_rule(
                    i,
                    &Rule {
                        name: None,
                        action: *a,
                        protocol: *p,
                        ports: ports.to_string(),
                        sources: sources.iter().map(|s| s.to_string()).collect(),
                        rate_limit: None,
                        comment: String::new(),
                    },
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn off_means_no_table() {
        let r = compile(&Inputs::default());
        assert!(r.is_empty());
        let tx = r.transaction().to_string();
        assert!(tx.contains("\"delete\""));
        assert_eq!(r.text(), "");
    }

    #[test]
    fn a_blocklist_is_one_lookup() {
        let sources: Vec<String> = (0..1000)
            .map(|i| format!("10.{}.{}.1", i / 256, i % 256))
            .collect();
        let rules: Vec<CheckedRule> = sources
            .iter()
            .map(|s| checked(&[(Action::Deny, Protocol::Tcp, "22", &[s.as_str()])]).remove(0))
            .collect();
        let r = compile(&Inputs {
            enabled: true,
            rules,
            ..Inputs::default()
        });
        assert_eq!(r.rule_count(), 1, "{}", r.text());
        assert_eq!(r.element_count(), 1000);
    }

    #[test]
    fn overlapping_rules_of_one_verdict_fold_into_sets_the_kernel_takes() {
        let rules = checked(&[
            (Action::Deny, Protocol::Tcp, "22", &["1.2.3.0/24"]),
            (
                Action::Deny,
                Protocol::Tcp,
                "22",
                &["1.2.3.4", "10.0.0.0/8", "10.1.0.0/16"],
            ),
            (Action::Deny, Protocol::Tcp, "22,2222", &["10.0.0.0/8"]),
            (Action::Deny, Protocol::Any, "", &["10.9.9.9"]),
        ]);
        let r = compile(&Inputs {
            enabled: true,
            rules,
            ..Inputs::default()
        });
        let text = r.text();
        // Contained networks go; "any" from 10.9.9.9 crosses tcp 22 from
        // 10/8 and so goes to a second set.
        assert!(!text.contains("1.2.3.4/32"), "{text}");
        assert!(!text.contains("10.1.0.0/16"), "{text}");
        assert!(
            text.contains("@r0_v4 drop") && text.contains("@r0_v4_1 drop"),
            "{text}"
        );
        let t = r.table.as_ref().unwrap();
        for set in t.sets.iter().filter(|s| s.kind == SetKind::Match4) {
            let elems: Vec<&Elem> = set.elements.iter().collect();
            for (a, x) in elems.iter().enumerate() {
                for y in &elems[a + 1..] {
                    let (
                        Elem::Match {
                            net: n1,
                            proto: p1,
                            ports: q1,
                        },
                        Elem::Match {
                            net: n2,
                            proto: p2,
                            ports: q2,
                        },
                    ) = (x, y)
                    else {
                        continue;
                    };
                    let meet = p1.0 <= p2.1
                        && p2.0 <= p1.1
                        && q1.0 <= q2.1
                        && q2.0 <= q1.1
                        && nets_meet(&[*n1], &[*n2]);
                    assert!(!meet, "{} overlaps {} in {}", x.text(), y.text(), set.name);
                }
            }
        }
    }

    #[test]
    fn verdict_changes_keep_their_order() {
        let rules = checked(&[
            (Action::Allow, Protocol::Tcp, "22", &["10.0.0.0/8"]),
            (Action::Deny, Protocol::Tcp, "22", &[]),
            (Action::Reject, Protocol::Udp, "53", &["2001:db8::/32"]),
        ]);
        let r = compile(&Inputs {
            enabled: true,
            rules,
            ..Inputs::default()
        });
        let text = r.text();
        let allow = text.find("@r0_v4 accept").unwrap();
        let deny4 = text.find("@r1_v4 drop").unwrap();
        let deny6 = text.find("@r1_v6 drop").unwrap();
        let reject = text.find("@r2_v6 meta l4proto tcp reject").unwrap();
        assert!(allow < deny4 && deny4 < deny6 && deny6 < reject, "{text}");
        assert!(!text.contains("r0_v6"), "an IPv4-only rule has no IPv6 set");
        assert!(!text.contains("r2_v4"));
        assert!(text.contains("10.0.0.0/8 . 6 . 22"));
        assert!(text.contains("2001:db8::/32 . 17 . 53"));
        assert!(text.contains("counter drop"));
    }

    #[test]
    fn judging_follows_the_rules_then_the_default() {
        let inputs = Inputs {
            enabled: true,
            rules: checked(&[
                (Action::Allow, Protocol::Tcp, "8443", &["192.0.2.0/24"]),
                (Action::Deny, Protocol::Tcp, "8443", &[]),
                (Action::Allow, Protocol::Tcp, "80,443", &[]),
            ]),
            ..Inputs::default()
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(judge(&inputs, Protocol::Tcp, 8443, ip("192.0.2.7")), None);
        assert_eq!(
            judge(&inputs, Protocol::Tcp, 8443, ip("198.51.100.1")),
            Some((Some(1), Action::Deny))
        );
        assert_eq!(judge(&inputs, Protocol::Tcp, 443, ip("198.51.100.1")), None);
        assert_eq!(
            judge(&inputs, Protocol::Udp, 53, ip("198.51.100.1")),
            Some((None, Action::Deny))
        );
        let coexist = Inputs {
            mode: Mode::Coexist,
            published: vec![(Protocol::Tcp, 5432)],
            ..inputs
        };
        assert_eq!(judge(&coexist, Protocol::Udp, 53, ip("198.51.100.1")), None);
        assert_eq!(
            judge(&coexist, Protocol::Tcp, 5432, ip("198.51.100.1")),
            Some((None, Action::Deny))
        );
    }
}
