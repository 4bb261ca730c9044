//! The backup key: archives are encrypted to its public half (the
//! recipient, `age1…`); its secret half (the identity) is shown once, when
//! it is made, so that archives can be opened without berth.

use leptos::either::EitherOf3;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::super::secrets::{reauth, ReauthFields};
use super::super::widgets::FormError;
use super::{moment, API};
use crate::api::backups::BackupKey;
use crate::client::{self, ClientError};

/// The recipient archives are encrypted to, and a way to make a new key
/// behind the password.
#[component]
pub fn BackupKeyPanel(
    /// From the jobs listing; `None` until a key exists.
    recipient: RwSignal<Option<String>>,
) -> impl IntoView {
    let created_at = RwSignal::new(None::<String>);
    let password = RwSignal::new(String::new());
    let code = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ClientError>);
    let busy = RwSignal::new(false);
    let open = RwSignal::new(false);
    let identity = RwSignal::new(None::<String>);
    let first = NodeRef::<leptos::html::Input>::new();

    Effect::new(move |_| {
        spawn_local(async move {
            if let Ok(k) = client::get::<BackupKey>(&format!("{API}/key")).await {
                created_at.set(k.created_at);
                if k.recipient.is_some() {
                    recipient.set(k.recipient);
                }
            }
        });
    });

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = reauth(password, code);
        busy.set(true);
        spawn_local(async move {
            match client::send::<_, BackupKey>("POST", &format!("{API}/key"), &body).await {
                Ok(k) => {
                    error.set(None);
                    password.set(String::new());
                    code.set(String::new());
                    open.set(false);
                    recipient.set(k.recipient);
                    created_at.set(k.created_at);
                    identity.set(k.identity);
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };

    view! {
        <dl class="settings" id="backup-key">
            <dt>"Encrypted to"</dt>
            <dd>
                {move || match recipient.get() {
                    Some(r) => view! { <code class="wrap" data-testid="backup-recipient">{r}</code> }.into_any(),
                    None => view! {
                        <span data-testid="backup-recipient">"no backup key yet: encrypted jobs need one"</span>
                    }.into_any(),
                }}
            </dd>
            {move || created_at.get().map(|at| view! {
                <dt>"Made"</dt>
                <dd>{moment(&at)}</dd>
            })}
        </dl>
        <p class="help">
            "New archives are encrypted to this key. berth can read them; with the secret half, shown once when the "
            "key is made, so can "<code>"age -d -i key.txt"</code>" without berth. A new key is used for new "
            "archives only: older ones stay readable by berth."
        </p>
        {move || identity.get().map(|k| view! {
            <BackupIdentityShown identity=k input_id="new-backup-identity"/>
            <button type="button" class="secondary" id="backup-key-done"
                on:click=move |_| identity.set(None)>"Done: I have stored it"</button>
        })}
        {move || match (open.get(), identity.with(Option::is_some)) {
            (_, true) => EitherOf3::A(()),
            (false, false) => EitherOf3::B(view! {
                <button type="button" class="secondary" id="backup-key-start" data-testid="backup-key-start"
                    on:click=move |_| open.set(true)>"Make a new backup key…"</button>
            }),
            (true, false) => EitherOf3::C(view! {
                <form class="stack" id="backup-key-form" on:submit=submit>
                    <FormError error fields=&["password", "totp_code"]/>
                    <ReauthFields prefix="backup-key" password code error first/>
                    <div class="actions">
                        <button type="submit" id="backup-key-submit" data-testid="backup-key-submit"
                            disabled=busy>"Make the new key"</button>
                        <button type="button" class="secondary" on:click=move |_| open.set(false)>"Cancel"</button>
                    </div>
                </form>
            }),
        }}
    }
}

/// The backup key's secret half, shown once, with how to keep it. Shared
/// with the setup wizard.
#[component]
pub fn BackupIdentityShown(identity: String, input_id: &'static str) -> impl IntoView {
    view! {
        <div class="reveal recovery-key backup-identity" role="status">
            <p>
                <strong>"Store this backup key now, away from this host: "</strong>
                "it is shown only this once. With it, "<code>"age -d -i key.txt"</code>
                " opens berth's encrypted backups even if this host and berth are gone; anyone who has it and "
                "a copy of the archives can read them."
            </p>
            <label for=input_id>"Backup key"</label>
            <textarea id=input_id data-testid="backup-identity" class="mono" readonly rows="2"
                spellcheck="false" aria-describedby=format!("{input_id}-help")
                on:focus=move |ev| {
                    event_target::<leptos::web_sys::HtmlTextAreaElement>(&ev).select();
                }>{identity}</textarea>
            <p class="help" id=format!("{input_id}-help")>
                "Click the field to select the whole key, then copy it into a password manager, or save it as "
                <code>"key.txt"</code>" on an offline medium."
            </p>
        </div>
    }
}
