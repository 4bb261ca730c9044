//! The domain editor's text fields and the `DomainSpec` they stand for.
//! Lists are edited as lines (one route, header, user, network or limit per
//! line); a line that cannot be read comes back as a field error naming it.

use std::collections::BTreeMap;

use crate::api::{
    default_connect_timeout, default_max_body, default_read_timeout, BasicAuthUser, DomainSpec,
    PathRoute, RateLimit, RatePeriod, Target, WwwRedirect,
};
use crate::client::ClientError;
use crate::pages::widgets::problem;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainForm {
    pub host: String,
    /// `app:NAME:PORT`, `http://…` or `static:VOLUME[/dir]`.
    pub target: String,
    /// `PATH TARGET [strip]` per line.
    pub routes: String,
    /// `auto`, `on` or `off`.
    pub https_redirect: String,
    /// `off`, `to_apex` or `to_www`.
    pub www: String,
    pub hsts: bool,
    pub auto_certificate: bool,
    /// `Name: value` per line.
    pub headers: String,
    /// `user:password` per line; `user` alone keeps the current password.
    pub users: String,
    pub allow: String,
    pub deny: String,
    /// `PATH N/s|N/m [burst B]` per line.
    pub rate_limits: String,
    pub max_body_mb: String,
    pub connect_timeout_s: String,
    pub read_timeout_s: String,
    pub maintenance_message: String,
    pub allow_private_upstream: bool,
}

impl DomainForm {
    /// An empty form with the API's defaults filled in.
    pub fn with_defaults() -> DomainForm {
        DomainForm {
            https_redirect: "auto".into(),
            www: "off".into(),
            hsts: true,
            auto_certificate: true,
            max_body_mb: (default_max_body() / (1024 * 1024)).to_string(),
            connect_timeout_s: default_connect_timeout().to_string(),
            read_timeout_s: default_read_timeout().to_string(),
            ..Default::default()
        }
    }
}

pub fn target_text(t: &Target) -> String {
    match t {
        Target::App { app, port } => format!("app:{app}:{port}"),
        Target::Url { url } => url.clone(),
        Target::Static { volume, dir } => match dir {
            Some(d) => format!("static:{volume}/{d}"),
            None => format!("static:{volume}"),
        },
    }
}

fn parse_target(field: &str, s: &str) -> Result<Target, ClientError> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("app:") {
        let (app, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| problem(field, "write app:NAME:PORT, e.g. app:web:8080"))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| problem(field, "the port must be 1..=65535"))?;
        return Ok(Target::App {
            app: app.to_string(),
            port,
        });
    }
    if let Some(rest) = s.strip_prefix("static:") {
        let (volume, dir) = match rest.split_once('/') {
            Some((v, d)) => (v, Some(d.to_string()).filter(|d| !d.is_empty())),
            None => (rest, None),
        };
        return Ok(Target::Static {
            volume: volume.to_string(),
            dir,
        });
    }
    if s.starts_with("http://") || s.starts_with("https://") {
        return Ok(Target::Url { url: s.to_string() });
    }
    Err(problem(
        field,
        "a target is app:NAME:PORT, an http:// URL or static:VOLUME",
    ))
}

