//! The ACME account and DNS providers (`/acme`), and the notification
//! channels (`/notifications`). Secret fields are write-only: they are sent
//! once and the page only ever learns whether one is stored.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;

use super::super::widgets::{invalid, loader, Confirm, ErrorMessage, FieldError};
use super::super::Frame;
use crate::api::{
    AcmeSettings, AcmeSettingsInput, Channel, ChannelConfig, ChannelInput, ChannelTest,
    DnsProvider, DnsProviderConfig, DnsProviderInput, EabInput, SmtpSecurity,
};
use crate::client::{self, ClientError};

#[component]
pub fn CertificateSettings() -> impl IntoView {
    view! { <Frame title="Certificate settings" body=SettingsBody/> }
}

#[component]
pub fn Notifications() -> impl IntoView {
    view! { <Frame title="Notifications" body=ChannelsBody/> }
}

#[component]
fn SettingsBody() -> impl IntoView {
    view! {
        <p><A href="/certificates">"← Certificates"</A></p>
        <section aria-labelledby="acme-heading">
            <h2 id="acme-heading">"ACME certificate authority"</h2>
            <AcmeForm/>
        </section>
        <section aria-labelledby="dns-heading">
            <h2 id="dns-heading">"DNS providers (for DNS-01 and wildcards)"</h2>
            <DnsProviders/>
        </section>
    }
}

