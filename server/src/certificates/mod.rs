//! Certificates: ordered over ACME (HTTP-01 answered by berth's proxy, or
//! DNS-01 through a DNS provider), renewed when the CA's renewal information
//! or two thirds of the lifetime say so, or uploaded. The store holds each
//! chain and its key sealed with master.key; the proxy is handed the set in
//! memory (the nginx driver gets files) and serves a new certificate without
//! a restart. A probe reads what the HTTPS listener actually serves.

pub mod acme;
pub mod clock;
pub mod dns;
pub mod http01;
pub mod pem;
pub mod probe;
pub mod routes;
pub mod schedule;

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::api::{
    AcmePreset, AcmeSettings, AcmeSettingsInput, Certificate, ChallengeKind, IssuanceStep, KeyType,
    OrderRequest, ProbeResult, UploadRequest,
};
use sqlx::{Row, SqlitePool};

use crate::config::{CertificatesConfig, ProxyDriver};
use crate::crypto::Keys;
use crate::http::error::ApiError;
use crate::notify::{Notice, Notifier};
use crate::proxy::Proxy;
use clock::Clock;

pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// How often the scheduler looks for due work when nothing wakes it.
const TICK: Duration = Duration::from_secs(60);

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
    /// What `install` parsed last time: id → (fingerprint, certificate).
    loaded: Mutex<std::collections::HashMap<String, (Option<String>, crate::proxy::certs::Loaded)>>,
}

/// The stored ACME settings (one row).
struct AcmeRow {
    directory_url: String,
    email: Option<String>,
    eab_kid: Option<String>,
    eab_hmac: Option<Vec<u8>>,
    extra_roots_pem: Option<String>,
    credentials: Option<Vec<u8>>,
    registered_for: Option<String>,
    account_id: Option<String>,
}

impl AcmeRow {
    /// What an account registration depends on; a change means a new account.
    fn identity(&self) -> String {
        format!(
            "{}|{}|{}",
            self.directory_url,
            self.email.as_deref().unwrap_or(""),
            self.eab_kid.as_deref().unwrap_or("")
        )
    }

    fn directory(&self) -> acme::Directory {
        acme::Directory {
            url: self.directory_url.clone(),
            email: self.email.clone(),
            eab: self.eab_kid.clone().zip(self.eab_hmac.clone()),
            extra_roots_pem: self.extra_roots_pem.clone(),
        }
    }
}

/// One stored certificate, as the scheduler needs it.
#[derive(Debug, Clone)]
struct Stored {
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
}

const ROW_COLUMNS: &str = "id, domains, source, challenge, dns_provider, key_type, state, \
    chain_pem IS NOT NULL AS has_chain, not_after, ari_id, renew_at, ari_check_at, failures, \
    retry_at";

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

fn key_purpose(id: &str) -> String {
    format!("certificate-key:{id}")
}

/// Records the steps of one attempt.
struct StepLog {
    db: SqlitePool,
    id: String,
}

