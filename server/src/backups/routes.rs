//! `/backups`: jobs, runs, restores, drills, the schedule preview and the
//! backup key. Reading needs the read scope; defining and starting work
//! needs write; deleting a job, making a key and restoring need admin, and
//! restoring and making a key also a fresh password (and TOTP code).

use app::api::backups::{
    BackupKey, Drill, DrillList, Job, JobInput, JobList, PrunePreview, Restore, RestoreRequest,
    Run, RunList, SchedulePreview, Started,
};
use app::api::{ErrorBody, Reauth, Scope};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::keys;
use super::schedule::Schedule;
use crate::audit::Outcome;
use crate::auth::caller::Caller;
use crate::http::error::{ApiError, Result};
use crate::http::json::ApiJson;
use crate::http::query::ApiQuery;
use crate::startup::AppState;

/// Every job with its next starts, last run and last verified restore.
#[utoipa::path(get, path = "/backups/jobs", tag = "backups",
    responses((status = 200, body = JobList)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list_jobs(State(state): State<AppState>, caller: Caller) -> Result<Json<JobList>> {
    caller.require(Scope::Read)?;
    let recipient = keys::current(&state.db).await?.map(|(r, _)| r.to_string());
    Ok(Json(JobList {
        jobs: state.backups.list().await?,
        recipient,
    }))
}

/// Defines a job. With `target.kind = sftp` and no `host_key`, berth
/// connects once and pins the key the server presents.
#[utoipa::path(post, path = "/backups/jobs", tag = "backups", request_body = JobInput,
    responses((status = 201, body = Job),
              (status = 409, body = ErrorBody, description = "encryption is on but there is no backup key yet"),
              (status = 422, body = ErrorBody, description = "`field` names what is wrong")),
    security(("session" = []), ("bearer" = [])))]
pub async fn create_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<JobInput>,
) -> Result<(StatusCode, Json<Job>)> {
    // A job decides where every byte of a database or volume is copied to
    // (and whether in clear): as much power over the host as the firewall.
    caller.require(Scope::Admin)?;
    let job = state.backups.create(input).await?;
    caller
        .audit(
            &state.db,
            "backup.job.create",
            &job.name,
            Outcome::Success,
            summary(&job),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(job)))
}

/// What the audit log keeps of a job: kinds and schedule, never secrets.
fn summary(job: &Job) -> serde_json::Value {
    json!({
        "id": job.id, "source": job.source.kind(), "target": job.target.kind(),
        "schedule": job.schedule, "timezone": job.timezone, "encrypt": job.encrypt,
    })
}

/// One job, by id or name.
#[utoipa::path(get, path = "/backups/jobs/{id}", tag = "backups",
    params(("id" = String, Path, description = "job id or name")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Job>> {
    caller.require(Scope::Read)?;
    let job = state.backups.job(&id).await?;
    Ok(Json(state.backups.view(&job).await?))
}

/// Replaces a job's definition. Secrets left `null` (or sent back masked)
/// keep their stored values.
#[utoipa::path(put, path = "/backups/jobs/{id}", tag = "backups", request_body = JobInput,
    params(("id" = String, Path, description = "job id or name")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn update_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<JobInput>,
) -> Result<Json<Job>> {
    caller.require(Scope::Admin)?;
    let job = state.backups.update(&id, input).await?;
    caller
        .audit(
            &state.db,
            "backup.job.update",
            &job.name,
            Outcome::Success,
            summary(&job),
        )
        .await?;
    Ok(Json(job))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Also delete the job's archives at its target.
    #[serde(default)]
    pub delete_archives: bool,
}

/// Deletes a job and its history. Its archives stay at the target unless
/// `delete_archives=true`.
#[utoipa::path(delete, path = "/backups/jobs/{id}", tag = "backups",
    params(("id" = String, Path, description = "job id or name"), DeleteQuery),
    responses((status = 204), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the job is running")),
    security(("session" = []), ("bearer" = [])))]
