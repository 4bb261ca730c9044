use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn login_sets_an_httponly_strict_cookie_and_returns_a_csrf_token() {
    let app = spawn_app().await;
    app.setup().await;
    let fresh = client();
    let r = app.login_as(&fresh, "Admin", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("berth_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["username"], "admin");
    assert_eq!(v["csrf_token"].as_str().unwrap().len(), 64);
    let me = fresh.get(app.api("/me")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
}

#[tokio::test]
async fn login_gives_a_new_session_id() {
    let app = spawn_app().await;
    app.setup().await;
    let c = client();
    let first = app.login_as(&c, USERNAME, PASSWORD).await;
    let second = app.login_as(&c, USERNAME, PASSWORD).await;
    assert_ne!(session_cookie(&first), session_cookie(&second));
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_401() {
    let app = spawn_app().await;
    app.setup().await;
    let a = app.login_as(&client(), "nobody", PASSWORD).await;
    let b = app
        .login_as(&client(), USERNAME, "wrong password here")
        .await;
    assert_eq!(a.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(b.status(), StatusCode::UNAUTHORIZED);
    let a: Value = a.json().await.unwrap();
    let b: Value = b.json().await.unwrap();
    assert_eq!(a, b);
    let actions = app.audit_actions().await;
    let failures = actions
        .iter()
        .filter(|(a, o)| a == "auth.login" && o == "failure")
        .count();
    assert_eq!(failures, 2);
}

#[tokio::test]
async fn five_failures_from_one_client_then_429_with_retry_after_even_for_the_right_password() {
    let app = spawn_app().await;
    app.setup().await;
    let c = client();
    for _ in 0..5 {
        let r = app.login_as(&c, USERNAME, "wrong password here").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = app.login_as(&c, USERNAME, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert!(app
        .audit_actions()
        .await
        .contains(&("auth.login".to_string(), "denied".to_string())));
}

#[tokio::test]
async fn failures_from_another_trusted_proxy_client_do_not_block_the_admin() {
    // Behind a trusted proxy, X-Forwarded-For tells clients apart: an attacker
    // failing five times does not lock out the admin's own address.
    let app = spawn_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    app.setup().await;
    for _ in 0..5 {
        let r = client()
            .post(app.api("/auth/login"))
            .header("X-Forwarded-For", "203.0.113.66")
            .json(&json!({ "username": USERNAME, "password": "wrong password here" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let attacker = client()
        .post(app.api("/auth/login"))
        .header("X-Forwarded-For", "203.0.113.66")
        .json(&json!({ "username": USERNAME, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(attacker.status(), StatusCode::TOO_MANY_REQUESTS);
    let admin = client()
        .post(app.api("/auth/login"))
        .header("X-Forwarded-For", "198.51.100.7")
        .json(&json!({ "username": USERNAME, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), StatusCode::OK);
    let ips: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT client_ip FROM audit_log WHERE action = 'auth.login' ORDER BY client_ip",
    )
    .fetch_all(&app.state.db)
    .await
    .unwrap();
    assert_eq!(ips, vec!["198.51.100.7", "203.0.113.66"]);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = spawn_app().await;
    app.setup().await;
    for i in 0..5 {
        client()
            .post(app.api("/auth/login"))
            .header("X-Forwarded-For", format!("203.0.113.{i}"))
            .json(&json!({ "username": USERNAME, "password": "wrong password here" }))
            .send()
            .await
            .unwrap();
    }
    let r = app.login_as(&client(), USERNAME, PASSWORD).await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "spoofing XFF must not dodge the limit"
    );
}

#[tokio::test]
async fn logout_ends_the_session_on_the_server() {
    let app = spawn_app().await;
    let csrf = app.setup().await;
    let cookie_jar_client = &app.client;
    // Keep the raw cookie to replay it after logout.
    let me = cookie_jar_client.get(app.api("/me")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let r = app.post("/auth/logout", &csrf, json!({})).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get("/me").await.status(), StatusCode::UNAUTHORIZED);
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM tower_sessions")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(sessions, 0, "the server-side record is gone");
}

#[tokio::test]
async fn a_replayed_cookie_after_logout_is_refused() {
    let app = spawn_app().await;
    app.setup().await;
    let r = app.login_as(&client(), USERNAME, PASSWORD).await;
    let cookie = session_cookie(&r);
    let csrf = csrf_of(r).await;
    let plain = reqwest::Client::new();
    let ok = plain
        .get(app.api("/me"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let out = plain
        .post(app.api("/auth/logout"))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let replay = plain
        .get(app.api("/me"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_state_change_without_the_csrf_header_is_403_and_changes_nothing() {
    let app = spawn_app().await;
    app.setup().await;
    for csrf in [None, Some("0".repeat(64))] {
        let mut req = app
            .client
            .post(app.api("/tokens"))
            .json(&json!({ "name": "x", "scopes": ["read"] }));
        if let Some(c) = csrf {
            req = req.header("X-CSRF-Token", c);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(error_of(r).await.0, "csrf");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn a_cross_origin_state_change_is_403_even_with_the_csrf_token() {
    let app = spawn_app().await;
    let csrf = app.setup().await;
    let r = app
        .client
        .post(app.api("/tokens"))
        .header("X-CSRF-Token", &csrf)
        .header("Origin", "https://evil.example")
        .json(&json!({ "name": "x", "scopes": ["read"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_of(r).await.0, "cross_origin");
    // The same request from berth's own origin passes.
    let r = app
        .client
        .post(app.api("/tokens"))
        .header("X-CSRF-Token", &csrf)
        .header("Origin", &app.url)
        .json(&json!({ "name": "x", "scopes": ["read"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn protected_routes_need_authentication() {
    let app = spawn_app().await;
    app.setup().await;
    let anon = client();
    for path in ["/me", "/tokens", "/audit", "/settings"] {
        let r = anon.get(app.api(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(error_of(r).await.0, "unauthorized");
    }
}

#[tokio::test]
async fn a_session_past_its_absolute_lifetime_is_refused() {
    let app = spawn_with(|c| c.session_absolute = std::time::Duration::from_secs(1)).await;
    app.setup().await;
    assert_eq!(app.get("/me").await.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(app.get("/me").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_session_unused_past_the_idle_timeout_is_refused_by_the_server() {
    let app = spawn_with(|c| c.session_idle = std::time::Duration::from_secs(1)).await;
    app.setup().await;
    let r = app.login_as(&client(), USERNAME, PASSWORD).await;
    let cookie = session_cookie(&r);
    // Replay the raw cookie: the browser would have dropped it (Max-Age), but
    // the server must refuse it on its own.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = reqwest::Client::new()
        .get(app.api("/me"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
