//! Notification channels: where berth tells the admin that something needs
//! attention (a certificate that failed to renew or is about to expire; later
//! backups). A webhook gets a JSON POST, optionally HMAC-signed; e-mail goes
//! through an SMTP relay. Secrets (HMAC key, SMTP password) are sealed with
//! master.key and never returned.

mod email;
pub mod routes;
mod webhook;

use std::sync::Arc;

use app::api::{Channel, ChannelConfig, ChannelInput, ChannelTest, SmtpSecurity};
use serde::Serialize;
use sqlx::{Row, SqlitePool};

use crate::crypto::Keys;
use crate::http::error::ApiError;

/// One thing to tell the admin.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    /// Stable machine name, e.g. `certificate.renewal_failed`.
    pub event: String,
    /// One line, used as the e-mail subject.
    pub subject: String,
    /// A few sentences for a person.
    pub text: String,
    /// Structured facts for scripts (host, certificate id, dates).
    pub details: serde_json::Value,
}

pub struct Notifier {
    db: SqlitePool,
    keys: Arc<Keys>,
}

struct Stored {
    id: String,
    name: String,
    config: ChannelConfig,
    secret: Option<String>,
    allow_internal: bool,
}

pub(crate) fn purpose(id: &str) -> String {
    format!("notification-channel:{id}")
}

impl Notifier {
    pub fn new(db: SqlitePool, keys: Arc<Keys>) -> Notifier {
        Notifier { db, keys }
    }

    pub async fn list(&self) -> Result<Vec<Channel>, ApiError> {
        let rows = sqlx::query(
            "SELECT id, name, config, secret_sealed IS NOT NULL AS has_secret, allow_internal, \
             created_at, last_sent_at, last_error FROM notification_channels ORDER BY name",
        )
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(view).collect()
    }

    pub async fn get(&self, id: &str) -> Result<Channel, ApiError> {
        let row = sqlx::query(
            "SELECT id, name, config, secret_sealed IS NOT NULL AS has_secret, allow_internal, \
             created_at, last_sent_at, last_error FROM notification_channels WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.db)
        .await?
        .ok_or_else(|| not_found(id))?;
        view(&row)
    }

    pub async fn create(&self, input: ChannelInput) -> Result<Channel, ApiError> {
        let input = validate(input)?;
        let id = crate::crypto::random_hex(8);
        let sealed = input
            .secret
            .as_ref()
            .map(|s| self.keys.seal(&purpose(&id), s.as_bytes()));
        let inserted = sqlx::query(
            "INSERT INTO notification_channels (id, name, config, secret_sealed, allow_internal, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&id)
        .bind(&input.name)
        .bind(serde_json::to_string(&input.config).map_err(anyhow::Error::from)?)
        .bind(sealed)
        .bind(input.allow_internal)
        .bind(crate::store::now())
        .execute(&self.db)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(ApiError::Conflict(format!(
                "a channel named {} exists",
                input.name
            )));
        }
        self.get(&id).await
    }

    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        let done = sqlx::query("DELETE FROM notification_channels WHERE id = ?")
            .bind(id)
            .execute(&self.db)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    async fn stored(&self, only: Option<&str>) -> Result<Vec<Stored>, ApiError> {
        let rows = sqlx::query(
            "SELECT id, name, config, secret_sealed, allow_internal FROM notification_channels \
             WHERE ?1 IS NULL OR id = ?1",
        )
        .bind(only)
        .fetch_all(&self.db)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let id: String = r.get("id");
            let sealed: Option<Vec<u8>> = r.get("secret_sealed");
            let secret = match sealed {
                Some(s) => Some(
                    String::from_utf8(self.keys.open(&purpose(&id), &s)?)
                        .map_err(anyhow::Error::from)?,
                ),
                None => None,
            };
            out.push(Stored {
                config: serde_json::from_str(r.get::<&str, _>("config"))
                    .map_err(anyhow::Error::from)?,
                name: r.get("name"),
                allow_internal: r.get("allow_internal"),
                secret,
                id,
            });
        }
        Ok(out)
    }

    /// Sends a test notice through one channel and says how it went.
    pub async fn test(&self, id: &str) -> Result<ChannelTest, ApiError> {
        let channel = self
            .stored(Some(id))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| not_found(id))?;
        let notice = Notice {
            event: "test".into(),
            subject: "berth: test notification".into(),
            text: format!(
                "This is a test of the notification channel \"{}\". If you read this, it works.",
                channel.name
            ),
            details: serde_json::json!({ "channel": channel.name }),
        };
        let result = self.deliver(&channel, &notice).await;
        Ok(ChannelTest {
            delivered: result.is_ok(),
            error: result.err(),
        })
    }

    /// Sends `notice` through every channel. Failures are recorded on the
    /// channel (shown in the UI) and logged, never raised: a broken channel
    /// must not stop the job that noticed the problem.
    pub async fn send(&self, notice: &Notice) {
        let channels = match self.stored(None).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read notification channels");
                return;
            }
        };
        for channel in channels {
            if let Err(e) = self.deliver(&channel, notice).await {
                tracing::warn!(channel = %channel.name, event = %notice.event, error = %e, "notification not delivered");
            }
        }
    }

    async fn deliver(&self, channel: &Stored, notice: &Notice) -> Result<(), String> {
        let result = match &channel.config {
            ChannelConfig::Webhook { url } => {
                webhook::post(
                    url,
                    channel.secret.as_deref(),
                    channel.allow_internal,
                    notice,
                )
                .await
            }
            ChannelConfig::Email {
                host,
                port,
                security,
                username,
                from,
                to,
            } => {
                email::send(
                    email::Relay {
                        host,
                        port: *port,
                        security: *security,
                        username: username.as_deref(),
                        password: channel.secret.as_deref(),
                        allow_internal: channel.allow_internal,
                    },
                    from,
                    to,
                    notice,
                )
                .await
            }
        };
        let now = crate::store::now();
        let recorded = match &result {
            Ok(()) => sqlx::query(
                "UPDATE notification_channels SET last_sent_at = ?, last_error = NULL WHERE id = ?",
            )
            .bind(now)
            .bind(&channel.id),
            Err(e) => sqlx::query("UPDATE notification_channels SET last_error = ? WHERE id = ?")
                .bind(e)
                .bind(&channel.id),
        }
        .execute(&self.db)
        .await;
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "cannot record a notification outcome");
        }
        result
    }
}

