//! The key ring: the master key (a file, or `BERTH_MASTER_KEY`) wraps the
//! root key stored in `key_ring`, and every other key derives from the root.
//!
//! Why two levels: replacing or recovering the master key then rewrites one
//! row, and nothing sealed under the root (TOTP, ACME keys, secrets…) has to
//! change. A data dir created before the ring existed sealed everything
//! under the master key itself; its ring starts with root = master, so those
//! values still open.
//!
//! The recovery key is an age X25519 identity shown once; the store keeps
//! only its public half and the root encrypted to it.
//!
//! Replacing the master key re-wraps the root; it does not change it. So a
//! leaked master key together with a copy of the database from before the
//! replacement still opens everything: the replacement protects the copies
//! made after it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use anyhow::{bail, Context};
use base64::Engine as _;
use sqlx::{Row, SqlitePool};
use zeroize::Zeroizing;

use crate::config::{MasterKeySource, MASTER_KEY_ENV};
use crate::crypto::{self, Keys};

/// The master key's subkey that wraps the root, and the wrap's identity.
const WRAP_PURPOSE: &str = "berth key-ring wrap v1";
const WRAP_BOUND: &[u8] = b"berth/root-key/v1";

type Key = Zeroizing<[u8; 32]>;

/// Reads the master key; `Ok(None)` when its file does not exist.
pub fn read_master(source: &MasterKeySource) -> anyhow::Result<Option<Key>> {
    match source {
        MasterKeySource::Environment => {
            let text = Zeroizing::new(
                std::env::var(MASTER_KEY_ENV)
                    .with_context(|| format!("{MASTER_KEY_ENV} is not set or not valid UTF-8"))?,
            );
            parse_key(text.as_bytes())
                .map(Some)
                .with_context(|| format!("{MASTER_KEY_ENV} is not a key"))
        }
        MasterKeySource::File(path) => read_key_file(path),
    }
}

fn read_key_file(path: &Path) -> anyhow::Result<Option<Key>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            parse_key(&bytes)
                .map(Some)
                .with_context(|| format!("{} is not a key", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("Failed to read {}", path.display())),
    }
}

/// 32 raw bytes, or their hex (64 characters) or base64, with surrounding
/// whitespace allowed in the text forms.
fn parse_key(bytes: &[u8]) -> anyhow::Result<Key> {
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() == 32 {
        key.copy_from_slice(bytes);
        return Ok(key);
    }
    let text = std::str::from_utf8(bytes)
        .map(str::trim)
        .map_err(|_| anyhow::anyhow!("expected 32 bytes, or their hex or base64"))?;
    let decoded = Zeroizing::new(if text.len() == 64 {
        hex::decode(text).map_err(|_| anyhow::anyhow!("64 characters but not hex"))?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| anyhow::anyhow!("expected 32 bytes, or their hex or base64"))?
    });
    if decoded.len() != 32 {
        bail!("the key must be 32 bytes, not {}", decoded.len());
    }
    key.copy_from_slice(&decoded);
    Ok(key)
}

fn wrap(master: &[u8; 32], root: &[u8; 32]) -> Vec<u8> {
    crypto::seal_with(&crypto::derive(master, WRAP_PURPOSE), WRAP_BOUND, root)
}

fn unwrap(master: &[u8; 32], wrapped: &[u8]) -> Option<Key> {
    let plain = Zeroizing::new(
        crypto::open_with(&crypto::derive(master, WRAP_PURPOSE), WRAP_BOUND, wrapped).ok()?,
    );
    let mut root = Zeroizing::new([0u8; 32]);
    if plain.len() != 32 {
        return None;
    }
    root.copy_from_slice(&plain);
    Some(root)
}

/// The file a rotation writes before it commits: if berth stops between
/// the commit and the rename, the next start finishes the rename.
fn next_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    path.with_file_name(name)
}

