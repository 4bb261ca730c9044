//! `/apps`: the REST API of apps. Every change is audited (never with env
//! values) and answered with the app as it is after the apply.

use std::convert::Infallible;
use std::time::Duration;

use app::api::{Allowance, App, AppSpec, ErrorBody, LogLine, Plan, Scope, StatsSample};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::{model, plan, streams};
use crate::audit::Outcome;
use crate::auth::caller::Caller;
use crate::http::error::{ApiError, Result};
use crate::http::json::ApiJson;
use crate::http::query::ApiQuery;
use crate::startup::AppState;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DryRun {
    /// Return the plan without storing or applying anything.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Also remove the named volumes berth created for the app (data loss).
    #[serde(default)]
    pub remove_volumes: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Lines from the end, 0..=10000 (default 200).
    pub tail: Option<u32>,
    /// Keep the response open and stream new lines as Server-Sent Events.
    #[serde(default)]
    pub follow: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// Stream a sample about every second as Server-Sent Events.
    #[serde(default)]
    pub stream: bool,
}

async fn record(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target: &str,
    outcome: Outcome,
    detail: serde_json::Value,
) -> Result<()> {
    caller
        .audit(&state.db, action, target, outcome, detail)
        .await
}

/// Widening an app's allowances needs the admin scope and the admin's
/// password, and is audited on its own.
async fn authorize_allowances(
    state: &AppState,
    caller: &Caller,
    before: &[Allowance],
    spec: &mut AppSpec,
) -> Result<()> {
    let added: Vec<&'static str> = spec
        .allow
        .iter()
        .filter(|a| !before.contains(a))
        .map(|a| a.as_str())
        .collect();
    let password = spec.confirm_password.take();
    if added.is_empty() {
        return Ok(());
    }
    caller.require(Scope::Admin)?;
    let Some(password) = password else {
        return Err(ApiError::invalid(
            "confirm_password",
            format!("allowing {} needs your current password", added.join(", ")),
        ));
    };
    crate::auth::account::confirm_password(
        state,
        caller,
        "confirm_password",
        password,
        "app.allow",
    )
    .await?;
    record(
        state,
        caller,
        "app.allow",
        &spec.name,
        Outcome::Success,
        json!({ "allow": added }),
    )
    .await
}

/// The answer to a change: the app, or 502 when the engine refused the apply
/// (the change is stored; the app's `last_apply` says what happened).
async fn answer(
    state: &AppState,
    name: &str,
    result: app::api::ApplyResult,
    status: StatusCode,
) -> Result<Response> {
    if !result.ok {
        return Err(ApiError::ApplyFailed(format!(
            "saved, but applying failed: {}",
            result.error.unwrap_or_default()
        )));
    }
    let app = state.apps.get(name).await?;
    Ok((status, Json(app)).into_response())
}

fn summary(spec: &AppSpec, result: Option<&app::api::ApplyResult>) -> serde_json::Value {
    json!({
        "image": spec.image,
        "state": spec.state,
        "actions": result.map(|r| r.actions.iter().map(|a| a.action.as_str()).collect::<Vec<_>>()),
        "ok": result.map(|r| r.ok),
        "error": result.and_then(|r| r.error.clone()),
    })
}

/// Every app with its status (from Docker's event stream; no engine call).
#[utoipa::path(get, path = "/apps", tag = "apps",
    responses((status = 200, body = Vec<App>)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<App>>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.apps.list().await?))
}

/// Creates an app and applies it: the container is created and started.
/// With `dry_run=true`, answers the plan and changes nothing.
#[utoipa::path(post, path = "/apps", tag = "apps", params(DryRun), request_body = AppSpec,
    responses((status = 201, body = App, description = "created and applied"),
              (status = 200, body = Plan, description = "dry run: what would be done"),
              (status = 409, body = ErrorBody, description = "the name is taken"),
              (status = 422, body = ErrorBody, description = "invalid; `field` names what"),
              (status = 502, body = ErrorBody, description = "stored, but the engine refused the apply"),
              (status = 503, body = ErrorBody, description = "the Docker engine cannot be reached")),
    security(("session" = []), ("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<DryRun>,
    ApiJson(spec): ApiJson<AppSpec>,
) -> Result<Response> {
    caller.require(Scope::Write)?;
    let mut spec = model::validate(spec, &state.apps.policy())?;
    if state.apps.load(&spec.name).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "an app named `{}` already exists",
            spec.name
        )));
    }
    state.apps.preflight(&spec).await?;
    if q.dry_run {
        spec.confirm_password = None;
        return Ok(Json(state.apps.plan_for(&spec, None, None).await?).into_response());
    }
    authorize_allowances(&state, &caller, &[], &mut spec).await?;
    state.apps.insert(&spec, None).await?;
    let result = state.apps.apply(&spec.name, false).await?;
    record(
        &state,
        &caller,
        "app.create",
        &spec.name,
        outcome(&result),
        summary(&spec, Some(&result)),
    )
    .await?;
    answer(&state, &spec.name, result, StatusCode::CREATED).await
}

