//! Certificates: ordered over ACME (HTTP-01 answered by berth's proxy, or
//! DNS-01 through a DNS provider), renewed when the CA's renewal information
//! or two thirds of the lifetime say so, or uploaded. The store holds each
//! chain and its key sealed with master.key; the proxy is handed the set in
//! memory (the nginx driver gets files) and serves a new certificate without
//! a restart. A probe reads what the HTTPS listener actually serves.

pub(crate) mod account;
pub mod acme;
mod attempt;
pub use crate::clock;
pub mod dns;
pub mod http01;
pub mod pem;
pub mod probe;
pub mod routes;
pub mod schedule;
mod scheduler;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use app::api::{Certificate, ChallengeKind, IssuanceStep, KeyType, OrderRequest, UploadRequest};
use sqlx::{Row, SqlitePool};

use crate::clock::Clock;
use crate::config::{CertificatesConfig, ProxyDriver};
use crate::crypto::Keys;
use crate::http::error::ApiError;
use crate::notify::Notifier;
use crate::proxy::Proxy;

pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

pub struct Certificates {
    db: SqlitePool,
    keys: Arc<Keys>,
    proxy: Arc<Proxy>,
    notifier: Arc<Notifier>,
    config: CertificatesConfig,
    data_dir: PathBuf,
    pub clock: Clock,
    /// Certificates with an attempt under way: one at a time each.
    busy: Mutex<HashSet<String>>,
    wake: tokio::sync::Notify,
    last_probe: std::sync::atomic::AtomicI64,
    installing: tokio::sync::Mutex<()>,
    /// One probe at a time (the schedule's and `POST /certificates/probes`).
    probing: tokio::sync::Mutex<()>,
    /// What `install` parsed last time: id → (fingerprint, certificate).
    loaded: Mutex<std::collections::HashMap<String, (Option<String>, crate::proxy::certs::Loaded)>>,
}

/// One stored certificate, as the scheduler needs it.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    id: String,
    domains: Vec<String>,
    source: String,
    challenge: Option<ChallengeKind>,
    dns_provider: Option<String>,
    key_type: Option<KeyType>,
    state: String,
    has_chain: bool,
    not_after: Option<i64>,
    ari_id: Option<String>,
    renew_at: Option<i64>,
    ari_check_at: Option<i64>,
    failures: u32,
    retry_at: Option<i64>,
    automatic: bool,
}

const ROW_COLUMNS: &str = "id, domains, source, challenge, dns_provider, key_type, state, \
    chain_pem IS NOT NULL AS has_chain, not_after, ari_id, renew_at, ari_check_at, failures, \
    retry_at, automatic";

/// What `view` reads: everything but the chain and the sealed key, which a
/// listing has no use for.
const VIEW_COLUMNS: &str =
    "id, domains, source, challenge, dns_provider, key_type, state, issuer, \
    serial, not_before, not_after, fingerprint, renew_at, renew_reason, retry_at, last_attempt_at, \
    last_error, failures, automatic, created_at";

fn decode_row(r: &sqlx::sqlite::SqliteRow) -> Stored {
    Stored {
        id: r.get("id"),
        domains: serde_json::from_str(r.get::<&str, _>("domains")).unwrap_or_default(),
        source: r.get("source"),
        challenge: enum_of(r.get("challenge")),
        dns_provider: r.get("dns_provider"),
        key_type: enum_of(r.get("key_type")),
        state: r.get("state"),
        has_chain: r.get("has_chain"),
        not_after: r.get("not_after"),
        ari_id: r.get("ari_id"),
        renew_at: r.get("renew_at"),
        ari_check_at: r.get("ari_check_at"),
        failures: r.get::<i64, _>("failures") as u32,
        retry_at: r.get("retry_at"),
        automatic: r.get("automatic"),
    }
}

/// A stored enum (its serde name) read back.
fn enum_of<T: serde::de::DeserializeOwned>(text: Option<String>) -> Option<T> {
    text.and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok())
}

fn text_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(crate) fn key_purpose(id: &str) -> String {
    format!("certificate-key:{id}")
}

impl Certificates {
    pub fn new(
        db: SqlitePool,
        keys: Arc<Keys>,
        proxy: Arc<Proxy>,
        notifier: Arc<Notifier>,
        config: CertificatesConfig,
        data_dir: PathBuf,
    ) -> Certificates {
        Certificates {
            db,
            keys,
            proxy,
            notifier,
            config,
            data_dir,
            clock: Clock::default(),
            busy: Mutex::new(HashSet::new()),
            wake: tokio::sync::Notify::new(),
            last_probe: std::sync::atomic::AtomicI64::new(0),
            loaded: Mutex::new(std::collections::HashMap::new()),
            installing: tokio::sync::Mutex::new(()),
            probing: tokio::sync::Mutex::new(()),
        }
    }

