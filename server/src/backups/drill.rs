//! Restore drills: the newest archive is restored into scratch space and
//! checked, so "we have backups" is a fact, not a hope. The scratch copy is
//! removed afterwards (and at start-up, if berth died during a drill).
//!
//! Checks by kind:
//! - databases: `archive` (pg_restore lists the archive), `restore` (into a
//!   scratch database, one transaction), `rows` (every table the archive
//!   holds data for exists, with exact row counts), `query` (the admin's
//!   query returns the expected value);
//! - volumes: `archive` (the tar reads to its end), `restore` (into a
//!   scratch volume), `files` (the scratch volume holds the same files and
//!   bytes as the archive);
//! - berth: `archive`, `integrity` (SQLite's integrity check on the
//!   restored store), `rows` (an admin and the schema's migrations).

use std::sync::Arc;

use app::api::backups::{DrillCheck, Source};
use serde_json::json;
use tokio_util::io::SyncIoBridge;

use super::jobs::StoredJob;
use super::restore::{restore_into, Archive, Destination};
use super::target::Reader;
use super::{sources, Backups};
use crate::http::error::ApiError;

/// Names of drill scratch databases and volumes. A name says which it is,
/// so what a killed berth left is removed even if the job's source has
/// been edited since.
const SCRATCH_DATABASE: &str = "berth_drill_";
const SCRATCH_VOLUME: &str = "berth-drill-";

