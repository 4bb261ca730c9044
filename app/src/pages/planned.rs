//! Capabilities from the design plan, and the page for those not built yet.

use leptos::either::Either;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use super::Frame;

pub struct Capability {
    pub slug: &'static str,
    pub name: &'static str,
    pub summary: &'static str,
    pub built: bool,
}

pub const CAPABILITIES: &[Capability] = &[
    Capability {
        slug: "apps",
        name: "Apps",
        summary: "Containers as desired state, planned and applied through the Docker Engine API.",
        built: true,
    },
    Capability {
        slug: "domains",
        name: "Domains",
        summary: "Domains routed to apps by berth's own reverse proxy, HTTPS by default.",
        built: true,
    },
    Capability {
        slug: "certificates",
        name: "Certificates",
        summary: "ACME certificates issued and renewed with no one watching.",
        built: true,
    },
    Capability {
        slug: "secrets",
        name: "Secrets",
        summary: "Environment secrets encrypted at rest and injected into containers.",
        built: true,
    },
    Capability {
        slug: "firewall",
        name: "Firewall",
        summary:
            "nftables rules aware of Docker's published ports, with no way to lock yourself out.",
        built: true,
    },
    Capability {
        slug: "backups",
        name: "Backups",
        summary:
            "Encrypted, retained and restorable backups of databases, volumes and berth itself.",
        built: true,
    },
];

#[component]
pub fn Planned() -> impl IntoView {
    let params = use_params_map();
    let slug = move || params.read().get("capability").unwrap_or_default();
    move || match CAPABILITIES.iter().find(|c| c.slug == slug()) {
        Some(c) => Either::Left(view! {
            <Frame title=c.name body=move || view! {
                <p class="notice" role="status">
                    <strong>"Not built yet. "</strong>
                    {c.summary}
                    " This capability is planned; its page, API and docs arrive together."
                </p>
            }/>
        }),
        None => Either::Right(view! { <NotFound/> }),
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <main id="main" class="narrow">
            <h1>"Page not found"</h1>
            <p><a href="/">"Back to the dashboard"</a></p>
        </main>
    }
}