fn outcome(result: &app::api::ApplyResult) -> Outcome {
    if result.ok {
        Outcome::Success
    } else {
        Outcome::Failure
    }
}

/// One app: its spec, status (with reasons), container and last apply.
#[utoipa::path(get, path = "/apps/{name}", tag = "apps",
    params(("name" = String, Path, description = "app name")),
    responses((status = 200, body = App), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<App>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.apps.get(&name).await?))
}

/// Replaces an app's spec and applies it (recreating the container when a
/// creation-time setting changed; volumes are kept). `dry_run=true` answers
/// the plan only.
#[utoipa::path(put, path = "/apps/{name}", tag = "apps", params(("name" = String, Path, description = "app name"), DryRun),
    request_body = AppSpec,
    responses((status = 200, body = App, description = "applied (or, for a dry run, a `Plan`)"),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 502, body = ErrorBody, description = "stored, but the engine refused the apply"),
              (status = 503, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<DryRun>,
    ApiJson(mut spec): ApiJson<AppSpec>,
) -> Result<Response> {
    caller.require(Scope::Write)?;
    let stored = state.apps.require(&name).await?;
    if spec.name.is_empty() {
        spec.name = name.clone();
    } else if spec.name != name {
        return Err(ApiError::invalid(
            "name",
            "an app cannot be renamed; create a new app instead",
        ));
    }
    let mut spec = model::validate(spec, &state.apps.policy())?;
    state.apps.preflight(&spec).await?;
    if q.dry_run {
        spec.confirm_password = None;
        let plan = state
            .apps
            .plan_for(
                &spec,
                stored.stack.as_deref(),
                stored.applied.as_ref().or(Some(&stored.spec)),
            )
            .await?;
        return Ok(Json(plan).into_response());
    }
    authorize_allowances(&state, &caller, &stored.spec.allow, &mut spec).await?;
    let changes = plan::changes(&stored.spec, &spec);
    state.apps.save_spec(&spec, stored.stack.as_deref()).await?;
    let result = state.apps.apply(&name, false).await?;
    let mut detail = summary(&spec, Some(&result));
    detail["changes"] = json!(changes);
    record(
        &state,
        &caller,
        "app.update",
        &name,
        outcome(&result),
        detail,
    )
    .await?;
    answer(&state, &name, result, StatusCode::OK).await
}

/// Removes the app's container and the app. Named volumes stay unless
/// `remove_volumes=true`.
#[utoipa::path(delete, path = "/apps/{name}", tag = "apps",
    params(("name" = String, Path, description = "app name"), DeleteQuery),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<StatusCode> {
    caller.require(Scope::Write)?;
    let volumes = state.apps.delete(&name, q.remove_volumes).await?;
    record(
        &state,
        &caller,
        "app.delete",
        &name,
        Outcome::Success,
        json!({ "removed_volumes": volumes }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What applying would do now: converging after drift, or pending changes.
#[utoipa::path(get, path = "/apps/{name}/plan", tag = "apps",
    params(("name" = String, Path, description = "app name")),
    responses((status = 200, body = Plan), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn plan_now(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Plan>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.apps.plan_now(&name).await?))
}

async fn act(
    state: AppState,
    caller: Caller,
    name: String,
    action: &'static str,
) -> Result<Response> {
    caller.require(Scope::Write)?;
    let mut stored = state.apps.require(&name).await?;
    let result = match action {
        "start" | "stop" => {
            let wanted = if action == "start" {
                app::api::DesiredState::Running
            } else {
                app::api::DesiredState::Stopped
            };
            if stored.spec.state != wanted {
                stored.spec.state = wanted;
                state
                    .apps
                    .save_spec(&stored.spec, stored.stack.as_deref())
                    .await?;
            }
            state.apps.apply(&name, false).await?
        }
        "restart" => state.apps.restart(&name).await?,
        "redeploy" => state.apps.apply(&name, true).await?,
        _ => state.apps.apply(&name, false).await?,
    };
    let audit_action = format!("app.{action}");
    record(
        &state,
        &caller,
        &audit_action,
        &name,
        outcome(&result),
        summary(&stored.spec, Some(&result)),
    )
    .await?;
    answer(&state, &name, result, StatusCode::OK).await
}

macro_rules! action_route {
    ($fn:ident, $path:literal, $action:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "apps",
                    params(("name" = String, Path, description = "app name")),
                    responses((status = 200, body = App), (status = 404, body = ErrorBody),
                              (status = 502, body = ErrorBody, description = "the engine refused"),
                              (status = 503, body = ErrorBody)),
                    security(("session" = []), ("bearer" = [])))]
        pub async fn $fn(
            State(state): State<AppState>,
            caller: Caller,
            Path(name): Path<String>,
        ) -> Result<Response> {
            act(state, caller, name, $action).await
        }
    };
}

