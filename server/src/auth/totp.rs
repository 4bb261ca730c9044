//! TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s) and recovery codes.
//! Secrets are sealed with master.key in the store; a code is accepted once
//! (the last accepted time step is remembered), within one step of clock skew.

use qrcode::render::svg;
use qrcode::QrCode;
use rand::RngCore;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, TOTP};

pub const SEAL_PURPOSE: &str = "berth totp secret v1";
const STEP: u64 = 30;

pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

fn totp(secret: &[u8]) -> anyhow::Result<TOTP> {
    TOTP::new(Algorithm::SHA1, 6, 0, STEP, secret.to_vec())
        .map_err(|e| anyhow::anyhow!("bad TOTP secret: {e}"))
}

pub fn base32(secret: &[u8]) -> anyhow::Result<String> {
    Ok(totp(secret)?.get_secret_base32())
}

/// The URI authenticator apps read from the QR code.
pub fn otpauth_uri(secret: &[u8], username: &str) -> anyhow::Result<String> {
    // Usernames are restricted to [a-z0-9._-], which need no escaping.
    Ok(format!(
        "otpauth://totp/berth:{username}?secret={}&issuer=berth&algorithm=SHA1&digits=6&period={STEP}",
        base32(secret)?
    ))
}

pub fn qr_svg(uri: &str) -> anyhow::Result<String> {
    let code = QrCode::new(uri.as_bytes())?;
    Ok(code
        .render::<svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build())
}

/// The time step a code matches (current, previous or next), if any, and
/// only if it is later than `last_step`.
pub fn verify(secret: &[u8], code: &str, unix_now: u64, last_step: Option<i64>) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret).ok()?;
    let current = unix_now / STEP;
    [current.saturating_sub(1), current, current + 1]
        .into_iter()
        .filter(|step| last_step.is_none_or(|last| (*step as i64) > last))
        .find(|step| totp.generate(step * STEP) == code)
        .map(|step| step as i64)
}

/// Ten recovery codes like `k3f9-2hq7-xm4p`, from an alphabet without look-alikes.
pub fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
    let mut rng = rand::rngs::OsRng;
    (0..10)
        .map(|_| {
            let chars: Vec<char> = (0..12)
                .map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char)
                .collect();
            chars
                .chunks(4)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// Recovery codes are stored as SHA-256 of their normalized form; they are
/// long random strings, so a fast hash is enough.
pub fn recovery_hash(code: &str) -> String {
    let normalized: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hex::encode(Sha256::digest(normalized.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_verify_once_within_one_step_of_skew() {
        let secret = new_secret();
        let t = totp(&secret).unwrap();
        let now = 1_800_000_000u64;
        let code = t.generate(now);
        let step = verify(&secret, &code, now, None).expect("current code");
        assert_eq!(step as u64, now / STEP);
        assert_eq!(
            verify(&secret, &code, now, Some(step)),
            None,
            "replay refused"
        );
        let previous = t.generate(now - STEP);
        assert!(
            verify(&secret, &previous, now, None).is_some(),
            "one step late"
        );
        let old = t.generate(now - 3 * STEP);
        assert_eq!(verify(&secret, &old, now, None), None, "too old");
        assert_eq!(verify(&secret, "12345", now, None), None);
        assert_eq!(verify(&secret, "abcdef", now, None), None);
    }

    #[test]
    fn recovery_codes_are_distinct_and_hash_normalized() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), 10);
        assert_eq!(codes[0].len(), 14);
        assert_eq!(
            recovery_hash(&codes[0]),
            recovery_hash(&codes[0].to_uppercase().replace('-', " "))
        );
    }

    #[test]
    fn the_uri_and_qr_code_carry_the_secret() {
        let secret = new_secret();
        let uri = otpauth_uri(&secret, "admin").unwrap();
        assert!(uri.starts_with("otpauth://totp/berth:admin?secret="));
        assert!(uri.contains(&base32(&secret).unwrap()));
        assert!(qr_svg(&uri).unwrap().contains("<svg"));
    }
}
