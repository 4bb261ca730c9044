//! `/backups/new` and `/backups/jobs/:id/edit`: the job form, with a live
//! preview of the next runs while a schedule or time zone is typed.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_params_map};

use super::super::widgets::{invalid, problem, ErrorMessage, FieldError, FormError};
use super::super::Frame;
use super::form::{from_job, to_input, JobForm, SOURCE_KINDS, TARGET_KINDS};
use super::{encode, source_kind_label, API};
use crate::api::backups::{validate_job_name, Job, SchedulePreview};
use crate::client::{self, ClientError};

#[component]
pub fn BackupJobNew() -> impl IntoView {
    view! {
        <Frame title="New backup job" body=|| view! { <JobEditor existing=None/> }/>
    }
}

#[component]
pub fn BackupJobEdit() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    move || {
        let id = id.get();
        view! { <Frame title="Edit backup job" body=move || view! { <EditBody id=id.clone()/> }/> }
    }
}

#[component]
fn EditBody(id: String) -> impl IntoView {
    let job = RwSignal::new(None::<Job>);
    let error = RwSignal::new(None::<ClientError>);
    let path = format!("{API}/jobs/{id}");
    Effect::new(move |_| {
        let path = path.clone();
        spawn_local(async move {
            match client::get::<Job>(&path).await {
                Ok(j) => job.set(Some(j)),
                Err(e) => error.set(Some(e)),
            }
        });
    });
    view! {
        <ErrorMessage error/>
        // Built once, when the job has arrived.
        {move || job.get().map(|j| view! { <JobEditor existing=Some(j)/> })}
    }
}

/// One signal per field, so each input binds to its own.
macro_rules! form_signals {
    ($($field:ident: $ty:ty),* $(,)?) => {
        #[derive(Clone, Copy)]
        struct Fields {
            $($field: RwSignal<$ty>),*
        }

        impl Fields {
            fn new(form: JobForm) -> Self {
                Fields { $($field: RwSignal::new(form.$field)),* }
            }

            fn read(&self) -> JobForm {
                JobForm { $($field: self.$field.get_untracked()),* }
            }
        }
    };
}

form_signals!(
    name: String,
    source_kind: String,
    dsn: String,
    app: String,
    database: String,
    db_user: String,
    volume: String,
    target_kind: String,
    local_path: String,
    sftp_host: String,
    sftp_port: String,
    sftp_user: String,
    sftp_path: String,
    sftp_private_key: String,
    sftp_password: String,
    sftp_host_key: String,
    s3_endpoint: String,
    s3_bucket: String,
    s3_region: String,
    s3_access_key: String,
    s3_secret_key: String,
    s3_prefix: String,
    schedule: String,
    timezone: String,
    keep_last: String,
    daily: String,
    weekly: String,
    monthly: String,
    compression_level: String,
    encrypt: bool,
    drill_schedule: String,
    drill_query: String,
    drill_expected: String,
    enabled: bool,
);

/// Fields that have an input (and so a place for their error) on the form.
const FIELDS: &[&str] = &[
    "name",
    "source.dsn",
    "source.app",
    "source.database",
    "source.user",
    "source.volume",
    "target.path",
    "target.host",
    "target.port",
    "target.user",
    "target.private_key",
    "target.password",
    "target.host_key",
    "target.endpoint",
    "target.bucket",
    "target.region",
    "target.access_key",
    "target.secret_key",
    "target.prefix",
    "schedule",
    "timezone",
    "retention",
    "compression_level",
    "drill.schedule",
    "drill.query",
    "drill.expected",
];

/// A few common IANA zones to pick from; any other can be typed.
const ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "Europe/London",
    "Europe/Paris",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Sydney",
];

fn target_kind_label(kind: &str) -> &'static str {
    match kind {
        "local" => "A directory on this host",
        "sftp" => "SFTP (another host over SSH)",
        "s3" => "S3-compatible bucket",
        _ => "unknown",
    }
}

