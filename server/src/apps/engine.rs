//! The adapter to the Docker Engine API (bollard). It turns an `AppSpec` into
//! the engine's create body and the engine's answers back into `Observed`,
//! and nothing else: decisions live in `plan`, sequencing in `apply`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use app::api::{AppSpec, Protocol, RestartPolicy};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HealthConfig, HostConfig,
    NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder,
};
use bollard::Docker;
use sha2::{Digest, Sha256};

pub const LABEL_MANAGED: &str = "berth.managed";
pub const LABEL_APP: &str = "berth.app";
pub const LABEL_STACK: &str = "berth.stack";
pub const LABEL_HASH: &str = "berth.spec-hash";
/// The secrets a container was created with, as `NAME@revision,…` (never
/// values): how berth knows who needs a redeploy, and what to mask.
pub const LABEL_SECRETS: &str = "berth.secrets";

/// Seconds a container gets between SIGTERM and SIGKILL when berth stops it.
pub const STOP_TIMEOUT_S: i32 = 10;

const MIB: i64 = 1024 * 1024;

/// The engine client. Cheap to clone (bollard shares its connection pool).
/// The connection is made on first use and again after failing, so berth
/// starts (and says the engine is unreachable) while Docker is down.
#[derive(Clone)]
pub struct Engine {
    host: String,
    client: std::sync::Arc<std::sync::RwLock<Option<Docker>>>,
    /// Whether the engine is on this host (a unix socket), which makes probing
    /// host ports meaningful.
    pub local: bool,
}

/// The engine's error, sorted into what callers must tell apart.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The engine refused the request (e.g. a port already bound).
    #[error("{0}")]
    Refused(String),
    #[error("the Docker engine cannot be reached: {0}")]
    Unreachable(String),
}

impl From<bollard::errors::Error> for EngineError {
    fn from(e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError {
                status_code,
                message,
            } => match status_code {
                404 => EngineError::NotFound(message),
                409 => EngineError::Conflict(message),
                _ => EngineError::Refused(message),
            },
            E::DockerStreamError { error } => EngineError::Refused(error),
            other => EngineError::Unreachable(other.to_string()),
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// What berth sees of one of its containers.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub id: String,
    pub name: String,
    pub spec_hash: Option<String>,
    /// The `berth.secrets` stamp; empty when it has none.
    pub secrets_stamp: String,
    /// Docker's state word: created, running, restarting, exited, paused, dead.
    pub state: String,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub health: Option<String>,
    pub started_at: Option<String>,
    pub image_id: String,
    /// Settings `docker update`/`docker network` can change in place, so that
    /// a change behind berth's back shows as drift.
    pub memory: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    pub restart: String,
    pub networks: BTreeSet<String>,
    pub ports: Vec<String>,
    /// The container's address on each of its networks (how the proxy
    /// reaches it); not part of drift.
    pub addresses: Vec<std::net::IpAddr>,
}

impl Engine {
    /// Connects to `host` (`unix://…`, `tcp://…`; TLS when `DOCKER_TLS_VERIFY`
    /// and `DOCKER_CERT_PATH` are set), or to `DOCKER_HOST`, or to the local
    /// socket. Nothing is sent until the first request.
    pub fn connect(host: Option<&str>) -> anyhow::Result<Engine> {
        let host = host
            .map(str::to_string)
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let supported = ["unix://", "tcp://", "http://", "https://"];
        if !supported.iter().any(|s| host.starts_with(s)) {
            anyhow::bail!("docker_host `{host}`: use unix://, tcp://, http:// or https://");
        }
        let engine = Engine {
            local: host.starts_with("unix://"),
            host,
            client: Default::default(),
        };
        // A socket that is not there yet is not fatal: see `docker`.
        let _ = engine.docker();
        Ok(engine)
    }

    /// Agrees on the API version with the engine (bollard speaks a newer one
    /// than older engines accept). Every clone shares the result.
    pub async fn negotiate(&self) -> EngineResult<()> {
        self.docker()?.negotiate_version().await?;
        Ok(())
    }

