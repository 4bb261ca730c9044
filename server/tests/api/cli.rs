use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth::config::Config;
use reqwest::StatusCode;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_berth");

#[tokio::test]
async fn reset_password_works_offline_ends_sessions_and_is_audited() {
    let app = spawn_app().await;
    app.setup().await;
    assert_eq!(app.get("/me").await.status(), StatusCode::OK);

    let out = Command::new(BIN)
        .args(["admin", "reset-password", "--data-dir"])
        .arg(app.data_dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("New one-time password for the admin: "))
        .unwrap()
        .to_string();

    assert_eq!(
        app.get("/me").await.status(),
        StatusCode::UNAUTHORIZED,
        "sessions ended"
    );
    assert_eq!(
        app.login_as(&client(), USERNAME, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login_as(&client(), USERNAME, &password).await.status(),
        StatusCode::OK
    );
    let actions = app.audit_actions().await;
    assert!(actions.contains(&("admin.reset_password".into(), "success".into())));
    assert!(!app.audit_dump().await.contains(&password));
}

#[tokio::test]
async fn reset_password_without_an_admin_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let err = berth::cli::reset_password(&Config::for_tests(dir.path()), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no administrator exists yet"), "{err}");
}

#[test]
fn config_check_accepts_a_good_config_and_refuses_public_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new(BIN)
        .args([
            "config",
            "check",
            "--listen",
            "127.0.0.1:9443",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("configuration OK"));

    let bad = Command::new(BIN)
        .args([
            "config",
            "check",
            "--plain-http",
            "--listen",
            "0.0.0.0:8080",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("clear text"));

    let env = Command::new(BIN)
        .args(["config", "check"])
        .env("BERTH_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!env.status.success(), "BERTH_LISTEN is read and validated");
}

#[test]
fn serve_prints_the_setup_token_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--plain-http", "--listen", "127.0.0.1:0"])
        .env("BERTH_DATA_DIR", dir.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut url = None;
    let mut token_logged = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if line.contains("one-time setup token") {
            token_logged = line
                .split("token=")
                .nth(1)
                .map(|s| s.split_whitespace().next().unwrap().to_string());
        }
        if let Some(rest) = line.split("url=").nth(1) {
            url = Some(rest.split_whitespace().next().unwrap().to_string());
            break;
        }
    }
    let url = url.expect("berth logged its URL");
    let file_token = std::fs::read_to_string(dir.path().join("setup-token")).unwrap();
    assert_eq!(token_logged.as_deref(), Some(file_token.trim()));

    let health = reqwest::blocking::get(format!("{url}/health"));
    assert_eq!(health.unwrap().status(), StatusCode::OK);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "clean exit on SIGTERM: {status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "berth did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn the_reset_password_allows_nothing_but_choosing_a_new_password() {
    let app = spawn_app().await;
    app.setup().await;
    let password = berth::cli::reset_password(&app.state.config, false)
        .await
        .unwrap();
    let c = client();
    let r = app.login_as(&c, USERNAME, &password).await;
    assert_eq!(r.status(), StatusCode::OK);
    let csrf = csrf_of(r).await;
    let me = get_json(&c, app.api("/me")).await;
    assert_eq!(me["must_change_password"], true);
    let r = c.get(app.api("/tokens")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_of(r).await.0, "password_change_required");

    let r = c
        .post(app.api("/account/password"))
        .header("X-CSRF-Token", &csrf)
        .json(&serde_json::json!({ "current_password": password, "new_password": "my own new passphrase" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        c.get(app.api("/tokens")).send().await.unwrap().status(),
        StatusCode::OK
    );
    let me = get_json(&c, app.api("/me")).await;
    assert_eq!(me["must_change_password"], false);
}
