//! Every container on the engine, berth's or not: start, stop, restart,
//! remove. Built for a thousand rows: one keyed row per container, a filter
//! over the list in memory, and no per-row state.

use leptos::either::Either;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::apps::AppLink;
use super::widgets::{container_state_tone, Confirm, ErrorMessage, ManagedBadge, StatusBadge};
use super::Frame;
use crate::api::ContainerInfo;
use crate::client::{self, ClientError};

#[component]
pub fn Containers() -> impl IntoView {
    view! {
        <Frame title="Containers" body=ContainersBody/>
    }
}

/// Case-insensitive match of `needle` (already lowercase) against what the
/// table shows.
pub fn container_matches(c: &ContainerInfo, needle: &str) -> bool {
    needle.is_empty()
        || [
            c.name.as_str(),
            c.image.as_str(),
            c.state.as_str(),
            c.status.as_str(),
        ]
        .iter()
        .chain(c.app.as_deref().iter())
        .any(|s| s.to_lowercase().contains(needle))
        || c.id.starts_with(needle)
}

fn display_name(c: &ContainerInfo) -> String {
    c.name.trim_start_matches('/').to_string()
}

#[component]
fn ContainersBody() -> impl IntoView {
    let containers = RwSignal::new(Vec::<ContainerInfo>::new());
    let loaded = RwSignal::new(false);
    let error = RwSignal::new(None::<ClientError>);
    let done = RwSignal::new(None::<String>);
    let filter = RwSignal::new(String::new());
    let confirming = RwSignal::new(None::<ContainerInfo>);

    let reload = move || {
        spawn_local(async move {
            match client::get::<Vec<ContainerInfo>>("/api/v1/containers").await {
                Ok(list) => {
                    containers.set(list);
                    loaded.set(true);
                }
                Err(e) => error.set(Some(e)),
            }
        })
    };
    Effect::new(move |_| reload());

    let run = move |method: &'static str, path: String, what: String| {
        done.set(None);
        spawn_local(async move {
            match client::send_no_content::<()>(method, &path, None).await {
                Ok(()) => {
                    error.set(None);
                    done.set(Some(what));
                }
                Err(e) => error.set(Some(e)),
            }
            reload();
        });
    };
    let act = move |id: String, name: String, action: &'static str| {
        let path = format!("/api/v1/containers/{id}/{action}");
        let what = match action {
            "start" => format!("Started {name}."),
            "stop" => format!("Stopped {name}."),
            _ => format!("Restarted {name}."),
        };
        run("POST", path, what);
    };
    let remove = move || {
        if let Some(c) = confirming.get_untracked() {
            confirming.set(None);
            let path = format!("/api/v1/containers/{}?force=true", c.id);
            run("DELETE", path, format!("Removed {}.", display_name(&c)));
        }
    };

    let shown = move || {
        let needle = filter.with(|f| f.trim().to_lowercase());
        containers.with(|all| {
            all.iter()
                .filter(|c| container_matches(c, &needle))
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    let count = move || {
        let needle = filter.with(|f| f.trim().to_lowercase());
        let total = containers.with(Vec::len);
        let matching =
            containers.with(|all| all.iter().filter(|c| container_matches(c, &needle)).count());
        let noun = if total == 1 {
            "container"
        } else {
            "containers"
        };
        if matching == total {
            format!("{total} {noun}")
        } else {
            format!("{matching} of {total} {noun}")
        }
    };

    view! {
        <div class="toolbar">
            <label for="container-filter" class="visually-hidden">"Filter containers"</label>
            <input id="container-filter" name="filter" type="search" placeholder="Filter by name, image, state or app"
                autocomplete="off" bind:value=filter/>
            <span class="muted" role="status" id="container-count">{count}</span>
        </div>
        <ErrorMessage error/>
        {move || done.get().map(|m| view! { <p class="success" role="status">{m}</p> })}
        {move || confirming.get().map(|c| {
            let name = display_name(&c);
            let managed = match (c.managed, &c.app) {
                (true, Some(app)) => format!(
                    " It is managed by berth: the app {app} will show as drifted until it is applied again."
                ),
                (true, None) => " It was created by berth.".to_string(),
                _ => String::new(),
            };
            view! {
                <Confirm
                    message=format!("Remove container {name} (stopping it if it runs)?{managed}")
                    confirm_label="Remove"
                    confirm_id="confirm-remove"
                    on_confirm=remove
                    on_cancel=move || confirming.set(None)
                />
            }
        })}
        <table class="data" id="containers">
            <thead>
                <tr>
                    <th scope="col">"Name"</th>
                    <th scope="col">"State"</th>
                    <th scope="col">"Status"</th>
                    <th scope="col">"Image"</th>
                    <th scope="col">"Ports"</th>
                    <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                </tr>
            </thead>
            <tbody>
                <For each=shown key=|c| (c.id.clone(), c.state.clone(), c.status.clone()) let:c>
                    {
                        let name = display_name(&c);
                        let running = c.state == "running";
                        let (id1, id2, id3) = (c.id.clone(), c.id.clone(), c.id.clone());
                        let (n1, n2, n3) = (name.clone(), name.clone(), name.clone());
                        let row = c.clone();
                        view! {
                            <tr data-container=name.clone()>
                                <td>
                                    {name.clone()}" "
                                    {c.managed.then(|| view! { <ManagedBadge/> })}
                                    {c.app.clone().map(|app| view! {
                                        " "<AppLink name=app/>
                                    })}
                                </td>
                                <td class="container-state">
                                    <StatusBadge word=c.state.clone() tone=container_state_tone(&c.state)/>
                                </td>
                                <td>{c.status.clone()}</td>
                                <td><code>{c.image.clone()}</code></td>
                                <td>{c.ports.join(", ")}</td>
                                <td><div class="row-actions">
                                    {if running {
                                        Either::Left(view! {
                                            <button type="button" class="small secondary" data-action="stop"
                                                on:click=move |_| act(id1.clone(), n1.clone(), "stop")>"Stop"</button>
                                            <button type="button" class="small secondary" data-action="restart"
                                                on:click=move |_| act(id2.clone(), n2.clone(), "restart")>"Restart"</button>
                                        })
                                    } else {
                                        Either::Right(view! {
                                            <button type="button" class="small secondary" data-action="start"
                                                on:click=move |_| act(id3.clone(), n3.clone(), "start")>"Start"</button>
                                        })
                                    }}
                                    <button type="button" class="small danger" data-action="remove"
                                        aria-label=format!("Remove {name}")
                                        on:click=move |_| confirming.set(Some(row.clone()))>"Remove"</button>
                                </div></td>
                            </tr>
                        }
                    }
                </For>
            </tbody>
        </table>
        {move || (loaded.get() && containers.with(Vec::is_empty))
            .then(|| view! { <p class="muted">"The engine has no containers."</p> })}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, app: Option<&str>) -> ContainerInfo {
        ContainerInfo {
            id: "0123456789abcdef".into(),
            name: name.into(),
            image: "nginx:1.27".into(),
            state: "running".into(),
            status: "Up 3 minutes".into(),
            ports: vec![],
            managed: app.is_some(),
            app: app.map(str::to_string),
            created: 0,
        }
    }

    #[test]
    fn the_filter_looks_at_name_image_state_app_and_id() {
        let c = container("Web-1", Some("shop"));
        for needle in ["", "web", "nginx", "running", "shop", "up 3", "0123"] {
            assert!(container_matches(&c, needle), "{needle}");
        }
        for needle in ["db", "exited", "abcdef"] {
            assert!(!container_matches(&c, needle), "{needle}");
        }
    }
}
