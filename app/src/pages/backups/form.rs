//! The job form's fields as the admin types them, and the `JobInput` they
//! stand for. Nothing here refuses input silently: what is wrong comes back
//! as a `ClientError` naming the field the server would name
//! (`source.volume`, `target.port`, `retention.daily`, …).
//!
//! Stored secrets (SFTP password and private key, S3 secret key) never come
//! back from berth: their fields start empty, and empty means "keep".

use crate::api::backups::{
    validate_identifier, validate_job_name, DrillSpec, Job, JobInput, Retention, Source, Target,
};
use crate::client::ClientError;
use crate::pages::widgets::problem;

pub const SOURCE_KINDS: [&str; 4] = ["postgres", "postgres_app", "volume", "berth"];
pub const TARGET_KINDS: [&str; 3] = ["local", "sftp", "s3"];

#[derive(Debug, Clone, PartialEq)]
pub struct JobForm {
    pub name: String,
    /// One of `SOURCE_KINDS`.
    pub source_kind: String,
    pub dsn: String,
    pub app: String,
    pub database: String,
    pub db_user: String,
    pub volume: String,
    /// One of `TARGET_KINDS`.
    pub target_kind: String,
    pub local_path: String,
    pub sftp_host: String,
    pub sftp_port: String,
    pub sftp_user: String,
    pub sftp_path: String,
    pub sftp_private_key: String,
    pub sftp_password: String,
    pub sftp_host_key: String,
    pub s3_endpoint: String,
    pub s3_bucket: String,
    pub s3_region: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
    pub s3_prefix: String,
    /// Empty: the job runs only when asked.
    pub schedule: String,
    pub timezone: String,
    pub keep_last: String,
    pub daily: String,
    pub weekly: String,
    pub monthly: String,
    pub compression_level: String,
    pub encrypt: bool,
    /// Empty: no drills.
    pub drill_schedule: String,
    pub drill_query: String,
    pub drill_expected: String,
    pub enabled: bool,
}

impl Default for JobForm {
    /// A new job: berth itself to `DATA_DIR/backups` every night at 03:00
    /// UTC, drilled every Sunday, with the API's retention and level.
    fn default() -> Self {
        let r = Retention::default();
        JobForm {
            name: String::new(),
            source_kind: "berth".into(),
            dsn: String::new(),
            app: String::new(),
            database: String::new(),
            db_user: String::new(),
            volume: String::new(),
            target_kind: "local".into(),
            local_path: String::new(),
            sftp_host: String::new(),
            sftp_port: "22".into(),
            sftp_user: String::new(),
            sftp_path: String::new(),
            sftp_private_key: String::new(),
            sftp_password: String::new(),
            sftp_host_key: String::new(),
            s3_endpoint: String::new(),
            s3_bucket: String::new(),
            s3_region: "us-east-1".into(),
            s3_access_key: String::new(),
            s3_secret_key: String::new(),
            s3_prefix: String::new(),
            schedule: "0 3 * * *".into(),
            timezone: "UTC".into(),
            keep_last: r.keep_last.to_string(),
            daily: r.daily.to_string(),
            weekly: r.weekly.to_string(),
            monthly: r.monthly.to_string(),
            compression_level: "3".into(),
            encrypt: true,
            drill_schedule: "30 4 * * 0".into(),
            drill_query: String::new(),
            drill_expected: String::new(),
            enabled: true,
        }
    }
}

/// The form for an existing job; its secrets stay empty (kept).
pub fn from_job(job: &Job) -> JobForm {
    let mut f = JobForm {
        name: job.name.clone(),
        source_kind: job.source.kind().into(),
        target_kind: job.target.kind().into(),
        schedule: job.schedule.clone().unwrap_or_default(),
        timezone: job.timezone.clone(),
        keep_last: job.retention.keep_last.to_string(),
        daily: job.retention.daily.to_string(),
        weekly: job.retention.weekly.to_string(),
        monthly: job.retention.monthly.to_string(),
        compression_level: job.compression_level.to_string(),
        encrypt: job.encrypt,
        drill_schedule: String::new(),
        enabled: job.enabled,
        ..JobForm::default()
    };
    match &job.source {
        // Sent back as it came (password masked), the DSN keeps its password.
        Source::Postgres { dsn } => f.dsn = dsn.clone(),
        Source::PostgresApp {
            app,
            database,
            user,
        } => {
            f.app = app.clone();
            f.database = database.clone();
            f.db_user = user.clone().unwrap_or_default();
        }
        Source::Volume { volume } => f.volume = volume.clone(),
        Source::Berth => {}
    }
    match &job.target {
        Target::Local { path } => f.local_path = path.clone().unwrap_or_default(),
        Target::Sftp {
            host,
            port,
            user,
            path,
            host_key,
            ..
        } => {
            f.sftp_host = host.clone();
            f.sftp_port = port.to_string();
            f.sftp_user = user.clone();
            f.sftp_path = path.clone();
            f.sftp_host_key = host_key.clone().unwrap_or_default();
        }
        Target::S3 {
            endpoint,
            bucket,
            region,
            access_key,
            prefix,
            ..
        } => {
            f.s3_endpoint = endpoint.clone();
            f.s3_bucket = bucket.clone();
            f.s3_region = region.clone();
            f.s3_access_key = access_key.clone();
            f.s3_prefix = prefix.clone().unwrap_or_default();
        }
    }
    if let Some(d) = &job.drill {
        f.drill_schedule = d.schedule.clone();
        f.drill_query = d.query.clone().unwrap_or_default();
        f.drill_expected = d.expected.clone().unwrap_or_default();
    }
    f
}

