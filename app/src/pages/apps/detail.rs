//! One app: status and why (and whether it needs a redeploy), its container
//! and the environment it runs with (secret values masked), the last apply,
//! actions, its secrets at a glance, the settings editor (spec as JSON,
//! previewed as a plan before applying), the plan to converge after drift,
//! live logs and resource charts.

use leptos::either::{Either, EitherOf3};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map};

use super::super::widgets::{
    invalid, problem, short_id, AppStatusBadge, Confirm, ErrorMessage, PlanBox,
};
use super::super::Frame;
use super::live::{LogsPanel, StatsPanel};
use super::spec_lines::port_label;
use super::{redeploy_reasons, NeedsRedeployBadge};
use crate::api::{App, AppSpec, AppStatus, ApplyResult, EnvEntry, Plan, SecretList};
use crate::client::{self, ClientError};

#[component]
pub fn AppPage() -> impl IntoView {
    let params = use_params_map();
    let name = Memo::new(move |_| params.read().get("name").unwrap_or_default());
    // A new name is a new page: streams of the previous app are closed.
    move || {
        let name = name.get();
        let title = name.clone();
        view! { <Frame title body=move || view! { <AppBody name=name.clone()/> }/> }
    }
}

/// The spec as the editor shows it. The API leaves the secret fields out
/// while they are empty or off; the editor adds them at the end, so that
/// they can be found and edited.
fn pretty(spec: &AppSpec) -> String {
    let text = serde_json::to_string_pretty(spec).unwrap_or_default();
    let mut extra = Vec::new();
    if spec.secret_groups.is_empty() {
        extra.push("  \"secret_groups\": []");
    }
    if !spec.redeploy_on_secret_change {
        extra.push("  \"redeploy_on_secret_change\": false");
    }
    match text.strip_suffix("\n}") {
        Some(body) if !extra.is_empty() => format!("{body},\n{}\n}}", extra.join(",\n")),
        _ => text,
    }
}

