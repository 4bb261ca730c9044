//! Opening what a job backs up as one stream of bytes, and where its
//! archives go. berth's own store is copied with `VACUUM INTO`, which reads
//! one consistent snapshot while berth keeps writing, then packed as a tar
//! with a small description of what it is and the configuration file berth
//! was started with, if any.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use app::api::backups::{Source, Target};
use sha2::Digest;
use sqlx::SqlitePool;
use tokio_util::io::SyncIoBridge;

use super::docker::DockerIo;
use super::jobs::StoredJob;
use super::pg::Pg;
use super::pipeline::{self, ChannelWriter, Progress};
use super::target::{local::Local, s3, sftp, Reader, Store};

/// What a source needs from the rest of berth.
#[derive(Clone)]
pub struct Context {
    pub db: SqlitePool,
    pub data_dir: PathBuf,
    /// The TOML file berth was started with, if any.
    pub config_file: Option<PathBuf>,
    pub apps: Arc<crate::apps::Apps>,
}

impl Context {
    pub fn docker(&self) -> anyhow::Result<DockerIo> {
        let docker = self
            .apps
            .engine
            .docker()
            .map_err(|e| anyhow::anyhow!("the Docker engine is unreachable: {e}"))?;
        // One berth per data dir: its path names this berth's helpers.
        let owner =
            hex::encode(&sha2::Sha256::digest(self.data_dir.as_os_str().as_encoded_bytes())[..6]);
        Ok(DockerIo::new(docker).owned_by(&owner))
    }

    /// The running container of a berth app.
    pub async fn app_container(&self, app: &str) -> anyhow::Result<String> {
        let observed = self
            .apps
            .engine
            .observe(app)
            .await
            .map_err(|e| anyhow::anyhow!("cannot look up app `{app}`: {e}"))?;
        observed
            .into_iter()
            .find(|o| o.running)
            .map(|o| o.id)
            .ok_or_else(|| anyhow::anyhow!("app `{app}` has no running container"))
    }

    pub async fn pg(&self, job: &StoredJob) -> anyhow::Result<(Pg, String)> {
        match &job.source {
            Source::Postgres { .. } => {
                let conn = job
                    .conn()
                    .ok_or_else(|| anyhow::anyhow!("the stored connection string is unreadable"))?;
                let database = conn.database.clone();
                Ok((Pg::Local(conn), database))
            }
            Source::PostgresApp {
                app,
                database,
                user,
            } => Ok((
                Pg::App {
                    docker: self.docker()?,
                    container: self.app_container(app).await?,
                    user: user.clone().unwrap_or_else(|| "postgres".into()),
                },
                database.clone(),
            )),
            _ => anyhow::bail!("not a database source"),
        }
    }

    /// Scratch space inside the data dir (same filesystem as the store).
    pub fn scratch_dir(&self) -> PathBuf {
        self.data_dir.join("backup-tmp")
    }
}

/// The source's bytes, and facts about it for the manifest.
pub async fn open(ctx: &Context, job: &StoredJob) -> anyhow::Result<(Reader, serde_json::Value)> {
    match &job.source {
        Source::Postgres { .. } | Source::PostgresApp { .. } => {
            let (pg, database) = ctx.pg(job).await?;
            let versions = pg.versions(&database).await;
            Ok((pg.dump(&database).await?, versions))
        }
        Source::Volume { volume } => {
            let docker = ctx.docker()?;
            if !docker.volume_exists(volume).await? {
                anyhow::bail!("volume `{volume}` does not exist");
            }
            Ok((
                docker.volume_tar(volume).await?,
                serde_json::json!({ "format": "tar" }),
            ))
        }
        Source::Berth => {
            let reader = snapshot(ctx).await?;
            Ok((
                reader,
                serde_json::json!({ "format": "tar", "sqlite": sqlite_version(&ctx.db).await }),
            ))
        }
    }
}

async fn sqlite_version(db: &SqlitePool) -> Option<String> {
    sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(db)
        .await
        .ok()
}

/// The file name of the store inside a berth archive.
pub const STORE_FILE: &str = "berth.db";
/// Describes the archive: berth's version and the store's schema.
pub const ABOUT_FILE: &str = "berth-backup.json";
/// The configuration file berth was started with (`--config`), if any.
pub const CONFIG_FILE: &str = "berth.toml";

