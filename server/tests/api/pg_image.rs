//! A PostgreSQL 15 image for tests of the `postgres_app` backup source
//! (`pg_dump` run inside an app's container). No registry is reachable, so
//! it is assembled from this host's Debian packages (postgresql-15 and
//! postgresql-client-15): their binaries, the libraries `ldd` says they
//! need, busybox as the shell, and an entry script, packed with
//! `docker import`. Only the package files and libraries go in, which keeps
//! the image around 100 MB.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, RemoveContainerOptionsBuilder,
    StartContainerOptions,
};
use futures::StreamExt;

use crate::docker::{docker, TEST_LABEL};

pub const POSTGRES_IMAGE: &str = "berth-test-postgres:15";
/// Where the image's PostgreSQL programs live (on PATH in the image).
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
pub const PG_SHARE: &str = "/usr/share/postgresql/15";
pub const PG_LIB: &str = "/usr/lib/postgresql/15/lib";
/// The data directory the entry script initialises (mount a volume here).
pub const PG_DATA: &str = "/var/lib/postgresql/data";
/// The socket directory; clients in the container find it by default.
pub const PG_SOCKET: &str = "/var/run/postgresql";
pub const PG_UID: u64 = 999;

/// Runs as `postgres`: initialises an empty data directory (trust on the
/// local socket; TCP is not listened on), then becomes the server, which
/// handles SIGTERM itself (smart shutdown).
const ENTRYPOINT: &str = r#"#!/bin/sh
set -e
PGDATA=/var/lib/postgresql/data
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb -D "$PGDATA" -U postgres -E UTF8 --locale=C --auth-local=trust --auth-host=reject
fi
exec postgres -D "$PGDATA" -k /var/run/postgresql -c listen_addresses=''
"#;

/// Builds the image once per test binary (on a thread of its own, so that
/// any test's runtime may call this). An existing tag is reused.
pub fn postgres_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                if docker().inspect_image(POSTGRES_IMAGE).await.is_err() {
                    build().await;
                }
            });
        })
        .join()
        .expect("the postgres test image builds");
    });
    POSTGRES_IMAGE
}

async fn build() {
    let rootfs = tokio::task::spawn_blocking(rootfs_tar).await.unwrap();
    let (repo, tag) = POSTGRES_IMAGE.split_once(':').unwrap();
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .changes(vec![
            format!("LABEL {TEST_LABEL}=1"),
            format!("ENV PATH={PG_BIN}:/bin"),
            format!("ENV PGDATA={PG_DATA}"),
            "ENV TZ=UTC".to_string(),
            "ENV LANG=C".to_string(),
            "USER postgres".to_string(),
            "WORKDIR /var/lib/postgresql".to_string(),
            "CMD [\"/entrypoint.sh\"]".to_string(),
        ])
        .build();
    let body = bollard::body_full(rootfs.into());
    let mut stream = Box::pin(docker().create_image(Some(options), Some(body), None));
    while let Some(item) = stream.next().await {
        item.expect("docker import of the postgres test image");
    }
}

/// The tar a rootfs is made of, with each host path added once, parents
/// first, symlinks kept as symlinks (Debian's `/lib -> usr/lib` included).
struct Rootfs {
    builder: tar::Builder<Vec<u8>>,
    added: BTreeSet<PathBuf>,
}

impl Rootfs {
    fn header(kind: tar::EntryType, mode: u32, uid: u64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_size(size);
        h.set_mtime(0);
        h
    }

    fn rel(path: &Path) -> PathBuf {
        path.strip_prefix("/").unwrap_or(path).to_path_buf()
    }

    fn dir(&mut self, path: &str, mode: u32, uid: u64) {
        let path = PathBuf::from(path);
        if self.added.insert(path.clone()) {
            let mut h = Self::header(tar::EntryType::Directory, mode, uid, 0);
            self.builder
                .append_data(&mut h, Self::rel(&path), std::io::empty())
                .unwrap();
        }
    }

    fn file(&mut self, path: &str, mode: u32, uid: u64, data: &[u8]) {
        let path = PathBuf::from(path);
        if self.added.insert(path.clone()) {
            let mut h = Self::header(tar::EntryType::Regular, mode, uid, data.len() as u64);
            self.builder
                .append_data(&mut h, Self::rel(&path), data)
                .unwrap();
        }
    }

