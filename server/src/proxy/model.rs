//! Validation of a domain's description. Pure: a `DomainSpec` either comes
//! out normalised (punycode host, parsed networks, clean paths) or the first
//! problem comes back naming its field, before anything reaches the proxy.

use std::net::IpAddr;

use app::api::{DomainSpec, PathRoute, Target, WwwRedirect};
use ipnet::IpNet;

use crate::http::error::ApiError;

const MAX_ROUTES: usize = 64;
const MAX_HEADERS: usize = 32;
const MAX_HEADER_VALUE: usize = 4096;
const MAX_USERS: usize = 64;
const MAX_NETWORKS: usize = 1024;
const MAX_BODY: u64 = 64 * 1024 * 1024 * 1024;
const MAX_MESSAGE: usize = 2000;

/// Response headers the proxy sets itself, or that would break HTTP framing.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "keep-alive",
    "te",
    "trailer",
    "host",
    "strict-transport-security",
];

/// Normalises and checks a host name: IDN to punycode, lowercase, LDH
/// labels, at least two labels, no trailing dot, not an IP address.
pub fn normalize_host(field: &str, input: &str) -> Result<String, ApiError> {
    let bad = |why: &str| Err(ApiError::invalid(field, format!("not a host name: {why}")));
    let trimmed = input.trim().trim_end_matches('.');
    if trimmed.is_empty() {
        return bad("empty");
    }
    if trimmed.parse::<IpAddr>().is_ok() || trimmed.starts_with('[') {
        return bad("an IP address; domains route host names");
    }
    // `domain_to_ascii` maps Unicode (UTS 46) but lets through ASCII that is
    // not a host name, so the LDH rule is checked on its output.
    let Ok(ascii) = idna::domain_to_ascii(trimmed) else {
        return bad("invalid international name");
    };
    if ascii.len() > 253 {
        return bad("longer than 253 characters");
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return bad("needs at least two labels, like example.com");
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return bad("each label is 1 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'");
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("the last label cannot be numeric");
    }
    Ok(ascii)
}

/// A path prefix: starts with `/`, no `..`, `.`, `//`, query or fragment,
/// printable ASCII; a trailing `/` is dropped (except for `/` itself).
fn normalize_prefix(field: &str, path: &str) -> Result<String, ApiError> {
    let bad = |why: &str| Err(ApiError::invalid(field, why.to_string()));
    if !path.starts_with('/') {
        return bad("must start with /");
    }
    if path.len() > 512 {
        return bad("at most 512 characters");
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) || path.contains(['?', '#', '%', '\\']) {
        return bad("printable ASCII without spaces, ?, #, % or \\");
    }
    let trimmed = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    if trimmed.is_empty() {
        return Ok("/".into());
    }
    if trimmed
        .split('/')
        .skip(1)
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        && trimmed != "/"
    {
        return bad("no empty, . or .. segments");
    }
    Ok(trimmed.to_string())
}

/// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address.
pub fn parse_network(field: &str, s: &str) -> Result<IpNet, ApiError> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| ApiError::invalid(field, format!("`{s}` is not an address or CIDR network")))
}

/// Addresses no upstream may point at: cloud metadata endpoints answer with
/// credentials to whoever asks from the host.
pub fn is_metadata(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            // 169.254.0.0/16 link-local (AWS, GCP, Azure, OpenStack metadata)
            // and Alibaba's 100.100.100.200.
            (o[0] == 169 && o[1] == 254) || o == [100, 100, 100, 200]
        }
        IpAddr::V6(v6) => {
            // fe80::/10 link-local and AWS's fd00:ec2::254.
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.segments() == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254]
                || v6.to_ipv4_mapped().is_some_and(|v4| is_metadata(v4.into()))
        }
    }
}

/// Loopback, private, unique-local, CGNAT or unspecified: reachable only
/// from this host's side of the network.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_unspecified()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(v4.into()))
        }
    }
}

