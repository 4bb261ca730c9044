//! Certificates: what berth serves and when each renews, what the HTTPS
//! listener was last seen serving, forms to order and to upload, and a page
//! per certificate that follows an issuance step by step.

mod settings;

pub use settings::{CertificateSettings, Notifications};

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map};

use super::widgets::{invalid, Confirm, ErrorMessage, FieldError, StatusBadge, Tone};
use super::Frame;
use crate::api::{
    Certificate, ChallengeKind, DnsProvider, IssuanceStep, KeyType, OrderRequest, ProbeResult,
    UploadRequest,
};
use crate::client::{self, ClientError};

#[component]
pub fn Certificates() -> impl IntoView {
    view! { <Frame title="Certificates" body=CertificatesBody/> }
}

#[component]
pub fn CertificatePage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    move || {
        let id = id.get();
        view! { <Frame title="Certificate" body=move || view! { <CertificateBody id=id.clone()/> }/> }
    }
}

fn state_tone(state: &str) -> Tone {
    match state {
        "valid" => Tone::Good,
        "failed" | "expired" => Tone::Bad,
        "pending" | "issuing" => Tone::Busy,
        _ => Tone::Idle,
    }
}

fn day(ts: &Option<String>) -> String {
    ts.as_deref()
        .map(|t| t.get(..16).unwrap_or(t).replace('T', " "))
        .unwrap_or_else(|| "—".into())
}

