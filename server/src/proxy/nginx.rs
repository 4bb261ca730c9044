//! The nginx driver: renders the route table into one file per domain
//! (`<sites_dir>/berth-<host>.conf`, plus `berth-<host>.htpasswd` for basic
//! auth), writes the files atomically, checks the whole configuration with
//! `nginx -t`, reloads, health-checks, and restores the previous files on
//! any failure. What is on disk is compared with what the store renders to,
//! so hand edits and failed applies show up as drift.
//!
//! Everything written into a file comes from validated input (LDH hosts,
//! printable header values, clean path prefixes), and is still quoted for
//! nginx. A `$` cannot be escaped in nginx strings that take variables, so
//! such values are left out and reported rather than rendered.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::certs::CertStore;
use super::table::{Entry, Route, Site, Table, Upstream};
use crate::config::NginxConfig;
use crate::http::error::ApiError;

const ACME_PREFIX: &str = "/.well-known/acme-challenge/";
const HSTS: &str = "max-age=31536000";
/// glibc's default: nginx runs crypt on every request with credentials (it
/// has no cache), so the cost is paid per request.
const CRYPT_ROUNDS: u32 = 5_000;
/// How long nginx has to start workers with a new configuration.
const RELOAD_WINDOW: Duration = Duration::from_secs(5);
/// How long nginx has to answer after a reload.
const HEALTH_WINDOW: Duration = Duration::from_millis(1500);
/// Longest a single `nginx` command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// A name `try_files` never finds, so a down route falls to the maintenance
/// page after access checks and basic auth (a `return` would skip them).
const NEVER_A_FILE: &str = "/.berth-upstream-down";

pub struct Nginx {
    config: NginxConfig,
    /// One apply at a time: each reads the disk, writes, checks and reloads.
    applying: tokio::sync::Mutex<()>,
    /// What the installed nginx is, once asked.
    installed: OnceLock<Installed>,
    /// The last render nginx refused, when, and what it said.
    refused: std::sync::Mutex<Option<RefusedRender>>,
    /// Set while an apply has files on disk that nginx has not accepted.
    swapping: std::sync::atomic::AtomicBool,
}

/// Clears the `swapping` flag however an apply ends.
struct Settled<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Settled<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

type RefusedRender = (BTreeMap<String, String>, std::time::Instant, String);

/// How long `reconcile` answers a refused render without trying it again.
const RETRY_REFUSED: Duration = Duration::from_secs(30);

/// From `nginx -V`: the version, and the compiled-in paths that apply when
/// the configuration does not say.
#[derive(Debug, Clone, Default)]
struct Installed {
    flavor: Option<Flavor>,
    prefix: Option<PathBuf>,
    pid_path: Option<PathBuf>,
}

impl Installed {
    fn parse(text: &str) -> Installed {
        let option = |name: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(PathBuf::from)
        };
        Installed {
            flavor: text
                .lines()
                .find(|l| l.contains("version:"))
                .and_then(Flavor::from_version),
            prefix: option("--prefix="),
            pid_path: option("--pid-path="),
        }
    }
}

/// Version-dependent syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flavor {
    /// nginx ≥ 1.25.1 has `http2 on;` and deprecates `listen … http2`.
    http2_directive: bool,
}

impl Flavor {
    const MODERN: Flavor = Flavor {
        http2_directive: true,
    };

    /// From `nginx -v`'s "nginx version: nginx/1.22.1".
    fn from_version(text: &str) -> Option<Flavor> {
        let version = text.split('/').nth(1)?;
        let mut parts = version
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let v = (
            parts.next()?,
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
        );
        Some(Flavor {
            http2_directive: v >= (1, 25, 1),
        })
    }
}

/// A certificate as the rendered files refer to it.
#[derive(Debug, Clone)]
struct CertFiles {
    chain: PathBuf,
    key: PathBuf,
    /// SHA-256 of the leaf: written into the file so a renewed certificate
    /// changes the file, and so triggers a reload.
    fingerprint: String,
}

fn cert_files(certs: &CertStore, host: &str) -> Option<CertFiles> {
    let loaded = certs.find(host)?;
    let chain = PathBuf::from(&loaded.source);
    let key = chain.parent()?.join("privkey.pem");
    let fingerprint = loaded
        .key
        .cert
        .first()
        .map(|c| hex::encode(Sha256::digest(c.as_ref())))
        .unwrap_or_default();
    Some(CertFiles {
        chain,
        key,
        fingerprint,
    })
}

/// Everything berth wants in `sites_dir`.
#[derive(Debug, Default)]
struct Render {
    /// File name → content.
    files: BTreeMap<String, String>,
    /// File name → the domain it belongs to.
    owners: BTreeMap<String, String>,
    /// Host → what was left out of its file, and why.
    problems: BTreeMap<String, Vec<String>>,
    /// A host to health-check with.
    first_host: Option<String>,
}

impl Render {
    fn summary(&self) -> Result<(), String> {
        if self.problems.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = self
            .problems
            .iter()
            .flat_map(|(host, ps)| ps.iter().map(move |p| format!("{host}: {p}")))
            .collect();
        Err(format!(
            "applied, but not everything could be written for nginx: {}",
            list.join("; ")
        ))
    }
}

fn conf_name(host: &str) -> String {
    format!("berth-{host}.conf")
}

fn htpasswd_name(host: &str) -> String {
    format!("berth-{host}.htpasswd")
}

/// Files of `sites_dir` that berth writes and may remove.
fn owned(name: &str) -> bool {
    name.starts_with("berth-") && (name.ends_with(".conf") || name.ends_with(".htpasswd"))
}

/// The domain a berth file is named after.
fn host_of(name: &str) -> &str {
    let rest = name.strip_prefix("berth-").unwrap_or(name);
    rest.strip_suffix(".conf")
        .or_else(|| rest.strip_suffix(".htpasswd"))
        .unwrap_or(rest)
}

