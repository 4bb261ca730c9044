//! The firewall at a glance: on or off, the mode, whether nft can be used,
//! saved against live revision, drift, other firewalls on the host, the
//! address the lockout guard keeps in, and how the last apply ended.

use leptos::prelude::*;

use super::super::widgets::{StatusBadge, Tone};
use super::watch::FirewallWatch;
use crate::api::firewall::{ApplyRecord, FirewallStatus, Mode};

fn moment(ts: &str) -> String {
    ts.get(..16).unwrap_or(ts).replace('T', " ")
}

fn apply_tone(state: &str) -> Tone {
    match state {
        "confirmed" => Tone::Good,
        "failed" => Tone::Bad,
        "pending" | "rolled_back" => Tone::Busy,
        _ => Tone::Idle,
    }
}

/// "revision 5 saved, 4 live" and whether the saved one still has to be
/// applied.
fn revisions(s: &FirewallStatus) -> (String, bool) {
    match s.applied_revision {
        None if s.revision == 0 => ("no rules saved yet".into(), false),
        None => (
            format!("revision {} saved, never applied", s.revision),
            true,
        ),
        Some(live) if live == s.revision => (format!("revision {live} saved and live"), false),
        Some(live) => (format!("revision {} saved, {live} live", s.revision), true),
    }
}

fn mode_text(mode: Mode) -> &'static str {
    match mode {
        Mode::Standalone => "standalone: berth drops whatever no rule allows",
        Mode::Coexist => {
            "coexist: another firewall keeps the host's policy; berth's default drop covers Docker's published ports"
        }
    }
}

#[component]
pub fn StatusCard() -> impl IntoView {
    let watch = expect_context::<FirewallWatch>();
    move || {
        watch.status.get().map(|s| {
            let (revision_text, unapplied) = revisions(&s);
            let backend = if s.available {
                view! { <StatusBadge word="available" tone=Tone::Good/>" "{s.backend.clone()} }.into_any()
            } else {
                view! { <StatusBadge word="unavailable" tone=Tone::Bad/>" "{s.backend.clone()} }.into_any()
            };
            let coexist_hint = (s.mode == Mode::Standalone).then_some(
                " berth and another firewall both dropping by default is hard to reason about: consider coexist mode.",
            );
            view! {
                <section class="card stack" aria-labelledby="firewall-status-heading">
                    <h2 id="firewall-status-heading">"Status"</h2>
                    <dl class="settings" id="firewall-status">
                        <dt>"Firewall"</dt>
                        <dd id="firewall-state" data-enabled=if s.enabled { "true" } else { "false" }>
                            {if s.enabled {
                                view! { <StatusBadge word="enabled" tone=Tone::Good/>" default drop inbound" }.into_any()
                            } else {
                                view! { <StatusBadge word="disabled" tone=Tone::Idle/>" berth keeps no rules in the kernel" }.into_any()
                            }}
                        </dd>
                        <dt>"Mode"</dt>
                        <dd id="firewall-mode-status">{mode_text(s.mode)}</dd>
                        <dt>"Backend"</dt>
                        <dd id="firewall-backend">
                            {backend}
                            {s.netns.clone().map(|n| view! { " in network namespace "<code>{n}</code> })}
                        </dd>
                        <dt>"Revision"</dt>
                        <dd id="firewall-revision">
                            {revision_text}" "
                            {unapplied.then(|| view! {
                                <span class="badge needs-redeploy" id="firewall-unapplied">"unapplied changes"</span>
                            })}
                        </dd>
                        <dt>"You"</dt>
                        <dd id="your-address">
                            {format!("connecting from {}; the panel's port ", s.your_address)}
                            <code id="panel-port">{s.panel_port}</code>
                            " stays open to you: berth refuses rules that would shut you out."
                        </dd>
                        <dt>"Last apply"</dt>
                        <dd id="last-apply">{last_apply(s.last_apply.clone())}</dd>
                    </dl>
                    {s.drift.clone().map(|d| view! {
                        <p class="error" role="alert" id="firewall-drift">
                            {format!("Drift: {d}. berth loads its rules again.")}
                        </p>
                    })}
                    {(!s.other_firewalls.is_empty()).then(|| view! {
                        <div class="notice" id="other-firewalls">
                            <p>
                                <strong>"Other firewalls on this host:"</strong>
                                {coexist_hint}
                            </p>
                            <ul>
                                {s.other_firewalls.iter().map(|f| view! {
                                    <li data-firewall=f.name.clone()><strong>{f.name.clone()}</strong>" — "{f.detail.clone()}</li>
                                }).collect_view()}
                            </ul>
                        </div>
                    })}
                </section>
            }
        })
    }
}

fn last_apply(a: Option<ApplyRecord>) -> impl IntoView {
    match a {
        None => view! { "never" }.into_any(),
        Some(a) => {
            let when = moment(a.finished_at.as_deref().unwrap_or(&a.started_at));
            view! {
                <StatusBadge word=a.state.replace('_', " ") tone=apply_tone(&a.state)/>
                {format!(" #{} of revision {}, {when} by {}", a.id, a.revision, a.actor)}
                {a.message.map(|m| view! { <span class="apply-message">{format!(" — {m}")}</span> })}
            }
            .into_any()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(revision: i64, applied: Option<i64>) -> FirewallStatus {
        FirewallStatus {
            available: true,
            backend: "nftables v1.0.9".into(),
            netns: None,
            enabled: true,
            mode: Mode::Standalone,
            revision,
            applied_revision: applied,
            pending: None,
            last_apply: None,
            drift: None,
            other_firewalls: Vec::new(),
            panel_port: 8443,
            your_address: "192.0.2.1".into(),
        }
    }

    #[test]
    fn a_saved_revision_not_live_is_an_unapplied_change() {
        assert_eq!(
            revisions(&status(3, Some(3))),
            ("revision 3 saved and live".into(), false)
        );
        assert_eq!(
            revisions(&status(4, Some(3))),
            ("revision 4 saved, 3 live".into(), true)
        );
        assert_eq!(
            revisions(&status(1, None)),
            ("revision 1 saved, never applied".into(), true)
        );
        assert_eq!(
            revisions(&status(0, None)),
            ("no rules saved yet".into(), false)
        );
    }
}
