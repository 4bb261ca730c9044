//! `/firewall`: rules, plan, apply with confirmation, exposure, presets.
//! Reading needs the read scope; changing the firewall is a security
//! setting and needs admin.

use app::api::firewall::{
    ApplyRequest, ConfirmRequest, ExposureReport, FirewallConfig, FirewallPlan, FirewallRules,
    FirewallStatus, PendingApply, Preset,
};
use app::api::{ErrorBody, Scope};
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::json;

use crate::audit::Outcome;
use crate::auth::caller::Caller;
use crate::http::client_ip::ClientIp;
use crate::http::connections::ConnectionId;
use crate::http::error::{ApiError, Result};
use crate::http::json::ApiJson;
use crate::http::query::ApiQuery;
use crate::proxy::routes::DryRun;
use crate::startup::AppState;

/// Largest body `PUT /firewall/rules` takes: room for the most rules
/// (`MAX_RULES`) a firewall may hold, each with a few sources.
pub const MAX_RULES_BODY: usize = 2 * 1024 * 1024;

/// The firewall at a glance: backend, revisions, a pending apply, drift,
/// other firewalls on the host.
#[utoipa::path(get, path = "/firewall", tag = "firewall",
    responses((status = 200, body = FirewallStatus)),
    security(("session" = []), ("bearer" = [])))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    ClientIp(ip): ClientIp,
) -> Result<Json<FirewallStatus>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.firewall.status(ip).await?))
}

/// The desired rules (what the next apply loads).
#[utoipa::path(get, path = "/firewall/rules", tag = "firewall",
    responses((status = 200, body = FirewallRules)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get_rules(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<FirewallRules>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.firewall.rules().await?))
}

/// Replaces the desired rules; nothing is applied until `POST /firewall/apply`.
/// Refused (422) when the rules would cut your own address off the panel.
#[utoipa::path(put, path = "/firewall/rules", tag = "firewall", request_body = FirewallConfig,
    params(DryRun),
    responses((status = 200, body = FirewallRules),
              (status = 422, body = ErrorBody, description = "invalid or locking you out; `field` names the rule")),
    security(("session" = []), ("bearer" = [])))]
pub async fn put_rules(
    State(state): State<AppState>,
    caller: Caller,
    ClientIp(ip): ClientIp,
    ApiQuery(q): ApiQuery<DryRun>,
    ApiJson(config): ApiJson<FirewallConfig>,
) -> Result<Json<FirewallRules>> {
    caller.require(Scope::Admin)?;
    if q.dry_run {
        let warnings = state.firewall.check(&config, ip)?;
        let current = state.firewall.rules().await?;
        return Ok(Json(FirewallRules {
            enabled: config.enabled,
            mode: config.mode,
            rules: config.rules,
            warnings,
            ..current
        }));
    }
    let detail = json!({
        "enabled": config.enabled, "mode": config.mode.as_str(), "rules": config.rules.len(),
    });
    let saved = state.firewall.put(config, ip).await?;
    caller
        .audit(
            &state.db,
            "firewall.rules.update",
            "firewall",
            Outcome::Success,
            detail,
        )
        .await?;
    Ok(Json(saved))
}

/// What applying would change: the rules in words, the ruleset diff, nft's
/// check, and whether the lockout guard would refuse.
#[utoipa::path(get, path = "/firewall/plan", tag = "firewall",
    responses((status = 200, body = FirewallPlan)),
    security(("session" = []), ("bearer" = [])))]
pub async fn plan(
    State(state): State<AppState>,
    caller: Caller,
    ClientIp(ip): ClientIp,
) -> Result<Json<FirewallPlan>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.firewall.plan(ip).await?))
}

/// Loads the desired rules in one nft transaction and opens the
/// confirmation window. Without `POST /firewall/confirm` over a new
/// connection before the deadline, berth restores the previous rules.
/// The body is optional.
#[utoipa::path(post, path = "/firewall/apply", tag = "firewall", request_body = ApplyRequest,
    responses((status = 202, body = PendingApply),
              (status = 409, body = ErrorBody, description = "`pending`: another apply awaits confirmation"),
              (status = 422, body = ErrorBody, description = "the lockout guard refused the rules"),
              (status = 502, body = ErrorBody, description = "nft refused the ruleset; nothing changed")),
    security(("session" = []), ("bearer" = [])))]
