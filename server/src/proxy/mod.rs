//! Domains and the reverse proxy in front of the apps. The store holds the
//! domains; `Proxy::rebuild` compiles them (with the apps' current container
//! addresses and the certificates on disk) into a route table and hands it
//! to the driver: the embedded hyper + rustls proxy swaps it in atomically,
//! the nginx driver renders, checks, swaps and reloads files.

pub mod certs;
pub mod handler;
pub mod limit;
pub mod model;
pub mod nginx;
pub mod routes;
pub mod server;
pub mod statics;
pub mod table;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::api::{
    CertificateState, Domain, DomainSpec, DomainStatus, ProxyStatus, RouteTest, UpstreamStatus,
};
use sqlx::{Row, SqlitePool};

use crate::apps::Apps;
use crate::config::{ProxyConfig, ProxyDriver};
use crate::http::error::ApiError;
use handler::Shared;
use table::{Carry, Entry, Stored};

/// Re-resolve names and re-read the certificate directory this often even
/// when nothing announced a change.
const REFRESH: Duration = Duration::from_secs(30);

/// A stored domain: spec, users' hashes, created and updated times.
type DomainRow = (DomainSpec, BTreeMap<String, UserHashes>, i64, i64);

fn decode_row(r: &sqlx::sqlite::SqliteRow) -> Result<DomainRow, ApiError> {
    Ok((
        decode(r.get::<&str, _>("spec"))?,
        decode(r.get::<&str, _>("auth_hashes"))?,
        r.get("created_at"),
        r.get("updated_at"),
    ))
}

/// Basic-auth password hashes of one user. `crypt` (SHA-512-crypt) exists
/// only when the nginx driver is in use, since nginx cannot check argon2.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct UserHashes {
    pub argon2: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crypt: Option<String>,
}

