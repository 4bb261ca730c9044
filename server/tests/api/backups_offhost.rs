//! Backups to the off-host targets through the API, against real servers
//! on loopback: Debian's sshd for SFTP and moto for S3. A job backs up
//! berth's own store there, a drill and a restore read it back, and the
//! credentials never come back out.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::backups::{drill_now, ok, restore, restored_admin, run_now, setup};
use crate::helpers::{error_of, spawn_app, PASSWORD};
use crate::offhost_rig::{Moto, Sshd};
use crate::ports::free_port;

#[tokio::test]
async fn sftp_target_stores_verifies_restores_and_drills() {
    let mut sshd = Sshd::start(free_port());
    let app = spawn_app().await;
    let (csrf, _) = setup(&app).await;
    let private_key = sshd.read("client_key");
    let served = sshd.path("served/berth");
    let target = json!({
        "kind": "sftp", "host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
        "path": served.display().to_string(), "private_key": private_key,
    });

    // A key that sshd does not accept: refused when the run starts, with
    // nothing written and the key nowhere in the error.
    let mut refused = target.clone();
    refused["private_key"] = json!(sshd.read("other_key"));
    let job = ok(
        &app,
        &csrf,
        Method::POST,
        "/backups/jobs",
        Some(json!({
            "name": "offsite", "source": { "kind": "berth" }, "target": refused,
        })),
    )
    .await;
    // Saved without a host key: berth pinned the one the server presented.
    let presented = sshd.read("host_key.pub");
    let pinned = job["target"]["host_key"].as_str().unwrap();
    assert_eq!(
        pinned.split_whitespace().nth(1),
        presented.split_whitespace().nth(1)
    );
    assert!(job["target"]["private_key"].is_null(), "{job}");
    let run = run_now(&app, &csrf, "offsite").await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("authentication refused"), "{error}");
    assert!(!served.exists(), "nothing is written without a login");

    // The right key, the same server: the host key stays pinned.
    let mut input = json!({ "name": "offsite", "source": { "kind": "berth" }, "target": target });
    input["target"]["host_key"] = json!(pinned);
    ok(
        &app,
        &csrf,
        Method::PUT,
        "/backups/jobs/offsite",
        Some(input),
    )
    .await;
    let run = run_now(&app, &csrf, "offsite").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["verified"], true);
    // The archive at the target is what the manifest describes.
    let object = served.join(run["object"].as_str().unwrap());
    let bytes = std::fs::read(&object).unwrap();
    assert_eq!(bytes.len() as u64, run["size"].as_u64().unwrap());
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
        run["sha256"].as_str().unwrap()
    );
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(format!("{}.manifest.json", object.display())).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["sha256"], run["sha256"]);

    let drill = drill_now(&app, &csrf, "offsite").await;
    assert_eq!(drill["status"], "passed", "{drill}");
    let done = restore(
        &app,
        &csrf,
        run["id"].as_str().unwrap(),
        json!({ "to": "new", "confirm": "offsite", "password": PASSWORD }),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(restored_admin(&done).await, crate::helpers::USERNAME);

    // The server goes away: the run fails saying so, and the archive
    // already there is kept (retention runs only after a success).
    sshd.stop();
    let failed = run_now(&app, &csrf, "offsite").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("127.0.0.1:{}", sshd.port)),
        "{error}"
    );
    assert!(object.exists());

    // The private key never comes back, nor reaches the audit log.
    let jobs: Value = app.get("/backups/jobs").await.json().await.unwrap();
    let key_body = private_key.lines().nth(1).unwrap();
    assert!(!jobs.to_string().contains(key_body));
    assert!(!app.audit_dump().await.contains(key_body));
}

#[tokio::test]
async fn s3_target_stores_verifies_restores_and_drills() {
    let moto = Moto::start("berth-offsite");
    let app = spawn_app().await;
    let (csrf, _) = setup(&app).await;
    let target = json!({
        "kind": "s3", "endpoint": moto.endpoint, "bucket": "berth-offsite",
        "region": "us-east-1", "access_key": moto.access_key, "secret_key": moto.secret_key,
        "prefix": "host1/",
    });
    let job = ok(
        &app,
        &csrf,
        Method::POST,
        "/backups/jobs",
        Some(json!({
            "name": "bucket", "source": { "kind": "berth" }, "target": target,
            "retention": { "keep_last": 1 },
        })),
    )
    .await;
    assert!(job["target"]["secret_key"].is_null(), "{job}");

    let first = run_now(&app, &csrf, "bucket").await;
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["verified"], true);
    // The ETag berth read back after the upload is in the manifest.
    assert!(
        first["manifest"]["target"]["etag"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{first}"
    );

    let done = restore(
        &app,
        &csrf,
        first["id"].as_str().unwrap(),
        json!({ "to": "new", "confirm": "bucket", "password": PASSWORD }),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(restored_admin(&done).await, crate::helpers::USERNAME);

    // A second run with keep_last 1 prunes the first archive from the
    // bucket (no drill has passed on it, which would keep it).
    let second = run_now(&app, &csrf, "bucket").await;
    assert_eq!(second["status"], "succeeded", "{second}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v: Value = app
            .get(&format!("/backups/runs/{}", first["id"].as_str().unwrap()))
            .await
            .json()
            .await
            .unwrap();
        if !v["pruned_at"].is_null() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first archive was not pruned: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = app
        .post(
            &format!("/backups/runs/{}/restore", first["id"].as_str().unwrap()),
            &csrf,
            json!({ "to": "new", "confirm": "bucket", "password": PASSWORD }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // The drill reads the newest archive back out of the bucket.
    let drill = drill_now(&app, &csrf, "bucket").await;
    assert_eq!(drill["status"], "passed", "{drill}");
    assert_eq!(drill["run_id"], second["id"], "{drill}");

    // A wrong secret: the run fails in words, without the secret, and the
    // good archive stays.
    let mut input = json!({ "name": "bucket", "source": { "kind": "berth" }, "target": target,
                            "retention": { "keep_last": 1 } });
    input["target"]["secret_key"] = json!("Wr0ngSecretThatMustNotBePrinted");
    ok(
        &app,
        &csrf,
        Method::PUT,
        "/backups/jobs/bucket",
        Some(input),
    )
    .await;
    let failed = run_now(&app, &csrf, "bucket").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("SignatureDoesNotMatch"), "{error}");
    assert!(!error.contains("Wr0ngSecret") && !error.contains(&moto.secret_key));
    let v: Value = app
        .get(&format!("/backups/runs/{}", second["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert!(v["pruned_at"].is_null(), "{v}");

    // Pointed at another endpoint, the stored secret does not follow.
    let mut input = json!({ "name": "bucket", "source": { "kind": "berth" }, "target": target });
    input["target"]["endpoint"] = json!("http://127.0.0.1:1");
    input["target"]["secret_key"] = Value::Null;
    let r = app
        .send(Method::PUT, "/backups/jobs/bucket", &csrf, Some(input))
        .await;
    assert_eq!(error_of(r).await.1.as_deref(), Some("target.secret_key"));

    let audit = app.audit_dump().await;
    assert!(!audit.contains(&moto.secret_key) && !audit.contains("Wr0ngSecret"));
}
