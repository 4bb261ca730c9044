//! Restoring an archive: to where it came from, or to a new database,
//! volume or directory. The archive is read from the target, decrypted and
//! decompressed as a stream straight into `pg_restore` (one transaction),
//! the volume, or a directory. A restore to something new that fails
//! removes what it created.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use app::api::backups::{validate_identifier, RestoreRequest, Source};
use serde_json::json;
use sqlx::Row;

use super::jobs::StoredJob;
use super::target::Reader;
use super::{keys, log_line, pipeline, sources, Backups};
use crate::http::error::ApiError;

/// Where an archive goes back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Database {
        name: String,
        original: bool,
    },
    /// With `staging` (restores over the original): the archive is first
    /// extracted into that new volume, and the original is overwritten
    /// only from there.
    Volume {
        name: String,
        original: bool,
        staging: Option<String>,
    },
    Directory(PathBuf),
}

impl Destination {
    /// What a restore to something new creates, to remove if it fails or
    /// berth dies during it: `database:NAME`, `volume:NAME`, `directory:PATH`.
    pub fn created(&self) -> Option<String> {
        match self {
            Destination::Database {
                name,
                original: false,
            } => Some(format!("database:{name}")),
            Destination::Volume {
                name,
                original: false,
                ..
            } => Some(format!("volume:{name}")),
            Destination::Volume {
                staging: Some(staging),
                ..
            } => Some(format!("volume:{staging}")),
            Destination::Directory(p) => Some(format!("directory:{}", p.display())),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Destination::Database { name, original } => format!(
                "database {name}{}",
                if *original { " (original)" } else { " (new)" }
            ),
            Destination::Volume { name, original, .. } => format!(
                "volume {name}{}",
                if *original { " (original)" } else { " (new)" }
            ),
            Destination::Directory(p) => format!("directory {}", p.display()),
        }
    }
}

/// An archive of a succeeded, unpruned run, ready to read.
pub(crate) struct Archive {
    pub run_id: String,
    pub object: String,
    pub size: i64,
    pub encrypted: bool,
    /// The manifest's SHA-256 of the stored bytes (checked as they are read).
    pub sha256: Option<String>,
}

impl Backups {
    pub(crate) async fn archive(&self, run_id: &str) -> Result<(StoredJob, Archive), ApiError> {
        let row = sqlx::query("SELECT * FROM backup_runs WHERE id = ?")
            .bind(run_id)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no backup run `{run_id}`")))?;
        let status: String = row.get("status");
        if status != "succeeded" {
            return Err(ApiError::Conflict(format!(
                "run {run_id} did not succeed; it has no archive"
            )));
        }
        if row.get::<Option<i64>, _>("pruned_at").is_some() {
            return Err(ApiError::Conflict(format!(
                "the archive of run {run_id} was deleted by retention"
            )));
        }
        let job = self.job(&row.get::<String, _>("job_id")).await?;
        let at: String = row.get("target");
        if at != super::run::describe_target(&job) {
            return Err(ApiError::Conflict(format!(
                "the archive of run {run_id} is at the job's previous target ({at}); berth reads only its current one"
            )));
        }
        Ok((
            job,
            Archive {
                run_id: run_id.to_string(),
                object: row.get::<Option<String>, _>("object").unwrap_or_default(),
                size: row.get("size"),
                encrypted: row.get("encrypted"),
                sha256: row.get("sha256"),
            },
        ))
    }

    /// The archive's plain bytes, counted into `progress.read` as the
    /// stored bytes arrive.
    pub(crate) async fn open_archive(
        &self,
        job: &StoredJob,
        archive: &Archive,
        progress: Arc<pipeline::Progress>,
    ) -> anyhow::Result<Reader> {
        let store = sources::store(job, &self.ctx.data_dir)?;
        let raw = store.open(&archive.object).await?;
        let identities = if archive.encrypted {
            keys::identities(&self.db, &self.keys).await?
        } else {
            Vec::new()
        };
        Ok(pipeline::decode(
            raw,
            identities,
            archive.encrypted,
            archive.sha256.clone(),
            progress,
        ))
    }

