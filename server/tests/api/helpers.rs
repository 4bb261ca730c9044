//! Each test gets its own berth: a fresh data dir, port 0, plain HTTP on
//! loopback, and a cookie-keeping client.

use berth::config::Config;
use berth::startup::{AppState, Application};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

pub const USERNAME: &str = "admin";
pub const PASSWORD: &str = "a sturdy test passphrase";

pub struct TestApp {
    pub url: String,
    pub client: Client,
    pub state: AppState,
    pub data_dir: tempfile::TempDir,
    pub handle: axum_server::Handle,
}

pub fn client() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(data_dir.path());
    adjust(&mut config);
    let app = Application::build(config).await.expect("berth builds");
    let url = app.url();
    let state = app.state.clone();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        url,
        client: client(),
        state,
        data_dir,
        handle,
    }
}

impl TestApp {
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }

    pub fn setup_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("setup-token"))
            .expect("setup token file")
            .trim()
            .to_string()
    }

    /// Completes setup with `client`; returns its whole answer (the CSRF
    /// token, and the recovery key and backup identity shown only there).
    pub async fn setup_answer_with(&self, client: &Client) -> Value {
        let r = client
            .post(self.api("/setup"))
            .json(
                &json!({ "token": self.setup_token(), "username": USERNAME, "password": PASSWORD }),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json().await.unwrap()
    }

    /// Completes setup with `client`; returns the session's CSRF token.
    pub async fn setup_with(&self, client: &Client) -> String {
        let answer = self.setup_answer_with(client).await;
        answer["csrf_token"].as_str().unwrap().to_string()
    }

    pub async fn setup(&self) -> String {
        self.setup_with(&self.client).await
    }

    pub async fn setup_answer(&self) -> Value {
        self.setup_answer_with(&self.client).await
    }

    /// Logs `client` in; returns the CSRF token.
    pub async fn login(&self, client: &Client) -> String {
        let r = self.login_as(client, USERNAME, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK);
        csrf_of(r).await
    }

    pub async fn login_as(&self, client: &Client, user: &str, password: &str) -> Response {
        client
            .post(self.api("/auth/login"))
            .json(&json!({ "username": user, "password": password }))
            .send()
            .await
            .unwrap()
    }

    /// POST with the session cookie and CSRF header.
    pub async fn post(&self, path: &str, csrf: &str, body: Value) -> Response {
        self.client
            .post(self.api(path))
            .header("X-CSRF-Token", csrf)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Any method, with the session cookie, the CSRF header and an optional
    /// JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        csrf: &str,
        body: Option<Value>,
    ) -> Response {
        let mut req = self
            .client
            .request(method, self.api(path))
            .header("X-CSRF-Token", csrf);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.api(path)).send().await.unwrap()
    }

    /// Creates an API token through the session; returns (id, token).
    pub async fn create_token(&self, csrf: &str, scopes: &[&str]) -> (String, String) {
        let r = self
            .post(
                "/tokens",
                csrf,
                json!({ "name": format!("t-{}", scopes.join("-")), "scopes": scopes, "expires_in_days": 1 }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        (
            v["id"].as_str().unwrap().to_string(),
            v["token"].as_str().unwrap().to_string(),
        )
    }

    pub async fn admin_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM admin")
            .fetch_one(&self.state.db)
            .await
            .unwrap()
    }

    pub async fn audit_actions(&self) -> Vec<(String, String)> {
        sqlx::query_as("SELECT action, outcome FROM audit_log ORDER BY id")
            .fetch_all(&self.state.db)
            .await
            .unwrap()
    }

    /// Every audit row as text, to look for leaked secrets.
    pub async fn audit_dump(&self) -> String {
        let rows: Vec<(String, String, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT actor, action, target, detail FROM audit_log")
                .fetch_all(&self.state.db)
                .await
                .unwrap();
        format!("{rows:?}")
    }
}

/// The error body's (code, field).
pub async fn error_of(r: Response) -> (String, Option<String>) {
    let v: Value = r.json().await.unwrap();
    (
        v["error"]["code"].as_str().unwrap_or_default().to_string(),
        v["error"]["field"].as_str().map(str::to_string),
    )
}

/// The `name=value` part of the response's session cookie.
pub fn session_cookie(r: &Response) -> String {
    r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// The `csrf_token` of a setup or login answer.
pub async fn csrf_of(r: Response) -> String {
    r.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// GET `url` with `client` and decode the JSON answer.
pub async fn get_json(client: &Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// A webhook receiver that keeps what it is sent.
#[derive(Clone, Default)]
pub struct Inbox(pub std::sync::Arc<std::sync::Mutex<Vec<(http::HeaderMap, bytes::Bytes)>>>);

impl Inbox {
    pub async fn start() -> (Inbox, std::net::SocketAddr) {
        let inbox = Inbox::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let keep = inbox.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let keep = keep.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let keep = keep.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = http_body_util::BodyExt::collect(body)
                                    .await
                                    .unwrap()
                                    .to_bytes();
                                keep.0.lock().unwrap().push((parts.headers, body));
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from("ok")),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (inbox, addr)
    }

    pub fn events(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| serde_json::from_slice(b).unwrap())
            .collect()
    }
}