/// Opens the key ring with the master key, creating both on first start.
pub async fn open(db: &SqlitePool, source: &MasterKeySource) -> anyhow::Result<Keys> {
    let wrapped: Option<Vec<u8>> = sqlx::query_scalar("SELECT wrapped FROM key_ring WHERE id = 1")
        .fetch_optional(db)
        .await?;
    let master = read_master(source)?;
    let Some(wrapped) = wrapped else {
        // A data dir set up before the key ring existed sealed everything
        // under the master key itself: that key stays its root, so those
        // values keep opening. A new data dir gets a root of its own, which
        // no master key file ever holds.
        let legacy = master.is_some()
            && sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM admin")
                .fetch_one(db)
                .await?
                > 0;
        let master = match (master, source) {
            (Some(m), _) => m,
            (None, MasterKeySource::File(path)) => {
                let key = Zeroizing::new(crypto::random_key());
                crypto::write_private_file(path, &key[..])?;
                key
            }
            (None, MasterKeySource::Environment) => unreachable!("read_master fails first"),
        };
        let root = if legacy {
            master.clone()
        } else {
            Zeroizing::new(crypto::random_key())
        };
        let now = crate::store::now();
        sqlx::query(
            "INSERT INTO key_ring (id, wrapped, master_changed_at, created_at) VALUES (1, ?, ?, ?)",
        )
        .bind(wrap(&master, &root))
        .bind(now)
        .bind(now)
        .execute(db)
        .await?;
        return Ok(Keys::from_root(*root));
    };
    if let Some(root) = master.as_ref().and_then(|m| unwrap(m, &wrapped)) {
        return Ok(Keys::from_root(*root));
    }
    if let MasterKeySource::File(path) = source {
        // A rotation that committed but did not get to rename its new file.
        let next = next_path(path);
        if let Some(new) = read_key_file(&next)? {
            if let Some(root) = unwrap(&new, &wrapped) {
                std::fs::rename(&next, path).with_context(|| {
                    format!("Failed to move {} to {}", next.display(), path.display())
                })?;
                tracing::info!(path = %path.display(), "finished a master key rotation");
                return Ok(Keys::from_root(*root));
            }
        }
    }
    let place = match source {
        MasterKeySource::File(path) => path.display().to_string(),
        MasterKeySource::Environment => MASTER_KEY_ENV.to_string(),
    };
    if master.is_none() {
        bail!(
            "the master key {place} is missing, and this data dir's secrets are sealed with it: \
             restore the file from where you keep it, or run `berth secrets recover` with the \
             recovery key"
        );
    }
    bail!(
        "the master key {place} does not open this data dir's key ring (a different key?): \
         supply the right one, or run `berth secrets recover` with the recovery key"
    )
}

/// Replaces the master key without a moment where neither key works: the
/// new key is written first, the caller commits the re-wrapped root, then
/// the new file takes the old one's place (`open` finishes that step if
/// berth stopped in between).
pub struct MasterSwap {
    new: Key,
    written: PathBuf,
    path: PathBuf,
}

impl MasterSwap {
    /// Writes a fresh key: to `<path>.next` for a key file; for a key from
    /// the environment, to `out` (which must not exist), for the admin to
    /// move into wherever `BERTH_MASTER_KEY` comes from.
    pub fn prepare(source: &MasterKeySource, out: Option<&Path>) -> anyhow::Result<MasterSwap> {
        let new = Zeroizing::new(crypto::random_key());
        match (source, out) {
            (MasterKeySource::File(path), None) => {
                let next = next_path(path);
                crypto::write_private_file(&next, &new[..])?;
                // The new key's directory entry must survive a power cut
                // before the store commits to it.
                sync_dir(path)?;
                Ok(MasterSwap {
                    new,
                    written: next,
                    path: path.clone(),
                })
            }
            (MasterKeySource::File(_), Some(_)) => {
                bail!("--out is for a master key from {MASTER_KEY_ENV}; a key file is replaced in place")
            }
            (MasterKeySource::Environment, Some(out)) => {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(out)
                    .with_context(|| {
                        format!("Failed to create {} (it must not exist)", out.display())
                    })?;
                f.write_all(hex::encode(&new[..]).as_bytes())?;
                f.sync_all()?;
                sync_dir(out)?;
                Ok(MasterSwap {
                    new,
                    written: out.to_path_buf(),
                    path: out.to_path_buf(),
                })
            }
            (MasterKeySource::Environment, None) => {
                bail!("the master key comes from {MASTER_KEY_ENV}: give --out FILE for the new key")
            }
        }
    }

    /// Re-wraps the root for the new key, inside the caller's transaction.
    pub async fn rewrap(
        &self,
        conn: &mut sqlx::SqliteConnection,
        keys: &Keys,
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE key_ring SET wrapped = ?, master_changed_at = ? WHERE id = 1")
            .bind(wrap(&self.new, keys.root()))
            .bind(crate::store::now())
            .execute(conn)
            .await?;
        Ok(())
    }

    /// After the commit: the new key takes the old one's place.
    pub fn finish(self) -> anyhow::Result<PathBuf> {
        std::fs::rename(&self.written, &self.path).with_context(|| {
            format!(
                "Failed to move {} to {} (berth finishes this at its next start)",
                self.written.display(),
                self.path.display()
            )
        })?;
        sync_dir(&self.path)?;
        Ok(self.path)
    }

    /// The transaction failed: the old key stays.
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.written);
    }
}

fn sync_dir(file: &Path) -> anyhow::Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("Failed to sync {}", dir.display()))
}

/// Wraps `keys`' root for the current master key (after a new root).
pub async fn rewrap_for_current(
    conn: &mut sqlx::SqliteConnection,
    source: &MasterKeySource,
    keys: &Keys,
) -> anyhow::Result<()> {
    let master = read_master(source)?.context("the master key is missing")?;
    sqlx::query("UPDATE key_ring SET wrapped = ? WHERE id = 1")
        .bind(wrap(&master, keys.root()))
        .execute(conn)
        .await?;
    Ok(())
}