pub struct Proxy {
    db: SqlitePool,
    apps: Arc<Apps>,
    pub shared: Arc<Shared>,
    config: ProxyConfig,
    certs_dir: PathBuf,
    carry: Carry,
    version: AtomicU64,
    /// One rebuild at a time, so tables are swapped in the order built.
    rebuilding: tokio::sync::Mutex<()>,
    /// Addresses actually listened on.
    listening: Mutex<Vec<SocketAddr>>,
    /// Driver-level problems: a listener that could not bind, unreadable
    /// certificates, the last nginx failure.
    errors: Mutex<Vec<String>>,
    nginx: Option<nginx::Nginx>,
    /// Bumped after every stored change of the domains.
    domains_changed: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    pub fn new(
        db: SqlitePool,
        apps: Arc<Apps>,
        config: ProxyConfig,
        data_dir: &std::path::Path,
        trusted_proxies: Vec<ipnet::IpNet>,
    ) -> Proxy {
        let nginx = match config.driver {
            ProxyDriver::Nginx => Some(nginx::Nginx::new(config.nginx.clone())),
            ProxyDriver::Embedded => None,
        };
        Proxy {
            db,
            apps,
            shared: Arc::new(Shared::new(trusted_proxies, config.access_log)),
            certs_dir: data_dir.join("certs"),
            config,
            carry: Carry::default(),
            version: AtomicU64::new(0),
            rebuilding: tokio::sync::Mutex::new(()),
            listening: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            nginx,
            domains_changed: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn driver(&self) -> ProxyDriver {
        self.config.driver
    }

    /// Binds the embedded proxy's listeners (a port that cannot be bound is
    /// reported, not fatal: the panel must stay reachable to fix it) and
    /// serves them for the life of the process.
    pub fn listen(&self) {
        if self.config.driver != ProxyDriver::Embedded {
            return;
        }
        let tls = server::tls_config(&self.shared);
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut shares: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
        for (addr, tls) in [(self.config.http, None), (self.config.https, Some(tls))] {
            let Some(addr) = addr else { continue };
            let is_tls = tls.is_some();
            match server::bind_shared(addr, workers) {
                Ok(listeners) => {
                    let bound = listeners
                        .first()
                        .and_then(|l| l.local_addr().ok())
                        .unwrap_or(addr);
                    if is_tls {
                        self.shared
                            .https_port
                            .store(bound.port(), Ordering::Relaxed);
                    }
                    tracing::info!(address = %bound, tls = is_tls, workers, "proxy listening");
                    self.lock_listening().push(bound);
                    for (share, listener) in shares.iter_mut().zip(listeners) {
                        share.push((listener, tls.clone()));
                    }
                }
                Err(e) => {
                    let why = format!("cannot listen on {addr}: {e}");
                    tracing::error!("proxy {why}");
                    self.lock_errors().push(why);
                }
            }
        }
        for (index, share) in shares.into_iter().enumerate() {
            if share.is_empty() {
                continue;
            }
            if let Err(e) = server::spawn_worker(index, share, self.shared.clone()) {
                let why = format!("cannot start proxy worker {index}: {e}");
                tracing::error!("{why}");
                self.lock_errors().push(why);
            }
        }
    }

    fn lock_listening(&self) -> std::sync::MutexGuard<'_, Vec<SocketAddr>> {
        self.listening.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_errors(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes an ACME HTTP-01 answer: in the embedded proxy's map, and
    /// with nginx as a file in the directory nginx serves it from.
    pub fn present_challenge(&self, token: &str, key_authorization: &str) -> Result<(), String> {
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("the CA sent a malformed challenge token".into());
        }
        if self.nginx.is_some() {
            let dir = &self.config.nginx.challenge_dir;
            std::fs::create_dir_all(dir)
                .and_then(|_| std::fs::write(dir.join(token), key_authorization))
                .map_err(|e| format!("cannot write the challenge for nginx: {e}"))?;
        }
        self.shared
            .challenges
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_string(), key_authorization.to_string());
        Ok(())
    }

    pub fn withdraw_challenge(&self, token: &str) {
        self.shared
            .challenges
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
        if self.nginx.is_some() && !token.contains('/') {
            let _ = std::fs::remove_file(self.config.nginx.challenge_dir.join(token));
        }
    }

    /// Address of the listener that serves HTTPS (the embedded proxy's or
    /// nginx's), for the expiry probe.
    pub fn https_address(&self) -> Option<SocketAddr> {
        let addr = match &self.nginx {
            Some(_) => Some(self.config.nginx.https),
            None => self
                .addresses()
                .into_iter()
                .find(|a| a.port() == self.shared.https_port.load(Ordering::Relaxed)),
        };
        addr.map(reachable)
    }

    /// Tells who listens (the certificates service) that the set of domains
    /// changed.
    pub fn subscribe_domains(&self) -> tokio::sync::watch::Receiver<u64> {
        self.domains_changed.subscribe()
    }

    /// Hosts served over HTTPS with the names a certificate for each should
    /// cover (the host and its `www` alias), for those that want one ordered
    /// automatically; and every host berth serves.
    pub async fn certificate_wishes(&self) -> Result<Vec<(String, Vec<String>, bool)>, ApiError> {
        Ok(self
            .rows()
            .await?
            .into_iter()
            .map(|(spec, _, _, _)| {
                let mut names = vec![spec.host.clone()];
                names.extend(alias_of(&spec));
                (spec.host.clone(), names, spec.auto_certificate)
            })
            .collect())
    }

    /// Certificates berth manages (from the store) to serve besides the
    /// files in the certificate directory; swapped in at the next rebuild.
    pub fn set_managed_certificates(&self, managed: Vec<certs::Loaded>) {
        self.shared.certs.set_managed(managed);
    }

    /// The embedded listeners' addresses (`[http, https]` when both bound).
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.lock_listening().clone()
    }

