//! PostgreSQL through its own tools: `pg_dump`, `pg_restore`, `psql`,
//! `createdb`, `dropdb`. The same argv runs either on this host against a
//! server named by a connection string, or inside an app's container
//! through the Docker exec API. Connection details, the password included,
//! travel in `PG*` environment variables, never in argv (where `ps` shows
//! them to every user of the host).

use app::api::backups::{validate_identifier, MASK};

use super::docker::DockerIo;
use super::process;
use super::target::Reader;

/// A parsed `postgres://user:password@host:port/database?sslmode=…`.
#[derive(Clone, PartialEq, Eq)]
pub struct Conn {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    /// Supported query parameters, as `PG*` variables.
    pub params: Vec<(String, String)>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Query parameters berth passes on, and the variable each becomes.
const PARAMS: &[(&str, &str)] = &[
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("application_name", "PGAPPNAME"),
    ("host", "PGHOST"),
];

/// `%XX` sequences to bytes; a `+` stays a `+` (this is a URL's user
/// info and path, not a form).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Conn {
    pub fn parse(dsn: &str) -> Result<Conn, String> {
        let url = url::Url::parse(dsn.trim()).map_err(|e| {
            format!("not a connection URL (postgres://user:password@host:5432/database): {e}")
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err("the URL starts with postgres://".into());
        }
        let user = decode(url.username());
        if user.is_empty() {
            return Err("the URL names a user: postgres://USER:password@host/database".into());
        }
        let password = url.password().map(decode).filter(|p| !p.is_empty());
        let database = url.path().trim_start_matches('/').to_string();
        let database = decode(&database);
        if database.is_empty() {
            return Err("the URL names a database: postgres://user:password@host/DATABASE".into());
        }
        validate_identifier(&database, "database")?;
        let mut params = Vec::new();
        for (k, v) in url.query_pairs() {
            let Some((_, var)) = PARAMS.iter().find(|(name, _)| *name == k) else {
                return Err(format!(
                    "parameter `{k}` is not supported (supported: sslmode, sslrootcert, connect_timeout, application_name, host)"
                ));
            };
            params.push((var.to_string(), v.into_owned()));
        }
        // Without the brackets of an IPv6 literal: `render` adds them back,
        // and PGHOST takes the bare address.
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => String::new(),
        };
        if host.is_empty() && !params.iter().any(|(k, _)| k == "PGHOST") {
            return Err("the URL names a host".into());
        }
        Ok(Conn {
            host,
            port: url.port().unwrap_or(5432),
            user,
            password,
            database,
            params,
        })
    }

    /// The URL with the password replaced by the mask.
    pub fn masked(&self) -> String {
        self.render(self.password.as_ref().map(|_| MASK))
    }

    /// The URL without any password (what the store keeps in clear).
    pub fn without_password(&self) -> String {
        self.render(None)
    }

    fn render(&self, password: Option<&str>) -> String {
        // Percent-encoding (not form encoding): `decode` reads it back.
        let enc = |s: &str| {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        let auth = match password {
            Some(p) => format!(
                "{}:{}",
                enc(&self.user),
                if p == MASK { MASK.to_string() } else { enc(p) }
            ),
            None => enc(&self.user),
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let mut out = format!("postgres://{auth}@{host}:{}/{}", self.port, self.database);
        let names: Vec<String> = self
            .params
            .iter()
            .filter_map(|(var, v)| {
                PARAMS
                    .iter()
                    .find(|(_, pv)| pv == var)
                    .map(|(name, _)| format!("{name}={}", enc(v)))
            })
            .collect();
        if !names.is_empty() {
            out.push('?');
            out.push_str(&names.join("&"));
        }
        out
    }

    /// What a stored password is tied to: the server it is sent to (the
    /// `host` parameter overrides the URL's host), how (TLS settings) and
    /// as whom. A DSN that changes any of these must bring its password.
    pub fn same_server(&self, other: &Conn) -> bool {
        let key = |c: &Conn| {
            let param = |var: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k == var)
                    .map(|(_, v)| v.clone())
            };
            (
                param("PGHOST").unwrap_or_else(|| c.host.clone()),
                c.port,
                c.user.clone(),
                param("PGSSLMODE"),
                param("PGSSLROOTCERT"),
            )
        };
        key(self) == key(other)
    }

    fn env(&self, database: &str) -> Vec<(String, String)> {
        let mut env = vec![
            ("PGHOST".to_string(), self.host.clone()),
            ("PGPORT".to_string(), self.port.to_string()),
            ("PGUSER".to_string(), self.user.clone()),
            ("PGDATABASE".to_string(), database.to_string()),
            ("PGCONNECT_TIMEOUT".to_string(), "15".to_string()),
        ];
        if let Some(p) = &self.password {
            env.push(("PGPASSWORD".to_string(), p.clone()));
        }
        for (k, v) in &self.params {
            env.retain(|(name, _)| name != k);
            env.push((k.clone(), v.clone()));
        }
        env
    }
}

