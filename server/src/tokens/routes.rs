use app::api::{CreateToken, CreatedToken, ErrorBody, Scope, TokenInfo};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;

use crate::audit::{self, Event, Outcome};
use crate::auth::caller::Caller;
use crate::http::error::{ApiError, Result};
use crate::http::json::ApiJson;
use crate::startup::AppState;

/// Creates an API token. Its value is in this response only.
#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 422, body = ErrorBody),
              (status = 403, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>)> {
    caller.require(Scope::Admin)?;
    let req = super::validate(req)?;
    let created = super::create(&state, req).await?;
    audit::record(
        &state.db,
        Event::new(
            &caller.actor,
            Some(caller.ip),
            "token.create",
            Outcome::Success,
        )
        .target(&created.id)
        .detail(json!({ "name": created.name, "scopes": created.scopes })),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Lists API tokens (never their values).
#[utoipa::path(get, path = "/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenInfo>), (status = 403, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<TokenInfo>>> {
    caller.require(Scope::Admin)?;
    Ok(Json(super::list(&state.db).await?))
}

/// Revokes an API token at once.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "token id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    caller.require(Scope::Admin)?;
    let Some(name) = super::revoke(&state.db, &id).await? else {
        return Err(ApiError::NotFound(format!(
            "no active token with id `{id}`"
        )));
    };
    audit::record(
        &state.db,
        Event::new(
            &caller.actor,
            Some(caller.ip),
            "token.revoke",
            Outcome::Success,
        )
        .target(&id)
        .detail(json!({ "name": name })),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
