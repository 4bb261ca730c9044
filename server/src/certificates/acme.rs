//! The ACME adapter over instant-acme: the HTTP transport (reqwest with the
//! public roots plus any configured private roots), the account, and one
//! order from new-order to the downloaded chain. Challenges are answered by a
//! `Solver`; each step is reported to a `Progress` so the UI can show it live.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse,
    CertificateIdentifier, ChallengeType, ExternalAccountKey, HttpClient, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

use app::api::KeyType;

/// reqwest as instant-acme's transport: one TLS stack in berth, and private
/// roots are simply added to it.
struct Http(reqwest::Client);

impl HttpClient for Http {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let resp = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            Ok(BytesResponse::from(http::Response::<reqwest::Body>::from(
                resp,
            )))
        })
    }
}

/// Where and as whom berth talks ACME.
#[derive(Clone)]
pub struct Directory {
    pub url: String,
    pub email: Option<String>,
    /// Key id and raw HMAC key of the external account binding.
    pub eab: Option<(String, Vec<u8>)>,
    pub extra_roots_pem: Option<String>,
}

impl Directory {
    fn http(&self) -> anyhow::Result<Box<dyn HttpClient>> {
        let mut builder =
            crate::outbound::builder(Duration::from_secs(10), Duration::from_secs(60));
        if let Some(pem) = &self.extra_roots_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .context("extra_roots_pem is not a PEM bundle")?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Box::new(Http(builder.build()?)))
    }

    /// Registers a new account (or finds the existing one for the same key).
    pub async fn register(&self) -> Result<(Account, AccountCredentials), String> {
        let contact = self.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let eab = self
            .eab
            .as_ref()
            .map(|(kid, key)| ExternalAccountKey::new(kid.clone(), key));
        let builder = Account::builder_with_http(self.http().map_err(|e| format!("{e:#}"))?);
        builder
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.url.clone(),
                eab.as_ref(),
            )
            .await
            .map_err(|e| explain(&self.url, e))
    }

    pub async fn restore(&self, credentials: AccountCredentials) -> Result<Account, String> {
        Account::builder_with_http(self.http().map_err(|e| format!("{e:#}"))?)
            .from_credentials(credentials)
            .await
            .map_err(|e| explain(&self.url, e))
    }
}

/// Turns instant-acme's errors into what an admin can act on.
pub fn explain(url: &str, e: instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => {
            let kind = p
                .r#type
                .as_deref()
                .and_then(|t| t.rsplit(':').next())
                .unwrap_or("error");
            let detail = p.detail.clone().unwrap_or_default();
            let hint = match kind {
                "externalAccountRequired" => {
                    " — this CA needs an external account binding (EAB key id + HMAC key)"
                }
                "unauthorized" if detail.to_lowercase().contains("external") => {
                    " — check the EAB key id and HMAC key"
                }
                "rateLimited" => " — the CA's rate limit; berth retries later",
                "connection" => {
                    " — the CA could not reach this host: check DNS and that port 80 reaches berth"
                }
                "dns" => " — the CA's DNS lookup failed: check the domain's records",
                "rejectedIdentifier" => " — the CA will not issue for this name",
                _ => "",
            };
            let subs: Vec<String> = p
                .subproblems
                .iter()
                .map(|s| {
                    format!(
                        "{}: {}",
                        s.identifier
                            .as_ref()
                            .map(|i| match i {
                                Identifier::Dns(d) => d.clone(),
                                other => format!("{other:?}"),
                            })
                            .unwrap_or_default(),
                        s.detail.clone().unwrap_or_default()
                    )
                })
                .collect();
            let mut out = format!("the CA refused ({kind}): {detail}{hint}");
            if !subs.is_empty() {
                out.push_str(&format!(" [{}]", subs.join("; ")));
            }
            out
        }
        instant_acme::Error::Other(inner) => {
            // reqwest's chain carries the useful part (refused, DNS, TLS).
            let mut text = inner.to_string();
            let mut source = inner.source();
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            format!("the CA at {url} cannot be reached: {text}")
        }
        instant_acme::Error::Timeout(_) => {
            "the CA did not finish in time; berth retries later".to_string()
        }
        other => format!("ACME error: {other}"),
    }
}

