//! A directory on this host (by default `DATA_DIR/backups`). An archive is
//! written to `NAME.partial`, synced, checked, and renamed into place, with
//! the directory synced after: a crash or a full disk leaves at most a
//! `.partial`, which the next run (or start-up) sweeps.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{check_name, Listed, Reader, Store, Stored, PARTIAL};

pub struct Local {
    root: PathBuf,
}

impl Local {
    pub fn new(root: PathBuf) -> Local {
        Local { root }
    }

    fn path(&self, name: &str) -> anyhow::Result<PathBuf> {
        check_name(name)?;
        Ok(self.root.join(name))
    }
}

fn partial_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(PARTIAL);
    PathBuf::from(s)
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}

#[async_trait]
impl Store for Local {
    async fn put(&self, name: &str, mut body: Reader) -> anyhow::Result<Stored> {
        let path = self.path(name)?;
        let dir = path
            .parent()
            .expect("a joined name has a parent")
            .to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let partial = partial_of(&path);
        let written = async {
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&partial)
                .await?;
            let mut buf = vec![0u8; 256 * 1024];
            let mut n = 0u64;
            loop {
                let got = body.read(&mut buf).await?;
                if got == 0 {
                    break;
                }
                file.write_all(&buf[..got]).await?;
                if n == 0 {
                    // Crash tests stop here, a partial file on disk.
                    file.flush().await?;
                    crate::fault::pause_point("backup.local.writing").await;
                }
                n += got as u64;
            }
            file.flush().await?;
            file.sync_all().await?;
            Ok::<u64, std::io::Error>(n)
        }
        .await;
        let result = async {
            let n = written
                .map_err(|e| anyhow::anyhow!("writing {} failed: {e}", partial.display()))?;
            let on_disk = tokio::fs::metadata(&partial).await?.len();
            if on_disk != n {
                anyhow::bail!(
                    "{} holds {on_disk} bytes after writing {n}",
                    partial.display()
                );
            }
            tokio::fs::rename(&partial, &path).await?;
            sync_dir(&dir).await?;
            Ok(Stored {
                size: n,
                etag: None,
            })
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        result
    }

    async fn open(&self, name: &str) -> anyhow::Result<Reader> {
        let path = self.path(name)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        Ok(Box::pin(tokio::io::BufReader::with_capacity(
            256 * 1024,
            file,
        )))
    }

    async fn delete(&self, name: &str) -> anyhow::Result<()> {
        let path = self.path(name)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(anyhow::anyhow!("cannot delete {}: {e}", path.display())),
        }
    }

    async fn stat(&self, name: &str) -> anyhow::Result<Option<u64>> {
        match tokio::fs::metadata(self.path(name)?).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self, prefix: &str) -> anyhow::Result<Vec<Listed>> {
        Ok(self
            .entries(prefix)
            .await?
            .into_iter()
            .filter(|l| !l.name.ends_with(PARTIAL))
            .collect())
    }

    async fn sweep(&self, prefix: &str) -> anyhow::Result<usize> {
        let mut removed = 0;
        for l in self.entries(prefix).await? {
            if l.name.ends_with(PARTIAL) {
                tokio::fs::remove_file(self.root.join(&l.name)).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl Local {
    /// Files directly in the prefix's directory whose names start with the
    /// rest of the prefix.
    async fn entries(&self, prefix: &str) -> anyhow::Result<Vec<Listed>> {
        let (dir, start) = match prefix.rsplit_once('/') {
            Some((d, s)) => (self.root.join(d), s),
            None => (self.root.clone(), prefix),
        };
        let mut out = Vec::new();
        let mut read = match tokio::fs::read_dir(&dir).await {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        let base = prefix
            .rsplit_once('/')
            .map(|(d, _)| format!("{d}/"))
            .unwrap_or_default();
        while let Some(entry) = read.next_entry().await? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata().await?;
            if meta.is_file() && name.starts_with(start) {
                out.push(Listed {
                    name: format!("{base}{name}"),
                    size: meta.len(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_open_list_delete_and_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let store = Local::new(dir.path().to_path_buf());
        let data = vec![7u8; 300_000];
        let stored = store
            .put(
                "job/a.tar.zst",
                Box::pin(std::io::Cursor::new(data.clone())),
            )
            .await
            .unwrap();
        assert_eq!(stored.size, 300_000);
        let mut back = Vec::new();
        store
            .open("job/a.tar.zst")
            .await
            .unwrap()
            .read_to_end(&mut back)
            .await
            .unwrap();
        assert_eq!(back, data);
        std::fs::write(dir.path().join("job/b.tar.zst.partial"), b"half").unwrap();
        let listed = store.list("job/").await.unwrap();
        assert_eq!(
            listed,
            vec![Listed {
                name: "job/a.tar.zst".into(),
                size: 300_000
            }]
        );
        assert_eq!(store.sweep("job/").await.unwrap(), 1);
        assert!(!dir.path().join("job/b.tar.zst.partial").exists());
        store.delete("job/a.tar.zst").await.unwrap();
        store.delete("job/a.tar.zst").await.unwrap();
        assert_eq!(store.stat("job/a.tar.zst").await.unwrap(), None);
        assert!(store
            .put("../escape", Box::pin(std::io::Cursor::new(vec![1])))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_failing_body_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Local::new(dir.path().to_path_buf());
        let body = tokio::io::AsyncReadExt::chain(
            std::io::Cursor::new(vec![1u8; 100_000]),
            tokio_util::io::StreamReader::new(futures::stream::iter(vec![Err::<bytes::Bytes, _>(
                std::io::Error::other("source died"),
            )])),
        );
        let e = store.put("job/x", Box::pin(body)).await.unwrap_err();
        assert!(format!("{e:#}").contains("source died"));
        assert!(std::fs::read_dir(dir.path().join("job"))
            .unwrap()
            .next()
            .is_none());
    }
}
