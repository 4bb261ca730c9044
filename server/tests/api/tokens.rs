use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

async fn bearer_get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    client()
        .get(app.api(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_token_is_shown_once_listed_without_its_value_and_works_as_bearer() {
    let app = spawn_app().await;
    let csrf = app.setup().await;
    let (id, token) = app.create_token(&csrf, &["read"]).await;
    assert_eq!(token.split('.').count(), 3, "a JWT");

    let list = app.get("/tokens").await.text().await.unwrap();
    assert!(list.contains(&id));
    assert!(!list.contains(&token), "the list never holds the value");
    let stored: String =
        sqlx::query_scalar("SELECT group_concat(id || name || scopes) FROM api_tokens")
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert!(!stored.contains(&token));

    let me: Value = bearer_get(&app, "/me", &token).await.json().await.unwrap();
    assert_eq!(me["auth"], "token");
    assert_eq!(me["scopes"], json!(["read"]));
    assert_eq!(me["csrf_token"], Value::Null);
    let listed: Value = app.get("/tokens").await.json().await.unwrap();
    assert!(listed[0]["last_used_at"].is_string());
}

#[tokio::test]
async fn scopes_are_enforced() {
    let app = spawn_app().await;
    let csrf = app.setup().await;
    let (_, read) = app.create_token(&csrf, &["read"]).await;
    let (_, write) = app.create_token(&csrf, &["write"]).await;
    let (_, admin) = app.create_token(&csrf, &["admin"]).await;

    let put_settings = |token: String| {
        let url = app.api("/settings");
        async move {
            client()
                .put(url)
                .bearer_auth(token)
                .json(&json!({ "panel_domain": "panel.example.com", "acme_email": null }))
                .send()
                .await
                .unwrap()
        }
    };
    let create_token = |token: String| {
        let url = app.api("/tokens");
        async move {
            client()
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "name": "nested", "scopes": ["read"] }))
                .send()
                .await
                .unwrap()
        }
    };

    assert_eq!(
        bearer_get(&app, "/audit", &read).await.status(),
        StatusCode::OK
    );
    let r = put_settings(read.clone()).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_of(r).await.0, "insufficient_scope");
    assert_eq!(
        bearer_get(&app, "/tokens", &write).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        create_token(write.clone()).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        create_token(admin.clone()).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(put_settings(admin.clone()).await.status(), StatusCode::OK);

    // Tokens never reach account settings, whatever their scope.
    let r = client()
        .post(app.api("/account/password"))
        .bearer_auth(&admin)
        .json(&json!({ "current_password": PASSWORD, "new_password": "another long passphrase" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_of(r).await.0, "session_required");
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once() {
    let app = spawn_app().await;
    let csrf = app.setup().await;
    let (id, token) = app.create_token(&csrf, &["read"]).await;
    assert_eq!(
        bearer_get(&app, "/me", &token).await.status(),
        StatusCode::OK
    );
    let r = app
        .client
        .delete(app.api(&format!("/tokens/{id}")))
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        bearer_get(&app, "/me", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let list: Value = app.get("/tokens").await.json().await.unwrap();
    assert_eq!(list[0]["status"], "revoked");
    let again = app
        .client
        .delete(app.api(&format!("/tokens/{id}")))
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn expired_tampered_alg_none_and_garbage_tokens_are_401() {
    let app = spawn_app().await;
    let csrf = app.setup().await;
    let (id, token) = app.create_token(&csrf, &["read"]).await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();

    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload["scopes"] = json!(["admin"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(payload.to_string()),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let hs512 = format!(
        "{}.{}.{}",
        b64.encode(r#"{"alg":"HS512","typ":"JWT"}"#),
        parts[1],
        parts[2]
    );
    for bad in [
        tampered.as_str(),
        none.as_str(),
        hs512.as_str(),
        "garbage",
        "",
    ] {
        let r = bearer_get(&app, "/tokens", bad).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
        assert!(r.headers().contains_key("www-authenticate"));
    }

    // Expired in the store (the row is what counts, as with revocation).
    sqlx::query("UPDATE api_tokens SET expires_at = 0 WHERE id = ?")
        .bind(&id)
        .execute(&app.state.db)
        .await
        .unwrap();
    assert_eq!(
        bearer_get(&app, "/me", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let list: Value = app.get("/tokens").await.json().await.unwrap();
    assert_eq!(list[0]["status"], "expired");
}

#[tokio::test]
async fn bad_token_requests_are_422_naming_the_field_and_create_nothing() {
    let app = spawn_app().await;
    let csrf = app.setup().await;
    for (body, field) in [
        (json!({ "name": "", "scopes": ["read"] }), "name"),
        (json!({ "name": "x", "scopes": [] }), "scopes"),
        (json!({ "name": "x", "scopes": ["root"] }), "scopes[0]"),
        (
            json!({ "name": "x", "scopes": ["read"], "expires_in_days": 0 }),
            "expires_in_days",
        ),
        (
            json!({ "name": "x", "scopes": ["read"], "expires_in_days": -1 }),
            "expires_in_days",
        ),
        (
            json!({ "name": "x", "scopes": ["read"], "admin": true }),
            "admin",
        ),
    ] {
        let r = app.post("/tokens", &csrf, body.clone()).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_of(r).await.1.as_deref(), Some(field), "{body}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(count, 0);
}
