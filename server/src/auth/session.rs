//! What berth keeps in a browser session (tower-sessions, stored in SQLite).
//!
//! The cookie only carries a random id; the record holds the CSRF token, the
//! admin's session generation (a password change bumps it, which ends every
//! session created before) and the login time (for the absolute timeout; the
//! idle timeout is the cookie expiry, renewed on use).

use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::crypto::random_hex;

pub const AUTH_KEY: &str = "berth.auth";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionAuth {
    pub generation: i64,
    pub csrf: String,
    pub login_at: i64,
}

/// Starts an authenticated session: a new session id (so a fixated id from
/// before the login is worthless) and a new CSRF token, returned to the caller.
pub async fn start(session: &Session, generation: i64) -> anyhow::Result<String> {
    session.cycle_id().await?;
    let auth = SessionAuth {
        generation,
        csrf: random_hex(32),
        login_at: crate::store::now(),
    };
    session.insert(AUTH_KEY, &auth).await?;
    Ok(auth.csrf)
}

/// Moves the current session to a new generation after a password change,
/// keeping it alive while every other session dies.
pub async fn rekey(session: &Session, generation: i64) -> anyhow::Result<String> {
    let mut auth: SessionAuth = session
        .get(AUTH_KEY)
        .await?
        .ok_or_else(|| anyhow::anyhow!("session is not authenticated"))?;
    session.cycle_id().await?;
    auth.generation = generation;
    auth.csrf = random_hex(32);
    session.insert(AUTH_KEY, &auth).await?;
    Ok(auth.csrf)
}
