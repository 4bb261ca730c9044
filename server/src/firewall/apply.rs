//! Applying with a safety net. An apply loads the new table in one nft
//! transaction and starts a confirmation window; unless a confirmation
//! arrives over a connection opened after the apply, berth loads the
//! previous table again. The window survives nothing: a berth restarted
//! while an apply is pending rolls it back at start, because nobody
//! confirmed it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use app::api::firewall::{FirewallConfig, PendingApply};
use axum::http::StatusCode;
use serde_json::json;
use sqlx::Row;

use super::{compile, nft, Firewall};
use crate::audit::Outcome;
use crate::http::error::ApiError;
use crate::notify::Notice;

/// Bounds of the confirmation window, in seconds.
pub const MIN_CONFIRM: u32 = 10;
pub const MAX_CONFIRM: u32 = 600;
/// How long after an apply older connections are closed: long enough for
/// the apply's own answer to be written.
const CLOSE_DELAY: Duration = Duration::from_millis(500);
/// How often berth checks that its table is still what it loaded.
const DRIFT_CHECK: Duration = Duration::from_secs(300);

/// A pending apply, as stored.
pub(crate) struct Pending {
    id: i64,
    revision: i64,
    pub(crate) config: FirewallConfig,
    previous: Option<FirewallConfig>,
    previous_revision: Option<i64>,
    deadline: i64,
}

impl Firewall {
    pub(crate) async fn pending(&self) -> Result<Option<Pending>, ApiError> {
        let row = sqlx::query(
            "SELECT id, revision, config, previous, previous_revision, deadline \
             FROM firewall_applies WHERE state = 'pending'",
        )
        .fetch_optional(&self.db)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let decode = |t: &str| {
            serde_json::from_str::<FirewallConfig>(t)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored firewall apply: {e}")))
        };
        Ok(Some(Pending {
            id: row.get("id"),
            revision: row.get("revision"),
            config: decode(row.get::<&str, _>("config"))?,
            previous: match row.get::<Option<&str>, _>("previous") {
                Some(t) => Some(decode(t)?),
                None => None,
            },
            previous_revision: row.get("previous_revision"),
            deadline: row.get("deadline"),
        }))
    }

    pub async fn pending_apply(&self) -> Result<Option<PendingApply>, ApiError> {
        Ok(self.pending().await?.map(|p| PendingApply {
            apply_id: p.id,
            revision: p.revision,
            deadline: crate::store::rfc3339(p.deadline),
            seconds_left: (p.deadline - crate::store::now()).max(0) as u64,
        }))
    }

    /// Loads `config` (or removes berth's table when it is `None` or off)
    /// and records the fingerprint of what the kernel then holds.
    async fn load(&self, config: Option<&FirewallConfig>) -> Result<(), ApiError> {
        let inputs = match config {
            Some(c) => self.inputs(c).await?,
            None => compile::Inputs::default(),
        };
        let ruleset = compile::compile(&inputs);
        self.nft
            .load(&ruleset.transaction())
            .await
            .map_err(|e| ApiError::ApplyFailed(format!("nft refused the ruleset: {e}")))?;
        // The kernel holds the new table now: nothing after this may fail
        // the load. A digest that cannot be taken reads as drift later, and
        // the drift check loads the rules again.
        let fingerprint = match self.nft.list_table().await {
            Ok(listing) => nft::fingerprint(listing.as_ref()),
            Err(e) => {
                tracing::warn!(error = %e, "berth's table could not be listed after loading it");
                "unknown".to_string()
            }
        };
        if let Err(e) = sqlx::query("UPDATE firewall_state SET fingerprint = ? WHERE id = 1")
            .bind(fingerprint)
            .execute(&self.db)
            .await
        {
            tracing::warn!(error = %e, "the firewall digest could not be stored");
        }
        Ok(())
    }

