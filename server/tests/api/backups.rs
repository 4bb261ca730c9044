//! Backups end to end against real services: PostgreSQL from Debian on
//! loopback, the Docker engine, berth's own store, a tiny tmpfs for a full
//! disk. Every archive is checked by restoring it, never by its existence.

use std::io::Read;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::docker::{docker, test_image, Scratch};
use crate::helpers::{
    csrf_of, error_of, spawn_app, spawn_with, Inbox, TestApp, PASSWORD, USERNAME,
};
use crate::pg_rig::Postgres;

/// Completes setup; returns the CSRF token and the backup identity the
/// wizard shows once.
pub(crate) async fn setup(app: &TestApp) -> (String, String) {
    let answer = app.setup_answer().await;
    let identity = answer["backup_identity"].as_str().unwrap().to_string();
    assert!(identity.starts_with("AGE-SECRET-KEY-1"), "{identity}");
    (answer["csrf_token"].as_str().unwrap().to_string(), identity)
}

pub(crate) async fn ok(
    app: &TestApp,
    csrf: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let r = app.send(method.clone(), path, csrf, body).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

/// Polls a run, restore or drill until it is no longer `running`.
pub(crate) async fn settle(app: &TestApp, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let v: Value = app.get(path).await.json().await.unwrap();
        if v["status"] != "running" {
            return v;
        }
        assert!(Instant::now() < deadline, "{path} still running: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn run_now(app: &TestApp, csrf: &str, job: &str) -> Value {
    let r = app
        .post(&format!("/backups/jobs/{job}/run"), csrf, json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    settle(app, &format!("/backups/runs/{id}")).await
}

pub(crate) async fn drill_now(app: &TestApp, csrf: &str, job: &str) -> Value {
    let r = app
        .post(&format!("/backups/jobs/{job}/drill"), csrf, json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    settle(app, &format!("/backups/drills/{id}")).await
}

pub(crate) async fn restore(app: &TestApp, csrf: &str, run: &str, body: Value) -> Value {
    let r = app
        .post(&format!("/backups/runs/{run}/restore"), csrf, body)
        .await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    settle(
        app,
        &format!("/backups/restores/{}", v["id"].as_str().unwrap()),
    )
    .await
}

/// The archive's bytes on disk.
/// Where a run's archive lies in the default local target.
fn archive_path(app: &TestApp, run: &Value) -> std::path::PathBuf {
    app.data_dir
        .path()
        .join("backups")
        .join(run["object"].as_str().unwrap())
}

fn archive_file(app: &TestApp, run: &Value) -> Vec<u8> {
    std::fs::read(archive_path(app, run)).unwrap()
}

/// A restore of `run` that must fail: its error.
async fn failed_restore(app: &TestApp, csrf: &str, run: &Value, body: Value) -> String {
    let done = restore(app, csrf, run["id"].as_str().unwrap(), body).await;
    assert_eq!(done["status"], "failed", "{done}");
    done["error"].as_str().unwrap().to_string()
}

/// Decrypts and decompresses an archive outside berth, with an identity.
fn open_archive(archive: &[u8], identity: &str) -> Result<Vec<u8>, String> {
    let identity: age::x25519::Identity = identity.parse().map_err(|e: &str| e.to_string())?;
    let decryptor = age::Decryptor::new(archive).map_err(|e| e.to_string())?;
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| e.to_string())?;
    let mut compressed = Vec::new();
    reader
        .read_to_end(&mut compressed)
        .map_err(|e| e.to_string())?;
    zstd::decode_all(compressed.as_slice()).map_err(|e| e.to_string())
}

#[tokio::test]
async fn postgres_backup_is_encrypted_restores_exactly_and_drills() {
    let pg = Postgres::start();
    pg.shop("shop", 20_000);
    let before = pg.fingerprint("shop");
    let app = spawn_app().await;
    let (csrf, identity) = setup(&app).await;
    let (inbox, hook) = Inbox::start().await;
    ok(&app, &csrf, Method::POST, "/notifications/channels", Some(json!({
        "name": "ops", "config": { "kind": "webhook", "url": format!("http://{hook}/hook") }, "allow_internal": true,
    }))).await;

    let job = ok(&app, &csrf, Method::POST, "/backups/jobs", Some(json!({
        "name": "shop-db",
        "source": { "kind": "postgres", "dsn": pg.dsn("shop") },
        "target": { "kind": "local" },
        "schedule": "0 3 * * *", "timezone": "Europe/Berlin",
        "retention": { "keep_last": 3, "daily": 7, "weekly": 4, "monthly": 6 },
        "drill": { "schedule": "0 5 * * 0", "query": "SELECT count(*) FROM orders", "expected": "20000" },
    }))).await;
    // The password never comes back, and the audit log does not hold it.
    assert_eq!(
        job["source"]["dsn"],
        format!("postgres://berth_test:********@127.0.0.1:{}/shop", pg.port)
    );
    assert_eq!(job["next_runs"].as_array().unwrap().len(), 5);
    assert!(job["next_runs"][0].as_str().unwrap().ends_with(":00:00Z"));

    let run = run_now(&app, &csrf, "shop-db").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["verified"], true);
    assert_eq!(run["trigger"], "manual");
    let archive = archive_file(&app, &run);
    assert_eq!(run["size"].as_u64().unwrap(), archive.len() as u64);
    assert_eq!(
        run["sha256"].as_str().unwrap(),
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&archive))
    );
    assert!(archive.starts_with(b"age-encryption.org/v1"));
    // Encrypted: the rows' text is not in the file; without the key it
    // does not open; with the identity from setup, `age` + `zstd` give a
    // PostgreSQL custom-format dump.
    assert!(!archive.windows(14).any(|w| w == b"sentinel-9f3a "));
    let stranger = age::x25519::Identity::generate();
    use age::secrecy::ExposeSecret;
    assert!(open_archive(&archive, stranger.to_string().expose_secret()).is_err());
    let dump = open_archive(&archive, &identity).unwrap();
    assert!(dump.starts_with(b"PGDMP"));
    assert_eq!(dump.len() as u64, run["source_bytes"].as_u64().unwrap());
    let manifest_path = app
        .data_dir
        .path()
        .join("backups")
        .join(format!("{}.manifest.json", run["object"].as_str().unwrap()));
    let manifest: Value = serde_json::from_slice(&std::fs::read(manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["sha256"], run["sha256"]);
    assert!(manifest["source"]["versions"]["pg_dump"]
        .as_str()
        .unwrap()
        .contains("pg_dump (PostgreSQL)"));
    assert!(manifest["source"]["versions"]["server"]
        .as_str()
        .unwrap()
        .starts_with(char::is_numeric));
    assert!(manifest["timings"]["total_ms"].as_i64().unwrap() > 0);

    // Restore to a new database: re-auth first; a wrong password changes nothing.
    let r = app
        .post(
            &format!("/backups/runs/{}/restore", run["id"].as_str().unwrap()),
            &csrf,
            json!({ "to": "new", "name": "shop_copy", "confirm": "shop-db", "password": "wrong" }),
        )
        .await;
    assert_eq!(error_of(r).await.1.as_deref(), Some("password"));
    let r = app
        .post(
            &format!("/backups/runs/{}/restore", run["id"].as_str().unwrap()),
            &csrf,
            json!({ "to": "new", "name": "shop_copy", "confirm": "shop", "password": PASSWORD }),
        )
        .await;
    assert_eq!(error_of(r).await.1.as_deref(), Some("confirm"));
    assert!(!pg.databases().contains(&"shop_copy".to_string()));
    let done = restore(
        &app,
        &csrf,
        run["id"].as_str().unwrap(),
        json!({ "to": "new", "name": "shop_copy", "confirm": "shop-db", "password": PASSWORD }),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["bytes"], run["size"]);
    assert_eq!(pg.fingerprint("shop_copy"), before);
    // An existing name is refused, naming the field.
    let r = app
        .post(
            &format!("/backups/runs/{}/restore", run["id"].as_str().unwrap()),
            &csrf,
            json!({ "to": "new", "name": "shop_copy", "confirm": "shop-db", "password": PASSWORD }),
        )
        .await;
    assert_eq!(error_of(r).await.1.as_deref(), Some("name"));

    // Damage the original, restore over it: exactly the backed-up rows.
    pg.sql(
        "shop",
        "DELETE FROM orders WHERE id % 3 = 0; UPDATE customers SET name = 'changed'",
    );
    assert_ne!(pg.fingerprint("shop"), before);
    let done = restore(
        &app,
        &csrf,
        run["id"].as_str().unwrap(),
        json!({ "to": "original", "confirm": "shop-db", "password": PASSWORD }),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(pg.fingerprint("shop"), before);

    // An archive altered at the target is refused before anything is
    // applied over the original, even where pg_restore would have stopped
    // reading before the altered end.
    pg.sql("shop", "DELETE FROM orders WHERE id % 5 = 0");
    let damaged = pg.fingerprint("shop");
    let path = archive_path(&app, &run);
    let good = std::fs::read(&path).unwrap();
    let mut altered = good.clone();
    altered.extend_from_slice(&[0u8; 300 * 1024]);
    std::fs::write(&path, &altered).unwrap();
    let error = failed_restore(
        &app,
        &csrf,
        &run,
        json!({ "to": "original", "confirm": "shop-db", "password": PASSWORD }),
    )
    .await;
    assert!(error.contains("nothing was restored"), "{error}");
    assert_eq!(pg.fingerprint("shop"), damaged);
    // Into a new database it fails too (the rest of the input is read
    // and checked after pg_restore is done), and the new one is dropped.
    failed_restore(
        &app,
        &csrf,
        &run,
        json!({ "to": "new", "name": "shop_altered", "confirm": "shop-db", "password": PASSWORD }),
    )
    .await;
    assert!(!pg.databases().contains(&"shop_altered".to_string()));
    std::fs::write(&path, &good).unwrap();

    // A drill restores into a scratch database, checks and drops it.
    let drill = drill_now(&app, &csrf, "shop-db").await;
    assert_eq!(drill["status"], "passed", "{drill}");
    let names: Vec<&str> = drill["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["archive", "restore", "rows", "query"]);
    assert!(
        drill["checks"][2]["detail"]
            .as_str()
            .unwrap()
            .contains("public.orders=20000"),
        "{drill}"
    );
    assert!(pg
        .databases()
        .iter()
        .all(|d| !d.starts_with("berth_drill_")));
    let job: Value = app.get("/backups/jobs/shop-db").await.json().await.unwrap();
    assert_eq!(job["last_verified_restore"]["id"], drill["id"]);

    // A drill whose expectation is wrong fails, and says what it got.
    let mut input = job.clone();
    for k in [
        "id",
        "next_runs",
        "next_drill",
        "running",
        "last_run",
        "last_verified_restore",
        "last_drill",
        "created_at",
        "updated_at",
    ] {
        input.as_object_mut().unwrap().remove(k);
    }
    input["drill"]["expected"] = json!("19999");
    ok(
        &app,
        &csrf,
        Method::PUT,
        "/backups/jobs/shop-db",
        Some(input),
    )
    .await;
    let drill = drill_now(&app, &csrf, "shop-db").await;
    assert_eq!(drill["status"], "failed");
    assert!(
        drill["checks"][3]["detail"]
            .as_str()
            .unwrap()
            .contains("returned `20000`"),
        "{drill}"
    );
    let job: Value = app.get("/backups/jobs/shop-db").await.json().await.unwrap();
    assert_eq!(job["last_drill"]["status"], "failed");
    // A failed drill notifies; the passed one before it did not.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !inbox
        .events()
        .iter()
        .any(|e| e["event"] == "backup.drill_failed")
    {
        assert!(
            Instant::now() < deadline,
            "no notification: {:?}",
            inbox.events()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drill_notices = inbox
        .events()
        .iter()
        .filter(|e| e["event"] == "backup.drill_failed")
        .count();
    assert_eq!(drill_notices, 1);
    assert_ne!(job["last_verified_restore"]["id"], drill["id"]);

    // The job kept its password through the update (sent back masked).
    let run = run_now(&app, &csrf, "shop-db").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let audit = app.audit_dump().await;
    assert!(
        !audit.contains(crate::pg_rig::PASSWORD) && !audit.contains("pg%20test"),
        "{audit}"
    );
    assert!(!audit.contains(&identity));
}

#[tokio::test]
async fn a_failing_source_is_a_failed_run_with_nothing_stored_and_a_notification() {
    let pg = Postgres::start();
    pg.shop("shop", 10);
    let app = spawn_app().await;
    let (csrf, _) = setup(&app).await;
    let (inbox, hook) = Inbox::start().await;
    ok(&app, &csrf, Method::POST, "/notifications/channels", Some(json!({
        "name": "ops", "config": { "kind": "webhook", "url": format!("http://{hook}/hook") }, "allow_internal": true,
    }))).await;
    let wrong = pg.dsn("shop").replace("pg%20test", "wrong");
    ok(&app, &csrf, Method::POST, "/backups/jobs", Some(json!({
        "name": "bad-pass", "source": { "kind": "postgres", "dsn": wrong }, "target": { "kind": "local" },
    }))).await;
    let run = run_now(&app, &csrf, "bad-pass").await;
    assert_eq!(run["status"], "failed");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.contains("pg_dump") && error.contains("password authentication failed"),
        "{error}"
    );
    assert!(!error.contains("wrong pass"));
    let dir = app.data_dir.path().join("backups").join("bad-pass");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !inbox.events().iter().any(|e| e["event"] == "backup.failed") {
        assert!(
            Instant::now() < deadline,
            "no notification: {:?}",
            inbox.events()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A database that does not exist fails too; bad input is refused
    // before anything is stored.
    let r = app.post("/backups/jobs", &csrf, json!({
        "name": "x", "source": { "kind": "postgres", "dsn": "postgres://u@h/db?options=-c" }, "target": { "kind": "local" },
    })).await;
    assert_eq!(error_of(r).await.1.as_deref(), Some("source.dsn"));
    let r = app.post("/backups/jobs", &csrf, json!({
        "name": "x", "source": { "kind": "berth" }, "target": { "kind": "local" }, "schedule": "61 * * * *",
    })).await;
    assert_eq!(error_of(r).await.1.as_deref(), Some("schedule"));
    // psql runs a backslash command itself, on this host: `\!` is a shell.
    let r = app.post("/backups/jobs", &csrf, json!({
        "name": "x", "source": { "kind": "postgres", "dsn": pg.dsn("shop") }, "target": { "kind": "local" },
        "drill": { "schedule": "0 5 * * 0", "query": " \\! touch /tmp/berth-pwned", "expected": "1" },
    })).await;
    assert_eq!(error_of(r).await.1.as_deref(), Some("drill.query"));
    // A stored password goes only where it was given for: a `host`
    // parameter that points elsewhere needs the password again.
    let masked = format!(
        "postgres://berth_test:********@127.0.0.1:{}/shop?host=elsewhere.example",
        pg.port
    );
    let r = app.send(Method::PUT, "/backups/jobs/bad-pass", &csrf, Some(json!({
        "name": "bad-pass", "source": { "kind": "postgres", "dsn": masked }, "target": { "kind": "local" },
    }))).await;
    assert_eq!(error_of(r).await.1.as_deref(), Some("source.dsn"));
    let jobs: Value = app.get("/backups/jobs").await.json().await.unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1);
}

/// A volume as the source: streamed as tar through the Docker API,
/// restored into a new volume byte for byte, drilled.
#[tokio::test]
async fn volume_backup_restores_into_a_new_volume_and_drills() {
    let scratch = Scratch::new();
    let image = test_image();
    let volume = scratch.name("vol");
    let copy = scratch.name("copy");
    let d = docker();
    let fill = "mkdir -p /v/sub && echo hello > /v/a.txt && head -c 3000000 /dev/urandom > /v/sub/big.bin \
                && chmod 600 /v/a.txt && chown 1234:1234 /v/sub/big.bin && sha256sum /v/a.txt /v/sub/big.bin | sed 's# /v/# #'";
    let before = scratch.run_with_volume(image, &volume, "/v", fill).await;
    let app = spawn_app().await;
    let (csrf, _) = setup(&app).await;
    ok(&app, &csrf, Method::POST, "/backups/jobs", Some(json!({
        "name": "files", "source": { "kind": "volume", "volume": volume }, "target": { "kind": "local" },
    }))).await;
    let run = run_now(&app, &csrf, "files").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(run["source_bytes"].as_u64().unwrap() > 3_000_000);
    let done = restore(
        &app,
        &csrf,
        run["id"].as_str().unwrap(),
        json!({ "to": "new", "name": copy, "confirm": "files", "password": PASSWORD }),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let after = scratch
        .run_with_volume(image, &copy, "/v", "sha256sum /v/a.txt /v/sub/big.bin | sed 's# /v/# #'; stat -c '%a %u' /v/a.txt /v/sub/big.bin")
        .await;
    assert!(after.starts_with(&before), "{before}\n{after}");
    assert!(
        after.contains("600 0") && after.contains(" 1234"),
        "{after}"
    );
    let drill = drill_now(&app, &csrf, "files").await;
    assert_eq!(drill["status"], "passed", "{drill}");
    let files = drill["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "files")
        .unwrap();
    assert!(
        files["detail"].as_str().unwrap().starts_with("2 files"),
        "{files}"
    );
    // The drill's scratch volume is gone.
    let scratch_volume = format!("berth-drill-{}", &drill["id"].as_str().unwrap()[..8]);
    assert!(
        d.inspect_volume(&scratch_volume).await.is_err(),
        "{scratch_volume} remains"
    );

    // Over the original: the changed file comes back.
    let show = "cat /v/a.txt; sha256sum /v/sub/big.bin | cut -c1-16";
    let good = scratch.run_with_volume(image, &volume, "/v", show).await;
    scratch
        .run_with_volume(image, &volume, "/v", "echo changed > /v/a.txt")
        .await;
    let done = restore(
        &app,
        &csrf,
        run["id"].as_str().unwrap(),
        json!({ "to": "original", "confirm": "files", "password": PASSWORD }),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        scratch.run_with_volume(image, &volume, "/v", show).await,
        good
    );

    // An archive damaged at the target: the restore fails before the
    // volume is touched, and no staging volume stays.
    scratch
        .run_with_volume(image, &volume, "/v", "echo changed again > /v/a.txt")
        .await;
    let changed = scratch.run_with_volume(image, &volume, "/v", show).await;
    let path = archive_path(&app, &run);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"rot");
    std::fs::write(&path, &bytes).unwrap();
    let error = failed_restore(
        &app,
        &csrf,
        &run,
        json!({ "to": "original", "confirm": "files", "password": PASSWORD }),
    )
    .await;
    assert!(error.contains("nothing was restored"), "{error}");
    assert_eq!(
        scratch.run_with_volume(image, &volume, "/v", show).await,
        changed
    );
    let staging = format!("berth-restore-{}", &done["id"].as_str().unwrap()[..8]);
    assert!(
        d.inspect_volume(&staging).await.is_err(),
        "{staging} remains"
    );
}

/// What a restore of berth's store into a new directory gives: the
/// directory, whose `berth.db` must name the admin.
pub(crate) async fn restored_admin(done: &Value) -> String {
    let dir = done["destination"]
        .as_str()
        .unwrap()
        .trim_start_matches("directory ")
        .to_string();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{dir}/berth.db?mode=ro"))
        .await
        .unwrap();
    sqlx::query_scalar("SELECT username FROM admin")
        .fetch_one(&pool)
        .await
        .unwrap()
}

/// berth's own store and the settings file it was started with: a
/// consistent copy that opens and checks out.
#[tokio::test]
async fn berth_backs_itself_up_and_the_copy_opens() {
    let settings = "# kept by the operator\nsession_idle_minutes = 45\n";
    let app = spawn_with(|config| {
        let file = config.data_dir.join("berth.toml");
        std::fs::write(&file, settings).unwrap();
        config.file = Some(file);
    })
    .await;
    let (csrf, identity) = setup(&app).await;
    ok(
        &app,
        &csrf,
        Method::POST,
        "/backups/jobs",
        Some(json!({
            "name": "self", "source": { "kind": "berth" }, "target": { "kind": "local" },
        })),
    )
    .await;
    let run = run_now(&app, &csrf, "self").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let tar = open_archive(&archive_file(&app, &run), &identity).unwrap();
    let mut names = Vec::new();
    for entry in tar::Archive::new(tar.as_slice()).entries().unwrap() {
        names.push(entry.unwrap().path().unwrap().display().to_string());
    }
    assert_eq!(names, ["berth-backup.json", "berth.toml", "berth.db"]);
    // The master key is not in the archive.
    let master = std::fs::read(app.data_dir.path().join("master.key")).unwrap();
    assert!(master.len() >= 32);
    assert!(!tar.windows(master.len()).any(|w| w == master.as_slice()));
    let drill = drill_now(&app, &csrf, "self").await;
    assert_eq!(drill["status"], "passed", "{drill}");
    assert!(
        drill["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "settings" && c["passed"] == true),
        "{drill}"
    );
    let done = restore(
        &app,
        &csrf,
        run["id"].as_str().unwrap(),
        json!({ "to": "new", "confirm": "self", "password": PASSWORD }),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(restored_admin(&done).await, USERNAME);
    let dir = done["destination"]
        .as_str()
        .unwrap()
        .trim_start_matches("directory ");
    assert_eq!(
        std::fs::read_to_string(format!("{dir}/berth.toml")).unwrap(),
        settings
    );
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{dir}/berth.db?mode=ro"))
        .await
        .unwrap();
    let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM backup_jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(jobs, 1);
    // Restoring berth over itself is refused with a reason.
    let r = app
        .post(
            &format!("/backups/runs/{}/restore", run["id"].as_str().unwrap()),
            &csrf,
            json!({ "to": "original", "confirm": "self", "password": PASSWORD }),
        )
        .await;
    assert_eq!(error_of(r).await.1.as_deref(), Some("to"));
    // A settings file gone since start fails the backup, whose copy of
    // the store is removed too: no archive without the settings.
    std::fs::remove_file(app.data_dir.path().join("berth.toml")).unwrap();
    let run = run_now(&app, &csrf, "self").await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("reading the config file"),
        "{run}"
    );
    let scratch = std::fs::read_dir(app.data_dir.path().join("backup-tmp")).unwrap();
    assert_eq!(scratch.count(), 0, "a store copy was left behind");
}

/// An archive altered where it is stored does not restore: the bytes read
/// back hash otherwise than the manifest, so the restore fails and removes
/// what it had started to create.
#[tokio::test]
async fn an_archive_altered_at_the_target_is_refused_on_restore() {
    let app = spawn_app().await;
    let (csrf, _) = setup(&app).await;
    ok(
        &app,
        &csrf,
        Method::POST,
        "/backups/jobs",
        Some(json!({
            "name": "plain", "source": { "kind": "berth" }, "target": { "kind": "local" },
            "encrypt": false,
        })),
    )
    .await;
    let run = run_now(&app, &csrf, "plain").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    // Unencrypted, so nothing but the digests stands between rot and a restore.
    let path = archive_path(&app, &run);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.starts_with(b"age-encryption.org/v1"));
    // A zstd skippable frame after the data: every decoder passes over
    // it, so the content still decodes cleanly; only the manifest's
    // SHA-256 tells the archive is not what was stored.
    bytes.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]);
    std::fs::write(&path, &bytes).unwrap();
    let error = failed_restore(
        &app,
        &csrf,
        &run,
        json!({ "to": "new", "confirm": "plain", "password": PASSWORD }),
    )
    .await;
    assert!(error.contains("SHA-256"), "{error}");
    let restores = app.data_dir.path().join("restores");
    let left: Vec<_> = std::fs::read_dir(&restores)
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// A dump waiting on a lock keeps its run going: a second start is refused
/// and a scheduled start skipped. The password is in pg_dump's environment,
/// not its argv. Killing pg_dump fails the run, leaves nothing at the
/// target, notifies; and the job runs again once the lock is gone.
#[tokio::test]
async fn a_running_dump_holds_its_job_and_a_killed_dump_fails_the_run() {
    let pg = Postgres::start();
    pg.shop("shop", 100);
    let app = spawn_app().await;
    let (csrf, _) = setup(&app).await;
    let (inbox, hook) = Inbox::start().await;
    ok(&app, &csrf, Method::POST, "/notifications/channels", Some(json!({
        "name": "ops", "config": { "kind": "webhook", "url": format!("http://{hook}/hook") }, "allow_internal": true,
    }))).await;
    let job = ok(
        &app,
        &csrf,
        Method::POST,
        "/backups/jobs",
        Some(json!({
            "name": "locked", "source": { "kind": "postgres", "dsn": pg.dsn("shop") },
            "target": { "kind": "local" }, "schedule": "0 * * * *",
        })),
    )
    .await;

    let lock = pg.lock("shop", "orders");
    let r = app.post("/backups/jobs/locked/run", &csrf, json!({})).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let run_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // pg_dump is connected and waiting for the table.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.sql(
        "shop",
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' AND wait_event_type = 'Lock'",
    ) != "1"
    {
        assert!(Instant::now() < deadline, "pg_dump did not start waiting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dump = pg_dump_of(pg.port).expect("berth's pg_dump process");
    let argv = std::fs::read(format!("/proc/{dump}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{dump}/environ")).unwrap();
    let has = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(
        !has(&argv, crate::pg_rig::PASSWORD.as_bytes()),
        "password in argv"
    );
    assert!(!has(&argv, b"pg%20test"), "password in argv");
    assert!(has(
        &environ,
        format!("PGPASSWORD={}", crate::pg_rig::PASSWORD).as_bytes()
    ));

    // One run per job: a second start is refused while this one goes.
    let r = app.post("/backups/jobs/locked/run", &csrf, json!({})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // A scheduled start that comes now is skipped, not queued.
    let next = job["next_runs"][0]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_second();
    let clock = app.state.backups.clock.clone();
    clock.advance(next - clock.now() + 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let through: i64 =
            sqlx::query_scalar("SELECT scheduled_through FROM backup_jobs WHERE name = 'locked'")
                .fetch_one(&app.state.backups.db)
                .await
                .unwrap();
        if through >= next {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduler did not reach the start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let runs: Value = app
        .get("/backups/runs?job=locked")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");

    // The source dies mid-run.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &dump.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let run = settle(&app, &format!("/backups/runs/{run_id}")).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("pg_dump was killed"), "{error}");
    assert!(run["object"].is_null() || !archive_path(&app, &run).exists());
    let dir = app.data_dir.path().join("backups").join("locked");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !inbox
        .events()
        .iter()
        .any(|e| e["event"] == "backup.failed" && e["details"]["run"] == run_id.as_str())
    {
        assert!(
            Instant::now() < deadline,
            "no notification: {:?}",
            inbox.events()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Nothing is wedged: without the lock, the job runs to success.
    drop(lock);
    let run = run_now(&app, &csrf, "locked").await;
    assert_eq!(run["status"], "succeeded", "{run}");
}

/// The pid of a `pg_dump` connecting to `port` (its environment says so).
fn pg_dump_of(port: u16) -> Option<u32> {
    let wanted = format!("PGPORT={port}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if comm.trim() != "pg_dump" {
            return None;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        environ
            .split(|b| *b == 0)
            .any(|v| v == wanted.as_bytes())
            .then_some(pid)
    })
}

/// A full disk: the run fails, nothing half-written stays, and retention
/// (keep 1) does not delete the last good archive because of the failure.
#[tokio::test]
async fn a_full_disk_fails_the_run_and_keeps_the_last_good_archive() {
    let scratch = Scratch::new();
    let image = test_image();
    let volume = scratch.name("disk");
    scratch
        .run_with_volume(image, &volume, "/v", "echo small > /v/a.txt")
        .await;
    let tmpfs = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(tmpfs.path())
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(tmpfs.path().to_path_buf());

    let app = spawn_app().await;
    let (csrf, _) = setup(&app).await;
    ok(
        &app,
        &csrf,
        Method::POST,
        "/backups/jobs",
        Some(json!({
            "name": "tiny", "source": { "kind": "volume", "volume": volume },
            "target": { "kind": "local", "path": tmpfs.path() },
            "retention": { "keep_last": 1 },
        })),
    )
    .await;
    let good = run_now(&app, &csrf, "tiny").await;
    assert_eq!(good["status"], "succeeded", "{good}");
    // 2 MB of random bytes do not compress into 512 KiB.
    scratch
        .run_with_volume(
            image,
            &volume,
            "/v",
            "head -c 2000000 /dev/urandom > /v/big.bin",
        )
        .await;
    let bad = run_now(&app, &csrf, "tiny").await;
    assert_eq!(bad["status"], "failed", "{bad}");
    assert!(
        bad["error"].as_str().unwrap().contains("No space left"),
        "{bad}"
    );
    let mut left: Vec<String> = walk(tmpfs.path());
    left.sort();
    let good_object = good["object"].as_str().unwrap();
    assert_eq!(
        left,
        [
            good_object.to_string(),
            format!("{good_object}.manifest.json")
        ]
    );
    let runs: Value = app
        .get("/backups/runs?job=tiny")
        .await
        .json()
        .await
        .unwrap();
    assert!(runs["runs"][1]["pruned_at"].is_null(), "{runs}");
    // And the surviving archive still restores.
    let drill = drill_now(&app, &csrf, "tiny").await;
    assert_eq!(drill["status"], "passed", "{drill}");
}

fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out
}

/// Schedules on berth's clock: a start runs once, one run per job at a
/// time, and retention prunes exactly what its preview said.
#[tokio::test]
async fn schedules_start_runs_and_retention_prunes_what_the_preview_said() {
    let app = spawn_app().await;
    let (csrf, _) = setup(&app).await;
    let preview: Value = app
        .get("/backups/schedule-preview?schedule=30%202%20*%20*%20*&timezone=Europe/Berlin")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(preview["next"].as_array().unwrap().len(), 5);
    assert!(
        preview["local"][0].as_str().unwrap().contains("02:30"),
        "{preview}"
    );
    let r = app
        .get("/backups/schedule-preview?schedule=0%203%20*%20*%20*&timezone=Nowhere/City")
        .await;
    assert_eq!(error_of(r).await.1.as_deref(), Some("timezone"));

    let job = ok(
        &app,
        &csrf,
        Method::POST,
        "/backups/jobs",
        Some(json!({
            "name": "hourly", "source": { "kind": "berth" }, "target": { "kind": "local" },
            "schedule": "0 * * * *", "retention": { "keep_last": 2 },
        })),
    )
    .await;
    let next = job["next_runs"][0]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_second();
    let clock = app.state.backups.clock.clone();
    let mut seen = Vec::new();
    for hour in 0..3 {
        let now = clock.now();
        clock.advance(next + hour * 3600 - now + 1);
        // The scheduler starts it within a tick.
        let deadline = Instant::now() + Duration::from_secs(20);
        let run = loop {
            let runs: Value = app
                .get("/backups/runs?job=hourly")
                .await
                .json()
                .await
                .unwrap();
            let runs = runs["runs"].as_array().unwrap().clone();
            if runs.len() == hour as usize + 1 && runs[0]["status"] != "running" {
                break runs[0].clone();
            }
            assert!(Instant::now() < deadline, "no scheduled run: {runs:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(run["trigger"], "schedule");
        assert_eq!(run["status"], "succeeded", "{run}");
        seen.push(run);
        if hour == 1 {
            // Two archives, keep 2: nothing to delete yet.
            let p: Value = app
                .get("/backups/jobs/hourly/prune-preview")
                .await
                .json()
                .await
                .unwrap();
            assert!(p["delete"].as_array().unwrap().is_empty(), "{p}");
        }
    }
    // The third run made retention delete the first archive, and only it.
    let runs: Value = app
        .get("/backups/runs?job=hourly")
        .await
        .json()
        .await
        .unwrap();
    let pruned: Vec<&Value> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["pruned_at"].is_null())
        .collect();
    assert_eq!(pruned.len(), 1);
    assert_eq!(pruned[0]["id"], seen[0]["id"]);
    assert!(!archive_path(&app, &seen[0]).exists());
    assert!(archive_path(&app, &seen[2]).exists());
    // A pruned archive cannot be restored; it says why.
    let r = app
        .post(
            &format!("/backups/runs/{}/restore", seen[0]["id"].as_str().unwrap()),
            &csrf,
            json!({ "to": "new", "confirm": "hourly", "password": PASSWORD }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
}

/// Defining where data goes is the admin's: a write token may run a job,
/// not point one elsewhere.
#[tokio::test]
async fn jobs_are_defined_with_the_admin_scope_and_run_with_write() {
    let app = spawn_app().await;
    let (csrf, _) = setup(&app).await;
    let (_, write) = app.create_token(&csrf, &["write"]).await;
    let job =
        json!({ "name": "self", "source": { "kind": "berth" }, "target": { "kind": "local" } });
    let r = crate::helpers::client()
        .post(app.api("/backups/jobs"))
        .bearer_auth(&write)
        .json(&job)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_of(r).await.0, "insufficient_scope");
    let jobs: Value = app.get("/backups/jobs").await.json().await.unwrap();
    assert!(jobs["jobs"].as_array().unwrap().is_empty());
    ok(
        &app,
        &csrf,
        Method::POST,
        "/backups/jobs",
        Some(job.clone()),
    )
    .await;
    let mut elsewhere = job;
    elsewhere["target"]["path"] = json!("/srv/www");
    let r = crate::helpers::client()
        .put(app.api("/backups/jobs/self"))
        .bearer_auth(&write)
        .json(&elsewhere)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = crate::helpers::client()
        .post(app.api("/backups/jobs/self/run"))
        .bearer_auth(&write)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = settle(&app, &format!("/backups/runs/{id}")).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let stored: Value = app.get("/backups/jobs/self").await.json().await.unwrap();
    assert!(stored["target"]["path"].is_null(), "{stored}");
}

#[tokio::test]
async fn the_backup_key_is_shown_once_and_needs_the_password() {
    let app = spawn_app().await;
    let (csrf, identity) = setup(&app).await;
    let key: Value = app.get("/backups/key").await.json().await.unwrap();
    assert!(key["recipient"].as_str().unwrap().starts_with("age1"));
    assert!(key.get("identity").is_none());
    let r = app
        .post("/backups/key", &csrf, json!({ "password": "nope" }))
        .await;
    assert_eq!(error_of(r).await.1.as_deref(), Some("password"));
    let made = ok(
        &app,
        &csrf,
        Method::POST,
        "/backups/key",
        Some(json!({ "password": PASSWORD })),
    )
    .await;
    let new_identity = made["identity"].as_str().unwrap();
    assert_ne!(new_identity, identity);
    assert_ne!(made["recipient"], key["recipient"]);
    // Turning encryption off is allowed; the archive is then plain zstd.
    ok(&app, &csrf, Method::POST, "/backups/jobs", Some(json!({
        "name": "plain", "source": { "kind": "berth" }, "target": { "kind": "local" }, "encrypt": false,
    }))).await;
    let run = run_now(&app, &csrf, "plain").await;
    assert!(run["object"].as_str().unwrap().ends_with(".tar.zst"));
    let tar = zstd::decode_all(archive_file(&app, &run).as_slice()).unwrap();
    assert!(tar.windows(7).any(|w| w == b"berth.d"));
    let _ = csrf_of;
}

/// PostgreSQL inside a berth app: `pg_dump` runs in its container through
/// the Docker exec API and streams out; the restore streams back in.
#[tokio::test]
async fn postgres_in_an_app_is_dumped_through_docker_exec_and_restored() {
    use crate::pg_image::{exec, postgres_image};
    let scratch = Scratch::new();
    let image = postgres_image();
    let name = scratch.name("db");
    let app = spawn_app().await;
    let (csrf, _) = setup(&app).await;
    ok(
        &app,
        &csrf,
        Method::POST,
        "/apps",
        Some(json!({ "name": name, "image": image })),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while exec(&name, &["pg_isready", "-h", "/var/run/postgresql"])
        .await
        .0
        != 0
    {
        assert!(
            Instant::now() < deadline,
            "postgres in the app never became ready"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let psql = |db: &'static str, sql: &'static str| {
        let name = name.clone();
        async move {
            let (code, out, err) = exec(
                &name,
                &[
                    "psql",
                    "-X",
                    "-At",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    db,
                    "-c",
                    sql,
                ],
            )
            .await;
            assert_eq!(code, 0, "{sql}: {err}");
            out.trim().to_string()
        }
    };
    psql("postgres", "CREATE DATABASE shop").await;
    psql(
        "shop",
        "CREATE TABLE t AS SELECT i, md5(i::text) AS h FROM generate_series(1, 5000) i",
    )
    .await;
    let digest = "SELECT count(*) || ':' || md5(string_agg(h, '' ORDER BY i)) FROM t";
    let before = psql("shop", digest).await;

    ok(&app, &csrf, Method::POST, "/backups/jobs", Some(json!({
        "name": "app-db", "source": { "kind": "postgres_app", "app": name, "database": "shop" },
        "target": { "kind": "local" },
        "drill": { "schedule": "0 4 * * *", "query": "SELECT count(*) FROM t", "expected": "5000" },
    }))).await;
    let run = run_now(&app, &csrf, "app-db").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(run["manifest"]["source"]["versions"]["pg_dump"]
        .as_str()
        .unwrap()
        .contains("15."));
    let done = restore(
        &app,
        &csrf,
        run["id"].as_str().unwrap(),
        json!({ "to": "new", "name": "shop_copy", "confirm": "app-db", "password": PASSWORD }),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(psql("shop_copy", digest).await, before);
    let drill = drill_now(&app, &csrf, "app-db").await;
    assert_eq!(drill["status"], "passed", "{drill}");
    let dbs = psql(
        "postgres",
        "SELECT string_agg(datname, ',') FROM pg_database",
    )
    .await;
    assert!(!dbs.contains("berth_drill_"), "{dbs}");

    // A dump that fails inside the container is a failed run.
    psql("postgres", "DROP DATABASE shop").await;
    let run = run_now(&app, &csrf, "app-db").await;
    assert_eq!(run["status"], "failed");
    assert!(
        run["error"].as_str().unwrap().contains("does not exist"),
        "{run}"
    );
}