pub async fn delete_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<StatusCode> {
    caller.require(Scope::Admin)?;
    let job = state.backups.job(&id).await?;
    let deleted = state.backups.delete(&job.id, q.delete_archives).await?;
    caller
        .audit(
            &state.db,
            "backup.job.delete",
            &job.name,
            Outcome::Success,
            json!({ "id": job.id, "archives_deleted": deleted }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts a backup now; answers the run's id at once. Follow it with
/// `GET /backups/runs/{id}`.
#[utoipa::path(post, path = "/backups/jobs/{id}/run", tag = "backups",
    params(("id" = String, Path, description = "job id or name")),
    responses((status = 202, body = Started), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "a run of this job is going")),
    security(("session" = []), ("bearer" = [])))]
pub async fn run_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Started>)> {
    caller.require(Scope::Write)?;
    let job = state.backups.job(&id).await?;
    let run = state.backups.start_run(&job.id, "manual").await?;
    caller
        .audit(
            &state.db,
            "backup.run",
            &job.name,
            Outcome::Success,
            json!({ "run": run }),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Started { id: run })))
}

/// Starts a restore drill of the job's newest archive now.
#[utoipa::path(post, path = "/backups/jobs/{id}/drill", tag = "backups",
    params(("id" = String, Path, description = "job id or name")),
    responses((status = 202, body = Started), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "a drill of this job is going")),
    security(("session" = []), ("bearer" = [])))]
pub async fn drill_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Started>)> {
    caller.require(Scope::Write)?;
    let job = state.backups.job(&id).await?;
    let drill = state.backups.start_drill(&job.id).await?;
    caller
        .audit(
            &state.db,
            "backup.drill",
            &job.name,
            Outcome::Success,
            json!({ "drill": drill }),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Started { id: drill })))
}

/// What retention would keep (and why) and delete if it ran now.
#[utoipa::path(get, path = "/backups/jobs/{id}/prune-preview", tag = "backups",
    params(("id" = String, Path, description = "job id or name")),
    responses((status = 200, body = PrunePreview), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn prune_preview(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PrunePreview>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.backups.prune_preview(&id).await?))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// A job's id or name; all jobs when absent.
    #[serde(default)]
    pub job: Option<String>,
    /// At most this many, newest first (default 50, at most 500).
    #[serde(default)]
    pub limit: Option<i64>,
}

/// Run history, newest first, with status, sizes, duration and log.
#[utoipa::path(get, path = "/backups/runs", tag = "backups", params(RunsQuery),
    responses((status = 200, body = RunList), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> Result<Json<RunList>> {
    caller.require(Scope::Read)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    Ok(Json(RunList {
        runs: state.backups.runs(q.job.as_deref(), limit).await?,
    }))
}

/// One run; while it goes, its byte counters and log grow.
#[utoipa::path(get, path = "/backups/runs/{id}", tag = "backups",
    params(("id" = String, Path, description = "run id")),
    responses((status = 200, body = Run), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Run>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.backups.run_record(&id).await?))
}

/// Restores a run's archive to where it came from (`to: original`,
/// replacing what is there) or to a new database or volume (`to: new`,
/// `name`); berth's own archives restore to a new directory. Needs the
/// job's name typed as `confirm`, the password, and the TOTP code when the
/// second factor is on.
#[utoipa::path(post, path = "/backups/runs/{id}/restore", tag = "backups", request_body = RestoreRequest,
    params(("id" = String, Path, description = "run id")),
    responses((status = 202, body = Restore),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the run has no archive (failed or pruned)"),
              (status = 422, body = ErrorBody, description = "`field` names what is wrong: `password` or `totp_code` when they do not match")),
    security(("session" = []), ("bearer" = [])))]
pub async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<RestoreRequest>,
) -> Result<(StatusCode, Json<Restore>)> {
    caller.require(Scope::Admin)?;
    // Nothing is checked against the store before the password is: a
    // stolen session learns nothing from this route without it.
    let proof = Reauth {
        password: request.password.clone(),
        totp_code: request.totp_code.clone(),
    };
    crate::auth::account::reauthenticate(&state, &caller, proof, "backup.restore").await?;
    let result = state
        .backups
        .start_restore(&id, &request, &caller.username)
        .await;
    let (outcome, detail) = match &result {
        Ok(restore) => (
            Outcome::Success,
            json!({ "run": id, "restore": restore, "to": request.to, "name": request.name }),
        ),
        Err(e) => (
            Outcome::Failure,
            json!({ "run": id, "to": request.to, "error": e.to_string() }),
        ),
    };
    caller
        .audit(&state.db, "backup.restore", &id, outcome, detail)
        .await?;
    let restore = state.backups.restore_record(&result?).await?;
    Ok((StatusCode::ACCEPTED, Json(restore)))
}

