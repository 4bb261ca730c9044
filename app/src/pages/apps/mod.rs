//! Apps: the list with a "New app" form (plan preview, then create), and
//! each app's own page with its actions, settings, logs and resource use.

mod detail;
mod live;
mod spec_lines;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;

use super::widgets::{
    app_status_word, invalid, problem, AppStatusBadge, ErrorMessage, FieldError, FormError, PlanBox,
};
use super::Frame;
use crate::api::{App, Plan};
use crate::client::{self, ClientError};
pub use detail::AppPage;
pub use spec_lines::port_label;
use spec_lines::AppForm;

#[component]
pub fn Apps() -> impl IntoView {
    view! {
        <Frame title="Apps" body=AppsBody/>
    }
}

#[component]
fn AppsBody() -> impl IntoView {
    let apps = RwSignal::new(Vec::<App>::new());
    let loaded = RwSignal::new(false);
    let error = RwSignal::new(None::<ClientError>);

    let reload = move || {
        spawn_local(async move {
            match client::get::<Vec<App>>("/api/v1/apps").await {
                Ok(list) => {
                    apps.set(list);
                    loaded.set(true);
                }
                Err(e) => error.set(Some(e)),
            }
        })
    };
    Effect::new(move |_| reload());

    view! {
        <section aria-labelledby="apps-heading">
            <h2 id="apps-heading">"Apps"</h2>
            <ErrorMessage error/>
            <table class="data" id="apps">
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Image"</th>
                        <th scope="col">"Ports"</th>
                        <th scope="col">"Domains"</th>
                    </tr>
                </thead>
                <tbody>
                    <For
                        each=move || apps.get()
                        key=|a| (a.name.clone(), a.updated_at.clone(), app_status_word(a.status), a.reasons.clone(), a.needs_redeploy)
                        let:a
                    >
                        <tr data-app=a.name.clone() data-needs-redeploy=a.needs_redeploy.then_some("true")>
                            <td><AppLink name=a.name.clone()/></td>
                            <td class="status">
                                <AppStatusBadge status=a.status reasons=a.reasons.clone()/>
                                {a.needs_redeploy.then(|| view! {
                                    " "<NeedsRedeployBadge reasons=a.reasons.clone()/>
                                })}
                            </td>
                            <td><code>{a.spec.image.clone()}</code></td>
                            <td>{a.spec.ports.iter().map(port_label).collect::<Vec<_>>().join(", ")}</td>
                            <td>"—"</td>
                        </tr>
                    </For>
                </tbody>
            </table>
            {move || (loaded.get() && apps.with(|a| a.is_empty()))
                .then(|| view! { <p class="muted">"No apps yet."</p> })}
        </section>
        <NewApp on_saved=reload/>
    }
}

/// Marks an app whose container has older settings or secrets than the ones
/// stored; the reasons that say so as tooltip.
#[component]
pub fn NeedsRedeployBadge(reasons: Vec<String>) -> impl IntoView {
    let why = redeploy_reasons(&reasons).join("; ");
    let title = (!why.is_empty()).then_some(why);
    view! { <span class="badge needs-redeploy" title=title>"needs redeploy"</span> }
}

/// The reasons about a pending redeploy (berth words them "…: redeploy to
/// apply").
pub fn redeploy_reasons(reasons: &[String]) -> Vec<String> {
    reasons
        .iter()
        .filter(|r| r.contains("redeploy"))
        .cloned()
        .collect()
}

/// An app's name linking to its page.
#[component]
pub fn AppLink(name: String) -> impl IntoView {
    let href = format!("/apps/{name}");
    view! { <A href>{name}</A> }
}

/// The form's inputs, by the API field their errors name.
const FORM_FIELDS: &[&str] = &[
    "name",
    "image",
    "command",
    "env",
    "ports",
    "volumes",
    "networks",
    "restart",
    "limits.memory_mb",
    "limits.cpus",
    "limits.pids",
    "state",
    "secret_groups",
];

