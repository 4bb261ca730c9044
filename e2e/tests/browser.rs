//! The panel in a real browser: Debian's Chromium driven through chromedriver.
//! From a fresh start: read the setup token, finish the wizard, reach the
//! dashboard, create an API token, log out, log in again, enrol a TOTP second
//! factor, log in with a recovery code, recover from a CLI password reset;
//! create an app (a container on the real Docker engine), see it running and
//! read its logs; add a domain; point berth at a real ACME CA (pebble), order
//! a certificate and follow its steps live, see it served and probed, and
//! send a test notification to a webhook; apply firewall rules in a network
//! namespace; back berth up, restore the archive and drill it.
//! Every step leaves a screenshot in `e2e/screenshots/`; a passing run removes
//! them, a failing run keeps them (as does BERTH_E2E_KEEP_SCREENSHOTS=1).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../server/tests/api/acme_rig.rs"]
#[allow(dead_code)]
mod acme_rig;
#[path = "../../server/tests/api/ports.rs"]
mod ports;

use berth::config::Config;
use berth::startup::Application;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use ports::free_port;

const USERNAME: &str = "admin";
const PASSWORD: &str = "browser test passphrase";
const NEW_PASSWORD: &str = "another browser passphrase";
const WAIT: Duration = Duration::from_secs(20);

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Starts chromedriver and waits until it answers (polling, bounded).
async fn start_driver() -> (Driver, String) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (scripts/install-deps.sh --test)");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(r) = reqwest::get(format!("{url}/status")).await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (Driver(child), url)
}

async fn browser(driver_url: &str, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::rustls()
        .expect("rustls client")
        .capabilities(caps)
        .connect(driver_url)
        .await
        .expect("a browser session")
}

struct Run {
    /// The namespace berth's firewall rules go to.
    netns: String,
    client: Client,
    base: String,
    /// The embedded proxy's plain-HTTP listener.
    proxy_http: std::net::SocketAddr,
    proxy_https: std::net::SocketAddr,
    pebble: acme_rig::Pebble,
    shots: PathBuf,
    step: usize,
}

impl Run {
    /// Saves a screenshot named after the step just finished (or failed).
    async fn shot(&mut self, name: &str) {
        self.step += 1;
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(self.shots.join(format!("{:02}-{name}.png", self.step)), png);
        }
    }

    async fn wait_css(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("waiting for `{css}`: {e}"))
    }

    async fn wait_text(&self, css: &str, text: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                if el.text().await.is_ok_and(|t| t.contains(text)) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "`{css}` never showed `{text}`");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.wait_css(css).await.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.wait_css(css).await.click().await.unwrap();
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
        // Interact only once the wasm has hydrated the page.
        self.wait_css("body[data-hydrated]").await;
    }
}

#[tokio::test]
async fn a_fresh_berth_is_set_up_and_used_through_the_browser() {
    let site = repo_root().join("target/site");
    assert!(
        site.join("pkg/berth_bg.wasm").exists(),
        "no browser bundle: run scripts/build-site.sh first"
    );
    let data = tempfile::tempdir().unwrap();
    // A real ACME CA on loopback; berth's proxy listens where it validates.
    let http_port = free_port();
    let pebble = acme_rig::Pebble::start(acme_rig::PebbleOptions::http(http_port)).await;
    // The firewall step loads rules into a namespace of its own, never the host's.
    let netns = Netns::new();
    let mut config = Config::for_tests(data.path());
    config.firewall.netns = Some(netns.0.clone());
    config.site_dir = site;
    config.proxy.http = Some(std::net::SocketAddr::from(([127, 0, 0, 1], http_port)));
    config.certificates.self_test_port = http_port;
    config.certificates.resolver = Some(pebble.dns);
    let app = Application::build(config).await.unwrap();
    let base = app.url();
    let proxy_http = app.state.proxy.addresses()[0];
    let proxy_https = app.state.proxy.addresses()[1];
    tokio::spawn(app.run_until_stopped());

    let (_driver, driver_url) = start_driver().await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver_url, profile.path()).await;
    let shots = repo_root().join("e2e/screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let mut run = Run {
        netns: netns.0.clone(),
        client: client.clone(),
        base: base.clone(),
        proxy_http,
        proxy_https,
        pebble,
        shots: shots.clone(),
        step: 0,
    };

    let outcome = tokio::time::timeout(Duration::from_secs(240), flow(&mut run, data.path())).await;
    let failed = !matches!(outcome, Ok(Ok(())));
    if failed {
        run.shot("failure").await;
    }
    let _ = client.close().await;
    match outcome {
        Ok(Ok(())) => {
            // BERTH_E2E_KEEP_SCREENSHOTS=1 keeps them from a passing run too.
            if std::env::var_os("BERTH_E2E_KEEP_SCREENSHOTS").is_none() {
                let _ = std::fs::remove_dir_all(&shots);
            }
        }
        Ok(Err(panic)) => {
            eprintln!("screenshots kept in {}", shots.display());
            std::panic::resume_unwind(panic)
        }
        Err(_) => panic!(
            "the browser flow timed out; screenshots in {}",
            shots.display()
        ),
    }
}