/// A restore's progress (`bytes` of `total`) and result.
#[utoipa::path(get, path = "/backups/restores/{id}", tag = "backups",
    params(("id" = String, Path, description = "restore id")),
    responses((status = 200, body = Restore), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get_restore(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Restore>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.backups.restore_record(&id).await?))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DrillsQuery {
    /// A job's id or name.
    pub job: String,
    #[serde(default)]
    pub limit: Option<i64>,
}

/// A job's restore drills, newest first, with each check.
#[utoipa::path(get, path = "/backups/drills", tag = "backups", params(DrillsQuery),
    responses((status = 200, body = DrillList), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list_drills(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<DrillsQuery>,
) -> Result<Json<DrillList>> {
    caller.require(Scope::Read)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    Ok(Json(DrillList {
        drills: state.backups.drills(&q.job, limit).await?,
    }))
}

/// One drill.
#[utoipa::path(get, path = "/backups/drills/{id}", tag = "backups",
    params(("id" = String, Path, description = "drill id")),
    responses((status = 200, body = Drill), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get_drill(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Drill>> {
    caller.require(Scope::Read)?;
    Ok(Json(state.backups.drill_record(&id).await?))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    /// Cron expression, 5 fields.
    pub schedule: String,
    /// IANA time zone; UTC when absent.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// The next five starts of a schedule, for the form's preview.
#[utoipa::path(get, path = "/backups/schedule-preview", tag = "backups", params(PreviewQuery),
    responses((status = 200, body = SchedulePreview),
              (status = 422, body = ErrorBody, description = "`field` is `schedule` or `timezone`")),
    security(("session" = []), ("bearer" = [])))]
pub async fn schedule_preview(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PreviewQuery>,
) -> Result<Json<SchedulePreview>> {
    caller.require(Scope::Read)?;
    let schedule = Schedule::new(&q.schedule, q.timezone.as_deref().unwrap_or("UTC"))
        .map_err(|(field, e)| ApiError::invalid(field, e))?;
    let next = schedule.upcoming(state.backups.clock.now(), 5);
    Ok(Json(SchedulePreview {
        local: next.iter().map(|&t| schedule.local(t)).collect(),
        next: next.into_iter().map(crate::store::rfc3339).collect(),
    }))
}

/// The backup key's public half.
#[utoipa::path(get, path = "/backups/key", tag = "backups",
    responses((status = 200, body = BackupKey)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get_key(State(state): State<AppState>, caller: Caller) -> Result<Json<BackupKey>> {
    caller.require(Scope::Read)?;
    let current = keys::current(&state.db).await?;
    Ok(Json(BackupKey {
        recipient: current.as_ref().map(|(r, _)| r.to_string()),
        created_at: current.map(|(_, t)| crate::store::rfc3339(t)),
        identity: None,
    }))
}

/// Makes a new backup key; new archives are encrypted to it, older ones
/// still open. The answer carries the identity, this once: keep it off
/// this host; with it, `age -d` opens an archive without berth.
#[utoipa::path(post, path = "/backups/key", tag = "backups", request_body = Reauth,
    responses((status = 201, body = BackupKey),
              (status = 422, body = ErrorBody, description = "`password` or `totp_code` does not match")),
    security(("session" = []), ("bearer" = [])))]
pub async fn new_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(proof): ApiJson<Reauth>,
) -> Result<(StatusCode, Json<BackupKey>)> {
    caller.require(Scope::Admin)?;
    crate::auth::account::reauthenticate(&state, &caller, proof, "backup.key").await?;
    let key = keys::generate(&state.db, &state.keys).await?;
    caller
        .audit(
            &state.db,
            "backup.key.create",
            "backups",
            Outcome::Success,
            json!({ "recipient": key.recipient }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(BackupKey {
            recipient: Some(key.recipient),
            created_at: Some(crate::store::rfc3339(key.created_at)),
            identity: Some(key.identity),
        }),
    ))
}
