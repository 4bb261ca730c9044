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

use super::drill::Scratch;
use super::{jobs, sources, Backups};

/// How often the loop looks at the clock when nothing wakes it.
const TICK: Duration = Duration::from_secs(1);

/// Work a killed berth left `running`, already marked failed, still to be
/// cleaned up: (id, job id, what to remove).
#[derive(Debug, Default)]
pub struct Interrupted {
    runs: Vec<(String, String, Option<String>)>,
    restores: Vec<(String, String, Option<String>)>,
    drills: Vec<(String, String, Option<String>)>,
}

const RUN_STOPPED: &str =
    "berth stopped during this run (killed or crashed); nothing of it was kept";
const RESTORE_STOPPED: &str = "berth stopped during this restore";
const DRILL_STOPPED: &str = "berth stopped during this drill";

impl Backups {
    /// Marks what was going when berth stopped as failed. Called before
    /// berth serves, so no new run can be mistaken for an interrupted one;
    /// the slow part (cleaning targets) is `run`'s.
    pub async fn interrupted(&self) -> anyhow::Result<Interrupted> {
        let mut found = Interrupted::default();
        let now = self.clock.now();
        // One statement per table (no read-then-write transaction, which
        // SQLite would refuse to upgrade while another writer is busy).
        for (table, extra, list, message) in [
            ("backup_runs", "object", &mut found.runs, RUN_STOPPED),
            (
                "backup_restores",
                "created",
                &mut found.restores,
                RESTORE_STOPPED,
            ),
            ("backup_drills", "scratch", &mut found.drills, DRILL_STOPPED),
        ] {
            let rows = sqlx::query(&format!(
                "UPDATE {table} SET status = 'failed', error = ?, finished_at = ? \
                 WHERE status = 'running' RETURNING id, job_id, {extra} AS extra"
            ))
            .bind(message)
            .bind(now)
            .fetch_all(&self.db)
            .await?;
            for row in rows {
                list.push((row.get("id"), row.get("job_id"), row.get("extra")));
            }
        }
        // Scratch files and helper containers of the dead process; done
        // here because a new run would use the same places.
        let _ = tokio::fs::remove_dir_all(self.ctx.scratch_dir()).await;
        if let Ok(docker) = self.ctx.docker() {
            if let Err(e) = docker.sweep_helpers().await {
                tracing::debug!(error = %format!("{e:#}"), "no helper containers swept");
            }
        }
        Ok(found)
    }