pub async fn apply(
    State(state): State<AppState>,
    caller: Caller,
    ClientIp(ip): ClientIp,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<PendingApply>)> {
    caller.require(Scope::Admin)?;
    let request: ApplyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ApplyRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::invalid(
                "confirm_seconds",
                format!("the body is {{\"confirm_seconds\": N}} or empty: {e}"),
            )
        })?
    };
    // Run to its end even if the client goes away or the request times
    // out: an apply cut in the middle must still record its window.
    let firewall = state.firewall.clone();
    let actor = caller.actor.clone();
    let result =
        tokio::spawn(async move { firewall.apply(&actor, ip, request.confirm_seconds).await })
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
    let (outcome, detail) = match &result {
        Ok(p) => (
            Outcome::Success,
            json!({ "apply_id": p.apply_id, "revision": p.revision, "confirm_seconds": p.seconds_left }),
        ),
        Err(e) => (Outcome::Failure, json!({ "error": e.to_string() })),
    };
    caller
        .audit(&state.db, "firewall.apply", "firewall", outcome, detail)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(result?)))
}

/// Keeps the applied rules. Must arrive over a connection opened after the
/// apply (409 `stale_connection` otherwise): that proves the new rules let
/// you in. 410 `expired` when the window closed and berth rolled back.
#[utoipa::path(post, path = "/firewall/confirm", tag = "firewall", request_body = ConfirmRequest,
    responses((status = 200, body = FirewallStatus),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`stale_connection`: use a new connection"),
              (status = 410, body = ErrorBody, description = "`expired`: rolled back")),
    security(("session" = []), ("bearer" = [])))]
pub async fn confirm(
    State(state): State<AppState>,
    caller: Caller,
    ClientIp(ip): ClientIp,
    connection: Option<Extension<ConnectionId>>,
    ApiJson(request): ApiJson<ConfirmRequest>,
) -> Result<Json<FirewallStatus>> {
    caller.require(Scope::Admin)?;
    state
        .firewall
        .confirm(request.apply_id, connection.map(|c| c.0 .0))
        .await?;
    caller
        .audit(
            &state.db,
            "firewall.confirm",
            "firewall",
            Outcome::Success,
            json!({ "apply_id": request.apply_id }),
        )
        .await?;
    Ok(Json(state.firewall.status(ip).await?))
}

/// Undoes the pending apply now.
#[utoipa::path(post, path = "/firewall/rollback", tag = "firewall",
    responses((status = 200, body = FirewallStatus), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    ClientIp(ip): ClientIp,
) -> Result<Json<FirewallStatus>> {
    caller.require(Scope::Admin)?;
    let firewall = state.firewall.clone();
    let actor = caller.actor.clone();
    tokio::spawn(async move { firewall.rollback_now(&actor).await })
        .await
        .map_err(|e| ApiError::Internal(e.into()))??;
    caller
        .audit(
            &state.db,
            "firewall.rollback",
            "firewall",
            Outcome::Success,
            json!({}),
        )
        .await?;
    Ok(Json(state.firewall.status(ip).await?))
}

/// Every listening host port and published container port, and whether the
/// live rules let the outside reach it.
#[utoipa::path(get, path = "/firewall/exposure", tag = "firewall",
    responses((status = 200, body = ExposureReport)),
    security(("session" = []), ("bearer" = [])))]
pub async fn exposure(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ExposureReport>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.firewall.exposure().await?))
}

/// Ready-made rules; restricted ones are filled in with your address.
#[utoipa::path(get, path = "/firewall/presets", tag = "firewall",
    responses((status = 200, body = Vec<Preset>)),
    security(("session" = []), ("bearer" = [])))]
pub async fn presets(
    State(state): State<AppState>,
    caller: Caller,
    ClientIp(ip): ClientIp,
) -> Result<Json<Vec<Preset>>> {
    caller.require(Scope::Read)?;
    Ok(Json(super::presets::presets(
        ip,
        state.firewall.settings().panel_port,
    )))
}
