//! `/apps/{name}/secrets`, `/secret-groups`, `/secrets/…`: the REST API of
//! secrets. Values come in through `PUT` and `import`; they go out only
//! through `reveal` and `export`, which need the admin scope and a fresh
//! password (and TOTP code). Audit entries carry names, never values.

use app::api::{
    EnvEntry, ErrorBody, Exported, ImportPreview, ImportRequest, KeyStatus, Reauth, RecoveryKey,
    Revealed, Scope, SecretChange, SecretGroup, SecretGroupInput, SecretList, SecretScope,
    SecretValue,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;

use crate::audit::Outcome;
use crate::auth::caller::Caller;
use crate::http::error::{ApiError, Result};
use crate::http::json::ApiJson;
use crate::startup::AppState;

/// The owner exists (404 otherwise); for an app, its stored spec.
async fn owner_spec(
    state: &AppState,
    scope: SecretScope,
    owner: &str,
) -> Result<Option<app::api::AppSpec>> {
    match scope {
        SecretScope::App => Ok(Some(state.apps.require(owner).await?.spec)),
        SecretScope::Group => {
            if !state.secrets.group_exists(owner).await? {
                return Err(ApiError::NotFound(format!(
                    "no secret group named `{owner}`"
                )));
            }
            Ok(None)
        }
    }
}

/// Apps that see the owner's secrets.
async fn dependents(state: &AppState, scope: SecretScope, owner: &str) -> Result<Vec<String>> {
    Ok(match scope {
        SecretScope::App => vec![owner.to_string()],
        SecretScope::Group => crate::secrets::attached(&all_specs(state).await?, owner),
    })
}

/// After a change: which dependent apps now run with other secrets than
/// the stored ones, and a redeploy for those that opted into one.
async fn follow_up(
    state: &AppState,
    caller: &Caller,
    scope: SecretScope,
    owner: &str,
) -> Result<(Vec<String>, Vec<String>)> {
    let mut waiting = Vec::new();
    let mut redeploying = Vec::new();
    for name in dependents(state, scope, owner).await? {
        if !state.apps.secrets_outdated(&name).await? {
            continue;
        }
        let app = state.apps.require(&name).await?;
        if !app.spec.redeploy_on_secret_change {
            waiting.push(name);
            continue;
        }
        redeploying.push(name.clone());
        let (state, caller) = (state.clone(), caller.clone());
        tokio::spawn(async move {
            let (outcome, error) = match state.apps.apply(&name, false).await {
                Ok(r) if r.ok => (Outcome::Success, None),
                Ok(r) => (Outcome::Failure, r.error),
                Err(e) => (Outcome::Failure, Some(e.to_string())),
            };
            let detail = json!({ "reason": "secrets changed", "error": error });
            if let Err(e) = caller
                .audit(&state.db, "app.redeploy", &name, outcome, detail)
                .await
            {
                tracing::warn!(app = %name, error = %e, "could not audit a redeploy");
            }
        });
    }
    Ok((waiting, redeploying))
}

fn check_name(name: &str) -> Result<()> {
    app::api::check_secret_name(name).map_err(|m| ApiError::invalid("name", m))
}

async fn list(
    state: &AppState,
    caller: &Caller,
    scope: SecretScope,
    owner: &str,
) -> Result<Json<SecretList>> {
    caller.require(Scope::Read)?;
    let spec = owner_spec(state, scope, owner).await?;
    let (secrets, inherited) = state.secrets.list(scope, owner, spec.as_ref()).await?;
    let mut needs_redeploy = Vec::new();
    for name in dependents(state, scope, owner).await? {
        if state.apps.secrets_outdated(&name).await? {
            needs_redeploy.push(name);
        }
    }
    let linked = match &spec {
        Some(spec) => spec.secret_groups.clone(),
        None => dependents(state, scope, owner).await?,
    };
    Ok(Json(SecretList {
        scope,
        owner: owner.to_string(),
        secrets,
        inherited,
        linked,
        needs_redeploy,
    }))
}

async fn set(
    state: &AppState,
    caller: &Caller,
    scope: SecretScope,
    owner: &str,
    name: &str,
    input: SecretValue,
) -> Result<Json<SecretChange>> {
    caller.require(Scope::Write)?;
    check_name(name)?;
    let spec = owner_spec(state, scope, owner).await?;
    let created = state
        .secrets
        .set(scope, owner, name, &input.value, &caller.actor)
        .await?;
    drop(input);
    caller
        .audit(
            &state.db,
            if created {
                "secret.create"
            } else {
                "secret.update"
            },
            &format!("{}/{owner}/{name}", scope.collection()),
            Outcome::Success,
            json!({ "scope": scope, "owner": owner, "name": name }),
        )
        .await?;
    let (own, inherited) = state.secrets.list(scope, owner, spec.as_ref()).await?;
    let secret = own
        .into_iter()
        .chain(inherited)
        .find(|s| s.name == name && s.scope == scope);
    let (needs_redeploy, redeploying) = follow_up(state, caller, scope, owner).await?;
    Ok(Json(SecretChange {
        secret,
        needs_redeploy,
        redeploying,
    }))
}

async fn remove(
    state: &AppState,
    caller: &Caller,
    scope: SecretScope,
    owner: &str,
    name: &str,
) -> Result<Json<SecretChange>> {
    caller.require(Scope::Write)?;
    check_name(name)?;
    owner_spec(state, scope, owner).await?;
    state.secrets.delete(scope, owner, name).await?;
    caller
        .audit(
            &state.db,
            "secret.delete",
            &format!("{}/{owner}/{name}", scope.collection()),
            Outcome::Success,
            json!({ "scope": scope, "owner": owner, "name": name }),
        )
        .await?;
    let (needs_redeploy, redeploying) = follow_up(state, caller, scope, owner).await?;
    Ok(Json(SecretChange {
        secret: None,
        needs_redeploy,
        redeploying,
    }))
}

async fn reveal(
    state: &AppState,
    caller: &Caller,
    scope: SecretScope,
    owner: &str,
    name: &str,
    proof: Reauth,
) -> Result<Json<Revealed>> {
    caller.require(Scope::Admin)?;
    check_name(name)?;
    owner_spec(state, scope, owner).await?;
    crate::auth::account::reauthenticate(state, caller, proof, "secret.reveal").await?;
    let value = state.secrets.value(scope, owner, name).await?;
    caller
        .audit(
            &state.db,
            "secret.reveal",
            &format!("{}/{owner}/{name}", scope.collection()),
            Outcome::Success,
            json!({ "scope": scope, "owner": owner, "name": name }),
        )
        .await?;
    Ok(Json(Revealed {
        name: name.to_string(),
        value: value.to_string(),
    }))
}

async fn import(
    state: &AppState,
    caller: &Caller,
    scope: SecretScope,
    owner: &str,
    req: ImportRequest,
) -> Result<Json<ImportPreview>> {
    caller.require(Scope::Write)?;
    owner_spec(state, scope, owner).await?;
    let mut preview = state
        .secrets
        .import(
            scope,
            owner,
            &req.dotenv,
            req.dry_run,
            req.replace,
            caller.scope >= Scope::Admin,
            &caller.actor,
        )
        .await?;
    if req.dry_run {
        return Ok(Json(preview));
    }
    caller
        .audit(
            &state.db,
            "secret.import",
            &format!("{}/{owner}", scope.collection()),
            Outcome::Success,
            json!({
                "scope": scope, "owner": owner, "added": preview.added,
                "changed": preview.changed, "unchanged": preview.unchanged,
                "removed": preview.removed,
            }),
        )
        .await?;
    let (needs_redeploy, redeploying) = follow_up(state, caller, scope, owner).await?;
    preview.needs_redeploy = needs_redeploy;
    preview.redeploying = redeploying;
    Ok(Json(preview))
}

async fn export(
    state: &AppState,
    caller: &Caller,
    scope: SecretScope,
    owner: &str,
    proof: Reauth,
) -> Result<Json<Exported>> {
    caller.require(Scope::Admin)?;
    owner_spec(state, scope, owner).await?;
    crate::auth::account::reauthenticate(state, caller, proof, "secret.export").await?;
    let text = state.secrets.export(scope, owner).await?;
    caller
        .audit(
            &state.db,
            "secret.export",
            &format!("{}/{owner}", scope.collection()),
            Outcome::Success,
            json!({ "scope": scope, "owner": owner }),
        )
        .await?;
    Ok(Json(Exported {
        dotenv: text.to_string(),
    }))
}

// ---- app secrets -----------------------------------------------------------

/// An app's secrets (names and metadata; never values), and those its
/// groups give it.
#[utoipa::path(get, path = "/apps/{name}/secrets", tag = "secrets",
    params(("name" = String, Path, description = "app name")),
    responses((status = 200, body = SecretList), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn app_list(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<SecretList>> {
    list(&state, &caller, SecretScope::App, &name).await
}

/// Sets an app secret. The running container keeps its old environment
/// until a redeploy (automatic with `redeploy_on_secret_change`).
#[utoipa::path(put, path = "/apps/{name}/secrets/{key}", tag = "secrets", request_body = SecretValue,
    params(("name" = String, Path, description = "app name"),
           ("key" = String, Path, description = "variable name, [A-Z_][A-Z0-9_]*")),
    responses((status = 200, body = SecretChange), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn app_set(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, key)): Path<(String, String)>,
    ApiJson(input): ApiJson<SecretValue>,
) -> Result<Json<SecretChange>> {
    set(&state, &caller, SecretScope::App, &name, &key, input).await
}

/// Deletes an app secret.
#[utoipa::path(delete, path = "/apps/{name}/secrets/{key}", tag = "secrets",
    params(("name" = String, Path, description = "app name"),
           ("key" = String, Path, description = "variable name")),
    responses((status = 200, body = SecretChange), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn app_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, key)): Path<(String, String)>,
) -> Result<Json<SecretChange>> {
    remove(&state, &caller, SecretScope::App, &name, &key).await
}