/// Whether psql would run `sql`, given to `--command`, as one of its own
/// backslash commands (`\!`, `\copy`, `\o`…) rather than send it to the
/// server.
pub fn is_meta_command(sql: &str) -> bool {
    sql.trim_start().starts_with('\\')
}

/// Where the tools run.
#[derive(Clone)]
pub enum Pg {
    /// On this host, against `conn`.
    Local(Conn),
    /// Inside a running container, over its local socket, as `user`.
    App {
        docker: DockerIo,
        container: String,
        user: String,
    },
}

impl Pg {
    fn env(&self, database: &str) -> Vec<(String, String)> {
        match self {
            Pg::Local(conn) => conn.env(database),
            Pg::App { user, .. } => vec![
                ("PGUSER".to_string(), user.clone()),
                ("PGDATABASE".to_string(), database.to_string()),
            ],
        }
    }

    fn docker_env(env: &[(String, String)]) -> Vec<String> {
        env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    async fn read(&self, args: &[&str], database: &str) -> anyhow::Result<Reader> {
        let env = self.env(database);
        match self {
            Pg::Local(_) => process::read(process::command(args[0], &args[1..], &env), args[0]),
            Pg::App {
                docker, container, ..
            } => {
                docker
                    .exec_read(container, args, &Self::docker_env(&env), None)
                    .await
            }
        }
    }

    async fn write(&self, args: &[&str], database: &str, input: Reader) -> anyhow::Result<String> {
        let env = self.env(database);
        match self {
            Pg::Local(_) => {
                process::write(process::command(args[0], &args[1..], &env), args[0], input).await
            }
            Pg::App {
                docker, container, ..
            } => {
                docker
                    .exec_write(container, args, &Self::docker_env(&env), None, input)
                    .await
            }
        }
    }

    async fn output(&self, args: &[&str], database: &str) -> anyhow::Result<String> {
        let env = self.env(database);
        match self {
            Pg::Local(_) => {
                process::output(process::command(args[0], &args[1..], &env), args[0]).await
            }
            Pg::App {
                docker, container, ..
            } => {
                docker
                    .exec_output(container, args, &Self::docker_env(&env), None)
                    .await
            }
        }
    }

    /// A custom-format dump, uncompressed: zstd compresses it once, faster
    /// and smaller than pg_dump's gzip followed by zstd.
    pub async fn dump(&self, database: &str) -> anyhow::Result<Reader> {
        self.read(
            &[
                "pg_dump",
                "--format=custom",
                "--compress=0",
                "--no-password",
            ],
            database,
        )
        .await
    }

    /// Restores a custom-format archive into `database` in one
    /// transaction: it all applies or nothing does. `clean` drops what the
    /// archive recreates first (restoring over the original).
    pub async fn restore(&self, database: &str, clean: bool, input: Reader) -> anyhow::Result<()> {
        let mut args = vec![
            "pg_restore",
            "--single-transaction",
            "--exit-on-error",
            "--no-password",
            "--dbname",
            database,
        ];
        if clean {
            args.extend(["--clean", "--if-exists"]);
        } else {
            // A new database may belong to another role than the original.
            args.extend(["--no-owner", "--no-privileges"]);
        }
        self.write(&args, database, input).await.map(|_| ())
    }

    /// `pg_restore --list`: the archive's table of contents.
    pub async fn list(&self, input: Reader) -> anyhow::Result<String> {
        self.write(&["pg_restore", "--list"], "postgres", input)
            .await
    }

    pub async fn exists(&self, database: &str) -> anyhow::Result<bool> {
        let out = self
            .output(
                &[
                    "psql",
                    "--no-psqlrc",
                    "--tuples-only",
                    "--no-align",
                    "--no-password",
                    "--command",
                    "SELECT datname FROM pg_database",
                ],
                self.maintenance(),
            )
            .await?;
        Ok(out.lines().any(|l| l.trim() == database))
    }

    pub async fn create(&self, database: &str) -> anyhow::Result<()> {
        validate_identifier(database, "database").map_err(anyhow::Error::msg)?;
        self.output(
            &[
                "createdb",
                "--no-password",
                "--maintenance-db",
                self.maintenance(),
                database,
            ],
            self.maintenance(),
        )
        .await
        .map(|_| ())
    }

    pub async fn drop(&self, database: &str) -> anyhow::Result<()> {
        validate_identifier(database, "database").map_err(anyhow::Error::msg)?;
        self.output(
            &[
                "dropdb",
                "--no-password",
                "--if-exists",
                "--force",
                "--maintenance-db",
                self.maintenance(),
                database,
            ],
            self.maintenance(),
        )
        .await
        .map(|_| ())
    }

    /// The database tools connect to for creating and dropping others: the
    /// DSN's own database for a remote server (it may be the only one the
    /// role can reach), `postgres` inside an app.
    fn maintenance(&self) -> &str {
        match self {
            Pg::Local(conn) => &conn.database,
            Pg::App { .. } => "postgres",
        }
    }

    /// One SQL statement; the first column of each row, one per line.
    pub async fn query(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        // `psql --command` sends SQL to the server as it is, unless it
        // starts with a backslash: then psql itself runs it, and `\!`
        // would start a shell on this host.
        if is_meta_command(sql) {
            anyhow::bail!("a check query is SQL, not a psql command");
        }
        self.output(
            &[
                "psql",
                "--no-psqlrc",
                "--tuples-only",
                "--no-align",
                "--no-password",
                "--set",
                "ON_ERROR_STOP=1",
                "--command",
                sql,
            ],
            database,
        )
        .await
    }

    /// Exact row counts of every user table: `schema.table=count` lines.
    pub async fn row_counts(&self, database: &str) -> anyhow::Result<Vec<(String, i64)>> {
        // psql's \gexec runs each generated statement; identifiers are
        // quoted by format(%I), so no table name is ever spliced as text.
        let script = "SELECT format('SELECT %L || ''='' || count(*) FROM %I.%I', n.nspname || '.' || c.relname, n.nspname, c.relname) \
                      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                      WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                      AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1 \\gexec\n";
        let input: Reader = Box::pin(std::io::Cursor::new(script.as_bytes().to_vec()));
        let out = self
            .write(
                &[
                    "psql",
                    "--no-psqlrc",
                    "--tuples-only",
                    "--no-align",
                    "--no-password",
                    "--set",
                    "ON_ERROR_STOP=1",
                    "--file",
                    "-",
                ],
                database,
                input,
            )
            .await?;
        Ok(out
            .lines()
            .filter_map(|l| l.rsplit_once('='))
            .filter_map(|(t, n)| Some((t.to_string(), n.trim().parse().ok()?)))
            .collect())
    }

    /// `pg_dump --version` and the server's version, for the manifest.
    pub async fn versions(&self, database: &str) -> serde_json::Value {
        let client = self.output(&["pg_dump", "--version"], database).await.ok();
        let server = self.query(database, "SHOW server_version").await.ok();
        serde_json::json!({
            "pg_dump": client.map(|s| s.trim().to_string()),
            "server": server.map(|s| s.trim().to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_dsn_and_never_shows_its_password() {
        let c = Conn::parse("postgres://app:p%40ss%2Fw0rd+@db.internal:6543/shop?sslmode=require")
            .unwrap();
        assert_eq!(c.user, "app");
        assert_eq!(c.password.as_deref(), Some("p@ss/w0rd+"));
        assert_eq!(
            (c.host.as_str(), c.port, c.database.as_str()),
            ("db.internal", 6543, "shop")
        );
        assert_eq!(
            c.masked(),
            "postgres://app:********@db.internal:6543/shop?sslmode=require"
        );
        assert_eq!(
            c.without_password(),
            "postgres://app@db.internal:6543/shop?sslmode=require"
        );
        assert!(!format!("{c:?}").contains("p@ss"));
        let env = c.env("shop");
        assert!(env.contains(&("PGPASSWORD".into(), "p@ss/w0rd+".into())));
        assert!(env.contains(&("PGSSLMODE".into(), "require".into())));
        // The mask round-trips as the mask (the caller swaps the stored one in).
        let again = Conn::parse(&c.masked()).unwrap();
        assert_eq!(again.password.as_deref(), Some(MASK));
    }

    #[test]
    fn ipv6_hosts_round_trip_and_reach_pghost_bare() {
        let c = Conn::parse("postgres://u:pw@[::1]:5433/db").unwrap();
        assert_eq!(c.host, "::1");
        assert_eq!(c.without_password(), "postgres://u@[::1]:5433/db");
        assert_eq!(Conn::parse(&c.masked()).unwrap().host, "::1");
        assert!(c.env("db").contains(&("PGHOST".into(), "::1".into())));
    }

    #[test]
    fn a_password_belongs_to_the_server_it_reaches_not_the_urls_host() {
        let base = Conn::parse("postgres://u:pw@db.internal/db").unwrap();
        let same = Conn::parse("postgres://u:x@db.internal/other?connect_timeout=5").unwrap();
        assert!(base.same_server(&same));
        for other in [
            "postgres://u:x@db.internal/db?host=elsewhere.example",
            "postgres://u:x@db.internal/db?sslmode=disable",
            "postgres://u:x@db.internal:6543/db",
            "postgres://v:x@db.internal/db",
            "postgres://u:x@db2.internal/db",
        ] {
            assert!(!base.same_server(&Conn::parse(other).unwrap()), "{other}");
        }
    }

    #[test]
    fn backslash_commands_are_not_queries() {
        assert!(is_meta_command("\\! id"));
        assert!(is_meta_command("  \\copy t to '/tmp/x'"));
        assert!(!is_meta_command("SELECT '\\!'"));
    }

    #[test]
    fn refuses_incomplete_or_odd_dsns() {
        for (dsn, words) in [
            ("mysql://a:b@h/db", "postgres://"),
            ("postgres://h/db", "user"),
            ("postgres://u@h/", "database"),
            ("postgres://u@h/db?options=-c%20x", "not supported"),
            ("postgres://u@h/db;drop", "database name"),
            ("not a url", "connection URL"),
        ] {
            let e = Conn::parse(dsn).unwrap_err();
            assert!(e.contains(words), "{dsn}: {e}");
        }
    }
}
