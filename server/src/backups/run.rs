//! One backup run: source → pipeline → target, verified, recorded, then
//! retention. A run either ends `succeeded` with a verified archive at the
//! target, or `failed` with nothing of it left there.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::{Row, SqlitePool};

use super::jobs::StoredJob;
use super::retention::{self, Archive, Decision};
use super::target::Store;
use super::{keys, log_line, pipeline, sources, Backups};
use crate::http::error::ApiError;

/// How long a run may go without a byte moving before it is failed: a
/// hung source or a target that stopped answering must not block the job
/// (one run at a time) until berth restarts.
const STALL: Duration = Duration::from_secs(15 * 60);

/// Fails once the run's byte counters have not moved for `STALL`.
async fn stalled(progress: Arc<pipeline::Progress>) -> anyhow::Error {
    let step = Duration::from_secs(30);
    let mut last = (u64::MAX, u64::MAX);
    let mut still = Duration::ZERO;
    loop {
        tokio::time::sleep(step).await;
        let now = (
            progress.read.load(Ordering::Relaxed),
            progress.written.load(Ordering::Relaxed),
        );
        if now == last {
            still += step;
            if still >= STALL {
                return anyhow::anyhow!(
                    "no data moved for {} minutes: the source or the target hangs",
                    STALL.as_secs() / 60
                );
            }
        } else {
            still = Duration::ZERO;
            last = now;
        }
    }
}

/// What a finished upload leaves for the manifest and the record.
struct Written {
    digest: pipeline::Digest,
    stored: super::target::Stored,
    versions: serde_json::Value,
    source_ms: i64,
    /// The recipient the archive was encrypted to.
    recipient: Option<String>,
}

/// The manifest's object: beside the archive, so a target holds what is
/// needed to understand its archives without berth's store.
pub fn manifest_name(object: &str) -> String {
    format!("{object}.manifest.json")
}

/// The archive's name: `JOB/YYYYMMDDTHHMMSSZ-RUN.EXT.zst[.age]`.
fn object_name(job: &StoredJob, run_id: &str, at: i64) -> String {
    let stamp = jiff::Timestamp::from_second(at)
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|_| at.to_string());
    let short = &run_id[..8.min(run_id.len())];
    let ext = job.source.extension();
    let age = if job.encrypt { ".age" } else { "" };
    format!("{}/{stamp}-{short}.{ext}.zst{age}", job.name)
}

impl Backups {
    /// Records a run and starts it in the background. 409 when the job
    /// already has one going.
    pub async fn start_run(
        self: &Arc<Self>,
        job_id: &str,
        trigger: &str,
    ) -> Result<String, ApiError> {
        let job = self.job(job_id).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let now = self.clock.now();
        let object = object_name(&job, &id, now);
        // The object's name is recorded before anything is written, so a
        // berth killed mid-run knows what to remove at start-up.
        let inserted = sqlx::query(
            "INSERT INTO backup_runs (id, job_id, trigger, status, started_at, object, target, encrypted) \
             VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(&job.id)
        .bind(trigger)
        .bind(now)
        .bind(&object)
        .bind(describe_target(&job))
        .bind(job.encrypt)
        .execute(&self.db)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if crate::store::is_unique_violation(&e) => {
                return Err(ApiError::Conflict(format!(
                    "job `{}` is already running",
                    job.name
                )))
            }
            Err(e) => return Err(e.into()),
        }
        let progress = self.track(&id);
        let this = self.clone();
        let run_id = id.clone();
        tokio::spawn(async move {
            let worker = {
                let (this, job, run_id, object) =
                    (this.clone(), job.clone(), run_id.clone(), object.clone());
                tokio::spawn(async move { this.execute(job, run_id, object, progress).await })
            };
            // A panic must not leave the run `running` (and the job blocked).
            if let Err(e) = worker.await {
                let store = sources::store(&job, &this.ctx.data_dir).ok();
                let error = anyhow::anyhow!("the run crashed: {e}");
                this.fail(&job, &run_id, store.as_deref(), &object, error)
                    .await;
            }
            this.untrack(&run_id);
        });
        Ok(id)
    }

