//! Backups: jobs that stream a source (PostgreSQL, an app's PostgreSQL, a
//! Docker volume, berth itself) through zstd and age to a target (local
//! directory, SFTP, S3), on cron schedules, with GFS retention, restores and
//! scheduled restore drills.
//!
//! - `jobs`: validation and storage (secrets sealed).
//! - `schedule`, `retention`: pure decisions, tested on their own.
//! - `pipeline`: the streaming compress-and-encrypt core.
//! - `sources`, `pg`, `docker`, `process`: where bytes come from and go back to.
//! - `target`: where archives live.
//! - `run`, `restore`, `drill`: the three kinds of work, each recorded.
//! - `scheduler`: start-up recovery and the clock that starts work.

pub mod docker;
pub mod drill;
pub mod jobs;
pub mod keys;
pub mod pg;
pub mod pipeline;
pub mod process;
pub mod restore;
pub mod retention;
pub mod routes;
pub mod run;
pub mod schedule;
pub mod scheduler;
pub mod sources;
pub mod tail;
pub mod target;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use app::api::backups::{Drill, DrillCheck, Job, JobInput, PruneEntry, PrunePreview, Restore, Run};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use crate::clock::Clock;
use crate::crypto::Keys;
use crate::http::error::ApiError;
use crate::store::rfc3339;

use jobs::StoredJob;
use pipeline::Progress;

pub struct Backups {
    pub db: SqlitePool,
    pub keys: Arc<Keys>,
    pub notifier: Arc<crate::notify::Notifier>,
    pub ctx: sources::Context,
    /// Tests move it to reach schedules and retention windows.
    pub clock: Arc<Clock>,
    /// Byte counters of runs and restores in progress, by id.
    progress: Mutex<HashMap<String, Arc<Progress>>>,
    /// Wakes the scheduler when jobs change.
    pub(crate) wake: tokio::sync::Notify,
}

impl Backups {
    pub fn new(
        db: SqlitePool,
        keys: Arc<Keys>,
        notifier: Arc<crate::notify::Notifier>,
        apps: Arc<crate::apps::Apps>,
        data_dir: PathBuf,
        config_file: Option<PathBuf>,
    ) -> Backups {
        Backups {
            ctx: sources::Context {
                db: db.clone(),
                data_dir,
                config_file,
                apps,
            },
            db,
            keys,
            notifier,
            clock: Arc::new(Clock::default()),
            progress: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn track(&self, id: &str) -> Arc<Progress> {
        let p = Arc::new(Progress::default());
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), p.clone());
        p
    }

