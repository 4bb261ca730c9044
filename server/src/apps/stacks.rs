//! Stacks: a docker-compose.yml turned into one app per service, created
//! together, applied in `depends_on` order, deleted together.

use app::api::{AppSpec, ErrorBody, Plan, Scope, Stack, StackPlan, StackRequest};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::compose;
use super::model;
use super::routes::DryRun;
use crate::audit::{self, Event, Outcome};
use crate::auth::caller::Caller;
use crate::http::error::{ApiError, Result};
use crate::http::json::ApiJson;
use crate::http::query::ApiQuery;
use crate::startup::AppState;

/// Compose files larger than this are refused (the API body limit is 64 KiB anyway).
const MAX_COMPOSE: usize = 60 * 1024;

/// Re-labels a spec error with the compose path it came from.
fn in_service(service: &str, e: ApiError) -> ApiError {
    match e {
        ApiError::Invalid { field, message } => ApiError::Invalid {
            field: Some(match field {
                Some(f) => format!("services.{service}.{f}"),
                None => format!("services.{service}"),
            }),
            message,
        },
        ApiError::Conflict(m) => ApiError::Invalid {
            field: Some(format!("services.{service}")),
            message: m,
        },
        other => other,
    }
}

/// Parses and checks a stack; nothing is stored.
async fn prepare(
    state: &AppState,
    req: &StackRequest,
) -> Result<Vec<(compose::ComposeApp, AppSpec)>> {
    model::check_dns_label("name", &req.name)?;
    if req.compose.len() > MAX_COMPOSE {
        return Err(ApiError::invalid(
            "compose",
            "the compose file is larger than 60 KiB",
        ));
    }
    let parsed = compose::parse(&req.name, &req.compose).map_err(|e| ApiError::Invalid {
        field: Some(
            e.problems
                .first()
                .map(|(path, _)| format!("compose: {path}"))
                .unwrap_or_else(|| "compose".into()),
        ),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    let mut host_ports = std::collections::BTreeMap::new();
    for app in parsed {
        let spec = model::validate(app.spec.clone(), &state.apps.policy())
            .map_err(|e| in_service(&app.service, e))?;
        if state.apps.load(&spec.name).await?.is_some() {
            return Err(ApiError::invalid(
                format!("services.{}", app.service),
                format!("an app named `{}` already exists", spec.name),
            ));
        }
        for p in &spec.ports {
            if let Some(h) = p.host {
                if let Some(other) = host_ports.insert((h, p.protocol), app.service.clone()) {
                    return Err(ApiError::invalid(
                        format!("services.{}.ports", app.service),
                        format!("host port {h} is also published by service `{other}`"),
                    ));
                }
            }
        }
        state
            .apps
            .preflight(&spec)
            .await
            .map_err(|e| in_service(&app.service, e))?;
        out.push((app, spec));
    }
    Ok(out)
}

async fn load_stack(state: &AppState, name: &str) -> Result<Stack> {
    let row = sqlx::query!("SELECT created_at FROM stacks WHERE name = ?", name)
        .fetch_optional(state.apps.db())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no stack named `{name}`")))?;
    let names = sqlx::query_scalar!("SELECT name FROM apps WHERE stack = ? ORDER BY rowid", name)
        .fetch_all(state.apps.db())
        .await?;
    let mut apps = Vec::new();
    for n in names {
        apps.push(state.apps.get(&n).await?);
    }
    Ok(Stack {
        name: name.to_string(),
        apps,
        created_at: crate::store::rfc3339(row.created_at),
    })
}

/// Creates one app per compose service and applies them in `depends_on`
/// order. Unsupported compose keys are all listed in the error; nothing is
/// created then. `dry_run=true` answers the specs and plans.
#[utoipa::path(post, path = "/stacks", tag = "stacks", params(DryRun), request_body = StackRequest,
    responses((status = 201, body = Stack), (status = 200, body = StackPlan, description = "dry run"),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 502, body = ErrorBody, description = "stored, but an app failed to apply"),
              (status = 503, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<DryRun>,
    ApiJson(req): ApiJson<StackRequest>,
) -> Result<Response> {
    caller.require(Scope::Write)?;
    let exists = sqlx::query_scalar!("SELECT COUNT(*) FROM stacks WHERE name = ?", req.name)
        .fetch_one(state.apps.db())
        .await?;
    if exists > 0 {
        return Err(ApiError::Conflict(format!(
            "a stack named `{}` already exists",
            req.name
        )));
    }
    let prepared = prepare(&state, &req).await?;
    if q.dry_run {
        let mut plans: Vec<Plan> = Vec::new();
        for (_, spec) in &prepared {
            plans.push(state.apps.plan_for(spec, Some(&req.name), None).await?);
        }
        return Ok(Json(StackPlan {
            name: req.name,
            apps: prepared.into_iter().map(|(_, s)| s).collect(),
            plans,
        })
        .into_response());
    }

    let mut tx = state.apps.db().begin().await?;
    let now = crate::store::now();
    sqlx::query!(
        "INSERT INTO stacks (name, compose, created_at) VALUES (?, ?, ?)",
        req.name,
        req.compose,
        now
    )
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if crate::store::is_unique_violation(&e) {
            ApiError::Conflict(format!("a stack named `{}` already exists", req.name))
        } else {
            e.into()
        }
    })?;
    for (_, spec) in &prepared {
        super::insert_in(&mut tx, spec, Some(&req.name)).await?;
    }
    tx.commit().await?;

    let names: Vec<&str> = prepared.iter().map(|(_, s)| s.name.as_str()).collect();
    let mut failure = None;
    for (app, spec) in &prepared {
        let result = state.apps.apply(&spec.name, false).await?;
        if !result.ok {
            failure = Some(format!(
                "service `{}`: {}",
                app.service,
                result.error.unwrap_or_default()
            ));
            // Later services depend on this one (or come after it): stop here.
            break;
        }
    }
    audit::record(
        state.apps.db(),
        Event::new(
            &caller.actor,
            Some(caller.ip),
            "stack.create",
            if failure.is_none() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
        )
        .target(&req.name)
        .detail(json!({ "apps": names, "error": failure })),
    )
    .await?;
    if let Some(f) = failure {
        return Err(ApiError::ApplyFailed(format!(
            "the stack is saved, but applying stopped at {f}"
        )));
    }
    Ok((
        StatusCode::CREATED,
        Json(load_stack(&state, &req.name).await?),
    )
        .into_response())
}