/// A scratch database or volume to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scratch<'a> {
    Database(&'a str),
    Volume(&'a str),
}

impl<'a> Scratch<'a> {
    /// What a drill's scratch name is.
    pub(crate) fn of_drill(name: &'a str) -> Option<Scratch<'a>> {
        if name.starts_with(SCRATCH_DATABASE) {
            Some(Scratch::Database(name))
        } else if name.starts_with(SCRATCH_VOLUME) {
            Some(Scratch::Volume(name))
        } else {
            None
        }
    }
}

fn check(name: &str, passed: bool, detail: impl Into<String>) -> DrillCheck {
    DrillCheck {
        name: name.to_string(),
        passed,
        detail: detail.into(),
    }
}

impl Backups {
    /// Records a drill of the job's newest archive and starts it. 409 when
    /// a drill of this job is going.
    pub async fn start_drill(self: &Arc<Self>, job_id: &str) -> Result<String, ApiError> {
        let job = self.job(job_id).await?;
        let newest: Option<String> = sqlx::query_scalar(
            "SELECT id FROM backup_runs WHERE job_id = ? AND target = ? AND status = 'succeeded' \
             AND pruned_at IS NULL ORDER BY started_at DESC, rowid DESC LIMIT 1",
        )
        .bind(&job.id)
        .bind(super::run::describe_target(&job))
        .fetch_optional(&self.db)
        .await?;
        let id = uuid::Uuid::new_v4().to_string();
        let short = &id[..8];
        let scratch = match &job.source {
            Source::Postgres { .. } | Source::PostgresApp { .. } => {
                Some(format!("{SCRATCH_DATABASE}{short}"))
            }
            Source::Volume { .. } => Some(format!("{SCRATCH_VOLUME}{short}")),
            Source::Berth => None,
        };
        let inserted = sqlx::query(
            "INSERT INTO backup_drills (id, job_id, run_id, status, scratch, started_at) VALUES (?, ?, ?, 'running', ?, ?)",
        )
        .bind(&id)
        .bind(&job.id)
        .bind(&newest)
        .bind(&scratch)
        .bind(self.clock.now())
        .execute(&self.db)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if crate::store::is_unique_violation(&e) => {
                return Err(ApiError::Conflict(format!(
                    "a drill of `{}` is already going",
                    job.name
                )))
            }
            Err(e) => return Err(e.into()),
        }
        let this = self.clone();
        let drill_id = id.clone();
        tokio::spawn(async move {
            let (checks, error) = match newest {
                None => (
                    Vec::new(),
                    Some("there is no archive to drill yet".to_string()),
                ),
                Some(run) => match this.drill(&run, scratch.as_deref()).await {
                    Ok(checks) => (checks, None),
                    Err(e) => (Vec::new(), Some(format!("{e:#}"))),
                },
            };
            this.finish_drill(&job, &drill_id, checks, error).await;
        });
        Ok(id)
    }

    async fn finish_drill(
        &self,
        job: &StoredJob,
        id: &str,
        checks: Vec<DrillCheck>,
        error: Option<String>,
    ) {
        let passed = error.is_none() && !checks.is_empty() && checks.iter().all(|c| c.passed);
        let _ = sqlx::query("UPDATE backup_drills SET status = ?, checks = ?, error = ?, finished_at = ? WHERE id = ?")
            .bind(if passed { "passed" } else { "failed" })
            .bind(serde_json::to_string(&checks).expect("serialisable"))
            .bind(&error)
            .bind(self.clock.now())
            .bind(id)
            .execute(&self.db)
            .await;
        if !passed {
            let failed: Vec<String> = checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .chain(error.clone())
                .collect();
            self.notify(
                "backup.drill_failed",
                format!("Restore drill of {} failed", job.name),
                format!(
                    "berth could not prove that the newest archive of {} restores: {}",
                    job.name,
                    failed.join("; ")
                ),
                json!({ "job": job.name, "drill": id, "failures": failed }),
            )
            .await;
        }
    }

    async fn drill(&self, run_id: &str, scratch: Option<&str>) -> anyhow::Result<Vec<DrillCheck>> {
        let (job, archive) = self
            .archive(run_id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let job = &job;
        let result = match &job.source {
            Source::Postgres { .. } | Source::PostgresApp { .. } => {
                let scratch = scratch.expect("database drills have a scratch name");
                self.drill_database(job, &archive, scratch).await
            }
            Source::Volume { .. } => {
                let scratch = scratch.expect("volume drills have a scratch name");
                self.drill_volume(job, &archive, scratch).await
            }
            Source::Berth => self.drill_berth(job, &archive).await,
        };
        if let Some(scratch) = scratch.and_then(Scratch::of_drill) {
            self.drop_scratch(job, scratch).await;
        }
        result
    }

    async fn plain(&self, job: &StoredJob, archive: &Archive) -> anyhow::Result<Reader> {
        self.open_archive(job, archive, Arc::default()).await
    }

    async fn drill_database(
        &self,
        job: &StoredJob,
        archive: &Archive,
        scratch: &str,
    ) -> anyhow::Result<Vec<DrillCheck>> {
        let (pg, _) = self.ctx.pg(job).await?;
        let mut checks = Vec::new();
        let listing = match pg.list(self.plain(job, archive).await?).await {
            Ok(l) => l,
            Err(e) => {
                checks.push(check("archive", false, format!("{e:#}")));
                return Ok(checks);
            }
        };
        // `123; 0 16390 TABLE DATA public orders app` → public.orders
        let tables: Vec<String> = listing
            .lines()
            .filter(|l| !l.starts_with(';'))
            .filter_map(|l| {
                let rest = l.split_once(" TABLE DATA ")?.1;
                let mut words = rest.split_whitespace();
                Some(format!("{}.{}", words.next()?, words.next()?))
            })
            .collect();
        let entries = listing
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .count();
        checks.push(check(
            "archive",
            entries > 0,
            format!("{entries} entries, data for {} tables", tables.len()),
        ));

        pg.create(scratch).await?;
        if let Err(e) = pg
            .restore(scratch, false, self.plain(job, archive).await?)
            .await
        {
            checks.push(check("restore", false, format!("{e:#}")));
            return Ok(checks);
        }
        checks.push(check(
            "restore",
            true,
            format!("restored into scratch database {scratch}"),
        ));

        let counts = pg.row_counts(scratch).await?;
        let missing: Vec<&String> = tables
            .iter()
            .filter(|t| !counts.iter().any(|(name, _)| name == *t))
            .collect();
        let rows: i64 = counts.iter().map(|(_, n)| n).sum();
        let detail = if missing.is_empty() {
            let shown: Vec<String> = counts
                .iter()
                .take(20)
                .map(|(t, n)| format!("{t}={n}"))
                .collect();
            format!(
                "{} tables, {rows} rows ({})",
                counts.len(),
                shown.join(", ")
            )
        } else {
            format!(
                "tables missing after restore: {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        checks.push(check("rows", missing.is_empty(), detail));

        if let Some(drill) = &job.drill {
            if let (Some(query), Some(expected)) = (&drill.query, &drill.expected) {
                match pg.query(scratch, query).await {
                    Ok(out) => {
                        let got = out.lines().next().unwrap_or("").trim().to_string();
                        let passed = got == *expected;
                        checks.push(check(
                            "query",
                            passed,
                            format!("returned `{got}`, expected `{expected}`"),
                        ));
                    }
                    Err(e) => checks.push(check("query", false, format!("{e:#}"))),
                }
            }
        }
        Ok(checks)
    }

    async fn drill_volume(
        &self,
        job: &StoredJob,
        archive: &Archive,
        scratch: &str,
    ) -> anyhow::Result<Vec<DrillCheck>> {
        let mut checks = Vec::new();
        let expected = match tar_summary(self.plain(job, archive).await?).await {
            Ok(s) => s,
            Err(e) => {
                checks.push(check("archive", false, format!("{e:#}")));
                return Ok(checks);
            }
        };
        checks.push(check(
            "archive",
            expected.0 > 0,
            format!("{} files, {} bytes", expected.0, expected.1),
        ));
        let destination = Destination::Volume {
            name: scratch.to_string(),
            original: false,
            staging: None,
        };
        if let Err(e) = restore_into(self, job, &destination, self.plain(job, archive).await?).await
        {
            checks.push(check("restore", false, format!("{e:#}")));
            return Ok(checks);
        }
        checks.push(check(
            "restore",
            true,
            format!("restored into scratch volume {scratch}"),
        ));
        crate::fault::pause_point("backup.drill.restored").await;
        let docker = self.ctx.docker()?;
        let got = tar_summary(docker.volume_tar(scratch).await?).await?;
        checks.push(check(
            "files",
            got == expected,
            format!(
                "{} files, {} bytes in the scratch volume (archive: {} files, {} bytes)",
                got.0, got.1, expected.0, expected.1
            ),
        ));
        Ok(checks)
    }

    async fn drill_berth(
        &self,
        job: &StoredJob,
        archive: &Archive,
    ) -> anyhow::Result<Vec<DrillCheck>> {
        let mut checks = Vec::new();
        let dir = self
            .ctx
            .scratch_dir()
            .join(format!("drill-{}", uuid::Uuid::new_v4()));
        let unpacked = sources::unpack_berth(self.plain(job, archive).await?, &dir).await;
        let result = async {
            match unpacked {
                Ok(n) => checks.push(check("archive", true, format!("{n} files"))),
                Err(e) => {
                    checks.push(check("archive", false, format!("{e:#}")));
                    return Ok(());
                }
            }
            // Only archives of a berth started with `--config` have one.
            match tokio::fs::read(dir.join(sources::CONFIG_FILE)).await {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                read => {
                    let parsed = read
                        .map_err(anyhow::Error::from)
                        .and_then(|b| Ok(String::from_utf8(b)?))
                        .and_then(|text| crate::config::parse_file(&text));
                    checks.push(match parsed {
                        Ok(()) => {
                            check("settings", true, format!("{} parses", sources::CONFIG_FILE))
                        }
                        Err(e) => check(
                            "settings",
                            false,
                            format!("{} does not parse: {e:#}", sources::CONFIG_FILE),
                        ),
                    });
                }
            }
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.join(sources::STORE_FILE))
                .read_only(true);
            let pool = sqlx::SqlitePool::connect_with(options).await?;
            let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_one(&pool)
                .await?;
            checks.push(check(
                "integrity",
                integrity == "ok",
                format!("integrity_check: {integrity}"),
            ));
            let admins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM admin")
                .fetch_one(&pool)
                .await
                .unwrap_or(-1);
            let migrations: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
                .fetch_one(&pool)
                .await
                .unwrap_or(-1);
            let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM backup_jobs")
                .fetch_one(&pool)
                .await
                .unwrap_or(-1);
            pool.close().await;
            checks.push(check(
                "rows",
                admins == 1 && migrations > 0,
                format!("{admins} admin, {migrations} migrations, {jobs} backup jobs"),
            ));
            anyhow::Ok(())
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        result?;
        Ok(checks)
    }
}

/// Regular files and their total bytes in a tar stream, read to its end.
async fn tar_summary(input: Reader) -> anyhow::Result<(u64, u64)> {
    let input = SyncIoBridge::new(input);
    tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, u64)> {
        let mut archive = tar::Archive::new(input);
        let (mut files, mut bytes) = (0, 0);
        for entry in archive.entries()? {
            let entry = entry?;
            if entry.header().entry_type().is_file() {
                files += 1;
                bytes += entry.header().size()?;
            }
        }
        // Read past the end-of-archive marker to the stream's real end: a
        // volume's stream removes its helper container only then.
        std::io::copy(&mut archive.into_inner(), &mut std::io::sink())?;
        Ok((files, bytes))
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::Scratch;

    #[test]
    fn a_scratch_name_says_what_to_remove() {
        assert_eq!(
            Scratch::of_drill("berth_drill_0a1b2c3d"),
            Some(Scratch::Database("berth_drill_0a1b2c3d"))
        );
        assert_eq!(
            Scratch::of_drill("berth-drill-0a1b2c3d"),
            Some(Scratch::Volume("berth-drill-0a1b2c3d"))
        );
        // Anything else is not a drill's, and is left alone.
        assert_eq!(Scratch::of_drill("orders"), None);
    }
}