    async fn execute(
        self: &Arc<Self>,
        job: StoredJob,
        id: String,
        object: String,
        progress: Arc<pipeline::Progress>,
    ) {
        let started = Instant::now();
        let started_at = self.clock.now();
        let log = |line: String| {
            let db = self.db.clone();
            let id = id.clone();
            async move { log_line(&db, "backup_runs", &id, &line).await }
        };
        log(format!(
            "backing up {} to {}",
            describe_source(&job),
            describe_target(&job)
        ))
        .await;
        let store = match sources::store(&job, &self.ctx.data_dir) {
            Ok(s) => s,
            Err(e) => return self.fail(&job, &id, None, &object, e).await,
        };
        let outcome = tokio::select! {
            r = self.write_archive(&job, &object, store.as_ref(), progress.clone(), &log) => r,
            e = stalled(progress) => Err(e),
        };
        let Written {
            digest,
            stored,
            versions,
            source_ms,
            recipient,
        } = match outcome {
            Ok(v) => v,
            Err(e) => return self.fail(&job, &id, Some(store.as_ref()), &object, e).await,
        };
        let finished_at = self.clock.now();
        let manifest = json!({
            "format": 1,
            "job": { "id": job.id, "name": job.name },
            "run": id,
            "object": object,
            "source": { "kind": job.source.kind(), "what": describe_source(&job), "versions": versions },
            "source_bytes": digest.source_bytes,
            "size": digest.size,
            "sha256": digest.sha256,
            "compression": { "algorithm": "zstd", "level": job.compression_level },
            "encryption": recipient.as_ref().map(|r| json!({ "algorithm": "age-x25519", "recipient": r })),
            "berth": env!("CARGO_PKG_VERSION"),
            "started_at": crate::store::rfc3339(started_at),
            "finished_at": crate::store::rfc3339(finished_at),
            "timings": { "source_ms": source_ms, "total_ms": started.elapsed().as_millis() as i64 },
            "target": { "kind": job.target.kind(), "etag": stored.etag },
        });
        let body = serde_json::to_vec_pretty(&manifest).expect("serialisable");
        if let Err(e) = store
            .put(
                &manifest_name(&object),
                Box::pin(std::io::Cursor::new(body)),
            )
            .await
        {
            let e = e.context("writing the manifest failed");
            return self.fail(&job, &id, Some(store.as_ref()), &object, e).await;
        }
        let saved = sqlx::query(
            "UPDATE backup_runs SET status = 'succeeded', finished_at = ?, source_bytes = ?, size = ?, sha256 = ?, \
             verified = 1, manifest = ? WHERE id = ? AND status = 'running'",
        )
        .bind(finished_at)
        .bind(digest.source_bytes as i64)
        .bind(digest.size as i64)
        .bind(&digest.sha256)
        .bind(manifest.to_string())
        .bind(&id)
        .execute(&self.db)
        .await;
        match saved {
            Err(e) => {
                let e = anyhow::Error::new(e).context("recording the run failed");
                return self.fail(&job, &id, Some(store.as_ref()), &object, e).await;
            }
            // Recovery already failed this run (it started while berth was
            // starting up); its verdict stands, and a failed run leaves
            // nothing at the target.
            Ok(r) if r.rows_affected() == 0 => {
                let _ = store.delete(&object).await;
                let _ = store.delete(&manifest_name(&object)).await;
                return;
            }
            Ok(_) => {}
        }
        log(format!(
            "stored {} bytes ({} from the source), sha256 {}, verified at the target",
            digest.size, digest.source_bytes, digest.sha256
        ))
        .await;
        // Retention as the job says now: its policy may have changed during
        // the run. A job whose target moved meanwhile prunes next time.
        match self.job(&job.id).await {
            Ok(current) if describe_target(&current) == describe_target(&job) => {
                self.prune(&current, store.as_ref(), &id).await
            }
            _ => {}
        }
    }

