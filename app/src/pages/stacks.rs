//! Compose stacks: each service of a docker-compose.yml becomes the app
//! `<stack>-<service>`. Preview shows how berth read the file and what it
//! would do; create applies it.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::apps::{port_label, AppLink};
use super::widgets::{
    app_status_word, invalid, loader, AppStatusBadge, Confirm, ErrorMessage, FieldError, FormError,
    PlanBox,
};
use super::Frame;
use crate::api::{Stack, StackPlan, StackRequest};
use crate::client::{self, ClientError};

#[component]
pub fn Stacks() -> impl IntoView {
    view! {
        <Frame title="Stacks" body=StacksBody/>
    }
}

/// A stack's row is redrawn when any of its apps changes.
fn stack_key(s: &Stack) -> (String, Vec<(String, &'static str, String)>) {
    let apps = s
        .apps
        .iter()
        .map(|a| {
            (
                a.name.clone(),
                app_status_word(a.status),
                a.updated_at.clone(),
            )
        })
        .collect();
    (s.name.clone(), apps)
}

#[component]
fn StacksBody() -> impl IntoView {
    let stacks = RwSignal::new(Vec::<Stack>::new());
    let loaded = RwSignal::new(false);
    let error = RwSignal::new(None::<ClientError>);
    let confirming = RwSignal::new(None::<String>);

    let reload = loader(
        "/api/v1/stacks",
        move |list: Vec<Stack>| {
            stacks.set(list);
            loaded.set(true);
        },
        error,
    );
    Effect::new(move |_| reload());

    let delete = move || {
        let Some(name) = confirming.get_untracked() else {
            return;
        };
        confirming.set(None);
        spawn_local(async move {
            let path = format!("/api/v1/stacks/{name}");
            match client::send_no_content::<()>("DELETE", &path, None).await {
                Ok(()) => error.set(None),
                Err(e) => error.set(Some(e)),
            }
            reload();
        });
    };

    view! {
        <section aria-labelledby="stacks-heading">
            <h2 id="stacks-heading">"Stacks"</h2>
            <ErrorMessage error/>
            {move || confirming.get().map(|name| view! {
                <Confirm
                    message=format!("Delete stack {name}? Its apps and their containers are removed; volumes stay.")
                    confirm_label="Delete stack"
                    confirm_id="confirm-delete-stack"
                    on_confirm=delete
                    on_cancel=move || confirming.set(None)
                />
            })}
            <div id="stacks">
                <For each=move || stacks.get() key=stack_key let:s>
                    {
                        let name = s.name.clone();
                        view! {
                            <article class="card stack" data-stack=s.name.clone()>
                                <div class="section-head">
                                    <h3>{s.name.clone()}</h3>
                                    <button type="button" class="small danger" data-action="delete"
                                        aria-label=format!("Delete stack {}", s.name)
                                        on:click=move |_| confirming.set(Some(name.clone()))>"Delete"</button>
                                </div>
                                <table class="data">
                                    <thead>
                                        <tr>
                                            <th scope="col">"App"</th>
                                            <th scope="col">"Status"</th>
                                            <th scope="col">"Image"</th>
                                        </tr>
                                    </thead>
                                    <tbody>
                                        {s.apps.clone().into_iter().map(|a| view! {
                                            <tr data-app=a.name.clone()>
                                                <td><AppLink name=a.name.clone()/></td>
                                                <td class="status"><AppStatusBadge status=a.status reasons=a.reasons.clone()/></td>
                                                <td><code>{a.spec.image.clone()}</code></td>
                                            </tr>
                                        }).collect_view()}
                                    </tbody>
                                </table>
                                <p class="muted">"Created "<time>{s.created_at.clone()}</time></p>
                            </article>
                        }
                    }
                </For>
            </div>
            {move || (loaded.get() && stacks.with(Vec::is_empty))
                .then(|| view! { <p class="muted">"No stacks yet."</p> })}
        </section>
        <NewStack on_saved=reload/>
    }
}

#[component]
fn NewStack(on_saved: impl Fn() + Copy + 'static) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let compose = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ClientError>);
    let plan = RwSignal::new(None::<StackPlan>);
    let created = RwSignal::new(None::<Stack>);
    let busy = RwSignal::new(false);

    let request = move || StackRequest {
        name: name.get_untracked().trim().to_string(),
        compose: compose.get_untracked(),
    };
    let preview = move |_| {
        let req = request();
        plan.set(None);
        created.set(None);
        busy.set(true);
        spawn_local(async move {
            match client::send::<_, StackPlan>("POST", "/api/v1/stacks?dry_run=true", &req).await {
                Ok(p) => {
                    error.set(None);
                    plan.set(Some(p));
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let req = request();
        created.set(None);
        busy.set(true);
        spawn_local(async move {
            match client::send::<_, Stack>("POST", "/api/v1/stacks", &req).await {
                Ok(s) => {
                    error.set(None);
                    plan.set(None);
                    name.set(String::new());
                    compose.set(String::new());
                    created.set(Some(s));
                }
                Err(e) => error.set(Some(e)),
            }
            // A failed apply still saved the stack's apps.
            on_saved();
            busy.set(false);
        });
    };

    view! {
        <section aria-labelledby="new-stack-heading">
            <h2 id="new-stack-heading">"New stack"</h2>
            <form id="new-stack" class="stack" on:submit=create>
                <label for="stack-name">"Name"</label>
                <input id="stack-name" name="name" required maxlength="63" autocomplete="off"
                    aria-invalid=invalid(error, "name") bind:value=name/>
                <FieldError error field="name"/>
                <label for="compose">"docker-compose.yml"</label>
                <textarea id="compose" name="compose" rows="14" spellcheck="false" class="code" required
                    aria-describedby="compose-help" aria-invalid=invalid(error, "compose")
                    bind:value=compose></textarea>
                <p class="help" id="compose-help">
                    "Each service becomes the app "<code>"<stack>-<service>"</code>
                    "; its images must already be on the engine."
                </p>
                <FieldError error field="compose"/>
                <FormError error fields=&["name", "compose"]/>
                <div class="actions">
                    <button type="button" class="secondary" id="preview-stack" disabled=busy
                        on:click=preview>"Preview"</button>
                    <button type="submit" id="create-stack" disabled=busy>"Create"</button>
                </div>
            </form>
            {move || created.get().map(|s| view! {
                <p class="success" role="status">{format!("Stack {} created with {} apps.", s.name, s.apps.len())}</p>
            })}
            {move || plan.get().map(|p| view! { <StackPreview plan=p/> })}
        </section>
    }
}

#[component]
fn StackPreview(plan: StackPlan) -> impl IntoView {
    let StackPlan { apps, plans, .. } = plan;
    view! {
        <div id="stack-plan">
            {apps
                .into_iter()
                .map(|spec| {
                    let app_plan = plans.iter().find(|p| p.app == spec.name).cloned();
                    let ports = spec.ports.iter().map(port_label).collect::<Vec<_>>().join(", ");
                    let networks = spec.networks.join(", ");
                    let volumes = spec
                        .volumes
                        .iter()
                        .map(|v| format!("{}:{}{}", v.source, v.target, if v.read_only { ":ro" } else { "" }))
                        .collect::<Vec<_>>()
                        .join(", ");
                    view! {
                        <article class="card" data-app=spec.name.clone()>
                            <h3>{spec.name.clone()}</h3>
                            <dl class="settings">
                                <dt>"Image"</dt><dd><code>{spec.image.clone()}</code></dd>
                                <dt>"Command"</dt><dd>{if spec.command.is_empty() { "image default".to_string() } else { spec.command.join(" ") }}</dd>
                                <dt>"Ports"</dt><dd>{if ports.is_empty() { "none".to_string() } else { ports }}</dd>
                                <dt>"Volumes"</dt><dd>{if volumes.is_empty() { "none".to_string() } else { volumes }}</dd>
                                <dt>"Networks"</dt><dd>{if networks.is_empty() { "default".to_string() } else { networks }}</dd>
                                <dt>"Environment"</dt><dd>{format!("{} variables", spec.env.len())}</dd>
                            </dl>
                            {app_plan.map(|p| view! { <PlanBox plan=p id=format!("plan-{}", spec.name)/> })}
                        </article>
                    }
                })
                .collect_view()}
        </div>
    }
}