    pub(crate) fn untrack(&self, id: &str) {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn live(&self, id: &str) -> Option<Arc<Progress>> {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub async fn job(&self, id: &str) -> Result<StoredJob, ApiError> {
        jobs::load(&self.db, &self.keys, id).await
    }

    /// The API view of a job, with its next starts and latest results.
    pub async fn view(&self, job: &StoredJob) -> Result<Job, ApiError> {
        let now = self.clock.now();
        let next_runs = match (job.enabled, job.schedule()) {
            (true, Some(s)) => s.upcoming(now, 5).into_iter().map(rfc3339).collect(),
            _ => Vec::new(),
        };
        let next_drill = match (job.enabled, job.drill_schedule()) {
            (true, Some(s)) => s.next_after(now).map(rfc3339),
            _ => None,
        };
        let running: Option<String> = sqlx::query_scalar(
            "SELECT id FROM backup_runs WHERE job_id = ? AND status = 'running'",
        )
        .bind(&job.id)
        .fetch_optional(&self.db)
        .await?;
        let last_run = sqlx::query("SELECT * FROM backup_runs WHERE job_id = ? ORDER BY started_at DESC, rowid DESC LIMIT 1")
            .bind(&job.id)
            .fetch_optional(&self.db)
            .await?;
        let last_run = match last_run {
            Some(r) => Some(self.run_from_row(&r, &job.name)?),
            None => None,
        };
        let drill = |status: Option<&'static str>| {
            let sql = match status {
                Some(_) => "SELECT * FROM backup_drills WHERE job_id = ? AND status = ? ORDER BY started_at DESC, rowid DESC LIMIT 1",
                None => "SELECT * FROM backup_drills WHERE job_id = ? AND status != ? ORDER BY started_at DESC, rowid DESC LIMIT 1",
            };
            sqlx::query(sql)
                .bind(&job.id)
                .bind(status.unwrap_or("running"))
                .fetch_optional(&self.db)
        };
        let last_verified_restore = drill(Some("passed")).await?.map(|r| drill_from_row(&r));
        let last_drill = drill(None).await?.map(|r| drill_from_row(&r));
        Ok(Job {
            id: job.id.clone(),
            name: job.name.clone(),
            source: job.public_source(),
            target: job.target.clone(),
            schedule: job.schedule.clone(),
            timezone: job.timezone.clone(),
            retention: job.retention,
            compression_level: job.compression_level,
            encrypt: job.encrypt,
            drill: job.drill.clone(),
            enabled: job.enabled,
            next_runs,
            next_drill,
            running,
            last_run,
            last_verified_restore,
            last_drill,
            created_at: rfc3339(job.created_at),
            updated_at: rfc3339(job.updated_at),
        })
    }

    pub async fn list(&self) -> Result<Vec<Job>, ApiError> {
        let mut out = Vec::new();
        for job in jobs::load_all(&self.db, &self.keys).await? {
            out.push(self.view(&job).await?);
        }
        Ok(out)
    }

    pub async fn create(&self, input: JobInput) -> Result<Job, ApiError> {
        let prepared = jobs::prepare(input, None)?;
        self.check_key(&prepared.input).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let prepared = self.pin_host_key(prepared).await?;
        jobs::save(&self.db, &self.keys, &id, &prepared, self.clock.now(), true).await?;
        self.wake.notify_one();
        self.view(&self.job(&id).await?).await
    }

    pub async fn update(&self, id: &str, input: JobInput) -> Result<Job, ApiError> {
        let existing = self.job(id).await?;
        let prepared = jobs::prepare(input, Some(&existing))?;
        self.check_key(&prepared.input).await?;
        let prepared = self.pin_host_key(prepared).await?;
        jobs::save(
            &self.db,
            &self.keys,
            &existing.id,
            &prepared,
            self.clock.now(),
            false,
        )
        .await?;
        self.wake.notify_one();
        self.view(&self.job(&existing.id).await?).await
    }

    async fn check_key(&self, input: &JobInput) -> Result<(), ApiError> {
        if input.encrypt && keys::current(&self.db).await?.is_none() {
            return Err(ApiError::Conflict(
                "there is no backup key yet: make one (POST /backups/key) and keep its identity safe, or turn encryption off".into(),
            ));
        }
        Ok(())
    }

    /// An SFTP target without a host key gets the one the server presents
    /// now (trust on first use), so a later impostor is refused.
    async fn pin_host_key(&self, mut prepared: jobs::Prepared) -> Result<jobs::Prepared, ApiError> {
        if let app::api::backups::Target::Sftp {
            host,
            port,
            host_key,
            ..
        } = &mut prepared.input.target
        {
            if host_key.is_none() {
                let key = target::sftp::fetch_host_key(host, *port)
                    .await
                    .map_err(|e| {
                        ApiError::invalid(
                            "target.host",
                            format!("cannot reach the SFTP server to learn its key: {e:#}"),
                        )
                    })?;
                *host_key = Some(key);
            }
        }
        Ok(prepared)
    }

    /// Deletes a job and its history; with `archives`, its archives too.
    pub async fn delete(&self, id: &str, archives: bool) -> Result<usize, ApiError> {
        let job = self.job(id).await?;
        let objects: Vec<String> = if archives {
            sqlx::query_scalar(
                "SELECT object FROM backup_runs WHERE job_id = ? AND target = ? AND status = 'succeeded' \
                 AND pruned_at IS NULL AND object IS NOT NULL",
            )
            .bind(&job.id)
            .bind(run::describe_target(&job))
            .fetch_all(&self.db)
            .await?
        } else {
            Vec::new()
        };
        // The job goes first, in one statement that checks nothing is
        // going: once it is gone no run can start and write an archive
        // this deletion would miss.
        let done = sqlx::query(
            "DELETE FROM backup_jobs WHERE id = ?1 \
             AND NOT EXISTS (SELECT 1 FROM backup_runs WHERE job_id = ?1 AND status = 'running') \
             AND NOT EXISTS (SELECT 1 FROM backup_drills WHERE job_id = ?1 AND status = 'running') \
             AND NOT EXISTS (SELECT 1 FROM backup_restores WHERE job_id = ?1 AND status = 'running')",
        )
        .bind(&job.id)
        .execute(&self.db)
        .await?;
        if done.rows_affected() == 0 {
            return Err(ApiError::Conflict(format!(
                "job `{}` has a backup, drill or restore going; wait for it to finish",
                job.name
            )));
        }
        self.wake.notify_one();
        if objects.is_empty() {
            return Ok(0);
        }
        let store = sources::store(&job, &self.ctx.data_dir)?;
        let mut failed = Vec::new();
        for object in &objects {
            match store.delete(object).await {
                Ok(()) => {
                    let _ = store.delete(&run::manifest_name(object)).await;
                }
                Err(e) => failed.push(format!("{object}: {e:#}")),
            }
        }
        if let Some(first) = failed.first() {
            return Err(ApiError::ApplyFailed(format!(
                "the job is deleted, but {} of {} archives could not be deleted at the target ({first})",
                failed.len(),
                objects.len()
            )));
        }
        Ok(objects.len())
    }

    pub async fn runs(&self, job: Option<&str>, limit: i64) -> Result<Vec<Run>, ApiError> {
        let rows = match job {
            Some(j) => {
                let job = self.job(j).await?;
                sqlx::query("SELECT r.*, j.name AS job_name FROM backup_runs r JOIN backup_jobs j ON j.id = r.job_id WHERE r.job_id = ? ORDER BY r.started_at DESC, r.rowid DESC LIMIT ?")
                    .bind(job.id)
                    .bind(limit)
                    .fetch_all(&self.db)
                    .await?
            }
            None => sqlx::query("SELECT r.*, j.name AS job_name FROM backup_runs r JOIN backup_jobs j ON j.id = r.job_id ORDER BY r.started_at DESC, r.rowid DESC LIMIT ?")
                .bind(limit)
                .fetch_all(&self.db)
                .await?,
        };
        rows.iter()
            .map(|r| self.run_from_row(r, &r.get::<String, _>("job_name")))
            .collect()
    }

    pub async fn run_record(&self, id: &str) -> Result<Run, ApiError> {
        let row = sqlx::query("SELECT r.*, j.name AS job_name FROM backup_runs r JOIN backup_jobs j ON j.id = r.job_id WHERE r.id = ?")
            .bind(id)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no backup run `{id}`")))?;
        self.run_from_row(&row, &row.get::<String, _>("job_name"))
    }

    fn run_from_row(&self, r: &SqliteRow, job_name: &str) -> Result<Run, ApiError> {
        let id: String = r.get("id");
        let status: String = r.get("status");
        let (mut source_bytes, mut size): (i64, i64) = (r.get("source_bytes"), r.get("size"));
        if status == "running" {
            if let Some(p) = self.live(&id) {
                source_bytes = p.read.load(std::sync::atomic::Ordering::Relaxed) as i64;
                size = p.written.load(std::sync::atomic::Ordering::Relaxed) as i64;
            }
        }
        let started: i64 = r.get("started_at");
        let finished: Option<i64> = r.get("finished_at");
        let manifest: Option<serde_json::Value> = r
            .get::<Option<String>, _>("manifest")
            .and_then(|m| serde_json::from_str(&m).ok());
        let total_ms = manifest
            .as_ref()
            .and_then(|m| m["timings"]["total_ms"].as_i64());
        Ok(Run {
            job_id: r.get("job_id"),
            job_name: job_name.to_string(),
            trigger: r.get("trigger"),
            started_at: rfc3339(started),
            finished_at: finished.map(rfc3339),
            duration_ms: total_ms.or(finished.map(|f| (f - started) * 1000)),
            source_bytes,
            size,
            sha256: r.get("sha256"),
            object: r.get("object"),
            error: r.get("error"),
            log: serde_json::from_str(r.get("log")).unwrap_or_default(),
            verified: r.get("verified"),
            pruned_at: r.get::<Option<i64>, _>("pruned_at").map(rfc3339),
            manifest,
            status,
            id,
        })
    }

    /// What retention would keep and delete if it ran now.
    pub async fn prune_preview(&self, id: &str) -> Result<PrunePreview, ApiError> {
        let job = self.job(id).await?;
        let (decision, rows) = run::retention_decision(&self.db, &job).await?;
        let entry = |run_id: &str, reasons: Vec<String>| {
            let (started, size) = rows.get(run_id).copied().unwrap_or_default();
            PruneEntry {
                run_id: run_id.to_string(),
                started_at: rfc3339(started),
                size,
                reasons,
            }
        };
        Ok(PrunePreview {
            keep: decision
                .keep
                .iter()
                .map(|(id, r)| entry(id, r.iter().map(|s| s.to_string()).collect()))
                .collect(),
            delete: decision
                .delete
                .iter()
                .map(|id| entry(id, Vec::new()))
                .collect(),
        })
    }

    pub async fn restore_record(&self, id: &str) -> Result<Restore, ApiError> {
        let r = sqlx::query("SELECT * FROM backup_restores WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no restore `{id}`")))?;
        let status: String = r.get("status");
        let mut bytes: i64 = r.get("bytes");
        if status == "running" {
            if let Some(p) = self.live(id) {
                bytes = p.read.load(std::sync::atomic::Ordering::Relaxed) as i64;
            }
        }
        Ok(Restore {
            id: r.get("id"),
            run_id: r.get("run_id"),
            job_id: r.get("job_id"),
            destination: r.get("destination"),
            started_at: rfc3339(r.get("started_at")),
            finished_at: r.get::<Option<i64>, _>("finished_at").map(rfc3339),
            bytes,
            total: r.get("total"),
            error: r.get("error"),
            log: serde_json::from_str(r.get("log")).unwrap_or_default(),
            status,
        })
    }

    pub async fn drills(&self, job: &str, limit: i64) -> Result<Vec<Drill>, ApiError> {
        let job = self.job(job).await?;
        let rows = sqlx::query("SELECT * FROM backup_drills WHERE job_id = ? ORDER BY started_at DESC, rowid DESC LIMIT ?")
            .bind(&job.id)
            .bind(limit)
            .fetch_all(&self.db)
            .await?;
        Ok(rows.iter().map(drill_from_row).collect())
    }

    pub async fn drill_record(&self, id: &str) -> Result<Drill, ApiError> {
        let row = sqlx::query("SELECT * FROM backup_drills WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no drill `{id}`")))?;
        Ok(drill_from_row(&row))
    }

    /// Tells the admin through every notification channel.
    pub(crate) async fn notify(
        &self,
        event: &str,
        subject: String,
        text: String,
        details: serde_json::Value,
    ) {
        self.notifier
            .send(&crate::notify::Notice {
                event: event.to_string(),
                subject,
                text,
                details,
            })
            .await;
    }
}

fn drill_from_row(r: &SqliteRow) -> Drill {
    Drill {
        id: r.get("id"),
        job_id: r.get("job_id"),
        run_id: r.get("run_id"),
        status: r.get("status"),
        started_at: rfc3339(r.get("started_at")),
        finished_at: r.get::<Option<i64>, _>("finished_at").map(rfc3339),
        checks: serde_json::from_str::<Vec<DrillCheck>>(r.get("checks")).unwrap_or_default(),
        error: r.get("error"),
    }
}

/// Appends a line to a run's, restore's or drill's log column.
pub(crate) async fn log_line(db: &SqlitePool, table: &str, id: &str, line: &str) {
    let sql = format!("UPDATE {table} SET log = json_insert(log, '$[#]', ?) WHERE id = ?");
    if let Err(e) = sqlx::query(&sql).bind(line).bind(id).execute(db).await {
        tracing::warn!(error = %e, "could not record a backup log line");
    }
}
