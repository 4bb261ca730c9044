//! The "New app" form's text fields, one item per line, turned into an
//! `AppSpec`. Pure functions: the browser gives quick feedback with the
//! offending line, and berth still validates everything again.

use std::collections::BTreeMap;

use crate::api::{AppSpec, DesiredState, Limits, PortSpec, Protocol, RestartPolicy, VolumeSpec};

/// A problem in one form field, e.g. `("ports", "line 2: …")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: &'static str,
    pub message: String,
}

fn problem(field: &'static str, message: impl Into<String>) -> Problem {
    Problem {
        field,
        message: message.into(),
    }
}

/// Non-blank lines with their 1-based line numbers, trimmed.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
}

/// One argv item per line (no shell: spaces stay inside their item).
pub fn parse_command(text: &str) -> Vec<String> {
    lines(text).map(|(_, l)| l.to_string()).collect()
}

/// `KEY=VALUE` per line; `#` starts a comment line. The value is kept as
/// written after the first `=` (it may be empty or contain `=`).
pub fn parse_env(text: &str) -> Result<BTreeMap<String, String>, Problem> {
    let mut env = BTreeMap::new();
    for (n, line) in lines(text).filter(|(_, l)| !l.starts_with('#')) {
        let Some((key, value)) = line.split_once('=') else {
            return Err(problem("env", format!("line {n}: expected KEY=VALUE")));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(problem(
                "env",
                format!("line {n}: the name before '=' is empty"),
            ));
        }
        if env.insert(key.to_string(), value.to_string()).is_some() {
            return Err(problem("env", format!("line {n}: {key} is set twice")));
        }
    }
    Ok(env)
}

fn port_number(n: usize, s: &str) -> Result<u16, Problem> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(problem(
            "ports",
            format!("line {n}: {s:?} is not a port (1 to 65535)"),
        )),
    }
}

/// `8080` (container only), `18080:8080` (published on all addresses),
/// `127.0.0.1:18080:8080` or `[::1]:18080:8080`, each optionally `/udp` or
/// `/tcp`.
pub fn parse_port(n: usize, line: &str) -> Result<PortSpec, Problem> {
    let (rest, protocol) = match line.rsplit_once('/') {
        Some((rest, "tcp")) => (rest, Protocol::Tcp),
        Some((rest, "udp")) => (rest, Protocol::Udp),
        Some((_, other)) => {
            return Err(problem(
                "ports",
                format!("line {n}: protocol {other:?} is neither tcp nor udp"),
            ))
        }
        None => (line, Protocol::Tcp),
    };
    let (bind, rest) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once("]:") {
            Some((addr, rest)) => (Some(addr.to_string()), rest),
            None => {
                return Err(problem(
                    "ports",
                    format!("line {n}: expected [address]:host:container"),
                ))
            }
        },
        None => (None, rest),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (bind, host, container) = match (bind, parts.as_slice()) {
        (None, [c]) => (None, None, c),
        (None, [h, c]) => (None, Some(h), c),
        (None, [addr, h, c]) => (Some(addr.to_string()), Some(h), c),
        (Some(addr), [h, c]) => (Some(addr), Some(h), c),
        _ => {
            return Err(problem(
                "ports",
                format!("line {n}: expected container, host:container or address:host:container"),
            ))
        }
    };
    if bind.as_deref() == Some("") {
        return Err(problem("ports", format!("line {n}: the address is empty")));
    }
    Ok(PortSpec {
        container: port_number(n, container)?,
        host: host.map(|h| port_number(n, h)).transpose()?,
        bind,
        protocol,
    })
}

pub fn parse_ports(text: &str) -> Result<Vec<PortSpec>, Problem> {
    lines(text).map(|(n, l)| parse_port(n, l)).collect()
}

/// A port as the form writes it; the inverse of `parse_port`.
pub fn port_label(p: &PortSpec) -> String {
    let mut s = match (&p.bind, p.host) {
        (Some(b), Some(h)) if b.contains(':') => format!("[{b}]:{h}:"),
        (Some(b), Some(h)) => format!("{b}:{h}:"),
        (_, Some(h)) => format!("{h}:"),
        (_, None) => String::new(),
    };
    s.push_str(&p.container.to_string());
    if p.protocol == Protocol::Udp {
        s.push_str("/udp");
    }
    s
}

