//! Typed configuration, layered: built-in defaults, then an optional TOML file
//! (`--config` / `BERTH_CONFIG`), then `BERTH_*` environment variables and
//! command-line flags (clap merges those two). Validation happens here, once,
//! so the rest of berth can trust a `Config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use ipnet::IpNet;
use serde::Deserialize;

/// Flags shared by every subcommand that opens the data dir.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration file; flags and environment variables override it.
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where berth keeps its database, keys and certificates.
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the admin listener (panel + API).
    #[arg(long, env = "BERTH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain for the admin listener (default: self-signed).
    #[arg(long, env = "BERTH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching `--tls-cert`.
    #[arg(long, env = "BERTH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP. Refused on a non-loopback address unless
    /// `--allow-plain-http-on-public-address` is given too.
    #[arg(long, env = "BERTH_PLAIN_HTTP")]
    pub plain_http: bool,
    /// Accept `--plain-http` on a non-loopback address (behind a TLS-terminating proxy).
    #[arg(long, env = "BERTH_ALLOW_PLAIN_HTTP_ON_PUBLIC_ADDRESS")]
    pub allow_plain_http_on_public_address: bool,
    /// Directory holding the browser bundle (`pkg/`).
    #[arg(long, env = "BERTH_SITE_DIR")]
    pub site_dir: Option<PathBuf>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "BERTH_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Docker engine to drive: `unix:///path`, `tcp://host:port` (TLS with
    /// DOCKER_TLS_VERIFY and DOCKER_CERT_PATH). Default: DOCKER_HOST, else
    /// the local socket.
    #[arg(long, env = "BERTH_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// A host directory under which apps may bind-mount paths (repeatable).
    #[arg(long = "bind-root", env = "BERTH_BIND_ROOTS", value_delimiter = ',')]
    pub bind_roots: Vec<PathBuf>,
    /// Plain-HTTP address of the embedded proxy (default 0.0.0.0:80), or `off`.
    #[arg(long, env = "BERTH_PROXY_HTTP")]
    pub proxy_http: Option<String>,
    /// HTTPS address of the embedded proxy (default 0.0.0.0:443), or `off`.
    #[arg(long, env = "BERTH_PROXY_HTTPS")]
    pub proxy_https: Option<String>,
    /// `embedded` (default) or `nginx` (render into nginx's configuration).
    #[arg(long, env = "BERTH_PROXY_DRIVER")]
    pub proxy_driver: Option<String>,
    /// ACME directory URL to use (e.g. a private CA or Let's Encrypt staging);
    /// stored as the ACME setting at start.
    #[arg(long, env = "BERTH_ACME_DIRECTORY")]
    pub acme_directory: Option<String>,
    /// PEM file of extra roots trusted for the ACME CA's own HTTPS.
    #[arg(long, env = "BERTH_ACME_CA_FILE")]
    pub acme_ca_file: Option<PathBuf>,
    /// The master key's file, for hosts that keep it off the data dir
    /// (default: `<data-dir>/master.key`). `BERTH_MASTER_KEY` (hex or base64
    /// of 32 bytes) supplies the key itself instead.
    #[arg(long, env = "BERTH_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Load firewall rules into this network namespace (`ip netns`) instead
    /// of the host's: for tests, and for hosts that route through one.
    #[arg(long, env = "BERTH_FIREWALL_NETNS")]
    pub firewall_netns: Option<String>,
}

/// The file form of the configuration. Unknown keys are an error, so a typo
/// never silently falls back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    plain_http: Option<bool>,
    allow_plain_http_on_public_address: Option<bool>,
    site_dir: Option<PathBuf>,
    log_format: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    session_idle_minutes: Option<u64>,
    session_absolute_hours: Option<u64>,
    docker_host: Option<String>,
    bind_roots: Option<Vec<PathBuf>>,
    proxy: Option<FileProxy>,
    certificates: Option<FileCertificates>,
    master_key_file: Option<PathBuf>,
    firewall: Option<FileFirewall>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFirewall {
    netns: Option<String>,
    confirm_seconds: Option<u32>,
}

/// Where the firewall's rules go and how long an apply waits to be confirmed.
#[derive(Debug, Clone)]
pub struct FirewallConfig {
    pub netns: Option<String>,
    pub confirm_seconds: u32,
}

