use app::api::{ErrorBody, Scope, Settings};
use axum::extract::State;
use axum::Json;
use serde_json::json;

use crate::audit::{self, Event, Outcome};
use crate::auth::caller::Caller;
use crate::http::error::Result;
use crate::http::json::ApiJson;
use crate::startup::AppState;

/// Panel settings (panel domain, ACME e-mail).
#[utoipa::path(get, path = "/settings", tag = "settings",
    responses((status = 200, body = Settings), (status = 401, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get(State(state): State<AppState>, caller: Caller) -> Result<Json<Settings>> {
    caller.require(Scope::Read)?;
    Ok(Json(super::get(&state.db).await?))
}

/// Replaces the panel settings; an empty or absent value clears it.
#[utoipa::path(put, path = "/settings", tag = "settings", request_body = Settings,
    responses((status = 200, body = Settings), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<Settings>,
) -> Result<Json<Settings>> {
    caller.require(Scope::Admin)?;
    let settings = super::validate(req)?;
    super::put(&state.db, &settings).await?;
    audit::record(
        &state.db,
        Event::new(
            &caller.actor,
            Some(caller.ip),
            "settings.update",
            Outcome::Success,
        )
        .detail(json!(settings)),
    )
    .await?;
    // The wizard's ACME e-mail configures Let's Encrypt (unless ACME is set
    // up already), and a panel domain gets its certificate ordered.
    state
        .certificates
        .adopt_setup_email(settings.acme_email.clone())
        .await?;
    Ok(Json(settings))
}
