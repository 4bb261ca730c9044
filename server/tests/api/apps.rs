//! Apps against the real Docker engine: lifecycle, recreation on change,
//! drift, logs and stats streams, policy, bad input, stacks, and the
//! engine's own objects.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::docker::{docker, Scratch, TEST_IMAGE};
use crate::helpers::{error_of, spawn_app, TestApp, PASSWORD};
use crate::ports::free_port;

/// Signed-in berth plus a scratch prefix for Docker objects.
async fn setup() -> (TestApp, String, Scratch) {
    let scratch = Scratch::new();
    let app = spawn_app().await;
    let csrf = app.setup().await;
    (app, csrf, scratch)
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    csrf: &str,
    body: Option<Value>,
) -> reqwest::Response {
    app.send(method, path, csrf, body).await
}

async fn json_of(r: reqwest::Response) -> Value {
    let status = r.status();
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}"))
}

/// Polls the app until `check` holds (the state comes from Docker's event
/// stream, which is asynchronous by nature).
async fn wait_for(app: &TestApp, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = json_of(app.get(&format!("/apps/{name}")).await).await;
        if check(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sleeper(name: &str) -> Value {
    json!({
        "name": name,
        "image": TEST_IMAGE,
        "command": ["sh", "-c", "echo started; exec sleep 3600"],
        "env": { "GREETING": "hello" },
    })
}

async fn inspect(id: &str) -> bollard::models::ContainerInspectResponse {
    docker()
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn an_app_is_created_running_stopped_started_and_deleted() {
    let (app, csrf, scratch) = setup().await;
    let name = scratch.name("web");

    let r = send(
        &app,
        reqwest::Method::POST,
        "/apps",
        &csrf,
        Some(sleeper(&name)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created = json_of(r).await;
    assert_eq!(created["status"], "running", "{created:#}");
    assert_eq!(created["last_apply"]["ok"], true);
    let id = created["container"]["id"].as_str().unwrap().to_string();

    let c = inspect(&id).await;
    assert_eq!(c.name.as_deref(), Some(format!("/{name}").as_str()));
    let labels = c.config.as_ref().unwrap().labels.clone().unwrap();
    assert_eq!(labels["berth.managed"], "true");
    assert_eq!(labels["berth.app"], name);
    assert!(c
        .config
        .unwrap()
        .env
        .unwrap()
        .contains(&"GREETING=hello".to_string()));
    assert!(c.state.unwrap().running.unwrap());

    // Applying again changes nothing.
    let r = send(
        &app,
        reqwest::Method::POST,
        &format!("/apps/{name}/apply"),
        &csrf,
        None,
    )
    .await;
    let v = json_of(r).await;
    assert_eq!(v["last_apply"]["actions"], json!([]));
    assert_eq!(v["container"]["id"], id.as_str());

    let r = send(
        &app,
        reqwest::Method::POST,
        &format!("/apps/{name}/stop"),
        &csrf,
        None,
    )
    .await;
    let v = json_of(r).await;
    assert_eq!(v["status"], "stopped", "{v:#}");
    assert_eq!(v["spec"]["state"], "stopped");
    assert!(!inspect(&id).await.state.unwrap().running.unwrap());

    let r = send(
        &app,
        reqwest::Method::POST,
        &format!("/apps/{name}/start"),
        &csrf,
        None,
    )
    .await;
    assert_eq!(json_of(r).await["status"], "running");
    let started = inspect(&id).await.state.unwrap().started_at.unwrap();

    let r = send(
        &app,
        reqwest::Method::POST,
        &format!("/apps/{name}/restart"),
        &csrf,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(
        inspect(&id).await.state.unwrap().started_at.unwrap(),
        started
    );

    let list = json_of(app.get("/apps").await).await;
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["name"] == name.as_str()));

    let r = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/apps/{name}"),
        &csrf,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(scratch.containers().await.is_empty());
    assert_eq!(
        app.get(&format!("/apps/{name}")).await.status(),
        StatusCode::NOT_FOUND
    );

    let actions: Vec<String> = app
        .audit_actions()
        .await
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    for a in [
        "app.create",
        "app.apply",
        "app.stop",
        "app.start",
        "app.restart",
        "app.delete",
    ] {
        assert!(actions.contains(&a.to_string()), "{a} audited: {actions:?}");
    }
    assert!(
        !app.audit_dump().await.contains("hello"),
        "env values stay out of the audit log"
    );
}

#[tokio::test]
async fn a_changed_spec_is_planned_then_recreated_keeping_volumes() {
    let (app, csrf, scratch) = setup().await;
    let name = scratch.name("vol");
    let volume = scratch.name("data");
    let mut spec = json!({
        "name": name,
        "image": TEST_IMAGE,
        "command": ["sh", "-c", "echo kept > /data/file; exec sleep 3600"],
        "volumes": [{ "source": volume, "target": "/data" }],
    });
    let r = send(
        &app,
        reqwest::Method::POST,
        "/apps",
        &csrf,
        Some(spec.clone()),
    )
    .await;
    let first = json_of(r).await;
    let old_id = first["container"]["id"].as_str().unwrap().to_string();

    spec["command"] = json!(["sh", "-c", "cat /data/file; exec sleep 3600"]);
    spec["env"] = json!({ "NEW_VAR": "x" });
    let r = send(
        &app,
        reqwest::Method::PUT,
        &format!("/apps/{name}?dry_run=true"),
        &csrf,
        Some(spec.clone()),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let plan = json_of(r).await;
    assert_eq!(plan["actions"][0]["action"], "recreate", "{plan:#}");
    let reasons = plan["actions"][0]["reasons"].to_string();
    assert!(
        reasons.contains("command changed") && reasons.contains("env changed (added NEW_VAR)"),
        "{reasons}"
    );
    // The dry run changed nothing.
    assert_eq!(
        json_of(app.get(&format!("/apps/{name}")).await).await["container"]["id"],
        old_id.as_str()
    );

    let r = send(
        &app,
        reqwest::Method::PUT,
        &format!("/apps/{name}"),
        &csrf,
        Some(spec),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = json_of(r).await;
    let new_id = v["container"]["id"].as_str().unwrap();
    assert_ne!(new_id, old_id);
    assert_eq!(v["last_apply"]["actions"][0]["action"], "recreate");
    assert_eq!(
        scratch.containers().await.len(),
        1,
        "the old container is gone"
    );

    // The new container reads what the old one wrote.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = json_of(app.get(&format!("/apps/{name}/logs?tail=10")).await).await;
        if logs.as_array().unwrap().iter().any(|l| l["text"] == "kept") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "volume content survives recreation: {logs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn changes_behind_berths_back_show_as_drift_and_apply_converges() {
    let (app, csrf, scratch) = setup().await;
    let name = scratch.name("drift");
    let r = send(
        &app,
        reqwest::Method::POST,
        "/apps",
        &csrf,
        Some(sleeper(&name)),
    )
    .await;
    let id = json_of(r).await["container"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Stopped with the Docker API directly: berth learns it from the event stream.
    docker()
        .stop_container(
            &id,
            Some(
                bollard::query_parameters::StopContainerOptionsBuilder::new()
                    .t(1)
                    .build(),
            ),
        )
        .await
        .unwrap();
    let v = wait_for(&app, &name, "drift", |v| v["status"] == "drifted").await;
    assert_eq!(v["reasons"], json!(["stopped outside berth"]));
    let plan = json_of(app.get(&format!("/apps/{name}/plan")).await).await;
    assert_eq!(plan["actions"][0]["action"], "start");
    let r = send(
        &app,
        reqwest::Method::POST,
        &format!("/apps/{name}/apply"),
        &csrf,
        None,
    )
    .await;
    assert_eq!(json_of(r).await["status"], "running");

    // A limit changed in place (`docker update`).
    docker()
        .update_container(
            &id,
            bollard::models::ContainerUpdateBody {
                memory: Some(64 * 1024 * 1024),
                memory_swap: Some(-1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let v = wait_for(&app, &name, "memory drift", |v| v["status"] == "drifted").await;
    assert_eq!(v["reasons"], json!(["memory limit changed outside berth"]));
    let r = send(
        &app,
        reqwest::Method::POST,
        &format!("/apps/{name}/apply"),
        &csrf,
        None,
    )
    .await;
    let v = json_of(r).await;
    assert_eq!(v["status"], "running", "{v:#}");
    assert_eq!(v["last_apply"]["actions"][0]["action"], "recreate");

    // Removed outside berth.
    let id = v["container"]["id"].as_str().unwrap().to_string();
    docker()
        .remove_container(
            &id,
            Some(
                bollard::query_parameters::RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .build(),
            ),
        )
        .await
        .unwrap();
    let v = wait_for(&app, &name, "removal drift", |v| v["status"] == "drifted").await;
    assert_eq!(
        v["reasons"],
        json!(["the container was removed outside berth"])
    );
    let r = send(
        &app,
        reqwest::Method::POST,
        &format!("/apps/{name}/apply"),
        &csrf,
        None,
    )
    .await;
    assert_eq!(json_of(r).await["status"], "running");
}

#[tokio::test]
async fn a_crashing_app_is_failed_and_a_bad_update_keeps_the_old_container() {
    let (app, csrf, scratch) = setup().await;
    let name = scratch.name("crash");
    let r = send(
        &app,
        reqwest::Method::POST,
        "/apps",
        &csrf,
        Some(sleeper(&name)),
    )
    .await;
    let old_id = json_of(r).await["container"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // A command that does not exist: the new container cannot start.
    let mut spec = sleeper(&name);
    spec["command"] = json!(["/no/such/program"]);
    let r = send(
        &app,
        reqwest::Method::PUT,
        &format!("/apps/{name}"),
        &csrf,
        Some(spec),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let (code, _) = error_of(r).await;
    assert_eq!(code, "apply_failed");
    let v = json_of(app.get(&format!("/apps/{name}")).await).await;
    assert_eq!(v["status"], "failed", "{v:#}");
    assert!(
        v["last_apply"]["error"]
            .as_str()
            .unwrap()
            .contains("previous container is running again"),
        "{v:#}"
    );
    assert!(
        inspect(&old_id).await.state.unwrap().running.unwrap(),
        "the old container still serves"
    );
    assert_eq!(scratch.containers().await.len(), 1);

    // A program that exits non-zero.
    let name2 = scratch.name("exit");
    let mut spec = sleeper(&name2);
    spec["command"] = json!(["sh", "-c", "exit 3"]);
    spec["restart"] = json!("no");
    send(&app, reqwest::Method::POST, "/apps", &csrf, Some(spec)).await;
    let v = wait_for(&app, &name2, "failure", |v| v["status"] == "failed").await;
    assert_eq!(
        v["reasons"],
        json!(["the container is exited (exit code 3)"])
    );
}

#[tokio::test]
async fn logs_and_stats_are_read_and_streamed() {
    let (app, csrf, scratch) = setup().await;
    let name = scratch.name("logs");
    let spec = json!({
        "name": name,
        "image": TEST_IMAGE,
        "command": ["sh", "-c", "echo first; echo oops >&2; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"],
    });
    assert_eq!(
        send(&app, reqwest::Method::POST, "/apps", &csrf, Some(spec))
            .await
            .status(),
        StatusCode::CREATED
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = json_of(app.get(&format!("/apps/{name}/logs?tail=1000")).await).await;
        let lines = lines.as_array().unwrap();
        let has = |stream: &str, text: &str| {
            lines
                .iter()
                .any(|l| l["stream"] == stream && l["text"] == text)
        };
        if has("stdout", "first") && has("stderr", "oops") {
            break;
        }
        assert!(Instant::now() < deadline, "logs: {lines:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Following: lines written after the request arrive as events.
    let r = app
        .get(&format!("/apps/{name}/logs?tail=0&follow=true"))
        .await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = r;
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.matches("tick").count() < 3 {
        let chunk = tokio::time::timeout_at(deadline.into(), body.chunk())
            .await
            .expect("ticks stream in")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        seen.contains("data: {\"stream\":\"stdout\",\"text\":\"tick"),
        "{seen}"
    );
    assert!(!seen.contains("first"), "tail=0 starts at the end");

    let one = json_of(app.get(&format!("/apps/{name}/stats")).await).await;
    assert!(one["memory_bytes"].as_u64().unwrap() > 0, "{one}");
    assert!(one["pids"].as_u64().unwrap() >= 1, "{one}");
    let r = app.get(&format!("/apps/{name}/stats?stream=true")).await;
    let mut body = r;
    let mut seen = String::new();
    while seen.matches("data:").count() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.chunk())
            .await
            .expect("stats stream")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("\"cpu_percent\""), "{seen}");
}

#[tokio::test]
async fn bad_input_is_refused_by_field_and_creates_nothing() {
    let (app, csrf, scratch) = setup().await;
    let base = sleeper(&scratch.name("bad"));
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "name": "x;id" }), "name"),
        (json!({ "name": "$(id)" }), "name"),
        (json!({ "name": "`id`" }), "name"),
        (json!({ "name": "a\nb" }), "name"),
        (json!({ "image": "nginx; rm -rf /" }), "image"),
        (
            json!({ "image": format!("{}-absent:1", scratch.prefix) }),
            "image",
        ),
        (json!({ "command": ["sh", "-c\nid"] }), "command[1]"),
        (
            json!({ "limits": { "memory_mb": 99999999 } }),
            "limits.memory_mb",
        ),
        (json!({ "limits": { "cpus": 4096 } }), "limits.cpus"),
        (json!({ "limits": { "cpus": 512 } }), "limits.cpus"),
        (json!({ "limits": { "pids": 0 } }), "limits.pids"),
        (json!({ "env": { "BAD-NAME": "x" } }), "env.BAD-NAME"),
        (
            json!({ "ports": [{ "container": 0 }] }),
            "ports[0].container",
        ),
        (
            json!({ "volumes": [{ "source": "/etc/../root", "target": "/x" }] }),
            "volumes[0].source",
        ),
        (
            json!({ "volumes": [{ "source": "/home", "target": "/x" }] }),
            "volumes[0].source",
        ),
        (
            json!({ "health_check": { "test": ["true\nid"] } }),
            "health_check.test[0]",
        ),
        (
            json!({ "labels": { "berth.app": "other" } }),
            "labels.berth.app",
        ),
        (json!({ "privileged": true }), "privileged"),
        (json!({ "host_network": true }), "host_network"),
        (json!({ "host_pid": true }), "host_pid"),
        (json!({ "cap_add": ["SYS_ADMIN"] }), "cap_add"),
        (
            json!({ "volumes": [{ "source": "/var/run/docker.sock", "target": "/var/run/docker.sock" }] }),
            "volumes[0].source",
        ),
        (
            json!({ "volumes": [{ "source": "/", "target": "/host" }] }),
            "volumes[0].source",
        ),
    ];
    for (patch, field) in cases {
        let mut spec = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let r = send(
            &app,
            reqwest::Method::POST,
            "/apps",
            &csrf,
            Some(spec.clone()),
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{spec}");
        let (code, f) = error_of(r).await;
        assert_eq!(
            (code.as_str(), f.as_deref()),
            ("invalid", Some(field)),
            "{spec}"
        );
    }
    assert!(
        scratch.containers().await.is_empty(),
        "nothing reached the engine"
    );
    assert_eq!(json_of(app.get("/apps").await).await, json!([]));

    // Port clashes: with another app, and with another program.
    let first = scratch.name("p1");
    let port = free_port();
    let mut spec = sleeper(&first);
    spec["ports"] = json!([{ "container": 8080, "host": port, "bind": "127.0.0.1" }]);
    assert_eq!(
        send(
            &app,
            reqwest::Method::POST,
            "/apps",
            &csrf,
            Some(spec.clone())
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    spec["name"] = json!(scratch.name("p2"));
    let r = send(
        &app,
        reqwest::Method::POST,
        "/apps",
        &csrf,
        Some(spec.clone()),
    )
    .await;
    assert_eq!(
        error_of(r).await,
        ("invalid".to_string(), Some("ports[0].host".to_string()))
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    spec["ports"] = json!([{ "container": 8080, "host": listener.local_addr().unwrap().port(), "bind": "127.0.0.1" }]);
    let r = send(&app, reqwest::Method::POST, "/apps", &csrf, Some(spec)).await;
    assert_eq!(
        error_of(r).await,
        ("invalid".to_string(), Some("ports[0].host".to_string()))
    );
    assert_eq!(scratch.containers().await.len(), 1);

    // Duplicate names.
    let r = send(
        &app,
        reqwest::Method::POST,
        "/apps",
        &csrf,
        Some(sleeper(&first)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn dangerous_settings_need_an_allowance_confirmed_with_the_password() {
    let (app, csrf, scratch) = setup().await;
    let name = scratch.name("priv");
    let mut spec = sleeper(&name);
    spec["cap_add"] = json!(["NET_ADMIN"]);
    spec["allow"] = json!(["cap_add"]);
    let r = send(
        &app,
        reqwest::Method::POST,
        "/apps",
        &csrf,
        Some(spec.clone()),
    )
    .await;
    assert_eq!(
        error_of(r).await,
        ("invalid".to_string(), Some("confirm_password".to_string()))
    );
    spec["confirm_password"] = json!("wrong password!!");
    let r = send(
        &app,
        reqwest::Method::POST,
        "/apps",
        &csrf,
        Some(spec.clone()),
    )
    .await;
    assert_eq!(
        error_of(r).await,
        ("invalid".to_string(), Some("confirm_password".to_string()))
    );
    assert!(scratch.containers().await.is_empty());

    // A write-scoped token cannot widen allowances even with the password.
    let (_, write_token) = app.create_token(&csrf, &["write"]).await;
    spec["confirm_password"] = json!(PASSWORD);
    let r = app
        .client
        .post(app.api("/apps"))
        .bearer_auth(&write_token)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let r = send(&app, reqwest::Method::POST, "/apps", &csrf, Some(spec)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v = json_of(r).await;
    assert_eq!(v["spec"]["allow"], json!(["cap_add"]));
    assert!(v["spec"].get("confirm_password").is_none());
    let caps = inspect(v["container"]["id"].as_str().unwrap())
        .await
        .host_config
        .unwrap()
        .cap_add
        .unwrap();
    assert_eq!(caps, ["NET_ADMIN"]);
    let audit = app.audit_actions().await;
    assert!(audit.contains(&("app.allow".to_string(), "success".to_string())));
    assert!(audit.contains(&("app.allow".to_string(), "failure".to_string())));
    assert!(!app.audit_dump().await.contains(PASSWORD));

    // A read token cannot create apps at all.
    let (_, read_token) = app.create_token(&csrf, &["read"]).await;
    let r = app
        .client
        .post(app.api("/apps"))
        .bearer_auth(&read_token)
        .json(&sleeper(&scratch.name("ro")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_compose_file_becomes_a_stack_of_apps_in_dependency_order() {
    let (app, csrf, scratch) = setup().await;
    let stack = scratch.name("st");
    let compose = format!(
        r#"
services:
  web:
    image: {TEST_IMAGE}
    command: ["sh", "-c", "exec sleep 3600"]
    depends_on: [db]
    environment:
      DB_HOST: db
    networks: [back]
    deploy:
      resources:
        limits:
          memory: 64M
  db:
    image: {TEST_IMAGE}
    command: sleep 3600
    volumes:
      - dbdata:/data
    networks: [back]
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
networks:
  back: {{}}
volumes:
  dbdata: {{}}
"#
    );
    let r = send(
        &app,
        reqwest::Method::POST,
        "/stacks?dry_run=true",
        &csrf,
        Some(json!({ "name": stack, "compose": compose })),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let plan = json_of(r).await;
    let names: Vec<&str> = plan["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [format!("{stack}-db"), format!("{stack}-web")]);
    assert!(scratch.containers().await.is_empty());

    let r = send(
        &app,
        reqwest::Method::POST,
        "/stacks",
        &csrf,
        Some(json!({ "name": stack, "compose": compose })),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v = json_of(r).await;
    let statuses: Vec<&str> = v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.iter().all(|s| ["running", "starting"].contains(s)),
        "{v:#}"
    );
    let web = inspect(&format!("{stack}-web")).await;
    assert_eq!(web.host_config.unwrap().memory, Some(64 * 1024 * 1024));
    let endpoints = web.network_settings.unwrap().networks.unwrap();
    let back = &endpoints[&format!("{stack}_back")];
    assert!(
        back.aliases.as_ref().unwrap().contains(&"web".to_string()),
        "{back:?}"
    );

    let r = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/stacks/{stack}"),
        &csrf,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(scratch.containers().await.is_empty());

    // What berth cannot do is listed, all at once, and nothing is created.
    let bad = format!(
        "services:\n  app:\n    build: .\n    image: {TEST_IMAGE}\n    container_name: x\n    healthcheck:\n      test: curl -f http://localhost\n"
    );
    let r = send(
        &app,
        reqwest::Method::POST,
        "/stacks",
        &csrf,
        Some(json!({ "name": scratch.name("bad"), "compose": bad })),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = json_of(r).await;
    let message = body["error"]["message"].as_str().unwrap();
    for key in [
        "services.app.build",
        "services.app.container_name",
        "services.app.healthcheck",
    ] {
        assert!(message.contains(key), "{key} in {message}");
    }
    assert!(message.contains("does not build images"), "{message}");
    assert!(scratch.containers().await.is_empty());
}

#[tokio::test]
async fn the_engines_containers_images_volumes_and_networks_are_listed_and_managed() {
    let (app, csrf, scratch) = setup().await;
    // A container berth did not create.
    let foreign = scratch.name("foreign");
    docker()
        .create_container(
            Some(
                bollard::query_parameters::CreateContainerOptionsBuilder::new()
                    .name(&foreign)
                    .build(),
            ),
            bollard::models::ContainerCreateBody {
                image: Some(TEST_IMAGE.into()),
                cmd: Some(vec!["sleep".into(), "3600".into()]),
                labels: Some([(crate::docker::TEST_LABEL.to_string(), "1".to_string())].into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let list = json_of(app.get("/containers").await).await;
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == foreign.as_str())
        .expect("listed")
        .clone();
    assert_eq!(row["managed"], false);
    assert_eq!(row["state"], "created");
    let id = row["id"].as_str().unwrap();
    let r = send(
        &app,
        reqwest::Method::POST,
        &format!("/containers/{id}/start"),
        &csrf,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(inspect(id).await.state.unwrap().running.unwrap());
    // An app cannot take the foreign container's name.
    let r = send(
        &app,
        reqwest::Method::POST,
        "/apps",
        &csrf,
        Some(sleeper(&foreign)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/containers/{id}"),
        &csrf,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(scratch.containers().await.is_empty());
    let r = send(
        &app,
        reqwest::Method::DELETE,
        "/containers/x;id",
        &csrf,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Import: a `docker save` tarball of an image made here.
    let image = format!("{}-import:1", scratch.prefix);
    crate::docker::build_image(&image, false).await;
    let tarball: Vec<u8> = docker()
        .export_image(&image)
        .map(|c| c.unwrap())
        .collect::<Vec<_>>()
        .await
        .concat();
    docker()
        .remove_image(
            &image,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .unwrap();
    let r = app
        .client
        .post(app.api("/images/import"))
        .header("X-CSRF-Token", &csrf)
        .header("Content-Type", "application/x-tar")
        .body(tarball)
        .send()
        .await
        .unwrap();
    let v = json_of(r).await;
    assert_eq!(v["loaded"], json!([image]), "{v}");
    let images = json_of(app.get("/images").await).await;
    let loaded = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["tags"].as_array().unwrap().contains(&json!(image)))
        .expect("the imported image is listed");
    assert_eq!(loaded["containers"], 0);
    let r = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/images/{image}"),
        &csrf,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .client
        .post(app.api("/images/import"))
        .header("X-CSRF-Token", &csrf)
        .body("not a tarball")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Pull: no registry is reachable here, and the error says so.
    let r = send(
        &app,
        reqwest::Method::POST,
        "/images/pull",
        &csrf,
        Some(json!({ "image": format!("{}-nope/x:1", scratch.prefix) })),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = json_of(r).await["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let progress = loop {
        let p = json_of(app.get(&format!("/images/pulls/{id}")).await).await;
        if p["status"] != "running" {
            break p;
        }
        assert!(Instant::now() < deadline, "pull ends");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(progress["status"], "failed", "{progress}");
    assert!(!progress["error"].as_str().unwrap().is_empty());

    // Volumes and networks berth creates for an app are listed as managed.
    let name = scratch.name("net");
    let mut spec = sleeper(&name);
    spec["networks"] = json!([scratch.name("net1")]);
    spec["volumes"] = json!([{ "source": scratch.name("vol1"), "target": "/data" }]);
    assert_eq!(
        send(&app, reqwest::Method::POST, "/apps", &csrf, Some(spec))
            .await
            .status(),
        StatusCode::CREATED
    );
    let volumes = json_of(app.get("/volumes").await).await;
    let vol = volumes
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == scratch.name("vol1").as_str())
        .expect("volume listed");
    assert_eq!(
        (vol["managed"].clone(), vol["app"].clone()),
        (json!(true), json!(name))
    );
    let networks = json_of(app.get("/networks").await).await;
    let net = networks
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == scratch.name("net1").as_str())
        .expect("network listed");
    assert_eq!(net["managed"], true);
    let r = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/apps/{name}?remove_volumes=true"),
        &csrf,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let volumes = json_of(app.get("/volumes").await).await;
    assert!(!volumes
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == scratch.name("vol1").as_str()));
}

#[tokio::test]
async fn an_unreachable_engine_is_reported_not_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("no-docker.sock");
    let app = crate::helpers::spawn_with(|c| {
        c.docker_host = Some(format!("unix://{}", socket.display()))
    })
    .await;
    let csrf = app.setup().await;
    let r = send(
        &app,
        reqwest::Method::POST,
        "/apps",
        &csrf,
        Some(sleeper("web")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (code, _) = error_of(r).await;
    assert_eq!(code, "engine_unavailable");
    assert_eq!(
        json_of(app.get("/apps").await).await,
        json!([]),
        "nothing stored"
    );
    let r = app.get("/containers").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn health_checks_show_in_the_status() {
    let (app, csrf, scratch) = setup().await;
    let healthy = scratch.name("healthy");
    let mut spec = sleeper(&healthy);
    spec["health_check"] = json!({ "test": ["true"], "interval_s": 1, "retries": 1 });
    send(&app, reqwest::Method::POST, "/apps", &csrf, Some(spec)).await;
    wait_for(&app, &healthy, "healthy", |v| {
        v["status"] == "running" && v["container"]["health"] == "healthy"
    })
    .await;

    let sick = scratch.name("sick");
    let mut spec = sleeper(&sick);
    spec["health_check"] = json!({ "test": ["false"], "interval_s": 1, "retries": 1 });
    send(&app, reqwest::Method::POST, "/apps", &csrf, Some(spec)).await;
    let v = wait_for(&app, &sick, "unhealthy", |v| v["status"] == "unhealthy").await;
    assert_eq!(v["reasons"], json!(["the health check is failing"]));
}
