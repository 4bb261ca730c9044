//! The engine's own objects: every container (managed by berth or not),
//! images (list, remove, import, pull), volumes and networks. Acting on a
//! container here is the admin's explicit choice, so it is allowed on any
//! container, and audited.

use std::collections::HashMap;

use app::api::{
    ContainerInfo, ErrorBody, ImageInfo, ImportResult, NetworkInfo, PullProgress, PullRequest,
    Scope, VolumeInfo,
};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bollard::query_parameters::{
    ImportImageOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    ListNetworksOptions, ListVolumesOptions, RemoveImageOptionsBuilder,
};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::engine::{EngineError, LABEL_APP, LABEL_MANAGED};
use crate::audit::Outcome;
use crate::auth::caller::Caller;
use crate::http::error::{ApiError, Result};
use crate::http::json::ApiJson;
use crate::http::query::ApiQuery;
use crate::startup::AppState;

/// Largest image tarball `POST /images/import` accepts.
pub const MAX_IMPORT_BYTES: u64 = 8 * 1024 * 1024 * 1024;

async fn record(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<()> {
    caller
        .audit(&state.db, action, target, Outcome::Success, detail)
        .await
}

fn managed(labels: &HashMap<String, String>) -> bool {
    labels.get(LABEL_MANAGED).is_some_and(|v| v == "true")
}

/// Every container on the engine, running or not.
#[utoipa::path(get, path = "/containers", tag = "engine",
    responses((status = 200, body = Vec<ContainerInfo>), (status = 503, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn containers(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ContainerInfo>>> {
    caller.require(Scope::Read)?;
    let list = state
        .apps
        .engine
        .docker()?
        .list_containers(Some(ListContainersOptionsBuilder::new().all(true).build()))
        .await
        .map_err(EngineError::from)?;
    let out = list
        .into_iter()
        .map(|c| {
            let labels = c.labels.unwrap_or_default();
            let mut ports: Vec<String> = c
                .ports
                .unwrap_or_default()
                .into_iter()
                .map(|p| {
                    let proto = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
                    match p.public_port {
                        Some(public) => format!(
                            "{}:{public}->{}/{proto}",
                            p.ip.unwrap_or_default(),
                            p.private_port
                        ),
                        None => format!("{}/{proto}", p.private_port),
                    }
                })
                .collect();
            ports.sort();
            ports.dedup();
            ContainerInfo {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                image: c.image.unwrap_or_default(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                status: c.status.unwrap_or_default(),
                ports,
                managed: managed(&labels),
                app: labels.get(LABEL_APP).cloned(),
                created: c.created.unwrap_or_default(),
            }
        })
        .collect();
    Ok(Json(out))
}

/// Container ids and names as the engine accepts them; anything else (a
/// '/' could reach another Engine API path) is refused before the request.
pub(crate) fn check_container_ref(field: &str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && !id.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(field, "not a container id or name"))
    }
}

/// Image ids (`sha256:…`) and references (`repo/name:tag`).
fn check_image_id(field: &str, id: &str) -> Result<()> {
    if let Some(hex) = id.strip_prefix("sha256:") {
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(());
        }
    }
    super::model::check_image_ref(field, id)
}

async fn container_action(
    state: AppState,
    caller: Caller,
    id: String,
    action: &'static str,
) -> Result<StatusCode> {
    caller.require(Scope::Write)?;
    check_container_ref("id", &id)?;
    let engine = &state.apps.engine;
    match action {
        "start" => engine.start(&id).await?,
        "stop" => engine.stop(&id).await?,
        _ => engine.restart(&id).await?,
    }
    record(
        &state,
        &caller,
        &format!("container.{action}"),
        &id,
        json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

macro_rules! container_route {
    ($fn:ident, $path:literal, $action:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "engine",
            params(("id" = String, Path, description = "container id or name")),
            responses((status = 204), (status = 404, body = ErrorBody), (status = 502, body = ErrorBody),
                      (status = 503, body = ErrorBody)),
            security(("session" = []), ("bearer" = [])))]
        pub async fn $fn(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
            container_action(state, caller, id, $action).await
        }
    };
}

container_route!(
    container_start,
    "/containers/{id}/start",
    "start",
    "Starts any container."
);
container_route!(
    container_stop,
    "/containers/{id}/stop",
    "stop",
    "Stops any container (SIGTERM, then SIGKILL after 10 s)."
);
container_route!(
    container_restart,
    "/containers/{id}/restart",
    "restart",
    "Restarts any container."
);

/// Removes any container (forcibly, if running). A berth app whose
/// container is removed here shows as drifted until it is applied again.
#[utoipa::path(delete, path = "/containers/{id}", tag = "engine",
    params(("id" = String, Path, description = "container id or name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn container_remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    caller.require(Scope::Write)?;
    check_container_ref("id", &id)?;
    // Unlike the reconciler's removal, a missing container is a 404 here.
    state.apps.engine.inspect(&id).await?;
    state.apps.engine.remove(&id).await?;
    record(&state, &caller, "container.remove", &id, json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Images on the engine.
#[utoipa::path(get, path = "/images", tag = "engine",
    responses((status = 200, body = Vec<ImageInfo>), (status = 503, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn images(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<ImageInfo>>> {
    caller.require(Scope::Read)?;
    let list = state
        .apps
        .engine
        .docker()?
        .list_images(Some(ListImagesOptionsBuilder::new().all(false).build()))
        .await
        .map_err(EngineError::from)?;
    // Engines leave `Containers` at -1 in this list; count from the
    // container list instead (one more call, not one per image).
    let mut users: HashMap<String, i64> = HashMap::new();
    let containers = state
        .apps
        .engine
        .docker()?
        .list_containers(Some(ListContainersOptionsBuilder::new().all(true).build()))
        .await
        .map_err(EngineError::from)?;
    for c in containers {
        if let Some(id) = c.image_id {
            *users.entry(id).or_default() += 1;
        }
    }
    Ok(Json(
        list.into_iter()
            .map(|i| ImageInfo {
                containers: users.get(&i.id).copied().unwrap_or(0),
                id: i.id,
                tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                size: i.size,
                created: i.created,
            })
            .collect(),
    ))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ForceQuery {
    /// Also remove it when containers use it or it has several tags.
    #[serde(default)]
    pub force: bool,
}

/// Removes an image (by id or tag). Refused while a container uses it,
/// unless `force=true`.
#[utoipa::path(delete, path = "/images/{id}", tag = "engine",
    params(("id" = String, Path, description = "image id or reference"), ForceQuery),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn image_remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ForceQuery>,
) -> Result<StatusCode> {
    caller.require(Scope::Write)?;
    check_image_id("id", &id)?;
    state
        .apps
        .engine
        .docker()?
        .remove_image(
            &id,
            Some(RemoveImageOptionsBuilder::new().force(q.force).build()),
            None,
        )
        .await
        .map_err(EngineError::from)?;
    record(
        &state,
        &caller,
        "image.remove",
        &id,
        json!({ "force": q.force }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Loads images from a tarball made by `docker save` (the request body,
/// streamed to the engine; up to 8 GiB). The way to get images onto a host
/// that cannot reach a registry.
#[utoipa::path(post, path = "/images/import", tag = "engine",
    request_body(content = Vec<u8>, content_type = "application/x-tar", description = "a `docker save` tarball"),
    responses((status = 200, body = ImportResult), (status = 413, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "not an image tarball"), (status = 503, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn image_import(
    State(state): State<AppState>,
    caller: Caller,
    body: Body,
) -> Result<Json<ImportResult>> {
    caller.require(Scope::Write)?;
    let mut seen: u64 = 0;
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len() as u64;
        if seen > MAX_IMPORT_BYTES {
            return Err(std::io::Error::other("the tarball is larger than 8 GiB"));
        }
        Ok::<_, std::io::Error>(chunk)
    });
    let results: Vec<_> = state
        .apps
        .engine
        .docker()?
        .import_image_stream(
            ImportImageOptionsBuilder::new().quiet(true).build(),
            stream,
            None,
        )
        .map_err(EngineError::from)
        .collect()
        .await;
    let mut loaded = Vec::new();
    for r in results {
        match r {
            Ok(info) => {
                let text = info.stream.unwrap_or_default();
                for line in text.lines() {
                    let name = line
                        .strip_prefix("Loaded image: ")
                        .or_else(|| line.strip_prefix("Loaded image ID: "));
                    if let Some(name) = name {
                        loaded.push(name.trim().to_string());
                    }
                }
            }
            Err(EngineError::Refused(m))
            | Err(EngineError::NotFound(m))
            | Err(EngineError::Conflict(m)) => {
                return Err(ApiError::Invalid {
                    field: None,
                    message: format!("the engine could not load this tarball: {m}"),
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
    if loaded.is_empty() {
        return Err(ApiError::Invalid {
            field: None,
            message: "the engine loaded no image from this body; send the output of `docker save`"
                .into(),
        });
    }
    record(
        &state,
        &caller,
        "image.import",
        &loaded.join(","),
        json!({ "bytes_max": MAX_IMPORT_BYTES }),
    )
    .await?;
    Ok(Json(ImportResult { loaded }))
}

/// Starts pulling an image from its registry; poll the returned id.
#[utoipa::path(post, path = "/images/pull", tag = "engine", request_body = PullRequest,
    responses((status = 202, body = PullProgress), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn image_pull(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PullRequest>,
) -> Result<(StatusCode, Json<PullProgress>)> {
    caller.require(Scope::Write)?;
    super::model::check_image_ref("image", &req.image)?;
    let progress = state.apps.pulls.start(&state.apps.engine, &req.image)?;
    record(
        &state,
        &caller,
        "image.pull",
        &req.image,
        json!({ "pull": progress.id }),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(progress)))
}

/// Progress of a pull: per-layer lines, then `done` or `failed` with why.
#[utoipa::path(get, path = "/images/pulls/{id}", tag = "engine",
    params(("id" = String, Path, description = "pull id")),
    responses((status = 200, body = PullProgress), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn image_pull_progress(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PullProgress>> {
    caller.require(Scope::Read)?;
    state
        .apps
        .pulls
        .get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no pull with id `{id}`")))
}

/// Volumes on the engine.
#[utoipa::path(get, path = "/volumes", tag = "engine",
    responses((status = 200, body = Vec<VolumeInfo>), (status = 503, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn volumes(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<VolumeInfo>>> {
    caller.require(Scope::Read)?;
    let list = state
        .apps
        .engine
        .docker()?
        .list_volumes(None::<ListVolumesOptions>)
        .await
        .map_err(EngineError::from)?;
    let mut out: Vec<VolumeInfo> = list
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| VolumeInfo {
            managed: managed(&v.labels),
            app: v.labels.get(LABEL_APP).cloned(),
            name: v.name,
            driver: v.driver,
            created_at: v.created_at,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(out))
}

/// Networks on the engine.
#[utoipa::path(get, path = "/networks", tag = "engine",
    responses((status = 200, body = Vec<NetworkInfo>), (status = 503, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn networks(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<NetworkInfo>>> {
    caller.require(Scope::Read)?;
    let list = state
        .apps
        .engine
        .docker()?
        .list_networks(None::<ListNetworksOptions>)
        .await
        .map_err(EngineError::from)?;
    let mut out: Vec<NetworkInfo> = list
        .into_iter()
        .map(|n| NetworkInfo {
            managed: n.labels.as_ref().is_some_and(managed),
            id: n.id.unwrap_or_default(),
            name: n.name.unwrap_or_default(),
            driver: n.driver.unwrap_or_default(),
            scope: n.scope.unwrap_or_default(),
            internal: n.internal.unwrap_or(false),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(out))
}
