//! The audit log, newest first, one page at a time.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::Frame;
use crate::api::{AuditEntry, AuditPage};
use crate::client::{self, ClientError};

#[component]
pub fn AuditLog() -> impl IntoView {
    view! {
        <Frame title="Audit log" body=AuditBody/>
    }
}

#[component]
fn AuditBody() -> impl IntoView {
    let items = RwSignal::new(Vec::<AuditEntry>::new());
    let next = RwSignal::new(None::<i64>);
    let loaded = RwSignal::new(false);
    let error = RwSignal::new(None::<ClientError>);

    let load = move |before: Option<i64>| {
        spawn_local(async move {
            let path = match before {
                Some(b) => format!("/api/v1/audit?limit=50&before={b}"),
                None => "/api/v1/audit?limit=50".to_string(),
            };
            match client::get::<AuditPage>(&path).await {
                Ok(page) => {
                    items.update(|v| v.extend(page.items));
                    next.set(page.next_before);
                    loaded.set(true);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    Effect::new(move |_| load(None));

    view! {
        {move || error.get().map(|e| view! { <p class="error" role="alert">{e.message}</p> })}
        <table class="data">
            <caption class="visually-hidden">"Audit entries, newest first"</caption>
            <thead>
                <tr>
                    <th scope="col">"When (UTC)"</th>
                    <th scope="col">"Who"</th>
                    <th scope="col">"From"</th>
                    <th scope="col">"Action"</th>
                    <th scope="col">"Target"</th>
                    <th scope="col">"Outcome"</th>
                </tr>
            </thead>
            <tbody>
                <For each=move || items.get() key=|e| e.id let:e>
                    <tr>
                        <td><time>{e.at.clone()}</time></td>
                        <td>{e.actor.clone()}</td>
                        <td>{e.client_ip.clone().unwrap_or_default()}</td>
                        <td><code>{e.action.clone()}</code></td>
                        <td>{e.target.clone().unwrap_or_default()}</td>
                        <td class=format!("outcome {}", e.outcome)>{e.outcome.clone()}</td>
                    </tr>
                </For>
            </tbody>
        </table>
        {move || (loaded.get() && items.with(|v| v.is_empty()))
            .then(|| view! { <p class="muted">"Nothing recorded yet."</p> })}
        {move || next.get().map(|b| view! {
            <button type="button" class="secondary" on:click=move |_| load(Some(b))>"Older entries"</button>
        })}
    }
}