/// The next runs of `schedule` in `timezone`, asked of berth 400 ms after
/// the last keystroke. An unreadable schedule or zone comes back as an
/// error naming `schedule` or `timezone`.
fn schedule_preview(
    schedule: RwSignal<String>,
    timezone: RwSignal<String>,
) -> (
    RwSignal<Option<SchedulePreview>>,
    RwSignal<Option<ClientError>>,
) {
    let preview = RwSignal::new(None::<SchedulePreview>);
    let error = RwSignal::new(None::<ClientError>);
    let generation = StoredValue::new(0u64);
    Effect::new(move |_| {
        let schedule = schedule.get().trim().to_string();
        let zone = Some(timezone.get().trim().to_string())
            .filter(|z| !z.is_empty())
            .unwrap_or_else(|| "UTC".into());
        let mine = generation.get_value() + 1;
        generation.set_value(mine);
        if schedule.is_empty() {
            preview.set(None);
            error.set(None);
            return;
        }
        set_timeout(
            move || {
                if generation.try_get_value() != Some(mine) {
                    return;
                }
                spawn_local(async move {
                    let path = format!(
                        "{API}/schedule-preview?schedule={}&timezone={}",
                        encode(&schedule),
                        encode(&zone)
                    );
                    let result = client::get::<SchedulePreview>(&path).await;
                    if generation.try_get_value() != Some(mine) {
                        return;
                    }
                    match result {
                        Ok(p) => {
                            error.set(None);
                            preview.set(Some(p));
                        }
                        Err(e) => {
                            preview.set(None);
                            error.set(Some(e));
                        }
                    }
                });
            },
            Duration::from_millis(400),
        );
    });
    (preview, error)
}

/// The previewed runs, or why there is no preview when the error names no
/// field (the field errors sit next to their inputs).
#[component]
fn PreviewList(
    id: &'static str,
    schedule: RwSignal<String>,
    timezone: RwSignal<String>,
    preview: RwSignal<Option<SchedulePreview>>,
    error: RwSignal<Option<ClientError>>,
    /// What an empty schedule means.
    empty: &'static str,
) -> impl IntoView {
    view! {
        <div class="schedule-preview" id=id data-testid=id aria-live="polite">
            {move || {
                if schedule.with(|s| s.trim().is_empty()) {
                    return view! { <p class="muted">{empty}</p> }.into_any();
                }
                if let Some(e) = error.get().filter(|e| e.field.is_none()) {
                    return view! { <p class="muted">{format!("No preview: {}", e.message)}</p> }.into_any();
                }
                match preview.get() {
                    Some(p) => {
                        let zone = timezone.get();
                        view! {
                            <p class="help">{format!("Next runs ({zone}):")}</p>
                            <ol class="next-runs">
                                {p.local.into_iter().map(|t| view! { <li>{t}</li> }).collect_view()}
                            </ol>
                        }
                        .into_any()
                    }
                    None => ().into_any(),
                }
            }}
        </div>
    }
}

