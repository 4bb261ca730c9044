//! The firewall's status shared by the Firewall page and the frame, so that
//! an apply awaiting confirmation is announced on every page: leaving the
//! page must not hide that berth is about to roll back.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::use_location;

use crate::api::firewall::{FirewallStatus, PendingApply};
use crate::client;

const STATUS_PATH: &str = "/api/v1/firewall";

/// Provided once by the app; the frame loads it once, the Firewall page on
/// every visit and after every change.
#[derive(Clone, Copy)]
pub struct FirewallWatch {
    pub status: RwSignal<Option<FirewallStatus>>,
    /// When a pending apply rolls back, on the browser's clock (ms since
    /// the epoch). Taken from `seconds_left`, not from `deadline`, so the
    /// browser's and the host's clocks need not agree.
    deadline: RwSignal<Option<f64>>,
    /// Whether the frame asked already (whatever the answer was).
    asked: StoredValue<bool>,
}

impl FirewallWatch {
    pub fn new() -> Self {
        FirewallWatch {
            status: RwSignal::new(None),
            deadline: RwSignal::new(None),
            asked: StoredValue::new(false),
        }
    }

    pub fn set_status(&self, status: FirewallStatus) {
        self.deadline.set(status.pending.as_ref().map(ends_at));
        self.status.set(Some(status));
    }

    /// After an apply (or a 409 naming one): the banner appears at once,
    /// without a reload that could run into the connections being closed.
    pub fn set_pending(&self, pending: PendingApply) {
        self.deadline.set(Some(ends_at(&pending)));
        self.status.update(|s| {
            if let Some(s) = s {
                s.pending = Some(pending);
            }
        });
    }

    pub fn pending(&self) -> Option<PendingApply> {
        self.status
            .with(|s| s.as_ref().and_then(|s| s.pending.clone()))
    }

    /// GETs the status and keeps it.
    pub async fn reload(self) -> client::Result<FirewallStatus> {
        let status = client::get::<FirewallStatus>(STATUS_PATH).await?;
        if !self.status.is_disposed() {
            self.set_status(status.clone());
        }
        Ok(status)
    }

    /// Seconds until the pending apply rolls back (`None`: nothing pending),
    /// ticking once a second while something is.
    pub fn seconds_left(self) -> Signal<Option<u64>> {
        let now = RwSignal::new(now_ms());
        let deadline = self.deadline;
        Effect::new(move |_| {
            if deadline.with(Option::is_none) {
                return;
            }
            now.set(now_ms());
            let ticker =
                set_interval_with_handle(move || now.set(now_ms()), Duration::from_secs(1)).ok();
            on_cleanup(move || {
                if let Some(t) = ticker {
                    t.clear();
                }
            });
        });
        Signal::derive(move || {
            deadline
                .get()
                .map(|end| ((end - now.get()) / 1000.0).ceil().max(0.0) as u64)
        })
    }

    /// Once the countdown reaches zero: reloads until berth reports the
    /// outcome (it rolls back at the deadline, which may be a moment later
    /// than this clock says), then calls `settled` with the new status.
    pub fn follow_deadline(
        self,
        left: Signal<Option<u64>>,
        settled: impl Fn(FirewallStatus) + Copy + 'static,
    ) {
        let attempts = StoredValue::new(0u32);
        let busy = StoredValue::new(false);
        Effect::new(move |_| {
            if left.get() != Some(0) || busy.get_value() || attempts.get_value() >= MAX_POLLS {
                return;
            }
            busy.set_value(true);
            attempts.update_value(|n| *n += 1);
            set_timeout(
                move || {
                    spawn_local(async move {
                        if busy.is_disposed() {
                            return;
                        }
                        if let Ok(s) = self.reload().await {
                            if s.pending.is_none() {
                                attempts.set_value(0);
                                settled(s);
                            }
                        }
                        busy.set_value(false);
                    })
                },
                Duration::from_millis(1500),
            );
        });
    }
}

impl Default for FirewallWatch {
    fn default() -> Self {
        Self::new()
    }
}

/// Reloads after the deadline at most this many times in a row.
const MAX_POLLS: u32 = 10;

fn ends_at(p: &PendingApply) -> f64 {
    now_ms() + p.seconds_left as f64 * 1000.0
}

#[cfg(feature = "hydrate")]
fn now_ms() -> f64 {
    leptos::web_sys::js_sys::Date::now()
}

/// The server never counts down: nothing is pending while it renders.
#[cfg(not(feature = "hydrate"))]
fn now_ms() -> f64 {
    0.0
}

/// The small banner of the frame: a pending apply, its countdown and the
/// way to the Firewall page (which shows the full banner instead).
#[component]
pub fn PendingNotice(signed_in: Memo<bool>) -> impl IntoView {
    let Some(watch) = use_context::<FirewallWatch>() else {
        return ().into_any();
    };
    // Each page has its own frame, so the path is fixed for this one.
    if use_location()
        .pathname
        .get_untracked()
        .starts_with("/firewall")
    {
        return ().into_any();
    }
    // One GET per visit to the panel, not per page: the Firewall page keeps
    // the status fresh itself. A berth without a firewall answers an error,
    // which is nothing to show here.
    Effect::new(move |_| {
        if signed_in.get()
            && !watch.asked.get_value()
            && watch.status.with_untracked(Option::is_none)
        {
            watch.asked.set_value(true);
            spawn_local(async move {
                let _ = watch.reload().await;
            });
        }
    });
    let left = watch.seconds_left();
    // The notice is built once per apply; only the seconds in it tick.
    let pending = Memo::new(move |_| left.with(Option::is_some));
    let ended = RwSignal::new(None::<String>);
    watch.follow_deadline(left, move |s| {
        ended.set(Some(super::countdown::ended_text(&s)))
    });
    view! {
        {move || pending.get().then(|| view! {
            <p class="pending-notice" id="firewall-pending-notice">
                <strong>"Firewall rules awaiting confirmation: "</strong>
                "berth restores the previous ones in "
                <span class="seconds">{move || left.get().unwrap_or(0)}</span>
                " s. "
                <A href="/firewall">"Confirm or revert them"</A>
            </p>
        })}
        {move || ended.get().map(|m| view! {
            <p class="pending-notice" id="firewall-ended-notice" role="status">{m}</p>
        })}
    }
    .into_any()
}