/// Reports each step of an attempt (stored and shown live).
#[async_trait::async_trait]
pub trait Progress: Send + Sync {
    async fn step(&self, step: &str, status: &str, detail: Option<String>);
}

/// Answers challenges of one kind.
#[async_trait::async_trait]
pub trait Solver: Send + Sync {
    fn kind(&self) -> ChallengeType;
    /// Publishes the answer for `name` (without `*.`): the key
    /// authorization for HTTP-01, its digest value for DNS-01.
    async fn present(
        &self,
        name: &str,
        token: &str,
        key_authorization: &str,
        dns_value: &str,
    ) -> Result<(), String>;
    /// Waits until what `present` published is visible to the CA.
    async fn wait_visible(&self, _name: &str, _dns_value: &str) -> Result<(), String> {
        Ok(())
    }
    /// Removes everything `present` published; failures are only logged.
    async fn cleanup(&self);
}

pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// One order for `names`, start to finish. Always cleans up the challenges.
pub async fn issue(
    account: &Account,
    url: &str,
    names: &[String],
    key_type: KeyType,
    replaces: Option<&str>,
    solver: &dyn Solver,
    progress: &dyn Progress,
) -> Result<Issued, String> {
    let result = run_order(account, url, names, key_type, replaces, solver, progress).await;
    solver.cleanup().await;
    result
}

async fn run_order(
    account: &Account,
    url: &str,
    names: &[String],
    key_type: KeyType,
    replaces: Option<&str>,
    solver: &dyn Solver,
    progress: &dyn Progress,
) -> Result<Issued, String> {
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    progress
        .step("order", "running", Some(names.join(", ")))
        .await;
    let replaced = replaces.and_then(parse_ari_id);
    let mut request = NewOrder::new(&identifiers);
    if let Some(id) = &replaced {
        request = request.replaces(id.clone());
    }
    let placed = match account.new_order(&request).await {
        // A CA without ARI, one that does not echo `replaces`, or one that
        // says the certificate was already replaced: order without it.
        Err(e) if replaced.is_some() => {
            tracing::info!(error = %e, "ordering without `replaces`");
            account.new_order(&NewOrder::new(&identifiers)).await
        }
        other => other,
    };
    let mut order = match placed {
        Ok(o) => o,
        Err(e) => return fail(progress, "order", explain(url, e)).await,
    };
    progress.step("order", "done", None).await;

    // Publish every answer first, then tell the CA: DNS answers need time
    // to be visible, and one wait covers them all.
    let mut ready = Vec::new();
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| explain(url, e))?;
            let name = authz.identifier().to_string();
            if authz.status == AuthorizationStatus::Valid {
                progress
                    .step(
                        "authorization",
                        "done",
                        Some(format!("{name}: already valid")),
                    )
                    .await;
                continue;
            }
            if authz.status != AuthorizationStatus::Pending {
                let why = format!("{name}: authorization is {:?}", authz.status);
                return fail(progress, "authorization", why).await;
            }
            progress
                .step("authorization", "running", Some(name.clone()))
                .await;
            let bare = name.trim_start_matches("*.").to_string();
            let kind = solver.kind();
            let Some(challenge) = authz.challenge(kind.clone()) else {
                let why = format!("{name}: the CA offers no {kind:?} challenge");
                return fail(progress, "authorization", why).await;
            };
            let key_auth = challenge.key_authorization();
            let dns_value = key_auth.dns_value();
            if let Err(e) = solver
                .present(&bare, &challenge.token, key_auth.as_str(), &dns_value)
                .await
            {
                return fail(progress, "challenge", format!("{name}: {e}")).await;
            }
            ready.push((bare, dns_value, challenge.url.clone()));
            progress
                .step(
                    "authorization",
                    "done",
                    Some(format!("{name}: answer published")),
                )
                .await;
        }
    }
    for (name, value, _) in &ready {
        if let Err(e) = solver.wait_visible(name, value).await {
            return fail(progress, "challenge", format!("{name}: {e}")).await;
        }
    }
    progress
        .step(
            "challenge",
            "done",
            Some(format!("{} answer(s) published", ready.len())),
        )
        .await;
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| explain(url, e))?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            if let Some(mut challenge) = authz.challenge(solver.kind()) {
                challenge.set_ready().await.map_err(|e| explain(url, e))?;
            }
        }
    }

    progress.step("validation", "running", None).await;
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(Duration::from_secs(120));
    let status = order.poll_ready(&retry).await;
    match status {
        Ok(OrderStatus::Ready) => progress.step("validation", "done", None).await,
        Ok(_) | Err(instant_acme::Error::Api(_)) => {
            let why = validation_errors(&mut order, url).await;
            return fail(progress, "validation", why).await;
        }
        Err(e) => return fail(progress, "validation", explain(url, e)).await,
    }

    progress.step("finalize", "running", None).await;
    let (csr, key_pem) = match csr(names, key_type) {
        Ok(made) => made,
        Err(e) => return fail(progress, "finalize", format!("{e:#}")).await,
    };
    if let Err(e) = order.finalize_csr(&csr).await {
        return fail(progress, "finalize", explain(url, e)).await;
    }
    progress.step("finalize", "done", None).await;

    progress.step("download", "running", None).await;
    let chain_pem = match order.poll_certificate(&retry).await {
        Ok(pem) => pem,
        Err(e) => return fail(progress, "download", explain(url, e)).await,
    };
    progress.step("download", "done", None).await;
    Ok(Issued { chain_pem, key_pem })
}

