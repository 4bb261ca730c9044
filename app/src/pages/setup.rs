//! The first-run wizard: setup token → admin account → recovery key and
//! backup key (both shown once) → basics → dashboard.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;

use super::backups::BackupIdentityShown;
use super::secrets::RecoveryKeyShown;
use super::widgets::{invalid, ErrorMessage};
use super::Auth;
use crate::api::{Settings, SetupComplete, SetupRequest, SetupStatus};
use crate::client::{self, ClientError};

#[derive(Clone, Copy, PartialEq)]
enum Step {
    Token,
    Account,
    RecoveryKey,
    Basics,
}

#[component]
pub fn SetupWizard() -> impl IntoView {
    let auth = expect_context::<Auth>();
    let navigate = use_navigate();
    let step = RwSignal::new(Step::Token);
    let error = RwSignal::new(None::<ClientError>);
    let busy = RwSignal::new(false);

    let token = RwSignal::new(String::new());
    let username = RwSignal::new(String::from("admin"));
    let password = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let panel_domain = RwSignal::new(String::new());
    let acme_email = RwSignal::new(String::new());
    // Shown once, then dropped: berth keeps only its public half.
    let recovery_key = RwSignal::new(None::<String>);
    // The backup key's secret half: likewise shown once (empty when berth
    // made none).
    let backup_identity = RwSignal::new(None::<String>);
    let key_stored = RwSignal::new(false);

    // Someone already finished setup: this page has nothing to offer.
    Effect::new({
        let navigate = navigate.clone();
        move |_| {
            let navigate = navigate.clone();
            spawn_local(async move {
                if let Ok(SetupStatus { required: false }) = client::get("/api/v1/setup").await {
                    if step.get_untracked() == Step::Token {
                        navigate("/login", Default::default());
                    }
                }
            });
        }
    });

    let to_account = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if token.get_untracked().trim().is_empty() {
            error.set(Some(ClientError {
                status: 0,
                code: "invalid".into(),
                message: "enter the setup token from berth's log or data dir".into(),
                field: Some("token".into()),
            }));
            return;
        }
        error.set(None);
        step.set(Step::Account);
    };

    let create_admin = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if password.get_untracked() != confirm.get_untracked() {
            error.set(Some(ClientError {
                status: 0,
                code: "invalid".into(),
                message: "the two passwords differ".into(),
                field: Some("confirm".into()),
            }));
            return;
        }
        let req = SetupRequest {
            token: token.get_untracked().trim().to_string(),
            username: username.get_untracked(),
            password: password.get_untracked(),
        };
        busy.set(true);
        spawn_local(async move {
            match client::send::<_, SetupComplete>("POST", "/api/v1/setup", &req).await {
                Ok(s) => {
                    error.set(None);
                    password.set(String::new());
                    confirm.set(String::new());
                    // The basics step needs the new session's CSRF token; the
                    // dashboard fetches the full `me` afterwards.
                    client::set_csrf(Some(s.csrf_token));
                    auth.me.set(None);
                    recovery_key.set(Some(s.recovery_key));
                    backup_identity.set(Some(s.backup_identity).filter(|k| !k.is_empty()));
                    step.set(Step::RecoveryKey);
                }
                Err(e) => {
                    if e.status == 403 {
                        step.set(Step::Token);
                    }
                    error.set(Some(e));
                }
            }
            busy.set(false);
        });
    };

    let key_done = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if key_stored.get_untracked() {
            recovery_key.set(None);
            backup_identity.set(None);
            step.set(Step::Basics);
        }
    };

    let save_basics = {
        let navigate = navigate.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let navigate = navigate.clone();
            let settings = Settings {
                panel_domain: Some(panel_domain.get_untracked()),
                acme_email: Some(acme_email.get_untracked()),
            };
            busy.set(true);
            spawn_local(async move {
                match client::send::<_, Settings>("PUT", "/api/v1/settings", &settings).await {
                    Ok(_) => navigate("/", Default::default()),
                    Err(e) => error.set(Some(e)),
                }
                busy.set(false);
            });
        }
    };

    let skip_basics = move |_| navigate("/", Default::default());

    view! {
        <Title text="Set up berth"/>
        <main id="main" class="narrow">
            <h1>"Set up berth"</h1>
            <ol class="steps" aria-label="Setup steps">
                <li aria-current=move || (step.get() == Step::Token).then_some("step")>"Setup token"</li>
                <li aria-current=move || (step.get() == Step::Account).then_some("step")>"Admin account"</li>
                <li aria-current=move || (step.get() == Step::RecoveryKey).then_some("step")>"Keys"</li>
                <li aria-current=move || (step.get() == Step::Basics).then_some("step")>"Basics"</li>
            </ol>
            <ErrorMessage error/>
            <Show when=move || step.get() == Step::Token>
                <form on:submit=to_account>
                    <p>
                        "berth printed a one-time setup token to its log and wrote it to "
                        <code>"<data-dir>/setup-token"</code>
                        ". Only someone with access to this host can read it."
                    </p>
                    <label for="setup-token">"Setup token"</label>
                    <input id="setup-token" name="token" type="password" autocomplete="off"
                        required aria-invalid=invalid(error, "token") bind:value=token/>
                    <button type="submit">"Next"</button>
                </form>
            </Show>
            <Show when=move || step.get() == Step::Account>
                <form on:submit=create_admin>
                    <label for="setup-username">"Username"</label>
                    <input id="setup-username" name="username" autocomplete="username" required
                        aria-invalid=invalid(error, "username") bind:value=username/>
                    <label for="setup-password">"Password"</label>
                    <input id="setup-password" name="password" type="password"
                        autocomplete="new-password" required minlength="12" maxlength="128"
                        aria-describedby="password-help" aria-invalid=invalid(error, "password")
                        bind:value=password/>
                    <p id="password-help" class="help">"12 to 128 characters; not a common password."</p>
                    <label for="setup-confirm">"Repeat password"</label>
                    <input id="setup-confirm" name="confirm" type="password"
                        autocomplete="new-password" required aria-invalid=invalid(error, "confirm")
                        bind:value=confirm/>
                    <button type="submit" disabled=move || busy.get()>"Create admin"</button>
                </form>
            </Show>
            <Show when=move || step.get() == Step::RecoveryKey>
                <form id="recovery-key-form" on:submit=key_done>
                    {move || recovery_key.get().map(|key| view! {
                        <RecoveryKeyShown key input_id="recovery-key"/>
                    })}
                    <p>
                        "berth seals its secrets with "<code>"master.key"</code>" in its data dir. Keep the "
                        "recovery key somewhere else (a password manager, or printed): with both on this host, "
                        "one lost disk loses both. A new one can be made later under Secrets, which retires this one."
                    </p>
                    {move || backup_identity.get().map(|identity| view! {
                        <BackupIdentityShown identity input_id="setup-backup-identity"/>
                        <p>
                            "berth encrypts its backups to this key. berth itself can always read them; this copy "
                            "is for the day it cannot. A new one can be made later under Backups."
                        </p>
                    })}
                    <label class="check">
                        <input type="checkbox" id="recovery-key-stored" bind:checked=key_stored/>
                        {move || if backup_identity.with(Option::is_some) {
                            "I have stored the recovery key and the backup key"
                        } else {
                            "I have stored the recovery key"
                        }}
                    </label>
                    <button type="submit" id="recovery-key-continue"
                        disabled=move || !key_stored.get()>"Continue"</button>
                </form>
            </Show>
            <Show when=move || step.get() == Step::Basics>
                <form on:submit=save_basics.clone()>
                    <p>"Stored now, used when berth requests certificates. Both can be changed later."</p>
                    <label for="panel-domain">"Panel domain"</label>
                    <input id="panel-domain" name="panel_domain" placeholder="panel.example.com"
                        aria-invalid=invalid(error, "panel_domain") bind:value=panel_domain/>
                    <label for="acme-email">"ACME e-mail"</label>
                    <input id="acme-email" name="acme_email" type="email" placeholder="ops@example.com"
                        aria-invalid=invalid(error, "acme_email") bind:value=acme_email/>
                    <div class="actions">
                        <button type="submit" disabled=move || busy.get()>"Save and finish"</button>
                        <button type="button" class="secondary" on:click=skip_basics.clone()>"Skip for now"</button>
                    </div>
                </form>
            </Show>
        </main>
    }
}
