use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn logins_and_changes_are_audited_with_who_where_and_outcome_and_never_secrets() {
    let app = spawn_app().await;
    let token_file = app.setup_token();
    let csrf = app.setup().await;
    app.login_as(&client(), USERNAME, "wrong password here")
        .await;
    let (_, token) = app.create_token(&csrf, &["read"]).await;

    let page: Value = app.get("/audit").await.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["token.create", "auth.login", "setup.complete"]
    );
    let failed = &items[1];
    assert_eq!(failed["outcome"], "failure");
    assert_eq!(failed["actor"], "admin");
    assert_eq!(failed["client_ip"], "127.0.0.1");
    assert!(failed["at"].as_str().unwrap().ends_with('Z'));

    let dump = app.audit_dump().await;
    for secret in [
        PASSWORD,
        "wrong password here",
        token.as_str(),
        token_file.as_str(),
        csrf.as_str(),
    ] {
        assert!(!dump.contains(secret), "audit log leaks a secret");
    }
}

#[tokio::test]
async fn the_audit_log_pages_newest_first() {
    let app = spawn_app().await;
    app.setup().await;
    for _ in 0..4 {
        app.login(&client()).await;
    }
    let first: Value = app.get("/audit?limit=2").await.json().await.unwrap();
    let ids: Vec<i64> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] > ids[1]);
    let before = first["next_before"].as_i64().unwrap();
    assert_eq!(before, ids[1]);
    let second: Value = app
        .get(&format!("/audit?limit=2&before={before}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(second["items"][0]["id"].as_i64().unwrap() < before);
    let last: Value = app.get("/audit?limit=200").await.json().await.unwrap();
    assert_eq!(last["items"].as_array().unwrap().len(), 5);
    assert_eq!(last["next_before"], Value::Null);

    for bad in ["/audit?limit=0", "/audit?limit=201"] {
        let r = app.get(bad).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_of(r).await.1.as_deref(), Some("limit"));
    }
    assert_eq!(
        app.get("/audit?limit=abc").await.status(),
        StatusCode::BAD_REQUEST
    );
}