#[component]
fn AcmeForm() -> impl IntoView {
    let current = RwSignal::new(None::<AcmeSettings>);
    let url = RwSignal::new(String::new());
    let email = RwSignal::new(String::new());
    let eab_kid = RwSignal::new(String::new());
    let eab_key = RwSignal::new(String::new());
    let roots = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ClientError>);
    let saved = RwSignal::new(false);
    let fill = move |s: AcmeSettings| {
        url.set(s.directory_url.clone().unwrap_or_default());
        email.set(s.email.clone().unwrap_or_default());
        eab_kid.set(s.eab_kid.clone().unwrap_or_default());
        eab_key.set(String::new());
        roots.set(s.extra_roots_pem.clone().unwrap_or_default());
        current.set(Some(s));
    };
    Effect::new(move |_| {
        spawn_local(async move {
            match client::get::<AcmeSettings>("/api/v1/acme").await {
                Ok(s) => fill(s),
                Err(e) => error.set(Some(e)),
            }
        })
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let kid = eab_kid.get_untracked();
        let input = AcmeSettingsInput {
            directory_url: url.get_untracked(),
            email: Some(email.get_untracked()).filter(|e| !e.trim().is_empty()),
            eab: (!kid.trim().is_empty()).then(|| EabInput {
                kid,
                hmac_key: Some(eab_key.get_untracked()).filter(|k| !k.trim().is_empty()),
            }),
            extra_roots_pem: Some(roots.get_untracked()).filter(|r| !r.trim().is_empty()),
        };
        saved.set(false);
        spawn_local(async move {
            match client::send::<_, AcmeSettings>("PUT", "/api/v1/acme", &input).await {
                Ok(s) => {
                    error.set(None);
                    fill(s);
                    saved.set(true);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <form class="stack" id="acme-form" on:submit=submit>
            <ErrorMessage error/>
            <label for="acme-url">"Directory URL"</label>
            <input id="acme-url" type="url" aria-invalid=invalid(error, "directory_url") bind:value=url
                list="acme-presets" placeholder="https://acme-v02.api.letsencrypt.org/directory"/>
            <datalist id="acme-presets">
                {move || current.get().map(|c| c.presets.into_iter().map(|p| view! {
                    <option value=p.directory_url>{p.name}</option>
                }).collect_view())}
            </datalist>
            <FieldError error field="directory_url"/>
            <label for="acme-email">"Contact e-mail (the CA's expiry notices)"</label>
            <input id="acme-email" type="email" aria-invalid=invalid(error, "email") bind:value=email/>
            <FieldError error field="email"/>
            <fieldset>
                <legend>"External account binding (only if the CA asks for it)"</legend>
                <label for="acme-eab-kid">"Key id"</label>
                <input id="acme-eab-kid" aria-invalid=invalid(error, "eab.kid") bind:value=eab_kid/>
                <label for="acme-eab-key">{move || if current.with(|c| c.as_ref().is_some_and(|c| c.eab_configured)) {
                    "HMAC key (stored; leave empty to keep it)"
                } else {
                    "HMAC key"
                }}</label>
                <input id="acme-eab-key" type="password" autocomplete="off"
                    aria-invalid=invalid(error, "eab.hmac_key") bind:value=eab_key/>
                <FieldError error field="eab"/>
            </fieldset>
            <label for="acme-roots">"Extra trusted roots for the CA's HTTPS (PEM, private CAs only)"</label>
            <textarea id="acme-roots" rows="3" class="mono" aria-invalid=invalid(error, "extra_roots_pem") bind:value=roots></textarea>
            <FieldError error field="extra_roots_pem"/>
            <button type="submit" id="acme-save">"Save"</button>
            {move || saved.get().then(|| view! { <p class="success" role="status" id="acme-saved">"Saved."</p> })}
            {move || current.get().and_then(|c| c.account_id).map(|a| view! {
                <p class="muted">"Account: "<code>{a}</code></p>
            })}
        </form>
    }
}

#[component]
fn DnsProviders() -> impl IntoView {
    let providers = RwSignal::new(Vec::<DnsProvider>::new());
    let error = RwSignal::new(None::<ClientError>);
    let kind = RwSignal::new("rfc2136".to_string());
    let name = RwSignal::new(String::new());
    let server = RwSignal::new(String::new());
    let zone = RwSignal::new(String::new());
    let key_name = RwSignal::new(String::new());
    let algorithm = RwSignal::new("hmac-sha256".to_string());
    let server_id = RwSignal::new("localhost".to_string());
    let secret = RwSignal::new(String::new());
    let internal = RwSignal::new(false);
    let reload = loader(
        "/api/v1/dns-providers",
        move |p: Vec<DnsProvider>| providers.set(p),
        error,
    );
    Effect::new(move |_| reload());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let config = if kind.get_untracked() == "powerdns" {
            DnsProviderConfig::Powerdns {
                api_url: server.get_untracked(),
                server_id: server_id.get_untracked(),
                zone: zone.get_untracked(),
            }
        } else {
            DnsProviderConfig::Rfc2136 {
                server: server.get_untracked(),
                zone: zone.get_untracked(),
                key_name: key_name.get_untracked(),
                algorithm: algorithm.get_untracked(),
            }
        };
        let input = DnsProviderInput {
            name: name.get_untracked(),
            config,
            secret: secret.get_untracked(),
            allow_internal: internal.get_untracked(),
        };
        spawn_local(async move {
            match client::send::<_, DnsProvider>("POST", "/api/v1/dns-providers", &input).await {
                Ok(_) => {
                    error.set(None);
                    secret.set(String::new());
                    name.set(String::new());
                    reload();
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let remove = move |n: String| {
        spawn_local(async move {
            match client::send_no_content::<()>(
                "DELETE",
                &format!("/api/v1/dns-providers/{n}"),
                None,
            )
            .await
            {
                Ok(()) => error.set(None),
                Err(e) => error.set(Some(e)),
            }
            reload();
        })
    };
    view! {
        <ErrorMessage error/>
        <table class="data" id="dns-providers">
            <thead><tr><th scope="col">"Name"</th><th scope="col">"Kind"</th><th scope="col">"Where"</th><th scope="col"></th></tr></thead>
            <tbody>
                <For each=move || providers.get() key=|p| p.name.clone() let:p>
                    {
                        let n = p.name.clone();
                        let (k, at) = match &p.config {
                            DnsProviderConfig::Rfc2136 { server, zone, .. } => ("RFC 2136", format!("{zone} at {server}")),
                            DnsProviderConfig::Powerdns { api_url, zone, .. } => ("PowerDNS API", format!("{zone} at {api_url}")),
                        };
                        view! {
                            <tr data-provider=p.name.clone()>
                                <td>{p.name.clone()}</td><td>{k}</td><td>{at}</td>
                                <td><button type="button" class="small danger" on:click=move |_| remove(n.clone())>"Delete"</button></td>
                            </tr>
                        }
                    }
                </For>
            </tbody>
        </table>
        <form class="stack" id="dns-form" on:submit=submit>
            <label for="dns-kind">"Kind"</label>
            <select id="dns-kind" bind:value=kind>
                <option value="rfc2136">"RFC 2136 dynamic update with TSIG (BIND, Knot, PowerDNS)"</option>
                <option value="powerdns">"PowerDNS HTTP API"</option>
            </select>
            <label for="dns-name">"Name"</label>
            <input id="dns-name" aria-invalid=invalid(error, "name") bind:value=name/>
            <FieldError error field="name"/>
            <label for="dns-server">{move || if kind.get() == "powerdns" { "API URL" } else { "Primary server (address:port)" }}</label>
            <input id="dns-server" bind:value=server/>
            <FieldError error field="config"/>
            <label for="dns-zone">"Zone"</label>
            <input id="dns-zone" bind:value=zone placeholder="example.com"/>
            {move || (kind.get() == "rfc2136").then(|| view! {
                <label for="dns-key-name">"TSIG key name"</label>
                <input id="dns-key-name" bind:value=key_name/>
                <label for="dns-algorithm">"Algorithm"</label>
                <select id="dns-algorithm" bind:value=algorithm>
                    <option value="hmac-sha256">"hmac-sha256"</option>
                    <option value="hmac-sha512">"hmac-sha512"</option>
                </select>
            })}
            {move || (kind.get() == "powerdns").then(|| view! {
                <label for="dns-server-id">"Server id"</label>
                <input id="dns-server-id" bind:value=server_id/>
            })}
            <label for="dns-secret">{move || if kind.get() == "powerdns" { "API key" } else { "TSIG secret (base64)" }}</label>
            <input id="dns-secret" type="password" autocomplete="off" aria-invalid=invalid(error, "secret") bind:value=secret/>
            <FieldError error field="secret"/>
            <label class="check"><input type="checkbox" id="dns-internal" bind:checked=internal/>" The server is on a private or loopback address"</label>
            <button type="submit" id="dns-save">"Add provider"</button>
        </form>
    }
}

#[component]
fn ChannelsBody() -> impl IntoView {
    let channels = RwSignal::new(Vec::<Channel>::new());
    let error = RwSignal::new(None::<ClientError>);
    let tested = RwSignal::new(None::<(String, ChannelTest)>);
    let confirming = RwSignal::new(None::<String>);
    let kind = RwSignal::new("webhook".to_string());
    let name = RwSignal::new(String::new());
    let url = RwSignal::new(String::new());
    let host = RwSignal::new(String::new());
    let port = RwSignal::new("587".to_string());
    let security = RwSignal::new("starttls".to_string());
    let username = RwSignal::new(String::new());
    let from = RwSignal::new(String::new());
    let to = RwSignal::new(String::new());
    let secret = RwSignal::new(String::new());
    let internal = RwSignal::new(false);
    let reload = loader(
        "/api/v1/notifications/channels",
        move |c: Vec<Channel>| channels.set(c),
        error,
    );
    Effect::new(move |_| reload());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let config = if kind.get_untracked() == "email" {
            ChannelConfig::Email {
                host: host.get_untracked(),
                port: port.get_untracked().trim().parse().unwrap_or(0),
                security: match security.get_untracked().as_str() {
                    "tls" => SmtpSecurity::Tls,
                    "none" => SmtpSecurity::None,
                    _ => SmtpSecurity::Starttls,
                },
                username: Some(username.get_untracked()).filter(|u| !u.trim().is_empty()),
                from: from.get_untracked(),
                to: to
                    .get_untracked()
                    .split([',', ' ', '\n'])
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect(),
            }
        } else {
            ChannelConfig::Webhook {
                url: url.get_untracked(),
            }
        };
        let input = ChannelInput {
            name: name.get_untracked(),
            config,
            secret: Some(secret.get_untracked()).filter(|s| !s.is_empty()),
            allow_internal: internal.get_untracked(),
        };
        spawn_local(async move {
            match client::send::<_, Channel>("POST", "/api/v1/notifications/channels", &input).await
            {
                Ok(_) => {
                    error.set(None);
                    secret.set(String::new());
                    name.set(String::new());
                    reload();
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let test = move |id: String| {
        spawn_local(async move {
            let path = format!("/api/v1/notifications/channels/{id}/test");
            match client::send_empty::<ChannelTest>("POST", &path).await {
                Ok(t) => {
                    error.set(None);
                    tested.set(Some((id, t)));
                }
                Err(e) => error.set(Some(e)),
            }
            reload();
        })
    };
    let delete = move || {
        let Some(id) = confirming.get_untracked() else {
            return;
        };
        confirming.set(None);
        spawn_local(async move {
            let path = format!("/api/v1/notifications/channels/{id}");
            match client::send_no_content::<()>("DELETE", &path, None).await {
                Ok(()) => error.set(None),
                Err(e) => error.set(Some(e)),
            }
            reload();
        })
    };
    view! {
        <section aria-labelledby="channels-heading">
            <h2 id="channels-heading">"Channels"</h2>
            <p class="muted">"berth tells every channel when a certificate fails to issue or renew, is about to expire, or is not the one served."</p>
            <ErrorMessage error/>
            {move || confirming.get().map(|_| view! {
                <Confirm message="Delete this channel?" confirm_label="Delete channel"
                    confirm_id="confirm-delete-channel" on_confirm=delete on_cancel=move || confirming.set(None)/>
            })}
            {move || tested.get().map(|(id, t)| view! {
                <p role="status" id="channel-test" class=if t.delivered { "success" } else { "error" } data-channel=id>
                    {if t.delivered { "Test notification delivered.".to_string() } else { format!("Not delivered: {}", t.error.unwrap_or_default()) }}
                </p>
            })}
            <table class="data" id="channels">
                <thead><tr><th scope="col">"Name"</th><th scope="col">"Where"</th><th scope="col">"Last sent"</th><th scope="col">"Last error"</th><th scope="col"></th></tr></thead>
                <tbody>
                    <For each=move || channels.get() key=|c| (c.id.clone(), c.last_sent_at.clone(), c.last_error.clone()) let:c>
                        {
                            let id = c.id.clone();
                            let id2 = c.id.clone();
                            let at = match &c.config {
                                ChannelConfig::Webhook { url } => format!("webhook {url}{}", if c.has_secret { " (signed)" } else { "" }),
                                ChannelConfig::Email { host, port, to, .. } => format!("e-mail to {} via {host}:{port}", to.join(", ")),
                            };
                            view! {
                                <tr data-channel=c.id.clone()>
                                    <td>{c.name.clone()}</td><td>{at}</td>
                                    <td>{c.last_sent_at.clone().unwrap_or_else(|| "—".into())}</td>
                                    <td>{c.last_error.clone().unwrap_or_default()}</td>
                                    <td class="actions">
                                        <button type="button" class="small secondary" data-action="test" on:click=move |_| test(id.clone())>"Send test"</button>
                                        <button type="button" class="small danger" data-action="delete" on:click=move |_| confirming.set(Some(id2.clone()))>"Delete"</button>
                                    </td>
                                </tr>
                            }
                        }
                    </For>
                </tbody>
            </table>
        </section>
        <section aria-labelledby="new-channel-heading">
            <h2 id="new-channel-heading">"New channel"</h2>
            <form class="stack" id="channel-form" on:submit=submit>
                <label for="channel-kind">"Kind"</label>
                <select id="channel-kind" bind:value=kind>
                    <option value="webhook">"Webhook (JSON POST)"</option>
                    <option value="email">"E-mail (SMTP)"</option>
                </select>
                <label for="channel-name">"Name"</label>
                <input id="channel-name" aria-invalid=invalid(error, "name") bind:value=name/>
                <FieldError error field="name"/>
                {move || (kind.get() == "webhook").then(|| view! {
                    <label for="channel-url">"URL"</label>
                    <input id="channel-url" type="url" aria-invalid=invalid(error, "config.url") bind:value=url/>
                    <FieldError error field="config.url"/>
                    <label for="channel-secret">"Signing secret (optional; HMAC-SHA256 in X-Berth-Signature)"</label>
                })}
                {move || (kind.get() == "email").then(|| view! {
                    <label for="channel-host">"SMTP host"</label>
                    <input id="channel-host" aria-invalid=invalid(error, "config.host") bind:value=host/>
                    <FieldError error field="config.host"/>
                    <label for="channel-port">"Port"</label>
                    <input id="channel-port" inputmode="numeric" bind:value=port/>
                    <label for="channel-security">"Security"</label>
                    <select id="channel-security" bind:value=security>
                        <option value="starttls">"STARTTLS (587)"</option>
                        <option value="tls">"TLS (465)"</option>
                        <option value="none">"None (local relay only)"</option>
                    </select>
                    <label for="channel-username">"Username (optional)"</label>
                    <input id="channel-username" bind:value=username/>
                    <label for="channel-from">"From"</label>
                    <input id="channel-from" aria-invalid=invalid(error, "config.from") bind:value=from/>
                    <FieldError error field="config.from"/>
                    <label for="channel-to">"To (comma-separated)"</label>
                    <input id="channel-to" aria-invalid=invalid(error, "config.to") bind:value=to/>
                    <FieldError error field="config.to"/>
                    <label for="channel-secret">"SMTP password"</label>
                })}
                <input id="channel-secret" type="password" autocomplete="off" aria-invalid=invalid(error, "secret") bind:value=secret/>
                <FieldError error field="secret"/>
                <label class="check"><input type="checkbox" id="channel-internal" bind:checked=internal/>" The address is on a private or loopback network"</label>
                <button type="submit" id="channel-save">"Add channel"</button>
            </form>
        </section>
    }
}
