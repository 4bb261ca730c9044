//! The restore wizard for one archive: where to (over the original, or
//! into something new), then the job's name typed out and the password,
//! then the restore followed until it ends, with its log.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::super::widgets::{invalid, problem, FieldError, FormError, StatusBadge};
use super::super::Auth;
use super::{drill_tone, moment, size, API};
use crate::api::backups::{validate_identifier, Job, Restore, RestoreRequest, Run, Source};
use crate::client::{self, ClientError};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Where,
    Confirm,
    Progress,
}

/// What "original" and "new" mean for a source, and what the new thing's
/// name names (`None`: berth picks a new directory by itself).
struct Choices {
    original: &'static str,
    new: &'static str,
    name_label: Option<&'static str>,
    /// For `validate_identifier`'s messages.
    what: &'static str,
}

fn choices(source: &Source) -> Choices {
    match source {
        Source::Postgres { .. } | Source::PostgresApp { .. } => Choices {
            original: "The original database: its current contents are replaced",
            new: "A new database on the same server: nothing is replaced",
            name_label: Some("Name of the new database"),
            what: "database",
        },
        Source::Volume { .. } => Choices {
            original: "The original volume: the archive's files replace the current ones (files added since stay; stop the app first)",
            new: "A new volume: nothing is replaced",
            name_label: Some("Name of the new volume"),
            what: "volume",
        },
        Source::Berth => Choices {
            original: "berth's own data: its current store and settings are replaced",
            new: "A new directory beside berth's data: nothing is replaced",
            name_label: None,
            what: "directory",
        },
    }
}

/// The fields of the second step; errors naming others go back a step.
const CONFIRM_FIELDS: &[&str] = &["confirm", "password", "totp", "totp_code"];

