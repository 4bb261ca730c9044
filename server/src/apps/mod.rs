//! Apps: containers as desired state. The store holds what the admin wants
//! (`apps` table), the engine holds what exists, and this service keeps a
//! picture of the engine up to date from Docker's event stream, so that lists
//! never wait on the engine, and applies plans one app at a time.

pub mod apply;
pub mod compose;
pub mod engine;
pub mod engine_routes;
pub mod model;
pub mod plan;
pub mod routes;
pub mod stacks;
pub mod streams;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use app::api::{
    ActionKind, App, AppSpec, AppStatus, ApplyResult, ContainerState, Plan, PlannedAction,
};
use futures::StreamExt;
use sqlx::SqlitePool;

use crate::http::error::ApiError;
use engine::{Engine, EngineError, Observed};

/// What the service knows of the engine, kept current by `watch`.
#[derive(Default)]
struct Picture {
    /// Containers per app name, as last observed, with the `writes` count
    /// at the time: a resync must not overwrite what an apply or an event
    /// observed after the resync began.
    containers: HashMap<String, (u64, Vec<Observed>)>,
    writes: u64,
    /// Set while the engine cannot be reached.
    engine_error: Option<String>,
}

impl Picture {
    fn put(&mut self, name: &str, found: Vec<Observed>) {
        self.writes += 1;
        if found.is_empty() {
            self.containers.remove(name);
        } else {
            self.containers
                .insert(name.to_string(), (self.writes, found));
        }
    }
}

pub struct Apps {
    db: SqlitePool,
    pub engine: Engine,
    bind_roots: Vec<PathBuf>,
    picture: RwLock<Picture>,
    /// One apply at a time per app.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub pulls: Arc<streams::Pulls>,
    /// Bumped whenever the picture changes, so the proxy can re-resolve
    /// the containers its routes point at.
    changes: tokio::sync::watch::Sender<u64>,
    /// Where containers' secrets come from.
    secrets: Arc<crate::secrets::Secrets>,
}

/// A row of the `apps` table, decoded.
pub struct Stored {
    pub spec: AppSpec,
    pub hash: String,
    pub applied: Option<AppSpec>,
    pub applying: bool,
    pub last_apply: Option<ApplyResult>,
    pub stack: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(m) => ApiError::NotFound(m),
            EngineError::Conflict(m) => ApiError::Conflict(m),
            EngineError::Refused(m) => ApiError::ApplyFailed(m),
            EngineError::Unreachable(m) => {
                ApiError::Unavailable(format!("the Docker engine cannot be reached: {m}"))
            }
        }
    }
}

impl Apps {
    pub fn new(
        db: SqlitePool,
        engine: Engine,
        bind_roots: Vec<PathBuf>,
        secrets: Arc<crate::secrets::Secrets>,
    ) -> Apps {
        Apps {
            secrets,
            db,
            engine,
            bind_roots,
            picture: RwLock::new(Picture::default()),
            locks: Mutex::new(HashMap::new()),
            pulls: Arc::new(streams::Pulls::default()),
            changes: tokio::sync::watch::channel(0).0,
        }
    }

