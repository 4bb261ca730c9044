//! One issuance or renewal: self-test, account, the ACME order, storing
//! the result and handing it to the proxy; a failure is recorded with its
//! back-off and announced.

use std::sync::Arc;

use app::api::ChallengeKind;
use sqlx::SqlitePool;

use super::{acme, dns, http01, key_purpose, pem, schedule, Certificates, Stored};
use crate::http::error::ApiError;
use crate::notify::Notice;

/// Records the steps of one attempt.
pub(super) struct StepLog {
    db: SqlitePool,
    id: String,
}

#[async_trait::async_trait]
impl acme::Progress for StepLog {
    async fn step(&self, step: &str, status: &str, detail: Option<String>) {
        let r = sqlx::query(
            "INSERT INTO certificate_steps (certificate_id, at, step, status, detail) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&self.id)
        .bind(crate::store::now())
        .bind(step)
        .bind(status)
        .bind(detail)
        .execute(&self.db)
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot record an issuance step");
        }
    }
}

impl Certificates {
    /// Whether an issuance or renewal of `id` is running now.
    pub fn is_attempting(&self, id: &str) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    pub(super) fn start(self: &Arc<Self>, id: String) {
        let me = self.clone();
        tokio::spawn(async move { me.attempt(&id).await });
    }

    /// One issuance or renewal, now. Never two at once for one certificate.
    pub async fn attempt(&self, id: &str) {
        self.claimed(id, false).await
    }

    /// The scheduler's attempt: decided again on a fresh read once the
    /// certificate is ours, since an attempt from the API may have finished
    /// (or moved the back-off) since the scheduler read its rows.
    pub(super) async fn attempt_if_due(&self, id: &str) {
        self.claimed(id, true).await
    }

