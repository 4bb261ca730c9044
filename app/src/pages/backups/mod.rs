//! Backups: the jobs (what, where, when, how long to keep), each job's runs
//! with live progress, what retention would delete, the restore drills, the
//! restore wizard, and the backup key.
//!
//! The pages only talk to the API. They never judge an archive themselves:
//! whether a backup was verified or a restore works is what berth's runs and
//! drills report, and the pages show that as it is.

mod card;
mod detail;
mod editor;
mod form;
mod key;
mod list;
mod restore;

pub use card::BackupsCard;
pub use detail::BackupJobPage;
pub use editor::{BackupJobEdit, BackupJobNew};
pub use key::BackupIdentityShown;
pub use list::Backups;

use super::widgets::{human_size, Tone};
use crate::api::backups::{Job, Source, Target};

/// Where the pages find the API.
const API: &str = "/api/v1/backups";

/// A timestamp as `YYYY-MM-DD HH:MM` (the API's are RFC 3339, UTC).
fn moment(ts: &str) -> String {
    ts.get(..16).unwrap_or(ts).replace('T', " ")
}

/// A byte count from the API (never negative in practice).
fn size(bytes: i64) -> String {
    human_size(bytes.max(0) as u64)
}

/// `850 ms`, `12.4 s`, `3 min 5 s`, `1 h 2 min`.
fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let secs = ms / 1000;
    if secs < 60 {
        return format!("{:.1} s", ms as f64 / 1000.0);
    }
    if secs < 3600 {
        return format!("{} min {} s", secs / 60, secs % 60);
    }
    format!("{} h {} min", secs / 3600, secs % 3600 / 60)
}

/// How long ago `ts` was, coarsely: `just now`, `5 min ago`, `3 h ago`,
/// `2 d ago`. Without a clock (server rendering) or a readable time, the
/// time itself.
fn ago(ts: &str) -> String {
    match (unix_seconds(ts), now_seconds()) {
        (Some(then), Some(now)) => {
            let d = (now - then).max(0);
            match d {
                0..=59 => "just now".into(),
                60..=3599 => format!("{} min ago", d / 60),
                3600..=86_399 => format!("{} h ago", d / 3600),
                _ => format!("{} d ago", d / 86_400),
            }
        }
        _ => moment(ts),
    }
}

#[cfg(feature = "hydrate")]
fn now_seconds() -> Option<i64> {
    Some((leptos::web_sys::js_sys::Date::now() / 1000.0) as i64)
}

/// The server renders no page bodies; nothing asks it for the time.
#[cfg(not(feature = "hydrate"))]
fn now_seconds() -> Option<i64> {
    None
}

/// Seconds since 1970 of an RFC 3339 time in UTC (`2025-03-01T12:34:56Z`,
/// fractions and a `+00:00` offset allowed); other offsets are applied.
fn unix_seconds(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Howard Hinnant's days_from_civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut secs = days * 86_400 + h * 3600 + mi * 60 + s;
    // The offset, after any fraction of a second.
    let rest = ts
        .get(19..)?
        .trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    if let Some(sign) = rest.chars().next().filter(|c| matches!(c, '+' | '-')) {
        let oh = rest.get(1..3)?.parse::<i64>().ok()?;
        let om = rest.get(4..6)?.parse::<i64>().ok()?;
        let offset = oh * 3600 + om * 60;
        secs -= if sign == '+' { offset } else { -offset };
    }
    Some(secs)
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved
/// characters), so `0 3 * * *` and `Europe/Berlin` travel intact.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A run's status at a glance.
fn run_tone(status: &str) -> Tone {
    match status {
        "succeeded" => Tone::Good,
        "failed" => Tone::Bad,
        "running" => Tone::Busy,
        _ => Tone::Idle,
    }
}

/// A drill's (or a restore's) status at a glance.
fn drill_tone(status: &str) -> Tone {
    match status {
        "passed" | "succeeded" => Tone::Good,
        "failed" => Tone::Bad,
        "running" => Tone::Busy,
        _ => Tone::Idle,
    }
}

/// The source's kind, in words.
fn source_kind_label(kind: &str) -> &'static str {
    match kind {
        "postgres" => "PostgreSQL",
        "postgres_app" => "PostgreSQL in an app",
        "volume" => "Docker volume",
        "berth" => "berth itself",
        _ => "unknown",
    }
}

