//! A JSON extractor that reports bad input in berth's own error format and
//! names the field at fault, where axum's would answer in plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::BadRequest {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                field: None,
                message: "expected Content-Type: application/json".into(),
            });
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            ApiError::BadRequest {
                status,
                code: if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "payload_too_large"
                } else {
                    "bad_request"
                },
                field: None,
                message: rejection.body_text(),
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every request body of this API is an object. serde would also read a
    // struct from an array (`["a", 1]`), which no client means to send.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::BadRequest {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_body",
            field: None,
            message: "the request body must be a JSON object".into(),
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.to_string();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::BadRequest {
                status: StatusCode::BAD_REQUEST,
                code: "malformed_json",
                field: None,
                message: format!("request body is not valid JSON: {message}"),
            };
        }
        ApiError::BadRequest {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_body",
            field: field_name(&path, &message),
            message: without_input(&message),
        }
    })
}

/// serde quotes the offending input in some messages ("invalid type:
/// integer `12345`, expected a string"); that input may be a secret (a PIN
/// sent as a number). Keep what was expected, drop what was given.
fn without_input(message: &str) -> String {
    for kind in [
        "invalid type",
        "invalid value",
        "invalid length",
        "unknown variant",
    ] {
        if message.starts_with(kind) {
            return match message.split_once(", expected ") {
                Some((_, expected)) => format!("{kind}, expected {expected}"),
                None => kind.to_string(),
            };
        }
    }
    message.to_string()
}

/// serde reports a missing field at the parent's path, with the field's name
/// in backticks inside the message; join the two. (An unknown field's path
/// already ends with its name.)
fn field_name(path: &str, message: &str) -> Option<String> {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    let parent = (path != ".").then_some(path);
    match (parent, named) {
        (Some(p), Some(n)) if p == n || p.ends_with(&format!(".{n}")) => Some(p.to_string()),
        (Some(p), Some(n)) => Some(format!("{p}.{n}")),
        (None, Some(n)) => Some(n.to_string()),
        (Some(p), None) => Some(p.to_string()),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u32,
    }

    fn field_of(json: &str) -> Option<String> {
        match parse::<Body>(json.as_bytes()).unwrap_err() {
            ApiError::BadRequest { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn names_the_missing_the_unknown_and_the_mistyped_field() {
        assert_eq!(field_of(r#"{"name":"a"}"#).as_deref(), Some("count"));
        assert_eq!(
            field_of(r#"{"name":"a","count":1,"extra":2}"#).as_deref(),
            Some("extra")
        );
        assert_eq!(
            field_of(r#"{"name":"a","count":"x"}"#).as_deref(),
            Some("count")
        );
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused() {
        match parse::<Body>(br#"["a", 1]"#).unwrap_err() {
            ApiError::BadRequest { status, .. } => {
                assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn malformed_json_is_a_400() {
        match parse::<Body>(b"{\"name\":").unwrap_err() {
            ApiError::BadRequest { status, code, .. } => {
                assert_eq!(status, StatusCode::BAD_REQUEST);
                assert_eq!(code, "malformed_json");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_given_value_is_not_echoed() {
        for json in [
            r#"{"name":"a","count":"secret-echo"}"#,
            r#"{"name":73519,"count":1}"#,
            r#"{"name":"a","count":-73519}"#,
        ] {
            match parse::<Body>(json.as_bytes()).unwrap_err() {
                ApiError::BadRequest { message, .. } => {
                    assert!(message.contains("expected"), "{message}");
                    assert!(
                        !message.contains("secret-echo") && !message.contains("73519"),
                        "{message}"
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
