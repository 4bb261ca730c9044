//! `/acme`, `/certificates`, `/dns-providers`: the REST API of the
//! certificates capability. Secrets (EAB key, private keys, TSIG secrets,
//! API keys) go in and never come out, and the audit log records only that
//! one was given.

use app::api::{
    AcmeSettings, AcmeSettingsInput, Certificate, DnsProvider, DnsProviderConfig, DnsProviderInput,
    ErrorBody, OrderRequest, ProbeResult, Scope, UploadRequest,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;

use crate::audit::Outcome;
use crate::auth::caller::Caller;
use crate::http::error::Result;
use crate::http::json::ApiJson;
use crate::startup::AppState;

/// The ACME CA and account (no secrets).
#[utoipa::path(get, path = "/acme", tag = "certificates",
    responses((status = 200, body = AcmeSettings)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get_acme(State(state): State<AppState>, caller: Caller) -> Result<Json<AcmeSettings>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.certificates.acme_settings().await?))
}

/// Sets the ACME CA (directory URL), contact e-mail, external account
/// binding and extra trusted roots. A changed CA, e-mail or EAB registers a
/// new account at the next order.
#[utoipa::path(put, path = "/acme", tag = "certificates", request_body = AcmeSettingsInput,
    responses((status = 200, body = AcmeSettings), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn put_acme(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<AcmeSettingsInput>,
) -> Result<Json<AcmeSettings>> {
    caller.require(Scope::Admin)?;
    let detail = json!({
        "directory_url": input.directory_url,
        "email": input.email,
        "eab_kid": input.eab.as_ref().map(|e| &e.kid),
        "extra_roots": input.extra_roots_pem.as_ref().is_some_and(|p| !p.trim().is_empty()),
    });
    let settings = state.certificates.set_acme(input).await?;
    caller
        .audit(&state.db, "acme.update", "acme", Outcome::Success, detail)
        .await?;
    Ok(Json(settings))
}

/// Every certificate berth manages.
#[utoipa::path(get, path = "/certificates", tag = "certificates",
    responses((status = 200, body = Vec<Certificate>)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<Certificate>>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.certificates.list().await?))
}

/// Orders a certificate. The answer (202) comes at once; the order runs in
/// the background and `GET /certificates/{id}` shows its steps live.
#[utoipa::path(post, path = "/certificates", tag = "certificates", request_body = OrderRequest,
    responses((status = 202, body = Certificate),
              (status = 409, body = ErrorBody, description = "ACME is not configured"),
              (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn order(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<OrderRequest>,
) -> Result<(StatusCode, Json<Certificate>)> {
    caller.require(Scope::Write)?;
    let cert = state.certificates.order(req).await?;
    caller
        .audit(
            &state.db,
            "certificate.order",
            &cert.id,
            Outcome::Success,
            json!({ "domains": cert.domains, "challenge": cert.challenge }),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(cert)))
}

/// Stores a certificate issued elsewhere: PEM certificate (+ chain) and key;
/// the key must match and the names must cover `domains`.
#[utoipa::path(post, path = "/certificates/upload", tag = "certificates", request_body = UploadRequest,
    responses((status = 201, body = Certificate), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<UploadRequest>,
) -> Result<(StatusCode, Json<Certificate>)> {
    caller.require(Scope::Write)?;
    let cert = state.certificates.upload(req).await?;
    caller
        .audit(
            &state.db,
            "certificate.upload",
            &cert.id,
            Outcome::Success,
            json!({ "domains": cert.domains, "fingerprint": cert.fingerprint }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(cert)))
}

/// One certificate with the steps of its latest attempt.
#[utoipa::path(get, path = "/certificates/{id}", tag = "certificates",
    params(("id" = String, Path)),
    responses((status = 200, body = Certificate), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Certificate>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.certificates.get(&id).await?))
}

/// Deletes a certificate; the proxy stops serving it at once.
#[utoipa::path(delete, path = "/certificates/{id}", tag = "certificates",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    caller.require(Scope::Write)?;
    state.certificates.delete(&id).await?;
    caller
        .audit(
            &state.db,
            "certificate.delete",
            &id,
            Outcome::Success,
            json!({}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Renews now, whatever the schedule says (202; runs in the background).
#[utoipa::path(post, path = "/certificates/{id}/renew", tag = "certificates",
    params(("id" = String, Path)),
    responses((status = 202, body = Certificate), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "uploaded, or an attempt is under way")),
    security(("session" = []), ("bearer" = [])))]
pub async fn renew(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Certificate>)> {
    caller.require(Scope::Write)?;
    let cert = state.certificates.renew(&id).await?;
    caller
        .audit(
            &state.db,
            "certificate.renew",
            &id,
            Outcome::Success,
            json!({}),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(cert)))
}

/// What the HTTPS listener served for each domain at the last probe.
#[utoipa::path(get, path = "/certificates/probes", tag = "certificates",
    responses((status = 200, body = Vec<ProbeResult>)),
    security(("session" = []), ("bearer" = [])))]
pub async fn probes(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ProbeResult>>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.certificates.probes().await?))
}

/// Runs the expiry probe now and answers its readings.
#[utoipa::path(post, path = "/certificates/probes", tag = "certificates",
    responses((status = 200, body = Vec<ProbeResult>),
              (status = 409, body = ErrorBody, description = "no HTTPS listener")),
    security(("session" = []), ("bearer" = [])))]
pub async fn probe_now(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ProbeResult>>> {
    caller.require(Scope::Write)?;
    Ok(Json(state.certificates.probe().await?))
}

/// DNS providers for DNS-01 (no secrets).
#[utoipa::path(get, path = "/dns-providers", tag = "certificates",
    responses((status = 200, body = Vec<DnsProvider>)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list_dns(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<DnsProvider>>> {
    caller.require(Scope::Read)?;
    Ok(Json(super::dns::list(&state.db).await?))
}

/// Adds an RFC 2136 (TSIG) or PowerDNS API provider.
#[utoipa::path(post, path = "/dns-providers", tag = "certificates", request_body = DnsProviderInput,
    responses((status = 201, body = DnsProvider), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn create_dns(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<DnsProviderInput>,
) -> Result<(StatusCode, Json<DnsProvider>)> {
    caller.require(Scope::Admin)?;
    let provider = super::dns::create(&state.db, &state.keys, input).await?;
    let kind = match provider.config {
        DnsProviderConfig::Rfc2136 { .. } => "rfc2136",
        DnsProviderConfig::Powerdns { .. } => "powerdns",
    };
    caller
        .audit(
            &state.db,
            "dns_provider.create",
            &provider.name,
            Outcome::Success,
            json!({ "kind": kind }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(provider)))
}

#[utoipa::path(delete, path = "/dns-providers/{name}", tag = "certificates",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "certificates still use it")),
    security(("session" = []), ("bearer" = [])))]
pub async fn delete_dns(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    caller.require(Scope::Admin)?;
    super::dns::delete(&state.db, &name).await?;
    caller
        .audit(
            &state.db,
            "dns_provider.delete",
            &name,
            Outcome::Success,
            json!({}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
