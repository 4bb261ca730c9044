//! The nginx driver against a real nginx (Debian's `nginx` package): a
//! private instance in a temporary prefix on loopback ports, never the
//! system one. berth renders domains into its include directory, and the
//! test checks what nginx serves, a refused configuration rolled back, and
//! drift between the store and the files.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth::config::{NginxConfig, ProxyDriver};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_with, TestApp};
use crate::proxy::echo_server;

/// A loopback address nothing listens on now (bound, then released).
fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A private nginx: its own prefix, configuration, pid file and ports;
/// stopped when dropped.
struct PrivateNginx {
    dir: tempfile::TempDir,
    /// The daemon's master: a session leader (nginx calls setsid), so its
    /// pid is also its workers' process group.
    master: libc::pid_t,
    conf: PathBuf,
    sites: PathBuf,
    http: SocketAddr,
    https: SocketAddr,
}

impl PrivateNginx {
    fn start() -> PrivateNginx {
        let version = Command::new("nginx").arg("-v").output();
        assert!(
            version.is_ok_and(|o| o.status.success()),
            "these tests need nginx on PATH (apt-get install -y nginx)"
        );
        let dir = tempfile::Builder::new()
            .prefix("berth-nginx-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        // nginx's workers read the htpasswd files at request time.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sites = root.join("sites");
        std::fs::create_dir_all(&sites).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        let http = free_address();
        let https = free_address();
        let r = root.display();
        // As root, workers would run as `nobody`; keep them able to read
        // the temporary directory.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;\n"
        } else {
            ""
        };
        let conf = root.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "{user}daemon on;\npid {r}/nginx.pid;\nerror_log {r}/error.log;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n\
                 access_log off;\n\
                 client_body_temp_path {r}/tmp/body;\n\
                 proxy_temp_path {r}/tmp/proxy;\n\
                 fastcgi_temp_path {r}/tmp/fastcgi;\n\
                 uwsgi_temp_path {r}/tmp/uwsgi;\n\
                 scgi_temp_path {r}/tmp/scgi;\n\
                 include {sites}/*.conf;\n\
                 server {{ listen {http} default_server; return 404; }}\n\
                 }}\n",
                sites = sites.display(),
            ),
        )
        .unwrap();
        let mut nginx = PrivateNginx {
            dir,
            master: 0,
            conf,
            sites,
            http,
            https,
        };
        let out = nginx.command(&[]).output().unwrap();
        assert!(
            out.status.success(),
            "nginx did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The command returns once the daemon has forked; the daemon
        // writes its pid file a moment later.
        let pid_file = nginx.root().join("nginx.pid");
        let deadline = Instant::now() + Duration::from_secs(5);
        nginx.master = loop {
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            if let Some(pid) = pid {
                break pid;
            }
            assert!(Instant::now() < deadline, "nginx wrote no pid file");
            std::thread::sleep(Duration::from_millis(10));
        };
        nginx
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `nginx -p <dir> -e <dir>/error.log -c <conf> <args>`.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nginx");
        c.arg("-p")
            .arg(self.root())
            .arg("-e")
            .arg(self.root().join("error.log"))
            .arg("-c")
            .arg(&self.conf)
            .args(args);
        c
    }

    fn driver_config(&self) -> NginxConfig {
        NginxConfig {
            binary: PathBuf::from("nginx"),
            conf: self.conf.clone(),
            sites_dir: self.sites.clone(),
            prefix: Some(self.root().to_path_buf()),
            http: self.http,
            https: self.https,
            challenge_dir: self.root().join("acme-challenge"),
        }
    }
}

