//! A directory on another machine, reached over SFTP (the SSH file transfer
//! subsystem), as a backup target.
//!
//! Pure Rust end to end: `russh` (with the `ring` crypto backend, so no C
//! toolchain is needed) carries the SSH connection and `russh-sftp` speaks the
//! SFTP protocol on its `sftp` subsystem channel. Only SFTP requests are ever
//! sent; no remote command or shell is run, so no string is ever interpreted
//! by a shell on the other side.
//!
//! Every operation opens its own SSH connection and closes it afterwards:
//! backups run rarely and for long, and a fresh connection cannot be found
//! broken by an idle timeout, a NAS going to sleep or a server restart.
//!
//! Host keys: with `SftpConfig::host_key` set, a server presenting any other
//! key is refused before authentication, so neither the password nor a
//! signature reaches an impostor. With `None` any key is accepted; that is
//! only meant for the moment the admin adds the target: the caller first
//! calls [`fetch_host_key`], shows its fingerprint for confirmation, and then
//! stores it as the pin.
//!
//! Uploads go to `{name}.partial` and are renamed into place only after all
//! bytes were acknowledged, synced (`fsync@openssh.com`) and the size read
//! back, so a half-written file never carries an archive's name.
//!
//! Keys: Ed25519 and ECDSA, for the host and for logging in. RSA is left out
//! (russh's `rsa` feature pulls a release-candidate `rsa` crate); OpenSSH
//! servers have offered an Ed25519 host key by default for years.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use async_trait::async_trait;
use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::rawsession::Limits;
use russh_sftp::client::{RawSftpSession, SftpSession};
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::task::JoinHandle;

use super::{check_name, Listed, Reader, Store, Stored, PARTIAL};

/// Where and how to log in.
#[derive(Clone)]
pub struct SftpConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Base directory on the server (absolute, or relative to the login
    /// directory). Objects go under it; missing directories are created.
    pub path: String,
    pub auth: SftpAuth,
    /// The server's public key in OpenSSH one-line form
    /// (`ssh-ed25519 AAAA…`, a trailing comment is ignored). `None` accepts
    /// any key: pin one with [`fetch_host_key`] before storing a target.
    pub host_key: Option<String>,
}

#[derive(Clone)]
pub enum SftpAuth {
    /// An unencrypted private key in OpenSSH (or PEM) text form.
    PrivateKey(String),
    Password(String),
}

// Hand-written so that a `{:?}` in a log line never prints a secret.
impl fmt::Debug for SftpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SftpAuth::PrivateKey(_) => f.write_str("PrivateKey(<redacted>)"),
            SftpAuth::Password(_) => f.write_str("Password(<redacted>)"),
        }
    }
}

impl fmt::Debug for SftpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("path", &self.path)
            .field("auth", &self.auth)
            .field("host_key", &self.host_key)
            .finish()
    }
}

#[derive(Debug)]
pub struct Sftp {
    config: SftpConfig,
}

/// TCP connect, key exchange and authentication together must finish in
/// this time; a server that accepts the connection and then says nothing
/// would otherwise hang a backup forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Per SFTP request. Generous because a write reply waits for the server's
/// disk, which on a busy NAS can stall for a while.
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// `fsync` and `close` of a large file can take long on slow storage.
const SYNC_TIMEOUT_SECS: u64 = 900;
/// Largest write payload we send. OpenSSH accepts up to 256 KiB messages;
/// larger writes mean fewer replies to wait for. Lowered to what the server
/// announces through `limits@openssh.com`, and to the 32 KiB every server
/// must accept when it announces nothing.
const MAX_CHUNK: usize = 255 * 1024;
const SAFE_CHUNK: usize = 32 * 1024;
/// Write requests awaiting their reply. Bounds memory (this many chunks)
/// while keeping the pipe full: one write per round trip would cap the
/// throughput at chunk / RTT.
const WRITES_IN_FLIGHT: usize = 8;

const EXT_FSYNC: &str = "fsync@openssh.com";
const EXT_POSIX_RENAME: &str = "posix-rename@openssh.com";
const EXT_LIMITS: &str = "limits@openssh.com";

impl Sftp {
    pub fn new(config: SftpConfig) -> Sftp {
        Sftp { config }
    }

    /// Names the target in error messages: never the password or key.
    fn label(&self) -> String {
        label(&self.config.host, self.config.port, Some(&self.config.user))
    }

    /// Remote path of an object (or of a prefix directory), under the base
    /// directory. `rel` has been checked: relative, no `..`.
    fn remote(&self, rel: &str) -> String {
        let base = self.config.path.trim_end_matches('/');
        match (
            base.is_empty(),
            self.config.path.starts_with('/'),
            rel.is_empty(),
        ) {
            (true, true, _) => format!("/{rel}"),
            (true, false, true) => ".".to_owned(),
            (true, false, false) => rel.to_owned(),
            (false, _, true) => base.to_owned(),
            (false, _, false) => format!("{base}/{rel}"),
        }
    }