/// A trimmed value, or `None` when blank.
fn optional(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// A secret as typed (not trimmed: spaces may belong to it); blank keeps
/// the stored one.
fn secret(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_string())
}

fn required(field: &str, value: &str, what: &str) -> Result<String, ClientError> {
    optional(value).ok_or_else(|| problem(field, format!("enter {what}")))
}

fn identifier(field: &str, value: &str, what: &str) -> Result<String, ClientError> {
    let value = value.trim();
    validate_identifier(value, what).map_err(|m| problem(field, m))?;
    Ok(value.to_string())
}

fn count(field: &str, value: &str) -> Result<u32, ClientError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(0);
    }
    value
        .parse()
        .map_err(|_| problem(field, "a whole number, 0 or more"))
}

pub fn to_input(f: &JobForm) -> Result<JobInput, ClientError> {
    let name = f.name.trim().to_string();
    validate_job_name(&name).map_err(|m| problem("name", m))?;
    let source = match f.source_kind.as_str() {
        "postgres" => Source::Postgres {
            dsn: required(
                "source.dsn",
                &f.dsn,
                "the address, postgres://user:password@host:5432/database",
            )?,
        },
        "postgres_app" => Source::PostgresApp {
            app: identifier("source.app", &f.app, "app")?,
            database: identifier("source.database", &f.database, "database")?,
            user: match optional(&f.db_user) {
                Some(u) => Some(identifier("source.user", &u, "role")?),
                None => None,
            },
        },
        "volume" => Source::Volume {
            volume: identifier("source.volume", &f.volume, "volume")?,
        },
        _ => Source::Berth,
    };
    let target = match f.target_kind.as_str() {
        "sftp" => Target::Sftp {
            host: required("target.host", &f.sftp_host, "the host")?,
            port: f
                .sftp_port
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| problem("target.port", "the port must be 1..=65535"))?,
            user: required("target.user", &f.sftp_user, "the user")?,
            path: required("target.path", &f.sftp_path, "the directory")?,
            private_key: secret(&f.sftp_private_key),
            password: secret(&f.sftp_password),
            host_key: optional(&f.sftp_host_key),
        },
        "s3" => Target::S3 {
            endpoint: required("target.endpoint", &f.s3_endpoint, "the endpoint URL")?,
            bucket: required("target.bucket", &f.s3_bucket, "the bucket")?,
            region: optional(&f.s3_region).unwrap_or_else(|| "us-east-1".into()),
            access_key: required("target.access_key", &f.s3_access_key, "the access key")?,
            secret_key: secret(&f.s3_secret_key),
            prefix: optional(&f.s3_prefix),
        },
        _ => Target::Local {
            path: optional(&f.local_path),
        },
    };
    let compression_level = f
        .compression_level
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|l| (1..=19).contains(l))
        .ok_or_else(|| problem("compression_level", "a level from 1 to 19"))?;
    let drill = match optional(&f.drill_schedule) {
        Some(schedule) => Some(DrillSpec {
            schedule,
            query: optional(&f.drill_query),
            expected: optional(&f.drill_expected),
        }),
        None if optional(&f.drill_query).is_some() => {
            return Err(problem(
                "drill.schedule",
                "a drill query needs a drill schedule",
            ))
        }
        None => None,
    };
    Ok(JobInput {
        name,
        source,
        target,
        schedule: optional(&f.schedule),
        timezone: optional(&f.timezone).unwrap_or_else(|| "UTC".into()),
        retention: Retention {
            keep_last: count("retention.keep_last", &f.keep_last)?,
            daily: count("retention.daily", &f.daily)?,
            weekly: count("retention.weekly", &f.weekly)?,
            monthly: count("retention.monthly", &f.monthly)?,
        },
        compression_level,
        encrypt: f.encrypt,
        drill,
        enabled: f.enabled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(source: Source, target: Target) -> Job {
        Job {
            id: "j1".into(),
            name: "nightly".into(),
            source,
            target,
            schedule: Some("0 3 * * *".into()),
            timezone: "Europe/Berlin".into(),
            retention: Retention {
                keep_last: 2,
                daily: 5,
                weekly: 0,
                monthly: 1,
            },
            compression_level: 9,
            encrypt: true,
            drill: Some(DrillSpec {
                schedule: "0 5 * * 0".into(),
                query: Some("select count(*) from orders".into()),
                expected: None,
            }),
            enabled: false,
            next_runs: vec![],
            next_drill: None,
            running: None,
            last_run: None,
            last_verified_restore: None,
            last_drill: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn a_new_berth_job_to_the_local_directory_needs_only_a_name() {
        let form = JobForm {
            name: "berth-self".into(),
            ..JobForm::default()
        };
        let input = to_input(&form).unwrap();
        assert_eq!(input.source, Source::Berth);
        assert_eq!(input.target, Target::Local { path: None });
        assert_eq!(input.schedule.as_deref(), Some("0 3 * * *"));
        assert_eq!(input.retention, Retention::default());
        assert!(input.encrypt && input.enabled);
        assert_eq!(input.drill.unwrap().query, None);
    }

    #[test]
    fn names_are_checked_with_the_servers_rule() {
        let form = JobForm {
            name: "Nightly Backup".into(),
            ..JobForm::default()
        };
        assert_eq!(to_input(&form).unwrap_err().field.as_deref(), Some("name"));
    }

    #[test]
    fn an_edited_job_round_trips_and_keeps_its_secrets() {
        let stored = job(
            Source::Postgres {
                dsn: format!("postgres://shop:{}@db:5432/shop", crate::api::backups::MASK),
            },
            Target::Sftp {
                host: "backup.example.com".into(),
                port: 2222,
                user: "berth".into(),
                path: "/srv/backups".into(),
                private_key: None,
                password: None,
                host_key: Some("ssh-ed25519 AAAA".into()),
            },
        );
        let form = from_job(&stored);
        assert!(form.sftp_private_key.is_empty() && form.sftp_password.is_empty());
        let input = to_input(&form).unwrap();
        assert_eq!(input.source, stored.source);
        assert_eq!(input.target, stored.target);
        assert_eq!(input.retention, stored.retention);
        assert_eq!(input.drill, stored.drill);
        assert_eq!(input.timezone, "Europe/Berlin");
        assert_eq!(input.compression_level, 9);
        assert!(!input.enabled);
    }

    #[test]
    fn a_typed_secret_replaces_the_stored_one() {
        let stored = job(
            Source::Berth,
            Target::S3 {
                endpoint: "https://s3.example.com".into(),
                bucket: "b".into(),
                region: "eu-central-1".into(),
                access_key: "AK".into(),
                secret_key: None,
                prefix: None,
            },
        );
        let form = JobForm {
            s3_secret_key: "new secret".into(),
            ..from_job(&stored)
        };
        match to_input(&form).unwrap().target {
            Target::S3 { secret_key, .. } => assert_eq!(secret_key.as_deref(), Some("new secret")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_fields_are_named_as_the_server_names_them() {
        let base = JobForm {
            name: "db".into(),
            ..JobForm::default()
        };
        let field = |f: JobForm| to_input(&f).unwrap_err().field.unwrap();
        assert_eq!(
            field(JobForm {
                source_kind: "volume".into(),
                volume: "bad name!".into(),
                ..base.clone()
            }),
            "source.volume"
        );
        assert_eq!(
            field(JobForm {
                target_kind: "sftp".into(),
                sftp_host: "h".into(),
                sftp_port: "0".into(),
                ..base.clone()
            }),
            "target.port"
        );
        assert_eq!(
            field(JobForm {
                daily: "-1".into(),
                ..base.clone()
            }),
            "retention.daily"
        );
        assert_eq!(
            field(JobForm {
                compression_level: "22".into(),
                ..base.clone()
            }),
            "compression_level"
        );
        assert_eq!(
            field(JobForm {
                drill_schedule: " ".into(),
                drill_query: "select 1".into(),
                ..base
            }),
            "drill.schedule"
        );
    }

    #[test]
    fn blank_schedule_means_on_demand_and_blank_user_means_default() {
        let form = JobForm {
            name: "shop".into(),
            source_kind: "postgres_app".into(),
            app: "shop".into(),
            database: "orders".into(),
            schedule: "  ".into(),
            drill_schedule: String::new(),
            ..JobForm::default()
        };
        let input = to_input(&form).unwrap();
        assert_eq!(input.schedule, None);
        assert_eq!(input.drill, None);
        assert_eq!(
            input.source,
            Source::PostgresApp {
                app: "shop".into(),
                database: "orders".into(),
                user: None
            }
        );
    }
}
