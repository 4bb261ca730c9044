//! A private PostgreSQL server from Debian's packages for a test: its own
//! cluster in a temporary directory, on a free loopback port, with a
//! password-protected superuser, stopped and removed on drop. PostgreSQL
//! refuses to run as root, so the cluster belongs to the `postgres` user.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::free_port;

pub const USER: &str = "berth_test";
pub const PASSWORD: &str = "pg test pass phrase";

pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

/// The newest installed server's binaries.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server (scripts/install-deps.sh --test installs it)")
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("an installed PostgreSQL with initdb")
}

fn as_postgres(program: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"]).arg(program).args(args);
    cmd
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("berth-pg-")
            .tempdir()
            .unwrap();
        let chown = |p: &std::path::Path| {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(p)
                .status()
                .unwrap();
            assert!(ok.success());
        };
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        chown(dir.path());
        let data = dir.path().join("data");
        let out = as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                USER,
                "--pwfile",
                pwfile.to_str().unwrap(),
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
        )
        .stdout(Stdio::null())
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        let out = as_postgres(
            &bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                dir.path().join("log").to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        )
        .stdout(Stdio::null())
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = Postgres { port, dir, bin };
        let deadline = Instant::now() + Duration::from_secs(30);
        while pg.try_sql("postgres", "SELECT 1").is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
        pg
    }

    pub fn dsn(&self, database: &str) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{database}",
            PASSWORD.replace(' ', "%20"),
            self.port
        )
    }

    fn try_sql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-d",
                database,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// Holds an exclusive lock on `table` in an open transaction until the
    /// guard drops: anything that reads the table, a `pg_dump` included,
    /// waits meanwhile.
    pub fn lock(&self, database: &str, table: &str) -> Locked {
        use std::io::Write;
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", USER, "-d", database, "-X", "-q"])
            .env("PGPASSWORD", PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;").unwrap();
        let locked = Locked {
            child,
            _stdin: stdin,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.sql(
            database,
            &format!("SELECT count(*) FROM pg_locks WHERE relation = '{table}'::regclass AND mode = 'AccessExclusiveLock' AND granted"),
        ) != "1"
        {
            assert!(Instant::now() < deadline, "the lock was not taken");
            std::thread::sleep(Duration::from_millis(100));
        }
        locked
    }

    /// Runs SQL; panics with the server's message on error.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        self.try_sql(database, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn databases(&self) -> Vec<String> {
        self.sql("postgres", "SELECT datname FROM pg_database ORDER BY 1")
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A database with `rows` orders and a few customers: varied types,
    /// a foreign key, an index, a sequence.
    pub fn shop(&self, database: &str, rows: u32) {
        self.sql("postgres", &format!("CREATE DATABASE {database}"));
        self.sql(
            database,
            &format!(
                "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, since date NOT NULL);
                 INSERT INTO customers (name, since) SELECT 'customer ' || i, date '2020-01-01' + i FROM generate_series(1, 100) i;
                 CREATE TABLE orders (id bigserial PRIMARY KEY, customer int REFERENCES customers(id), total numeric(10,2),
                                      note text, placed timestamptz NOT NULL, payload bytea);
                 INSERT INTO orders (customer, total, note, placed, payload)
                   SELECT 1 + i % 100, (i * 7 % 10000) / 100.0, 'order number ' || i || ' sentinel-9f3a',
                          timestamptz '2026-01-01 00:00+00' + i * interval '1 minute', decode(md5(i::text), 'hex')
                   FROM generate_series(1, {rows}) i;
                 CREATE INDEX orders_customer ON orders (customer);"
            ),
        );
    }

    /// A digest of every row of the shop's tables.
    pub fn fingerprint(&self, database: &str) -> String {
        self.sql(
            database,
            "SELECT md5(string_agg(t, '|' ORDER BY t)) FROM (
               SELECT format('%s,%s,%s,%s,%s,%s', id, customer, total, note, placed, encode(payload, 'hex')) AS t FROM orders
               UNION ALL SELECT format('c%s,%s,%s', id, name, since) FROM customers) x",
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    }
}

/// A session holding a lock; killing it ends the transaction.
pub struct Locked {
    child: std::process::Child,
    _stdin: std::process::ChildStdin,
}

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
