//! `/backups/jobs/:id`: one job — its settings, Run now and Drill now, the
//! run history (a running run followed every second), what retention would
//! delete, the drills with their checks, and the restore wizard.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map};

use super::super::widgets::{Confirm, ErrorMessage, StatusBadge};
use super::super::Frame;
use super::list::verified_restore;
use super::restore::RestoreWizard;
use super::{
    ago, drill_tone, duration, moment, run_tone, schedule_text, short_sum, size, source_text,
    target_text, API,
};
use crate::api::backups::{Drill, DrillList, Job, PrunePreview, Run, RunList, Started};
use crate::client::{self, ClientError};

/// How often a running run or drill is asked about.
const POLL: Duration = Duration::from_secs(1);
/// A drill still running after this many polls is left to the next reload.
const MAX_DRILL_POLLS: u32 = 1800;

#[component]
pub fn BackupJobPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    move || {
        let id = id.get();
        view! { <Frame title="Backup job" body=move || view! { <JobBody id=id.clone()/> }/> }
    }
}

/// Everything the page shows about a job, and the polling that keeps it
/// current. All signals belong to the page: once it is left they are
/// disposed, and every pending poll stops at its next check.
#[derive(Clone, Copy)]
struct JobData {
    id: StoredValue<String>,
    job: RwSignal<Option<Job>>,
    runs: RwSignal<Vec<Run>>,
    drills: RwSignal<Vec<Drill>>,
    prune: RwSignal<Option<Result<PrunePreview, ClientError>>>,
    error: RwSignal<Option<ClientError>>,
    /// Runs being polled, so a reload does not start a second poll.
    following: RwSignal<Vec<String>>,
    /// The drill started here, and how it ended.
    drill_started: RwSignal<Option<String>>,
    drill_result: RwSignal<Option<Drill>>,
}

impl JobData {
    fn new(id: String) -> Self {
        JobData {
            id: StoredValue::new(id),
            job: RwSignal::new(None),
            runs: RwSignal::new(Vec::new()),
            drills: RwSignal::new(Vec::new()),
            prune: RwSignal::new(None),
            error: RwSignal::new(None),
            following: RwSignal::new(Vec::new()),
            drill_started: RwSignal::new(None),
            drill_result: RwSignal::new(None),
        }
    }

    fn gone(self) -> bool {
        self.job.is_disposed()
    }

    fn reload(self) {
        spawn_local(self.load());
    }

    async fn load(self) {
        let id = self.id.get_value();
        let job = client::get::<Job>(&format!("{API}/jobs/{id}")).await;
        if self.gone() {
            return;
        }
        match job {
            Ok(j) => self.job.set(Some(j)),
            Err(e) => {
                self.error.set(Some(e));
                return;
            }
        }
        let runs = client::get::<RunList>(&format!("{API}/runs?job={id}&limit=50")).await;
        let drills = client::get::<DrillList>(&format!("{API}/drills?job={id}")).await;
        let prune = client::get::<PrunePreview>(&format!("{API}/jobs/{id}/prune-preview")).await;
        if self.gone() {
            return;
        }
        match runs {
            Ok(list) => {
                for r in list.runs.iter().filter(|r| r.status == "running") {
                    self.follow_run(r.id.clone());
                }
                self.runs.set(list.runs);
            }
            Err(e) => self.error.set(Some(e)),
        }
        match drills {
            Ok(list) => {
                let running = list.drills.iter().find(|d| d.status == "running");
                if let (Some(d), None) = (running, self.drill_started.get_untracked()) {
                    self.follow_drill(d.id.clone());
                }
                self.drills.set(list.drills);
            }
            Err(e) => self.error.set(Some(e)),
        }
        self.prune.set(Some(prune));
    }

    /// Polls run `run_id` every second until it ends, then reloads the page.
    fn follow_run(self, run_id: String) {
        if self.following.with_untracked(|f| f.contains(&run_id)) {
            return;
        }
        self.following.update(|f| f.push(run_id.clone()));
        self.poll_run(run_id);
    }

