//! One request through the embedded proxy: ACME challenge, host lookup,
//! redirects, access lists, basic auth, rate limit, body limit, then the
//! route's upstream (an HTTP server, a volume's files, or the maintenance
//! page when there is nothing to send to).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ipnet::IpNet;
use sha2::{Digest, Sha256};

use super::certs::CertStore;
use super::table::{Entry, Route, Site, Table, Upstream};
use crate::auth::password::Passwords;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

const ACME_PREFIX: &str = "/.well-known/acme-challenge/";
/// Successful basic-auth checks remembered, so argon2 runs once per
/// credential rather than once per request.
const AUTH_CACHE: usize = 10_000;
const HSTS: &str = "max-age=31536000";

/// Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection and
/// are never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What every connection of the proxy shares.
pub struct Shared {
    pub table: ArcSwap<Table>,
    pub certs: Arc<CertStore>,
    /// ACME HTTP-01 tokens → key authorisations (the certificates capability
    /// fills this).
    pub challenges: RwLock<HashMap<String, String>>,
    pub trusted_proxies: Vec<IpNet>,
    pub passwords: Passwords,
    auth_cache: Mutex<HashSet<[u8; 32]>>,
    /// Port of the HTTPS listener, for redirects (omitted when 443).
    pub https_port: std::sync::atomic::AtomicU16,
    pub access_log: bool,
}

impl Shared {
    pub fn new(trusted_proxies: Vec<IpNet>, access_log: bool) -> Shared {
        Shared {
            table: ArcSwap::from_pointee(Table::empty()),
            certs: Arc::new(CertStore::default()),
            challenges: RwLock::new(HashMap::new()),
            trusted_proxies,
            passwords: Passwords::default(),
            auth_cache: Mutex::new(HashSet::new()),
            https_port: 443.into(),
            access_log,
        }
    }
}

thread_local! {
    /// Pooled upstream clients of this proxy worker, one per connect timeout
    /// in use. Per thread: each worker runs its own single-threaded runtime,
    /// and a pooled connection must live on the runtime that uses it.
    static CLIENTS: std::cell::RefCell<HashMap<Duration, Client<HttpConnector, Body>>> =
        std::cell::RefCell::new(HashMap::new());
}

fn upstream_client(connect_timeout: Duration) -> Client<HttpConnector, Body> {
    CLIENTS.with(|clients| {
        clients
            .borrow_mut()
            .entry(connect_timeout)
            .or_insert_with(|| {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(connect_timeout));
                connector.set_nodelay(true);
                connector.enforce_http(true);
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .pool_max_idle_per_host(256)
                    .build(connector)
            })
            .clone()
    })
}

/// The connection a request arrived on.
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
    pub sni: Option<String>,
}