fn lines(s: &str) -> impl Iterator<Item = (usize, &str)> {
    s.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

pub fn to_form(spec: &DomainSpec) -> DomainForm {
    DomainForm {
        host: spec.host.clone(),
        target: target_text(&spec.target),
        routes: spec
            .routes
            .iter()
            .map(|r| {
                let strip = if r.strip_prefix { " strip" } else { "" };
                format!("{} {}{strip}", r.path, target_text(&r.target))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        https_redirect: match spec.https_redirect {
            None => "auto",
            Some(true) => "on",
            Some(false) => "off",
        }
        .into(),
        www: match spec.www {
            WwwRedirect::Off => "off",
            WwwRedirect::ToApex => "to_apex",
            WwwRedirect::ToWww => "to_www",
        }
        .into(),
        hsts: spec.hsts,
        auto_certificate: spec.auto_certificate,
        headers: spec
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("\n"),
        users: spec
            .basic_auth
            .iter()
            .map(|u| u.username.clone())
            .collect::<Vec<_>>()
            .join("\n"),
        allow: spec.allow.join("\n"),
        deny: spec.deny.join("\n"),
        rate_limits: spec
            .rate_limits
            .iter()
            .map(|l| {
                let per = match l.per {
                    RatePeriod::Second => "s",
                    RatePeriod::Minute => "m",
                };
                let burst = if l.burst > 0 {
                    format!(" burst {}", l.burst)
                } else {
                    String::new()
                };
                format!("{} {}/{per}{burst}", l.path, l.requests)
            })
            .collect::<Vec<_>>()
            .join("\n"),
        max_body_mb: format!("{}", spec.max_body_bytes as f64 / (1024.0 * 1024.0)),
        connect_timeout_s: spec.connect_timeout_s.to_string(),
        read_timeout_s: spec.read_timeout_s.to_string(),
        maintenance_message: spec.maintenance_message.clone().unwrap_or_default(),
        allow_private_upstream: spec.allow_private_upstream,
    }
}

fn number<T: std::str::FromStr>(field: &str, s: &str, what: &str) -> Result<T, ClientError> {
    s.trim()
        .parse()
        .map_err(|_| problem(field, format!("{what} must be a number")))
}

pub fn to_spec(f: &DomainForm) -> Result<DomainSpec, ClientError> {
    let mut routes = Vec::new();
    for (n, line) in lines(&f.routes) {
        let field = "routes";
        let mut words = line.split_whitespace();
        let (Some(path), Some(target)) = (words.next(), words.next()) else {
            return Err(problem(
                field,
                format!("line {n}: write PATH TARGET [strip]"),
            ));
        };
        let strip_prefix = match words.next() {
            None => false,
            Some("strip") => true,
            Some(other) => {
                return Err(problem(field, format!("line {n}: unexpected `{other}`")));
            }
        };
        routes.push(PathRoute {
            path: path.to_string(),
            target: parse_target(field, target)
                .map_err(|e| problem(field, format!("line {n}: {}", e.message)))?,
            strip_prefix,
        });
    }
    let mut headers = BTreeMap::new();
    for (n, line) in lines(&f.headers) {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| problem("headers", format!("line {n}: write Name: value")))?;
        headers.insert(k.trim().to_string(), v.trim().to_string());
    }
    let basic_auth = lines(&f.users)
        .map(|(_, line)| match line.split_once(':') {
            Some((u, p)) => BasicAuthUser {
                username: u.to_string(),
                password: Some(p.to_string()),
            },
            None => BasicAuthUser {
                username: line.to_string(),
                password: None,
            },
        })
        .collect();
    let mut rate_limits = Vec::new();
    for (n, line) in lines(&f.rate_limits) {
        let field = "rate_limits";
        let bad = || problem(field, format!("line {n}: write PATH N/s or N/m [burst B]"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let (path, rate) = match words.as_slice() {
            [p, r] | [p, r, "burst", _] => (*p, *r),
            _ => return Err(bad()),
        };
        let (requests, per) = rate.split_once('/').ok_or_else(bad)?;
        let per = match per {
            "s" | "sec" | "second" => RatePeriod::Second,
            "m" | "min" | "minute" => RatePeriod::Minute,
            _ => return Err(bad()),
        };
        let burst = match words.get(3) {
            Some(b) => b.parse().map_err(|_| bad())?,
            None => 0,
        };
        rate_limits.push(RateLimit {
            path: path.to_string(),
            requests: requests.parse().map_err(|_| bad())?,
            per,
            burst,
        });
    }
    let mb: f64 = number("max_body_bytes", &f.max_body_mb, "the body limit")?;
    Ok(DomainSpec {
        host: f.host.trim().to_string(),
        target: parse_target("target", &f.target)?,
        routes,
        https_redirect: match f.https_redirect.as_str() {
            "on" => Some(true),
            "off" => Some(false),
            _ => None,
        },
        www: match f.www.as_str() {
            "to_apex" => WwwRedirect::ToApex,
            "to_www" => WwwRedirect::ToWww,
            _ => WwwRedirect::Off,
        },
        hsts: f.hsts,
        auto_certificate: f.auto_certificate,
        headers,
        basic_auth,
        allow: lines(&f.allow).map(|(_, l)| l.to_string()).collect(),
        deny: lines(&f.deny).map(|(_, l)| l.to_string()).collect(),
        rate_limits,
        max_body_bytes: (mb * 1024.0 * 1024.0).round() as u64,
        connect_timeout_s: number("connect_timeout_s", &f.connect_timeout_s, "the timeout")?,
        read_timeout_s: number("read_timeout_s", &f.read_timeout_s, "the timeout")?,
        maintenance_message: Some(f.maintenance_message.trim().to_string())
            .filter(|m| !m.is_empty()),
        allow_private_upstream: f.allow_private_upstream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_round_trips_through_the_spec() {
        let mut f = DomainForm::with_defaults();
        f.host = "example.com".into();
        f.target = "app:web:8080".into();
        f.routes = "/api app:api:3000 strip\n# comment\n/files static:site/public".into();
        f.headers = "X-Frame-Options: DENY".into();
        f.users = "alice:s3cret\nbob".into();
        f.allow = "10.0.0.0/8\n\n2001:db8::/32".into();
        f.rate_limits = "/api 10/s burst 20\n/api/auth/login 5/m".into();
        let spec = to_spec(&f).unwrap();
        assert_eq!(spec.routes.len(), 2);
        assert!(spec.routes[0].strip_prefix);
        assert_eq!(spec.basic_auth[0].password.as_deref(), Some("s3cret"));
        assert_eq!(spec.basic_auth[1].password, None);
        assert_eq!(spec.rate_limits[0].burst, 20);
        assert_eq!(spec.rate_limits[1].per, RatePeriod::Minute);
        assert_eq!(spec.max_body_bytes, default_max_body());
        let back = to_form(&spec);
        assert_eq!(
            back.routes,
            "/api app:api:3000 strip\n/files static:site/public"
        );
        assert_eq!(back.rate_limits, "/api 10/s burst 20\n/api/auth/login 5/m");
        // Passwords are never shown again.
        assert_eq!(back.users, "alice\nbob");
    }

    #[test]
    fn unreadable_lines_name_their_field_and_line() {
        let mut f = DomainForm::with_defaults();
        f.host = "example.com".into();
        f.target = "app:web:8080".into();
        f.rate_limits = "/api ten/s".into();
        let e = to_spec(&f).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("rate_limits"));
        assert!(e.message.contains("line 1"), "{}", e.message);
        f.rate_limits.clear();
        f.target = "web".into();
        assert_eq!(to_spec(&f).unwrap_err().field.as_deref(), Some("target"));
    }
}
