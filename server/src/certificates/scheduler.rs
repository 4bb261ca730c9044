//! The scheduler: orders what domains want, renews what is due, retries
//! what failed when its back-off has passed, retires what no domain uses,
//! and runs the expiry probe on its interval.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use app::api::{ChallengeKind, KeyType, OrderRequest};

use super::{acme, pem, schedule, Certificates, Stored};
use crate::http::error::ApiError;

/// How often the scheduler looks for due work when nothing wakes it.
const TICK: Duration = Duration::from_secs(60);

impl Certificates {
    /// Wakes the scheduler (after a domain or setting changed).
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Runs the scheduler for the life of the process.
    pub async fn run(self: Arc<Self>) {
        let mut domains = self.proxy.subscribe_domains();
        if let Err(e) = self.install().await {
            tracing::error!(error = %e, "stored certificates could not be installed");
        }
        loop {
            self.tick().await;
            let now = self.clock.now();
            let last = self.last_probe.load(std::sync::atomic::Ordering::Relaxed);
            if now - last >= self.config.probe_interval.as_secs() as i64 {
                // In its own task: a probe of many slow hosts must not hold
                // up renewals.
                self.last_probe
                    .store(now, std::sync::atomic::Ordering::Relaxed);
                let me = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = me.probe().await {
                        tracing::warn!(error = %e, "expiry probe failed");
                    }
                });
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                r = domains.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// One pass: orders certificates domains want, retires those no domain
    /// uses, renews what is due and retries what failed when its back-off
    /// has passed. Waits for the attempts it starts.
    pub async fn tick(&self) {
        if let Err(e) = self.tick_inner().await {
            tracing::warn!(error = %e, "certificate scheduler pass failed");
        }
    }

    pub(super) async fn tick_inner(&self) -> Result<(), ApiError> {
        let wishes = self.wishes().await?;
        let served: BTreeSet<&String> = wishes.iter().map(|(host, _, _)| host).collect();
        let mut rows = self.rows().await?;
        let configured = self.acme_row().await?.is_some();

        // Domains that want a certificate and have none: order one.
        if configured {
            let on_disk = self.proxy.shared.certs.all();
            for (host, names, auto) in &wishes {
                if !auto {
                    continue;
                }
                // A retired certificate for the host counts: it comes back
                // into service below rather than being ordered again.
                let stored = rows
                    .iter()
                    .any(|r| r.domains.iter().any(|n| pem::covers(n, host)));
                let from_files = on_disk
                    .get(host)
                    .is_some_and(|l| !l.source.starts_with("berth:"));
                if stored || from_files {
                    continue;
                }
                let req = OrderRequest {
                    domains: names.clone(),
                    challenge: ChallengeKind::Http01,
                    dns_provider: None,
                    key_type: KeyType::EcdsaP256,
                };
                match self.insert_order(req, true).await {
                    Ok(id) => {
                        tracing::info!(certificate = %id, %host, "ordering a certificate for a new domain")
                    }
                    Err(e) => tracing::warn!(%host, error = %e, "cannot order a certificate"),
                }
            }
            rows = self.rows().await?;
        }

        let now = self.clock.now();
        for row in rows.iter().filter(|r| r.source == "acme") {
            let wanted = row
                .domains
                .iter()
                .any(|n| served.iter().any(|h| pem::covers(n, h)));
            if row.state == "retired" {
                // A domain came back: renewals resume.
                if wanted {
                    self.set_state(&row.id, "valid").await?;
                }
                continue;
            }
            if !configured || self.is_attempting(&row.id) || row.retry_at.is_some_and(|t| t > now) {
                continue;
            }
            if !row.has_chain {
                // An automatic order whose domain is gone stops retrying; one
                // the admin placed keeps going until deleted.
                if row.automatic && !wanted {
                    self.set_state(&row.id, "retired").await?;
                    continue;
                }
                self.attempt_if_due(&row.id).await;
                continue;
            }
            let mut renew_at = row.renew_at;
            if let (Some(ari), Some(check)) = (&row.ari_id, row.ari_check_at) {
                if check <= now {
                    renew_at = self.recheck_ari(row, ari).await.or(renew_at);
                }
            }
            let due = renew_at.is_some_and(|t| t <= now) || row.not_after.is_some_and(|t| t <= now);
            if !due {
                continue;
            }
            // Renewal stops when no domain uses the certificate any more.
            if !wanted {
                tracing::info!(certificate = %row.id, "not renewed: no domain uses it");
                self.set_state(&row.id, "retired").await?;
                continue;
            }
            self.attempt_if_due(&row.id).await;
        }
        Ok(())
    }

    pub(super) async fn recheck_ari(&self, row: &Stored, ari: &str) -> Option<i64> {
        let acme = self.acme_row().await.ok()??;
        let creds = serde_json::from_slice(acme.credentials.as_ref()?).ok()?;
        let account = acme.directory().restore(creds).await.ok()?;
        let next_check = |at: Option<i64>| {
            sqlx::query("UPDATE certificates SET ari_check_at = ? WHERE id = ?")
                .bind(at)
                .bind(&row.id)
                .execute(&self.db)
        };
        match acme::renewal_window(&account, &acme.directory_url, ari).await {
            Ok(Some((start, end, retry))) => {
                let now = self.clock.now();
                // Keep the current pick while it still lies in the window.
                let at = match row.renew_at {
                    Some(t) if t >= start && t < end => t,
                    _ => schedule::in_window(start, end, &mut rand::thread_rng()),
                };
                let _ = sqlx::query(
                    "UPDATE certificates SET renew_at = ?, renew_reason = 'ari', ari_check_at = ? WHERE id = ?",
                )
                .bind(at)
                .bind(now + schedule::ari_recheck(retry))
                .bind(&row.id)
                .execute(&self.db)
                .await;
                Some(at)
            }
            // The CA has no renewal information (any more): stop asking.
            Ok(None) => {
                let _ = next_check(None).await;
                None
            }
            // Unreachable now: ask again in an hour, not at every tick.
            Err(e) => {
                tracing::warn!(certificate = %row.id, error = %e, "renewal information unavailable");
                let _ = next_check(Some(self.clock.now() + 3_600)).await;
                None
            }
        }
    }

    pub(super) async fn set_state(&self, id: &str, state: &str) -> Result<(), ApiError> {
        sqlx::query("UPDATE certificates SET state = ?, updated_at = ? WHERE id = ?")
            .bind(state)
            .bind(crate::store::now())
            .bind(id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Hosts served, the names a certificate for each should cover, and
    /// whether to order one automatically; the panel's own domain included.
    pub(super) async fn wishes(&self) -> Result<Vec<(String, Vec<String>, bool)>, ApiError> {
        let mut wishes = self.proxy.certificate_wishes().await?;
        if let Some(panel) = crate::settings::get(&self.db)
            .await
            .map_err(ApiError::Internal)?
            .panel_domain
        {
            if !wishes.iter().any(|(h, _, _)| *h == panel) {
                wishes.push((panel.clone(), vec![panel], true));
            }
        }
        Ok(wishes)
    }
}
