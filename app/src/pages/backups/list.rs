//! `/backups`: every job at a glance (what, where, when, how its last run
//! went, when a restore was last proven to work) and the backup key.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;

use super::super::widgets::{ErrorMessage, StatusBadge, Tone};
use super::super::Frame;
use super::key::BackupKeyPanel;
use super::{
    ago, drill_tone, moment, run_tone, schedule_text, size, source_text, target_text, API,
};
use crate::api::backups::{Job, JobList};
use crate::client::{self, ClientError};

#[component]
pub fn Backups() -> impl IntoView {
    view! { <Frame title="Backups" body=BackupsBody/> }
}

#[component]
fn BackupsBody() -> impl IntoView {
    let jobs = RwSignal::new(Vec::<Job>::new());
    let recipient = RwSignal::new(None::<String>);
    let loaded = RwSignal::new(false);
    let error = RwSignal::new(None::<ClientError>);

    // While a job runs, the listing is refreshed every few seconds so its
    // row settles by itself.
    let reload = move || {
        spawn_local(async move {
            reload_jobs(jobs, recipient, loaded, error).await;
        })
    };
    Effect::new(move |_| reload());

    view! {
        <p class="muted">
            "Each job backs up one database, volume or berth itself to a directory, an SFTP host or an S3 bucket, "
            "on a schedule, encrypted, and keeps what its retention says. Restore drills prove the archives restore."
        </p>
        <ErrorMessage error/>
        <section aria-labelledby="jobs-heading">
            <div class="section-head">
                <h2 id="jobs-heading">"Jobs"</h2>
                <a href="/backups/new" class="button" id="new-backup-job" data-testid="new-backup-job">"New job"</a>
            </div>
            <div class="table-scroll">
            <table class="data" id="backup-jobs" data-testid="backup-jobs">
                <thead><tr>
                    <th scope="col">"Name"</th>
                    <th scope="col">"Source"</th>
                    <th scope="col">"Target"</th>
                    <th scope="col">"Schedule"</th>
                    <th scope="col">"Last run"</th>
                    <th scope="col">"Last verified restore"</th>
                </tr></thead>
                <tbody>
                    <For each=move || jobs.get()
                        key=|j| (j.id.clone(), j.updated_at.clone(), j.running.clone(),
                            j.last_run.as_ref().map(|r| (r.id.clone(), r.status.clone())),
                            j.last_drill.as_ref().map(|d| (d.id.clone(), d.status.clone())))
                        let:job>
                        <JobRow job/>
                    </For>
                </tbody>
            </table>
            </div>
            {move || (loaded.get() && jobs.with(Vec::is_empty)).then(|| view! {
                <p class="muted" id="no-backup-jobs">
                    "No backup jobs yet. A good first one: berth itself, to keep its settings and secrets safe."
                </p>
            })}
        </section>
        <section aria-labelledby="backup-key-heading">
            <h2 id="backup-key-heading">"Backup key"</h2>
            <BackupKeyPanel recipient/>
        </section>
    }
}

/// Loads the listing, and again in 3 s while any job is running.
async fn reload_jobs(
    jobs: RwSignal<Vec<Job>>,
    recipient: RwSignal<Option<String>>,
    loaded: RwSignal<bool>,
    error: RwSignal<Option<ClientError>>,
) {
    let result = client::get::<JobList>(&format!("{API}/jobs")).await;
    if jobs.is_disposed() {
        return;
    }
    match result {
        Ok(list) => {
            error.set(None);
            let running = list.jobs.iter().any(|j| j.running.is_some());
            jobs.set(list.jobs);
            if list.recipient.is_some() {
                recipient.set(list.recipient);
            }
            loaded.set(true);
            if running {
                set_timeout(
                    move || {
                        if !jobs.is_disposed() {
                            spawn_local(reload_jobs(jobs, recipient, loaded, error));
                        }
                    },
                    Duration::from_secs(3),
                );
            }
        }
        Err(e) => error.set(Some(e)),
    }
}

#[component]
fn JobRow(job: Job) -> impl IntoView {
    let href = format!("/backups/jobs/{}", job.id);
    let next = job
        .next_runs
        .first()
        .map(|t| format!("next {}", moment(t)))
        .unwrap_or_default();
    let paused = !job.enabled;
    let last_run = match &job.last_run {
        Some(r) => {
            let detail = if r.status == "succeeded" {
                format!("{} · {}", size(r.size), ago(&r.started_at))
            } else {
                ago(&r.started_at)
            };
            view! {
                <StatusBadge word=r.status.clone() tone=run_tone(&r.status)
                    title=r.error.clone().unwrap_or_default()/>
                <span class="muted">" "{detail}</span>
            }
            .into_any()
        }
        None => view! { <span class="muted">"never"</span> }.into_any(),
    };
    let verified = verified_restore(&job);
    let row = job.name.clone();
    let name = job.name.clone();
    view! {
        <tr data-job=row data-testid="backup-job-row">
            <td>
                <A href>{name}</A>
                {paused.then(|| view! { " "<span class="badge">"paused"</span> })}
                {job.running.is_some().then(|| view! {
                    " "<span class="state busy" data-testid="job-running" aria-busy="true">"running…"</span>
                })}
            </td>
            <td>{source_text(&job.source)}</td>
            <td>{target_text(&job.target)}</td>
            <td><code>{schedule_text(&job)}</code><br/><span class="muted">{next}</span></td>
            <td data-testid="job-last-run">{last_run}</td>
            <td data-testid="job-last-verified">{verified}</td>
        </tr>
    }
}

/// "passed 2 d ago", or "never"; a failing newest drill is shown in red,
/// with when a restore last worked.
pub(super) fn verified_restore(job: &Job) -> AnyView {
    let failed = job
        .last_drill
        .as_ref()
        .filter(|d| d.status == "failed")
        .map(|d| {
            let why = d
                .error
                .clone()
                .or_else(|| {
                    d.checks
                        .iter()
                        .find(|c| !c.passed)
                        .map(|c| format!("{}: {}", c.name, c.detail))
                })
                .unwrap_or_default();
            (ago(&d.started_at), why)
        });
    let passed = job
        .last_verified_restore
        .as_ref()
        .map(|d| ago(d.finished_at.as_deref().unwrap_or(&d.started_at)));
    view! {
        {failed.map(|(when, why)| view! {
            <StatusBadge word="drill failed" tone=Tone::Bad title=why/>
            <span class="error">" "{when}</span><br/>
        })}
        {match passed {
            Some(when) => view! {
                <StatusBadge word="passed" tone=drill_tone("passed")/>
                <span class="muted">" "{when}</span>
            }.into_any(),
            None => view! { <span class="muted" data-verified="never">"never"</span> }.into_any(),
        }}
    }
    .into_any()
}
