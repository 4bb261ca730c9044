//! Backups: jobs (what to back up, where, when, how long to keep), their
//! runs, restores and restore drills. Validation of what the admin types
//! lives here so the browser checks a field with the code the server uses
//! to refuse it.

use serde::{Deserialize, Serialize};

/// What a job backs up. Tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// A PostgreSQL database reached over the network:
    /// `postgres://user:password@host:port/database`. The password is
    /// sealed; answers show it as `********`, and sending that mask back
    /// keeps the stored one.
    Postgres { dsn: String },
    /// A PostgreSQL server running inside a berth app; `pg_dump` runs in
    /// its container through the Docker exec API as `user` (default
    /// `postgres`).
    PostgresApp {
        app: String,
        database: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// A Docker volume, as a tar archive.
    Volume { volume: String },
    /// berth itself: a consistent copy of its store and settings. Sealed
    /// values stay sealed; restoring needs the same master key.
    Berth,
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Postgres { .. } => "postgres",
            Source::PostgresApp { .. } => "postgres_app",
            Source::Volume { .. } => "volume",
            Source::Berth => "berth",
        }
    }

    /// The file name's middle part for this source's archives.
    pub fn extension(&self) -> &'static str {
        match self {
            Source::Postgres { .. } | Source::PostgresApp { .. } => "dump",
            Source::Volume { .. } | Source::Berth => "tar",
        }
    }
}

/// The mask that stands for a stored secret in answers; sent back
/// unchanged, it keeps the stored value.
pub const MASK: &str = "********";

/// Where a job's archives go. Tagged by `kind`. Secret fields (`password`,
/// `private_key`, `secret_key`) are sealed and never returned: answers
/// carry `null` there, and a `PUT` that leaves them `null` keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// A directory on this host; by default `DATA_DIR/backups`.
    Local {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    /// A directory on another host over SFTP.
    Sftp {
        host: String,
        #[serde(default = "default_ssh_port")]
        port: u16,
        user: String,
        path: String,
        #[serde(default)]
        private_key: Option<String>,
        #[serde(default)]
        password: Option<String>,
        /// The server's key, `ssh-ed25519 AAAA…`. Left empty, berth pins
        /// the key the server presents on first contact.
        #[serde(default)]
        host_key: Option<String>,
    },
    /// An S3-compatible bucket (AWS, MinIO, Garage, …), path-style.
    S3 {
        endpoint: String,
        bucket: String,
        #[serde(default = "default_region")]
        region: String,
        access_key: String,
        #[serde(default)]
        secret_key: Option<String>,
        #[serde(default)]
        prefix: Option<String>,
    },
}

fn default_ssh_port() -> u16 {
    22
}

fn default_region() -> String {
    "us-east-1".into()
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Local { .. } => "local",
            Target::Sftp { .. } => "sftp",
            Target::S3 { .. } => "s3",
        }
    }
}

/// How many archives a job keeps. An archive is kept when any rule keeps
/// it: the `keep_last` newest, plus the newest of each of the last `daily`
/// days, `weekly` ISO weeks and `monthly` months (in the job's time
/// zone). The newest verified archive is never deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default)]
    pub keep_last: u32,
    #[serde(default)]
    pub daily: u32,
    #[serde(default)]
    pub weekly: u32,
    #[serde(default)]
    pub monthly: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: 3,
            daily: 7,
            weekly: 4,
            monthly: 6,
        }
    }
}

/// A restore drill: on its own schedule, berth restores the newest archive
/// into a scratch database (or volume), runs the checks and drops it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DrillSpec {
    /// Cron expression (5 fields), in the job's time zone.
    pub schedule: String,
    /// For databases: a query run in the scratch database whose first
    /// column of the first row must equal `expected`.
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub expected: Option<String>,
}

/// `POST /backups/jobs` and `PUT /backups/jobs/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JobInput {
    /// 1–63 characters: lower-case letters, digits and `-`.
    pub name: String,
    pub source: Source,
    pub target: Target,
    /// Cron expression (5 fields: minute hour day month weekday); `null`
    /// for a job that runs only when asked.
    #[serde(default)]
    pub schedule: Option<String>,
    /// IANA time zone the schedule is read in, e.g. `Europe/Berlin`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default)]
    pub retention: Retention,
    /// zstd level, 1–19.
    #[serde(default = "default_level")]
    pub compression_level: i32,
    /// Encrypt to the backup key (age, X25519). On unless turned off.
    #[serde(default = "yes")]
    pub encrypt: bool,
    #[serde(default)]
    pub drill: Option<DrillSpec>,
    /// A paused job keeps its archives but runs only when asked.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn default_timezone() -> String {
    "UTC".into()
}

fn default_level() -> i32 {
    3
}

fn yes() -> bool {
    true
}

