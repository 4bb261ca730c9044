//! DNS providers for DNS-01: where berth writes `_acme-challenge` TXT
//! records. Two kinds behind one interface: RFC 2136 with TSIG, and the
//! PowerDNS HTTP API. Their secrets are sealed with master.key.

mod powerdns;
mod rfc2136;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use app::api::{DnsProvider, DnsProviderConfig, DnsProviderInput};
use instant_acme::ChallengeType;
use sqlx::{Row, SqlitePool};

use super::acme::Solver;
use crate::crypto::Keys;
use crate::http::error::ApiError;

pub use wire::lookup_ip;

/// How long a published TXT record may take to become visible.
const PROPAGATION: Duration = Duration::from_secs(90);

enum Backend {
    Rfc2136(rfc2136::Rfc2136),
    PowerDns(powerdns::PowerDns),
}

impl Backend {
    async fn set_txt(&self, name: &str, values: &[String]) -> Result<(), String> {
        match self {
            Backend::Rfc2136(b) => b.set_txt(name, values).await,
            Backend::PowerDns(b) => b.set_txt(name, values).await,
        }
    }

    async fn clear_txt(&self, name: &str) -> Result<(), String> {
        match self {
            Backend::Rfc2136(b) => b.clear_txt(name).await,
            Backend::PowerDns(b) => b.clear_txt(name).await,
        }
    }

    /// A server that answers for the zone, to watch the record appear.
    fn authoritative(&self) -> Option<SocketAddr> {
        match self {
            Backend::Rfc2136(b) => Some(b.server()),
            Backend::PowerDns(_) => None,
        }
    }
}

pub(crate) fn purpose(name: &str) -> String {
    format!("dns-provider:{name}")
}

pub async fn list(db: &SqlitePool) -> Result<Vec<DnsProvider>, ApiError> {
    sqlx::query("SELECT name, config, allow_internal, created_at FROM dns_providers ORDER BY name")
        .fetch_all(db)
        .await?
        .iter()
        .map(|r| {
            Ok(DnsProvider {
                name: r.get("name"),
                config: serde_json::from_str(r.get::<&str, _>("config"))
                    .map_err(anyhow::Error::from)?,
                allow_internal: r.get("allow_internal"),
                created_at: crate::store::rfc3339(r.get("created_at")),
            })
        })
        .collect()
}

pub async fn create(
    db: &SqlitePool,
    keys: &Keys,
    mut input: DnsProviderInput,
) -> Result<DnsProvider, ApiError> {
    input.name = input.name.trim().to_string();
    if input.name.is_empty()
        || input.name.len() > 64
        || !input
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ApiError::invalid("name", "1 to 64 letters, digits, - or _"));
    }
    if input.secret.trim().is_empty() {
        return Err(ApiError::invalid(
            "secret",
            "the TSIG secret or API key is required",
        ));
    }
    match &mut input.config {
        DnsProviderConfig::Rfc2136 {
            server,
            zone,
            key_name,
            algorithm,
        } => {
            let addr: SocketAddr = server.trim().parse().map_err(|_| {
                ApiError::invalid("config.server", "an address with port, e.g. 192.0.2.53:53")
            })?;
            if let Some(why) = crate::outbound::refuse(addr.ip(), input.allow_internal) {
                return Err(ApiError::invalid("config.server", why));
            }
            *server = addr.to_string();
            *zone = crate::proxy::model::normalize_host("config.zone", zone)?;
            *key_name = key_name.trim().trim_end_matches('.').to_string();
            if key_name.is_empty() {
                return Err(ApiError::invalid("config.key_name", "the TSIG key's name"));
            }
            // Builds the signer now so a bad secret or algorithm is refused here.
            rfc2136::Rfc2136::new(addr, zone, key_name, algorithm, &input.secret).map_err(|e| {
                let field = if e.contains("algorithm") {
                    "config.algorithm"
                } else {
                    "secret"
                };
                ApiError::invalid(field, e)
            })?;
        }
        DnsProviderConfig::Powerdns {
            api_url,
            server_id,
            zone,
        } => {
            *api_url = api_url.trim().trim_end_matches('/').to_string();
            let parsed = crate::outbound::check_url(api_url)
                .map_err(|e| ApiError::invalid("config.api_url", e))?;
            let host = parsed.host_str().unwrap_or_default();
            if let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
                if let Some(why) = crate::outbound::refuse(ip, input.allow_internal) {
                    return Err(ApiError::invalid("config.api_url", why));
                }
            }
            *zone = crate::proxy::model::normalize_host("config.zone", zone)?;
            if server_id.is_empty()
                || !server_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                return Err(ApiError::invalid("config.server_id", "e.g. localhost"));
            }
        }
    }
    let now = crate::store::now();
    let inserted = sqlx::query(
        "INSERT INTO dns_providers (name, config, secret_sealed, allow_internal, created_at) \
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&input.name)
    .bind(serde_json::to_string(&input.config).map_err(anyhow::Error::from)?)
    .bind(keys.seal(&purpose(&input.name), input.secret.trim().as_bytes()))
    .bind(input.allow_internal)
    .bind(now)
    .execute(db)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::Conflict(format!(
            "a DNS provider named {} exists",
            input.name
        )));
    }
    Ok(DnsProvider {
        name: input.name,
        config: input.config,
        allow_internal: input.allow_internal,
        created_at: crate::store::rfc3339(now),
    })
}

