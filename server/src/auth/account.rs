//! The admin's own account: password change and the TOTP second factor.
//! Each action needs a browser session and re-checks the current password
//! (or a code), so a session left open on a shared screen is not enough.

use app::api::{
    ChangePassword, ErrorBody, PasswordConfirmation, RecoveryCodes, SessionInfo, TotpCode,
    TotpDisable, TotpEnrolment,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::caller::Caller;
use super::{password, session, totp};
use crate::audit::{self, Event, Outcome};
use crate::http::error::{ApiError, Result};
use crate::http::json::ApiJson;
use crate::startup::AppState;

/// Checks the admin's current password, auditing a failure.
async fn check_password(
    state: &AppState,
    caller: &Caller,
    field: &str,
    candidate: String,
    action: &str,
) -> Result<()> {
    // Same limits as login: a stolen session must not become a fast oracle
    // for the admin's password.
    let delay = state
        .throttle
        .begin(&caller.username, caller.ip, std::time::Instant::now())
        .map_err(ApiError::too_many_requests)?;
    tokio::time::sleep(delay).await;
    let hash = sqlx::query_scalar!("SELECT password_hash FROM admin WHERE id = 1")
        .fetch_one(&state.db)
        .await?;
    if state.passwords.verify(candidate, Some(hash)).await? {
        return Ok(());
    }
    audit::record(
        &state.db,
        Event::new(&caller.actor, Some(caller.ip), action, Outcome::Failure)
            .detail(serde_json::json!({ "reason": "wrong current password" })),
    )
    .await?;
    Err(ApiError::invalid(
        field,
        "the current password is not correct",
    ))
}

/// Checks the admin's current password (throttled like login, a failure
/// audited); a success clears the caller's failed attempts.
pub(crate) async fn confirm_password(
    state: &AppState,
    caller: &Caller,
    field: &str,
    candidate: String,
    action: &str,
) -> Result<()> {
    check_password(state, caller, field, candidate, action).await?;
    state.throttle.succeeded(&caller.username, caller.ip);
    Ok(())
}

/// A fresh proof that the admin is at the keyboard, for the few actions
/// that hand out a secret: the password, and the TOTP code when the second
/// factor is on. Failures are throttled like logins and audited as `action`.
pub(crate) async fn reauthenticate(
    state: &AppState,
    caller: &Caller,
    proof: app::api::Reauth,
    action: &str,
) -> Result<()> {
    // The attempt stays counted until both factors pass, so the code
    // cannot be guessed at leisure once the password is known.
    check_password(state, caller, "password", proof.password, action).await?;
    let row = sqlx::query!("SELECT totp_secret, totp_last_step FROM admin WHERE id = 1")
        .fetch_one(&state.db)
        .await?;
    let Some(sealed) = row.totp_secret else {
        state.throttle.succeeded(&caller.username, caller.ip);
        return Ok(());
    };
    let Some(code) = proof.totp_code.as_deref().filter(|c| !c.trim().is_empty()) else {
        return Err(ApiError::invalid(
            "totp_code",
            "the second factor is on: give the current code as well",
        ));
    };
    let secret = state.keys.open(totp::SEAL_PURPOSE, &sealed)?;
    if super::login::second_factor_accepted(state, &secret, code, row.totp_last_step).await? {
        state.throttle.succeeded(&caller.username, caller.ip);
        return Ok(());
    }
    audit::record(
        &state.db,
        Event::new(&caller.actor, Some(caller.ip), action, Outcome::Failure)
            .detail(serde_json::json!({ "reason": "wrong second factor" })),
    )
    .await?;
    Err(ApiError::invalid("totp_code", "the code is not correct"))
}

/// Changes the password. Every other session ends; this one continues with a
/// new id and CSRF token (returned).
#[utoipa::path(post, path = "/account/password", tag = "account", request_body = ChangePassword,
    responses((status = 200, body = SessionInfo), (status = 422, body = ErrorBody)),
    security(("session" = [])))]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ChangePassword>,
) -> Result<Json<SessionInfo>> {
    let session = caller.require_session()?.clone();
    password::check_policy("new_password", &req.new_password, &caller.username)?;
    confirm_password(
        &state,
        &caller,
        "current_password",
        req.current_password,
        "account.password",
    )
    .await?;
    let hash = state.passwords.hash(req.new_password).await?;
    let now = crate::store::now();
    let generation = sqlx::query_scalar!(
        "UPDATE admin SET password_hash = ?, password_changed_at = ?, password_must_change = 0, \
         session_generation = session_generation + 1 WHERE id = 1 \
         RETURNING session_generation",
        hash,
        now
    )
    .fetch_one(&state.db)
    .await?;
    let csrf_token = session::rekey(&session, generation).await?;
    audit::record(
        &state.db,
        Event::new(
            &caller.actor,
            Some(caller.ip),
            "account.password",
            Outcome::Success,
        ),
    )
    .await?;
    Ok(Json(SessionInfo {
        username: caller.username,
        csrf_token,
    }))
}

