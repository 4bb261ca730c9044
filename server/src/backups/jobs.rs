//! Jobs as the store keeps them: validated input, secrets split off and
//! sealed, and the way back to what the API shows (secrets masked) and what
//! a run needs (secrets in hand).

use app::api::backups::{
    validate_identifier, validate_job_name, DrillSpec, JobInput, Retention, Source, Target, MASK,
};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use super::pg::Conn;
use super::schedule::Schedule;
use crate::crypto::Keys;
use crate::http::error::ApiError;

pub(crate) fn purpose(id: &str) -> String {
    format!("backup-job:{id}")
}

/// What a job keeps sealed.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsn_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |v: &Option<String>| v.as_ref().map(|_| "<sealed>");
        f.debug_struct("Secrets")
            .field("dsn_password", &shown(&self.dsn_password))
            .field("password", &shown(&self.password))
            .field("private_key", &shown(&self.private_key))
            .field("secret_key", &shown(&self.secret_key))
            .finish()
    }
}

impl Secrets {
    fn is_empty(&self) -> bool {
        self == &Secrets::default()
    }
}

/// A job with its secrets opened: what runs, restores and drills use.
#[derive(Debug, Clone)]
pub struct StoredJob {
    pub id: String,
    pub name: String,
    /// Without secrets.
    pub source: Source,
    pub target: Target,
    pub secrets: Secrets,
    pub schedule: Option<String>,
    pub timezone: String,
    pub retention: Retention,
    pub compression_level: i32,
    pub encrypt: bool,
    pub drill: Option<DrillSpec>,
    pub enabled: bool,
    pub scheduled_through: i64,
    pub drill_through: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl StoredJob {
    /// The PostgreSQL connection of a `postgres` source, password included.
    pub fn conn(&self) -> Option<Conn> {
        match &self.source {
            Source::Postgres { dsn } => {
                let mut conn = Conn::parse(dsn).ok()?;
                conn.password = self.secrets.dsn_password.clone();
                Some(conn)
            }
            _ => None,
        }
    }

    /// The source as the API shows it.
    pub fn public_source(&self) -> Source {
        match &self.source {
            Source::Postgres { dsn } => {
                let shown = match Conn::parse(dsn) {
                    Ok(mut c) => {
                        c.password = self.secrets.dsn_password.as_ref().map(|_| MASK.to_string());
                        c.masked()
                    }
                    Err(_) => dsn.clone(),
                };
                Source::Postgres { dsn: shown }
            }
            other => other.clone(),
        }
    }

    pub fn timezone(&self) -> jiff::tz::TimeZone {
        super::schedule::zone(&self.timezone).unwrap_or(jiff::tz::TimeZone::UTC)
    }

    pub fn schedule(&self) -> Option<Schedule> {
        Schedule::new(self.schedule.as_deref()?, &self.timezone).ok()
    }

    pub fn drill_schedule(&self) -> Option<Schedule> {
        Schedule::new(&self.drill.as_ref()?.schedule, &self.timezone).ok()
    }
}

/// A validated job ready to store.
pub struct Prepared {
    pub input: JobInput,
    pub secrets: Secrets,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(field, message)
}

/// Checks every field and splits the secrets off. On update, a secret left
/// out (or sent back masked) keeps the stored one as long as it still
/// belongs to the same kind of source or target.
pub fn prepare(mut input: JobInput, existing: Option<&StoredJob>) -> Result<Prepared, ApiError> {
    validate_job_name(&input.name).map_err(|e| invalid("name", e))?;
    let old = existing.map(|j| &j.secrets);
    let mut secrets = Secrets::default();

    match &mut input.source {
        Source::Postgres { dsn } => {
            let mut conn = Conn::parse(dsn).map_err(|e| invalid("source.dsn", e))?;
            let password = match conn.password.take() {
                Some(p) if p == MASK => {
                    // The stored password goes only to the server and role
                    // it was given for: a changed host would receive it.
                    let same_server = existing
                        .and_then(|j| j.conn())
                        .is_some_and(|c| c.same_server(&conn));
                    let kept = same_server.then(|| old?.dsn_password.clone()).flatten();
                    Some(kept.ok_or_else(|| {
                        invalid(
                            "source.dsn",
                            "there is no stored password for this server and user: give the password",
                        )
                    })?)
                }
                other => other,
            };
            secrets.dsn_password = password;
            *dsn = conn.without_password();
        }
        Source::PostgresApp {
            app,
            database,
            user,
        } => {
            validate_identifier(app, "app").map_err(|e| invalid("source.app", e))?;
            validate_identifier(database, "database").map_err(|e| invalid("source.database", e))?;
            if let Some(u) = user {
                validate_identifier(u, "role").map_err(|e| invalid("source.user", e))?;
            }
        }
        Source::Volume { volume } => {
            validate_identifier(volume, "volume").map_err(|e| invalid("source.volume", e))?;
        }
        Source::Berth => {}
    }

    // A stored credential is kept only for the same server and account: a
    // changed host must not receive the old password.
    let same_place = existing.is_some_and(|j| same_place(&j.target, &input.target));
    let keep = |new: &mut Option<String>, stored: Option<&String>| match new.as_deref() {
        None | Some("") | Some(MASK) if same_place => stored.cloned(),
        None | Some("") | Some(MASK) => None,
        Some(_) => new.take(),
    };
    match &mut input.target {
        Target::Local { path } => {
            if let Some(p) = path.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
                if !p.starts_with('/') || p.split('/').any(|s| s == "..") || p.contains('\0') {
                    return Err(invalid(
                        "target.path",
                        "an absolute directory path without `..`",
                    ));
                }
                *path = Some(p.trim_end_matches('/').to_string()).filter(|p| !p.is_empty());
                if path.is_none() {
                    return Err(invalid("target.path", "not the root directory"));
                }
            } else {
                *path = None;
            }
        }
        Target::Sftp {
            host,
            port,
            user,
            path,
            private_key,
            password,
            host_key,
        } => {
            check_host(host).map_err(|e| invalid("target.host", e))?;
            if *port == 0 {
                return Err(invalid("target.port", "a port from 1 to 65535"));
            }
            if user.is_empty()
                || user.len() > 64
                || user.chars().any(|c| c.is_whitespace() || c == '@')
            {
                return Err(invalid("target.user", "a user name without spaces or `@`"));
            }
            if path.trim().is_empty() || path.contains('\0') || path.split('/').any(|s| s == "..") {
                return Err(invalid(
                    "target.path",
                    "a directory on the server, without `..`",
                ));
            }
            secrets.private_key = keep(private_key, old.and_then(|s| s.private_key.as_ref()));
            secrets.password = keep(password, old.and_then(|s| s.password.as_ref()));
            if let Some(k) = &secrets.private_key {
                if !k.trim_start().starts_with("-----BEGIN") {
                    return Err(invalid(
                        "target.private_key",
                        "an OpenSSH private key (-----BEGIN OPENSSH PRIVATE KEY-----), unencrypted",
                    ));
                }
            }
            if secrets.private_key.is_none() && secrets.password.is_none() {
                return Err(invalid(
                    "target.private_key",
                    "give a private key or a password",
                ));
            }
            *private_key = None;
            *password = None;
            if let Some(k) = host_key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
                let mut parts = k.split_whitespace();
                let (kind, blob) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                if !kind.starts_with("ssh-") && !kind.starts_with("ecdsa-") || blob.len() < 40 {
                    return Err(invalid(
                        "target.host_key",
                        "an OpenSSH public key line, e.g. `ssh-ed25519 AAAA…`",
                    ));
                }
                *host_key = Some(format!("{kind} {blob}"));
            } else {
                *host_key = None;
            }
        }
        Target::S3 {
            endpoint,
            bucket,
            region,
            access_key,
            secret_key,
            prefix,
        } => {
            let url = url::Url::parse(endpoint.trim())
                .map_err(|e| invalid("target.endpoint", format!("an http(s) URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid(
                    "target.endpoint",
                    "an http(s) URL such as https://s3.eu-central-1.amazonaws.com",
                ));
            }
            *endpoint = endpoint.trim().trim_end_matches('/').to_string();
            let ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                })
                && !bucket.starts_with(['-', '.']);
            if !ok {
                return Err(invalid(
                    "target.bucket",
                    "3–63 characters: lower-case letters, digits, '-' and '.'",
                ));
            }
            if region.is_empty()
                || !region
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid("target.region", "a region such as us-east-1"));
            }
            if access_key.trim().is_empty() {
                return Err(invalid("target.access_key", "required"));
            }
            secrets.secret_key = keep(secret_key, old.and_then(|s| s.secret_key.as_ref()));
            if secrets.secret_key.is_none() {
                return Err(invalid("target.secret_key", "required"));
            }
            *secret_key = None;
            if let Some(p) = prefix.as_deref() {
                let p = p.trim_matches('/');
                if p.split('/').any(|s| s == ".." || s == ".") || p.contains('\0') {
                    return Err(invalid(
                        "target.prefix",
                        "a key prefix without `.` or `..` segments",
                    ));
                }
                *prefix = Some(p.to_string()).filter(|p| !p.is_empty());
            }
        }
    }

    if !(1..=19).contains(&input.compression_level) {
        return Err(invalid("compression_level", "a zstd level from 1 to 19"));
    }
    super::schedule::zone(&input.timezone).map_err(|e| invalid("timezone", e))?;
    if let Some(cron) = input
        .schedule
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Schedule::new(cron, &input.timezone).map_err(|(f, e)| invalid(f, e))?;
        input.schedule = Some(cron.to_string());
    } else {
        input.schedule = None;
    }
    let r = &input.retention;
    for (field, v) in [
        ("retention.keep_last", r.keep_last),
        ("retention.daily", r.daily),
        ("retention.weekly", r.weekly),
        ("retention.monthly", r.monthly),
    ] {
        if v > 1000 {
            return Err(invalid(field, "at most 1000"));
        }
    }
    if let Some(d) = &mut input.drill {
        Schedule::new(&d.schedule, &input.timezone)
            .map_err(|(_, e)| invalid("drill.schedule", e))?;
        d.query = d
            .query
            .take()
            .map(|q| q.trim().to_string())
            .filter(|q| !q.is_empty());
        d.expected = d
            .expected
            .take()
            .map(|q| q.trim().to_string())
            .filter(|q| !q.is_empty());
        let database = matches!(
            input.source,
            Source::Postgres { .. } | Source::PostgresApp { .. }
        );
        if d.query.is_some() && !database {
            return Err(invalid(
                "drill.query",
                "a check query is for database sources",
            ));
        }
        if d.query.is_some() != d.expected.is_some() {
            return Err(invalid(
                "drill.expected",
                "a check query needs its expected result, and the other way round",
            ));
        }
        if d.query.as_ref().is_some_and(|q| q.len() > 4096) {
            return Err(invalid("drill.query", "at most 4096 characters"));
        }
        if d.query.as_deref().is_some_and(super::pg::is_meta_command) {
            return Err(invalid(
                "drill.query",
                "an SQL statement, not a psql command (it starts with `\\`)",
            ));
        }
    }
    Ok(Prepared { input, secrets })
}

