//! The root key and the sealing of small secrets at rest.
//!
//! Every key berth uses is derived from one 32-byte root key, which lives in
//! the store wrapped by the master key (`secrets::keyring`): the master key
//! can then be replaced, or recovered, without re-sealing anything. No key is
//! ever written to the log.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub struct Keys {
    root: zeroize::Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

impl Keys {
    pub fn from_root(root: [u8; 32]) -> Keys {
        Keys {
            root: zeroize::Zeroizing::new(root),
        }
    }

    #[cfg(test)]
    pub fn for_tests() -> Keys {
        Keys::for_tests_with([7; 32])
    }

    #[cfg(test)]
    pub fn for_tests_with(root: [u8; 32]) -> Keys {
        Keys::from_root(root)
    }

    /// The root key itself, for the key ring that wraps it.
    pub(crate) fn root(&self) -> &[u8; 32] {
        &self.root
    }

    /// A purpose-bound subkey: HMAC-SHA256(root, purpose).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        derive(&self.root, purpose)
    }

    /// Encrypts `plain` with XChaCha20-Poly1305 under a subkey for `purpose`.
    /// Output: 24-byte random nonce followed by the ciphertext.
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> Vec<u8> {
        seal_with(&self.derive(purpose), b"", plain)
    }

    pub fn open(&self, purpose: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        open_with(&self.derive(purpose), b"", sealed)
            .map_err(|_| anyhow::anyhow!("sealed value does not open with this data dir's keys"))
    }

    /// `seal`, with `bound` authenticated alongside: the value opens only
    /// for the same `bound` (its identity), so sealed values cannot be
    /// swapped between rows.
    pub fn seal_bound(&self, purpose: &str, bound: &[u8], plain: &[u8]) -> Vec<u8> {
        seal_with(&self.derive(purpose), bound, plain)
    }

    pub fn open_bound(
        &self,
        purpose: &str,
        bound: &[u8],
        sealed: &[u8],
    ) -> anyhow::Result<Vec<u8>> {
        open_with(&self.derive(purpose), bound, sealed)
    }
}

/// HMAC-SHA256(key, purpose): independent subkeys from one key.
pub fn derive(key: &[u8; 32], purpose: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

/// XChaCha20-Poly1305 with a fresh random nonce, `aad` authenticated.
/// Output: nonce (24 bytes) then ciphertext and tag.
pub fn seal_with(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut out = nonce.to_vec();
    out.extend(
        cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
            .expect("encryption of an in-memory buffer cannot fail"),
    );
    out
}

pub fn open_with(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
    if sealed.len() < 24 + 16 {
        bail!("sealed value is truncated");
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    let (nonce, body) = sealed.split_at(24);
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
        .map_err(|_| anyhow::anyhow!("sealed value does not open: wrong key, or altered"))
}

/// 32 random bytes.
pub fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
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

    #[test]
    fn bound_values_open_only_with_the_same_identity() {
        let keys = Keys::for_tests();
        let sealed = keys.seal_bound("p", b"app\0web\0A", b"v");
        assert_eq!(keys.open_bound("p", b"app\0web\0A", &sealed).unwrap(), b"v");
        assert!(keys.open_bound("p", b"app\0web\0B", &sealed).is_err());
        assert!(keys.open_bound("q", b"app\0web\0A", &sealed).is_err());
        assert!(Keys::for_tests_with([8; 32])
            .open_bound("p", b"app\0web\0A", &sealed)
            .is_err());
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