/// Runs the steps, catching a panic so the caller can keep screenshots.
async fn flow(run: &mut Run, data: &Path) -> Result<(), Box<dyn std::any::Any + Send>> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(steps(run, data))
        .catch_unwind()
        .await
}

async fn steps(run: &mut Run, data: &Path) {
    // A fresh berth sends the visitor to the setup wizard.
    run.goto("/").await;
    run.wait_css("#setup-token").await;
    run.shot("wizard-token").await;

    let token = std::fs::read_to_string(data.join("setup-token")).unwrap();
    run.type_into("#setup-token", token.trim()).await;
    run.click("form button[type=submit]").await;
    run.wait_css("#setup-password").await;
    run.type_into("#setup-password", PASSWORD).await;
    run.type_into("#setup-confirm", PASSWORD).await;
    run.shot("wizard-account").await;
    run.click("form button[type=submit]").await;

    // The recovery key is shown once; Continue waits for the admin to say
    // it is stored.
    let shown = run.wait_css("#recovery-key").await;
    let recovery = shown.prop("value").await.unwrap().unwrap_or_default();
    assert!(
        recovery.starts_with("AGE-SECRET-KEY-1"),
        "a recovery key is shown"
    );
    assert_eq!(
        run.wait_css("#recovery-key-continue")
            .await
            .attr("disabled")
            .await
            .unwrap(),
        Some("true".into()),
        "Continue waits for the checkbox"
    );
    run.shot("wizard-recovery-key").await;
    run.click("#recovery-key-stored").await;
    run.click("#recovery-key-continue").await;

    run.wait_css("#panel-domain").await;
    run.type_into("#panel-domain", "panel.example.com").await;
    run.type_into("#acme-email", "ops@example.com").await;
    run.shot("wizard-basics").await;
    run.click("form button[type=submit]").await;

    run.wait_text("main h1", "Dashboard").await;
    run.wait_text("[data-testid=signed-in-as]", USERNAME).await;
    run.wait_text("dl.settings", "panel.example.com").await;
    run.shot("dashboard").await;
    assert!(!data.join("setup-token").exists(), "setup token removed");

    apps(run).await;
    secrets(run).await;
    domains(run).await;
    certificates(run).await;
    firewall(run).await;
    backups(run, data).await;

    // Create an API token; its value is shown once and works as a bearer.
    run.click("nav a[href='/tokens']").await;
    run.wait_text("main h1", "API tokens").await;
    run.type_into("#token-name", "deploy-bot").await;
    run.click("#token-scope option[value=write]").await;
    run.click("form.inline button[type=submit]").await;
    let shown = run.wait_css("[data-testid=new-token]").await;
    let token = shown.prop("value").await.unwrap().unwrap_or_default();
    assert_eq!(token.split('.').count(), 3, "a JWT is shown: {token}");
    run.wait_css("tr[data-token-name='deploy-bot']").await;
    run.shot("token-created").await;
    let me: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/me", run.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["scopes"], json!(["read", "write"]));

    // The audit page shows what just happened.
    run.click("nav a[href='/audit']").await;
    run.wait_text("table.data tbody", "token.create").await;
    run.shot("audit").await;

    // Log out, then back in.
    run.click(".who button").await;
    run.wait_css("#login-username").await;
    run.shot("logged-out").await;
    run.goto("/tokens").await;
    run.wait_css("#login-username").await;
    run.type_into("#login-username", USERNAME).await;
    run.type_into("#login-password", PASSWORD).await;
    run.click("form button[type=submit]").await;
    run.wait_text("main h1", "Dashboard").await;
    run.wait_text("[data-testid=signed-in-as]", USERNAME).await;
    run.shot("logged-in-again").await;

    // Turn on the second factor from the account page.
    run.click("nav a[href='/account']").await;
    run.type_into("#totp-password", PASSWORD).await;
    run.click("#totp-password ~ button[type=submit]").await;
    let secret = run
        .wait_css("[data-testid=totp-secret]")
        .await
        .text()
        .await
        .unwrap();
    run.wait_css(".qr svg").await;
    run.shot("totp-enrol").await;
    run.type_into("#totp-code", &totp_now(&secret)).await;
    run.click("#totp-code ~ button[type=submit]").await;
    let codes = run
        .wait_css("[data-testid=recovery-codes]")
        .await
        .text()
        .await
        .unwrap();
    let recovery: Vec<&str> = codes.split_whitespace().collect();
    assert_eq!(recovery.len(), 10, "{codes}");
    run.wait_text("main", "A second factor is enabled").await;
    run.shot("totp-enabled").await;

    // Login now asks for a code; a wrong password is reported, not accepted.
    run.click(".who button").await;
    run.type_into("#login-username", USERNAME).await;
    run.type_into("#login-password", "not the password").await;
    run.click("form button[type=submit]").await;
    run.wait_text("p.error[role=alert]", "invalid username or password")
        .await;
    run.shot("login-refused").await;
    run.goto("/login").await;
    run.type_into("#login-username", USERNAME).await;
    run.type_into("#login-password", PASSWORD).await;
    run.click("form button[type=submit]").await;
    run.type_into("#login-code", recovery[0]).await;
    run.shot("login-code").await;
    run.click("form button[type=submit]").await;
    run.wait_text("main h1", "Dashboard").await;
    run.shot("logged-in-with-recovery-code").await;

    // A lost password and device: the CLI's one-time password opens the way
    // to a new password and nothing else.
    let temporary = berth::cli::reset_password(&Config::for_tests(data), true)
        .await
        .unwrap();
    run.goto("/").await;
    run.type_into("#login-username", USERNAME).await;
    run.type_into("#login-password", &temporary).await;
    run.click("form button[type=submit]").await;
    run.wait_css("[data-testid=must-change-password]").await;
    run.shot("must-change-password").await;
    run.type_into("#current-password", &temporary).await;
    run.type_into("#new-password", NEW_PASSWORD).await;
    run.type_into("#confirm-password", NEW_PASSWORD).await;
    run.click("#confirm-password ~ button[type=submit]").await;
    run.wait_text("p.success", "Password changed").await;
    run.click("nav a[href='/tokens']").await;
    run.wait_css("tr[data-token-name='deploy-bot']").await;
    run.shot("password-changed").await;
}

