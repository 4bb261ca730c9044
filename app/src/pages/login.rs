//! Login, with a second step for the TOTP code once one is enrolled.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;

use super::widgets::{invalid, ErrorMessage};
use super::Auth;
use crate::api::{LoginRequest, SessionInfo};
use crate::client::{self, ClientError};

#[component]
pub fn Login() -> impl IntoView {
    let auth = expect_context::<Auth>();
    let navigate = use_navigate();
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let code = RwSignal::new(String::new());
    let need_code = RwSignal::new(false);
    let error = RwSignal::new(None::<ClientError>);
    let busy = RwSignal::new(false);

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let navigate = navigate.clone();
        let req = LoginRequest {
            username: username.get_untracked(),
            password: password.get_untracked(),
            totp_code: need_code.get_untracked().then(|| code.get_untracked()),
        };
        busy.set(true);
        spawn_local(async move {
            match client::send::<_, SessionInfo>("POST", "/api/v1/auth/login", &req).await {
                Ok(s) => {
                    error.set(None);
                    password.set(String::new());
                    auth.signed_out();
                    client::set_csrf(Some(s.csrf_token));
                    navigate("/", Default::default());
                }
                Err(e) if e.code == "totp_required" => {
                    error.set(None);
                    need_code.set(true);
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };

    view! {
        <Title text="Log in · berth"/>
        <main id="main" class="narrow">
            <h1>"Log in to berth"</h1>
            <ErrorMessage error/>
            <form on:submit=submit>
                <label for="login-username">"Username"</label>
                <input id="login-username" name="username" autocomplete="username" required
                    readonly=move || need_code.get() bind:value=username/>
                <label for="login-password">"Password"</label>
                <input id="login-password" name="password" type="password"
                    autocomplete="current-password" required readonly=move || need_code.get()
                    bind:value=password/>
                <Show when=move || need_code.get()>
                    <label for="login-code">"Authentication code"</label>
                    <input id="login-code" name="totp_code" inputmode="numeric"
                        autocomplete="one-time-code" required aria-describedby="code-help"
                        aria-invalid=invalid(error, "totp_code") bind:value=code/>
                    <p id="code-help" class="help">"From your authenticator app, or one of your recovery codes."</p>
                </Show>
                <button type="submit" disabled=move || busy.get()>"Log in"</button>
            </form>
        </main>
    }
}
