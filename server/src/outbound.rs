//! Connections berth opens to addresses an admin typed in (webhooks, SMTP
//! relays, DNS provider APIs). The name is resolved once, every address is
//! checked, and the connection goes to a checked address: a DNS answer that
//! changes between check and connect (rebinding) cannot send berth to a
//! cloud metadata service or, unless allowed, into the private network.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::proxy::model::{is_metadata, is_private};

/// Why an address may not be used, or `None` if it may.
pub fn refuse(ip: IpAddr, allow_internal: bool) -> Option<String> {
    if is_metadata(ip) || ip.is_multicast() || ip.is_unspecified() {
        return Some(format!(
            "{ip} is a link-local, metadata or multicast address and is never contacted"
        ));
    }
    if is_private(ip) && !allow_internal {
        return Some(format!(
            "{ip} is a loopback or private address: turn on allow_internal to use it"
        ));
    }
    None
}

/// Resolves `host:port` and keeps only the addresses that may be used; an
/// error if none may.
pub async fn resolve(
    host: &str,
    port: u16,
    allow_internal: bool,
) -> Result<Vec<SocketAddr>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else {
        tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::lookup_host((host, port)),
        )
        .await
        .map_err(|_| format!("{host} did not resolve within 10 s"))?
        .map_err(|e| format!("{host} does not resolve: {e}"))?
        .collect()
    };
    let mut refused = None;
    let allowed: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match refuse(a.ip(), allow_internal) {
            Some(why) => {
                refused = Some(why);
                false
            }
            None => true,
        })
        .collect();
    if allowed.is_empty() {
        return Err(refused.unwrap_or_else(|| format!("{host} has no address")));
    }
    Ok(allowed)
}

/// What every client berth points at the outside starts from: redirects
/// are not followed (a redirect could lead past the address checks), and
/// requests say who sends them.
pub fn builder(connect: Duration, total: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect)
        .timeout(total)
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
}

/// A client for one request to `url`: pinned to checked addresses, no
/// redirects followed, short timeouts.
pub async fn client_for(
    url: &reqwest::Url,
    allow_internal: bool,
) -> Result<reqwest::Client, String> {
    let host = url.host_str().ok_or("the URL has no host")?;
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    let addrs = resolve(host, port, allow_internal).await?;
    let mut builder = builder(Duration::from_secs(10), Duration::from_secs(20));
    if host.parse::<IpAddr>().is_err() {
        builder = builder.resolve_to_addrs(host, &addrs);
    }
    builder.build().map_err(|e| e.to_string())
}

/// Checks a URL typed into a form: http(s), a host, no credentials.
pub fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "not a URL".to_string())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("only http:// and https:// URLs".into());
    }
    if parsed.host_str().is_none() {
        return Err("the URL has no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("credentials in the URL are not supported; use the secret".into());
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metadata_is_never_reached_and_private_only_when_allowed() {
        let meta = resolve("169.254.169.254", 80, true).await.unwrap_err();
        assert!(meta.contains("metadata"), "{meta}");
        let private = resolve("127.0.0.1", 80, false).await.unwrap_err();
        assert!(private.contains("allow_internal"), "{private}");
        assert_eq!(resolve("127.0.0.1", 80, true).await.unwrap().len(), 1);
        assert!(resolve("[fe80::1]", 80, true).await.is_err());
        // Names go through the same check as literals.
        assert!(resolve("localhost", 80, false).await.is_err());
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://hooks.example.com/x").is_ok());
        assert!(check_url("ftp://x").is_err());
        assert!(check_url("https://user:pw@x.example").is_err());
        assert!(check_url("nope").is_err());
    }
}
