//! An S3-compatible bucket (AWS, MinIO, Garage, Ceph, Wasabi, Backblaze…)
//! as a backup target, spoken to with plain HTTP and a hand-written AWS
//! Signature V4 instead of an SDK: berth needs ten operations, and the AWS
//! SDK would bring hundreds of crates and its own TLS and HTTP stacks.
//!
//! URLs are path-style (`{endpoint}/{bucket}/{key}`) because that is what
//! every S3-compatible server understands; virtual-host style needs DNS
//! for every bucket name, which self-hosted servers rarely have.
//!
//! An archive of at least one part goes up as a multipart upload, read and
//! sent one part at a time so memory stays at about one part: S3 makes a
//! multipart object visible only on CompleteMultipartUpload, so a berth
//! killed mid-upload leaves an invisible unfinished upload (which `sweep`
//! aborts) rather than a truncated object that looks like an archive. A
//! body smaller than one part is sent with a single PutObject, which is
//! atomic by itself.
//! Each part carries its Content-MD5, so the server refuses a part that was
//! damaged on the way; after completing, the object's size and ETag are
//! read back and compared with what was sent, which also catches parts
//! assembled in the wrong order or missing.

use std::fmt;
use std::time::Duration;

use anyhow::{bail, Context};
use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use futures::TryStreamExt;
use hmac::{Hmac, Mac};
use md5::Md5;
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use zeroize::Zeroizing;

use super::{check_name, Listed, Reader, Store, Stored};

/// How much of the archive is held in memory at a time. S3 wants parts of
/// at least 5 MiB (except the last) and at most 10,000 of them: 8 MiB parts
/// allow archives up to 78 GiB while keeping memory small.
const PART_SIZE: usize = 8 * 1024 * 1024;
const MAX_PARTS: usize = 10_000;

/// SHA-256 of the empty body, sent with every request that has none.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Where a bucket is and how to sign in to it.
#[derive(Clone)]
pub struct S3Config {
    /// `http://127.0.0.1:9000` or `https://s3.eu-central-1.amazonaws.com`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// `""` or `some/dir/`: prepended to every object name.
    pub prefix: String,
}

/// The secret must never reach a log line, even through `{:?}`.
impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("prefix", &self.prefix)
            .finish()
    }
}

pub struct S3 {
    client: reqwest::Client,
    /// `scheme://host[:port]`, without a trailing slash.
    origin: String,
    /// The Host header exactly as reqwest sends it (the default port left
    /// out), since it is part of what is signed.
    host: String,
    bucket: String,
    region: String,
    access_key: String,
    secret_key: Zeroizing<String>,
    prefix: String,
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3")
            .field("origin", &self.origin)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// One request before it is signed.
struct Call {
    method: Method,
    /// The full object key, or `None` for a request on the bucket itself.
    key: Option<String>,
    /// Unencoded; an empty value is sent as a bare name (`?uploads`).
    query: Vec<(&'static str, String)>,
    body: Bytes,
    /// Hex SHA-256 of `body`.
    payload_sha256: String,
    content_md5: Option<String>,
    /// Whether sending it twice does no harm, so that a dropped connection
    /// or a 500/503 can be retried.
    idempotent: bool,
}

impl Call {
    fn new(method: Method, key: Option<String>) -> Call {
        Call {
            method,
            key,
            query: Vec::new(),
            body: Bytes::new(),
            payload_sha256: EMPTY_SHA256.to_string(),
            content_md5: None,
            idempotent: true,
        }
    }

    fn query(mut self, name: &'static str, value: impl Into<String>) -> Call {
        self.query.push((name, value.into()));
        self
    }
}

/// A part as it went up: its number, the ETag the server answered and
/// the MD5 berth computed.
struct Part {
    number: usize,
    etag: String,
    md5: [u8; 16],
}

impl S3 {
    pub fn new(config: S3Config) -> anyhow::Result<S3> {
        let url = reqwest::Url::parse(config.endpoint.trim())
            .with_context(|| format!("S3 endpoint {:?} is not a URL", config.endpoint))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!(
                "S3 endpoint {:?} must start with http:// or https://",
                config.endpoint
            );
        }
        let Some(host_name) = url.host_str() else {
            bail!("S3 endpoint {:?} has no host", config.endpoint);
        };
        // A path under the endpoint would have to be signed in its canonical
        // form too; no S3-compatible server needs one, so none is accepted.
        if (url.path() != "/" && !url.path().is_empty())
            || url.query().is_some()
            || url.fragment().is_some()
        {
            bail!(
                "S3 endpoint {:?} must be only scheme://host[:port]: the bucket goes in its own field",
                config.endpoint
            );
        }
        if !url.username().is_empty() || url.password().is_some() {
            bail!("S3 endpoint must not contain credentials: use the access and secret key fields");
        }
        let host = match url.port() {
            Some(port) => format!("{host_name}:{port}"),
            None => host_name.to_string(),
        };
        let origin = format!("{}://{host}", url.scheme());

