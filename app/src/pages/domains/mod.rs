//! Domains: the list with each domain's live status, certificate and
//! request count, a "test this route" button, and the editor (validated by
//! the server as you type, through a dry run) for new and existing domains.

mod form;

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map};

use super::widgets::{invalid, Confirm, ErrorMessage, FieldError, FormError, StatusBadge, Tone};
use super::Frame;
use crate::api::{Domain, DomainSpec, DomainStatus, ProxyStatus, RouteTest};
use crate::client::{self, ClientError};
use form::{target_text, to_form, to_spec, DomainForm};

#[component]
pub fn Domains() -> impl IntoView {
    view! { <Frame title="Domains" body=DomainsBody/> }
}

#[component]
pub fn DomainPage() -> impl IntoView {
    let params = use_params_map();
    let host = Memo::new(move |_| params.read().get("host").unwrap_or_default());
    move || {
        let host = host.get();
        let title = host.clone();
        view! { <Frame title body=move || view! { <DomainBody host=host.clone()/> }/> }
    }
}

/// Live, upstream down, or not live (nginx drift), as a badge.
fn health(status: Option<&DomainStatus>) -> (String, Tone, String) {
    let Some(s) = status else {
        return ("pending".into(), Tone::Busy, String::new());
    };
    let title = s.problems.join("; ");
    if !s.live {
        ("not live".into(), Tone::Bad, title)
    } else if s.upstreams.iter().any(|u| u.health == "down") {
        ("upstream down".into(), Tone::Bad, title)
    } else {
        ("live".into(), Tone::Good, title)
    }
}

fn certificate_text(status: Option<&DomainStatus>) -> String {
    match status.map(|s| &s.certificate) {
        None => "—".into(),
        Some(c) => match &c.not_after {
            Some(until) => format!("{} until {}", c.state, until.get(..10).unwrap_or(until)),
            None => c.state.clone(),
        },
    }
}

#[component]
fn DomainsBody() -> impl IntoView {
    let domains = RwSignal::new(Vec::<Domain>::new());
    let status = RwSignal::new(None::<ProxyStatus>);
    let loaded = RwSignal::new(false);
    let error = RwSignal::new(None::<ClientError>);
    let confirming = RwSignal::new(None::<String>);
    let tested = RwSignal::new(None::<RouteTest>);

    let reload = move || {
        spawn_local(async move {
            match client::get::<Vec<Domain>>("/api/v1/domains").await {
                Ok(list) => {
                    domains.set(list);
                    loaded.set(true);
                }
                Err(e) => error.set(Some(e)),
            }
            match client::get::<ProxyStatus>("/api/v1/proxy/status").await {
                Ok(s) => status.set(Some(s)),
                Err(e) => error.set(Some(e)),
            }
        })
    };
    Effect::new(move |_| reload());

    let delete = move || {
        let Some(host) = confirming.get_untracked() else {
            return;
        };
        confirming.set(None);
        spawn_local(async move {
            let path = format!("/api/v1/domains/{host}");
            match client::send_no_content::<()>("DELETE", &path, None).await {
                Ok(()) => error.set(None),
                Err(e) => error.set(Some(e)),
            }
            reload();
        });
    };
    let status_of = move |host: &str| {
        status.with(|s| {
            s.as_ref()
                .and_then(|s| s.domains.iter().find(|d| d.host == host).cloned())
        })
    };

    view! {
        <section aria-labelledby="domains-heading">
            <h2 id="domains-heading">"Domains"</h2>
            <ErrorMessage error/>
            <DriverProblems status/>
            {move || confirming.get().map(|host| view! {
                <Confirm
                    message=format!("Delete {host}? Requests for it get 404 from then on.")
                    confirm_label="Delete domain"
                    confirm_id="confirm-delete-domain"
                    on_confirm=delete
                    on_cancel=move || confirming.set(None)
                />
            })}
            <table class="data" id="domains">
                <thead>
                    <tr>
                        <th scope="col">"Host"</th>
                        <th scope="col">"Target"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Certificate"</th>
                        <th scope="col">"Requests"</th>
                        <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    <For each=move || domains.get() key=|d| (d.host.clone(), d.updated_at.clone()) let:d>
                        {
                            let host = d.host.clone();
                            let h1 = host.clone();
                            let h2 = host.clone();
                            let h3 = host.clone();
                            let h4 = host.clone();
                            let h5 = host.clone();
                            let row_id = host.clone();
                            let link = format!("/domains/{host}");
                            let delete_label = format!("Delete {host}");
                            let extra = d.spec.routes.len();
                            view! {
                                <tr data-domain=row_id>
                                    <td><A href=link>{host}</A></td>
                                    <td>
                                        <code>{target_text(&d.spec.target)}</code>
                                        {(extra > 0).then(|| format!(" + {extra} routes"))}
                                    </td>
                                    <td class="status">{move || {
                                        let (word, tone, title) = health(status_of(&h1).as_ref());
                                        view! { <StatusBadge word tone title/> }
                                    }}</td>
                                    <td class="certificate">{move || certificate_text(status_of(&h2).as_ref())}</td>
                                    <td class="requests">{move || status_of(&h3).map(|s| s.requests.to_string()).unwrap_or_default()}</td>
                                    <td class="actions">
                                        <TestButton host=h5 result=tested error/>
                                        <button type="button" class="small danger" data-action="delete"
                                            aria-label=delete_label
                                            on:click=move |_| confirming.set(Some(h4.clone()))>"Delete"</button>
                                    </td>
                                </tr>
                            }
                        }
                    </For>
                </tbody>
            </table>
            {move || (loaded.get() && domains.with(Vec::is_empty))
                .then(|| view! { <p class="muted">"No domains yet."</p> })}
            <RouteTestResult result=tested/>
        </section>
        <section aria-labelledby="new-domain-heading">
            <h2 id="new-domain-heading">"New domain"</h2>
            <DomainEditor existing=None on_saved=Callback::new(move |_| reload())/>
        </section>
    }
}

