use app::api::{AuditPage, Scope};
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::caller::Caller;
use crate::http::error::{ApiError, Result};
use crate::startup::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries per page, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// Return entries older than this id (from `next_before`).
    before: Option<i64>,
}

/// The audit log, newest first, in pages.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 401, body = app::api::ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: std::result::Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>> {
    caller.require(Scope::Read)?;
    let Query(q) = query.map_err(|e| ApiError::BadRequest {
        status: axum::http::StatusCode::BAD_REQUEST,
        code: "invalid_query",
        field: None,
        message: e.body_text(),
    })?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=super::MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            "limit must be between 1 and 200",
        ));
    }
    Ok(Json(super::list(&state.db, q.before, limit).await?))
}