        let bucket = config.bucket.trim().to_string();
        // Wider than today's AWS rules (old buckets and other servers allow
        // capitals and underscores), but only characters that need no
        // encoding in the path, so the bucket is signed as it is sent.
        let bucket_ok = (3..=255).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !bucket_ok {
            bail!(
                "S3 bucket name {:?} is not valid: at least 3 letters, digits, dots, hyphens or underscores",
                config.bucket
            );
        }
        let region = config.region.trim().to_string();
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!(
                "S3 region {:?} is not valid (e.g. us-east-1)",
                config.region
            );
        }
        let access_key = config.access_key.trim().to_string();
        if access_key.is_empty() || access_key.contains(['/', ',', ' ']) {
            bail!("S3 access key is empty or contains '/', ',' or spaces");
        }
        if config.secret_key.is_empty() {
            bail!("S3 secret key is empty");
        }
        let prefix = config.prefix;
        if prefix.starts_with('/') || prefix.split('/').any(|p| p == "." || p == "..") {
            bail!("S3 prefix {prefix:?} must be relative and without . or .. parts");
        }

        // No total timeout: an archive of many GiB legitimately takes hours
        // to stream. A connection that stops moving is what must fail.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(300))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client for S3")?;

        Ok(S3 {
            client,
            origin,
            host,
            bucket,
            region,
            access_key,
            secret_key: Zeroizing::new(config.secret_key),
            prefix,
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn where_(&self, key: &str) -> String {
        format!("{key} in bucket {}", self.bucket)
    }

    /// Builds the signed request. The signing happens here, per attempt,
    /// because a retry after a long stall needs a fresh date.
    fn request(&self, call: &Call, now: time::OffsetDateTime) -> reqwest::RequestBuilder {
        let mut path = format!("/{}", self.bucket);
        if let Some(key) = &call.key {
            path.push('/');
            path.push_str(&uri_encode(key, false));
        }
        let mut url = format!("{}{path}", self.origin);
        if !call.query.is_empty() {
            url.push('?');
            let sent: Vec<String> = call
                .query
                .iter()
                .map(|(name, value)| {
                    if value.is_empty() {
                        // `?uploads=` is not understood everywhere; the SDKs send
                        // `?uploads` and sign it as `uploads=`.
                        (*name).to_string()
                    } else {
                        format!("{}={}", uri_encode(name, true), uri_encode(value, true))
                    }
                })
                .collect();
            url.push_str(&sent.join("&"));
        }

        let amz_date = amz_date(now);
        let mut headers: Vec<(&str, String)> = vec![
            ("host", self.host.clone()),
            ("x-amz-content-sha256", call.payload_sha256.clone()),
            ("x-amz-date", amz_date.clone()),
        ];
        if let Some(md5) = &call.content_md5 {
            headers.push(("content-md5", md5.clone()));
        }
        let authorization = sign(
            &Signing {
                access_key: &self.access_key,
                secret_key: &self.secret_key,
                region: &self.region,
                amz_date: &amz_date,
            },
            call.method.as_str(),
            &path,
            &call.query,
            &headers,
            &call.payload_sha256,
        );

        let mut builder = self.client.request(call.method.clone(), url);
        for (name, value) in headers {
            if name != "host" {
                builder = builder.header(name, value);
            }
        }
        builder = builder.header("authorization", authorization);
        if matches!(call.method, Method::PUT | Method::POST) {
            // S3 refuses a PUT without Content-Length (411), and an empty
            // body would otherwise go without one.
            builder = builder
                .header("content-length", call.body.len())
                .body(call.body.clone());
        }
        builder
    }

    /// Sends a request, retrying what can be retried, and returns the
    /// response whatever its status.
    async fn send_any(&self, what: &str, call: &Call) -> anyhow::Result<reqwest::Response> {
        let attempts = if call.idempotent { 3 } else { 1 };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .request(call, time::OffsetDateTime::now_utc())
                .send()
                .await;
            let retry = attempt < attempts
                && match &result {
                    Ok(response) => matches!(
                        response.status(),
                        StatusCode::INTERNAL_SERVER_ERROR | StatusCode::SERVICE_UNAVAILABLE
                    ),
                    Err(e) => e.is_connect() || e.is_timeout() || e.is_request(),
                };
            if retry {
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                continue;
            }
            return result.map_err(|e| anyhow::anyhow!("{what}: {}", describe(&e)));
        }
    }

    /// Sends a request and turns any status but 2xx into an error.
    async fn send(&self, what: &str, call: &Call) -> anyhow::Result<reqwest::Response> {
        let response = self.send_any(what, call).await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(failure(what, response).await)
        }
    }