    fn symlink(&mut self, path: &Path, target: &Path) {
        if self.added.insert(path.to_path_buf()) {
            let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0, 0);
            self.builder
                .append_link(&mut h, Self::rel(path), target)
                .unwrap();
        }
    }

    /// Adds a host path as the host has it: each symlinked ancestor as a
    /// symlink plus where it points, a symlink plus its target, a file's
    /// real bytes and mode, a directory's content recursively.
    fn host(&mut self, path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let mut cur = PathBuf::from("/");
        let parent = path.parent().unwrap_or(Path::new("/"));
        for comp in parent.components().skip(1) {
            let next = cur.join(comp);
            let meta = std::fs::symlink_metadata(&next)
                .unwrap_or_else(|e| panic!("{}: {e}", next.display()));
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&next).unwrap();
                self.symlink(&next, &target);
                let resolved = std::fs::canonicalize(&next).unwrap();
                self.host_dir_only(&resolved);
                cur = resolved;
            } else {
                let mode = meta.permissions().mode() & 0o7777;
                self.dir(next.to_str().unwrap(), mode, 0);
                cur = next;
            }
        }
        let Some(name) = path.file_name() else { return };
        let full = cur.join(name);
        let meta =
            std::fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&full).unwrap();
            self.symlink(&full, &target);
            self.host(&normalize(&cur.join(target)));
        } else if meta.is_dir() {
            self.dir(full.to_str().unwrap(), mode, 0);
            let mut entries: Vec<_> = std::fs::read_dir(&full)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for e in entries {
                self.host(&e);
            }
        } else {
            let data = std::fs::read(&full).unwrap();
            self.file(full.to_str().unwrap(), mode, 0, &data);
        }
    }

    /// The directories of an (already resolved) directory path.
    fn host_dir_only(&mut self, resolved: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let mut cur = PathBuf::from("/");
        for comp in resolved.components().skip(1) {
            cur = cur.join(comp);
            let mode = std::fs::metadata(&cur).unwrap().permissions().mode() & 0o7777;
            self.dir(cur.to_str().unwrap(), mode, 0);
        }
    }
}

/// `a/b/../c` as `a/c` (`cur` above is already free of symlinks, so the
/// lexical answer is the real one).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for comp in path.components() {
        match comp {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(c) => out.push(c),
            _ => {}
        }
    }
    out
}

