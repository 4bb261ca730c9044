//! `/secrets`: the key that seals every secret (where the master key comes
//! from, the data key in use, how many secrets it holds), the recovery key
//! (configured or not; a new one is shown once), and the way to the groups.

use leptos::either::EitherOf3;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;

use super::super::widgets::{loader, ErrorMessage, FormError, StatusBadge, Tone};
use super::super::Frame;
use super::{moment, reauth, ReauthFields};
use crate::api::{KeyStatus, RecoveryKey};
use crate::client::{self, ClientError};

#[component]
pub fn SecretKeys() -> impl IntoView {
    view! { <Frame title="Secrets" body=KeysBody/> }
}

/// The data key in use; berth makes the first with the first secret.
fn data_key(s: &KeyStatus) -> String {
    match (s.data_key_id, s.data_key_created_at.as_str()) {
        (0, _) => "none yet (made with the first secret)".into(),
        (id, "") => format!("#{id}"),
        (id, at) => format!("#{id}, since {}", moment(at)),
    }
}

#[component]
fn KeysBody() -> impl IntoView {
    let status = RwSignal::new(None::<KeyStatus>);
    let error = RwSignal::new(None::<ClientError>);
    let reload = loader(
        "/api/v1/secrets/keys",
        move |s: KeyStatus| status.set(Some(s)),
        error,
    );
    Effect::new(move |_| reload());

    view! {
        <p class="muted">
            "Secrets are environment variables stored encrypted and given to containers when they are created. "
            "An app's own secrets are on its page ("<A href="/apps">"Apps"</A>" → the app → Secrets); "
            "secrets several apps share live in "<A href="/secret-groups">"secret groups"</A>"."
        </p>
        <ErrorMessage error/>
        <section aria-labelledby="keys-heading">
            <h2 id="keys-heading">"Encryption keys"</h2>
            {move || status.get().map(|s| {
                let source = if s.master_source == "environment" {
                    "environment variable BERTH_MASTER_KEY".to_string()
                } else {
                    s.master_source.clone()
                };
                view! {
                <dl class="settings" id="key-status">
                    <dt>"Master key"</dt>
                    <dd id="master-key">
                        {source}" "{s.master_path.clone().map(|p| view! { <code>{p}</code> })}
                    </dd>
                    <dt>"Data key"</dt>
                    <dd id="data-key">{data_key(&s)}</dd>
                    <dt>"Secrets"</dt>
                    <dd id="secret-count">{s.secrets}</dd>
                    <dt>"Recovery key"</dt>
                    <dd id="recovery-status" data-configured=if s.recovery_configured { "true" } else { "false" }>
                        {s.recovery_configured.then(|| view! {
                            <StatusBadge word="configured" tone=Tone::Good/>
                            {s.recovery_created_at.as_deref().map(|at| format!(" since {}", moment(at)))}
                        })}
                        {(!s.recovery_configured).then(|| view! {
                            <StatusBadge word="not configured" tone=Tone::Bad/>
                            " Without it, losing the master key loses every sealed value."
                        })}
                    </dd>
                </dl>
                }
            })}
        </section>
        <section aria-labelledby="recovery-heading">
            <h2 id="recovery-heading">"Recovery key"</h2>
            <NewRecoveryKey on_created=move || reload()/>
        </section>
    }
}

/// Makes a new recovery key behind the password and shows it once.
#[component]
fn NewRecoveryKey(#[prop(into)] on_created: Callback<()>) -> impl IntoView {
    let password = RwSignal::new(String::new());
    let code = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ClientError>);
    let busy = RwSignal::new(false);
    let open = RwSignal::new(false);
    let key = RwSignal::new(None::<String>);
    let first = NodeRef::<leptos::html::Input>::new();

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = reauth(password, code);
        busy.set(true);
        spawn_local(async move {
            match client::send::<_, RecoveryKey>("POST", "/api/v1/secrets/recovery-key", &body)
                .await
            {
                Ok(k) => {
                    error.set(None);
                    password.set(String::new());
                    code.set(String::new());
                    open.set(false);
                    key.set(Some(k.recovery_key));
                    on_created.run(());
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };

    view! {
        <p class="help">
            "The recovery key alone opens the sealed secrets if the master key is lost (run "
            <code>"berth secrets recover"</code>"). berth keeps only its public half. "
            "Making a new one stops the current one from working."
        </p>
        {move || key.get().map(|k| view! {
            <RecoveryKeyShown key=k input_id="new-recovery-key"/>
            <button type="button" class="secondary" id="recovery-done"
                on:click=move |_| key.set(None)>"Done: I have stored it"</button>
        })}
        {move || match (open.get(), key.with(Option::is_some)) {
            (_, true) => EitherOf3::A(()),
            (false, false) => EitherOf3::B(view! {
                <button type="button" class="secondary" id="recovery-start"
                    on:click=move |_| open.set(true)>"New recovery key…"</button>
            }),
            (true, false) => EitherOf3::C(view! {
                <form class="stack" id="recovery-form" on:submit=submit>
                    <FormError error fields=&["password", "totp_code"]/>
                    <ReauthFields prefix="recovery" password code error first/>
                    <div class="actions">
                        <button type="submit" id="recovery-submit" disabled=busy>"Make a new recovery key"</button>
                        <button type="button" class="secondary" on:click=move |_| open.set(false)>"Cancel"</button>
                    </div>
                </form>
            }),
        }}
    }
}

/// A recovery key shown once, with how to keep it. Shared with the setup
/// wizard.
#[component]
pub fn RecoveryKeyShown(key: String, input_id: &'static str) -> impl IntoView {
    view! {
        <div class="reveal recovery-key" role="status">
            <p>
                <strong>"Store this recovery key now, away from this host: "</strong>
                "it is shown only this once. It alone can recover the sealed secrets (and everything else berth "
                "encrypts) if "<code>"master.key"</code>" is lost; anyone who has it and a copy of the data can read them."
            </p>
            <label for=input_id>"Recovery key"</label>
            // All of it in view (wrapped): it may well be copied by hand.
            <textarea id=input_id data-testid="recovery-key" class="mono" readonly rows="2"
                spellcheck="false" aria-describedby=format!("{input_id}-help")
                on:focus=move |ev| {
                    event_target::<leptos::web_sys::HtmlTextAreaElement>(&ev).select();
                }>{key}</textarea>
            <p class="help" id=format!("{input_id}-help")>
                "Click the field to select the whole key, then copy it (Ctrl+C or ⌘C) into a password manager, or write it down and keep it offline."
            </p>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: i64, at: &str) -> KeyStatus {
        KeyStatus {
            master_source: "file".into(),
            master_path: None,
            data_key_id: id,
            data_key_created_at: at.into(),
            secrets: 0,
            recovery_configured: false,
            recovery_created_at: None,
        }
    }

    #[test]
    fn a_berth_without_secrets_has_no_data_key_yet() {
        assert_eq!(
            data_key(&status(0, "")),
            "none yet (made with the first secret)"
        );
        assert_eq!(
            data_key(&status(2, "2025-01-02T03:04:05Z")),
            "#2, since 2025-01-02 03:04"
        );
    }
}
