//! Keys kept in the data dir and the sealing of small secrets at rest.
//!
//! `master.key` (32 random bytes, mode 0600) is created at first start. Every
//! other key is derived from it, so moving the data dir moves berth, and no
//! key is ever written to the database or the log.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub struct Keys {
    master: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

impl Keys {
    /// Loads `master.key` from `dir`, creating it on first start.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Keys> {
        let path = dir.join("master.key");
        if !path.exists() {
            let mut key = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut key);
            write_private_file(&path, &key)?;
        }
        let bytes =
            std::fs::read(&path).with_context(|| format!("Failed to read {}", path.display()))?;
        let master: [u8; 32] = match bytes.try_into() {
            Ok(k) => k,
            Err(_) => bail!("{} is not a 32-byte key", path.display()),
        };
        Ok(Keys { master })
    }

    #[cfg(test)]
    pub fn for_tests() -> Keys {
        Keys::for_tests_with([7; 32])
    }

    #[cfg(test)]
    pub fn for_tests_with(master: [u8; 32]) -> Keys {
        Keys { master }
    }

    /// A purpose-bound subkey: HMAC-SHA256(master, purpose).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.master).expect("any key length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Encrypts `plain` with XChaCha20-Poly1305 under a subkey for `purpose`.
    /// Output: 24-byte random nonce followed by the ciphertext.
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new(&self.derive(purpose).into());
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        out.extend(
            cipher
                .encrypt(XNonce::from_slice(&nonce), plain)
                .expect("encryption of an in-memory buffer cannot fail"),
        );
        out
    }

    pub fn open(&self, purpose: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < 24 {
            bail!("sealed value is truncated");
        }
        let cipher = XChaCha20Poly1305::new(&self.derive(purpose).into());
        let (nonce, body) = sealed.split_at(24);
        cipher
            .decrypt(XNonce::from_slice(nonce), body)
            .map_err(|_| anyhow::anyhow!("sealed value does not open with master.key"))
    }
}

/// Writes `bytes` to a new file readable by its owner only. The mode is set at
/// creation, so there is no moment when the file is world-readable.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("Failed to create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("Failed to write {}", path.display()))
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn master_key_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = Keys::load_or_create(dir.path()).unwrap();
        let b = Keys::load_or_create(dir.path()).unwrap();
        assert_eq!(a.derive("x"), b.derive("x"));
        let mode = std::fs::metadata(dir.path().join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn sealed_values_open_only_for_their_purpose() {
        let keys = Keys::for_tests();
        let sealed = keys.seal("totp", b"secret");
        assert_ne!(&sealed[24..], b"secret");
        assert_eq!(keys.open("totp", &sealed).unwrap(), b"secret");
        assert!(keys.open("other", &sealed).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(keys.open("totp", &tampered).is_err());
    }
}