#[component]
pub fn RestoreWizard(
    job: Job,
    run: Run,
    #[prop(into)] on_close: Callback<()>,
    /// Called when the restore has ended (the page reloads).
    #[prop(into)]
    on_done: Callback<()>,
) -> impl IntoView {
    let auth = expect_context::<Auth>();
    let step = RwSignal::new(Step::Where);
    let to = RwSignal::new("new".to_string());
    let name = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let totp = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ClientError>);
    let busy = RwSignal::new(false);
    let restore = RwSignal::new(None::<Restore>);
    let heading = NodeRef::<leptos::html::H2>::new();

    let c = choices(&job.source);
    let needs_name = c.name_label.is_some();
    let what = c.what;
    let job_name = StoredValue::new(job.name.clone());
    let run_id = StoredValue::new(run.id.clone());
    let asks_code = move || {
        auth.me.with(|m| m.as_ref().is_some_and(|m| m.totp_enabled))
            || error.with(|e| {
                e.as_ref().is_some_and(|e| {
                    e.code == "totp_required"
                        || matches!(e.field.as_deref(), Some("totp" | "totp_code"))
                })
            })
    };

    // The wizard opens where the admin clicked: move focus to it.
    Effect::new(move |_| {
        if let Some(h) = heading.get() {
            let _ = h.focus();
        }
    });

    let to_confirm = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if to.get_untracked() == "new" && needs_name {
            if let Err(m) = validate_identifier(name.get_untracked().trim(), what) {
                error.set(Some(problem("name", m)));
                return;
            }
        }
        error.set(None);
        step.set(Step::Confirm);
    };

    let start = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let new = to.get_untracked() == "new";
        let req = RestoreRequest {
            to: to.get_untracked(),
            name: (new && needs_name).then(|| name.get_untracked().trim().to_string()),
            confirm: confirm.get_untracked().trim().to_string(),
            password: password.get_untracked(),
            totp_code: Some(totp.get_untracked().trim().to_string()).filter(|t| !t.is_empty()),
        };
        busy.set(true);
        spawn_local(async move {
            let path = format!("{API}/runs/{}/restore", run_id.get_value());
            match client::send::<_, Restore>("POST", &path, &req).await {
                Ok(r) => {
                    error.set(None);
                    password.set(String::new());
                    totp.set(String::new());
                    let running = r.status == "running";
                    let id = r.id.clone();
                    restore.set(Some(r));
                    step.set(Step::Progress);
                    if running {
                        follow(id, restore, error, on_done);
                    } else {
                        on_done.run(());
                    }
                }
                Err(e) => {
                    if matches!(e.field.as_deref(), Some("to" | "name")) {
                        step.set(Step::Where);
                    }
                    error.set(Some(e));
                }
            }
            busy.set(false);
        });
    };

    let original_label = c.original;
    let new_label = c.new;
    let name_label = c.name_label;
    let title = format!(
        "Restore {} from {} ({})",
        job.name,
        moment(&run.started_at),
        size(run.size)
    );
    view! {
        <section class="restore-wizard notice" id="restore-wizard" data-testid="restore-wizard"
            aria-labelledby="restore-heading">
            <h2 id="restore-heading" tabindex="-1" node_ref=heading>{title}</h2>
            <ol class="steps" aria-label="Restore steps">
                <li aria-current=move || (step.get() == Step::Where).then_some("step")>"Where to"</li>
                <li aria-current=move || (step.get() == Step::Confirm).then_some("step")>"Confirm"</li>
                <li aria-current=move || (step.get() == Step::Progress).then_some("step")>"Restore"</li>
            </ol>
            <Show when=move || step.get() == Step::Where>
                <form class="stack" id="restore-where" on:submit=to_confirm>
                    <FormError error fields=&["name"]/>
                    <fieldset>
                        <legend>"Restore into"</legend>
                        <label class="check">
                            <input type="radio" name="restore-to" id="restore-to-new" value="new"
                                data-testid="restore-to-new"
                                prop:checked=move || to.get() == "new"
                                on:change=move |_| to.set("new".into())/>
                            {new_label}
                        </label>
                        <label class="check">
                            <input type="radio" name="restore-to" id="restore-to-original" value="original"
                                data-testid="restore-to-original"
                                prop:checked=move || to.get() == "original"
                                on:change=move |_| to.set("original".into())/>
                            {original_label}
                        </label>
                    </fieldset>
                    {move || name_label.filter(|_| to.get() == "new").map(|label| view! {
                        <label for="restore-name">{label}</label>
                        <input id="restore-name" data-testid="restore-name" autocomplete="off"
                            spellcheck="false" required
                            aria-invalid=invalid(error, "name") bind:value=name/>
                        <p class="help">"It must not exist yet."</p>
                        <FieldError error field="name"/>
                    })}
                    {move || (to.get() == "original").then(|| view! {
                        <p class="warning" role="alert">
                            "Restoring over the original replaces what is there now with this archive's contents. "
                            "Whatever changed since it was made is lost."
                        </p>
                    })}
                    <div class="actions">
                        <button type="submit" id="restore-next" data-testid="restore-next">"Next"</button>
                        <button type="button" class="secondary" on:click=move |_| on_close.run(())>"Cancel"</button>
                    </div>
                </form>
            </Show>
            <Show when=move || step.get() == Step::Confirm>
                <form class="stack" id="restore-confirm-form" on:submit=start>
                    <FormError error fields=CONFIRM_FIELDS/>
                    <p>
                        {move || if to.get() == "original" {
                            "This replaces the original's current contents.".to_string()
                        } else if needs_name {
                            format!("This restores into the new {what} {}.", name.get().trim())
                        } else {
                            format!("This restores into a new {what}.")
                        }}
                    </p>
                    <label for="restore-confirm">
                        "Type the job's name, "<code>{job_name.get_value()}</code>", to confirm"
                    </label>
                    <input id="restore-confirm" data-testid="restore-confirm" autocomplete="off"
                        spellcheck="false" required
                        aria-invalid=invalid(error, "confirm") bind:value=confirm/>
                    <FieldError error field="confirm"/>
                    <label for="restore-password">"Your password"</label>
                    <input id="restore-password" data-testid="restore-password" type="password"
                        autocomplete="current-password" required
                        aria-invalid=invalid(error, "password") bind:value=password/>
                    <FieldError error field="password"/>
                    {move || asks_code().then(|| view! {
                        <label for="restore-totp">"Two-factor code"</label>
                        <input id="restore-totp" data-testid="restore-totp" inputmode="numeric"
                            autocomplete="one-time-code"
                            aria-invalid=move || if invalid(error, "totp")() == "true" || invalid(error, "totp_code")() == "true" { "true" } else { "false" }
                            bind:value=totp/>
                        <FieldError error field="totp"/>
                        <FieldError error field="totp_code"/>
                    })}
                    <div class="actions">
                        <button type="submit" class="danger" id="restore-submit" data-testid="restore-submit"
                            disabled=move || busy.get() || confirm.with(|c| c.trim() != job_name.get_value())>
                            "Restore"
                        </button>
                        <button type="button" class="secondary" on:click=move |_| {
                            error.set(None);
                            step.set(Step::Where);
                        }>"Back"</button>
                        <button type="button" class="secondary" on:click=move |_| on_close.run(())>"Cancel"</button>
                    </div>
                </form>
            </Show>
            <Show when=move || step.get() == Step::Progress>
                <RestoreProgress restore error/>
                {move || restore.with(|r| r.as_ref().is_some_and(|r| r.status != "running")).then(|| view! {
                    <button type="button" class="secondary" id="restore-close" data-testid="restore-close"
                        on:click=move |_| on_close.run(())>"Close"</button>
                })}
            </Show>
        </section>
    }
}

