//! Apps (desired state of one container each), the engine's objects
//! (containers, images, volumes, networks) and compose stacks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An app as the admin describes it: what `POST /apps` and `PUT /apps/{name}`
/// take, and what `GET /apps/{name}` returns as `spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    /// Lowercase DNS label, 1..=63 characters. Also the container's name and
    /// its alias on its networks. In `PUT` it may be omitted; if given it
    /// must equal the name in the path.
    #[serde(default)]
    pub name: String,
    /// Image reference such as `nginx:1.27` or `registry:5000/team/app@sha256:…`.
    /// It must already be on the engine (import or pull it first).
    pub image: String,
    /// Replaces the image's CMD (argv list; no shell is involved).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Replaces the image's ENTRYPOINT (argv list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Plain environment variables (secrets come from the secrets capability).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub volumes: Vec<VolumeSpec>,
    /// Networks to join (created with berth's labels when missing). Empty:
    /// Docker's default bridge.
    #[serde(default)]
    pub networks: Vec<String>,
    /// Extra DNS names for the container on its networks (the app's name is
    /// always one). Compose stacks use the service name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Extra container labels; keys starting with `berth.` are reserved.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Whether the container should be running.
    #[serde(default)]
    pub state: DesiredState,
    /// Runs the container privileged. Needs the `privileged` allowance.
    #[serde(default)]
    pub privileged: bool,
    /// Linux capabilities to add, e.g. `NET_ADMIN`. Needs `cap_add`.
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// Shares the host's network namespace. Needs `host_network`.
    #[serde(default)]
    pub host_network: bool,
    /// Shares the host's PID namespace. Needs `host_pid`.
    #[serde(default)]
    pub host_pid: bool,
    /// Shares the host's IPC namespace. Needs `host_ipc`.
    #[serde(default)]
    pub host_ipc: bool,
    /// Dangerous settings the admin allows for this app. Widening this set
    /// needs `confirm_password` and the `admin` scope, and is audited.
    #[serde(default)]
    pub allow: Vec<Allowance>,
    /// The admin's current password; required only when `allow` grows.
    /// Never stored or returned.
    #[serde(default, skip_serializing)]
    pub confirm_password: Option<String>,
    /// Shared secret groups whose secrets this app gets, lowest precedence
    /// first: a later group wins over an earlier one, and the app's own
    /// secrets win over every group (and secrets over plain `env`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_groups: Vec<String>,
    /// Redeploy the app by itself when one of its secrets changes (off:
    /// the app is marked as needing a redeploy, and the admin applies it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redeploy_on_secret_change: bool,
    /// How a recreation swaps containers: `stop-first` (default: the old
    /// one stops, then the new one starts) or `start-first` (the new one
    /// starts and becomes the app before the old one stops: no downtime
    /// behind the proxy; not with host ports, which two containers cannot
    /// hold at once, nor for data two processes must not share).
    #[serde(default, skip_serializing_if = "UpdateOrder::is_default")]
    pub update_order: UpdateOrder,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

impl UpdateOrder {
    pub fn is_default(&self) -> bool {
        *self == UpdateOrder::StopFirst
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UpdateOrder::StopFirst => "stop-first",
            UpdateOrder::StartFirst => "start-first",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// Port inside the container, 1..=65535.
    pub container: u16,
    /// Port published on the host. Absent: reachable on the app's networks
    /// only (which is how berth's proxy reaches it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<u16>,
    /// Host address to bind, e.g. `127.0.0.1`. Absent: all addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    /// A named volume (created with berth's labels when missing) or an
    /// absolute host path under one of the admin-allowed bind roots.
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    Always,
    #[default]
    UnlessStopped,
    OnFailure,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
            RestartPolicy::OnFailure => "on-failure",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory limit in MiB, 6..=1048576.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// CPUs, 0.01 up to the engine's CPU count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Maximum number of processes, 1..=1000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
}

/// Exec-form health check: an argv list run inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub test: Vec<String>,
    /// Seconds between checks, 1..=3600 (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<u32>,
    /// Seconds before a check counts as failed, 1..=3600 (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u32>,
    /// Failures in a row before unhealthy, 1..=100 (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Grace period after start, 0..=3600 seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period_s: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    #[default]
    Running,
    Stopped,
}

/// Settings that weaken the container's isolation from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Allowance {
    Privileged,
    CapAdd,
    HostNetwork,
    HostPid,
    HostIpc,
    /// Mounting the Docker socket (root on the host, in effect).
    DockerSocket,
    /// Mounting `/` or a top-level system directory of the host.
    HostRoot,
}