    /// The client, connecting first if needed.
    pub fn docker(&self) -> EngineResult<Docker> {
        if let Some(d) = self
            .client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(d);
        }
        let docker = Docker::connect_with_host(&self.host)
            .map_err(|e| EngineError::Unreachable(format!("{}: {e}", self.host)))?
            // Image loads and stops can be slow; streams are not limited
            // (the timeout ends when the response starts).
            .with_timeout(Duration::from_secs(600));
        *self.client.write().unwrap_or_else(|p| p.into_inner()) = Some(docker.clone());
        Ok(docker)
    }

    pub async fn cpu_count(&self) -> EngineResult<i64> {
        Ok(self.docker()?.info().await?.ncpu.unwrap_or(1))
    }

    /// The image id a reference points at, or `None` when it is not on the engine.
    pub async fn image_id(&self, reference: &str) -> EngineResult<Option<String>> {
        match self.docker()?.inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Every container carrying `berth.app=<app>`, canonical one first.
    pub async fn observe(&self, app: &str) -> EngineResult<Vec<Observed>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_APP}={app}")])]);
        let list = self
            .docker()?
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await?;
        let mut found = Vec::new();
        for summary in list {
            let Some(id) = summary.id else { continue };
            match self.inspect(&id).await {
                Ok(o) => found.push(o),
                // Removed between list and inspect.
                Err(EngineError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        found.sort_by_key(|o| o.name != app);
        Ok(found)
    }

    /// Names of the apps that have containers on the engine.
    pub async fn managed_apps(&self) -> EngineResult<BTreeSet<String>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_MANAGED}=true")])]);
        let list = self
            .docker()?
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await?;
        Ok(list
            .into_iter()
            .filter_map(|c| c.labels.and_then(|mut l| l.remove(LABEL_APP)))
            .collect())
    }

    pub async fn inspect(&self, id: &str) -> EngineResult<Observed> {
        let c = self
            .docker()?
            .inspect_container(id, None::<InspectContainerOptions>)
            .await?;
        Ok(observed_from(c))
    }

