//! Webhook delivery: one JSON POST to a checked address, no redirects.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Notice;

/// POSTs the notice. With a secret, `X-Berth-Signature: sha256=<hex>` is the
/// HMAC-SHA256 of the exact body, so the receiver can check who sent it.
pub async fn post(
    url: &str,
    secret: Option<&str>,
    allow_internal: bool,
    notice: &Notice,
) -> Result<(), String> {
    let parsed = crate::outbound::check_url(url)?;
    let client = crate::outbound::client_for(&parsed, allow_internal).await?;
    let body = serde_json::to_vec(&serde_json::json!({
        "event": notice.event,
        "subject": notice.subject,
        "text": notice.text,
        "details": notice.details,
        "sent_at": crate::store::rfc3339(crate::store::now()),
    }))
    .map_err(|e| e.to_string())?;
    let mut request = client
        .post(parsed)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Berth-Event", &notice.event);
    if let Some(secret) = secret {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(&body);
        let signature = hex::encode(mac.finalize().into_bytes());
        request = request.header("X-Berth-Signature", format!("sha256={signature}"));
    }
    // The URL's path may hold a token (Slack, Discord): never in errors.
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| describe(&e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else if status.is_redirection() {
        Err(format!(
            "the webhook answered {status} (a redirect; berth does not follow redirects)"
        ))
    } else {
        Err(format!("the webhook answered {status}"))
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "the webhook did not answer in time".to_string()
    } else if e.is_connect() {
        "cannot connect to the webhook".to_string()
    } else {
        "the webhook request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}