impl FirewallConfig {
    fn load(args: &ConfigArgs, file: Option<FileFirewall>) -> anyhow::Result<Self> {
        let file = file.unwrap_or_default();
        let netns = args.firewall_netns.clone().or(file.netns);
        if let Some(ns) = &netns {
            // It becomes an argument of `ip netns exec`: a plain name only.
            let ok = !ns.is_empty()
                && ns.len() <= 64
                && !ns.starts_with(['-', '.'])
                && ns
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !ok {
                bail!("firewall netns `{ns}`: use a name of letters, digits, '-', '_' and '.'");
            }
        }
        let confirm_seconds = file.confirm_seconds.unwrap_or(60);
        use crate::firewall::apply::{MAX_CONFIRM, MIN_CONFIRM};
        if !(MIN_CONFIRM..=MAX_CONFIRM).contains(&confirm_seconds) {
            bail!("firewall.confirm_seconds must be {MIN_CONFIRM}..={MAX_CONFIRM}");
        }
        Ok(FirewallConfig {
            netns,
            confirm_seconds,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCertificates {
    acme_directory: Option<String>,
    acme_ca_file: Option<PathBuf>,
    self_test_port: Option<u16>,
    resolver: Option<SocketAddr>,
    expiry_warning_days: Option<u32>,
    probe_interval_minutes: Option<u64>,
    probe_address: Option<SocketAddr>,
}

/// How certificates are ordered, renewed and watched.
#[derive(Debug, Clone)]
pub struct CertificatesConfig {
    /// Set from `--acme-directory` / the file: overrides the stored setting.
    pub acme_directory: Option<String>,
    /// Extra roots for the CA's HTTPS, from `--acme-ca-file`.
    pub acme_ca_file: Option<PathBuf>,
    /// The port the CA reaches for HTTP-01, checked before ordering (80).
    pub self_test_port: u16,
    /// DNS server for the pre-order self-test and DNS-01 propagation
    /// checks; `None`: the system resolver / the provider's own server.
    pub resolver: Option<SocketAddr>,
    /// Warn when the served certificate expires within this many days.
    pub expiry_warning_days: u32,
    pub probe_interval: Duration,
    /// Where the expiry probe connects; default: the proxy's HTTPS listener.
    pub probe_address: Option<SocketAddr>,
}

impl CertificatesConfig {
    fn load(args: &ConfigArgs, file: Option<FileCertificates>) -> anyhow::Result<Self> {
        let file = file.unwrap_or_default();
        let days = file.expiry_warning_days.unwrap_or(14);
        if !(1..=365).contains(&days) {
            bail!("certificates.expiry_warning_days must be 1..=365");
        }
        let minutes = file.probe_interval_minutes.unwrap_or(360);
        if minutes == 0 {
            bail!("certificates.probe_interval_minutes must be positive");
        }
        let acme_directory = args.acme_directory.clone().or(file.acme_directory);
        if let Some(url) = &acme_directory {
            if !url.starts_with("https://") {
                bail!("the ACME directory `{url}` must be an https:// URL");
            }
        }
        Ok(CertificatesConfig {
            acme_directory,
            acme_ca_file: args.acme_ca_file.clone().or(file.acme_ca_file),
            self_test_port: file.self_test_port.unwrap_or(80),
            resolver: file.resolver,
            expiry_warning_days: days,
            probe_interval: Duration::from_secs(minutes * 60),
            probe_address: file.probe_address,
        })
    }

    pub fn for_tests() -> CertificatesConfig {
        CertificatesConfig {
            acme_directory: None,
            acme_ca_file: None,
            self_test_port: 80,
            resolver: None,
            expiry_warning_days: 14,
            probe_interval: Duration::from_secs(6 * 3600),
            probe_address: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProxy {
    driver: Option<String>,
    http: Option<String>,
    https: Option<String>,
    access_log: Option<bool>,
    nginx: Option<FileNginx>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNginx {
    binary: Option<PathBuf>,
    conf: Option<PathBuf>,
    sites_dir: Option<PathBuf>,
    prefix: Option<PathBuf>,
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyDriver {
    Embedded,
    Nginx,
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub driver: ProxyDriver,
    /// `None`: that listener is off.
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub access_log: bool,
    pub nginx: NginxConfig,
}

/// Where the nginx driver writes and how it drives nginx.
#[derive(Debug, Clone)]
pub struct NginxConfig {
    pub binary: PathBuf,
    /// The main configuration file, checked whole with `nginx -t -c`.
    pub conf: PathBuf,
    /// Directory of berth's per-domain files; `conf` must include
    /// `<sites_dir>/*.conf` inside its `http` block.
    pub sites_dir: PathBuf,
    /// nginx's `-p` prefix, for an instance that is not the system one.
    pub prefix: Option<PathBuf>,
    /// Addresses the rendered servers listen on.
    pub http: SocketAddr,
    pub https: SocketAddr,
    /// Where ACME HTTP-01 answers are written for nginx to serve.
    pub challenge_dir: PathBuf,
}

impl ProxyConfig {
    fn load(args: &ConfigArgs, file: Option<FileProxy>, data_dir: &Path) -> anyhow::Result<Self> {
        let file = file.unwrap_or_default();
        let listener = |flag: &Option<String>, file: &Option<String>, default: &str, key: &str| {
            let text = flag
                .clone()
                .or(file.clone())
                .unwrap_or_else(|| default.into());
            if text == "off" {
                return Ok(None);
            }
            text.parse::<SocketAddr>().map(Some).with_context(|| {
                format!("proxy {key}: `{text}` is not an address like 0.0.0.0:80 or `off`")
            })
        };
        let driver = match args
            .proxy_driver
            .as_deref()
            .or(file.driver.as_deref())
            .unwrap_or("embedded")
        {
            "embedded" => ProxyDriver::Embedded,
            "nginx" => ProxyDriver::Nginx,
            other => bail!("proxy driver must be `embedded` or `nginx`, not `{other}`"),
        };
        let n = file.nginx.unwrap_or_default();
        Ok(ProxyConfig {
            driver,
            http: listener(&args.proxy_http, &file.http, "0.0.0.0:80", "http")?,
            https: listener(&args.proxy_https, &file.https, "0.0.0.0:443", "https")?,
            access_log: file.access_log.unwrap_or(true),
            nginx: NginxConfig {
                binary: n.binary.unwrap_or_else(|| PathBuf::from("nginx")),
                conf: n
                    .conf
                    .unwrap_or_else(|| PathBuf::from("/etc/nginx/nginx.conf")),
                sites_dir: n
                    .sites_dir
                    .unwrap_or_else(|| PathBuf::from("/etc/nginx/conf.d/berth")),
                prefix: n.prefix,
                http: n
                    .http
                    .unwrap_or_else(|| "0.0.0.0:80".parse().expect("valid")),
                https: n
                    .https
                    .unwrap_or_else(|| "0.0.0.0:443".parse().expect("valid")),
                challenge_dir: data_dir.join("acme-challenge"),
            },
        })
    }

    /// Both listeners on loopback port 0, embedded driver.
    pub fn for_tests(data_dir: &Path) -> ProxyConfig {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        ProxyConfig {
            driver: ProxyDriver::Embedded,
            http: Some(any),
            https: Some(any),
            access_log: true,
            nginx: NginxConfig {
                binary: PathBuf::from("nginx"),
                conf: data_dir.join("nginx/nginx.conf"),
                sites_dir: data_dir.join("nginx/sites"),
                prefix: Some(data_dir.join("nginx")),
                http: any,
                https: any,
                challenge_dir: data_dir.join("acme-challenge"),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Generate (once) and reuse a self-signed certificate in the data dir.
    SelfSigned,
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Plain HTTP; only accepted where `Config::load` allowed it.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The TOML file this was loaded from, if any: berth's own backups
    /// carry it, so settings kept outside the store are not lost.
    pub file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls: Tls,
    pub site_dir: PathBuf,
    pub log_format: LogFormat,
    /// Peers whose `X-Forwarded-For` is believed; everyone else's is ignored.
    pub trusted_proxies: Vec<IpNet>,
    pub session_idle: Duration,
    pub session_absolute: Duration,
    /// `None`: DOCKER_HOST or the local socket.
    pub docker_host: Option<String>,
    /// Host directories apps may bind-mount from; empty: none.
    pub bind_roots: Vec<PathBuf>,
    pub proxy: ProxyConfig,
    pub certificates: CertificatesConfig,
    /// Where the master key comes from.
    pub master_key: MasterKeySource,
    pub firewall: FirewallConfig,
}

/// The master key wraps the key ring in the store; it is the one secret
/// berth cannot keep in its own database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// A file of 32 raw bytes (or their hex/base64), mode 0600.
    File(PathBuf),
    /// `BERTH_MASTER_KEY`: hex or base64 of 32 bytes.
    Environment,
}

/// The variable that supplies the master key itself.
pub const MASTER_KEY_ENV: &str = "BERTH_MASTER_KEY";

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";

/// Whether `text` is a configuration file berth would accept as far as
/// its syntax and keys go (paths and addresses are checked when loading).
pub fn parse_file(text: &str) -> anyhow::Result<()> {
    toml::from_str::<FileConfig>(text)?;
    Ok(())
}

impl Config {
    /// Builds the effective configuration from the file (if any) and the flags.
    pub fn load(args: &ConfigArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("Failed to read config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("Invalid config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };

        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let listen = match args.listen.or(file.listen) {
            Some(addr) => addr,
            None => DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses"),
        };

        let plain_http = args.plain_http || file.plain_http.unwrap_or(false);
        let allow_public_plain = args.allow_plain_http_on_public_address
            || file.allow_plain_http_on_public_address.unwrap_or(false);
        let cert = args.tls_cert.clone().or(file.tls_cert);
        let key = args.tls_key.clone().or(file.tls_key);
        let tls = match (plain_http, cert, key) {
            (true, Some(_), _) | (true, _, Some(_)) => {
                bail!("plain_http and tls_cert/tls_key cannot be used together")
            }
            (true, None, None) => {
                if !listen.ip().is_loopback() && !allow_public_plain {
                    bail!(
                        "plain HTTP on {listen} would send passwords in clear text: listen on a \
                         loopback address, or add --allow-plain-http-on-public-address if a \
                         TLS-terminating proxy sits in front of berth"
                    );
                }
                Tls::Off
            }
            (false, Some(cert), Some(key)) => Tls::Files { cert, key },
            (false, None, None) => Tls::SelfSigned,
            (false, _, _) => bail!("tls_cert and tls_key must be given together"),
        };

        let log_format = match args
            .log_format
            .as_deref()
            .or(file.log_format.as_deref())
            .unwrap_or("text")
        {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("log_format must be `text` or `json`, not `{other}`"),
        };

        let trusted_proxies = file
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|s| parse_net(s))
            .collect::<anyhow::Result<Vec<_>>>()?;

        let idle = file.session_idle_minutes.unwrap_or(60);
        let absolute = file.session_absolute_hours.unwrap_or(12);
        if idle == 0 || absolute == 0 {
            bail!("session_idle_minutes and session_absolute_hours must be positive");
        }

        let site_dir = args
            .site_dir
            .clone()
            .or(file.site_dir)
            .unwrap_or_else(default_site_dir);

        let docker_host = args.docker_host.clone().or(file.docker_host);
        let mut bind_roots = if args.bind_roots.is_empty() {
            file.bind_roots.unwrap_or_default()
        } else {
            args.bind_roots.clone()
        };
        for root in &mut bind_roots {
            let clean = root.is_absolute()
                && root.components().all(|c| {
                    matches!(
                        c,
                        std::path::Component::RootDir | std::path::Component::Normal(_)
                    )
                });
            if !clean || root.as_os_str() == "/" {
                bail!(
                    "bind_roots: `{}` must be an absolute directory other than /, without `.` or `..`",
                    root.display()
                );
            }
            *root = root.components().collect();
        }

        let proxy = ProxyConfig::load(args, file.proxy, &data_dir)?;
        let certificates = CertificatesConfig::load(args, file.certificates)?;
        let firewall = FirewallConfig::load(args, file.firewall)?;
        let master_key = match (
            args.master_key_file.clone().or(file.master_key_file),
            std::env::var_os(MASTER_KEY_ENV),
        ) {
            (Some(_), Some(_)) => {
                bail!("{MASTER_KEY_ENV} and master_key_file cannot be used together: choose one")
            }
            (Some(path), None) => MasterKeySource::File(path),
            (None, Some(_)) => MasterKeySource::Environment,
            (None, None) => MasterKeySource::File(data_dir.join("master.key")),
        };
        Ok(Config {
            file: args.config.clone(),
            firewall,
            master_key,
            proxy,
            certificates,
            docker_host,
            bind_roots,
            data_dir,
            listen,
            tls,
            site_dir,
            log_format,
            trusted_proxies,
            session_idle: Duration::from_secs(idle * 60),
            session_absolute: Duration::from_secs(absolute * 3600),
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("berth.db")
    }

    pub fn uses_tls(&self) -> bool {
        self.tls != Tls::Off
    }

    /// A config for tests and tools: plain HTTP on loopback port 0.
    pub fn for_tests(data_dir: &Path) -> Config {
        Config {
            file: None,
            data_dir: data_dir.to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("valid address"),
            tls: Tls::Off,
            site_dir: default_site_dir(),
            log_format: LogFormat::Text,
            trusted_proxies: Vec::new(),
            session_idle: Duration::from_secs(3600),
            session_absolute: Duration::from_secs(12 * 3600),
            docker_host: None,
            bind_roots: Vec::new(),
            proxy: ProxyConfig::for_tests(data_dir),
            certificates: CertificatesConfig::for_tests(),
            master_key: MasterKeySource::File(data_dir.join("master.key")),
            firewall: FirewallConfig {
                netns: None,
                confirm_seconds: 60,
            },
        }
    }
}

/// Accepts a CIDR (`10.0.0.0/8`) or a bare address (`127.0.0.1`).
fn parse_net(s: &str) -> anyhow::Result<IpNet> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    let ip: std::net::IpAddr = s
        .parse()
        .with_context(|| format!("trusted_proxies: `{s}` is not an address or CIDR"))?;
    Ok(IpNet::from(ip))
}

/// Next to the executable (`site/`) when installed, else the build output of
/// `scripts/build-site.sh` in the source tree.
fn default_site_dir() -> PathBuf {
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|p| p.join("site")))
        .filter(|p| p.join("pkg").is_dir())
    {
        return dir;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/site"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ConfigArgs {
        ConfigArgs::default()
    }

    #[test]
    fn defaults_to_tls_with_a_self_signed_certificate() {
        let c = Config::load(&args()).unwrap();
        assert_eq!(c.tls, Tls::SelfSigned);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn plain_http_is_refused_on_a_public_address() {
        let mut a = args();
        a.plain_http = true;
        a.listen = Some("0.0.0.0:8080".parse().unwrap());
        let err = Config::load(&a).unwrap_err().to_string();
        assert!(err.contains("clear text"), "{err}");
        a.allow_plain_http_on_public_address = true;
        assert_eq!(Config::load(&a).unwrap().tls, Tls::Off);
    }

    #[test]
    fn plain_http_is_allowed_on_loopback() {
        let mut a = args();
        a.plain_http = true;
        a.listen = Some("127.0.0.1:8080".parse().unwrap());
        assert_eq!(Config::load(&a).unwrap().tls, Tls::Off);
        a.listen = Some("[::1]:8080".parse().unwrap());
        assert_eq!(Config::load(&a).unwrap().tls, Tls::Off);
    }

    #[test]
    fn file_values_are_overridden_by_flags_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "data_dir = \"/srv/berth\"\nlisten = \"127.0.0.1:9000\"\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\n",
        )
        .unwrap();
        let mut a = args();
        a.config = Some(path.clone());
        a.listen = Some("127.0.0.1:9999".parse().unwrap());
        let c = Config::load(&a).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/berth"));
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.trusted_proxies.len(), 2);

        std::fs::write(&path, "listne = \"127.0.0.1:9000\"\n").unwrap();
        let err = format!("{:#}", Config::load(&a).unwrap_err());
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn acme_flags_and_certificate_settings_are_checked() {
        let mut a = args();
        a.acme_directory = Some("http://ca.test/dir".into());
        let err = format!("{:#}", Config::load(&a).unwrap_err());
        assert!(err.contains("https://"), "{err}");
        a.acme_directory = Some("https://ca.test/dir".into());
        let c = Config::load(&a).unwrap();
        assert_eq!(
            c.certificates.acme_directory.as_deref(),
            Some("https://ca.test/dir")
        );
        assert_eq!(c.certificates.self_test_port, 80);
        assert_eq!(c.certificates.expiry_warning_days, 14);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, "[certificates]\nexpiry_warning_days = 0\n").unwrap();
        let mut a = args();
        a.config = Some(path.clone());
        assert!(Config::load(&a).is_err());
        std::fs::write(
            &path,
            "[certificates]\nself_test_port = 8080\nresolver = \"127.0.0.1:53\"\nprobe_interval_minutes = 30\n",
        )
        .unwrap();
        let c = Config::load(&a).unwrap();
        assert_eq!(c.certificates.self_test_port, 8080);
        assert_eq!(c.certificates.probe_interval, Duration::from_secs(1800));
        assert!(c.certificates.resolver.is_some());
    }
}
