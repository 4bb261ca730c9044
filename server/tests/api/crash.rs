//! berth killed (SIGKILL) in the middle of an apply or a backup converges
//! after restart.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::docker::{docker, Scratch, TEST_IMAGE};
use crate::helpers::{client, csrf_of, PASSWORD, USERNAME};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// Starts the binary on `dir`; returns it and its URL.
fn serve(dir: &std::path::Path, pause: Option<&str>) -> (Child, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--plain-http", "--listen", "127.0.0.1:0"])
        .env("BERTH_DATA_DIR", dir)
        .env("NO_COLOR", "1")
        .env_remove("BERTH_FAULT_PAUSE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(point) = pause {
        cmd.env("BERTH_FAULT_PAUSE", point);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = stdout.lines();
    let url = loop {
        let line = lines.next().expect("berth logs its URL").unwrap();
        if let Some(rest) = line.split("url=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining the log so berth never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

#[tokio::test]
async fn sigkill_during_a_recreate_converges_after_restart() {
    let scratch = Scratch::new();
    let dir = tempfile::tempdir().unwrap();
    let name = scratch.name("crash");
    let (mut child, url) = serve(dir.path(), Some("apply.recreate.after_stop"));
    let api = |p: &str| format!("{url}/api/v1{p}");

    let token = std::fs::read_to_string(dir.path().join("setup-token")).unwrap();
    let http = client();
    let r = http
        .post(api("/setup"))
        .json(&json!({ "token": token.trim(), "username": USERNAME, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let csrf = csrf_of(r).await;
    let mut spec = json!({ "name": name, "image": TEST_IMAGE, "command": ["sleep", "3600"] });
    let r = http
        .post(api("/apps"))
        .header("X-CSRF-Token", &csrf)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let old_id = r.json::<Value>().await.unwrap()["container"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The update stops the old container, then berth freezes at the fault point.
    spec["env"] = json!({ "VERSION": "2" });
    let put = {
        let (http, url, csrf, spec) = (
            http.clone(),
            api(&format!("/apps/{name}")),
            csrf.clone(),
            spec.clone(),
        );
        tokio::spawn(async move {
            http.put(url)
                .header("X-CSRF-Token", csrf)
                .json(&spec)
                .send()
                .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = docker()
            .inspect_container(
                &old_id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .unwrap();
        if !c.state.unwrap().running.unwrap() && scratch.containers().await.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "berth reached the fault point");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    assert!(put.await.unwrap().is_err(), "the request died with berth");

    // Restarted without the fault: the interrupted apply is resumed.
    let (mut child, url) = serve(dir.path(), None);
    let api = |p: &str| format!("{url}/api/v1{p}");
    let http = client();
    let r = http
        .post(api("/auth/login"))
        .json(&json!({ "username": USERNAME, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(30);
    let app = loop {
        let v: Value = http
            .get(api(&format!("/apps/{name}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["status"] == "running" && scratch.containers().await.len() == 1 {
            break v;
        }
        assert!(Instant::now() < deadline, "berth converged: {v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let id = app["container"]["id"].as_str().unwrap();
    let c = docker()
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    assert!(c
        .config
        .unwrap()
        .env
        .unwrap()
        .contains(&"VERSION=2".to_string()));
    assert_eq!(c.name.as_deref(), Some(format!("/{name}").as_str()));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}

/// SIGKILL while a backup is being written: at restart the run is failed,
/// the partial file is gone, and the start berth missed while down runs
/// once (trigger `startup`) and succeeds.
#[tokio::test]
async fn sigkill_during_a_backup_fails_it_cleans_up_and_the_missed_start_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = serve(dir.path(), Some("backup.local.writing"));
    let api = |p: &str| format!("{url}/api/v1{p}");
    let token = std::fs::read_to_string(dir.path().join("setup-token")).unwrap();
    let http = client();
    let r = http
        .post(api("/setup"))
        .json(&json!({ "token": token.trim(), "username": USERNAME, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let csrf = csrf_of(r).await;
    let r = http
        .post(api("/backups/jobs"))
        .header("X-CSRF-Token", &csrf)
        .json(
            &json!({ "name": "self", "source": { "kind": "berth" }, "target": { "kind": "local" },
                       "schedule": "0 3 * * *" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = http
        .post(api("/backups/jobs/self/run"))
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let killed_run = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let job_dir = dir.path().join("backups").join("self");
    let partials = || -> Vec<String> {
        std::fs::read_dir(&job_dir)
            .map(|d| {
                d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !partials().iter().any(|n| n.ends_with(".partial")) {
        assert!(Instant::now() < deadline, "berth reached the fault point");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();

    // While berth was down, the 03:00 start passed.
    {
        let db = sqlx::SqlitePool::connect(&format!(
            "sqlite://{}",
            dir.path().join("berth.db").display()
        ))
        .await
        .unwrap();
        sqlx::query("UPDATE backup_jobs SET scheduled_through = scheduled_through - 2 * 86400")
            .execute(&db)
            .await
            .unwrap();
        db.close().await;
    }

    let (mut child, url) = serve(dir.path(), None);
    let api = |p: &str| format!("{url}/api/v1{p}");
    let http = client();
    let r = http
        .post(api("/auth/login"))
        .json(&json!({ "username": USERNAME, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let v: Value = http
            .get(api("/backups/runs?job=self"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let runs = v["runs"].as_array().unwrap().clone();
        if runs.len() == 2 && runs.iter().all(|r| r["status"] != "running") {
            break runs;
        }
        assert!(Instant::now() < deadline, "the missed start ran: {runs:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let killed = runs
        .iter()
        .find(|r| r["id"] == killed_run.as_str())
        .unwrap();
    assert_eq!(killed["status"], "failed");
    assert!(
        killed["error"].as_str().unwrap().contains("berth stopped"),
        "{killed}"
    );
    let startup = runs
        .iter()
        .find(|r| r["id"] != killed_run.as_str())
        .unwrap();
    assert_eq!(startup["trigger"], "startup");
    assert_eq!(startup["status"], "succeeded", "{startup}");
    // Only the new archive and its manifest remain.
    let mut left = partials();
    left.sort();
    let object = startup["object"]
        .as_str()
        .unwrap()
        .trim_start_matches("self/")
        .to_string();
    assert_eq!(left, [object.clone(), format!("{object}.manifest.json")]);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}