pub fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(full(format!("{text}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

fn redirect(location: &str) -> Response<Body> {
    let mut r = plain(StatusCode::PERMANENT_REDIRECT, "moved");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The request's host, lowercase, without port: from the URI (HTTP/2) or
/// the Host header (HTTP/1.1).
fn request_host(req: &Request<Incoming>) -> Option<String> {
    let raw = match req.uri().authority() {
        Some(a) => a.host().to_string(),
        None => {
            let h = req.headers().get(header::HOST)?.to_str().ok()?;
            h.parse::<http::uri::Authority>().ok()?.host().to_string()
        }
    };
    Some(raw.trim_end_matches('.').to_ascii_lowercase())
}

/// Entry point: never fails; every problem becomes a response.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    // Kept for the access log only: the request itself moves on.
    let logged = shared
        .access_log
        .then(|| (req.method().clone(), req.uri().path().to_string()));
    let host = request_host(&req);
    let client = client_ip(&shared, &conn, req.headers());
    let (response, site) = route(&shared, &conn, host.as_deref(), client, req).await;
    let status = response.status().as_u16();
    if let Some(site) = &site {
        site.stats.record(status, started.elapsed());
    }
    if let Some((method, path)) = logged {
        tracing::info!(
            target: "berth::access",
            host = host.as_deref().unwrap_or("-"),
            client = %client,
            method = %method,
            path = %path,
            status,
            ms = started.elapsed().as_secs_f64() * 1000.0,
        );
    }
    Ok(response)
}

fn client_ip(shared: &Shared, conn: &Conn, headers: &HeaderMap) -> IpAddr {
    let peer = conn.peer.ip();
    // Most clients are not proxies berth trusts: skip reading the header.
    if !shared.trusted_proxies.iter().any(|n| n.contains(&peer)) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    crate::http::client_ip::resolve(peer, &forwarded, &shared.trusted_proxies)
}

async fn route(
    shared: &Shared,
    conn: &Conn,
    host: Option<&str>,
    client: IpAddr,
    req: Request<Incoming>,
) -> (Response<Body>, Option<Arc<Site>>) {
    let Some(host) = host else {
        return (plain(StatusCode::BAD_REQUEST, "no Host header"), None);
    };
    // Answered for any host, before any route: the CA asks before the
    // domain's certificate (or even its route) exists.
    if let Some(token) = req.uri().path().strip_prefix(ACME_PREFIX) {
        let answer = shared
            .challenges
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        return match answer {
            Some(key_auth) => {
                let mut r = Response::new(full(key_auth));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                (r, None)
            }
            None => (plain(StatusCode::NOT_FOUND, "unknown challenge"), None),
        };
    }
    // A TLS connection opened for one name is not used for another site
    // (421 makes the browser open a connection for the right one).
    if let Some(sni) = &conn.sni {
        if sni != host {
            return (
                plain(StatusCode::MISDIRECTED_REQUEST, "misdirected request"),
                None,
            );
        }
    }
    let table = shared.table.load();
    let site = match table.hosts.get(host) {
        None => return (plain(StatusCode::NOT_FOUND, "unknown host"), None),
        Some(Entry::RedirectTo(site)) => {
            let scheme = if conn.tls { "https" } else { "http" };
            let location = format!(
                "{scheme}://{}{}{}",
                site.host,
                port_suffix(shared, conn),
                path_and_query(req.uri())
            );
            return (redirect(&location), Some(site.clone()));
        }
        Some(Entry::Site(site)) => site.clone(),
    };
    drop(table);
    let mut response = serve_site(shared, conn, &site, host, client, req).await;
    finish_headers(&site, conn, response.headers_mut());
    (response, Some(site))
}

fn port_suffix(shared: &Shared, conn: &Conn) -> String {
    if !conn.tls {
        // Redirects on the HTTP listener keep the host's plain port out.
        return String::new();
    }
    https_port_suffix(shared)
}

/// `:port` of the HTTPS listener for redirect URLs, empty on 443.
fn https_port_suffix(shared: &Shared) -> String {
    match shared.https_port.load(std::sync::atomic::Ordering::Relaxed) {
        443 => String::new(),
        p => format!(":{p}"),
    }
}

fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |pq| pq.as_str())
}

async fn serve_site(
    shared: &Shared,
    conn: &Conn,
    site: &Site,
    host: &str,
    client: IpAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    if !conn.tls && site.https_redirect {
        let port = https_port_suffix(shared);
        return redirect(&format!(
            "https://{host}{port}{}",
            path_and_query(req.uri())
        ));
    }
    if site.deny.iter().any(|n| n.contains(&client))
        || (!site.allow.is_empty() && !site.allow.iter().any(|n| n.contains(&client)))
    {
        return plain(StatusCode::FORBIDDEN, "forbidden");
    }
    if !site.users.is_empty() && !authorised(shared, site, req.headers()).await {
        let mut r = plain(StatusCode::UNAUTHORIZED, "authentication required");
        let challenge = format!("Basic realm=\"{}\", charset=\"UTF-8\"", site.host);
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        return r;
    }
    let path = req.uri().path().to_string();
    if let Some(limiter) = site.limit_for(&path) {
        if let Err(wait) = limiter.check(client, Instant::now()) {
            let mut r = plain(StatusCode::TOO_MANY_REQUESTS, "too many requests");
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs().max(1)),
            );
            return r;
        }
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > site.max_body) {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let Some(route) = site.route_for(&path) else {
        return plain(StatusCode::NOT_FOUND, "no route");
    };
    let forwarded_path = if route.strip_prefix {
        match path.get(route.prefix.len()..) {
            Some("") | None => "/".to_string(),
            Some(rest) => rest.to_string(),
        }
    } else {
        path.clone()
    };
    match &route.upstream {
        Upstream::Down(why) => {
            route.health.down(why.clone());
            maintenance(site)
        }
        Upstream::Static { root } => {
            super::statics::serve(root, req.method(), &forwarded_path).await
        }
        Upstream::Http { addr, base } => {
            let target = Forward {
                addr: *addr,
                path: format!("{base}{forwarded_path}"),
                host,
                client,
            };
            forward(shared, conn, site, route, target, req).await
        }
    }
}

/// Adds what the site promises on every response it answers.
fn finish_headers(site: &Site, conn: &Conn, headers: &mut HeaderMap) {
    if conn.tls && site.hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    for (name, value) in &site.headers {
        headers.insert(name.clone(), value.clone());
    }
}