/// A job as berth keeps it, with what the panel shows beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Job {
    pub id: String,
    pub name: String,
    /// Secrets masked (see `Source` and `Target`).
    pub source: Source,
    pub target: Target,
    pub schedule: Option<String>,
    pub timezone: String,
    pub retention: Retention,
    pub compression_level: i32,
    pub encrypt: bool,
    pub drill: Option<DrillSpec>,
    pub enabled: bool,
    /// The next five scheduled starts (RFC 3339, UTC).
    pub next_runs: Vec<String>,
    /// The next scheduled drill, if any.
    pub next_drill: Option<String>,
    /// The run in progress, if any.
    pub running: Option<String>,
    pub last_run: Option<Run>,
    /// The newest drill that passed.
    pub last_verified_restore: Option<Drill>,
    /// The newest drill, passed or not.
    pub last_drill: Option<Drill>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct JobList {
    pub jobs: Vec<Job>,
    /// The public half of the backup key (`age1…`), if one was made.
    pub recipient: Option<String>,
}

/// One backup attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Run {
    pub id: String,
    pub job_id: String,
    pub job_name: String,
    /// `schedule`, `manual` or `startup` (missed while berth was down).
    pub trigger: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    /// Bytes the source produced.
    pub source_bytes: i64,
    /// Bytes stored at the target (compressed, encrypted).
    pub size: i64,
    pub sha256: Option<String>,
    /// The archive's name at the target.
    pub object: Option<String>,
    pub error: Option<String>,
    /// What happened, a line per step.
    pub log: Vec<String>,
    /// The archive was read back (size; ETag on S3) after upload.
    pub verified: bool,
    /// Deleted by retention at this time.
    pub pruned_at: Option<String>,
    pub manifest: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RunList {
    pub runs: Vec<Run>,
}

/// `POST /backups/jobs/{id}/run` and `/drill`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Started {
    pub id: String,
}

/// What retention would do now.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PrunePreview {
    pub keep: Vec<PruneEntry>,
    pub delete: Vec<PruneEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PruneEntry {
    pub run_id: String,
    pub started_at: String,
    pub size: i64,
    /// Why it is kept: `last`, `daily`, `weekly`, `monthly`,
    /// `newest_verified`, `newest_drilled`, `in_use` (a restore or drill
    /// reads it), `policy_keeps_all`.
    pub reasons: Vec<String>,
}

/// `POST /backups/runs/{id}/restore`.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// `original` or `new`.
    pub to: String,
    /// With `to: new`: the database (postgres kinds) or volume to create.
    /// It must not exist yet.
    #[serde(default)]
    pub name: Option<String>,
    /// Must repeat the job's name: restoring over the original replaces
    /// what is there.
    pub confirm: String,
    pub password: String,
    #[serde(default)]
    pub totp_code: Option<String>,
}

impl std::fmt::Debug for RestoreRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreRequest")
            .field("to", &self.to)
            .field("name", &self.name)
            .field("confirm", &self.confirm)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Restore {
    pub id: String,
    pub run_id: String,
    pub job_id: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// What was restored into: a database, a volume or a directory.
    pub destination: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Archive bytes read so far.
    pub bytes: i64,
    /// The archive's stored size, for a progress bar.
    pub total: i64,
    pub error: Option<String>,
    pub log: Vec<String>,
}

/// One restore drill.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Drill {
    pub id: String,
    pub job_id: String,
    pub run_id: Option<String>,
    /// `running`, `passed` or `failed`.
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub checks: Vec<DrillCheck>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DrillCheck {
    /// `archive`, `restore`, `rows`, `query`, `files`, `settings`, `integrity`.
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DrillList {
    pub drills: Vec<Drill>,
}

/// `GET /backups/schedule-preview?schedule=…&timezone=…`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SchedulePreview {
    /// The next five starts, RFC 3339 in UTC.
    pub next: Vec<String>,
    /// The same in the schedule's time zone, `YYYY-MM-DD HH:MM`.
    pub local: Vec<String>,
}

/// The backup encryption key. `identity` (`AGE-SECRET-KEY-1…`) is present
/// only in the answer that made the key: keep it somewhere safe; with it,
/// `age -d -i key.txt` opens an archive without berth.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct BackupKey {
    pub recipient: Option<String>,
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// Job names: they become directory names at the target.
pub fn validate_job_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err("a name has 1 to 63 characters".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || name.starts_with('-')
    {
        return Err(
            "a name has lower-case letters, digits and '-' only, and starts with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

/// Database, role and volume names berth passes on: no quoting games.
pub fn validate_identifier(value: &str, what: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > 63 {
        return Err(format!("a {what} name has 1 to 63 characters"));
    }
    let ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !value.starts_with(['-', '.']);
    if !ok {
        return Err(format!(
            "a {what} name has letters, digits, '_', '-' and '.' only"
        ));
    }
    Ok(())
}