#[component]
fn DriverProblems(status: RwSignal<Option<ProxyStatus>>) -> impl IntoView {
    move || {
        status.with(|s| {
            s.as_ref().filter(|s| !s.errors.is_empty()).map(|s| {
                let listening = s.listening.join(", ");
                view! {
                    <div class="error" role="alert" id="proxy-errors">
                        <p>{format!("The {} proxy reports problems (listening on: {}):", s.driver,
                            if listening.is_empty() { "nothing".to_string() } else { listening })}</p>
                        <ul>{s.errors.iter().map(|e| view! { <li>{e.clone()}</li> }).collect_view()}</ul>
                    </div>
                }
            })
        })
    }
}

#[component]
fn TestButton(
    host: String,
    result: RwSignal<Option<RouteTest>>,
    error: RwSignal<Option<ClientError>>,
) -> impl IntoView {
    let busy = RwSignal::new(false);
    let label = format!("Test {host}");
    let run = move |_| {
        let host = host.clone();
        busy.set(true);
        spawn_local(async move {
            let path = format!("/api/v1/domains/{host}/test");
            match client::send_empty::<RouteTest>("POST", &path).await {
                Ok(r) => {
                    error.set(None);
                    result.set(Some(r));
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    view! {
        <button type="button" class="small secondary" data-action="test" aria-label=label
            disabled=busy on:click=run>"Test"</button>
    }
}

#[component]
fn RouteTestResult(result: RwSignal<Option<RouteTest>>) -> impl IntoView {
    move || {
        result.get().map(|r| {
            let outcome = match (r.status, &r.error) {
                (Some(s), _) => format!("HTTP {s} in {} ms", r.elapsed_ms),
                (None, Some(e)) => format!("failed after {} ms: {e}", r.elapsed_ms),
                (None, None) => "no answer".into(),
            };
            view! {
                <div class="card" id="route-test" role="status">
                    <p><code>{format!("GET {}", r.url)}</code>" → "<strong class="outcome">{outcome}</strong></p>
                    <dl class="settings">
                        {r.headers.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd><code>{v}</code></dd> }).collect_view()}
                    </dl>
                </div>
            }
        })
    }
}

#[component]
fn DomainBody(host: String) -> impl IntoView {
    let domain = RwSignal::new(None::<Domain>);
    let status = RwSignal::new(None::<ProxyStatus>);
    let error = RwSignal::new(None::<ClientError>);
    let tested = RwSignal::new(None::<RouteTest>);
    let confirming = RwSignal::new(false);
    let base = StoredValue::new(format!("/api/v1/domains/{host}"));

    let load = move || {
        spawn_local(async move {
            match client::get::<Domain>(&base.get_value()).await {
                Ok(d) => domain.set(Some(d)),
                Err(e) => error.set(Some(e)),
            }
            if let Ok(s) = client::get::<ProxyStatus>("/api/v1/proxy/status").await {
                status.set(Some(s));
            }
        })
    };
    Effect::new(move |_| load());
    let navigate = use_navigate();
    let delete = Callback::new(move |_: ()| {
        confirming.set(false);
        let navigate = navigate.clone();
        spawn_local(async move {
            match client::send_no_content::<()>("DELETE", &base.get_value(), None).await {
                Ok(()) => navigate("/domains", Default::default()),
                Err(e) => error.set(Some(e)),
            }
        });
    });
    let mine = move || {
        let host = domain.with(|d| d.as_ref().map(|d| d.host.clone()))?;
        status.with(|s| s.as_ref()?.domains.iter().find(|d| d.host == host).cloned())
    };

    view! {
        <p><A href="/domains">"← All domains"</A></p>
        <ErrorMessage error/>
        {move || domain.get().map(|d| {
            let host = d.host.clone();
            view! {
                <section aria-labelledby="domain-heading">
                    <div class="section-head">
                        <h2 id="domain-heading">{host.clone()}</h2>
                        <div class="actions">
                            <TestButton host=host.clone() result=tested error/>
                            <button type="button" class="small danger" id="delete-domain"
                                on:click=move |_| confirming.set(true)>"Delete"</button>
                        </div>
                    </div>
                    {move || confirming.get().then(|| view! {
                        <Confirm message="Delete this domain? Requests for it get 404 from then on."
                            confirm_label="Delete domain" confirm_id="confirm-delete-domain"
                            on_confirm=delete on_cancel=move || confirming.set(false)/>
                    })}
                    <RouteTestResult result=tested/>
                    {move || mine().map(|s| {
                        let (word, tone, title) = health(Some(&s));
                        view! {
                            <dl class="settings" id="domain-status">
                                <dt>"Status"</dt><dd><StatusBadge word tone title/></dd>
                                <dt>"Certificate"</dt><dd>{certificate_text(Some(&s))}</dd>
                                <dt>"Requests"</dt><dd>{format!("{} ({} server errors)", s.requests, s.errors_5xx)}</dd>
                            </dl>
                            <table class="data" id="upstreams">
                                <thead><tr>
                                    <th scope="col">"Path"</th><th scope="col">"Upstream"</th>
                                    <th scope="col">"Health"</th><th scope="col">"Detail"</th>
                                </tr></thead>
                                <tbody>
                                    {s.upstreams.into_iter().map(|u| view! {
                                        <tr data-path=u.path.clone()>
                                            <td><code>{u.path.clone()}</code></td>
                                            <td>{u.address.unwrap_or_else(|| "—".into())}</td>
                                            <td class="health">{u.health}</td>
                                            <td>{u.detail.unwrap_or_default()}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }
                    })}
                </section>
                <section aria-labelledby="edit-heading">
                    <h2 id="edit-heading">"Settings"</h2>
                    <DomainEditor existing=Some(d.spec) on_saved=Callback::new(move |_| load())/>
                </section>
            }
        })}
    }
}

/// The editor for a new domain (`existing` is `None`) or an existing one.
/// Every change is checked by the server (a dry run) after a pause in typing.
#[component]
fn DomainEditor(existing: Option<DomainSpec>, on_saved: Callback<()>) -> impl IntoView {
    let is_new = existing.is_none();
    let start = existing
        .as_ref()
        .map(to_form)
        .unwrap_or_else(DomainForm::with_defaults);
    let original_host = start.host.clone();
    let host = RwSignal::new(start.host);
    let target = RwSignal::new(start.target);
    let routes = RwSignal::new(start.routes);
    let https_redirect = RwSignal::new(start.https_redirect);
    let www = RwSignal::new(start.www);
    let hsts = RwSignal::new(start.hsts);
    let auto_certificate = RwSignal::new(start.auto_certificate);
    let headers = RwSignal::new(start.headers);
    let users = RwSignal::new(start.users);
    let allow = RwSignal::new(start.allow);
    let deny = RwSignal::new(start.deny);
    let rate_limits = RwSignal::new(start.rate_limits);
    let max_body_mb = RwSignal::new(start.max_body_mb);
    let connect_timeout_s = RwSignal::new(start.connect_timeout_s);
    let read_timeout_s = RwSignal::new(start.read_timeout_s);
    let maintenance_message = RwSignal::new(start.maintenance_message);
    let allow_private_upstream = RwSignal::new(start.allow_private_upstream);

    let error = RwSignal::new(None::<ClientError>);
    let checked = RwSignal::new(None::<String>);
    let saved = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let generation = RwSignal::new(0u64);

    let read_form = move || DomainForm {
        host: host.get(),
        target: target.get(),
        routes: routes.get(),
        https_redirect: https_redirect.get(),
        www: www.get(),
        hsts: hsts.get(),
        auto_certificate: auto_certificate.get(),
        headers: headers.get(),
        users: users.get(),
        allow: allow.get(),
        deny: deny.get(),
        rate_limits: rate_limits.get(),
        max_body_mb: max_body_mb.get(),
        connect_timeout_s: connect_timeout_s.get(),
        read_timeout_s: read_timeout_s.get(),
        maintenance_message: maintenance_message.get(),
        allow_private_upstream: allow_private_upstream.get(),
    };
    let url = StoredValue::new(if is_new {
        "/api/v1/domains".to_string()
    } else {
        format!("/api/v1/domains/{original_host}")
    });
    let method = if is_new { "POST" } else { "PUT" };

    // Live validation: a dry run 400 ms after the last change.
    Effect::new(move |first: Option<()>| {
        let form = read_form();
        if first.is_none() || (form.host.trim().is_empty() && form.target.trim().is_empty()) {
            return;
        }
        let mine = generation.get_untracked() + 1;
        generation.set(mine);
        set_timeout(
            move || {
                if generation.is_disposed() || generation.get_untracked() != mine {
                    return;
                }
                let spec = match to_spec(&form) {
                    Ok(s) => s,
                    Err(e) => {
                        checked.set(None);
                        error.set(Some(e));
                        return;
                    }
                };
                spawn_local(async move {
                    let path = format!("{}?dry_run=true", url.get_value());
                    let result = client::send::<_, Domain>(method, &path, &spec).await;
                    if generation.is_disposed() || generation.get_untracked() != mine {
                        return;
                    }
                    match result {
                        Ok(d) => {
                            error.set(None);
                            checked.set(Some(format!(
                                "Valid: {} → {}",
                                d.host,
                                target_text(&d.spec.target)
                            )));
                        }
                        Err(e) => {
                            checked.set(None);
                            error.set(Some(e));
                        }
                    }
                });
            },
            Duration::from_millis(400),
        );
    });

    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let spec = match to_spec(&read_form()) {
            Ok(s) => s,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        busy.set(true);
        saved.set(None);
        spawn_local(async move {
            match client::send::<_, Domain>(method, &url.get_value(), &spec).await {
                Ok(d) => {
                    error.set(None);
                    checked.set(None);
                    saved.set(Some(format!("{} is live.", d.host)));
                    if is_new {
                        for s in [
                            host,
                            target,
                            routes,
                            headers,
                            users,
                            allow,
                            deny,
                            rate_limits,
                            maintenance_message,
                        ] {
                            s.set(String::new());
                        }
                    } else {
                        // Typed passwords are not kept in the form.
                        users.set(to_form(&d.spec).users);
                    }
                    on_saved.run(());
                }
                Err(e) => {
                    error.set(Some(e));
                    // A 502 (nginx refused) stored the change all the same.
                    on_saved.run(());
                }
            }
            busy.set(false);
        });
    };

    const FIELDS: &[&str] = &[
        "host",
        "target",
        "routes",
        "www",
        "headers",
        "basic_auth",
        "allow",
        "deny",
        "rate_limits",
        "max_body_bytes",
        "connect_timeout_s",
        "read_timeout_s",
        "maintenance_message",
    ];
    let form_id = if is_new { "new-domain" } else { "edit-domain" };
    view! {
        <form id=form_id class="stack domain-editor" on:submit=save>
            <label for="domain-host">"Host"</label>
            <input id="domain-host" name="host" required autocomplete="off" spellcheck="false"
                placeholder="example.com" readonly=!is_new
                aria-invalid=invalid(error, "host") bind:value=host/>
            <FieldError error field="host"/>
            <label for="domain-target">"Target"</label>
            <input id="domain-target" name="target" required autocomplete="off" spellcheck="false"
                placeholder="app:web:8080" aria-describedby="target-help"
                aria-invalid=invalid(error, "target") bind:value=target/>
            <p class="help" id="target-help">
                <code>"app:NAME:PORT"</code>" (an app's container port), "<code>"http://10.0.0.7:3000"</code>
                " (any HTTP upstream) or "<code>"static:VOLUME/dir"</code>" (files from a volume)."
            </p>
            <FieldError error field="target"/>
            <label for="domain-routes">"Path routes"</label>
            <textarea id="domain-routes" rows="3" class="code" spellcheck="false"
                placeholder="/api app:api:3000 strip" aria-invalid=invalid(error, "routes")
                bind:value=routes></textarea>
            <p class="help">"One per line: PATH TARGET, and "<code>"strip"</code>" to remove the prefix."</p>
            <FieldError error field="routes"/>
            <fieldset>
                <legend>"HTTPS"</legend>
                <label for="domain-https">"Redirect HTTP to HTTPS"</label>
                <select id="domain-https" bind:value=https_redirect>
                    <option value="auto">"Once a certificate exists"</option>
                    <option value="on">"Always"</option>
                    <option value="off">"Never"</option>
                </select>
                <label class="check"><input type="checkbox" id="domain-hsts" bind:checked=hsts/>" Send HSTS (one year)"</label>
                <label class="check"><input type="checkbox" id="domain-auto-cert" bind:checked=auto_certificate/>" Get a certificate automatically (HTTP-01)"</label>
                <label for="domain-www">"www"</label>
                <select id="domain-www" bind:value=www aria-invalid=invalid(error, "www")>
                    <option value="off">"Only this host"</option>
                    <option value="to_apex">"Redirect www.host here"</option>
                    <option value="to_www">"Redirect the apex here"</option>
                </select>
                <FieldError error field="www"/>
            </fieldset>
            <fieldset>
                <legend>"Access"</legend>
                <label for="domain-users">"Basic auth users"</label>
                <textarea id="domain-users" rows="2" class="code" spellcheck="false" autocomplete="off"
                    placeholder="alice:a long password" aria-invalid=invalid(error, "basic_auth")
                    bind:value=users></textarea>
                <p class="help">"user:password per line; a user without a password keeps the current one. Passwords are stored hashed and never shown again."</p>
                <FieldError error field="basic_auth"/>
                <label for="domain-allow">"Allow only (CIDR per line)"</label>
                <textarea id="domain-allow" rows="2" class="code" spellcheck="false"
                    placeholder="203.0.113.0/24" aria-invalid=invalid(error, "allow") bind:value=allow></textarea>
                <FieldError error field="allow"/>
                <label for="domain-deny">"Deny (CIDR per line)"</label>
                <textarea id="domain-deny" rows="2" class="code" spellcheck="false"
                    aria-invalid=invalid(error, "deny") bind:value=deny></textarea>
                <FieldError error field="deny"/>
                <label for="domain-limits">"Rate limits per client"</label>
                <textarea id="domain-limits" rows="2" class="code" spellcheck="false"
                    placeholder="/api 10/s burst 20" aria-invalid=invalid(error, "rate_limits")
                    bind:value=rate_limits></textarea>
                <p class="help">"PATH N/s or N/m, optionally "<code>"burst B"</code>"; over the limit gets 429."</p>
                <FieldError error field="rate_limits"/>
            </fieldset>
            <fieldset>
                <legend>"Limits and responses"</legend>
                <label for="domain-body">"Largest request body (MiB)"</label>
                <input id="domain-body" inputmode="decimal" aria-invalid=invalid(error, "max_body_bytes") bind:value=max_body_mb/>
                <FieldError error field="max_body_bytes"/>
                <label for="domain-connect">"Connect timeout (s)"</label>
                <input id="domain-connect" inputmode="numeric" aria-invalid=invalid(error, "connect_timeout_s") bind:value=connect_timeout_s/>
                <FieldError error field="connect_timeout_s"/>
                <label for="domain-read">"Response timeout (s)"</label>
                <input id="domain-read" inputmode="numeric" aria-invalid=invalid(error, "read_timeout_s") bind:value=read_timeout_s/>
                <FieldError error field="read_timeout_s"/>
                <label for="domain-headers">"Extra response headers"</label>
                <textarea id="domain-headers" rows="2" class="code" spellcheck="false"
                    placeholder="X-Frame-Options: DENY" aria-invalid=invalid(error, "headers")
                    bind:value=headers></textarea>
                <FieldError error field="headers"/>
                <label for="domain-maintenance">"Maintenance message (shown when the app is down)"</label>
                <input id="domain-maintenance" aria-invalid=invalid(error, "maintenance_message") bind:value=maintenance_message/>
                <FieldError error field="maintenance_message"/>
                <label class="check"><input type="checkbox" id="domain-private" bind:checked=allow_private_upstream/>
                    " Allow URL targets on loopback and private networks"</label>
            </fieldset>
            <FormError error fields=FIELDS/>
            {move || checked.get().map(|c| view! { <p class="muted" id="validation" role="status">{c}</p> })}
            <div class="actions">
                <button type="submit" id="save-domain" disabled=busy>{if is_new { "Add domain" } else { "Save" }}</button>
            </div>
            {move || saved.get().map(|s| view! { <p class="success" role="status" id="domain-saved">{s}</p> })}
        </form>
    }
}