/// Polls the restore every second until it ends.
fn follow(
    id: String,
    restore: RwSignal<Option<Restore>>,
    error: RwSignal<Option<ClientError>>,
    on_done: Callback<()>,
) {
    set_timeout(
        move || {
            if restore.is_disposed() {
                return;
            }
            spawn_local(async move {
                let result = client::get::<Restore>(&format!("{API}/restores/{id}")).await;
                if restore.is_disposed() {
                    return;
                }
                match result {
                    Ok(r) => {
                        let running = r.status == "running";
                        restore.set(Some(r));
                        if running {
                            follow(id, restore, error, on_done);
                        } else {
                            on_done.run(());
                        }
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        },
        Duration::from_secs(1),
    );
}

/// The bytes read so far against the archive's size, then the outcome
/// and the log.
#[component]
fn RestoreProgress(
    restore: RwSignal<Option<Restore>>,
    error: RwSignal<Option<ClientError>>,
) -> impl IntoView {
    view! {
        <FormError error fields=&[]/>
        {move || restore.get().map(|r| {
            let running = r.status == "running";
            let percent = if r.total > 0 {
                (r.bytes.clamp(0, r.total) * 100 / r.total).to_string()
            } else {
                "0".into()
            };
            let outcome = match r.status.as_str() {
                "succeeded" => format!("Restored into {}.", r.destination),
                "failed" => format!("Failed: {}", r.error.clone().unwrap_or_default()),
                _ => format!("Restoring into {}…", r.destination),
            };
            let outcome_class = match r.status.as_str() {
                "succeeded" => "success",
                "failed" => "error",
                _ => "",
            };
            view! {
                <p>
                    <StatusBadge word=r.status.clone() tone=drill_tone(&r.status)/>
                    " "<span class=outcome_class id="restore-result" data-testid="restore-result"
                        data-status=r.status.clone() role="status">{outcome}</span>
                </p>
                <label for="restore-progress">
                    {format!("{} of {} read ({percent} %)", size(r.bytes), size(r.total))}
                </label>
                <progress id="restore-progress" data-testid="restore-progress"
                    max=r.total.max(1).to_string() value=r.bytes.max(0).to_string()>
                    {format!("{percent} %")}
                </progress>
                {(!running || !r.log.is_empty()).then(|| view! {
                    <pre class="logs short" id="restore-log" data-testid="restore-log">{r.log.join("\n")}</pre>
                })}
            }
        })}
    }
}