async fn fail<T>(progress: &dyn Progress, step: &str, why: String) -> Result<T, String> {
    progress.step(step, "failed", Some(why.clone())).await;
    Err(why)
}

/// What the CA said about each failed challenge.
async fn validation_errors(order: &mut instant_acme::Order, url: &str) -> String {
    let mut out = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let Ok(mut authz) = authz else { continue };
        let Ok(state) = authz.refresh().await else {
            continue;
        };
        let name = state.identifier().to_string();
        for c in &state.challenges {
            if let Some(problem) = &c.error {
                out.push(format!(
                    "{name}: {}",
                    explain(url, instant_acme::Error::Api(problem.clone()))
                ));
            }
        }
    }
    if out.is_empty() {
        "the CA did not validate the challenge".to_string()
    } else {
        out.join("; ")
    }
}

/// A fresh key of the requested type and a CSR for `names` signed with it.
fn csr(names: &[String], key_type: KeyType) -> anyhow::Result<(Vec<u8>, String)> {
    let key = match key_type {
        KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        KeyType::Rsa2048 | KeyType::Rsa4096 => {
            use rsa::pkcs8::EncodePrivateKey;
            let bits = if key_type == KeyType::Rsa2048 {
                2048
            } else {
                4096
            };
            let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits)?;
            let der = private.to_pkcs8_der()?;
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
                &rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec()),
                &rcgen::PKCS_RSA_SHA256,
            )?
        }
    };
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    Ok((csr.der().to_vec(), key.serialize_pem()))
}

/// `aki.serial` (base64url) as instant-acme's identifier.
fn parse_ari_id(id: &str) -> Option<CertificateIdentifier<'static>> {
    let (aki, serial) = id.split_once('.')?;
    Some(CertificateIdentifier {
        authority_key_identifier: aki.to_string().into(),
        serial: serial.to_string().into(),
    })
}

/// The CA's suggested renewal window for a certificate (RFC 9773), and how
/// long until asking again. `Ok(None)`: the CA has no ARI.
pub async fn renewal_window(
    account: &Account,
    url: &str,
    ari_id: &str,
) -> Result<Option<(i64, i64, u64)>, String> {
    let Some(id) = parse_ari_id(ari_id) else {
        return Ok(None);
    };
    match account.renewal_info(&id).await {
        Ok((info, retry_after)) => Ok(Some((
            info.suggested_window.start.unix_timestamp(),
            info.suggested_window.end.unix_timestamp(),
            retry_after.as_secs(),
        ))),
        Err(instant_acme::Error::Unsupported(_)) => Ok(None),
        Err(e) => Err(explain(url, e)),
    }
}

/// Decodes an EAB HMAC key as CAs hand it out (base64url, padded or not).
pub fn decode_hmac(key: &str) -> Option<Vec<u8>> {
    let trimmed = key.trim().trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .ok()
        .filter(|k| !k.is_empty())
}
