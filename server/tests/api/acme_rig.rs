//! Real ACME and DNS servers for the certificate tests, on loopback: Debian's
//! pebble (a real ACME CA) with pebble-challtestsrv answering every name with
//! 127.0.0.1, and BIND's named taking RFC 2136 updates signed with TSIG.
//! Each test starts its own; they die with the test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::ports::free_port;

/// A child process killed when dropped.
pub struct Proc(pub Child);

/// A client that trusts the given PEM root.
fn trusting(root_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(root_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct PebbleOptions {
    /// Port the CA connects to for HTTP-01 (berth's proxy HTTP listener).
    pub http_port: u16,
    /// Seconds; 0 keeps pebble's 5 years.
    pub validity_s: u64,
    /// `Some((kid, base64url key))`: external account binding required.
    pub eab: Option<(String, String)>,
    /// DNS server pebble asks; default: its own challtestsrv.
    pub dns: Option<SocketAddr>,
}

impl PebbleOptions {
    /// Validating HTTP-01 on `http_port`, 5-year certificates, no EAB,
    /// names answered by pebble's own challtestsrv.
    pub fn http(http_port: u16) -> PebbleOptions {
        PebbleOptions {
            http_port,
            validity_s: 0,
            eab: None,
            dns: None,
        }
    }
}

pub struct Pebble {
    _dir: tempfile::TempDir,
    _pebble: Proc,
    _challtest: Proc,
    pub directory_url: String,
    /// PEM of the CA pebble's own HTTPS listener uses (berth's extra root).
    pub listener_root_pem: String,
    /// challtestsrv's DNS: answers A 127.0.0.1 for every name.
    pub dns: SocketAddr,
    mgmt: SocketAddr,
}

impl Pebble {
    pub async fn start(options: PebbleOptions) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pebble listener test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        params.subject_alt_names.push(rcgen::SanType::IpAddress(
            std::net::Ipv4Addr::LOCALHOST.into(),
        ));
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();

        let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let challtest_mgmt = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let challtest = Proc(
            Command::new("pebble-challtestsrv")
                .args([
                    "-dns01",
                    &dns.to_string(),
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                ])
                .args(["-management", &challtest_mgmt.to_string()])
                // pebble asks for AAAA first and dials it: answer none, so it
                // connects to 127.0.0.1 where berth listens.
                .args(["-defaultIPv6", "", "-defaultIPv4", "127.0.0.1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("pebble-challtestsrv runs (apt-get install pebble)"),
        );

        // The ports are free when chosen, but another test's connection may
        // take one before pebble binds it: then pebble exits, and it is
        // started again on other ports.
        let config_path = dir.path().join("pebble.json");
        let log_path = dir.path().join("pebble.log");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let mgmt = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let mut config = json!({
                "listenAddress": listen.to_string(),
                "managementListenAddress": mgmt.to_string(),
                "certificate": cert_path,
                "privateKey": key_path,
                "httpPort": options.http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": options.eab.is_some(),
                "certificateValidityPeriod": options.validity_s,
            });
            if let Some((kid, key)) = &options.eab {
                config["externalAccountMACKeys"] = json!({ kid: key });
            }
            std::fs::write(&config_path, json!({ "pebble": config }).to_string()).unwrap();
            let log = std::fs::File::create(&log_path).unwrap();
            let pebble = Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &options.dns.unwrap_or(dns).to_string()])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("pebble runs (apt-get install pebble)");
            let mut pebble = Proc(pebble);
            let directory_url = format!("https://{listen}/dir");
            let client = trusting(&ca.pem());
            let deadline = Instant::now() + Duration::from_secs(20);
            let exited = loop {
                if client
                    .get(&directory_url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    return Pebble {
                        directory_url,
                        listener_root_pem: ca.pem(),
                        dns,
                        mgmt,
                        _dir: dir,
                        _pebble: pebble,
                        _challtest: challtest,
                    };
                }
                if let Ok(Some(status)) = pebble.0.try_wait() {
                    break status;
                }
                let said = std::fs::read_to_string(&log_path).unwrap_or_default();
                assert!(Instant::now() < deadline, "pebble did not come up: {said}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let said = std::fs::read_to_string(&log_path).unwrap_or_default();
            assert!(attempt < 3, "pebble exited ({exited}) three times: {said}");
            eprintln!("pebble exited ({exited}), starting it again: {said}");
        }
    }

    /// A client that trusts pebble's listener.
    pub fn client(&self) -> reqwest::Client {
        trusting(&self.listener_root_pem)
    }

    /// The root that signs what pebble issues (regenerated at every start).
    pub async fn issuing_root(&self) -> reqwest::Certificate {
        let pem = self
            .client()
            .get(format!("https://{}/roots/0", self.mgmt))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()
    }

    /// What `PUT /acme` takes to use this CA.
    pub fn acme_settings(&self) -> serde_json::Value {
        json!({
            "directory_url": self.directory_url,
            "email": "admin@berth.test",
            "extra_roots_pem": self.listener_root_pem,
        })
    }
}

/// A private BIND primary for the zone `berth.test`, accepting updates signed
/// with the TSIG key `berth-test` (hmac-sha256).
pub struct Named {
    _dir: tempfile::TempDir,
    _proc: Proc,
    pub addr: SocketAddr,
    pub key_name: String,
    pub secret: String,
    pub zone: String,
}

impl Named {
    pub async fn start() -> Named {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let secret = {
            use base64::Engine;
            let mut key = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut key);
            base64::engine::general_purpose::STANDARD.encode(key)
        };
        let port = free_port();
        let zone = "berth.test";
        std::fs::write(
            d.join("zone.db"),
            format!(
                "$TTL 60\n@ IN SOA ns1.{zone}. hostmaster.{zone}. ( 1 3600 600 86400 60 )\n  IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n"
            ),
        )
        .unwrap();
        let p = |name: &str| -> PathBuf { d.join(name) };
        std::fs::write(
            d.join("named.conf"),
            format!(
                r#"key "berth-test" {{ algorithm hmac-sha256; secret "{secret}"; }};
options {{
    directory "{dir}";
    pid-file "{pid}";
    session-keyfile "{session}";
    managed-keys-directory "{dir}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ any; }};
}};
controls {{ }};
zone "{zone}" {{
    type primary;
    file "{zonefile}";
    allow-update {{ key "berth-test"; }};
}};
"#,
                dir = d.display(),
                pid = p("named.pid").display(),
                session = p("session.key").display(),
                zonefile = p("zone.db").display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("named.log")).unwrap();
        let child = Command::new("/usr/sbin/named")
            .arg("-g")
            .arg("-c")
            .arg(d.join("named.conf"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("named runs (apt-get install bind9)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let named = Named {
            _dir: dir,
            _proc: Proc(child),
            addr,
            key_name: "berth-test".into(),
            secret,
            zone: zone.into(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while berth::certificates::dns::wire::txt(addr, &format!("ns1.{zone}"))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "named did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        named
    }

    pub async fn txt(&self, name: &str) -> Vec<String> {
        berth::certificates::dns::wire::txt(self.addr, name)
            .await
            .unwrap()
    }
}

/// A private PowerDNS Authoritative server for `berth.test` with its HTTP API
/// on, backed by SQLite in a temporary directory.
pub struct PowerDns {
    _dir: tempfile::TempDir,
    _proc: Proc,
    pub dns: SocketAddr,
    pub api_url: String,
    pub api_key: String,
}

impl PowerDns {
    pub async fn start() -> PowerDns {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let db = d.join("pdns.db");
        let schema =
            std::fs::read_to_string("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")
                .expect("the PowerDNS SQLite schema (apt-get install pdns-backend-sqlite3)");
        let status = Command::new("sqlite3")
            .arg(&db)
            .stdin(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(schema.as_bytes())?;
                c.wait()
            })
            .expect("sqlite3 runs");
        assert!(status.success());
        let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let web = free_port();
        let api_key = format!("key-{}", free_port());
        std::fs::write(
            d.join("pdns.conf"),
            format!(
                "launch=gsqlite3\ngsqlite3-database={db}\nlocal-address={dns}\napi=yes\napi-key={api_key}\n\
                 webserver=yes\nwebserver-address=127.0.0.1\nwebserver-port={web}\nwebserver-allow-from=127.0.0.1\n\
                 socket-dir={dir}\nguardian=no\ndaemon=no\ndisable-syslog=yes\n\
                 cache-ttl=0\nnegquery-cache-ttl=0\nquery-cache-ttl=0\nzone-cache-refresh-interval=0\n",
                db = db.display(),
                dir = d.display(),
            ),
        )
        .unwrap();
        let created = Command::new("pdnsutil")
            .arg(format!("--config-dir={}", d.display()))
            .args(["create-zone", "berth.test", "ns1.berth.test"])
            .output()
            .expect("pdnsutil runs (apt-get install pdns-server)");
        assert!(created.status.success(), "{created:?}");
        let log = std::fs::File::create(d.join("pdns.log")).unwrap();
        let child = Command::new("pdns_server")
            .arg(format!("--config-dir={}", d.display()))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pdns_server runs");
        let pdns = PowerDns {
            _dir: dir,
            _proc: Proc(child),
            dns,
            api_url: format!("http://127.0.0.1:{web}"),
            api_key,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let up = reqwest::Client::new()
                .get(format!("{}/api/v1/servers/localhost", pdns.api_url))
                .header("X-API-Key", &pdns.api_key)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                break;
            }
            assert!(Instant::now() < deadline, "PowerDNS did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pdns
    }
}
