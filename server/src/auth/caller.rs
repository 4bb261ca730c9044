//! Who is calling: the extractor every authenticated route takes.
//!
//! A request is authenticated either by `Authorization: Bearer <API token>` or
//! by the session cookie. Cookie-authenticated requests that change state must
//! carry `X-CSRF-Token` equal to the session's token (the Origin check for
//! all state-changing requests lives in `http::headers`). A session is the
//! admin at a keyboard and holds every scope; a token holds its own.

use std::net::IpAddr;

use app::api::Scope;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use super::session::{SessionAuth, AUTH_KEY};
use crate::http::client_ip::ClientIp;
use crate::http::error::ApiError;
use crate::startup::AppState;

pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Clone)]
pub enum CallerKind {
    Session { session: Session, csrf: String },
    Token { id: String },
}

#[derive(Clone)]
pub struct Caller {
    /// The name written to the audit log: the admin's username or `token:<name>`.
    pub actor: String,
    pub username: String,
    pub ip: IpAddr,
    pub scope: Scope,
    pub kind: CallerKind,
}

impl Caller {
    /// Appends an audit entry for what this caller did to `target`.
    pub async fn audit(
        &self,
        db: &sqlx::SqlitePool,
        action: &str,
        target: &str,
        outcome: crate::audit::Outcome,
        detail: serde_json::Value,
    ) -> Result<(), ApiError> {
        crate::audit::record(
            db,
            crate::audit::Event::new(&self.actor, Some(self.ip), action, outcome)
                .target(target)
                .detail(detail),
        )
        .await?;
        Ok(())
    }

    pub fn require(&self, needed: Scope) -> Result<(), ApiError> {
        if self.scope >= needed {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "insufficient_scope",
                format!("this action needs the `{}` scope", needed.as_str()),
            ))
        }
    }

    /// Account settings (password, second factor) are for the person at the
    /// keyboard, never for an API token.
    pub fn require_session(&self) -> Result<&Session, ApiError> {
        match &self.kind {
            CallerKind::Session { session, .. } => Ok(session),
            CallerKind::Token { .. } => Err(ApiError::Forbidden(
                "session_required",
                "this action needs a browser session, not an API token".into(),
            )),
        }
    }

    pub fn scopes(&self) -> Vec<Scope> {
        [Scope::Read, Scope::Write, Scope::Admin]
            .into_iter()
            .filter(|s| *s <= self.scope)
            .collect()
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;

        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or(ApiError::Unauthorized(
                    "expected `Authorization: Bearer <token>`",
                ))?;
            let t = crate::tokens::authenticate(state, token.trim()).await?;
            let username = crate::auth::admin_username(&state.db).await?;
            return Ok(Caller {
                actor: format!("token:{}", t.name),
                username,
                ip,
                scope: t.scope,
                kind: CallerKind::Token { id: t.id },
            });
        }

        let session = parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("session layer missing"))?;
        let auth: SessionAuth = session
            .get(AUTH_KEY)
            .await
            .map_err(anyhow::Error::from)?
            .ok_or(ApiError::Unauthorized("not logged in"))?;

        let age = crate::store::now() - auth.login_at;
        if age < 0 || age as u64 > state.config.session_absolute.as_secs() {
            session.flush().await.map_err(anyhow::Error::from)?;
            return Err(ApiError::Unauthorized("session expired; log in again"));
        }
        let admin = sqlx::query!(
            "SELECT username, session_generation, password_must_change AS \"must_change: bool\" \
             FROM admin WHERE id = 1"
        )
        .fetch_optional(&state.db)
        .await?;
        let Some(admin) = admin.filter(|a| a.session_generation == auth.generation) else {
            // The password changed (or was reset) since this session began.
            session.flush().await.map_err(anyhow::Error::from)?;
            return Err(ApiError::Unauthorized("session ended; log in again"));
        };

        // After `berth admin reset-password` the session may only read who it
        // is, set a new password, or log out.
        // Nested routers see their path with the prefix stripped; the
        // original URI has it whole.
        let path = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or_else(|| parts.uri.path().to_owned(), |u| u.path().to_owned());
        if admin.must_change && !allowed_before_password_change(&parts.method, &path) {
            return Err(ApiError::Forbidden(
                "password_change_required",
                "set a new password first (Account page or POST /api/v1/account/password)".into(),
            ));
        }

        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if !bool::from(sent.ct_eq(auth.csrf.as_bytes())) {
                return Err(ApiError::Forbidden(
                    "csrf",
                    "missing or wrong X-CSRF-Token header".into(),
                ));
            }
        }

        Ok(Caller {
            actor: admin.username.clone(),
            username: admin.username,
            ip,
            scope: Scope::Admin,
            kind: CallerKind::Session {
                session,
                csrf: auth.csrf,
            },
        })
    }
}

fn allowed_before_password_change(method: &Method, path: &str) -> bool {
    matches!(
        (method, path),
        (&Method::GET, "/api/v1/me")
            | (&Method::POST, "/api/v1/account/password")
            | (&Method::POST, "/api/v1/auth/logout")
    )
}