    async fn head(&self, key: &str) -> anyhow::Result<Option<(u64, Option<String>)>> {
        let what = format!("S3 HEAD of {}", self.where_(key));
        let response = self
            .send_any(&what, &Call::new(Method::HEAD, Some(key.to_string())))
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(failure(&what, response).await);
        }
        let size = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("{what}: the answer has no Content-Length"))?;
        Ok(Some((size, etag_of(&response))))
    }

    async fn delete_key(&self, key: &str) -> anyhow::Result<()> {
        let what = format!("S3 DELETE of {}", self.where_(key));
        let response = self
            .send_any(&what, &Call::new(Method::DELETE, Some(key.to_string())))
            .await?;
        // S3 answers 204 for a missing key too; some compatibles say 404.
        if response.status().is_success() || response.status() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(failure(&what, response).await)
        }
    }

    /// Reads the object back and compares it with what was sent; a mismatch
    /// deletes it so that nothing that failed the check stays around.
    async fn verify(&self, key: &str, size: u64, etag: &str) -> anyhow::Result<Stored> {
        let found = self.head(key).await;
        let problem = match &found {
            Ok(Some((found_size, found_etag))) => {
                let etag_ok = found_etag
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(etag));
                if *found_size == size && etag_ok {
                    return Ok(Stored {
                        size,
                        etag: Some(etag.to_string()),
                    });
                }
                format!(
                    "the bucket reports {found_size} bytes with ETag {}, but {size} bytes with ETag {etag} were sent",
                    found_etag.as_deref().unwrap_or("(none)")
                )
            }
            Ok(None) => "the object is missing right after the upload".to_string(),
            Err(e) => format!("{e:#}"),
        };
        let cleanup = match self.delete_key(key).await {
            Ok(()) => "it was deleted".to_string(),
            Err(e) => format!("deleting it failed too: {e:#}"),
        };
        bail!(
            "S3 check after uploading {}: {problem}; {cleanup}",
            self.where_(key)
        )
    }

    async fn put_single(&self, key: &str, data: Bytes) -> anyhow::Result<Stored> {
        let (md5, sha256) = digests(data.clone()).await?;
        let size = data.len() as u64;
        let mut call = Call::new(Method::PUT, Some(key.to_string()));
        call.body = data;
        call.payload_sha256 = hex::encode(sha256);
        call.content_md5 = Some(base64::engine::general_purpose::STANDARD.encode(md5));
        let what = format!("S3 PUT of {}", self.where_(key));
        let response = self.send(&what, &call).await?;
        let expected = hex::encode(md5);
        // An ETag that is not the MD5 (SSE-KMS, SSE-C) fails here and in
        // `verify`: berth cannot then tell that the bytes arrived intact.
        if let Some(got) = etag_of(&response) {
            if !got.eq_ignore_ascii_case(&expected) {
                let _ = self.delete_key(key).await;
                bail!("{what}: the bucket answered ETag {got} for a body with MD5 {expected}; the object was deleted");
            }
        }
        self.verify(key, size, &expected).await
    }

    pub(crate) async fn create_multipart(&self, key: &str) -> anyhow::Result<String> {
        let what = format!("S3 start of a multipart upload of {}", self.where_(key));
        let mut call = Call::new(Method::POST, Some(key.to_string())).query("uploads", "");
        // A second CreateMultipartUpload would leave the first one dangling.
        call.idempotent = false;
        let body = self.send(&what, &call).await?.text().await;
        let body = body.map_err(|e| anyhow::anyhow!("{what}: {}", describe(&e)))?;
        xml_first(&body, "UploadId").with_context(|| format!("{what}: the answer has no UploadId"))
    }

    async fn upload_part(
        &self,
        key: &str,
        upload: &str,
        number: usize,
        data: Bytes,
    ) -> anyhow::Result<Part> {
        let (md5, sha256) = digests(data.clone()).await?;
        let mut call = Call::new(Method::PUT, Some(key.to_string()))
            .query("partNumber", number.to_string())
            .query("uploadId", upload);
        call.body = data;
        call.payload_sha256 = hex::encode(sha256);
        call.content_md5 = Some(base64::engine::general_purpose::STANDARD.encode(md5));
        let what = format!("S3 PUT part {number} of {}", self.where_(key));
        let response = self.send(&what, &call).await?;
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .with_context(|| format!("{what}: the answer has no ETag"))?;
        Ok(Part { number, etag, md5 })
    }

    async fn complete(&self, key: &str, upload: &str, parts: &[Part]) -> anyhow::Result<()> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for part in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                part.number,
                xml_escape(&part.etag)
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let body = Bytes::from(xml);
        let mut call = Call::new(Method::POST, Some(key.to_string())).query("uploadId", upload);
        call.payload_sha256 = hex::encode(Sha256::digest(&body));
        call.body = body;
        let what = format!(
            "S3 completion of the multipart upload of {}",
            self.where_(key)
        );
        let text = self.send(&what, &call).await?.text().await;
        let text = text.map_err(|e| anyhow::anyhow!("{what}: {}", describe(&e)))?;
        // S3 may answer 200 and only then find a problem, which it reports as
        // an <Error> document in the body of that 200.
        if text.contains("<Error>") {
            bail!(
                "{what}: {}",
                error_words(&text).unwrap_or_else(|| "an error without details".into())
            );
        }
        Ok(())
    }

    /// Aborts an unfinished upload. `Ok(false)` when it was already gone.
    async fn abort(&self, key: &str, upload: &str) -> anyhow::Result<bool> {
        let what = format!("S3 abort of the multipart upload of {}", self.where_(key));
        let call = Call::new(Method::DELETE, Some(key.to_string())).query("uploadId", upload);
        let response = self.send_any(&what, &call).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if !response.status().is_success() {
            return Err(failure(&what, response).await);
        }
        Ok(true)
    }

    /// Everything after the first full part: the rest of the parts, the
    /// completion and the check. Any error leaves cleaning up to the caller.
    async fn put_parts(
        &self,
        key: &str,
        upload: &str,
        first: Bytes,
        body: &mut Reader,
        size: &mut u64,
        parts: &mut Vec<Part>,
    ) -> anyhow::Result<()> {
        let mut data = first;
        loop {
            let number = parts.len() + 1;
            if number > MAX_PARTS {
                bail!(
                    "S3 upload of {}: the archive is larger than {MAX_PARTS} parts of {} MiB",
                    self.where_(key),
                    PART_SIZE >> 20
                );
            }
            *size += data.len() as u64;
            parts.push(self.upload_part(key, upload, number, data).await?);
            data = read_part(body).await.with_context(|| {
                format!(
                    "reading the archive for part {} of {}",
                    number + 1,
                    self.where_(key)
                )
            })?;
            if data.is_empty() {
                return Ok(());
            }
        }
    }

    async fn put_multipart(
        &self,
        key: &str,
        first: Bytes,
        mut body: Reader,
    ) -> anyhow::Result<Stored> {
        let upload = self.create_multipart(key).await?;
        let mut size = 0;
        let mut parts = Vec::new();
        let uploaded = self
            .put_parts(key, &upload, first, &mut body, &mut size, &mut parts)
            .await;
        let etag = multipart_etag(&parts);
        let completing = uploaded.is_ok();
        let error = match uploaded {
            Ok(()) => match self.complete(key, &upload, &parts).await {
                Ok(()) => return self.verify(key, size, &etag).await,
                Err(error) => error,
            },
            Err(error) => error,
        };
        match self.abort(key, &upload).await {
            Ok(true) => Err(error),
            // The upload is gone although berth did not abort it: a
            // completion went through (a retry after a lost answer, say).
            // Whether the object is what was sent decides; `verify` deletes
            // it otherwise.
            Ok(false) if completing => match self.verify(key, size, &etag).await {
                Ok(stored) => Ok(stored),
                Err(check) => Err(anyhow::anyhow!("{error:#}; {check:#}")),
            },
            Ok(false) => Err(error),
            Err(abort) => Err(anyhow::anyhow!(
                "{error:#}; aborting the upload failed too, a later sweep removes it: {abort:#}"
            )),
        }
    }
}