    /// `POST /firewall/apply`: loads the desired rules and opens the window.
    pub async fn apply(
        self: &Arc<Self>,
        actor: &str,
        client: IpAddr,
        confirm_seconds: Option<u32>,
    ) -> Result<PendingApply, ApiError> {
        let seconds = confirm_seconds.unwrap_or(self.settings.confirm_seconds);
        if !(MIN_CONFIRM..=MAX_CONFIRM).contains(&seconds) {
            return Err(ApiError::invalid(
                "confirm_seconds",
                format!("the window is {MIN_CONFIRM}-{MAX_CONFIRM} seconds"),
            ));
        }
        let _one = self.lock.lock().await;
        if let Some(p) = self.pending().await? {
            return Err(ApiError::BadRequest {
                status: StatusCode::CONFLICT,
                code: "pending",
                field: None,
                message: format!(
                    "apply {} waits for its confirmation; confirm or roll it back first",
                    p.id
                ),
            });
        }
        let state = self.state().await?;
        if state.revision == 0 {
            return Err(ApiError::Conflict(
                "there are no saved rules to apply: PUT /firewall/rules first".into(),
            ));
        }
        // The guard again: the rules were saved from some address, this is
        // the one that must keep working.
        self.admit(&state.desired, client)?;
        let now = crate::store::now();
        let deadline = now + i64::from(seconds);
        let config_text =
            serde_json::to_string(&state.desired).map_err(|e| ApiError::Internal(e.into()))?;
        let previous_text = state
            .applied
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| ApiError::Internal(e.into()))?;
        // Recorded before loading: a crash right after the load still finds
        // a pending apply at start, and rolls it back.
        let id: i64 = sqlx::query(
            "INSERT INTO firewall_applies (revision, config, previous, previous_revision, state, \
             actor, started_at, deadline) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?) RETURNING id",
        )
        .bind(state.revision)
        .bind(&config_text)
        .bind(&previous_text)
        .bind(state.applied_revision)
        .bind(actor)
        .bind(now)
        .bind(deadline)
        .fetch_one(&self.db)
        .await?
        .get(0);
        // The window's timer runs from here, whatever happens next: an
        // apply cut short still rolls back (a closed one is left alone).
        let me = self.clone();
        tokio::spawn(async move { me.expire_at(id, deadline, None).await });
        if let Err(e) = self.load(Some(&state.desired)).await {
            // nft commits all or nothing: the kernel still holds the old table.
            self.finish(id, "failed", &e.to_string()).await?;
            return Err(e);
        }
        let watermark = self.connections.watermark();
        *self.pending_watermark.lock().expect("not poisoned") = Some((id, watermark));
        let connections = self.connections.clone();
        tokio::spawn(async move {
            tokio::time::sleep(CLOSE_DELAY).await;
            connections.close_below(watermark);
        });
        tracing::info!(
            apply = id,
            revision = state.revision,
            seconds,
            "firewall applied; waiting for confirmation"
        );
        Ok(PendingApply {
            apply_id: id,
            revision: state.revision,
            deadline: crate::store::rfc3339(deadline),
            seconds_left: u64::from(seconds),
        })
    }

    async fn finish(&self, id: i64, state: &str, message: &str) -> Result<(), ApiError> {
        sqlx::query(
            "UPDATE firewall_applies SET state = ?, finished_at = ?, message = ? WHERE id = ?",
        )
        .bind(state)
        .bind(crate::store::now())
        .bind(message)
        .bind(id)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// `POST /firewall/confirm`, over connection `connection` (`None`: not
    /// over a socket at all).
    pub async fn confirm(&self, apply_id: i64, connection: Option<u64>) -> Result<(), ApiError> {
        let _one = self.lock.lock().await;
        let Some(p) = self.pending().await? else {
            return Err(self.not_pending(apply_id).await?);
        };
        if p.id != apply_id {
            return Err(ApiError::NotFound(format!(
                "apply {apply_id} is not the pending one ({})",
                p.id
            )));
        }
        let watermark = self
            .pending_watermark
            .lock()
            .expect("not poisoned")
            .filter(|(id, _)| *id == p.id)
            .map(|(_, w)| w)
            .unwrap_or(u64::MAX);
        if connection.is_none_or(|c| c < watermark) {
            return Err(ApiError::BadRequest {
                status: StatusCode::CONFLICT,
                code: "stale_connection",
                field: None,
                message: "confirm over a new connection: this one was open before the apply, so \
                          it does not prove the new rules let you in"
                    .into(),
            });
        }
        if crate::store::now() > p.deadline {
            return Err(ApiError::BadRequest {
                status: StatusCode::GONE,
                code: "expired",
                field: None,
                message: "the confirmation window has closed; berth restores the previous rules"
                    .into(),
            });
        }
        let config = serde_json::to_string(&p.config).map_err(|e| ApiError::Internal(e.into()))?;
        let mut tx = self.db.begin().await?;
        sqlx::query("UPDATE firewall_state SET applied = ?, applied_revision = ? WHERE id = 1")
            .bind(&config)
            .bind(p.revision)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE firewall_applies SET state = 'confirmed', finished_at = ?, message = ? \
             WHERE id = ?",
        )
        .bind(crate::store::now())
        .bind("confirmed over a new connection")
        .bind(p.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        *self.pending_watermark.lock().expect("not poisoned") = None;
        tracing::info!(apply = p.id, "firewall apply confirmed");
        Ok(())
    }

    async fn not_pending(&self, apply_id: i64) -> Result<ApiError, ApiError> {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM firewall_applies WHERE id = ?")
                .bind(apply_id)
                .fetch_optional(&self.db)
                .await?;
        Ok(match state.as_deref() {
            Some("rolled_back") => ApiError::BadRequest {
                status: StatusCode::GONE,
                code: "expired",
                field: None,
                message: format!("apply {apply_id} was rolled back; apply again"),
            },
            Some(s) => ApiError::Conflict(format!("apply {apply_id} is already {s}")),
            None => ApiError::NotFound(format!("no apply {apply_id}")),
        })
    }

    /// `POST /firewall/rollback`: the admin undoes the pending apply now.
    pub async fn rollback_now(&self, actor: &str) -> Result<(), ApiError> {
        let _one = self.lock.lock().await;
        let Some(p) = self.pending().await? else {
            return Err(ApiError::NotFound(
                "no apply is waiting for confirmation".into(),
            ));
        };
        self.roll_back(&p, &format!("rolled back by {actor}")).await
    }

    /// Loads the table from before `p` and closes it as rolled back.
    async fn roll_back(&self, p: &Pending, why: &str) -> Result<(), ApiError> {
        // From here no confirmation is taken, even if recording fails below.
        *self.pending_watermark.lock().expect("not poisoned") = None;
        self.load(p.previous.as_ref()).await?;
        let restored = match p.previous_revision {
            Some(r) => format!("revision {r} restored"),
            None => "berth's table removed, as before".into(),
        };
        let message = format!("{why}; {restored}");
        self.finish(p.id, "rolled_back", &message).await?;
        tracing::warn!(apply = p.id, "{message}");
        Ok(())
    }

    /// The timer of one apply's window. `why` overrides the reason
    /// ("not confirmed within N s").
    async fn expire_at(self: Arc<Self>, id: i64, deadline: i64, why: Option<String>) {
        let wait = (deadline - crate::store::now()).max(0) as u64;
        tokio::time::sleep(Duration::from_secs(wait)).await;
        // A rollback that fails (nft gone for a moment) is tried again until
        // it takes: the window has passed, the old rules must come back.
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.expire(id, why.as_deref()).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(apply = id, error = %e, "firewall rollback failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn expire(&self, id: i64, why: Option<&str>) -> Result<(), ApiError> {
        let (p, why) = {
            let _one = self.lock.lock().await;
            let Some(p) = self.pending().await?.filter(|p| p.id == id) else {
                return Ok(());
            };
            let why = match why {
                Some(w) => w.to_string(),
                None => format!(
                    "not confirmed within {} s",
                    p.deadline - self.started_at(p.id).await?
                ),
            };
            self.roll_back(&p, &why).await?;
            (p, why)
        };
        // Told outside the lock: a slow mail server must not hold up the
        // next apply.
        let event = crate::audit::Event::new("berth", None, "firewall.rollback", Outcome::Success)
            .target("firewall")
            .detail(json!({ "apply_id": p.id, "revision": p.revision, "reason": why }));
        crate::audit::record(&self.db, event).await?;
        self.notifier
            .send(&Notice {
                event: "firewall.rolled_back".into(),
                subject: "berth rolled back a firewall change".into(),
                text: format!(
                    "Firewall revision {} was applied but {why}, so berth restored the previous \
                     rules. If you could not reach the panel, the new rules would have locked \
                     you out.",
                    p.revision
                ),
                details: json!({ "apply_id": p.id, "revision": p.revision }),
            })
            .await;
        Ok(())
    }

    /// On a clean stop: an apply pending now can never be confirmed (the
    /// connection watermark lives in this process), so it goes back now,
    /// rather than staying loaded until berth starts again.
    pub async fn shutdown(self: &Arc<Self>) {
        let pending = match self.pending().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "firewall state unreadable at shutdown");
                return;
            }
        };
        if let Some(p) = pending {
            if let Err(e) = self
                .expire(p.id, Some("berth stopped before the apply was confirmed"))
                .await
            {
                tracing::error!(error = %e, "the pending firewall apply could not be rolled back; berth rolls it back when it starts");
            }
        }
    }

    async fn started_at(&self, id: i64) -> Result<i64, ApiError> {
        Ok(
            sqlx::query_scalar("SELECT started_at FROM firewall_applies WHERE id = ?")
                .bind(id)
                .fetch_one(&self.db)
                .await?,
        )
    }

    /// At start: roll back an apply nobody confirmed, or load the confirmed
    /// rules again (a reboot empties the kernel's tables). Then keep them:
    /// after Docker restarts, and whenever the table drifted.
    pub async fn run(self: Arc<Self>) {
        if let Err(e) = self.start().await {
            tracing::error!(error = %e, "the firewall could not be restored at start");
        }
        let mut changes = self.apps.subscribe();
        loop {
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(DRIFT_CHECK) => {}
            }
            // Docker's events come in bursts; settle first.
            tokio::time::sleep(Duration::from_millis(200)).await;
            changes.mark_unchanged();
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %e, "firewall check failed");
            }
        }
    }

    async fn start(self: &Arc<Self>) -> Result<(), ApiError> {
        if let Some(p) = self.pending().await? {
            // Retried until it takes, like a window that runs out.
            let me = self.clone();
            tokio::spawn(async move {
                me.expire_at(
                    p.id,
                    0,
                    Some("berth restarted before the apply was confirmed".into()),
                )
                .await
            });
            return Ok(());
        }
        let _one = self.lock.lock().await;
        let state = self.state().await?;
        if let Some(applied) = &state.applied {
            self.load(Some(applied)).await?;
            tracing::info!(revision = state.applied_revision, "firewall rules loaded");
        }
        Ok(())
    }

    /// Loads the confirmed rules again when the kernel's table is not what
    /// berth loaded (removed, edited) or, in coexist mode, when the set of
    /// published ports changed.
    pub async fn reconcile(&self) -> Result<Option<String>, ApiError> {
        let _one = self.lock.lock().await;
        if self.pending().await?.is_some() {
            return Ok(None);
        }
        let state = self.state().await?;
        let Some(applied) = &state.applied else {
            return Ok(None);
        };
        let live = self
            .nft
            .list_table()
            .await
            .map_err(|e| ApiError::ApplyFailed(e.to_string()))?;
        let drifted =
            state.fingerprint.as_deref() != Some(nft::fingerprint(live.as_ref()).as_str());
        let expected = compile::compile(&self.inputs(applied).await?);
        let republish = applied.enabled
            && applied.mode == app::api::firewall::Mode::Coexist
            && live
                .as_ref()
                .is_some_and(|l| !published_matches(l, &expected));
        if !drifted && !republish {
            return Ok(None);
        }
        let why = if drifted {
            "berth's table was changed or removed outside berth"
        } else {
            "the ports Docker publishes changed"
        };
        self.load(Some(applied)).await?;
        tracing::warn!(
            revision = state.applied_revision,
            "{why}; firewall rules loaded again"
        );
        let event = crate::audit::Event::new("berth", None, "firewall.reload", Outcome::Success)
            .target("firewall")
            .detail(json!({ "revision": state.applied_revision, "reason": why }));
        crate::audit::record(&self.db, event).await?;
        Ok(Some(why.to_string()))
    }
}

/// Whether the live table's `published` set holds what the compiled one would.
fn published_matches(live: &serde_json::Value, expected: &compile::Ruleset) -> bool {
    let proto = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) if s == "tcp" => Some(6),
        serde_json::Value::String(s) if s == "udp" => Some(17),
        v => v.as_u64().and_then(|n| u8::try_from(n).ok()),
    };
    let mut live_elems: Vec<(u8, u16)> = live["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("set"))
        .filter(|s| s["name"] == "published")
        .filter_map(|s| s["elem"].as_array())
        .flatten()
        .filter_map(|e| {
            let parts = e["concat"].as_array()?;
            Some((
                proto(parts.first()?)?,
                u16::try_from(parts.get(1)?.as_u64()?).ok()?,
            ))
        })
        .collect();
    live_elems.sort_unstable();
    live_elems == expected.published()
}