/// The form for a new job (`existing` is `None`) or for changing one.
#[component]
fn JobEditor(existing: Option<Job>) -> impl IntoView {
    let navigate = use_navigate();
    let is_new = existing.is_none();
    let f = Fields::new(existing.as_ref().map(from_job).unwrap_or_default());
    let url = StoredValue::new(match &existing {
        Some(j) => format!("{API}/jobs/{}", j.id),
        None => format!("{API}/jobs"),
    });
    let cancel_href = match &existing {
        Some(j) => format!("/backups/jobs/{}", j.id),
        None => "/backups".to_string(),
    };
    let method = if is_new { "POST" } else { "PUT" };
    let error = RwSignal::new(None::<ClientError>);
    let busy = RwSignal::new(false);
    let (preview, preview_error) = schedule_preview(f.schedule, f.timezone);
    let (drill_preview, drill_preview_error) = schedule_preview(f.drill_schedule, f.timezone);

    // The name is checked as soon as the admin leaves the field.
    let check_name = move |_| {
        let name = f.name.get_untracked();
        match validate_job_name(name.trim()) {
            Err(m) if !name.is_empty() => error.set(Some(problem("name", m))),
            _ => {
                if error
                    .with_untracked(|e| e.as_ref().and_then(|e| e.field.as_deref()) == Some("name"))
                {
                    error.set(None);
                }
            }
        }
    };

    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let input = match to_input(&f.read()) {
            Ok(i) => i,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        busy.set(true);
        let navigate = navigate.clone();
        spawn_local(async move {
            match client::send::<_, Job>(method, &url.get_value(), &input).await {
                Ok(job) => {
                    error.set(None);
                    // Typed secrets leave the page once stored.
                    f.sftp_password.set(String::new());
                    f.sftp_private_key.set(String::new());
                    f.s3_secret_key.set(String::new());
                    navigate(&format!("/backups/jobs/{}", job.id), Default::default());
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };

    // Stored secrets are not shown; an empty field keeps them.
    let keep_hint = if is_new {
        ""
    } else {
        "stored: leave empty to keep"
    };
    let form_id = if is_new {
        "new-backup-job"
    } else {
        "edit-backup-job"
    };
    let source = move || f.source_kind.get();
    let target = move || f.target_kind.get();

    view! {
        <form id=form_id class="stack job-form" data-testid="job-form" on:submit=save novalidate>
            <FormError error fields=FIELDS/>

            <label for="job-name">"Name"</label>
            <input id="job-name" name="name" data-testid="job-name" required autocomplete="off"
                spellcheck="false" placeholder="shop-db" aria-describedby="job-name-help"
                aria-invalid=invalid(error, "name") bind:value=f.name on:change=check_name/>
            <p class="help" id="job-name-help">
                "Lower-case letters, digits and '-'; it names the job's directory at the target."
            </p>
            <FieldError error field="name"/>

            <fieldset>
                <legend>"What to back up"</legend>
                <label for="job-source-kind">"Source"</label>
                <select id="job-source-kind" data-testid="job-source-kind" bind:value=f.source_kind>
                    // `selected` as well: the options arrive after the value is set.
                    {SOURCE_KINDS.iter().map(|k| view! {
                        <option value=*k selected={f.source_kind.get_untracked() == *k}>{source_kind_label(k)}</option>
                    }).collect_view()}
                </select>
                {move || match source().as_str() {
                    "postgres" => view! {
                        <label for="job-dsn">"Connection address"</label>
                        <input id="job-dsn" class="mono" autocomplete="off" spellcheck="false"
                            placeholder="postgres://user:password@db.example.com:5432/shop"
                            aria-describedby="job-dsn-help"
                            aria-invalid=invalid(error, "source.dsn") bind:value=f.dsn/>
                        <p class="help" id="job-dsn-help">
                            "The password is stored encrypted and shown as ******** afterwards; leave that as it is to keep it."
                        </p>
                        <FieldError error field="source.dsn"/>
                    }.into_any(),
                    "postgres_app" => view! {
                        <label for="job-app">"App"</label>
                        <input id="job-app" autocomplete="off" spellcheck="false" placeholder="shop"
                            aria-invalid=invalid(error, "source.app") bind:value=f.app/>
                        <FieldError error field="source.app"/>
                        <label for="job-database">"Database"</label>
                        <input id="job-database" autocomplete="off" spellcheck="false" placeholder="shop"
                            aria-invalid=invalid(error, "source.database") bind:value=f.database/>
                        <FieldError error field="source.database"/>
                        <label for="job-db-user">"Database user (optional)"</label>
                        <input id="job-db-user" autocomplete="off" spellcheck="false" placeholder="postgres"
                            aria-invalid=invalid(error, "source.user") bind:value=f.db_user/>
                        <p class="help">"pg_dump runs inside the app's container as this role."</p>
                        <FieldError error field="source.user"/>
                    }.into_any(),
                    "volume" => view! {
                        <label for="job-volume">"Volume"</label>
                        <input id="job-volume" autocomplete="off" spellcheck="false" placeholder="shop_uploads"
                            aria-invalid=invalid(error, "source.volume") bind:value=f.volume/>
                        <FieldError error field="source.volume"/>
                    }.into_any(),
                    _ => view! {
                        <p class="help">
                            "A consistent copy of berth's store and settings. Sealed values stay sealed: "
                            "restoring them needs this berth's master key (or its recovery key)."
                        </p>
                    }.into_any(),
                }}
            </fieldset>

            <fieldset>
                <legend>"Where to keep it"</legend>
                <label for="job-target-kind">"Target"</label>
                <select id="job-target-kind" data-testid="job-target-kind" bind:value=f.target_kind>
                    {TARGET_KINDS.iter().map(|k| view! {
                        <option value=*k selected={f.target_kind.get_untracked() == *k}>{target_kind_label(k)}</option>
                    }).collect_view()}
                </select>
                {move || match target().as_str() {
                    "sftp" => view! {
                        <div class="field-grid">
                            <div>
                                <label for="job-sftp-host">"Host"</label>
                                <input id="job-sftp-host" autocomplete="off" spellcheck="false"
                                    placeholder="backup.example.com"
                                    aria-invalid=invalid(error, "target.host") bind:value=f.sftp_host/>
                                <FieldError error field="target.host"/>
                            </div>
                            <div>
                                <label for="job-sftp-port">"Port"</label>
                                <input id="job-sftp-port" inputmode="numeric"
                                    aria-invalid=invalid(error, "target.port") bind:value=f.sftp_port/>
                                <FieldError error field="target.port"/>
                            </div>
                            <div>
                                <label for="job-sftp-user">"User"</label>
                                <input id="job-sftp-user" autocomplete="off" spellcheck="false"
                                    aria-invalid=invalid(error, "target.user") bind:value=f.sftp_user/>
                                <FieldError error field="target.user"/>
                            </div>
                            <div>
                                <label for="job-sftp-path">"Directory"</label>
                                <input id="job-sftp-path" autocomplete="off" spellcheck="false"
                                    placeholder="/srv/backups"
                                    aria-invalid=invalid(error, "target.path") bind:value=f.sftp_path/>
                                <FieldError error field="target.path"/>
                            </div>
                        </div>
                        <label for="job-sftp-key">"Private key (OpenSSH PEM)"</label>
                        <textarea id="job-sftp-key" class="mono" rows="4" spellcheck="false"
                            autocomplete="off" placeholder=keep_hint
                            aria-invalid=invalid(error, "target.private_key")
                            bind:value=f.sftp_private_key></textarea>
                        <FieldError error field="target.private_key"/>
                        <label for="job-sftp-password">"Password"</label>
                        <input id="job-sftp-password" type="password" autocomplete="new-password"
                            placeholder=keep_hint
                            aria-invalid=invalid(error, "target.password") bind:value=f.sftp_password/>
                        <p class="help">"A key or a password; both are stored encrypted and never shown again."</p>
                        <FieldError error field="target.password"/>
                        <label for="job-sftp-host-key">"Host key (optional)"</label>
                        <input id="job-sftp-host-key" class="mono" autocomplete="off" spellcheck="false"
                            placeholder="ssh-ed25519 AAAA…" aria-describedby="job-sftp-host-key-help"
                            aria-invalid=invalid(error, "target.host_key") bind:value=f.sftp_host_key/>
                        <p class="help" id="job-sftp-host-key-help">
                            "Left empty, berth trusts the key the server shows the first time and refuses any other afterwards."
                        </p>
                        <FieldError error field="target.host_key"/>
                    }.into_any(),
                    "s3" => view! {
                        <label for="job-s3-endpoint">"Endpoint"</label>
                        <input id="job-s3-endpoint" type="url" autocomplete="off" spellcheck="false"
                            placeholder="https://s3.eu-central-1.amazonaws.com"
                            aria-invalid=invalid(error, "target.endpoint") bind:value=f.s3_endpoint/>
                        <FieldError error field="target.endpoint"/>
                        <div class="field-grid">
                            <div>
                                <label for="job-s3-bucket">"Bucket"</label>
                                <input id="job-s3-bucket" autocomplete="off" spellcheck="false"
                                    aria-invalid=invalid(error, "target.bucket") bind:value=f.s3_bucket/>
                                <FieldError error field="target.bucket"/>
                            </div>
                            <div>
                                <label for="job-s3-region">"Region"</label>
                                <input id="job-s3-region" autocomplete="off" spellcheck="false"
                                    aria-invalid=invalid(error, "target.region") bind:value=f.s3_region/>
                                <FieldError error field="target.region"/>
                            </div>
                            <div>
                                <label for="job-s3-prefix">"Prefix (optional)"</label>
                                <input id="job-s3-prefix" autocomplete="off" spellcheck="false" placeholder="berth"
                                    aria-invalid=invalid(error, "target.prefix") bind:value=f.s3_prefix/>
                                <FieldError error field="target.prefix"/>
                            </div>
                        </div>
                        <label for="job-s3-access-key">"Access key"</label>
                        <input id="job-s3-access-key" autocomplete="off" spellcheck="false"
                            aria-invalid=invalid(error, "target.access_key") bind:value=f.s3_access_key/>
                        <FieldError error field="target.access_key"/>
                        <label for="job-s3-secret-key">"Secret key"</label>
                        <input id="job-s3-secret-key" type="password" autocomplete="new-password"
                            placeholder=keep_hint
                            aria-invalid=invalid(error, "target.secret_key") bind:value=f.s3_secret_key/>
                        <p class="help">"Stored encrypted and never shown again."</p>
                        <FieldError error field="target.secret_key"/>
                    }.into_any(),
                    _ => view! {
                        <label for="job-local-path">"Directory (optional)"</label>
                        <input id="job-local-path" data-testid="job-local-path" autocomplete="off"
                            spellcheck="false" placeholder="DATA_DIR/backups"
                            aria-describedby="job-local-path-help"
                            aria-invalid=invalid(error, "target.path") bind:value=f.local_path/>
                        <p class="help" id="job-local-path-help">
                            "On the same disk as what it backs up, a copy protects against mistakes, not against losing the disk: "
                            "prefer SFTP or S3 for anything you cannot lose."
                        </p>
                        <FieldError error field="target.path"/>
                    }.into_any(),
                }}
            </fieldset>

            <fieldset>
                <legend>"When"</legend>
                <div class="field-grid">
                    <div>
                        <label for="job-schedule">"Schedule (cron: minute hour day month weekday)"</label>
                        <input id="job-schedule" data-testid="job-schedule" class="mono" autocomplete="off"
                            spellcheck="false" placeholder="0 3 * * *"
                            aria-describedby="job-schedule-help schedule-preview"
                            aria-invalid=move || {
                                if invalid(error, "schedule")() == "true" || invalid(preview_error, "schedule")() == "true" { "true" } else { "false" }
                            }
                            bind:value=f.schedule/>
                        <p class="help" id="job-schedule-help">"Empty: the job runs only when asked."</p>
                        <FieldError error field="schedule"/>
                        <FieldError error=preview_error field="schedule"/>
                    </div>
                    <div>
                        <label for="job-timezone">"Time zone"</label>
                        <input id="job-timezone" data-testid="job-timezone" list="job-zones" autocomplete="off"
                            spellcheck="false"
                            aria-invalid=move || {
                                if invalid(error, "timezone")() == "true" || invalid(preview_error, "timezone")() == "true" { "true" } else { "false" }
                            }
                            bind:value=f.timezone/>
                        <datalist id="job-zones">
                            {ZONES.iter().map(|z| view! { <option value=*z></option> }).collect_view()}
                        </datalist>
                        <FieldError error field="timezone"/>
                        <FieldError error=preview_error field="timezone"/>
                    </div>
                </div>
                <PreviewList id="schedule-preview" schedule=f.schedule timezone=f.timezone
                    preview error=preview_error empty="Runs only when asked (Run now)."/>
                <label class="check">
                    <input type="checkbox" id="job-enabled" data-testid="job-enabled" bind:checked=f.enabled/>
                    "Enabled (a paused job keeps its archives and runs only when asked)"
                </label>
            </fieldset>

            <fieldset>
                <legend>"How long to keep"</legend>
                <p class="help">
                    "An archive stays while any rule keeps it: the newest N, plus the newest of each of the last days, "
                    "ISO weeks and months (in the job's time zone). The newest verified archive is never deleted."
                </p>
                <div class="field-grid retention">
                    <div>
                        <label for="job-keep-last">"Newest"</label>
                        <input id="job-keep-last" type="number" min="0" inputmode="numeric"
                            aria-invalid=invalid(error, "retention.keep_last") bind:value=f.keep_last/>
                    </div>
                    <div>
                        <label for="job-daily">"Daily"</label>
                        <input id="job-daily" type="number" min="0" inputmode="numeric"
                            aria-invalid=invalid(error, "retention.daily") bind:value=f.daily/>
                    </div>
                    <div>
                        <label for="job-weekly">"Weekly"</label>
                        <input id="job-weekly" type="number" min="0" inputmode="numeric"
                            aria-invalid=invalid(error, "retention.weekly") bind:value=f.weekly/>
                    </div>
                    <div>
                        <label for="job-monthly">"Monthly"</label>
                        <input id="job-monthly" type="number" min="0" inputmode="numeric"
                            aria-invalid=invalid(error, "retention.monthly") bind:value=f.monthly/>
                    </div>
                </div>
                <FieldError error field="retention"/>
            </fieldset>

            <fieldset>
                <legend>"Archive"</legend>
                <label for="job-level">"Compression level (zstd, 1 fast – 19 small)"</label>
                <input id="job-level" type="number" min="1" max="19" inputmode="numeric"
                    aria-invalid=invalid(error, "compression_level") bind:value=f.compression_level/>
                <FieldError error field="compression_level"/>
                <label class="check">
                    <input type="checkbox" id="job-encrypt" data-testid="job-encrypt" bind:checked=f.encrypt/>
                    "Encrypt to the backup key (age)"
                </label>
                {move || (!f.encrypt.get()).then(|| view! {
                    <p class="warning" role="alert" id="job-encrypt-warning">
                        "Not encrypted: anyone who can read the target can read these archives, "
                        "including any secrets and personal data in them."
                    </p>
                })}
            </fieldset>

            <fieldset>
                <legend>"Restore drills"</legend>
                <p class="help">
                    "On its own schedule berth restores the newest archive into a scratch database or volume, "
                    "checks it and drops it: the dashboard's \"last verified restore\" comes from these."
                </p>
                <label for="job-drill-schedule">"Drill schedule (cron, same time zone)"</label>
                <input id="job-drill-schedule" data-testid="job-drill-schedule" class="mono"
                    autocomplete="off" spellcheck="false" placeholder="30 4 * * 0"
                    aria-describedby="drill-preview"
                    aria-invalid=move || {
                        if invalid(error, "drill.schedule")() == "true" || invalid(drill_preview_error, "schedule")() == "true" { "true" } else { "false" }
                    }
                    bind:value=f.drill_schedule/>
                <FieldError error field="drill.schedule"/>
                <FieldError error=drill_preview_error field="schedule"/>
                <PreviewList id="drill-preview" schedule=f.drill_schedule timezone=f.timezone
                    preview=drill_preview error=drill_preview_error empty="No drills: only Drill now."/>
                {move || matches!(source().as_str(), "postgres" | "postgres_app").then(|| view! {
                    <label for="job-drill-query">"Check query (optional)"</label>
                    <textarea id="job-drill-query" class="mono" rows="2" spellcheck="false"
                        placeholder="select count(*) > 0 from orders"
                        aria-invalid=invalid(error, "drill.query") bind:value=f.drill_query></textarea>
                    <FieldError error field="drill.query"/>
                    <label for="job-drill-expected">"Expected first value"</label>
                    <input id="job-drill-expected" autocomplete="off" spellcheck="false" placeholder="t"
                        aria-invalid=invalid(error, "drill.expected") bind:value=f.drill_expected/>
                    <FieldError error field="drill.expected"/>
                })}
            </fieldset>

            <div class="actions">
                <button type="submit" id="job-save" data-testid="job-save" disabled=busy>
                    {if is_new { "Create job" } else { "Save changes" }}
                </button>
                <a href=cancel_href class="button">"Cancel"</a>
            </div>
        </form>
    }
}
