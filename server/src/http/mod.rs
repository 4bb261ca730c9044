//! Router assembly: the REST API under `/api/v1` (every route registered
//! through utoipa-axum, so that none can be missing from the OpenAPI spec),
//! `/health`, the server-rendered UI, and the layers around them.

pub mod client_ip;
pub mod connections;
pub mod error;
pub mod headers;
pub mod json;
pub mod query;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{middleware, Extension, Json, Router};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};
use tower_sessions_sqlx_store::SqliteStore;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Spec;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::startup::AppState;
use error::ApiError;

/// Largest JSON body any API route accepts.
pub const MAX_API_BODY: usize = 64 * 1024;
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(OpenApi)]
#[openapi(
    info(title = "berth", description = "Self-hosted platform panel: the REST API the UI uses too."),
    modifiers(&SecuritySchemes),
    tags(
        (name = "setup", description = "First run"),
        (name = "auth", description = "Login, logout, current caller"),
        (name = "account", description = "The admin's password and second factor"),
        (name = "tokens", description = "API tokens"),
        (name = "audit", description = "Audit log"),
        (name = "settings", description = "Panel settings"),
        (name = "apps", description = "Apps: containers as desired state, planned and applied"),
        (name = "engine", description = "The Docker engine's containers, images, volumes and networks"),
        (name = "stacks", description = "Compose files as groups of apps"),
        (name = "domains", description = "Domains routed to apps by the reverse proxy"),
        (name = "secrets", description = "Environment secrets: write-only values, sealed at rest, injected into containers"),
        (name = "firewall", description = "Host firewall: nftables rules applied with a confirmation window"),
        (name = "backups", description = "Backups: jobs, runs, retention, restores and restore drills"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Spec) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "__Host-berth_session",
                "Browser session (`berth_session` over plain HTTP); state-changing requests also need X-CSRF-Token",
            ))),
        );
    }
}

/// Every `/api/v1` route, with its OpenAPI description.
pub fn api_routes() -> OpenApiRouter<AppState> {
    use crate::apps::{engine_routes as engine, routes as apps, stacks};
    use crate::backups::routes as backups;
    use crate::certificates::routes as certs;
    use crate::firewall::routes as firewall;
    use crate::notify::routes as notify;
    use crate::proxy::routes as domains;
    use crate::secrets::routes as secrets;
    use crate::{audit, auth, settings, setup, tokens};
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest(
        "/api/v1",
        OpenApiRouter::new()
            .routes(routes!(setup::routes::status, setup::routes::complete))
            .routes(routes!(auth::login::login))
            .routes(routes!(auth::login::logout))
            .routes(routes!(auth::login::me))
            .routes(routes!(auth::account::change_password))
            .routes(routes!(auth::account::totp_enrol))
            .routes(routes!(auth::account::totp_confirm))
            .routes(routes!(auth::account::totp_disable))
            .routes(routes!(tokens::routes::create, tokens::routes::list))
            .routes(routes!(tokens::routes::revoke))
            .routes(routes!(audit::routes::list))
            .routes(routes!(settings::routes::get, settings::routes::put))
            .routes(routes!(apps::list, apps::create))
            .routes(routes!(apps::get, apps::update, apps::delete))
            .routes(routes!(apps::plan_now))
            .routes(routes!(apps::start))
            .routes(routes!(apps::stop))
            .routes(routes!(apps::restart))
            .routes(routes!(apps::redeploy))
            .routes(routes!(apps::apply_now))
            .routes(routes!(apps::logs))
            .routes(routes!(apps::stats))
            .routes(routes!(engine::containers))
            .routes(routes!(engine::container_start))
            .routes(routes!(engine::container_stop))
            .routes(routes!(engine::container_restart))
            .routes(routes!(engine::container_remove))
            .routes(routes!(engine::images))
            .routes(routes!(engine::image_remove))
            .routes(routes!(engine::image_import))
            .routes(routes!(engine::image_pull))
            .routes(routes!(engine::image_pull_progress))
            .routes(routes!(engine::volumes))
            .routes(routes!(engine::networks))
            .routes(routes!(stacks::list, stacks::create))
            .routes(routes!(stacks::get, stacks::delete))
            .routes(routes!(domains::list, domains::create))
            .routes(routes!(domains::get, domains::update, domains::delete))
            .routes(routes!(domains::test))
            .routes(routes!(domains::status))
            .routes(routes!(certs::get_acme, certs::put_acme))
            .routes(routes!(certs::list, certs::order))
            .routes(routes!(certs::upload))
            .routes(routes!(certs::probes, certs::probe_now))
            .routes(routes!(certs::get, certs::delete))
            .routes(routes!(certs::renew))
            .routes(routes!(certs::list_dns, certs::create_dns))
            .routes(routes!(certs::delete_dns))
            .routes(routes!(notify::list, notify::create))
            .routes(routes!(notify::delete))
            .routes(routes!(notify::test))
            .routes(routes!(secrets::app_list))
            .routes(routes!(secrets::app_set, secrets::app_delete))
            .routes(routes!(secrets::app_reveal))
            .routes(routes!(secrets::app_import))
            .routes(routes!(secrets::app_export))
            .routes(routes!(secrets::groups, secrets::create_group))
            .routes(routes!(secrets::delete_group))
            .routes(routes!(secrets::group_list))
            .routes(routes!(secrets::group_set, secrets::group_delete_secret))
            .routes(routes!(secrets::group_reveal))
            .routes(routes!(secrets::group_import))
            .routes(routes!(secrets::group_export))
            .routes(routes!(secrets::key_status))
            .routes(routes!(secrets::recovery_key))
            .routes(routes!(secrets::container_env))
            .routes(routes!(firewall::status))
            // A thousand-rule blocklist is larger than other bodies.
            .merge(
                OpenApiRouter::new()
                    .routes(routes!(firewall::get_rules, firewall::put_rules))
                    .layer(DefaultBodyLimit::max(firewall::MAX_RULES_BODY)),
            )
            .routes(routes!(firewall::plan))
            .routes(routes!(firewall::apply))
            .routes(routes!(firewall::confirm))
            .routes(routes!(firewall::rollback))
            .routes(routes!(firewall::exposure))
            .routes(routes!(firewall::presets))
            .routes(routes!(backups::list_jobs, backups::create_job))
            .routes(routes!(
                backups::get_job,
                backups::update_job,
                backups::delete_job
            ))
            .routes(routes!(backups::run_job))
            .routes(routes!(backups::drill_job))
            .routes(routes!(backups::prune_preview))
            .routes(routes!(backups::list_runs))
            .routes(routes!(backups::get_run))
            .routes(routes!(backups::restore))
            .routes(routes!(backups::get_restore))
            .routes(routes!(backups::list_drills))
            .routes(routes!(backups::get_drill))
            .routes(routes!(backups::schedule_preview))
            .routes(routes!(backups::get_key, backups::new_key))
            .routes(routes!(openapi_json)),
    )
}

