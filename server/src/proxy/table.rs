//! The route table: every domain compiled into what a request needs (parsed
//! networks, header values, resolved upstream addresses). Built off to the
//! side and swapped in whole, so a request sees either the old table or the
//! new one, and connections are never dropped for a change.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::api::{DomainSpec, Target, WwwRedirect};
use http::{HeaderName, HeaderValue};
use ipnet::IpNet;

use super::limit::Limiter;
use super::model;

pub struct Table {
    pub version: u64,
    pub hosts: HashMap<String, Entry>,
}

pub enum Entry {
    Site(Arc<Site>),
    /// `www.` alias or apex that permanently redirects to the site's host.
    RedirectTo(Arc<Site>),
}

impl Table {
    pub fn empty() -> Table {
        Table {
            version: 0,
            hosts: HashMap::new(),
        }
    }
}

pub struct Site {
    pub host: String,
    /// Longest prefix first; the last one is `/`.
    pub routes: Vec<Route>,
    pub https_redirect: bool,
    pub hsts: bool,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Username → argon2id PHC string.
    pub users: BTreeMap<String, String>,
    /// Username → SHA-512-crypt hash, for nginx's auth_basic_user_file.
    pub crypt_users: BTreeMap<String, String>,
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    pub limits: Vec<(String, Arc<Limiter>)>,
    pub max_body: u64,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub maintenance_message: Option<String>,
    pub stats: Arc<SiteStats>,
}

pub struct Route {
    pub prefix: String,
    pub strip_prefix: bool,
    pub upstream: Upstream,
    pub health: Arc<Health>,
}

#[derive(Debug, Clone)]
pub enum Upstream {
    /// An HTTP server: `addr` plus a base path from a `url` target.
    Http {
        addr: SocketAddr,
        base: String,
    },
    Static {
        root: PathBuf,
    },
    /// Nothing to send to now (the app is stopped, a name did not resolve).
    Down(String),
}

impl Upstream {
    pub fn describe(&self) -> Option<String> {
        match self {
            Upstream::Http { addr, base } => Some(format!("{addr}{base}")),
            Upstream::Static { root } => Some(root.display().to_string()),
            Upstream::Down(_) => None,
        }
    }
}

/// Whether `path` falls under `prefix`, on whole segments.
pub fn under(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

impl Site {
    /// The longest route covering `path`; the last route is `/`, which
    /// covers every path.
    pub fn route_for(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| under(&r.prefix, path))
    }

    pub fn limit_for(&self, path: &str) -> Option<&Arc<Limiter>> {
        self.limits
            .iter()
            .filter(|(p, _)| under(p, path))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, l)| l)
    }
}

#[derive(Default)]
pub struct SiteStats {
    pub requests: AtomicU64,
    /// Responses by class: 1xx … 5xx.
    pub by_class: [AtomicU64; 5],
    pub micros: AtomicU64,
}

