//! The real servers behind the off-host backup targets, for tests: Debian's
//! OpenSSH server on a loopback port and moto's S3 API. Included by the
//! targets' own tests (`server/src/backups/target`) and by the API tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// An sshd of its own: a fresh host key, key-only login for the user the
/// test runs as, the internal SFTP server. Stopped on drop.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub user: String,
}

/// An ed25519 key pair at `path` and `path.pub`.
pub fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "berth-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen (openssh-client)");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

impl Sshd {
    /// Listens on 127.0.0.1:`port`. In its directory: `host_key(.pub)`,
    /// `client_key(.pub)` (authorized), `other_key(.pub)` (not), and
    /// `served/`, where tests point their targets.
    pub fn start(port: u16) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install openssh-server (scripts/install-deps.sh --test)"
        );
        // The privilege separation directory sshd insists on.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        keygen(&d.join("other_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        std::fs::create_dir(d.join("served")).unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
        let config = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {dir}/host_key\n\
             PidFile none\n\
             UsePAM no\n\
             PermitRootLogin prohibit-password\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             StrictModes no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             Subsystem sftp internal-sftp\n\
             LogLevel VERBOSE\n",
            dir = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let mut child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
                panic!("sshd exited with {status}:\n{log}");
            }
            assert!(Instant::now() < deadline, "sshd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd {
            child,
            port,
            dir,
            user,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// Stops the server now (the target becomes unreachable).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts moto's S3 on a free loopback port with signature checking on:
/// an IAM user with an access key and S3 rights, and the buckets named
/// on the command line. Prints the endpoint and key as one JSON line,
/// then runs until its standard input closes.
const MOTO: &str = r#"
import json, sys
from moto.server import ThreadedMotoServer
import boto3, requests
import botocore.auth
from urllib.parse import quote, unquote

# moto checks a signature by rebuilding the request from werkzeug's URL,
# in which %2F in the query has turned into '/', so even boto3's listings
# under a prefix fail. Canonicalise the query as SigV4 (and AWS) does.
def spec_query(self, parts):
    pairs = sorted(
        (quote(unquote(k), safe="-_.~"), quote(unquote(v), safe="-_.~"))
        for k, _, v in (p.partition("=") for p in parts.query.split("&") if p))
    return "&".join(f"{k}={v}" for k, v in pairs)
botocore.auth.SigV4Auth._canonical_query_string_url = spec_query

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
url = f"http://{host}:{port}"
anon = dict(endpoint_url=url, region_name="us-east-1",
            aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam = boto3.client("iam", **anon)
iam.create_user(UserName="berth")
iam.put_user_policy(UserName="berth", PolicyName="s3", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="berth")["AccessKey"]
for bucket in sys.argv[1:]:
    boto3.client("s3", **anon).create_bucket(Bucket=bucket)
# From here on every request must be signed with the user's key.
requests.post(f"{url}/moto-api/reset-auth", data=b"0").raise_for_status()
print(json.dumps({"endpoint": url, "access_key": key["AccessKeyId"],
                  "secret_key": key["SecretAccessKey"]}), flush=True)
sys.stdin.read()
"#;

/// moto's S3 API with an access key and `bucket`; stopped on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    pub fn start(bucket: &str) -> Moto {
        let mut child = Command::new("python3")
            .args(["-c", MOTO, bucket])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (scripts/install-deps.sh --test installs moto)");
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        if read.is_err() || line.trim().is_empty() {
            let _ = child.kill();
            panic!("moto did not start: run scripts/install-deps.sh --test");
        }
        let info: serde_json::Value = serde_json::from_str(&line).unwrap();
        let field = |name: &str| info[name].as_str().unwrap().to_string();
        Moto {
            endpoint: field("endpoint"),
            access_key: field("access_key"),
            secret_key: field("secret_key"),
            child,
        }
    }
}