/// A consistent copy of the store as a tar stream. The copy is a file in
/// the data dir's scratch space, removed once packed (or if packing fails).
async fn snapshot(ctx: &Context) -> anyhow::Result<Reader> {
    let dir = ctx.scratch_dir();
    tokio::fs::create_dir_all(&dir).await?;
    let file = dir.join(format!("snapshot-{}.db", uuid::Uuid::new_v4()));
    let path = file
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("the data dir path is not UTF-8"))?;
    let prepared = async {
        sqlx::query("VACUUM INTO ?")
            .bind(path)
            .execute(&ctx.db)
            .await
            .map_err(|e| anyhow::anyhow!("copying the store failed: {e}"))?;
        // Read before anything is packed: a settings file that cannot be
        // read fails the backup rather than being left out unnoticed.
        let config = match &ctx.config_file {
            Some(path) => Some(tokio::fs::read(path).await.map_err(|e| {
                anyhow::anyhow!("reading the config file {} failed: {e}", path.display())
            })?),
            None => None,
        };
        settle_copy(&file).await?;
        let migrations: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&ctx.db)
            .await
            .unwrap_or(0);
        let about = serde_json::to_vec_pretty(&serde_json::json!({
            "berth": env!("CARGO_PKG_VERSION"),
            "migrations": migrations,
            "config": config.as_ref().map(|_| CONFIG_FILE),
            "note": "berth.db is a consistent copy of berth's store; sealed values need the same master key",
        }))?;
        anyhow::Ok((config, about))
    }
    .await;
    let (config, about) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            let _ = tokio::fs::remove_file(&file).await;
            return Err(e);
        }
    };
    let (tx, reader) = pipeline::channel();
    tokio::task::spawn_blocking(move || {
        let result = (|| -> anyhow::Result<()> {
            let out = ChannelWriter::new(tx.clone(), Arc::new(Progress::default()));
            let mut tar = tar::Builder::new(out);
            let mut small = |name: &str, bytes: &[u8]| {
                let mut header = tar::Header::new_gnu();
                header.set_size(bytes.len() as u64);
                header.set_mode(0o600);
                header.set_mtime(crate::store::now() as u64);
                header.set_cksum();
                tar.append_data(&mut header, name, bytes)
            };
            small(ABOUT_FILE, &about)?;
            if let Some(config) = &config {
                small(CONFIG_FILE, config)?;
            }
            let mut db = std::fs::File::open(&file)?;
            tar.append_file(STORE_FILE, &mut db)?;
            tar.into_inner()?.finish()?;
            Ok(())
        })();
        let _ = std::fs::remove_file(&file);
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(std::io::Error::other(format!(
                "packing the store failed: {e:#}"
            ))));
        }
    });
    Ok(reader)
}

/// Work that was going when the copy was taken (this very run among it)
/// did not finish in the copy's world. Left `running`, a berth started on
/// the restored copy would take it for work it was killed in, and remove
/// its archive: the one just restored from. So the copy records it as
/// failed, with no archive to remove.
async fn settle_copy(file: &Path) -> anyhow::Result<()> {
    // A rollback journal, not WAL: the copy stays one self-contained file.
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Delete);
    let pool = SqlitePool::connect_with(options).await?;
    let note = "in progress when this copy of berth's store was taken";
    for sql in [
        "UPDATE backup_runs SET status = 'failed', object = NULL, error = ? WHERE status = 'running'",
        "UPDATE backup_restores SET status = 'failed', error = ? WHERE status = 'running'",
        "UPDATE backup_drills SET status = 'failed', scratch = NULL, error = ? WHERE status = 'running'",
    ] {
        sqlx::query(sql).bind(note).execute(&pool).await?;
    }
    pool.close().await;
    Ok(())
}

/// Unpacks a berth archive into `dir` (created; must not exist).
pub async fn unpack_berth(input: Reader, dir: &Path) -> anyhow::Result<u64> {
    let dir = dir.to_path_buf();
    let input = SyncIoBridge::new(input);
    tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let mut archive = tar::Archive::new(input);
        let mut files = 0;
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = entry.path()?.to_path_buf();
            // Only the files berth writes, never a path elsewhere.
            let known = [STORE_FILE, ABOUT_FILE, CONFIG_FILE]
                .iter()
                .any(|f| name == Path::new(f));
            if !known {
                anyhow::bail!("unexpected entry {} in a berth archive", name.display());
            }
            entry.unpack(dir.join(&name))?;
            files += 1;
        }
        if files == 0 {
            anyhow::bail!("the archive is empty");
        }
        Ok(files)
    })
    .await?
}

/// The target a job writes to.
pub fn store(job: &StoredJob, data_dir: &Path) -> anyhow::Result<Box<dyn Store>> {
    Ok(match &job.target {
        Target::Local { path } => {
            let dir = path
                .as_ref()
                .map(PathBuf::from)
                .unwrap_or_else(|| data_dir.join("backups"));
            Box::new(Local::new(dir))
        }
        Target::Sftp {
            host,
            port,
            user,
            path,
            host_key,
            ..
        } => {
            let auth = match (&job.secrets.private_key, &job.secrets.password) {
                (Some(k), _) => sftp::SftpAuth::PrivateKey(k.clone()),
                (None, Some(p)) => sftp::SftpAuth::Password(p.clone()),
                (None, None) => anyhow::bail!("the SFTP target has no credentials"),
            };
            Box::new(sftp::Sftp::new(sftp::SftpConfig {
                host: host.clone(),
                port: *port,
                user: user.clone(),
                path: path.clone(),
                auth,
                host_key: host_key.clone(),
            }))
        }
        Target::S3 {
            endpoint,
            bucket,
            region,
            access_key,
            prefix,
            ..
        } => {
            let secret_key = job
                .secrets
                .secret_key
                .clone()
                .ok_or_else(|| anyhow::anyhow!("the S3 target has no secret key"))?;
            Box::new(s3::S3::new(s3::S3Config {
                endpoint: endpoint.clone(),
                bucket: bucket.clone(),
                region: region.clone(),
                access_key: access_key.clone(),
                secret_key,
                prefix: prefix.as_ref().map(|p| format!("{p}/")).unwrap_or_default(),
            })?)
        }
    })
}