    /// Cleans up after interrupted work, then runs schedules for the life
    /// of the process.
    pub async fn run(self: Arc<Self>, interrupted: Interrupted) {
        self.clean_up(interrupted).await;
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

    /// Removes what interrupted work left at targets or in scratch space,
    /// and tells the admin.
    async fn clean_up(&self, interrupted: Interrupted) {
        for (id, job_id, object) in interrupted.runs {
            let Ok(job) = jobs::load(&self.db, &self.keys, &job_id).await else {
                continue;
            };
            let mut cleaned = String::from("the target was not reachable to clean up");
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
            super::log_line(
                &self.db,
                "backup_runs",
                &id,
                &format!("failed: {RUN_STOPPED}; {cleaned}"),
            )
            .await;
            self.notify(
                "backup.failed",
                format!("Backup {} was interrupted", job.name),
                format!("{RUN_STOPPED}. It runs again at its next scheduled time."),
                json!({ "job": job.name, "run": id, "error": RUN_STOPPED }),
            )
            .await;
        }
        for (id, job_id, created) in interrupted.restores {
            let Ok(job) = jobs::load(&self.db, &self.keys, &job_id).await else {
                continue;
            };
            // A half-filled new database, volume or directory is not a
            // restore: it goes.
            if let Some(created) = &created {
                self.remove_created(&job, created).await;
            }
            self.notify(
                "backup.restore_failed",
                format!("Restore of {} was interrupted", job.name),
                format!("{RESTORE_STOPPED}; what it had created was removed. Start it again."),
                json!({ "job": job.name, "restore": id, "error": RESTORE_STOPPED }),
            )
            .await;
        }
        for (_, job_id, scratch) in interrupted.drills {
            let Some(scratch) = scratch else { continue };
            if let (Some(scratch), Ok(job)) = (
                Scratch::of_drill(&scratch),
                jobs::load(&self.db, &self.keys, &job_id).await,
            ) {
                self.drop_scratch(&job, scratch).await;
            }
        }
    }

    /// Removes what a restore to something new created (see
    /// `Destination::created`).
    pub(crate) async fn remove_created(&self, job: &jobs::StoredJob, created: &str) {
        match created.split_once(':') {
            Some(("database", name)) => self.drop_scratch(job, Scratch::Database(name)).await,
            Some(("volume", name)) => self.drop_scratch(job, Scratch::Volume(name)).await,
            Some(("directory", path)) => {
                let _ = tokio::fs::remove_dir_all(path).await;
            }
            _ => {}
        }
    }

    /// Drops a drill's scratch database or volume (or a restore's half-made
    /// one). A database is dropped on the job's server, so only while the
    /// job still has one.
    pub(crate) async fn drop_scratch(&self, job: &jobs::StoredJob, scratch: Scratch<'_>) {
        match scratch {
            Scratch::Database(scratch) => match self.ctx.pg(job).await {
                Ok((pg, _)) => {
                    let _ = pg.drop(scratch).await;
                }
                Err(e) => tracing::warn!(
                    database = scratch,
                    error = %format!("{e:#}"),
                    "could not drop a scratch database"
                ),
            },
            Scratch::Volume(scratch) => {
                let Ok(docker) = self.ctx.docker() else {
                    return;
                };
                // A helper container that just finished with the volume
                // may still hold it for a moment.
                for _ in 0..20 {
                    if !docker.volume_exists(scratch).await.unwrap_or(false)
                        || docker.remove_volume(scratch).await.is_ok()
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                tracing::warn!(volume = scratch, "could not remove a scratch volume");
            }
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
            if self
                .claim(
                    &id,
                    schedule.as_deref(),
                    &timezone,
                    Mark::Backup,
                    row.get("scheduled_through"),
                    now,
                )
                .await?
            {
                let trigger = if startup { "startup" } else { "schedule" };
                match self.start_run(&id, trigger).await {
                    Ok(run) => tracing::info!(job = %name, run = %run, trigger, "backup started"),
                    Err(e) => tracing::warn!(job = %name, error = %e, "scheduled backup skipped"),
                }
            }
            let drill: Option<String> = row.get("drill");
            let drill = drill
                .and_then(|d| serde_json::from_str::<app::api::backups::DrillSpec>(&d).ok())
                .map(|d| d.schedule);
            if self
                .claim(
                    &id,
                    drill.as_deref(),
                    &timezone,
                    Mark::Drill,
                    row.get("drill_through"),
                    now,
                )
                .await?
            {
                match self.start_drill(&id).await {
                    Ok(drill) => {
                        tracing::info!(job = %name, drill = %drill, "restore drill started")
                    }
                    Err(e) => tracing::warn!(job = %name, error = %e, "scheduled drill skipped"),
                }
            }
        }
        Ok(())
    }

    /// Whether `schedule` has a start in (`through`, `now`]; if it has,
    /// the job's mark moves to `now` first, so that start is handled once
    /// whatever becomes of it.
    async fn claim(
        &self,
        id: &str,
        schedule: Option<&str>,
        timezone: &str,
        mark: Mark,
        through: i64,
        now: i64,
    ) -> anyhow::Result<bool> {
        let Some(s) = schedule.and_then(|s| super::schedule::Schedule::new(s, timezone).ok())
        else {
            return Ok(false);
        };
        if s.next_after(through).is_none_or(|due| due > now) {
            return Ok(false);
        }
        let query = match mark {
            Mark::Backup => "UPDATE backup_jobs SET scheduled_through = ? WHERE id = ?",
            Mark::Drill => "UPDATE backup_jobs SET drill_through = ? WHERE id = ?",
        };
        sqlx::query(query)
            .bind(now)
            .bind(id)
            .execute(&self.db)
            .await?;
        Ok(true)
    }
}

/// Which of a job's two schedules a start belongs to.
#[derive(Clone, Copy)]
enum Mark {
    Backup,
    Drill,
}
