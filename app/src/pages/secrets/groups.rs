//! Shared secret groups: the list (with how many secrets each holds and
//! which apps use it), the form to create one, and each group's page.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;

use super::super::widgets::{invalid, loader, Confirm, ErrorMessage, FieldError, FormError};
use super::super::Frame;
use super::{moment, SecretsEditor};
use crate::api::{SecretGroup, SecretGroupInput, SecretScope};
use crate::client::{self, ClientError};

#[component]
pub fn SecretGroups() -> impl IntoView {
    view! { <Frame title="Secret groups" body=GroupsBody/> }
}

#[component]
pub fn SecretGroupPage() -> impl IntoView {
    let params = use_params_map();
    let group = Memo::new(move |_| params.read().get("group").unwrap_or_default());
    move || {
        let group = group.get();
        let title = format!("Secret group {group}");
        view! { <Frame title body=move || view! { <GroupBody group=group.clone()/> }/> }
    }
}

/// App names as links to their pages, or "none".
fn app_links(apps: Vec<String>) -> impl IntoView {
    let none = apps
        .is_empty()
        .then(|| view! { <span class="muted">"none"</span> });
    let links = apps
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let href = format!("/apps/{a}");
            view! { {(i > 0).then_some(", ")}<A href>{a}</A> }
        })
        .collect_view();
    view! { {none}{links} }
}

#[component]
fn GroupsBody() -> impl IntoView {
    let groups = RwSignal::new(Vec::<SecretGroup>::new());
    let loaded = RwSignal::new(false);
    let error = RwSignal::new(None::<ClientError>);
    let confirming = RwSignal::new(None::<String>);
    let deleted = RwSignal::new(None::<String>);

    let reload = loader(
        "/api/v1/secret-groups",
        move |list: Vec<SecretGroup>| {
            groups.set(list);
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
            let path = format!("/api/v1/secret-groups/{name}");
            match client::send_no_content::<()>("DELETE", &path, None).await {
                Ok(()) => {
                    error.set(None);
                    deleted.set(Some(name));
                }
                // 409 while apps use it: berth names them.
                Err(e) => error.set(Some(e)),
            }
            reload();
        });
    };

    view! {
        <p class="muted">
            "Secrets several apps share. An app gets a group's secrets by listing it in "
            <code>"secret_groups"</code>" (a later group wins over an earlier one, the app's own secrets win over all). "
            <A href="/secrets">"Keys and recovery"</A>
        </p>
        <ErrorMessage error/>
        <div aria-live="polite">
            {move || deleted.get().map(|n| view! { <p class="success" id="group-deleted">{format!("Deleted the group {n}.")}</p> })}
        </div>
        {move || confirming.get().map(|name| view! {
            <Confirm
                message=format!("Delete the group {name} and its secrets?")
                confirm_label="Delete group"
                confirm_id="confirm-delete-group"
                on_confirm=delete
                on_cancel=move || confirming.set(None)
            />
        })}
        <section aria-labelledby="groups-heading">
            <h2 id="groups-heading">"Groups"</h2>
            <table class="data" id="secret-groups">
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Description"</th>
                        <th scope="col">"Secrets"</th>
                        <th scope="col">"Used by"</th>
                        <th scope="col">"Created"</th>
                        <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    <For each=move || groups.get()
                        key=|g| (g.name.clone(), g.description.clone(), g.secrets, g.apps.clone())
                        let:g>
                        {
                            let href = format!("/secret-groups/{}", g.name);
                            let name = g.name.clone();
                            let label = format!("Delete group {}", g.name);
                            let row = g.name.clone();
                            let link = g.name.clone();
                            view! {
                                <tr data-group=row>
                                    <th scope="row"><A href>{link}</A></th>
                                    <td class="description">{g.description.clone()}</td>
                                    <td class="secret-count">{g.secrets}</td>
                                    <td class="apps">{app_links(g.apps.clone())}</td>
                                    <td><time datetime=g.created_at.clone()>{moment(&g.created_at)}</time></td>
                                    <td>
                                        <button type="button" class="small danger" data-action="delete"
                                            aria-label=label on:click=move |_| confirming.set(Some(name.clone()))>"Delete"</button>
                                    </td>
                                </tr>
                            }
                        }
                    </For>
                </tbody>
            </table>
            {move || (loaded.get() && groups.with(Vec::is_empty)).then(|| view! {
                <p class="muted" id="no-groups">"No groups yet."</p>
            })}
        </section>
        <section aria-labelledby="new-group-heading">
            <h2 id="new-group-heading">"New group"</h2>
            <NewGroup on_created=move || reload()/>
        </section>
    }
}

#[component]
fn NewGroup(#[prop(into)] on_created: Callback<()>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let description = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ClientError>);
    let busy = RwSignal::new(false);
    let created = RwSignal::new(None::<String>);

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let input = SecretGroupInput {
            name: name.get_untracked().trim().to_string(),
            description: description.get_untracked().trim().to_string(),
        };
        created.set(None);
        busy.set(true);
        spawn_local(async move {
            match client::send::<_, SecretGroup>("POST", "/api/v1/secret-groups", &input).await {
                Ok(g) => {
                    error.set(None);
                    name.set(String::new());
                    description.set(String::new());
                    created.set(Some(g.name));
                    on_created.run(());
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };

    view! {
        <form class="stack" id="new-group" on:submit=submit>
            <FormError error fields=&["name", "description"]/>
            <label for="group-name">"Name"</label>
            <input id="group-name" name="name" required maxlength="63" autocomplete="off"
                spellcheck="false" placeholder="shared-db" aria-describedby="group-name-help"
                aria-invalid=invalid(error, "name") bind:value=name/>
            <p class="help" id="group-name-help">"Lowercase letters, digits and -, up to 63."</p>
            <FieldError error field="name"/>
            <label for="group-description">"Description (optional)"</label>
            <input id="group-description" name="description" maxlength="500" autocomplete="off"
                aria-invalid=invalid(error, "description") bind:value=description/>
            <FieldError error field="description"/>
            <button type="submit" id="create-group" disabled=busy>"Create group"</button>
            <div aria-live="polite">
                {move || created.get().map(|g| {
                    let href = format!("/secret-groups/{g}");
                    view! {
                        <p class="success" id="group-created">
                            {format!("Created {g}. ")}<A href>{format!("Add secrets to {g}")}</A>
                        </p>
                    }
                })}
            </div>
        </form>
    }
}

#[component]
fn GroupBody(group: String) -> impl IntoView {
    let description = RwSignal::new(None::<String>);
    let wanted = StoredValue::new(group.clone());
    Effect::new(move |_| {
        spawn_local(async move {
            if let Ok(list) = client::get::<Vec<SecretGroup>>("/api/v1/secret-groups").await {
                let name = wanted.get_value();
                description.set(
                    list.into_iter()
                        .find(|g| g.name == name)
                        .map(|g| g.description),
                );
            }
        })
    });
    view! {
        <p><A href="/secret-groups">"← All groups"</A></p>
        {move || description.get().filter(|d| !d.is_empty()).map(|d| view! {
            <p id="group-description">{d}</p>
        })}
        <SecretsEditor scope=SecretScope::Group owner=group/>
    }
}
