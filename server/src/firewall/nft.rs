//! The adapter to the kernel's firewall: the `nft` program, given JSON on
//! its standard input and its arguments as a list (never a shell line).
//! With a network namespace configured, every command runs through
//! `ip netns exec NAME`, so tests touch only a namespace they made.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::compile::{FAMILY, TABLE};

/// How long one nft or ss run may take before berth gives up on it.
const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NftError(pub String);

/// Runs nft (and ss, for the listening sockets) on the host or in a namespace.
#[derive(Debug, Clone)]
pub struct Nft {
    netns: Option<String>,
}

/// A chain another table hooks into the input path, for detecting UFW,
/// firewalld and the like.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignChain {
    pub family: String,
    pub table: String,
    pub name: String,
    pub hook: Option<String>,
    pub policy: Option<String>,
}

/// A listening socket.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub protocol: &'static str,
    pub address: String,
    pub port: u16,
    pub process: String,
}

impl Nft {
    pub fn new(netns: Option<String>) -> Nft {
        Nft { netns }
    }

    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    fn command(&self, program: &str, args: &[&str]) -> tokio::process::Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = tokio::process::Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => tokio::process::Command::new(program),
        };
        // nft has no use for the master key berth may have been given.
        cmd.args(args)
            .env_remove(crate::config::MASTER_KEY_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn run(
        &self,
        program: &str,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> Result<String, NftError> {
        let mut cmd = self.command(program, args);
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| NftError(format!("cannot run {program}: {e}")))?;
        if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(bytes)
                .await
                .map_err(|e| NftError(format!("cannot write to {program}: {e}")))?;
        }
        let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                NftError(format!(
                    "{program} did not finish in {}s",
                    TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| NftError(format!("{program} failed: {e}")))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err.trim();
            return Err(NftError(if err.is_empty() {
                format!("{program} exited with {}", out.status)
            } else {
                // nft repeats the whole input line under an error; the
                // first lines say what is wrong.
                err.lines().take(6).collect::<Vec<_>>().join("\n")
            }));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `nft --version`, which also proves nft (and the namespace) is there.
    pub async fn version(&self) -> Result<String, NftError> {
        Ok(self
            .run("nft", &["--version"], None)
            .await?
            .trim()
            .to_string())
    }

    /// Loads a transaction: all of it commits, or none of it.
    pub async fn load(&self, transaction: &Value) -> Result<(), NftError> {
        let bytes = transaction.to_string();
        self.run("nft", &["-j", "-f", "-"], Some(bytes.as_bytes()))
            .await
            .map(|_| ())
    }

    /// Asks the kernel whether it would take the transaction, changing nothing.
    pub async fn check(&self, transaction: &Value) -> Result<(), NftError> {
        let bytes = transaction.to_string();
        self.run("nft", &["-c", "-j", "-f", "-"], Some(bytes.as_bytes()))
            .await
            .map(|_| ())
    }

    /// berth's table as nft lists it, or `None` when there is none.
    pub async fn list_table(&self) -> Result<Option<Value>, NftError> {
        match self
            .run("nft", &["-j", "list", "table", FAMILY, TABLE], None)
            .await
        {
            Ok(out) => serde_json::from_str(&out)
                .map(Some)
                .map_err(|e| NftError(format!("nft printed JSON berth cannot read: {e}"))),
            Err(e) if table_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// berth's table in nft's own text syntax, or empty when there is none.
    pub async fn list_table_text(&self) -> Result<String, NftError> {
        match self
            .run("nft", &["list", "table", FAMILY, TABLE], None)
            .await
        {
            Ok(out) => Ok(out),
            Err(e) if table_missing(&e) => Ok(String::new()),
            Err(e) => Err(e),
        }
    }

    /// Every chain of every other table.
    pub async fn foreign_chains(&self) -> Result<Vec<ForeignChain>, NftError> {
        let out = self.run("nft", &["-j", "list", "chains"], None).await?;
        let listing: Value = serde_json::from_str(&out)
            .map_err(|e| NftError(format!("nft printed JSON berth cannot read: {e}")))?;
        Ok(listing["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item.get("chain"))
            .filter(|c| !(c["family"] == FAMILY && c["table"] == TABLE))
            .map(|c| ForeignChain {
                family: c["family"].as_str().unwrap_or_default().to_string(),
                table: c["table"].as_str().unwrap_or_default().to_string(),
                name: c["name"].as_str().unwrap_or_default().to_string(),
                hook: c["hook"].as_str().map(str::to_string),
                policy: c["policy"].as_str().map(str::to_string),
            })
            .collect())
    }

    /// Listening TCP and UDP sockets, from `ss`.
    pub async fn listeners(&self) -> Result<Vec<Listener>, NftError> {
        let out = self
            .run("ss", &["-H", "-l", "-n", "-t", "-u", "-p"], None)
            .await?;
        Ok(parse_ss(&out))
    }
}

/// nft's answer for a table that is not there, as opposed to nft or the
/// namespace missing (which say "No such file or directory" too).
fn table_missing(e: &NftError) -> bool {
    e.0.contains("No such file or directory")
        && !e.0.starts_with("cannot run")
        && !e.0.contains("network namespace")
}

/// A digest of berth's table as listed, blind to what changes by itself
/// (handles, counters, meter entries), so that only an edit changes it.
pub fn fingerprint(listing: Option<&Value>) -> String {
    let Some(listing) = listing else {
        return "absent".into();
    };
    let mut items: Vec<Value> = listing["nftables"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.get("metainfo").is_none())
        .collect();
    for item in &mut items {
        scrub(item);
        if let Some(set) = item.get_mut("set") {
            let dynamic = set["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "dynamic" || x == "timeout"));
            if dynamic {
                if let Some(obj) = set.as_object_mut() {
                    obj.remove("elem");
                }
            }
        }
    }
    let mut hasher = Sha256::new();
    hasher.update(Value::Array(items).to_string().as_bytes());
    hex::encode(hasher.finalize())
}

fn scrub(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("handle");
            if let Some(c) = map.get_mut("counter") {
                *c = Value::Null;
            }
            for (_, child) in map.iter_mut() {
                scrub(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub),
        _ => {}
    }
}

/// Lines of `ss -H -l -n -t -u -p`:
/// `tcp LISTEN 0 4096 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=1,fd=3))`.
pub fn parse_ss(text: &str) -> Vec<Listener> {
    let mut out = Vec::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 5 {
            continue;
        }
        let protocol = match cols[0] {
            "tcp" => "tcp",
            "udp" => "udp",
            _ => continue,
        };
        let Some((addr, port)) = cols[4].rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        // `[::]`, `*`, `127.0.0.53%lo`: brackets and the interface go.
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let addr = addr.split('%').next().unwrap_or(addr);
        let addr = if addr == "*" { "0.0.0.0" } else { addr };
        let process = line
            .split("((\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("")
            .to_string();
        out.push(Listener {
            protocol,
            address: addr.to_string(),
            port,
            process,
        });
    }
    out.sort_by(|a, b| (a.protocol, a.port, &a.address).cmp(&(b.protocol, b.port, &b.address)));
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss_lines_become_listeners() {
        let text = "tcp   LISTEN 0      4096         0.0.0.0:22        0.0.0.0:*    users:((\"sshd\",pid=10,fd=3))\n\
                    tcp   LISTEN 0      511             [::]:80           [::]:*    users:((\"nginx\",pid=11,fd=6),(\"nginx\",pid=12,fd=6))\n\
                    udp   UNCONN 0      0      127.0.0.53%lo:53        0.0.0.0:*    users:((\"systemd-resolve\",pid=5,fd=13))\n\
                    udp   UNCONN 0      0                  *:5353             *:*\n";
        let l = parse_ss(text);
        assert_eq!(l.len(), 4);
        assert_eq!(
            (
                l[0].protocol,
                l[0].port,
                l[0].address.as_str(),
                l[0].process.as_str()
            ),
            ("tcp", 22, "0.0.0.0", "sshd")
        );
        assert_eq!(
            (l[1].port, l[1].address.as_str(), l[1].process.as_str()),
            (80, "::", "nginx")
        );
        assert_eq!(
            (l[2].protocol, l[2].address.as_str()),
            ("udp", "127.0.0.53")
        );
        assert_eq!(
            (l[3].address.as_str(), l[3].process.as_str()),
            ("0.0.0.0", "")
        );
    }

    #[test]
    fn fingerprints_ignore_handles_counters_and_meters() {
        let a: Value = serde_json::from_str(r#"{"nftables":[{"metainfo":{"version":"1"}},
            {"set":{"name":"m0_v4","handle":3,"flags":["timeout"],"elem":[{"elem":{"val":"1.2.3.4"}}]}},
            {"rule":{"handle":7,"expr":[{"counter":{"packets":5,"bytes":300}},{"drop":null}]}}]}"#).unwrap();
        let b: Value = serde_json::from_str(
            r#"{"nftables":[{"metainfo":{"version":"2"}},
            {"set":{"name":"m0_v4","handle":9,"flags":["timeout"]}},
            {"rule":{"handle":8,"expr":[{"counter":{"packets":0,"bytes":0}},{"drop":null}]}}]}"#,
        )
        .unwrap();
        assert_eq!(fingerprint(Some(&a)), fingerprint(Some(&b)));
        let c: Value =
            serde_json::from_str(r#"{"nftables":[{"rule":{"expr":[{"accept":null}]}}]}"#).unwrap();
        assert_ne!(fingerprint(Some(&a)), fingerprint(Some(&c)));
        assert_eq!(fingerprint(None), "absent");
    }
}