impl Nginx {
    pub fn new(config: NginxConfig) -> Nginx {
        Nginx {
            config,
            applying: tokio::sync::Mutex::new(()),
            installed: OnceLock::new(),
            refused: std::sync::Mutex::new(None),
            swapping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// `apply`, unless nginx refused this very render less than
    /// `RETRY_REFUSED` ago: container events come often, and each retry would
    /// swap files and reload for nothing. The refusal is answered again.
    pub async fn reconcile(&self, table: &Table, certs: &CertStore) -> Result<(), String> {
        self.apply_unless_refused(table, certs, true).await
    }

    /// Makes nginx serve `table`: renders, and when that differs from the
    /// files on disk, swaps them in, checks, reloads and health-checks,
    /// restoring the previous files on any failure.
    pub async fn apply(&self, table: &Table, certs: &CertStore) -> Result<(), String> {
        self.apply_unless_refused(table, certs, false).await
    }

    async fn apply_unless_refused(
        &self,
        table: &Table,
        certs: &CertStore,
        skip_refused: bool,
    ) -> Result<(), String> {
        let _one = self.applying.lock().await;
        let installed = self.installed_async().await;
        let flavor = installed.flavor.unwrap_or(Flavor::MODERN);
        let render = render(
            table,
            &|host: &str| cert_files(certs, host),
            &self.config,
            flavor,
        );
        if skip_refused {
            let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((files, at, error)) = refused.as_ref() {
                if *files == render.files && at.elapsed() < RETRY_REFUSED {
                    return Err(error.clone());
                }
            }
        }
        let result = self.apply_render(&render, &installed).await;
        // A refusal (the previous files were put back) is remembered so that
        // `reconcile` does not retry the same render on every event.
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        *refused = match &result {
            Err(e) if e.contains("restored") => {
                Some((render.files.clone(), std::time::Instant::now(), e.clone()))
            }
            _ => None,
        };
        result
    }

    async fn apply_render(&self, render: &Render, installed: &Installed) -> Result<(), String> {
        let dir = self.config.sites_dir.clone();
        let before = blocking({
            let dir = dir.clone();
            move || read_owned(&dir)
        })
        .await?;
        if same(&before, &render.files) {
            return render.summary();
        }
        let want: BTreeMap<String, Vec<u8>> = render
            .files
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();

        // From here until this returns, the directory may hold files nginx
        // has not accepted (yet): `drift` must not read them as live.
        self.swapping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _settled = Settled(&self.swapping);
        if let Err(e) = self.swap(&want, &before).await {
            let restored = self.restore(&before, &want).await;
            return Err(format!("cannot write {}: {e}{restored}", dir.display()));
        }
        if let Err(e) = self.nginx(&["-t"]).await {
            let restored = self.restore(&before, &want).await;
            return Err(format!(
                "nginx refused the new configuration{restored}: {e}"
            ));
        }
        // The workers serving now, to see them replaced.
        let master = master_pid(&self.config, installed);
        let old_workers = master.map(children).unwrap_or_default();
        if let Err(e) = self.nginx(&["-s", "reload"]).await {
            let restored = self.restore(&before, &want).await;
            return Err(format!("{}{restored}", reload_failure(&e)));
        }
        let taken = match master {
            Some(m) => took_over(m, &old_workers).await,
            None => Ok(()),
        };
        let healthy = match (taken, &render.first_host) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(host)) => self.health(host).await,
            (Ok(()), None) => Ok(()),
        };
        if let Err(e) = healthy {
            let restored = self.restore(&before, &want).await;
            let again = match self.nginx(&["-t"]).await {
                Ok(_) => match self.nginx(&["-s", "reload"]).await {
                    Ok(_) => "and reloaded".to_string(),
                    Err(e) => format!("but reloading it failed too: {e}"),
                },
                Err(e) => format!("but nginx refuses it too: {e}"),
            };
            return Err(format!(
                "nginx did not take the new configuration ({e}){restored} {again}"
            ));
        }
        render.summary()
    }

    /// Per host, how the files on disk differ from what the table renders
    /// to: missing, changed, or left over without a domain.
    pub fn drift(&self, table: &Table, certs: &CertStore) -> HashMap<String, Vec<String>> {
        // Mid-apply the directory holds the new files before nginx has
        // accepted them; that is not a state to report as live.
        if self.swapping.load(std::sync::atomic::Ordering::SeqCst) {
            return table
                .hosts
                .keys()
                .map(|h| (h.clone(), vec!["nginx is being reconfigured".to_string()]))
                .collect();
        }
        let render = render(
            table,
            &|host: &str| cert_files(certs, host),
            &self.config,
            self.installed_blocking().flavor.unwrap_or(Flavor::MODERN),
        );
        let mut out: HashMap<String, Vec<String>> = render
            .problems
            .iter()
            .map(|(h, p)| (h.clone(), p.clone()))
            .collect();
        let dir = &self.config.sites_dir;
        let disk = match read_owned(dir) {
            Ok(d) => d,
            Err(e) => {
                for host in render.owners.values().collect::<BTreeSet<_>>() {
                    out.entry(host.clone()).or_default().push(e.clone());
                }
                return out;
            }
        };
        for (name, content) in &render.files {
            let host = render.owners.get(name).cloned().unwrap_or_default();
            let path = dir.join(name);
            match disk.get(name) {
                None => out.entry(host).or_default().push(format!(
                    "{} is missing: nginx does not serve this domain as stored",
                    path.display()
                )),
                Some(on_disk) if on_disk != content.as_bytes() => {
                    out.entry(host).or_default().push(format!(
                    "{} differs from the stored domain: edited on disk, or the last apply failed",
                    path.display()
                ))
                }
                Some(_) => {}
            }
        }
        for name in disk.keys().filter(|n| !render.files.contains_key(*n)) {
            out.entry(host_of(name).to_string())
                .or_default()
                .push(format!(
                    "{} belongs to no domain berth has",
                    dir.join(name).display()
                ));
        }
        out
    }

    pub fn http_address(&self) -> Option<SocketAddr> {
        Some(self.config.http)
    }

    async fn installed_async(&self) -> Installed {
        if let Some(i) = self.installed.get() {
            return i.clone();
        }
        let mut cmd = tokio::process::Command::new(&self.config.binary);
        cmd.arg("-V")
            .env_remove(crate::config::MASTER_KEY_ENV)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        match tokio::time::timeout(COMMAND_TIMEOUT, cmd.output()).await {
            Ok(Ok(out)) => self.remember(&out),
            _ => Installed::default(),
        }
    }

    fn installed_blocking(&self) -> Installed {
        if let Some(i) = self.installed.get() {
            return i.clone();
        }
        match std::process::Command::new(&self.config.binary)
            .arg("-V")
            .env_remove(crate::config::MASTER_KEY_ENV)
            .stdin(std::process::Stdio::null())
            .output()
        {
            Ok(out) => self.remember(&out),
            Err(_) => Installed::default(),
        }
    }

    /// Keeps what `nginx -V` said, once it names a version.
    fn remember(&self, out: &Output) -> Installed {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let installed = Installed::parse(&text);
        if installed.flavor.is_some() {
            self.installed.get_or_init(|| installed).clone()
        } else {
            installed
        }
    }

    /// `nginx [-p prefix] -c conf <args>`; `Err` carries what nginx said.
    async fn nginx(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = tokio::process::Command::new(&self.config.binary);
        // nginx (a long-lived daemon when this starts it) has no business
        // with berth's master key.
        cmd.env_remove(crate::config::MASTER_KEY_ENV);
        if let Some(prefix) = &self.config.prefix {
            cmd.arg("-p").arg(prefix);
        }
        cmd.arg("-c")
            .arg(&self.config.conf)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let shown = format!("{} {}", self.config.binary.display(), args.join(" "));
        let out = match tokio::time::timeout(COMMAND_TIMEOUT, cmd.output()).await {
            Err(_) => return Err(format!("`{shown}` did not finish within 30 s")),
            Ok(Err(e)) => return Err(format!("cannot run `{shown}`: {e}")),
            Ok(Ok(out)) => out,
        };
        let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if out.status.success() {
            Ok(said)
        } else if said.is_empty() {
            Err(format!("`{shown}` failed ({})", out.status))
        } else {
            Err(said)
        }
    }

