//! The Docker side of backups: commands run inside an app's container
//! (`pg_dump`, `pg_restore`, …) and the raw content of named volumes, all as
//! streams. Nothing here holds a whole archive in memory: every byte goes
//! through a bounded buffer between the engine's socket and the consumer, so
//! memory stays at a few MiB whatever the size of a dump or a volume.
//!
//! Volumes are read and written through the engine's archive API
//! (`GET`/`PUT /containers/{id}/archive`) on a helper container that is
//! created but never started: the daemon mounts a container's volumes for
//! the copy itself, so no process runs, nothing is pulled, and the volume's
//! owners and modes travel in the tar headers. The helper image is made by
//! berth (`docker import` of an empty directory), because no registry may be
//! reachable and no image may be assumed present.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::backups::tail::{self, Tail};
use crate::backups::target::Reader;

/// The helper image berth imports once (an empty `/volume` and `/tmp`).
/// Bump the tag if its content ever changes: an existing tag is reused as is.
pub const HELPER_IMAGE: &str = "berth-backup-helper:1";
/// Label on the helper image and on every helper container, so that
/// `sweep_helpers` finds what a killed berth left behind and nothing else.
pub const HELPER_LABEL: &str = "berth.helper";
pub const HELPER_LABEL_VALUE: &str = "backup";
/// Label naming the berth instance a helper belongs to.
pub const HELPER_OWNER_LABEL: &str = "berth.helper.owner";
/// Label naming the volume a helper mounts (for an admin, and for tests).
pub const HELPER_VOLUME_LABEL: &str = "berth.helper.volume";
/// Name prefix of helper containers (for an admin reading `docker ps -a`).
pub const HELPER_PREFIX: &str = "berth-backup-helper-";
/// Where the helper container mounts the volume.
const MOUNT: &str = "/volume";
/// A command the helper is created with. It never runs (the container is
/// never started) and does not exist in the image, so starting it by
/// mistake fails instead of doing anything.
const NEVER_RUN: &str = "/berth-helper-never-started";

/// The most `exec_output` accepts: it is for short answers, not data.
const OUTPUT_MAX: usize = 1024 * 1024;
/// Chunk size when streaming an input to the engine.
const CHUNK: usize = 64 * 1024;

/// Engine operations backups need, on berth's connection to the engine.
#[derive(Clone)]
pub struct DockerIo {
    docker: Docker,
    /// Marks this berth's helper containers, so that its start-up sweep
    /// never removes another berth's (on a shared engine) in mid-copy.
    owner: Option<String>,
}

/// One started exec: its demultiplexed output and its stdin.
struct Started {
    id: String,
    output: std::pin::Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
    input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

/// The message for a command that exited non-zero: what an admin needs to
/// see which command failed and why.
fn exit_message(program: &str, container: &str, code: i64, stderr: &Tail) -> String {
    let stderr = stderr.text();
    if stderr.is_empty() {
        format!("`{program}` in container {container} exited with code {code} (no stderr)")
    } else {
        format!("`{program}` in container {container} exited with code {code}: {stderr}")
    }
}

impl DockerIo {
    pub fn new(docker: Docker) -> DockerIo {
        DockerIo {
            docker,
            owner: None,
        }
    }

    /// Labels helpers with `owner` and sweeps only those.
    pub fn owned_by(mut self, owner: &str) -> DockerIo {
        self.owner = Some(owner.to_string());
        self
    }

    // ---- exec -------------------------------------------------------------

