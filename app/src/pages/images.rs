//! Images on the engine: remove, import a `docker save` tarball, pull from a
//! registry (polled while it runs).

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::widgets::{
    format_unix, human_size, invalid, loader, short_id, Confirm, ErrorMessage, FieldError,
    StatusBadge, Tone,
};
use super::Frame;
use crate::api::{ImageInfo, ImportResult, PullProgress, PullRequest};
use crate::client::{self, ClientError};

/// How often a running pull is polled.
const PULL_POLL: Duration = Duration::from_millis(700);

#[component]
pub fn Images() -> impl IntoView {
    view! {
        <Frame title="Images" body=ImagesBody/>
    }
}

#[component]
fn ImagesBody() -> impl IntoView {
    let images = RwSignal::new(Vec::<ImageInfo>::new());
    let loaded = RwSignal::new(false);
    let error = RwSignal::new(None::<ClientError>);
    // An image the engine refused to remove because a container uses it.
    let in_use = RwSignal::new(None::<(String, String)>);

    let reload = loader(
        "/api/v1/images",
        move |list: Vec<ImageInfo>| {
            images.set(list);
            loaded.set(true);
        },
        error,
    );
    Effect::new(move |_| reload());

    let remove = move |id: String, label: String, force: bool| {
        in_use.set(None);
        spawn_local(async move {
            let path = if force {
                format!("/api/v1/images/{id}?force=true")
            } else {
                format!("/api/v1/images/{id}")
            };
            match client::send_no_content::<()>("DELETE", &path, None).await {
                Ok(()) => error.set(None),
                Err(e) if e.status == 409 && !force => {
                    error.set(Some(e));
                    in_use.set(Some((id, label)));
                }
                Err(e) => error.set(Some(e)),
            }
            reload();
        });
    };

    view! {
        <section aria-labelledby="images-heading">
            <h2 id="images-heading">"Images"</h2>
            <ErrorMessage error/>
            {move || in_use.get().map(|(id, label)| view! {
                <Confirm
                    message=format!("{label} is in use. Remove it anyway? Containers using it keep running.")
                    confirm_label="Remove anyway"
                    confirm_id="force-remove-image"
                    on_confirm=move || remove(id.clone(), label.clone(), true)
                    on_cancel=move || in_use.set(None)
                />
            })}
            <table class="data" id="images">
                <thead>
                    <tr>
                        <th scope="col">"Tags"</th>
                        <th scope="col">"ID"</th>
                        <th scope="col">"Size"</th>
                        <th scope="col">"Created (UTC)"</th>
                        <th scope="col">"Containers"</th>
                        <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    <For each=move || images.get() key=|i| (i.id.clone(), i.tags.clone(), i.containers) let:i>
                        {
                            let label = i.tags.first().cloned().unwrap_or_else(|| short_id(&i.id).to_string());
                            let id = i.id.clone();
                            let (row_label, aria_label) = (label.clone(), format!("Remove image {label}"));
                            view! {
                                <tr data-image=row_label>
                                    <td>
                                        {i.tags.is_empty().then_some("untagged")}
                                        {i.tags.iter().map(|t| view! { <code>{t.clone()}</code>" " }).collect_view()}
                                    </td>
                                    <td><code>{short_id(&i.id).to_string()}</code></td>
                                    <td>{human_size(i.size.max(0) as u64)}</td>
                                    <td><time>{format_unix(i.created)}</time></td>
                                    <td>{if i.containers < 0 { "?".to_string() } else { i.containers.to_string() }}</td>
                                    <td>
                                        <button type="button" class="small danger" data-action="remove"
                                            aria-label=aria_label
                                            on:click=move |_| remove(id.clone(), label.clone(), false)>"Remove"</button>
                                    </td>
                                </tr>
                            }
                        }
                    </For>
                </tbody>
            </table>
            {move || (loaded.get() && images.with(Vec::is_empty))
                .then(|| view! { <p class="muted">"No images yet: import or pull one below."</p> })}
        </section>
        <ImportImage on_loaded=reload/>
        <PullImage on_done=reload/>
    }
}