/// The OpenAPI description of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1 document")))]
async fn openapi_json(Extension(spec): Extension<Arc<Spec>>) -> Json<Spec> {
    Json((*spec).clone())
}

pub fn openapi() -> Spec {
    split().1
}

/// The API router and its finished description.
fn split() -> (Router<AppState>, Spec) {
    let (router, mut spec) = api_routes().split_for_parts();
    document_common_errors(&mut spec);
    (router, spec)
}

/// Every operation can answer with the generic errors of the HTTP layer; the
/// handlers' annotations list only their own. Adds the rest, so the document
/// states every status a client can see.
fn document_common_errors(spec: &mut Spec) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for item in spec.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ];
        for op in ops.into_iter().flatten() {
            let takes_body = op.request_body.is_some();
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let mut add = |code: &str, description: &str| {
                op.responses
                    .responses
                    .entry(code.to_string())
                    .or_insert_with(|| error(description).into());
            };
            add("400", "malformed request");
            add("408", "the request took too long");
            if takes_body {
                add("413", "body larger than 64 KiB");
                add("415", "body is not application/json");
            }
            if takes_body || op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                add("422", "invalid content; `field` names it");
            }
            if secured {
                add("401", "not authenticated");
                add(
                    "403",
                    "not allowed: scope, CSRF token, origin or pending password change",
                );
            }
            add("500", "internal error; details only in the server log");
        }
    }
}

#[utoipa::path(get, path = "/health", tag = "meta",
    responses((status = 200, body = app::api::Health)))]
async fn health(State(state): State<AppState>) -> Result<Json<app::api::Health>, ApiError> {
    sqlx::query("SELECT 1").execute(&state.db).await?;
    Ok(Json(app::api::Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}

/// Also the whole router's fallback once merged: any path that is neither an
/// API route nor a panel page answers this JSON 404.
async fn api_not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn api_method_not_allowed() -> ApiError {
    ApiError::BadRequest {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        field: None,
        message: "this route does not take that method".into(),
    }
}

/// Uploads of image tarballs may take long on a slow link.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(3600);

/// Ends a request that takes longer than `REQUEST_TIMEOUT` with a JSON 408
/// (tower-http's layer would answer with an empty body). Streams (logs,
/// stats) are not limited: the limit ends when the response starts.
async fn time_limit(
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let limit = if req.uri().path() == "/api/v1/images/import" {
        IMPORT_TIMEOUT
    } else {
        REQUEST_TIMEOUT
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::BadRequest {
            status: StatusCode::REQUEST_TIMEOUT,
            code: "timeout",
            field: None,
            message: format!("the request took longer than {} s", limit.as_secs()),
        }
        .into_response(),
    }
}

/// Records the matched route in the request's span; only known after routing.
async fn record_route(
    path: axum::extract::MatchedPath,
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    tracing::Span::current().record("route", path.as_str());
    next.run(req).await
}

pub fn router(state: AppState, sessions: SqliteStore) -> Router {
    let (api, spec) = split();
    let tls = state.config.uses_tls();
    let session_layer = SessionManagerLayer::new(sessions)
        // `__Host-` makes the browser insist on Secure, Path=/ and no Domain.
        .with_name(if tls {
            "__Host-berth_session"
        } else {
            "berth_session"
        })
        .with_secure(tls)
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_path("/")
        // Saving on every request renews the idle timeout.
        .with_always_save(true)
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(
            state.config.session_idle.as_secs() as i64,
        )));

    let api = api
        .route_layer(middleware::from_fn(record_route))
        .fallback(api_not_found)
        .method_not_allowed_fallback(api_method_not_allowed)
        .layer(Extension(Arc::new(spec)))
        .layer(middleware::from_fn(headers::refuse_cross_origin))
        .layer(session_layer)
        .layer(DefaultBodyLimit::max(MAX_API_BODY));

    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route("/health", get(health))
        .merge(api)
        .merge(crate::ui::routes(&state.config))
        .layer(middleware::from_fn(headers::log_internal_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            headers::security_headers,
        ))
        .layer(middleware::from_fn(time_limit))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::extract::Request| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!(
                    "http",
                    method = %req.method(),
                    route = tracing::field::Empty,
                    request_id = id
                )
            }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}
