//! Password hashing (argon2id, OWASP parameters) and the password policy.
//!
//! Hashing is deliberately slow, so it never runs on the async runtime: each
//! hash goes to the blocking pool, and a semaphore bounds how many run at once
//! so a burst of logins cannot exhaust memory (19 MiB each) or the CPUs.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, Version};
use tokio::sync::{OnceCell, Semaphore};

use crate::http::error::ApiError;

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 128;

const COMMON: &str = include_str!("common_passwords.txt");

pub struct Passwords {
    permits: Semaphore,
    /// Verified against when the user does not exist, so that an unknown
    /// username costs as much time as a wrong password.
    dummy_hash: OnceCell<String>,
}

fn argon2() -> Argon2<'static> {
    // m = 19 MiB, t = 2, p = 1: OWASP's recommended minimum for argon2id.
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl Default for Passwords {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Passwords {
            permits: Semaphore::new(cpus),
            dummy_hash: OnceCell::new(),
        }
    }
}

impl Passwords {
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
        })
        .await?
    }

    /// Checks `password` against `hash`; with no hash (unknown user) it spends
    /// the same effort on a dummy hash and answers false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> anyhow::Result<bool> {
        let known = hash.is_some();
        let hash = match hash {
            Some(h) => h,
            None => self
                .dummy_hash
                .get_or_try_init(|| self.hash(crate::crypto::random_hex(16)))
                .await?
                .clone(),
        };
        let _permit = self.permits.acquire().await?;
        let ok = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash)
                .map_err(|e| anyhow::anyhow!("stored password hash is unreadable: {e}"))?;
            Ok::<_, anyhow::Error>(
                argon2()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
            )
        })
        .await??;
        Ok(ok && known)
    }
}

/// The password policy: 12..=128 characters, not a well-known password, not
/// the username, not one character repeated. `field` names the request field.
pub fn check_policy(field: &str, password: &str, username: &str) -> Result<(), ApiError> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(ApiError::invalid(
            field,
            format!("password must be at least {MIN_LEN} characters"),
        ));
    }
    if len > MAX_LEN {
        return Err(ApiError::invalid(
            field,
            format!("password must be at most {MAX_LEN} characters"),
        ));
    }
    let lower = password.to_lowercase();
    if lower == username.to_lowercase() {
        return Err(ApiError::invalid(
            field,
            "password must not be the username",
        ));
    }
    let first = lower.chars().next();
    if lower.chars().all(|c| Some(c) == first) {
        return Err(ApiError::invalid(
            field,
            "password must not repeat one character",
        ));
    }
    if COMMON.lines().any(|common| common.trim() == lower) {
        return Err(ApiError::invalid(
            field,
            "this password is on a list of commonly used passwords",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let p = Passwords::default();
        let h = p.hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(p
            .verify("correct horse battery".into(), Some(h.clone()))
            .await
            .unwrap());
        assert!(!p
            .verify("wrong horse battery".into(), Some(h))
            .await
            .unwrap());
        assert!(!p.verify("anything at all".into(), None).await.unwrap());
    }

    #[test]
    fn the_policy_refuses_short_long_common_and_username_passwords() {
        let field_of = |pw: &str| match check_policy("password", pw, "admin") {
            Err(ApiError::Invalid { field, message }) => (field.unwrap(), message),
            other => panic!("expected invalid, got {other:?}"),
        };
        assert!(field_of("short").1.contains("at least 12"));
        assert!(field_of(&"x".repeat(129)).1.contains("at most 128"));
        assert!(field_of("password1234").1.contains("commonly used"));
        assert!(field_of("aaaaaaaaaaaaaa").1.contains("repeat"));
        assert!(check_policy("password", "adminadminad", "adminadminad").is_err());
        assert!(check_policy("password", "a sturdy passphrase", "admin").is_ok());
        // Length counts characters, not bytes.
        assert!(check_policy("password", "ééééééééééé", "admin").is_err());
    }
}