/// The current TOTP code for a base32 secret, as an authenticator app shows it.
fn totp_now(secret: &str) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.trim().to_string())
        .to_bytes()
        .unwrap();
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 0, 30, bytes)
        .unwrap()
        .generate_current()
        .unwrap()
}

/// The image apps use here: Debian's static busybox packed with `docker
/// import` (no registry is reachable). A tag of its own: it holds fewer
/// applets than the server tests' image, and taking their tag first made
/// their `httpd` containers fail when the browser test ran before them.
const TEST_IMAGE: &str = "berth-e2e-busybox:1";

fn ensure_test_image() {
    let present = Command::new("docker")
        .args(["image", "inspect", TEST_IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    if present.success() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("Debian's busybox-static");
    for applet in ["sh", "sleep", "echo"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = Command::new("docker")
        .args([
            "import",
            "-c",
            "LABEL berth-test=1",
            "-c",
            "ENV PATH=/bin",
            "-",
            TEST_IMAGE,
        ])
        .stdin(tar.stdout.take().unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(
        tar.wait().unwrap().success() && status.success(),
        "docker import"
    );
}

/// Removes the app's container even when the flow failed half-way.
struct RemoveContainer(String);

impl Drop for RemoveContainer {
    fn drop(&mut self) {
        for name in [self.0.clone(), format!("{}_next", self.0)] {
            let _ = Command::new("docker")
                .args(["rm", "-f", &name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

async fn apps(run: &mut Run) {
    ensure_test_image();
    let name = format!("e2e{}-web", std::process::id());
    let _cleanup = RemoveContainer(name.clone());

    run.goto("/apps").await;
    run.type_into("#new-app [name=name]", &name).await;
    run.type_into("#new-app [name=image]", TEST_IMAGE).await;
    run.type_into(
        "#new-app [name=command]",
        "sh\n-c\necho hello-from-the-browser; exec sleep 3600",
    )
    .await;
    run.click("#preview-plan").await;
    run.wait_css("#plan li[data-action=create]").await;
    run.shot("app-plan").await;
    run.click("#create-app").await;

    // The app page follows the container's output live.
    run.wait_text("#logs", "hello-from-the-browser").await;
    run.shot("app-logs").await;

    run.goto("/apps").await;
    run.wait_text(&format!("tr[data-app='{name}'] .status"), "running")
        .await;
    run.shot("apps-list").await;

    // Delete it again through the panel.
    run.goto(&format!("/apps/{name}")).await;
    delete_app(run, &name).await;
}

/// Deletes the app shown on its page and waits until its container is gone.
async fn delete_app(run: &Run, name: &str) {
    run.click("#delete").await;
    run.click("#confirm-delete").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let gone = Command::new("docker")
            .args(["inspect", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if !gone.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the app's container was removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Shared and app secrets through the panel: a group and its secret, an
/// app attached to it that sees the value (it prints only a hash), a `.env`
/// import checked line by line, the needs-redeploy notice and its button,
/// reveal behind the password, and the masked container environment. No
/// value stays in the page once saved or hidden.
async fn secrets(run: &mut Run) {
    use sha2::Digest;
    let sha = |v: &str| hex::encode(sha2::Sha256::digest(v.as_bytes()));
    ensure_test_image();
    let name = format!("e2e{}-vault", std::process::id());
    let _cleanup = RemoveContainer(name.clone());
    let shared = "shared-e2e-value-7d1c";
    let imported = "imported-e2e-value-42aa";

    run.goto("/secret-groups").await;
    run.type_into("#group-name", "e2e-shared").await;
    run.type_into("#group-description", "values every e2e app gets")
        .await;
    run.click("#create-group").await;
    run.wait_css("#group-created").await;
    run.wait_css("#secret-groups tr[data-group='e2e-shared']")
        .await;

    run.goto("/secret-groups/e2e-shared").await;
    run.type_into("#secret-name", "SHARED_TOKEN").await;
    run.type_into("#secret-value", shared).await;
    run.click("#save-secret").await;
    run.wait_css("#secret-saved").await;
    run.wait_text(
        "#secrets tr[data-secret='SHARED_TOKEN'] .length",
        &shared.len().to_string(),
    )
    .await;
    assert!(
        !run.client.source().await.unwrap().contains(shared),
        "the value left the page once saved"
    );
    run.shot("secret-group").await;

    // An app attached to the group sees its value.
    run.goto("/apps").await;
    run.type_into("#new-app [name=name]", &name).await;
    run.type_into("#new-app [name=image]", TEST_IMAGE).await;
    run.type_into(
        "#new-app [name=command]",
        "sh\n-c\ntrap 'exit 0' TERM; printf %s \"$SHARED_TOKEN\" | sha256sum; printf %s \"$APP_KEY\" | sha256sum; sleep 3600 & wait",
    )
    .await;
    run.type_into("#app-secret-groups", "e2e-shared").await;
    run.click("#create-app").await;
    run.wait_text("#logs", &sha(shared)).await;

    // Import a .env: the bad line is reported by number before anything is
    // sent; fixed, the dry run previews, then it is imported.
    run.goto(&format!("/apps/{name}/secrets")).await;
    run.type_into(
        "#import-dotenv",
        &format!("# app settings\nAPP_KEY={imported}\nnot a line\n"),
    )
    .await;
    run.wait_css("#import-errors li[data-line='3']").await;
    run.shot("secret-import-errors").await;
    run.wait_css("#import-dotenv").await.clear().await.unwrap();
    run.type_into(
        "#import-dotenv",
        &format!("# app settings\nAPP_KEY={imported}\n"),
    )
    .await;
    run.wait_css("#import-valid").await;
    run.click("#import-preview").await;
    run.wait_text("#import-added", "APP_KEY").await;
    run.click("#import-submit").await;
    run.wait_css("#secrets tr[data-secret='APP_KEY']").await;
    run.wait_css("#inherited-secrets tr[data-secret='SHARED_TOKEN'][data-effective='true']")
        .await;

    // The running container still has the old environment: redeploy.
    run.wait_text("#needs-redeploy-apps", &name).await;
    run.shot("secret-needs-redeploy").await;
    run.click(&format!(
        "li[data-app='{name}'] button[data-action=redeploy]"
    ))
    .await;
    run.wait_css("#redeployed").await;

    // Reveal asks for the password, then hides again.
    run.click("#secrets tr[data-secret='APP_KEY'] [data-action=reveal]")
        .await;
    run.type_into("#reveal-password", PASSWORD).await;
    run.click("#reveal-confirm").await;
    let value = run.wait_css("#revealed-value").await;
    assert_eq!(
        value.prop("value").await.unwrap().as_deref(),
        Some(imported)
    );
    run.shot("secret-revealed").await;
    run.click("#reveal-hide").await;
    let deadline = Instant::now() + WAIT;
    while run.client.source().await.unwrap().contains(imported) {
        assert!(
            Instant::now() < deadline,
            "the revealed value left the page"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The app page: the new container saw the value; the environment view
    // masks secrets.
    run.goto(&format!("/apps/{name}")).await;
    run.wait_text("#logs", &sha(imported)).await;
    run.wait_css("#container-env tr[data-env='APP_KEY'] .masked")
        .await;
    run.wait_css("#container-env tr[data-env='SHARED_TOKEN'] .masked")
        .await;
    let page = run.client.source().await.unwrap();
    assert!(!page.contains(imported) && !page.contains(shared));
    run.shot("app-secret-env").await;
    delete_app(run, &name).await;
}

/// A one-answer HTTP upstream on loopback for the domain step.
async fn upstream(body: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                // One request per connection is enough for these checks.
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// Adds a domain in the editor (live validation first refuses the private
/// upstream, then accepts it), sees it live in the list, tests the route
/// from the panel, and checks a real request through the proxy.
async fn domains(run: &mut Run) {
    let up = upstream("from-the-upstream").await;
    let host = "e2e.example.com";
    run.goto("/domains").await;
    run.type_into("#domain-host", host).await;
    run.type_into("#domain-target", &format!("http://{up}"))
        .await;
    run.wait_text("[data-field=target]", "allow_private_upstream")
        .await;
    run.shot("domain-validation").await;
    run.click("#domain-private").await;
    run.wait_text("#validation", &format!("Valid: {host}"))
        .await;
    run.click("#save-domain").await;
    run.wait_text("#domain-saved", "is live").await;
    let row = format!("tr[data-domain='{host}']");
    run.wait_text(&format!("{row} .status"), "live").await;
    run.click(&format!("{row} [data-action=test]")).await;
    run.wait_text("#route-test .outcome", "HTTP 200").await;
    run.shot("domains").await;

    let client = reqwest::Client::builder()
        .resolve(host, run.proxy_http)
        .build()
        .unwrap();
    let body = client
        .get(format!("http://{host}:{}/", run.proxy_http.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "from-the-upstream");
}

/// Points berth at the test CA, orders a certificate for the domain made
/// above and follows its steps live, checks that the proxy serves it, and
/// adds a webhook channel whose test notification arrives.
async fn certificates(run: &mut Run) {
    let host = "e2e.example.com";
    run.goto("/acme").await;
    run.wait_css("#acme-url").await;
    // The wizard's e-mail configured Let's Encrypt; switch to the test CA.
    run.wait_css("#acme-url").await.clear().await.unwrap();
    run.type_into("#acme-url", &run.pebble.directory_url.clone())
        .await;
    run.type_into("#acme-roots", &run.pebble.listener_root_pem.clone())
        .await;
    run.click("#acme-save").await;
    run.wait_text("#acme-saved", "Saved").await;
    run.shot("acme-settings").await;

    run.goto("/certificates").await;
    run.type_into("#order-domains", host).await;
    run.click("#order-submit").await;
    run.wait_text("#cert-heading", host).await;
    run.wait_text("#certificate-state", "valid").await;
    run.wait_css("#steps li[data-step=install][data-status=done]")
        .await;
    run.wait_text("#steps", "validation").await;
    run.shot("certificate-issued").await;

    // The proxy serves it; a client trusting only the CA's root accepts it.
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(run.pebble.issuing_root().await)
        .resolve(host, run.proxy_https)
        .build()
        .unwrap();
    let body = client
        .get(format!("https://{host}:{}/", run.proxy_https.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "from-the-upstream");

    // The list shows it, and the probe agrees with what is served.
    run.goto("/certificates").await;
    run.wait_text("#certificates", host).await;
    run.click("#probe-now").await;
    run.wait_text(&format!("#probes tr[data-host='{host}'] .status"), "ok")
        .await;
    run.shot("certificates").await;

    // A webhook channel, and its test button.
    let (hook, hits) = webhook().await;
    run.goto("/notifications").await;
    run.type_into("#channel-name", "ops").await;
    run.type_into("#channel-url", &format!("http://{hook}/berth"))
        .await;
    run.click("#channel-internal").await;
    run.click("#channel-save").await;
    run.wait_css("#channels tr[data-channel]").await;
    run.click("#channels [data-action=test]").await;
    run.wait_text("#channel-test", "delivered").await;
    run.shot("notifications").await;
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A webhook receiver counting the POSTs it gets.
async fn webhook() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 65536];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if String::from_utf8_lossy(&buf[..n]).starts_with("POST /berth") {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                .await;
        }
    });
    (addr, hits)
}

/// A network namespace for the firewall step, removed on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("berth-e2e-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// berth's table in the namespace, in nft's text, or `None`.
fn berth_table(netns: &str) -> Option<String> {
    let out = Command::new("ip")
        .args([
            "netns", "exec", netns, "nft", "list", "table", "inet", "berth",
        ])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The VPS guide's table in one click, reviewed as a plan, applied, and
/// confirmed from the countdown; then a change reverted from the banner.
async fn firewall(run: &mut Run) {
    run.goto("/firewall").await;
    run.wait_css("#firewall-status").await;
    assert_eq!(berth_table(&run.netns), None, "off until the admin applies");
    run.click("#preset-vps-guide").await;
    run.wait_css("#rule-5-ports").await;
    run.click("#firewall-enabled").await;
    // A bad port is caught at its field before anything is saved.
    run.type_into("#rule-4-ports", "99").await;
    run.wait_css("#rule-4-ports-error").await;
    run.wait_text("#rule-4-ports-error", "out of range").await;
    run.shot("firewall-bad-port").await;
    let field = run.wait_css("#rule-4-ports").await;
    field.clear().await.unwrap();
    field.send_keys("3001").await.unwrap();
    run.click("#save-rules").await;
    run.wait_css("#rules-saved").await;

    run.click("#plan-button").await;
    run.wait_css("#plan-diff").await;
    run.wait_text("#plan-diff", "0.0.0.0/0 . 6 . 5432").await;
    run.wait_text("#plan-changes", "turn the firewall on").await;
    run.shot("firewall-plan").await;
    run.click("#apply-button").await;
    run.wait_css("#firewall-countdown").await;
    let table = berth_table(&run.netns).expect("applied in the namespace");
    assert!(table.contains("5432"), "{table}");
    run.shot("firewall-countdown").await;
    // Confirm comes over a new connection (berth closes the old ones).
    run.click("#confirm-button").await;
    run.wait_css("#firewall-confirmed").await;
    run.wait_text("#last-apply", "confirmed").await;
    run.wait_css("#exposure-table").await;
    run.shot("firewall-confirmed").await;

    // A change, reverted from the banner: the confirmed table comes back.
    run.click("#rule-5-remove").await;
    run.click("#save-rules").await;
    run.wait_css("#rules-saved").await;
    run.click("#plan-button").await;
    run.wait_text("#plan-changes", "remove").await;
    run.click("#apply-button").await;
    run.wait_css("#firewall-countdown").await;
    assert!(!berth_table(&run.netns).unwrap().contains("5432"));
    run.click("#revert-button").await;
    run.wait_css("#firewall-reverted").await;
    assert_eq!(
        berth_table(&run.netns).unwrap(),
        table,
        "the confirmed rules are back"
    );
    run.shot("firewall-reverted").await;
}

/// A backup job of berth itself to the data dir: made in the form, run
/// from its page (history updates live), restored through the wizard into
/// a new directory, proved by a drill, and shown on the dashboard.
async fn backups(run: &mut Run, data: &Path) {
    run.goto("/backups").await;
    // The backup key made at setup is there.
    run.wait_text("[data-testid=backup-recipient]", "age1")
        .await;
    run.click("#new-backup-job").await;
    run.wait_css("#job-name").await;
    run.type_into("#job-name", "panel-self").await;
    // The form starts at 03:00 daily; the next runs follow what is typed.
    run.wait_text(".schedule-preview", "03:00").await;
    let schedule = run.wait_css("#job-schedule").await;
    schedule.clear().await.unwrap();
    schedule.send_keys("30 4 * * *").await.unwrap();
    run.wait_text(".schedule-preview", "04:30").await;
    run.shot("backup-form").await;
    run.click("#job-save").await;
    run.wait_text("[data-testid=job-title]", "panel-self").await;

    run.click("#run-now").await;
    run.wait_css("[data-testid=run-row][data-status=succeeded]")
        .await;
    run.shot("backup-run").await;
    let archives = data.join("backups").join("panel-self");
    let stored: Vec<_> = std::fs::read_dir(&archives).unwrap().collect();
    assert_eq!(stored.len(), 2, "an archive and its manifest");

    run.click("[data-testid=restore-run]").await;
    run.click("#restore-to-new").await;
    run.click("#restore-next").await;
    run.type_into("#restore-confirm", "panel-self").await;
    run.type_into("#restore-password", PASSWORD).await;
    run.shot("backup-restore-confirm").await;
    run.click("#restore-submit").await;
    run.wait_css("#restore-result[data-status=succeeded]").await;
    run.shot("backup-restored").await;
    let restored = std::fs::read_dir(data.join("restores"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(
        restored.join("berth.db").exists(),
        "the store was restored into {}",
        restored.display()
    );
    run.click("#restore-close").await;

    run.click("#drill-now").await;
    run.wait_css("#drill-result[data-status=passed]").await;
    run.shot("backup-drill").await;

    run.goto("/").await;
    run.wait_text("#dashboard-backups", "panel-self").await;
    run.wait_text("[data-testid=dashboard-last-verified]", "passed")
        .await;
    run.shot("dashboard-backups").await;
}
