//! Firewall: the status of berth's nftables table, the rules editor with
//! presets, the plan and its apply, the countdown that makes an apply which
//! shuts the admin out undo itself, and the report of what is exposed.
//!
//! The page only talks to the API; it never decides on its own whether
//! rules are safe (berth's lockout guard and nft do).

mod countdown;
mod exposure;
mod form;
mod plan;
mod rules;
mod status;
mod watch;

pub use watch::{FirewallWatch, PendingNotice};

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::widgets::ErrorMessage;
use super::Frame;
use crate::client::ClientError;
use countdown::CountdownBanner;
use exposure::ExposureTable;
use plan::PlanPanel;
use rules::RulesEditor;
use status::StatusCard;

#[component]
pub fn Firewall() -> impl IntoView {
    view! { <Frame title="Firewall" body=FirewallBody/> }
}

#[component]
fn FirewallBody() -> impl IntoView {
    let watch = expect_context::<FirewallWatch>();
    let error = RwSignal::new(None::<ClientError>);
    // Bumped after every change of the saved or live rules: the plan on
    // show is then out of date and the exposure report is reloaded.
    let changed = RwSignal::new(0u64);
    let dirty = RwSignal::new(false);

    let reload_status = move || {
        spawn_local(async move {
            match watch.reload().await {
                Ok(_) => error.set(None),
                Err(e) => error.set(Some(e)),
            }
        })
    };
    Effect::new(move |_| reload_status());
    let bump = move || changed.update(|n| *n += 1);

    view! {
        <p class="muted">
            "berth keeps its own nftables table: inbound connections to this host and to the ports containers publish "
            "go through these rules. Saving stores them; applying loads them, and they stay only once you confirm."
        </p>
        <ErrorMessage error/>
        <CountdownBanner on_settled=move || bump()/>
        <StatusCard/>
        <RulesEditor dirty on_saved=move || {
            reload_status();
            bump();
        }/>
        <PlanPanel changed dirty on_conflict=move || reload_status()/>
        <ExposureTable changed/>
    }
}

/// Things worth a second look, as a list (nothing when there are none).
#[component]
fn Warnings(warnings: Vec<String>, id: &'static str) -> impl IntoView {
    (!warnings.is_empty()).then(|| {
        view! {
            <ul class="warnings" id=id>
                {warnings.into_iter().map(|w| view! { <li>{w}</li> }).collect_view()}
            </ul>
        }
    })
}
