//! The browser's client for the REST API. Every page talks to berth through
//! this, exactly as a script would: same routes, same errors, plus the CSRF
//! header that cookie-authenticated changes need.
//!
//! During server-side rendering nothing calls it (data is loaded after
//! hydration), so the server build has stubs that always fail.

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq)]
pub struct ClientError {
    /// HTTP status, or 0 when the request never got an answer.
    pub status: u16,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl ClientError {
    fn network(message: impl Into<String>) -> Self {
        ClientError {
            status: 0,
            code: "network".into(),
            message: message.into(),
            field: None,
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

#[cfg(feature = "hydrate")]
mod imp {
    use super::*;
    use crate::api::ErrorBody;
    use gloo_net::http::{Method, Request, RequestBuilder};
    use std::cell::RefCell;
    use std::rc::Rc;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::{JsCast, JsValue};
    use web_sys::{EventSource, HtmlInputElement, MessageEvent};

    thread_local! {
        static CSRF: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    pub fn set_csrf(token: Option<String>) {
        CSRF.with(|c| *c.borrow_mut() = token);
    }

    fn builder(method: &str, path: &str) -> Result<RequestBuilder> {
        let method = match method {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "DELETE" => Method::DELETE,
            other => return Err(ClientError::network(format!("unsupported method {other}"))),
        };
        let mut req = RequestBuilder::new(path)
            .method(method)
            .header("Accept", "application/json");
        if let Some(token) = CSRF.with(|c| c.borrow().clone()) {
            req = req.header("X-CSRF-Token", &token);
        }
        Ok(req)
    }

    async fn finish(req: Request) -> Result<Option<String>> {
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::network(format!("berth did not answer: {e}")))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok((!text.is_empty()).then_some(text));
        }
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(e) => ClientError {
                status,
                code: e.error.code,
                message: e.error.message,
                field: e.error.field,
            },
            Err(_) => ClientError {
                status,
                code: "http".into(),
                message: format!("berth answered {status}"),
                field: None,
            },
        })
    }

    pub async fn call(method: &str, path: &str, body: Option<String>) -> Result<Option<String>> {
        let req = builder(method, path)?;
        let req = match body {
            Some(b) => req
                .header("Content-Type", "application/json")
                .body(b)
                .map_err(|e| ClientError::network(e.to_string()))?,
            None => req
                .build()
                .map_err(|e| ClientError::network(e.to_string()))?,
        };
        finish(req).await
    }

    pub async fn upload(
        path: &str,
        content_type: &str,
        input: &HtmlInputElement,
    ) -> Result<Option<String>> {
        let file = input
            .files()
            .and_then(|files| files.get(0))
            .ok_or_else(|| ClientError {
                field: Some("file".into()),
                ..ClientError::network("choose a file first")
            })?;
        // The File goes to fetch() as it is: the browser streams it from disk.
        let req = builder("POST", path)?
            .header("Content-Type", content_type)
            .body(JsValue::from(file))
            .map_err(|e| ClientError::network(e.to_string()))?;
        finish(req).await
    }

    /// An open EventSource and the callbacks it calls; closed when dropped.
    pub struct Stream {
        source: Option<EventSource>,
        _callbacks: Vec<Closure<dyn FnMut(JsValue)>>,
    }

    impl Drop for Stream {
        fn drop(&mut self) {
            if let Some(source) = &self.source {
                source.set_onopen(None);
                source.set_onmessage(None);
                source.set_onerror(None);
                source.close();
            }
        }
    }

    pub fn follow<T: DeserializeOwned + 'static>(
        path: &str,
        on_event: impl FnMut(StreamEvent<T>) + 'static,
    ) -> Stream {
        let on_event = Rc::new(RefCell::new(on_event));
        let source = match EventSource::new(path) {
            Ok(s) => s,
            Err(_) => {
                (on_event.borrow_mut())(StreamEvent::Closed);
                return Stream {
                    source: None,
                    _callbacks: Vec::new(),
                };
            }
        };
        let on_open = Closure::<dyn FnMut(JsValue)>::new({
            let on_event = on_event.clone();
            move |_: JsValue| (on_event.borrow_mut())(StreamEvent::Open)
        });
        let on_message = Closure::<dyn FnMut(JsValue)>::new({
            let on_event = on_event.clone();
            move |ev: JsValue| {
                let data = ev
                    .dyn_into::<MessageEvent>()
                    .ok()
                    .and_then(|m| m.data().as_string());
                // Keep-alive comments and anything malformed are skipped.
                if let Some(item) = data.and_then(|d| serde_json::from_str::<T>(&d).ok()) {
                    (on_event.borrow_mut())(StreamEvent::Item(item));
                }
            }
        });
        let on_error = Closure::<dyn FnMut(JsValue)>::new({
            let on_event = on_event.clone();
            let source = source.clone();
            // berth reports a failure inside the stream as an `error` event
            // with a message. Otherwise the browser reconnects by itself after
            // a dropped connection; only a refused one closes it for good.
            move |ev: JsValue| {
                let message = ev
                    .dyn_into::<MessageEvent>()
                    .ok()
                    .and_then(|m| m.data().as_string());
                if let Some(message) = message {
                    (on_event.borrow_mut())(StreamEvent::Problem(message));
                } else if source.ready_state() == EventSource::CLOSED {
                    (on_event.borrow_mut())(StreamEvent::Closed);
                }
            }
        });
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Stream {
            source: Some(source),
            _callbacks: vec![on_open, on_message, on_error],
        }
    }
}