    fn poll_run(self, run_id: String) {
        set_timeout(
            move || {
                if self.gone() {
                    return;
                }
                spawn_local(async move {
                    let run = client::get::<Run>(&format!("{API}/runs/{run_id}")).await;
                    if self.gone() {
                        return;
                    }
                    match run {
                        Ok(run) => {
                            let running = run.status == "running";
                            self.runs
                                .update(|rs| match rs.iter_mut().find(|r| r.id == run.id) {
                                    Some(r) => *r = run,
                                    None => rs.insert(0, run),
                                });
                            if running {
                                self.poll_run(run_id);
                            } else {
                                self.following.update(|f| f.retain(|id| *id != run_id));
                                self.reload();
                            }
                        }
                        Err(e) => {
                            self.following.update(|f| f.retain(|id| *id != run_id));
                            self.error.set(Some(e));
                        }
                    }
                });
            },
            POLL,
        );
    }

    /// Polls the job's drills every second until drill `drill_id` has
    /// ended, then reloads the page (the job's last verified restore).
    fn follow_drill(self, drill_id: String) {
        self.drill_started.set(Some(drill_id.clone()));
        self.drill_result.set(None);
        self.poll_drill(drill_id, 0);
    }

    fn poll_drill(self, drill_id: String, polls: u32) {
        set_timeout(
            move || {
                if self.gone() {
                    return;
                }
                spawn_local(async move {
                    let id = self.id.get_value();
                    let drills = client::get::<DrillList>(&format!("{API}/drills?job={id}")).await;
                    if self.gone() {
                        return;
                    }
                    match drills {
                        Ok(list) => {
                            let done = list
                                .drills
                                .iter()
                                .find(|d| d.id == drill_id && d.status != "running")
                                .cloned();
                            self.drills.set(list.drills);
                            match done {
                                Some(d) => {
                                    self.drill_started.set(None);
                                    self.drill_result.set(Some(d));
                                    self.reload();
                                }
                                None if polls < MAX_DRILL_POLLS => {
                                    self.poll_drill(drill_id, polls + 1)
                                }
                                None => self.drill_started.set(None),
                            }
                        }
                        Err(e) => {
                            self.drill_started.set(None);
                            self.error.set(Some(e));
                        }
                    }
                });
            },
            POLL,
        );
    }

    fn running_run(self) -> Option<Run> {
        self.runs
            .with(|rs| rs.iter().find(|r| r.status == "running").cloned())
    }
}