/// Checks an upstream URL's form and, when its host is an address, where it
/// points. Host names are checked again each time they are resolved.
pub fn check_upstream_url(field: &str, url: &str, allow_private: bool) -> Result<(), ApiError> {
    let bad = |why: String| Err(ApiError::invalid(field, why));
    let Ok(uri) = url.parse::<http::Uri>() else {
        return bad("not a URL".into());
    };
    if uri.scheme_str() != Some("http") {
        return bad("only http:// upstreams are supported".into());
    }
    let Some(host) = uri.host() else {
        return bad("the URL has no host".into());
    };
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return bad("credentials in the URL are not supported".into());
    }
    if uri.query().is_some() {
        return bad("the URL cannot have a query".into());
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => check_upstream_ip(field, ip, allow_private),
        Err(_) => normalize_host(field, host).map(|_| ()).or_else(|_| {
            // Single-label names (`localhost`, a container alias) are fine.
            if host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                if host.eq_ignore_ascii_case("localhost") && !allow_private {
                    return bad("localhost needs allow_private_upstream".into());
                }
                Ok(())
            } else {
                bad("invalid host".into())
            }
        }),
    }
}

pub fn check_upstream_ip(field: &str, ip: IpAddr, allow_private: bool) -> Result<(), ApiError> {
    if is_metadata(ip) || ip.is_multicast() {
        return Err(ApiError::invalid(
            field,
            format!(
                "{ip} is a link-local, metadata or multicast address and cannot be an upstream"
            ),
        ));
    }
    if is_private(ip) && !allow_private {
        return Err(ApiError::invalid(
            field,
            format!("{ip} is a loopback or private address: set allow_private_upstream to use it"),
        ));
    }
    Ok(())
}

fn check_target(field: &str, target: &mut Target, allow_private: bool) -> Result<(), ApiError> {
    match target {
        Target::App { app, port } => {
            crate::apps::model::check_dns_label(&format!("{field}.app"), app)?;
            if *port == 0 {
                return Err(ApiError::invalid(
                    format!("{field}.port"),
                    "must be 1..=65535",
                ));
            }
        }
        Target::Url { url } => {
            *url = url.trim().trim_end_matches('/').to_string();
            check_upstream_url(&format!("{field}.url"), url, allow_private)?;
        }
        Target::Static { volume, dir } => {
            if !crate::apps::model::is_volume_name(volume) {
                return Err(ApiError::invalid(
                    format!("{field}.volume"),
                    "not a Docker volume name",
                ));
            }
            if let Some(d) = dir {
                let clean = normalize_prefix(&format!("{field}.dir"), &format!("/{d}"))?;
                *dir = Some(clean.trim_start_matches('/').to_string()).filter(|d| !d.is_empty());
            }
        }
    }
    Ok(())
}

/// Header names are RFC 9110 tokens; values are visible ASCII and spaces —
/// in particular no CR or LF, which would let a value inject headers.
pub fn check_header(field: &str, name: &str, value: &str) -> Result<(), ApiError> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || name.len() > 128 || !name.bytes().all(token) {
        return Err(ApiError::invalid(
            field,
            format!("`{name}` is not a header name"),
        ));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(ApiError::invalid(
            field,
            format!("{name} is set by the proxy itself (use `hsts` for HSTS)"),
        ));
    }
    if value.len() > MAX_HEADER_VALUE
        || !value
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    {
        return Err(ApiError::invalid(
            field,
            "header values are printable ASCII without line breaks",
        ));
    }
    Ok(())
}

/// Basic-auth user names: no `:` (it separates the password), printable.
fn check_username(field: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 64
        || name.contains(':')
        || !name.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::invalid(
            field,
            "1 to 64 printable characters without spaces or ':'",
        ));
    }
    Ok(())
}