/// Starts TOTP enrolment: a new secret, shown as a QR code, not active until
/// confirmed with a code.
#[utoipa::path(post, path = "/account/totp/enrol", tag = "account", request_body = PasswordConfirmation,
    responses((status = 200, body = TotpEnrolment), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("session" = [])))]
pub async fn totp_enrol(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PasswordConfirmation>,
) -> Result<Json<TotpEnrolment>> {
    caller.require_session()?;
    confirm_password(
        &state,
        &caller,
        "password",
        req.password,
        "account.totp.enrol",
    )
    .await?;
    let enabled = sqlx::query_scalar!(
        "SELECT totp_secret IS NOT NULL AS \"enabled!: bool\" FROM admin WHERE id = 1"
    )
    .fetch_one(&state.db)
    .await?;
    if enabled {
        return Err(ApiError::Conflict(
            "a second factor is already enabled; disable it first".into(),
        ));
    }
    let secret = totp::new_secret();
    let sealed = state.keys.seal(totp::SEAL_PURPOSE, &secret);
    sqlx::query!("UPDATE admin SET totp_pending = ? WHERE id = 1", sealed)
        .execute(&state.db)
        .await?;
    audit::record(
        &state.db,
        Event::new(
            &caller.actor,
            Some(caller.ip),
            "account.totp.enrol",
            Outcome::Success,
        ),
    )
    .await?;
    let otpauth_uri = totp::otpauth_uri(&secret, &caller.username)?;
    Ok(Json(TotpEnrolment {
        secret: totp::base32(&secret)?,
        qr_svg: totp::qr_svg(&otpauth_uri)?,
        otpauth_uri,
    }))
}

/// Confirms enrolment with a code from the app; from now on login asks for a
/// code. Returns ten one-time recovery codes, shown only here.
#[utoipa::path(post, path = "/account/totp/confirm", tag = "account", request_body = TotpCode,
    responses((status = 200, body = RecoveryCodes), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("session" = [])))]
pub async fn totp_confirm(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<TotpCode>,
) -> Result<Json<RecoveryCodes>> {
    caller.require_session()?;
    let pending = sqlx::query_scalar!("SELECT totp_pending FROM admin WHERE id = 1")
        .fetch_one(&state.db)
        .await?
        .ok_or_else(|| ApiError::Conflict("no enrolment in progress; start one first".into()))?;
    let secret = state.keys.open(totp::SEAL_PURPOSE, &pending)?;
    let Some(step) = totp::verify(&secret, &req.code, crate::store::now() as u64, None) else {
        return Err(ApiError::invalid(
            "code",
            "the code does not match; check the device clock",
        ));
    };
    let codes = totp::new_recovery_codes();
    let mut tx = state.db.begin().await?;
    sqlx::query!(
        "UPDATE admin SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = ? \
         WHERE id = 1",
        step
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("DELETE FROM recovery_codes")
        .execute(&mut *tx)
        .await?;
    for code in &codes {
        let hash = totp::recovery_hash(code);
        sqlx::query!("INSERT INTO recovery_codes (code_hash) VALUES (?)", hash)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    audit::record(
        &state.db,
        Event::new(
            &caller.actor,
            Some(caller.ip),
            "account.totp.enable",
            Outcome::Success,
        ),
    )
    .await?;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

/// Turns the second factor off (needs the password and a current code or a
/// recovery code).
#[utoipa::path(post, path = "/account/totp/disable", tag = "account", request_body = TotpDisable,
    responses((status = 204), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = [])))]
pub async fn totp_disable(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<TotpDisable>,
) -> Result<StatusCode> {
    caller.require_session()?;
    confirm_password(
        &state,
        &caller,
        "password",
        req.password,
        "account.totp.disable",
    )
    .await?;
    let row = sqlx::query!("SELECT totp_secret, totp_last_step FROM admin WHERE id = 1")
        .fetch_one(&state.db)
        .await?;
    let Some(sealed) = row.totp_secret else {
        return Err(ApiError::Conflict("no second factor is enabled".into()));
    };
    let secret = state.keys.open(totp::SEAL_PURPOSE, &sealed)?;
    let recovery = totp::recovery_hash(&req.code);
    let code_ok = totp::verify(
        &secret,
        &req.code,
        crate::store::now() as u64,
        row.totp_last_step,
    )
    .is_some()
        || sqlx::query_scalar!(
            "SELECT count(*) FROM recovery_codes WHERE code_hash = ? AND used_at IS NULL",
            recovery
        )
        .fetch_one(&state.db)
        .await?
            > 0;
    if !code_ok {
        return Err(ApiError::invalid("code", "the code does not match"));
    }
    disable(&state.db).await?;
    audit::record(
        &state.db,
        Event::new(
            &caller.actor,
            Some(caller.ip),
            "account.totp.disable",
            Outcome::Success,
        ),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes the second factor and its recovery codes (also used by the CLI).
pub async fn disable(db: &sqlx::SqlitePool) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query!(
        "UPDATE admin SET totp_secret = NULL, totp_pending = NULL, totp_last_step = NULL WHERE id = 1"
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("DELETE FROM recovery_codes")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