    /// The environment of a container berth manages, with the values of the
    /// secrets named in its `berth.secrets` label (and of any master key)
    /// left out; `None` for a container berth did not create.
    pub async fn masked_env(&self, id: &str) -> EngineResult<Option<Vec<app::api::EnvEntry>>> {
        let c = self
            .docker()?
            .inspect_container(id, None::<InspectContainerOptions>)
            .await?;
        let config = c.config.unwrap_or_default();
        let mut labels = config.labels.unwrap_or_default();
        if labels.get(LABEL_MANAGED).map(String::as_str) != Some("true") {
            return Ok(None);
        }
        let stamp = labels.remove(LABEL_SECRETS).unwrap_or_default();
        let secret: BTreeSet<&str> = stamp
            .split(',')
            .filter_map(|p| p.split_once('@').map(|(n, _)| n))
            .collect();
        Ok(config
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|line| {
                let (name, value) = line.split_once('=').unwrap_or((&line, ""));
                let is_secret =
                    secret.contains(name) || name.starts_with(crate::config::MASTER_KEY_ENV);
                app::api::EnvEntry {
                    name: name.to_string(),
                    value: (!is_secret).then(|| value.to_string()),
                    secret: is_secret,
                }
            })
            .collect::<Vec<_>>()
            .into())
    }

    /// A container by exact name, whoever created it.
    pub async fn container_by_name(
        &self,
        name: &str,
    ) -> EngineResult<Option<ContainerInspectResponse>> {
        match self
            .docker()?
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) if c.name.as_deref().map(|n| n.trim_start_matches('/')) == Some(name) => {
                Ok(Some(c))
            }
            Ok(_) => Ok(None),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Creates the networks and named volumes the app uses that do not exist
    /// yet, labelled as berth's.
    pub async fn ensure_dependencies(&self, spec: &AppSpec) -> EngineResult<()> {
        for network in &spec.networks {
            match self
                .docker()?
                .inspect_network(
                    network,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
            {
                Ok(_) => {}
                Err(e) => match EngineError::from(e) {
                    EngineError::NotFound(_) => {
                        let created = self
                            .docker()?
                            .create_network(NetworkCreateRequest {
                                name: network.clone(),
                                driver: Some("bridge".into()),
                                labels: Some(HashMap::from([(
                                    LABEL_MANAGED.to_string(),
                                    "true".to_string(),
                                )])),
                                ..Default::default()
                            })
                            .await;
                        match created.map_err(EngineError::from) {
                            // Another apply created it first.
                            Ok(_) | Err(EngineError::Conflict(_)) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    other => return Err(other),
                },
            }
        }
        for volume in spec.volumes.iter().filter(|v| !v.source.starts_with('/')) {
            match self.docker()?.inspect_volume(&volume.source).await {
                Ok(_) => {}
                Err(e) => match EngineError::from(e) {
                    EngineError::NotFound(_) => {
                        self.docker()?
                            .create_volume(VolumeCreateRequest {
                                name: Some(volume.source.clone()),
                                labels: Some(HashMap::from([
                                    (LABEL_MANAGED.to_string(), "true".to_string()),
                                    (LABEL_APP.to_string(), spec.name.clone()),
                                ])),
                                ..Default::default()
                            })
                            .await?;
                    }
                    other => return Err(other),
                },
            }
        }
        Ok(())
    }

    /// Creates (does not start) the app's container under `container_name`.
    pub async fn create(
        &self,
        spec: &AppSpec,
        hash: &str,
        stack: Option<&str>,
        container_name: &str,
        secrets: &crate::secrets::Injected,
    ) -> EngineResult<String> {
        let body = create_body(spec, hash, stack, secrets);
        let created = self
            .docker()?
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::new()
                        .name(container_name)
                        .build(),
                ),
                body,
            )
            .await?;
        // Docker attaches one network at create time; join the others now.
        for network in spec.networks.iter().skip(1) {
            self.docker()?
                .connect_network(
                    network,
                    bollard::models::NetworkConnectRequest {
                        container: created.id.clone(),
                        endpoint_config: Some(endpoint(spec)),
                    },
                )
                .await?;
        }
        Ok(created.id)
    }

    pub async fn start(&self, id: &str) -> EngineResult<()> {
        match self
            .docker()?
            .start_container(id, None::<StartContainerOptions>)
            .await
        {
            // 304: already running.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            other => Ok(other?),
        }
    }

    pub async fn stop(&self, id: &str) -> EngineResult<()> {
        match self
            .docker()?
            .stop_container(
                id,
                Some(StopContainerOptionsBuilder::new().t(STOP_TIMEOUT_S).build()),
            )
            .await
        {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            other => Ok(other?),
        }
    }

    pub async fn restart(&self, id: &str) -> EngineResult<()> {
        self.docker()?
            .restart_container(
                id,
                Some(
                    bollard::query_parameters::RestartContainerOptionsBuilder::new()
                        .t(STOP_TIMEOUT_S)
                        .build(),
                ),
            )
            .await?;
        Ok(())
    }

    /// Removes a container (volumes stay); a missing one is not an error.
    pub async fn remove(&self, id: &str) -> EngineResult<()> {
        match self
            .docker()?
            .remove_container(
                id,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await
            .map_err(EngineError::from)
        {
            Ok(()) | Err(EngineError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn rename(&self, id: &str, name: &str) -> EngineResult<()> {
        self.docker()?
            .rename_container(
                id,
                bollard::query_parameters::RenameContainerOptionsBuilder::new()
                    .name(name)
                    .build(),
            )
            .await?;
        Ok(())
    }

    /// Removes the named volumes berth created for `app`.
    pub async fn remove_app_volumes(&self, app: &str) -> EngineResult<Vec<String>> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{LABEL_MANAGED}=true"),
                format!("{LABEL_APP}={app}"),
            ],
        )]);
        let list = self
            .docker()?
            .list_volumes(Some(
                bollard::query_parameters::ListVolumesOptionsBuilder::new()
                    .filters(&filters)
                    .build(),
            ))
            .await?;
        let mut removed = Vec::new();
        for v in list.volumes.unwrap_or_default() {
            self.docker()?
                .remove_volume(
                    &v.name,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await?;
            removed.push(v.name);
        }
        Ok(removed)
    }
}