#[cfg(not(feature = "hydrate"))]
mod imp {
    use super::*;

    fn browser_only() -> ClientError {
        ClientError::network("the API client runs in the browser only")
    }

    pub fn set_csrf(_token: Option<String>) {}

    pub async fn call(_method: &str, _path: &str, _body: Option<String>) -> Result<Option<String>> {
        Err(browser_only())
    }

    pub async fn upload(
        _path: &str,
        _content_type: &str,
        _input: &leptos::web_sys::HtmlInputElement,
    ) -> Result<Option<String>> {
        Err(browser_only())
    }

    pub struct Stream;

    pub fn follow<T: DeserializeOwned + 'static>(
        _path: &str,
        mut on_event: impl FnMut(StreamEvent<T>) + 'static,
    ) -> Stream {
        on_event(StreamEvent::Closed);
        Stream
    }
}

/// What a followed server-sent event stream reports.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent<T> {
    /// Connected (again, after the browser reconnected by itself).
    Open,
    /// One `data:` line, decoded.
    Item(T),
    /// berth's `error` event: what went wrong on its side.
    Problem(String),
    /// Refused or failed for good; the browser will not retry.
    Closed,
}

pub use imp::Stream;

/// Follows a server-sent event stream (same-origin, so the session cookie
/// goes along) whose `data:` lines are JSON `T`. The stream is closed when
/// the returned handle is dropped.
pub fn follow<T: DeserializeOwned + 'static>(
    path: &str,
    on_event: impl FnMut(StreamEvent<T>) + 'static,
) -> Stream {
    imp::follow(path, on_event)
}

/// POSTs the file picked in `input` as the raw request body (e.g. a `docker
/// save` tar as `application/x-tar`). Fails with field `file` when none is.
pub async fn upload<T: DeserializeOwned>(
    path: &str,
    content_type: &str,
    input: &leptos::web_sys::HtmlInputElement,
) -> Result<T> {
    decode(imp::upload(path, content_type, input).await?)
}

pub use imp::set_csrf;

fn decode<T: DeserializeOwned>(text: Option<String>) -> Result<T> {
    serde_json::from_str(text.as_deref().unwrap_or("null"))
        .map_err(|e| ClientError::network(format!("unexpected answer: {e}")))
}

pub async fn get<T: DeserializeOwned>(path: &str) -> Result<T> {
    decode(imp::call("GET", path, None).await?)
}

pub async fn send<B: Serialize, T: DeserializeOwned>(
    method: &str,
    path: &str,
    body: &B,
) -> Result<T> {
    let body = serde_json::to_string(body).map_err(|e| ClientError::network(e.to_string()))?;
    decode(imp::call(method, path, Some(body)).await?)
}

/// For routes that take no body but answer JSON (e.g. `POST …/start`).
pub async fn send_empty<T: DeserializeOwned>(method: &str, path: &str) -> Result<T> {
    decode(imp::call(method, path, None).await?)
}

/// For routes that answer 204 No Content.
pub async fn send_no_content<B: Serialize>(
    method: &str,
    path: &str,
    body: Option<&B>,
) -> Result<()> {
    let body = match body {
        Some(b) => Some(serde_json::to_string(b).map_err(|e| ClientError::network(e.to_string()))?),
        None => None,
    };
    imp::call(method, path, body).await.map(|_| ())
}
