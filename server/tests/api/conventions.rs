use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn health_is_public_json() {
    let app = spawn_app().await;
    let r = client()
        .get(format!("{}/health", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
}

#[tokio::test]
async fn the_openapi_spec_describes_every_api_route() {
    let app = spawn_app().await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = spec["paths"].as_object().unwrap();
    let expected = [
        ("get", "/api/v1/setup"),
        ("post", "/api/v1/setup"),
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/logout"),
        ("get", "/api/v1/me"),
        ("post", "/api/v1/account/password"),
        ("post", "/api/v1/account/totp/enrol"),
        ("post", "/api/v1/account/totp/confirm"),
        ("post", "/api/v1/account/totp/disable"),
        ("get", "/api/v1/tokens"),
        ("post", "/api/v1/tokens"),
        ("delete", "/api/v1/tokens/{id}"),
        ("get", "/api/v1/audit"),
        ("get", "/api/v1/settings"),
        ("put", "/api/v1/settings"),
        ("get", "/api/v1/openapi.json"),
        ("get", "/api/v1/apps"),
        ("post", "/api/v1/apps"),
        ("get", "/api/v1/apps/{name}"),
        ("put", "/api/v1/apps/{name}"),
        ("delete", "/api/v1/apps/{name}"),
        ("get", "/api/v1/apps/{name}/plan"),
        ("post", "/api/v1/apps/{name}/start"),
        ("post", "/api/v1/apps/{name}/stop"),
        ("post", "/api/v1/apps/{name}/restart"),
        ("post", "/api/v1/apps/{name}/redeploy"),
        ("post", "/api/v1/apps/{name}/apply"),
        ("get", "/api/v1/apps/{name}/logs"),
        ("get", "/api/v1/apps/{name}/stats"),
        ("get", "/api/v1/containers"),
        ("post", "/api/v1/containers/{id}/start"),
        ("post", "/api/v1/containers/{id}/stop"),
        ("post", "/api/v1/containers/{id}/restart"),
        ("delete", "/api/v1/containers/{id}"),
        ("get", "/api/v1/images"),
        ("delete", "/api/v1/images/{id}"),
        ("post", "/api/v1/images/import"),
        ("post", "/api/v1/images/pull"),
        ("get", "/api/v1/images/pulls/{id}"),
        ("get", "/api/v1/volumes"),
        ("get", "/api/v1/networks"),
        ("get", "/api/v1/stacks"),
        ("post", "/api/v1/stacks"),
        ("get", "/api/v1/stacks/{name}"),
        ("delete", "/api/v1/stacks/{name}"),
        ("get", "/api/v1/domains"),
        ("post", "/api/v1/domains"),
        ("get", "/api/v1/domains/{host}"),
        ("put", "/api/v1/domains/{host}"),
        ("delete", "/api/v1/domains/{host}"),
        ("post", "/api/v1/domains/{host}/test"),
        ("get", "/api/v1/proxy/status"),
        ("get", "/api/v1/acme"),
        ("put", "/api/v1/acme"),
        ("get", "/api/v1/certificates"),
        ("post", "/api/v1/certificates"),
        ("post", "/api/v1/certificates/upload"),
        ("get", "/api/v1/certificates/probes"),
        ("post", "/api/v1/certificates/probes"),
        ("get", "/api/v1/certificates/{id}"),
        ("delete", "/api/v1/certificates/{id}"),
        ("post", "/api/v1/certificates/{id}/renew"),
        ("get", "/api/v1/dns-providers"),
        ("post", "/api/v1/dns-providers"),
        ("delete", "/api/v1/dns-providers/{name}"),
        ("get", "/api/v1/notifications/channels"),
        ("post", "/api/v1/notifications/channels"),
        ("delete", "/api/v1/notifications/channels/{id}"),
        ("post", "/api/v1/notifications/channels/{id}/test"),
        ("get", "/api/v1/apps/{name}/secrets"),
        ("put", "/api/v1/apps/{name}/secrets/{key}"),
        ("delete", "/api/v1/apps/{name}/secrets/{key}"),
        ("post", "/api/v1/apps/{name}/secrets/{key}/reveal"),
        ("post", "/api/v1/apps/{name}/secrets/import"),
        ("post", "/api/v1/apps/{name}/secrets/export"),
        ("get", "/api/v1/secret-groups"),
        ("post", "/api/v1/secret-groups"),
        ("delete", "/api/v1/secret-groups/{group}"),
        ("get", "/api/v1/secret-groups/{group}/secrets"),
        ("put", "/api/v1/secret-groups/{group}/secrets/{key}"),
        ("delete", "/api/v1/secret-groups/{group}/secrets/{key}"),
        ("post", "/api/v1/secret-groups/{group}/secrets/{key}/reveal"),
        ("post", "/api/v1/secret-groups/{group}/secrets/import"),
        ("post", "/api/v1/secret-groups/{group}/secrets/export"),
        ("get", "/api/v1/secrets/keys"),
        ("post", "/api/v1/secrets/recovery-key"),
        ("get", "/api/v1/containers/{id}/env"),
        ("get", "/api/v1/firewall"),
        ("get", "/api/v1/firewall/rules"),
        ("put", "/api/v1/firewall/rules"),
        ("get", "/api/v1/firewall/plan"),
        ("post", "/api/v1/firewall/apply"),
        ("post", "/api/v1/firewall/confirm"),
        ("post", "/api/v1/firewall/rollback"),
        ("get", "/api/v1/firewall/exposure"),
        ("get", "/api/v1/firewall/presets"),
        ("get", "/api/v1/backups/jobs"),
        ("post", "/api/v1/backups/jobs"),
        ("get", "/api/v1/backups/jobs/{id}"),
        ("put", "/api/v1/backups/jobs/{id}"),
        ("delete", "/api/v1/backups/jobs/{id}"),
        ("post", "/api/v1/backups/jobs/{id}/run"),
        ("post", "/api/v1/backups/jobs/{id}/drill"),
        ("get", "/api/v1/backups/jobs/{id}/prune-preview"),
        ("get", "/api/v1/backups/runs"),
        ("get", "/api/v1/backups/runs/{id}"),
        ("post", "/api/v1/backups/runs/{id}/restore"),
        ("get", "/api/v1/backups/restores/{id}"),
        ("get", "/api/v1/backups/drills"),
        ("get", "/api/v1/backups/drills/{id}"),
        ("get", "/api/v1/backups/schedule-preview"),
        ("get", "/api/v1/backups/key"),
        ("post", "/api/v1/backups/key"),
    ];
    for (method, path) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the spec"
        );
    }
    // And the other way round: everything the spec lists is routed (an
    // unrouted path would answer the API's JSON 404).
    let anon = client();
    let mut operations = 0;
    for (path, item) in paths {
        assert!(path.starts_with("/api/v1/"), "{path}");
        for method in item.as_object().unwrap().keys() {
            operations += 1;
            let url = format!(
                "{}{}",
                app.url,
                path.replace("{id}", "x")
                    .replace("{name}", "x")
                    .replace("{host}", "x.example.com")
                    .replace("{group}", "g")
                    .replace("{key}", "KEY")
            );
            let r = anon
                .request(method.to_uppercase().parse().unwrap(), url)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_ne!(
                r.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            if r.status() == StatusCode::NOT_FOUND {
                assert_ne!(
                    error_of(r).await.0,
                    "not_found",
                    "{method} {path} is not routed"
                );
            }
        }
    }
    assert_eq!(
        operations,
        expected.len(),
        "the spec has operations this test does not know"
    );
}

#[tokio::test]
async fn an_unknown_api_route_is_a_json_404() {
    let app = spawn_app().await;
    let r = app.get("/nope").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_of(r).await.0, "not_found");
}

