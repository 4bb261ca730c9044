//! `/domains` and `/proxy`: the REST API of the reverse proxy. Every change
//! is audited (never with a basic-auth password) and is live when the
//! response arrives.

use app::api::{Domain, DomainSpec, ErrorBody, ProxyStatus, RouteTest, Scope};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use crate::audit::Outcome;
use crate::auth::caller::Caller;
use crate::http::error::Result;
use crate::http::json::ApiJson;
use crate::http::query::ApiQuery;
use crate::startup::AppState;

/// What the audit log keeps of a domain: its shape, no credentials.
fn summary(spec: &DomainSpec) -> serde_json::Value {
    json!({
        "target": spec.target,
        "routes": spec.routes.iter().map(|r| &r.path).collect::<Vec<_>>(),
        "users": spec.basic_auth.iter().map(|u| &u.username).collect::<Vec<_>>(),
        "allow": spec.allow.len(),
        "deny": spec.deny.len(),
        "rate_limits": spec.rate_limits.len(),
    })
}

/// Every domain, in host order.
#[utoipa::path(get, path = "/domains", tag = "domains",
    responses((status = 200, body = Vec<Domain>)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<Domain>>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.proxy.list().await?))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DryRun {
    /// Validate and answer the normalised domain (200) without storing it.
    #[serde(default)]
    pub dry_run: bool,
}

/// Adds a domain; it is routed by the time the response arrives.
#[utoipa::path(post, path = "/domains", tag = "domains", request_body = DomainSpec, params(DryRun),
    responses((status = 201, body = Domain),
              (status = 200, body = Domain, description = "dry run: the domain as it would be stored"),
              (status = 409, body = ErrorBody, description = "the domain exists"),
              (status = 422, body = ErrorBody, description = "invalid; `field` names what"),
              (status = 502, body = ErrorBody, description = "stored, but nginx refused the configuration")),
    security(("session" = []), ("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<DryRun>,
    ApiJson(spec): ApiJson<DomainSpec>,
) -> Result<(StatusCode, Json<Domain>)> {
    caller.require(Scope::Write)?;
    if q.dry_run {
        return Ok((StatusCode::OK, Json(state.proxy.check(spec, None).await?)));
    }
    let detail = summary(&spec);
    let domain = state.proxy.create(spec).await?;
    caller
        .audit(
            &state.db,
            "domain.create",
            &domain.host,
            Outcome::Success,
            detail,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(domain)))
}

/// One domain (basic-auth passwords are never returned).
#[utoipa::path(get, path = "/domains/{host}", tag = "domains",
    params(("host" = String, Path, description = "host name (Unicode or punycode)")),
    responses((status = 200, body = Domain), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(host): Path<String>,
) -> Result<Json<Domain>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.proxy.get(&host).await?))
}

/// Replaces a domain's settings; live when the response arrives. Users in
/// `basic_auth` given without a password keep theirs.
#[utoipa::path(put, path = "/domains/{host}", tag = "domains",
    params(("host" = String, Path, description = "host name"), DryRun), request_body = DomainSpec,
    responses((status = 200, body = Domain), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody),
              (status = 502, body = ErrorBody, description = "stored, but nginx refused the configuration")),
    security(("session" = []), ("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(host): Path<String>,
    ApiQuery(q): ApiQuery<DryRun>,
    ApiJson(spec): ApiJson<DomainSpec>,
) -> Result<Json<Domain>> {
    caller.require(Scope::Write)?;
    if q.dry_run {
        return Ok(Json(state.proxy.check(spec, Some(&host)).await?));
    }
    let detail = summary(&spec);
    let domain = state.proxy.update(&host, spec).await?;
    caller
        .audit(
            &state.db,
            "domain.update",
            &domain.host,
            Outcome::Success,
            detail,
        )
        .await?;
    Ok(Json(domain))
}

/// Removes a domain; its host is answered with 404 from then on.
#[utoipa::path(delete, path = "/domains/{host}", tag = "domains",
    params(("host" = String, Path, description = "host name")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(host): Path<String>,
) -> Result<StatusCode> {
    caller.require(Scope::Write)?;
    state.proxy.delete(&host).await?;
    caller
        .audit(
            &state.db,
            "domain.delete",
            &host,
            Outcome::Success,
            json!({}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TestQuery {
    /// Path to request (default `/`).
    pub path: Option<String>,
}

/// Sends one request for the domain through the live proxy from this host
/// and reports the status, headers and time it took.
#[utoipa::path(post, path = "/domains/{host}/test", tag = "domains",
    params(("host" = String, Path, description = "host name"), TestQuery),
    responses((status = 200, body = RouteTest), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(host): Path<String>,
    ApiQuery(q): ApiQuery<TestQuery>,
) -> Result<Json<RouteTest>> {
    caller.require(Scope::Read)?;
    let path = q.path.unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || path.len() > 2048 || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(crate::http::error::ApiError::invalid(
            "path",
            "a path starting with / in printable ASCII",
        ));
    }
    Ok(Json(state.proxy.test_route(&host, &path).await?))
}

/// Per domain: the desired route, what is live, upstream health,
/// certificate state and request counts; plus the driver's own problems.
#[utoipa::path(get, path = "/proxy/status", tag = "domains",
    responses((status = 200, body = ProxyStatus)),
    security(("session" = []), ("bearer" = [])))]
pub async fn status(State(state): State<AppState>, caller: Caller) -> Result<Json<ProxyStatus>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.proxy.status()))
}