async fn authorised(shared: &Shared, site: &Site, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return false;
    };
    let Some((user, password)) = decoded.split_once(':') else {
        return false;
    };
    let Some(hash) = site.users.get(user) else {
        return false;
    };
    // The cache key covers the stored hash, so a password change (a new
    // hash) forgets the old credential at once.
    let key: [u8; 32] = Sha256::new()
        .chain_update(site.host.as_bytes())
        .chain_update([0])
        .chain_update(decoded.as_bytes())
        .chain_update([0])
        .chain_update(hash.as_bytes())
        .finalize()
        .into();
    if shared
        .auth_cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&key)
    {
        return true;
    }
    let ok = shared
        .passwords
        .verify(password.to_string(), Some(hash.clone()))
        .await
        .unwrap_or(false);
    if ok {
        let mut cache = shared.auth_cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= AUTH_CACHE {
            cache.clear();
        }
        cache.insert(key);
    }
    ok
}

fn maintenance(site: &Site) -> Response<Body> {
    let message = site
        .maintenance_message
        .as_deref()
        .unwrap_or("This site is down for maintenance. Please try again in a few minutes.");
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{host} is unavailable</title><style>body{{font-family:system-ui,sans-serif;\
         max-width:34rem;margin:12vh auto;padding:0 1rem;color:#222}}</style></head>\
         <body><h1>{host} is unavailable</h1><p>{message}</p></body></html>\n",
        host = escape(&site.host),
        message = escape(message),
    );
    let mut r = Response::new(full(page));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Forward<'a> {
    addr: SocketAddr,
    path: String,
    host: &'a str,
    client: IpAddr,
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Removes hop-by-hop headers, including any the Connection header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

async fn forward(
    shared: &Shared,
    conn: &Conn,
    site: &Site,
    route: &Route,
    target: Forward<'_>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let upgrade = is_upgrade(req.headers()).then(|| {
        let protocol = req.headers().get(header::UPGRADE).cloned();
        (hyper::upgrade::on(&mut req), protocol)
    });
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let Ok(uri) = format!("http://{}{}{query}", target.addr, target.path).parse::<Uri>() else {
        return plain(StatusCode::BAD_REQUEST, "bad request path");
    };
    let (mut parts, body) = req.into_parts();
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    if let Some((_, Some(protocol))) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }
    set_forwarded(shared, conn, &target, headers);

    let limit = usize::try_from(site.max_body).unwrap_or(usize::MAX);
    let body: Body = if upgrade.is_some() {
        full(Bytes::new())
    } else {
        Limited::new(body, limit).boxed()
    };
    let request = Request::from_parts(parts, body);
    let client = upstream_client(site.connect_timeout);
    let deadline = site.connect_timeout + site.read_timeout;
    let mut response = match tokio::time::timeout(deadline, client.request(request)).await {
        Err(_) => {
            route
                .health
                .down(format!("no response within {}s", deadline.as_secs()));
            return plain(
                StatusCode::GATEWAY_TIMEOUT,
                "the upstream did not answer in time",
            );
        }
        Ok(Err(e)) => {
            if body_too_large(&e) {
                return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
            }
            route.health.down(describe_error(&e));
            if e.is_connect() {
                return maintenance(site);
            }
            return plain(StatusCode::BAD_GATEWAY, "the upstream failed to answer");
        }
        Ok(Ok(r)) => r,
    };
    route.health.up();

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some((client_upgrade, _)) = upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                let (Ok(client_io), Ok(upstream_io)) =
                    tokio::join!(client_upgrade, upstream_upgrade)
                else {
                    return;
                };
                let mut a = TokioIo::new(client_io);
                let mut b = TokioIo::new(upstream_io);
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            });
            let (parts, _) = response.into_parts();
            return Response::from_parts(parts, full(Bytes::new()));
        }
    }
    strip_hop_by_hop(response.headers_mut());
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed())
}

/// X-Forwarded-For/Proto/Host and X-Real-IP. A trusted proxy in front of
/// berth keeps its chain (berth appends the peer); anyone else's claims
/// are replaced.
fn set_forwarded(shared: &Shared, conn: &Conn, target: &Forward<'_>, headers: &mut HeaderMap) {
    let peer = conn.peer.ip();
    let trusted = shared.trusted_proxies.iter().any(|n| n.contains(&peer));
    let xff = match headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .filter(|_| trusted)
    {
        Some(chain) => format!("{chain}, {peer}"),
        None => peer.to_string(),
    };
    let proto = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| trusted && (*p == "http" || *p == "https"))
    {
        Some(p) => p.to_string(),
        None => if conn.tls { "https" } else { "http" }.to_string(),
    };
    for (name, value) in [
        ("x-forwarded-for", xff),
        ("x-forwarded-proto", proto),
        ("x-forwarded-host", target.host.to_string()),
        ("x-real-ip", target.client.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    if !headers.contains_key(header::HOST) {
        if let Ok(v) = HeaderValue::from_str(target.host) {
            headers.insert(header::HOST, v);
        }
    }
}

fn body_too_large(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

fn describe_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(err) = source {
        parts.push(err.to_string());
        source = err.source();
    }
    parts.join(": ")
}
