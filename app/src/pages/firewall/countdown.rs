//! The banner while an apply awaits confirmation: the seconds left, Confirm
//! and Revert now, and what happened in the end (confirmed, reverted, or
//! rolled back by berth when the time ran out).
//!
//! The confirmation must reach berth over a connection opened after the
//! apply: that is what proves the new rules still let this browser in.
//! berth closes the older connections half a second after applying, so the
//! browser opens a new one by itself; a confirmation that still rode an old
//! one (409 `stale_connection`) or was cut off with it is sent again.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::super::widgets::ErrorMessage;
use super::watch::FirewallWatch;
use crate::api::firewall::{ConfirmRequest, FirewallStatus};
use crate::client::{self, ClientError};

/// Sends again at most this many times, a second apart.
const RETRIES: u32 = 5;
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Worth sending again: the request rode a connection from before the
/// apply, or got no answer because berth had just closed that connection.
fn retryable(e: &ClientError) -> bool {
    e.status == 0 || (e.status == 409 && e.code == "stale_connection")
}

/// POSTs to `path` (with `body`, if any), again after `RETRY_AFTER` while
/// that is worth it; `attempt` counts the sends so far, for the page.
fn post_retrying(
    path: &'static str,
    body: Option<ConfirmRequest>,
    attempt: RwSignal<u32>,
    done: impl FnOnce(client::Result<FirewallStatus>) + 'static,
) {
    spawn_local(async move {
        if attempt.is_disposed() {
            return;
        }
        attempt.update(|n| *n += 1);
        let result = match &body {
            Some(b) => client::send::<_, FirewallStatus>("POST", path, b).await,
            None => client::send_empty::<FirewallStatus>("POST", path).await,
        };
        match result {
            Err(e)
                if retryable(&e) && attempt.try_get_untracked().is_some_and(|n| n <= RETRIES) =>
            {
                set_timeout(
                    move || post_retrying(path, body, attempt, done),
                    RETRY_AFTER,
                );
            }
            result => done(result),
        }
    });
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Confirmed(String),
    Reverted(String),
    RolledBack(String),
}

/// What the last apply came to, after the window closed without a
/// confirmation from this page.
pub(super) fn ended_text(s: &FirewallStatus) -> String {
    let Some(a) = &s.last_apply else {
        return "The confirmation window closed.".into();
    };
    let message = a.message.clone().unwrap_or_default();
    match a.state.as_str() {
        "rolled_back" => {
            format!("Not confirmed in time: berth restored the previous rules. {message}")
        }
        "confirmed" => format!("Revision {} was confirmed (from elsewhere).", a.revision),
        state => format!("Apply #{} ended {state}. {message}", a.id),
    }
    .trim_end()
    .to_string()
}