/// Shows one value: admin scope, the password (and TOTP code) again; audited.
#[utoipa::path(post, path = "/apps/{name}/secrets/{key}/reveal", tag = "secrets", request_body = Reauth,
    params(("name" = String, Path, description = "app name"),
           ("key" = String, Path, description = "variable name")),
    responses((status = 200, body = Revealed), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody, description = "wrong password or code"),
              (status = 429, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn app_reveal(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, key)): Path<(String, String)>,
    ApiJson(proof): ApiJson<Reauth>,
) -> Result<Json<Revealed>> {
    reveal(&state, &caller, SecretScope::App, &name, &key, proof).await
}

/// Imports a `.env` file: every line valid (errors name the line numbers)
/// or nothing is stored. `dry_run` previews; `replace` also deletes the
/// secrets the file does not name.
#[utoipa::path(post, path = "/apps/{name}/secrets/import", tag = "secrets", request_body = ImportRequest,
    params(("name" = String, Path, description = "app name")),
    responses((status = 200, body = ImportPreview), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn app_import(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<ImportRequest>,
) -> Result<Json<ImportPreview>> {
    import(&state, &caller, SecretScope::App, &name, req).await
}

/// Every value of the app as a `.env` text: admin scope and re-authentication; audited.
#[utoipa::path(post, path = "/apps/{name}/secrets/export", tag = "secrets", request_body = Reauth,
    params(("name" = String, Path, description = "app name")),
    responses((status = 200, body = Exported), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn app_export(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(proof): ApiJson<Reauth>,
) -> Result<Json<Exported>> {
    export(&state, &caller, SecretScope::App, &name, proof).await
}

// ---- group secrets ---------------------------------------------------------

/// A group's secrets (names and metadata) and the apps attached to it.
#[utoipa::path(get, path = "/secret-groups/{group}/secrets", tag = "secrets",
    params(("group" = String, Path, description = "group name")),
    responses((status = 200, body = SecretList), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn group_list(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
) -> Result<Json<SecretList>> {
    list(&state, &caller, SecretScope::Group, &group).await
}

/// Sets a group secret; every attached app is marked (or redeployed).
#[utoipa::path(put, path = "/secret-groups/{group}/secrets/{key}", tag = "secrets", request_body = SecretValue,
    params(("group" = String, Path, description = "group name"),
           ("key" = String, Path, description = "variable name, [A-Z_][A-Z0-9_]*")),
    responses((status = 200, body = SecretChange), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn group_set(
    State(state): State<AppState>,
    caller: Caller,
    Path((group, key)): Path<(String, String)>,
    ApiJson(input): ApiJson<SecretValue>,
) -> Result<Json<SecretChange>> {
    set(&state, &caller, SecretScope::Group, &group, &key, input).await
}

/// Deletes a group secret.
#[utoipa::path(delete, path = "/secret-groups/{group}/secrets/{key}", tag = "secrets",
    params(("group" = String, Path, description = "group name"),
           ("key" = String, Path, description = "variable name")),
    responses((status = 200, body = SecretChange), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn group_delete_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((group, key)): Path<(String, String)>,
) -> Result<Json<SecretChange>> {
    remove(&state, &caller, SecretScope::Group, &group, &key).await
}

/// Shows one group value: admin scope and re-authentication; audited.
#[utoipa::path(post, path = "/secret-groups/{group}/secrets/{key}/reveal", tag = "secrets", request_body = Reauth,
    params(("group" = String, Path, description = "group name"),
           ("key" = String, Path, description = "variable name")),
    responses((status = 200, body = Revealed), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 429, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn group_reveal(
    State(state): State<AppState>,
    caller: Caller,
    Path((group, key)): Path<(String, String)>,
    ApiJson(proof): ApiJson<Reauth>,
) -> Result<Json<Revealed>> {
    reveal(&state, &caller, SecretScope::Group, &group, &key, proof).await
}

/// Imports a `.env` file into a group; all or nothing.
#[utoipa::path(post, path = "/secret-groups/{group}/secrets/import", tag = "secrets", request_body = ImportRequest,
    params(("group" = String, Path, description = "group name")),
    responses((status = 200, body = ImportPreview), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn group_import(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    ApiJson(req): ApiJson<ImportRequest>,
) -> Result<Json<ImportPreview>> {
    import(&state, &caller, SecretScope::Group, &group, req).await
}

/// A group's values as a `.env` text: admin scope and re-authentication; audited.
#[utoipa::path(post, path = "/secret-groups/{group}/secrets/export", tag = "secrets", request_body = Reauth,
    params(("group" = String, Path, description = "group name")),
    responses((status = 200, body = Exported), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn group_export(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    ApiJson(proof): ApiJson<Reauth>,
) -> Result<Json<Exported>> {
    export(&state, &caller, SecretScope::Group, &group, proof).await
}

// ---- groups ----------------------------------------------------------------

async fn all_specs(state: &AppState) -> Result<Vec<app::api::AppSpec>> {
    Ok(state
        .apps
        .load_all()
        .await?
        .into_iter()
        .map(|(_, s)| s.spec)
        .collect())
}

/// Shared secret groups, with their secret counts and attached apps.
#[utoipa::path(get, path = "/secret-groups", tag = "secrets",
    responses((status = 200, body = Vec<SecretGroup>)),
    security(("session" = []), ("bearer" = [])))]
pub async fn groups(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SecretGroup>>> {
    caller.require(Scope::Read)?;
    let specs = all_specs(&state).await?;
    Ok(Json(state.secrets.groups(&specs).await?))
}

/// Creates a group; apps attach to it by listing it in `secret_groups`.
#[utoipa::path(post, path = "/secret-groups", tag = "secrets", request_body = SecretGroupInput,
    responses((status = 201, body = SecretGroup), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn create_group(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<SecretGroupInput>,
) -> Result<(StatusCode, Json<SecretGroup>)> {
    caller.require(Scope::Write)?;
    state
        .secrets
        .create_group(&input.name, &input.description)
        .await?;
    caller
        .audit(
            &state.db,
            "secret_group.create",
            &input.name,
            Outcome::Success,
            json!({ "description": input.description }),
        )
        .await?;
    let specs = all_specs(&state).await?;
    let group = state
        .secrets
        .groups(&specs)
        .await?
        .into_iter()
        .find(|g| g.name == input.name)
        .ok_or_else(|| ApiError::NotFound("the group vanished".into()))?;
    Ok((StatusCode::CREATED, Json(group)))
}

/// Deletes a group and its secrets; refused (409) while an app lists it.
#[utoipa::path(delete, path = "/secret-groups/{group}", tag = "secrets",
    params(("group" = String, Path, description = "group name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn delete_group(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
) -> Result<StatusCode> {
    caller.require(Scope::Write)?;
    state.secrets.delete_group(&group).await?;
    caller
        .audit(
            &state.db,
            "secret_group.delete",
            &group,
            Outcome::Success,
            json!({}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- keys ------------------------------------------------------------------

/// Where the master key comes from, the active data key, and whether a
/// recovery key exists. No key material.
#[utoipa::path(get, path = "/secrets/keys", tag = "secrets",
    responses((status = 200, body = KeyStatus)),
    security(("session" = []), ("bearer" = [])))]
pub async fn key_status(State(state): State<AppState>, caller: Caller) -> Result<Json<KeyStatus>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.secrets.key_status().await?))
}

/// Makes a new recovery key (the old one stops working) and shows it once:
/// admin scope and re-authentication; audited.
#[utoipa::path(post, path = "/secrets/recovery-key", tag = "secrets", request_body = Reauth,
    responses((status = 200, body = RecoveryKey), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn recovery_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(proof): ApiJson<Reauth>,
) -> Result<Json<RecoveryKey>> {
    caller.require(Scope::Admin)?;
    crate::auth::account::reauthenticate(&state, &caller, proof, "secrets.recovery_key").await?;
    let key = state.secrets.new_recovery_key().await?;
    caller
        .audit(
            &state.db,
            "secrets.recovery_key",
            "key_ring",
            Outcome::Success,
            json!({}),
        )
        .await?;
    Ok(Json(RecoveryKey {
        recovery_key: key.to_string(),
    }))
}

// ---- what containers have --------------------------------------------------

/// The environment of a container berth manages, with the values of its
/// secrets masked (`docker inspect` on the host still shows them). Other
/// containers: 404.
#[utoipa::path(get, path = "/containers/{id}/env", tag = "engine",
    params(("id" = String, Path, description = "container id or name")),
    responses((status = 200, body = Vec<EnvEntry>), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn container_env(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<EnvEntry>>> {
    caller.require(Scope::Read)?;
    crate::apps::engine_routes::check_container_ref("id", &id)?;
    match state.apps.engine.masked_env(&id).await? {
        Some(env) => Ok(Json(env)),
        // Another container's environment may hold anything (berth's own,
        // when it runs in Docker, holds its master key): not shown.
        None => Err(ApiError::NotFound(format!(
            "berth shows the environment of its own containers only; `{id}` is not one"
        ))),
    }
}
