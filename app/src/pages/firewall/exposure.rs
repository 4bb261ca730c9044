//! The exposure report: every listening host port and every port a
//! container publishes, and whether the outside can reach it under the
//! rules — the question a firewall is there to answer.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::super::widgets::{ErrorMessage, StatusBadge, Tone};
use super::Warnings;
use crate::api::firewall::{Exposure, ExposureReport};
use crate::client::{self, ClientError};

/// Open to anyone is what deserves a look; loopback-only and blocked
/// ports are out of reach.
fn reach_tone(reachable: &str) -> Tone {
    match reachable {
        "open" => Tone::Busy,
        "restricted" => Tone::Good,
        _ => Tone::Idle,
    }
}

/// Which rule decides, as the editor numbers rows (from 1).
fn deciding_rule(rule: Option<usize>) -> String {
    match rule {
        Some(i) => format!("#{}", i + 1),
        None => "default policy".into(),
    }
}

#[component]
pub fn ExposureTable(
    /// Bumped when the saved or live rules change: the report is reloaded.
    changed: RwSignal<u64>,
) -> impl IntoView {
    let report = RwSignal::new(None::<ExposureReport>);
    let error = RwSignal::new(None::<ClientError>);
    let loading = RwSignal::new(false);
    let load = move || {
        loading.set(true);
        spawn_local(async move {
            match client::get::<ExposureReport>("/api/v1/firewall/exposure").await {
                Ok(r) => {
                    error.set(None);
                    report.set(Some(r));
                }
                Err(e) => error.set(Some(e)),
            }
            loading.set(false);
        });
    };
    Effect::new(move |_| {
        changed.track();
        load();
    });

    view! {
        <section aria-labelledby="exposure-heading">
            <div class="section-head">
                <h2 id="exposure-heading">"Exposure"</h2>
                <button type="button" class="small secondary" id="exposure-reload" disabled=loading
                    on:click=move |_| load()>"Reload"</button>
            </div>
            <ErrorMessage error/>
            {move || report.get().map(|r| {
                let judged = match (r.enabled, r.applied) {
                    (false, _) => "The firewall is off: whatever listens on a public address is reachable.",
                    (true, true) => "Judged against the live rules.",
                    (true, false) => "Judged against the saved rules, which are not live yet.",
                };
                let nothing = r.ports.is_empty().then(|| view! {
                    <p class="muted" id="no-exposure">"No port listens on this host and no container publishes one."</p>
                });
                view! {
                    <p class="help" id="exposure-basis">{judged}</p>
                    <Warnings warnings=r.warnings id="exposure-warnings"/>
                    <table class="data" id="exposure-table">
                        <thead>
                            <tr>
                                <th scope="col">"Port"</th>
                                <th scope="col">"Address"</th>
                                <th scope="col">"Kind"</th>
                                <th scope="col">"Owner"</th>
                                <th scope="col">"Reachable"</th>
                                <th scope="col">"Allowed from"</th>
                                <th scope="col">"Rule"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {r.ports.into_iter().map(|p| view! { <ExposureRow port=p/> }).collect_view()}
                        </tbody>
                    </table>
                    {nothing}
                }
            })}
        </section>
    }
}

#[component]
fn ExposureRow(port: Exposure) -> impl IntoView {
    let Exposure {
        protocol,
        port,
        address,
        kind,
        owner,
        reachable,
        allowed_from,
        rule,
    } = port;
    view! {
        <tr data-port=port.to_string() data-protocol=protocol.clone() data-reachable=reachable.clone()>
            <td><code>{format!("{port}/{protocol}")}</code></td>
            <td><code>{address}</code></td>
            <td>{kind}</td>
            <td>{owner}</td>
            <td class="reachable"><StatusBadge word=reachable.clone() tone=reach_tone(&reachable)/></td>
            <td>{allowed_from.join(", ")}</td>
            <td class="rule" data-rule=rule.map(|i| i.to_string())>{deciding_rule(rule)}</td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_numbered_as_in_the_editor() {
        assert_eq!(deciding_rule(Some(0)), "#1");
        assert_eq!(deciding_rule(None), "default policy");
        assert_eq!(reach_tone("open"), Tone::Busy);
        assert_eq!(reach_tone("local"), Tone::Idle);
    }
}