    // ---- reading -----------------------------------------------------------

    pub(super) async fn rows(&self) -> Result<Vec<Stored>, ApiError> {
        Ok(sqlx::query(&format!(
            "SELECT {ROW_COLUMNS} FROM certificates ORDER BY created_at, id"
        ))
        .fetch_all(&self.db)
        .await?
        .iter()
        .map(decode_row)
        .collect())
    }

    pub(super) async fn row(&self, id: &str) -> Result<Stored, ApiError> {
        sqlx::query(&format!(
            "SELECT {ROW_COLUMNS} FROM certificates WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.db)
        .await?
        .as_ref()
        .map(decode_row)
        .ok_or_else(|| ApiError::NotFound(format!("no certificate {id}")))
    }

    pub async fn list(&self) -> Result<Vec<Certificate>, ApiError> {
        let rows = sqlx::query(&format!(
            "SELECT {VIEW_COLUMNS} FROM certificates ORDER BY created_at, id"
        ))
        .fetch_all(&self.db)
        .await?;
        Ok(rows.iter().map(|r| view(r, Vec::new())).collect())
    }

    pub async fn get(&self, id: &str) -> Result<Certificate, ApiError> {
        let r = sqlx::query(&format!(
            "SELECT {VIEW_COLUMNS} FROM certificates WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.db)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no certificate {id}")))?;
        let steps = sqlx::query(
            "SELECT at, step, status, detail FROM certificate_steps WHERE certificate_id = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.db)
        .await?
        .iter()
        .map(|s| IssuanceStep {
            at: crate::store::rfc3339(s.get("at")),
            step: s.get("step"),
            status: s.get("status"),
            detail: s.get("detail"),
        })
        .collect();
        Ok(view(&r, steps))
    }

    // ---- changing ----------------------------------------------------------

    /// Stores an order and starts it in the background; the answer comes
    /// before the CA is contacted, and `GET /certificates/{id}` shows the
    /// steps as they happen.
    pub async fn order(self: &Arc<Self>, req: OrderRequest) -> Result<Certificate, ApiError> {
        let id = self.insert_order(req, false).await?;
        // The answer is the order as accepted: read before the attempt starts,
        // so it says `pending` rather than whatever step the race reached.
        let accepted = self.get(&id).await?;
        self.start(id);
        Ok(accepted)
    }

    pub(super) async fn insert_order(
        &self,
        req: OrderRequest,
        automatic: bool,
    ) -> Result<String, ApiError> {
        let names = check_names(&req.domains, req.challenge)?;
        let provider = match req.challenge {
            ChallengeKind::Http01 => {
                if req.dns_provider.is_some() {
                    return Err(ApiError::invalid(
                        "dns_provider",
                        "a DNS provider is only used with dns-01",
                    ));
                }
                None
            }
            ChallengeKind::Dns01 => Some(
                dns::pick(&self.db, req.dns_provider.as_deref())
                    .await
                    .map_err(|(field, why)| ApiError::invalid(field, why))?,
            ),
        };
        if self.acme_row().await?.is_none() {
            return Err(ApiError::Conflict(
                "ACME is not configured: set the CA first (PUT /api/v1/acme)".into(),
            ));
        }
        let id = crate::crypto::random_hex(8);
        let now = crate::store::now();
        sqlx::query(
            "INSERT INTO certificates (id, domains, source, challenge, dns_provider, key_type, state, \
             automatic, created_at, updated_at) VALUES (?, ?, 'acme', ?, ?, ?, 'pending', ?, ?, ?)",
        )
        .bind(&id)
        .bind(serde_json::to_string(&names).map_err(anyhow::Error::from)?)
        .bind(text_of(&req.challenge))
        .bind(provider)
        .bind(text_of(&req.key_type))
        .bind(automatic)
        .bind(now)
        .bind(now)
        .execute(&self.db)
        .await?;
        Ok(id)
    }

    /// Renews now, whatever the schedule says.
    pub async fn renew(self: &Arc<Self>, id: &str) -> Result<Certificate, ApiError> {
        let row = self.row(id).await?;
        if row.source != "acme" {
            return Err(ApiError::Conflict(
                "an uploaded certificate cannot be renewed by berth: upload its successor".into(),
            ));
        }
        if self.is_attempting(id) {
            return Err(ApiError::Conflict(
                "an attempt for this certificate is under way".into(),
            ));
        }
        self.start(id.to_string());
        self.get(id).await
    }

    pub async fn upload(&self, req: UploadRequest) -> Result<Certificate, ApiError> {
        let required = req
            .domains
            .iter()
            .enumerate()
            .map(|(i, d)| crate::proxy::model::normalize_host(&format!("domains[{i}]"), d))
            .collect::<Result<Vec<_>, _>>()?;
        let checked = pem::check_upload(
            &req.certificate_pem,
            &req.key_pem,
            req.chain_pem.as_deref(),
            &required,
            self.clock.now(),
        )
        .map_err(|(field, why)| ApiError::invalid(field, why))?;
        let id = crate::crypto::random_hex(8);
        let now = crate::store::now();
        let f = &checked.facts;
        sqlx::query(
            "INSERT INTO certificates (id, domains, source, state, chain_pem, key_sealed, issuer, serial, \
             not_before, not_after, fingerprint, created_at, updated_at) \
             VALUES (?, ?, 'upload', 'valid', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(serde_json::to_string(&f.names).map_err(anyhow::Error::from)?)
        .bind(&checked.chain_pem)
        .bind(self.keys.seal(&key_purpose(&id), checked.key_pem.as_bytes()))
        .bind(&f.issuer)
        .bind(&f.serial)
        .bind(f.not_before)
        .bind(f.not_after)
        .bind(&f.fingerprint)
        .bind(now)
        .bind(now)
        .execute(&self.db)
        .await?;
        self.install()
            .await
            .map_err(|e| ApiError::ApplyFailed(format!("stored, but not served: {e}")))?;
        self.get(&id).await
    }

    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        let done = sqlx::query("DELETE FROM certificates WHERE id = ?")
            .bind(id)
            .execute(&self.db)
            .await?;
        if done.rows_affected() == 0 {
            return Err(ApiError::NotFound(format!("no certificate {id}")));
        }
        self.install().await.map_err(|e| {
            ApiError::ApplyFailed(format!("deleted, but the proxy did not take it: {e}"))
        })
    }

    /// Hands every stored certificate to the proxy and rebuilds it. Parsed
    /// certificates are kept by fingerprint, so a change costs one parse, not
    /// one per stored certificate.
    pub async fn install(&self) -> Result<(), String> {
        // One at a time: two overlapping installs could finish in the wrong
        // order (the older set live), or one could delete the nginx files
        // the other just wrote.
        let _one = self.installing.lock().await;
        let rows = sqlx::query(
            "SELECT id, fingerprint, chain_pem, key_sealed FROM certificates \
             WHERE chain_pem IS NOT NULL AND key_sealed IS NOT NULL",
        )
        .fetch_all(&self.db)
        .await
        .map_err(|e| e.to_string())?;
        let nginx = self.proxy.driver() == ProxyDriver::Nginx;
        let mut managed = Vec::new();
        let mut files = Vec::new();
        let mut cache = std::mem::take(&mut *self.loaded.lock().unwrap_or_else(|p| p.into_inner()));
        let mut fresh = std::collections::HashMap::new();
        for r in &rows {
            let id: String = r.get("id");
            let fp: Option<String> = r.get("fingerprint");
            let cached = cache.remove(&id).filter(|(f, _)| *f == fp);
            if let (Some((f, l)), false) = (cached, nginx) {
                managed.push(l.clone());
                fresh.insert(id, (f, l));
                continue;
            }
            let chain: String = r.get("chain_pem");
            let key = match self
                .keys
                .open(&key_purpose(&id), &r.get::<Vec<u8>, _>("key_sealed"))
            {
                Ok(k) => String::from_utf8(k).map_err(|e| e.to_string())?,
                Err(e) => {
                    tracing::error!(certificate = %id, error = %e, "a stored key does not open");
                    continue;
                }
            };
            match pem::loaded(&chain, &key) {
                Ok(mut l) => {
                    l.source = format!("berth:{id}");
                    managed.push(l.clone());
                    fresh.insert(id.clone(), (fp, l));
                    if nginx {
                        files.push((id, chain, key));
                    }
                }
                Err(e) => {
                    tracing::error!(certificate = %id, error = %e, "a stored certificate does not load")
                }
            }
        }
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        if nginx {
            // nginx reads files: berth's certificates go in its certificate
            // directory, each as `berth-<id>/`, key readable by root only.
            write_files(&self.data_dir.join("certs"), &files).map_err(|e| format!("{e:#}"))?;
        } else {
            self.proxy.set_managed_certificates(managed);
        }
        self.proxy.rebuild().await
    }
}

/// Names for an order: normalised, no duplicates, wildcards only with
/// dns-01. Errors name the offending entry.
fn check_names(domains: &[String], challenge: ChallengeKind) -> Result<Vec<String>, ApiError> {
    if domains.is_empty() || domains.len() > 100 {
        return Err(ApiError::invalid("domains", "1 to 100 names"));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, d) in domains.iter().enumerate() {
        let field = format!("domains[{i}]");
        let (wild, bare) = match d.trim().strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, d.trim()),
        };
        if bare.contains('*') {
            return Err(ApiError::invalid(
                field,
                "a wildcard may only be the whole first label, as in *.example.com",
            ));
        }
        let host = crate::proxy::model::normalize_host(&field, bare)?;
        if host.parse::<std::net::IpAddr>().is_ok() || !host.contains('.') {
            return Err(ApiError::invalid(
                field,
                "a domain name such as example.com",
            ));
        }
        if wild && challenge != ChallengeKind::Dns01 {
            return Err(ApiError::invalid(
                field,
                "wildcard names need the dns-01 challenge",
            ));
        }
        let name = if wild { format!("*.{host}") } else { host };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// Writes `berth-<id>/{fullchain,privkey}.pem` for each certificate and
/// removes the `berth-*` folders of certificates that are gone. Files are
/// written beside and renamed over, so nginx never reads half a file.
fn write_files(dir: &std::path::Path, files: &[(String, String, String)]) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let keep: HashSet<String> = files
        .iter()
        .map(|(id, _, _)| format!("berth-{id}"))
        .collect();
    for (id, chain, key) in files {
        let folder = dir.join(format!("berth-{id}"));
        std::fs::create_dir_all(&folder)?;
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700))?;
        let key_tmp = folder.join(".privkey.pem.new");
        crate::crypto::write_private_file(&key_tmp, key.as_bytes())?;
        let chain_tmp = folder.join(".fullchain.pem.new");
        std::fs::write(&chain_tmp, chain)?;
        std::fs::rename(&key_tmp, folder.join("privkey.pem"))?;
        std::fs::rename(&chain_tmp, folder.join("fullchain.pem"))?;
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("berth-") && !keep.contains(&name) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

fn view(r: &sqlx::sqlite::SqliteRow, steps: Vec<IssuanceStep>) -> Certificate {
    let ts = |col: &str| r.get::<Option<i64>, _>(col).map(crate::store::rfc3339);
    let source: String = r.get("source");
    let mut state: String = r.get("state");
    if state == "valid"
        && r.get::<Option<i64>, _>("not_after")
            .is_some_and(|t| t <= crate::store::now())
    {
        state = "expired".into();
    }
    Certificate {
        id: r.get("id"),
        domains: serde_json::from_str(r.get::<&str, _>("domains")).unwrap_or_default(),
        challenge: enum_of(r.get("challenge")),
        dns_provider: r.get("dns_provider"),
        key_type: enum_of(r.get("key_type")),
        state,
        issuer: r.get("issuer"),
        serial: r.get("serial"),
        not_before: ts("not_before"),
        not_after: ts("not_after"),
        fingerprint: r.get("fingerprint"),
        renew_at: if source == "acme" {
            match (
                r.get::<Option<i64>, _>("retry_at"),
                r.get::<Option<i64>, _>("renew_at"),
            ) {
                (Some(retry), _) => Some(crate::store::rfc3339(retry)),
                (None, at) => at.map(crate::store::rfc3339),
            }
        } else {
            None
        },
        renew_reason: if r.get::<Option<i64>, _>("retry_at").is_some() {
            Some("retry".into())
        } else {
            r.get("renew_reason")
        },
        last_attempt_at: ts("last_attempt_at"),
        last_error: r.get("last_error"),
        failures: r.get::<i64, _>("failures") as u32,
        automatic: r.get("automatic"),
        source,
        steps,
        created_at: crate::store::rfc3339(r.get("created_at")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn order_names_are_normalised_deduplicated_and_wildcards_need_dns01() {
        let names = check_names(
            &[
                "Shop.Example.COM".into(),
                "shop.example.com".into(),
                "*.example.com".into(),
            ],
            ChallengeKind::Dns01,
        )
        .unwrap();
        assert_eq!(names, ["shop.example.com", "*.example.com"]);
        let field = |r: Result<Vec<String>, ApiError>| match r {
            Err(ApiError::Invalid { field, .. }) => field.unwrap_or_default(),
            other => panic!("expected a field error, got {other:?}"),
        };
        assert_eq!(
            field(check_names(
                &["*.example.com".into()],
                ChallengeKind::Http01
            )),
            "domains[0]"
        );
        assert_eq!(
            field(check_names(
                &["a.example.com".into(), "x.*.example.com".into()],
                ChallengeKind::Dns01
            )),
            "domains[1]"
        );
        assert_eq!(
            field(check_names(&["10.0.0.1".into()], ChallengeKind::Http01)),
            "domains[0]"
        );
        assert_eq!(field(check_names(&[], ChallengeKind::Http01)), "domains");
    }

    #[test]
    pub(super) fn eab_keys_decode_padded_or_not_and_garbage_is_refused() {
        assert_eq!(acme::decode_hmac("YWJjZA").unwrap(), b"abcd");
        assert_eq!(acme::decode_hmac("YWJjZA==").unwrap(), b"abcd");
        assert!(acme::decode_hmac("not base64!").is_none());
        assert!(acme::decode_hmac("").is_none());
    }
}