#[async_trait]
impl Store for S3 {
    async fn put(&self, name: &str, mut body: Reader) -> anyhow::Result<Stored> {
        check_name(name)?;
        let key = self.key(name);
        let first = read_part(&mut body)
            .await
            .with_context(|| format!("reading the archive for {}", self.where_(&key)))?;
        if first.len() < PART_SIZE {
            self.put_single(&key, first).await
        } else {
            self.put_multipart(&key, first, body).await
        }
    }

    async fn open(&self, name: &str) -> anyhow::Result<Reader> {
        check_name(name)?;
        let key = self.key(name);
        let what = format!("S3 GET of {}", self.where_(&key));
        let response = self.send(&what, &Call::new(Method::GET, Some(key))).await?;
        let stream = response
            .bytes_stream()
            .map_err(|e| std::io::Error::other(describe(&e)));
        Ok(Box::pin(tokio_util::io::StreamReader::new(stream)))
    }

    async fn delete(&self, name: &str) -> anyhow::Result<()> {
        check_name(name)?;
        self.delete_key(&self.key(name)).await
    }

    async fn stat(&self, name: &str) -> anyhow::Result<Option<u64>> {
        check_name(name)?;
        Ok(self.head(&self.key(name)).await?.map(|(size, _)| size))
    }