#[component]
fn NewApp(on_saved: impl Fn() + Copy + 'static) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let image = RwSignal::new(String::new());
    let command = RwSignal::new(String::new());
    let env = RwSignal::new(String::new());
    let ports = RwSignal::new(String::new());
    let volumes = RwSignal::new(String::new());
    let networks = RwSignal::new(String::new());
    let restart = RwSignal::new(String::from("unless-stopped"));
    let memory_mb = RwSignal::new(String::new());
    let cpus = RwSignal::new(String::new());
    let pids = RwSignal::new(String::new());
    let state = RwSignal::new(String::from("running"));
    let secret_groups = RwSignal::new(String::new());
    let redeploy_on_secret_change = RwSignal::new(false);

    let error = RwSignal::new(None::<ClientError>);
    let plan = RwSignal::new(None::<Plan>);
    let busy = RwSignal::new(false);
    // Saved, but the apply failed: the app exists and has its own page.
    let saved_but_failed = RwSignal::new(None::<String>);
    let navigate = use_navigate();

    let spec = move || {
        AppForm {
            name: name.get_untracked(),
            image: image.get_untracked(),
            command: command.get_untracked(),
            env: env.get_untracked(),
            ports: ports.get_untracked(),
            volumes: volumes.get_untracked(),
            networks: networks.get_untracked(),
            restart: restart.get_untracked(),
            memory_mb: memory_mb.get_untracked(),
            cpus: cpus.get_untracked(),
            pids: pids.get_untracked(),
            state: state.get_untracked(),
            secret_groups: secret_groups.get_untracked(),
            redeploy_on_secret_change: redeploy_on_secret_change.get_untracked(),
        }
        .to_spec()
        .map_err(|p| problem(p.field, p.message))
    };

    let preview = move |_| {
        plan.set(None);
        saved_but_failed.set(None);
        let spec = match spec() {
            Ok(s) => s,
            Err(e) => return error.set(Some(e)),
        };
        busy.set(true);
        spawn_local(async move {
            match client::send::<_, Plan>("POST", "/api/v1/apps?dry_run=true", &spec).await {
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
        saved_but_failed.set(None);
        let spec = match spec() {
            Ok(s) => s,
            Err(e) => return error.set(Some(e)),
        };
        let navigate = navigate.clone();
        busy.set(true);
        spawn_local(async move {
            match client::send::<_, App>("POST", "/api/v1/apps", &spec).await {
                Ok(app) => navigate(&format!("/apps/{}", app.name), Default::default()),
                Err(e) => {
                    if e.code == "apply_failed" {
                        saved_but_failed.set(Some(spec.name.clone()));
                        on_saved();
                    }
                    error.set(Some(e));
                }
            }
            busy.set(false);
        });
    };

    view! {
        <section aria-labelledby="new-app-heading">
            <h2 id="new-app-heading">"New app"</h2>
            <form id="new-app" class="spec" on:submit=create>
                <div>
                    <label for="app-name">"Name"</label>
                    <input id="app-name" name="name" required maxlength="63" autocomplete="off"
                        placeholder="web" aria-invalid=invalid(error, "name") bind:value=name/>
                    <FieldError error field="name"/>
                </div>
                <div>
                    <label for="app-image">"Image"</label>
                    <input id="app-image" name="image" required autocomplete="off"
                        placeholder="nginx:1.27" aria-describedby="app-image-help"
                        aria-invalid=invalid(error, "image") bind:value=image/>
                    <p class="help" id="app-image-help">
                        "Must already be on the engine: "<A href="/images">"import or pull it"</A>" first."
                    </p>
                    <FieldError error field="image"/>
                </div>
                <div>
                    <label for="app-command">"Command"</label>
                    <textarea id="app-command" name="command" rows="3" aria-describedby="app-command-help"
                        aria-invalid=invalid(error, "command") bind:value=command></textarea>
                    <p class="help" id="app-command-help">"One argument per line; empty keeps the image's."</p>
                    <FieldError error field="command"/>
                </div>
                <div>
                    <label for="app-env">"Environment"</label>
                    <textarea id="app-env" name="env" rows="3" aria-describedby="app-env-help"
                        aria-invalid=invalid(error, "env") bind:value=env></textarea>
                    <p class="help" id="app-env-help">"KEY=VALUE, one per line."</p>
                    <FieldError error field="env"/>
                </div>
                <div>
                    <label for="app-ports">"Ports"</label>
                    <textarea id="app-ports" name="ports" rows="3" aria-describedby="app-ports-help"
                        aria-invalid=invalid(error, "ports") bind:value=ports></textarea>
                    <p class="help" id="app-ports-help">
                        "One per line: "<code>"8080"</code>" (networks only), "<code>"18080:8080"</code>", "
                        <code>"127.0.0.1:18080:8080/udp"</code>"."
                    </p>
                    <FieldError error field="ports"/>
                </div>
                <div>
                    <label for="app-volumes">"Volumes"</label>
                    <textarea id="app-volumes" name="volumes" rows="3" aria-describedby="app-volumes-help"
                        aria-invalid=invalid(error, "volumes") bind:value=volumes></textarea>
                    <p class="help" id="app-volumes-help">
                        "One per line: "<code>"name:/target"</code>" or "<code>"/host/path:/target:ro"</code>"."
                    </p>
                    <FieldError error field="volumes"/>
                </div>
                <div>
                    <label for="app-networks">"Networks"</label>
                    <input id="app-networks" name="networks" autocomplete="off" placeholder="web, db"
                        aria-describedby="app-networks-help"
                        aria-invalid=invalid(error, "networks") bind:value=networks/>
                    <p class="help" id="app-networks-help">"Comma separated; empty: Docker's default bridge."</p>
                    <FieldError error field="networks"/>
                </div>
                <div>
                    <label for="app-restart">"Restart"</label>
                    <select id="app-restart" name="restart"
                        on:change=move |ev| restart.set(event_target_value(&ev))
                        prop:value=move || restart.get()>
                        <option value="unless-stopped">"unless stopped"</option>
                        <option value="always">"always"</option>
                        <option value="on-failure">"on failure"</option>
                        <option value="no">"no"</option>
                    </select>
                    <FieldError error field="restart"/>
                </div>
                <div>
                    <label for="app-memory">"Memory (MiB)"</label>
                    <input id="app-memory" name="memory_mb" type="number" min="6" step="1"
                        aria-invalid=invalid(error, "limits.memory_mb") bind:value=memory_mb/>
                    <FieldError error field="limits.memory_mb"/>
                </div>
                <div>
                    <label for="app-cpus">"CPUs"</label>
                    <input id="app-cpus" name="cpus" type="number" min="0.01" step="0.01"
                        aria-invalid=invalid(error, "limits.cpus") bind:value=cpus/>
                    <FieldError error field="limits.cpus"/>
                </div>
                <div>
                    <label for="app-pids">"Processes (pids)"</label>
                    <input id="app-pids" name="pids" type="number" min="1" step="1"
                        aria-invalid=invalid(error, "limits.pids") bind:value=pids/>
                    <FieldError error field="limits.pids"/>
                </div>
                <div>
                    <label for="app-state">"Desired state"</label>
                    <select id="app-state" name="state"
                        on:change=move |ev| state.set(event_target_value(&ev))
                        prop:value=move || state.get()>
                        <option value="running">"running"</option>
                        <option value="stopped">"stopped"</option>
                    </select>
                    <FieldError error field="state"/>
                </div>
                <div>
                    <label for="app-secret-groups">"Secret groups"</label>
                    <input id="app-secret-groups" name="secret_groups" autocomplete="off"
                        placeholder="shared, db" aria-describedby="app-secret-groups-help"
                        aria-invalid=invalid(error, "secret_groups") bind:value=secret_groups/>
                    <p class="help" id="app-secret-groups-help">
                        "Comma separated "<A href="/secret-groups">"groups"</A>" whose secrets the app gets; a later one wins. "
                        "The app's own secrets are set on its page once it exists."
                    </p>
                    <FieldError error field="secret_groups"/>
                </div>
                <div>
                    <label class="check">
                        <input type="checkbox" id="app-redeploy-on-secret-change" name="redeploy_on_secret_change"
                            bind:checked=redeploy_on_secret_change/>
                        "Redeploy by itself when one of its secrets changes"
                    </label>
                    <p class="help">"Off: the app is marked as needing a redeploy and you choose when."</p>
                </div>
                <div class="actions wide">
                    <button type="button" class="secondary" id="preview-plan" disabled=busy
                        on:click=preview>"Preview plan"</button>
                    <button type="submit" id="create-app" disabled=busy>"Create"</button>
                </div>
            </form>
            <FormError error fields=FORM_FIELDS/>
            {move || saved_but_failed.get().map(|n| view! {
                <p>"The app was saved but not applied. "
                    <A href=format!("/apps/{n}")>{format!("Open {n}")}</A>" to see why and retry."</p>
            })}
            {move || plan.get().map(|p| view! {
                <h3>"Plan"</h3>
                <PlanBox plan=p id="plan"/>
            })}
        </section>
    }
}
