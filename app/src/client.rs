//! The browser's client for the REST API. Every page talks to berth through
//! this, exactly as a script would: same routes, same errors, plus the CSRF
//! header that cookie-authenticated changes need.
//!
//! During server-side rendering nothing calls it (data is loaded after
//! hydration), so the server build has a stub that always fails.

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq)]
pub struct ClientError {
    /// HTTP status, or 0 when the request never got an answer.
    pub status: u16,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl ClientError {
    fn network(message: impl Into<String>) -> Self {
        ClientError {
            status: 0,
            code: "network".into(),
            message: message.into(),
            field: None,
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

#[cfg(feature = "hydrate")]
mod imp {
    use super::*;
    use crate::api::ErrorBody;
    use gloo_net::http::{Method, RequestBuilder};
    use std::cell::RefCell;

    thread_local! {
        static CSRF: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    pub fn set_csrf(token: Option<String>) {
        CSRF.with(|c| *c.borrow_mut() = token);
    }

    pub async fn call(method: &str, path: &str, body: Option<String>) -> Result<Option<String>> {
        let method = match method {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "DELETE" => Method::DELETE,
            other => return Err(ClientError::network(format!("unsupported method {other}"))),
        };
        let mut req = RequestBuilder::new(path)
            .method(method)
            .header("Accept", "application/json");
        if let Some(token) = CSRF.with(|c| c.borrow().clone()) {
            req = req.header("X-CSRF-Token", &token);
        }
        let req = match body {
            Some(b) => req
                .header("Content-Type", "application/json")
                .body(b)
                .map_err(|e| ClientError::network(e.to_string()))?,
            None => req
                .build()
                .map_err(|e| ClientError::network(e.to_string()))?,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::network(format!("berth did not answer: {e}")))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok((!text.is_empty()).then_some(text));
        }
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(e) => ClientError {
                status,
                code: e.error.code,
                message: e.error.message,
                field: e.error.field,
            },
            Err(_) => ClientError {
                status,
                code: "http".into(),
                message: format!("berth answered {status}"),
                field: None,
            },
        })
    }
}

#[cfg(not(feature = "hydrate"))]
mod imp {
    use super::*;

    pub fn set_csrf(_token: Option<String>) {}

    pub async fn call(_method: &str, _path: &str, _body: Option<String>) -> Result<Option<String>> {
        Err(ClientError::network(
            "the API client runs in the browser only",
        ))
    }
}

pub use imp::set_csrf;

fn decode<T: DeserializeOwned>(text: Option<String>) -> Result<T> {
    serde_json::from_str(text.as_deref().unwrap_or("null"))
        .map_err(|e| ClientError::network(format!("unexpected answer: {e}")))
}

pub async fn get<T: DeserializeOwned>(path: &str) -> Result<T> {
    decode(imp::call("GET", path, None).await?)
}

pub async fn send<B: Serialize, T: DeserializeOwned>(
    method: &str,
    path: &str,
    body: &B,
) -> Result<T> {
    let body = serde_json::to_string(body).map_err(|e| ClientError::network(e.to_string()))?;
    decode(imp::call(method, path, Some(body)).await?)
}

/// For routes that answer 204 No Content.
pub async fn send_no_content<B: Serialize>(
    method: &str,
    path: &str,
    body: Option<&B>,
) -> Result<()> {
    let body = match body {
        Some(b) => Some(serde_json::to_string(b).map_err(|e| ClientError::network(e.to_string()))?),
        None => None,
    };
    imp::call(method, path, body).await.map(|_| ())
}