    /// Rebuilds on every change of the apps' containers and every
    /// `REFRESH`, for the life of the process.
    pub async fn follow(self: Arc<Self>) {
        let mut changes = self.apps.subscribe();
        loop {
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(REFRESH) => {}
            }
            // Container events come in bursts (stop, die, start): settle first.
            tokio::time::sleep(Duration::from_millis(20)).await;
            changes.mark_unchanged();
            if let Err(e) = self.rebuild_with(false).await {
                tracing::warn!(error = %e, "proxy rebuild failed");
            }
        }
    }

    // ---- store ----------------------------------------------------------

    async fn rows(&self) -> Result<Vec<DomainRow>, ApiError> {
        sqlx::query("SELECT spec, auth_hashes, created_at, updated_at FROM domains ORDER BY host")
            .fetch_all(&self.db)
            .await?
            .iter()
            .map(decode_row)
            .collect()
    }

    async fn row(&self, host: &str) -> Result<Option<DomainRow>, ApiError> {
        sqlx::query("SELECT spec, auth_hashes, created_at, updated_at FROM domains WHERE host = ?")
            .bind(host)
            .fetch_optional(&self.db)
            .await?
            .as_ref()
            .map(decode_row)
            .transpose()
    }

    pub async fn list(&self) -> Result<Vec<Domain>, ApiError> {
        Ok(self
            .rows()
            .await?
            .into_iter()
            .map(|(spec, _, c, u)| view(spec, c, u))
            .collect())
    }

    pub async fn get(&self, host: &str) -> Result<Domain, ApiError> {
        let host = lookup_key(host)?;
        match self.row(&host).await? {
            Some((spec, _, c, u)) => Ok(view(spec, c, u)),
            None => Err(not_found(&host)),
        }
    }

    /// Hashes new basic-auth passwords, keeps the hashes of users given
    /// without one, and drops the passwords from the spec.
    async fn hashes_for(
        &self,
        spec: &mut DomainSpec,
        before: &BTreeMap<String, UserHashes>,
    ) -> Result<BTreeMap<String, UserHashes>, ApiError> {
        let mut out = BTreeMap::new();
        for (i, user) in spec.basic_auth.iter_mut().enumerate() {
            let hashes = match user.password.take() {
                Some(p) => {
                    let argon2 = self.shared.passwords.hash(p.clone()).await?;
                    let crypt = match self.config.driver {
                        ProxyDriver::Nginx => Some(nginx::crypt_hash(&p)?),
                        ProxyDriver::Embedded => None,
                    };
                    UserHashes { argon2, crypt }
                }
                None => before.get(&user.username).cloned().ok_or_else(|| {
                    ApiError::invalid(
                        format!("basic_auth[{i}].password"),
                        "a new user needs a password",
                    )
                })?,
            };
            out.insert(user.username.clone(), hashes);
        }
        Ok(out)
    }

    /// What `create` (no `host`) or `update` would store, without storing:
    /// the same validation, passwords dropped.
    pub async fn check(&self, spec: DomainSpec, host: Option<&str>) -> Result<Domain, ApiError> {
        let key = host.map(lookup_key).transpose()?;
        let existing = match &key {
            Some(k) => Some(self.row(k).await?.ok_or_else(|| not_found(k))?),
            None => None,
        };
        let mut spec = model::validate(spec, key.as_deref())?;
        if existing.is_none() && self.row(&spec.host).await?.is_some() {
            return Err(ApiError::Conflict(format!(
                "the domain {} already exists",
                spec.host
            )));
        }
        self.check_alias_clash(&spec).await?;
        let before = existing.map(|(_, h, _, _)| h).unwrap_or_default();
        for (i, user) in spec.basic_auth.iter_mut().enumerate() {
            if user.password.take().is_none() && !before.contains_key(&user.username) {
                return Err(ApiError::invalid(
                    format!("basic_auth[{i}].password"),
                    "a new user needs a password",
                ));
            }
        }
        let now = crate::store::now();
        Ok(view(spec, now, now))
    }

    /// Stores a new domain and makes it live; `Conflict` if it exists.
    pub async fn create(&self, spec: DomainSpec) -> Result<Domain, ApiError> {
        let mut spec = model::validate(spec, None)?;
        if self.row(&spec.host).await?.is_some() {
            return Err(ApiError::Conflict(format!(
                "the domain {} already exists",
                spec.host
            )));
        }
        self.check_alias_clash(&spec).await?;
        let hashes = self.hashes_for(&mut spec, &BTreeMap::new()).await?;
        let now = crate::store::now();
        let inserted = sqlx::query(
            "INSERT INTO domains (host, spec, auth_hashes, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (host) DO NOTHING",
        )
        .bind(&spec.host)
        .bind(encode(&spec)?)
        .bind(encode(&hashes)?)
        .bind(now)
        .bind(now)
        .execute(&self.db)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(ApiError::Conflict(format!(
                "the domain {} already exists",
                spec.host
            )));
        }
        self.commit().await?;
        self.get(&spec.host).await
    }

    /// Replaces a domain's spec and makes it live.
    pub async fn update(&self, host: &str, spec: DomainSpec) -> Result<Domain, ApiError> {
        let host = lookup_key(host)?;
        let Some((_, before, _, _)) = self.row(&host).await? else {
            return Err(not_found(&host));
        };
        let mut spec = model::validate(spec, Some(&host))?;
        self.check_alias_clash(&spec).await?;
        let hashes = self.hashes_for(&mut spec, &before).await?;
        sqlx::query("UPDATE domains SET spec = ?, auth_hashes = ?, updated_at = ? WHERE host = ?")
            .bind(encode(&spec)?)
            .bind(encode(&hashes)?)
            .bind(crate::store::now())
            .bind(&host)
            .execute(&self.db)
            .await?;
        self.commit().await?;
        self.get(&host).await
    }

    pub async fn delete(&self, host: &str) -> Result<(), ApiError> {
        let host = lookup_key(host)?;
        let done = sqlx::query("DELETE FROM domains WHERE host = ?")
            .bind(&host)
            .execute(&self.db)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(&host));
        }
        self.commit().await
    }

    /// A `www` alias may not be another domain, and vice versa.
    async fn check_alias_clash(&self, spec: &DomainSpec) -> Result<(), ApiError> {
        let mine = alias_of(spec);
        for (other, _, _, _) in self.rows().await? {
            if other.host == spec.host {
                continue;
            }
            if mine.as_deref() == Some(other.host.as_str()) {
                return Err(ApiError::invalid(
                    "www",
                    format!("{} is a domain of its own", other.host),
                ));
            }
            if alias_of(&other).as_deref() == Some(spec.host.as_str()) {
                return Err(ApiError::invalid(
                    "host",
                    format!("{} already redirects this host", other.host),
                ));
            }
        }
        Ok(())
    }

    /// After a store change: rebuild, and with nginx, report a failed
    /// reload as the request's failure (the change is stored and the
    /// previous configuration stays live).
    async fn commit(&self) -> Result<(), ApiError> {
        self.domains_changed.send_modify(|v| *v += 1);
        self.rebuild().await.map_err(|e| {
            ApiError::ApplyFailed(format!("saved, but the proxy did not take it: {e}"))
        })
    }

    // ---- the live table ---------------------------------------------------

    /// Compiles the stored domains and hands the table to the driver.
    pub async fn rebuild(&self) -> Result<(), String> {
        self.rebuild_with(true).await
    }

    /// `force: false` (a container event or the periodic refresh) lets the
    /// nginx driver skip a render nginx refused moments ago.
    async fn rebuild_with(&self, force: bool) -> Result<(), String> {
        let _one = self.rebuilding.lock().await;
        let cert_problems = self.shared.certs.rescan(&self.certs_dir);
        let rows = self.rows().await.map_err(|e| e.to_string())?;
        let stored: Vec<Stored> = rows
            .into_iter()
            .map(|(spec, hashes, _, _)| Stored {
                has_certificate: self.shared.certs.find(&spec.host).is_some(),
                hashes: hashes
                    .iter()
                    .map(|(u, h)| (u.clone(), h.argon2.clone()))
                    .collect(),
                crypt: hashes
                    .into_iter()
                    .filter_map(|(u, h)| Some((u, h.crypt?)))
                    .collect(),
                spec,
            })
            .collect();
        let version = self.version.fetch_add(1, Ordering::Relaxed) + 1;
        let table = table::build(version, &stored, &Resolver(&self.apps), &self.carry).await;
        let outcome = match &self.nginx {
            None => {
                self.shared.table.store(Arc::new(table));
                Ok(())
            }
            Some(nginx) => {
                let result = if force {
                    nginx.apply(&table, &self.shared.certs).await
                } else {
                    nginx.reconcile(&table, &self.shared.certs).await
                };
                // The status page reads the table either way; nginx's own
                // state is reported as drift.
                self.shared.table.store(Arc::new(table));
                result
            }
        };
        let mut errors = self.lock_errors();
        errors.retain(|e| e.starts_with("cannot listen"));
        errors.extend(cert_problems);
        if let Err(e) = &outcome {
            errors.push(format!("nginx: {e}"));
        }
        outcome
    }

    pub fn status(&self) -> ProxyStatus {
        let table = self.shared.table.load();
        let drift = match &self.nginx {
            Some(n) => n.drift(&table, &self.shared.certs),
            None => Default::default(),
        };
        let mut domains: Vec<DomainStatus> = table
            .hosts
            .iter()
            .filter_map(|(host, e)| match e {
                Entry::Site(site) if &site.host == host => Some(site),
                _ => None,
            })
            .map(|site| {
                let cert = self.shared.certs.find(&site.host);
                let now = crate::store::now();
                let certificate = match cert {
                    None => CertificateState {
                        state: "none".into(),
                        not_after: None,
                        source: None,
                    },
                    Some(c) => CertificateState {
                        state: if c.not_after < now {
                            "expired"
                        } else {
                            "valid"
                        }
                        .into(),
                        not_after: Some(crate::store::rfc3339(c.not_after)),
                        source: Some(c.source),
                    },
                };
                let upstreams: Vec<UpstreamStatus> = site
                    .routes
                    .iter()
                    .map(|r| {
                        let (health, detail) = r.health.read();
                        let (health, detail) = match &r.upstream {
                            table::Upstream::Down(why) => ("down", Some(why.clone())),
                            _ => (health, detail),
                        };
                        UpstreamStatus {
                            path: r.prefix.clone(),
                            address: r.upstream.describe(),
                            health: health.into(),
                            detail,
                        }
                    })
                    .collect();
                let mut problems: Vec<String> = upstreams
                    .iter()
                    .filter(|u| u.health == "down")
                    .map(|u| {
                        format!(
                            "{}: {}",
                            u.path,
                            u.detail.as_deref().unwrap_or("upstream down")
                        )
                    })
                    .collect();
                let drifted = drift.get(&site.host).cloned().unwrap_or_default();
                let live = drifted.is_empty();
                problems.extend(drifted);
                DomainStatus {
                    host: site.host.clone(),
                    live,
                    problems,
                    upstreams,
                    certificate,
                    requests: site.stats.requests.load(Ordering::Relaxed),
                    errors_5xx: site.stats.by_class[4].load(Ordering::Relaxed),
                }
            })
            .collect();
        domains.sort_by(|a, b| a.host.cmp(&b.host));
        // Drift about hosts berth has no domain for: files left behind.
        let mut errors = self.lock_errors().clone();
        for (host, problems) in &drift {
            if !domains.iter().any(|d| &d.host == host) {
                errors.extend(problems.iter().map(|p| format!("{host}: {p}")));
            }
        }
        ProxyStatus {
            driver: match self.config.driver {
                ProxyDriver::Embedded => "embedded".into(),
                ProxyDriver::Nginx => "nginx".into(),
            },
            listening: self.addresses().iter().map(|a| a.to_string()).collect(),
            table_version: table.version,
            domains,
            errors,
        }
    }

    /// Sends `GET /` for `host` through the live proxy's HTTP listener (or
    /// nginx's) from this host, and reports what came back.
    pub async fn test_route(&self, host: &str, path: &str) -> Result<RouteTest, ApiError> {
        let host = lookup_key(host)?;
        if self.row(&host).await?.is_none() {
            return Err(not_found(&host));
        }
        let target = match &self.nginx {
            Some(n) => n.http_address(),
            None => self
                .addresses()
                .first()
                .copied()
                .filter(|_| self.config.http.is_some()),
        };
        let Some(addr) = target else {
            return Err(ApiError::Conflict(
                "the proxy has no plain HTTP listener to test through".into(),
            ));
        };
        Ok(probe(reachable(addr), &host, path).await)
    }
}

