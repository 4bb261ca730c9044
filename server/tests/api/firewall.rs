//! The firewall against real nftables, only ever inside network namespaces
//! these tests create: a server namespace (where berth's rules go, with
//! listeners and a Docker-like DNAT), a client namespace on a veth pair,
//! and a "container" namespace behind the DNAT. Connections are real TCP
//! and UDP from the client namespace; the host's own ruleset is never
//! touched.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_with, TestApp};

const CLIENT_V4: &str = "10.99.1.2";
const SERVER_V4: &str = "10.99.1.1";
const SERVER_V6: &str = "fd99:1::1";

/// Three namespaces and their links, removed on drop.
struct Lab {
    server: String,
    client: String,
    container: String,
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_stdin(args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

impl Lab {
    fn new() -> Lab {
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let lab = Lab {
            server: format!("berth-t-{tag}-s"),
            client: format!("berth-t-{tag}-c"),
            container: format!("berth-t-{tag}-k"),
        };
        for ns in [&lab.server, &lab.client, &lab.container] {
            run(&["ip", "netns", "add", ns]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let (s, c, k) = (&lab.server, &lab.client, &lab.container);
        // The links are made inside the namespaces: no name on the host.
        run(&[
            "ip", "-n", s, "link", "add", "a0", "type", "veth", "peer", "name", "a0", "netns", c,
        ]);
        run(&[
            "ip", "-n", s, "link", "add", "b0", "type", "veth", "peer", "name", "b0", "netns", k,
        ]);
        for (ns, dev, addrs) in [
            (s, "a0", ["10.99.1.1/24", "fd99:1::1/64"]),
            (c, "a0", ["10.99.1.2/24", "fd99:1::2/64"]),
            (s, "b0", ["10.99.2.1/24", "fd99:2::1/64"]),
            (k, "b0", ["10.99.2.2/24", "fd99:2::2/64"]),
        ] {
            for a in addrs {
                let mut args = vec!["ip", "-n", ns, "addr", "add", a, "dev", dev];
                if a.contains(':') {
                    args.push("nodad");
                }
                run(&args);
            }
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        run(&["ip", "-n", k, "route", "add", "default", "via", "10.99.2.1"]);
        run(&[
            "ip",
            "netns",
            "exec",
            s,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
        ]);
        // What Docker does for `-p 8080:80`: DNAT in a table of its own.
        let out = run_stdin(
            &["ip", "netns", "exec", s, "nft", "-f", "-"],
            "table ip dockerish {\n\
               chain pre { type nat hook prerouting priority dstnat; tcp dport 8080 dnat to 10.99.2.2:80; }\n\
               chain dock_forward { type filter hook forward priority filter; policy accept; }\n\
             }\n",
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn nft(&self, args: &[&str]) -> (bool, String) {
        let mut all = vec!["ip", "netns", "exec", &self.server, "nft"];
        all.extend_from_slice(args);
        let out = Command::new(all[0]).args(&all[1..]).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// The other table, as the test made it (listing without handles).
    fn dockerish(&self) -> String {
        let (ok, text) = self.nft(&["list", "table", "ip", "dockerish"]);
        assert!(ok, "the test's own table is still there");
        text
    }

    fn berth_table(&self) -> Option<String> {
        let (ok, text) = self.nft(&["list", "table", "inet", "berth"]);
        ok.then_some(text)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client, &self.container] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Runs `f` on a thread inside namespace `ns`: sockets it makes live there.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on this thread only, with a valid namespace fd.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}");
        f()
    })
    .join()
    .unwrap()
}

/// A TCP listener on every address in `ns` that answers `ok` and closes.
fn serve_tcp(ns: &str, port: u16) {
    let listener = in_netns(ns, move || TcpListener::bind(("::", port)).unwrap());
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"ok");
        }
    });
}

/// A UDP echo on every address in `ns`.
fn serve_udp(ns: &str, port: u16) {
    let socket = in_netns(ns, move || UdpSocket::bind(("::", port)).unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
}

#[derive(Debug, PartialEq, Clone, Copy)]
enum Reach {
    Open,
    /// Refused at once (TCP reset or ICMP unreachable).
    Refused,
    /// No answer: dropped.
    Dropped,
}

fn tcp_from(ns: &str, host: &str, port: u16) -> Reach {
    let addr: SocketAddr = SocketAddr::new(host.parse().unwrap(), port);
    in_netns(ns, move || {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(800)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = [0u8; 2];
                match s.read_exact(&mut buf) {
                    Ok(()) if &buf == b"ok" => Reach::Open,
                    other => panic!("connected to {addr} but no answer: {other:?}"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Reach::Refused,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Reach::Dropped,
            Err(e) => panic!("connect {addr}: {e}"),
        }
    })
}

fn udp_from(ns: &str, host: &str, port: u16) -> Reach {
    let addr: SocketAddr = SocketAddr::new(host.parse().unwrap(), port);
    in_netns(ns, move || {
        let local = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let s = UdpSocket::bind(local).unwrap();
        s.connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(800)))
            .unwrap();
        s.send(b"ping").unwrap();
        let mut buf = [0u8; 8];
        match s.recv(&mut buf) {
            Ok(4) => Reach::Open,
            Ok(n) => panic!("odd answer of {n} bytes"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Reach::Refused,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Reach::Dropped
            }
            Err(e) => panic!("udp {addr}: {e}"),
        }
    })
}

/// An admin calling berth's API from the client namespace's address: berth
/// trusts loopback as a proxy, so the forwarded address is the caller's.
struct Admin {
    app: TestApp,
    token: String,
    from: String,
}

impl Admin {
    async fn new(lab: &Lab, confirm_seconds: u32) -> Admin {
        let netns = lab.server.clone();
        let app = spawn_with(move |c| {
            c.firewall.netns = Some(netns);
            c.firewall.confirm_seconds = confirm_seconds;
            c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        })
        .await;
        let csrf = app.setup().await;
        let (_, token) = app.create_token(&csrf, &["admin"]).await;
        Admin {
            app,
            token,
            from: CLIENT_V4.into(),
        }
    }

