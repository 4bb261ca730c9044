//! The embedded reverse proxy, through real sockets: upstreams are servers
//! the test starts on loopback (an echo server, a WebSocket echo) and real
//! containers on the Docker engine; TLS uses certificates from a test CA.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::docker::{docker, Scratch, TEST_IMAGE, TEST_LABEL};
use crate::helpers::{error_of, spawn_app, TestApp};

/// An HTTP upstream on loopback that answers every request with what it
/// received as JSON; `/page` answers 4 KiB of HTML, `/slow` waits 3 s.
pub struct Echo {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

pub async fn echo_server() -> Echo {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(echo(req).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Echo { addr, hits }
}

async fn echo(req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().to_string();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = req.into_body().collect().await.map(|b| b.to_bytes().len());
    match path.as_str() {
        "/page" => hyper::Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(Full::new(Bytes::from("<p>berth</p>".repeat(350))))
            .unwrap(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            hyper::Response::new(Full::new(Bytes::from("late")))
        }
        _ => hyper::Response::builder()
            .header("content-type", "application/json")
            .header("x-upstream", "echo")
            .body(Full::new(Bytes::from(
                json!({ "path": path, "query": query, "method": method, "headers": headers,
                        "body": body.ok() })
                .to_string(),
            )))
            .unwrap(),
    }
}

/// A WebSocket echo server on loopback.
async fn websocket_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        let _ = ws.send(msg).await;
                    }
                }
            });
        }
    });
    addr
}

struct Rig {
    app: TestApp,
    csrf: String,
    http: SocketAddr,
    https: SocketAddr,
}

async fn rig() -> Rig {
    let app = spawn_app().await;
    let csrf = app.setup().await;
    let addrs = app.state.proxy.addresses();
    assert_eq!(addrs.len(), 2, "both listeners bound: {addrs:?}");
    Rig {
        http: addrs[0],
        https: addrs[1],
        app,
        csrf,
    }
}

impl Rig {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        self.app.send(method, path, &self.csrf, body).await
    }

    async fn create(&self, body: Value) -> Value {
        let r = self
            .send(reqwest::Method::POST, "/domains", Some(body))
            .await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    /// A client that sends every `host` to the proxy's HTTP listener.
    fn http_client(&self, hosts: &[&str]) -> reqwest::Client {
        let mut b = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        for h in hosts {
            b = b.resolve(h, self.http);
        }
        b.build().unwrap()
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.http.port())
    }

    async fn status(&self) -> Value {
        self.send(reqwest::Method::GET, "/proxy/status", None)
            .await
            .json()
            .await
            .unwrap()
    }
}

fn url_target(addr: SocketAddr) -> Value {
    json!({ "kind": "url", "url": format!("http://{addr}") })
}

