//! Secrets: sealed at rest and bound to their identity, write-only through
//! the API, injected into real containers, rotated and recovered with the
//! CLI, imported from `.env` all-or-nothing, and never leaked — checked with
//! a canary against the logs of a real `berth serve`, every API answer, the
//! audit log, the store's bytes and the container views.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::docker::{Scratch, TEST_IMAGE};
use crate::helpers::{client, error_of, spawn_app, spawn_with, TestApp, PASSWORD, USERNAME};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

struct Rig {
    app: TestApp,
    csrf: String,
    scratch: Scratch,
}

impl Rig {
    async fn start() -> Rig {
        let scratch = Scratch::new();
        let app = spawn_app().await;
        let csrf = app.setup().await;
        Rig { app, csrf, scratch }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        self.app.send(method, path, &self.csrf, body).await
    }

    /// The JSON answer of a request that must succeed.
    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let r = self.send(method.clone(), path, body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    async fn put_secret(&self, owner: &str, key: &str, value: &str) -> Value {
        self.ok(
            Method::PUT,
            &format!("{owner}/secrets/{key}"),
            Some(json!({ "value": value })),
        )
        .await
    }

    async fn reveal(&self, owner: &str, key: &str) -> reqwest::Response {
        self.send(
            Method::POST,
            &format!("{owner}/secrets/{key}/reveal"),
            Some(json!({ "password": PASSWORD })),
        )
        .await
    }

    async fn revealed(&self, owner: &str, key: &str) -> String {
        let r = self.reveal(owner, key).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// An app whose container prints the SHA-256 of each named variable
    /// (or "unset"), then sleeps.
    async fn hashing_app(&self, name: &str, vars: &[&str], extra: Value) -> Value {
        let script: String = vars
            .iter()
            .map(|v| {
                format!(
                    "if [ -n \"${{{v}+x}}\" ]; then printf %s \"${v}\" | sha256sum | sed 's/^/{v} /'; else echo '{v} unset'; fi; "
                )
            })
            .collect();
        let mut spec = json!({
            "name": name,
            "image": TEST_IMAGE,
            // Exits on SIGTERM, so a redeploy does not wait out the stop timeout.
            "command": ["sh", "-c", format!("trap 'exit 0' TERM; {script}sleep 3600 & wait")],
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        self.ok(Method::POST, "/apps", Some(spec)).await
    }

    /// What the app's current container printed for `var`: a hex digest or
    /// "unset". Waits for a container whose output has the line.
    async fn seen(&self, name: &str, var: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self
                .send(Method::GET, &format!("/apps/{name}/logs?tail=50"), None)
                .await;
            // Mid-redeploy the container being removed answers 409, or
            // 404 between the old one and the new, or the engine's error for
            // a container it just removed: ask again.
            if !r.status().is_success() {
                let status = r.status();
                assert!(
                    Instant::now() < deadline,
                    "{name}: {status} {}",
                    r.text().await.unwrap()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let logs: Value = r.json().await.unwrap();
            let last = logs
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|l| l["text"].as_str())
                .rev()
                .find_map(|t| t.strip_prefix(&format!("{var} ")))
                .map(|rest| rest.split_whitespace().next().unwrap().to_string());
            if let Some(v) = last {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never printed {var}: {logs}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the app's container prints `expected` for `var` (after a
    /// redeploy the old container's lines are gone with it).
    async fn sees(&self, name: &str, var: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.seen(name, var).await == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never saw the expected {var}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Completes setup; returns the session's CSRF token and the recovery key
/// the answer shows once.
async fn setup_keeping_recovery(app: &TestApp) -> (String, String) {
    let answer = app.setup_answer().await;
    (
        answer["csrf_token"].as_str().unwrap().to_string(),
        answer["recovery_key"].as_str().unwrap().to_string(),
    )
}

/// `berth secrets recover` on `dir`, the key on standard input.
fn recover(dir: &std::path::Path, key: &str) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(["secrets", "recover", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn canary() -> String {
    format!(
        "canary-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

#[tokio::test]
async fn secrets_reach_the_container_with_clear_precedence_and_changes_mark_a_redeploy() {
    let rig = Rig::start().await;
    let name = rig.scratch.name("web");
    let group = format!("{}-shared", rig.scratch.prefix);
    let created = rig
        .ok(
            Method::POST,
            "/secret-groups",
            Some(json!({ "name": group, "description": "database credentials" })),
        )
        .await;
    assert_eq!(created["secrets"], 0);
    let g = format!("/secret-groups/{group}");
    rig.put_secret(&g, "DB_PASSWORD", "from-group").await;
    rig.put_secret(&g, "SHARED_ONLY", "group-value").await;

    rig.hashing_app(
        &name,
        &["PLAIN", "DB_PASSWORD", "SHARED_ONLY", "APP_ONLY"],
        json!({ "env": { "PLAIN": "plain", "DB_PASSWORD": "from-env" }, "secret_groups": [group] }),
    )
    .await;
    let a = format!("/apps/{name}");
    // The group's secret beats plain env.
    assert_eq!(rig.seen(&name, "DB_PASSWORD").await, sha("from-group"));
    assert_eq!(rig.seen(&name, "SHARED_ONLY").await, sha("group-value"));
    assert_eq!(rig.seen(&name, "PLAIN").await, sha("plain"));
    assert_eq!(rig.seen(&name, "APP_ONLY").await, "unset");

    // The app's own secret beats the group's; the running container keeps
    // its environment until a redeploy, and berth says which app needs one.
    let change = rig.put_secret(&a, "DB_PASSWORD", "from-app").await;
    assert_eq!(change["needs_redeploy"], json!([name]));
    assert_eq!(change["secret"]["name"], "DB_PASSWORD");
    assert_eq!(change["secret"]["overrides_env"], true);
    assert!(change["secret"].get("value").is_none());
    let app = rig.ok(Method::GET, &a, None).await;
    assert_eq!(app["needs_redeploy"], true, "{app:#}");
    assert_eq!(app["status"], "pending");
    let reasons = app["reasons"].to_string();
    assert!(
        reasons.contains("secrets changed (updated DB_PASSWORD)"),
        "{reasons}"
    );
    let plan = rig.ok(Method::GET, &format!("{a}/plan"), None).await;
    assert!(plan.to_string().contains("secrets changed"), "{plan}");
    let listed = rig.ok(Method::GET, &format!("{a}/secrets"), None).await;
    assert_eq!(listed["needs_redeploy"], json!([name]));
    assert_eq!(listed["linked"], json!([group]));
    let inherited: Vec<(String, bool)> = listed["inherited"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["effective"] == true,
            )
        })
        .collect();
    assert_eq!(
        inherited,
        [("DB_PASSWORD".into(), false), ("SHARED_ONLY".into(), true)]
    );
    assert_eq!(rig.seen(&name, "DB_PASSWORD").await, sha("from-group"));

    rig.ok(Method::POST, &format!("{a}/redeploy"), None).await;
    rig.sees(&name, "DB_PASSWORD", &sha("from-app")).await;
    let app = rig.ok(Method::GET, &a, None).await;
    assert_eq!(app["needs_redeploy"], false, "{app:#}");

    // A group change reaches every attached app; an app that opted in is
    // redeployed by berth itself.
    let auto = rig.scratch.name("auto");
    rig.hashing_app(
        &auto,
        &["SHARED_ONLY"],
        json!({ "secret_groups": [group], "redeploy_on_secret_change": true }),
    )
    .await;
    assert_eq!(rig.seen(&auto, "SHARED_ONLY").await, sha("group-value"));
    let change = rig.put_secret(&g, "SHARED_ONLY", "rotated").await;
    assert_eq!(change["needs_redeploy"], json!([name]));
    assert_eq!(change["redeploying"], json!([auto]));
    rig.sees(&auto, "SHARED_ONLY", &sha("rotated")).await;
    assert_eq!(rig.seen(&name, "SHARED_ONLY").await, sha("group-value"));

    // Deleting the app's secret: the group's value applies again.
    let change = rig
        .ok(Method::DELETE, &format!("{a}/secrets/DB_PASSWORD"), None)
        .await;
    assert_eq!(change["needs_redeploy"], json!([name]));
    rig.ok(Method::POST, &format!("{a}/redeploy"), None).await;
    rig.sees(&name, "DB_PASSWORD", &sha("from-group")).await;
    rig.sees(&name, "SHARED_ONLY", &sha("rotated")).await;

    // berth's view of the container masks secret values, not plain ones.
    let id = rig.ok(Method::GET, &a, None).await["container"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let env = rig
        .ok(Method::GET, &format!("/containers/{id}/env"), None)
        .await;
    let entry = |n: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} in {env}"))
    };
    assert_eq!(entry("PLAIN")["value"], "plain");
    assert_eq!(entry("DB_PASSWORD")["value"], Value::Null);
    assert_eq!(entry("DB_PASSWORD")["secret"], true);
    assert!(!env.to_string().contains("from-group"));
    // A container berth did not create may hold anything: its environment
    // is not shown at all.
    let stranger = rig.scratch.name("stranger");
    crate::docker::docker()
        .create_container(
            Some(
                bollard::query_parameters::CreateContainerOptionsBuilder::new()
                    .name(&stranger)
                    .build(),
            ),
            bollard::models::ContainerCreateBody {
                image: Some(TEST_IMAGE.into()),
                cmd: Some(vec!["true".into()]),
                env: Some(vec!["BERTH_MASTER_KEY=hand-made-key".into()]),
                labels: Some([(crate::docker::TEST_LABEL.to_string(), "1".to_string())].into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let r = rig
        .send(Method::GET, &format!("/containers/{stranger}/env"), None)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(!r.text().await.unwrap().contains("hand-made-key"));

    // A group in use cannot go; the app is named.
    let r = rig.send(Method::DELETE, &g, None).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.unwrap().contains(&name));
    let groups = rig.ok(Method::GET, "/secret-groups", None).await;
    let mut attached: Vec<String> = serde_json::from_value(groups[0]["apps"].clone()).unwrap();
    attached.sort();
    let mut expected = vec![name.clone(), auto.clone()];
    expected.sort();
    assert_eq!(attached, expected);

    // Deleting an app takes its own secrets with it.
    rig.put_secret(&a, "GONE_WITH_APP", "x").await;
    rig.ok(Method::DELETE, &a, None).await;
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE owner = ?")
        .bind(&name)
        .fetch_one(&rig.app.state.db)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn values_are_sealed_bound_to_their_identity_and_tampering_is_refused() {
    let rig = Rig::start().await;
    let name = rig.scratch.name("api");
    rig.ok(
        Method::POST,
        "/apps",
        Some(json!({ "name": name, "image": TEST_IMAGE, "command": ["sleep", "3600"], "state": "stopped" })),
    )
    .await;
    let a = format!("/apps/{name}");
    rig.put_secret(&a, "FIRST", "value-one").await;
    rig.put_secret(&a, "SECOND", "value-two").await;
    assert_eq!(rig.revealed(&a, "FIRST").await, "value-one");

    let db = &rig.app.state.db;
    let sealed = |key: &'static str| async move {
        sqlx::query_scalar::<_, Vec<u8>>("SELECT sealed FROM secrets WHERE name = ?")
            .bind(key)
            .fetch_one(db)
            .await
            .unwrap()
    };
    let (first, second) = (sealed("FIRST").await, sealed("SECOND").await);
    assert!(!first.windows(9).any(|w| w == b"value-one"));
    // Each value has its own nonce.
    assert_ne!(first[..24], second[..24]);

    // Swapped ciphertexts do not open, and the error names the secret only.
    for (name, bytes) in [("FIRST", &second), ("SECOND", &first)] {
        sqlx::query("UPDATE secrets SET sealed = ? WHERE name = ?")
            .bind(bytes)
            .bind(name)
            .execute(db)
            .await
            .unwrap();
    }
    let r = rig.reveal(&a, "FIRST").await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = r.text().await.unwrap();
    assert!(!body.contains("value-"), "{body}");
    // An apply that needs them fails clearly and changes nothing.
    let r = rig.send(Method::POST, &format!("{a}/start"), None).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let body = r.text().await.unwrap();
    assert!(body.contains("FIRST") || body.contains("SECOND"), "{body}");
    assert!(!body.contains("value-"), "{body}");

    // A flipped bit does not open either.
    let mut tampered = first.clone();
    *tampered.last_mut().unwrap() ^= 1;
    sqlx::query("UPDATE secrets SET sealed = ? WHERE name = 'FIRST'")
        .bind(&tampered)
        .execute(db)
        .await
        .unwrap();
    assert_eq!(
        rig.reveal(&a, "FIRST").await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // Put back, it opens again.
    for (name, bytes) in [("FIRST", &first), ("SECOND", &second)] {
        sqlx::query("UPDATE secrets SET sealed = ? WHERE name = ?")
            .bind(bytes)
            .bind(name)
            .execute(db)
            .await
            .unwrap();
    }
    assert_eq!(rig.revealed(&a, "SECOND").await, "value-two");

    // The data dir with another master key does not start, and says why.
    let dir = rig.app.data_dir.path().to_path_buf();
    let original = std::fs::read(dir.join("master.key")).unwrap();
    std::fs::write(dir.join("master.key"), [9u8; 32]).unwrap();
    let err = berth::startup::Application::build(berth::config::Config::for_tests(&dir))
        .await
        .err()
        .expect("a wrong master key is refused")
        .to_string();
    assert!(err.contains("does not open this data dir"), "{err}");
    std::fs::remove_file(dir.join("master.key")).unwrap();
    let err = berth::startup::Application::build(berth::config::Config::for_tests(&dir))
        .await
        .err()
        .expect("a missing master key is refused, not replaced")
        .to_string();
    assert!(err.contains("is missing"), "{err}");
    assert!(!dir.join("master.key").exists());
    std::fs::write(dir.join("master.key"), &original).unwrap();
}

#[tokio::test]
async fn reveal_and_export_need_the_admin_scope_and_a_fresh_password() {
    let rig = Rig::start().await;
    let group = format!("{}-g", rig.scratch.prefix);
    rig.ok(
        Method::POST,
        "/secret-groups",
        Some(json!({ "name": group })),
    )
    .await;
    let g = format!("/secret-groups/{group}");
    rig.put_secret(&g, "TOKEN", "t0ken").await;

    // The listing has names and metadata, never values.
    let listed = rig.ok(Method::GET, &format!("{g}/secrets"), None).await;
    assert_eq!(listed["secrets"][0]["name"], "TOKEN");
    assert_eq!(listed["secrets"][0]["length"], 5);
    assert_eq!(listed["secrets"][0]["updated_by"], USERNAME);
    assert!(!listed.to_string().contains("t0ken"));

    // Wrong password: 422 on `password`, audited as a failure.
    let r = rig
        .send(
            Method::POST,
            &format!("{g}/secrets/TOKEN/reveal"),
            Some(json!({ "password": "not it" })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(r).await.1.as_deref(), Some("password"));
    assert_eq!(rig.revealed(&g, "TOKEN").await, "t0ken");
    let actions = rig.app.audit_actions().await;
    assert!(actions.contains(&("secret.reveal".into(), "failure".into())));
    assert!(actions.contains(&("secret.reveal".into(), "success".into())));

    // A write-scope token may set but not reveal or export; a read token
    // may only list.
    let (_, write) = rig.app.create_token(&rig.csrf, &["write"]).await;
    let (_, read) = rig.app.create_token(&rig.csrf, &["read"]).await;
    let bearer = |token: &str, method: Method, path: &str, body: Value| {
        client()
            .request(method, rig.app.api(path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let r = bearer(
        &write,
        Method::PUT,
        &format!("{g}/secrets/FROM_TOKEN"),
        json!({ "value": "x" }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for path in [
        format!("{g}/secrets/TOKEN/reveal"),
        format!("{g}/secrets/export"),
    ] {
        let r = bearer(&write, Method::POST, &path, json!({ "password": PASSWORD }))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // A dry run cannot confirm a guess at the value for a caller who may
    // not read it: right or wrong, the name counts as changed.
    for guess in ["t0ken", "wrong"] {
        let r = bearer(
            &write,
            Method::POST,
            &format!("{g}/secrets/import"),
            json!({ "dotenv": format!("TOKEN={guess}\n"), "dry_run": true }),
        )
        .await
        .unwrap();
        let preview: Value = r.json().await.unwrap();
        assert_eq!(preview["changed"], json!(["TOKEN"]), "{guess}");
        assert_eq!(preview["unchanged"], json!([]), "{guess}");
    }
    let r = bearer(
        &read,
        Method::PUT,
        &format!("{g}/secrets/NOPE"),
        json!({ "value": "x" }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = bearer(&read, Method::GET, &format!("{g}/secrets"), json!(null))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Export round-trips through import.
    let exported = rig
        .ok(
            Method::POST,
            &format!("{g}/secrets/export"),
            Some(json!({ "password": PASSWORD })),
        )
        .await;
    let text = exported["dotenv"].as_str().unwrap().to_string();
    assert!(text.contains("TOKEN=t0ken"), "{text}");
    let other = format!("{}-h", rig.scratch.prefix);
    rig.ok(
        Method::POST,
        "/secret-groups",
        Some(json!({ "name": other })),
    )
    .await;
    let h = format!("/secret-groups/{other}");
    rig.ok(
        Method::POST,
        &format!("{h}/secrets/import"),
        Some(json!({ "dotenv": text })),
    )
    .await;
    assert_eq!(rig.revealed(&h, "TOKEN").await, "t0ken");
    assert_eq!(rig.revealed(&h, "FROM_TOKEN").await, "x");
    let actions = rig.app.audit_actions().await;
    assert!(actions.contains(&("secret.export".into(), "success".into())));
}

#[tokio::test]
async fn dotenv_imports_are_all_or_nothing_and_report_every_bad_line() {
    let rig = Rig::start().await;
    let group = format!("{}-env", rig.scratch.prefix);
    rig.ok(
        Method::POST,
        "/secret-groups",
        Some(json!({ "name": group })),
    )
    .await;
    let g = format!("/secret-groups/{group}");
    rig.put_secret(&g, "KEEP", "same").await;
    rig.put_secret(&g, "OLD", "old").await;

    // Two bad lines: 422 naming both line numbers, nothing stored, and no
    // value in the message.
    let bad = "GOOD=fine\nlower=secret-in-bad-line\n# comment\nUNCLOSED=\"never closed\n";
    let r = rig
        .send(
            Method::POST,
            &format!("{g}/secrets/import"),
            Some(json!({ "dotenv": bad })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "dotenv");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("line 2") && message.contains("line 4"),
        "{message}"
    );
    assert!(!message.contains("secret-in-bad-line") && !message.contains("never closed"));
    let names = |v: &Value| -> BTreeSet<String> {
        v["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    let before = rig.ok(Method::GET, &format!("{g}/secrets"), None).await;
    assert_eq!(
        names(&before),
        BTreeSet::from(["KEEP".into(), "OLD".into()])
    );

    // Quoting, comments, export prefixes, CRLF; a dry run previews only.
    let good = "\u{feff}# app settings\r\nexport KEEP=same\r\nURL=\"postgres://u:p@db/x?a=1#frag\"  # inline comment\r\nMULTI=\"line one\nline two\"\nLITERAL='$HOME and \\n stay'\nHASH=a#b\nEMPTY=\n";
    let preview = rig
        .ok(
            Method::POST,
            &format!("{g}/secrets/import"),
            Some(json!({ "dotenv": good, "dry_run": true, "replace": true })),
        )
        .await;
    assert_eq!(preview["unchanged"], json!(["KEEP"]));
    assert_eq!(preview["removed"], json!(["OLD"]));
    assert_eq!(
        preview["added"],
        json!(["URL", "MULTI", "LITERAL", "HASH", "EMPTY"])
    );
    let after_dry = rig.ok(Method::GET, &format!("{g}/secrets"), None).await;
    assert_eq!(names(&after_dry), names(&before));

    rig.ok(
        Method::POST,
        &format!("{g}/secrets/import"),
        Some(json!({ "dotenv": good, "replace": true })),
    )
    .await;
    assert_eq!(
        rig.revealed(&g, "URL").await,
        "postgres://u:p@db/x?a=1#frag"
    );
    assert_eq!(rig.revealed(&g, "MULTI").await, "line one\nline two");
    assert_eq!(rig.revealed(&g, "LITERAL").await, "$HOME and \\n stay");
    assert_eq!(rig.revealed(&g, "HASH").await, "a#b");
    assert_eq!(rig.revealed(&g, "EMPTY").await, "");
    assert_eq!(
        rig.reveal(&g, "OLD").await.status(),
        StatusCode::NOT_FOUND,
        "replace removed what the file does not name"
    );
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let rig = Rig::start().await;
    let group = format!("{}-bad", rig.scratch.prefix);
    rig.ok(
        Method::POST,
        "/secret-groups",
        Some(json!({ "name": group })),
    )
    .await;
    let g = format!("/secret-groups/{group}");
    let cases: Vec<(String, Value, StatusCode, &str)> = vec![
        (
            format!("{g}/secrets/lower"),
            json!({ "value": "v" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            format!("{g}/secrets/1ST"),
            json!({ "value": "v" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            format!("{g}/secrets/A%3Bid"),
            json!({ "value": "v" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            format!("{g}/secrets/BIG"),
            json!({ "value": "x".repeat(32 * 1024 + 1) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "value",
        ),
        (
            format!("{g}/secrets/NUL"),
            json!({ "value": "a\u{0}b" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "value",
        ),
        (
            format!("{g}/secrets/EXTRA"),
            json!({ "value": "v", "other": 1 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
        (
            "/secret-groups/missing/secrets/KEY".into(),
            json!({ "value": "v" }),
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            "/apps/missing/secrets/KEY".into(),
            json!({ "value": "v" }),
            StatusCode::NOT_FOUND,
            "",
        ),
    ];
    for (path, body, status, field) in cases {
        let r = rig.send(Method::PUT, &path, Some(body)).await;
        assert_eq!(r.status(), status, "{path}");
        if !field.is_empty() {
            assert_eq!(error_of(r).await.1.as_deref(), Some(field), "{path}");
        }
    }
    for (body, field) in [
        (json!({ "name": "Bad_Name" }), "name"),
        (json!({ "name": "a;b" }), "name"),
        (
            json!({ "name": "ok", "description": "two\nlines" }),
            "description",
        ),
    ] {
        let r = rig.send(Method::POST, "/secret-groups", Some(body)).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_of(r).await.1.as_deref(), Some(field));
    }
    let r = rig
        .send(
            Method::POST,
            "/secret-groups",
            Some(json!({ "name": group })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // An app naming a group that does not exist (or one twice).
    let name = rig.scratch.name("x");
    for (groups, field) in [
        (json!(["nope"]), "secret_groups[0]"),
        (json!([group, group]), "secret_groups[1]"),
        (json!(["Bad"]), "secret_groups[0]"),
    ] {
        let r = rig
            .send(
                Method::POST,
                "/apps",
                Some(json!({ "name": name, "image": TEST_IMAGE, "secret_groups": groups })),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_of(r).await.1.as_deref(), Some(field));
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets")
        .fetch_one(&rig.app.state.db)
        .await
        .unwrap();
    assert_eq!(count, 0);
    assert_eq!(rig.ok(Method::GET, "/apps", None).await, json!([]));
}

#[tokio::test]
async fn concurrent_writes_and_a_rotation_leave_one_whole_value_each() {
    let rig = Rig::start().await;
    let group = format!("{}-race", rig.scratch.prefix);
    rig.ok(
        Method::POST,
        "/secret-groups",
        Some(json!({ "name": group })),
    )
    .await;
    let g = format!("/secret-groups/{group}");
    for i in 0..20 {
        rig.put_secret(&g, &format!("STEADY_{i}"), &format!("steady-{i}"))
            .await;
    }
    // Twenty writers race on one name while the CLI rotates the data key.
    let dir = rig.app.data_dir.path().to_path_buf();
    let rotation = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["secrets", "rotate-key", "--data-dir"])
            .arg(&dir)
            .output()
            .unwrap()
    });
    let contested_path = format!("{g}/secrets/CONTESTED");
    let writes = (0..20).map(|i| {
        rig.send(
            Method::PUT,
            &contested_path,
            Some(json!({ "value": format!("writer-{i}-{}", "x".repeat(i * 100)) })),
        )
    });
    for r in futures::future::join_all(writes).await {
        assert_eq!(r.status(), StatusCode::OK);
    }
    let out = rotation.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let listed = rig.ok(Method::GET, &format!("{g}/secrets"), None).await;
    let contested: Vec<&Value> = listed["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "CONTESTED")
        .collect();
    assert_eq!(contested.len(), 1);
    let value = rig.revealed(&g, "CONTESTED").await;
    let i: usize = value
        .strip_prefix("writer-")
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not one writer's value: {value:.40}"));
    assert_eq!(value, format!("writer-{i}-{}", "x".repeat(i * 100)));
    assert_eq!(contested[0]["length"], value.len());
    for i in 0..20 {
        assert_eq!(
            rig.revealed(&g, &format!("STEADY_{i}")).await,
            format!("steady-{i}")
        );
    }
}

#[tokio::test]
async fn rotate_key_re_encrypts_everything_and_replaces_the_master_key() {
    let rig = Rig::start().await;
    let group = format!("{}-rot", rig.scratch.prefix);
    rig.ok(
        Method::POST,
        "/secret-groups",
        Some(json!({ "name": group })),
    )
    .await;
    let g = format!("/secret-groups/{group}");
    let values: Vec<(String, String)> = (0..30)
        .map(|i| (format!("KEY_{i}"), format!("value-{i}-\u{e9}\n\"q\"")))
        .collect();
    for (k, v) in &values {
        rig.put_secret(&g, k, v).await;
    }
    let db = &rig.app.state.db;
    let snapshot = || async {
        sqlx::query_as::<_, (String, i64, Vec<u8>)>(
            "SELECT name, key_id, sealed FROM secrets ORDER BY name",
        )
        .fetch_all(db)
        .await
        .unwrap()
    };
    let before = snapshot().await;
    let status = rig.ok(Method::GET, "/secrets/keys", None).await;
    assert_eq!(status["secrets"], 30);
    assert_eq!(status["recovery_configured"], true);
    assert_eq!(status["master_source"], "file");
    let old_key_id = status["data_key_id"].as_i64().unwrap();

    let dir = rig.app.data_dir.path().to_path_buf();
    let old_master = std::fs::read(dir.join("master.key")).unwrap();
    let out = Command::new(BIN)
        .args(["secrets", "rotate-key", "--master", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Re-encrypted 30 secret(s)"));

    let after = snapshot().await;
    for ((n0, k0, s0), (n1, k1, s1)) in before.iter().zip(&after) {
        assert_eq!(n0, n1);
        assert_eq!(*k0, old_key_id);
        assert_ne!(k1, k0, "{n1} moved to the new data key");
        assert_ne!(s0, s1, "{n1} was re-encrypted");
    }
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secret_keys")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(keys, 1, "old data keys are gone");
    let new_master = std::fs::read(dir.join("master.key")).unwrap();
    assert_ne!(new_master, old_master);
    assert!(!dir.join("master.key.next").exists());
    // The running berth keeps working, and every value is intact.
    for (k, v) in &values {
        assert_eq!(&rig.revealed(&g, k).await, v);
    }
    // A restart opens the data dir with the new key only.
    let again = berth::startup::Application::build(berth::config::Config::for_tests(&dir)).await;
    assert!(again.is_ok(), "{:?}", again.err());
    drop(again);
    std::fs::write(dir.join("master.key"), &old_master).unwrap();
    let err = berth::startup::Application::build(berth::config::Config::for_tests(&dir))
        .await
        .err()
        .expect("the old master key no longer opens the data dir")
        .to_string();
    assert!(err.contains("does not open"), "{err}");

    // A rotation that stopped between its commit and its rename is finished
    // at the next start.
    std::fs::write(dir.join("master.key.next"), &new_master).unwrap();
    let resumed = berth::startup::Application::build(berth::config::Config::for_tests(&dir)).await;
    assert!(resumed.is_ok(), "{:?}", resumed.err());
    assert_eq!(std::fs::read(dir.join("master.key")).unwrap(), new_master);
    assert!(!dir.join("master.key.next").exists());
    let actions = rig.app.audit_actions().await;
    assert!(actions.contains(&("secrets.rotate_key".into(), "success".into())));
}

#[tokio::test]
async fn the_recovery_key_from_setup_restores_a_lost_master_key() {
    // Setup hands out the recovery key once.
    let app = spawn_app().await;
    let (csrf, recovery) = setup_keeping_recovery(&app).await;
    assert!(recovery.starts_with("AGE-SECRET-KEY-1"), "{recovery:.20}");
    app.post("/secret-groups", &csrf, json!({ "name": "keep" }))
        .await;
    let r = app
        .send(
            Method::PUT,
            "/secret-groups/keep/secrets/PRECIOUS",
            &csrf,
            Some(json!({ "value": "irreplaceable" })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // The store keeps only the public half.
    let stored: String = sqlx::query_scalar("SELECT recovery_recipient FROM key_ring WHERE id = 1")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert!(stored.starts_with("age1"));
    assert!(!app.audit_dump().await.contains(&recovery));

    let dir = app.data_dir.path().to_path_buf();
    std::fs::remove_file(dir.join("master.key")).unwrap();
    // Someone else's recovery key does not open it.
    let stranger = spawn_app().await;
    let (_, wrong) = setup_keeping_recovery(&stranger).await;
    let out = recover(&dir, &wrong);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not belong to this data dir"));
    assert!(!dir.join("master.key").exists());

    let out = recover(&dir, &format!("{recovery}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("master.key").exists());
    let restarted = spawn_with(|c| *c = berth::config::Config::for_tests(&dir)).await;
    let csrf = restarted.login(&restarted.client).await;
    let r = restarted
        .send(
            Method::POST,
            "/secret-groups/keep/secrets/PRECIOUS/reveal",
            &csrf,
            Some(json!({ "password": PASSWORD })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["value"], "irreplaceable");

    // A new recovery key (re-authenticated) replaces the old one.
    let r = restarted
        .send(
            Method::POST,
            "/secrets/recovery-key",
            &csrf,
            Some(json!({ "password": PASSWORD })),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let newer = r.json::<Value>().await.unwrap()["recovery_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(newer, recovery);
    std::fs::remove_file(dir.join("master.key")).unwrap();
    assert!(
        !recover(&dir, &recovery).status.success(),
        "the old key is retired"
    );
    assert!(recover(&dir, &newer).status.success());
}

/// A canary secret goes through everything a user does with secrets, in a
/// real `berth serve` with debug logging; it must reach the container (which
/// prints only its hash) and appear nowhere else: not in the log, not in any
/// API answer but `reveal`, not in the audit log, not in the store's bytes.
#[tokio::test]
async fn a_canary_secret_never_leaks_but_the_container_sees_it() {
    let scratch = Scratch::new();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("berth.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(BIN)
        .args(["serve", "--plain-http", "--listen", "127.0.0.1:0"])
        .args(["--proxy-http", "off", "--proxy-https", "off", "--data-dir"])
        .arg(&data)
        // Debug everywhere, and trace for the Docker client, whose request
        // and response bodies carry container environments.
        .env("BERTH_LOG", "debug,bollard=trace,bollard::docker=trace")
        .env("NO_COLOR", "1")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    /// Stops berth with SIGTERM (so its log is complete), SIGKILL if stuck.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(rest) = text.split("url=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "berth did not start: {text}");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("berth exited ({status}): {text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _guard = Kill(child);

    let secret = canary();
    let group_secret = canary();
    let mut answers = String::new();
    let http = client();
    let api = |p: &str| format!("{url}/api/v1{p}");
    let token = std::fs::read_to_string(data.join("setup-token")).unwrap();
    let setup: Value = http
        .post(api("/setup"))
        .json(&json!({ "token": token.trim(), "username": USERNAME, "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf = setup["csrf_token"].as_str().unwrap().to_string();
    // Every answer is kept, to be searched at the end.
    let mut call = async |method: Method, path: &str, body: Option<Value>| -> (StatusCode, Value) {
        let mut req = http
            .request(method, api(path))
            .header("X-CSRF-Token", &csrf);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        answers.push_str(&text);
        answers.push('\n');
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    };

    let group = format!("{}-canary", scratch.prefix);
    let name = scratch.name("canary");
    call(
        Method::POST,
        "/secret-groups",
        Some(json!({ "name": group })),
    )
    .await;
    let (s, _) = call(
        Method::PUT,
        &format!("/secret-groups/{group}/secrets/SHARED_CANARY"),
        Some(json!({ "value": group_secret })),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let script = "printf %s \"$CANARY\" | sha256sum | sed 's/^/CANARY /'; \
                  printf %s \"$SHARED_CANARY\" | sha256sum | sed 's/^/SHARED_CANARY /'; \
                  trap 'exit 0' TERM; sleep 3600 & wait";
    let (s, body) = call(
        Method::POST,
        "/apps",
        Some(json!({
            "name": name, "image": TEST_IMAGE, "command": ["sh", "-c", script],
            "env": { "PLAIN": "visible" }, "secret_groups": [group],
        })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, change) = call(
        Method::PUT,
        &format!("/apps/{name}/secrets/CANARY"),
        Some(json!({ "value": secret })),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(change["needs_redeploy"], json!([name]));
    // Refusals that carry the value must not echo it.
    for (path, body) in [
        (
            format!("/apps/{name}/secrets/bad;name"),
            json!({ "value": secret }),
        ),
        (
            format!("/apps/{name}/secrets/NUL"),
            json!({ "value": format!("{secret}\u{0}") }),
        ),
        (
            format!("/apps/{name}/secrets/BIG"),
            json!({ "value": format!("{secret}{}", "x".repeat(40_000)) }),
        ),
        (
            format!("/apps/{name}/secrets/X"),
            json!({ "value": secret, "unknown": secret }),
        ),
        (
            format!("/apps/{name}/secrets/X"),
            json!({ "value": [secret] }),
        ),
    ] {
        let (s, _) = call(Method::PUT, &path, Some(body)).await;
        assert!(s.is_client_error(), "{path}: {s}");
    }
    let (s, _) = call(
        Method::POST,
        &format!("/apps/{name}/secrets/import"),
        Some(json!({ "dotenv": format!("OK=1\nbad line {secret}\nlower={secret}\nQ=\"{secret}") })),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = call(
        Method::POST,
        &format!("/apps/{name}/secrets/import"),
        Some(json!({ "dotenv": format!("IMPORTED_CANARY={secret}\n"), "dry_run": true })),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    let (s, _) = call(Method::POST, &format!("/apps/{name}/redeploy"), None).await;
    assert_eq!(s, StatusCode::OK);
    // The process in the container sees both values.
    let deadline = Instant::now() + Duration::from_secs(30);
    let logs = loop {
        let (_, logs) = call(Method::GET, &format!("/apps/{name}/logs?tail=20"), None).await;
        let text = logs.to_string();
        if text.contains(&format!("CANARY {}", sha(&secret)))
            && text.contains(&format!("SHARED_CANARY {}", sha(&group_secret)))
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the container never saw the canary: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!logs.contains(&secret));

    // Everything a user would look at.
    let (_, app) = call(Method::GET, &format!("/apps/{name}"), None).await;
    let id = app["container"]["id"].as_str().unwrap().to_string();
    for path in [
        "/apps".to_string(),
        format!("/apps/{name}"),
        format!("/apps/{name}/plan"),
        format!("/apps/{name}/secrets"),
        format!("/secret-groups/{group}/secrets"),
        "/secret-groups".into(),
        "/containers".into(),
        format!("/containers/{id}/env"),
        "/secrets/keys".into(),
        "/audit?limit=200".into(),
        "/openapi.json".into(),
    ] {
        let (s, _) = call(Method::GET, &path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    let (_, env) = call(Method::GET, &format!("/containers/{id}/env"), None).await;
    assert!(
        env.to_string().contains("\"visible\""),
        "plain values are shown: {env}"
    );
    assert!(answers.contains("SHARED_CANARY") && answers.contains("PLAIN"));
    assert!(!answers.contains(&secret), "an API answer holds the canary");
    assert!(
        !answers.contains(&group_secret),
        "an API answer holds the group canary"
    );

    // The one way out: reveal, with the password; audited without the value.
    let revealed: Value = http
        .post(api(&format!("/apps/{name}/secrets/CANARY/reveal")))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({ "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(revealed["value"], secret.as_str());
    let audit = http
        .get(api("/audit?limit=200"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(audit.contains("secret.reveal") && audit.contains("secret.create"));
    assert!(!audit.contains(&secret) && !audit.contains(&group_secret));

    // A new root is refused while this berth serves the data dir.
    let out = Command::new(BIN)
        .args(["secrets", "rotate-key", "--root", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("berth is running"));

    drop(_guard);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("DEBUG"), "debug logging was on");
    let leaks: Vec<String> = log
        .lines()
        .filter(|l| l.contains(&secret) || l.contains(&group_secret))
        .map(|l| {
            l.replace(&secret, "<CANARY>")
                .replace(&group_secret, "<GROUP CANARY>")
        })
        .map(|l| l.chars().take(400).collect())
        .collect();
    assert!(
        leaks.is_empty(),
        "the log holds a canary:\n{}",
        leaks.join("\n")
    );
    // At rest: not in the database, its WAL, or anything else in the data dir.
    for entry in walk(&data) {
        let bytes = std::fs::read(&entry).unwrap();
        for c in [&secret, &group_secret] {
            assert!(
                !bytes.windows(c.len()).any(|w| w == c.as_bytes()),
                "{} holds a canary in clear",
                entry.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `rotate-key --root` after a feared leak of master key and database: a
/// new root, everything sealed under the old one re-sealed (secrets, the
/// EAB key, a TSIG secret, a webhook secret), API tokens void, and the
/// setup's recovery key still recovers. It refuses while berth runs.
#[tokio::test]
async fn a_new_root_re_seals_everything_and_the_recovery_key_still_works() {
    let app = spawn_app().await;
    let (csrf, recovery) = setup_keeping_recovery(&app).await;
    let ok = |r: reqwest::Response| async move {
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{status}: {text}");
        serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)
    };
    ok(app
        .post("/secret-groups", &csrf, json!({ "name": "vault" }))
        .await)
    .await;
    ok(app
        .send(
            Method::PUT,
            "/secret-groups/vault/secrets/DB_PASSWORD",
            &csrf,
            Some(json!({ "value": "kept-across-roots" })),
        )
        .await)
    .await;
    ok(app
        .send(
            Method::PUT,
            "/acme",
            &csrf,
            Some(json!({ "directory_url": "https://ca.invalid/directory",
                         "eab": { "kid": "kid-1", "hmac_key": "c2VhbGVkIGhtYWMga2V5" } })),
        )
        .await)
    .await;
    ok(app
        .post(
            "/dns-providers",
            &csrf,
            json!({ "name": "bind", "secret": "c2VjcmV0IHRzaWcga2V5",
                    "config": { "kind": "rfc2136", "server": "127.0.0.1:53", "zone": "berth.test",
                                "key_name": "berth-test" }, "allow_internal": true }),
        )
        .await)
    .await;
    let channel = ok(app
        .post(
            "/notifications/channels",
            &csrf,
            json!({ "name": "ops", "config": { "kind": "webhook", "url": "http://127.0.0.1:9/hook" },
                    "secret": "hook-secret", "allow_internal": true }),
        )
        .await)
    .await;
    let channel_id = channel["id"].as_str().unwrap().to_string();
    let (_, token) = app.create_token(&csrf, &["read"]).await;

    let sealed_columns = [
        (
            "acme_account",
            "eab_hmac_sealed",
            "acme-eab-hmac".to_string(),
        ),
        (
            "dns_providers",
            "secret_sealed",
            "dns-provider:bind".to_string(),
        ),
        (
            "notification_channels",
            "secret_sealed",
            format!("notification-channel:{channel_id}"),
        ),
    ];
    let read = |db: sqlx::SqlitePool, table: &'static str, column: &'static str| async move {
        sqlx::query_scalar::<_, Vec<u8>>(&format!("SELECT {column} FROM {table}"))
            .fetch_one(&db)
            .await
            .unwrap()
    };
    let mut before = Vec::new();
    for (table, column, _) in &sealed_columns {
        before.push(read(app.state.db.clone(), table, column).await);
    }
    let old_keys = app.state.keys.clone();

    // While berth serves the data dir, a new root is refused.
    let dir = app.data_dir.path().to_path_buf();
    // (`berth serve` holds this lock while it runs.)
    let held = berth::store::lock_data_dir(&dir).unwrap();
    let out = Command::new(BIN)
        .args(["secrets", "rotate-key", "--root", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("berth is running"));
    drop(held);

    app.handle.shutdown();
    let out = Command::new(BIN)
        .args(["secrets", "rotate-key", "--root", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("Re-encrypted 1 secret(s)"), "{said}");
    // The EAB key, the DNS provider, the channel, and the backup key made at setup.
    assert!(said.contains("4 other sealed value(s) re-sealed"), "{said}");

    let again = spawn_with(|c| *c = berth::config::Config::for_tests(&dir)).await;
    for ((table, column, purpose), old) in sealed_columns.iter().zip(&before) {
        let now = read(again.state.db.clone(), table, column).await;
        assert_ne!(&now, old, "{table}.{column} was re-sealed");
        assert!(
            again.state.keys.open(purpose, &now).is_ok(),
            "{table}.{column}"
        );
        assert!(
            old_keys.open(purpose, &now).is_err(),
            "{table}.{column}: old root"
        );
    }
    let csrf = again.login(&again.client).await;
    let r = again
        .send(
            Method::POST,
            "/secret-groups/vault/secrets/DB_PASSWORD/reveal",
            &csrf,
            Some(json!({ "password": PASSWORD })),
        )
        .await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["value"],
        "kept-across-roots"
    );
    // Tokens were signed with a key from the old root.
    let r = client()
        .get(again.api("/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The recovery key from setup opens the new root.
    again.handle.shutdown();
    std::fs::remove_file(dir.join("master.key")).unwrap();
    let out = recover(&dir, &recovery);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recovered = spawn_with(|c| *c = berth::config::Config::for_tests(&dir)).await;
    let csrf = recovered.login(&recovered.client).await;
    let r = recovered
        .send(
            Method::POST,
            "/secret-groups/vault/secrets/DB_PASSWORD/reveal",
            &csrf,
            Some(json!({ "password": PASSWORD })),
        )
        .await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["value"],
        "kept-across-roots"
    );
}