/// Whether two targets are the same account at the same place.
fn same_place(old: &Target, new: &Target) -> bool {
    match (old, new) {
        (
            Target::Sftp {
                host: h1,
                port: p1,
                user: u1,
                ..
            },
            Target::Sftp {
                host: h2,
                port: p2,
                user: u2,
                ..
            },
        ) => (h1, p1, u1) == (h2, p2, u2),
        (
            Target::S3 {
                endpoint: e1,
                bucket: b1,
                access_key: a1,
                ..
            },
            Target::S3 {
                endpoint: e2,
                bucket: b2,
                access_key: a2,
                ..
            },
        ) => (e1.trim_end_matches('/'), b1, a1) == (e2.trim_end_matches('/'), b2, a2),
        _ => false,
    }
}

fn check_host(host: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
    if ok {
        Ok(())
    } else {
        Err("a host name or address".into())
    }
}

/// Inserts or replaces a job's stored definition. `scheduled_through`
/// starts at `now`: a new schedule does not run for times before it existed.
pub async fn save(
    db: &SqlitePool,
    keys: &Keys,
    id: &str,
    prepared: &Prepared,
    now: i64,
    create: bool,
) -> Result<(), ApiError> {
    let i = &prepared.input;
    let sealed = (!prepared.secrets.is_empty()).then(|| {
        keys.seal(
            &purpose(id),
            &serde_json::to_vec(&prepared.secrets).expect("serialisable"),
        )
    });
    let result = if create {
        sqlx::query(
            "INSERT INTO backup_jobs (id, name, source, target, secrets_sealed, schedule, timezone, retention, \
             compression_level, encrypt, drill, enabled, scheduled_through, drill_through, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(&i.name)
        .bind(json(&i.source))
        .bind(json(&i.target))
        .bind(sealed)
        .bind(&i.schedule)
        .bind(&i.timezone)
        .bind(json(&i.retention))
        .bind(i.compression_level)
        .bind(i.encrypt)
        .bind(i.drill.as_ref().map(json))
        .bind(i.enabled)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(db)
        .await
    } else {
        // A changed schedule counts from now, like a new one; so does a
        // paused job enabled again (its pause is not a missed start).
        sqlx::query(
            "UPDATE backup_jobs SET name = ?, source = ?, target = ?, secrets_sealed = ?, \
             scheduled_through = CASE WHEN schedule IS ? AND timezone = ? AND enabled = 1 THEN scheduled_through ELSE ? END, \
             drill_through = CASE WHEN drill IS ? AND enabled = 1 THEN drill_through ELSE ? END, \
             schedule = ?, timezone = ?, retention = ?, compression_level = ?, encrypt = ?, drill = ?, \
             enabled = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&i.name)
        .bind(json(&i.source))
        .bind(json(&i.target))
        .bind(sealed)
        .bind(&i.schedule)
        .bind(&i.timezone)
        .bind(now)
        .bind(i.drill.as_ref().map(json))
        .bind(now)
        .bind(&i.schedule)
        .bind(&i.timezone)
        .bind(json(&i.retention))
        .bind(i.compression_level)
        .bind(i.encrypt)
        .bind(i.drill.as_ref().map(json))
        .bind(i.enabled)
        .bind(now)
        .bind(id)
        .execute(db)
        .await
    };
    match result {
        Ok(_) => Ok(()),
        Err(e) if crate::store::is_unique_violation(&e) => Err(ApiError::invalid(
            "name",
            format!("a backup job named `{}` exists", i.name),
        )),
        Err(e) => Err(e.into()),
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serialisable")
}

pub async fn load(db: &SqlitePool, keys: &Keys, id: &str) -> Result<StoredJob, ApiError> {
    // By id first: a job may be named like another job's id.
    let row = match sqlx::query("SELECT * FROM backup_jobs WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await?
    {
        Some(row) => row,
        None => sqlx::query("SELECT * FROM backup_jobs WHERE name = ?")
            .bind(id)
            .fetch_optional(db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no backup job `{id}`")))?,
    };
    Ok(from_row(&row, keys)?)
}

pub async fn load_all(db: &SqlitePool, keys: &Keys) -> Result<Vec<StoredJob>, ApiError> {
    let rows = sqlx::query("SELECT * FROM backup_jobs ORDER BY name")
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|r| from_row(r, keys).map_err(ApiError::from))
        .collect()
}

fn from_row(row: &SqliteRow, keys: &Keys) -> anyhow::Result<StoredJob> {
    let id: String = row.get("id");
    let sealed: Option<Vec<u8>> = row.get("secrets_sealed");
    let secrets = match sealed {
        Some(s) => serde_json::from_slice(&keys.open(&purpose(&id), &s)?)?,
        None => Secrets::default(),
    };
    let drill: Option<String> = row.get("drill");
    Ok(StoredJob {
        name: row.get("name"),
        source: serde_json::from_str(row.get("source"))?,
        target: serde_json::from_str(row.get("target"))?,
        secrets,
        schedule: row.get("schedule"),
        timezone: row.get("timezone"),
        retention: serde_json::from_str(row.get("retention"))?,
        compression_level: row.get::<i64, _>("compression_level") as i32,
        encrypt: row.get("encrypt"),
        drill: drill.map(|d| serde_json::from_str(&d)).transpose()?,
        enabled: row.get("enabled"),
        scheduled_through: row.get("scheduled_through"),
        drill_through: row.get("drill_through"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(source: Source, target: Target) -> JobInput {
        serde_json::from_value(serde_json::json!({
            "name": "nightly", "source": source, "target": target,
        }))
        .unwrap()
    }

    fn stored(p: &Prepared) -> StoredJob {
        StoredJob {
            id: "j".into(),
            name: p.input.name.clone(),
            source: p.input.source.clone(),
            target: p.input.target.clone(),
            secrets: p.secrets.clone(),
            schedule: None,
            timezone: "UTC".into(),
            retention: Retention::default(),
            compression_level: 3,
            encrypt: true,
            drill: None,
            enabled: true,
            scheduled_through: 0,
            drill_through: 0,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn secrets_are_split_off_and_a_masked_resend_keeps_them() {
        let s3 = Target::S3 {
            endpoint: "http://127.0.0.1:9000/".into(),
            bucket: "backups".into(),
            region: "us-east-1".into(),
            access_key: "AK".into(),
            secret_key: Some("SK-very-secret".into()),
            prefix: Some("/host1/".into()),
        };
        let p = prepare(
            input(
                Source::Postgres {
                    dsn: "postgres://app:pw%21@127.0.0.1/shop".into(),
                },
                s3,
            ),
            None,
        )
        .unwrap();
        assert_eq!(p.secrets.dsn_password.as_deref(), Some("pw!"));
        assert_eq!(p.secrets.secret_key.as_deref(), Some("SK-very-secret"));
        let stored_json = serde_json::to_string(&(&p.input.source, &p.input.target)).unwrap();
        assert!(
            !stored_json.contains("pw") && !stored_json.contains("SK-very"),
            "{stored_json}"
        );
        let job = stored(&p);
        assert_eq!(
            job.public_source(),
            Source::Postgres {
                dsn: "postgres://app:********@127.0.0.1:5432/shop".into()
            }
        );
        assert_eq!(job.conn().unwrap().password.as_deref(), Some("pw!"));

        // The panel sends back what it was shown.
        let mut again = p.input.clone();
        again.source = job.public_source();
        let p2 = prepare(again, Some(&job)).unwrap();
        assert_eq!(p2.secrets, p.secrets);

        // A masked password with nothing stored is refused, naming the field.
        let e = prepare(
            input(
                Source::Postgres {
                    dsn: "postgres://app:********@h/shop".into(),
                },
                Target::Local { path: None },
            ),
            None,
        )
        .err()
        .unwrap();
        assert!(matches!(e, ApiError::Invalid { field: Some(f), .. } if f == "source.dsn"));
    }

    #[test]
    fn bad_fields_are_named() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (
                serde_json::json!({"name": "Bad Name", "source": {"kind": "berth"}, "target": {"kind": "local"}}),
                "name",
            ),
            (
                serde_json::json!({"name": "a", "source": {"kind": "volume", "volume": "../x"}, "target": {"kind": "local"}}),
                "source.volume",
            ),
            (
                serde_json::json!({"name": "a", "source": {"kind": "berth"}, "target": {"kind": "local", "path": "rel/dir"}}),
                "target.path",
            ),
            (
                serde_json::json!({"name": "a", "source": {"kind": "berth"}, "target": {"kind": "local"}, "schedule": "0 25 * * *"}),
                "schedule",
            ),
            (
                serde_json::json!({"name": "a", "source": {"kind": "berth"}, "target": {"kind": "local"}, "timezone": "Moon/Base"}),
                "timezone",
            ),
            (
                serde_json::json!({"name": "a", "source": {"kind": "berth"}, "target": {"kind": "local"}, "compression_level": 30}),
                "compression_level",
            ),
            (
                serde_json::json!({"name": "a", "source": {"kind": "berth"}, "target": {"kind": "sftp", "host": "h", "user": "u", "path": "/b"}}),
                "target.private_key",
            ),
            (
                serde_json::json!({"name": "a", "source": {"kind": "berth"}, "target": {"kind": "s3", "endpoint": "ftp://x", "bucket": "bb", "access_key": "a", "secret_key": "s"}}),
                "target.endpoint",
            ),
            (
                serde_json::json!({"name": "a", "source": {"kind": "berth"}, "target": {"kind": "local"}, "drill": {"schedule": "0 4 * * *", "query": "select 1", "expected": "1"}}),
                "drill.query",
            ),
            (
                serde_json::json!({"name": "a", "source": {"kind": "postgres_app", "app": "db", "database": "x"}, "target": {"kind": "local"}, "drill": {"schedule": "0 4 * * *", "query": "select 1"}}),
                "drill.expected",
            ),
        ];
        for (json, field) in cases {
            let input: JobInput = serde_json::from_value(json.clone()).unwrap();
            match prepare(input, None) {
                Err(ApiError::Invalid { field: Some(f), .. }) => assert_eq!(f, field, "{json}"),
                other => panic!("{json}: {:?}", other.err()),
            }
        }
    }
}