#[tokio::test]
async fn bad_json_unknown_fields_wrong_types_and_media_types_are_4xx_naming_the_problem() {
    let app = spawn_app().await;
    let url = app.api("/setup");
    let send = |body: &'static str, ctype: &'static str| {
        let url = url.clone();
        async move {
            client()
                .post(url)
                .header("Content-Type", ctype)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let r = send("{\"token\":", "application/json").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_of(r).await.0, "malformed_json");

    let r = send(
        r#"{"token":"t","username":"a","password":"p","role":"x"}"#,
        "application/json",
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(r).await.1.as_deref(), Some("role"));

    let r = send(
        r#"{"token":"t","username":7,"password":"p"}"#,
        "application/json",
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(r).await.1.as_deref(), Some("username"));

    let r = send("token=t", "application/x-www-form-urlencoded").await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = format!(
        r#"{{"token":"{}","username":"a","password":"p"}}"#,
        "x".repeat(100_000)
    );
    let r = client()
        .post(app.api("/setup"))
        .header("Content-Type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.admin_count().await, 0);
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_a_request_id() {
    let app = spawn_app().await;
    for path in ["/health", "/api/v1/setup", "/api/v1/nope", "/login"] {
        let r = client()
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(h.contains_key("x-request-id"), "{path}");
        assert!(
            !h.contains_key("strict-transport-security"),
            "no HSTS over plain HTTP"
        );
    }
}

#[tokio::test]
async fn pages_are_server_rendered_with_a_per_response_script_nonce() {
    let app = spawn_app().await;
    let nonce_of = |csp: &str| {
        csp.split("'nonce-")
            .nth(1)
            .and_then(|s| s.split('\'').next())
            .unwrap()
            .to_string()
    };
    let r = client()
        .get(format!("{}/setup", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let html = r.text().await.unwrap();
    let nonce = nonce_of(&csp);
    assert!(html.contains("Set up berth"), "server-rendered content");
    assert!(
        html.contains(&format!("nonce=\"{nonce}\"")),
        "hydration script carries the nonce"
    );
    assert!(html.contains("/pkg/berth.js"));
    let again = client()
        .get(format!("{}/login", app.url))
        .send()
        .await
        .unwrap();
    let csp2 = again.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(nonce_of(&csp2), nonce);
}

#[tokio::test]
async fn settings_are_validated_and_stored() {
    let app = spawn_app().await;
    let csrf = app.setup().await;
    let put = |body: Value| {
        let url = app.api("/settings");
        let csrf = csrf.clone();
        let c = &app.client;
        async move {
            c.put(url)
                .header("X-CSRF-Token", csrf)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let r = put(json!({ "panel_domain": "<script>.example.com", "acme_email": "ops@example.com" }))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(r).await.1.as_deref(), Some("panel_domain"));
    let r = put(json!({ "panel_domain": "panel.example.com", "acme_email": "nope" })).await;
    assert_eq!(error_of(r).await.1.as_deref(), Some("acme_email"));
    let stored: Value = app.get("/settings").await.json().await.unwrap();
    assert_eq!(
        stored,
        json!({ "panel_domain": null, "acme_email": null }),
        "nothing changed"
    );

    let r =
        put(json!({ "panel_domain": "Panel.Example.com", "acme_email": "ops@example.com" })).await;
    assert_eq!(r.status(), StatusCode::OK);
    let stored: Value = app.get("/settings").await.json().await.unwrap();
    assert_eq!(
        stored,
        json!({ "panel_domain": "panel.example.com", "acme_email": "ops@example.com" })
    );
}

#[tokio::test]
async fn a_wrong_method_on_an_api_route_is_a_json_405() {
    let app = spawn_app().await;
    let r = client().delete(app.api("/setup")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_of(r).await.0, "method_not_allowed");
}

/// Every `/api/v1` route is registered through utoipa-axum's `routes!`, which
/// puts it in the spec. A plain `.route(` would bypass that, so the only one
/// allowed in the server's source is `/health`, outside the API.
#[test]
fn no_api_route_is_registered_outside_the_openapi_router() {
    fn visit(dir: &std::path::Path, hits: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                visit(&path, hits);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, line) in text.lines().enumerate() {
                    if line.contains(".route(") && !line.contains(".route(\"/health\"") {
                        hits.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
    let mut hits = Vec::new();
    visit(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut hits,
    );
    assert!(
        hits.is_empty(),
        "routes outside the OpenAPI router:\n{}",
        hits.join("\n")
    );
}