    /// Creates and starts an exec attached to stdout and stderr (and stdin
    /// when `stdin`). No TTY, so the engine multiplexes the two output
    /// streams and stderr never ends up in the data.
    async fn start_exec(
        &self,
        container: &str,
        argv: &[&str],
        env: &[String],
        user: Option<&str>,
        stdin: bool,
    ) -> anyhow::Result<Started> {
        let program = argv
            .first()
            .ok_or_else(|| anyhow!("no command to run in container {container}"))?;
        let options = CreateExecOptions::<String> {
            attach_stdin: Some(stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            env: Some(env.to_vec()),
            cmd: Some(argv.iter().map(|s| s.to_string()).collect()),
            user: user.map(str::to_string),
            ..Default::default()
        };
        let created = self
            .docker
            .create_exec(container, options)
            .await
            .with_context(|| format!("cannot run `{program}` in container {container}"))?;
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: Some(CHUNK),
                }),
            )
            .await
            .with_context(|| format!("cannot start `{program}` in container {container}"))?;
        match started {
            StartExecResults::Attached { output, input } => Ok(Started {
                id: created.id,
                output,
                input,
            }),
            StartExecResults::Detached => {
                bail!("the engine started `{program}` detached; its output is lost")
            }
        }
    }

    /// The exit code of a finished exec. The output stream can end a moment
    /// before the engine records the exit, hence the short poll.
    async fn exit_code(&self, id: &str, program: &str) -> anyhow::Result<i64> {
        for _ in 0..200 {
            let info = self
                .docker
                .inspect_exec(id)
                .await
                .with_context(|| format!("cannot read the exit code of `{program}`"))?;
            if info.running != Some(true) {
                return info
                    .exit_code
                    .ok_or_else(|| anyhow!("the engine reports no exit code for `{program}`"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("`{program}` closed its output but is still running after 10 s")
    }

    /// Runs `argv` (no shell) in a running container with `env` ("K=V"),
    /// user optional; streams its stdout.
    ///
    /// The reader ends with an `io::Error` instead of EOF when the command
    /// exits non-zero (the message names the program, the exit code and the
    /// last ~2 KB of its stderr), so a consumer can never mistake a failed
    /// dump for a complete one. stderr is never mixed into the data.
    ///
    /// Dropping the reader early closes the connection; the command then
    /// gets EPIPE/SIGPIPE on its next write.
    pub async fn exec_read(
        &self,
        container: &str,
        argv: &[&str],
        env: &[String],
        user: Option<&str>,
    ) -> anyhow::Result<Reader> {
        let started = self.start_exec(container, argv, env, user, false).await?;
        struct State {
            io: DockerIo,
            id: String,
            program: String,
            container: String,
            output: std::pin::Pin<
                Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
            >,
            stderr: Tail,
            done: bool,
        }
        let state = State {
            io: self.clone(),
            id: started.id,
            program: argv[0].to_string(),
            container: container.to_string(),
            output: started.output,
            stderr: Tail::new(tail::STDERR),
            done: false,
        };
        // Without stdin attached the engine gives the command an empty one;
        // the write half is not needed.
        drop(started.input);
        let stream = futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            loop {
                match st.output.next().await {
                    Some(Ok(LogOutput::StdOut { message })) => return Some((Ok(message), st)),
                    Some(Ok(LogOutput::StdErr { message })) => st.stderr.push(&message),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        st.done = true;
                        let e = io::Error::other(format!(
                            "reading the output of `{}` in container {}: {e}",
                            st.program, st.container
                        ));
                        return Some((Err(e), st));
                    }
                    None => {
                        st.done = true;
                        let result = match st.io.exit_code(&st.id, &st.program).await {
                            Ok(0) => return None,
                            Ok(code) => io::Error::other(exit_message(
                                &st.program,
                                &st.container,
                                code,
                                &st.stderr,
                            )),
                            Err(e) => io::Error::other(format!("{e:#}")),
                        };
                        return Some((Err(result), st));
                    }
                }
            }
        });
        Ok(Box::pin(StreamReader::new(stream)))
    }

    /// Runs `argv` with `input` streamed to its stdin (which is closed at
    /// the end of `input`); returns the last 64 KB of its stdout on exit 0,
    /// an error with the stderr tail otherwise.
    ///
    /// When reading `input` fails the error says so, and the connection is
    /// dropped at once. The engine then closes the command's stdin like at a
    /// normal end, so the command may have acted on a truncated input: a
    /// restore must go into something fresh that the caller discards on
    /// error.
    pub async fn exec_write(
        &self,
        container: &str,
        argv: &[&str],
        env: &[String],
        user: Option<&str>,
        input: Reader,
    ) -> anyhow::Result<String> {
        let Started {
            id,
            mut output,
            input: mut stdin,
        } = self.start_exec(container, argv, env, user, true).await?;
        let program = argv[0];

        enum Fed {
            /// All of `input` went in and stdin was closed.
            All,
            /// The command stopped taking input (its stdin broke) after so
            /// many bytes; its exit code tells whether that was a failure.
            Stopped(u64, io::Error),
        }
        let feed = async {
            let mut input = input;
            let mut buf = vec![0u8; CHUNK];
            let mut sent: u64 = 0;
            loop {
                let n = match input.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => return Err(e),
                };
                if let Err(e) = stdin.write_all(&buf[..n]).await {
                    return Ok(Fed::Stopped(sent, e));
                }
                sent += n as u64;
            }
            if let Err(e) = stdin.flush().await {
                return Ok(Fed::Stopped(sent, e));
            }
            // Half-closes the connection: the engine closes the command's
            // stdin, which is how it learns the input is complete.
            if let Err(e) = stdin.shutdown().await {
                return Ok(Fed::Stopped(sent, e));
            }
            Ok(Fed::All)
        };
        let mut stdout = Tail::new(tail::WRITE_STDOUT);
        let mut stderr = Tail::new(tail::STDERR);
        let collect = async {
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) => stdout.push(&message),
                    Ok(LogOutput::StdErr { message }) => stderr.push(&message),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        tokio::pin!(feed);
        tokio::pin!(collect);
        let mut fed: Option<Fed> = None;
        let collected = loop {
            tokio::select! {
                r = &mut feed, if fed.is_none() => match r {
                    Ok(f) => fed = Some(f),
                    Err(e) => bail!(
                        "reading the input for `{program}` in container {container} failed: {e}"
                    ),
                },
                c = &mut collect => break c,
            }
        };
        collected.with_context(|| {
            format!("reading the output of `{program}` in container {container}")
        })?;
        let code = self.exit_code(&id, program).await?;
        if code != 0 {
            bail!(exit_message(program, container, code, &stderr));
        }
        match fed {
            Some(Fed::All) => Ok(stdout.text()),
            Some(Fed::Stopped(sent, e)) => bail!(
                "`{program}` in container {container} exited 0 but stopped reading its input \
                 after {sent} bytes ({e})"
            ),
            None => bail!(
                "`{program}` in container {container} exited 0 before reading all of its input"
            ),
        }
    }

    /// Runs `argv` without stdin and returns its stdout on exit 0; an error
    /// with the stderr tail otherwise. For short answers (versions, lists of
    /// databases): more than 1 MiB of output is an error rather than
    /// silently cut.
    pub async fn exec_output(
        &self,
        container: &str,
        argv: &[&str],
        env: &[String],
        user: Option<&str>,
    ) -> anyhow::Result<String> {
        let Started {
            id,
            mut output,
            input,
        } = self.start_exec(container, argv, env, user, false).await?;
        drop(input);
        let program = argv[0];
        let mut stdout = Vec::new();
        let mut stderr = Tail::new(tail::STDERR);
        while let Some(item) = output.next().await {
            match item.with_context(|| {
                format!("reading the output of `{program}` in container {container}")
            })? {
                LogOutput::StdOut { message } => {
                    if stdout.len() + message.len() > OUTPUT_MAX {
                        bail!(
                            "`{program}` in container {container} printed more than {} KiB",
                            OUTPUT_MAX / 1024
                        );
                    }
                    stdout.extend_from_slice(&message);
                }
                LogOutput::StdErr { message } => stderr.push(&message),
                _ => {}
            }
        }
        let code = self.exit_code(&id, program).await?;
        if code != 0 {
            bail!(exit_message(program, container, code, &stderr));
        }
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }

    // ---- volumes ----------------------------------------------------------

    /// Imports the helper image unless it is there. Serialised within the
    /// process: two imports racing would leave the first image dangling.
    async fn ensure_helper_image(&self) -> anyhow::Result<()> {
        static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _held = LOCK.lock().await;
        if self.docker.inspect_image(HELPER_IMAGE).await.is_ok() {
            return Ok(());
        }
        let (repo, tag) = HELPER_IMAGE.split_once(':').expect("repo:tag");
        let options = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .changes(vec![
                format!("LABEL {HELPER_LABEL}={HELPER_LABEL_VALUE}"),
                format!("CMD [\"{NEVER_RUN}\"]"),
            ])
            .build();
        let body = bollard::body_full(Bytes::from(helper_rootfs()?));
        let mut progress = Box::pin(self.docker.create_image(Some(options), Some(body), None));
        while let Some(item) = progress.next().await {
            item.context("cannot create the backup helper image (docker import)")?;
        }
        Ok(())
    }

    /// Creates (never starts) a helper container with `volume` at `/volume`.
    /// The volume must exist: the engine would otherwise create an empty one
    /// on the fly, and a backup of that would look like a valid empty backup.
    async fn create_helper(&self, volume: &str, read_only: bool) -> anyhow::Result<Helper> {
        if !self.volume_exists(volume).await? {
            bail!("volume {volume} does not exist");
        }
        self.ensure_helper_image().await?;
        let name = format!(
            "{HELPER_PREFIX}{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let body = ContainerCreateBody {
            image: Some(HELPER_IMAGE.to_string()),
            cmd: Some(vec![NEVER_RUN.to_string()]),
            labels: Some(
                [
                    (HELPER_LABEL.to_string(), HELPER_LABEL_VALUE.to_string()),
                    (HELPER_VOLUME_LABEL.to_string(), volume.to_string()),
                ]
                .into_iter()
                .chain(
                    self.owner
                        .clone()
                        .map(|o| (HELPER_OWNER_LABEL.to_string(), o)),
                )
                .collect(),
            ),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                mounts: Some(vec![Mount {
                    target: Some(MOUNT.to_string()),
                    source: Some(volume.to_string()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(read_only),
                    // Never copy the image's (empty) /volume into the volume.
                    volume_options: Some(MountVolumeOptions {
                        no_copy: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                network_mode: Some("none".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .with_context(|| format!("cannot create a helper container for volume {volume}"))?;
        Ok(Helper {
            docker: Some(self.docker.clone()),
            name,
        })
    }

    /// The volume's content as a tar stream, entries relative to the volume
    /// root (`./`, `./file`, `./dir/…`; the `./` entry carries the root's own
    /// owner and mode). The helper container is removed when the stream ends
    /// or the reader is dropped.
    pub async fn volume_tar(&self, volume: &str) -> anyhow::Result<Reader> {
        let helper = self.create_helper(volume, true).await?;
        // `/volume/.` makes the engine archive the directory's content as
        // `./…`; `/volume` would prefix every entry with `volume/`.
        let body = self.docker.download_from_container(
            &helper.name,
            Some(
                DownloadFromContainerOptionsBuilder::new()
                    .path(&format!("{MOUNT}/."))
                    .build(),
            ),
        );
        struct State<S> {
            body: std::pin::Pin<Box<S>>,
            helper: Helper,
            volume: String,
            done: bool,
        }
        let state = State {
            body: Box::pin(body),
            helper,
            volume: volume.to_string(),
            done: false,
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            match st.body.next().await {
                Some(Ok(bytes)) => Some((Ok(bytes), st)),
                Some(Err(e)) => {
                    st.done = true;
                    st.helper.remove().await;
                    let e = io::Error::other(format!("reading volume {}: {e}", st.volume));
                    Some((Err(e), st))
                }
                None => {
                    st.done = true;
                    // Removed before the consumer sees EOF, so nothing is
                    // left once a backup reports success.
                    st.helper.remove().await;
                    None
                }
            }
        });
        Ok(Box::pin(StreamReader::new(stream)))
    }

    /// Extracts a tar made by `volume_tar` into the volume (which must
    /// exist). Owners, modes and times come from the tar headers. Files the
    /// volume already has and the tar lacks stay: restore into a new volume.
    ///
    /// The engine skips the `./` entry when extracting into a directory, so
    /// the volume root's own owner and mode (a PostgreSQL data directory
    /// must be 0700 and owned by postgres) are read from that first header
    /// and applied afterwards with a one-entry upload of `volume/` to `/`.
    pub async fn volume_untar(&self, volume: &str, input: Reader) -> anyhow::Result<()> {
        if !self.volume_exists(volume).await? {
            bail!("volume {volume} does not exist");
        }
        let (root, input) = peek_root(input)
            .await
            .with_context(|| format!("reading the archive for volume {volume} failed"))?;
        let mut helper = self.create_helper(volume, false).await?;
        // Read errors are recorded here: the engine only sees the upload cut
        // short, and the admin must learn it was the source that failed.
        let input_error: Arc<Mutex<Option<String>>> = Arc::default();
        let seen = input_error.clone();
        let stream = ReaderStream::with_capacity(input, CHUNK).map(move |chunk| {
            chunk.inspect_err(|e| {
                *seen.lock().unwrap() = Some(e.to_string());
            })
        });
        // copyUIDGID stays off: with it the engine would chown everything to
        // the container's user instead of keeping the tar's owners.
        let result = self
            .docker
            .upload_to_container(
                &helper.name,
                Some(UploadToContainerOptionsBuilder::new().path(MOUNT).build()),
                bollard::body_try_stream(stream),
            )
            .await;
        let result = match (result, root) {
            (Ok(()), Some(root)) => match root_tar(&root) {
                Ok(tar) => self
                    .docker
                    .upload_to_container(
                        &helper.name,
                        Some(UploadToContainerOptionsBuilder::new().path("/").build()),
                        bollard::body_full(Bytes::from(tar)),
                    )
                    .await
                    .with_context(|| {
                        format!("cannot set the owner and mode of volume {volume}'s root")
                    }),
                Err(e) => Err(e),
            },
            (r, _) => r.with_context(|| format!("cannot extract the archive into volume {volume}")),
        };
        helper.remove().await;
        if let Some(e) = input_error.lock().unwrap().take() {
            bail!("reading the archive for volume {volume} failed: {e}");
        }
        result
    }

    pub async fn volume_exists(&self, volume: &str) -> anyhow::Result<bool> {
        match self.docker.inspect_volume(volume).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot inspect volume {volume}")),
        }
    }

    /// Creates a volume with the given labels (e.g.
    /// `berth.backup.restore=<id>`). An existing volume is an error rather
    /// than reused (the engine's create would return it as is): a restore
    /// must never merge into live data.
    pub async fn create_volume(
        &self,
        volume: &str,
        labels: HashMap<String, String>,
    ) -> anyhow::Result<()> {
        if self.volume_exists(volume).await? {
            bail!("volume {volume} already exists");
        }
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(volume.to_string()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot create volume {volume}"))?;
        Ok(())
    }

    /// Removes a volume; one that is already gone is not an error. One still
    /// used by a container is (the engine says which).
    pub async fn remove_volume(&self, volume: &str) -> anyhow::Result<()> {
        match self
            .docker
            .remove_volume(
                volume,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove volume {volume}")),
        }
    }

    /// Removes helper containers a killed berth left behind (found by label
    /// and name prefix). Returns how many. Meant for startup, before any
    /// backup runs: it would also remove the helper of a copy in progress.
    pub async fn sweep_helpers(&self) -> anyhow::Result<usize> {
        let owner: Vec<String> = self
            .owner
            .iter()
            .map(|o| format!("{HELPER_OWNER_LABEL}={o}"))
            .collect();
        self.sweep_helpers_labelled(&owner).await
    }

    /// `sweep_helpers`, narrowed by more `key=value` labels (tests narrow it
    /// to their own volume so as not to break other tests' copies).
    async fn sweep_helpers_labelled(&self, extra: &[String]) -> anyhow::Result<usize> {
        let mut labels = vec![format!("{HELPER_LABEL}={HELPER_LABEL_VALUE}")];
        labels.extend_from_slice(extra);
        let filters = HashMap::from([("label".to_string(), labels)]);
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .context("cannot list backup helper containers")?;
        let mut removed = 0;
        for c in list {
            let named = c
                .names
                .iter()
                .flatten()
                .any(|n| n.trim_start_matches('/').starts_with(HELPER_PREFIX));
            let Some(id) = c.id.as_deref().filter(|_| named) else {
                continue;
            };
            match self
                .docker
                .remove_container(
                    id,
                    Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                )
                .await
            {
                Ok(()) => removed += 1,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot remove helper container {id}"))
                }
            }
        }
        Ok(removed)
    }
}

/// A helper container, removed (forced) by `remove` or, failing that, when
/// dropped: a reader dropped half-way must not leave it behind.
struct Helper {
    docker: Option<Docker>,
    name: String,
}

impl Helper {
    async fn remove(&mut self) {
        if let Some(docker) = self.docker.take() {
            remove_helper(docker, self.name.clone()).await;
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Some(docker) = self.docker.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(remove_helper(docker, std::mem::take(&mut self.name)));
            }
            // Without a runtime, `sweep_helpers` at the next start removes it.
        }
    }
}

async fn remove_helper(docker: Docker, name: String) {
    let options = RemoveContainerOptionsBuilder::new().force(true).build();
    match docker.remove_container(&name, Some(options)).await {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => {
            tracing::warn!(container = %name, error = %e, "cannot remove a backup helper container")
        }
    }
}

/// Owner, mode and time of the directory a tar's `./` entry describes.
#[derive(Debug, Clone, PartialEq)]
struct RootMeta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

/// Reads the tar's leading headers (PAX or GNU extension headers, then the
/// first entry) and returns the first entry's metadata when it is the root
/// (`./`), with a reader that replays every byte, consumed ones included.
/// Anything unexpected just yields `None`: the engine's extraction is the
/// judge of the archive, this only recovers what it drops.
async fn peek_root(mut input: Reader) -> io::Result<(Option<RootMeta>, Reader)> {
    /// Extension data larger than this is not something `volume_tar` makes.
    const MAX_EXTENSION: u64 = 64 * 1024;
    let mut consumed = Vec::new();
    let mut overrides: HashMap<String, u64> = HashMap::new();
    let root = loop {
        let start = consumed.len();
        consumed.resize(start + 512, 0);
        let got = read_full(&mut input, &mut consumed[start..]).await?;
        if start + got < consumed.len() {
            consumed.truncate(start + got);
            break None;
        }
        let header = tar::Header::from_byte_slice(&consumed[start..start + 512]).clone();
        if header.as_bytes().iter().all(|b| *b == 0) {
            break None;
        }
        let kind = header.entry_type();
        let extension = kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink();
        if extension {
            let Ok(size) = header.entry_size() else {
                break None;
            };
            if size > MAX_EXTENSION {
                break None;
            }
            let padded = size.div_ceil(512) as usize * 512;
            let start = consumed.len();
            consumed.resize(start + padded, 0);
            let got = read_full(&mut input, &mut consumed[start..]).await?;
            if start + got < consumed.len() {
                consumed.truncate(start + got);
                break None;
            }
            if kind.is_pax_local_extensions() || kind.is_pax_global_extensions() {
                let data = &consumed[start..start + size as usize];
                for ext in tar::PaxExtensions::new(data).flatten() {
                    let (Ok(key), Ok(value)) = (ext.key(), ext.value()) else {
                        continue;
                    };
                    // mtime may have a fraction; whole seconds suffice.
                    let whole = value.split('.').next().unwrap_or_default();
                    if let ("uid" | "gid" | "mtime", Ok(n)) = (key, whole.parse::<u64>()) {
                        overrides.insert(key.to_string(), n);
                    }
                }
            }
            continue;
        }
        let is_root = header
            .path_bytes()
            .split(|b| *b == b'/')
            .all(|part| part.is_empty() || part == b".");
        if kind != tar::EntryType::Directory || !is_root {
            break None;
        }
        let (Ok(mode), Ok(uid), Ok(gid), Ok(mtime)) =
            (header.mode(), header.uid(), header.gid(), header.mtime())
        else {
            break None;
        };
        break Some(RootMeta {
            mode: mode & 0o7777,
            uid: overrides.get("uid").copied().unwrap_or(uid),
            gid: overrides.get("gid").copied().unwrap_or(gid),
            mtime: overrides.get("mtime").copied().unwrap_or(mtime),
        });
    };
    let replay = io::Cursor::new(consumed).chain(input);
    Ok((root, Box::pin(replay)))
}

/// Fills `buf` unless the input ends first; returns how many bytes it read.
async fn read_full(input: &mut Reader, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A tar of the single directory `volume/` with the root's metadata: what
/// is uploaded to `/` of the helper to set the mount point's owner and mode.
fn root_tar(root: &RootMeta) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(root.mode);
    h.set_uid(root.uid);
    h.set_gid(root.gid);
    h.set_mtime(root.mtime);
    h.set_size(0);
    builder.append_data(&mut h, &MOUNT[1..], io::empty())?;
    Ok(builder.into_inner()?)
}

/// The helper image's root filesystem: an empty `/volume` (the mount point)
/// and `/tmp`. Nothing executable: the helper is never started.
fn helper_rootfs() -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for dir in ["volume/", "tmp/"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if dir == "tmp/" { 0o1777 } else { 0o755 });
        h.set_size(0);
        h.set_mtime(0);
        builder.append_data(&mut h, dir, io::empty())?;
    }
    Ok(builder.into_inner()?)
}

#[cfg(test)]
mod tests {
    //! Against the real engine. No registry is reachable, so the test image
    //! is Debian's static busybox packed with `docker import`. Every object a
    //! test makes is named `<prefix>-…`, labelled `berth-test`, and removed
    //! by `Scratch` on drop, even after a failed assertion.

    use super::*;
    use sha2::{Digest, Sha256};
    use std::sync::OnceLock;

    const IMAGE: &str = "berth-test-dockerio:1";
    const TEST_LABEL: &str = "berth-test";
    const APPLETS: &[&str] = &[
        "sh",
        "sleep",
        "echo",
        "cat",
        "mkdir",
        "dd",
        "chown",
        "chmod",
        "find",
        "stat",
        "sort",
        "sha256sum",
        "md5sum",
        "ln",
        "ls",
        "head",
        "true",
        "false",
        "rm",
        "sed",
        "id",
    ];

    fn docker() -> Docker {
        Docker::connect_with_local_defaults().expect("docker socket")
    }

    /// Builds the test image once per test binary (on a thread of its own,
    /// so that any test's runtime may call this). An existing tag is reused.
    fn test_image() -> &'static str {
        static BUILT: OnceLock<()> = OnceLock::new();
        BUILT.get_or_init(|| {
            std::thread::spawn(|| {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async {
                    if docker().inspect_image(IMAGE).await.is_ok() {
                        return;
                    }
                    let (repo, tag) = IMAGE.split_once(':').unwrap();
                    let options = CreateImageOptionsBuilder::new()
                        .from_src("-")
                        .repo(repo)
                        .tag(tag)
                        .changes(vec![
                            format!("LABEL {TEST_LABEL}=1"),
                            "ENV PATH=/bin".to_string(),
                            "CMD [\"/bin/sh\"]".to_string(),
                        ])
                        .build();
                    let body = bollard::body_full(busybox_rootfs().into());
                    let mut s = Box::pin(docker().create_image(Some(options), Some(body), None));
                    while let Some(item) = s.next().await {
                        item.expect("docker import");
                    }
                });
            })
            .join()
            .expect("test image builds");
        });
        IMAGE
    }

    fn busybox_rootfs() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (d, mode) in [("bin/", 0o755), ("tmp/", 0o1777), ("etc/", 0o755)] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(mode);
            h.set_size(0);
            b.append_data(&mut h, d, io::empty()).unwrap();
        }
        let busybox = std::fs::read("/bin/busybox")
            .expect("/bin/busybox (Debian's busybox-static; scripts/install-deps.sh --test)");
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(busybox.len() as u64);
        b.append_data(&mut h, "bin/busybox", &busybox[..]).unwrap();
        for applet in APPLETS {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            b.append_link(&mut h, format!("bin/{applet}"), "busybox")
                .unwrap();
        }
        b.into_inner().unwrap()
    }

    /// One test's prefix; removes its containers and volumes on drop.
    struct Scratch {
        prefix: String,
    }

    impl Scratch {
        fn new() -> Scratch {
            test_image();
            Scratch {
                prefix: format!("btd{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            }
        }

        fn name(&self, s: &str) -> String {
            format!("{}-{s}", self.prefix)
        }

        fn labels() -> HashMap<String, String> {
            HashMap::from([(TEST_LABEL.to_string(), "1".to_string())])
        }

        /// A running busybox container with `volumes` (name, mount point).
        async fn worker(&self, volumes: &[(&str, &str)]) -> String {
            let name = self.name("worker");
            let mounts = volumes
                .iter()
                .map(|(v, at)| Mount {
                    target: Some(at.to_string()),
                    source: Some(v.to_string()),
                    typ: Some(MountType::VOLUME),
                    ..Default::default()
                })
                .collect();
            let d = docker();
            d.create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                ContainerCreateBody {
                    image: Some(IMAGE.to_string()),
                    cmd: Some(vec!["sleep".into(), "3600".into()]),
                    labels: Some(Scratch::labels()),
                    host_config: Some(HostConfig {
                        mounts: Some(mounts),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            d.start_container(
                &name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .unwrap();
            name
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let prefix = self.prefix.clone();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async {
                    let d = docker();
                    let ours = |l: Option<&HashMap<String, String>>| {
                        l.is_some_and(|l| l.contains_key(TEST_LABEL))
                    };
                    let filters =
                        HashMap::from([("name".to_string(), vec![format!("^/{prefix}")])]);
                    let list = d
                        .list_containers(Some(
                            ListContainersOptionsBuilder::new()
                                .all(true)
                                .filters(&filters)
                                .build(),
                        ))
                        .await
                        .unwrap_or_default();
                    for c in list.into_iter().filter(|c| ours(c.labels.as_ref())) {
                        let _ = d
                            .remove_container(
                                c.id.as_deref().unwrap_or_default(),
                                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                            )
                            .await;
                    }
                    let vols = d
                        .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
                        .await
                        .map(|l| l.volumes.unwrap_or_default())
                        .unwrap_or_default();
                    for v in vols {
                        if v.name.starts_with(&prefix) && ours(Some(&v.labels)) {
                            let _ = d
                                .remove_volume(
                                    &v.name,
                                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                                )
                                .await;
                        }
                    }
                });
            })
            .join();
        }
    }

    async fn read_all(mut r: Reader) -> (Vec<u8>, io::Result<()>) {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match r.read(&mut buf).await {
                Ok(0) => return (out, Ok(())),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Err(e)),
            }
        }
    }

    /// Helper containers that have `volume` mounted (other tests' helpers
    /// on other volumes do not count).
    async fn helpers_on(volume: &str) -> usize {
        let filters = HashMap::from([
            (
                "label".to_string(),
                vec![format!("{HELPER_LABEL}={HELPER_LABEL_VALUE}")],
            ),
            ("volume".to_string(), vec![volume.to_string()]),
        ]);
        docker()
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap()
            .len()
    }

    /// Every entry under `dir`: type, size, mode, owner, and the SHA-256 of
    /// files, in a stable order.
    const LISTING: &str = r#"cd "$1" && find . | sort | while read -r f; do
        stat -c '%n %F %s %a %u:%g' "$f"
        if [ -f "$f" ] && [ ! -L "$f" ]; then sha256sum "$f"; fi
        if [ -L "$f" ]; then echo "link -> $(ls -l "$f" | sed 's/.*-> //')"; fi
      done"#;

    #[tokio::test]
    async fn volume_round_trip_keeps_content_owners_and_modes() {
        let s = Scratch::new();
        let io = DockerIo::new(docker());
        let (a, b) = (s.name("a"), s.name("b"));
        io.create_volume(&a, Scratch::labels()).await.unwrap();
        io.create_volume(&b, Scratch::labels()).await.unwrap();
        assert!(io.volume_exists(&a).await.unwrap());
        let err = io.create_volume(&a, Scratch::labels()).await.unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err:#}");
        let w = s.worker(&[(&a, "/a"), (&b, "/b")]).await;
        let fill = r#"set -e
            mkdir -p /a/sub/deeper
            echo hello > /a/sub/deeper/hello.txt
            dd if=/dev/urandom of=/a/big bs=1024 count=5120 2>/dev/null
            echo secret > /a/secret
            chown 1234:1234 /a/secret
            chmod 600 /a/secret
            chown 999:999 /a
            chmod 750 /a
            ln -s sub/deeper/hello.txt /a/link
            : > /a/empty"#;
        io.exec_output(&w, &["sh", "-c", fill], &[], None)
            .await
            .unwrap();

        let tar = io.volume_tar(&a).await.unwrap();
        io.volume_untar(&b, tar).await.unwrap();
        assert_eq!(
            helpers_on(&a).await,
            0,
            "a helper container was left on {a}"
        );
        assert_eq!(
            helpers_on(&b).await,
            0,
            "a helper container was left on {b}"
        );

        let list_a = io
            .exec_output(&w, &["sh", "-c", LISTING, "sh", "/a"], &[], None)
            .await
            .unwrap();
        let list_b = io
            .exec_output(&w, &["sh", "-c", LISTING, "sh", "/b"], &[], None)
            .await
            .unwrap();
        assert_eq!(list_a, list_b);
        for expected in [
            "./big regular file 5242880 644 0:0",
            "./secret regular file 7 600 1234:1234",
            ". directory",
            "./sub/deeper/hello.txt regular file 6 644 0:0",
            "./link symbolic link",
            "link -> sub/deeper/hello.txt",
            "./empty regular empty file 0 644 0:0",
        ] {
            assert!(
                list_b.contains(expected),
                "{expected:?} missing in\n{list_b}"
            );
        }
        // The volume root's own owner and mode came along (`./` entry).
        assert!(
            list_b
                .lines()
                .any(|l| l.starts_with(". directory") && l.ends_with("750 999:999")),
            "{list_b}"
        );

        // The tar's entries are relative to the volume root.
        let (bytes, end) = read_all(io.volume_tar(&a).await.unwrap()).await;
        end.unwrap();
        let mut names = Vec::new();
        for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
            names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
        }
        assert!(names.iter().all(|n| n.starts_with("./")), "{names:?}");
        assert!(
            names.contains(&"./sub/deeper/hello.txt".to_string()),
            "{names:?}"
        );
        assert_eq!(helpers_on(&a).await, 0);

        // A reader dropped half-way still removes its helper.
        let mut r = io.volume_tar(&a).await.unwrap();
        let mut buf = [0u8; 1024];
        r.read_exact(&mut buf).await.unwrap();
        assert_eq!(helpers_on(&a).await, 1);
        drop(r);
        let mut left = 1;
        for _ in 0..100 {
            left = helpers_on(&a).await;
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(left, 0, "the dropped reader's helper remains");

        // Missing volumes are refused, and not created on the fly.
        let ghost = s.name("ghost");
        let err = io.volume_tar(&ghost).await.err().unwrap();
        assert!(err.to_string().contains("does not exist"), "{err:#}");
        let err = io
            .volume_untar(&ghost, Box::pin(io::Cursor::new(Vec::new())))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err:#}");
        assert!(!io.volume_exists(&ghost).await.unwrap());

        // A failing source is named as such.
        let failing = futures::stream::iter(vec![
            Ok(Bytes::from(vec![0u8; 512])),
            Err(io::Error::other("disk on fire")),
        ]);
        let err = io
            .volume_untar(&b, Box::pin(StreamReader::new(failing)))
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("reading the archive"),
            "{err:#}"
        );
        assert!(format!("{err:#}").contains("disk on fire"), "{err:#}");
        assert_eq!(helpers_on(&b).await, 0);

        docker()
            .remove_container(
                &w,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await
            .unwrap();
        io.remove_volume(&b).await.unwrap();
        io.remove_volume(&b).await.unwrap(); // already gone: fine
        assert!(!io.volume_exists(&b).await.unwrap());
    }

    #[tokio::test]
    async fn exec_read_streams_stdout_only() {
        let s = Scratch::new();
        let io = DockerIo::new(docker());
        let w = s.worker(&[]).await;
        io.exec_output(
            &w,
            &[
                "sh",
                "-c",
                "dd if=/dev/urandom of=/tmp/data bs=1024 count=3000 2>/dev/null",
            ],
            &[],
            None,
        )
        .await
        .unwrap();
        let expected = io
            .exec_output(&w, &["sha256sum", "/tmp/data"], &[], None)
            .await
            .unwrap();
        // stderr written alongside must not end up in the data.
        let r = io
            .exec_read(
                &w,
                &["sh", "-c", "cat /tmp/data; echo noise >&2"],
                &[],
                None,
            )
            .await
            .unwrap();
        let (bytes, end) = read_all(r).await;
        end.unwrap();
        assert_eq!(bytes.len(), 3000 * 1024);
        assert_eq!(
            expected.split_whitespace().next().unwrap(),
            hex::encode(Sha256::digest(&bytes))
        );
        // env and user reach the command.
        let r = io
            .exec_read(
                &w,
                &["sh", "-c", "echo $GREETING; id -u"],
                &["GREETING=hi there".into()],
                Some("4321"),
            )
            .await
            .unwrap();
        let (bytes, end) = read_all(r).await;
        end.unwrap();
        assert_eq!(String::from_utf8_lossy(&bytes), "hi there\n4321\n");
    }

    #[tokio::test]
    async fn exec_read_ends_with_an_error_when_the_command_fails() {
        let s = Scratch::new();
        let io = DockerIo::new(docker());
        let w = s.worker(&[]).await;
        let r = io
            .exec_read(
                &w,
                &["sh", "-c", "echo partial; echo oops >&2; exit 3"],
                &[],
                None,
            )
            .await
            .unwrap();
        let (bytes, end) = read_all(r).await;
        assert_eq!(bytes, b"partial\n");
        let err = end.unwrap_err().to_string();
        assert!(err.contains("code 3"), "{err}");
        assert!(err.contains("oops"), "{err}");
        assert!(err.contains("`sh`"), "{err}");

        let err = io
            .exec_output(&w, &["sh", "-c", "echo bad >&2; exit 7"], &[], None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("code 7") && err.contains("bad"), "{err}");
        let err = io.exec_read(&w, &["/no/such/program"], &[], None).await;
        let err = match err {
            Ok(r) => read_all(r).await.1.unwrap_err().to_string(),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("/no/such/program"), "{err}");
    }

    #[tokio::test]
    async fn exec_write_streams_stdin() {
        let s = Scratch::new();
        let io = DockerIo::new(docker());
        let w = s.worker(&[]).await;
        let data: Vec<u8> = (0..4 * 1024 * 1024u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let out = io
            .exec_write(
                &w,
                &["sh", "-c", "cat > /tmp/x; echo stored"],
                &[],
                None,
                Box::pin(io::Cursor::new(data.clone())),
            )
            .await
            .unwrap();
        assert_eq!(out, "stored");
        let sum = io
            .exec_output(&w, &["sha256sum", "/tmp/x"], &[], None)
            .await
            .unwrap();
        assert_eq!(
            sum.split_whitespace().next().unwrap(),
            hex::encode(Sha256::digest(&data))
        );

        // A failing command's stderr is reported.
        let err = io
            .exec_write(
                &w,
                &["sh", "-c", "cat > /dev/null; echo refused >&2; exit 2"],
                &[],
                None,
                Box::pin(io::Cursor::new(b"abc".to_vec())),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("code 2") && err.contains("refused"), "{err}");

        // A failing input is named as such, and does not hang.
        let failing = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"some bytes")),
            Err(io::Error::other("source broke")),
        ]);
        let err = tokio::time::timeout(
            Duration::from_secs(30),
            io.exec_write(
                &w,
                &["sh", "-c", "cat > /tmp/y"],
                &[],
                None,
                Box::pin(StreamReader::new(failing)),
            ),
        )
        .await
        .expect("exec_write returns after an input error")
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("reading the input") && err.contains("source broke"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn sweep_removes_left_helpers() {
        let s = Scratch::new();
        let io = DockerIo::new(docker());
        let v = s.name("v");
        io.create_volume(&v, Scratch::labels()).await.unwrap();
        // What a killed berth leaves: a helper that was never removed.
        let mut helper = io.create_helper(&v, true).await.unwrap();
        helper.docker = None; // disarmed, as if the process died
        assert_eq!(helpers_on(&v).await, 1);
        let mine = [format!("{HELPER_VOLUME_LABEL}={v}")];
        assert_eq!(io.sweep_helpers_labelled(&mine).await.unwrap(), 1);
        assert_eq!(helpers_on(&v).await, 0);
        io.remove_volume(&v).await.unwrap();
    }

    #[tokio::test]
    async fn peek_root_reads_the_root_entry_and_replays_everything() {
        // A PAX header overriding the uid, then `./`, then a file.
        let mut b = tar::Builder::new(Vec::new());
        let pax = b"15 uid=3000000\n".to_vec();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(pax.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "PaxHeaders/x", &pax[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o40700);
        h.set_uid(999);
        h.set_gid(998);
        h.set_mtime(1234);
        h.set_size(0);
        b.append_data(&mut h, "./", io::empty()).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "./f", &b"abc"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let (root, replay) = peek_root(Box::pin(io::Cursor::new(bytes.clone())))
            .await
            .unwrap();
        assert_eq!(
            root,
            Some(RootMeta {
                mode: 0o700,
                uid: 3_000_000,
                gid: 998,
                mtime: 1234
            })
        );
        let (again, end) = read_all(replay).await;
        end.unwrap();
        assert_eq!(again, bytes);

        // No root entry first, or a short input: nothing, bytes intact.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "f", &b"abc"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let (root, replay) = peek_root(Box::pin(io::Cursor::new(bytes.clone())))
            .await
            .unwrap();
        assert_eq!(root, None);
        assert_eq!(read_all(replay).await.0, bytes);
        let (root, replay) = peek_root(Box::pin(io::Cursor::new(b"short".to_vec())))
            .await
            .unwrap();
        assert_eq!(root, None);
        assert_eq!(read_all(replay).await.0, b"short");
    }
}
