//! The dashboard's Backups card: per job, how its last run went and when a
//! restore of it was last proven to work; failing drills stand out.

use leptos::prelude::*;
use leptos_router::components::A;

use super::super::widgets::StatusBadge;
use super::list::verified_restore;
use super::{ago, run_tone, API};
use crate::api::backups::JobList;
use crate::client;

#[component]
pub fn BackupsCard() -> impl IntoView {
    let jobs =
        LocalResource::new(|| async { client::get::<JobList>(&format!("{API}/jobs")).await });
    view! {
        <section aria-labelledby="backups-heading" id="backups-card" data-testid="backups-card">
            <h2 id="backups-heading">"Backups"</h2>
            {move || match jobs.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                Some(Ok(list)) if list.jobs.is_empty() => view! {
                    <p class="muted">
                        "Nothing is backed up yet. "<A href="/backups/new">"Make a first backup job"</A>
                        " (berth itself is a good start)."
                    </p>
                }.into_any(),
                Some(Ok(list)) => {
                    let failing = list
                        .jobs
                        .iter()
                        .filter(|j| j.last_drill.as_ref().is_some_and(|d| d.status == "failed"))
                        .count();
                    view! {
                        {(failing > 0).then(|| view! {
                            <p class="error" role="alert" id="failing-drills">
                                {if failing == 1 {
                                    "1 job's latest restore drill failed.".to_string()
                                } else {
                                    format!("{failing} jobs' latest restore drills failed.")
                                }}
                            </p>
                        })}
                        <table class="data" id="dashboard-backups">
                            <thead><tr>
                                <th scope="col">"Job"</th>
                                <th scope="col">"Last run"</th>
                                <th scope="col">"Last verified restore"</th>
                            </tr></thead>
                            <tbody>
                                {list.jobs.into_iter().map(|j| {
                                    let href = format!("/backups/jobs/{}", j.id);
                                    let failed = j.last_drill.as_ref().is_some_and(|d| d.status == "failed");
                                    let last = match &j.last_run {
                                        Some(r) => view! {
                                            <StatusBadge word=r.status.clone() tone=run_tone(&r.status)
                                                title=r.error.clone().unwrap_or_default()/>
                                            <span class="muted">" "{ago(&r.started_at)}</span>
                                        }.into_any(),
                                        None => view! { <span class="muted">"never"</span> }.into_any(),
                                    };
                                    let verified = verified_restore(&j);
                                    let row = j.name.clone();
                                    view! {
                                        <tr data-job=row class=if failed { "failed" } else { "" }>
                                            <td><A href>{j.name}</A></td>
                                            <td>{last}</td>
                                            <td data-testid="dashboard-last-verified">{verified}</td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                        <p><A href="/backups">"All backup jobs"</A></p>
                    }.into_any()
                }
            }}
        </section>
    }
}