/// The shared libraries `ldd` lists for `binary` (absolute paths).
fn ldd(binary: &Path) -> Vec<PathBuf> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .expect("ldd runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|line| {
            // `libz.so.1 => /lib/…/libz.so.1 (0x…)` or `/lib64/ld-linux… (0x…)`.
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            }?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn rootfs_tar() -> Vec<u8> {
    for dir in [PG_BIN, PG_SHARE, PG_LIB] {
        assert!(
            Path::new(dir).is_dir(),
            "{dir} is missing: install Debian's postgresql-15 and postgresql-client-15"
        );
    }
    let mut fs = Rootfs {
        builder: tar::Builder::new(Vec::new()),
        added: BTreeSet::new(),
    };
    // busybox first, so `/bin` is a real directory here (not the host's
    // `/bin -> usr/bin`).
    fs.dir("/bin", 0o755, 0);
    let busybox = std::fs::read("/bin/busybox").expect(
        "/bin/busybox (Debian's busybox-static; scripts/install-deps.sh --test installs it)",
    );
    fs.file("/bin/busybox", 0o755, 0, &busybox);
    let applets = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        let applet = applet.trim();
        if !applet.is_empty() && applet != "busybox" {
            fs.symlink(&Path::new("/bin").join(applet), Path::new("busybox"));
        }
    }

    // The programs and the server's modules, without the JIT (LLVM alone
    // would be over 100 MB) and its bitcode.
    let mut binaries = Vec::new();
    let mut programs: Vec<PathBuf> = std::fs::read_dir(PG_BIN)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    programs.sort();
    for p in programs {
        fs.host(&p);
        binaries.push(p);
    }
    let mut modules: Vec<PathBuf> = std::fs::read_dir(PG_LIB)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".so") && !name.starts_with("llvmjit")
        })
        .collect();
    modules.sort();
    for m in modules {
        fs.host(&m);
        binaries.push(m);
    }
    let mut share: Vec<PathBuf> = std::fs::read_dir(PG_SHARE)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "man")
        .collect();
    share.sort();
    for s in share {
        fs.host(&s);
    }
    // Debian builds PostgreSQL against the system time zone data.
    let mut zones: Vec<PathBuf> = std::fs::read_dir("/usr/share/zoneinfo")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !["right", "posix"].contains(&p.file_name().unwrap().to_str().unwrap()))
        .collect();
    zones.sort();
    for z in zones {
        fs.host(&z);
    }
    let mut libs = BTreeSet::new();
    for b in &binaries {
        libs.extend(ldd(b));
    }
    for lib in &libs {
        fs.host(lib);
    }

    fs.dir("/etc", 0o755, 0);
    fs.file(
        "/etc/passwd",
        0o644,
        0,
        b"root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\n",
    );
    fs.file("/etc/group", 0o644, 0, b"root:x:0:\npostgres:x:999:\n");
    fs.dir("/tmp", 0o1777, 0);
    fs.dir("/root", 0o700, 0);
    fs.dir("/var", 0o755, 0);
    fs.dir("/var/run", 0o755, 0);
    fs.dir(PG_SOCKET, 0o2775, PG_UID);
    fs.dir("/var/lib", 0o755, 0);
    fs.dir("/var/lib/postgresql", 0o755, PG_UID);
    // Owned by postgres in the image, so that a fresh volume mounted here
    // gets that owner too (the engine copies it into an empty volume).
    fs.dir(PG_DATA, 0o700, PG_UID);
    fs.file("/entrypoint.sh", 0o755, 0, ENTRYPOINT.as_bytes());
    fs.builder.into_inner().unwrap()
}

/// Runs `argv` in `container` and returns (exit code, stdout, stderr).
pub async fn exec(container: &str, argv: &[&str]) -> (i64, String, String) {
    let docker = docker();
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(argv.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("create exec");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    if let StartExecResults::Attached { mut output, .. } = docker
        .start_exec(&created.id, None)
        .await
        .expect("start exec")
    {
        while let Some(item) = output.next().await {
            match item.expect("exec output") {
                bollard::container::LogOutput::StdOut { message } => {
                    out.extend_from_slice(&message)
                }
                bollard::container::LogOutput::StdErr { message } => {
                    err.extend_from_slice(&message)
                }
                _ => {}
            }
        }
    }
    let code = loop {
        let info = docker
            .inspect_exec(&created.id)
            .await
            .expect("inspect exec");
        if info.running != Some(true) {
            break info.exit_code.unwrap_or(-1);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// Starts a container of the image named `name` (labelled for cleanup) and
/// waits until the server accepts connections on its socket.
pub async fn start_postgres(name: &str) {
    let docker = docker();
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(name).build()),
            ContainerCreateBody {
                image: Some(postgres_image().to_string()),
                labels: Some(HashMap::from([(TEST_LABEL.to_string(), "1".to_string())])),
                ..Default::default()
            },
        )
        .await
        .expect("create the postgres container");
    docker
        .start_container(name, None::<StartContainerOptions>)
        .await
        .expect("start the postgres container");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out, err) = exec(name, &["pg_isready", "-h", PG_SOCKET]).await;
        if code == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "postgres in {name} not ready after 60 s: {out}{err}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Removes a container by name (forced, with its anonymous volumes).
pub async fn remove(name: &str) {
    let _ = docker()
        .remove_container(
            name,
            Some(
                RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        )
        .await;
}

#[tokio::test]
async fn postgres_image_starts_and_answers() {
    let scratch = crate::docker::Scratch::new();
    let name = scratch.name("pg");
    start_postgres(&name).await;
    let (code, out, err) = exec(&name, &["psql", "-At", "-c", "select 1"]).await;
    remove(&name).await;
    assert_eq!((code, out.trim()), (0, "1"), "psql failed: {err}");
}
