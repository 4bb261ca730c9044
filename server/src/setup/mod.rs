//! First run. Until an administrator exists, berth holds a one-time setup
//! token, prints it to its log and writes it to `<data-dir>/setup-token`
//! (0600). Only someone who can read the host's log or data dir can create the
//! admin, so a bot that finds a fresh berth on the internet cannot take it over.

pub mod routes;

use std::path::PathBuf;
use std::sync::Mutex;

use sqlx::SqlitePool;
use subtle::ConstantTimeEq;

use crate::crypto::{random_hex, write_private_file};

pub struct SetupGate {
    token: Mutex<Option<String>>,
    path: PathBuf,
}

impl SetupGate {
    fn token(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.token.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Prepares the gate at start-up: a fresh token when no admin exists, none
    /// (and no token file) otherwise.
    pub async fn prepare(db: &SqlitePool, data_dir: &std::path::Path) -> anyhow::Result<SetupGate> {
        let path = data_dir.join("setup-token");
        let gate = SetupGate {
            token: Mutex::new(None),
            path,
        };
        if admin_exists(db).await? {
            gate.close();
        } else {
            let token = random_hex(24);
            write_private_file(&gate.path, format!("{token}\n").as_bytes())?;
            tracing::warn!(
                token = %token,
                file = %gate.path.display(),
                "no administrator yet: open the panel and enter this one-time setup token"
            );
            *gate.token.lock().expect("setup lock") = Some(token);
        }
        Ok(gate)
    }

    /// Constant-time comparison with the current token; false once closed.
    pub fn accepts(&self, candidate: &str) -> bool {
        match &*self.token() {
            Some(token) => bool::from(candidate.trim().as_bytes().ct_eq(token.as_bytes())),
            None => false,
        }
    }

    /// Forgets the token and removes its file: setup is over.
    pub fn close(&self) {
        *self.token() = None;
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(error = %e, "failed to remove the setup token file"),
        }
    }
}

pub async fn admin_exists(db: &SqlitePool) -> anyhow::Result<bool> {
    Ok(sqlx::query_scalar!("SELECT count(*) FROM admin")
        .fetch_one(db)
        .await?
        > 0)
}

/// Usernames: 1..=64 of `a-z 0-9 . _ -`, starting with a letter or digit;
/// stored lowercased so that login is case-insensitive.
pub fn parse_username(raw: &str) -> Result<String, crate::http::error::ApiError> {
    let name = raw.trim().to_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(name)
    } else {
        Err(crate::http::error::ApiError::invalid(
            "username",
            "username must be 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lowercased_and_restricted() {
        assert_eq!(parse_username(" Admin ").unwrap(), "admin");
        assert_eq!(parse_username("ops.team-1").unwrap(), "ops.team-1");
        for bad in ["", "-lead", "a b", "<script>", &"a".repeat(65), "ünïcode"] {
            assert!(parse_username(bad).is_err(), "{bad:?}");
        }
    }
}
