//! Local programs (`pg_dump`, `pg_restore`, `psql`, `createdb`): argv
//! lists and environment variables, never a shell. A dump's reader ends
//! with an error, not a clean end, when the program exits non-zero, so a
//! failed dump can never be stored as a complete one.

use std::process::Stdio;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio_util::io::{ReaderStream, StreamReader};

use super::tail::{self, Tail};
use super::target::Reader;

/// A command with a clean environment plus `env`: only `PATH`, the locale
/// and what the caller passes reach the program, so an admin's `PG*`
/// variables in berth's environment never redirect a dump.
pub fn command(program: &str, args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )
        .env("LC_ALL", "C.UTF-8")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

fn spawn(mut cmd: Command, program: &str) -> anyhow::Result<Child> {
    cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!(
            "`{program}` is not installed on this host (install the PostgreSQL client, e.g. `apt-get install postgresql-client`)"
        ),
        _ => anyhow::anyhow!("cannot start `{program}`: {e}"),
    })
}

/// Reads a stream to its end, keeping its last `keep` bytes.
async fn tail_of(mut stream: impl AsyncRead + Unpin, keep: usize) -> String {
    let mut kept = Tail::new(keep);
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.push(&buf[..n]);
    }
    kept.text()
}

fn failure(program: &str, status: std::process::ExitStatus, stderr: &str) -> anyhow::Error {
    let how = match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "was killed".to_string(),
    };
    if stderr.is_empty() {
        anyhow::anyhow!("{program} {how}")
    } else {
        anyhow::anyhow!("{program} {how}: {stderr}")
    }
}

/// Streams the program's stdout. The stream's last item is an error when
/// the program exits non-zero (or is killed).
pub fn read(cmd: Command, program: &str) -> anyhow::Result<Reader> {
    let mut child = spawn(cmd, program)?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = tokio::spawn(tail_of(
        child.stderr.take().expect("stderr is piped"),
        tail::STDERR,
    ));
    let program = program.to_string();
    let finish = async move {
        let status = child.wait().await;
        let stderr = stderr.await.unwrap_or_default();
        match status {
            Ok(s) if s.success() => None,
            Ok(s) => Some(Err(std::io::Error::other(
                failure(&program, s, &stderr).to_string(),
            ))),
            Err(e) => Some(Err(std::io::Error::other(format!("{program}: {e}")))),
        }
    };
    let stream = ReaderStream::with_capacity(stdout, 256 * 1024).chain(
        futures::stream::once(finish)
            .filter_map(|r: Option<std::io::Result<Bytes>>| async move { r }),
    );
    Ok(Box::pin(StreamReader::new(stream)))
}

/// Runs the program with `input` on stdin; returns its stdout (the last
/// `tail::WRITE_STDOUT` bytes) on success.
pub async fn write(mut cmd: Command, program: &str, mut input: Reader) -> anyhow::Result<String> {
    cmd.stdin(Stdio::piped());
    let mut child = spawn(cmd, program)?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = tokio::spawn(tail_of(
        child.stdout.take().expect("stdout is piped"),
        tail::WRITE_STDOUT,
    ));
    let stderr = tokio::spawn(tail_of(
        child.stderr.take().expect("stderr is piped"),
        tail::STDERR,
    ));
    let fed = async {
        let r = tokio::io::copy(&mut input, &mut stdin).await;
        drop(stdin);
        r
    };
    let (fed, status) = tokio::join!(fed, child.wait());
    let status = status?;
    let stderr = stderr.await.unwrap_or_default();
    let stdout = stdout.await.unwrap_or_default();
    let broken_pipe = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
    match fed {
        // The input failed (a damaged archive, a target that dropped): the
        // program then saw a cut-off input, and that is the cause to tell.
        Err(e) if !broken_pipe(&e) => {
            let after = if status.success() {
                String::new()
            } else {
                format!("; then {:#}", failure(program, status, &stderr))
            };
            anyhow::bail!("reading the input for {program} failed: {e}{after}")
        }
        // A broken pipe means the program stopped reading: its own error says why.
        _ if !status.success() => Err(failure(program, status, &stderr)),
        // A program that succeeded without reading all of its input did
        // not need the rest (`pg_restore --list` stops after the table of
        // contents), but the rest is read anyway: an input that ends in an
        // error (a SHA-256 that differs from the manifest) is a failure
        // even so.
        Err(_) => {
            tokio::io::copy(&mut input, &mut tokio::io::sink())
                .await
                .map_err(|e| anyhow::anyhow!("reading the input for {program} failed: {e}"))?;
            Ok(stdout)
        }
        Ok(_) => Ok(stdout),
    }
}

/// Runs the program and returns its stdout (at most 1 MiB).
pub async fn output(cmd: Command, program: &str) -> anyhow::Result<String> {
    let child = spawn(cmd, program)?;
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        let mut stderr = Tail::new(tail::STDERR);
        stderr.push(&out.stderr);
        return Err(failure(program, out.status, &stderr.text()));
    }
    let mut stdout = out.stdout;
    stdout.truncate(1 << 20);
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_program_ends_its_stream_with_the_error_and_stderr() {
        let cmd = command(
            "sh",
            &["-c", "echo partial; echo 'disk on fire' >&2; exit 3"],
            &[],
        );
        let mut r = read(cmd, "sh").unwrap();
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(out, b"partial\n");
        let e = e.to_string();
        assert!(e.contains("status 3") && e.contains("disk on fire"), "{e}");
    }

    #[tokio::test]
    async fn the_environment_is_clean_and_passed_values_arrive() {
        std::env::set_var("PGHOST", "attacker.example");
        let cmd = command(
            "sh",
            &["-c", "echo \"${PGHOST:-unset} $PGPASSWORD\""],
            &[("PGPASSWORD".into(), "s3cret".into())],
        );
        assert_eq!(output(cmd, "sh").await.unwrap(), "unset s3cret\n");
    }

    #[tokio::test]
    async fn write_feeds_stdin_and_reports_failure() {
        let data: Reader = Box::pin(std::io::Cursor::new(b"hello".to_vec()));
        let out = write(command("cat", &[], &[]), "cat", data).await.unwrap();
        assert_eq!(out, "hello");
        let data: Reader = Box::pin(std::io::Cursor::new(b"x".to_vec()));
        let e = write(command("sh", &["-c", "exit 2"], &[]), "sh", data)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("status 2"));
        let e = output(
            command("berth-no-such-program", &[], &[]),
            "berth-no-such-program",
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("not installed"), "{e}");
    }
}
