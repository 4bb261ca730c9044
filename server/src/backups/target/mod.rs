//! Where archives go: a directory on this host, a directory over SFTP, or
//! an S3-compatible bucket, behind one narrow trait.
//!
//! Every target writes under a temporary name (or an unfinished multipart
//! upload) and only makes the object visible once all bytes arrived and were
//! checked, so a failed or killed upload never leaves something that looks
//! like an archive. `sweep` removes what a killed berth left behind.

use std::pin::Pin;

use async_trait::async_trait;
use tokio::io::AsyncRead;

pub mod local;
pub mod s3;
pub mod sftp;
/// The real SFTP and S3 servers these targets are tested against, shared
/// with the API tests.
#[cfg(test)]
#[path = "../../../tests/api/offhost_rig.rs"]
#[allow(dead_code)]
mod test_rig;

pub type Reader = Pin<Box<dyn AsyncRead + Send>>;

/// What a finished `put` stored, read back from the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Bytes at the target, as the target reports them after the upload.
    pub size: u64,
    /// The S3 ETag, when the target has one.
    pub etag: Option<String>,
}

/// One object listed under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub size: u64,
}

/// Object names are relative, `/`-separated (`job/2026…-id.dump.zst.age`),
/// never absolute and never with `..`: see `check_name`.
#[async_trait]
pub trait Store: Send + Sync {
    /// Streams `body` to `name`. Returns only after the object is complete
    /// and its size (and ETag) read back matches what was sent; on any error
    /// nothing remains under `name` or any temporary name.
    async fn put(&self, name: &str, body: Reader) -> anyhow::Result<Stored>;

    /// Reads an object back.
    async fn open(&self, name: &str) -> anyhow::Result<Reader>;

    /// Removes an object; a missing one is not an error.
    async fn delete(&self, name: &str) -> anyhow::Result<()>;

    /// The object's size, or `None` when it does not exist.
    async fn stat(&self, name: &str) -> anyhow::Result<Option<u64>>;

    /// Complete objects whose names start with `prefix` (a directory-like
    /// prefix ending in `/`).
    async fn list(&self, prefix: &str) -> anyhow::Result<Vec<Listed>>;

    /// Removes temporary files or unfinished uploads under `prefix` that an
    /// interrupted `put` left behind. Returns how many.
    async fn sweep(&self, prefix: &str) -> anyhow::Result<usize>;
}

/// Refuses names that could leave the target's directory.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        anyhow::bail!("invalid object name {name:?}");
    }
    Ok(())
}

/// The suffix of a file that is still being written.
pub const PARTIAL: &str = ".partial";