    async fn list(&self, prefix: &str) -> anyhow::Result<Vec<Listed>> {
        check_prefix(prefix)?;
        let full = self.key(prefix);
        let what = format!("S3 listing of {}", self.where_(&full));
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut call = Call::new(Method::GET, None)
                .query("list-type", "2")
                .query("prefix", full.clone());
            if let Some(token) = &token {
                call = call.query("continuation-token", token.clone());
            }
            let text = self.send(&what, &call).await?.text().await;
            let text = text.map_err(|e| anyhow::anyhow!("{what}: {}", describe(&e)))?;
            for entry in xml_all(&text, "Contents") {
                let key = xml_first(entry, "Key")
                    .with_context(|| format!("{what}: an entry without Key"))?;
                let size = xml_first(entry, "Size")
                    .and_then(|s| s.parse::<u64>().ok())
                    .with_context(|| format!("{what}: {key} has no size"))?;
                if let Some(name) = key.strip_prefix(&self.prefix) {
                    found.push(Listed {
                        name: name.to_string(),
                        size,
                    });
                }
            }
            let truncated = xml_first(&text, "IsTruncated").is_some_and(|t| t == "true");
            token = xml_first(&text, "NextContinuationToken");
            if !truncated {
                return Ok(found);
            }
            if token.is_none() {
                bail!("{what}: the listing is truncated but has no continuation token");
            }
        }
    }

    async fn sweep(&self, prefix: &str) -> anyhow::Result<usize> {
        check_prefix(prefix)?;
        let full = self.key(prefix);
        let what = format!(
            "S3 listing of unfinished uploads under {}",
            self.where_(&full)
        );
        let mut aborted = 0;
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut call = Call::new(Method::GET, None)
                .query("uploads", "")
                .query("prefix", full.clone());
            if let Some((key, upload)) = &markers {
                call = call
                    .query("key-marker", key.clone())
                    .query("upload-id-marker", upload.clone());
            }
            let text = self.send(&what, &call).await?.text().await;
            let text = text.map_err(|e| anyhow::anyhow!("{what}: {}", describe(&e)))?;
            for entry in xml_all(&text, "Upload") {
                let (Some(key), Some(upload)) =
                    (xml_first(entry, "Key"), xml_first(entry, "UploadId"))
                else {
                    bail!("{what}: an upload without Key or UploadId");
                };
                if self.abort(&key, &upload).await? {
                    aborted += 1;
                }
            }
            let truncated = xml_first(&text, "IsTruncated").is_some_and(|t| t == "true");
            if !truncated {
                return Ok(aborted);
            }
            match (
                xml_first(&text, "NextKeyMarker"),
                xml_first(&text, "NextUploadIdMarker"),
            ) {
                (Some(key), Some(upload)) => markers = Some((key, upload)),
                _ => bail!("{what}: the listing is truncated but has no markers to go on from"),
            }
        }
    }
}

/// Prefixes as `list` and `sweep` take them: like names, but empty or
/// ending in `/`.
fn check_prefix(prefix: &str) -> anyhow::Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_name(prefix.strip_suffix('/').unwrap_or(prefix))
}

/// Fills one part from the reader: `PART_SIZE` bytes, fewer only at the end.
async fn read_part(body: &mut Reader) -> std::io::Result<Bytes> {
    let mut buf = Vec::with_capacity(PART_SIZE);
    body.take(PART_SIZE as u64).read_to_end(&mut buf).await?;
    Ok(Bytes::from(buf))
}

/// MD5 (for Content-MD5 and the ETag) and SHA-256 (for the signature) of a
/// part, off the async threads: hashing 8 MiB takes tens of milliseconds.
///
/// The real payload hash is signed rather than `UNSIGNED-PAYLOAD` because
/// several S3-compatible servers refuse unsigned payloads over plain HTTP,
/// which is how a MinIO on the same host is usually reached, and the cost
/// is small next to the compression and encryption the archive went through.
async fn digests(data: Bytes) -> anyhow::Result<([u8; 16], [u8; 32])> {
    tokio::task::spawn_blocking(move || (Md5::digest(&data).into(), Sha256::digest(&data).into()))
        .await
        .context("hashing a part")
}

/// The ETag S3 gives a multipart object: the MD5 of the parts' MD5s, then
/// the number of parts.
fn multipart_etag(parts: &[Part]) -> String {
    let mut all = Md5::new();
    for part in parts {
        all.update(part.md5);
    }
    format!("{}-{}", hex::encode(all.finalize()), parts.len())
}

fn etag_of(response: &reqwest::Response) -> Option<String> {
    let etag = response.headers().get("etag")?.to_str().ok()?;
    Some(etag.trim().trim_matches('"').to_string())
}

/// A reqwest error with its causes ("connection refused" sits a few levels
/// down). None of them carries headers, so the signature cannot leak here.
fn describe(error: &reqwest::Error) -> String {
    let mut words = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        words.push_str(": ");
        words.push_str(&cause.to_string());
        source = cause.source();
    }
    words
}

/// An error answer in words: status, S3's error code and message. Only
/// `Code` and `Message` are taken: AWS also echoes the string to sign and
/// the signature provided, which have no place in berth's messages.
async fn failure(what: &str, response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let detail =
        error_words(&text).unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
    anyhow::anyhow!("{what}: {} {detail}", status.as_u16())
}

fn error_words(xml: &str) -> Option<String> {
    let code = xml_first(xml, "Code")?;
    let message = xml_first(xml, "Message").unwrap_or_default();
    let mut words = if message.is_empty() {
        code
    } else {
        format!("{code}: {message}")
    };
    words.retain(|c| !c.is_control());
    if words.len() > 500 {
        let mut cut = 500;
        while !words.is_char_boundary(cut) {
            cut -= 1;
        }
        words.truncate(cut);
        words.push('…');
    }
    Some(words)
}