    /// Opens an authenticated SSH connection.
    async fn connect(&self) -> anyhow::Result<client::Handle<Checker>> {
        let label = self.label();
        let pinned = match &self.config.host_key {
            Some(line) => Some(
                parse_public_key(line)
                    .with_context(|| format!("{label}: the pinned host key is not valid"))?,
            ),
            None => None,
        };
        let key = match &self.config.auth {
            // Not `{e:#}` with the text: a parse error must not echo key material.
            SftpAuth::PrivateKey(text) => Some(Arc::new(
                russh::keys::decode_secret_key(text, None)
                    .map_err(|e| anyhow!("{label}: cannot read the private key: {e}"))?,
            )),
            SftpAuth::Password(_) => None,
        };
        let work = async {
            let checker = Checker {
                pinned: pinned.clone(),
                seen: None,
            };
            let mut handle = client::connect(
                client_config(pinned.as_ref()),
                (self.config.host.as_str(), self.config.port),
                checker,
            )
            .await
            .map_err(|e| anyhow!("{label}: {e:#}"))?;
            let result = match (&self.config.auth, key) {
                (SftpAuth::PrivateKey(_), Some(key)) => {
                    // RSA keys sign with a hash the server must accept;
                    // ask it (waits for its server-sig-algs, so only for RSA).
                    let hash = if key.algorithm().is_rsa() {
                        handle
                            .best_supported_rsa_hash()
                            .await
                            .map_err(|e| anyhow!("{label}: {e}"))?
                            .flatten()
                    } else {
                        None
                    };
                    handle
                        .authenticate_publickey(
                            &self.config.user,
                            PrivateKeyWithHashAlg::new(key, hash),
                        )
                        .await
                }
                (SftpAuth::Password(password), _) => {
                    handle
                        .authenticate_password(&self.config.user, password)
                        .await
                }
                (SftpAuth::PrivateKey(_), None) => unreachable!("key decoded above"),
            };
            match result {
                Ok(r) if r.success() => Ok(handle),
                Ok(_) => Err(anyhow!("{label}: authentication refused")),
                Err(e) => Err(anyhow!("{label}: authentication failed: {e}")),
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, work)
            .await
            .map_err(|_| {
                anyhow!(
                    "{label}: no connection within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )
            })?
    }

    /// An SSH connection with a raw SFTP session on it, plus what the server
    /// announced. The handle must outlive the session.
    async fn raw(&self) -> anyhow::Result<Conn> {
        let label = self.label();
        let handle = self.connect().await?;
        let stream = open_subsystem(&handle)
            .await
            .map_err(|e| anyhow!("{label}: {e:#}"))?;
        let cfg = russh_sftp::client::Config {
            request_timeout_secs: REQUEST_TIMEOUT_SECS,
            ..Default::default()
        };
        let mut session = RawSftpSession::new_with_config(stream, cfg);
        let version = tokio::time::timeout(CONNECT_TIMEOUT, session.init())
            .await
            .map_err(|_| anyhow!("{label}: the SFTP subsystem did not answer"))?
            .map_err(|e| anyhow!("{label}: starting SFTP: {e}"))?;
        let ext = version.extensions;
        let mut chunk = SAFE_CHUNK;
        if has_ext(&ext, EXT_LIMITS, "1") {
            let limits = Limits::from(
                session
                    .limits()
                    .await
                    .map_err(|e| anyhow!("{label}: reading SFTP limits: {e}"))?,
            );
            // Leave room for the write request's header inside the packet.
            let by_packet = limits
                .packet_len
                .map_or(u64::MAX, |p| p.saturating_sub(1024));
            let by_write = limits.write_len.unwrap_or(u64::MAX);
            chunk = (MAX_CHUNK as u64).min(by_packet).min(by_write).max(1) as usize;
            session.set_limits(limits);
        }
        Ok(Conn {
            fsync: has_ext(&ext, EXT_FSYNC, "1"),
            posix_rename: has_ext(&ext, EXT_POSIX_RENAME, "1"),
            chunk,
            session: Arc::new(session),
            handle,
            label,
        })
    }

    /// Creates `dir` and its missing ancestors (like `mkdir -p`).
    async fn mkdirs(&self, conn: &Conn, dir: &str) -> anyhow::Result<()> {
        let absolute = dir.starts_with('/');
        let mut path = String::new();
        for part in dir.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if absolute || !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            match conn.session.stat(path.as_str()).await {
                Ok(a) if a.attrs.file_type().is_dir() => continue,
                Ok(_) => bail!("{}: {path} exists and is not a directory", conn.label),
                Err(e) if is_missing(&e) => {}
                Err(e) => bail!("{}: stat {path}: {e}", conn.label),
            }
            if let Err(e) = conn
                .session
                .mkdir(path.as_str(), FileAttributes::empty())
                .await
            {
                // Another upload may have created it meanwhile.
                match conn.session.stat(path.as_str()).await {
                    Ok(a) if a.attrs.file_type().is_dir() => {}
                    _ => bail!("{}: cannot create directory {path}: {e}", conn.label),
                }
            }
        }
        Ok(())
    }

    /// Sends the body into the open handle, then syncs, closes, checks the
    /// size and renames. Errors leave cleanup to the caller.
    async fn upload(
        &self,
        conn: &Conn,
        handle: &mut Option<String>,
        partial: &str,
        target: &str,
        mut body: Reader,
    ) -> anyhow::Result<u64> {
        let label = &conn.label;
        let fh = handle.clone().expect("handle is open");
        let mut in_flight: VecDeque<JoinHandle<Result<(), SftpError>>> = VecDeque::new();
        let mut sent: u64 = 0;
        let result: anyhow::Result<()> = async {
            loop {
                // Fill a whole chunk: readers often hand out a few KiB at a
                // time, and small writes would waste round trips.
                let mut buf = Vec::with_capacity(conn.chunk);
                (&mut body)
                    .take(conn.chunk as u64)
                    .read_to_end(&mut buf)
                    .await
                    .with_context(|| format!("{label}: reading the data to upload"))?;
                if buf.is_empty() {
                    break;
                }
                let len = buf.len() as u64;
                // A task per write: it sends its request at once and waits
                // for the reply while we read the next chunk.
                let session = conn.session.clone();
                let h = fh.clone();
                let offset = sent;
                in_flight.push_back(tokio::spawn(async move {
                    session.write(h, offset, buf).await.map(|_| ())
                }));
                sent += len;
                if in_flight.len() >= WRITES_IN_FLIGHT {
                    let oldest = in_flight.pop_front().expect("not empty");
                    join_write(oldest, label, partial).await?;
                }
                if len < conn.chunk as u64 {
                    break; // end of body reached inside this chunk
                }
            }
            while let Some(write) = in_flight.pop_front() {
                join_write(write, label, partial).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            // Make sure no write is still on its way before the caller closes
            // the handle: the server may reuse the handle id for another file.
            for write in &in_flight {
                write.abort();
            }
            for write in in_flight {
                let _ = write.await;
            }
            return Err(e);
        }

        conn.session.set_timeout(SYNC_TIMEOUT_SECS);
        if conn.fsync {
            conn.session
                .fsync(fh.as_str())
                .await
                .map_err(|e| anyhow!("{label}: fsync {partial}: {e}"))?;
        }
        let closing = handle.take().expect("handle is open");
        conn.session
            .close(closing)
            .await
            .map_err(|e| anyhow!("{label}: close {partial}: {e}"))?;
        conn.session.set_timeout(REQUEST_TIMEOUT_SECS);

        let size = conn
            .session
            .stat(partial)
            .await
            .map_err(|e| anyhow!("{label}: stat {partial}: {e}"))?
            .attrs
            .size
            .ok_or_else(|| anyhow!("{label}: the server reports no size for {partial}"))?;
        if size != sent {
            bail!("{label}: {partial} has {size} bytes after the upload, {sent} were sent");
        }

        if conn.posix_rename {
            // Replaces an existing object atomically.
            let mut data = Vec::with_capacity(8 + partial.len() + target.len());
            put_string(&mut data, partial);
            put_string(&mut data, target);
            match conn.session.extended(EXT_POSIX_RENAME, data).await {
                Ok(Packet::Status(s)) if s.status_code == StatusCode::Ok => {}
                Ok(Packet::Status(s)) => {
                    bail!(
                        "{label}: rename {partial} to {target}: {}: {}",
                        s.status_code,
                        s.error_message
                    )
                }
                Ok(_) => bail!("{label}: rename {partial} to {target}: unexpected reply"),
                Err(e) => bail!("{label}: rename {partial} to {target}: {e}"),
            }
        } else {
            // Plain SFTP rename refuses to overwrite: remove the old object
            // first. A crash in between loses the old copy but never leaves
            // a partial file under the object's name.
            match conn.session.remove(target).await {
                Ok(_) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => bail!("{label}: remove {target} before replacing it: {e}"),
            }
            conn.session
                .rename(partial, target)
                .await
                .map_err(|e| anyhow!("{label}: rename {partial} to {target}: {e}"))?;
        }
        Ok(size)
    }

    /// Entries of the directory that `prefix` points into, with the
    /// directory part of the prefix (to rebuild object names) and the rest
    /// (which names must start with). A missing directory lists as empty.
    async fn entries(
        &self,
        conn: &Conn,
        prefix: &str,
    ) -> anyhow::Result<(String, Vec<(String, FileAttributes)>)> {
        check_prefix(prefix)?;
        let (dir_part, _) = match prefix.rfind('/') {
            Some(i) => prefix.split_at(i + 1),
            None => ("", prefix),
        };
        let dir = self.remote(dir_part.trim_end_matches('/'));
        let label = &conn.label;
        let dh = match conn.session.opendir(dir.as_str()).await {
            Ok(h) => h.handle,
            Err(e) if is_missing(&e) => return Ok((dir_part.to_owned(), Vec::new())),
            Err(e) => bail!("{label}: open directory {dir}: {e}"),
        };
        let mut out = Vec::new();
        let result = loop {
            match conn.session.readdir(dh.as_str()).await {
                Ok(name) => out.extend(name.files.into_iter().map(|f| (f.filename, f.attrs))),
                Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => break Ok(()),
                Err(e) => break Err(anyhow!("{label}: read directory {dir}: {e}")),
            }
        };
        let _ = conn.session.close(dh).await;
        result?;
        Ok((dir_part.to_owned(), out))
    }
}

/// One operation's connection. Dropping it closes the SFTP channel and the
/// SSH connection.
struct Conn {
    session: Arc<RawSftpSession>,
    handle: client::Handle<Checker>,
    fsync: bool,
    posix_rename: bool,
    chunk: usize,
    label: String,
}

impl Conn {
    async fn finish(self) {
        let _ = self.session.close_session();
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

#[async_trait]
impl Store for Sftp {
    async fn put(&self, name: &str, body: Reader) -> anyhow::Result<Stored> {
        check_name(name)?;
        let conn = self.raw().await?;
        let label = conn.label.clone();
        let target = self.remote(name);
        let partial = format!("{target}{PARTIAL}");
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        let opened = match conn
            .session
            .open(partial.as_str(), flags, FileAttributes::empty())
            .await
        {
            // The usual case after the first backup: the directory exists.
            Ok(h) => Ok(h),
            Err(e) if is_missing(&e) => {
                let dir = target.rsplit_once('/').map_or(".", |(d, _)| d);
                let dir = if dir.is_empty() { "/" } else { dir };
                self.mkdirs(&conn, dir).await?;
                conn.session
                    .open(partial.as_str(), flags, FileAttributes::empty())
                    .await
            }
            Err(e) => Err(e),
        };
        let mut handle = Some(
            opened
                .map_err(|e| anyhow!("{label}: cannot create {partial}: {e}"))?
                .handle,
        );
        match self
            .upload(&conn, &mut handle, &partial, &target, body)
            .await
        {
            Ok(size) => {
                conn.finish().await;
                Ok(Stored { size, etag: None })
            }
            Err(e) => {
                // Best effort: the connection may be what failed, and then
                // `sweep` removes the file later.
                if let Some(h) = handle {
                    let _ = conn.session.close(h).await;
                }
                let _ = conn.session.remove(partial.as_str()).await;
                conn.finish().await;
                Err(e)
            }
        }
    }

    async fn open(&self, name: &str) -> anyhow::Result<Reader> {
        check_name(name)?;
        let label = self.label();
        let handle = self.connect().await?;
        let stream = open_subsystem(&handle)
            .await
            .map_err(|e| anyhow!("{label}: {e:#}"))?;
        let cfg = russh_sftp::client::Config {
            request_timeout_secs: REQUEST_TIMEOUT_SECS,
            ..Default::default()
        };
        // The high-level session: its `File` pipelines reads (several
        // requests in flight), which is what makes a restore fast.
        let session =
            tokio::time::timeout(CONNECT_TIMEOUT, SftpSession::new_with_config(stream, cfg))
                .await
                .map_err(|_| anyhow!("{label}: the SFTP subsystem did not answer"))?
                .map_err(|e| anyhow!("{label}: starting SFTP: {e}"))?;
        let path = self.remote(name);
        let file = match session.open(path.as_str()).await {
            Ok(f) => f,
            Err(e) if is_missing(&e) => bail!("{label}: no object {name}"),
            Err(e) => bail!("{label}: open {path}: {e}"),
        };
        Ok(Box::pin(RemoteFile {
            file,
            _session: session,
            _handle: handle,
        }))
    }

    async fn delete(&self, name: &str) -> anyhow::Result<()> {
        check_name(name)?;
        let conn = self.raw().await?;
        let path = self.remote(name);
        let result = match conn.session.remove(path.as_str()).await {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(anyhow!("{}: remove {path}: {e}", conn.label)),
        };
        conn.finish().await;
        result
    }

    async fn stat(&self, name: &str) -> anyhow::Result<Option<u64>> {
        check_name(name)?;
        let conn = self.raw().await?;
        let path = self.remote(name);
        let result =
            match conn.session.stat(path.as_str()).await {
                Ok(a) if a.attrs.file_type().is_file() => a.attrs.size.map(Some).ok_or_else(|| {
                    anyhow!("{}: the server reports no size for {path}", conn.label)
                }),
                Ok(_) => Err(anyhow!("{}: {path} is not a file", conn.label)),
                Err(e) if is_missing(&e) => Ok(None),
                Err(e) => Err(anyhow!("{}: stat {path}: {e}", conn.label)),
            };
        conn.finish().await;
        result
    }

    async fn list(&self, prefix: &str) -> anyhow::Result<Vec<Listed>> {
        let conn = self.raw().await?;
        let result = self.entries(&conn, prefix).await;
        conn.finish().await;
        let (dir_part, entries) = result?;
        let rest = &prefix[dir_part.len()..];
        let mut out: Vec<Listed> = entries
            .into_iter()
            .filter(|(f, a)| {
                a.file_type().is_file() && f.starts_with(rest) && !f.ends_with(PARTIAL)
            })
            .map(|(f, a)| Listed {
                name: format!("{dir_part}{f}"),
                size: a.size.unwrap_or(0),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn sweep(&self, prefix: &str) -> anyhow::Result<usize> {
        let conn = self.raw().await?;
        let result = async {
            let (dir_part, entries) = self.entries(&conn, prefix).await?;
            let rest = &prefix[dir_part.len()..];
            let mut removed = 0;
            for (f, a) in entries {
                if !(a.file_type().is_file() && f.starts_with(rest) && f.ends_with(PARTIAL)) {
                    continue;
                }
                let path = self.remote(&format!("{dir_part}{f}"));
                match conn.session.remove(path.as_str()).await {
                    Ok(_) => removed += 1,
                    Err(e) if is_missing(&e) => {}
                    Err(e) => bail!("{}: remove {path}: {e}", conn.label),
                }
            }
            Ok(removed)
        }
        .await;
        conn.finish().await;
        result
    }
}

/// Connects and returns the key the server presents, in OpenSSH one-line
/// form (`ssh-ed25519 AAAA…`), for the admin to confirm and pin on first
/// contact. Does not authenticate.
pub async fn fetch_host_key(host: &str, port: u16) -> anyhow::Result<String> {
    let label = label(host, port, None);
    let seen = Arc::new(Mutex::new(None));
    let checker = Checker {
        pinned: None,
        seen: Some(seen.clone()),
    };
    let work = async {
        let handle = client::connect(client_config(None), (host, port), checker)
            .await
            .map_err(|e| anyhow!("{label}: {e:#}"))?;
        let _ = handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        anyhow::Ok(())
    };
    tokio::time::timeout(CONNECT_TIMEOUT, work)
        .await
        .map_err(|_| {
            anyhow!(
                "{label}: no connection within {}s",
                CONNECT_TIMEOUT.as_secs()
            )
        })??;
    let key: Option<PublicKey> = seen.lock().expect("not poisoned").take();
    let key = key.ok_or_else(|| anyhow!("{label}: the server presented no host key"))?;
    key.to_openssh()
        .map_err(|e| anyhow!("{label}: cannot encode the host key: {e}"))
}

fn label(host: &str, port: u16, user: Option<&str>) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match user {
        Some(user) => format!("SFTP {user}@{host}:{port}"),
        None => format!("SFTP {host}:{port}"),
    }
}

fn client_config(pinned: Option<&PublicKey>) -> Arc<client::Config> {
    let mut preferred = russh::Preferred::default();
    // Ask for the pinned key's algorithm first: a server with several host
    // keys would otherwise present the one we like best, not the pinned one.
    if let Some(pin) = pinned {
        let mut keys: Vec<_> = if pin.algorithm().is_rsa() {
            vec![
                russh::keys::Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512),
                },
                russh::keys::Algorithm::Rsa {
                    hash: Some(HashAlg::Sha256),
                },
            ]
        } else {
            vec![pin.algorithm()]
        };
        keys.extend(
            preferred
                .key
                .iter()
                .filter(|a| !keys_contains(&keys, a))
                .cloned()
                .collect::<Vec<_>>(),
        );
        preferred.key = Cow::Owned(keys);
    }
    // AES-GCM first: with the `ring` backend it uses the CPU's AES
    // instructions, and throughput matters for archives of many GB.
    let mut ciphers = vec![russh::cipher::AES_256_GCM];
    ciphers.extend(
        preferred
            .cipher
            .iter()
            .filter(|c| **c != russh::cipher::AES_256_GCM)
            .cloned(),
    );
    preferred.cipher = Cow::Owned(ciphers);
    Arc::new(client::Config {
        preferred,
        nodelay: true,
        // Detects a server that vanished mid-transfer (no RST ever arrives).
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        ..Default::default()
    })
}

fn keys_contains(keys: &[russh::keys::Algorithm], a: &russh::keys::Algorithm) -> bool {
    keys.iter().any(|k| k == a)
}

fn parse_public_key(line: &str) -> anyhow::Result<PublicKey> {
    // Only "type base64": a comment (third field) is not part of the key.
    let mut fields = line.split_whitespace();
    let (Some(kind), Some(data)) = (fields.next(), fields.next()) else {
        bail!("expected \"<type> <base64>\"");
    };
    let key = PublicKey::from_openssh(&format!("{kind} {data}"))?;
    Ok(key)
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The SSH client's view of the server: checks the host key against the pin,
/// or records it for `fetch_host_key`.
struct Checker {
    pinned: Option<PublicKey>,
    seen: Option<Arc<Mutex<Option<PublicKey>>>>,
}

impl client::Handler for Checker {
    type Error = anyhow::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let presented = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            // Never asked for (no certificate algorithms are offered).
            PublicKeyOrCertificate::Certificate(_) => {
                bail!("host key mismatch: the server presented a certificate")
            }
        };
        if let Some(seen) = &self.seen {
            *seen.lock().expect("not poisoned") = Some(presented.clone());
        }
        match &self.pinned {
            Some(pin) if pin.key_data() != presented.key_data() => bail!(
                "host key mismatch: expected {} but the server presented {} ({})",
                fingerprint(pin),
                fingerprint(presented),
                presented.algorithm()
            ),
            _ => Ok(true),
        }
    }
}

async fn open_subsystem(
    handle: &client::Handle<Checker>,
) -> anyhow::Result<russh::ChannelStream<client::Msg>> {
    let channel = handle
        .channel_open_session()
        .await
        .context("opening an SSH channel")?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .context("starting the sftp subsystem")?;
    Ok(channel.into_stream())
}

fn has_ext(ext: &HashMap<String, String>, name: &str, version: &str) -> bool {
    ext.get(name).is_some_and(|v| v == version)
}

fn is_missing(e: &SftpError) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == StatusCode::NoSuchFile)
}

/// An SSH wire string: u32 big-endian length, then the bytes.
fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

async fn join_write(
    write: JoinHandle<Result<(), SftpError>>,
    label: &str,
    partial: &str,
) -> anyhow::Result<()> {
    match write.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => bail!("{label}: write {partial}: {e}"),
        Err(e) => bail!("{label}: write {partial}: {e}"),
    }
}