/// A listening address as this host reaches it: a wildcard bind (0.0.0.0)
/// is connected to on loopback.
fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}

/// One request over a fresh connection, with the given Host.
async fn probe(addr: SocketAddr, host: &str, path: &str) -> RouteTest {
    use http_body_util::BodyExt;
    let url = format!("http://{host}{path}");
    let started = std::time::Instant::now();
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "berth-route-test")
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let headers: BTreeMap<String, String> = resp
            .headers()
            .iter()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "server"
                        | "content-type"
                        | "location"
                        | "content-length"
                        | "www-authenticate"
                        | "retry-after"
                )
            })
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        // Read (and drop) the body so the timing covers the whole answer.
        let _ = resp.into_body().collect().await;
        Ok::<_, anyhow::Error>((status, headers))
    };
    match tokio::time::timeout(Duration::from_secs(15), attempt).await {
        Ok(Ok((status, headers))) => RouteTest {
            url,
            status: Some(status),
            elapsed_ms: started.elapsed().as_millis() as u64,
            headers,
            error: None,
        },
        Ok(Err(e)) => RouteTest {
            url,
            status: None,
            elapsed_ms: started.elapsed().as_millis() as u64,
            headers: BTreeMap::new(),
            error: Some(format!("{e:#}")),
        },
        Err(_) => RouteTest {
            url,
            status: None,
            elapsed_ms: started.elapsed().as_millis() as u64,
            headers: BTreeMap::new(),
            error: Some("no answer within 15 s".into()),
        },
    }
}