#[component]
pub fn CountdownBanner(
    /// Called once the apply is settled one way or the other.
    #[prop(into)]
    on_settled: Callback<()>,
) -> impl IntoView {
    let watch = expect_context::<FirewallWatch>();
    let left = watch.seconds_left();
    let error = RwSignal::new(None::<ClientError>);
    let busy = RwSignal::new(false);
    let attempt = RwSignal::new(0u32);
    let outcome = RwSignal::new(None::<Outcome>);
    let pending_id = Memo::new(move |_| {
        watch.status.with(|s| {
            s.as_ref()
                .and_then(|s| s.pending.as_ref().map(|p| p.apply_id))
        })
    });
    // A new apply replaces what the last one came to.
    Effect::new(move |_| {
        if pending_id.get().is_some() {
            outcome.set(None);
            error.set(None);
        }
    });
    watch.follow_deadline(left, move |s| {
        outcome.set(Some(Outcome::RolledBack(ended_text(&s))));
        on_settled.run(());
    });

    let finish = move |result: client::Result<FirewallStatus>,
                       ok: fn(&FirewallStatus) -> Outcome| {
        busy.set(false);
        attempt.set(0);
        match result {
            Ok(s) => {
                error.set(None);
                outcome.set(Some(ok(&s)));
                watch.set_status(s);
                on_settled.run(());
            }
            Err(e) => {
                // 410: too late, berth rolled back already; 404: nothing
                // pending any more. Either way the status says what is live.
                if matches!(e.status, 404 | 410) {
                    spawn_local(async move {
                        if let Ok(s) = watch.reload().await {
                            outcome.set(Some(Outcome::RolledBack(ended_text(&s))));
                            on_settled.run(());
                        }
                    });
                }
                error.set(Some(e));
            }
        }
    };
    let confirm = move |_| {
        let Some(apply_id) = pending_id.get_untracked() else {
            return;
        };
        busy.set(true);
        error.set(None);
        attempt.set(0);
        post_retrying(
            "/api/v1/firewall/confirm",
            Some(ConfirmRequest { apply_id }),
            attempt,
            move |r| {
                finish(r, |s| {
                    Outcome::Confirmed(match s.applied_revision {
                        Some(r) => format!("Confirmed: revision {r} stays live."),
                        None => "Confirmed: the new rules stay live.".into(),
                    })
                })
            },
        );
    };
    let revert = move |_| {
        busy.set(true);
        error.set(None);
        attempt.set(0);
        post_retrying("/api/v1/firewall/rollback", None, attempt, move |r| {
            finish(r, |_| {
                Outcome::Reverted("Reverted: berth restored the previous rules.".into())
            })
        });
    };

    view! {
        // Not a live region: the seconds would be read out every second.
        // Focus moves to Confirm instead, and the outcomes are statuses.
        <div>
            {move || pending_id.get().map(|_| {
                let button = NodeRef::<leptos::html::Button>::new();
                // The one thing to do now; Enter confirms.
                Effect::new(move |_| {
                    if let Some(b) = button.get() {
                        let _ = b.focus();
                    }
                });
                view! {
                    <div class="countdown" id="firewall-countdown" role="region" aria-label="Firewall rules awaiting confirmation">
                        <p>
                            <strong>
                                "Confirm the new rules within "
                                <span class="seconds" id="firewall-seconds">{move || left.get().unwrap_or(0)}</span>
                                " s or berth restores the previous ones."
                            </strong>
                        </p>
                        <p class="help">
                            "Confirming goes over a new connection: if it gets through, the new rules still let you in."
                        </p>
                        {move || (busy.get() && attempt.get() > 1).then(|| view! {
                            <p class="muted" id="confirm-retrying">
                                {format!("berth closed the older connections; trying again (attempt {} of {})…", attempt.get(), RETRIES + 1)}
                            </p>
                        })}
                        <div class="actions">
                            <button type="button" id="confirm-button" node_ref=button disabled=busy on:click=confirm>
                                {move || if busy.get() { "Working…" } else { "Confirm" }}
                            </button>
                            <button type="button" class="danger" id="revert-button" disabled=busy on:click=revert>
                                "Revert now"
                            </button>
                        </div>
                        <ErrorMessage error/>
                    </div>
                }
            })}
            {move || outcome.get().map(|o| match o {
                Outcome::Confirmed(m) => view! { <p class="success" role="status" id="firewall-confirmed">{m}</p> }.into_any(),
                Outcome::Reverted(m) => view! { <p class="notice" role="status" id="firewall-reverted">{m}</p> }.into_any(),
                Outcome::RolledBack(m) => view! { <p class="notice rolled-back" role="status" id="firewall-rolled-back">{m}</p> }.into_any(),
            })}
            // Errors after the banner has gone (e.g. a late 410).
            {move || (pending_id.get().is_none() && error.with(Option::is_some)).then(|| view! { <ErrorMessage error/> })}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::firewall::{ApplyRecord, Mode};

    fn error(status: u16, code: &str) -> ClientError {
        ClientError {
            status,
            code: code.into(),
            message: String::new(),
            field: None,
        }
    }

    #[test]
    fn only_old_or_cut_connections_are_tried_again() {
        assert!(retryable(&error(0, "network")));
        assert!(retryable(&error(409, "stale_connection")));
        assert!(!retryable(&error(409, "pending")));
        assert!(!retryable(&error(410, "expired")));
        assert!(!retryable(&error(403, "forbidden")));
    }

    #[test]
    fn a_rollback_is_told_with_berths_reason() {
        let mut s = FirewallStatus {
            available: true,
            backend: "nftables v1.0.9".into(),
            netns: None,
            enabled: true,
            mode: Mode::Standalone,
            revision: 4,
            applied_revision: Some(3),
            pending: None,
            last_apply: Some(ApplyRecord {
                id: 7,
                revision: 4,
                state: "rolled_back".into(),
                started_at: "2025-01-01T00:00:00Z".into(),
                finished_at: None,
                actor: "admin".into(),
                message: Some("not confirmed within 60 s".into()),
            }),
            drift: None,
            other_firewalls: Vec::new(),
            panel_port: 8443,
            your_address: "192.0.2.1".into(),
        };
        assert_eq!(
            ended_text(&s),
            "Not confirmed in time: berth restored the previous rules. not confirmed within 60 s"
        );
        s.last_apply = None;
        assert_eq!(ended_text(&s), "The confirmation window closed.");
    }
}
