//! Domains routed by berth's reverse proxy, and what the proxy reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A domain as the admin describes it: what `POST /domains` and
/// `PUT /domains/{host}` take, and what `GET /domains/{host}` returns as `spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DomainSpec {
    /// Host name such as `example.com`; internationalised names are stored
    /// in punycode (`bücher.example` → `xn--bcher-kva.example`). In `PUT` it
    /// may be omitted; if given it must equal the host in the path.
    #[serde(default)]
    pub host: String,
    /// Where requests go unless a path route matches.
    pub target: Target,
    /// Path-prefix routes, longest prefix wins, e.g. `/api` to another app.
    #[serde(default)]
    pub routes: Vec<PathRoute>,
    /// Redirect plain HTTP to HTTPS. Absent: on once a certificate exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<bool>,
    #[serde(default)]
    pub www: WwwRedirect,
    /// Orders a certificate (HTTP-01) for the host and its `www` alias when
    /// none covers them and ACME is configured. Default on.
    #[serde(default = "yes")]
    pub auto_certificate: bool,
    /// Sends `Strict-Transport-Security` over HTTPS (max-age one year).
    #[serde(default = "yes")]
    pub hsts: bool,
    /// Extra response headers, e.g. `{"X-Frame-Options": "DENY"}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Users allowed in with HTTP basic auth. Empty: no basic auth.
    #[serde(default)]
    pub basic_auth: Vec<BasicAuthUser>,
    /// Client networks allowed (CIDR or address, v4 and v6). Empty: everyone
    /// not denied.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Client networks refused with 403; checked before `allow`.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Per-path request rate limits per client address.
    #[serde(default)]
    pub rate_limits: Vec<RateLimit>,
    /// Largest request body in bytes (default 10 MiB); larger gets 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Seconds to connect to the upstream (default 5) and to wait for its
    /// response headers (default 60); past them the client gets 504.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_s: u32,
    #[serde(default = "default_read_timeout")]
    pub read_timeout_s: u32,
    /// Text shown on the maintenance page when the upstream is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_message: Option<String>,
    /// Lets `url` targets point at loopback or private addresses.
    #[serde(default)]
    pub allow_private_upstream: bool,
}

fn yes() -> bool {
    true
}
pub fn default_max_body() -> u64 {
    10 * 1024 * 1024
}
pub fn default_connect_timeout() -> u32 {
    5
}
pub fn default_read_timeout() -> u32 {
    60
}

/// Where a route sends its requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// A berth app's container, on its container port.
    App { app: String, port: u16 },
    /// Any HTTP upstream, e.g. `http://10.0.0.7:3000`. Only `http`; loopback
    /// and private addresses need `allow_private_upstream`; cloud metadata
    /// addresses are always refused.
    Url { url: String },
    /// Files from a Docker volume (read-only; `index.html` for directories).
    Static {
        volume: String,
        /// Sub-directory of the volume to serve, e.g. `public`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dir: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PathRoute {
    /// Path prefix starting with `/`, matched on whole segments (`/api`
    /// matches `/api` and `/api/x`, not `/apix`).
    pub path: String,
    pub target: Target,
    /// Removes the prefix before forwarding (`/api/x` → `/x`).
    #[serde(default)]
    pub strip_prefix: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WwwRedirect {
    /// Serve only the host itself.
    #[default]
    Off,
    /// Also answer `www.<host>` with a permanent redirect to `<host>`.
    ToApex,
    /// The host starts with `www.`; answer the apex with a redirect to it.
    ToWww,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BasicAuthUser {
    pub username: String,
    /// Write-only: stored as an argon2id hash and never returned. Omit it in
    /// a `PUT` to keep the user's current password.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Path prefix the limit applies to, e.g. `/api/auth/login`.
    pub path: String,
    /// Requests allowed per `per`, 1..=100000.
    pub requests: u32,
    pub per: RatePeriod,
    /// Extra requests allowed in a burst (default 0).
    #[serde(default)]
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RatePeriod {
    Second,
    Minute,
}

impl RatePeriod {
    pub fn seconds(self) -> f64 {
        match self {
            RatePeriod::Second => 1.0,
            RatePeriod::Minute => 60.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Domain {
    pub host: String,
    pub spec: DomainSpec,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /proxy/status`: per domain, what is desired and what is live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ProxyStatus {
    /// `embedded` or `nginx`.
    pub driver: String,
    /// Addresses the embedded proxy listens on (empty with nginx).
    pub listening: Vec<String>,
    /// Counts the route tables swapped in since berth started.
    pub table_version: u64,
    pub domains: Vec<DomainStatus>,
    /// Problems of the driver itself, e.g. the last nginx reload failure.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DomainStatus {
    pub host: String,
    /// Whether the live configuration matches the stored domain.
    pub live: bool,
    /// Why it is not live, or drift the nginx driver found on disk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    pub upstreams: Vec<UpstreamStatus>,
    pub certificate: CertificateState,
    pub requests: u64,
    pub errors_5xx: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UpstreamStatus {
    /// The route's path prefix (`/` for the domain's target).
    pub path: String,
    /// What the target resolves to now, e.g. `172.17.0.4:8080`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `up`, `down` or `unknown` (no request yet).
    pub health: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CertificateState {
    /// `none`, `valid`, `expired` or `invalid`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `POST /domains/{host}/test`: one request through the live proxy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RouteTest {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub elapsed_ms: u64,
    /// Response headers worth seeing (server, content-type, location, …).
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
