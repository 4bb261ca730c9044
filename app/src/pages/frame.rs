//! The layout of every signed-in page: skip link, navigation for every
//! capability, the signed-in admin and logout. It finds out who is signed in
//! (GET /api/v1/me) and sends everyone else to the login or setup page.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::{use_location, use_navigate};

use super::{PendingNotice, CAPABILITIES};
use crate::api::{Me, SetupStatus};
use crate::client::{self, ClientError};

/// Pages listed under a capability in the navigation: (capability slug,
/// path, name).
const SUBPAGES: &[(&str, &str, &str)] = &[("secrets", "/secret-groups", "Secret groups")];

#[derive(Clone, Copy, Default)]
pub struct Auth {
    pub me: RwSignal<Option<Me>>,
}

impl Auth {
    /// Remembers the signed-in admin and the CSRF token for later requests.
    pub fn signed_in(&self, me: Me) {
        client::set_csrf(me.csrf_token.clone());
        self.me.set(Some(me));
    }

    /// True while the signed-in admin holds a reset (one-time) password.
    pub fn must_change_password(&self) -> bool {
        self.me
            .with(|m| m.as_ref().is_some_and(|m| m.must_change_password))
    }

    pub fn signed_out(&self) {
        client::set_csrf(None);
        self.me.set(None);
    }
}

/// The page's own content is built in the browser once the admin is known
/// (there is nothing to show before), and mounted rather than hydrated: a
/// hydratable view costs the wasm a synchronous and an asynchronous
/// hydration path for every element, which for the bodies would never run.
#[component]
pub fn Frame<F, V>(#[prop(into)] title: String, body: F) -> impl IntoView
where
    F: Fn() -> V + Clone + Send + Sync + 'static,
    V: IntoView + 'static,
{
    let auth = expect_context::<Auth>();
    let signed_in = Memo::new(move |_| auth.me.with(Option::is_some));
    let slot = NodeRef::<leptos::html::Div>::new();
    Effect::new(move |_| {
        if let (true, Some(el)) = (signed_in.get(), slot.get()) {
            mount_body(el, body.clone());
        }
    });
    view! { <Layout title signed_in mount_point=slot/> }
}

/// Everything of the frame but the body: not generic, so one copy of it.
#[component]
fn Layout(
    title: String,
    signed_in: Memo<bool>,
    mount_point: NodeRef<leptos::html::Div>,
) -> impl IntoView {
    let auth = expect_context::<Auth>();
    let navigate = use_navigate();
    let failure = RwSignal::new(None::<ClientError>);

    Effect::new({
        let navigate = navigate.clone();
        move |_| {
            if auth.me.get_untracked().is_some() {
                return;
            }
            let navigate = navigate.clone();
            spawn_local(async move {
                match client::get::<Me>("/api/v1/me").await {
                    Ok(me) => auth.signed_in(me),
                    Err(e) if e.status == 401 => {
                        let setup = client::get::<SetupStatus>("/api/v1/setup").await;
                        let to = if setup.is_ok_and(|s| s.required) {
                            "/setup"
                        } else {
                            "/login"
                        };
                        navigate(to, Default::default());
                    }
                    Err(e) => failure.set(Some(e)),
                }
            });
        }
    });

    // After a password reset, the only way on is through the Account page.
    let pathname = use_location().pathname;
    Effect::new({
        let navigate = navigate.clone();
        move |_| {
            if auth.must_change_password() && pathname.get() != "/account" {
                navigate("/account", Default::default());
            }
        }
    });

    let logout = move |_| {
        let navigate = navigate.clone();
        spawn_local(async move {
            let _ = client::send_no_content::<()>("POST", "/api/v1/auth/logout", None).await;
            auth.signed_out();
            navigate("/login", Default::default());
        });
    };

    view! {
        <Title text=format!("{title} · berth")/>
        <a class="skip-link" href="#main">"Skip to content"</a>
        <div class="layout">
            <nav class="sidebar" aria-label="Main">
                <a href="/" class="brand">"berth"</a>
                <ul>
                    <li><A href="/" exact=true>"Dashboard"</A></li>
                    {CAPABILITIES
                        .iter()
                        .map(|c| {
                            view! {
                                <li>
                                    <A href=format!("/{}", c.slug)>{c.name}</A>
                                    {(!c.built).then(|| view! { <span class="badge">"planned"</span> })}
                                </li>
                                {SUBPAGES
                                    .iter()
                                    .filter(|(slug, _, _)| *slug == c.slug)
                                    .map(|(_, href, name)| view! { <li class="sub"><A href=*href>{*name}</A></li> })
                                    .collect_view()}
                            }
                        })
                        .collect_view()}
                </ul>
                <ul class="secondary" aria-label="Docker engine">
                    <li><A href="/stacks">"Stacks"</A></li>
                    <li><A href="/containers">"Containers"</A></li>
                    <li><A href="/images">"Images"</A></li>
                    <li><A href="/volumes">"Volumes"</A></li>
                    <li><A href="/networks">"Networks"</A></li>
                </ul>
                <ul class="secondary">
                    <li><A href="/tokens">"API tokens"</A></li>
                    <li><A href="/audit">"Audit log"</A></li>
                    <li><A href="/account">"Account"</A></li>
                </ul>
                <div class="who">
                    <span data-testid="signed-in-as">
                        {move || auth.me.get().map(|m| m.username).unwrap_or_default()}
                    </span>
                    <button type="button" class="link" on:click=logout>"Log out"</button>
                </div>
            </nav>
            <main id="main" tabindex="-1">
                <h1>{title}</h1>
                // An apply awaiting confirmation rolls back on any page.
                <PendingNotice signed_in/>
                {move || failure.get().map(|e| view! { <p class="error" role="alert">{e.message}</p> })}
                {move || (!signed_in.get())
                    .then(|| view! { <p class="muted" aria-busy="true">"Loading…"</p> })}
                <div class="page" node_ref=mount_point></div>
            </main>
        </div>
    }
}

/// Builds `body` into `el` under the current owner (so it sees the router
/// and `Auth`), and takes it down again when that owner is cleaned up.
#[cfg(feature = "hydrate")]
fn mount_body<F, V>(el: leptos::web_sys::HtmlDivElement, body: F)
where
    F: FnOnce() -> V + 'static,
    V: IntoView + 'static,
{
    let handle = leptos::mount::mount_to(el.into(), body);
    let handle = StoredValue::new_local(Some(handle));
    on_cleanup(move || handle.dispose());
}

/// Effects do not run during server rendering; nothing to mount.
#[cfg(not(feature = "hydrate"))]
fn mount_body<F, V>(_el: leptos::web_sys::HtmlDivElement, _body: F)
where
    F: FnOnce() -> V + 'static,
    V: IntoView + 'static,
{
}
