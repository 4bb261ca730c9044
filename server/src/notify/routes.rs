//! `/notifications/channels`: where berth sends what needs attention.

use app::api::{Channel, ChannelConfig, ChannelInput, ChannelTest, ErrorBody, Scope};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;

use crate::audit::Outcome;
use crate::auth::caller::Caller;
use crate::http::error::Result;
use crate::http::json::ApiJson;
use crate::startup::AppState;

/// Every channel (secrets are never returned).
#[utoipa::path(get, path = "/notifications/channels", tag = "notifications",
    responses((status = 200, body = Vec<Channel>)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<Channel>>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.notifier.list().await?))
}

/// Adds a webhook or e-mail channel.
#[utoipa::path(post, path = "/notifications/channels", tag = "notifications",
    request_body = ChannelInput,
    responses((status = 201, body = Channel), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<ChannelInput>,
) -> Result<(StatusCode, Json<Channel>)> {
    // Reaching into the private network is an admin's decision.
    caller.require(if input.allow_internal {
        Scope::Admin
    } else {
        Scope::Write
    })?;
    let kind = match &input.config {
        ChannelConfig::Webhook { .. } => "webhook",
        ChannelConfig::Email { .. } => "email",
    };
    let channel = state.notifier.create(input).await?;
    caller
        .audit(
            &state.db,
            "notification_channel.create",
            &channel.name,
            Outcome::Success,
            json!({ "kind": kind, "has_secret": channel.has_secret }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(channel)))
}

#[utoipa::path(delete, path = "/notifications/channels/{id}", tag = "notifications",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    caller.require(Scope::Write)?;
    let channel = state.notifier.get(&id).await?;
    state.notifier.delete(&id).await?;
    caller
        .audit(
            &state.db,
            "notification_channel.delete",
            &channel.name,
            Outcome::Success,
            json!({}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a test notification through the channel now; says whether it was
/// delivered and, if not, why.
#[utoipa::path(post, path = "/notifications/channels/{id}/test", tag = "notifications",
    params(("id" = String, Path)),
    responses((status = 200, body = ChannelTest), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ChannelTest>> {
    caller.require(Scope::Write)?;
    Ok(Json(state.notifier.test(&id).await?))
}
