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

/// The binary serving a data dir, with a client logged in to it.
struct Served {
    child: Child,
    url: String,
    http: reqwest::Client,
    csrf: String,
}

impl Served {
    /// Starts the binary on `dir` (frozen at the fault point `pause`, if
    /// given) and completes setup with it.
    async fn first(dir: &std::path::Path, pause: Option<&str>) -> Served {
        let mut s = Served::start(dir, pause);
        let token = std::fs::read_to_string(dir.join("setup-token")).unwrap();
        let r = s
            .http
            .post(s.api("/setup"))
            .json(&json!({ "token": token.trim(), "username": USERNAME, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        s.csrf = csrf_of(r).await;
        s
    }

    /// Starts the binary again on `dir`, without a fault, and logs in.
    async fn again(dir: &std::path::Path) -> Served {
        let mut s = Served::start(dir, None);
        let r = s
            .http
            .post(s.api("/auth/login"))
            .json(&json!({ "username": USERNAME, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        s.csrf = csrf_of(r).await;
        s
    }

    fn start(dir: &std::path::Path, pause: Option<&str>) -> Served {
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
        Served {
            child,
            url,
            http: client(),
            csrf: String::new(),
        }
    }

    fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }

    /// POST with the session's CSRF token and an optional JSON body.
    fn post(&self, path: &str, body: Option<&Value>) -> reqwest::RequestBuilder {
        let req = self
            .http
            .post(self.api(path))
            .header("X-CSRF-Token", &self.csrf);
        match body {
            Some(b) => req.json(b),
            None => req,
        }
    }

    /// POSTs, checks the status, and gives the JSON answer.
    async fn answer(&self, path: &str, body: Option<&Value>, expected: StatusCode) -> Value {
        let r = self.post(path, body).send().await.unwrap();
        assert_eq!(r.status(), expected, "POST {path}");
        r.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(self.api(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Sends `signal` (`KILL`, `TERM`) and waits for the process to end.
    fn signal(mut self, signal: &str) {
        Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap();
    }
}

/// A failed test leaves no berth running behind it.
impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test]
async fn sigkill_during_a_recreate_converges_after_restart() {
    let scratch = Scratch::new();
    let dir = tempfile::tempdir().unwrap();
    let name = scratch.name("crash");
    let berth = Served::first(dir.path(), Some("apply.recreate.after_stop")).await;
    let mut spec = json!({ "name": name, "image": TEST_IMAGE, "command": ["sleep", "3600"] });
    let created = berth
        .answer("/apps", Some(&spec), StatusCode::CREATED)
        .await;
    let old_id = created["container"]["id"].as_str().unwrap().to_string();

    // The update stops the old container, then berth freezes at the fault point.
    spec["env"] = json!({ "VERSION": "2" });
    let put = tokio::spawn(
        berth
            .http
            .put(berth.api(&format!("/apps/{name}")))
            .header("X-CSRF-Token", &berth.csrf)
            .json(&spec)
            .send(),
    );
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
    berth.signal("KILL");
    assert!(put.await.unwrap().is_err(), "the request died with berth");

    // Restarted without the fault: the interrupted apply is resumed.
    let berth = Served::again(dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let app = loop {
        let v = berth.get(&format!("/apps/{name}")).await;
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
    berth.signal("TERM");
}

/// SIGKILL while a backup is being written: at restart the run is failed,
/// the partial file is gone, and the start berth missed while down runs
/// once (trigger `startup`) and succeeds.
#[tokio::test]
async fn sigkill_during_a_backup_fails_it_cleans_up_and_the_missed_start_runs() {
    let dir = tempfile::tempdir().unwrap();
    let berth = Served::first(dir.path(), Some("backup.local.writing")).await;
    let job = json!({ "name": "self", "source": { "kind": "berth" }, "target": { "kind": "local" },
                      "schedule": "0 3 * * *" });
    berth
        .answer("/backups/jobs", Some(&job), StatusCode::CREATED)
        .await;
    let started = berth
        .answer("/backups/jobs/self/run", None, StatusCode::ACCEPTED)
        .await;
    let killed_run = started["id"].as_str().unwrap().to_string();
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
    berth.signal("KILL");

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

    let berth = Served::again(dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let v = berth.get("/backups/runs?job=self").await;
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
    berth.signal("TERM");
}

/// SIGKILL while a drill holds its scratch volume: at restart the drill is
/// failed and the scratch volume removed, not left to pile up.
#[tokio::test]
async fn sigkill_during_a_drill_removes_its_scratch_volume_at_restart() {
    let scratch = Scratch::new();
    let volume = scratch.name("data");
    scratch
        .run_with_volume(TEST_IMAGE, &volume, "/v", "echo kept > /v/a.txt")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let berth = Served::first(dir.path(), Some("backup.drill.restored")).await;
    // The job's name is the drill volume's label: unique to this test.
    let job_name = scratch.name("drill");
    let job = json!({ "name": job_name, "source": { "kind": "volume", "volume": volume },
                      "target": { "kind": "local" } });
    berth
        .answer("/backups/jobs", Some(&job), StatusCode::CREATED)
        .await;
    let started = berth
        .answer(
            &format!("/backups/jobs/{job_name}/run"),
            None,
            StatusCode::ACCEPTED,
        )
        .await;
    let run = started["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while berth.get(&format!("/backups/runs/{run}")).await["status"] != "succeeded" {
        assert!(Instant::now() < deadline, "the backup succeeded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = berth
        .answer(
            &format!("/backups/jobs/{job_name}/drill"),
            Some(&json!({})),
            StatusCode::ACCEPTED,
        )
        .await;
    let drill = started["id"].as_str().unwrap();

    let label = format!("berth.backup.restored-from={job_name}");
    let filters = std::collections::HashMap::from([("label".to_string(), vec![label])]);
    let drill_volumes = || async {
        docker()
            .list_volumes(Some(
                bollard::query_parameters::ListVolumesOptionsBuilder::new()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap()
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect::<Vec<_>>()
    };
    // Paused at the fault point, after the restore into the scratch volume.
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        let held = drill_volumes().await;
        if !held.is_empty() {
            break held;
        }
        assert!(
            Instant::now() < deadline,
            "the drill made its scratch volume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(held[0].starts_with("berth-drill-"), "{held:?}");
    berth.signal("KILL");
    assert_eq!(drill_volumes().await, held, "the kill left the volume");

    let berth = Served::again(dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let left = loop {
        let left = drill_volumes().await;
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Removed here too if berth did not, so a failure leaves nothing.
    for name in &left {
        let _ = docker()
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await;
    }
    assert!(left.is_empty(), "{left:?} survived the restart");
    let v = berth.get(&format!("/backups/drills/{drill}")).await;
    assert_eq!(v["status"], "failed", "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("berth stopped"),
        "{v}"
    );
    berth.signal("TERM");
}
