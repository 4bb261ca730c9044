//! Ready-made rules. Restricted ones come filled in with the caller's own
//! address, the network most admins mean when they say "only from me".

use std::net::IpAddr;

use app::api::firewall::{Action, Preset, Protocol, Rule};

fn rule(
    action: Action,
    protocol: Protocol,
    ports: &str,
    sources: &[String],
    comment: &str,
) -> Rule {
    Rule {
        name: None,
        action,
        protocol,
        ports: ports.into(),
        sources: sources.to_vec(),
        rate_limit: None,
        comment: comment.into(),
    }
}

/// The presets for a caller at `client`, with the panel on `panel_port`.
pub fn presets(client: IpAddr, panel_port: u16) -> Vec<Preset> {
    // An in-process or loopback caller has no outside address to offer.
    let mine: Vec<String> = match client {
        c if c.is_unspecified() || c.is_loopback() => Vec::new(),
        IpAddr::V4(_) => vec![ipnet::IpNet::from(client).to_string()],
        // IPv6 clients change their address (privacy extensions) within
        // their /64; a /128 would lock them out a day later.
        IpAddr::V6(v6) => vec![ipnet::Ipv6Net::new(v6, 64)
            .expect("64 is a valid prefix")
            .trunc()
            .to_string()],
    };
    // Without an outside address, "restricted" rules come from anywhere:
    // say so where the admin reads them.
    let fill_in = if mine.is_empty() {
        " You connect from this host, so the restricted rules come with no sources \
         (anywhere): fill in your networks before saving."
    } else {
        ""
    };
    let mut ssh = rule(
        Action::Allow,
        Protocol::Tcp,
        "22",
        &mine,
        "SSH from trusted networks",
    );
    ssh.rate_limit = Some("10/minute".into());
    let panel = rule(
        Action::Allow,
        Protocol::Tcp,
        &panel_port.to_string(),
        &mine,
        "berth's panel",
    );
    let http = rule(Action::Allow, Protocol::Tcp, "80", &[], "HTTP");
    let https = rule(Action::Allow, Protocol::Tcp, "443", &[], "HTTPS");
    let databases = rule(
        Action::Deny,
        Protocol::Tcp,
        "3306,5432,6379,27017",
        &[],
        "databases stay internal",
    );
    vec![
        Preset {
            id: "vps-guide".into(),
            name: "VPS guide".into(),
            description: "The usual VPS table: SSH only from your networks, HTTP and HTTPS \
                          open, 3001 and 5432 blocked, and the panel kept open for you."
                .to_string()
                + fill_in,
            rules: vec![
                ssh.clone(),
                panel.clone(),
                http.clone(),
                https.clone(),
                rule(
                    Action::Deny,
                    Protocol::Tcp,
                    "3001",
                    &[],
                    "app port stays behind the proxy",
                ),
                rule(
                    Action::Deny,
                    Protocol::Tcp,
                    "5432",
                    &[],
                    "database stays internal",
                ),
            ],
        },
        Preset {
            id: "ssh".into(),
            name: "SSH, restricted".into(),
            description: "SSH from the given networks only, at most 10 new connections a \
                          minute per address. Edit the sources to your own networks."
                .to_string()
                + fill_in,
            rules: vec![ssh],
        },
        Preset {
            id: "web".into(),
            name: "HTTP and HTTPS".into(),
            description: "Ports 80 and 443 open to everyone, for berth's proxy.".into(),
            rules: vec![http, https],
        },
        Preset {
            id: "panel".into(),
            name: "berth's panel".into(),
            description: format!(
                "TCP {panel_port} from your address, so you keep the panel.{fill_in}"
            ),
            rules: vec![panel],
        },
        Preset {
            id: "databases-closed".into(),
            name: "Databases closed".into(),
            description: "MySQL, PostgreSQL, Redis and MongoDB ports dropped from everywhere, \
                          published container ports included."
                .into(),
            rules: vec![databases],
        },
        Preset {
            id: "ping".into(),
            name: "Ping".into(),
            description: "Answer ICMP (and ICMPv6) from everyone.".into(),
            rules: vec![rule(Action::Allow, Protocol::Icmp, "", &[], "ping")],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_and_the_guide_keeps_the_panel() {
        let me: IpAddr = "198.51.100.9".parse().unwrap();
        for p in presets(me, 8443) {
            for (i, r) in p.rules.iter().enumerate() {
                app::api::firewall::check_rule(i, r).unwrap_or_else(|e| panic!("{}: {e:?}", p.id));
            }
        }
        let guide = presets(me, 8443).remove(0);
        let checked: Vec<_> = guide
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| app::api::firewall::check_rule(i, r).unwrap())
            .collect();
        let verdict = |port, from: &str| {
            app::api::firewall::first_match(&checked, Protocol::Tcp, port, from.parse().unwrap())
                .map(|(_, a)| a)
        };
        assert_eq!(verdict(8443, "198.51.100.9"), Some(Action::Allow));
        assert_eq!(verdict(22, "198.51.100.9"), Some(Action::Allow));
        assert_eq!(
            verdict(22, "203.0.113.1"),
            None,
            "others fall to the default drop"
        );
        assert_eq!(verdict(443, "203.0.113.1"), Some(Action::Allow));
        assert_eq!(verdict(5432, "198.51.100.9"), Some(Action::Deny));
        assert_eq!(verdict(3001, "203.0.113.1"), Some(Action::Deny));
    }
}