/// Prefixes follow the object-name rules, except that they may be empty or
/// end in `/`.
fn check_prefix(prefix: &str) -> anyhow::Result<()> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if prefix.is_empty() {
        return Ok(());
    }
    check_name(trimmed).map_err(|_| anyhow!("invalid prefix {prefix:?}"))
}

/// A remote file being read, keeping its SFTP session and SSH connection
/// alive for as long as the reader lives.
struct RemoteFile {
    file: russh_sftp::client::fs::File,
    _session: SftpSession,
    _handle: client::Handle<Checker>,
}

impl AsyncRead for RemoteFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    //! Against Debian's real OpenSSH server: each test starts its own `sshd`
    //! on a free loopback port with keys made for it, serving a temporary
    //! directory through `internal-sftp`.

    use std::io::Cursor;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use sha2::{Digest, Sha256};
    use tokio::io::AsyncReadExt;

    use super::*;

    use crate::backups::target::test_rig::Sshd;

    /// `SHA256:…` as OpenSSH itself prints it, to check our fingerprints
    /// against an independent implementation.
    fn openssh_fingerprint(pub_file: &Path) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(pub_file)
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_whitespace().nth(1).unwrap().to_owned()
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    impl Sshd {
        /// The base directory the store writes under; not created yet, so
        /// every test also checks that `put` creates it.
        fn base(&self) -> PathBuf {
            self.path("served/base/dir")
        }

        fn config(&self, auth: SftpAuth, host_key: Option<String>) -> SftpConfig {
            SftpConfig {
                host: "127.0.0.1".into(),
                port: self.port,
                user: self.user.clone(),
                path: self.base().display().to_string(),
                auth,
                host_key,
            }
        }

        /// A store that logs in with the authorized key and pins the real
        /// host key (comment included, as an admin would paste it).
        fn store(&self) -> Sftp {
            let auth = SftpAuth::PrivateKey(self.read("client_key"));
            Sftp::new(self.config(auth, Some(self.read("host_key.pub"))))
        }
    }

    /// Reproducible bytes that do not compress, without a dependency.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            // splitmix64
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn partials_under(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return found;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(partials_under(&path));
            } else if path.to_string_lossy().ends_with(PARTIAL) {
                found.push(path);
            }
        }
        found
    }

    async fn read_all(mut reader: Reader) -> Vec<u8> {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        out
    }

    /// Hands out `ok` bytes in odd-sized pieces, then fails like a broken
    /// pipe from the dump process would.
    struct FailingReader {
        data: Vec<u8>,
        pos: usize,
    }

    impl AsyncRead for FailingReader {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.pos == self.data.len() {
                return Poll::Ready(Err(std::io::Error::other("dump process died")));
            }
            let n = buf.remaining().min(self.data.len() - self.pos).min(7919);
            let pos = self.pos;
            buf.put_slice(&self.data[pos..pos + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn put_stat_list_open_roundtrip() {
        let sshd = Sshd::start(free_port());
        let store = sshd.store();
        let name = "job-a/2026-01-02T03-04-05Z-1.dump.zst.age";
        // ~20 MiB, odd so the last write is a short one.
        let data = noise(20 * 1024 * 1024 + 12_345, 1);

        let started = std::time::Instant::now();
        let stored = store
            .put(name, Box::pin(Cursor::new(data.clone())))
            .await
            .unwrap();
        let put_time = started.elapsed();
        assert_eq!(
            stored,
            Stored {
                size: data.len() as u64,
                etag: None
            }
        );
        assert_eq!(
            std::fs::metadata(sshd.base().join(name)).unwrap().len(),
            data.len() as u64
        );
        assert!(partials_under(&sshd.path("served")).is_empty());

        assert_eq!(store.stat(name).await.unwrap(), Some(data.len() as u64));
        assert_eq!(store.stat("job-a/missing").await.unwrap(), None);
        let listed = vec![Listed {
            name: name.into(),
            size: data.len() as u64,
        }];
        assert_eq!(store.list("job-a/").await.unwrap(), listed);
        assert_eq!(store.list("job-a/2026-").await.unwrap(), listed);
        assert_eq!(store.list("job-a/2025-").await.unwrap(), vec![]);
        assert_eq!(store.list("job-none/").await.unwrap(), vec![]);

        let started = std::time::Instant::now();
        let back = read_all(store.open(name).await.unwrap()).await;
        let open_time = started.elapsed();
        assert_eq!(back.len(), data.len());
        assert_eq!(Sha256::digest(&back), Sha256::digest(&data));
        eprintln!(
            "{} bytes: put {:?} ({:.0} MB/s), open {:?} ({:.0} MB/s)",
            data.len(),
            put_time,
            data.len() as f64 / put_time.as_secs_f64() / 1e6,
            open_time,
            data.len() as f64 / open_time.as_secs_f64() / 1e6
        );

        // A second put replaces the object (posix-rename over it).
        let smaller = noise(1000, 2);
        store
            .put(name, Box::pin(Cursor::new(smaller.clone())))
            .await
            .unwrap();
        assert_eq!(read_all(store.open(name).await.unwrap()).await, smaller);
        // An empty body is a valid (empty) object.
        store
            .put("job-a/empty", Box::pin(Cursor::new(Vec::new())))
            .await
            .unwrap();
        assert_eq!(store.stat("job-a/empty").await.unwrap(), Some(0));

        store.delete(name).await.unwrap();
        assert_eq!(store.stat(name).await.unwrap(), None);
        store.delete(name).await.unwrap(); // missing is fine
        assert!(store.open(name).await.is_err());
        assert!(store
            .put("../escape", Box::pin(Cursor::new(vec![1])))
            .await
            .is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failing_body_leaves_nothing() {
        let sshd = Sshd::start(free_port());
        let store = sshd.store();
        let name = "job-b/broken.dump";
        let body = FailingReader {
            data: noise(3 * 1024 * 1024 + 5, 3),
            pos: 0,
        };
        let err = store.put(name, Box::pin(body)).await.unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("dump process died"), "{text}");
        assert!(text.contains("reading the data to upload"), "{text}");
        assert_eq!(store.stat(name).await.unwrap(), None);
        assert!(!sshd.base().join(name).exists());
        assert!(partials_under(&sshd.path("served")).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sweep_removes_partials_of_killed_uploads() {
        let sshd = Sshd::start(free_port());
        let store = sshd.store();
        let job = sshd.base().join("job-c");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::write(job.join("2026-a.dump.partial"), b"half an upload").unwrap();
        std::fs::write(job.join("2026-b.dump"), b"a complete one").unwrap();
        // Another job's leftovers are not this prefix's business.
        std::fs::create_dir_all(sshd.base().join("job-d")).unwrap();
        std::fs::write(sshd.base().join("job-d/x.partial"), b"other job").unwrap();

        let listed = vec![Listed {
            name: "job-c/2026-b.dump".into(),
            size: 14,
        }];
        assert_eq!(store.list("job-c/").await.unwrap(), listed);
        assert_eq!(store.sweep("job-c/").await.unwrap(), 1);
        assert!(!job.join("2026-a.dump.partial").exists());
        assert!(job.join("2026-b.dump").exists());
        assert!(sshd.base().join("job-d/x.partial").exists());
        assert_eq!(store.sweep("job-c/").await.unwrap(), 0);
        assert_eq!(store.sweep("job-missing/").await.unwrap(), 0);
        assert_eq!(store.list("job-c/").await.unwrap(), listed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn host_keys_are_pinned_and_fetched() {
        let sshd = Sshd::start(free_port());
        let real = sshd.read("host_key.pub");

        let fetched = fetch_host_key("127.0.0.1", sshd.port).await.unwrap();
        let fields: Vec<&str> = real.split_whitespace().take(2).collect();
        assert_eq!(fetched, fields.join(" "));
        // What fetch_host_key returns works as a pin.
        let auth = SftpAuth::PrivateKey(sshd.read("client_key"));
        let pinned = Sftp::new(sshd.config(auth.clone(), Some(fetched)));
        assert_eq!(pinned.stat("nothing").await.unwrap(), None);

        let wrong = Sftp::new(sshd.config(auth.clone(), Some(sshd.read("other_key.pub"))));
        let text = format!("{:#}", wrong.stat("nothing").await.unwrap_err());
        assert!(text.contains("host key mismatch"), "{text}");
        let expected = openssh_fingerprint(&sshd.path("other_key.pub"));
        let presented = openssh_fingerprint(&sshd.path("host_key.pub"));
        assert!(text.contains(&format!("expected {expected}")), "{text}");
        assert!(text.contains(&format!("presented {presented}")), "{text}");
        assert!(
            text.contains(&format!("SFTP {}@127.0.0.1:{}", sshd.user, sshd.port)),
            "{text}"
        );

        // No pin: accepted (the caller pins through fetch_host_key first).
        let unpinned = Sftp::new(sshd.config(auth, None));
        assert_eq!(unpinned.stat("nothing").await.unwrap(), None);

        let bad = Sftp::new(sshd.config(
            SftpAuth::PrivateKey(sshd.read("client_key")),
            Some("ssh-ed25519 not-base64".into()),
        ));
        assert!(format!("{:#}", bad.stat("x").await.unwrap_err()).contains("pinned host key"));

        // Nothing listens on a fresh port: a clear connection error.
        let closed = free_port();
        let text = format!(
            "{:#}",
            fetch_host_key("127.0.0.1", closed).await.unwrap_err()
        );
        assert!(text.contains(&format!("SFTP 127.0.0.1:{closed}")), "{text}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refused_credentials_are_reported_without_secrets() {
        let sshd = Sshd::start(free_port());
        let host_key = Some(sshd.read("host_key.pub"));

        let other = sshd.read("other_key");
        let store = Sftp::new(sshd.config(SftpAuth::PrivateKey(other.clone()), host_key.clone()));
        let text = format!(
            "{:#}",
            store
                .put("job/x", Box::pin(Cursor::new(vec![1u8])))
                .await
                .unwrap_err()
        );
        assert!(
            text.contains(&format!(
                "SFTP {}@127.0.0.1:{}: authentication refused",
                sshd.user, sshd.port
            )),
            "{text}"
        );
        let key_body: String = other.lines().nth(1).unwrap().to_owned();
        assert!(!text.contains(&key_body), "{text}");
        assert!(
            !sshd.base().exists(),
            "nothing may be written without login"
        );

        // This sshd refuses passwords (testing a good one would need an
        // account with a password on this host); the refusal must be clear
        // and must not echo the password.
        let password = "correct horse battery staple";
        let store = Sftp::new(sshd.config(SftpAuth::Password(password.into()), host_key));
        let text = format!("{:#}", store.stat("x").await.unwrap_err());
        assert!(text.contains("authentication refused"), "{text}");
        assert!(!text.contains(password), "{text}");

        let garbage = Sftp::new(sshd.config(SftpAuth::PrivateKey("not a key".into()), None));
        let text = format!("{:#}", garbage.stat("x").await.unwrap_err());
        assert!(text.contains("cannot read the private key"), "{text}");
        assert!(!text.contains("not a key"), "{text}");
        // Debug output redacts secrets too.
        assert!(!format!("{:?}", garbage.config).contains("not a key"));
    }
}