    async fn claimed(&self, id: &str, only_if_due: bool) {
        if !self
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string())
        {
            return;
        }
        let now = self.clock.now();
        let due = !only_if_due
            || match self.row(id).await {
                Ok(r) => {
                    r.state != "retired"
                        && r.retry_at.is_none_or(|t| t <= now)
                        && (!r.has_chain
                            || r.renew_at.is_some_and(|t| t <= now)
                            || r.not_after.is_some_and(|t| t <= now))
                }
                Err(_) => false,
            };
        let outcome = if due {
            self.attempt_inner(id).await
        } else {
            Ok(())
        };
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Err(e) = outcome {
            tracing::error!(certificate = %id, error = %e, "certificate attempt could not be recorded");
        }
    }

    pub(super) async fn attempt_inner(&self, id: &str) -> Result<(), ApiError> {
        use acme::Progress;
        let row = match self.row(id).await {
            Ok(r) => r,
            Err(ApiError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if row.source != "acme" {
            return Ok(());
        }
        let now = crate::store::now();
        sqlx::query("DELETE FROM certificate_steps WHERE certificate_id = ?")
            .bind(id)
            .execute(&self.db)
            .await?;
        let state = if row.has_chain {
            row.state.as_str()
        } else {
            "issuing"
        };
        sqlx::query(
            "UPDATE certificates SET state = ?, last_attempt_at = ?, updated_at = ? WHERE id = ?",
        )
        .bind(state)
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&self.db)
        .await?;
        let log = StepLog {
            db: self.db.clone(),
            id: id.to_string(),
        };
        let result = self.issue(&row, &log).await;
        match result {
            Ok(()) => {
                log.step("install", "done", Some("served by the proxy".into()))
                    .await;
                Ok(())
            }
            Err(why) => self.record_failure(&row, &why).await,
        }
    }

    pub(super) async fn issue(&self, row: &Stored, log: &StepLog) -> Result<(), String> {
        use acme::Progress;
        let challenge = row.challenge.unwrap_or_default();
        let solver: Box<dyn acme::Solver> = match challenge {
            ChallengeKind::Http01 => {
                log.step("self-test", "running", None).await;
                if let Err(e) = http01::self_test(
                    &self.proxy,
                    &row.domains,
                    self.config.self_test_port,
                    self.config.resolver,
                )
                .await
                {
                    log.step("self-test", "failed", Some(e.clone())).await;
                    return Err(e);
                }
                log.step("self-test", "done", None).await;
                Box::new(http01::Http01::new(self.proxy.clone()))
            }
            ChallengeKind::Dns01 => Box::new(
                dns::solver(
                    &self.db,
                    &self.keys,
                    row.dns_provider.as_deref(),
                    self.config.resolver,
                )
                .await?,
            ),
        };
        let (account, url) = self.account(log).await?;
        let issued = acme::issue(
            &account,
            &url,
            &row.domains,
            row.key_type.unwrap_or_default(),
            row.ari_id.as_deref(),
            solver.as_ref(),
            log,
        )
        .await?;
        let chain = pem::parse_chain(&issued.chain_pem).map_err(|e| format!("{e:#}"))?;
        let facts = pem::facts(&chain[0]).map_err(|e| format!("{e:#}"))?;
        // Check before storing that what the CA sent goes with our key.
        pem::loaded(&issued.chain_pem, &issued.key_pem).map_err(|e| format!("{e:#}"))?;
        let (renew_at, reason, ari_check_at) = self
            .renewal_time(
                &account,
                &url,
                facts.ari_id.as_deref(),
                facts.not_before,
                facts.not_after,
            )
            .await;
        let now = crate::store::now();
        sqlx::query(
            "UPDATE certificates SET state = 'valid', chain_pem = ?, key_sealed = ?, issuer = ?, serial = ?, \
             not_before = ?, not_after = ?, fingerprint = ?, ari_id = ?, renew_at = ?, renew_reason = ?, \
             ari_check_at = ?, failures = 0, retry_at = NULL, last_error = NULL, updated_at = ? WHERE id = ?",
        )
        .bind(pem::chain_pem(&chain))
        .bind(self.keys.seal(&key_purpose(&row.id), issued.key_pem.as_bytes()))
        .bind(&facts.issuer)
        .bind(&facts.serial)
        .bind(facts.not_before)
        .bind(facts.not_after)
        .bind(&facts.fingerprint)
        .bind(&facts.ari_id)
        .bind(renew_at)
        .bind(reason)
        .bind(ari_check_at)
        .bind(now)
        .bind(&row.id)
        .execute(&self.db)
        .await
        .map_err(|e| e.to_string())?;
        log.step("install", "running", None).await;
        self.install().await
    }

    /// ARI's window when the CA has it, else two thirds of the lifetime.
    pub(super) async fn renewal_time(
        &self,
        account: &instant_acme::Account,
        url: &str,
        ari_id: Option<&str>,
        not_before: i64,
        not_after: i64,
    ) -> (i64, &'static str, Option<i64>) {
        let fallback = |check: Option<i64>| {
            (
                schedule::two_thirds(not_before, not_after, &mut rand::thread_rng()),
                "two-thirds",
                check,
            )
        };
        let Some(ari) = ari_id else {
            return fallback(None);
        };
        match acme::renewal_window(account, url, ari).await {
            // A window already over for a certificate just issued would
            // renew it again at once, forever: trust the lifetime now, and
            // ask the CA again in an hour.
            Ok(Some((_, end, _))) if end <= self.clock.now() => {
                tracing::warn!(
                    certificate = ari,
                    "the CA's renewal window is already over; using two thirds of the lifetime"
                );
                fallback(Some(self.clock.now() + 3_600))
            }
            Ok(Some((start, end, retry))) => (
                schedule::in_window(start, end, &mut rand::thread_rng()),
                "ari",
                Some(self.clock.now() + schedule::ari_recheck(retry)),
            ),
            // The CA has no renewal information.
            Ok(None) => fallback(None),
            Err(e) => {
                tracing::warn!(error = %e, "renewal information unavailable");
                fallback(Some(self.clock.now() + 3_600))
            }
        }
    }

    pub(super) async fn record_failure(&self, row: &Stored, why: &str) -> Result<(), ApiError> {
        let failures = row.failures + 1;
        let retry_at = self.clock.now() + schedule::backoff(failures);
        // A renewal that fails leaves the current certificate in service.
        let state = if row.has_chain { "valid" } else { "failed" };
        sqlx::query(
            "UPDATE certificates SET state = ?, failures = ?, retry_at = ?, renew_reason = CASE WHEN ? THEN renew_reason ELSE 'retry' END, \
             last_error = ?, updated_at = ? WHERE id = ?",
        )
        .bind(state)
        .bind(failures as i64)
        .bind(retry_at)
        .bind(row.has_chain)
        .bind(why)
        .bind(crate::store::now())
        .bind(&row.id)
        .execute(&self.db)
        .await?;
        tracing::warn!(certificate = %row.id, failures, error = %why, "certificate attempt failed");
        let renewal = row.has_chain;
        self.notifier
            .send(&Notice {
                event: if renewal {
                    "certificate.renewal_failed"
                } else {
                    "certificate.issuance_failed"
                }
                .into(),
                subject: format!(
                    "berth: {} for {} failed",
                    if renewal { "renewal" } else { "issuance" },
                    row.domains.join(", ")
                ),
                text: format!(
                    "{why}\n\nberth retries at {} (attempt {} failed in a row).",
                    crate::store::rfc3339(retry_at),
                    failures
                ),
                details: serde_json::json!({
                    "certificate": row.id,
                    "domains": row.domains,
                    "failures": failures,
                    "retry_at": crate::store::rfc3339(retry_at),
                    "not_after": row.not_after.map(crate::store::rfc3339),
                }),
            })
            .await;
        Ok(())
    }
}
