//! Certificates against a real ACME CA (pebble) and a real DNS server
//! (BIND): issuance over HTTP-01 through berth's proxy, renewal of a
//! short-lived certificate with the clock moved forward, DNS-01 and a
//! wildcard over RFC 2136, the failures an admin meets, uploads, the expiry
//! probe and notifications.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::acme_rig::{Named, Pebble, PebbleOptions};
use crate::helpers::{error_of, spawn_with, Inbox, TestApp};
use crate::ports::free_port;
use crate::proxy::{echo_server, presented};

struct Rig {
    app: TestApp,
    csrf: String,
    http: SocketAddr,
    https: SocketAddr,
}

impl Rig {
    /// berth with its proxy's HTTP listener on `http_port` (the port pebble
    /// validates on) and the self-test resolving through `resolver`.
    async fn start(http_port: u16, resolver: Option<SocketAddr>) -> Rig {
        let app = spawn_with(|c| {
            c.proxy.http = Some(SocketAddr::from(([127, 0, 0, 1], http_port)));
            c.certificates.self_test_port = http_port;
            c.certificates.resolver = resolver;
        })
        .await;
        let csrf = app.setup().await;
        let addrs = app.state.proxy.addresses();
        Rig {
            http: addrs[0],
            https: addrs[1],
            app,
            csrf,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        self.app.send(method, path, &self.csrf, body).await
    }

    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let r = self.send(method, path, body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    async fn use_ca(&self, pebble: &Pebble) {
        self.ok(reqwest::Method::PUT, "/acme", Some(pebble.acme_settings()))
            .await;
    }

    async fn domain(&self, host: &str, upstream: SocketAddr, auto: bool) {
        self.ok(
            reqwest::Method::POST,
            "/domains",
            Some(json!({
                "host": host,
                "target": { "kind": "url", "url": format!("http://{upstream}") },
                "allow_private_upstream": true,
                "auto_certificate": auto,
            })),
        )
        .await;
    }

    async fn certificate(&self, id: &str) -> Value {
        self.ok(reqwest::Method::GET, &format!("/certificates/{id}"), None)
            .await
    }

    /// Waits until the certificate's attempt is over (valid, or failed with
    /// an error recorded).
    async fn settled(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let c = self.certificate(id).await;
            let running = c["steps"]
                .as_array()
                .and_then(|s| s.last())
                .is_some_and(|s| s["status"] == "running");
            let done = (c["state"] == "valid"
                && !running
                && c["steps"].as_array().is_some_and(|s| !s.is_empty()))
                || c["state"] == "failed"
                || c["last_error"].is_string();
            if done && !self.app.state.certificates.is_attempting(id) {
                return c;
            }
            assert!(Instant::now() < deadline, "no outcome: {c:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Rig {
    /// Waits until `field` of the certificate differs from `before` and no
    /// attempt is running.
    async fn changed(&self, id: &str, field: &str, before: &Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let c = self.certificate(id).await;
            if &c[field] != before && !self.app.state.certificates.is_attempting(id) {
                return c;
            }
            assert!(Instant::now() < deadline, "{field} did not change: {c:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A client that trusts `root` and sends `host` to the proxy's HTTPS port.
fn tls_client(root: reqwest::Certificate, hosts: &[&str], https: SocketAddr) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root);
    for h in hosts {
        b = b.resolve(h, https);
    }
    b.build().unwrap()
}

fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

#[tokio::test]
async fn http01_issues_automatically_for_a_new_domain_and_the_proxy_serves_it() {
    let port = free_port();
    let pebble = Pebble::start(PebbleOptions::http(port)).await;
    let rig = Rig::start(port, Some(pebble.dns)).await;
    let echo = echo_server().await;
    rig.use_ca(&pebble).await;
    // A new domain with the default auto_certificate gets one on its own,
    // covering its www alias too.
    rig.ok(
        reqwest::Method::POST,
        "/domains",
        Some(json!({
            "host": "shop.berth.test",
            "target": { "kind": "url", "url": format!("http://{}", echo.addr) },
            "allow_private_upstream": true,
            "www": "to_apex",
        })),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let list = rig.ok(reqwest::Method::GET, "/certificates", None).await;
        if let Some(c) = list.as_array().and_then(|l| l.first()) {
            break c["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no automatic order");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let cert = rig.settled(&id).await;
    assert_eq!(cert["state"], "valid", "{cert:#}");
    assert_eq!(cert["automatic"], true);
    assert_eq!(
        cert["domains"],
        json!(["shop.berth.test", "www.shop.berth.test"])
    );
    assert_eq!(cert["key_type"], "ecdsa-p256");
    assert_eq!(cert["renew_reason"], "two-thirds");
    let steps: Vec<(String, String)> = cert["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "done")
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for step in [
        "self-test",
        "account",
        "order",
        "challenge",
        "validation",
        "finalize",
        "download",
        "install",
    ] {
        assert!(
            steps.iter().any(|(s, _)| s == step),
            "{step} missing: {steps:?}"
        );
    }

    // Served by the proxy, verified by a client that trusts only pebble's root.
    let client = tls_client(pebble.issuing_root().await, &["shop.berth.test"], rig.https);
    let r = client
        .get(format!(
            "https://shop.berth.test:{}/hello",
            rig.https.port()
        ))
        .send()
        .await
        .expect("the issued certificate verifies against pebble's root");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-upstream"], "echo");
    let served = presented(rig.https, "shop.berth.test").await.unwrap();
    assert_eq!(
        fingerprint(&served[0]),
        cert["fingerprint"].as_str().unwrap()
    );

    // The key is sealed at rest and no response carries key material.
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT key_sealed FROM certificates WHERE id = ?")
        .bind(&id)
        .fetch_one(&rig.app.state.db)
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("PRIVATE KEY"));
    let account: Vec<u8> = sqlx::query_scalar("SELECT credentials_sealed FROM acme_account")
        .fetch_one(&rig.app.state.db)
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&account).contains("key_pkcs8"));
    for path in ["/certificates", &format!("/certificates/{id}"), "/acme"] {
        let text = rig
            .send(reqwest::Method::GET, path, None)
            .await
            .text()
            .await
            .unwrap();
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("key_pkcs8"),
            "{path}: {text}"
        );
    }
    let acme = rig.ok(reqwest::Method::GET, "/acme", None).await;
    assert!(acme["account_id"]
        .as_str()
        .unwrap()
        .starts_with("https://127.0.0.1"));

    // A second pass of the scheduler orders nothing more.
    rig.app.state.certificates.tick().await;
    let list = rig.ok(reqwest::Method::GET, "/certificates", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Deleting the domain stops renewal: when the certificate comes due it
    // is retired, not renewed.
    rig.ok(reqwest::Method::DELETE, "/domains/shop.berth.test", None)
        .await;
    rig.app.state.certificates.clock.advance(10 * 365 * 86_400);
    rig.app.state.certificates.tick().await;
    let after = rig.certificate(&id).await;
    assert_eq!(after["state"], "retired");
    assert_eq!(
        after["fingerprint"], cert["fingerprint"],
        "a retired certificate is not renewed"
    );
    assert!(after["last_attempt_at"] == cert["last_attempt_at"]);
    // The domain comes back: the same certificate returns to service (and,
    // being due, renews); nothing new is ordered.
    rig.ok(
        reqwest::Method::POST,
        "/domains",
        Some(json!({
            "host": "shop.berth.test",
            "target": { "kind": "url", "url": format!("http://{}", echo.addr) },
            "allow_private_upstream": true,
        })),
    )
    .await;
    rig.app.state.certificates.tick().await;
    let back = rig.changed(&id, "state", &json!("retired")).await;
    assert_eq!(back["state"], "valid", "{back:#}");
    let list = rig.ok(reqwest::Method::GET, "/certificates", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");
}

#[tokio::test]
async fn a_short_lived_certificate_renews_at_two_thirds_and_the_new_one_goes_live() {
    let port = free_port();
    let pebble = Pebble::start(PebbleOptions {
        validity_s: 600,
        ..PebbleOptions::http(port)
    })
    .await;
    let rig = Rig::start(port, Some(pebble.dns)).await;
    let echo = echo_server().await;
    rig.use_ca(&pebble).await;
    rig.domain("api.berth.test", echo.addr, false).await;
    let ordered = rig
        .ok(
            reqwest::Method::POST,
            "/certificates",
            Some(json!({ "domains": ["api.berth.test"], "challenge": "http-01", "key_type": "rsa-2048" })),
        )
        .await;
    assert_eq!(ordered["state"], "pending");
    let id = ordered["id"].as_str().unwrap().to_string();
    let first = rig.settled(&id).await;
    assert_eq!(first["state"], "valid", "{first:#}");

    let ts = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
        .unix_timestamp()
    };
    let (nb, na, renew) = (
        ts(&first["not_before"]),
        ts(&first["not_after"]),
        ts(&first["renew_at"]),
    );
    let lifetime = na - nb;
    assert!(
        (590..=610).contains(&lifetime),
        "pebble's 600 s certificate: {lifetime}"
    );
    // Two thirds of the lifetime, moved earlier by at most 1/30 of it.
    let two_thirds = nb + lifetime * 2 / 3;
    assert!(
        renew <= two_thirds && renew >= two_thirds - lifetime / 30,
        "{renew} vs {two_thirds}"
    );

    // Nothing happens before the renewal time...
    rig.app.state.certificates.tick().await;
    assert_eq!(
        rig.certificate(&id).await["fingerprint"],
        first["fingerprint"]
    );
    // ...and after it, the scheduler renews and the proxy serves the new one.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    rig.app.state.certificates.clock.advance(renew - now + 1);
    rig.app.state.certificates.tick().await;
    // (The background scheduler may have started the renewal first.)
    let second = rig.changed(&id, "fingerprint", &first["fingerprint"]).await;
    assert_eq!(second["state"], "valid", "{second:#}");
    assert_ne!(second["fingerprint"], first["fingerprint"], "renewed");
    assert!(ts(&second["not_after"]) >= na);
    let served = presented(rig.https, "api.berth.test").await.unwrap();
    assert_eq!(
        fingerprint(&served[0]),
        second["fingerprint"].as_str().unwrap()
    );
    let client = tls_client(pebble.issuing_root().await, &["api.berth.test"], rig.https);
    let r = client
        .get(format!("https://api.berth.test:{}/", rig.https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn dns01_issues_a_wildcard_through_rfc2136_with_tsig_and_cleans_up() {
    let named = Named::start().await;
    let port = free_port();
    let pebble = Pebble::start(PebbleOptions {
        dns: Some(named.addr),
        ..PebbleOptions::http(port)
    })
    .await;
    let rig = Rig::start(port, None).await;
    let echo = echo_server().await;
    rig.use_ca(&pebble).await;
    rig.domain("app.wild.berth.test", echo.addr, false).await;

    // A wildcard over HTTP-01 is refused up front, naming the field.
    let r = rig
        .send(
            reqwest::Method::POST,
            "/certificates",
            Some(json!({ "domains": ["*.wild.berth.test"], "challenge": "http-01" })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(r).await.1.as_deref(), Some("domains[0]"));

    // A wrong TSIG secret is accepted as base64 but refused by BIND: the
    // error says what to check.
    rig.ok(
        reqwest::Method::POST,
        "/dns-providers",
        Some(json!({
            "name": "wrong",
            "config": { "kind": "rfc2136", "server": named.addr.to_string(), "zone": named.zone,
                        "key_name": named.key_name },
            "secret": "c2VjcmV0IHRoYXQgaXMgbm90IHRoZSBrZXk=",
            "allow_internal": true,
        })),
    )
    .await;
    let bad = rig
        .ok(
            reqwest::Method::POST,
            "/certificates",
            Some(json!({ "domains": ["*.wild.berth.test"], "challenge": "dns-01", "dns_provider": "wrong" })),
        )
        .await;
    let bad = rig.settled(bad["id"].as_str().unwrap()).await;
    assert_eq!(bad["state"], "failed");
    let why = bad["last_error"].as_str().unwrap();
    assert!(
        why.contains("TSIG") && why.to_uppercase().contains("BADSIG"),
        "{why}"
    );
    assert!(!why.contains("c2VjcmV0"), "no secret in errors: {why}");

    let provider = rig
        .ok(
            reqwest::Method::POST,
            "/dns-providers",
            Some(json!({
                "name": "bind",
                "config": { "kind": "rfc2136", "server": named.addr.to_string(), "zone": named.zone,
                            "key_name": named.key_name },
                "secret": named.secret,
                "allow_internal": true,
            })),
        )
        .await;
    assert!(provider.get("secret").is_none());
    let listed = rig
        .send(reqwest::Method::GET, "/dns-providers", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(!listed.contains(&named.secret));

    let ordered = rig
        .ok(
            reqwest::Method::POST,
            "/certificates",
            Some(
                json!({ "domains": ["*.wild.berth.test", "wild.berth.test"], "challenge": "dns-01",
                         "dns_provider": "bind" }),
            ),
        )
        .await;
    let cert = rig.settled(ordered["id"].as_str().unwrap()).await;
    assert_eq!(cert["state"], "valid", "{cert:#}");
    assert_eq!(cert["challenge"], "dns-01");
    // The TXT records are gone afterwards.
    assert!(named
        .txt("_acme-challenge.wild.berth.test")
        .await
        .is_empty());
    // The wildcard covers the domain's host, and a client trusting pebble's
    // root accepts it.
    let client = tls_client(
        pebble.issuing_root().await,
        &["app.wild.berth.test"],
        rig.https,
    );
    let r = client
        .get(format!("https://app.wild.berth.test:{}/", rig.https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A provider in use cannot be deleted.
    let r = rig
        .send(reqwest::Method::DELETE, "/dns-providers/bind", None)
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn failures_say_what_to_fix_back_off_and_notify() {
    let port = free_port();
    // pebble validates on a port where nothing listens.
    let pebble = Pebble::start(PebbleOptions {
        eab: Some((
            "kid-1".into(),
            "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W".into(),
        )),
        ..PebbleOptions::http(free_port())
    })
    .await;
    let rig = Rig::start(port, Some(pebble.dns)).await;
    let echo = echo_server().await;
    let (inbox, hook) = Inbox::start().await;
    rig.ok(
        reqwest::Method::POST,
        "/notifications/channels",
        Some(json!({ "name": "ops", "config": { "kind": "webhook", "url": format!("http://{hook}/hook") },
                     "secret": "hook-secret", "allow_internal": true })),
    )
    .await;
    // The URL's path is write-only (it is the credential of many webhooks).
    let listed = rig
        .ok(reqwest::Method::GET, "/notifications/channels", None)
        .await;
    assert_eq!(listed[0]["config"]["url"], format!("http://{hook}/…"));
    assert_eq!(listed[0]["has_secret"], true);
    assert!(!listed.to_string().contains("hook-secret"));
    rig.domain("fail.berth.test", echo.addr, false).await;

    // No EAB where the CA requires one.
    rig.use_ca(&pebble).await;
    let order = || async {
        let c = rig
            .ok(
                reqwest::Method::POST,
                "/certificates",
                Some(json!({ "domains": ["fail.berth.test"] })),
            )
            .await;
        c["id"].as_str().unwrap().to_string()
    };
    let id = order().await;
    let c = rig.settled(&id).await;
    assert_eq!(c["state"], "failed");
    let why = c["last_error"].as_str().unwrap();
    assert!(why.contains("external account binding"), "{why}");
    rig.ok(
        reqwest::Method::DELETE,
        &format!("/certificates/{id}"),
        None,
    )
    .await;

    // A wrong EAB key.
    let mut settings = pebble.acme_settings();
    settings["eab"] = json!({ "kid": "kid-1", "hmac_key": "d3JvbmcgaG1hYyBrZXkgZm9yIHRoZSB0ZXN0" });
    rig.ok(reqwest::Method::PUT, "/acme", Some(settings.clone()))
        .await;
    let id = order().await;
    let c = rig.settled(&id).await;
    let why = c["last_error"].as_str().unwrap();
    assert!(why.contains("the CA refused"), "{why}");
    assert!(!why.contains("d3JvbmcgaG1hYyBrZXk"), "no key in errors");
    rig.ok(
        reqwest::Method::DELETE,
        &format!("/certificates/{id}"),
        None,
    )
    .await;
    // A bad EAB key format is refused at once, naming the field.
    settings["eab"] = json!({ "kid": "kid-1", "hmac_key": "not base64!" });
    let r = rig
        .send(reqwest::Method::PUT, "/acme", Some(settings.clone()))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(r).await.1.as_deref(), Some("eab.hmac_key"));

    // The right EAB key: registration works, but the challenge is
    // unreachable for the CA. The self-test passes (berth's proxy answers on
    // its own port), so the CA's validation error is what the admin sees.
    settings["eab"] = json!({ "kid": "kid-1", "hmac_key": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W" });
    rig.ok(reqwest::Method::PUT, "/acme", Some(settings)).await;
    let id = order().await;
    let c = rig.settled(&id).await;
    assert_eq!(c["state"], "failed");
    let why = c["last_error"].as_str().unwrap();
    assert!(
        why.contains("fail.berth.test") && why.contains("connection"),
        "{why}"
    );
    assert_eq!(c["failures"], 1);
    assert_eq!(c["renew_reason"], "retry");
    let steps = c["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s["step"] == "validation" && s["status"] == "failed"),
        "{steps:?}"
    );

    // The failure was announced, signed with the channel's secret.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !inbox
        .events()
        .iter()
        .any(|e| e["event"] == "certificate.issuance_failed")
    {
        assert!(Instant::now() < deadline, "no notification");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        use hmac::Mac;
        let (headers, body) = inbox.0.lock().unwrap().last().cloned().unwrap();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hook-secret").unwrap();
        mac.update(&body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(headers["x-berth-signature"], expected.as_str());
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("hook-secret"));
    }

    // Retries back off: not before a minute, then after ten more.
    let retry = |c: &Value| {
        time::OffsetDateTime::parse(
            c["renew_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
        .unix_timestamp()
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (50..=70).contains(&(retry(&c) - now)),
        "about a minute: {}",
        retry(&c) - now
    );
    rig.app.state.certificates.tick().await;
    assert_eq!(
        rig.certificate(&id).await["failures"],
        1,
        "no retry before its time"
    );
    rig.app.state.certificates.clock.advance(61);
    rig.app.state.certificates.tick().await;
    let c = rig.changed(&id, "failures", &json!(1)).await;
    assert_eq!(c["failures"], 2);
    let clock_now = now + 61;
    assert!(
        (590..=620).contains(&(retry(&c) - clock_now)),
        "ten minutes: {}",
        retry(&c) - clock_now
    );
}

#[tokio::test]
async fn the_self_test_stops_an_order_before_the_ca_is_asked() {
    let port = free_port();
    let pebble = Pebble::start(PebbleOptions::http(port)).await;
    // The self-test checks a port where nothing listens (as when port 80 is
    // closed by a firewall).
    let closed = free_port();
    let app = spawn_with(|c| {
        c.proxy.http = Some(SocketAddr::from(([127, 0, 0, 1], port)));
        c.certificates.self_test_port = closed;
        c.certificates.resolver = Some(pebble.dns);
    })
    .await;
    let csrf = app.setup().await;
    let addrs = app.state.proxy.addresses();
    let rig = Rig {
        http: addrs[0],
        https: addrs[1],
        app,
        csrf,
    };
    let echo = echo_server().await;
    rig.use_ca(&pebble).await;
    rig.domain("closed.berth.test", echo.addr, false).await;
    let c = rig
        .ok(
            reqwest::Method::POST,
            "/certificates",
            Some(json!({ "domains": ["closed.berth.test"] })),
        )
        .await;
    let c = rig.settled(c["id"].as_str().unwrap()).await;
    assert_eq!(c["state"], "failed");
    let why = c["last_error"].as_str().unwrap();
    assert!(
        why.contains("nothing answered on port") && why.contains("firewall"),
        "{why}"
    );
    let steps = c["steps"].as_array().unwrap();
    assert_eq!(steps.last().unwrap()["step"], "self-test");
    assert!(
        !steps.iter().any(|s| s["step"] == "order"),
        "the CA was not asked: {steps:?}"
    );
    assert!(rig.ok(reqwest::Method::GET, "/acme", None).await["account_id"].is_null());
    let _ = rig.http;
}

#[tokio::test]
async fn an_unreachable_ca_is_named_in_the_error_and_retried() {
    let port = free_port();
    let pebble = Pebble::start(PebbleOptions::http(port)).await;
    let rig = Rig::start(port, Some(pebble.dns)).await;
    let echo = echo_server().await;
    let mut settings = pebble.acme_settings();
    let gone = format!("https://127.0.0.1:{}/dir", free_port());
    settings["directory_url"] = json!(gone);
    rig.ok(reqwest::Method::PUT, "/acme", Some(settings)).await;
    rig.domain("down.berth.test", echo.addr, false).await;
    let c = rig
        .ok(
            reqwest::Method::POST,
            "/certificates",
            Some(json!({ "domains": ["down.berth.test"] })),
        )
        .await;
    let c = rig.settled(c["id"].as_str().unwrap()).await;
    assert_eq!(c["state"], "failed");
    let why = c["last_error"].as_str().unwrap();
    assert!(
        why.contains("cannot be reached") && why.contains(&gone),
        "{why}"
    );
    assert_eq!(c["failures"], 1);
    assert_eq!(c["renew_reason"], "retry");
}

#[tokio::test]
async fn uploads_are_checked_stored_sealed_and_served_and_the_probe_sees_what_is_served() {
    let port = free_port();
    let rig = Rig::start(port, None).await;
    let echo = echo_server().await;
    let (inbox, hook) = Inbox::start().await;
    rig.ok(
        reqwest::Method::POST,
        "/notifications/channels",
        Some(json!({ "name": "ops", "config": { "kind": "webhook", "url": format!("http://{hook}/") },
                     "allow_internal": true })),
    )
    .await;
    rig.domain("up.berth.test", echo.addr, false).await;
    let make = |names: &[&str], days: i64| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    };
    let (cert, key) = make(&["up.berth.test"], 60);
    let (_, other_key) = make(&["up.berth.test"], 60);

    // A key from another certificate: refused, nothing stored.
    let r = rig
        .send(
            reqwest::Method::POST,
            "/certificates/upload",
            Some(json!({ "certificate_pem": cert, "key_pem": other_key, "domains": ["up.berth.test"] })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(r).await.1.as_deref(), Some("key_pem"));
    // Names that do not cover the domain: refused.
    let r = rig
        .send(
            reqwest::Method::POST,
            "/certificates/upload",
            Some(
                json!({ "certificate_pem": cert, "key_pem": key, "domains": ["other.berth.test"] }),
            ),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (_, field) = error_of(r).await;
    assert_eq!(field.as_deref(), Some("domains"));
    assert!(rig
        .ok(reqwest::Method::GET, "/certificates", None)
        .await
        .as_array()
        .unwrap()
        .is_empty());

    // A good one is stored sealed and served at once.
    let r = rig
        .send(
            reqwest::Method::POST,
            "/certificates/upload",
            Some(json!({ "certificate_pem": format!("junk before\n{cert}"), "key_pem": key, "domains": ["up.berth.test"] })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let text = r.text().await.unwrap();
    assert!(!text.contains("PRIVATE KEY"));
    let up: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(up["source"], "upload");
    assert!(up["renew_at"].is_null());
    let served = presented(rig.https, "up.berth.test").await.unwrap();
    assert_eq!(fingerprint(&served[0]), up["fingerprint"].as_str().unwrap());

    // The probe agrees with the store.
    let probes = rig
        .ok(reqwest::Method::POST, "/certificates/probes", None)
        .await;
    let p = &probes.as_array().unwrap()[0];
    assert_eq!(
        (p["host"].as_str(), p["status"].as_str()),
        (Some("up.berth.test"), Some("ok")),
        "{p}"
    );

    // Someone drops another certificate for the host into the certificate
    // directory; it lives longer, so the proxy serves it, and the probe
    // notices that it is not the one berth expects.
    let (stray, stray_key) = make(&["up.berth.test"], 300);
    let dir = rig.app.data_dir.path().join("certs/manual");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("fullchain.pem"), &stray).unwrap();
    std::fs::write(dir.join("privkey.pem"), &stray_key).unwrap();
    rig.app.state.proxy.rebuild().await.unwrap();
    let probes = rig
        .ok(reqwest::Method::POST, "/certificates/probes", None)
        .await;
    let p = &probes.as_array().unwrap()[0];
    assert_eq!(p["status"], "mismatch", "{p}");
    assert_eq!(p["expected_certificate"], up["id"]);
    assert_ne!(p["served_fingerprint"], up["fingerprint"]);
    // Announced once, not at every probe.
    rig.ok(reqwest::Method::POST, "/certificates/probes", None)
        .await;
    let mismatches = inbox
        .events()
        .iter()
        .filter(|e| e["event"] == "certificate.mismatch")
        .count();
    assert_eq!(mismatches, 1);

    // Back to berth's certificate; 50 days later it is within the warning.
    std::fs::remove_dir_all(&dir).unwrap();
    rig.app.state.proxy.rebuild().await.unwrap();
    rig.app.state.certificates.clock.advance(50 * 86_400);
    let probes = rig
        .ok(reqwest::Method::POST, "/certificates/probes", None)
        .await;
    assert_eq!(probes[0]["status"], "expiring", "{probes}");
    assert!(inbox
        .events()
        .iter()
        .any(|e| e["event"] == "certificate.expiring" && e["details"]["host"] == "up.berth.test"));

    // Deleting the certificate stops serving it.
    rig.ok(
        reqwest::Method::DELETE,
        &format!("/certificates/{}", up["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert!(presented(rig.https, "up.berth.test").await.is_err());
    let _ = rig.http;
}

#[tokio::test]
async fn bad_orders_and_channels_are_refused_naming_the_field() {
    let rig = Rig::start(free_port(), None).await;
    // No CA configured: 409 with what to do.
    let r = rig
        .send(
            reqwest::Method::POST,
            "/certificates",
            Some(json!({ "domains": ["a.berth.test"] })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    rig.ok(
        reqwest::Method::PUT,
        "/acme",
        Some(json!({ "directory_url": "https://acme.invalid/dir", "email": "a@b.test" })),
    )
    .await;
    for (body, field) in [
        (json!({ "domains": [] }), "domains"),
        (
            json!({ "domains": ["a.berth.test", "bad name"] }),
            "domains[1]",
        ),
        (
            json!({ "domains": ["a.*.berth.test"], "challenge": "dns-01" }),
            "domains[0]",
        ),
        (json!({ "domains": ["127.0.0.1"] }), "domains[0]"),
        (
            json!({ "domains": ["a.berth.test"], "challenge": "dns-01" }),
            "challenge",
        ),
        (
            json!({ "domains": ["a.berth.test"], "dns_provider": "x" }),
            "dns_provider",
        ),
    ] {
        let r = rig
            .send(reqwest::Method::POST, "/certificates", Some(body.clone()))
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_of(r).await.1.as_deref(), Some(field), "{body}");
    }
    for (body, field) in [
        (
            json!({ "directory_url": "http://acme.test/dir" }),
            "directory_url",
        ),
        (
            json!({ "directory_url": "https://acme.test/dir", "email": "nope" }),
            "email",
        ),
        (
            json!({ "directory_url": "https://acme.test/dir", "extra_roots_pem": "junk" }),
            "extra_roots_pem",
        ),
        (
            json!({ "directory_url": "https://acme.test/dir", "eab": { "kid": "" , "hmac_key": "abc" } }),
            "eab.kid",
        ),
    ] {
        let r = rig
            .send(reqwest::Method::PUT, "/acme", Some(body.clone()))
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_of(r).await.1.as_deref(), Some(field), "{body}");
    }
    for (body, field) in [
        (
            json!({ "name": "m", "config": { "kind": "webhook", "url": "http://169.254.169.254/latest" }, "allow_internal": true }),
            "config.url",
        ),
        (
            json!({ "name": "p", "config": { "kind": "webhook", "url": "http://10.0.0.1/x" } }),
            "config.url",
        ),
        (
            json!({ "name": "f", "config": { "kind": "webhook", "url": "ftp://x.test/" } }),
            "config.url",
        ),
        (
            json!({ "name": "", "config": { "kind": "webhook", "url": "https://x.test/" } }),
            "name",
        ),
        (
            json!({ "name": "e", "config": { "kind": "email", "host": "smtp.test", "port": 587, "security": "starttls",
                 "from": "nope", "to": ["a@b.test"] } }),
            "config.from",
        ),
        (
            json!({ "name": "e", "config": { "kind": "email", "host": "smtp.test", "port": 587, "security": "starttls",
                 "from": "a@b.test", "to": [] } }),
            "config.to",
        ),
        (
            json!({ "name": "e", "config": { "kind": "email", "host": "smtp.test", "port": 587, "security": "starttls",
                 "username": "u", "from": "a@b.test", "to": ["c@d.test"] } }),
            "secret",
        ),
        (
            json!({ "name": "e", "config": { "kind": "email", "host": "smtp.test", "port": 25, "security": "none",
                 "username": "u", "from": "a@b.test", "to": ["c@d.test"] }, "secret": "pw" }),
            "config.security",
        ),
    ] {
        let r = rig
            .send(
                reqwest::Method::POST,
                "/notifications/channels",
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_of(r).await.1.as_deref(), Some(field), "{body}");
    }
    for (body, field) in [
        (
            json!({ "name": "b", "config": { "kind": "rfc2136", "server": "ns.test", "zone": "x.test", "key_name": "k" }, "secret": "c2VjcmV0" }),
            "config.server",
        ),
        (
            json!({ "name": "b", "config": { "kind": "rfc2136", "server": "127.0.0.1:53", "zone": "x.test", "key_name": "k" }, "secret": "c2VjcmV0" }),
            "config.server",
        ),
        (
            json!({ "name": "b", "config": { "kind": "rfc2136", "server": "127.0.0.1:53", "zone": "x.test", "key_name": "k" }, "secret": "***", "allow_internal": true }),
            "secret",
        ),
        (
            json!({ "name": "b", "config": { "kind": "rfc2136", "server": "127.0.0.1:53", "zone": "x.test", "key_name": "k", "algorithm": "md5" }, "secret": "c2VjcmV0", "allow_internal": true }),
            "config.algorithm",
        ),
        (
            json!({ "name": "b c", "config": { "kind": "powerdns", "api_url": "https://dns.test", "zone": "x.test" }, "secret": "k" }),
            "name",
        ),
    ] {
        let r = rig
            .send(reqwest::Method::POST, "/dns-providers", Some(body.clone()))
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_of(r).await.1.as_deref(), Some(field), "{body}");
    }
    assert!(rig
        .ok(reqwest::Method::GET, "/certificates", None)
        .await
        .as_array()
        .unwrap()
        .is_empty());
    assert!(rig
        .ok(reqwest::Method::GET, "/notifications/channels", None)
        .await
        .as_array()
        .unwrap()
        .is_empty());
    assert!(rig
        .ok(reqwest::Method::GET, "/dns-providers", None)
        .await
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_email_channel_delivers_through_a_real_smtp_server() {
    let rig = Rig::start(free_port(), None).await;
    let port = free_port();
    let out = tempfile::NamedTempFile::new().unwrap();
    // aiosmtpd's default handler prints each message it receives.
    let server = std::process::Command::new("python3")
        .args([
            "-u",
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(out.reopen().unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m aiosmtpd (pip install aiosmtpd)");
    let _server = crate::acme_rig::Proc(server);
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "aiosmtpd did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let channel = rig
        .ok(
            reqwest::Method::POST,
            "/notifications/channels",
            Some(json!({
                "name": "mail",
                "config": { "kind": "email", "host": "127.0.0.1", "port": port, "security": "none",
                            "from": "berth@berth.test", "to": ["admin@berth.test"] },
                "allow_internal": true,
            })),
        )
        .await;
    let id = channel["id"].as_str().unwrap();
    let test = rig
        .ok(
            reqwest::Method::POST,
            &format!("/notifications/channels/{id}/test"),
            None,
        )
        .await;
    assert_eq!(test["delivered"], true, "{test}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = std::fs::read_to_string(out.path()).unwrap();
        if got.contains("Subject: berth: test notification") && got.contains("admin@berth.test") {
            break;
        }
        assert!(Instant::now() < deadline, "no mail arrived: {got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed = rig
        .ok(reqwest::Method::GET, "/notifications/channels", None)
        .await;
    assert!(listed[0]["last_sent_at"].is_string());

    // A relay that is not there: the test says so and the channel keeps the error.
    let dead = rig
        .ok(
            reqwest::Method::POST,
            "/notifications/channels",
            Some(json!({
                "name": "dead",
                "config": { "kind": "email", "host": "127.0.0.1", "port": free_port(), "security": "none",
                            "from": "berth@berth.test", "to": ["admin@berth.test"] },
                "allow_internal": true,
            })),
        )
        .await;
    let test = rig
        .ok(
            reqwest::Method::POST,
            &format!(
                "/notifications/channels/{}/test",
                dead["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(test["delivered"], false);
    assert!(
        test["error"].as_str().unwrap().contains("SMTP relay"),
        "{test}"
    );
}

#[tokio::test]
async fn the_panel_domain_from_the_wizard_gets_its_certificate_on_the_admin_listener() {
    let port = free_port();
    let pebble = Pebble::start(PebbleOptions::http(port)).await;
    let app = spawn_with(|c| {
        c.tls = berth::config::Tls::SelfSigned;
        c.proxy.http = Some(SocketAddr::from(([127, 0, 0, 1], port)));
        c.certificates.self_test_port = port;
        c.certificates.resolver = Some(pebble.dns);
    })
    .await;
    // Before: the self-signed certificate (the wizard runs over it).
    let admin: SocketAddr = app.url.trim_start_matches("https://").parse().unwrap();
    let browser = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .cookie_store(true)
        .build()
        .unwrap();
    let r = browser
        .post(app.api("/setup"))
        .json(
            &json!({ "token": app.setup_token(), "username": crate::helpers::USERNAME,
                       "password": crate::helpers::PASSWORD }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let csrf = r.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let put = |path: &'static str, body: Value| {
        browser
            .put(app.api(path))
            .header("X-CSRF-Token", &csrf)
            .json(&body)
            .send()
    };
    assert!(put("/acme", pebble.acme_settings())
        .await
        .unwrap()
        .status()
        .is_success());
    // The wizard's last step: the panel domain and the ACME e-mail.
    let r = put(
        "/settings",
        json!({ "panel_domain": "panel.berth.test", "acme_email": "ops@berth.test" }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let deadline = Instant::now() + Duration::from_secs(60);
    let cert = loop {
        let list: Value = browser
            .get(app.api("/certificates"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let valid = list
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["domains"] == json!(["panel.berth.test"]) && c["state"] == "valid")
            .cloned();
        if let Some(c) = valid {
            break c;
        }
        assert!(Instant::now() < deadline, "no panel certificate: {list:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(cert["automatic"], true);
    // The admin listener now presents it for the panel's name (verified
    // against pebble's root), and still the self-signed one for others.
    let verified = tls_client(pebble.issuing_root().await, &["panel.berth.test"], admin);
    let r = verified
        .get(format!("https://panel.berth.test:{}/health", admin.port()))
        .send()
        .await
        .expect("the panel domain's certificate verifies");
    assert_eq!(r.status(), StatusCode::OK);
    let served = presented(admin, "panel.berth.test").await.unwrap();
    assert_eq!(
        fingerprint(&served[0]),
        cert["fingerprint"].as_str().unwrap()
    );
    let other = presented(admin, "localhost").await.unwrap();
    assert_ne!(
        fingerprint(&other[0]),
        cert["fingerprint"].as_str().unwrap()
    );
}

/// pebble 2.4 has no ACME Renewal Information. This front serves pebble's
/// directory with a `renewalInfo` URL added and answers that endpoint with
/// a fixed window, so berth's ARI path runs against real orders.
struct AriFront {
    url: String,
    root_pem: String,
    asked: Arc<Mutex<Vec<String>>>,
}

async fn ari_front(pebble: &Pebble, window: (i64, i64)) -> AriFront {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names.push(rcgen::SanType::IpAddress(
        std::net::Ipv4Addr::LOCALHOST.into(),
    ));
    let cert = params.self_signed(&key).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let directory: Value = pebble
        .client()
        .get(&pebble.directory_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut directory = directory;
    directory["renewalInfo"] = json!(format!("https://{addr}/renewal-info"));
    let directory = Arc::new(directory.to_string());
    let record = asked.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let directory = directory.clone();
            let record = record.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let directory = directory.clone();
                        let record = record.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let rfc = |t: i64| {
                                time::OffsetDateTime::from_unix_timestamp(t)
                                    .unwrap()
                                    .format(&time::format_description::well_known::Rfc3339)
                                    .unwrap()
                            };
                            let resp = if path == "/dir" {
                                hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(directory.as_str().to_string())))
                            } else if let Some(id) = path.strip_prefix("/renewal-info/") {
                                record.lock().unwrap().push(id.to_string());
                                hyper::Response::builder()
                                .header("content-type", "application/json")
                                .header("retry-after", "21600")
                                .body(Full::new(Bytes::from(
                                    json!({ "suggestedWindow": { "start": rfc(window.0), "end": rfc(window.1) } })
                                        .to_string(),
                                )))
                            } else {
                                hyper::Response::builder()
                                    .status(404)
                                    .body(Full::new(Bytes::new()))
                            };
                            Ok::<_, Infallible>(resp.unwrap())
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    AriFront {
        url: format!("https://{addr}/dir"),
        root_pem: cert.pem(),
        asked,
    }
}

#[tokio::test]
async fn renewal_follows_the_cas_renewal_information_when_it_has_some() {
    let port = free_port();
    let pebble = Pebble::start(PebbleOptions::http(port)).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let window = (now + 3_600, now + 7_200);
    let front = ari_front(&pebble, window).await;
    let rig = Rig::start(port, Some(pebble.dns)).await;
    let echo = echo_server().await;
    rig.ok(
        reqwest::Method::PUT,
        "/acme",
        Some(json!({
            "directory_url": front.url,
            "email": "admin@berth.test",
            "extra_roots_pem": format!("{}{}", pebble.listener_root_pem, front.root_pem),
        })),
    )
    .await;
    rig.domain("ari.berth.test", echo.addr, false).await;
    let c = rig
        .ok(
            reqwest::Method::POST,
            "/certificates",
            Some(json!({ "domains": ["ari.berth.test"] })),
        )
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    let first = rig.settled(&id).await;
    assert_eq!(first["state"], "valid", "{first:#}");
    // A five-year certificate, but renewal is scheduled inside the CA's
    // window (an hour from now), not at two thirds of five years.
    assert_eq!(first["renew_reason"], "ari");
    let renew_at = time::OffsetDateTime::parse(
        first["renew_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();
    assert!(
        renew_at >= window.0 && renew_at < window.1,
        "{renew_at} not in {window:?}"
    );
    // The CA was asked about this very certificate (RFC 9773 identifier).
    let asked = front.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert!(asked[0].contains('.'), "{asked:?}");

    // Past the window start the scheduler renews (pebble does not echo
    // `replaces`, so berth orders again without it).
    rig.app.state.certificates.clock.advance(window.1 - now);
    rig.app.state.certificates.tick().await;
    let second = rig.changed(&id, "fingerprint", &first["fingerprint"]).await;
    assert_eq!(second["state"], "valid", "{second:#}");
    // The front's window is over for the new certificate too: berth does not
    // renew again at once but falls back to the lifetime.
    assert_eq!(second["renew_reason"], "two-thirds");
    let served = presented(rig.https, "ari.berth.test").await.unwrap();
    assert_eq!(
        fingerprint(&served[0]),
        second["fingerprint"].as_str().unwrap()
    );
}

#[tokio::test]
async fn dns01_through_the_powerdns_http_api() {
    let pdns = crate::acme_rig::PowerDns::start().await;
    let port = free_port();
    let pebble = Pebble::start(PebbleOptions {
        dns: Some(pdns.dns),
        ..PebbleOptions::http(port)
    })
    .await;
    // The resolver berth checks propagation with: the PowerDNS server itself.
    let rig = Rig::start(port, Some(pdns.dns)).await;
    let echo = echo_server().await;
    rig.use_ca(&pebble).await;
    rig.domain("pdns.berth.test", echo.addr, false).await;

    // A wrong API key is reported as such when the order runs.
    rig.ok(
        reqwest::Method::POST,
        "/dns-providers",
        Some(json!({
            "name": "pdns-bad",
            "config": { "kind": "powerdns", "api_url": pdns.api_url, "zone": "berth.test" },
            "secret": "not-the-key",
            "allow_internal": true,
        })),
    )
    .await;
    let bad = rig
        .ok(
            reqwest::Method::POST,
            "/certificates",
            Some(json!({ "domains": ["pdns.berth.test"], "challenge": "dns-01", "dns_provider": "pdns-bad" })),
        )
        .await;
    let bad = rig.settled(bad["id"].as_str().unwrap()).await;
    let why = bad["last_error"].as_str().unwrap();
    assert!(
        why.contains("API key") && !why.contains("not-the-key"),
        "{why}"
    );

    rig.ok(
        reqwest::Method::POST,
        "/dns-providers",
        Some(json!({
            "name": "pdns",
            "config": { "kind": "powerdns", "api_url": pdns.api_url, "zone": "berth.test" },
            "secret": pdns.api_key,
            "allow_internal": true,
        })),
    )
    .await;
    let c = rig
        .ok(
            reqwest::Method::POST,
            "/certificates",
            Some(
                json!({ "domains": ["*.pdns.berth.test", "pdns.berth.test"], "challenge": "dns-01",
                         "dns_provider": "pdns" }),
            ),
        )
        .await;
    let c = rig.settled(c["id"].as_str().unwrap()).await;
    assert_eq!(c["state"], "valid", "{c:#}");
    // Cleaned up afterwards.
    assert!(
        berth::certificates::dns::wire::txt(pdns.dns, "_acme-challenge.pdns.berth.test")
            .await
            .unwrap()
            .is_empty()
    );
    let client = tls_client(pebble.issuing_root().await, &["pdns.berth.test"], rig.https);
    let r = client
        .get(format!("https://pdns.berth.test:{}/", rig.https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn webhooks_follow_no_redirects_and_reach_private_addresses_only_when_allowed() {
    let rig = Rig::start(free_port(), None).await;
    // A receiver that answers every POST with a redirect to somewhere else.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirecting = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 65536];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        }
    });
    let rig = &rig;
    let add = |name: &'static str, url: String, internal: bool| {
        let body = json!({ "name": name, "config": { "kind": "webhook", "url": url }, "allow_internal": internal });
        async move {
            rig.ok(reqwest::Method::POST, "/notifications/channels", Some(body))
                .await
        }
    };
    let redirect = add("redirect", format!("http://{redirecting}/hook"), true).await;
    let test = rig
        .ok(
            reqwest::Method::POST,
            &format!(
                "/notifications/channels/{}/test",
                redirect["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(test["delivered"], false);
    assert!(
        test["error"]
            .as_str()
            .unwrap()
            .contains("does not follow redirects"),
        "{test}"
    );

    // A name that resolves to loopback, stored without allow_internal: the
    // check at send time refuses it.
    let (inbox, hook) = Inbox::start().await;
    let named = add(
        "named",
        format!("http://localhost:{}/hook", hook.port()),
        false,
    )
    .await;
    let test = rig
        .ok(
            reqwest::Method::POST,
            &format!(
                "/notifications/channels/{}/test",
                named["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(test["delivered"], false);
    assert!(
        test["error"].as_str().unwrap().contains("allow_internal"),
        "{test}"
    );
    assert!(
        inbox.events().is_empty(),
        "nothing reached the private address"
    );
}