#[component]
fn AppBody(name: String) -> impl IntoView {
    let app = RwSignal::new(None::<App>);
    let error = RwSignal::new(None::<ClientError>);
    let busy = RwSignal::new(false);
    let converge = RwSignal::new(None::<Plan>);
    let base = StoredValue::new(format!("/api/v1/apps/{name}"));
    let url = move |suffix: &str| format!("{}{suffix}", base.get_value());

    // The editor is filled when the app loads and after each saved change,
    // never while the admin is typing.
    let spec_text = RwSignal::new(String::new());

    let show = move |a: App| {
        if a.status == AppStatus::Drifted {
            spawn_local(async move {
                match client::get::<Plan>(&url("/plan")).await {
                    Ok(p) => converge.set(Some(p)),
                    Err(e) => error.set(Some(e)),
                }
            });
        } else {
            converge.set(None);
        }
        app.set(Some(a));
    };
    let load = move |refill_editor: bool| {
        spawn_local(async move {
            match client::get::<App>(&url("")).await {
                Ok(a) => {
                    if refill_editor {
                        spec_text.set(pretty(&a.spec));
                    }
                    show(a);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    Effect::new(move |_| load(true));

    // POST /apps/{name}/{action}; a 502 still changed something: reload.
    let act = move |action: &'static str| {
        busy.set(true);
        spawn_local(async move {
            match client::send_empty::<App>("POST", &url(&format!("/{action}"))).await {
                Ok(a) => {
                    error.set(None);
                    show(a);
                }
                Err(e) => {
                    error.set(Some(e));
                    load(false);
                }
            }
            busy.set(false);
        });
    };

    let container_id = Memo::new(move |_| {
        app.with(|a| {
            a.as_ref()
                .and_then(|a| a.container.as_ref())
                .map(|c| c.id.clone())
        })
    });
    let has_app = Memo::new(move |_| app.with(Option::is_some));
    let not_found = move || error.with(|e| e.as_ref().is_some_and(|e| e.status == 404));

    view! {
        <ErrorMessage error/>
        {move || not_found().then(|| view! { <p><A href="/apps">"Back to the apps"</A></p> })}
        {move || app.get().map(|a| view! { <Summary app=a/> })}
        {move || app.get().filter(|a| a.needs_redeploy).map(|a| view! {
            <RedeployNotice reasons=a.reasons busy act/>
        })}
        {move || has_app.get().then(|| view! {
            <Actions busy act delete_path=base.get_value()/>
            {move || converge.get().map(|p| view! {
                <section aria-labelledby="converge-heading">
                    <h2 id="converge-heading">"Plan to converge"</h2>
                    <p>"The container was changed outside berth. Applying restores what the settings describe:"</p>
                    <PlanBox plan=p id="converge-plan"/>
                    <button type="button" id="apply-plan" disabled=busy
                        on:click=move |_| act("apply")>"Apply"</button>
                </section>
            })}
            <SecretsSummary name=name.clone()/>
            <Settings spec_text base=base.get_value() on_saved=move |a: App| {
                spec_text.set(pretty(&a.spec));
                show(a);
            } on_stale=move || load(false)/>
            {
                let name = name.clone();
                // New container (created, recreated, redeployed): new streams.
                move || match container_id.get() {
                    Some(id) => Either::Left(view! {
                        <ContainerEnv id/>
                        <LogsPanel name=name.clone()/>
                        <StatsPanel name=name.clone()/>
                    }),
                    None => Either::Right(view! {
                        <p class="muted" id="no-container">
                            "No container yet: its output and resource use appear here once the app is applied."
                        </p>
                    }),
                }
            }
        })}
    }
}

#[component]
fn Summary(app: App) -> impl IntoView {
    let App {
        status,
        reasons,
        container,
        last_apply,
        stack,
        spec,
        needs_redeploy,
        ..
    } = app;
    // Those about the pending redeploy are listed in its notice instead.
    let in_notice = if needs_redeploy {
        redeploy_reasons(&reasons)
    } else {
        Vec::new()
    };
    let listed: Vec<String> = reasons
        .iter()
        .filter(|r| !in_notice.contains(r))
        .cloned()
        .collect();
    view! {
        <section aria-labelledby="status-heading" class="summary">
            <h2 id="status-heading" class="visually-hidden">"Status"</h2>
            <p class="status-line">
                <span id="status"><AppStatusBadge status reasons=reasons.clone()/></span>
                " "<code>{spec.image.clone()}</code>
                {stack.map(|s| view! { " · stack "<A href="/stacks">{s}</A> })}
            </p>
            {(!listed.is_empty()).then(|| view! {
                <ul class="reasons" id="reasons">
                    {listed.into_iter().map(|r| view! { <li>{r}</li> }).collect_view()}
                </ul>
            })}
            <dl class="settings">
                <dt>"Container"</dt>
                <dd id="container">
                    {container.map_or_else(|| "none".to_string(), |c| {
                        let exit = c.exit_code.filter(|_| c.state != "running")
                            .map(|code| format!(" (exit code {code})"));
                        let health = c.health.map(|h| format!(", {h}"));
                        let started = c.started_at.map(|s| format!(" since {s}"));
                        format!(
                            "{} {}{}{}{}",
                            short_id(&c.id),
                            c.state,
                            exit.unwrap_or_default(),
                            health.unwrap_or_default(),
                            started.unwrap_or_default()
                        )
                    })}
                </dd>
                <dt>"Ports"</dt>
                <dd>
                    {if spec.ports.is_empty() {
                        "none".to_string()
                    } else {
                        spec.ports.iter().map(port_label).collect::<Vec<_>>().join(", ")
                    }}
                </dd>
                <dt>"Last apply"</dt>
                <dd id="last-apply">
                    {last_apply.is_none().then_some("never")}
                    {last_apply.map(|result| view! { <LastApply result/> })}
                </dd>
            </dl>
        </section>
    }
}

/// The container runs with older settings or secrets than the stored ones.
#[component]
fn RedeployNotice(
    reasons: Vec<String>,
    busy: RwSignal<bool>,
    act: impl Fn(&'static str) + Copy + 'static,
) -> impl IntoView {
    view! {
        <section class="redeploy-box" id="needs-redeploy" aria-labelledby="needs-redeploy-heading">
            <h2 id="needs-redeploy-heading" class="visually-hidden">"Needs redeploy"</h2>
            <p>
                <NeedsRedeployBadge reasons=reasons.clone()/>
                " The container was made from other settings or secrets than the ones stored now."
            </p>
            <ul class="reasons" id="redeploy-reasons">
                {redeploy_reasons(&reasons).into_iter().map(|r| view! { <li>{r}</li> }).collect_view()}
            </ul>
            <button type="button" id="redeploy-now" disabled=busy on:click=move |_| act("redeploy")
                title="Recreate the container with the current settings and secrets, keeping volumes">"Redeploy now"</button>
        </section>
    }
}

/// How many secrets the app has, from itself and from its groups, and the
/// way to its secrets page.
#[component]
fn SecretsSummary(name: String) -> impl IntoView {
    let list = RwSignal::new(None::<SecretList>);
    let path = StoredValue::new(format!("/api/v1/apps/{name}/secrets"));
    Effect::new(move |_| {
        spawn_local(async move {
            // Only a summary: the secrets page shows what went wrong.
            if let Ok(l) = client::get::<SecretList>(&path.get_value()).await {
                list.set(Some(l));
            }
        })
    });
    let href = format!("/apps/{name}/secrets");
    view! {
        <section aria-labelledby="app-secrets-heading">
            <h2 id="app-secrets-heading">"Secrets"</h2>
            <p id="app-secrets-summary">
                {move || list.get().map(|l| {
                    let used = l.inherited.iter().filter(|s| s.effective).count();
                    let groups = if l.linked.is_empty() {
                        "no groups".to_string()
                    } else {
                        format!("groups {}", l.linked.join(", "))
                    };
                    format!(
                        "{} own, {} from {groups} ({used} in effect). ",
                        l.secrets.len(),
                        l.inherited.len()
                    )
                })}
                <a href=href id="app-secrets-link">"Manage secrets"</a>
            </p>
        </section>
    }
}

/// The environment the container was created with; berth's secrets masked.
#[component]
fn ContainerEnv(id: String) -> impl IntoView {
    let entries = RwSignal::new(None::<Vec<EnvEntry>>);
    let error = RwSignal::new(None::<ClientError>);
    let path = StoredValue::new(format!("/api/v1/containers/{id}/env"));
    Effect::new(move |_| {
        spawn_local(async move {
            match client::get::<Vec<EnvEntry>>(&path.get_value()).await {
                Ok(e) => entries.set(Some(e)),
                Err(e) => error.set(Some(e)),
            }
        })
    });
    view! {
        <section aria-labelledby="env-heading">
            <h2 id="env-heading">"Environment"</h2>
            <p class="help">
                "What the container runs with, image defaults included. Secret values are masked here "
                "(whoever can run "<code>"docker inspect"</code>" on the host still sees them)."
            </p>
            <ErrorMessage error/>
            {move || entries.get().map(|list| view! {
                <table class="data env" id="container-env">
                    <thead><tr><th scope="col">"Name"</th><th scope="col">"Value"</th></tr></thead>
                    <tbody>
                        {list.into_iter().map(|e| {
                            let class = if e.secret { "secret" } else { "" };
                            let row = e.name.clone();
                            view! {
                                <tr data-env=row class=class>
                                    <th scope="row"><code>{e.name}</code></th>
                                    <td class="value">
                                        {match (e.secret, e.value) {
                                            (true, _) => EitherOf3::A(view! {
                                                <span class="masked">"•••• (secret)"</span>
                                            }),
                                            (false, None) => EitherOf3::B(view! { <span class="muted">"—"</span> }),
                                            (false, Some(v)) => EitherOf3::C(view! { <code>{v}</code> }),
                                        }}
                                    </td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            })}
        </section>
    }
}

#[component]
fn LastApply(result: ApplyResult) -> impl IntoView {
    let steps = result
        .actions
        .iter()
        .map(|a| a.action.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let steps = if steps.is_empty() {
        "nothing to do".into()
    } else {
        steps
    };
    view! {
        <span class=if result.ok { "success" } else { "error" }>
            {if result.ok { "succeeded" } else { "failed" }}
        </span>
        {format!(" {} ({steps}, {} ms)", result.started_at, result.duration_ms)}
        {result.error.map(|e| view! { <p class="error" role="alert">{e}</p> })}
    }
}

#[component]
fn Actions(
    busy: RwSignal<bool>,
    act: impl Fn(&'static str) + Copy + 'static,
    delete_path: String,
) -> impl IntoView {
    let delete_path = StoredValue::new(delete_path);
    let navigate = use_navigate();
    let confirming = RwSignal::new(false);
    let remove_volumes = RwSignal::new(false);
    let error = RwSignal::new(None::<ClientError>);

    let delete = move || {
        let query = if remove_volumes.get_untracked() {
            "?remove_volumes=true"
        } else {
            ""
        };
        let navigate = navigate.clone();
        confirming.set(false);
        busy.set(true);
        spawn_local(async move {
            let path = format!("{}{query}", delete_path.get_value());
            match client::send_no_content::<()>("DELETE", &path, None).await {
                Ok(()) => navigate("/apps", Default::default()),
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };

    view! {
        <section aria-label="Actions">
            <div class="actions">
                <button type="button" id="start" disabled=busy on:click=move |_| act("start")>"Start"</button>
                <button type="button" id="stop" disabled=busy on:click=move |_| act("stop")>"Stop"</button>
                <button type="button" id="restart" disabled=busy on:click=move |_| act("restart")>"Restart"</button>
                <button type="button" id="redeploy" disabled=busy on:click=move |_| act("redeploy")
                    title="Recreate the container from the current image, keeping volumes">"Redeploy"</button>
                <button type="button" id="delete" class="danger" disabled=busy
                    on:click=move |_| confirming.set(true)>"Delete"</button>
            </div>
            <ErrorMessage error/>
            {move || confirming.get().then(|| view! {
                <label class="check">
                    <input type="checkbox" id="remove-volumes" bind:checked=remove_volumes/>
                    "Also delete the volumes berth created for it (their data is lost)"
                </label>
                <Confirm
                    message="Delete this app? Its container is removed; named volumes stay unless the box above is ticked."
                    confirm_label="Delete app"
                    confirm_id="confirm-delete"
                    on_confirm=delete.clone()
                    on_cancel=move || confirming.set(false)
                />
            })}
        </section>
    }
}

#[component]
fn Settings(
    spec_text: RwSignal<String>,
    base: String,
    on_saved: impl Fn(App) + Copy + 'static,
    on_stale: impl Fn() + Copy + 'static,
) -> impl IntoView {
    let error = RwSignal::new(None::<ClientError>);
    let plan = RwSignal::new(None::<Plan>);
    let busy = RwSignal::new(false);
    let saved = RwSignal::new(false);
    let password = RwSignal::new(String::new());
    let base = StoredValue::new(base);

    let parse = move || -> Result<AppSpec, ClientError> {
        let mut spec: AppSpec = serde_json::from_str(&spec_text.get_untracked())
            .map_err(|e| problem("spec", format!("not a valid app spec: {e}")))?;
        let password = password.get_untracked();
        if !password.is_empty() {
            spec.confirm_password = Some(password);
        }
        Ok(spec)
    };

    let submit = move |dry_run: bool| {
        plan.set(None);
        saved.set(false);
        let spec = match parse() {
            Ok(s) => s,
            Err(e) => return error.set(Some(e)),
        };
        busy.set(true);
        spawn_local(async move {
            let base = base.get_value();
            if dry_run {
                let path = format!("{base}?dry_run=true");
                match client::send::<_, Plan>("PUT", &path, &spec).await {
                    Ok(p) => {
                        error.set(None);
                        plan.set(Some(p));
                    }
                    Err(e) => error.set(Some(e)),
                }
            } else {
                match client::send::<_, App>("PUT", &base, &spec).await {
                    Ok(a) => {
                        error.set(None);
                        password.set(String::new());
                        saved.set(true);
                        on_saved(a);
                    }
                    Err(e) => {
                        // Saved but not applied: the page shows the new state.
                        if e.code == "apply_failed" {
                            on_stale();
                        }
                        error.set(Some(e));
                    }
                }
            }
            busy.set(false);
        });
    };
    let needs_password = Memo::new(move |_| {
        error.with(|e| e.as_ref().and_then(|e| e.field.as_deref()) == Some("confirm_password"))
            || !password.with(String::is_empty)
    });

    view! {
        <section aria-labelledby="settings-heading">
            <h2 id="settings-heading">"Settings"</h2>
            <form class="stack" on:submit=move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                submit(false);
            }>
                <label for="spec-json">"Spec (JSON)"</label>
                <textarea id="spec-json" name="spec" rows="18" spellcheck="false" class="code"
                    aria-describedby="spec-json-help" aria-invalid=invalid(error, "spec")
                    bind:value=spec_text></textarea>
                <p class="help" id="spec-json-help">
                    "The fields of "<code>"AppSpec"</code>" in "<a href="/api/v1/openapi.json">"the API"</a>
                    ". "<code>"secret_groups"</code>" lists the "<a href="/secret-groups">"secret groups"</a>
                    " whose secrets the app gets (a later one wins); "<code>"redeploy_on_secret_change"</code>
                    " redeploys it by itself when one of its secrets changes."
                    " Preview shows what applying would do; nothing changes until you apply."
                </p>
                {move || needs_password.get().then(|| view! {
                    <label for="spec-password">"Your password"</label>
                    <input id="spec-password" type="password" autocomplete="current-password"
                        aria-invalid=invalid(error, "confirm_password") bind:value=password/>
                    <p class="help">"Needed to widen what the app is allowed (" <code>"allow"</code>")."</p>
                })}
                <ErrorMessage error/>
                {move || saved.get().then(|| view! { <p class="success" role="status">"Saved and applied."</p> })}
                <div class="actions">
                    <button type="button" class="secondary" id="preview-spec" disabled=busy
                        on:click=move |_| submit(true)>"Preview"</button>
                    <button type="submit" id="apply-spec" disabled=busy>"Apply"</button>
                </div>
            </form>
            {move || plan.get().map(|p| view! { <PlanBox plan=p id="plan"/> })}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_editor_shows_the_secret_fields_even_when_unset() {
        let spec = AppSpec {
            name: "web".into(),
            image: "nginx:1.27".into(),
            ..AppSpec::default()
        };
        let text = pretty(&spec);
        assert!(text.contains("\"secret_groups\": []"), "{text}");
        assert!(
            text.contains("\"redeploy_on_secret_change\": false"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<AppSpec>(&text).unwrap(), spec);
    }

    #[test]
    fn set_secret_fields_are_shown_once() {
        let spec = AppSpec {
            name: "web".into(),
            image: "nginx:1.27".into(),
            secret_groups: vec!["shared".into()],
            redeploy_on_secret_change: true,
            ..AppSpec::default()
        };
        let text = pretty(&spec);
        assert_eq!(text.matches("secret_groups").count(), 1, "{text}");
        assert_eq!(
            text.matches("redeploy_on_secret_change").count(),
            1,
            "{text}"
        );
        assert_eq!(serde_json::from_str::<AppSpec>(&text).unwrap(), spec);
    }
}
