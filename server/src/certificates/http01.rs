//! HTTP-01: berth's proxy answers the CA's request on port 80, and before
//! ordering a self-test asks the same question the CA will ask, from here,
//! so "the CA could not connect" becomes an error that says what to fix.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instant_acme::ChallengeType;

use super::acme::Solver;
use super::dns;
use crate::proxy::Proxy;

pub struct Http01 {
    pub proxy: Arc<Proxy>,
    tokens: Mutex<Vec<String>>,
}

impl Http01 {
    pub fn new(proxy: Arc<Proxy>) -> Http01 {
        Http01 {
            proxy,
            tokens: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait::async_trait]
impl Solver for Http01 {
    fn kind(&self) -> ChallengeType {
        ChallengeType::Http01
    }

    async fn present(
        &self,
        _name: &str,
        token: &str,
        key_authorization: &str,
        _dns_value: &str,
    ) -> Result<(), String> {
        self.proxy.present_challenge(token, key_authorization)?;
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(token.to_string());
        Ok(())
    }

    async fn cleanup(&self) {
        let tokens = std::mem::take(&mut *self.tokens.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tokens {
            self.proxy.withdraw_challenge(&t);
        }
    }
}

/// Checks that each name resolves and that `http://<name>:<port>` reaches
/// this berth's proxy, by publishing a random answer and fetching it the
/// way the CA will. The error names the first name that fails and why.
pub async fn self_test(
    proxy: &Proxy,
    names: &[String],
    port: u16,
    resolver: Option<SocketAddr>,
) -> Result<(), String> {
    let token = crate::crypto::random_hex(16);
    let expected = crate::crypto::random_hex(24);
    proxy.present_challenge(&token, &expected)?;
    let mut result = Ok(());
    for name in names {
        if let Err(e) = check_one(name, port, resolver, &token, &expected).await {
            result = Err(e);
            break;
        }
    }
    proxy.withdraw_challenge(&token);
    result
}

async fn check_one(
    name: &str,
    port: u16,
    resolver: Option<SocketAddr>,
    token: &str,
    expected: &str,
) -> Result<(), String> {
    let addrs: Vec<IpAddr> = match resolver {
        Some(server) => dns::lookup_ip(server, name).await?,
        None => tokio::net::lookup_host((name, port))
            .await
            .map(|it| it.map(|a| a.ip()).collect())
            .unwrap_or_default(),
    };
    if addrs.is_empty() {
        return Err(format!(
            "{name} does not resolve: add an A (or AAAA) record pointing to this server"
        ));
    }
    // Loopback and private addresses are normal here (a host behind NAT);
    // link-local and cloud metadata addresses are never fetched.
    if let Some(why) = addrs
        .iter()
        .find_map(|ip| crate::outbound::refuse(*ip, true))
    {
        return Err(format!("{name}: {why}"));
    }
    let url = format!("http://{name}:{port}/.well-known/acme-challenge/{token}");
    let mut last = String::new();
    for ip in &addrs {
        let client = crate::outbound::builder(Duration::from_secs(5), Duration::from_secs(10))
            .resolve(name, SocketAddr::new(*ip, port))
            .build()
            .map_err(|e| e.to_string())?;
        match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => {
                let body = r.text().await.unwrap_or_default();
                if body.trim() == expected {
                    return Ok(());
                }
                last = format!(
                    "{name} ({ip}) answered on port {port}, but not with berth's challenge: \
                     another web server is on that address or port"
                );
            }
            Ok(r) => {
                last = format!(
                    "{name} ({ip}) answered {} on port {port} for the challenge path: \
                     that is not berth's proxy (another web server, or a redirect)",
                    r.status()
                );
            }
            Err(e) => {
                let why = if e.is_timeout() {
                    "timed out".to_string()
                } else if e.is_connect() {
                    "connection refused or unreachable".to_string()
                } else {
                    e.to_string()
                };
                last = format!(
                    "{name} resolves to {ip}, but nothing answered on port {port} ({why}): \
                     open port {port} in the firewall and forward it to berth's proxy"
                );
            }
        }
    }
    Err(last)
}