#[component]
fn JobBody(id: String) -> impl IntoView {
    let data = JobData::new(id);
    let error = data.error;
    let starting = RwSignal::new(false);
    let drilling = RwSignal::new(false);
    let restoring = RwSignal::new(None::<Run>);
    Effect::new(move |_| data.reload());

    let run_now = move |_| {
        starting.set(true);
        spawn_local(async move {
            let path = format!("{API}/jobs/{}/run", data.id.get_value());
            match client::send_empty::<Started>("POST", &path).await {
                Ok(s) => {
                    error.set(None);
                    data.follow_run(s.id);
                }
                // 409: one is already under way; show it.
                Err(e) => {
                    if e.status == 409 {
                        data.reload();
                    }
                    error.set(Some(e));
                }
            }
            starting.set(false);
        });
    };
    let drill_now = move |_| {
        drilling.set(true);
        spawn_local(async move {
            let path = format!("{API}/jobs/{}/drill", data.id.get_value());
            match client::send_empty::<Started>("POST", &path).await {
                Ok(s) => {
                    error.set(None);
                    data.follow_drill(s.id);
                }
                Err(e) => error.set(Some(e)),
            }
            drilling.set(false);
        });
    };
    let run_busy =
        move || starting.get() || data.runs.with(|r| r.iter().any(|r| r.status == "running"));
    let drill_busy = move || drilling.get() || data.drill_started.with(Option::is_some);
    // What the delete section needs; it is not rebuilt by every reload.
    let loaded_job = Memo::new(move |_| {
        data.job
            .with(|j| j.as_ref().map(|j| (j.id.clone(), j.name.clone())))
    });

    view! {
        <p><A href="/backups">"← All backup jobs"</A></p>
        <ErrorMessage error/>
        {move || data.job.get().map(|job| view! { <Summary job/> })}
        <div class="actions job-actions">
            <button type="button" id="run-now" data-testid="run-now" disabled=run_busy on:click=run_now>
                {move || if run_busy() { "Running…" } else { "Run now" }}
            </button>
            <button type="button" class="secondary" id="drill-now" data-testid="drill-now"
                disabled=drill_busy on:click=drill_now>
                {move || if drill_busy() { "Drilling…" } else { "Drill now" }}
            </button>
            {move || data.job.get().map(|j| view! {
                <a class="button" href=format!("/backups/jobs/{}/edit", j.id) id="edit-job" data-testid="edit-job">"Edit"</a>
            })}
        </div>
        <div role="status" aria-live="polite">
            {move || data.drill_started.get().map(|_| view! {
                <p class="muted" id="drill-progress" aria-busy="true">"Drill running: restoring the newest archive into a scratch copy and checking it…"</p>
            })}
            {move || data.drill_result.get().map(|d| {
                let tone = drill_tone(&d.status);
                let detail = d.error.clone().unwrap_or_default();
                view! {
                    <p id="drill-result" data-testid="drill-result" data-status=d.status.clone()>
                        "Drill "<StatusBadge word=d.status.clone() tone/>" "{detail}
                    </p>
                }
            })}
        </div>
        <RunProgress data/>
        // Untracked: the reloads while a restore runs must not rebuild it.
        {move || restoring.get().and_then(|run| data.job.get_untracked().map(|job| view! {
            <RestoreWizard job run
                on_close=move || restoring.set(None)
                on_done=move || data.reload()/>
        }))}
        <RunHistory data restoring/>
        <PrunePanel data/>
        <DrillHistory data/>
        {move || loaded_job.get().map(|(id, name)| view! { <DeleteJob id name/> })}
    }
}

/// What the job is and when it runs.
#[component]
fn Summary(job: Job) -> impl IntoView {
    let r = job.retention;
    let retention = format!(
        "newest {}, daily {}, weekly {}, monthly {}",
        r.keep_last, r.daily, r.weekly, r.monthly
    );
    let drills = match &job.drill {
        Some(d) => format!(
            "{} ({}){}",
            d.schedule,
            job.timezone,
            job.next_drill
                .as_deref()
                .map(|n| format!(", next {}", moment(n)))
                .unwrap_or_default()
        ),
        None => "none scheduled".into(),
    };
    let next: Vec<String> = job.next_runs.iter().map(|t| moment(t)).collect();
    let verified = verified_restore(&job);
    view! {
        <section aria-labelledby="job-heading">
            <h2 id="job-heading" data-testid="job-title">
                {job.name.clone()}
                {(!job.enabled).then(|| view! { " "<span class="badge">"paused"</span> })}
            </h2>
            <dl class="settings" id="job-summary">
                <dt>"Source"</dt><dd>{source_text(&job.source)}</dd>
                <dt>"Target"</dt><dd>{target_text(&job.target)}</dd>
                <dt>"Schedule"</dt>
                <dd>
                    <code>{schedule_text(&job)}</code>
                    {(!next.is_empty()).then(|| view! {
                        <span class="muted">{format!(" — next (UTC): {}", next.join(", "))}</span>
                    })}
                </dd>
                <dt>"Retention"</dt><dd>{retention}</dd>
                <dt>"Archive"</dt>
                <dd>
                    {format!("zstd level {}, ", job.compression_level)}
                    {if job.encrypt {
                        view! { <span>"encrypted"</span> }.into_any()
                    } else {
                        view! { <span class="error">"not encrypted"</span> }.into_any()
                    }}
                </dd>
                <dt>"Drills"</dt><dd>{drills}</dd>
                <dt>"Last verified restore"</dt><dd data-testid="job-last-verified">{verified}</dd>
            </dl>
        </section>
    }
}