/// Encrypts `keys`' root for the stored recovery key again (its public half
/// is all that is needed), so the admin's recovery key keeps working.
pub async fn rewrap_recovery(conn: &mut sqlx::SqliteConnection, keys: &Keys) -> anyhow::Result<()> {
    let recipient: Option<String> =
        sqlx::query_scalar("SELECT recovery_recipient FROM key_ring WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
    let Some(recipient) = recipient else {
        return Ok(());
    };
    let recipient: age::x25519::Recipient = recipient
        .parse()
        .map_err(|e| anyhow::anyhow!("the stored recovery recipient is not valid: {e}"))?;
    let sealed = age::encrypt(&recipient, keys.root()).context("age encryption failed")?;
    sqlx::query("UPDATE key_ring SET recovery_wrapped = ? WHERE id = 1")
        .bind(sealed)
        .execute(conn)
        .await?;
    Ok(())
}

/// A new recovery key: returned once, its public half and the root
/// encrypted to it are stored (replacing any earlier one).
pub async fn new_recovery_key(db: &SqlitePool, keys: &Keys) -> anyhow::Result<String> {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let sealed = age::encrypt(&recipient, keys.root()).context("age encryption failed")?;
    sqlx::query(
        "UPDATE key_ring SET recovery_recipient = ?, recovery_wrapped = ?, recovery_created_at = ? \
         WHERE id = 1",
    )
    .bind(recipient.to_string())
    .bind(sealed)
    .bind(crate::store::now())
    .execute(db)
    .await?;
    Ok(identity.to_string().expose_secret().to_string())
}

/// Whether a recovery key exists, and since when.
pub async fn recovery_created_at(db: &SqlitePool) -> anyhow::Result<Option<i64>> {
    Ok(sqlx::query(
        "SELECT recovery_created_at FROM key_ring WHERE id = 1 AND recovery_recipient IS NOT NULL",
    )
    .fetch_optional(db)
    .await?
    .and_then(|r| r.get::<Option<i64>, _>(0)))
}

/// Restores access after the master key is lost: the recovery key opens the
/// root, and a new master key (see `MasterSwap`) wraps it. Returns where
/// the new key is.
pub async fn recover(
    db: &SqlitePool,
    identity: &str,
    source: &MasterKeySource,
    out: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let identity: age::x25519::Identity = identity
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("that is not a recovery key (AGE-SECRET-KEY-1…)"))?;
    let row = sqlx::query("SELECT recovery_wrapped FROM key_ring WHERE id = 1")
        .fetch_optional(db)
        .await?;
    let Some(sealed) = row.and_then(|r| r.get::<Option<Vec<u8>>, _>(0)) else {
        bail!("this data dir has no recovery key: nothing can open it without its master key");
    };
    let plain = Zeroizing::new(
        age::decrypt(&identity, &sealed)
            .map_err(|_| anyhow::anyhow!("this recovery key does not belong to this data dir"))?,
    );
    let root: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("the recovered root key has the wrong length"))?;
    let keys = Keys::from_root(root);
    let swap = MasterSwap::prepare(source, out)?;
    let mut conn = db.acquire().await?;
    if let Err(e) = swap.rewrap(&mut conn, &keys).await {
        swap.abandon();
        return Err(e);
    }
    swap.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(dir: &Path) -> SqlitePool {
        crate::store::open(&dir.join("berth.db")).await.unwrap()
    }

    #[tokio::test]
    async fn a_new_data_dir_gets_a_root_no_master_key_file_holds() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path()).await;
        let source = MasterKeySource::File(dir.path().join("master.key"));
        let keys = open(&db, &source).await.unwrap();
        let master = std::fs::read(dir.path().join("master.key")).unwrap();
        assert_ne!(&keys.root()[..], &master[..]);
        // Opens again with the same root.
        let again = open(&db, &source).await.unwrap();
        assert_eq!(keys.root(), again.root());
    }

    #[tokio::test]
    async fn a_data_dir_from_before_the_key_ring_keeps_its_master_as_root() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path()).await;
        sqlx::query(
            "INSERT INTO admin (id, username, password_hash, created_at, password_changed_at) \
             VALUES (1, 'admin', 'x', 0, 0)",
        )
        .execute(&db)
        .await
        .unwrap();
        crypto::write_private_file(&dir.path().join("master.key"), &[5u8; 32]).unwrap();
        let source = MasterKeySource::File(dir.path().join("master.key"));
        let keys = open(&db, &source).await.unwrap();
        assert_eq!(keys.root(), &[5u8; 32]);
    }

    #[test]
    fn keys_are_read_as_raw_bytes_hex_or_base64() {
        let raw = [7u8; 32];
        assert_eq!(*parse_key(&raw).unwrap(), raw);
        assert_eq!(*parse_key(hex::encode(raw).as_bytes()).unwrap(), raw);
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        assert_eq!(*parse_key(format!(" {b64}\n").as_bytes()).unwrap(), raw);
        assert!(parse_key(b"short").is_err());
        assert!(parse_key(hex::encode([1u8; 20]).as_bytes()).is_err());
    }
}