    fn panel_port(&self) -> u16 {
        self.app.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// One request over a connection of its own (a fresh client).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_with(&reqwest::Client::new(), method, path, body)
            .await
    }

    async fn call_with(
        &self,
        client: &reqwest::Client,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = client
            .request(method, self.app.api(path))
            .bearer_auth(&self.token)
            .header("X-Forwarded-For", &self.from);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn put_rules(&self, enabled: bool, rules: Value) -> (StatusCode, Value) {
        self.call(
            Method::PUT,
            "/firewall/rules",
            Some(json!({ "enabled": enabled, "rules": rules })),
        )
        .await
    }

    /// Applies and confirms over a new connection; answers the apply id.
    async fn apply_and_confirm(&self) -> i64 {
        let (status, pending) = self.call(Method::POST, "/firewall/apply", None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
        let id = pending["apply_id"].as_i64().unwrap();
        let (status, body) = self
            .call(
                Method::POST,
                "/firewall/confirm",
                Some(json!({ "apply_id": id })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["pending"].is_null());
        assert_eq!(body["last_apply"]["state"], "confirmed");
        id
    }

    fn allow_panel(&self) -> Value {
        json!({ "action": "allow", "protocol": "tcp", "ports": self.panel_port().to_string(),
                "sources": [format!("{CLIENT_V4}/32")], "comment": "panel" })
    }
}

fn exposure_of<'a>(report: &'a Value, kind: &str, port: u16) -> &'a Value {
    report["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == kind && p["port"] == port)
        .unwrap_or_else(|| panic!("no {kind} port {port} in {report}"))
}

#[tokio::test]
async fn rules_decide_real_connections_and_published_ports() {
    let lab = Lab::new();
    for port in [22, 80, 443, 3001, 5432, 2222] {
        serve_tcp(&lab.server, port);
    }
    serve_udp(&lab.server, 53);
    serve_tcp(&lab.container, 80);
    let admin = Admin::new(&lab, 60).await;
    let other_table = lab.dockerish();

    // Before: everything answers, the DNAT included.
    for port in [22, 80, 443, 3001, 5432, 8080] {
        assert_eq!(
            tcp_from(&lab.client, SERVER_V4, port),
            Reach::Open,
            "port {port}"
        );
    }
    assert_eq!(udp_from(&lab.client, SERVER_V4, 53), Reach::Open);
    assert_eq!(
        lab.berth_table(),
        None,
        "nothing is loaded until the admin applies"
    );

    let rules = json!([
        admin.allow_panel(),
        { "action": "allow", "protocol": "tcp", "ports": "22", "sources": ["10.99.1.0/24", "fd99:1::/64"] },
        { "action": "allow", "protocol": "tcp", "ports": "80,443" },
        { "action": "reject", "protocol": "tcp", "ports": "3001", "comment": "app port stays behind the proxy" },
        { "action": "deny", "protocol": "tcp", "ports": "5432", "sources": ["0.0.0.0/0", "::/0"],
          "comment": "database stays internal" },
        { "action": "deny", "protocol": "tcp", "ports": "8000-8100", "comment": "published ports" },
        // Overlaps the two above (same verdict): the kernel's interval sets
        // refuse overlapping elements, so berth must split or drop them.
        { "action": "deny", "protocol": "tcp", "ports": "5432-5433,8080", "sources": ["10.99.1.0/24", "10.99.1.2"] },
        { "action": "allow", "protocol": "udp", "ports": "53", "sources": ["fd99:1::/64"] },
        { "name": "ssh-alt", "action": "allow", "protocol": "tcp", "ports": "2222", "rate_limit": "3/minute" },
    ]);
    let (status, saved) = admin.put_rules(true, rules).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["revision"], 1);
    assert!(saved["applied_revision"].is_null());

    let (status, plan) = admin.call(Method::GET, "/firewall/plan", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(plan["check_error"].is_null(), "{plan}");
    assert!(plan["refused"].is_null(), "{plan}");
    assert_eq!(plan["up_to_date"], false);
    let added: Vec<&str> = plan["diff"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["op"] == "+")
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert!(
        added.iter().any(|l| l.contains("10.99.1.0/24 . 6 . 22")),
        "{added:?}"
    );
    assert!(plan["changes"][0]
        .as_str()
        .unwrap()
        .contains("turn the firewall on"));

    admin.apply_and_confirm().await;
    let table = lab.berth_table().expect("berth's table is loaded");
    assert!(table.contains("hook prerouting"), "{table}");

    assert_eq!(tcp_from(&lab.client, SERVER_V4, 22), Reach::Open);
    assert_eq!(tcp_from(&lab.client, SERVER_V6, 22), Reach::Open);
    assert_eq!(tcp_from(&lab.client, SERVER_V4, 443), Reach::Open);
    assert_eq!(
        tcp_from(&lab.client, SERVER_V4, 3001),
        Reach::Refused,
        "reject answers at once"
    );
    assert_eq!(tcp_from(&lab.client, SERVER_V4, 5432), Reach::Dropped);
    assert_eq!(tcp_from(&lab.client, SERVER_V6, 5432), Reach::Dropped);
    // The published port: Docker-style DNAT does not carry traffic around
    // the deny rule.
    assert_eq!(tcp_from(&lab.client, SERVER_V4, 8080), Reach::Dropped);
    assert_eq!(
        udp_from(&lab.client, SERVER_V4, 53),
        Reach::Dropped,
        "UDP 53 is IPv6-only"
    );
    assert_eq!(udp_from(&lab.client, SERVER_V6, 53), Reach::Open);
    // 3 new connections a minute per source: the fourth is dropped.
    for i in 0..3 {
        assert_eq!(
            tcp_from(&lab.client, SERVER_V4, 2222),
            Reach::Open,
            "connection {i}"
        );
    }
    assert_eq!(tcp_from(&lab.client, SERVER_V4, 2222), Reach::Dropped);

    assert_eq!(lab.dockerish(), other_table, "the other table is untouched");

    // The exposure report, from the namespace's listeners.
    let (status, report) = admin.call(Method::GET, "/firewall/exposure", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["enabled"], true);
    let ssh = exposure_of(&report, "host", 22);
    assert_eq!(ssh["reachable"], "restricted", "{ssh}");
    assert_eq!(ssh["allowed_from"], json!(["10.99.1.0/24", "fd99:1::/64"]));
    assert_eq!(exposure_of(&report, "host", 443)["reachable"], "open");
    assert_eq!(exposure_of(&report, "host", 5432)["reachable"], "blocked");
    assert_eq!(exposure_of(&report, "host", 5432)["rule"], 4);

    // Drift: the table removed behind berth's back comes back.
    let (ok, _) = lab.nft(&["delete", "table", "inet", "berth"]);
    assert!(ok);
    let (_, status_body) = admin.call(Method::GET, "/firewall", None).await;
    assert!(status_body["drift"].is_string(), "{status_body}");
    let why = admin.app.state.firewall.reconcile().await.unwrap();
    assert!(why.unwrap().contains("outside berth"));
    assert_eq!(tcp_from(&lab.client, SERVER_V4, 5432), Reach::Dropped);
    let (_, status_body) = admin.call(Method::GET, "/firewall", None).await;
    assert!(status_body["drift"].is_null(), "{status_body}");

    // Off again: berth's table goes, everything answers, the other stays.
    let (status, _) = admin.put_rules(false, json!([])).await;
    assert_eq!(status, StatusCode::OK);
    admin.apply_and_confirm().await;
    assert_eq!(lab.berth_table(), None);
    for port in [22, 5432, 8080] {
        assert_eq!(
            tcp_from(&lab.client, SERVER_V4, port),
            Reach::Open,
            "port {port}"
        );
    }
    assert_eq!(lab.dockerish(), other_table);
    let actions: Vec<String> = admin
        .app
        .audit_actions()
        .await
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    for a in [
        "firewall.rules.update",
        "firewall.apply",
        "firewall.confirm",
        "firewall.reload",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
}

#[tokio::test]
async fn an_unconfirmed_apply_rolls_back_and_a_confirmation_needs_a_new_connection() {
    let lab = Lab::new();
    serve_tcp(&lab.server, 22);
    serve_tcp(&lab.server, 5432);
    let admin = Admin::new(&lab, 10).await;

    // A first, confirmed state: 5432 closed.
    let deny_db = json!({ "action": "deny", "protocol": "tcp", "ports": "5432" });
    let allow_ssh = json!({ "action": "allow", "protocol": "tcp", "ports": "22" });
    let (status, _) = admin
        .put_rules(true, json!([admin.allow_panel(), allow_ssh, deny_db]))
        .await;
    assert_eq!(status, StatusCode::OK);
    admin.apply_and_confirm().await;
    assert_eq!(tcp_from(&lab.client, SERVER_V4, 22), Reach::Open);
    let confirmed_table = lab.berth_table().unwrap();

    // Then a change that cuts SSH, never confirmed.
    let (status, _) = admin
        .put_rules(true, json!([admin.allow_panel(), deny_db]))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, pending) = admin
        .call(
            Method::POST,
            "/firewall/apply",
            Some(json!({ "confirm_seconds": 10 })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    assert_eq!(tcp_from(&lab.client, SERVER_V4, 22), Reach::Dropped);
    // A second apply waits for the first.
    let (status, body) = admin.call(Method::POST, "/firewall/apply", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("pending"))
    );
    let (_, st) = admin.call(Method::GET, "/firewall", None).await;
    assert_eq!(st["pending"]["apply_id"], pending["apply_id"]);

    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        tcp_from(&lab.client, SERVER_V4, 22),
        Reach::Open,
        "connectivity returns"
    );
    assert_eq!(
        lab.berth_table().unwrap(),
        confirmed_table,
        "the confirmed table is back"
    );
    let (_, st) = admin.call(Method::GET, "/firewall", None).await;
    assert!(st["pending"].is_null());
    assert_eq!(st["last_apply"]["state"], "rolled_back");
    assert!(st["last_apply"]["message"]
        .as_str()
        .unwrap()
        .contains("not confirmed within 10 s"));
    assert_eq!(st["applied_revision"], 1);
    let (status, body) = admin
        .call(
            Method::POST,
            "/firewall/confirm",
            Some(json!({ "apply_id": pending["apply_id"] })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::GONE, Some("expired"))
    );

    // Over the connection that asked for the apply, a confirmation proves
    // nothing and is refused; a new connection's is taken.
    let kept = reqwest::Client::new();
    let (status, pending) = admin
        .call_with(&kept, Method::POST, "/firewall/apply", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let confirm = json!({ "apply_id": pending["apply_id"] });
    let (status, body) = admin
        .call_with(
            &kept,
            Method::POST,
            "/firewall/confirm",
            Some(confirm.clone()),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("stale_connection")),
        "{body}"
    );
    let (status, body) = admin
        .call(Method::POST, "/firewall/confirm", Some(confirm))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        tcp_from(&lab.client, SERVER_V4, 22),
        Reach::Dropped,
        "confirmed rules stay"
    );
    let (_, st) = admin.call(Method::GET, "/firewall", None).await;
    assert_eq!(st["applied_revision"], 2);
    assert_eq!(st["last_apply"]["state"], "confirmed");

    // "Revert now" restores at once.
    let (status, _) = admin
        .put_rules(true, json!([admin.allow_panel(), allow_ssh, deny_db]))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = admin.call(Method::POST, "/firewall/apply", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(tcp_from(&lab.client, SERVER_V4, 22), Reach::Open);
    let (status, st) = admin.call(Method::POST, "/firewall/rollback", None).await;
    assert_eq!(status, StatusCode::OK, "{st}");
    assert_eq!(tcp_from(&lab.client, SERVER_V4, 22), Reach::Dropped);
    assert!(st["last_apply"]["message"]
        .as_str()
        .unwrap()
        .contains("rolled back by token:"));
}

#[tokio::test]
async fn the_lockout_guard_refuses_rules_that_cut_off_the_admin() {
    let lab = Lab::new();
    let admin = Admin::new(&lab, 60).await;
    let port = admin.panel_port().to_string();

    // The default drop with nothing for the panel.
    let (status, body) = admin.put_rules(true, json!([])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "rules");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains(CLIENT_V4));
    // A rule dropping the admin's network before the allow.
    let (status, body) = admin
        .put_rules(
            true,
            json!([
                { "action": "deny", "protocol": "tcp", "ports": port, "sources": ["10.99.0.0/16"] },
                admin.allow_panel(),
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "rules[0]");
    // A blanket reject of everything TCP.
    let (status, body) = admin
        .put_rules(
            true,
            json!([{ "action": "reject", "protocol": "any" }, admin.allow_panel()]),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("rules[0]"))
    );
    let (_, rules) = admin.call(Method::GET, "/firewall/rules", None).await;
    assert_eq!(rules["revision"], 0, "nothing was stored");

    // Saved from the admin's address, applied from another: refused at apply.
    let (status, _) = admin.put_rules(true, json!([admin.allow_panel()])).await;
    assert_eq!(status, StatusCode::OK);
    let elsewhere = Admin {
        from: "10.77.0.9".into(),
        app: admin.app,
        token: admin.token,
    };
    let (status, plan) = elsewhere.call(Method::GET, "/firewall/plan", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        plan["refused"].as_str().unwrap().contains("10.77.0.9"),
        "{plan}"
    );
    let (status, body) = elsewhere.call(Method::POST, "/firewall/apply", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(lab.berth_table(), None, "nothing was loaded");
}

#[tokio::test]
async fn bad_input_is_refused_by_field_and_changes_nothing() {
    let lab = Lab::new();
    let admin = Admin::new(&lab, 60).await;
    let ok = admin.allow_panel();
    let cases = [
        (
            json!({ "action": "deny", "protocol": "tcp", "ports": "70000" }),
            "rules[1].ports",
        ),
        (
            json!({ "action": "deny", "protocol": "tcp", "ports": "22; reboot" }),
            "rules[1].ports",
        ),
        (
            json!({ "action": "deny", "protocol": "tcp", "sources": ["1.2.3.4/33"] }),
            "rules[1].sources[0]",
        ),
        (
            json!({ "action": "deny", "protocol": "tcp", "sources": ["$(reboot)"] }),
            "rules[1].sources[0]",
        ),
        (
            json!({ "name": "db`reboot`", "action": "deny", "protocol": "tcp" }),
            "rules[1].name",
        ),
        (
            json!({ "action": "deny", "protocol": "tcp", "comment": "a \"quoted\" word" }),
            "rules[1].comment",
        ),
        (
            json!({ "action": "deny", "protocol": "tcp", "ports": "22", "rate_limit": "5/minute" }),
            "rules[1].rate_limit",
        ),
        (
            json!({ "action": "allow", "protocol": "tcp", "ports": "22", "rate_limit": "5/fortnight" }),
            "rules[1].rate_limit",
        ),
        (
            json!({ "action": "allow", "protocol": "icmp", "ports": "8" }),
            "rules[1].ports",
        ),
    ];
    for (rule, field) in cases {
        let (status, body) = admin.put_rules(true, json!([ok, rule])).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{rule}: {body}");
        assert_eq!(body["error"]["field"], field, "{rule}: {body}");
    }
    // Shapes serde refuses: unknown protocol and fields.
    for rule in [
        json!({ "action": "deny", "protocol": "sctp" }),
        json!({ "action": "deny", "protocol": "tcp", "interface": "eth0" }),
    ] {
        let (status, body) = admin.put_rules(true, json!([ok, rule])).await;
        assert!(status.is_client_error(), "{rule}: {status} {body}");
    }
    let (status, body) = admin
        .call(
            Method::POST,
            "/firewall/apply",
            Some(json!({ "confirm_seconds": 5 })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("confirm_seconds"))
    );
    let (_, rules) = admin.call(Method::GET, "/firewall/rules", None).await;
    assert_eq!(rules["revision"], 0);
    assert_eq!(lab.berth_table(), None);
    let (status, body) = admin
        .call(
            Method::POST,
            "/firewall/confirm",
            Some(json!({ "apply_id": 99 })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // A thousand-address blocklist fits in one PUT, a larger body than
    // other routes take.
    let mut many = vec![ok.clone()];
    for i in 0..1000 {
        many.push(json!({ "action": "deny", "protocol": "tcp", "ports": "22",
                          "sources": [format!("10.1.{}.{}/32", i / 250, i % 250 + 1)] }));
    }
    let (status, body) = admin.put_rules(true, json!(many)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["rules"].as_array().unwrap().len(), 1001);
    // Rules that would expand past the bound on set elements are refused.
    let ports: Vec<String> = (1..=64).map(|p| (p * 100).to_string()).collect();
    let sources: Vec<String> = (0..1024)
        .map(|i| format!("10.2.{}.{}/32", i / 250, i % 250 + 1))
        .collect();
    let wide = json!({ "action": "deny", "protocol": "tcp", "ports": ports.join(","), "sources": sources });
    let (status, body) = admin
        .put_rules(true, json!([ok, wide, wide, wide, wide]))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "rules");
    assert_eq!(lab.berth_table(), None);

    // A read-only token reads but cannot change the firewall.
    let csrf = admin.app.login(&admin.app.client).await;
    let (_, reader) = admin.app.create_token(&csrf, &["read"]).await;
    let r = reqwest::Client::new()
        .put(admin.app.api("/firewall/rules"))
        .bearer_auth(&reader)
        .json(&json!({ "enabled": false, "rules": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_restart_rolls_back_an_unconfirmed_apply_and_loads_the_confirmed_rules() {
    let lab = Lab::new();
    serve_tcp(&lab.server, 5432);
    let admin = Admin::new(&lab, 60).await;
    let deny_db = json!({ "action": "deny", "protocol": "tcp", "ports": "5432" });
    let (status, _) = admin
        .put_rules(true, json!([admin.allow_panel(), deny_db]))
        .await;
    assert_eq!(status, StatusCode::OK);
    admin.apply_and_confirm().await;
    let confirmed = lab.berth_table().unwrap();

    // An apply that opens 5432, pending when berth goes away.
    let allow_db = json!({ "action": "allow", "protocol": "tcp", "ports": "5432" });
    let (status, _) = admin
        .put_rules(true, json!([admin.allow_panel(), allow_db]))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = admin.call(Method::POST, "/firewall/apply", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(tcp_from(&lab.client, SERVER_V4, 5432), Reach::Open);

    // A berth starting on the same data dir (a restart, or a reboot that
    // emptied the kernel's tables) rolls the apply back.
    let (ok, _) = lab.nft(&["delete", "table", "inet", "berth"]);
    assert!(ok);
    let mut config = berth::config::Config::for_tests(admin.app.data_dir.path());
    config.firewall.netns = Some(lab.server.clone());
    let again = berth::startup::Application::build(config).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while lab.berth_table().as_deref() != Some(confirmed.as_str()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the confirmed rules never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(tcp_from(&lab.client, SERVER_V4, 5432), Reach::Dropped);
    // The rules go back first and the record follows: CI once read the
    // status between the two and saw `pending`.
    let last = loop {
        let status = again
            .state
            .firewall
            .status("127.0.0.1".parse().unwrap())
            .await
            .unwrap();
        let last = status.last_apply.unwrap();
        if last.state != "pending" || std::time::Instant::now() > deadline {
            break last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(last.state, "rolled_back");
    assert!(last
        .message
        .unwrap()
        .contains("restarted before the apply was confirmed"));
}

#[tokio::test]
async fn a_clean_stop_rolls_back_a_pending_apply() {
    let lab = Lab::new();
    serve_tcp(&lab.server, 5432);
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("berth.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--plain-http", "--listen", "127.0.0.1:0"])
        .args([
            "--proxy-http",
            "off",
            "--proxy-https",
            "off",
            "--firewall-netns",
        ])
        .arg(&lab.server)
        .arg("--data-dir")
        .arg(&data)
        .env("NO_COLOR", "1")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let url = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(rest) = text.split("url=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("berth did not start: {text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let client = crate::helpers::client();
    let token = std::fs::read_to_string(data.join("setup-token")).unwrap();
    let r = client
        .post(format!("{url}/api/v1/setup"))
        .json(&json!({ "token": token.trim(), "username": "admin", "password": crate::helpers::PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let csrf = crate::helpers::csrf_of(r).await;
    let r = client
        .put(format!("{url}/api/v1/firewall/rules"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({ "enabled": true, "rules": [{ "action": "deny", "protocol": "tcp", "ports": "5432" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = client
        .post(format!("{url}/api/v1/firewall/apply"))
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(tcp_from(&lab.client, SERVER_V4, 5432), Reach::Dropped);

    // SIGTERM: the pending apply goes back before berth exits.
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("berth did not stop");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        lab.berth_table(),
        None,
        "berth's table is gone, as before the apply"
    );
    assert_eq!(tcp_from(&lab.client, SERVER_V4, 5432), Reach::Open);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("berth stopped before the apply was confirmed"),
        "{log}"
    );
}