impl SiteStats {
    pub fn record(&self, status: u16, elapsed: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
}

/// What the last request through a route found out about its upstream.
#[derive(Default)]
pub struct Health {
    /// 0 unknown, 1 up, 2 down.
    state: AtomicU8,
    detail: Mutex<Option<String>>,
}

impl Health {
    pub fn up(&self) {
        if self.state.swap(1, Ordering::Relaxed) != 1 {
            *self.detail.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
    pub fn down(&self, why: String) {
        self.state.store(2, Ordering::Relaxed);
        *self.detail.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }
    pub fn read(&self) -> (&'static str, Option<String>) {
        let detail = self
            .detail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match self.state.load(Ordering::Relaxed) {
            1 => ("up", None),
            2 => ("down", detail),
            _ => ("unknown", None),
        }
    }
}

/// State that must survive table swaps: rate-limit buckets, counters and
/// upstream health, keyed by what they belong to.
#[derive(Default)]
pub struct Carry {
    limiters: Mutex<HashMap<String, Arc<Limiter>>>,
    stats: Mutex<HashMap<String, Arc<SiteStats>>>,
    health: Mutex<HashMap<String, Arc<Health>>>,
}

impl Carry {
    fn keep<T>(
        map: &Mutex<HashMap<String, Arc<T>>>,
        used: &mut HashMap<String, Arc<T>>,
        key: String,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        let existing = map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let value = existing.unwrap_or_else(|| Arc::new(make()));
        used.insert(key, value.clone());
        value
    }

    pub fn stats_of(&self, host: &str) -> Option<Arc<SiteStats>> {
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .cloned()
    }
}

/// Everything outside the store a table build needs to know.
pub trait Resolve {
    /// The address of an app's running container.
    fn app(&self, name: &str) -> Result<IpAddr, String>;
    /// A volume's directory on this host.
    fn volume(
        &self,
        name: &str,
    ) -> impl std::future::Future<Output = Result<PathBuf, String>> + Send;
}

/// One stored domain as the builder gets it.
pub struct Stored {
    pub spec: DomainSpec,
    pub hashes: BTreeMap<String, String>,
    pub crypt: BTreeMap<String, String>,
    pub has_certificate: bool,
}

pub async fn build(
    version: u64,
    domains: &[Stored],
    resolve: &impl Resolve,
    carry: &Carry,
) -> Table {
    let mut limiters = HashMap::new();
    let mut stats = HashMap::new();
    let mut health = HashMap::new();
    let mut hosts = HashMap::new();
    let mut aliases = Vec::new();
    for d in domains {
        let spec = &d.spec;
        let mut routes = Vec::new();
        let mut targets: Vec<(&str, bool, &Target)> = spec
            .routes
            .iter()
            .map(|r| (r.path.as_str(), r.strip_prefix, &r.target))
            .collect();
        targets.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.len()));
        targets.push(("/", false, &spec.target));
        for (prefix, strip_prefix, target) in targets {
            let upstream = resolve_target(target, spec.allow_private_upstream, resolve).await;
            routes.push(Route {
                prefix: prefix.to_string(),
                strip_prefix,
                upstream,
                health: Carry::keep(
                    &carry.health,
                    &mut health,
                    format!("{} {prefix} {target:?}", spec.host),
                    Health::default,
                ),
            });
        }
        let site = Arc::new(Site {
            host: spec.host.clone(),
            routes,
            https_redirect: spec.https_redirect.unwrap_or(d.has_certificate),
            hsts: spec.hsts,
            headers: spec
                .headers
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        HeaderName::from_bytes(k.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect(),
            users: d.hashes.clone(),
            crypt_users: d.crypt.clone(),
            allow: parse_all(&spec.allow),
            deny: parse_all(&spec.deny),
            limits: spec
                .rate_limits
                .iter()
                .map(|l| {
                    let key = format!(
                        "{} {} {} {:?} {}",
                        spec.host, l.path, l.requests, l.per, l.burst
                    );
                    let limiter = Carry::keep(&carry.limiters, &mut limiters, key, || {
                        Limiter::new(l.requests, l.per.seconds(), l.burst)
                    });
                    (l.path.clone(), limiter)
                })
                .collect(),
            max_body: spec.max_body_bytes,
            connect_timeout: Duration::from_secs(spec.connect_timeout_s.into()),
            read_timeout: Duration::from_secs(spec.read_timeout_s.into()),
            maintenance_message: spec.maintenance_message.clone(),
            stats: Carry::keep(
                &carry.stats,
                &mut stats,
                spec.host.clone(),
                SiteStats::default,
            ),
        });
        match spec.www {
            WwwRedirect::Off => {}
            WwwRedirect::ToApex => {
                aliases.push((format!("www.{}", spec.host), site.clone()));
            }
            WwwRedirect::ToWww => {
                let apex = spec.host.trim_start_matches("www.").to_string();
                aliases.push((apex, site.clone()));
            }
        }
        hosts.insert(spec.host.clone(), Entry::Site(site));
    }
    // A domain of its own beats another domain's www alias of that name.
    for (alias, site) in aliases {
        hosts.entry(alias).or_insert(Entry::RedirectTo(site));
    }
    *carry.limiters.lock().unwrap_or_else(|p| p.into_inner()) = limiters;
    *carry.stats.lock().unwrap_or_else(|p| p.into_inner()) = stats;
    *carry.health.lock().unwrap_or_else(|p| p.into_inner()) = health;
    Table { version, hosts }
}

fn parse_all(list: &[String]) -> Vec<IpNet> {
    list.iter()
        .filter_map(|s| model::parse_network("", s).ok())
        .collect()
}

async fn resolve_target(target: &Target, allow_private: bool, resolve: &impl Resolve) -> Upstream {
    match target {
        Target::App { app, port } => match resolve.app(app) {
            Ok(ip) => Upstream::Http {
                addr: SocketAddr::new(ip, *port),
                base: String::new(),
            },
            Err(why) => Upstream::Down(why),
        },
        Target::Url { url } => match resolve_url(url, allow_private).await {
            Ok((addr, base)) => Upstream::Http { addr, base },
            Err(why) => Upstream::Down(why),
        },
        Target::Static { volume, dir } => match resolve.volume(volume).await {
            Ok(root) => Upstream::Static {
                root: match dir {
                    Some(d) => root.join(d),
                    None => root,
                },
            },
            Err(why) => Upstream::Down(why),
        },
    }
}

/// Resolves a `url` target's host now, and checks every address it gets,
/// so a name cannot later be pointed at a metadata endpoint.
async fn resolve_url(url: &str, allow_private: bool) -> Result<(SocketAddr, String), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("{url} is not a URL"))?;
    let host = uri.host().ok_or("the URL has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let base = uri.path().trim_end_matches('/').to_string();
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("{host} does not resolve: {e}"))?
            .collect(),
    };
    let first = *addrs.first().ok_or(format!("{host} has no address"))?;
    for a in &addrs {
        model::check_upstream_ip("url", a.ip(), allow_private)
            .map_err(|e| format!("{host} resolves to a refused address: {e}"))?;
    }
    Ok((first, base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(under("/", "/anything"));
        assert!(under("/api", "/api"));
        assert!(under("/api", "/api/x"));
        assert!(!under("/api", "/apix"));
        assert!(!under("/api", "/"));
    }

    #[tokio::test]
    async fn names_resolving_to_metadata_addresses_are_down() {
        let err = resolve_url("http://169.254.169.254/x", true)
            .await
            .unwrap_err();
        assert!(err.contains("refused"), "{err}");
        let (addr, base) = resolve_url("http://localhost:8080/base/", true)
            .await
            .unwrap();
        assert_eq!(addr.port(), 8080);
        assert_eq!(base, "/base");
        assert!(resolve_url("http://localhost:8080", false).await.is_err());
    }
}