    async fn swap(
        &self,
        want: &BTreeMap<String, Vec<u8>>,
        have: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(), String> {
        let dir = self.config.sites_dir.clone();
        let want = want.clone();
        let have = have.clone();
        blocking(move || write_set(&dir, &want, &have)).await
    }

    /// Puts `before` back; the text to add to an error message.
    async fn restore(
        &self,
        before: &BTreeMap<String, Vec<u8>>,
        written: &BTreeMap<String, Vec<u8>>,
    ) -> String {
        match self.swap(before, written).await {
            Ok(()) => ", so the previous files were restored".into(),
            Err(e) => format!(", and restoring the previous files failed ({e})"),
        }
    }

    /// Polls until nginx answers an HTTP request on its listener.
    async fn health(&self, host: &str) -> Result<(), String> {
        let mut addr = self.config.http;
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
            IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
            _ => {}
        }
        let deadline = Instant::now() + HEALTH_WINDOW;
        loop {
            let attempt = tokio::time::timeout(Duration::from_millis(500), probe(addr, host)).await;
            let why = match attempt {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_) => "no answer within 500 ms".to_string(),
            };
            if Instant::now() >= deadline {
                return Err(format!("no HTTP answer on {addr}: {why}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The running master's pid, from the pid file the main configuration
/// names (else nginx's compiled-in one); `None` when that cannot be told.
fn master_pid(config: &NginxConfig, installed: &Installed) -> Option<u32> {
    let text = std::fs::read_to_string(&config.conf).ok()?;
    let path = match top_level_directive(&text, "pid") {
        Some(p) => PathBuf::from(p),
        None => installed.pid_path.clone()?,
    };
    let path = if path.is_relative() {
        config
            .prefix
            .clone()
            .or(installed.prefix.clone())?
            .join(path)
    } else {
        path
    };
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The argument of a one-argument directive in nginx's main context.
fn top_level_directive(conf: &str, name: &str) -> Option<String> {
    let mut depth = 0usize;
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut chars = conf.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            match c {
                '\\' => word.extend(chars.next()),
                c if c == q => quote = None,
                c => word.push(c),
            }
            continue;
        }
        match c {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' => quote = Some(c),
            c if c.is_whitespace() || c == ';' || c == '{' || c == '}' => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                match c {
                    ';' => {
                        if depth == 0 && words.len() == 2 && words[0] == name {
                            return words.pop();
                        }
                        words.clear();
                    }
                    '{' => {
                        depth += 1;
                        words.clear();
                    }
                    '}' => {
                        depth = depth.saturating_sub(1);
                        words.clear();
                    }
                    _ => {}
                }
            }
            c => word.push(c),
        }
    }
    None
}

/// The processes whose parent is `pid` (Linux `/proc`).
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| parent_of(*p) == Some(pid))
        .collect()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether an nginx worker has been told to finish (it stops accepting
/// connections then, and says so in its title).
fn shutting_down(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|t| String::from_utf8_lossy(&t).contains("shutting down"))
        .unwrap_or(true)
}

/// After a reload: waits until the master has started workers with the new
/// configuration and the previous ones no longer take connections, so the
/// change is live when apply returns. A master that keeps its old workers
/// did not take the configuration (nginx's error log says why).
async fn took_over(master: u32, old: &[u32]) -> Result<(), String> {
    let deadline = Instant::now() + RELOAD_WINDOW;
    loop {
        let now = children(master);
        let fresh = now.iter().any(|p| !old.contains(p));
        let old_done = old.iter().all(|p| !now.contains(p) || shutting_down(*p));
        if fresh && old_done {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return if fresh {
                Ok(())
            } else {
                Err(format!(
                    "the master process {master} started no workers with it within {} s; \
                     nginx's error log says why",
                    RELOAD_WINDOW.as_secs()
                ))
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One `GET /` over a fresh connection; any HTTP status line counts.
async fn probe(addr: SocketAddr, host: &str) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: berth-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        let n = stream
            .read(&mut buf[got..])
            .await
            .map_err(|e| format!("cannot read: {e}"))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    let ok = line.starts_with("HTTP/1.")
        && line
            .get(9..12)
            .is_some_and(|code| code.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(format!("not an HTTP answer: {:?}", line.trim_end()))
    }
}

/// What a failed `nginx -s reload` means for the admin.
fn reload_failure(said: &str) -> String {
    let not_running = said.contains(".pid\" failed")
        || said.contains("No such process")
        || said.contains("invalid PID number");
    if not_running {
        format!(
            "nginx is not running (the reload found no master process), so nothing was applied; \
             start nginx and berth applies the domains again within 30 s: {said}"
        )
    } else {
        format!("nginx could not be reloaded: {said}")
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("file task failed: {e}"))?
}

fn same(disk: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, String>) -> bool {
    disk.len() == want.len()
        && want
            .iter()
            .all(|(k, v)| disk.get(k).is_some_and(|d| d == v.as_bytes()))
}

/// The berth files in `dir` (none when the directory does not exist).
fn read_owned(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    let mut out = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !owned(&name) {
            continue;
        }
        let path = entry.path();
        let content =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        out.insert(name, content);
    }
    Ok(out)
}

/// Makes `dir`'s berth files `want`, given that they are `have` now: each
/// changed file through a temporary file and a rename, files of domains
/// gone removed.
fn write_set(
    dir: &Path,
    want: &BTreeMap<String, Vec<u8>>,
    have: &BTreeMap<String, Vec<u8>>,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, content) in want {
        if have.get(name) != Some(content) {
            write_atomic(dir, name, content)?;
        }
    }
    for name in have.keys().filter(|n| !want.contains_key(*n)) {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", path.display())),
        }
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_atomic(dir: &Path, name: &str, content: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let path = dir.join(name);
    // Hidden and not `*.conf`, so nginx's include never reads a half file.
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

// ---- rendering ------------------------------------------------------------

/// Quotes a value for nginx: `"` and `\` escaped; `$` refused, since in
/// strings that take variables it cannot be escaped.
fn quote(s: &str) -> Result<String, String> {
    if s.contains('$') {
        return Err(format!(
            "`{s}` contains `$`, which nginx would read as a variable"
        ));
    }
    quote_literal(s)
}

/// Quotes where nginx takes no variables (location prefixes), so `$` is fine.
fn quote_literal(s: &str) -> Result<String, String> {
    if s.chars().any(char::is_control) {
        return Err(format!("{s:?} contains a control character"));
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

fn path_text(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", p.display()))
}

/// HTML text that nginx passes through literally: `$` becomes an entity.
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('$', "&#36;")
}

fn maintenance_page(site: &Site) -> String {
    let message = site
        .maintenance_message
        .as_deref()
        .unwrap_or("This site is down for maintenance. Please try again in a few minutes.");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{host} is unavailable</title><style>body{{font-family:system-ui,sans-serif;\
         max-width:34rem;margin:12vh auto;padding:0 1rem;color:#222}}</style></head>\
         <body><h1>{host} is unavailable</h1><p>{message}</p></body></html>",
        host = html(&site.host),
        message = html(message),
    )
}

/// Text for nginx's `return 503 "…"`: quoted, line breaks as escapes.
fn quote_page(page: &str) -> String {
    let escaped = page
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\r', "")
        .replace('\n', "\\n")
        .replace('\t', "\\t");
    format!("\"{escaped}\\n\"")
}

/// Indented text.
struct Out {
    text: String,
    depth: usize,
}

impl Out {
    fn line(&mut self, s: &str) {
        if s.is_empty() {
            self.text.push('\n');
            return;
        }
        for _ in 0..self.depth {
            self.text.push_str("    ");
        }
        self.text.push_str(s);
        self.text.push('\n');
    }
    fn open(&mut self, s: &str) {
        self.line(&format!("{s} {{"));
        self.depth += 1;
    }
    fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        self.line("}");
    }
}

fn render(
    table: &Table,
    cert_for: &dyn Fn(&str) -> Option<CertFiles>,
    config: &NginxConfig,
    flavor: Flavor,
) -> Render {
    let mut sites: BTreeMap<&str, (&Arc<Site>, Vec<&str>)> = BTreeMap::new();
    for (host, entry) in &table.hosts {
        if let Entry::Site(site) = entry {
            if &site.host == host {
                sites.insert(host.as_str(), (site, Vec::new()));
            }
        }
    }
    for (alias, entry) in &table.hosts {
        if let Entry::RedirectTo(site) = entry {
            if let Some((_, aliases)) = sites.get_mut(site.host.as_str()) {
                aliases.push(alias.as_str());
            }
        }
    }
    let mut out = Render {
        first_host: sites.keys().next().map(|h| h.to_string()),
        ..Render::default()
    };
    for (host, (site, mut aliases)) in sites {
        aliases.sort_unstable();
        let mut problems = Vec::new();
        let htpasswd = config.sites_dir.join(htpasswd_name(host));
        let rendered = SiteRender {
            site,
            config,
            flavor,
            cert_for,
            htpasswd: &htpasswd,
            problems: &mut problems,
        }
        .render(&aliases);
        out.files.insert(conf_name(host), rendered.conf);
        out.owners.insert(conf_name(host), host.to_string());
        if let Some(users) = rendered.htpasswd {
            out.files.insert(htpasswd_name(host), users);
            out.owners.insert(htpasswd_name(host), host.to_string());
        }
        if !problems.is_empty() {
            out.problems.insert(host.to_string(), problems);
        }
    }
    out
}

struct Rendered {
    conf: String,
    htpasswd: Option<String>,
}

struct SiteRender<'a> {
    site: &'a Site,
    config: &'a NginxConfig,
    flavor: Flavor,
    cert_for: &'a dyn Fn(&str) -> Option<CertFiles>,
    htpasswd: &'a Path,
    problems: &'a mut Vec<String>,
}

/// One `location`: what it matches, and which route and limit serve it.
struct Location<'a> {
    /// `= /p`, `^~ /p/` or `/`.
    modifier: &'static str,
    /// The URI the location matches (exactly or as a prefix).
    matched: String,
    route: &'a Route,
    limit: Option<usize>,
}

impl SiteRender<'_> {
    fn problem(&mut self, p: String) {
        if !self.problems.contains(&p) {
            self.problems.push(p);
        }
    }

    fn render(mut self, aliases: &[&str]) -> Rendered {
        let site = self.site;
        let mut o = Out {
            text: String::new(),
            depth: 0,
        };
        o.line(&format!(
            "# Written by berth for the domain {}. Edits here are reported as",
            site.host
        ));
        o.line("# drift and replaced by berth's next change to its domains.");
        o.line("");
        o.line("map $http_upgrade $berth_connection_upgrade {");
        o.line("    default upgrade;");
        o.line("    \"\" close;");
        o.line("}");
        for (i, (_, limiter)) in site.limits.iter().enumerate() {
            let (requests, per, _) = limiter.settings();
            let rate = if per == 1.0 {
                format!("{requests}r/s")
            } else if per == 60.0 {
                format!("{requests}r/m")
            } else {
                let per_minute = (f64::from(requests) * 60.0 / per).round().max(1.0);
                format!("{per_minute}r/m")
            };
            o.line(&format!(
                "limit_req_zone $binary_remote_addr zone={}:10m rate={rate};",
                self.zone(i)
            ));
        }

        let headers = self.headers();
        let cert = (self.cert_for)(&site.host);
        let https_port = match self.config.https.port() {
            443 => String::new(),
            p => format!(":{p}"),
        };

        // Plain HTTP.
        o.line("");
        o.open("server");
        o.line(&format!("listen {};", self.config.http));
        o.line(&format!("server_name {};", site.host));
        if site.https_redirect {
            self.acme(&mut o);
            o.open("location /");
            for h in &headers {
                o.line(h);
            }
            o.line(&format!(
                "return 308 https://{}{https_port}$request_uri;",
                site.host
            ));
            o.close();
        } else {
            self.site_body(&mut o, &headers);
        }
        o.close();

        // HTTPS, when there is a certificate.
        if let Some(cert) = &cert {
            if let Some(lines) = self.tls_lines(cert, &site.host) {
                o.line("");
                o.open("server");
                for l in &lines {
                    o.line(l);
                }
                o.line(&format!("server_name {};", site.host));
                let mut tls_headers = Vec::new();
                if site.hsts {
                    tls_headers.push(format!(
                        "add_header Strict-Transport-Security \"{HSTS}\" always;"
                    ));
                }
                tls_headers.extend(headers.iter().cloned());
                self.site_body(&mut o, &tls_headers);
                o.close();
            }
        }

        // www aliases: a permanent redirect to the site.
        for alias in aliases {
            o.line("");
            o.open("server");
            o.line(&format!("listen {};", self.config.http));
            o.line(&format!("server_name {alias};"));
            self.acme(&mut o);
            o.open("location /");
            o.line(&format!("return 308 http://{}$request_uri;", site.host));
            o.close();
            o.close();
            let Some(cert) = (self.cert_for)(alias) else {
                continue;
            };
            let Some(lines) = self.tls_lines(&cert, alias) else {
                continue;
            };
            o.line("");
            o.open("server");
            for l in &lines {
                o.line(l);
            }
            o.line(&format!("server_name {alias};"));
            o.open("location /");
            o.line(&format!(
                "return 308 https://{}{https_port}$request_uri;",
                site.host
            ));
            o.close();
            o.close();
        }

        let htpasswd = self.auth_enabled().then(|| {
            let mut users = String::new();
            for (user, hash) in &site.crypt_users {
                let _ = writeln!(users, "{user}:{hash}");
            }
            users
        });
        for user in site.users.keys() {
            if !site.crypt_users.contains_key(user) {
                self.problem(format!(
                    "basic-auth user {user} has no password nginx can check \
                     (it was set while the embedded proxy ran): set the password again"
                ));
            }
        }
        Rendered {
            conf: o.text,
            htpasswd,
        }
    }

    fn zone(&self, index: usize) -> String {
        format!("berth_{}_{index}", self.site.host)
    }

    fn auth_enabled(&self) -> bool {
        !self.site.users.is_empty() || !self.site.crypt_users.is_empty()
    }

    /// `add_header` lines for the site's own headers (HSTS is added per
    /// server). nginx inherits `add_header` only into locations that have
    /// none, so every location repeats them.
    fn headers(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        for (name, value) in &self.site.headers {
            let line = value
                .to_str()
                .map_err(|_| "the value is not visible ASCII".to_string())
                .and_then(|v| {
                    Ok(format!(
                        "add_header {} {} always;",
                        quote(name.as_str())?,
                        quote(v)?
                    ))
                });
            match line {
                Ok(l) => lines.push(l),
                Err(e) => self.problem(format!("header {name} left out: {e}")),
            }
        }
        lines
    }

    fn tls_lines(&mut self, cert: &CertFiles, host: &str) -> Option<Vec<String>> {
        let files = path_text(&cert.chain)
            .and_then(quote)
            .and_then(|c| Ok((c, path_text(&cert.key).and_then(quote)?)));
        let (chain, key) = match files {
            Ok(f) => f,
            Err(e) => {
                self.problem(format!("the certificate for {host} cannot be used: {e}"));
                return None;
            }
        };
        let mut lines = Vec::new();
        if self.flavor.http2_directive {
            lines.push(format!("listen {} ssl;", self.config.https));
            lines.push("http2 on;".into());
        } else {
            lines.push(format!("listen {} ssl http2;", self.config.https));
        }
        lines.push(format!("ssl_certificate {chain};"));
        lines.push(format!("ssl_certificate_key {key};"));
        lines.push(format!("# certificate sha256 {}", cert.fingerprint));
        Some(lines)
    }

    /// Answers ACME HTTP-01 challenges from the challenge directory, for
    /// anyone (before access lists and basic auth).
    fn acme(&mut self, o: &mut Out) {
        let dir = path_text(&self.config.challenge_dir)
            .map(|d| format!("{}/", d.trim_end_matches('/')))
            .and_then(|d| quote(&d));
        match dir {
            Ok(dir) => {
                o.open(&format!("location ^~ {ACME_PREFIX}"));
                o.line(&format!("alias {dir};"));
                o.line("default_type application/octet-stream;");
                o.line("auth_basic off;");
                o.line("allow all;");
                o.close();
            }
            Err(e) => self.problem(format!("ACME challenges cannot be served: {e}")),
        }
    }

    /// The server body of a site that is served (not redirected).
    fn site_body(&mut self, o: &mut Out, headers: &[String]) {
        let site = self.site;
        o.line(&format!("client_max_body_size {};", site.max_body));
        for net in &site.deny {
            o.line(&format!("deny {net};"));
        }
        for net in &site.allow {
            o.line(&format!("allow {net};"));
        }
        if !site.allow.is_empty() {
            o.line("deny all;");
        }
        if self.auth_enabled() {
            match path_text(self.htpasswd).and_then(quote) {
                Ok(file) => {
                    o.line(&format!("auth_basic \"{}\";", site.host));
                    o.line(&format!("auth_basic_user_file {file};"));
                }
                Err(e) => {
                    // Never serve a protected site open: refuse everyone.
                    self.problem(format!("basic auth cannot be rendered: {e}"));
                    o.line("deny all;");
                }
            }
        }
        o.line("error_page 502 504 = @maintenance;");
        self.acme(o);
        for loc in locations(site) {
            o.open(&format!(
                "location {}{}",
                loc.modifier,
                quote_or_bare(&loc.matched)
            ));
            for h in headers {
                o.line(h);
            }
            if let Some(i) = loc.limit {
                let (_, _, burst) = site.limits[i].1.settings();
                let burst = if burst > 0 {
                    format!(" burst={burst}")
                } else {
                    String::new()
                };
                o.line(&format!("limit_req zone={}{burst} nodelay;", self.zone(i)));
                o.line("limit_req_status 429;");
            }
            self.upstream(o, &loc);
            o.close();
        }
        o.open("location @maintenance");
        for h in headers {
            o.line(h);
        }
        o.line("add_header Retry-After 30 always;");
        o.line("add_header Cache-Control no-store always;");
        o.line("types { }");
        o.line("default_type \"text/html; charset=utf-8\";");
        o.line(&format!(
            "return 503 {};",
            quote_page(&maintenance_page(site))
        ));
        o.close();
    }

    fn upstream(&mut self, o: &mut Out, loc: &Location<'_>) {
        let route = loc.route;
        // What the upstream sees of the matched part of the URI.
        let forwarded = if route.strip_prefix && route.prefix != "/" {
            match loc.matched.get(route.prefix.len()..) {
                Some("") | None => "/".to_string(),
                Some(rest) => rest.to_string(),
            }
        } else {
            loc.matched.clone()
        };
        let rendered = match &route.upstream {
            Upstream::Down(_) => Err(None),
            Upstream::Http { addr, base } => {
                let target = if base.is_empty() && !(route.strip_prefix && route.prefix != "/") {
                    // No URI: nginx passes the request's URI unchanged.
                    Ok(format!("http://{addr}"))
                } else {
                    quote(&format!("http://{addr}{base}{forwarded}"))
                };
                target
                    .map(|t| {
                        let mut lines = vec![
                            format!("proxy_pass {t};"),
                            "proxy_http_version 1.1;".into(),
                            "proxy_set_header Host $host;".into(),
                            "proxy_set_header Upgrade $http_upgrade;".into(),
                            "proxy_set_header Connection $berth_connection_upgrade;".into(),
                            "proxy_set_header X-Forwarded-For $remote_addr;".into(),
                            "proxy_set_header X-Forwarded-Proto $scheme;".into(),
                            "proxy_set_header X-Forwarded-Host $host;".into(),
                            "proxy_set_header X-Real-IP $remote_addr;".into(),
                        ];
                        lines.push(format!(
                            "proxy_connect_timeout {}s;",
                            self.site.connect_timeout.as_secs().max(1)
                        ));
                        lines.push(format!(
                            "proxy_read_timeout {}s;",
                            self.site.read_timeout.as_secs().max(1)
                        ));
                        lines
                    })
                    .map_err(Some)
            }
            Upstream::Static { root } => path_text(root)
                .and_then(|r| {
                    let r = r.trim_end_matches('/');
                    Ok(vec![
                        format!("alias {};", quote(&format!("{r}{forwarded}"))?),
                        "index index.html;".into(),
                        format!("disable_symlinks on from={};", quote(r)?),
                    ])
                })
                .map_err(Some),
        };
        match rendered {
            Ok(lines) => {
                for l in lines {
                    o.line(&l);
                }
            }
            Err(why) => {
                if let Some(why) = why {
                    // One problem per route, whichever location found it.
                    let why = if why.contains('$') {
                        "its upstream path contains `$`, which nginx would read as a variable"
                            .to_string()
                    } else {
                        why
                    };
                    self.problem(format!(
                        "the route {} is shown as down: {why}",
                        route.prefix
                    ));
                }
                o.line(&format!("try_files {NEVER_A_FILE} @maintenance;"));
            }
        }
    }
}

/// A location per route prefix and per rate-limit prefix (`= /p` and
/// `^~ /p/`, which is `/p` on whole segments), longest first.
fn locations(site: &Site) -> Vec<Location<'_>> {
    let mut prefixes: Vec<&str> = site
        .routes
        .iter()
        .map(|r| r.prefix.as_str())
        .chain(site.limits.iter().map(|(p, _)| p.as_str()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    prefixes.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    let mut out = Vec::new();
    for prefix in prefixes {
        let Some(route) = site.route_for(prefix) else {
            continue;
        };
        let limit = site.limit_for(prefix).and_then(|l| {
            site.limits
                .iter()
                .position(|(_, other)| Arc::ptr_eq(l, other))
        });
        let matches: Vec<(&'static str, String)> = if prefix == "/" {
            vec![("", "/".to_string())]
        } else {
            vec![("= ", prefix.to_string()), ("^~ ", format!("{prefix}/"))]
        };
        for (modifier, matched) in matches {
            // The challenge location answers everything under it.
            if matched.starts_with(ACME_PREFIX) {
                continue;
            }
            out.push(Location {
                modifier,
                matched,
                route,
                limit,
            });
        }
    }
    out
}

/// Location prefixes are plain when they can be, quoted otherwise.
fn quote_or_bare(s: &str) -> String {
    let bare = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-._~!*+,:@=&".contains(&b));
    if bare {
        s.to_string()
    } else {
        // Prefixes are printable ASCII (validated), so this cannot fail.
        quote_literal(s).unwrap_or_else(|_| "\"/\"".into())
    }
}

/// A SHA-512-crypt hash (`$6$rounds=5000$<salt>$<hash>`) for nginx's
/// `auth_basic_user_file`, which checks it with the C library's `crypt`.
pub fn crypt_hash(password: &str) -> Result<String, ApiError> {
    use sha_crypt::{Algorithm, Params, PasswordHasher, ShaCrypt};
    let fail = |e: String| ApiError::Internal(anyhow::anyhow!("SHA-512-crypt failed: {e}"));
    let params = Params::new(CRYPT_ROUNDS).map_err(|e| fail(e.to_string()))?;
    // 12 random bytes are the 16 salt characters crypt allows.
    let salt: [u8; 12] = rand::random();
    ShaCrypt::new(Algorithm::Sha512Crypt, params)
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::limit::Limiter;
    use crate::proxy::table::{Health, SiteStats};
    use http::{HeaderName, HeaderValue};

    fn config(dir: &Path) -> NginxConfig {
        NginxConfig {
            binary: PathBuf::from("nginx"),
            conf: dir.join("nginx.conf"),
            sites_dir: dir.join("sites"),
            prefix: Some(dir.to_path_buf()),
            http: "127.0.0.1:8080".parse().unwrap(),
            https: "127.0.0.1:8443".parse().unwrap(),
            challenge_dir: dir.join("acme"),
        }
    }

    fn route(prefix: &str, strip: bool, upstream: Upstream) -> Route {
        Route {
            prefix: prefix.into(),
            strip_prefix: strip,
            upstream,
            health: Arc::new(Health::default()),
        }
    }

    fn http(addr: &str, base: &str) -> Upstream {
        Upstream::Http {
            addr: addr.parse().unwrap(),
            base: base.into(),
        }
    }

    fn site(host: &str, routes: Vec<Route>) -> Site {
        Site {
            host: host.into(),
            routes,
            https_redirect: false,
            hsts: true,
            headers: Vec::new(),
            users: BTreeMap::new(),
            crypt_users: BTreeMap::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            limits: Vec::new(),
            max_body: 1024,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            maintenance_message: None,
            stats: Arc::new(SiteStats::default()),
        }
    }

    fn table(sites: Vec<Site>, aliases: &[(&str, &str)]) -> Table {
        let mut hosts = HashMap::new();
        let mut by_host = HashMap::new();
        for s in sites {
            let s = Arc::new(s);
            by_host.insert(s.host.clone(), s.clone());
            hosts.insert(s.host.clone(), Entry::Site(s));
        }
        for (alias, host) in aliases {
            hosts.insert(alias.to_string(), Entry::RedirectTo(by_host[*host].clone()));
        }
        Table { version: 1, hosts }
    }

    fn no_certs(_: &str) -> Option<CertFiles> {
        None
    }

    const OLD: Flavor = Flavor {
        http2_directive: false,
    };

    /// The text of the block that starts with `head` (up to its `}`).
    fn block<'a>(conf: &'a str, head: &str) -> &'a str {
        let start = conf
            .find(&format!("{head} {{"))
            .unwrap_or_else(|| panic!("no `{head}` in:\n{conf}"));
        let rest = &conf[start..];
        let mut depth = 0;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return &rest[..=i];
                    }
                }
                _ => {}
            }
        }
        rest
    }

    /// A site using every feature, with a `www.` alias.
    fn full_table() -> Table {
        let mut s = site(
            "example.com",
            vec![
                route("/api/v2", true, http("10.0.0.7:3000", "/base")),
                route("/api", false, http("10.0.0.5:8080", "")),
                route(
                    "/assets",
                    true,
                    Upstream::Static {
                        root: "/var/lib/docker/volumes/site/_data/public".into(),
                    },
                ),
                route("/", false, http("10.0.0.5:8080", "")),
            ],
        );
        s.headers = vec![
            (
                HeaderName::from_static("x-frame-options"),
                HeaderValue::from_static("DENY"),
            ),
            (
                HeaderName::from_static("x-quote"),
                HeaderValue::from_static(r#"a "b" \c"#),
            ),
        ];
        s.deny = vec!["192.0.2.9/32".parse().unwrap()];
        s.allow = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        s.limits = vec![("/api/login".into(), Arc::new(Limiter::new(5, 60.0, 2)))];
        s.users.insert("alice".into(), "$argon2id$…".into());
        s.crypt_users
            .insert("alice".into(), "$6$rounds=5000$salt$hash".into());
        s.maintenance_message = Some("Back at <b>5</b> & $HOME".into());
        table(vec![s], &[("www.example.com", "example.com")])
    }

    #[test]
    fn a_full_site_renders_every_feature() {
        let dir = Path::new("/srv/berth");
        let t = full_table();
        let certs = |host: &str| {
            (host == "example.com").then(|| CertFiles {
                chain: "/data/certs/example.com/fullchain.pem".into(),
                key: "/data/certs/example.com/privkey.pem".into(),
                fingerprint: "ab12".into(),
            })
        };
        let r = render(&t, &certs, &config(dir), Flavor::MODERN);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(
            r.files.keys().collect::<Vec<_>>(),
            ["berth-example.com.conf", "berth-example.com.htpasswd"]
        );
        assert_eq!(
            r.files["berth-example.com.htpasswd"],
            "alice:$6$rounds=5000$salt$hash\n"
        );
        let conf = &r.files["berth-example.com.conf"];

        // Top level: the upgrade map and the limit's zone.
        assert!(conf.contains("map $http_upgrade $berth_connection_upgrade {"));
        assert!(conf.contains(
            "limit_req_zone $binary_remote_addr zone=berth_example.com_0:10m rate=5r/m;"
        ));

        // Plain HTTP serves the site (no redirect asked for).
        let plain = block(conf, "server");
        assert!(plain.contains("listen 127.0.0.1:8080;"), "{plain}");
        assert!(plain.contains("server_name example.com;"));
        assert!(plain.contains("client_max_body_size 1024;"));
        assert!(!plain.contains("Strict-Transport-Security"));
        // deny entries, then allow entries, then deny all.
        let deny = plain.find("deny 192.0.2.9/32;").unwrap();
        let allow = plain.find("allow 10.0.0.0/8;").unwrap();
        let allow6 = plain.find("allow 2001:db8::/32;").unwrap();
        let deny_all = plain.find("deny all;").unwrap();
        assert!(
            deny < allow && allow < allow6 && allow6 < deny_all,
            "{plain}"
        );
        assert!(plain.contains("auth_basic \"example.com\";"));
        assert!(
            plain.contains("auth_basic_user_file \"/srv/berth/sites/berth-example.com.htpasswd\";")
        );
        assert!(plain.contains("error_page 502 504 = @maintenance;"));

        // The challenge comes before the routes, open to all.
        let acme = block(plain, "location ^~ /.well-known/acme-challenge/");
        assert!(acme.contains("alias \"/srv/berth/acme/\";"));
        assert!(acme.contains("auth_basic off;") && acme.contains("allow all;"));
        assert!(plain.find("acme-challenge").unwrap() < plain.find("location = /api").unwrap());

        // Longest prefix first, each as `= /p` and `^~ /p/`.
        let order: Vec<usize> = [
            "location = /api/login ",
            "location = /api/v2 ",
            "location = /assets ",
            "location = /api ",
            "location / ",
        ]
        .iter()
        .map(|l| plain.find(l).unwrap_or_else(|| panic!("{l} in {plain}")))
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{plain}");

        // strip_prefix with a base path: the prefix becomes the base.
        let v2 = block(plain, "location ^~ /api/v2/");
        assert!(
            v2.contains("proxy_pass \"http://10.0.0.7:3000/base/\";"),
            "{v2}"
        );
        let v2_exact = block(plain, "location = /api/v2");
        assert!(v2_exact.contains("proxy_pass \"http://10.0.0.7:3000/base/\";"));
        // No base and no strip: the URI goes unchanged.
        let api = block(plain, "location ^~ /api/");
        assert!(api.contains("proxy_pass http://10.0.0.5:8080;"), "{api}");
        for h in [
            "proxy_http_version 1.1;",
            "proxy_set_header Host $host;",
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_set_header Connection $berth_connection_upgrade;",
            "proxy_set_header X-Forwarded-For $remote_addr;",
            "proxy_set_header X-Forwarded-Proto $scheme;",
            "proxy_set_header X-Forwarded-Host $host;",
            "proxy_set_header X-Real-IP $remote_addr;",
            "proxy_connect_timeout 5s;",
            "proxy_read_timeout 60s;",
            "add_header \"x-frame-options\" \"DENY\" always;",
            r#"add_header "x-quote" "a \"b\" \\c" always;"#,
        ] {
            assert!(api.contains(h), "{h} in {api}");
        }
        // The rate limit sits on its own prefix, routed like /api.
        let login = block(plain, "location ^~ /api/login/");
        assert!(login.contains("limit_req zone=berth_example.com_0 burst=2 nodelay;"));
        assert!(login.contains("limit_req_status 429;"));
        assert!(login.contains("proxy_pass http://10.0.0.5:8080;"));
        assert!(!api.contains("limit_req"));
        // Static files: the alias maps the stripped prefix to the root.
        let assets = block(plain, "location ^~ /assets/");
        assert!(
            assets.contains("alias \"/var/lib/docker/volumes/site/_data/public/\";"),
            "{assets}"
        );
        assert!(assets
            .contains("disable_symlinks on from=\"/var/lib/docker/volumes/site/_data/public\";"));
        // The maintenance page: escaped HTML, no `$` left for nginx.
        let m = block(plain, "location @maintenance");
        assert!(m.contains("return 503 \""), "{m}");
        assert!(
            m.contains("Back at &lt;b&gt;5&lt;/b&gt; &amp; &#36;HOME"),
            "{m}"
        );
        assert!(!m.contains("$HOME"));
        assert!(m.contains("add_header \"x-frame-options\" \"DENY\" always;"));

        // HTTPS: the certificate, HTTP/2, HSTS.
        let tls_at = conf
            .find("listen 127.0.0.1:8443 ssl;")
            .expect("https server");
        let tls = block(&conf[conf[..tls_at].rfind("server {").unwrap()..], "server");
        assert!(tls.contains("http2 on;"));
        assert!(tls.contains("ssl_certificate \"/data/certs/example.com/fullchain.pem\";"));
        assert!(tls.contains("ssl_certificate_key \"/data/certs/example.com/privkey.pem\";"));
        assert!(tls.contains("# certificate sha256 ab12"));
        assert!(tls.contains("add_header Strict-Transport-Security \"max-age=31536000\" always;"));

        // The www alias redirects (no certificate for it: plain only).
        let www_at = conf
            .find("server_name www.example.com;")
            .expect("alias server");
        let www = &conf[www_at..];
        assert!(
            www.contains("return 308 http://example.com$request_uri;"),
            "{www}"
        );
        assert_eq!(conf.matches("server_name www.example.com;").count(), 1);
    }

    #[test]
    fn https_redirects_old_nginx_and_down_routes() {
        let dir = Path::new("/d");
        let mut s = site(
            "example.org",
            vec![
                route("/api", true, http("10.0.0.5:80", "")),
                route("/", false, Upstream::Down("app web is stopped".into())),
            ],
        );
        s.https_redirect = true;
        s.hsts = false;
        let t = table(vec![s], &[]);
        let certs = |_: &str| {
            Some(CertFiles {
                chain: "/c/fullchain.pem".into(),
                key: "/c/privkey.pem".into(),
                fingerprint: "ff".into(),
            })
        };
        let r = render(&t, &certs, &config(dir), OLD);
        let conf = &r.files["berth-example.org.conf"];
        let plain = block(conf, "server");
        assert!(plain.contains("location ^~ /.well-known/acme-challenge/"));
        assert!(
            plain.contains("return 308 https://example.org:8443$request_uri;"),
            "{plain}"
        );
        assert!(!plain.contains("proxy_pass"));
        assert!(conf.contains("listen 127.0.0.1:8443 ssl http2;"));
        assert!(!conf.contains("http2 on;"));
        assert!(!conf.contains("Strict-Transport-Security"));
        // strip without a base: `/api/x` → `/x`.
        assert!(conf.contains("proxy_pass \"http://10.0.0.5:80/\";"));
        // A down route shows the maintenance page after access checks.
        let root = block(&conf[conf.find("ssl http2").unwrap()..], "location /");
        assert!(
            root.contains("try_files /.berth-upstream-down @maintenance;"),
            "{root}"
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert!(!r.files.contains_key("berth-example.org.htpasswd"));
    }

    #[test]
    fn values_nginx_cannot_take_are_left_out_and_reported() {
        let mut s = site(
            "example.net",
            vec![
                route("/x", false, http("10.0.0.5:80", "/a$b")),
                route(
                    "/.well-known/acme-challenge",
                    false,
                    http("10.0.0.5:80", ""),
                ),
                route("/", false, http("10.0.0.5:80", "")),
            ],
        );
        s.headers = vec![(
            HeaderName::from_static("x-cost"),
            HeaderValue::from_static("$5"),
        )];
        // A user whose password was set under the embedded proxy only.
        s.users.insert("bob".into(), "$argon2id$…".into());
        let t = table(vec![s], &[]);
        let r = render(&t, &no_certs, &config(Path::new("/d")), Flavor::MODERN);
        let conf = &r.files["berth-example.net.conf"];
        let problems = &r.problems["example.net"];
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("header x-cost")));
        assert!(problems.iter().any(|p| p.contains("route /x")));
        assert!(problems.iter().any(|p| p.contains("user bob")));
        assert!(!conf.contains("$5") && !conf.contains("a$b"));
        // The route that cannot be rendered is shown as down, not open.
        assert!(block(conf, "location ^~ /x/").contains("@maintenance"));
        // Basic auth stays on, with an empty user file: nobody gets in.
        assert!(conf.contains("auth_basic_user_file"));
        assert_eq!(r.files["berth-example.net.htpasswd"], "");
        // A route on the challenge path does not duplicate its location.
        assert_eq!(
            conf.matches("location ^~ /.well-known/acme-challenge/")
                .count(),
            1
        );
        assert!(conf.contains("location = /.well-known/acme-challenge "));
        assert!(render(&t, &no_certs, &config(Path::new("/d")), OLD)
            .summary()
            .unwrap_err()
            .contains("header x-cost"));
    }

    /// The installed nginx accepts the full render (skipped without nginx;
    /// the API tests require it).
    #[test]
    fn the_installed_nginx_accepts_the_full_render() {
        let Ok(version) = std::process::Command::new("nginx").arg("-v").output() else {
            eprintln!("nginx is not installed: skipped");
            return;
        };
        let flavor = Flavor::from_version(&String::from_utf8_lossy(&version.stderr))
            .expect("nginx -v names a version");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["example.com".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("fullchain.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("privkey.pem"), key.serialize_pem()).unwrap();
        let certs = |_: &str| {
            Some(CertFiles {
                chain: dir.join("fullchain.pem"),
                key: dir.join("privkey.pem"),
                fingerprint: "00".into(),
            })
        };
        let cfg = config(dir);
        let r = render(&full_table(), &certs, &cfg, flavor);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        std::fs::create_dir_all(&cfg.sites_dir).unwrap();
        for (name, content) in &r.files {
            std::fs::write(cfg.sites_dir.join(name), content).unwrap();
        }
        let d = dir.display();
        std::fs::write(
            &cfg.conf,
            format!(
                "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
                 http {{ access_log off; include {}/*.conf; }}\n",
                cfg.sites_dir.display()
            ),
        )
        .unwrap();
        let out = std::process::Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&cfg.conf)
            .arg("-t")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{said}\n{}",
            r.files["berth-example.com.conf"]
        );
    }

    #[test]
    fn nginx_v_and_the_main_configuration_tell_where_the_pid_file_is() {
        let i = Installed::parse(
            "nginx version: nginx/1.22.1\nbuilt with OpenSSL 3.0.9\nconfigure arguments: \
             --with-cc-opt='-g -O2' --prefix=/usr/share/nginx --conf-path=/etc/nginx/nginx.conf \
             --pid-path=/run/nginx.pid --modules-path=/usr/lib/nginx/modules\n",
        );
        assert_eq!(i.flavor, Some(OLD));
        assert_eq!(i.prefix.as_deref(), Some(Path::new("/usr/share/nginx")));
        assert_eq!(i.pid_path.as_deref(), Some(Path::new("/run/nginx.pid")));

        let conf = "user www-data;\n# pid /commented;\nworker_processes auto;\n\
                    events { pid /not/here; }\nhttp { server { listen 80; } }\n\
                    pid \"/run/my nginx.pid\";\n";
        assert_eq!(
            top_level_directive(conf, "pid").as_deref(),
            Some("/run/my nginx.pid")
        );
        assert_eq!(top_level_directive("events {}\n", "pid"), None);

        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(tmp.path());
        std::fs::write(&cfg.conf, "pid logs/nginx.pid;\nevents {}\n").unwrap();
        std::fs::create_dir_all(tmp.path().join("logs")).unwrap();
        std::fs::write(tmp.path().join("logs/nginx.pid"), "4242\n").unwrap();
        assert_eq!(master_pid(&cfg, &i), Some(4242));
        // Without a `pid` directive, nginx's compiled-in path.
        std::fs::write(&cfg.conf, "events {}\n").unwrap();
        let compiled = Installed {
            pid_path: Some(tmp.path().join("logs/nginx.pid")),
            ..Installed::default()
        };
        assert_eq!(master_pid(&cfg, &compiled), Some(4242));
        cfg.conf = tmp.path().join("missing.conf");
        assert_eq!(master_pid(&cfg, &compiled), None);
    }

    #[test]
    fn children_are_found_by_their_parent() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let found = children(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
        assert_eq!(parent_of(child.id()), None, "reaped");
    }

    #[test]
    fn versions_pick_the_http2_syntax() {
        assert_eq!(
            Flavor::from_version("nginx version: nginx/1.22.1\n"),
            Some(OLD)
        );
        assert_eq!(
            Flavor::from_version("nginx version: nginx/1.25.1"),
            Some(Flavor::MODERN)
        );
        assert_eq!(
            Flavor::from_version("nginx version: openresty/1.27.1.2"),
            Some(Flavor::MODERN)
        );
        assert_eq!(Flavor::from_version("bash: nginx: not found"), None);
    }

    #[test]
    fn crypt_hashes_are_sha512_crypt_with_rounds() {
        use sha_crypt::{PasswordVerifier, ShaCrypt};
        let hash = crypt_hash("a sturdy passphrase").unwrap();
        let parts: Vec<&str> = hash.split('$').collect();
        assert_eq!(parts[..3], ["", "6", "rounds=5000"], "{hash}");
        assert_eq!(parts[3].len(), 16, "{hash}");
        assert_eq!(parts[4].len(), 86, "{hash}");
        ShaCrypt::default()
            .verify_password(b"a sturdy passphrase", hash.as_str())
            .unwrap();
        assert!(ShaCrypt::default()
            .verify_password(b"wrong", hash.as_str())
            .is_err());
        assert_ne!(crypt_hash("a sturdy passphrase").unwrap(), hash);
    }

    #[link(name = "crypt")]
    extern "C" {
        fn crypt(
            key: *const std::ffi::c_char,
            salt: *const std::ffi::c_char,
        ) -> *mut std::ffi::c_char;
    }

    /// What nginx does with the file: the C library's crypt(3), given the
    /// stored hash as the salt, must reproduce it.
    #[test]
    fn the_c_library_accepts_the_hashes() {
        let hash = crypt_hash("pässword with spaces").unwrap();
        let key = std::ffi::CString::new("pässword with spaces").unwrap();
        let salt = std::ffi::CString::new(hash.clone()).unwrap();
        // SAFETY: both are NUL-terminated; the result is copied at once (the
        // tests in this module are the only callers of crypt).
        let out = unsafe {
            let p = crypt(key.as_ptr(), salt.as_ptr());
            assert!(!p.is_null());
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        };
        assert_eq!(out, hash);
    }

    /// A stand-in for nginx: `-t` fails while `$dir/refuse` exists; every
    /// call is logged.
    fn fake_nginx(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-nginx");
        let script = format!(
            "#!/bin/sh\necho \"$*\" >> {d}/calls\n\
             for last; do :; done\n\
             case \"$last\" in\n\
             -V) echo 'nginx version: nginx/1.22.1' >&2; exit 0;;\n\
             -t) if [ -e {d}/refuse ]; then echo 'nginx: [emerg] unexpected \"}}\" in berth' >&2; exit 1; fi;;\n\
             esac\nexit 0\n",
            d = dir.display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn apply_writes_checks_and_rolls_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // A listener that answers like nginx would, for the health check.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\n\r\n").await;
            }
        });
        let mut cfg = config(dir);
        cfg.binary = fake_nginx(dir);
        cfg.http = http;
        let nginx = Nginx::new(cfg);
        let certs = CertStore::default();
        let sites = dir.join("sites");

        let one = table(
            vec![site("a.example", vec![route("/", false, http_up())])],
            &[],
        );
        nginx.apply(&one, &certs).await.unwrap();
        let a = std::fs::read_to_string(sites.join("berth-a.example.conf")).unwrap();
        assert!(nginx.drift(&one, &certs).is_empty());
        let calls = std::fs::read_to_string(dir.join("calls")).unwrap();
        assert!(calls.contains("-c"), "{calls}");
        assert!(
            calls.contains("-t\n") && calls.contains("-s reload\n"),
            "{calls}"
        );

        // Unchanged: nginx is not even asked.
        std::fs::remove_file(dir.join("calls")).unwrap();
        nginx.apply(&one, &certs).await.unwrap();
        assert!(!dir.join("calls").exists());

        // A failing check restores the files and reports nginx's words;
        // a file berth does not own is left alone.
        std::fs::write(sites.join("other.conf"), "# not berth's").unwrap();
        std::fs::write(dir.join("refuse"), "").unwrap();
        let two = table(
            vec![
                site("b.example", vec![route("/", false, http_up())]),
                site("c.example", vec![route("/", false, http_up())]),
            ],
            &[],
        );
        let err = nginx.apply(&two, &certs).await.unwrap_err();
        assert!(err.contains("unexpected \"}\" in berth"), "{err}");
        assert!(err.contains("restored"), "{err}");
        assert_eq!(
            std::fs::read_to_string(sites.join("berth-a.example.conf")).unwrap(),
            a
        );
        assert!(!sites.join("berth-b.example.conf").exists());
        assert!(sites.join("other.conf").exists());
        let drift = nginx.drift(&two, &certs);
        assert!(drift["b.example"][0].contains("missing"), "{drift:?}");
        assert!(drift["a.example"][0].contains("no domain"), "{drift:?}");

        // Once nginx accepts it, the old domain's file goes.
        std::fs::remove_file(dir.join("refuse")).unwrap();
        nginx.apply(&two, &certs).await.unwrap();
        assert!(!sites.join("berth-a.example.conf").exists());
        assert!(sites.join("berth-b.example.conf").exists());
        assert!(nginx.drift(&two, &certs).is_empty());

        // A hand edit is drift.
        let b = sites.join("berth-b.example.conf");
        let mut text = std::fs::read_to_string(&b).unwrap();
        text.push_str("# edited\n");
        std::fs::write(&b, text).unwrap();
        let drift = nginx.drift(&two, &certs);
        assert!(drift["b.example"][0].contains("differs"), "{drift:?}");
        assert!(!drift.contains_key("c.example"));
        // Leftover temporary files: none.
        let hidden: Vec<_> = std::fs::read_dir(&sites)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(hidden.is_empty());
    }

    #[tokio::test]
    async fn a_reload_without_a_running_nginx_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        use std::os::unix::fs::PermissionsExt;
        let fake = dir.join("nginx");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\ncase \"$*\" in *reload*) echo 'nginx: [error] open() \"{}/nginx.pid\" failed (2: No such file or directory)' >&2; exit 1;; esac\nexit 0\n",
                dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cfg = config(dir);
        cfg.binary = fake;
        let nginx = Nginx::new(cfg);
        let t = table(
            vec![site("a.example", vec![route("/", false, http_up())])],
            &[],
        );
        let err = nginx.apply(&t, &CertStore::default()).await.unwrap_err();
        assert!(err.contains("nginx is not running"), "{err}");
        assert!(err.contains("restored"), "{err}");
        assert!(!dir.join("sites/berth-a.example.conf").exists());
    }

    fn http_up() -> Upstream {
        http("127.0.0.1:9", "")
    }
}