/// Domains typed one per line or separated by commas or spaces.
fn names(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[component]
fn CertificatesBody() -> impl IntoView {
    let certs = RwSignal::new(Vec::<Certificate>::new());
    let probes = RwSignal::new(Vec::<ProbeResult>::new());
    let loaded = RwSignal::new(false);
    let error = RwSignal::new(None::<ClientError>);
    let confirming = RwSignal::new(None::<String>);
    let probing = RwSignal::new(false);

    let reload = move || {
        spawn_local(async move {
            match client::get::<Vec<Certificate>>("/api/v1/certificates").await {
                Ok(list) => {
                    certs.set(list);
                    loaded.set(true);
                }
                Err(e) => error.set(Some(e)),
            }
            if let Ok(p) = client::get::<Vec<ProbeResult>>("/api/v1/certificates/probes").await {
                probes.set(p);
            }
        })
    };
    Effect::new(move |_| reload());

    let delete = move || {
        let Some(id) = confirming.get_untracked() else {
            return;
        };
        confirming.set(None);
        spawn_local(async move {
            match client::send_no_content::<()>(
                "DELETE",
                &format!("/api/v1/certificates/{id}"),
                None,
            )
            .await
            {
                Ok(()) => error.set(None),
                Err(e) => error.set(Some(e)),
            }
            reload();
        });
    };
    let renew = move |id: String| {
        spawn_local(async move {
            let path = format!("/api/v1/certificates/{id}/renew");
            match client::send_empty::<Certificate>("POST", &path).await {
                Ok(_) => error.set(None),
                Err(e) => error.set(Some(e)),
            }
            reload();
        });
    };
    let probe_now = move |_| {
        probing.set(true);
        spawn_local(async move {
            match client::send_empty::<Vec<ProbeResult>>("POST", "/api/v1/certificates/probes")
                .await
            {
                Ok(p) => {
                    error.set(None);
                    probes.set(p);
                }
                Err(e) => error.set(Some(e)),
            }
            probing.set(false);
        });
    };

    view! {
        <p class="muted">
            <A href="/acme">"ACME and DNS provider settings"</A>" · "
            <A href="/notifications">"Notification channels"</A>
        </p>
        <ErrorMessage error/>
        <section aria-labelledby="served-heading">
            <div class="section-head">
                <h2 id="served-heading">"What the HTTPS listener serves"</h2>
                <button type="button" class="small secondary" id="probe-now" disabled=probing
                    on:click=probe_now>"Check now"</button>
            </div>
            {move || probes.with(Vec::is_empty).then(|| view! {
                <p class="muted">"Not checked yet: the probe runs every few hours, or now with the button."</p>
            })}
            <table class="data" id="probes">
                <thead><tr>
                    <th scope="col">"Host"</th><th scope="col">"Status"</th>
                    <th scope="col">"Served until"</th><th scope="col">"Detail"</th>
                </tr></thead>
                <tbody>
                    <For each=move || probes.get() key=|p| (p.host.clone(), p.checked_at.clone(), p.status.clone()) let:p>
                        {
                            let tone = if p.status == "ok" { Tone::Good } else { Tone::Bad };
                            view! {
                                <tr data-host=p.host.clone()>
                                    <td>{p.host.clone()}</td>
                                    <td class="status"><StatusBadge word=p.status.clone() tone title=""/></td>
                                    <td>{day(&p.served_not_after)}</td>
                                    <td>{p.detail.clone().unwrap_or_default()}</td>
                                </tr>
                            }
                        }
                    </For>
                </tbody>
            </table>
        </section>
        <section aria-labelledby="certs-heading">
            <h2 id="certs-heading">"Certificates"</h2>
            {move || confirming.get().map(|id| view! {
                <Confirm
                    message=format!("Delete certificate {id}? The proxy stops serving it at once.")
                    confirm_label="Delete certificate"
                    confirm_id="confirm-delete-certificate"
                    on_confirm=delete
                    on_cancel=move || confirming.set(None)
                />
            })}
            <table class="data" id="certificates">
                <thead><tr>
                    <th scope="col">"Names"</th><th scope="col">"State"</th>
                    <th scope="col">"Issuer"</th><th scope="col">"Expires"</th>
                    <th scope="col">"Renews"</th><th scope="col">"Last result"</th>
                    <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                </tr></thead>
                <tbody>
                    <For each=move || certs.get() key=|c| (c.id.clone(), c.state.clone(), c.not_after.clone(), c.last_error.clone()) let:c>
                        {
                            let id = c.id.clone();
                            let id2 = id.clone();
                            let id3 = id.clone();
                            let link = format!("/certificates/{id}");
                            let acme = c.source == "acme";
                            let result = match (&c.last_error, c.failures) {
                                (Some(e), n) => format!("failed ×{n}: {e}"),
                                (None, _) if c.state == "valid" => "ok".to_string(),
                                _ => "—".to_string(),
                            };
                            view! {
                                <tr data-certificate=id.clone()>
                                    <td><A href=link>{c.domains.join(", ")}</A>
                                        {(c.source == "upload").then_some(" (uploaded)")}
                                        {c.automatic.then_some(" (automatic)")}</td>
                                    <td class="cert-state"><StatusBadge word=c.state.clone() tone=state_tone(&c.state) title=""/></td>
                                    <td>{c.issuer.clone().unwrap_or_else(|| "—".into())}</td>
                                    <td class="expires">{day(&c.not_after)}</td>
                                    <td class="renews">{if acme { format!("{} ({})", day(&c.renew_at), c.renew_reason.clone().unwrap_or_default()) } else { "—".into() }}</td>
                                    <td class="result">{result}</td>
                                    <td class="actions">
                                        {acme.then(|| view! {
                                            <button type="button" class="small secondary" data-action="renew"
                                                on:click=move |_| renew(id2.clone())>"Renew now"</button>
                                        })}
                                        <button type="button" class="small danger" data-action="delete"
                                            on:click=move |_| confirming.set(Some(id3.clone()))>"Delete"</button>
                                    </td>
                                </tr>
                            }
                        }
                    </For>
                </tbody>
            </table>
            {move || (loaded.get() && certs.with(Vec::is_empty)).then(|| view! {
                <p class="muted">"No certificates yet. Domains get one automatically once ACME is configured."</p>
            })}
        </section>
        <section aria-labelledby="order-heading">
            <h2 id="order-heading">"Order a certificate"</h2>
            <OrderForm/>
        </section>
        <section aria-labelledby="upload-heading">
            <h2 id="upload-heading">"Upload a certificate"</h2>
            <UploadForm on_saved=Callback::new(move |_| reload())/>
        </section>
    }
}

#[component]
fn OrderForm() -> impl IntoView {
    let domains = RwSignal::new(String::new());
    let challenge = RwSignal::new("http-01".to_string());
    let provider = RwSignal::new(String::new());
    let key_type = RwSignal::new("ecdsa-p256".to_string());
    let providers = RwSignal::new(Vec::<DnsProvider>::new());
    let error = RwSignal::new(None::<ClientError>);
    let busy = RwSignal::new(false);
    let navigate = use_navigate();
    Effect::new(move |_| {
        spawn_local(async move {
            if let Ok(p) = client::get::<Vec<DnsProvider>>("/api/v1/dns-providers").await {
                providers.set(p);
            }
        })
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let req = OrderRequest {
            domains: names(&domains.get_untracked()),
            challenge: if challenge.get_untracked() == "dns-01" {
                ChallengeKind::Dns01
            } else {
                ChallengeKind::Http01
            },
            dns_provider: Some(provider.get_untracked()).filter(|p| !p.is_empty()),
            key_type: match key_type.get_untracked().as_str() {
                "rsa-2048" => KeyType::Rsa2048,
                "rsa-4096" => KeyType::Rsa4096,
                _ => KeyType::EcdsaP256,
            },
        };
        busy.set(true);
        let navigate = navigate.clone();
        spawn_local(async move {
            match client::send::<_, Certificate>("POST", "/api/v1/certificates", &req).await {
                Ok(c) => navigate(&format!("/certificates/{}", c.id), Default::default()),
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    view! {
        <form class="stack" id="order-form" on:submit=submit>
            <ErrorMessage error/>
            <label for="order-domains">"Names (one per line; *.example.com needs dns-01)"</label>
            <textarea id="order-domains" rows="3" aria-invalid=invalid(error, "domains")
                bind:value=domains placeholder="example.com\nwww.example.com"></textarea>
            <FieldError error field="domains"/>
            <label for="order-challenge">"Challenge"</label>
            <select id="order-challenge" bind:value=challenge>
                <option value="http-01">"HTTP-01 (answered by berth's proxy on port 80)"</option>
                <option value="dns-01">"DNS-01 (TXT record through a DNS provider)"</option>
            </select>
            {move || (challenge.get() == "dns-01").then(|| view! {
                <label for="order-provider">"DNS provider"</label>
                <select id="order-provider" bind:value=provider>
                    <option value="">"(the only one)"</option>
                    {providers.get().into_iter().map(|p| view! { <option value=p.name.clone()>{p.name.clone()}</option> }).collect_view()}
                </select>
                <FieldError error field="dns_provider"/>
            })}
            <label for="order-key">"Key"</label>
            <select id="order-key" bind:value=key_type>
                <option value="ecdsa-p256">"ECDSA P-256 (recommended)"</option>
                <option value="rsa-2048">"RSA 2048"</option>
                <option value="rsa-4096">"RSA 4096"</option>
            </select>
            <button type="submit" id="order-submit" disabled=busy>"Order"</button>
        </form>
    }
}

#[component]
fn UploadForm(on_saved: Callback<()>) -> impl IntoView {
    let cert = RwSignal::new(String::new());
    let key = RwSignal::new(String::new());
    let chain = RwSignal::new(String::new());
    let domains = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ClientError>);
    let saved = RwSignal::new(None::<Certificate>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let req = UploadRequest {
            certificate_pem: cert.get_untracked(),
            key_pem: key.get_untracked(),
            chain_pem: Some(chain.get_untracked()).filter(|c| !c.trim().is_empty()),
            domains: names(&domains.get_untracked()),
        };
        spawn_local(async move {
            match client::send::<_, Certificate>("POST", "/api/v1/certificates/upload", &req).await
            {
                Ok(c) => {
                    error.set(None);
                    // The key leaves the page once stored.
                    key.set(String::new());
                    saved.set(Some(c));
                    on_saved.run(());
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <form class="stack" id="upload-form" on:submit=submit>
            <ErrorMessage error/>
            <label for="upload-cert">"Certificate (PEM, chain may follow)"</label>
            <textarea id="upload-cert" rows="6" class="mono" aria-invalid=invalid(error, "certificate_pem") bind:value=cert></textarea>
            <FieldError error field="certificate_pem"/>
            <label for="upload-key">"Private key (PEM; stored encrypted, never shown again)"</label>
            <textarea id="upload-key" rows="4" class="mono" aria-invalid=invalid(error, "key_pem") bind:value=key></textarea>
            <FieldError error field="key_pem"/>
            <label for="upload-chain">"Intermediate certificates (optional)"</label>
            <textarea id="upload-chain" rows="3" class="mono" aria-invalid=invalid(error, "chain_pem") bind:value=chain></textarea>
            <label for="upload-domains">"Must cover (optional, e.g. the domain it is for)"</label>
            <input id="upload-domains" aria-invalid=invalid(error, "domains") bind:value=domains/>
            <FieldError error field="domains"/>
            <button type="submit" id="upload-submit">"Upload"</button>
            {move || saved.get().map(|c| view! {
                <p class="success" role="status" id="upload-saved">
                    {format!("Stored and served: {} (expires {})", c.domains.join(", "), day(&c.not_after))}
                </p>
            })}
        </form>
    }
}

/// Polls while an attempt is under way so the steps appear as they happen.
fn follow(id: String, cert: RwSignal<Option<Certificate>>, error: RwSignal<Option<ClientError>>) {
    set_timeout(
        move || {
            if cert.is_disposed() {
                return;
            }
            spawn_local(async move {
                match client::get::<Certificate>(&format!("/api/v1/certificates/{id}")).await {
                    Ok(c) if cert.is_disposed() => drop(c),
                    Ok(c) => {
                        let running = in_progress(&c);
                        cert.set(Some(c));
                        if running {
                            follow(id, cert, error);
                        }
                    }
                    Err(e) if !error.is_disposed() => error.set(Some(e)),
                    Err(_) => {}
                }
            });
        },
        Duration::from_millis(700),
    );
}

/// One line per step: a `done` or `failed` entry replaces the `running`
/// entry of the same step just before it (keeping its detail if it has none).
fn merged(steps: Vec<IssuanceStep>) -> Vec<IssuanceStep> {
    let mut out: Vec<IssuanceStep> = Vec::new();
    for s in steps {
        match out.last_mut() {
            Some(prev) if prev.step == s.step && prev.status == "running" => {
                let detail = s.detail.or(prev.detail.take());
                *prev = IssuanceStep { detail, ..s };
            }
            _ => out.push(s),
        }
    }
    out
}

fn in_progress(c: &Certificate) -> bool {
    c.state == "pending"
        || c.state == "issuing"
        || c.steps.last().is_some_and(|s| s.status == "running")
}

#[component]
fn CertificateBody(id: String) -> impl IntoView {
    let cert = RwSignal::new(None::<Certificate>);
    let error = RwSignal::new(None::<ClientError>);
    let path = StoredValue::new(format!("/api/v1/certificates/{id}"));
    let start = StoredValue::new(id);
    let load = move || {
        spawn_local(async move {
            match client::get::<Certificate>(&path.get_value()).await {
                Ok(c) => {
                    let running = in_progress(&c);
                    cert.set(Some(c));
                    if running {
                        follow(start.get_value(), cert, error);
                    }
                }
                Err(e) => error.set(Some(e)),
            }
        })
    };
    Effect::new(move |_| load());
    let renew = move |_| {
        spawn_local(async move {
            let url = format!("{}/renew", path.get_value());
            match client::send_empty::<Certificate>("POST", &url).await {
                Ok(_) => {
                    error.set(None);
                    follow(start.get_value(), cert, error);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <p><A href="/certificates">"← All certificates"</A></p>
        <ErrorMessage error/>
        {move || cert.get().map(|c| {
            let acme = c.source == "acme";
            view! {
                <section aria-labelledby="cert-heading">
                    <div class="section-head">
                        <h2 id="cert-heading">{c.domains.join(", ")}</h2>
                        {acme.then(|| view! {
                            <button type="button" class="small secondary" id="renew-certificate"
                                disabled=move || cert.with(|c| c.as_ref().is_some_and(in_progress))
                                on:click=renew>"Renew now"</button>
                        })}
                    </div>
                    <dl class="settings" id="certificate-facts">
                        <dt>"State"</dt><dd id="certificate-state"><StatusBadge word=c.state.clone() tone=state_tone(&c.state) title=""/></dd>
                        <dt>"Source"</dt><dd>{format!("{}{}", c.source, c.challenge.map(|ch| format!(" ({})", if ch == ChallengeKind::Dns01 { "dns-01" } else { "http-01" })).unwrap_or_default())}</dd>
                        <dt>"Issuer"</dt><dd>{c.issuer.clone().unwrap_or_else(|| "—".into())}</dd>
                        <dt>"Valid"</dt><dd>{format!("{} → {}", day(&c.not_before), day(&c.not_after))}</dd>
                        <dt>"Renews"</dt><dd>{if acme { format!("{} ({})", day(&c.renew_at), c.renew_reason.clone().unwrap_or_default()) } else { "never (uploaded: upload its successor)".into() }}</dd>
                        <dt>"SHA-256"</dt><dd><code>{c.fingerprint.clone().unwrap_or_else(|| "—".into())}</code></dd>
                        {c.last_error.clone().map(|e| view! {
                            <dt>"Last error"</dt><dd class="error" id="certificate-error">{format!("{e} (failed {} time(s) in a row)", c.failures)}</dd>
                        })}
                    </dl>
                </section>
                <section aria-labelledby="steps-heading">
                    <h2 id="steps-heading">"Latest attempt"</h2>
                    {c.steps.is_empty().then(|| view! { <p class="muted">"No attempt recorded."</p> })}
                    <ol class="attempt" id="steps">
                        {merged(c.steps).into_iter().map(|s| {
                            let class = format!("step {}", s.status);
                            view! {
                                <li class=class data-step=s.step.clone() data-status=s.status.clone()>
                                    <strong>{s.step.clone()}</strong>" "{s.status.clone()}
                                    {s.detail.map(|d| view! { <span class="muted">" — "{d}</span> })}
                                    <span class="muted">" "{day(&Some(s.at))}</span>
                                </li>
                            }
                        }).collect_view()}
                    </ol>
                </section>
            }
        })}
    }
}
