//! The one error type of the HTTP layer. Client errors carry a stable code,
//! a message and the offending field; internal errors are answered with a
//! generic message while their cause chain travels in a response extension to
//! the logging middleware (`log_internal_errors`), never to the client.

use app::api::{ErrorBody, ErrorDetail};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Well-formed JSON whose content is not acceptable (422).
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    /// Not JSON, or not the JSON shape the route takes (400/415/422).
    #[error("{message}")]
    BadRequest {
        status: StatusCode,
        code: &'static str,
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("a second factor is required")]
    TotpRequired,
    #[error("{1}")]
    Forbidden(&'static str, String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The engine refused what was asked of it; the message says why (502).
    #[error("{0}")]
    ApplyFailed(String),
    /// A service berth depends on (the Docker engine) cannot be reached (503).
    #[error("{0}")]
    Unavailable(String),
    #[error("too many attempts")]
    TooManyRequests { retry_after_secs: u64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// 429 for a throttled caller; `Retry-After` is at least one second.
    pub fn too_many_requests(retry_after: std::time::Duration) -> ApiError {
        ApiError::TooManyRequests {
            retry_after_secs: retry_after.as_secs().max(1),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::Forbidden("forbidden", message.into())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(anyhow::Error::new(e).context("database error"))
    }
}

/// Carries an internal error's cause chain to the logging middleware.
#[derive(Clone)]
pub struct InternalErrorReport(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field, message) = match &self {
            ApiError::Invalid { field, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                field.clone(),
                message.clone(),
            ),
            ApiError::BadRequest {
                status,
                code,
                field,
                message,
            } => (*status, *code, field.clone(), message.clone()),
            ApiError::Unauthorized(m) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                None,
                m.to_string(),
            ),
            ApiError::TotpRequired => (
                StatusCode::UNAUTHORIZED,
                "totp_required",
                Some("totp_code".into()),
                "enter the code from your authenticator app or a recovery code".into(),
            ),
            ApiError::Forbidden(code, m) => (StatusCode::FORBIDDEN, *code, None, m.clone()),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", None, m.clone()),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", None, m.clone()),
            ApiError::ApplyFailed(m) => (StatusCode::BAD_GATEWAY, "apply_failed", None, m.clone()),
            ApiError::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "engine_unavailable",
                None,
                m.clone(),
            ),
            ApiError::TooManyRequests { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                None,
                format!("too many failed attempts; retry in {retry_after_secs} s"),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
                "internal error; the server log has the details".into(),
            ),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
                field,
            },
        };
        let mut response = (status, Json(body)).into_response();
        match &self {
            ApiError::TooManyRequests { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::Unauthorized(_) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"berth\""),
                );
            }
            ApiError::Internal(e) => {
                response
                    .extensions_mut()
                    .insert(InternalErrorReport(format!("{e:#}")));
            }
            _ => {}
        }
        response
    }
}