#[tokio::test]
async fn routes_a_domain_with_forwarded_headers_path_routes_and_extra_headers() {
    let rig = rig().await;
    let main = echo_server().await;
    let api = echo_server().await;
    let d = rig
        .create(json!({
            "host": "Bücher.Example",
            "target": url_target(main.addr),
            "routes": [{ "path": "/api/", "target": url_target(api.addr), "strip_prefix": true }],
            "headers": { "X-Frame-Options": "DENY" },
            "allow_private_upstream": true
        }))
        .await;
    assert_eq!(d["host"], "xn--bcher-kva.example");
    let host = "xn--bcher-kva.example";
    let client = rig.http_client(&[host]);

    let r = client
        .get(rig.url(host, "/hello?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(
        r.headers().get("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["path"], "/hello");
    assert_eq!(v["query"], "x=1");
    assert_eq!(v["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(v["headers"]["x-real-ip"], "127.0.0.1");
    assert_eq!(v["headers"]["x-forwarded-proto"], "http");
    assert_eq!(v["headers"]["x-forwarded-host"], host);
    assert!(v["headers"]["host"].as_str().unwrap().starts_with(host));

    // A forged X-Forwarded-For from an untrusted client is replaced.
    let v: Value = client
        .get(rig.url(host, "/"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["headers"]["x-forwarded-for"], "127.0.0.1");

    // Longest prefix wins, on whole segments, with the prefix stripped.
    let v: Value = client
        .get(rig.url(host, "/api/users"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["path"], "/users");
    assert_eq!(api.hits.load(Ordering::SeqCst), 1);
    let v: Value = client
        .get(rig.url(host, "/apix"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["path"], "/apix");
    assert_eq!(api.hits.load(Ordering::SeqCst), 1);

    // Text is compressed for clients that accept it.
    let r = client
        .get(rig.url(host, "/page"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert!(r.bytes().await.unwrap().len() < 4000);

    // Unknown hosts get 404 and reach no upstream.
    let before = main.hits.load(Ordering::SeqCst);
    let r = rig
        .http_client(&["other.example"])
        .get(rig.url("other.example", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(main.hits.load(Ordering::SeqCst), before);

    // The ACME challenge path is answered by berth, for any host, before routes.
    rig.app
        .state
        .proxy
        .shared
        .challenges
        .write()
        .unwrap()
        .insert("tok-123".into(), "tok-123.thumb".into());
    let r = client
        .get(rig.url(host, "/.well-known/acme-challenge/tok-123"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "tok-123.thumb");
    let r = client
        .get(rig.url(host, "/.well-known/acme-challenge/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(main.hits.load(Ordering::SeqCst), before);

    let status = rig.status().await;
    let mine = &status["domains"][0];
    assert_eq!(mine["host"], host);
    assert_eq!(mine["upstreams"][0]["path"], "/api");
    assert_eq!(mine["upstreams"][0]["health"], "up");
    // Five routed requests (challenges and unknown hosts belong to no domain).
    assert_eq!(mine["requests"], 5, "{mine}");

    // Deleting the domain unroutes it at once.
    let r = rig
        .send(reqwest::Method::DELETE, &format!("/domains/{host}"), None)
        .await;
    assert_eq!(r.status(), 204);
    let r = client.get(rig.url(host, "/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let actions: Vec<String> = rig
        .app
        .audit_actions()
        .await
        .into_iter()
        .map(|a| a.0)
        .collect();
    assert!(actions.contains(&"domain.create".to_string()));
    assert!(actions.contains(&"domain.delete".to_string()));
}

#[tokio::test]
async fn access_lists_basic_auth_rate_limits_and_body_limits_are_enforced() {
    let rig = rig().await;
    let up = echo_server().await;
    rig.create(json!({
        "host": "guarded.example.com",
        "target": url_target(up.addr),
        "basic_auth": [{ "username": "alice", "password": "correct horse" }],
        "rate_limits": [{ "path": "/api/auth/login", "requests": 5, "per": "minute", "burst": 4 }],
        "max_body_bytes": 1024,
        "allow_private_upstream": true
    }))
    .await;
    let host = "guarded.example.com";
    let client = rig.http_client(&[host]);

    // Basic auth: none, wrong, right.
    let r = client.get(rig.url(host, "/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic realm="));
    let r = client
        .get(rig.url(host, "/"))
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(rig.url(host, "/"))
        .basic_auth("alice", Some("correct horse"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
    // The password is not returned, and not in the audit log.
    let d: Value = rig
        .send(reqwest::Method::GET, &format!("/domains/{host}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert!(!d.to_string().contains("correct horse"));
    assert!(!rig.app.audit_dump().await.contains("correct horse"));

    // 5 per minute with a burst of 4 on the login path: five at once, the
    // sixth is refused; other paths are not limited.
    let login = rig.url(host, "/api/auth/login");
    for i in 0..5 {
        let r = client
            .post(&login)
            .basic_auth("alice", Some("correct horse"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i}");
    }
    let r = client
        .post(&login)
        .basic_auth("alice", Some("correct horse"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=12).contains(&wait), "{wait}");
    let r = client
        .get(rig.url(host, "/api/other"))
        .basic_auth("alice", Some("correct horse"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Bodies over the limit: 413 with a declared length and when streamed.
    let r = client
        .post(rig.url(host, "/upload"))
        .basic_auth("alice", Some("correct horse"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let chunks = futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 512])));
    let r = client
        .post(rig.url(host, "/upload"))
        .basic_auth("alice", Some("correct horse"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = client
        .post(rig.url(host, "/upload"))
        .basic_auth("alice", Some("correct horse"))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["body"], 1000);

    // Deny wins over allow; a client outside `allow` is refused too. A PUT
    // without the password keeps alice's.
    let put = |allow: Value, deny: Value| {
        json!({
            "target": url_target(up.addr),
            "basic_auth": [{ "username": "alice" }],
            "allow": allow, "deny": deny,
            "allow_private_upstream": true
        })
    };
    let r = rig
        .send(
            reqwest::Method::PUT,
            &format!("/domains/{host}"),
            Some(put(json!(["127.0.0.0/8"]), json!(["127.0.0.1"]))),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = client
        .get(rig.url(host, "/"))
        .basic_auth("alice", Some("correct horse"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = rig
        .send(
            reqwest::Method::PUT,
            &format!("/domains/{host}"),
            Some(put(json!(["10.0.0.0/8", "::1"]), json!([]))),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = client
        .get(rig.url(host, "/"))
        .basic_auth("alice", Some("correct horse"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = rig
        .send(
            reqwest::Method::PUT,
            &format!("/domains/{host}"),
            Some(put(json!(["127.0.0.1/32"]), json!([]))),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = client
        .get(rig.url(host, "/"))
        .basic_auth("alice", Some("correct horse"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A new user without a password is refused, and nothing changes.
    let mut body = put(json!([]), json!([]));
    body["basic_auth"] = json!([{ "username": "alice" }, { "username": "bob" }]);
    let r = rig
        .send(
            reqwest::Method::PUT,
            &format!("/domains/{host}"),
            Some(body),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        error_of(r).await.1.as_deref(),
        Some("basic_auth[1].password")
    );
    let r = client
        .get(rig.url(host, "/"))
        .basic_auth("alice", Some("correct horse"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A test CA and a certificate it signs for `names`.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "berth test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// Writes `<certs>/<folder>/fullchain.pem` and `privkey.pem`.
    fn issue(&self, certs: &std::path::Path, folder: &str, names: &[&str]) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let dir = certs.join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("fullchain.pem"), cert.pem() + &self.cert.pem()).unwrap();
        std::fs::write(dir.join("privkey.pem"), key.serialize_pem()).unwrap();
        cert.pem()
    }

    fn trust(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.cert.pem().as_bytes()).unwrap()
    }
}

/// The certificate chain a TLS server presents for `sni`, accepting any.
pub async fn presented(addr: SocketAddr, sni: &str) -> Result<Vec<Vec<u8>>, String> {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    #[derive(Debug)]
    struct AcceptAny(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);
    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            end: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            self.0.lock().unwrap().push(end.to_vec());
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(seen.clone())))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let result = connector.connect(name, tcp).await;
    let certs = seen.lock().unwrap().clone();
    match result {
        Ok(_) => Ok(certs),
        Err(e) => {
            assert!(certs.is_empty(), "a certificate was shown for {sni}");
            Err(e.to_string())
        }
    }
}

#[tokio::test]
async fn https_serves_each_domain_its_own_certificate_over_http2_with_redirects_and_hsts() {
    let rig = rig().await;
    let up = echo_server().await;
    let ca = Ca::new();
    let certs = rig.app.data_dir.path().join("certs");
    let a_pem = ca.issue(
        &certs,
        "a.test.example",
        &["a.test.example", "www.a.test.example"],
    );
    let b_pem = ca.issue(&certs, "b.test.example", &["b.test.example"]);
    for host in ["a.test.example", "b.test.example"] {
        let mut body = json!({
            "host": host, "target": url_target(up.addr), "allow_private_upstream": true
        });
        if host.starts_with('a') {
            body["www"] = json!("to_apex");
        }
        rig.create(body).await;
    }
    let client = reqwest::Client::builder()
        .add_root_certificate(ca.trust())
        .resolve("a.test.example", rig.https)
        .resolve("b.test.example", rig.https)
        .resolve("www.a.test.example", rig.https)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for host in ["a.test.example", "b.test.example"] {
        let r = client
            .get(format!("https://{host}:{}/x", rig.https.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
        assert_eq!(
            r.version(),
            reqwest::Version::HTTP_2,
            "{host} negotiates h2"
        );
        assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    }
    // Each name gets its own certificate (SNI).
    let leaf = |pem: &str| {
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    };
    use rustls::pki_types::pem::PemObject;
    assert_eq!(
        presented(rig.https, "a.test.example").await.unwrap(),
        vec![leaf(&a_pem)]
    );
    assert_eq!(
        presented(rig.https, "b.test.example").await.unwrap(),
        vec![leaf(&b_pem)]
    );
    // A name berth has no certificate for ends the handshake without one.
    let err = presented(rig.https, "unknown.example").await.unwrap_err();
    assert!(!err.is_empty());

    // A connection opened for a.test.example is not used for b.test.example.
    let h1 = reqwest::Client::builder()
        .add_root_certificate(ca.trust())
        .resolve("a.test.example", rig.https)
        .http1_only()
        .build()
        .unwrap();
    let r = h1
        .get(format!("https://a.test.example:{}/", rig.https.port()))
        .header("host", "b.test.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);

    // With a certificate, plain HTTP redirects to HTTPS (auto), keeping path
    // and query; www redirects to the apex.
    let plain = rig.http_client(&["a.test.example"]);
    let r = plain
        .get(rig.url("a.test.example", "/p?q=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        r.headers()["location"],
        format!("https://a.test.example:{}/p?q=1", rig.https.port()).as_str()
    );
    let r = client
        .get(format!("https://www.a.test.example:{}/w", rig.https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        r.headers()["location"],
        format!("https://a.test.example:{}/w", rig.https.port()).as_str()
    );

    let status = rig.status().await;
    let a = status["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["host"] == "a.test.example")
        .unwrap()
        .clone();
    assert_eq!(a["certificate"]["state"], "valid", "{a}");
}

#[tokio::test]
async fn websockets_are_tunnelled_and_a_down_upstream_gets_the_maintenance_page() {
    let rig = rig().await;
    let ws = websocket_server().await;
    let up = echo_server().await;
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    rig.create(json!({
        "host": "live.example.com",
        "target": url_target(up.addr),
        "routes": [
            { "path": "/ws", "target": url_target(ws) },
            { "path": "/gone", "target": url_target(closed) }
        ],
        "maintenance_message": "Back at <5pm>",
        "connect_timeout_s": 1,
        "read_timeout_s": 1,
        "allow_private_upstream": true
    }))
    .await;

    let stream = tokio::net::TcpStream::connect(rig.http).await.unwrap();
    let (mut socket, response) =
        tokio_tungstenite::client_async("ws://live.example.com/ws", stream)
            .await
            .expect("websocket handshake through the proxy");
    assert_eq!(response.status(), 101);
    for text in ["hello", "berth"] {
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }

    let client = rig.http_client(&["live.example.com"]);
    let r = client
        .get(rig.url("live.example.com", "/gone/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "30");
    let page = r.text().await.unwrap();
    assert!(page.contains("Back at &lt;5pm&gt;"), "{page}");
    // The slow path (3 s) runs past connect + response timeouts (2 s).
    let started = Instant::now();
    let r = client
        .get(rig.url("live.example.com", "/slow"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(3));

    let status = rig.status().await;
    let ups = &status["domains"][0]["upstreams"];
    let gone = ups
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["path"] == "/gone")
        .unwrap();
    assert_eq!(gone["health"], "down", "{ups}");
}

#[tokio::test]
async fn a_container_app_is_routed_and_its_stop_shows_the_maintenance_page() {
    let scratch = Scratch::new();
    let rig = rig().await;
    let name = scratch.name("web");
    let r = rig
        .send(
            reqwest::Method::POST,
            "/apps",
            Some(json!({
                "name": name, "image": TEST_IMAGE,
                // Serves the container's /etc, where Docker writes its hostname.
                "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"]
            })),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    rig.create(json!({
        "host": "app.example.com",
        "target": { "kind": "app", "app": name, "port": 8080 }
    }))
    .await;
    let client = rig.http_client(&["app.example.com"]);
    // httpd may take a moment to listen after the container starts.
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let r = client
            .get(rig.url("app.example.com", "/hostname"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break r.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "never routed: {}", r.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The container's hostname is the start of its id: this came from it.
    let app: Value = rig
        .send(reqwest::Method::GET, &format!("/apps/{name}"), None)
        .await
        .json()
        .await
        .unwrap();
    let id = app["container"]["id"].as_str().unwrap();
    assert_eq!(body.trim(), &id[..12]);
    let test: Value = rig
        .send(
            reqwest::Method::POST,
            "/domains/app.example.com/test?path=/hostname",
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(test["status"], 200, "{test}");

    let r = rig
        .send(reqwest::Method::POST, &format!("/apps/{name}/stop"), None)
        .await;
    assert_eq!(r.status(), 200);
    // The stop arrives through Docker's events; the route follows.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = client
            .get(rig.url("app.example.com", "/"))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            assert!(r.text().await.unwrap().contains("unavailable"));
            break;
        }
        assert!(Instant::now() < deadline, "still {}", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = rig.status().await;
    let up = &status["domains"][0]["upstreams"][0];
    assert_eq!(up["health"], "down");
    assert!(up["detail"].as_str().unwrap().contains("exited"), "{up}");
}

#[tokio::test]
async fn a_static_route_serves_a_volume_and_nothing_outside_it() {
    let scratch = Scratch::new();
    let rig = rig().await;
    let volume = scratch.name("site");
    let created = docker()
        .create_volume(bollard::models::VolumeCreateRequest {
            name: Some(volume.clone()),
            labels: Some(HashMap::from([(TEST_LABEL.to_string(), "1".to_string())])),
            ..Default::default()
        })
        .await
        .unwrap();
    let root = std::path::PathBuf::from(created.mountpoint);
    std::fs::create_dir_all(root.join("public")).unwrap();
    std::fs::write(root.join("public/index.html"), "<h1>static</h1>").unwrap();
    std::fs::write(root.join("secret.txt"), "outside public").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("public/host")).unwrap();
    rig.create(json!({
        "host": "files.example.com",
        "target": { "kind": "static", "volume": volume, "dir": "public" }
    }))
    .await;
    let client = rig.http_client(&["files.example.com"]);
    let r = client
        .get(rig.url("files.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.text().await.unwrap(), "<h1>static</h1>");
    for path in ["/../secret.txt", "/%2e%2e/secret.txt", "/host"] {
        let r = client
            .get(rig.url("files.example.com", path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = client
        .post(rig.url("files.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn bad_domains_are_refused_naming_the_field_and_nothing_is_stored() {
    let rig = rig().await;
    let target = json!({ "kind": "app", "app": "web", "port": 80 });
    for (body, field) in [
        (
            json!({ "host": "<script>.example.com", "target": target }),
            "host",
        ),
        (json!({ "host": "localhost", "target": target }), "host"),
        (
            json!({ "host": "a.example.com", "target": target, "headers": { "X-A": "1\r\nSet-Cookie: a=b" } }),
            "headers.X-A",
        ),
        (
            json!({ "host": "a.example.com", "target": { "kind": "url", "url": "http://169.254.169.254/latest/meta-data" } }),
            "target.url",
        ),
        (
            json!({ "host": "a.example.com", "target": { "kind": "url", "url": "http://127.0.0.1:8080" } }),
            "target.url",
        ),
        (
            json!({ "host": "a.example.com", "target": target, "deny": ["1.2.3.4/33"] }),
            "deny[0]",
        ),
        (
            json!({ "host": "a.example.com", "target": target, "routes": [{ "path": "/../x", "target": target }] }),
            "routes[0].path",
        ),
        (
            json!({ "host": "a.example.com", "target": { "kind": "app", "app": "Web;rm", "port": 80 } }),
            "target.app",
        ),
        (
            json!({ "host": "a.example.com", "target": target, "max_body_bytes": 0 }),
            "max_body_bytes",
        ),
    ] {
        let r = rig
            .send(reqwest::Method::POST, "/domains", Some(body.clone()))
            .await;
        assert_eq!(r.status(), 422, "{body}");
        let (code, got) = error_of(r).await;
        assert_eq!(code, "invalid");
        assert_eq!(got.as_deref(), Some(field), "{body}");
    }
    // Unknown fields are refused too.
    let r = rig
        .send(
            reqwest::Method::POST,
            "/domains",
            Some(json!({ "host": "a.example.com", "target": target, "tls": true })),
        )
        .await;
    assert_eq!(r.status(), 422);
    let list: Value = rig
        .send(reqwest::Method::GET, "/domains", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!([]));

    // A dry run validates and normalises without storing.
    let r = rig
        .send(
            reqwest::Method::POST,
            "/domains?dry_run=true",
            Some(json!({ "host": "Bücher.example", "target": target })),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["host"],
        "xn--bcher-kva.example"
    );
    let list: Value = rig
        .send(reqwest::Method::GET, "/domains", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!([]));

    // Duplicates conflict; a www alias may not shadow another domain.
    rig.create(json!({ "host": "a.example.com", "target": target }))
        .await;
    let r = rig
        .send(
            reqwest::Method::POST,
            "/domains",
            Some(json!({ "host": "A.example.com", "target": target })),
        )
        .await;
    assert_eq!(r.status(), 409);
    rig.create(json!({ "host": "www.b.example.com", "target": target }))
        .await;
    let r = rig
        .send(
            reqwest::Method::POST,
            "/domains",
            Some(json!({ "host": "b.example.com", "target": target, "www": "to_apex" })),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(error_of(r).await.1.as_deref(), Some("www"));
}

/// A rotated secret reaches an app that opted into automatic, start-first
/// redeploys while the proxy carries load: the new container takes over
/// before the old one stops, and no request fails.
#[tokio::test]
async fn a_secret_rotation_redeploys_start_first_without_dropping_a_request() {
    let scratch = Scratch::new();
    let rig = rig().await;
    let name = scratch.name("rotating");
    let group = format!("{}-keys", scratch.prefix);
    let ok = |r: reqwest::Response| async move {
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{status}: {text}");
        text
    };
    ok(rig
        .send(
            reqwest::Method::POST,
            "/secret-groups",
            Some(json!({ "name": group })),
        )
        .await)
    .await;
    let token_path = format!("/secret-groups/{group}/secrets/TOKEN");
    let set = |value: &'static str| {
        rig.send(
            reqwest::Method::PUT,
            &token_path,
            Some(json!({ "value": value })),
        )
    };
    ok(set("first-token").await).await;
    ok(rig
        .send(
            reqwest::Method::POST,
            "/apps",
            Some(json!({
                "name": name, "image": TEST_IMAGE,
                // Serves the SHA-256 of the secret it was started with.
                "command": ["sh", "-c", "printf %s \"$TOKEN\" | sha256sum > /tmp/token; exec httpd -f -p 8080 -h /tmp"],
                "secret_groups": [group],
                "redeploy_on_secret_change": true,
                "update_order": "start-first",
            })),
        )
        .await)
    .await;
    rig.create(json!({
        "host": "rotating.example.com",
        "target": { "kind": "app", "app": name, "port": 8080 }
    }))
    .await;
    let digest = |v: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(v.as_bytes()))
    };
    let client = rig.http_client(&["rotating.example.com"]);
    let url = rig.url("rotating.example.com", "/token");
    let served = |client: reqwest::Client, url: String| async move {
        match client.get(&url).send().await {
            Ok(r) if r.status() == 200 => Some(r.text().await.unwrap_or_default()),
            _ => None,
        }
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !served(client.clone(), url.clone())
        .await
        .is_some_and(|b| b.starts_with(&digest("first-token")))
    {
        assert!(Instant::now() < deadline, "the app never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        String,
        usize,
    >::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, url) = (rig.http_client(&["rotating.example.com"]), url.clone());
        let (stop, failures, seen) = (stop.clone(), failures.clone(), seen.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match served(client.clone(), url.clone()).await {
                    Some(body) => {
                        let hash = body
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string();
                        *seen.lock().unwrap().entry(hash).or_default() += 1;
                    }
                    None => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let change: Value = serde_json::from_str(&ok(set("second-token").await).await).unwrap();
    assert_eq!(change["redeploying"], json!([name]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.lock().unwrap().contains_key(&digest("second-token")) {
        assert!(Instant::now() < deadline, "the new secret never went live");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the grace period: the old container has stopped and gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = scratch.containers().await;
        if left.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old container stayed: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during the swap: {seen:?}"
    );
    assert!(
        seen[&digest("first-token")] > 0 && seen[&digest("second-token")] > 0,
        "{seen:?}"
    );
    assert_eq!(
        seen.len(),
        2,
        "only the two secrets were ever served: {seen:?}"
    );
    let app: Value = rig
        .send(reqwest::Method::GET, &format!("/apps/{name}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(app["needs_redeploy"], false, "{app:#}");
    assert_eq!(app["last_apply"]["ok"], true, "{app:#}");

    // start-first cannot hold host ports twice.
    let r = rig
        .send(
            reqwest::Method::PUT,
            &format!("/apps/{name}"),
            Some(json!({
                "image": TEST_IMAGE, "update_order": "start-first",
                "ports": [{ "container": 8080, "host": 18080 }],
            })),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(error_of(r).await.1.as_deref(), Some("update_order"));
}

#[tokio::test]
async fn route_changes_under_load_drop_no_request() {
    let rig = rig().await;
    let up = echo_server().await;
    let host = "busy.example.com";
    rig.create(
        json!({ "host": host, "target": url_target(up.addr), "allow_private_upstream": true }),
    )
    .await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let client = rig.http_client(&[host]);
        let url = rig.url(host, "/load");
        let (stop, failures, done) = (stop.clone(), failures.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let mut slowest = Duration::ZERO;
    for i in 0..100 {
        let started = Instant::now();
        let r = rig
            .send(
                reqwest::Method::PUT,
                &format!("/domains/{host}"),
                Some(
                    json!({ "target": url_target(up.addr), "allow_private_upstream": true,
                             "headers": { "X-Generation": i.to_string() } }),
                ),
            )
            .await;
        assert_eq!(r.status(), 200);
        slowest = slowest.max(started.elapsed());
        // Live when the response arrives.
        let r = rig
            .http_client(&[host])
            .get(rig.url(host, "/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-generation"], i.to_string().as_str());
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(done.load(Ordering::Relaxed) > 100, "the load ran");
    eprintln!("slowest change to live: {slowest:?}");
}