/// Checks and normalises a whole domain. `path_host` is the host from the
/// URL of a `PUT` (already normalised), which the body must not contradict.
pub fn validate(mut spec: DomainSpec, path_host: Option<&str>) -> Result<DomainSpec, ApiError> {
    spec.host = match (path_host, spec.host.trim()) {
        (Some(p), "") => p.to_string(),
        (Some(p), h) => {
            let h = normalize_host("host", h)?;
            if h != p {
                return Err(ApiError::invalid(
                    "host",
                    "differs from the host in the URL",
                ));
            }
            h
        }
        (None, h) => normalize_host("host", h)?,
    };
    match spec.www {
        WwwRedirect::ToWww if !spec.host.starts_with("www.") => {
            return Err(ApiError::invalid(
                "www",
                "to_www needs a host that starts with www.",
            ))
        }
        WwwRedirect::ToApex if spec.host.starts_with("www.") => {
            return Err(ApiError::invalid(
                "www",
                "to_apex needs the apex host (without www.)",
            ))
        }
        _ => {}
    }
    let allow_private = spec.allow_private_upstream;
    check_target("target", &mut spec.target, allow_private)?;

    if spec.routes.len() > MAX_ROUTES {
        return Err(ApiError::invalid("routes", format!("at most {MAX_ROUTES}")));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, PathRoute { path, target, .. }) in spec.routes.iter_mut().enumerate() {
        *path = normalize_prefix(&format!("routes[{i}].path"), path)?;
        if path == "/" {
            return Err(ApiError::invalid(
                format!("routes[{i}].path"),
                "`/` is the domain's own target",
            ));
        }
        if !seen.insert(path.clone()) {
            return Err(ApiError::invalid(
                format!("routes[{i}].path"),
                "the same path appears twice",
            ));
        }
        check_target(&format!("routes[{i}].target"), target, allow_private)?;
    }

    if spec.headers.len() > MAX_HEADERS {
        return Err(ApiError::invalid(
            "headers",
            format!("at most {MAX_HEADERS}"),
        ));
    }
    for (name, value) in &spec.headers {
        check_header(&format!("headers.{name}"), name, value)?;
    }

    if spec.basic_auth.len() > MAX_USERS {
        return Err(ApiError::invalid(
            "basic_auth",
            format!("at most {MAX_USERS} users"),
        ));
    }
    let mut users = std::collections::BTreeSet::new();
    for (i, user) in spec.basic_auth.iter().enumerate() {
        check_username(&format!("basic_auth[{i}].username"), &user.username)?;
        if !users.insert(user.username.clone()) {
            return Err(ApiError::invalid(
                format!("basic_auth[{i}].username"),
                "the same user appears twice",
            ));
        }
        if let Some(p) = &user.password {
            if p.is_empty() || p.len() > 1024 || p.contains(['\r', '\n']) {
                return Err(ApiError::invalid(
                    format!("basic_auth[{i}].password"),
                    "1 to 1024 characters without line breaks",
                ));
            }
        }
    }

    for (list, field) in [(&mut spec.allow, "allow"), (&mut spec.deny, "deny")] {
        if list.len() > MAX_NETWORKS {
            return Err(ApiError::invalid(field, format!("at most {MAX_NETWORKS}")));
        }
        for (i, entry) in list.iter_mut().enumerate() {
            *entry = parse_network(&format!("{field}[{i}]"), entry.trim())?.to_string();
        }
    }

    if spec.rate_limits.len() > MAX_ROUTES {
        return Err(ApiError::invalid(
            "rate_limits",
            format!("at most {MAX_ROUTES}"),
        ));
    }
    for (i, limit) in spec.rate_limits.iter_mut().enumerate() {
        limit.path = normalize_prefix(&format!("rate_limits[{i}].path"), &limit.path)?;
        if !(1..=100_000).contains(&limit.requests) {
            return Err(ApiError::invalid(
                format!("rate_limits[{i}].requests"),
                "must be 1..=100000",
            ));
        }
        if limit.burst > 100_000 {
            return Err(ApiError::invalid(
                format!("rate_limits[{i}].burst"),
                "must be 0..=100000",
            ));
        }
    }

    if spec.max_body_bytes == 0 || spec.max_body_bytes > MAX_BODY {
        return Err(ApiError::invalid(
            "max_body_bytes",
            "must be 1 byte to 64 GiB",
        ));
    }
    if !(1..=300).contains(&spec.connect_timeout_s) {
        return Err(ApiError::invalid("connect_timeout_s", "must be 1..=300"));
    }
    if !(1..=86_400).contains(&spec.read_timeout_s) {
        return Err(ApiError::invalid("read_timeout_s", "must be 1..=86400"));
    }
    if let Some(m) = &spec.maintenance_message {
        if m.len() > MAX_MESSAGE {
            return Err(ApiError::invalid(
                "maintenance_message",
                format!("at most {MAX_MESSAGE} characters"),
            ));
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::api::{BasicAuthUser, RateLimit, RatePeriod};

    fn spec(host: &str) -> DomainSpec {
        serde_json::from_value(serde_json::json!({
            "host": host,
            "target": {"kind": "app", "app": "web", "port": 8080}
        }))
        .unwrap()
    }

    fn field(e: ApiError) -> String {
        match e {
            ApiError::Invalid { field, .. } => field.unwrap_or_default(),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn hosts_are_normalised_to_punycode_and_bad_ones_refused() {
        assert_eq!(
            normalize_host("h", "Bücher.Example.").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            normalize_host("h", "WWW.Example.COM").unwrap(),
            "www.example.com"
        );
        for bad in [
            "<script>.example.com",
            "example",
            "a..b.com",
            "-a.example.com",
            "a_b.example.com",
            "127.0.0.1",
            "[::1]",
            "exa mple.com",
            "example.com/x",
            "example.123",
            "",
        ] {
            assert!(normalize_host("h", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn prefixes_are_cleaned() {
        assert_eq!(normalize_prefix("p", "/api/").unwrap(), "/api");
        assert_eq!(normalize_prefix("p", "/").unwrap(), "/");
        for bad in ["api", "/a/../b", "/a//b", "/a?b", "/a b", "/%2e"] {
            assert!(normalize_prefix("p", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn upstreams_pointing_at_metadata_or_private_addresses_are_refused() {
        for (url, private_ok) in [
            ("http://169.254.169.254/latest", true),
            ("http://[fd00:ec2::254]/", true),
            ("http://100.100.100.200/", true),
            ("http://[::ffff:169.254.169.254]/", true),
            ("http://10.0.0.5:3000", false),
            ("http://127.0.0.1:3000", false),
            ("http://localhost:3000", false),
            ("https://example.com", true),
            ("ftp://example.com", true),
            ("http://user:pw@example.com", true),
        ] {
            assert!(
                check_upstream_url("u", url, private_ok).is_err(),
                "{url} accepted"
            );
        }
        check_upstream_url("u", "http://10.0.0.5:3000", true).unwrap();
        check_upstream_url("u", "http://upstream.example.com:8080", false).unwrap();
        check_upstream_url("u", "http://203.0.113.9", false).unwrap();
    }

    #[test]
    fn header_values_with_line_breaks_are_refused() {
        let mut s = spec("example.com");
        s.headers
            .insert("X-Test".into(), "a\r\nSet-Cookie: x=1".into());
        assert_eq!(field(validate(s, None).unwrap_err()), "headers.X-Test");
        let mut s = spec("example.com");
        s.headers.insert("Bad Name".into(), "v".into());
        assert!(validate(s, None).is_err());
        let mut s = spec("example.com");
        s.headers.insert("Content-Length".into(), "1".into());
        assert!(validate(s, None).is_err());
        let mut s = spec("example.com");
        s.headers.insert("X-Frame-Options".into(), "DENY".into());
        validate(s, None).unwrap();
    }

    #[test]
    fn networks_limits_and_users_are_checked() {
        let mut s = spec("example.com");
        s.deny = vec!["1.2.3.4/33".into()];
        assert_eq!(field(validate(s, None).unwrap_err()), "deny[0]");
        let mut s = spec("example.com");
        s.allow = vec!["10.1.2.3/8".into(), "2001:db8::1".into()];
        let s = validate(s, None).unwrap();
        assert_eq!(s.allow, vec!["10.0.0.0/8", "2001:db8::1/128"]);

        let mut s = spec("example.com");
        s.rate_limits = vec![RateLimit {
            path: "/api/".into(),
            requests: 0,
            per: RatePeriod::Second,
            burst: 0,
        }];
        assert_eq!(
            field(validate(s, None).unwrap_err()),
            "rate_limits[0].requests"
        );

        let mut s = spec("example.com");
        s.basic_auth = vec![BasicAuthUser {
            username: "a:b".into(),
            password: Some("x".into()),
        }];
        assert_eq!(
            field(validate(s, None).unwrap_err()),
            "basic_auth[0].username"
        );
    }

    #[test]
    fn put_host_must_match_the_path_and_www_modes_fit_the_host() {
        let s = spec("other.example.com");
        assert_eq!(field(validate(s, Some("example.com")).unwrap_err()), "host");
        let mut s = spec("");
        s.host.clear();
        assert_eq!(
            validate(s, Some("example.com")).unwrap().host,
            "example.com"
        );
        let mut s = spec("example.com");
        s.www = WwwRedirect::ToWww;
        assert_eq!(field(validate(s, None).unwrap_err()), "www");
    }
}
