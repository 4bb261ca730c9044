//! Secrets: one editor for an app's or a shared group's environment secrets,
//! the groups, and the key that seals them (with its recovery key).
//!
//! Values go to berth and do not come back: the pages list names and
//! metadata only. A value is on the page only while the admin types it, or
//! after asking to reveal or export it again with the password; it leaves
//! the page (signal and DOM) once saved, hidden, or after a minute.

mod editor;
mod groups;
mod keys;

pub use groups::{SecretGroupPage, SecretGroups};
pub use keys::{RecoveryKeyShown, SecretKeys};

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;

use super::widgets::{invalid, ErrorMessage, FieldError};
use super::{Auth, Frame};
use crate::api::{App, Reauth, SecretScope};
use crate::client::{self, ClientError};
use editor::SecretsEditor;

/// How long a revealed or exported value stays on the page.
const SHOWN_FOR: Duration = Duration::from_secs(60);

/// `/apps/:name/secrets`: the app's own secrets and those its groups give it.
#[component]
pub fn AppSecrets() -> impl IntoView {
    let params = use_params_map();
    let name = Memo::new(move |_| params.read().get("name").unwrap_or_default());
    move || {
        let name = name.get();
        let title = format!("Secrets of {name}");
        view! {
            <Frame title body=move || {
                let href = format!("/apps/{name}");
                let back = format!("← {name}");
                view! {
                    <p><A href>{back}</A></p>
                    <SecretsEditor scope=SecretScope::App owner=name.clone()/>
                }
            }/>
        }
    }
}

/// A timestamp as `YYYY-MM-DD HH:MM` (the API's are RFC 3339, UTC).
fn moment(ts: &str) -> String {
    ts.get(..16).unwrap_or(ts).replace('T', " ")
}

/// Names joined for a sentence.
fn listed(names: &[String]) -> String {
    names.join(", ")
}

/// The body of a re-authentication; an empty code is left out.
pub(super) fn reauth(password: RwSignal<String>, code: RwSignal<String>) -> Reauth {
    Reauth {
        password: password.get_untracked(),
        totp_code: Some(code.get_untracked().trim().to_string()).filter(|c| !c.is_empty()),
    }
}

/// The password (and, when the second factor is on or berth asked for it,
/// the current code) that reveal, export and a new recovery key need.
#[component]
pub(super) fn ReauthFields(
    /// Prefix of the inputs' ids: `{prefix}-password`, `{prefix}-totp`.
    prefix: &'static str,
    password: RwSignal<String>,
    code: RwSignal<String>,
    error: RwSignal<Option<ClientError>>,
    /// Focused when the fields appear.
    first: NodeRef<leptos::html::Input>,
) -> impl IntoView {
    let auth = expect_context::<Auth>();
    let asks_code = move || {
        auth.me.with(|m| m.as_ref().is_some_and(|m| m.totp_enabled))
            || error.with(|e| e.as_ref().and_then(|e| e.field.as_deref()) == Some("totp_code"))
    };
    Effect::new(move |_| {
        if let Some(input) = first.get() {
            let _ = input.focus();
        }
    });
    let password_id = format!("{prefix}-password");
    let code_id = format!("{prefix}-totp");
    view! {
        <label for=password_id.clone()>"Your password"</label>
        <input id=password_id type="password" autocomplete="current-password" required
            aria-invalid=invalid(error, "password") bind:value=password node_ref=first/>
        <FieldError error field="password"/>
        {move || asks_code().then(|| {
            let code_id = code_id.clone();
            view! {
                <label for=code_id.clone()>"Two-factor code"</label>
                <input id=code_id inputmode="numeric" autocomplete="one-time-code"
                    aria-invalid=invalid(error, "totp_code") bind:value=code/>
                <FieldError error field="totp_code"/>
            }
        })}
    }
}

/// Apps whose container still has older secrets, and those berth is
/// redeploying by itself (`redeploy_on_secret_change`).
#[derive(Clone, Copy)]
struct Redeploys {
    needs: RwSignal<Vec<String>>,
    redeploying: RwSignal<Vec<String>>,
}

