//! The client's address: the socket peer, unless the peer is a configured
//! trusted proxy, in which case the right-most `X-Forwarded-For` entry that is
//! not itself a trusted proxy. A header from anyone else is ignored, so a
//! client cannot pick its own address to dodge login throttling.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use ipnet::IpNet;

use super::error::ApiError;
use crate::startup::AppState;

#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Requests driven through the router in-process (no socket) count as
        // coming from nowhere in particular.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        Ok(ClientIp(resolve(
            peer,
            &forwarded,
            &state.config.trusted_proxies,
        )))
    }
}

/// Addresses come out canonical: an IPv4 client of a dual-stack (`[::]`)
/// listener is `203.0.113.5`, not `::ffff:203.0.113.5`, so rules and
/// throttles written for IPv4 apply to it.
pub fn resolve(peer: IpAddr, forwarded_for: &str, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    forwarded_for
        .rsplit(',')
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv4_peers_are_plain_ipv4() {
        let mapped: IpAddr = "::ffff:203.0.113.5".parse().unwrap();
        assert_eq!(
            resolve(mapped, "", &[]),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        let proxy: IpNet = "127.0.0.1/32".parse().unwrap();
        let local: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            resolve(local, "::ffff:198.51.100.7", &[proxy]),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(resolve(stranger, "198.51.100.1", &trusted), stranger);
        assert_eq!(
            resolve(proxy, "198.51.100.1, 203.0.113.7, 10.0.0.3", &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap(),
            "right-most untrusted hop wins; spoofed left entries are ignored"
        );
        assert_eq!(resolve(proxy, "garbage", &trusted), proxy);
        assert_eq!(resolve(proxy, "", &[]), proxy);
    }
}
