//! API tokens: create (the value is shown once), list, revoke.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::widgets::{invalid, loader, ErrorMessage};
use super::Frame;
use crate::api::{CreateToken, CreatedToken, Scope, TokenInfo};
use crate::client::{self, ClientError};

#[component]
pub fn Tokens() -> impl IntoView {
    view! {
        <Frame title="API tokens" body=TokensBody/>
    }
}

#[component]
fn TokensBody() -> impl IntoView {
    let tokens = RwSignal::new(Vec::<TokenInfo>::new());
    let error = RwSignal::new(None::<ClientError>);
    let created = RwSignal::new(None::<CreatedToken>);
    let name = RwSignal::new(String::new());
    let scope = RwSignal::new(String::from("read"));
    let days = RwSignal::new(String::from("90"));

    let reload = loader(
        "/api/v1/tokens",
        move |list: Vec<TokenInfo>| tokens.set(list),
        error,
    );
    Effect::new(move |_| reload());

    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let scopes = match scope.get_untracked().as_str() {
            "admin" => vec![Scope::Admin],
            "write" => vec![Scope::Write],
            _ => vec![Scope::Read],
        };
        let expires_in_days = match days.get_untracked().trim().parse::<u32>() {
            Ok(d) => Some(d),
            Err(_) => {
                error.set(Some(ClientError {
                    status: 0,
                    code: "invalid".into(),
                    message: "expiry must be a whole number of days".into(),
                    field: Some("expires_in_days".into()),
                }));
                return;
            }
        };
        let req = CreateToken {
            name: name.get_untracked(),
            scopes,
            expires_in_days,
        };
        spawn_local(async move {
            match client::send::<_, CreatedToken>("POST", "/api/v1/tokens", &req).await {
                Ok(t) => {
                    error.set(None);
                    name.set(String::new());
                    created.set(Some(t));
                    reload();
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };

    let revoke = move |id: String| {
        spawn_local(async move {
            let path = format!("/api/v1/tokens/{id}");
            match client::send_no_content::<()>("DELETE", &path, None).await {
                Ok(()) => reload(),
                Err(e) => error.set(Some(e)),
            }
        });
    };

    view! {
        <section aria-labelledby="new-token-heading">
            <h2 id="new-token-heading">"New token"</h2>
            <ErrorMessage error/>
            <form class="inline" on:submit=create>
                <div>
                    <label for="token-name">"Name"</label>
                    <input id="token-name" name="name" required maxlength="64"
                        aria-invalid=invalid(error, "name") bind:value=name/>
                </div>
                <div>
                    <label for="token-scope">"Scope"</label>
                    <select id="token-scope" name="scope"
                        on:change=move |ev| scope.set(event_target_value(&ev))
                        prop:value=move || scope.get()>
                        <option value="read">"read — may only read"</option>
                        <option value="write">"write — may change resources"</option>
                        <option value="admin">"admin — also tokens and security settings"</option>
                    </select>
                </div>
                <div>
                    <label for="token-days">"Expires in (days)"</label>
                    <input id="token-days" name="expires_in_days" type="number" min="1" max="3650"
                        required aria-invalid=invalid(error, "expires_in_days") bind:value=days/>
                </div>
                <button type="submit">"Create token"</button>
            </form>
            {move || created.get().map(|t| view! {
                <div class="reveal" role="status">
                    <p>
                        <strong>"Copy this token now: "</strong>
                        "it will not be shown again. Use it as "
                        <code>"Authorization: Bearer …"</code>"."
                    </p>
                    <label for="new-token-value">{format!("Token “{}”", t.name)}</label>
                    <input id="new-token-value" data-testid="new-token" readonly value=t.token/>
                    <button type="button" class="secondary" on:click=move |_| created.set(None)>"Done"</button>
                </div>
            })}
        </section>
        <section aria-labelledby="tokens-heading">
            <h2 id="tokens-heading">"Tokens"</h2>
            <table class="data">
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Scopes"</th>
                        <th scope="col">"Created"</th>
                        <th scope="col">"Expires"</th>
                        <th scope="col">"Last used"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    <For each=move || tokens.get() key=|t| (t.id.clone(), t.status.clone()) let:t>
                        <tr data-token-name=t.name.clone()>
                            <td>{t.name.clone()}</td>
                            <td>{t.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")}</td>
                            <td><time>{t.created_at.clone()}</time></td>
                            <td><time>{t.expires_at.clone()}</time></td>
                            <td>{t.last_used_at.clone().unwrap_or_else(|| "never".into())}</td>
                            <td>{t.status.clone()}</td>
                            <td>
                                {(t.status == "active").then(|| {
                                    let id = t.id.clone();
                                    let label = format!("Revoke token {}", t.name);
                                    view! {
                                        <button type="button" class="danger" aria-label=label
                                            on:click=move |_| revoke(id.clone())>"Revoke"</button>
                                    }
                                })}
                            </td>
                        </tr>
                    </For>
                </tbody>
            </table>
            {move || tokens.with(|t| t.is_empty()).then(|| view! { <p class="muted">"No tokens yet."</p> })}
        </section>
    }
}
