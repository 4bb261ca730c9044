//! Files served from a Docker volume. The volume's content is written by
//! containers, so nothing in it is trusted: the resolved path (symlinks
//! followed) must stay inside the served directory, or the answer is 404.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{header, Method, Response, StatusCode};
use http_body_util::BodyExt;

use super::handler::{plain, Body};

/// Answers `method path` (already stripped of the route's prefix) from `root`.
pub async fn serve(root: &Path, method: &Method, path: &str) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(file) = locate(root, path).await else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let Ok(handle) = tokio::fs::File::open(&file).await else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let len = match handle.metadata().await {
        Ok(m) if m.is_file() => m.len(),
        _ => return plain(StatusCode::NOT_FOUND, "not found"),
    };
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type(&file))
        .header(header::CONTENT_LENGTH, len);
    let body = if method == Method::HEAD {
        http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed()
    } else {
        let stream = tokio_util::io::ReaderStream::new(handle);
        http_body_util::StreamBody::new(futures::StreamExt::map(stream, |chunk| {
            chunk
                .map(hyper::body::Frame::data)
                .map_err(|e| Box::new(e) as super::handler::BoxError)
        }))
        .boxed()
    };
    builder
        .body(body)
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "bad file"))
}

/// Maps the request path to a file under `root`, or `None`.
async fn locate(root: &Path, path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path)?;
    let mut rel = PathBuf::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => return None,
            s if s.contains('\0') || s.contains('\\') => return None,
            s => rel.push(s),
        }
    }
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let mut candidate = tokio::fs::canonicalize(root.join(&rel)).await.ok()?;
    if tokio::fs::metadata(&candidate).await.ok()?.is_dir() {
        candidate = tokio::fs::canonicalize(candidate.join("index.html"))
            .await
            .ok()?;
    }
    candidate.starts_with(&root).then_some(candidate)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        "pdf" => "application/pdf",
        "xml" => "application/xml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_outside_the_root_are_never_reached() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("index.html"), "home").unwrap();
        std::fs::write(root.join("sub/a.css"), "css").unwrap();
        std::fs::write(dir.path().join("secret"), "no").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();

        assert_eq!(
            locate(&root, "/").await.unwrap(),
            root.canonicalize().unwrap().join("index.html")
        );
        assert!(locate(&root, "/sub/a.css").await.is_some());
        assert!(locate(&root, "/sub/%61.css").await.is_some());
        for bad in [
            "/../secret",
            "/%2e%2e/secret",
            "/link",
            "/sub/../../secret",
            "/missing",
        ] {
            assert!(locate(&root, bad).await.is_none(), "{bad} was served");
        }
    }
}