/// The run under way: bytes so far and the newest log lines.
#[component]
fn RunProgress(data: JobData) -> impl IntoView {
    move || {
        data.running_run().map(|r| {
            let tail: Vec<String> = r.log.iter().rev().take(12).rev().cloned().collect();
            view! {
                <section class="progress" id="run-progress" data-testid="run-progress" aria-busy="true"
                    aria-labelledby="run-progress-heading">
                    <h2 id="run-progress-heading">"Backing up…"</h2>
                    <p>
                        {format!("Started {} ({}). Read from the source: ", moment(&r.started_at), r.trigger)}
                        <strong data-testid="run-source-bytes">{size(r.source_bytes)}</strong>
                        "; stored at the target: "
                        <strong data-testid="run-size">{size(r.size)}</strong>"."
                    </p>
                    {(!tail.is_empty()).then(|| view! {
                        <pre class="logs short">{tail.join("\n")}</pre>
                    })}
                </section>
            }
        })
    }
}

#[component]
fn RunHistory(data: JobData, restoring: RwSignal<Option<Run>>) -> impl IntoView {
    let expanded = RwSignal::new(Vec::<String>::new());
    view! {
        <section aria-labelledby="runs-heading">
            <h2 id="runs-heading">"Runs"</h2>
            <div class="table-scroll">
            <table class="data runs" id="backup-runs" data-testid="backup-runs">
                <thead><tr>
                    <th scope="col">"Status"</th>
                    <th scope="col">"Trigger"</th>
                    <th scope="col">"Started"</th>
                    <th scope="col">"Duration"</th>
                    <th scope="col">"Source"</th>
                    <th scope="col">"Stored"</th>
                    <th scope="col">"SHA-256"</th>
                    <th scope="col">"Verified"</th>
                    <th scope="col">"Pruned"</th>
                    <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                </tr></thead>
                <tbody>
                    <For each=move || data.runs.get()
                        key=|r| (r.id.clone(), r.status.clone(), r.size, r.source_bytes, r.log.len(), r.pruned_at.clone(), r.verified)
                        let:run>
                        <RunRow run expanded restoring/>
                    </For>
                </tbody>
            </table>
            </div>
            {move || data.runs.with(Vec::is_empty).then(|| view! {
                <p class="muted">"No runs yet: Run now makes the first archive."</p>
            })}
        </section>
    }
}