impl Drop for PrivateNginx {
    fn drop(&mut self) {
        // CI once found a master of this fixture still serving after its
        // test had passed: asking is not enough, so the drop waits for the
        // master itself to be gone and kills its group if it lingers.
        let alive = |pid: libc::pid_t| unsafe { libc::kill(pid, 0) } == 0;
        let gone_within = |secs: u64| {
            let deadline = Instant::now() + Duration::from_secs(secs);
            while alive(self.master) {
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            true
        };
        if self.master <= 1 {
            return;
        }
        let _ = self.command(&["-s", "stop"]).output();
        if !gone_within(5) {
            unsafe { libc::kill(-self.master, libc::SIGKILL) };
            gone_within(5);
        }
    }
}

/// Retries `attempt` until it gives `Some` (a reload takes effect when
/// nginx's new workers have started), for at most 10 s.
async fn until<T, F: Future<Output = Option<T>>>(what: &str, mut attempt: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = attempt().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send(
    app: &TestApp,
    csrf: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let r = app.send(method, path, csrf, body).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn domain_status(app: &TestApp, host: &str) -> Value {
    let v: Value = app.get("/proxy/status").await.json().await.unwrap();
    assert_eq!(v["driver"], "nginx", "{v:#}");
    v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["host"] == host)
        .cloned()
        .unwrap_or_else(|| panic!("{host} in {v:#}"))
}

/// A self-signed certificate for `host` where berth looks for certificates;
/// returns its PEM.
fn write_certificate(app: &TestApp, host: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dir = app.data_dir.path().join("certs").join(host);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("fullchain.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("privkey.pem"), key.serialize_pem()).unwrap();
    cert.pem()
}

#[tokio::test]
async fn nginx_serves_domains_rolls_back_a_refused_configuration_and_reports_drift() {
    let nginx = PrivateNginx::start();
    let upstream = echo_server().await.addr;
    let config = nginx.driver_config();
    let app = spawn_with(move |c| {
        c.proxy.driver = ProxyDriver::Nginx;
        c.proxy.nginx = config;
    })
    .await;
    let csrf = app.setup().await;
    let host = "site.test";
    let file = nginx.sites.join("berth-site.test.conf");
    let users_file = nginx.sites.join("berth-site.test.htpasswd");
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(host, nginx.http)
        .build()
        .unwrap();
    let plain_url = |path: &str| format!("http://{host}:{}{path}", nginx.http.port());
    let target = json!({ "kind": "url", "url": format!("http://{upstream}") });

    // A new domain is rendered, checked, reloaded and served.
    let (status, v) = send(
        &app,
        &csrf,
        reqwest::Method::POST,
        "/domains",
        Some(json!({ "host": host, "target": target, "allow_private_upstream": true })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v:#}");
    assert!(file.exists());
    let seen: Value = until("nginx to route site.test", || async {
        let r = plain
            .get(plain_url("/hello?x=1"))
            .header("X-Forwarded-For", "203.0.113.66")
            .send()
            .await
            .ok()?;
        if r.headers().get("x-upstream")? != "echo" {
            return None;
        }
        r.json().await.ok()
    })
    .await;
    assert_eq!(seen["path"], "/hello");
    assert_eq!(seen["query"], "x=1");
    let h = &seen["headers"];
    assert_eq!(h["host"], host, "{seen:#}");
    // The client's own claim is replaced by the address nginx saw.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{seen:#}");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], host);
    let d = domain_status(&app, host).await;
    assert_eq!(d["live"], true, "{d:#}");
    // The route test goes through nginx's listener.
    let (status, t) = send(
        &app,
        &csrf,
        reqwest::Method::POST,
        "/domains/site.test/test?path=/t",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{t:#}");
    assert_eq!(t["status"], 200, "{t:#}");

    // With a certificate: HTTPS with HSTS, plain HTTP redirects, basic
    // auth checked by nginx against berth's SHA-512-crypt hashes, a
    // stripped path route and a header value that needs quoting.
    let pem = write_certificate(&app, host);
    let spec = json!({
        "host": host,
        "target": target,
        "routes": [{ "path": "/api", "target": target, "strip_prefix": true }],
        "headers": { "X-Quote": r#"say "hi" \o/"# },
        "basic_auth": [{ "username": "alice", "password": "open sesame" }],
        "allow_private_upstream": true
    });
    let (status, v) = send(
        &app,
        &csrf,
        reqwest::Method::PUT,
        "/domains/site.test",
        Some(spec.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v:#}");
    assert!(users_file.exists());
    let location: String = until("the redirect to HTTPS", || async {
        let r = plain.get(plain_url("/x?y=1")).send().await.ok()?;
        (r.status() == StatusCode::PERMANENT_REDIRECT)
            .then(|| r.headers()["location"].to_str().unwrap().to_string())
    })
    .await;
    assert_eq!(
        location,
        format!("https://{host}:{}/x?y=1", nginx.https.port())
    );
    let tls = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .resolve(host, nginx.https)
        .build()
        .unwrap();
    let tls_url = |path: &str| format!("https://{host}:{}{path}", nginx.https.port());
    let r = tls.get(tls_url("/api/x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("site.test"));
    let r = tls
        .get(tls_url("/api/x"))
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = tls
        .get(tls_url("/api/x"))
        .basic_auth("alice", Some("open sesame"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    assert_eq!(r.headers()["x-quote"], r#"say "hi" \o/"#);
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["path"], "/x", "the /api prefix is stripped: {seen:#}");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(domain_status(&app, host).await["live"], true);

    // A configuration nginx refuses: a file of someone else's in the
    // include directory already declares the zone berth renders for the
    // first rate limit of site.test. The check fails, the previous files
    // come back, and nginx keeps serving the previous configuration.
    let clash = nginx.sites.join("zz-clash.conf");
    std::fs::write(
        &clash,
        "limit_req_zone $binary_remote_addr zone=berth_site.test_0:1m rate=1r/s;\n",
    )
    .unwrap();
    let before = std::fs::read_to_string(&file).unwrap();
    let mut limited = spec.clone();
    limited["basic_auth"] = json!([{ "username": "alice" }]);
    limited["rate_limits"] =
        json!([{ "path": "/api", "requests": 10, "per": "second", "burst": 5 }]);
    let (status, v) = send(
        &app,
        &csrf,
        reqwest::Method::PUT,
        "/domains/site.test",
        Some(limited.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{v:#}");
    assert_eq!(v["error"]["code"], "apply_failed");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("berth_site.test_0"),
        "nginx's words: {message}"
    );
    assert!(message.contains("restored"), "{message}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    let r = tls
        .get(tls_url("/api/x"))
        .basic_auth("alice", Some("open sesame"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the previous configuration still serves"
    );
    // The stored domain is not what nginx has.
    let d = domain_status(&app, host).await;
    assert_eq!(d["live"], false, "{d:#}");
    let status: Value = app.get("/proxy/status").await.json().await.unwrap();
    assert!(
        status["errors"].to_string().contains("berth_site.test_0"),
        "{status:#}"
    );

    // Without the clash, the same change goes through.
    std::fs::remove_file(&clash).unwrap();
    let (status, v) = send(
        &app,
        &csrf,
        reqwest::Method::PUT,
        "/domains/site.test",
        Some(limited),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v:#}");
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("limit_req zone=berth_site.test_0"));
    assert_eq!(domain_status(&app, host).await["live"], true);

    // A hand edit on disk is drift.
    let mut edited = std::fs::read_to_string(&file).unwrap();
    edited.push_str("# tuned by hand\n");
    std::fs::write(&file, edited).unwrap();
    let d = domain_status(&app, host).await;
    assert_eq!(d["live"], false, "{d:#}");
    let problems = d["problems"].to_string();
    assert!(problems.contains("berth-site.test.conf"), "{d:#}");
    assert!(problems.contains("edited on disk"), "{d:#}");

    // Deleting the domain removes its files; nginx stops routing it.
    let (status, v) = send(
        &app,
        &csrf,
        reqwest::Method::DELETE,
        "/domains/site.test",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{v:#}");
    assert!(!file.exists() && !users_file.exists());
    until("nginx to forget site.test", || async {
        let r = plain.get(plain_url("/")).send().await.ok()?;
        (r.status() == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    drop(nginx);
}

#[tokio::test]
async fn an_acme_certificate_is_issued_through_nginx_and_served_by_it() {
    use crate::acme_rig::{Pebble, PebbleOptions};
    let nginx = PrivateNginx::start();
    let pebble = Pebble::start(PebbleOptions::http(nginx.http.port())).await;
    let upstream = echo_server().await.addr;
    let config = nginx.driver_config();
    let (port, resolver) = (nginx.http.port(), pebble.dns);
    let app = spawn_with(move |c| {
        c.proxy.driver = ProxyDriver::Nginx;
        c.proxy.nginx = config;
        c.certificates.self_test_port = port;
        c.certificates.resolver = Some(resolver);
    })
    .await;
    let csrf = app.setup().await;
    let host = "tls.test.berth";
    let (status, _) = send(
        &app,
        &csrf,
        reqwest::Method::PUT,
        "/acme",
        Some(pebble.acme_settings()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = send(
        &app,
        &csrf,
        reqwest::Method::POST,
        "/domains",
        Some(
            json!({ "host": host, "target": { "kind": "url", "url": format!("http://{upstream}") },
                     "allow_private_upstream": true, "auto_certificate": false }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    // nginx answers the challenge from the directory berth writes it to.
    let (status, ordered) = send(
        &app,
        &csrf,
        reqwest::Method::POST,
        "/certificates",
        Some(json!({ "domains": [host] })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ordered}");
    let id = ordered["id"].as_str().unwrap().to_string();
    let cert = until("the certificate", || async {
        let (_, c) = send(
            &app,
            &csrf,
            reqwest::Method::GET,
            &format!("/certificates/{id}"),
            None,
        )
        .await;
        assert!(c["state"] != "failed", "{c:#}");
        (c["state"] == "valid"
            && c["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["step"] == "install"))
        .then_some(c)
    })
    .await;
    // Written for nginx as files, key readable by its owner only.
    let folder = app.data_dir.path().join(format!("certs/berth-{id}"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(folder.join("privkey.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // nginx serves it over HTTPS, verified against pebble's root.
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(pebble.issuing_root().await)
        .resolve(host, nginx.https)
        .build()
        .unwrap();
    let r = until("nginx serving the certificate", || async {
        client
            .get(format!("https://{host}:{}/", nginx.https.port()))
            .send()
            .await
            .ok()
    })
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-upstream"], "echo");
    assert_eq!(
        domain_status(&app, host).await["certificate"]["state"],
        "valid"
    );
    // The challenge files are gone.
    let left = std::fs::read_dir(nginx.root().join("acme-challenge"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0);
    let _ = cert;
}