/// The table builder's view of the apps and volumes.
struct Resolver<'a>(&'a Apps);

impl table::Resolve for Resolver<'_> {
    fn app(&self, name: &str) -> Result<std::net::IpAddr, String> {
        self.0.address_of(name)
    }

    async fn volume(&self, name: &str) -> Result<PathBuf, String> {
        let docker = self.0.engine.docker().map_err(|e| e.to_string())?;
        let volume = docker
            .inspect_volume(name)
            .await
            .map_err(|e| format!("volume {name}: {e}"))?;
        Ok(PathBuf::from(volume.mountpoint))
    }
}

fn alias_of(spec: &DomainSpec) -> Option<String> {
    match spec.www {
        app::api::WwwRedirect::Off => None,
        app::api::WwwRedirect::ToApex => Some(format!("www.{}", spec.host)),
        app::api::WwwRedirect::ToWww => Some(spec.host.trim_start_matches("www.").to_string()),
    }
}

/// Hosts in URLs are looked up in their stored (punycode) form.
fn lookup_key(host: &str) -> Result<String, ApiError> {
    model::normalize_host("host", host).map_err(|_| not_found(host))
}

fn not_found(host: &str) -> ApiError {
    ApiError::NotFound(format!("no domain {host}"))
}

fn view(spec: DomainSpec, created: i64, updated: i64) -> Domain {
    Domain {
        host: spec.host.clone(),
        spec,
        created_at: crate::store::rfc3339(created),
        updated_at: crate::store::rfc3339(updated),
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String, ApiError> {
    serde_json::to_string(v).map_err(|e| ApiError::Internal(e.into()))
}

fn decode<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, ApiError> {
    serde_json::from_str(s)
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("unreadable domain row")))
}