    /// Checks the request, then starts the restore in the background. The
    /// caller has re-authenticated.
    pub async fn start_restore(
        self: &Arc<Self>,
        run_id: &str,
        request: &RestoreRequest,
        actor: &str,
    ) -> Result<String, ApiError> {
        let (job, archive) = self.archive(run_id).await?;
        if request.confirm != job.name {
            return Err(ApiError::invalid(
                "confirm",
                format!("type the job's name, `{}`, to confirm", job.name),
            ));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let destination = self.destination(&job, request, &id).await?;
        sqlx::query(
            "INSERT INTO backup_restores (id, run_id, job_id, status, destination, created, actor, started_at, total) \
             VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(run_id)
        .bind(&job.id)
        .bind(destination.describe())
        .bind(destination.created())
        .bind(actor)
        .bind(self.clock.now())
        .bind(archive.size)
        .execute(&self.db)
        .await?;
        let progress = self.track(&id);
        let this = self.clone();
        let restore_id = id.clone();
        tokio::spawn(async move {
            let result = this
                .restore(&job, &archive, &destination, &restore_id, progress.clone())
                .await;
            let bytes = progress.read.load(Ordering::Relaxed) as i64;
            let (status, error) = match &result {
                Ok(()) => ("succeeded", None),
                Err(e) => ("failed", Some(format!("{e:#}"))),
            };
            let _ = sqlx::query("UPDATE backup_restores SET status = ?, error = ?, bytes = ?, finished_at = ? WHERE id = ?")
                .bind(status)
                .bind(&error)
                .bind(bytes)
                .bind(this.clock.now())
                .bind(&restore_id)
                .execute(&this.db)
                .await;
            match error {
                None => {
                    log_line(
                        &this.db,
                        "backup_restores",
                        &restore_id,
                        &format!("restored into {}", destination.describe()),
                    )
                    .await
                }
                Some(e) => {
                    log_line(
                        &this.db,
                        "backup_restores",
                        &restore_id,
                        &format!("failed: {e}"),
                    )
                    .await;
                    this.notify(
                        "backup.restore_failed",
                        format!("Restore of {} failed", job.name),
                        format!("Restoring run {} into {} failed: {e}", archive.run_id, destination.describe()),
                        json!({ "job": job.name, "run": archive.run_id, "restore": restore_id, "error": e }),
                    )
                    .await;
                }
            }
            this.untrack(&restore_id);
        });
        Ok(id)
    }

    async fn destination(
        &self,
        job: &StoredJob,
        request: &RestoreRequest,
        restore_id: &str,
    ) -> Result<Destination, ApiError> {
        let new_name = || -> Result<String, ApiError> {
            let name = request
                .name
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| ApiError::invalid("name", "name the new database or volume"))?;
            validate_identifier(name, "target").map_err(|e| ApiError::invalid("name", e))?;
            Ok(name.to_string())
        };
        let original = match request.to.as_str() {
            "original" => true,
            "new" => false,
            _ => return Err(ApiError::invalid("to", "`original` or `new`")),
        };
        let unavailable = |e: anyhow::Error| ApiError::ApplyFailed(format!("{e:#}"));
        match &job.source {
            Source::Postgres { .. } | Source::PostgresApp { .. } => {
                let (pg, database) = self.ctx.pg(job).await.map_err(unavailable)?;
                if original {
                    return Ok(Destination::Database {
                        name: database,
                        original,
                    });
                }
                let name = new_name()?;
                if pg.exists(&name).await.map_err(unavailable)? {
                    return Err(ApiError::invalid(
                        "name",
                        format!("database `{name}` exists; pick a new name"),
                    ));
                }
                Ok(Destination::Database { name, original })
            }
            Source::Volume { volume } => {
                if original {
                    return Ok(Destination::Volume {
                        name: volume.clone(),
                        original,
                        staging: Some(format!("berth-restore-{}", &restore_id[..8])),
                    });
                }
                let name = new_name()?;
                let docker = self.ctx.docker().map_err(unavailable)?;
                if docker.volume_exists(&name).await.map_err(unavailable)? {
                    return Err(ApiError::invalid(
                        "name",
                        format!("volume `{name}` exists; pick a new name"),
                    ));
                }
                Ok(Destination::Volume {
                    name,
                    original,
                    staging: None,
                })
            }
            Source::Berth => {
                if original {
                    return Err(ApiError::invalid(
                        "to",
                        "berth cannot replace its own store while it runs: restore to a new directory, then start berth on it (see docs/backups.md)",
                    ));
                }
                let dir = self.ctx.data_dir.join("restores").join(format!(
                    "{}-{}",
                    job.name,
                    &restore_id[..8]
                ));
                Ok(Destination::Directory(dir))
            }
        }
    }

    async fn restore(
        &self,
        job: &StoredJob,
        archive: &Archive,
        destination: &Destination,
        restore_id: &str,
        progress: Arc<pipeline::Progress>,
    ) -> anyhow::Result<()> {
        let original = matches!(
            destination,
            Destination::Database { original: true, .. }
                | Destination::Volume { original: true, .. }
        );
        if original {
            // pg_restore commits once it has read the entries it needs,
            // which may be before the end of the archive where the SHA-256
            // check sits: over the original, the archive is checked whole
            // before anything is applied.
            self.check_stored(job, archive).await?;
            log_line(
                &self.db,
                "backup_restores",
                restore_id,
                &format!(
                    "checked {}: {} bytes, SHA-256 as in the manifest",
                    archive.object, archive.size
                ),
            )
            .await;
        }
        log_line(
            &self.db,
            "backup_restores",
            restore_id,
            &format!("reading {} ({} bytes)", archive.object, archive.size),
        )
        .await;
        let plain = self.open_archive(job, archive, progress).await?;
        restore_into(self, job, destination, plain).await
    }

    /// Reads the stored archive to its end and compares its size and
    /// SHA-256 with the manifest, applying nothing.
    async fn check_stored(&self, job: &StoredJob, archive: &Archive) -> anyhow::Result<()> {
        use sha2::Digest as _;
        use tokio::io::AsyncReadExt;
        let store = sources::store(job, &self.ctx.data_dir)?;
        let mut raw = store.open(&archive.object).await?;
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; pipeline::CHUNK];
        loop {
            let n = raw
                .read(&mut buf)
                .await
                .map_err(|e| anyhow::anyhow!("reading {} failed: {e}", archive.object))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        let seen = hex::encode(hasher.finalize());
        if size != archive.size as u64 || archive.sha256.as_deref().is_some_and(|s| s != seen) {
            anyhow::bail!(
                "the archive at the target ({size} bytes, SHA-256 {seen}) is not the one its manifest describes ({} bytes, SHA-256 {}): it was altered or damaged where it is stored; nothing was restored",
                archive.size,
                archive.sha256.as_deref().unwrap_or("unknown")
            );
        }
        Ok(())
    }
}

/// Writes plain archive bytes into the destination. A new database or
/// volume that could not be filled is removed again.
pub(crate) async fn restore_into(
    backups: &Backups,
    job: &StoredJob,
    destination: &Destination,
    plain: Reader,
) -> anyhow::Result<()> {
    match destination {
        Destination::Database { name, original } => {
            let (pg, _) = backups.ctx.pg(job).await?;
            if !original {
                pg.create(name).await?;
            }
            let result = pg.restore(name, *original, plain).await;
            if result.is_err() && !original {
                let _ = pg.drop(name).await;
            }
            result
        }
        Destination::Volume {
            name,
            staging: Some(staging),
            ..
        } => {
            // The whole archive is read, checked (its SHA-256, zstd's
            // checksum) and extracted before the live volume is touched: an
            // archive that turns out damaged or a target that drops leaves
            // the volume as it was. The copy that follows is local.
            let docker = backups.ctx.docker()?;
            let labels = [("berth.backup.staging".to_string(), job.name.clone())].into();
            docker.create_volume(staging, labels).await?;
            let result = match docker.volume_untar(staging, plain).await {
                Ok(()) => match docker.volume_tar(staging).await {
                    Ok(staged) => docker.volume_untar(name, staged).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e.context(format!(
                    "the archive did not restore; volume {name} is unchanged"
                ))),
            };
            backups
                .drop_scratch(job, super::drill::Scratch::Volume(staging))
                .await;
            result
        }
        Destination::Volume { name, original, .. } => {
            let docker = backups.ctx.docker()?;
            if !original {
                let labels = [("berth.backup.restored-from".to_string(), job.name.clone())].into();
                docker.create_volume(name, labels).await?;
            }
            let result = docker.volume_untar(name, plain).await;
            if result.is_err() && !original {
                let _ = docker.remove_volume(name).await;
            }
            result
        }
        Destination::Directory(dir) => {
            let result = sources::unpack_berth(plain, dir).await.map(|_| ());
            if result.is_err() {
                let _ = tokio::fs::remove_dir_all(dir).await;
            }
            result
        }
    }
}