/// What a job backs up, e.g. `PostgreSQL in an app: shop/orders`.
fn source_text(source: &Source) -> String {
    let what = match source {
        // The DSN's password is masked by the server; the host and database
        // are what tells jobs apart.
        Source::Postgres { dsn } => dsn
            .rsplit_once('@')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_else(|| dsn.clone()),
        Source::PostgresApp { app, database, .. } => format!("{app}/{database}"),
        Source::Volume { volume } => volume.clone(),
        Source::Berth => return source_kind_label("berth").into(),
    };
    format!("{}: {what}", source_kind_label(source.kind()))
}

/// Where a job's archives go, e.g. `S3: backups/berth`.
fn target_text(target: &Target) -> String {
    match target {
        Target::Local { path } => {
            format!("local: {}", path.as_deref().unwrap_or("DATA_DIR/backups"))
        }
        Target::Sftp {
            user, host, path, ..
        } => format!("SFTP: {user}@{host}:{path}"),
        Target::S3 { bucket, prefix, .. } => match prefix.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => format!("S3: {bucket}/{p}"),
            None => format!("S3: {bucket}"),
        },
    }
}

/// The schedule as the jobs table shows it.
fn schedule_text(job: &Job) -> String {
    match &job.schedule {
        Some(s) if !s.trim().is_empty() => format!("{s} ({})", job.timezone),
        _ => "only when asked".into(),
    }
}

/// The first 12 hex digits of a checksum.
fn short_sum(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_become_unix_seconds() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(
            unix_seconds("2023-11-14T22:13:20.123456Z"),
            Some(1_700_000_000)
        );
        assert_eq!(
            unix_seconds("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(unix_seconds("2000-02-29T00:00:00+00:00"), Some(951_782_400));
        assert_eq!(unix_seconds("yesterday"), None);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("0 3 * * *"), "0%203%20%2A%20%2A%20%2A");
        assert_eq!(encode("Europe/Berlin"), "Europe%2FBerlin");
        assert_eq!(encode("*/15 1-5"), "%2A%2F15%201-5");
    }

    #[test]
    fn durations_read_in_sensible_units() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_400), "12.4 s");
        assert_eq!(duration(185_000), "3 min 5 s");
        assert_eq!(duration(3_720_000), "1 h 2 min");
    }

    #[test]
    fn sources_and_targets_read_as_what_and_where() {
        let pg = Source::Postgres {
            dsn: "postgres://app:********@db.internal:5432/shop".into(),
        };
        assert_eq!(source_text(&pg), "PostgreSQL: db.internal:5432/shop");
        assert_eq!(source_text(&Source::Berth), "berth itself");
        let app = Source::PostgresApp {
            app: "shop".into(),
            database: "orders".into(),
            user: None,
        };
        assert_eq!(source_text(&app), "PostgreSQL in an app: shop/orders");
        assert_eq!(
            target_text(&Target::Local { path: None }),
            "local: DATA_DIR/backups"
        );
        let s3 = Target::S3 {
            endpoint: "https://s3.example.com".into(),
            bucket: "backups".into(),
            region: "us-east-1".into(),
            access_key: "AK".into(),
            secret_key: None,
            prefix: Some("berth".into()),
        };
        assert_eq!(target_text(&s3), "S3: backups/berth");
    }

    #[test]
    fn statuses_have_the_agreed_colours() {
        assert_eq!(run_tone("succeeded"), Tone::Good);
        assert_eq!(run_tone("failed"), Tone::Bad);
        assert_eq!(run_tone("running"), Tone::Busy);
        assert_eq!(drill_tone("passed"), Tone::Good);
        assert_eq!(drill_tone("failed"), Tone::Bad);
    }
}