/// A webhook URL as the API shows it: scheme, host and port. Its path and
/// query often are the credential (Slack, Discord), so they are write-only.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) if u.path() != "/" || u.query().is_some() => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}/…",
                u.scheme(),
                u.host_str().unwrap_or_default()
            )
        }
        Ok(u) => u.to_string(),
        Err(_) => "…".into(),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no notification channel {id}"))
}

fn view(r: &sqlx::sqlite::SqliteRow) -> Result<Channel, ApiError> {
    let mut config: ChannelConfig =
        serde_json::from_str(r.get::<&str, _>("config")).map_err(anyhow::Error::from)?;
    if let ChannelConfig::Webhook { url } = &mut config {
        *url = redact(url);
    }
    Ok(Channel {
        id: r.get("id"),
        name: r.get("name"),
        config,
        has_secret: r.get("has_secret"),
        allow_internal: r.get("allow_internal"),
        created_at: crate::store::rfc3339(r.get("created_at")),
        last_sent_at: r
            .get::<Option<i64>, _>("last_sent_at")
            .map(crate::store::rfc3339),
        last_error: r.get("last_error"),
    })
}

/// Checks a channel before it is stored; errors name the field.
fn validate(mut input: ChannelInput) -> Result<ChannelInput, ApiError> {
    input.name = input.name.trim().to_string();
    if input.name.is_empty() || input.name.chars().count() > 64 {
        return Err(ApiError::invalid("name", "1 to 64 characters"));
    }
    if input.secret.as_deref().is_some_and(|s| s.is_empty()) {
        input.secret = None;
    }
    if input.secret.as_ref().is_some_and(|s| s.len() > 1024) {
        return Err(ApiError::invalid("secret", "at most 1024 bytes"));
    }
    let literal_check = |field: &str, host: &str| -> Result<(), ApiError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            if let Some(why) = crate::outbound::refuse(ip, input.allow_internal) {
                return Err(ApiError::invalid(field, why));
            }
        }
        Ok(())
    };
    match &mut input.config {
        ChannelConfig::Webhook { url } => {
            *url = url.trim().to_string();
            let parsed =
                crate::outbound::check_url(url).map_err(|e| ApiError::invalid("config.url", e))?;
            literal_check("config.url", parsed.host_str().unwrap_or_default())?;
        }
        ChannelConfig::Email {
            host,
            port,
            username,
            from,
            to,
            security,
        } => {
            *host = host.trim().to_string();
            if host.is_empty() || host.contains(['/', ' ', '@']) {
                return Err(ApiError::invalid("config.host", "a host name or address"));
            }
            literal_check("config.host", host)?;
            if *port == 0 {
                return Err(ApiError::invalid("config.port", "a port number 1..=65535"));
            }
            if from.parse::<lettre::message::Mailbox>().is_err() {
                return Err(ApiError::invalid("config.from", "an e-mail address"));
            }
            if to.is_empty() || to.len() > 20 {
                return Err(ApiError::invalid("config.to", "1 to 20 e-mail addresses"));
            }
            for (i, t) in to.iter().enumerate() {
                if t.parse::<lettre::message::Mailbox>().is_err() {
                    return Err(ApiError::invalid(
                        format!("config.to[{i}]"),
                        "an e-mail address",
                    ));
                }
            }
            if username.as_deref().is_some_and(|u| u.trim().is_empty()) {
                *username = None;
            }
            if username.is_some() && *security == SmtpSecurity::None && !input.allow_internal {
                return Err(ApiError::invalid(
                    "config.security",
                    "a password is sent in clear text without TLS: only to a relay on a private network (allow_internal)",
                ));
            }
            if username.is_some() && input.secret.is_none() {
                return Err(ApiError::invalid(
                    "secret",
                    "the SMTP password is needed with a username",
                ));
            }
        }
    }
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_shown_without_their_path_or_query() {
        assert_eq!(
            redact("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact("http://10.0.0.5:8080/hook?token=x"),
            "http://10.0.0.5:8080/…"
        );
        assert_eq!(redact("https://example.com/"), "https://example.com/");
    }
}
