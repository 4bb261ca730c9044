//! The landing page once signed in: what needs attention (certificates,
//! backups and their last verified restore), what berth manages, the panel
//! settings and the latest audit entries.

use leptos::either::EitherOf3;
use leptos::prelude::*;
use leptos_router::components::A;

use super::backups::BackupsCard;
use super::{Frame, CAPABILITIES};
use crate::api::{AuditPage, Certificate, ProbeResult, Settings};
use crate::client;

#[component]
pub fn Dashboard() -> impl IntoView {
    view! {
        <Frame title="Dashboard" body=DashboardBody/>
    }
}

#[component]
fn DashboardBody() -> impl IntoView {
    let settings = LocalResource::new(|| client::get::<Settings>("/api/v1/settings"));
    let recent = LocalResource::new(|| client::get::<AuditPage>("/api/v1/audit?limit=5"));
    let probes =
        LocalResource::new(|| client::get::<Vec<ProbeResult>>("/api/v1/certificates/probes"));
    let certs = LocalResource::new(|| client::get::<Vec<Certificate>>("/api/v1/certificates"));
    // What needs the admin: served certificates that are wrong or expiring,
    // and certificates whose last attempt failed.
    let problems = move || {
        let mut out: Vec<String> = Vec::new();
        if let Some(Ok(p)) = probes.get() {
            out.extend(p.into_iter().filter(|p| p.status != "ok").map(|p| {
                format!(
                    "{}: {} — {}",
                    p.host,
                    p.status,
                    p.detail.unwrap_or_default()
                )
            }));
        }
        if let Some(Ok(c)) = certs.get() {
            out.extend(
                c.into_iter()
                    .filter(|c| c.last_error.is_some() && c.state != "retired")
                    .map(|c| {
                        format!(
                            "{}: {}",
                            c.domains.join(", "),
                            c.last_error.unwrap_or_default()
                        )
                    }),
            );
        }
        out
    };
    view! {
        {move || {
            let list = problems();
            (!list.is_empty()).then(|| view! {
                <section aria-labelledby="attention-heading" class="error" id="certificate-problems">
                    <h2 id="attention-heading">"Certificates needing attention"</h2>
                    <ul>{list.into_iter().map(|p| view! { <li>{p}</li> }).collect_view()}</ul>
                    <p><A href="/certificates">"Certificates"</A></p>
                </section>
            })
        }}
        <BackupsCard/>
        <section aria-labelledby="caps-heading">
            <h2 id="caps-heading">"Capabilities"</h2>
            <ul class="cards">
                {CAPABILITIES
                    .iter()
                    .map(|c| {
                        view! {
                            <li class="card">
                                <h3><A href=format!("/{}", c.slug)>{c.name}</A></h3>
                                <p>{c.summary}</p>
                                {(!c.built).then(|| view! { <span class="badge">"planned"</span> })}
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        </section>
        <section aria-labelledby="settings-heading">
            <h2 id="settings-heading">"Panel settings"</h2>
            {move || match settings.get() {
                None => EitherOf3::A(view! { <p class="muted">"Loading…"</p> }),
                Some(Err(e)) => EitherOf3::B(view! { <p class="error" role="alert">{e.message}</p> }),
                Some(Ok(s)) => EitherOf3::C(view! {
                    <dl class="settings">
                        <dt>"Panel domain"</dt>
                        <dd>{s.panel_domain.unwrap_or_else(|| "not set".into())}</dd>
                        <dt>"ACME e-mail"</dt>
                        <dd>{s.acme_email.unwrap_or_else(|| "not set".into())}</dd>
                    </dl>
                }),
            }}
        </section>
        <section aria-labelledby="recent-heading">
            <h2 id="recent-heading">"Recent activity"</h2>
            {move || match recent.get() {
                None => EitherOf3::A(view! { <p class="muted">"Loading…"</p> }),
                Some(Err(e)) => EitherOf3::B(view! { <p class="error" role="alert">{e.message}</p> }),
                Some(Ok(page)) => EitherOf3::C(view! {
                    <ul class="activity">
                        {page
                            .items
                            .into_iter()
                            .map(|e| view! {
                                <li>
                                    <time>{e.at}</time>" "<strong>{e.actor}</strong>" "
                                    {e.action}" — "{e.outcome}
                                </li>
                            })
                            .collect_view()}
                    </ul>
                    <p><A href="/audit">"Full audit log"</A></p>
                }),
            }}
        </section>
    }
}
