//! The ACME settings (one row: the CA, contact, EAB, extra roots) and the
//! account registered with them, its credentials sealed with master.key.

use app::api::{AcmePreset, AcmeSettings, AcmeSettingsInput};
use sqlx::Row;

use super::attempt::StepLog;
use super::{acme, pem, Certificates, LETS_ENCRYPT, LETS_ENCRYPT_STAGING};
use crate::http::error::ApiError;

/// What the EAB HMAC key and the account credentials are sealed for.
pub(crate) const EAB_PURPOSE: &str = "acme-eab-hmac";
pub(crate) const CREDENTIALS_PURPOSE: &str = "acme-account";

/// The stored ACME settings (one row).
pub(super) struct AcmeRow {
    pub(super) directory_url: String,
    pub(super) email: Option<String>,
    pub(super) eab_kid: Option<String>,
    pub(super) eab_hmac: Option<Vec<u8>>,
    pub(super) extra_roots_pem: Option<String>,
    pub(super) credentials: Option<Vec<u8>>,
    pub(super) registered_for: Option<String>,
    pub(super) account_id: Option<String>,
}

impl AcmeRow {
    /// What an account registration depends on; a change means a new account.
    pub(super) fn identity(&self) -> String {
        format!(
            "{}|{}|{}",
            self.directory_url,
            self.email.as_deref().unwrap_or(""),
            self.eab_kid.as_deref().unwrap_or("")
        )
    }

    pub(super) fn directory(&self) -> acme::Directory {
        acme::Directory {
            url: self.directory_url.clone(),
            email: self.email.clone(),
            eab: self.eab_kid.clone().zip(self.eab_hmac.clone()),
            extra_roots_pem: self.extra_roots_pem.clone(),
        }
    }
}

impl Certificates {
    pub(super) async fn acme_row(&self) -> Result<Option<AcmeRow>, ApiError> {
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
            eab_hmac: open("eab_hmac_sealed", EAB_PURPOSE)?,
            extra_roots_pem: r.get("extra_roots_pem"),
            credentials: open("credentials_sealed", CREDENTIALS_PURPOSE)?,
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
        let eab_sealed = eab_hmac.as_ref().map(|k| self.keys.seal(EAB_PURPOSE, k));
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
    pub(super) async fn account(
        &self,
        progress: &StepLog,
    ) -> Result<(instant_acme::Account, String), String> {
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
        .bind(self.keys.seal(CREDENTIALS_PURPOSE, &json))
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
}