/// A run's row, and its log below it while expanded.
#[component]
fn RunRow(
    run: Run,
    expanded: RwSignal<Vec<String>>,
    restoring: RwSignal<Option<Run>>,
) -> impl IntoView {
    let id = StoredValue::new(run.id.clone());
    let is_open = move || expanded.with(|e| id.with_value(|id| e.contains(id)));
    let toggle = move |_| {
        let id = id.get_value();
        expanded.update(|e| {
            if let Some(i) = e.iter().position(|x| *x == id) {
                e.remove(i);
            } else {
                e.push(id);
            }
        })
    };
    let restorable = run.status == "succeeded" && run.pruned_at.is_none();
    let log_id = format!("run-log-{}", run.id);
    let controls = log_id.clone();
    let mut log = run.log.join("\n");
    if let Some(e) = &run.error {
        log.push_str(&format!("\nerror: {e}"));
    }
    let duration_text = run.duration_ms.map(duration).unwrap_or_else(|| "—".into());
    let stored = if run.status == "running" && run.size == 0 {
        "—".to_string()
    } else {
        size(run.size)
    };
    let sum = run.sha256.clone().unwrap_or_default();
    let for_restore = run.clone();
    let label = format!("Restore the run of {}", moment(&run.started_at));
    view! {
        <tr data-run=run.id.clone() data-status=run.status.clone() data-testid="run-row">
            <td data-testid="run-status">
                <StatusBadge word=run.status.clone() tone=run_tone(&run.status)
                    title=run.error.clone().unwrap_or_default()/>
            </td>
            <td>{run.trigger.clone()}</td>
            <td title=run.started_at.clone()>{moment(&run.started_at)}<br/><span class="muted">{ago(&run.started_at)}</span></td>
            <td>{duration_text}</td>
            <td>{size(run.source_bytes)}</td>
            <td>{stored}</td>
            <td><code title=sum.clone()>{short_sum(&sum).to_string()}</code></td>
            <td data-testid="run-verified">{if run.verified { "yes" } else { "no" }}</td>
            <td>{run.pruned_at.as_deref().map(moment).unwrap_or_else(|| "—".into())}</td>
            <td class="row-actions">
                <button type="button" class="small secondary" data-action="log"
                    aria-expanded=move || if is_open() { "true" } else { "false" }
                    aria-controls=controls on:click=toggle>"Log"</button>
                {restorable.then(|| view! {
                    <button type="button" class="small" data-action="restore" data-testid="restore-run"
                        aria-label=label
                        on:click=move |_| restoring.set(Some(for_restore.clone()))>"Restore…"</button>
                })}
            </td>
        </tr>
        {move || is_open().then(|| view! {
            <tr class="log-row">
                <td colspan="10">
                    <pre class="logs short" id=log_id.clone() data-testid="run-log">{log.clone()}</pre>
                </td>
            </tr>
        })}
    }
}

/// What retention would delete now, and why each kept archive stays.
#[component]
fn PrunePanel(data: JobData) -> impl IntoView {
    view! {
        <section aria-labelledby="prune-heading">
            <h2 id="prune-heading">"Retention"</h2>
            {move || match data.prune.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="muted">{format!("No preview: {}", e.message)}</p> }.into_any(),
                Some(Ok(p)) => {
                    let delete = if p.delete.is_empty() {
                        view! { <p id="prune-delete" data-testid="prune-delete">"Retention will delete nothing now."</p> }.into_any()
                    } else {
                        view! {
                            <p>"Retention will delete:"</p>
                            <ul id="prune-delete" data-testid="prune-delete">
                                {p.delete.into_iter().map(|e| view! {
                                    <li data-run=e.run_id.clone()>{format!("{} ({})", moment(&e.started_at), size(e.size))}</li>
                                }).collect_view()}
                            </ul>
                        }.into_any()
                    };
                    view! {
                        {delete}
                        {(!p.keep.is_empty()).then(|| view! {
                            <p>"Kept:"</p>
                            <ul id="prune-keep" data-testid="prune-keep">
                                {p.keep.into_iter().map(|e| view! {
                                    <li data-run=e.run_id.clone()>
                                        {format!("{} ({}) — ", moment(&e.started_at), size(e.size))}
                                        <span class="muted">{keep_reasons(&e.reasons)}</span>
                                    </li>
                                }).collect_view()}
                            </ul>
                        })}
                    }.into_any()
                }
            }}
        </section>
    }
}