#[component]
fn ImportImage(on_loaded: impl Fn() + Copy + 'static) -> impl IntoView {
    let file = NodeRef::<leptos::html::Input>::new();
    let error = RwSignal::new(None::<ClientError>);
    let loaded = RwSignal::new(None::<Vec<String>>);
    let busy = RwSignal::new(false);

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(input) = file.get_untracked() else {
            return;
        };
        loaded.set(None);
        busy.set(true);
        spawn_local(async move {
            match client::upload::<ImportResult>(
                "/api/v1/images/import",
                "application/x-tar",
                &input,
            )
            .await
            {
                Ok(r) => {
                    error.set(None);
                    loaded.set(Some(r.loaded));
                    input.set_value("");
                    on_loaded();
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };

    view! {
        <section aria-labelledby="import-heading">
            <h2 id="import-heading">"Import"</h2>
            <p class="help">
                "Upload the output of "<code>"docker save -o image.tar name:tag"</code>
                ": the way to bring images to a host that cannot reach a registry."
            </p>
            <form id="import-image" class="inline pair" on:submit=submit>
                <div>
                    <label for="import-file">"Image tarball"</label>
                    <input id="import-file" name="file" type="file" accept=".tar,application/x-tar" required
                        aria-invalid=invalid(error, "file") node_ref=file/>
                    <FieldError error field="file"/>
                </div>
                <button type="submit" id="import" disabled=busy>
                    {move || if busy.get() { "Importing…" } else { "Import" }}
                </button>
            </form>
            {move || error.with(|e| e.as_ref().is_some_and(|e| e.field.is_none()))
                .then(|| view! { <ErrorMessage error/> })}
            {move || loaded.get().map(|names| view! {
                <p class="success" role="status" id="import-result">"Loaded "{names.join(", ")}"."</p>
            })}
        </section>
    }
}

/// Polls a running pull until it is done or failed, or the page is left.
fn poll(
    id: String,
    progress: RwSignal<Option<PullProgress>>,
    error: RwSignal<Option<ClientError>>,
    on_done: impl Fn() + Copy + 'static,
) {
    set_timeout(
        move || {
            if progress.is_disposed() {
                return;
            }
            spawn_local(async move {
                match client::get::<PullProgress>(&format!("/api/v1/images/pulls/{id}")).await {
                    Ok(p) if progress.is_disposed() => drop(p),
                    Ok(p) => {
                        let status = p.status.clone();
                        progress.set(Some(p));
                        match status.as_str() {
                            "running" => poll(id, progress, error, on_done),
                            "done" => on_done(),
                            _ => {}
                        }
                    }
                    Err(e) if !error.is_disposed() => error.set(Some(e)),
                    Err(_) => {}
                }
            });
        },
        PULL_POLL,
    );
}

fn pull_tone(status: &str) -> Tone {
    match status {
        "done" => Tone::Good,
        "failed" => Tone::Bad,
        _ => Tone::Busy,
    }
}

#[component]
fn PullImage(on_done: impl Fn() + Copy + 'static) -> impl IntoView {
    let image = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ClientError>);
    let progress = RwSignal::new(None::<PullProgress>);
    let running = move || progress.with(|p| p.as_ref().is_some_and(|p| p.status == "running"));

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let req = PullRequest {
            image: image.get_untracked().trim().to_string(),
        };
        progress.set(None);
        spawn_local(async move {
            match client::send::<_, PullProgress>("POST", "/api/v1/images/pull", &req).await {
                Ok(p) => {
                    error.set(None);
                    let id = p.id.clone();
                    let still_running = p.status == "running";
                    progress.set(Some(p));
                    if still_running {
                        poll(id, progress, error, on_done);
                    }
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };

    view! {
        <section aria-labelledby="pull-heading">
            <h2 id="pull-heading">"Pull"</h2>
            <form id="pull-image" class="inline pair" on:submit=submit>
                <div>
                    <label for="pull-ref">"Image reference"</label>
                    <input id="pull-ref" name="image" required autocomplete="off" placeholder="nginx:1.27"
                        aria-invalid=invalid(error, "image") bind:value=image/>
                    <FieldError error field="image"/>
                </div>
                <button type="submit" id="pull" disabled=running>"Pull"</button>
            </form>
            {move || error.with(|e| e.as_ref().is_some_and(|e| e.field.is_none()))
                .then(|| view! { <ErrorMessage error/> })}
            {move || progress.get().map(|p| view! {
                <div class="progress" id="pull-progress" data-status=p.status.clone() aria-live="polite">
                    <p>
                        <code>{p.image.clone()}</code>" "
                        <StatusBadge word=p.status.clone() tone=pull_tone(&p.status)/>
                    </p>
                    {p.error.clone().map(|e| view! {
                        <p class="error" role="alert" id="pull-error">"Pull failed: "{e}</p>
                    })}
                    {(!p.layers.is_empty()).then(|| view! {
                        <ul class="layers">
                            {p.layers.iter().map(|l| view! { <li><code>{l.clone()}</code></li> }).collect_view()}
                        </ul>
                    })}
                </div>
            })}
        </section>
    }
}
