//! Start-up recovery and the loop that starts scheduled runs and drills.
//!
//! Each job remembers up to when its schedule was handled
//! (`scheduled_through`). A start that fell while berth was down lies
//! between that mark and now: it runs once at start-up, however many were
//! missed. A start that comes while the job's previous run still goes is
//! skipped (one run per job at a time) and says so in the log.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sqlx::Row;

use super::{jobs, sources, Backups};

/// How often the loop looks at the clock when nothing wakes it.
const TICK: Duration = Duration::from_secs(1);

impl Backups {
    /// Recovers from a berth that died mid-work, then runs schedules for
    /// the life of the process.
    pub async fn run(self: Arc<Self>) {
        if let Err(e) = self.recover().await {
            tracing::error!(error = %format!("{e:#}"), "backup recovery failed");
        }
        let mut first = true;
        loop {
            if let Err(e) = self.tick(first).await {
                tracing::warn!(error = %format!("{e:#}"), "backup scheduler");
            }
            first = false;
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Runs, restores and drills that were going when berth stopped are
    /// failed, what they left at the target or in scratch space removed,
    /// and the admin told.
    pub async fn recover(&self) -> anyhow::Result<()> {
        let interrupted =
            sqlx::query("SELECT id, job_id, object FROM backup_runs WHERE status = 'running'")
                .fetch_all(&self.db)
                .await?;
        for row in interrupted {
            let (id, job_id): (String, String) = (row.get("id"), row.get("job_id"));
            let object: Option<String> = row.get("object");
            let message =
                "berth stopped during this run (killed or crashed); nothing of it was kept";
            let mut cleaned = String::new();
            if let Ok(job) = jobs::load(&self.db, &self.keys, &job_id).await {
                if let Ok(store) = sources::store(&job, &self.ctx.data_dir) {
                    if let Some(object) = &object {
                        let _ = store.delete(object).await;
                        let _ = store.delete(&super::run::manifest_name(object)).await;
                    }
                    match store.sweep(&format!("{}/", job.name)).await {
                        Ok(n) => cleaned = format!("removed {n} unfinished upload(s)"),
                        Err(e) => cleaned = format!("could not clean the target yet: {e:#}"),
                    }
                }
                self.notify(
                    "backup.failed",
                    format!("Backup {} was interrupted", job.name),
                    format!("{message}. It runs again at its next scheduled time."),
                    json!({ "job": job.name, "run": id, "error": message }),
                )
                .await;
            }
            sqlx::query("UPDATE backup_runs SET status = 'failed', error = ?, finished_at = ?, log = json_insert(log, '$[#]', ?) WHERE id = ?")
                .bind(message)
                .bind(self.clock.now())
                .bind(format!("failed: {message}; {cleaned}"))
                .bind(&id)
                .execute(&self.db)
                .await?;
        }
        sqlx::query("UPDATE backup_restores SET status = 'failed', error = 'berth stopped during this restore', finished_at = ? WHERE status = 'running'")
            .bind(self.clock.now())
            .execute(&self.db)
            .await?;
        let drills =
            sqlx::query("SELECT id, job_id, scratch FROM backup_drills WHERE status = 'running'")
                .fetch_all(&self.db)
                .await?;
        for row in drills {
            let (id, job_id): (String, String) = (row.get("id"), row.get("job_id"));
            let scratch: Option<String> = row.get("scratch");
            if let (Some(scratch), Ok(job)) =
                (scratch, jobs::load(&self.db, &self.keys, &job_id).await)
            {
                self.drop_scratch(&job, &scratch).await;
            }
            sqlx::query("UPDATE backup_drills SET status = 'failed', error = 'berth stopped during this drill', finished_at = ? WHERE id = ?")
                .bind(self.clock.now())
                .bind(&id)
                .execute(&self.db)
                .await?;
        }
        let _ = tokio::fs::remove_dir_all(self.ctx.scratch_dir()).await;
        if let Ok(docker) = self.ctx.docker() {
            let _ = docker.sweep_helpers().await;
        }
        Ok(())
    }

    async fn drop_scratch(&self, job: &jobs::StoredJob, scratch: &str) {
        use app::api::backups::Source;
        match &job.source {
            Source::Postgres { .. } | Source::PostgresApp { .. } => {
                if let Ok((pg, _)) = self.ctx.pg(job).await {
                    let _ = pg.drop(scratch).await;
                }
            }
            Source::Volume { .. } => {
                if let Ok(docker) = self.ctx.docker() {
                    if docker.volume_exists(scratch).await.unwrap_or(false) {
                        let _ = docker.remove_volume(scratch).await;
                    }
                }
            }
            Source::Berth => {}
        }
    }

    /// Starts what is due. `startup` marks starts missed while berth was down.
    async fn tick(self: &Arc<Self>, startup: bool) -> anyhow::Result<()> {
        let now = self.clock.now();
        let rows = sqlx::query("SELECT id, name, schedule, drill, timezone, scheduled_through, drill_through FROM backup_jobs WHERE enabled = 1")
            .fetch_all(&self.db)
            .await?;
        for row in rows {
            let id: String = row.get("id");
            let name: String = row.get("name");
            let timezone: String = row.get("timezone");
            let schedule: Option<String> = row.get("schedule");
            if let Some(s) =
                schedule.and_then(|s| super::schedule::Schedule::new(&s, &timezone).ok())
            {
                let through: i64 = row.get("scheduled_through");
                if s.next_after(through).is_some_and(|due| due <= now) {
                    sqlx::query("UPDATE backup_jobs SET scheduled_through = ? WHERE id = ?")
                        .bind(now)
                        .bind(&id)
                        .execute(&self.db)
                        .await?;
                    let trigger = if startup { "startup" } else { "schedule" };
                    match self.start_run(&id, trigger).await {
                        Ok(run) => {
                            tracing::info!(job = %name, run = %run, trigger, "backup started")
                        }
                        Err(e) => {
                            tracing::warn!(job = %name, error = %e, "scheduled backup skipped")
                        }
                    }
                }
            }
            let drill: Option<String> = row.get("drill");
            let drill =
                drill.and_then(|d| serde_json::from_str::<app::api::backups::DrillSpec>(&d).ok());
            if let Some(s) =
                drill.and_then(|d| super::schedule::Schedule::new(&d.schedule, &timezone).ok())
            {
                let through: i64 = row.get("drill_through");
                if s.next_after(through).is_some_and(|due| due <= now) {
                    sqlx::query("UPDATE backup_jobs SET drill_through = ? WHERE id = ?")
                        .bind(now)
                        .bind(&id)
                        .execute(&self.db)
                        .await?;
                    match self.start_drill(&id).await {
                        Ok(drill) => {
                            tracing::info!(job = %name, drill = %drill, "restore drill started")
                        }
                        Err(e) => {
                            tracing::warn!(job = %name, error = %e, "scheduled drill skipped")
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