#[async_trait::async_trait]
impl acme::Progress for StepLog {
    async fn step(&self, step: &str, status: &str, detail: Option<String>) {
        let r = sqlx::query(
            "INSERT INTO certificate_steps (certificate_id, at, step, status, detail) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&self.id)
        .bind(crate::store::now())
        .bind(step)
        .bind(status)
        .bind(detail)
        .execute(&self.db)
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot record an issuance step");
        }
    }
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
        }
    }

    // ---- ACME settings -----------------------------------------------------

    async fn acme_row(&self) -> Result<Option<AcmeRow>, ApiError> {
        let Some(r) = sqlx::query(
            "SELECT directory_url, email, eab_kid, eab_hmac_sealed, extra_roots_pem, \
             credentials_sealed, registered_for, account_id FROM acme_account WHERE id = 1",
        )
        .fetch_optional(&self.db)
        .await?
        else {
            return Ok(None);
        };
        let open = |col: &str, purpose: &str| -> Result<Option<Vec<u8>>, ApiError> {
            match r.get::<Option<Vec<u8>>, _>(col) {
                Some(sealed) => Ok(Some(self.keys.open(purpose, &sealed)?)),
                None => Ok(None),
            }
        };
        Ok(Some(AcmeRow {
            directory_url: r.get("directory_url"),
            email: r.get("email"),
            eab_kid: r.get("eab_kid"),
            eab_hmac: open("eab_hmac_sealed", "acme-eab-hmac")?,
            extra_roots_pem: r.get("extra_roots_pem"),
            credentials: open("credentials_sealed", "acme-account")?,
            registered_for: r.get("registered_for"),
            account_id: r.get("account_id"),
        }))
    }

    pub async fn acme_settings(&self) -> Result<AcmeSettings, ApiError> {
        let row = self.acme_row().await?;
        Ok(AcmeSettings {
            directory_url: row.as_ref().map(|r| r.directory_url.clone()),
            email: row.as_ref().and_then(|r| r.email.clone()),
            eab_configured: row.as_ref().is_some_and(|r| r.eab_hmac.is_some()),
            eab_kid: row.as_ref().and_then(|r| r.eab_kid.clone()),
            extra_roots_pem: row.as_ref().and_then(|r| r.extra_roots_pem.clone()),
            account_id: row
                .as_ref()
                .filter(|r| r.registered_for.as_deref() == Some(r.identity().as_str()))
                .and_then(|r| r.account_id.clone()),
            presets: vec![
                AcmePreset {
                    name: "Let's Encrypt".into(),
                    directory_url: LETS_ENCRYPT.into(),
                },
                AcmePreset {
                    name: "Let's Encrypt (staging)".into(),
                    directory_url: LETS_ENCRYPT_STAGING.into(),
                },
            ],
        })
    }

    /// Validates and stores the ACME settings. The account is registered at
    /// the next order; a changed CA, e-mail or EAB means a new account.
    pub async fn set_acme(&self, input: AcmeSettingsInput) -> Result<AcmeSettings, ApiError> {
        let url = input.directory_url.trim().to_string();
        let parsed = reqwest::Url::parse(&url)
            .map_err(|_| ApiError::invalid("directory_url", "not a URL"))?;
        if parsed.scheme() != "https" || parsed.host_str().is_none() {
            return Err(ApiError::invalid(
                "directory_url",
                "the ACME directory must be an https:// URL",
            ));
        }
        let email = input
            .email
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty());
        if let Some(e) = &email {
            if e.parse::<lettre::Address>().is_err() || e.contains(['<', '>', ' ']) {
                return Err(ApiError::invalid("email", "not an e-mail address"));
            }
        }
        let roots = input
            .extra_roots_pem
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty());
        if let Some(p) = &roots {
            let certs = pem::parse_chain(p)
                .map_err(|e| ApiError::invalid("extra_roots_pem", format!("{e:#}")))?;
            for c in &certs {
                pem::facts(c)
                    .map_err(|e| ApiError::invalid("extra_roots_pem", format!("{e:#}")))?;
            }
            let normalised = pem::chain_pem(&certs);
            reqwest::Certificate::from_pem_bundle(normalised.as_bytes())
                .map_err(|e| ApiError::invalid("extra_roots_pem", e.to_string()))?;
        }
        let before = self.acme_row().await?;
        let (eab_kid, eab_hmac) = match input.eab {
            None => (None, None),
            Some(eab) => {
                let kid = eab.kid.trim().to_string();
                if kid.is_empty() || kid.len() > 256 {
                    return Err(ApiError::invalid("eab.kid", "1 to 256 characters"));
                }
                let key = match eab.hmac_key.as_deref().filter(|k| !k.trim().is_empty()) {
                    Some(k) => acme::decode_hmac(k).ok_or_else(|| {
                        ApiError::invalid("eab.hmac_key", "not a base64url key as the CA gives it")
                    })?,
                    None => before
                        .as_ref()
                        .filter(|b| b.eab_kid.as_deref() == Some(kid.as_str()))
                        .and_then(|b| b.eab_hmac.clone())
                        .ok_or_else(|| {
                            ApiError::invalid("eab.hmac_key", "the HMAC key is required")
                        })?,
                };
                (Some(kid), Some(key))
            }
        };
        let eab_sealed = eab_hmac
            .as_ref()
            .map(|k| self.keys.seal("acme-eab-hmac", k));
        sqlx::query(
            "INSERT INTO acme_account (id, directory_url, email, eab_kid, eab_hmac_sealed, extra_roots_pem, updated_at) \
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET \
             directory_url = ?1, email = ?2, eab_kid = ?3, eab_hmac_sealed = ?4, extra_roots_pem = ?5, updated_at = ?6",
        )
        .bind(&url)
        .bind(&email)
        .bind(&eab_kid)
        .bind(eab_sealed)
        .bind(&roots)
        .bind(crate::store::now())
        .execute(&self.db)
        .await?;
        self.wake.notify_one();
        self.acme_settings().await
    }

    /// `--acme-directory` / `--acme-ca-file`: stored at start, so scripted
    /// installs need no API call.
    pub async fn apply_flags(&self) -> anyhow::Result<()> {
        if self.config.acme_directory.is_none() && self.config.acme_ca_file.is_none() {
            return Ok(());
        }
        let current = self.acme_row().await?;
        let roots = match &self.config.acme_ca_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
            ),
            None => current.as_ref().and_then(|c| c.extra_roots_pem.clone()),
        };
        let url = self
            .config
            .acme_directory
            .clone()
            .or(current.as_ref().map(|c| c.directory_url.clone()))
            .unwrap_or_else(|| LETS_ENCRYPT.to_string());
        let email = match &current {
            Some(c) => c.email.clone(),
            None => crate::settings::get(&self.db).await?.acme_email,
        };
        let eab = current.as_ref().and_then(|c| {
            c.eab_kid.clone().map(|kid| app::api::EabInput {
                kid,
                hmac_key: None,
            })
        });
        self.set_acme(AcmeSettingsInput {
            directory_url: url,
            email,
            eab,
            extra_roots_pem: roots,
        })
        .await
        .map_err(|e| anyhow::anyhow!("ACME settings from the command line: {e}"))?;
        Ok(())
    }

    /// The setup wizard's ACME e-mail: configures Let's Encrypt with it
    /// unless ACME is already set up.
    pub async fn adopt_setup_email(&self, email: Option<String>) -> Result<(), ApiError> {
        if self.acme_row().await?.is_some() || email.is_none() {
            self.wake.notify_one();
            return Ok(());
        }
        self.set_acme(AcmeSettingsInput {
            directory_url: LETS_ENCRYPT.into(),
            email,
            eab: None,
            extra_roots_pem: None,
        })
        .await
        .map(|_| ())
    }

    /// The account, restored from its sealed credentials or registered now.
    async fn account(&self, progress: &StepLog) -> Result<(instant_acme::Account, String), String> {
        use acme::Progress;
        let row = self
            .acme_row()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("ACME is not configured: set the CA in the certificate settings")?;
        let directory = row.directory();
        if let (Some(creds), Some(reg)) = (&row.credentials, &row.registered_for) {
            if *reg == row.identity() {
                if let Ok(creds) = serde_json::from_slice(creds) {
                    let account = directory.restore(creds).await?;
                    progress
                        .step("account", "done", Some(account.id().to_string()))
                        .await;
                    return Ok((account, row.directory_url));
                }
            }
        }
        progress
            .step(
                "account",
                "running",
                Some(format!("registering with {}", row.directory_url)),
            )
            .await;
        let (account, creds) = match directory.register().await {
            Ok(made) => made,
            Err(e) => {
                progress.step("account", "failed", Some(e.clone())).await;
                return Err(e);
            }
        };
        let json = serde_json::to_vec(&creds).map_err(|e| e.to_string())?;
        sqlx::query(
            "UPDATE acme_account SET credentials_sealed = ?, registered_for = ?, account_id = ? WHERE id = 1",
        )
        .bind(self.keys.seal("acme-account", &json))
        .bind(row.identity())
        .bind(account.id())
        .execute(&self.db)
        .await
        .map_err(|e| e.to_string())?;
        progress
            .step("account", "done", Some(account.id().to_string()))
            .await;
        Ok((account, row.directory_url))
    }

    // ---- reading -----------------------------------------------------------

    async fn rows(&self) -> Result<Vec<Stored>, ApiError> {
        Ok(sqlx::query(&format!(
            "SELECT {ROW_COLUMNS} FROM certificates ORDER BY created_at, id"
        ))
        .fetch_all(&self.db)
        .await?
        .iter()
        .map(decode_row)
        .collect())
    }

    async fn row(&self, id: &str) -> Result<Stored, ApiError> {
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
        let rows = sqlx::query("SELECT * FROM certificates ORDER BY created_at, id")
            .fetch_all(&self.db)
            .await?;
        Ok(rows.iter().map(|r| view(r, Vec::new())).collect())
    }

    pub async fn get(&self, id: &str) -> Result<Certificate, ApiError> {
        let r = sqlx::query("SELECT * FROM certificates WHERE id = ?")
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
        self.start(id.clone());
        self.get(&id).await
    }

    async fn insert_order(&self, req: OrderRequest, automatic: bool) -> Result<String, ApiError> {
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
        if self.is_busy(id) {
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

    // ---- attempts ----------------------------------------------------------

    /// Whether an issuance or renewal of `id` is running now.
    pub fn is_attempting(&self, id: &str) -> bool {
        self.is_busy(id)
    }

    fn is_busy(&self, id: &str) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    fn start(self: &Arc<Self>, id: String) {
        let me = self.clone();
        tokio::spawn(async move { me.attempt(&id).await });
    }

    /// One issuance or renewal. Never two at once for one certificate.
    pub async fn attempt(&self, id: &str) {
        if !self
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string())
        {
            return;
        }
        let outcome = self.attempt_inner(id).await;
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Err(e) = outcome {
            tracing::error!(certificate = %id, error = %e, "certificate attempt could not be recorded");
        }
    }

    async fn attempt_inner(&self, id: &str) -> Result<(), ApiError> {
        use acme::Progress;
        let row = match self.row(id).await {
            Ok(r) => r,
            Err(ApiError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if row.source != "acme" {
            return Ok(());
        }
        let now = crate::store::now();
        sqlx::query("DELETE FROM certificate_steps WHERE certificate_id = ?")
            .bind(id)
            .execute(&self.db)
            .await?;
        let state = if row.has_chain {
            row.state.as_str()
        } else {
            "issuing"
        };
        sqlx::query(
            "UPDATE certificates SET state = ?, last_attempt_at = ?, updated_at = ? WHERE id = ?",
        )
        .bind(state)
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&self.db)
        .await?;
        let log = StepLog {
            db: self.db.clone(),
            id: id.to_string(),
        };
        let result = self.issue(&row, &log).await;
        match result {
            Ok(()) => {
                log.step("install", "done", Some("served by the proxy".into()))
                    .await;
                Ok(())
            }
            Err(why) => self.record_failure(&row, &why).await,
        }
    }

    async fn issue(&self, row: &Stored, log: &StepLog) -> Result<(), String> {
        use acme::Progress;
        let challenge = row.challenge.unwrap_or_default();
        let solver: Box<dyn acme::Solver> = match challenge {
            ChallengeKind::Http01 => {
                log.step("self-test", "running", None).await;
                if let Err(e) = http01::self_test(
                    &self.proxy,
                    &row.domains,
                    self.config.self_test_port,
                    self.config.resolver,
                )
                .await
                {
                    log.step("self-test", "failed", Some(e.clone())).await;
                    return Err(e);
                }
                log.step("self-test", "done", None).await;
                Box::new(http01::Http01::new(self.proxy.clone()))
            }
            ChallengeKind::Dns01 => Box::new(
                dns::solver(
                    &self.db,
                    &self.keys,
                    row.dns_provider.as_deref(),
                    self.config.resolver,
                )
                .await?,
            ),
        };
        let (account, url) = self.account(log).await?;
        let issued = acme::issue(
            &account,
            &url,
            &row.domains,
            row.key_type.unwrap_or_default(),
            row.ari_id.as_deref(),
            solver.as_ref(),
            log,
        )
        .await?;
        let chain = pem::parse_chain(&issued.chain_pem).map_err(|e| format!("{e:#}"))?;
        let facts = pem::facts(&chain[0]).map_err(|e| format!("{e:#}"))?;
        // Check before storing that what the CA sent goes with our key.
        pem::loaded(&issued.chain_pem, &issued.key_pem).map_err(|e| format!("{e:#}"))?;
        let (renew_at, reason, ari_check_at) = self
            .renewal_time(
                &account,
                &url,
                facts.ari_id.as_deref(),
                facts.not_before,
                facts.not_after,
            )
            .await;
        let now = crate::store::now();
        sqlx::query(
            "UPDATE certificates SET state = 'valid', chain_pem = ?, key_sealed = ?, issuer = ?, serial = ?, \
             not_before = ?, not_after = ?, fingerprint = ?, ari_id = ?, renew_at = ?, renew_reason = ?, \
             ari_check_at = ?, failures = 0, retry_at = NULL, last_error = NULL, updated_at = ? WHERE id = ?",
        )
        .bind(pem::chain_pem(&chain))
        .bind(self.keys.seal(&key_purpose(&row.id), issued.key_pem.as_bytes()))
        .bind(&facts.issuer)
        .bind(&facts.serial)
        .bind(facts.not_before)
        .bind(facts.not_after)
        .bind(&facts.fingerprint)
        .bind(&facts.ari_id)
        .bind(renew_at)
        .bind(reason)
        .bind(ari_check_at)
        .bind(now)
        .bind(&row.id)
        .execute(&self.db)
        .await
        .map_err(|e| e.to_string())?;
        log.step("install", "running", None).await;
        self.install().await
    }

    /// ARI's window when the CA has it, else two thirds of the lifetime.
    async fn renewal_time(
        &self,
        account: &instant_acme::Account,
        url: &str,
        ari_id: Option<&str>,
        not_before: i64,
        not_after: i64,
    ) -> (i64, &'static str, Option<i64>) {
        if let Some(ari) = ari_id {
            match acme::renewal_window(account, url, ari).await {
                // A window already over for a certificate just issued would
                // renew it again at once, forever: trust the lifetime instead.
                Ok(Some((_, end, _))) if end <= self.clock.now() => {
                    tracing::warn!(
                        certificate = ari,
                        "the CA's renewal window is already over; using two thirds of the lifetime"
                    );
                }
                Ok(Some((start, end, retry))) => {
                    return (
                        schedule::in_window(start, end, &mut rand::thread_rng()),
                        "ari",
                        Some(self.clock.now() + schedule::ari_recheck(retry)),
                    );
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "renewal information unavailable"),
            }
        }
        (
            schedule::two_thirds(not_before, not_after, &mut rand::thread_rng()),
            "two-thirds",
            None,
        )
    }

    async fn record_failure(&self, row: &Stored, why: &str) -> Result<(), ApiError> {
        let failures = row.failures + 1;
        let retry_at = self.clock.now() + schedule::backoff(failures);
        // A renewal that fails leaves the current certificate in service.
        let state = if row.has_chain { "valid" } else { "failed" };
        sqlx::query(
            "UPDATE certificates SET state = ?, failures = ?, retry_at = ?, renew_reason = CASE WHEN ? THEN renew_reason ELSE 'retry' END, \
             last_error = ?, updated_at = ? WHERE id = ?",
        )
        .bind(state)
        .bind(failures as i64)
        .bind(retry_at)
        .bind(row.has_chain)
        .bind(why)
        .bind(crate::store::now())
        .bind(&row.id)
        .execute(&self.db)
        .await?;
        tracing::warn!(certificate = %row.id, failures, error = %why, "certificate attempt failed");
        let renewal = row.has_chain;
        self.notifier
            .send(&Notice {
                event: if renewal {
                    "certificate.renewal_failed"
                } else {
                    "certificate.issuance_failed"
                }
                .into(),
                subject: format!(
                    "berth: {} for {} failed",
                    if renewal { "renewal" } else { "issuance" },
                    row.domains.join(", ")
                ),
                text: format!(
                    "{why}\n\nberth retries at {} (attempt {} failed in a row).",
                    crate::store::rfc3339(retry_at),
                    failures
                ),
                details: serde_json::json!({
                    "certificate": row.id,
                    "domains": row.domains,
                    "failures": failures,
                    "retry_at": crate::store::rfc3339(retry_at),
                    "not_after": row.not_after.map(crate::store::rfc3339),
                }),
            })
            .await;
        Ok(())
    }

    // ---- the expiry probe --------------------------------------------------

    /// The probe's last readings.
    pub async fn probes(&self) -> Result<Vec<ProbeResult>, ApiError> {
        Ok(sqlx::query(
            "SELECT host, checked_at, served_fingerprint, served_not_after, expected_certificate, status, detail \
             FROM certificate_probes ORDER BY host",
        )
        .fetch_all(&self.db)
        .await?
        .iter()
        .map(|r| ProbeResult {
            host: r.get("host"),
            checked_at: crate::store::rfc3339(r.get("checked_at")),
            served_fingerprint: r.get("served_fingerprint"),
            served_not_after: r
                .get::<Option<i64>, _>("served_not_after")
                .map(crate::store::rfc3339),
            expected_certificate: r.get("expected_certificate"),
            status: r.get("status"),
            detail: r.get("detail"),
        })
        .collect())
    }

    /// Handshakes with every domain through the public HTTPS listener,
    /// compares what is served with what the store expects, and notifies
    /// once per new problem.
    pub async fn probe(&self) -> Result<Vec<ProbeResult>, ApiError> {
        let now = self.clock.now();
        self.last_probe
            .store(now, std::sync::atomic::Ordering::Relaxed);
        let Some(addr) = self.config.probe_address.or(self.proxy.https_address()) else {
            return Err(ApiError::Conflict(
                "the proxy has no HTTPS listener to probe".into(),
            ));
        };
        let hosts: Vec<String> = self
            .wishes()
            .await?
            .into_iter()
            .map(|(h, _, _)| h)
            .collect();
        let expected = sqlx::query(
            "SELECT id, domains, fingerprint, not_after FROM certificates \
             WHERE chain_pem IS NOT NULL AND state != 'retired' ORDER BY not_after DESC",
        )
        .fetch_all(&self.db)
        .await?;
        let warn = i64::from(self.config.expiry_warning_days) * 86_400;
        for host in &hosts {
            // The stored certificate the proxy should pick: the one covering
            // the host that is valid longest (the proxy's own rule).
            let best = expected.iter().find(|r| {
                serde_json::from_str::<Vec<String>>(r.get::<&str, _>("domains"))
                    .unwrap_or_default()
                    .iter()
                    .any(|n| pem::covers(n, host))
            });
            let expected_id: Option<String> = best.map(|r| r.get("id"));
            let expected_fp: Option<String> = best.and_then(|r| r.get("fingerprint"));
            let (fp, not_after, status, detail) = match probe::served(addr, host).await {
                Err(e) => match &expected_id {
                    Some(id) => (
                        None,
                        None,
                        "unreachable",
                        Some(format!(
                            "berth holds {id} for this host, but the listener did not present it: {e}"
                        )),
                    ),
                    None => (
                        None,
                        None,
                        "missing",
                        Some(format!("no certificate is served for this host ({e})")),
                    ),
                },
                Ok(der) => {
                    let fp = pem::fingerprint(&der);
                    let leaf = rustls::pki_types::CertificateDer::from(der);
                    let not_after = pem::facts(&leaf).ok().map(|f| f.not_after);
                    let (status, detail) = if expected_fp.as_deref() != Some(fp.as_str()) {
                        (
                            "mismatch",
                            Some(match &expected_id {
                                Some(id) => format!(
                                    "the listener serves a certificate other than berth's {id}: \
                                     a renewal that did not go live, or a file in the certificate directory"
                                ),
                                None => "the listener serves a certificate berth does not manage".into(),
                            }),
                        )
                    } else {
                        match not_after {
                            Some(t) if t <= now => (
                                "expired",
                                Some(format!("expired {}", crate::store::rfc3339(t))),
                            ),
                            Some(t) if t - now <= warn => (
                                "expiring",
                                Some(format!("expires {}", crate::store::rfc3339(t))),
                            ),
                            _ => ("ok", None),
                        }
                    };
                    (Some(fp), not_after, status, detail)
                }
            };
            let previous: Option<Option<String>> =
                sqlx::query_scalar("SELECT notified_status FROM certificate_probes WHERE host = ?")
                    .bind(host)
                    .fetch_optional(&self.db)
                    .await?;
            let notified = previous.flatten();
            let announce = status != "ok" && notified.as_deref() != Some(status);
            let notified_now = if status == "ok" {
                None
            } else {
                Some(status.to_string())
            };
            sqlx::query(
                "INSERT INTO certificate_probes (host, checked_at, served_fingerprint, served_not_after, \
                 expected_certificate, status, detail, notified_status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (host) DO UPDATE SET checked_at = ?2, served_fingerprint = ?3, served_not_after = ?4, \
                 expected_certificate = ?5, status = ?6, detail = ?7, notified_status = ?8",
            )
            .bind(host)
            .bind(now)
            .bind(&fp)
            .bind(not_after)
            .bind(&expected_id)
            .bind(status)
            .bind(&detail)
            .bind(&notified_now)
            .execute(&self.db)
            .await?;
            if announce {
                self.notifier
                    .send(&Notice {
                        event: format!("certificate.{status}"),
                        subject: format!("berth: the certificate for {host} is {status}"),
                        text: detail.clone().unwrap_or_default(),
                        details: serde_json::json!({
                            "host": host,
                            "status": status,
                            "served_fingerprint": fp,
                            "served_not_after": not_after.map(crate::store::rfc3339),
                            "expected_certificate": expected_id,
                        }),
                    })
                    .await;
            }
        }
        // Hosts no longer served are forgotten.
        let all: Vec<String> = sqlx::query_scalar("SELECT host FROM certificate_probes")
            .fetch_all(&self.db)
            .await?;
        for h in all.iter().filter(|h| !hosts.contains(h)) {
            sqlx::query("DELETE FROM certificate_probes WHERE host = ?")
                .bind(h)
                .execute(&self.db)
                .await?;
        }
        self.probes().await
    }

    // ---- the scheduler -----------------------------------------------------

    /// Wakes the scheduler (after a domain or setting changed).
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Runs the scheduler for the life of the process.
    pub async fn run(self: Arc<Self>) {
        let mut domains = self.proxy.subscribe_domains();
        if let Err(e) = self.install().await {
            tracing::error!(error = %e, "stored certificates could not be installed");
        }
        loop {
            self.tick().await;
            let now = self.clock.now();
            let last = self.last_probe.load(std::sync::atomic::Ordering::Relaxed);
            if now - last >= self.config.probe_interval.as_secs() as i64 {
                if let Err(e) = self.probe().await {
                    tracing::warn!(error = %e, "expiry probe failed");
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                r = domains.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// One pass: orders certificates domains want, retires those no domain
    /// uses, renews what is due and retries what failed when its back-off
    /// has passed. Waits for the attempts it starts.
    pub async fn tick(&self) {
        if let Err(e) = self.tick_inner().await {
            tracing::warn!(error = %e, "certificate scheduler pass failed");
        }
    }

    async fn tick_inner(&self) -> Result<(), ApiError> {
        let wishes = self.wishes().await?;
        let served: BTreeSet<&String> = wishes.iter().map(|(host, _, _)| host).collect();
        let mut rows = self.rows().await?;
        let configured = self.acme_row().await?.is_some();

        // Domains that want a certificate and have none: order one.
        if configured {
            let on_disk = self.proxy.shared.certs.all();
            for (host, names, auto) in &wishes {
                if !auto {
                    continue;
                }
                let stored = rows.iter().any(|r| {
                    r.state != "retired" && r.domains.iter().any(|n| pem::covers(n, host))
                });
                let from_files = on_disk
                    .get(host)
                    .is_some_and(|l| !l.source.starts_with("berth:"));
                if stored || from_files {
                    continue;
                }
                let req = OrderRequest {
                    domains: names.clone(),
                    challenge: ChallengeKind::Http01,
                    dns_provider: None,
                    key_type: KeyType::EcdsaP256,
                };
                match self.insert_order(req, true).await {
                    Ok(id) => {
                        tracing::info!(certificate = %id, %host, "ordering a certificate for a new domain")
                    }
                    Err(e) => tracing::warn!(%host, error = %e, "cannot order a certificate"),
                }
            }
            rows = self.rows().await?;
        }

        let now = self.clock.now();
        for row in rows.iter().filter(|r| r.source == "acme") {
            let wanted = row
                .domains
                .iter()
                .any(|n| served.iter().any(|h| pem::covers(n, h)));
            if row.state == "retired" {
                // A domain came back: renewals resume.
                if wanted {
                    self.set_state(&row.id, "valid").await?;
                }
                continue;
            }
            if !configured || self.is_busy(&row.id) || row.retry_at.is_some_and(|t| t > now) {
                continue;
            }
            if !row.has_chain {
                // A first order (or its retry): the admin asked for it.
                self.attempt(&row.id).await;
                continue;
            }
            let mut renew_at = row.renew_at;
            if let (Some(ari), Some(check)) = (&row.ari_id, row.ari_check_at) {
                if check <= now {
                    renew_at = self.recheck_ari(row, ari).await.or(renew_at);
                }
            }
            let due = renew_at.is_some_and(|t| t <= now) || row.not_after.is_some_and(|t| t <= now);
            if !due {
                continue;
            }
            // Renewal stops when no domain uses the certificate any more.
            if !wanted {
                tracing::info!(certificate = %row.id, "not renewed: no domain uses it");
                self.set_state(&row.id, "retired").await?;
                continue;
            }
            self.attempt(&row.id).await;
        }
        Ok(())
    }

    async fn recheck_ari(&self, row: &Stored, ari: &str) -> Option<i64> {
        let acme = self.acme_row().await.ok()??;
        let creds = serde_json::from_slice(acme.credentials.as_ref()?).ok()?;
        let account = acme.directory().restore(creds).await.ok()?;
        match acme::renewal_window(&account, &acme.directory_url, ari).await {
            Ok(Some((start, end, retry))) => {
                let now = self.clock.now();
                // Keep the current pick while it still lies in the window.
                let at = match row.renew_at {
                    Some(t) if t >= start && t < end => t,
                    _ => schedule::in_window(start, end, &mut rand::thread_rng()),
                };
                let _ = sqlx::query(
                    "UPDATE certificates SET renew_at = ?, renew_reason = 'ari', ari_check_at = ? WHERE id = ?",
                )
                .bind(at)
                .bind(now + schedule::ari_recheck(retry))
                .bind(&row.id)
                .execute(&self.db)
                .await;
                Some(at)
            }
            _ => None,
        }
    }

    async fn set_state(&self, id: &str, state: &str) -> Result<(), ApiError> {
        sqlx::query("UPDATE certificates SET state = ?, updated_at = ? WHERE id = ?")
            .bind(state)
            .bind(crate::store::now())
            .bind(id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Hosts served, the names a certificate for each should cover, and
    /// whether to order one automatically; the panel's own domain included.
    async fn wishes(&self) -> Result<Vec<(String, Vec<String>, bool)>, ApiError> {
        let mut wishes = self.proxy.certificate_wishes().await?;
        if let Some(panel) = crate::settings::get(&self.db)
            .await
            .map_err(ApiError::Internal)?
            .panel_domain
        {
            if !wishes.iter().any(|(h, _, _)| *h == panel) {
                wishes.push((panel.clone(), vec![panel], true));
            }
        }
        Ok(wishes)
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
    fn order_names_are_normalised_deduplicated_and_wildcards_need_dns01() {
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
    fn eab_keys_decode_padded_or_not_and_garbage_is_refused() {
        assert_eq!(acme::decode_hmac("YWJjZA").unwrap(), b"abcd");
        assert_eq!(acme::decode_hmac("YWJjZA==").unwrap(), b"abcd");
        assert!(acme::decode_hmac("not base64!").is_none());
        assert!(acme::decode_hmac("").is_none());
    }
}