/// `source:/target`, optionally `:ro` (or `:rw`). The source is a volume
/// name or an absolute host path.
pub fn parse_volumes(text: &str) -> Result<Vec<VolumeSpec>, Problem> {
    lines(text)
        .map(|(n, line)| {
            let parts: Vec<&str> = line.split(':').collect();
            let (source, target, read_only) = match parts.as_slice() {
                [s, t] => (s, t, false),
                [s, t, "ro"] => (s, t, true),
                [s, t, "rw"] => (s, t, false),
                [_, _, mode] => {
                    return Err(problem(
                        "volumes",
                        format!("line {n}: mode {mode:?} is neither ro nor rw"),
                    ))
                }
                _ => {
                    return Err(problem(
                        "volumes",
                        format!("line {n}: expected source:/target or source:/target:ro"),
                    ))
                }
            };
            if source.is_empty() {
                return Err(problem("volumes", format!("line {n}: the source is empty")));
            }
            if !target.starts_with('/') {
                return Err(problem(
                    "volumes",
                    format!("line {n}: the target must be an absolute path inside the container"),
                ));
            }
            Ok(VolumeSpec {
                source: source.to_string(),
                target: target.to_string(),
                read_only,
            })
        })
        .collect()
}

/// Comma (or whitespace) separated network names.
pub fn parse_networks(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Comma (or whitespace) separated secret group names, in precedence
/// order (a later group wins), as `secret_groups` takes them.
pub fn parse_secret_groups(text: &str) -> Vec<String> {
    parse_networks(text)
}

fn optional<T: std::str::FromStr>(
    field: &'static str,
    text: &str,
    what: &str,
) -> Result<Option<T>, Problem> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| problem(field, format!("{text:?} is not {what}")))
}

pub fn parse_restart(s: &str) -> RestartPolicy {
    match s {
        "no" => RestartPolicy::No,
        "always" => RestartPolicy::Always,
        "on-failure" => RestartPolicy::OnFailure,
        _ => RestartPolicy::UnlessStopped,
    }
}

/// The form's fields as typed.
#[derive(Debug, Clone, Default)]
pub struct AppForm {
    pub name: String,
    pub image: String,
    pub command: String,
    pub env: String,
    pub ports: String,
    pub volumes: String,
    pub networks: String,
    pub restart: String,
    pub memory_mb: String,
    pub cpus: String,
    pub pids: String,
    pub state: String,
    pub secret_groups: String,
    pub redeploy_on_secret_change: bool,
}

