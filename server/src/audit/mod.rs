//! The audit log: every change and every login attempt, with who, from where,
//! when, what, on what, and how it ended. It must never hold a password, a
//! token or any other secret: callers pass names and ids only, and `detail`
//! is built from non-secret fields.

pub mod routes;

use std::net::IpAddr;

use app::api::{AuditEntry, AuditPage};
use sqlx::SqlitePool;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

pub struct Event<'a> {
    pub actor: &'a str,
    pub ip: Option<IpAddr>,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub outcome: Outcome,
    pub detail: Option<serde_json::Value>,
}

impl<'a> Event<'a> {
    pub fn new(actor: &'a str, ip: Option<IpAddr>, action: &'a str, outcome: Outcome) -> Self {
        Event {
            actor,
            ip,
            action,
            target: None,
            outcome,
            detail: None,
        }
    }

    pub fn target(mut self, target: &'a str) -> Self {
        self.target = Some(target);
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// Appends one entry. A failure to write is logged and reported as an error:
/// an action whose audit record could not be written should not look silent.
#[tracing::instrument(skip_all, fields(action = %event.action), err)]
pub async fn record(db: &SqlitePool, event: Event<'_>) -> anyhow::Result<()> {
    let at = crate::store::now();
    let ip = event.ip.map(|ip| ip.to_string());
    let outcome = event.outcome.as_str();
    let detail = event.detail.map(|d| d.to_string());
    sqlx::query!(
        "INSERT INTO audit_log (at, actor, client_ip, action, target, outcome, detail) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        at,
        event.actor,
        ip,
        event.action,
        event.target,
        outcome,
        detail
    )
    .execute(db)
    .await?;
    Ok(())
}

pub const MAX_PAGE: i64 = 200;

/// Newest first; `before` is the id of the last entry of the previous page.
pub async fn list(db: &SqlitePool, before: Option<i64>, limit: i64) -> anyhow::Result<AuditPage> {
    let before = before.unwrap_or(i64::MAX);
    // One extra row tells whether another page follows.
    let fetch = limit + 1;
    let rows = sqlx::query!(
        "SELECT id, at, actor, client_ip, action, target, outcome, detail \
         FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?",
        before,
        fetch
    )
    .fetch_all(db)
    .await?;
    let more = rows.len() as i64 > limit;
    let items: Vec<AuditEntry> = rows
        .into_iter()
        .take(limit as usize)
        .map(|r| AuditEntry {
            id: r.id,
            at: crate::store::rfc3339(r.at),
            actor: r.actor,
            client_ip: r.client_ip,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            detail: r.detail.and_then(|d| serde_json::from_str(&d).ok()),
        })
        .collect();
    let next_before = if more {
        items.last().map(|e| e.id)
    } else {
        None
    };
    Ok(AuditPage { items, next_before })
}
