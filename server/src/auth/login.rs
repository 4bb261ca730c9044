//! Login, logout and "who am I".

use std::time::Instant;

use app::api::{ErrorBody, LoginRequest, Me, SessionInfo};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;
use tower_sessions::Session;

use super::caller::{Caller, CallerKind};
use super::{session, totp};
use crate::audit::{self, Event, Outcome};
use crate::http::client_ip::ClientIp;
use crate::http::error::{ApiError, Result};
use crate::http::json::ApiJson;
use crate::startup::AppState;

/// One message for an unknown user and a wrong password, so the answer does
/// not tell which usernames exist.
const BAD_CREDENTIALS: ApiError = ApiError::Unauthorized("invalid username or password");

/// Logs in with username, password and (once enrolled) a TOTP or recovery code.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = SessionInfo, description = "session cookie set"),
              (status = 401, body = ErrorBody, description = "bad credentials, or `totp_required`"),
              (status = 429, body = ErrorBody, description = "throttled; see Retry-After")))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    session: Session,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<SessionInfo>> {
    let claimed = req.username.trim().to_lowercase();
    // Only well-formed names go into the audit log verbatim.
    let logged_name = match crate::setup::parse_username(&claimed) {
        Ok(n) => n,
        Err(_) => "(invalid username)".to_string(),
    };
    let fail = |reason: &'static str, outcome: Outcome| {
        let state = state.clone();
        let logged_name = logged_name.clone();
        async move {
            audit::record(
                &state.db,
                Event::new(&logged_name, Some(ip), "auth.login", outcome)
                    .target(&logged_name)
                    .detail(json!({ "reason": reason })),
            )
            .await
        }
    };

    let admin = sqlx::query!(
        "SELECT username, password_hash, session_generation, totp_secret, totp_last_step \
         FROM admin WHERE id = 1"
    )
    .fetch_optional(&state.db)
    .await?
    .filter(|a| a.username == claimed);
    // Every name that is not the admin's shares one account bucket, so made-up
    // usernames cannot flood the throttle's tables.
    let account = match &admin {
        Some(a) => a.username.clone(),
        None => "(unknown user)".to_string(),
    };
    // Counted as a failure from here on unless it succeeds (see throttle.rs).
    let delay = match state.throttle.begin(&account, ip, Instant::now()) {
        Ok(delay) => delay,
        Err(retry) => {
            fail("throttled", Outcome::Denied).await?;
            return Err(ApiError::too_many_requests(retry));
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    let ok = state
        .passwords
        .verify(
            req.password,
            admin.as_ref().map(|a| a.password_hash.clone()),
        )
        .await?;
    let Some(admin) = admin.filter(|_| ok) else {
        fail("bad credentials", Outcome::Failure).await?;
        return Err(BAD_CREDENTIALS);
    };

    if let Some(sealed) = &admin.totp_secret {
        let Some(code) = req.totp_code.as_deref().filter(|c| !c.trim().is_empty()) else {
            // Still counted as an attempt: otherwise password-only requests
            // would reset the counter between guesses at the code.
            fail("second factor required", Outcome::Failure).await?;
            return Err(ApiError::TotpRequired);
        };
        let secret = state.keys.open(totp::SEAL_PURPOSE, sealed)?;
        if !second_factor_accepted(&state, &secret, code, admin.totp_last_step).await? {
            fail("bad second factor", Outcome::Failure).await?;
            return Err(ApiError::Unauthorized("invalid authentication code"));
        }
    }

    state.throttle.succeeded(&account, ip);
    let csrf_token = session::start(&session, admin.session_generation).await?;
    audit::record(
        &state.db,
        Event::new(&admin.username, Some(ip), "auth.login", Outcome::Success)
            .target(&admin.username),
    )
    .await?;
    Ok(Json(SessionInfo {
        username: admin.username,
        csrf_token,
    }))
}

/// Accepts a current TOTP code (remembering its step against replay) or an
/// unused recovery code (which is then used up).
pub(crate) async fn second_factor_accepted(
    state: &AppState,
    secret: &[u8],
    code: &str,
    last_step: Option<i64>,
) -> anyhow::Result<bool> {
    let unix_now = crate::store::now() as u64;
    if let Some(step) = totp::verify(secret, code, unix_now, last_step) {
        // Conditional update: two logins racing with the same code cannot both win.
        let won = sqlx::query!(
            "UPDATE admin SET totp_last_step = ? \
             WHERE id = 1 AND (totp_last_step IS NULL OR totp_last_step < ?)",
            step,
            step
        )
        .execute(&state.db)
        .await?
        .rows_affected()
            == 1;
        return Ok(won);
    }
    let hash = totp::recovery_hash(code);
    let now = crate::store::now();
    let used = sqlx::query!(
        "UPDATE recovery_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL",
        now,
        hash
    )
    .execute(&state.db)
    .await?
    .rows_affected();
    Ok(used == 1)
}

/// Ends the browser session on the server.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)),
    security(("session" = [])))]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<StatusCode> {
    let session = caller.require_session()?;
    session.flush().await.map_err(anyhow::Error::from)?;
    audit::record(
        &state.db,
        Event::new(
            &caller.actor,
            Some(caller.ip),
            "auth.logout",
            Outcome::Success,
        ),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller: the admin (via session or token), its scopes and, for a
/// session, the CSRF token to send with state-changing requests.
#[utoipa::path(get, path = "/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Me>> {
    let admin = sqlx::query!(
        "SELECT totp_secret IS NOT NULL AS \"totp_enabled!: bool\", \
         password_must_change AS \"must_change: bool\" FROM admin WHERE id = 1"
    )
    .fetch_one(&state.db)
    .await?;
    let (auth, csrf_token) = match &caller.kind {
        CallerKind::Session { csrf, .. } => ("session", Some(csrf.clone())),
        CallerKind::Token { .. } => ("token", None),
    };
    Ok(Json(Me {
        username: caller.username.clone(),
        auth: auth.into(),
        scopes: caller.scopes(),
        csrf_token,
        totp_enabled: admin.totp_enabled,
        must_change_password: admin.must_change,
    }))
}