/// Every stack with its apps.
#[utoipa::path(get, path = "/stacks", tag = "stacks",
    responses((status = 200, body = Vec<Stack>)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<Stack>>> {
    caller.require(Scope::Read)?;
    let names = sqlx::query_scalar!("SELECT name FROM stacks ORDER BY name")
        .fetch_all(state.apps.db())
        .await?;
    let mut out = Vec::new();
    for n in names {
        out.push(load_stack(&state, &n).await?);
    }
    Ok(Json(out))
}

/// One stack with its apps, in `depends_on` order.
#[utoipa::path(get, path = "/stacks/{name}", tag = "stacks",
    params(("name" = String, Path, description = "stack name")),
    responses((status = 200, body = Stack), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Stack>> {
    caller.require(Scope::Read)?;
    Ok(Json(load_stack(&state, &name).await?))
}

/// Deletes the stack's apps (last-started first) and the stack. Named
/// volumes stay.
#[utoipa::path(delete, path = "/stacks/{name}", tag = "stacks",
    params(("name" = String, Path, description = "stack name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    caller.require(Scope::Write)?;
    let stack = load_stack(&state, &name).await?;
    let mut networks = std::collections::BTreeSet::new();
    for app in stack.apps.iter().rev() {
        networks.extend(app.spec.networks.iter().cloned());
        state.apps.delete(&app.name, false).await?;
    }
    sqlx::query!("DELETE FROM stacks WHERE name = ?", name)
        .execute(state.apps.db())
        .await?;
    // The stack's own networks go too, if berth made them and nothing else uses them.
    for network in networks {
        let _ = state.apps.engine.remove_managed_network(&network).await;
    }
    audit::record(
        state.apps.db(),
        Event::new(
            &caller.actor,
            Some(caller.ip),
            "stack.delete",
            Outcome::Success,
        )
        .target(&name)
        .detail(json!({ "apps": stack.apps.iter().map(|a| a.name.clone()).collect::<Vec<_>>() })),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
