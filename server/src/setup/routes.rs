use std::time::Instant;

use app::api::{ErrorBody, SetupComplete, SetupRequest, SetupStatus};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;
use tower_sessions::Session;

use crate::audit::{self, Event, Outcome};
use crate::auth::{password, session};
use crate::http::client_ip::ClientIp;
use crate::http::error::{ApiError, Result};
use crate::http::json::ApiJson;
use crate::startup::AppState;

/// Throttle bucket for wrong setup tokens (not a username: those are
/// validated and cannot contain parentheses).
const SETUP_BUCKET: &str = "(setup)";

/// Whether the first-run setup is still to be done.
#[utoipa::path(get, path = "/setup", tag = "setup",
    responses((status = 200, body = SetupStatus)))]
pub async fn status(State(state): State<AppState>) -> Result<Json<SetupStatus>> {
    Ok(Json(SetupStatus {
        required: !super::admin_exists(&state.db).await?,
    }))
}

/// Creates the single administrator with the one-time setup token and logs
/// them in.
#[utoipa::path(post, path = "/setup", tag = "setup", request_body = SetupRequest,
    responses((status = 201, body = SetupComplete), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn complete(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    session: Session,
    ApiJson(req): ApiJson<SetupRequest>,
) -> Result<(StatusCode, Json<SetupComplete>)> {
    const DONE: &str = "setup is already complete";
    if super::admin_exists(&state.db).await? {
        return Err(ApiError::Conflict(DONE.into()));
    }
    if !state.setup.accepts(&req.token) {
        // The token cannot be guessed; the limit keeps a bot hammering a
        // fresh berth from filling the audit log (5 entries per address per
        // 15 minutes, then 429 without an entry).
        if let Err(retry) = state.throttle.begin(SETUP_BUCKET, ip, Instant::now()) {
            return Err(ApiError::too_many_requests(retry));
        }
        audit::record(
            &state.db,
            Event::new("anonymous", Some(ip), "setup.complete", Outcome::Denied)
                .detail(json!({ "reason": "wrong or missing setup token" })),
        )
        .await?;
        return Err(ApiError::Forbidden(
            "setup_token",
            "wrong or missing setup token".into(),
        ));
    }
    let username = super::parse_username(&req.username)?;
    password::check_policy("password", &req.password, &username)?;
    let hash = state.passwords.hash(req.password).await?;

    // The primary key is pinned to 1, so of several concurrent requests
    // exactly one insert succeeds; the others land here as a conflict.
    let now = crate::store::now();
    let inserted = sqlx::query!(
        "INSERT INTO admin (id, username, password_hash, created_at, password_changed_at) \
         VALUES (1, ?, ?, ?, ?)",
        username,
        hash,
        now,
        now
    )
    .execute(&state.db)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if crate::store::is_unique_violation(&e) => {
            return Err(ApiError::Conflict(DONE.into()))
        }
        Err(e) => return Err(e.into()),
    }
    state.setup.close();
    // The key that recovers the sealed data if master.key is lost; only its
    // public half stays here.
    let recovery_key = state.secrets.new_recovery_key().await?;
    // The backup key: archives are encrypted to its public half; the
    // secret half is shown here once, to keep off this host.
    let backup_key = crate::backups::keys::generate(&state.db, &state.keys).await?;
    let csrf_token = session::start(&session, 0).await?;
    audit::record(
        &state.db,
        Event::new(&username, Some(ip), "setup.complete", Outcome::Success).target(&username),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(SetupComplete {
            username,
            csrf_token,
            recovery_key: recovery_key.to_string(),
            backup_identity: backup_key.identity,
        }),
    ))
}
