//! The berth panel: Leptos components rendered on the server and hydrated in
//! the browser, plus the API types both halves share.
#![recursion_limit = "256"]

pub mod api;
pub mod client;
mod pages;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

pub use pages::CAPABILITIES;
use pages::*;

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_context(Auth::default());
    provide_context(FirewallWatch::new());
    // Effects run only in the browser: this marks the moment the page has
    // hydrated and is interactive (the browser tests wait for it).
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
    view! {
        <Title text="berth"/>
        <Router>
            <Routes fallback=|| view! { <NotFound/> }>
                <Route path=path!("/setup") view=SetupWizard/>
                <Route path=path!("/login") view=Login/>
                <Route path=path!("/") view=Dashboard/>
                <Route path=path!("/tokens") view=Tokens/>
                <Route path=path!("/audit") view=AuditLog/>
                <Route path=path!("/account") view=Account/>
                <Route path=path!("/apps") view=Apps/>
                <Route path=path!("/apps/:name") view=AppPage/>
                <Route path=path!("/apps/:name/secrets") view=AppSecrets/>
                <Route path=path!("/stacks") view=Stacks/>
                <Route path=path!("/domains") view=Domains/>
                <Route path=path!("/domains/:host") view=DomainPage/>
                <Route path=path!("/certificates") view=Certificates/>
                <Route path=path!("/certificates/:id") view=CertificatePage/>
                <Route path=path!("/acme") view=CertificateSettings/>
                <Route path=path!("/notifications") view=Notifications/>
                <Route path=path!("/secrets") view=SecretKeys/>
                <Route path=path!("/secret-groups") view=SecretGroups/>
                <Route path=path!("/secret-groups/:group") view=SecretGroupPage/>
                <Route path=path!("/containers") view=Containers/>
                <Route path=path!("/images") view=Images/>
                <Route path=path!("/volumes") view=Volumes/>
                <Route path=path!("/networks") view=Networks/>
                <Route path=path!("/firewall") view=Firewall/>
                <Route path=path!("/backups") view=Backups/>
                <Route path=path!("/backups/new") view=BackupJobNew/>
                <Route path=path!("/backups/jobs/:id") view=BackupJobPage/>
                <Route path=path!("/backups/jobs/:id/edit") view=BackupJobEdit/>
                <Route path=path!("/:capability") view=Planned/>
            </Routes>
        </Router>
    }
}