/// The hash of everything in the spec that is fixed at container creation.
/// Stored as a label, it tells whether a container was made from this spec.
pub fn config_hash(spec: &AppSpec, stack: Option<&str>) -> String {
    let mut relevant = spec.clone();
    // Desired state and allowances do not change the container itself.
    relevant.state = Default::default();
    relevant.allow.clear();
    relevant.confirm_password = None;
    // Which secrets a container has is tracked by its own label.
    relevant.secret_groups.clear();
    relevant.redeploy_on_secret_change = false;
    relevant.update_order = Default::default();
    let json = serde_json::to_vec(&(relevant, stack)).unwrap_or_default();
    hex::encode(&Sha256::digest(&json)[..16])
}

fn endpoint(spec: &AppSpec) -> EndpointSettings {
    let mut aliases = vec![spec.name.clone()];
    aliases.extend(spec.aliases.iter().cloned());
    EndpointSettings {
        aliases: Some(aliases),
        ..Default::default()
    }
}

fn port_key(container: u16, protocol: Protocol) -> String {
    format!("{container}/{}", protocol.as_str())
}

pub fn restart_name(policy: RestartPolicy) -> RestartPolicyNameEnum {
    match policy {
        RestartPolicy::No => RestartPolicyNameEnum::NO,
        RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
        RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
        RestartPolicy::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
    }
}

/// The values `Observed` holds for a container made from `spec`: what drift
/// detection compares against.
pub fn expected_mutable(spec: &AppSpec) -> (i64, i64, i64, String, BTreeSet<String>) {
    let memory = spec.limits.memory_mb.map_or(0, |m| m as i64 * MIB);
    let nano_cpus = spec.limits.cpus.map_or(0, |c| (c * 1e9).round() as i64);
    let pids = spec.limits.pids.unwrap_or(0);
    let networks = if spec.host_network {
        BTreeSet::from(["host".to_string()])
    } else if spec.networks.is_empty() {
        BTreeSet::from(["bridge".to_string()])
    } else {
        spec.networks.iter().cloned().collect()
    };
    (
        memory,
        nano_cpus,
        pids,
        spec.restart.as_str().to_string(),
        networks,
    )
}