/// The API's reasons for keeping an archive, in words.
fn keep_reasons(reasons: &[String]) -> String {
    reasons
        .iter()
        .map(|r| match r.as_str() {
            "last" => "one of the newest",
            "daily" => "newest of its day",
            "weekly" => "newest of its week",
            "monthly" => "newest of its month",
            "newest_verified" => "newest verified",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[component]
fn DrillHistory(data: JobData) -> impl IntoView {
    view! {
        <section aria-labelledby="drills-heading">
            <h2 id="drills-heading">"Restore drills"</h2>
            <div class="table-scroll">
            <table class="data drills" id="backup-drills" data-testid="backup-drills">
                <thead><tr>
                    <th scope="col">"Status"</th>
                    <th scope="col">"Started"</th>
                    <th scope="col">"Finished"</th>
                    <th scope="col">"Archive"</th>
                    <th scope="col">"Checks"</th>
                </tr></thead>
                <tbody>
                    <For each=move || data.drills.get()
                        key=|d| (d.id.clone(), d.status.clone(), d.checks.len())
                        let:drill>
                        <DrillRow drill/>
                    </For>
                </tbody>
            </table>
            </div>
            {move || data.drills.with(Vec::is_empty).then(|| view! {
                <p class="muted">"No drills yet: Drill now restores the newest archive into a scratch copy and checks it."</p>
            })}
        </section>
    }
}

#[component]
fn DrillRow(drill: Drill) -> impl IntoView {
    let class = if drill.status == "failed" {
        "failed"
    } else {
        ""
    };
    view! {
        <tr data-drill=drill.id.clone() data-status=drill.status.clone() data-testid="drill-row" class=class>
            <td data-testid="drill-status">
                <StatusBadge word=drill.status.clone() tone=drill_tone(&drill.status)
                    title=drill.error.clone().unwrap_or_default()/>
            </td>
            <td>{moment(&drill.started_at)}</td>
            <td>{drill.finished_at.as_deref().map(moment).unwrap_or_else(|| "—".into())}</td>
            <td><code>{drill.run_id.as_deref().map(|r| r.get(..8).unwrap_or(r).to_string()).unwrap_or_else(|| "—".into())}</code></td>
            <td>
                <ul class="checks">
                    {drill.checks.into_iter().map(|c| {
                        let (mark, tone) = if c.passed { ("✓", "good") } else { ("✗", "bad") };
                        let check = c.name.clone();
                        view! {
                            <li data-check=check data-passed=if c.passed { "true" } else { "false" }>
                                <span class=format!("state {tone}") aria-label=if c.passed { "passed" } else { "failed" }>{mark}</span>
                                " "<strong>{c.name}</strong>" "{c.detail}
                            </li>
                        }
                    }).collect_view()}
                </ul>
                {drill.error.map(|e| view! { <p class="error">{e}</p> })}
            </td>
        </tr>
    }
}

/// Deleting the job, and optionally its archives at the target.
#[component]
fn DeleteJob(id: String, name: String) -> impl IntoView {
    let navigate = use_navigate();
    let confirming = RwSignal::new(false);
    let with_archives = RwSignal::new(false);
    let error = RwSignal::new(None::<ClientError>);
    let id = StoredValue::new(id);
    let delete = move || {
        let navigate = navigate.clone();
        let path = format!(
            "{API}/jobs/{}{}",
            id.get_value(),
            if with_archives.get_untracked() {
                "?delete_archives=true"
            } else {
                ""
            }
        );
        confirming.set(false);
        spawn_local(async move {
            match client::send_no_content::<()>("DELETE", &path, None).await {
                Ok(()) => navigate("/backups", Default::default()),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <section aria-labelledby="delete-heading">
            <h2 id="delete-heading">"Delete"</h2>
            <ErrorMessage error/>
            <label class="check">
                <input type="checkbox" id="delete-archives" bind:checked=with_archives/>
                "Also delete its archives at the target"
            </label>
            {move || {
                let name = name.clone();
                let delete = delete.clone();
                if confirming.get() {
                    let message = if with_archives.get() {
                        format!("Delete job {name} and all its archives? They cannot be restored afterwards.")
                    } else {
                        format!("Delete job {name}? Its archives stay at the target.")
                    };
                    view! {
                        <Confirm message confirm_label="Delete job" confirm_id="confirm-delete-job"
                            on_confirm=move || delete() on_cancel=move || confirming.set(false)/>
                    }.into_any()
                } else {
                    view! {
                        <button type="button" class="danger" id="delete-job"
                            on:click=move |_| confirming.set(true)>"Delete job…"</button>
                    }.into_any()
                }
            }}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_reasons_read_as_words() {
        assert_eq!(
            keep_reasons(&["last".into(), "newest_verified".into()]),
            "one of the newest, newest verified"
        );
        assert_eq!(keep_reasons(&["custom".into()]), "custom");
    }
}