    /// The streaming part. On success the archive is complete at the target
    /// and its size there equals what the pipeline produced.
    async fn write_archive<F, Fut>(
        &self,
        job: &StoredJob,
        object: &str,
        store: &dyn Store,
        progress: Arc<pipeline::Progress>,
        log: &F,
    ) -> anyhow::Result<Written>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        // Leftovers of an earlier run berth did not live to clean up.
        let prefix = format!("{}/", job.name);
        match store.sweep(&prefix).await {
            Ok(0) => {}
            Ok(n) => {
                log(format!(
                    "removed {n} unfinished upload(s) left by an interrupted run"
                ))
                .await
            }
            Err(e) => anyhow::bail!("the target is not reachable: {e:#}"),
        }
        let recipient = if job.encrypt {
            Some(
                keys::current(&self.db)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("encryption is on but there is no backup key"))?
                    .0,
            )
        } else {
            None
        };
        let recipient_text = recipient.as_ref().map(|r| r.to_string());
        let source_started = Instant::now();
        let (reader, versions) = sources::open(&self.ctx, job).await?;
        let (archive, digest) =
            pipeline::encode(reader, job.compression_level, recipient, progress);
        crate::fault::pause_point("backup.before_upload").await;
        let stored = store.put(object, archive).await;
        let digest = digest
            .await
            .map_err(|e| anyhow::anyhow!("the encoder crashed: {e}"))?;
        let source_ms = source_started.elapsed().as_millis() as i64;
        let (digest, stored) = match (digest, stored) {
            (Ok(d), Ok(s)) => (d, s),
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => return Err(e),
            // Both failed: whichever failed first says why. A target that
            // gave up (a full disk) makes the encoder see only that.
            (Err(source), Err(upload)) => {
                return Err(if pipeline::target_gone(&source) {
                    upload
                } else {
                    source
                })
            }
        };
        if stored.size != digest.size {
            anyhow::bail!(
                "the target holds {} bytes but {} were sent",
                stored.size,
                digest.size
            );
        }
        Ok(Written {
            digest,
            stored,
            versions,
            source_ms,
            recipient: recipient_text,
        })
    }

    /// Marks the run failed, removes whatever of it reached the target, and
    /// tells the admin.
    async fn fail(
        &self,
        job: &StoredJob,
        id: &str,
        store: Option<&dyn Store>,
        object: &str,
        error: anyhow::Error,
    ) {
        let message = format!("{error:#}");
        tracing::warn!(job = %job.name, run = %id, error = %message, "backup failed");
        if let Some(store) = store {
            let _ = store.delete(object).await;
            let _ = store.delete(&manifest_name(object)).await;
            let _ = store.sweep(&format!("{}/", job.name)).await;
        }
        let _ = sqlx::query(
            "UPDATE backup_runs SET status = 'failed', finished_at = ?, error = ?, verified = 0 WHERE id = ? AND status = 'running'",
        )
        .bind(self.clock.now())
        .bind(&message)
        .bind(id)
        .execute(&self.db)
        .await;
        log_line(&self.db, "backup_runs", id, &format!("failed: {message}")).await;
        self.notify(
            "backup.failed",
            format!("Backup {} failed", job.name),
            format!(
                "The backup of {} to {} failed: {message}. Nothing of this run was kept; earlier archives are untouched.",
                describe_source(job),
                describe_target(job)
            ),
            json!({ "job": job.name, "run": id, "error": message }),
        )
        .await;
    }

    /// Deletes what retention no longer keeps. Runs only after a run
    /// succeeded; an archive that cannot be deleted stays listed and is
    /// tried again next time.
    async fn prune(&self, job: &StoredJob, store: &dyn Store, run_id: &str) {
        let decision = match retention_decision(&self.db, job).await {
            Ok((d, _)) => d,
            Err(e) => {
                tracing::warn!(job = %job.name, error = %e, "retention skipped");
                return;
            }
        };
        for victim in decision.delete {
            let object: Option<String> =
                sqlx::query_scalar("SELECT object FROM backup_runs WHERE id = ?")
                    .bind(&victim)
                    .fetch_optional(&self.db)
                    .await
                    .ok()
                    .flatten();
            let Some(object) = object else { continue };
            match store.delete(&object).await {
                Ok(()) => {
                    let _ = store.delete(&manifest_name(&object)).await;
                    let _ = sqlx::query("UPDATE backup_runs SET pruned_at = ? WHERE id = ?")
                        .bind(self.clock.now())
                        .bind(&victim)
                        .execute(&self.db)
                        .await;
                    log_line(
                        &self.db,
                        "backup_runs",
                        run_id,
                        &format!("retention deleted {object}"),
                    )
                    .await;
                }
                Err(e) => {
                    log_line(
                        &self.db,
                        "backup_runs",
                        run_id,
                        &format!("retention could not delete {object}: {e:#}"),
                    )
                    .await;
                }
            }
        }
    }
}