/// The container to create. Secrets override plain `env` entries of the same
/// name; the body holds their values, so it is never logged.
pub fn create_body(
    spec: &AppSpec,
    hash: &str,
    stack: Option<&str>,
    secrets: &crate::secrets::Injected,
) -> ContainerCreateBody {
    let mut labels: HashMap<String, String> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(LABEL_MANAGED.into(), "true".into());
    labels.insert(LABEL_APP.into(), spec.name.clone());
    labels.insert(LABEL_HASH.into(), hash.into());
    if let Some(stack) = stack {
        labels.insert(LABEL_STACK.into(), stack.into());
    }
    if !secrets.stamp.is_empty() {
        labels.insert(LABEL_SECRETS.into(), secrets.stamp.clone());
    }
    let mut env: BTreeMap<&str, &str> = spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (k, v) in &secrets.env {
        env.insert(k, v);
    }

    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let key = port_key(p.container, p.protocol);
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        if let Some(host) = p.host {
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: p.bind.clone(),
                    host_port: Some(host.to_string()),
                });
        }
    }

    let binds: Vec<String> = spec
        .volumes
        .iter()
        .map(|v| {
            let mode = if v.read_only { "ro" } else { "rw" };
            format!("{}:{}:{mode}", v.source, v.target)
        })
        .collect();

    let seconds = |s: Option<u32>| s.map(|s| i64::from(s) * 1_000_000_000);
    let healthcheck = spec.health_check.as_ref().map(|hc| HealthConfig {
        test: Some(
            std::iter::once("CMD".to_string())
                .chain(hc.test.iter().cloned())
                .collect(),
        ),
        interval: seconds(hc.interval_s),
        timeout: seconds(hc.timeout_s),
        retries: hc.retries.map(i64::from),
        start_period: seconds(hc.start_period_s),
        ..Default::default()
    });

    let (memory, nano_cpus, pids, _, _) = expected_mutable(spec);
    let network_mode = if spec.host_network {
        Some("host".to_string())
    } else {
        spec.networks.first().cloned()
    };
    let host_config = HostConfig {
        binds: (!binds.is_empty()).then_some(binds),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        restart_policy: Some(bollard::models::RestartPolicy {
            name: Some(restart_name(spec.restart)),
            maximum_retry_count: None,
        }),
        memory: (memory > 0).then_some(memory),
        nano_cpus: (nano_cpus > 0).then_some(nano_cpus),
        pids_limit: (pids > 0).then_some(pids),
        privileged: Some(spec.privileged),
        cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
        network_mode,
        pid_mode: spec.host_pid.then(|| "host".to_string()),
        ipc_mode: spec.host_ipc.then(|| "host".to_string()),
        ..Default::default()
    };
    let networking_config = spec.networks.first().map(|first| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(first.clone(), endpoint(spec))])),
    });

    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        entrypoint: spec.entrypoint.clone(),
        env: Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        labels: Some(labels),
        healthcheck,
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    }
}

fn observed_from(c: ContainerInspectResponse) -> Observed {
    let labels = c
        .config
        .as_ref()
        .and_then(|cfg| cfg.labels.clone())
        .unwrap_or_default();
    let state = c.state.clone().unwrap_or_default();
    let host = c.host_config.clone().unwrap_or_default();
    let networks = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    let addresses = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| {
            n.values()
                .filter_map(|e| e.ip_address.as_deref()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut ports = Vec::new();
    if let Some(map) = c.network_settings.as_ref().and_then(|n| n.ports.as_ref()) {
        for (key, bindings) in map {
            for b in bindings.iter().flatten() {
                ports.push(format!(
                    "{}:{}->{key}",
                    b.host_ip.as_deref().unwrap_or(""),
                    b.host_port.as_deref().unwrap_or("")
                ));
            }
        }
    }
    ports.sort();
    Observed {
        addresses,
        id: c.id.unwrap_or_default(),
        name: c
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        spec_hash: labels.get(LABEL_HASH).cloned(),
        secrets_stamp: labels.get(LABEL_SECRETS).cloned().unwrap_or_default(),
        state: state
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into()),
        running: state.running.unwrap_or(false),
        exit_code: state.exit_code,
        oom_killed: state.oom_killed.unwrap_or(false),
        health: state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none"),
        started_at: state.started_at.filter(|s| !s.starts_with("0001-")),
        image_id: c.image.unwrap_or_default(),
        memory: host.memory.unwrap_or(0),
        nano_cpus: host.nano_cpus.unwrap_or(0),
        // Engines report "unlimited" as null, 0 or -1.
        pids_limit: host.pids_limit.unwrap_or(0).max(0),
        restart: host
            .restart_policy
            .and_then(|r| r.name)
            .map(|n| n.to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "no".into()),
        networks,
        ports,
    }
}

impl Engine {
    /// Removes a network if berth created it; engines refuse while it is in use.
    pub async fn remove_managed_network(&self, name: &str) -> EngineResult<()> {
        let network = self
            .docker()?
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await?;
        let ours = network
            .labels
            .is_some_and(|l| l.get(LABEL_MANAGED).is_some_and(|v| v == "true"));
        if ours {
            self.docker()?.remove_network(name).await?;
        }
        Ok(())
    }
}
