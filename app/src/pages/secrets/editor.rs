//! The editor of one owner's secrets (an app's or a group's): the table,
//! add or change a value, delete, reveal, import and export a `.env`.
//!
//! Only names and metadata are kept between actions. A typed value is
//! cleared once berth stored it; a revealed or exported one when hidden.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use leptos::either::{Either, EitherOf3};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;

use super::super::widgets::{invalid, problem, Confirm, ErrorMessage, FieldError, FormError};
use super::{hide_later, listed, moment, reauth, ReauthFields, RedeployPanel, Redeploys};
use crate::api::{
    check_secret_name, check_secret_value, dotenv, Exported, ImportPreview, ImportRequest,
    Revealed, SecretChange, SecretInfo, SecretList, SecretScope, SecretValue,
};
use crate::client::{self, ClientError};

/// `/api/v1/apps/web/secrets` or `/api/v1/secret-groups/shared/secrets`.
fn secrets_path(scope: SecretScope, owner: &str) -> String {
    format!("/api/v1/{}/{owner}/secrets", scope.collection())
}

/// What a change did, for the message and the redeploy panel.
#[derive(Clone)]
struct Changed {
    message: String,
    needs_redeploy: Vec<String>,
    redeploying: Vec<String>,
}

impl Changed {
    fn from_change(message: String, c: SecretChange) -> Self {
        Changed {
            message,
            needs_redeploy: c.needs_redeploy,
            redeploying: c.redeploying,
        }
    }
}

/// The secret whose value the reveal panel asks for.
#[derive(Clone, PartialEq)]
struct RevealTarget {
    name: String,
    /// The group it comes from; `None` for the owner's own secret.
    group: Option<String>,
    path: String,
}

fn bytes(n: usize) -> String {
    if n == 1 {
        "1 byte".into()
    } else {
        format!("{n} bytes")
    }
}

