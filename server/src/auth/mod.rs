//! Authentication of the single administrator: passwords, login throttling,
//! browser sessions with CSRF defence, the optional TOTP second factor, and
//! the `Caller` extractor that turns a request into an authorised identity.

pub mod account;
pub mod caller;
pub mod login;
pub mod password;
pub mod session;
pub mod throttle;
pub mod totp;

use sqlx::SqlitePool;

use crate::http::error::ApiError;

pub async fn admin_username(db: &SqlitePool) -> Result<String, ApiError> {
    sqlx::query_scalar!("SELECT username FROM admin WHERE id = 1")
        .fetch_optional(db)
        .await?
        .ok_or(ApiError::Unauthorized("no administrator exists yet"))
}