// --- Just enough XML for S3's answers ---------------------------------------
//
// S3's answers are flat documents of known elements without attributes
// below the root, so finding `<Tag>…</Tag>` is exact enough and avoids an
// XML parser dependency.

/// The raw inner text of every `<tag>…</tag>`.
fn xml_all<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        found.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    found
}

/// The text of the first `<tag>…</tag>`, entities decoded.
fn xml_first(xml: &str, tag: &str) -> Option<String> {
    xml_all(xml, tag).first().map(|s| xml_unescape(s))
}

fn xml_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let Some(semi) = after.find(';') else {
            out.push_str(&rest[amp..]);
            return out;
        };
        let entity = &after[..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| entity.strip_prefix('#').map(|d| d.parse::<u32>()))
                .and_then(|n| n.ok())
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

// --- AWS Signature Version 4 -------------------------------------------------

struct Signing<'a> {
    access_key: &'a str,
    secret_key: &'a str,
    region: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, also sent as `x-amz-date`.
    amz_date: &'a str,
}

fn amz_date(now: time::OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// SigV4's encoding: everything but `A-Z a-z 0-9 - _ . ~` as `%XX`, and `/`
/// kept in paths (S3 keys are not double-encoded, unlike other services).
fn uri_encode(text: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The Authorization header for a request. `path` is already encoded as
/// sent; `headers` are lowercase names with the values sent, including
/// `host`; all of them are signed.
fn sign(
    signing: &Signing<'_>,
    method: &str,
    path: &str,
    query: &[(&str, String)],
    headers: &[(&str, String)],
    payload_sha256: &str,
) -> String {
    let mut query: Vec<(String, String)> = query
        .iter()
        .map(|(name, value)| (uri_encode(name, true), uri_encode(value, true)))
        .collect();
    query.sort();
    let query: Vec<String> = query.into_iter().map(|(n, v)| format!("{n}={v}")).collect();

    let mut headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            (name.to_ascii_lowercase(), value)
        })
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");

    let canonical_request = format!(
        "{method}\n{path}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_sha256}",
        query.join("&")
    );
    let date = &signing.amz_date[..8];
    let scope = format!("{date}/{}/s3/aws4_request", signing.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        signing.amz_date,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let secret = Zeroizing::new(format!("AWS4{}", signing.secret_key));
    let key = hmac(secret.as_bytes(), date.as_bytes());
    let key = hmac(&key, signing.region.as_bytes());
    let key = hmac(&key, b"s3");
    let key = hmac(&key, b"aws4_request");
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed_headers},Signature={signature}",
        signing.access_key
    )
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::pin::Pin;
    use std::task::Poll;

    use rand::RngCore;
    use tokio::io::{AsyncRead, ReadBuf};

    use super::*;

    use crate::backups::target::test_rig::Moto;

    const BUCKET: &str = "berth-backups";

    impl Moto {
        fn config(&self, prefix: &str) -> S3Config {
            S3Config {
                endpoint: self.endpoint.clone(),
                bucket: BUCKET.into(),
                region: "us-east-1".into(),
                access_key: self.access_key.clone(),
                secret_key: self.secret_key.clone(),
                prefix: prefix.into(),
            }
        }

        fn store(&self, prefix: &str) -> S3 {
            S3::new(self.config(prefix)).unwrap()
        }
    }

    fn random(len: usize) -> Vec<u8> {
        let mut data = vec![0; len];
        rand::thread_rng().fill_bytes(&mut data);
        data
    }

    fn reader(data: Vec<u8>) -> Reader {
        Box::pin(Cursor::new(data))
    }

    async fn read_all(mut reader: Reader) -> Vec<u8> {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        out
    }

    /// Gives `left` bytes, then fails as a dying disk or pipeline would.
    struct FailsAfter {
        left: usize,
    }

    impl AsyncRead for FailsAfter {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.left == 0 {
                return Poll::Ready(Err(std::io::Error::other("the archive pipeline broke")));
            }
            let n = self.left.min(buf.remaining()).min(64 * 1024);
            buf.put_slice(&vec![7; n]);
            self.left -= n;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn multipart_upload_round_trips_and_deletes() {
        let moto = Moto::start(BUCKET);
        let s3 = moto.store("berth/");
        let data = random(20 * 1024 * 1024 + 12_345);
        let stored = s3
            .put("job/2026-a.tar.zst.age", reader(data.clone()))
            .await
            .unwrap();
        assert_eq!(stored.size, data.len() as u64);
        // Three parts: 8 + 8 + the rest, and the ETag berth expected is the
        // one moto computed (put checks that), in S3's multipart form.
        let etag = stored.etag.unwrap();
        assert!(etag.ends_with("-3"), "{etag}");

        assert_eq!(
            s3.stat("job/2026-a.tar.zst.age").await.unwrap(),
            Some(data.len() as u64)
        );
        assert_eq!(
            s3.list("job/").await.unwrap(),
            vec![Listed {
                name: "job/2026-a.tar.zst.age".into(),
                size: data.len() as u64
            }]
        );
        assert_eq!(s3.list("other/").await.unwrap(), vec![]);
        // The prefix is part of the real key, and hidden from names.
        let bare = moto.store("");
        assert_eq!(
            bare.stat("berth/job/2026-a.tar.zst.age").await.unwrap(),
            Some(data.len() as u64)
        );

        let back = read_all(s3.open("job/2026-a.tar.zst.age").await.unwrap()).await;
        assert_eq!(back.len(), data.len());
        assert_eq!(Sha256::digest(&back), Sha256::digest(&data));

        s3.delete("job/2026-a.tar.zst.age").await.unwrap();
        assert_eq!(s3.stat("job/2026-a.tar.zst.age").await.unwrap(), None);
        assert_eq!(s3.list("").await.unwrap(), vec![]);
        // A missing object is not an error to delete, but is to open.
        s3.delete("job/2026-a.tar.zst.age").await.unwrap();
        let missing = s3
            .open("job/2026-a.tar.zst.age")
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            missing.contains("404") && missing.contains(BUCKET),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn small_exact_and_empty_bodies() {
        let moto = Moto::start(BUCKET);
        let s3 = moto.store("");

        let small = random(1000);
        let stored = s3.put("j/small", reader(small.clone())).await.unwrap();
        assert_eq!(stored.size, 1000);
        assert_eq!(stored.etag.unwrap(), hex::encode(Md5::digest(&small)));
        assert_eq!(read_all(s3.open("j/small").await.unwrap()).await, small);

        // Exactly one full part: the multipart path with a single part.
        let exact = random(PART_SIZE);
        let stored = s3.put("j/exact", reader(exact.clone())).await.unwrap();
        assert!(stored.etag.unwrap().ends_with("-1"));
        assert_eq!(
            Sha256::digest(read_all(s3.open("j/exact").await.unwrap()).await),
            Sha256::digest(&exact)
        );

        let stored = s3.put("j/empty", reader(Vec::new())).await.unwrap();
        assert_eq!(stored.size, 0);
        assert_eq!(s3.stat("j/empty").await.unwrap(), Some(0));
        assert!(read_all(s3.open("j/empty").await.unwrap()).await.is_empty());

        // What fails the check after an upload does not stay around.
        let mismatch = format!(
            "{:#}",
            s3.verify("j/small", 1000, "0123").await.unwrap_err()
        );
        assert!(
            mismatch.contains("ETag") && mismatch.contains("deleted"),
            "{mismatch}"
        );
        assert_eq!(s3.stat("j/small").await.unwrap(), None);
        s3.put("j/small", reader(small.clone())).await.unwrap();

        let mut names: Vec<String> = s3
            .list("j/")
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        names.sort();
        assert_eq!(names, ["j/empty", "j/exact", "j/small"]);
        assert!(s3.put("../escape", reader(small)).await.is_err());
    }

    #[tokio::test]
    async fn a_reader_failing_midway_leaves_nothing() {
        let moto = Moto::start(BUCKET);
        let s3 = moto.store("berth/");
        let body: Reader = Box::pin(FailsAfter {
            left: 11 * 1024 * 1024,
        });
        let error = format!("{:#}", s3.put("job/broken", body).await.unwrap_err());
        assert!(error.contains("the archive pipeline broke"), "{error}");
        assert!(error.contains("part 2"), "{error}");
        assert_eq!(s3.stat("job/broken").await.unwrap(), None);
        assert_eq!(s3.list("").await.unwrap(), vec![]);
        // Had the put not aborted its upload, sweep would find it here.
        assert_eq!(s3.sweep("").await.unwrap(), 0);
        assert_eq!(moto.store("").sweep("").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn sweep_aborts_unfinished_uploads_under_the_prefix() {
        let moto = Moto::start(BUCKET);
        let s3 = moto.store("berth/");
        let upload = s3.create_multipart("berth/a/killed").await.unwrap();
        s3.upload_part("berth/a/killed", &upload, 1, Bytes::from(random(1000)))
            .await
            .unwrap();
        s3.create_multipart("berth/b/killed").await.unwrap();
        // Outside the store's prefix: never touched.
        let foreign = s3.create_multipart("elsewhere/x").await.unwrap();

        assert_eq!(s3.sweep("a/").await.unwrap(), 1);
        assert_eq!(s3.sweep("a/").await.unwrap(), 0);
        assert_eq!(s3.sweep("").await.unwrap(), 1);
        assert_eq!(s3.sweep("").await.unwrap(), 0);
        assert_eq!(s3.list("").await.unwrap(), vec![]);
        assert!(
            s3.abort("elsewhere/x", &foreign).await.unwrap(),
            "the foreign upload was swept"
        );
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_in_words_without_the_secret() {
        let moto = Moto::start(BUCKET);
        let secret = "Wr0ngSecretThatMustNotBePrinted";
        let s3 = S3::new(S3Config {
            secret_key: secret.into(),
            ..moto.config("")
        })
        .unwrap();
        let put = format!(
            "{:#}",
            s3.put("j/x", reader(random(100))).await.unwrap_err()
        );
        assert!(
            put.contains("403") && put.contains("SignatureDoesNotMatch"),
            "{put}"
        );
        assert!(put.contains(BUCKET) && put.contains("j/x"), "{put}");
        let big = format!(
            "{:#}",
            s3.put("j/y", reader(random(PART_SIZE + 1)))
                .await
                .unwrap_err()
        );
        assert!(big.contains("SignatureDoesNotMatch"), "{big}");
        let list = format!("{:#}", s3.list("j/").await.unwrap_err());
        let stat = format!("{:#}", s3.stat("j/x").await.unwrap_err());
        assert!(stat.contains("403"), "{stat}");
        for message in [&put, &big, &list, &stat] {
            assert!(!message.contains(secret), "{message}");
            assert!(!message.contains(&moto.secret_key), "{message}");
            assert!(!message.contains("Signature="), "{message}");
        }
        assert!(!format!("{s3:?}").contains(secret));
        // The right key still works against the same server.
        moto.store("")
            .put("j/x", reader(random(100)))
            .await
            .unwrap();
    }

    #[test]
    fn signs_like_the_aws_documentation_example() {
        // The GET Object example of the SigV4 documentation for S3 (it
        // uses virtual-host style, which only changes the host and path).
        let auth = sign(
            &Signing {
                access_key: "AKIAIOSFODNN7EXAMPLE",
                secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                region: "us-east-1",
                amz_date: "20130524T000000Z",
            },
            "GET",
            "/test.txt",
            &[],
            &[
                ("host", "examplebucket.s3.amazonaws.com".into()),
                ("range", "bytes=0-9".into()),
                ("x-amz-content-sha256", EMPTY_SHA256.into()),
                ("x-amz-date", "20130524T000000Z".into()),
            ],
            EMPTY_SHA256,
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn encodes_keys_and_reads_xml() {
        assert_eq!(uri_encode("job/a b+c~ü", false), "job/a%20b%2Bc~%C3%BC");
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
        assert_eq!(xml_unescape("a&amp;b&lt;&#65;&#x42;&bogus"), "a&b<AB&bogus");
        let xml = "<R><Contents><Key>a&amp;b</Key><Size>3</Size></Contents><Contents><Key>c</Key></Contents></R>";
        let keys: Vec<_> = xml_all(xml, "Contents")
            .iter()
            .map(|c| xml_first(c, "Key").unwrap())
            .collect();
        assert_eq!(keys, ["a&b", "c"]);
        assert_eq!(
            error_words("<Error><Code>AccessDenied</Code><Message>No</Message><SignatureProvided>abc</SignatureProvided></Error>")
                .unwrap(),
            "AccessDenied: No"
        );
    }

    #[test]
    fn refuses_bad_configuration_and_hides_the_secret() {
        let good = S3Config {
            endpoint: "https://s3.eu-central-1.amazonaws.com".into(),
            bucket: "my-backups".into(),
            region: "eu-central-1".into(),
            access_key: "AKIA".into(),
            secret_key: "s3cr3t".into(),
            prefix: "berth/".into(),
        };
        let s3 = S3::new(good.clone()).unwrap();
        assert_eq!(s3.host, "s3.eu-central-1.amazonaws.com");
        assert_eq!(
            S3::new(S3Config {
                endpoint: "http://127.0.0.1:9000/".into(),
                ..good.clone()
            })
            .unwrap()
            .host,
            "127.0.0.1:9000"
        );
        for bad in [
            S3Config {
                endpoint: "ftp://x".into(),
                ..good.clone()
            },
            S3Config {
                endpoint: "http://x/bucket".into(),
                ..good.clone()
            },
            S3Config {
                endpoint: "http://u:p@x".into(),
                ..good.clone()
            },
            S3Config {
                bucket: "a/b".into(),
                ..good.clone()
            },
            S3Config {
                bucket: "my bucket".into(),
                ..good.clone()
            },
            S3Config {
                region: "".into(),
                ..good.clone()
            },
            S3Config {
                secret_key: "".into(),
                ..good.clone()
            },
            S3Config {
                prefix: "/abs/".into(),
                ..good.clone()
            },
            S3Config {
                prefix: "a/../".into(),
                ..good.clone()
            },
        ] {
            assert!(S3::new(bad.clone()).is_err(), "{bad:?}");
        }
        assert!(!format!("{good:?}").contains("s3cr3t"));
        assert!(!format!("{s3:?}").contains("s3cr3t"));
    }
}