#[component]
pub fn SecretsEditor(scope: SecretScope, #[prop(into)] owner: String) -> impl IntoView {
    let base = StoredValue::new(secrets_path(scope, &owner));
    let owner = StoredValue::new(owner);
    let list = RwSignal::new(None::<SecretList>);
    let error = RwSignal::new(None::<ClientError>);
    let saved = RwSignal::new(None::<String>);
    let redeploys = Redeploys::new();
    let confirming = RwSignal::new(None::<String>);
    let revealing = RwSignal::new(None::<RevealTarget>);
    // Shared with the form, so that "Change value" fills in the name and
    // focuses the value field (an input, or a textarea for multi-line).
    let form_name = RwSignal::new(String::new());
    let multiline = RwSignal::new(false);
    let value_input = NodeRef::<leptos::html::Input>::new();
    let value_area = NodeRef::<leptos::html::Textarea>::new();

    let reload = move || {
        spawn_local(async move {
            match client::get::<SecretList>(&base.get_value()).await {
                Ok(l) => {
                    redeploys.listed(l.needs_redeploy.clone());
                    list.set(Some(l));
                }
                Err(e) => error.set(Some(e)),
            }
        })
    };
    Effect::new(move |_| reload());

    let on_change = Callback::new(move |c: Changed| {
        error.set(None);
        saved.set(Some(c.message));
        redeploys.changed(c.needs_redeploy, c.redeploying);
        reload();
    });

    let own = Memo::new(move |_| {
        list.with(|l| l.as_ref().map(|l| l.secrets.clone()).unwrap_or_default())
    });
    let own_names =
        Signal::derive(move || own.with(|s| s.iter().map(|s| s.name.clone()).collect::<Vec<_>>()));
    let inherited = Memo::new(move |_| {
        list.with(|l| l.as_ref().map(|l| l.inherited.clone()).unwrap_or_default())
    });
    let linked =
        Memo::new(move |_| list.with(|l| l.as_ref().map(|l| l.linked.clone()).unwrap_or_default()));
    let loaded = Memo::new(move |_| list.with(Option::is_some));

    let delete = move || {
        let Some(name) = confirming.get_untracked() else {
            return;
        };
        confirming.set(None);
        spawn_local(async move {
            let path = format!("{}/{name}", base.get_value());
            match client::send_empty::<SecretChange>("DELETE", &path).await {
                Ok(c) => on_change.run(Changed::from_change(format!("Deleted {name}."), c)),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let edit = move |name: String| {
        form_name.set(name);
        if multiline.get_untracked() {
            if let Some(area) = value_area.get_untracked() {
                let _ = area.focus();
            }
        } else if let Some(input) = value_input.get_untracked() {
            let _ = input.focus();
        }
    };
    let reveal = move |name: String, group: Option<String>| {
        let path = match &group {
            Some(g) => format!("/api/v1/secret-groups/{g}/secrets/{name}/reveal"),
            None => format!("{}/{name}/reveal", base.get_value()),
        };
        revealing.set(Some(RevealTarget { name, group, path }));
    };

    let (heading, intro) = match scope {
        SecretScope::App => (
            "Secrets",
            "Set as environment variables of the app's container; they win over its groups' and over plain env. Values are write-only.",
        ),
        SecretScope::Group => (
            "Secrets of this group",
            "Every app that lists this group in secret_groups gets them (its own secrets win). Values are write-only.",
        ),
    };

    view! {
        <ErrorMessage error/>
        <RedeployPanel redeploys on_redeployed=move || reload()/>
        <div aria-live="polite">
            {move || saved.get().map(|m| view! { <p class="success" id="secret-saved">{m}</p> })}
        </div>
        {move || confirming.get().map(|name| view! {
            <Confirm
                message=format!("Delete the secret {name}? Containers keep it until they are redeployed.")
                confirm_label="Delete secret"
                confirm_id="confirm-delete-secret"
                on_confirm=delete
                on_cancel=move || confirming.set(None)
            />
        })}
        <section aria-labelledby="secrets-heading">
            <h2 id="secrets-heading">{heading}</h2>
            <p class="help">{intro}</p>
            <table class="data secrets" id="secrets">
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Length"</th>
                        <th scope="col">"Updated"</th>
                        <th scope="col">"By"</th>
                        <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    <For each=move || own.get()
                        key=|s| (s.name.clone(), s.updated_at.clone(), s.length, s.overrides_env)
                        let:s>
                        <OwnRow secret=s
                            on_reveal=Callback::new(move |n: String| reveal(n, None))
                            on_edit=Callback::new(edit)
                            on_delete=Callback::new(move |n: String| confirming.set(Some(n)))/>
                    </For>
                </tbody>
            </table>
            {move || (loaded.get() && own.with(Vec::is_empty)).then(|| view! {
                <p class="muted" id="no-secrets">"No secrets yet."</p>
            })}
        </section>
        {move || revealing.get().map(|target| view! {
            <RevealPanel target on_close=move || revealing.set(None)/>
        })}
        {(scope == SecretScope::App).then(|| view! {
            <section aria-labelledby="inherited-heading">
                <h2 id="inherited-heading">"From groups"</h2>
                <p class="help">
                    "Groups: "
                    <span id="linked-groups">
                        {move || {
                            let groups = linked.get();
                            let none = groups.is_empty().then_some("none");
                            let links = groups.into_iter().enumerate().map(|(i, g)| {
                                let href = format!("/secret-groups/{g}");
                                view! { {(i > 0).then_some(", ")}<A href>{g}</A> }
                            }).collect_view();
                            view! { {none}{links} }
                        }}
                    </span>
                    ". Attach or detach groups with "<code>"secret_groups"</code>" in "
                    <A href=format!("/apps/{}", owner.get_value())>"the app's settings"</A>
                    " (a later group wins over an earlier one). "
                    <A href="/secret-groups">"All groups"</A>
                </p>
                <table class="data secrets" id="inherited-secrets">
                    <thead>
                        <tr>
                            <th scope="col">"Name"</th>
                            <th scope="col">"Group"</th>
                            <th scope="col">"Length"</th>
                            <th scope="col">"Updated"</th>
                            <th scope="col">"By"</th>
                            <th scope="col">"In effect"</th>
                            <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                        </tr>
                    </thead>
                    <tbody>
                        <For each=move || inherited.get()
                            key=|s| (s.name.clone(), s.group.clone(), s.updated_at.clone(), s.length, s.effective, s.overrides_env)
                            let:s>
                            <InheritedRow secret=s on_reveal=Callback::new(move |(n, g): (String, Option<String>)| reveal(n, g))/>
                        </For>
                    </tbody>
                </table>
                {move || (loaded.get() && inherited.with(Vec::is_empty)).then(|| view! {
                    <p class="muted" id="no-inherited">"None: the app's groups have no secrets."</p>
                })}
            </section>
        })}
        {(scope == SecretScope::Group).then(|| view! {
            <section aria-labelledby="linked-heading">
                <h2 id="linked-heading">"Attached apps"</h2>
                <ul id="linked-apps">
                    {move || linked.get().into_iter().map(|a| {
                        let href = format!("/apps/{a}");
                        let row = a.clone();
                        view! { <li data-app=row><A href>{a}</A></li> }
                    }).collect_view()}
                </ul>
                {move || (loaded.get() && linked.with(Vec::is_empty)).then(|| view! {
                    <p class="muted" id="no-linked-apps">
                        "No app uses this group yet: add its name to an app's "<code>"secret_groups"</code>"."
                    </p>
                })}
            </section>
        })}
        <section aria-labelledby="set-secret-heading">
            <h2 id="set-secret-heading">"Add or change a secret"</h2>
            <SecretForm base name=form_name multiline own_names value_input value_area on_change/>
        </section>
        <section aria-labelledby="import-heading">
            <h2 id="import-heading">"Import a .env file"</h2>
            <ImportForm base own_names on_change/>
        </section>
        <section aria-labelledby="export-heading">
            <h2 id="export-heading">"Export as .env"</h2>
            <ExportForm base file_name=format!("{}.env", owner.get_value())/>
        </section>
    }
}

#[component]
fn OwnRow(
    secret: SecretInfo,
    on_reveal: Callback<String>,
    on_edit: Callback<String>,
    on_delete: Callback<String>,
) -> impl IntoView {
    let name = secret.name.clone();
    let (n1, n2, n3) = (name.clone(), name.clone(), name.clone());
    view! {
        <tr data-secret=name.clone() data-scope="own">
            <th scope="row" class="secret-name"><code>{name.clone()}</code>
                {secret.overrides_env.then(|| view! {
                    " "<span class="badge overrides-env" title="replaces the plain env entry of the same name">"overrides env"</span>
                })}
            </th>
            <td class="length">{bytes(secret.length)}</td>
            <td class="updated"><time datetime=secret.updated_at.clone()>{moment(&secret.updated_at)}</time></td>
            <td class="updated-by">{secret.updated_by}</td>
            <td>
                <div class="row-actions">
                    <button type="button" class="small secondary" data-action="reveal"
                        aria-label=format!("Reveal {name}") on:click=move |_| on_reveal.run(n1.clone())>"Reveal"</button>
                    <button type="button" class="small secondary" data-action="edit"
                        aria-label=format!("Change the value of {name}") on:click=move |_| on_edit.run(n2.clone())>"Change value"</button>
                    <button type="button" class="small danger" data-action="delete"
                        aria-label=format!("Delete {name}") on:click=move |_| on_delete.run(n3.clone())>"Delete"</button>
                </div>
            </td>
        </tr>
    }
}

#[component]
fn InheritedRow(
    secret: SecretInfo,
    on_reveal: Callback<(String, Option<String>)>,
) -> impl IntoView {
    let name = secret.name.clone();
    let group = secret.group.clone().unwrap_or_default();
    let target = (name.clone(), secret.group.clone());
    let class = if secret.effective {
        "inherited"
    } else {
        "inherited not-effective"
    };
    let href = format!("/secret-groups/{group}");
    let row_group = group.clone();
    view! {
        <tr class=class data-secret=name.clone() data-group=row_group
            data-effective=if secret.effective { "true" } else { "false" }>
            <th scope="row" class="secret-name"><code>{name.clone()}</code>
                {secret.overrides_env.then(|| view! {
                    " "<span class="badge overrides-env" title="replaces the plain env entry of the same name">"overrides env"</span>
                })}
            </th>
            <td><A href>{group}</A></td>
            <td class="length">{bytes(secret.length)}</td>
            <td class="updated"><time datetime=secret.updated_at.clone()>{moment(&secret.updated_at)}</time></td>
            <td class="updated-by">{secret.updated_by}</td>
            <td class="effective" title=(!secret.effective).then_some("the app's own secret or a later group's of the same name wins")>
                {if secret.effective { "yes" } else { "no (overridden)" }}
            </td>
            <td>
                <button type="button" class="small secondary" data-action="reveal"
                    aria-label=format!("Reveal {name}") on:click=move |_| on_reveal.run(target.clone())>"Reveal"</button>
            </td>
        </tr>
    }
}

/// Asks for the password, then shows the value read-only until Hide (or a
/// minute later).
#[component]
fn RevealPanel(target: RevealTarget, #[prop(into)] on_close: Callback<()>) -> impl IntoView {
    let password = RwSignal::new(String::new());
    let code = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ClientError>);
    let busy = RwSignal::new(false);
    let value = RwSignal::new(None::<String>);
    let shown = StoredValue::new(0u64);
    let first = NodeRef::<leptos::html::Input>::new();
    let path = StoredValue::new(target.path.clone());
    let what = match &target.group {
        Some(g) => format!("{} (from group {g})", target.name),
        None => target.name.clone(),
    };

    let hide = move || {
        shown.update_value(|g| *g += 1);
        value.set(None);
        on_close.run(());
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = reauth(password, code);
        busy.set(true);
        spawn_local(async move {
            match client::send::<_, Revealed>("POST", &path.get_value(), &body).await {
                Ok(r) => {
                    error.set(None);
                    password.set(String::new());
                    code.set(String::new());
                    shown.update_value(|g| *g += 1);
                    value.set(Some(r.value));
                    hide_later(shown, move || {
                        value.try_set(None);
                    });
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };

    let heading = format!("Reveal {what}");
    view! {
        <section class="reveal" id="reveal" aria-labelledby="reveal-heading"
            on:keydown=move |ev| if ev.key() == "Escape" { hide() }>
            <h2 id="reveal-heading">{heading}</h2>
            {move || match value.get() {
                None => Either::Left(view! {
                    <form class="stack" id="reveal-form" on:submit=submit>
                        <p class="help">"Confirm it is you. The reveal is recorded in the audit log."</p>
                        <FormError error fields=&["password", "totp_code"]/>
                        <ReauthFields prefix="reveal" password code error first/>
                        <div class="actions">
                            <button type="submit" id="reveal-confirm" disabled=busy>"Reveal value"</button>
                            <button type="button" class="secondary" id="reveal-cancel" on:click=move |_| hide()>"Cancel"</button>
                        </div>
                    </form>
                }),
                Some(v) => Either::Right(view! {
                    <label for="revealed-value">{format!("Value of {what}")}</label>
                    <textarea id="revealed-value" class="mono" readonly rows=v.lines().count().clamp(1, 12).to_string()
                        spellcheck="false" prop:value=v></textarea>
                    <p class="help">"Hidden again after a minute."</p>
                    <button type="button" id="reveal-hide" on:click=move |_| hide()>"Hide"</button>
                }),
            }}
        </section>
    }
}

/// Sets one secret. The value is write-only: it is cleared once stored.
#[component]
fn SecretForm(
    base: StoredValue<String>,
    name: RwSignal<String>,
    multiline: RwSignal<bool>,
    own_names: Signal<Vec<String>>,
    value_input: NodeRef<leptos::html::Input>,
    value_area: NodeRef<leptos::html::Textarea>,
    on_change: Callback<Changed>,
) -> impl IntoView {
    let value = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ClientError>);
    let busy = RwSignal::new(false);

    // Checked as it is typed; berth checks it again.
    let name_problem = Memo::new(move |_| {
        let typed = name.get();
        let typed = typed.trim();
        if typed.is_empty() {
            return None;
        }
        check_secret_name(typed).err().map(|m| {
            let upper = typed.to_ascii_uppercase();
            if check_secret_name(&upper).is_ok() {
                format!("{m}. Did you mean {upper}?")
            } else {
                m
            }
        })
    });
    let exists = move || {
        let typed = name.get();
        own_names.with(|n| n.iter().any(|n| n == typed.trim()))
    };

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let key = name.get_untracked().trim().to_string();
        if let Err(m) = check_secret_name(&key) {
            return error.set(Some(problem("name", m)));
        }
        let body = SecretValue {
            value: value.get_untracked(),
        };
        if let Err(m) = check_secret_value(&body.value) {
            return error.set(Some(problem("value", m)));
        }
        let replaced = own_names.with_untracked(|n| n.contains(&key));
        busy.set(true);
        spawn_local(async move {
            let path = format!("{}/{key}", base.get_value());
            match client::send::<_, SecretChange>("PUT", &path, &body).await {
                Ok(c) => {
                    error.set(None);
                    // The value leaves the page as soon as berth has it.
                    value.set(String::new());
                    name.set(String::new());
                    let verb = if replaced { "Changed" } else { "Added" };
                    on_change.run(Changed::from_change(format!("{verb} {key}."), c));
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };

    view! {
        <form class="stack" id="secret-form" on:submit=submit>
            <FormError error fields=&["name", "value"]/>
            <label for="secret-name">"Name"</label>
            <input id="secret-name" name="name" required maxlength="255" autocomplete="off"
                spellcheck="false" placeholder="DATABASE_PASSWORD" aria-describedby="secret-name-help"
                aria-invalid=move || if name_problem.with(Option::is_some) || invalid(error, "name")() == "true" { "true" } else { "false" }
                bind:value=name/>
            <p class="help" id="secret-name-help">"Capital letters, digits and _, not starting with a digit. An existing name gets the new value."</p>
            <div aria-live="polite">
                {move || name_problem.get().map(|m| view! {
                    <p class="error field-error" id="secret-name-problem">{m}</p>
                })}
            </div>
            <FieldError error field="name"/>
            <label for="secret-value">"Value"</label>
            {move || if multiline.get() {
                Either::Left(view! {
                    <textarea id="secret-value" name="value" rows="6" class="mono" autocomplete="off"
                        spellcheck="false" aria-describedby="secret-value-help"
                        aria-invalid=invalid(error, "value") node_ref=value_area bind:value=value></textarea>
                })
            } else {
                Either::Right(view! {
                    <input id="secret-value" name="value" type="password" autocomplete="new-password"
                        spellcheck="false" aria-describedby="secret-value-help"
                        aria-invalid=invalid(error, "value") node_ref=value_input bind:value=value/>
                })
            }}
            <p class="help" id="secret-value-help">
                {format!(
                    "Write-only: stored encrypted and cleared from this page once saved. Up to {} KiB.",
                    crate::api::MAX_SECRET_BYTES / 1024
                )}
            </p>
            <FieldError error field="value"/>
            <label class="check">
                <input type="checkbox" id="secret-multiline" bind:checked=multiline/>
                "Multi-line value (e.g. a PEM key; shown while you type)"
            </label>
            <button type="submit" id="save-secret" disabled=busy>
                {move || if exists() { "Update secret" } else { "Add secret" }}
            </button>
        </form>
    }
}

/// Identifies the text and options a dry run was made for, without keeping
/// a second copy of the values around.
fn fingerprint(text: &str, replace: bool) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    replace.hash(&mut h);
    h.finish()
}

/// Pasted `.env` text: checked line by line as it is typed, previewed by
/// berth (dry run), then imported all at once.
#[component]
fn ImportForm(
    base: StoredValue<String>,
    own_names: Signal<Vec<String>>,
    on_change: Callback<Changed>,
) -> impl IntoView {
    let text = RwSignal::new(String::new());
    let replace = RwSignal::new(false);
    let error = RwSignal::new(None::<ClientError>);
    let busy = RwSignal::new(false);
    let preview = RwSignal::new(None::<(u64, ImportPreview)>);

    // Names only: the values stay in the textarea.
    let check = Memo::new(move |_| {
        text.with(|t| {
            (!t.trim().is_empty()).then(|| {
                dotenv::parse(t).map(|pairs| pairs.into_iter().map(|(n, _)| n).collect::<Vec<_>>())
            })
        })
    });
    let current = move || {
        let now = text.with(|t| fingerprint(t, replace.get()));
        preview.with(|p| p.as_ref().is_some_and(|(f, _)| *f == now))
    };

    let run = move |dry_run: bool| {
        let req = ImportRequest {
            dotenv: text.get_untracked(),
            dry_run,
            replace: replace.get_untracked(),
        };
        let made_for = fingerprint(&req.dotenv, req.replace);
        busy.set(true);
        spawn_local(async move {
            let path = format!("{}/import", base.get_value());
            match client::send::<_, ImportPreview>("POST", &path, &req).await {
                Ok(p) if p.dry_run => {
                    error.set(None);
                    preview.set(Some((made_for, p)));
                }
                Ok(p) => {
                    error.set(None);
                    text.set(String::new());
                    preview.set(None);
                    let message = format!(
                        "Imported: {} added, {} changed, {} unchanged, {} removed.",
                        p.added.len(),
                        p.changed.len(),
                        p.unchanged.len(),
                        p.removed.len()
                    );
                    on_change.run(Changed {
                        message,
                        needs_redeploy: p.needs_redeploy,
                        redeploying: p.redeploying,
                    });
                }
                Err(e) => {
                    preview.set(None);
                    error.set(Some(e));
                }
            }
            busy.set(false);
        });
    };

    view! {
        <form class="stack" id="import-form" on:submit=move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            run(false);
        }>
            <label for="import-dotenv">".env text"</label>
            <textarea id="import-dotenv" name="dotenv" rows="8" class="mono" spellcheck="false"
                autocomplete="off" aria-describedby="import-dotenv-help import-check"
                aria-invalid=move || if check.with(|c| matches!(c, Some(Err(_)))) || invalid(error, "dotenv")() == "true" { "true" } else { "false" }
                placeholder="DATABASE_URL=postgres://…\nAPI_KEY=\"…\""
                bind:value=text></textarea>
            <p class="help" id="import-dotenv-help">
                <code>"NAME=value"</code>" per line; "<code>"export"</code>", quotes and "<code>"#"</code>
                " comments work; no "<code>"$VAR"</code>" expansion. Every line must be valid, or nothing is imported. Cleared once imported."
            </p>
            <div id="import-check" aria-live="polite">
                {move || check.get().map(|c| match c {
                    Err(errors) => Either::Left(view! {
                        <p class="error">{format!(
                            "{} line(s) to fix; nothing can be imported until every line is valid:",
                            errors.len()
                        )}</p>
                        <ul class="line-errors" id="import-errors">
                            {errors.into_iter().map(|e| view! {
                                <li data-line=e.line.to_string()>{format!("line {}: {}", e.line, e.message)}</li>
                            }).collect_view()}
                        </ul>
                    }),
                    Ok(names) => {
                        let own = own_names.get();
                        let (known, new): (Vec<String>, Vec<String>) =
                            names.iter().cloned().partition(|n| own.contains(n));
                        let dropped: Vec<String> = if replace.get() {
                            own.into_iter().filter(|n| !names.contains(n)).collect()
                        } else {
                            Vec::new()
                        };
                        Either::Right(view! {
                            <p class="success" id="import-valid">{format!("{} variable(s), every line valid.", names.len())}</p>
                            <ul class="import-names" id="import-names">
                                {(!new.is_empty()).then(|| view! { <li id="import-new">{format!("To add: {}", listed(&new))}</li> })}
                                {(!known.is_empty()).then(|| view! { <li id="import-known">{format!("Already set (changed if the value differs): {}", listed(&known))}</li> })}
                                {(!dropped.is_empty()).then(|| view! { <li id="import-dropped" class="error">{format!("To delete: {}", listed(&dropped))}</li> })}
                            </ul>
                        })
                    }
                })}
            </div>
            <label class="check">
                <input type="checkbox" id="import-replace" bind:checked=replace/>
                "Replace: delete the secrets that are not in the file"
            </label>
            <FieldError error field="dotenv"/>
            <FormError error fields=&["dotenv"]/>
            <div class="actions">
                <button type="button" class="secondary" id="import-preview"
                    disabled=move || busy.get() || !check.with(|c| matches!(c, Some(Ok(_))))
                    on:click=move |_| run(true)>"Preview import"</button>
                <button type="submit" id="import-submit"
                    disabled=move || busy.get() || !current()
                    title="Preview first: Import applies exactly what the preview shows">"Import"</button>
            </div>
            <div aria-live="polite">
                {move || preview.get().map(|(_, p)| {
                    let stale = !current();
                    view! {
                        <div class="plan" id="import-result" data-stale=if stale { "true" } else { "false" }>
                            <p>
                                <strong>"Preview: "</strong>
                                {if stale {
                                    "the text or the replace option changed since; preview again before importing."
                                } else {
                                    "nothing is stored until you press Import."
                                }}
                            </p>
                            <dl class="settings">
                                <dt>"Added"</dt><dd id="import-added">{names_or_none(&p.added)}</dd>
                                <dt>"Changed"</dt><dd id="import-changed">{names_or_none(&p.changed)}</dd>
                                <dt>"Unchanged"</dt><dd id="import-unchanged">{names_or_none(&p.unchanged)}</dd>
                                <dt>"Removed"</dt><dd id="import-removed">{names_or_none(&p.removed)}</dd>
                            </dl>
                        </div>
                    }
                })}
            </div>
        </form>
    }
}

fn names_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        format!("{} ({})", listed(names), names.len())
    }
}

/// A `data:` URL that downloads `text` as a file.
fn data_url(text: &str) -> String {
    let mut out = String::from("data:text/plain;charset=utf-8,");
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The owner's secrets as a `.env` text, behind the password.
#[component]
fn ExportForm(base: StoredValue<String>, file_name: String) -> impl IntoView {
    let password = RwSignal::new(String::new());
    let code = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ClientError>);
    let busy = RwSignal::new(false);
    let open = RwSignal::new(false);
    let exported = RwSignal::new(None::<String>);
    let shown = StoredValue::new(0u64);
    let first = NodeRef::<leptos::html::Input>::new();
    let file_name = StoredValue::new(file_name);

    let hide = move || {
        shown.update_value(|g| *g += 1);
        exported.set(None);
        open.set(false);
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = reauth(password, code);
        busy.set(true);
        spawn_local(async move {
            let path = format!("{}/export", base.get_value());
            match client::send::<_, Exported>("POST", &path, &body).await {
                Ok(x) => {
                    error.set(None);
                    password.set(String::new());
                    code.set(String::new());
                    shown.update_value(|g| *g += 1);
                    exported.set(Some(x.dotenv));
                    hide_later(shown, move || {
                        exported.try_set(None);
                        open.try_set(false);
                    });
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };

    view! {
        {move || match (open.get(), exported.get()) {
            (false, _) => EitherOf3::A(view! {
                <p class="help">"Every value in clear text, behind your password; the export is recorded in the audit log."</p>
                <button type="button" class="secondary" id="export-start" on:click=move |_| open.set(true)>"Export .env…"</button>
            }),
            (true, None) => EitherOf3::B(view! {
                <form class="stack" id="export-form" on:submit=submit>
                    <FormError error fields=&["password", "totp_code"]/>
                    <ReauthFields prefix="export" password code error first/>
                    <div class="actions">
                        <button type="submit" id="export-submit" disabled=busy>"Export .env"</button>
                        <button type="button" class="secondary" on:click=move |_| hide()>"Cancel"</button>
                    </div>
                </form>
            }),
            (true, Some(text)) => EitherOf3::C(view! {
                <div class="reveal">
                    <label for="exported-dotenv">".env (every value in clear text)"</label>
                    <textarea id="exported-dotenv" class="mono" readonly spellcheck="false"
                        rows=text.lines().count().clamp(2, 16).to_string() prop:value=text.clone()></textarea>
                    <p class="help">"Hidden again after a minute."</p>
                    <div class="actions">
                        <a id="export-download" class="button" href=data_url(&text) download=file_name.get_value()>"Download"</a>
                        <button type="button" id="export-hide" on:click=move |_| hide()>"Hide"</button>
                    </div>
                </div>
            }),
        }}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_carry_the_text_percent_encoded() {
        assert_eq!(
            data_url("A=1 #\n"),
            "data:text/plain;charset=utf-8,A%3D1%20%23%0A"
        );
    }

    #[test]
    fn a_preview_is_for_one_text_and_one_replace_choice() {
        assert_eq!(fingerprint("A=1", false), fingerprint("A=1", false));
        assert_ne!(fingerprint("A=1", false), fingerprint("A=1", true));
        assert_ne!(fingerprint("A=1", false), fingerprint("A=2", false));
    }

    #[test]
    fn lengths_read_in_bytes() {
        assert_eq!(bytes(1), "1 byte");
        assert_eq!(bytes(12), "12 bytes");
    }
}