impl Redeploys {
    fn new() -> Self {
        Redeploys {
            needs: RwSignal::new(Vec::new()),
            redeploying: RwSignal::new(Vec::new()),
        }
    }

    /// What berth answered to a change. An app it redeploys is not listed
    /// as needing one, even if the next listing still says so.
    fn changed(&self, needs: Vec<String>, redeploying: Vec<String>) {
        self.needs.set(
            needs
                .into_iter()
                .filter(|a| !redeploying.contains(a))
                .collect(),
        );
        self.redeploying.set(redeploying);
    }

    /// What a fresh listing says.
    fn listed(&self, needs: Vec<String>) {
        let redeploying = self.redeploying.get_untracked();
        self.needs.set(
            needs
                .into_iter()
                .filter(|a| !redeploying.contains(a))
                .collect(),
        );
    }
}

/// "Needs redeploy: a, b" with a Redeploy button per app, and the apps
/// berth is redeploying by itself.
#[component]
fn RedeployPanel(redeploys: Redeploys, #[prop(into)] on_redeployed: Callback<()>) -> impl IntoView {
    let error = RwSignal::new(None::<ClientError>);
    let busy = RwSignal::new(None::<String>);
    let done = RwSignal::new(Vec::<String>::new());
    let redeploy = move |app: String| {
        busy.set(Some(app.clone()));
        spawn_local(async move {
            let path = format!("/api/v1/apps/{app}/redeploy");
            match client::send_empty::<App>("POST", &path).await {
                Ok(_) => {
                    error.set(None);
                    redeploys.needs.update(|n| n.retain(|a| *a != app));
                    done.update(|d| {
                        if !d.contains(&app) {
                            d.push(app);
                        }
                    });
                    on_redeployed.run(());
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(None);
        });
    };
    view! {
        <div class="redeploys" aria-live="polite">
            {move || {
                let needs = redeploys.needs.get();
                (!needs.is_empty()).then(|| view! {
                    <div class="redeploy-box" id="needs-redeploy">
                        <p>
                            <span class="badge needs-redeploy">"needs redeploy"</span>" "
                            <span id="needs-redeploy-apps">{format!("Needs redeploy: {}", listed(&needs))}</span>
                            {if needs.len() == 1 {
                                ". Its container still has the previous values; a redeploy recreates it with the current ones."
                            } else {
                                ". Their containers still have the previous values; a redeploy recreates them with the current ones."
                            }}
                        </p>
                        <ul class="redeploy-list">
                            {needs.into_iter().map(|app| {
                                let href = format!("/apps/{app}");
                                let label = format!("Redeploy {app}");
                                let this = app.clone();
                                let target = app.clone();
                                let row = app.clone();
                                view! {
                                    <li data-app=row>
                                        <A href>{app}</A>" "
                                        <button type="button" class="small" data-action="redeploy"
                                            disabled=move || busy.get().is_some()
                                            on:click=move |_| redeploy(target.clone())>
                                            {move || if busy.get().as_ref() == Some(&this) { "Redeploying…".to_string() } else { label.clone() }}
                                        </button>
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                    </div>
                })
            }}
            {move || {
                let redeploying = redeploys.redeploying.get();
                (!redeploying.is_empty()).then(|| view! {
                    <p class="notice" id="redeploying">
                        {format!("Redeploying: {} (they redeploy by themselves when a secret changes).", listed(&redeploying))}
                    </p>
                })
            }}
            {move || {
                let done = done.get();
                (!done.is_empty()).then(|| view! {
                    <p class="success" id="redeployed">{format!("Redeployed: {}.", listed(&done))}</p>
                })
            }}
            <ErrorMessage error/>
        </div>
    }
}

/// Runs `hide` after `SHOWN_FOR`, unless `shown` moved on meanwhile (the
/// value was hidden, or another one shown).
fn hide_later(shown: StoredValue<u64>, hide: impl Fn() + 'static) {
    let generation = shown.get_value();
    set_timeout(
        move || {
            if shown.try_get_value() == Some(generation) {
                hide();
            }
        },
        SHOWN_FOR,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_minutes_utc() {
        assert_eq!(moment("2025-03-01T12:34:56Z"), "2025-03-01 12:34");
        assert_eq!(moment("short"), "short");
    }
}
