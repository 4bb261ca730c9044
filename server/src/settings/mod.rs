//! Panel-wide settings chosen in the setup wizard: the panel's domain and the
//! ACME contact e-mail. They are stored now and used by the certificates
//! capability.

pub mod routes;

use app::api::Settings;
use sqlx::SqlitePool;

use crate::http::error::ApiError;

pub async fn get(db: &SqlitePool) -> anyhow::Result<Settings> {
    let rows =
        sqlx::query!("SELECT key, value FROM settings WHERE key IN ('panel_domain', 'acme_email')")
            .fetch_all(db)
            .await?;
    let mut s = Settings::default();
    for r in rows {
        match r.key.as_str() {
            "panel_domain" => s.panel_domain = Some(r.value),
            "acme_email" => s.acme_email = Some(r.value),
            _ => {}
        }
    }
    Ok(s)
}

/// Replaces both settings in one transaction; `None` clears one.
pub async fn put(db: &SqlitePool, s: &Settings) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    for (key, value) in [
        ("panel_domain", &s.panel_domain),
        ("acme_email", &s.acme_email),
    ] {
        match value {
            Some(v) => {
                sqlx::query!(
                    "INSERT INTO settings (key, value) VALUES (?, ?) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    key,
                    v
                )
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query!("DELETE FROM settings WHERE key = ?", key)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

pub fn validate(s: Settings) -> Result<Settings, ApiError> {
    let blank_to_none =
        |v: Option<String>| v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let panel_domain = blank_to_none(s.panel_domain).map(|d| d.to_lowercase());
    let acme_email = blank_to_none(s.acme_email);
    if let Some(d) = &panel_domain {
        if !is_hostname(d) {
            return Err(ApiError::invalid(
                "panel_domain",
                "panel_domain must be a hostname such as panel.example.com",
            ));
        }
    }
    if let Some(e) = &acme_email {
        let ok = e.len() <= 254
            && e.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !local
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
                    && is_hostname(&domain.to_lowercase())
            });
        if !ok {
            return Err(ApiError::invalid(
                "acme_email",
                "acme_email must be an e-mail address",
            ));
        }
    }
    Ok(Settings {
        panel_domain,
        acme_email,
    })
}

/// An ASCII (punycode) DNS name with at least two labels.
pub fn is_hostname(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').count() >= 2
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_and_emails_are_checked() {
        assert!(is_hostname("panel.example.com"));
        assert!(is_hostname("xn--bcher-kva.example"));
        for bad in [
            "localhost",
            "<script>.example.com",
            "a..b",
            "-a.example",
            "a_b.example",
        ] {
            assert!(!is_hostname(bad), "{bad}");
        }
        let s = |d: &str, e: &str| Settings {
            panel_domain: Some(d.into()),
            acme_email: Some(e.into()),
        };
        assert!(validate(s("Panel.Example.com", "ops@example.com")).is_ok());
        assert!(validate(s("panel.example.com", "not-an-email")).is_err());
        let cleared = validate(s(" ", "")).unwrap();
        assert_eq!(cleared, Settings::default());
    }
}