/// Retention's decision on a job's archives at its current target, with each archive's
/// start and size for the preview.
pub async fn retention_decision(
    db: &SqlitePool,
    job: &StoredJob,
) -> Result<(Decision, HashMap<String, (i64, i64)>), ApiError> {
    let rows = sqlx::query(
        "SELECT r.id, r.rowid AS seq, r.started_at, r.size, r.verified, \
         EXISTS (SELECT 1 FROM backup_drills d WHERE d.run_id = r.id AND d.status = 'passed') AS drilled, \
         EXISTS (SELECT 1 FROM backup_drills d WHERE d.run_id = r.id AND d.status = 'running') \
           OR EXISTS (SELECT 1 FROM backup_restores x WHERE x.run_id = r.id AND x.status = 'running') AS in_use \
         FROM backup_runs r WHERE r.job_id = ? AND r.target = ? AND r.status = 'succeeded' AND r.pruned_at IS NULL",
    )
    .bind(&job.id)
    .bind(describe_target(job))
    .fetch_all(db)
    .await?;
    let mut facts = HashMap::new();
    let archives: Vec<Archive> = rows
        .iter()
        .map(|r| {
            let id: String = r.get("id");
            facts.insert(id.clone(), (r.get("started_at"), r.get("size")));
            Archive {
                run_id: id,
                started_at: r.get("started_at"),
                seq: r.get("seq"),
                verified: r.get("verified"),
                drilled: r.get("drilled"),
                in_use: r.get("in_use"),
            }
        })
        .collect();
    Ok((
        retention::decide(&archives, &job.retention, &job.timezone()),
        facts,
    ))
}

pub fn describe_source(job: &StoredJob) -> String {
    use app::api::backups::Source;
    match &job.public_source() {
        Source::Postgres { dsn } => format!("PostgreSQL {dsn}"),
        Source::PostgresApp { app, database, .. } => format!("database {database} of app {app}"),
        Source::Volume { volume } => format!("volume {volume}"),
        Source::Berth => "berth's own store".to_string(),
    }
}

pub fn describe_target(job: &StoredJob) -> String {
    use app::api::backups::Target;
    match &job.target {
        Target::Local { path } => format!(
            "local directory {}",
            path.as_deref().unwrap_or("DATA_DIR/backups")
        ),
        Target::Sftp {
            host,
            port,
            user,
            path,
            ..
        } => format!(
            "sftp://{user}@{host}:{port}{}{path}",
            if path.starts_with('/') { "" } else { "/" }
        ),
        Target::S3 {
            endpoint,
            bucket,
            prefix,
            ..
        } => {
            format!("s3 {endpoint}/{bucket}/{}", prefix.as_deref().unwrap_or(""))
        }
    }
}