pub async fn delete(db: &SqlitePool, name: &str) -> Result<(), ApiError> {
    let users: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM certificates WHERE dns_provider = ? AND state != 'retired'",
    )
    .bind(name)
    .fetch_one(db)
    .await?;
    if users > 0 {
        return Err(ApiError::Conflict(format!(
            "{users} certificate(s) renew through {name}: delete them or order them another way first"
        )));
    }
    let done = sqlx::query("DELETE FROM dns_providers WHERE name = ?")
        .bind(name)
        .execute(db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::NotFound(format!("no DNS provider {name}")));
    }
    Ok(())
}

/// The provider an order names, or the only one there is. Errors are
/// `(field, message)` for a 422.
pub async fn pick(db: &SqlitePool, name: Option<&str>) -> Result<String, (&'static str, String)> {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM dns_providers ORDER BY name")
        .fetch_all(db)
        .await
        .map_err(|e| ("dns_provider", e.to_string()))?;
    match name {
        Some(n) if names.iter().any(|x| x == n) => Ok(n.to_string()),
        Some(n) => Err(("dns_provider", format!("no DNS provider named {n}"))),
        None => match names.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err((
                "challenge",
                "dns-01 needs a DNS provider: add one first".to_string(),
            )),
            _ => Err(("dns_provider", format!("name one of: {}", names.join(", ")))),
        },
    }
}

/// The DNS-01 solver for a stored provider.
pub async fn solver(
    db: &SqlitePool,
    keys: &Keys,
    name: Option<&str>,
    resolver: Option<SocketAddr>,
) -> Result<DnsSolver, String> {
    let name = name.ok_or("no DNS provider is recorded for this certificate")?;
    let row = sqlx::query(
        "SELECT config, secret_sealed, allow_internal FROM dns_providers WHERE name = ?",
    )
    .bind(name)
    .fetch_optional(db)
    .await
    .map_err(|e| e.to_string())?
    .ok_or_else(|| format!("the DNS provider {name} no longer exists"))?;
    let config: DnsProviderConfig =
        serde_json::from_str(row.get::<&str, _>("config")).map_err(|e| e.to_string())?;
    let secret = keys
        .open(&purpose(name), &row.get::<Vec<u8>, _>("secret_sealed"))
        .map_err(|e| e.to_string())?;
    let secret = String::from_utf8(secret).map_err(|e| e.to_string())?;
    let allow_internal: bool = row.get("allow_internal");
    let backend = match config {
        DnsProviderConfig::Rfc2136 {
            server,
            zone,
            key_name,
            algorithm,
        } => {
            let addr: SocketAddr = server.parse().map_err(|_| format!("bad server {server}"))?;
            if let Some(why) = crate::outbound::refuse(addr.ip(), allow_internal) {
                return Err(why);
            }
            Backend::Rfc2136(rfc2136::Rfc2136::new(
                addr, &zone, &key_name, &algorithm, &secret,
            )?)
        }
        DnsProviderConfig::Powerdns {
            api_url,
            server_id,
            zone,
        } => Backend::PowerDns(powerdns::PowerDns {
            api_url,
            server_id,
            zone,
            api_key: secret,
            allow_internal,
        }),
    };
    Ok(DnsSolver {
        backend,
        resolver,
        published: Mutex::new(BTreeMap::new()),
    })
}

pub struct DnsSolver {
    backend: Backend,
    resolver: Option<SocketAddr>,
    /// `_acme-challenge` names → values published there (a wildcard and its
    /// apex share one name, so it can hold two).
    published: Mutex<BTreeMap<String, Vec<String>>>,
}

#[async_trait::async_trait]
impl Solver for DnsSolver {
    fn kind(&self) -> ChallengeType {
        ChallengeType::Dns01
    }

    async fn present(
        &self,
        name: &str,
        _token: &str,
        _key_authorization: &str,
        dns_value: &str,
    ) -> Result<(), String> {
        let owner = format!("_acme-challenge.{name}");
        let values = {
            let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
            let values = published.entry(owner.clone()).or_default();
            values.push(dns_value.to_string());
            values.clone()
        };
        self.backend.set_txt(&owner, &values).await
    }

    async fn wait_visible(&self, name: &str, dns_value: &str) -> Result<(), String> {
        let owner = format!("_acme-challenge.{name}");
        let servers: Vec<SocketAddr> = self
            .backend
            .authoritative()
            .into_iter()
            .chain(self.resolver)
            .collect();
        for server in servers {
            let deadline = tokio::time::Instant::now() + PROPAGATION;
            loop {
                match wire::txt(server, &owner).await {
                    Ok(found) if found.iter().any(|v| v == dns_value) => break,
                    Ok(_) | Err(_) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Ok(_) => {
                        return Err(format!(
                            "the TXT record {owner} did not appear at {server} within {} s",
                            PROPAGATION.as_secs()
                        ))
                    }
                    Err(e) => return Err(format!("cannot check {owner} at {server}: {e}")),
                }
            }
        }
        Ok(())
    }

    async fn cleanup(&self) {
        let names: Vec<String> =
            std::mem::take(&mut *self.published.lock().unwrap_or_else(|p| p.into_inner()))
                .into_keys()
                .collect();
        for owner in names {
            if let Err(e) = self.backend.clear_txt(&owner).await {
                tracing::warn!(record = %owner, error = %e, "cannot remove a DNS-01 record");
            }
        }
    }
}
