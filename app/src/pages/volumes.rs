//! Volumes and networks on the engine, read only; berth's own are marked.

use leptos::either::EitherOf3;
use leptos::prelude::*;

use super::apps::AppLink;
use super::widgets::{short_id, ManagedBadge};
use super::Frame;
use crate::api::{NetworkInfo, VolumeInfo};
use crate::client;

#[component]
pub fn Volumes() -> impl IntoView {
    view! {
        <Frame title="Volumes" body=VolumesBody/>
    }
}

#[component]
pub fn Networks() -> impl IntoView {
    view! {
        <Frame title="Networks" body=NetworksBody/>
    }
}

fn note(text: &'static str) -> impl IntoView {
    view! { <p class="muted">{text}</p> }
}

#[component]
fn VolumesBody() -> impl IntoView {
    let volumes = LocalResource::new(|| client::get::<Vec<VolumeInfo>>("/api/v1/volumes"));
    move || match volumes.get() {
        None => EitherOf3::A(note("Loading…")),
        Some(Err(e)) => EitherOf3::B(view! { <p class="error" role="alert">{e.message}</p> }),
        Some(Ok(list)) if list.is_empty() => EitherOf3::A(note("No volumes.")),
        Some(Ok(list)) => EitherOf3::C(view! {
            <table class="data" id="volumes">
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Driver"</th>
                        <th scope="col">"App"</th>
                        <th scope="col">"Created"</th>
                    </tr>
                </thead>
                <tbody>
                    {list
                        .into_iter()
                        .map(|v| view! {
                            <tr data-volume=v.name.clone()>
                                <td><code>{v.name.clone()}</code>" "{v.managed.then(|| view! { <ManagedBadge/> })}</td>
                                <td>{v.driver}</td>
                                <td>{v.app.map(|name| view! { <AppLink name/> })}</td>
                                <td><time>{v.created_at.unwrap_or_default()}</time></td>
                            </tr>
                        })
                        .collect_view()}
                </tbody>
            </table>
        }),
    }
}

#[component]
fn NetworksBody() -> impl IntoView {
    let networks = LocalResource::new(|| client::get::<Vec<NetworkInfo>>("/api/v1/networks"));
    move || match networks.get() {
        None => EitherOf3::A(note("Loading…")),
        Some(Err(e)) => EitherOf3::B(view! { <p class="error" role="alert">{e.message}</p> }),
        Some(Ok(list)) => EitherOf3::C(view! {
            <table class="data" id="networks">
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Driver"</th>
                        <th scope="col">"Scope"</th>
                        <th scope="col">"Internal"</th>
                        <th scope="col">"ID"</th>
                    </tr>
                </thead>
                <tbody>
                    {list
                        .into_iter()
                        .map(|n| view! {
                            <tr data-network=n.name.clone()>
                                <td><code>{n.name.clone()}</code>" "{n.managed.then(|| view! { <ManagedBadge/> })}</td>
                                <td>{n.driver}</td>
                                <td>{n.scope}</td>
                                <td>{if n.internal { "yes" } else { "no" }}</td>
                                <td><code>{short_id(&n.id).to_string()}</code></td>
                            </tr>
                        })
                        .collect_view()}
                </tbody>
            </table>
        }),
    }
}
