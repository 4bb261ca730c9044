//! Middleware applied to every response and every state-changing request:
//! security headers, the cross-origin refusal, and logging of internal errors.

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, InternalErrorReport};
use crate::startup::AppState;

/// The policy for everything that is not a server-rendered page (those set
/// their own, with a per-response nonce for the hydration script).
pub const DEFAULT_CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let is_api = req.uri().path().starts_with("/api/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    set(header::CONTENT_SECURITY_POLICY, DEFAULT_CSP);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "no-referrer");
    set(
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    set(
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=()",
    );
    if is_api {
        set(header::CACHE_CONTROL, "no-store");
    }
    if state.config.uses_tls() {
        set(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
    response
}

/// Refuses a state-changing request whose `Origin` names another origin: a
/// page elsewhere must not be able to drive the admin's browser. Requests
/// without `Origin` (scripts, curl) pass; they carry no ambient cookie
/// authority that a third party could borrow.
pub async fn refuse_cross_origin(req: Request, next: Next) -> Response {
    if matches!(
        req.method(),
        &Method::GET | &Method::HEAD | &Method::OPTIONS
    ) {
        return next.run(req).await;
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest.trim_end_matches('/'));
        if host.is_none() || origin_host.is_none() || !origin_host.eq(&host) {
            return ApiError::Forbidden("cross_origin", "cross-origin request refused".into())
                .into_response();
        }
    }
    next.run(req).await
}

/// Logs the cause chain of a 500 answer (the client only saw a generic text).
pub async fn log_internal_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    if let Some(InternalErrorReport(cause)) = response.extensions().get::<InternalErrorReport>() {
        tracing::error!(%method, %path, error = %cause, "request failed");
    }
    response
}