impl AppForm {
    pub fn to_spec(&self) -> Result<AppSpec, Problem> {
        Ok(AppSpec {
            name: self.name.trim().to_string(),
            image: self.image.trim().to_string(),
            command: parse_command(&self.command),
            env: parse_env(&self.env)?,
            ports: parse_ports(&self.ports)?,
            volumes: parse_volumes(&self.volumes)?,
            networks: parse_networks(&self.networks),
            restart: parse_restart(&self.restart),
            limits: Limits {
                memory_mb: optional("limits.memory_mb", &self.memory_mb, "a whole number of MiB")?,
                cpus: optional("limits.cpus", &self.cpus, "a number of CPUs such as 0.5")?,
                pids: optional("limits.pids", &self.pids, "a whole number")?,
            },
            state: if self.state == "stopped" {
                DesiredState::Stopped
            } else {
                DesiredState::Running
            },
            secret_groups: parse_secret_groups(&self.secret_groups),
            redeploy_on_secret_change: self.redeploy_on_secret_change,
            ..AppSpec::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(bind: Option<&str>, host: Option<u16>, container: u16, protocol: Protocol) -> PortSpec {
        PortSpec {
            container,
            host,
            bind: bind.map(str::to_string),
            protocol,
        }
    }

    #[test]
    fn command_lines_are_argv_items_and_blank_lines_are_skipped() {
        assert_eq!(
            parse_command("nginx\n\n  -g  \ndaemon off;\r\n"),
            vec!["nginx", "-g", "daemon off;"]
        );
        assert!(parse_command(" \n").is_empty());
    }

    #[test]
    fn env_lines_split_at_the_first_equals_sign() {
        let env = parse_env("A=1\n# comment\nB=x=y\n\nEMPTY=\n").unwrap();
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "x=y");
        assert_eq!(env["EMPTY"], "");
        assert_eq!(env.len(), 3);
    }

    #[test]
    fn env_problems_name_the_line() {
        assert_eq!(
            parse_env("A=1\nnoequals").unwrap_err(),
            problem("env", "line 2: expected KEY=VALUE")
        );
        assert!(parse_env("=x").unwrap_err().message.contains("line 1"));
        assert!(parse_env("A=1\nA=2")
            .unwrap_err()
            .message
            .contains("set twice"));
    }

    #[test]
    fn the_three_port_forms_parse() {
        assert_eq!(
            parse_port(1, "8080").unwrap(),
            port(None, None, 8080, Protocol::Tcp)
        );
        assert_eq!(
            parse_port(1, "18080:8080").unwrap(),
            port(None, Some(18080), 8080, Protocol::Tcp)
        );
        assert_eq!(
            parse_port(1, "127.0.0.1:18080:8080/udp").unwrap(),
            port(Some("127.0.0.1"), Some(18080), 8080, Protocol::Udp)
        );
        assert_eq!(
            parse_port(1, "[::1]:53:53/udp").unwrap(),
            port(Some("::1"), Some(53), 53, Protocol::Udp)
        );
        assert_eq!(
            parse_port(1, "80/tcp").unwrap(),
            port(None, None, 80, Protocol::Tcp)
        );
    }

    #[test]
    fn bad_ports_name_the_line() {
        for bad in [
            "0", "70000", "http", "1:2:3:4", "80/sctp", ":80:80", "[::1]80", "18080:",
        ] {
            let e = parse_ports(&format!("8080\n{bad}")).unwrap_err();
            assert_eq!(e.field, "ports", "{bad}");
            assert!(e.message.starts_with("line 2:"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn port_labels_read_back_as_the_same_port() {
        for text in [
            "8080",
            "18080:8080",
            "127.0.0.1:18080:8080/udp",
            "[::1]:53:53/udp",
        ] {
            assert_eq!(port_label(&parse_port(1, text).unwrap()), text);
        }
    }

    #[test]
    fn volume_lines_parse_with_an_optional_mode() {
        let v = parse_volumes("data:/var/lib/data\n/srv/site:/usr/share/nginx/html:ro").unwrap();
        assert_eq!(
            v,
            vec![
                VolumeSpec {
                    source: "data".into(),
                    target: "/var/lib/data".into(),
                    read_only: false
                },
                VolumeSpec {
                    source: "/srv/site".into(),
                    target: "/usr/share/nginx/html".into(),
                    read_only: true
                },
            ]
        );
        for bad in ["data", "data:relative", "data:/x:rx", ":/x", "a:/b:ro:x"] {
            let e = parse_volumes(bad).unwrap_err();
            assert_eq!(e.field, "volumes", "{bad}");
        }
    }

    #[test]
    fn networks_are_comma_separated() {
        assert_eq!(
            parse_networks(" web, db ,,\nextra"),
            vec!["web", "db", "extra"]
        );
        assert!(parse_networks("").is_empty());
    }

    #[test]
    fn a_whole_form_becomes_a_spec() {
        let form = AppForm {
            name: " web ".into(),
            image: "nginx:1.27".into(),
            command: "nginx\n-g\ndaemon off;".into(),
            env: "A=1".into(),
            ports: "18080:80".into(),
            volumes: "site:/usr/share/nginx/html:ro".into(),
            networks: "front".into(),
            restart: "always".into(),
            memory_mb: "256".into(),
            cpus: "0.5".into(),
            pids: "".into(),
            state: "stopped".into(),
            secret_groups: "shared, db".into(),
            redeploy_on_secret_change: true,
        };
        let spec = form.to_spec().unwrap();
        assert_eq!(spec.name, "web");
        assert_eq!(spec.command.len(), 3);
        assert_eq!(spec.restart, RestartPolicy::Always);
        assert_eq!(spec.limits.memory_mb, Some(256));
        assert_eq!(spec.limits.cpus, Some(0.5));
        assert_eq!(spec.limits.pids, None);
        assert_eq!(spec.state, DesiredState::Stopped);
        assert_eq!(spec.secret_groups, vec!["shared", "db"]);
        assert!(spec.redeploy_on_secret_change);
    }

    #[test]
    fn limits_that_are_not_numbers_name_their_field() {
        let form = AppForm {
            memory_mb: "lots".into(),
            ..AppForm::default()
        };
        assert_eq!(form.to_spec().unwrap_err().field, "limits.memory_mb");
    }
}