    pub fn policy(&self) -> model::Policy<'_> {
        model::Policy {
            bind_roots: &self.bind_roots,
        }
    }

    fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(name.to_string()).or_default().clone()
    }

    // ---- store ----------------------------------------------------------

    pub async fn load(&self, name: &str) -> Result<Option<Stored>, ApiError> {
        let row = sqlx::query!(
            "SELECT spec, spec_hash, applied_spec, applying, last_apply, stack, created_at, updated_at \
             FROM apps WHERE name = ?",
            name
        )
        .fetch_optional(&self.db)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(Stored {
            spec: decode(&r.spec)?,
            hash: r.spec_hash,
            applied: r.applied_spec.as_deref().map(decode).transpose()?,
            applying: r.applying != 0,
            last_apply: r.last_apply.as_deref().map(decode).transpose()?,
            stack: r.stack,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }))
    }

    pub async fn require(&self, name: &str) -> Result<Stored, ApiError> {
        self.load(name)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no app named `{name}`")))
    }

    pub async fn load_all(&self) -> Result<Vec<(String, Stored)>, ApiError> {
        let rows = sqlx::query!(
            "SELECT name, spec, spec_hash, applied_spec, applying, last_apply, stack, created_at, updated_at \
             FROM apps ORDER BY name"
        )
        .fetch_all(&self.db)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    r.name,
                    Stored {
                        spec: decode(&r.spec)?,
                        hash: r.spec_hash,
                        applied: r.applied_spec.as_deref().map(decode).transpose()?,
                        applying: r.applying != 0,
                        last_apply: r.last_apply.as_deref().map(decode).transpose()?,
                        stack: r.stack,
                        created_at: r.created_at,
                        updated_at: r.updated_at,
                    },
                ))
            })
            .collect()
    }

    /// Inserts a new app; `Conflict` when the name is taken.
    pub async fn insert(&self, spec: &AppSpec, stack: Option<&str>) -> Result<(), ApiError> {
        let mut conn = self.db.acquire().await?;
        insert_in(&mut conn, spec, stack).await
    }

    pub fn db(&self) -> &SqlitePool {
        &self.db
    }

    pub async fn save_spec(&self, spec: &AppSpec, stack: Option<&str>) -> Result<(), ApiError> {
        let json = encode(spec)?;
        let hash = engine::config_hash(spec, stack);
        let now = crate::store::now();
        sqlx::query!(
            "UPDATE apps SET spec = ?, spec_hash = ?, updated_at = ? WHERE name = ?",
            json,
            hash,
            now,
            spec.name
        )
        .execute(&self.db)
        .await?;
        Ok(())
    }

    // ---- the engine's picture ------------------------------------------

    /// Re-reads one app's containers from the engine.
    pub async fn refresh(&self, name: &str) -> Result<Vec<Observed>, EngineError> {
        let found = self.engine.observe(name).await?;
        let mut picture = self.picture.write().unwrap_or_else(|p| p.into_inner());
        picture.put(name, found.clone());
        picture.engine_error = None;
        drop(picture);
        self.changes.send_modify(|n| *n += 1);
        Ok(found)
    }

    /// Re-reads every app's containers (after start-up or a lost event stream).
    pub async fn resync(&self) -> Result<(), EngineError> {
        let began = self
            .picture
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .writes;
        let mut names: BTreeSet<String> = self.engine.managed_apps().await?;
        if let Ok(rows) = sqlx::query_scalar!("SELECT name FROM apps")
            .fetch_all(&self.db)
            .await
        {
            names.extend(rows);
        }
        let mut fresh = HashMap::new();
        let mut observed = futures::stream::iter(names)
            .map(|name| async move {
                let found = self.engine.observe(&name).await;
                (name, found)
            })
            .buffer_unordered(8);
        while let Some((name, found)) = observed.next().await {
            let found = found?;
            if !found.is_empty() {
                fresh.insert(name, found);
            }
        }
        let mut picture = self.picture.write().unwrap_or_else(|p| p.into_inner());
        // Entries written since the resync began are newer than its reading.
        picture.containers.retain(|_, (at, _)| *at > began);
        for (name, found) in fresh {
            if !picture.containers.contains_key(&name) {
                picture.put(&name, found);
            }
        }
        picture.engine_error = None;
        drop(picture);
        self.changes.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Wakes when the engine's picture of berth's containers changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Where a running app's canonical container can be reached: its first
    /// network address. `Err` says why there is none.
    pub fn address_of(&self, name: &str) -> Result<std::net::IpAddr, String> {
        let (found, engine_error) = self.observed(name);
        if let Some(e) = engine_error {
            return Err(e);
        }
        // The container under the app's name; in the moment of a swap when
        // it is not running (or not there), the swap's other running one.
        let swapping = |o: &&Observed| {
            o.running
                && [apply::NEXT_SUFFIX, apply::PREV_SUFFIX]
                    .iter()
                    .any(|suffix| o.name == format!("{name}{suffix}"))
        };
        let current = found
            .iter()
            .find(|o| o.name == name)
            .filter(|o| o.running)
            .or_else(|| found.iter().find(swapping))
            .or_else(|| found.iter().find(|o| o.name == name));
        let Some(current) = current else {
            return Err(format!("app {name} has no container"));
        };
        if !current.running {
            return Err(format!("app {name} is {}", current.state));
        }
        current
            .addresses
            .first()
            .copied()
            .ok_or_else(|| format!("app {name} has no network address"))
    }

    fn observed(&self, name: &str) -> (Vec<Observed>, Option<String>) {
        let picture = self.picture.read().unwrap_or_else(|p| p.into_inner());
        (
            picture
                .containers
                .get(name)
                .map(|(_, found)| found.clone())
                .unwrap_or_default(),
            picture.engine_error.clone(),
        )
    }

    fn set_engine_error(&self, error: Option<String>) {
        let mut picture = self.picture.write().unwrap_or_else(|p| p.into_inner());
        picture.engine_error = error;
    }

    /// Follows Docker's event stream for berth's containers, resyncing
    /// whenever the stream starts (again). Runs for the life of the process.
    pub async fn watch(self: Arc<Self>) {
        let mut backoff = Duration::from_secs(1);
        let mut resumed = false;
        loop {
            if let Err(e) = self.engine.negotiate().await {
                self.set_engine_error(Some(e.to_string()));
                tracing::warn!(error = %e, "the Docker engine cannot be reached; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
            // Subscribe from before the resync so no event falls in between.
            let since = (crate::store::now() - 1).to_string();
            let filters = HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                (
                    "label".to_string(),
                    vec![format!("{}=true", engine::LABEL_MANAGED)],
                ),
            ]);
            let docker = match self.engine.docker() {
                Ok(d) => d,
                Err(e) => {
                    self.set_engine_error(Some(e.to_string()));
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            let mut events = Box::pin(
                docker.events(Some(
                    bollard::query_parameters::EventsOptionsBuilder::new()
                        .since(&since)
                        .filters(&filters)
                        .build(),
                )),
            );
            if let Err(e) = self.resync().await {
                self.set_engine_error(Some(e.to_string()));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
            backoff = Duration::from_secs(1);
            tracing::info!("following the Docker event stream");
            if !resumed {
                resumed = true;
                let this = self.clone();
                tokio::spawn(async move { this.resume_interrupted().await });
            }
            while let Some(event) = events.next().await {
                match event {
                    Ok(message) => {
                        let app = message
                            .actor
                            .and_then(|a| a.attributes)
                            .and_then(|mut attrs| attrs.remove(engine::LABEL_APP));
                        if let Some(app) = app {
                            if let Err(e) = self.refresh(&app).await {
                                tracing::warn!(app, error = %e, "failed to re-read an app's container");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the Docker event stream broke; resyncing");
                        break;
                    }
                }
            }
            self.set_engine_error(Some("the Docker event stream ended; reconnecting".into()));
            tokio::time::sleep(backoff).await;
        }
    }

    /// Applies that a crash cut short are run again, so the engine converges.
    async fn resume_interrupted(self: Arc<Self>) {
        let names = match sqlx::query_scalar!("SELECT name FROM apps WHERE applying = 1")
            .fetch_all(&self.db)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "cannot read interrupted applies");
                return;
            }
        };
        for name in names {
            tracing::info!(app = %name, "resuming an apply that was interrupted");
            match self.apply(&name, false).await {
                Ok(r) if r.ok => {}
                Ok(r) => tracing::warn!(app = %name, error = ?r.error, "resumed apply failed"),
                Err(e) => tracing::warn!(app = %name, error = %e, "resumed apply failed"),
            }
        }
    }

    // ---- views ----------------------------------------------------------

    fn view(&self, name: &str, stored: Stored, image_id: Option<&str>, secrets: &str) -> App {
        let (found, engine_error) = self.observed(name);
        let (current, strays) = split_current(name, &found);
        let inputs = plan::Inputs {
            spec: &stored.spec,
            hash: &stored.hash,
            applied: stored.applied.as_ref(),
            image_id,
            current,
            strays: &strays,
            secrets,
        };
        let needs_redeploy = engine_error.is_none() && plan::needs_redeploy(&inputs);
        let failed = stored
            .last_apply
            .as_ref()
            .filter(|r| !r.ok)
            .and_then(|r| r.error.as_deref());
        let (status, reasons) = match engine_error {
            Some(e) => (AppStatus::Unknown, vec![e]),
            None => plan::status(&inputs, failed, stored.applying),
        };
        App {
            name: name.to_string(),
            status,
            reasons,
            container: current.map(|c| ContainerState {
                id: c.id.clone(),
                state: c.state.clone(),
                exit_code: c.exit_code,
                health: c.health.clone(),
                started_at: c.started_at.clone(),
                ports: c.ports.clone(),
            }),
            last_apply: stored.last_apply,
            stack: stored.stack,
            created_at: crate::store::rfc3339(stored.created_at),
            updated_at: crate::store::rfc3339(stored.updated_at),
            spec: stored.spec,
            needs_redeploy,
        }
    }

    /// Every app, from the store and the event-fed picture; no engine call.
    pub async fn list(&self) -> Result<Vec<App>, ApiError> {
        let all = self.load_all().await?;
        let stamps = self
            .secrets
            .stamps(all.iter().map(|(_, s)| &s.spec))
            .await?;
        Ok(all
            .into_iter()
            .map(|(name, stored)| {
                let stamp = stamps.get(&name).map(String::as_str).unwrap_or_default();
                self.view(&name, stored, None, stamp)
            })
            .collect())
    }

    /// Whether the app's container runs with other secrets than the stored
    /// ones (what a secret change alone calls for).
    pub async fn secrets_outdated(&self, name: &str) -> Result<bool, ApiError> {
        let stored = self.require(name).await?;
        let stamp = self.secrets.stamp(&stored.spec).await?;
        let (found, _) = self.observed(name);
        Ok(found
            .iter()
            .find(|o| o.name == name)
            .is_some_and(|c| !crate::secrets::stamp_changes(&c.secrets_stamp, &stamp).is_empty()))
    }

    pub async fn get(&self, name: &str) -> Result<App, ApiError> {
        let stored = self.require(name).await?;
        let stamp = self.secrets.stamp(&stored.spec).await?;
        Ok(self.view(name, stored, None, &stamp))
    }

    /// The plan for the stored spec against the engine as it is now.
    pub async fn plan_now(&self, name: &str) -> Result<Plan, ApiError> {
        let stored = self.require(name).await?;
        let found = self.refresh(name).await?;
        let image_id = self.engine.image_id(&stored.spec.image).await?;
        let stamp = self.secrets.stamp(&stored.spec).await?;
        let (current, strays) = split_current(name, &found);
        let actions = plan::plan(&plan::Inputs {
            spec: &stored.spec,
            hash: &stored.hash,
            applied: stored.applied.as_ref(),
            image_id: image_id.as_deref(),
            current,
            strays: &strays,
            secrets: &stamp,
        });
        Ok(Plan {
            app: name.to_string(),
            actions,
        })
    }

    /// The plan for a spec that is not stored (dry runs).
    pub async fn plan_for(
        &self,
        spec: &AppSpec,
        stack: Option<&str>,
        applied: Option<&AppSpec>,
    ) -> Result<Plan, ApiError> {
        let found = self.engine.observe(&spec.name).await?;
        let image_id = self.engine.image_id(&spec.image).await?;
        let hash = engine::config_hash(spec, stack);
        let stamp = self.secrets.stamp(spec).await?;
        let (current, strays) = split_current(&spec.name, &found);
        Ok(Plan {
            app: spec.name.clone(),
            actions: plan::plan(&plan::Inputs {
                spec,
                hash: &hash,
                applied,
                image_id: image_id.as_deref(),
                current,
                strays: &strays,
                secrets: &stamp,
            }),
        })
    }

    // ---- apply ----------------------------------------------------------

    /// Makes the engine match the stored spec. `redeploy` recreates the
    /// container even when nothing changed. Engine failures are reported in
    /// the result (and stored); only store failures are errors.
    pub async fn apply(&self, name: &str, redeploy: bool) -> Result<ApplyResult, ApiError> {
        self.run(name, |_, mut actions| {
            if redeploy
                && !actions
                    .iter()
                    .any(|a| matches!(a.action, ActionKind::Create | ActionKind::Recreate))
            {
                actions.retain(|a| a.action == ActionKind::Remove);
                actions.push(PlannedAction {
                    action: ActionKind::Recreate,
                    reasons: vec!["redeploy requested".into()],
                });
            }
            actions
        })
        .await
    }

    /// Restarts the container (applying pending changes first if any).
    pub async fn restart(&self, name: &str) -> Result<ApplyResult, ApiError> {
        self.run(name, |current, mut actions| {
            if actions.is_empty() && current.is_some_and(|c| c.running) {
                actions.push(PlannedAction {
                    action: ActionKind::Restart,
                    reasons: vec!["restart requested".into()],
                });
            }
            actions
        })
        .await
    }

    async fn run(
        &self,
        name: &str,
        adjust: impl FnOnce(Option<&Observed>, Vec<PlannedAction>) -> Vec<PlannedAction>,
    ) -> Result<ApplyResult, ApiError> {
        let lock = self.lock_for(name);
        let _guard = lock.lock().await;
        let stored = self.require(name).await?;
        sqlx::query!("UPDATE apps SET applying = 1 WHERE name = ?", name)
            .execute(&self.db)
            .await?;
        let started = Instant::now();
        let started_at = crate::store::rfc3339(crate::store::now());

        let outcome = self.plan_and_execute(name, &stored, adjust).await;
        let (ok, actions, error) = match outcome {
            Ok(actions) => (true, actions, None),
            Err((actions, e)) => (false, actions, Some(e)),
        };
        let result = ApplyResult {
            ok,
            actions,
            error,
            started_at,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        let result_json = encode(&result)?;
        let now = crate::store::now();
        if ok {
            let applied = encode(&stored.spec)?;
            sqlx::query!(
                "UPDATE apps SET applying = 0, last_apply = ?, applied_spec = ?, updated_at = ? WHERE name = ?",
                result_json,
                applied,
                now,
                name
            )
            .execute(&self.db)
            .await?;
        } else {
            sqlx::query!(
                "UPDATE apps SET applying = 0, last_apply = ?, updated_at = ? WHERE name = ?",
                result_json,
                now,
                name
            )
            .execute(&self.db)
            .await?;
        }
        if let Err(e) = self.refresh(name).await {
            self.set_engine_error(Some(e.to_string()));
        }
        Ok(result)
    }

    async fn plan_and_execute(
        &self,
        name: &str,
        stored: &Stored,
        adjust: impl FnOnce(Option<&Observed>, Vec<PlannedAction>) -> Vec<PlannedAction>,
    ) -> Result<Vec<PlannedAction>, (Vec<PlannedAction>, String)> {
        let fail = |e: EngineError| (Vec::new(), e.to_string());
        let found = self.engine.observe(name).await.map_err(fail)?;
        let image_id = self
            .engine
            .image_id(&stored.spec.image)
            .await
            .map_err(fail)?;
        if image_id.is_none() {
            return Err((
                Vec::new(),
                format!(
                    "image `{}` is not on the engine; import or pull it, then apply again",
                    stored.spec.image
                ),
            ));
        }
        // Decrypted only here, for the create call; the plan needs names only.
        let secrets = self
            .secrets
            .resolve(&stored.spec)
            .await
            .map_err(|e| (Vec::new(), format!("reading the app's secrets: {e}")))?;
        let (current, strays) = split_current(name, &found);
        let actions = adjust(
            current,
            plan::plan(&plan::Inputs {
                spec: &stored.spec,
                hash: &stored.hash,
                applied: stored.applied.as_ref(),
                image_id: image_id.as_deref(),
                current,
                strays: &strays,
                secrets: &secrets.stamp,
            }),
        );
        let target = apply::Target {
            spec: &stored.spec,
            hash: &stored.hash,
            stack: stored.stack.as_deref(),
            current,
            strays: &strays,
            secrets: &secrets,
        };
        match apply::execute(&self.engine, &target, &actions).await {
            Ok(()) => Ok(actions),
            Err(e) => Err((actions, e)),
        }
    }

    /// Removes the app's containers (and, if asked, the volumes berth made
    /// for it), then the app. Store row last: a failure leaves it listed.
    pub async fn delete(&self, name: &str, remove_volumes: bool) -> Result<Vec<String>, ApiError> {
        let lock = self.lock_for(name);
        let _guard = lock.lock().await;
        self.require(name).await?;
        for c in self.engine.observe(name).await? {
            self.engine.remove(&c.id).await?;
        }
        let volumes = if remove_volumes {
            self.engine.remove_app_volumes(name).await?
        } else {
            Vec::new()
        };
        sqlx::query!("DELETE FROM apps WHERE name = ?", name)
            .execute(&self.db)
            .await?;
        self.secrets.forget_app(name).await?;
        let mut picture = self.picture.write().unwrap_or_else(|p| p.into_inner());
        picture.put(name, Vec::new());
        drop(picture);
        self.changes.send_modify(|n| *n += 1);
        Ok(volumes)
    }

    // ---- checks that need the engine ------------------------------------

    /// Refuses, before anything is stored or created, what the engine would
    /// refuse later: a missing image, more CPUs than the host has, a name
    /// taken by a container berth did not create, host ports in use.
    pub async fn preflight(&self, spec: &AppSpec) -> Result<(), ApiError> {
        for (i, group) in spec.secret_groups.iter().enumerate() {
            if !self.secrets.group_exists(group).await? {
                return Err(ApiError::invalid(
                    format!("secret_groups[{i}]"),
                    format!("no secret group named `{group}`: create it first (POST /api/v1/secret-groups)"),
                ));
            }
        }
        if self.engine.local {
            model::check_resolved_binds(spec, &self.policy())?;
        }
        if self.engine.image_id(&spec.image).await?.is_none() {
            return Err(ApiError::invalid(
                "image",
                format!(
                    "image `{}` is not on the engine; import it (POST /api/v1/images/import) or pull it first",
                    spec.image
                ),
            ));
        }
        if let Some(cpus) = spec.limits.cpus {
            let have = self.engine.cpu_count().await?;
            if cpus > have as f64 {
                return Err(ApiError::invalid(
                    "limits.cpus",
                    format!("the engine has {have} CPUs"),
                ));
            }
        }
        if let Some(c) = self.engine.container_by_name(&spec.name).await? {
            let owner = c
                .config
                .and_then(|cfg| cfg.labels)
                .and_then(|mut l| l.remove(engine::LABEL_APP));
            if owner.as_deref() != Some(spec.name.as_str()) {
                return Err(ApiError::Conflict(format!(
                    "a container named `{}` exists that berth did not create; rename or remove it, or choose another name",
                    spec.name
                )));
            }
        }
        self.check_host_ports(spec).await
    }

    async fn check_host_ports(&self, spec: &AppSpec) -> Result<(), ApiError> {
        if spec.ports.iter().all(|p| p.host.is_none()) {
            return Ok(());
        }
        let others = self.load_all().await?;
        let published = streams::published_ports(&self.engine).await?;
        for (i, p) in spec.ports.iter().enumerate() {
            let Some(host) = p.host else { continue };
            let field = format!("ports[{i}].host");
            let overlaps = |a: &Option<String>, b: &Option<String>| match (a, b) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            for (other, stored) in &others {
                if other == &spec.name {
                    continue;
                }
                let clash = stored.spec.ports.iter().any(|q| {
                    q.host == Some(host) && q.protocol == p.protocol && overlaps(&q.bind, &p.bind)
                });
                if clash {
                    return Err(ApiError::invalid(
                        &field,
                        format!(
                            "host port {host}/{} is already used by app `{other}`",
                            p.protocol.as_str()
                        ),
                    ));
                }
            }
            let mut ours = false;
            for published in &published {
                if published.port == host && published.protocol == p.protocol.as_str() {
                    if published.app.as_deref() == Some(spec.name.as_str()) {
                        ours = true;
                        continue;
                    }
                    return Err(ApiError::invalid(
                        &field,
                        format!(
                            "host port {host}/{} is published by container `{}`",
                            p.protocol.as_str(),
                            published.container
                        ),
                    ));
                }
            }
            if self.engine.local
                && !ours
                && streams::host_port_taken(p.bind.as_deref(), host, p.protocol)
            {
                return Err(ApiError::invalid(
                    &field,
                    format!(
                        "host port {host}/{} is in use by another program on this host",
                        p.protocol.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Inserts a new app on `conn` (which may be a transaction).
pub async fn insert_in(
    conn: &mut sqlx::SqliteConnection,
    spec: &AppSpec,
    stack: Option<&str>,
) -> Result<(), ApiError> {
    let json = encode(spec)?;
    let hash = engine::config_hash(spec, stack);
    let now = crate::store::now();
    let result = sqlx::query!(
        "INSERT INTO apps (name, spec, spec_hash, stack, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        spec.name,
        json,
        hash,
        stack,
        now,
        now
    )
    .execute(&mut *conn)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if crate::store::is_unique_violation(&e) => Err(ApiError::Conflict(format!(
            "an app named `{}` already exists",
            spec.name
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The container named after the app, and the app's other containers.
fn split_current<'a>(name: &str, found: &'a [Observed]) -> (Option<&'a Observed>, Vec<Observed>) {
    let current = found.iter().find(|o| o.name == name);
    let strays = found.iter().filter(|o| o.name != name).cloned().collect();
    (current, strays)
}

fn decode<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, ApiError> {
    serde_json::from_str(json).map_err(|e| {
        ApiError::Internal(anyhow::Error::new(e).context("corrupt JSON in the apps table"))
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::Internal(e.into()))
}