action_route!(
    start,
    "/apps/{name}/start",
    "start",
    "Sets the desired state to running and applies."
);
action_route!(
    stop,
    "/apps/{name}/stop",
    "stop",
    "Sets the desired state to stopped and applies."
);
action_route!(
    restart,
    "/apps/{name}/restart",
    "restart",
    "Restarts the container (pending changes are applied instead)."
);
action_route!(
    redeploy,
    "/apps/{name}/redeploy",
    "redeploy",
    "Recreates the container from the current image, keeping volumes."
);
action_route!(
    apply_now,
    "/apps/{name}/apply",
    "apply",
    "Applies the stored spec: converges after drift or a failed apply."
);

fn current_container(app: &App) -> Result<String> {
    app.container
        .as_ref()
        .map(|c| c.id.clone())
        .ok_or_else(|| ApiError::NotFound(format!("app `{}` has no container", app.name)))
}

fn sse_error(e: impl std::fmt::Display) -> Event {
    Event::default().event("error").data(e.to_string())
}

/// The container's output: the last `tail` lines as JSON, or with
/// `follow=true` a Server-Sent Events stream (`data:` is a `LogLine`).
#[utoipa::path(get, path = "/apps/{name}/logs", tag = "apps",
    params(("name" = String, Path, description = "app name"), LogsQuery),
    responses((status = 200, body = Vec<LogLine>, description = "JSON, or text/event-stream with follow=true"),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Response> {
    caller.require(Scope::Read)?;
    let tail = q.tail.unwrap_or(200);
    if tail > 10_000 {
        return Err(ApiError::invalid("tail", "must be at most 10000"));
    }
    let app = state.apps.get(&name).await?;
    let id = current_container(&app)?;
    let lines = streams::logs(&state.apps.engine, &id, tail, q.follow)?;
    if q.follow {
        let events = lines.map(|l| {
            Ok::<_, Infallible>(match l {
                Ok(line) => Event::default().json_data(line).unwrap_or_else(sse_error),
                Err(e) => sse_error(e),
            })
        });
        return Ok(Sse::new(events)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response());
    }
    let collected: Vec<LogLine> = lines
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<std::result::Result<_, _>>()?;
    Ok(Json(collected).into_response())
}

/// CPU, memory, network and block I/O of the container: one sample as JSON,
/// or with `stream=true` Server-Sent Events (`data:` is a `StatsSample`).
#[utoipa::path(get, path = "/apps/{name}/stats", tag = "apps",
    params(("name" = String, Path, description = "app name"), StatsQuery),
    responses((status = 200, body = StatsSample, description = "JSON, or text/event-stream with stream=true"),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn stats(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Response> {
    caller.require(Scope::Read)?;
    let app = state.apps.get(&name).await?;
    let id = current_container(&app)?;
    let samples = streams::stats(&state.apps.engine, &id, q.stream)?;
    if q.stream {
        let events = samples.map(|s| {
            Ok::<_, Infallible>(match s {
                Ok(sample) => Event::default().json_data(sample).unwrap_or_else(sse_error),
                Err(e) => sse_error(e),
            })
        });
        return Ok(Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let mut samples = Box::pin(samples);
    match samples.next().await {
        Some(sample) => Ok(Json(sample?).into_response()),
        None => Err(ApiError::NotFound("the engine sent no statistics".into())),
    }
}