impl Allowance {
    pub const ALL: [Allowance; 7] = [
        Allowance::Privileged,
        Allowance::CapAdd,
        Allowance::HostNetwork,
        Allowance::HostPid,
        Allowance::HostIpc,
        Allowance::DockerSocket,
        Allowance::HostRoot,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Allowance::Privileged => "privileged",
            Allowance::CapAdd => "cap_add",
            Allowance::HostNetwork => "host_network",
            Allowance::HostPid => "host_pid",
            Allowance::HostIpc => "host_ipc",
            Allowance::DockerSocket => "docker_socket",
            Allowance::HostRoot => "host_root",
        }
    }
}

/// What berth observes, summarised for humans and scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AppStatus {
    /// Running as described (and healthy, when it has a health check).
    Running,
    /// Running, health check not yet passed.
    Starting,
    /// Running, health check failing.
    Unhealthy,
    /// Stopped, as desired.
    Stopped,
    /// Should run but exited, or the last apply failed.
    Failed,
    /// The container was changed, stopped, started or removed outside berth.
    Drifted,
    /// Not applied yet, or being applied.
    Pending,
    /// The engine cannot be reached.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct App {
    pub name: String,
    pub spec: AppSpec,
    pub status: AppStatus,
    /// Why the status is what it is (e.g. `exited with code 1`,
    /// `memory limit changed outside berth`).
    pub reasons: Vec<String>,
    pub container: Option<ContainerState>,
    pub last_apply: Option<ApplyResult>,
    /// The stack this app was created from, if any.
    pub stack: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The container was made from other settings or secrets than the ones
    /// stored now: a redeploy (apply) brings them in. `reasons` says which.
    #[serde(default)]
    pub needs_redeploy: bool,
}

/// The app's container as the engine reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ContainerState {
    pub id: String,
    /// Docker's state: `created`, `running`, `exited`, `restarting`, …
    pub state: String,
    pub exit_code: Option<i64>,
    /// `starting`, `healthy` or `unhealthy` when there is a health check.
    pub health: Option<String>,
    pub started_at: Option<String>,
    /// Published ports as `host_ip:host_port->container/proto`.
    pub ports: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Create,
    Recreate,
    Start,
    Stop,
    Restart,
    Remove,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Create => "create",
            ActionKind::Recreate => "recreate",
            ActionKind::Start => "start",
            ActionKind::Stop => "stop",
            ActionKind::Restart => "restart",
            ActionKind::Remove => "remove",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PlannedAction {
    pub action: ActionKind,
    /// Why, e.g. `image changed`, `env changed`, `container exited (code 1)`.
    pub reasons: Vec<String>,
}

/// What applying an app's desired state would do. Empty `actions`: nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Plan {
    pub app: String,
    pub actions: Vec<PlannedAction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ApplyResult {
    pub ok: bool,
    /// The steps that were carried out (all of them when `ok`).
    pub actions: Vec<PlannedAction>,
    /// What went wrong, and what was left running.
    pub error: Option<String>,
    pub started_at: String,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// `stdout` or `stderr`.
    pub stream: String,
    pub text: String,
}

/// One sample of a container's resource use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct StatsSample {
    pub at: String,
    /// Percent of one CPU (200 = two CPUs busy).
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub block_read_bytes: u64,
    pub block_write_bytes: u64,
    pub pids: u64,
}

/// Any container on the engine, managed by berth or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: String,
    /// Docker's human status, e.g. `Up 3 minutes`.
    pub status: String,
    pub ports: Vec<String>,
    /// Created by berth (label `berth.managed=true`).
    pub managed: bool,
    pub app: Option<String>,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ImageInfo {
    pub id: String,
    pub tags: Vec<String>,
    pub size: i64,
    pub created: i64,
    /// Containers (running or not) made from it.
    pub containers: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct VolumeInfo {
    pub name: String,
    pub driver: String,
    pub managed: bool,
    pub app: Option<String>,
    pub created_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub scope: String,
    pub internal: bool,
    pub managed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// Image reference to pull, e.g. `nginx:1.27`.
    pub image: String,
}

/// A pull running in the background; poll `GET /images/pulls/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PullProgress {
    pub id: String,
    pub image: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    /// Latest progress line per layer, e.g. `a1b2c3: Downloading 12MB/40MB`.
    pub layers: Vec<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ImportResult {
    /// Tags (or image ids) the engine reported as loaded.
    pub loaded: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StackRequest {
    /// Lowercase DNS label; each service becomes the app `<stack>-<service>`.
    pub name: String,
    /// The docker-compose.yml text.
    pub compose: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Stack {
    pub name: String,
    /// The stack's apps, in `depends_on` order.
    pub apps: Vec<App>,
    pub created_at: String,
}

/// A stack's dry run: each app's spec as berth read it from the compose
/// file, and its plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct StackPlan {
    pub name: String,
    pub apps: Vec<AppSpec>,
    pub plans: Vec<Plan>,
}
