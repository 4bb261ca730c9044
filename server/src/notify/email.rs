//! E-mail delivery through an SMTP relay (lettre). The relay's name is
//! resolved and checked once, and lettre connects to that address while TLS
//! still verifies the name.

use std::time::Duration;

use app::api::SmtpSecurity;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Notice;

pub struct Relay<'a> {
    pub host: &'a str,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub allow_internal: bool,
}

pub async fn send(
    relay: Relay<'_>,
    from: &str,
    to: &[String],
    notice: &Notice,
) -> Result<(), String> {
    let addrs = crate::outbound::resolve(relay.host, relay.port, relay.allow_internal).await?;
    let address = addrs[0].ip().to_string();
    let tls = |wrap: bool| -> Result<Tls, String> {
        let params = TlsParameters::new(relay.host.to_string()).map_err(|e| e.to_string())?;
        Ok(if wrap {
            Tls::Wrapper(params)
        } else {
            Tls::Required(params)
        })
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address)
        .port(relay.port)
        .timeout(Some(Duration::from_secs(20)))
        .tls(match relay.security {
            SmtpSecurity::Tls => tls(true)?,
            SmtpSecurity::Starttls => tls(false)?,
            SmtpSecurity::None => Tls::None,
        });
    if let (Some(user), Some(password)) = (relay.username, relay.password) {
        transport = transport.credentials(Credentials::new(user.to_string(), password.to_string()));
    }
    let mut builder = Message::builder()
        .from(from.parse().map_err(|e| format!("from: {e}"))?)
        .subject(&notice.subject);
    for t in to {
        builder = builder.to(t.parse().map_err(|e| format!("to {t}: {e}"))?);
    }
    let details = serde_json::to_string_pretty(&notice.details).unwrap_or_default();
    let message = builder
        .body(format!(
            "{}\n\n{details}\n\n-- berth ({})\n",
            notice.text, notice.event
        ))
        .map_err(|e| e.to_string())?;
    transport
        .build()
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| {
            let mut text = format!(
                "the SMTP relay {}:{} refused or failed: {e}",
                relay.host, relay.port
            );
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        })
}
