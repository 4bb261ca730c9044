use reqwest::StatusCode;
use serde_json::{json, Value};
use totp_rs::{Algorithm, Secret, TOTP};

use crate::helpers::*;

const NEW_PASSWORD: &str = "a brand new passphrase";

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_every_other_session() {
    let app = spawn_app().await;
    let csrf = app.setup().await;
    let other = client();
    app.login(&other).await;
    assert_eq!(
        other.get(app.api("/me")).send().await.unwrap().status(),
        StatusCode::OK
    );

    let r = app
        .post(
            "/account/password",
            &csrf,
            json!({ "current_password": "not my password", "new_password": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(r).await.1.as_deref(), Some("current_password"));
    let r = app
        .post(
            "/account/password",
            &csrf,
            json!({ "current_password": PASSWORD, "new_password": "short" }),
        )
        .await;
    assert_eq!(error_of(r).await.1.as_deref(), Some("new_password"));
    assert_eq!(
        other.get(app.api("/me")).send().await.unwrap().status(),
        StatusCode::OK
    );

    let r = app
        .post(
            "/account/password",
            &csrf,
            json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let new_csrf = r.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_csrf, csrf);

    assert_eq!(
        other.get(app.api("/me")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "the other session ended"
    );
    let me = app.get("/me").await;
    assert_eq!(me.status(), StatusCode::OK, "this session continues");
    assert_eq!(
        app.login_as(&client(), USERNAME, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login_as(&client(), USERNAME, NEW_PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );
}

fn code_for(secret_b32: &str, offset_steps: i64) -> String {
    let bytes = Secret::Encoded(secret_b32.to_string()).to_bytes().unwrap();
    let totp = TOTP::new(Algorithm::SHA1, 6, 0, 30, bytes).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    totp.generate((now + offset_steps * 30) as u64)
}

#[tokio::test]
async fn with_totp_enrolled_login_needs_a_code_and_recovery_codes_work_once() {
    let app = spawn_app().await;
    let csrf = app.setup().await;

    let r = app
        .post(
            "/account/totp/enrol",
            &csrf,
            json!({ "password": "wrong one!!!!" }),
        )
        .await;
    assert_eq!(error_of(r).await.1.as_deref(), Some("password"));
    let enrol: Value = app
        .post(
            "/account/totp/enrol",
            &csrf,
            json!({ "password": PASSWORD }),
        )
        .await
        .json()
        .await
        .unwrap();
    let secret = enrol["secret"].as_str().unwrap().to_string();
    assert!(enrol["qr_svg"].as_str().unwrap().contains("<svg"));
    assert!(enrol["otpauth_uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/berth:admin"));
    let stored: Vec<u8> = sqlx::query_scalar("SELECT totp_pending FROM admin")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&stored).contains(&secret),
        "sealed at rest"
    );

    let r = app
        .post("/account/totp/confirm", &csrf, json!({ "code": "000000" }))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // A code from the previous step still counts (clock skew), and is then used up.
    let confirm_code = code_for(&secret, -1);
    let r = app
        .post(
            "/account/totp/confirm",
            &csrf,
            json!({ "code": confirm_code }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let codes: Vec<String> =
        serde_json::from_value(r.json::<Value>().await.unwrap()["recovery_codes"].clone()).unwrap();
    assert_eq!(codes.len(), 10);
    let me: Value = app.get("/me").await.json().await.unwrap();
    assert_eq!(me["totp_enabled"], true);

    // Password alone is no longer enough.
    let r = app.login_as(&client(), USERNAME, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        error_of(r).await,
        ("totp_required".to_string(), Some("totp_code".to_string()))
    );
    let with = |code: String| {
        let url = app.api("/auth/login");
        async move {
            client()
                .post(url)
                .json(&json!({ "username": USERNAME, "password": PASSWORD, "totp_code": code }))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(with("123456".into()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        with(confirm_code.clone()).await,
        StatusCode::UNAUTHORIZED,
        "the code used to confirm enrolment is used up"
    );
    let current = code_for(&secret, 0);
    assert_eq!(with(current.clone()).await, StatusCode::OK);
    assert_eq!(
        with(current).await,
        StatusCode::UNAUTHORIZED,
        "a code is accepted once"
    );
    assert_eq!(with(codes[0].to_uppercase()).await, StatusCode::OK);
    assert_eq!(
        with(codes[0].clone()).await,
        StatusCode::UNAUTHORIZED,
        "recovery codes work once"
    );

    let r = app
        .post(
            "/account/totp/disable",
            &csrf,
            json!({ "password": PASSWORD, "code": codes[1] }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.login_as(&client(), USERNAME, PASSWORD).await.status(),
        StatusCode::OK
    );
    let actions = app.audit_actions().await;
    assert!(actions.contains(&("account.totp.enable".into(), "success".into())));
    assert!(actions.contains(&("account.totp.disable".into(), "success".into())));
}
