//! The admin's account: change password, enrol or remove the TOTP second factor.

use leptos::either::EitherOf3;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::widgets::{invalid, ErrorMessage};
use super::{Auth, Frame};
use crate::api::{
    ChangePassword, Me, PasswordConfirmation, RecoveryCodes, SessionInfo, TotpCode, TotpDisable,
    TotpEnrolment,
};
use crate::client::{self, ClientError};

#[component]
pub fn Account() -> impl IntoView {
    view! {
        <Frame title="Account" body=|| view! { <PasswordSection/><TotpSection/> }/>
    }
}

#[component]
fn PasswordSection() -> impl IntoView {
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ClientError>);
    let done = RwSignal::new(false);

    let auth = expect_context::<Auth>();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        done.set(false);
        if new.get_untracked() != confirm.get_untracked() {
            error.set(Some(ClientError {
                status: 0,
                code: "invalid".into(),
                message: "the two new passwords differ".into(),
                field: Some("confirm_password".into()),
            }));
            return;
        }
        let req = ChangePassword {
            current_password: current.get_untracked(),
            new_password: new.get_untracked(),
        };
        spawn_local(async move {
            match client::send::<_, SessionInfo>("POST", "/api/v1/account/password", &req).await {
                Ok(s) => {
                    client::set_csrf(Some(s.csrf_token));
                    error.set(None);
                    for s in [current, new, confirm] {
                        s.set(String::new());
                    }
                    done.set(true);
                    if let Ok(me) = client::get::<Me>("/api/v1/me").await {
                        auth.signed_in(me);
                    }
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };

    view! {
        <section aria-labelledby="password-heading">
            <h2 id="password-heading">"Password"</h2>
            {move || auth.must_change_password().then(|| view! {
                <p class="notice" role="alert" data-testid="must-change-password">
                    "Your password was reset with a one-time password. Choose a new one to continue."
                </p>
            })}
            <ErrorMessage error/>
            {move || done.get().then(|| view! {
                <p class="success" role="status">"Password changed. Every other session has been logged out."</p>
            })}
            <form on:submit=submit>
                <label for="current-password">"Current password"</label>
                <input id="current-password" type="password" autocomplete="current-password" required
                    aria-invalid=invalid(error, "current_password") bind:value=current/>
                <label for="new-password">"New password"</label>
                <input id="new-password" type="password" autocomplete="new-password" required
                    minlength="12" maxlength="128" aria-invalid=invalid(error, "new_password") bind:value=new/>
                <label for="confirm-password">"Repeat new password"</label>
                <input id="confirm-password" type="password" autocomplete="new-password" required
                    aria-invalid=invalid(error, "confirm_password") bind:value=confirm/>
                <button type="submit">"Change password"</button>
            </form>
        </section>
    }
}

#[component]
fn TotpSection() -> impl IntoView {
    let auth = expect_context::<Auth>();
    let enabled = move || auth.me.get().is_some_and(|m| m.totp_enabled);
    let password = RwSignal::new(String::new());
    let code = RwSignal::new(String::new());
    let enrolment = RwSignal::new(None::<TotpEnrolment>);
    let recovery = RwSignal::new(None::<Vec<String>>);
    let error = RwSignal::new(None::<ClientError>);

    let refresh_me = move || {
        spawn_local(async move {
            if let Ok(me) = client::get::<Me>("/api/v1/me").await {
                auth.signed_in(me);
            }
        })
    };

    let start = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let req = PasswordConfirmation {
            password: password.get_untracked(),
        };
        spawn_local(async move {
            match client::send::<_, TotpEnrolment>("POST", "/api/v1/account/totp/enrol", &req).await
            {
                Ok(e) => {
                    error.set(None);
                    password.set(String::new());
                    enrolment.set(Some(e));
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };

    let confirm = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let req = TotpCode {
            code: code.get_untracked(),
        };
        spawn_local(async move {
            match client::send::<_, RecoveryCodes>("POST", "/api/v1/account/totp/confirm", &req)
                .await
            {
                Ok(r) => {
                    error.set(None);
                    code.set(String::new());
                    enrolment.set(None);
                    recovery.set(Some(r.recovery_codes));
                    refresh_me();
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };

    let disable = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let req = TotpDisable {
            password: password.get_untracked(),
            code: code.get_untracked(),
        };
        spawn_local(async move {
            match client::send_no_content("POST", "/api/v1/account/totp/disable", Some(&req)).await
            {
                Ok(()) => {
                    error.set(None);
                    password.set(String::new());
                    code.set(String::new());
                    recovery.set(None);
                    refresh_me();
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };

    view! {
        <section aria-labelledby="totp-heading">
            <h2 id="totp-heading">"Two-factor authentication"</h2>
            <ErrorMessage error/>
            {move || recovery.get().map(|codes| view! {
                <div class="reveal" role="status">
                    <p><strong>"Save these recovery codes now: "</strong>"each works once, and they will not be shown again."</p>
                    <ul class="codes" data-testid="recovery-codes">
                        {codes.into_iter().map(|c| view! { <li><code>{c}</code></li> }).collect_view()}
                    </ul>
                </div>
            })}
            {move || if enabled() {
                EitherOf3::A(view! {
                    <p>"A second factor is enabled: login asks for a code."</p>
                    <form on:submit=disable>
                        <label for="totp-off-password">"Password"</label>
                        <input id="totp-off-password" type="password" autocomplete="current-password"
                            required aria-invalid=invalid(error, "password") bind:value=password/>
                        <label for="totp-off-code">"Code or recovery code"</label>
                        <input id="totp-off-code" autocomplete="one-time-code" required
                            aria-invalid=invalid(error, "code") bind:value=code/>
                        <button type="submit" class="danger">"Turn off two-factor authentication"</button>
                    </form>
                })
            } else if let Some(e) = enrolment.get() {
                EitherOf3::B(view! {
                    <p>"Scan this code with an authenticator app, then enter the six digits it shows."</p>
                    <div class="qr" role="img" aria-label="QR code for the authenticator app" inner_html=e.qr_svg></div>
                    <p>"Or enter this key by hand: "<code data-testid="totp-secret">{e.secret}</code></p>
                    <form on:submit=confirm>
                        <label for="totp-code">"Code"</label>
                        <input id="totp-code" inputmode="numeric" autocomplete="one-time-code" required
                            aria-invalid=invalid(error, "code") bind:value=code/>
                        <button type="submit">"Turn on"</button>
                    </form>
                })
            } else {
                EitherOf3::C(view! {
                    <p>"Not enabled. Add a code from an authenticator app to every login."</p>
                    <form on:submit=start>
                        <label for="totp-password">"Password"</label>
                        <input id="totp-password" type="password" autocomplete="current-password"
                            required aria-invalid=invalid(error, "password") bind:value=password/>
                        <button type="submit">"Set up two-factor authentication"</button>
                    </form>
                })
            }}
        </section>
    }
}
