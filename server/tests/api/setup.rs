use std::os::unix::fs::PermissionsExt;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn a_fresh_data_dir_requires_setup_and_holds_a_0600_token_file() {
    let app = spawn_app().await;
    let v: Value = app.get("/setup").await.json().await.unwrap();
    assert_eq!(v, json!({ "required": true }));
    let meta = std::fs::metadata(app.data_dir.path().join("setup-token")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(app.setup_token().len(), 48);
}

#[tokio::test]
async fn setup_with_a_wrong_or_missing_token_is_403_and_creates_nothing() {
    let app = spawn_app().await;
    for body in [
        json!({ "token": "not-the-token", "username": "admin", "password": PASSWORD }),
        json!({ "token": "", "username": "admin", "password": PASSWORD }),
    ] {
        let r = app
            .client
            .post(app.api("/setup"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(error_of(r).await.0, "setup_token");
    }
    let r = app
        .client
        .post(app.api("/setup"))
        .json(&json!({ "username": "admin", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a missing token is a wrong token"
    );
    assert_eq!(app.admin_count().await, 0);
    assert!(app.data_dir.path().join("setup-token").exists());
}

#[tokio::test]
async fn setup_creates_the_admin_starts_a_session_and_removes_the_token_file() {
    let app = spawn_app().await;
    let csrf = app.setup().await;
    assert_eq!(csrf.len(), 64);
    assert_eq!(app.admin_count().await, 1);
    assert!(!app.data_dir.path().join("setup-token").exists());
    let me: Value = app.get("/me").await.json().await.unwrap();
    assert_eq!(me["username"], "admin");
    assert_eq!(me["auth"], "session");
    assert_eq!(me["csrf_token"], csrf.as_str());
    let v: Value = app.get("/setup").await.json().await.unwrap();
    assert_eq!(v, json!({ "required": false }));
}

#[tokio::test]
async fn setup_once_an_admin_exists_is_409_and_changes_nothing() {
    let app = spawn_app().await;
    let token = app.setup_token();
    app.setup().await;
    let hash_before: String = sqlx::query_scalar("SELECT password_hash FROM admin")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    let r = client()
        .post(app.api("/setup"))
        .json(&json!({ "token": token, "username": "intruder", "password": "another long passphrase" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let (user, hash): (String, String) =
        sqlx::query_as("SELECT username, password_hash FROM admin")
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(user, "admin");
    assert_eq!(hash, hash_before);
}

#[tokio::test]
async fn concurrent_setup_requests_create_exactly_one_admin() {
    let app = spawn_app().await;
    let token = app.setup_token();
    let requests = (0..8).map(|i| {
        let url = app.api("/setup");
        let body = json!({ "token": token, "username": format!("admin{i}"), "password": PASSWORD });
        async move {
            client()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let statuses = futures::future::join_all(requests).await;
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!(created, 1, "{statuses:?}");
    assert_eq!(conflicts, 7, "{statuses:?}");
    assert_eq!(app.admin_count().await, 1);
}

#[tokio::test]
async fn setup_with_a_weak_password_or_bad_username_is_422_naming_the_field() {
    let app = spawn_app().await;
    let token = app.setup_token();
    for (username, password, field) in [
        ("admin", "short", "password"),
        ("admin", "password1234", "password"),
        ("<script>", PASSWORD, "username"),
    ] {
        let r = app
            .client
            .post(app.api("/setup"))
            .json(&json!({ "token": token, "username": username, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_of(r).await.1.as_deref(), Some(field));
    }
    assert_eq!(app.admin_count().await, 0);
}

#[tokio::test]
async fn a_restart_without_an_admin_issues_a_new_token_and_with_one_issues_none() {
    let app = spawn_app().await;
    let first = app.setup_token();
    let dir = app.data_dir.path().to_path_buf();
    app.handle.shutdown();
    let again = berth::startup::Application::build(berth::config::Config::for_tests(&dir))
        .await
        .unwrap();
    let second = std::fs::read_to_string(dir.join("setup-token")).unwrap();
    assert_ne!(first, second.trim());
    assert!(again.state.setup.accepts(second.trim()));
    assert!(!again.state.setup.accepts(&first), "the old token is dead");

    // With an admin in place, a restart issues no token at all.
    let c = client();
    let r = c
        .post(format!("{}/api/v1/setup", again.url()))
        .json(&json!({ "token": second.trim(), "username": "admin", "password": PASSWORD }))
        .send();
    let serve = tokio::spawn(again.run_until_stopped());
    assert_eq!(r.await.unwrap().status(), StatusCode::CREATED);
    serve.abort();
    let third = berth::startup::Application::build(berth::config::Config::for_tests(&dir))
        .await
        .unwrap();
    assert!(!dir.join("setup-token").exists());
    assert!(!third.state.setup.accepts(second.trim()));
    assert!(!third.state.setup.accepts(""));
}

#[tokio::test]
async fn wrong_setup_tokens_are_limited_per_address_and_the_right_one_still_works() {
    let app = spawn_app().await;
    let wrong = json!({ "token": "guess", "username": "admin", "password": PASSWORD });
    let attempt = || client().post(app.api("/setup")).json(&wrong).send();
    for _ in 0..5 {
        assert_eq!(attempt().await.unwrap().status(), StatusCode::FORBIDDEN);
    }
    let r = attempt().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let denied = app
        .audit_actions()
        .await
        .iter()
        .filter(|(a, o)| a == "setup.complete" && o == "denied")
        .count();
    assert_eq!(denied, 5, "the audit log does not grow past the limit");
    app.setup().await;
    assert_eq!(app.admin_count().await, 1);
}
