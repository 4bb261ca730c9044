//! Source bytes → zstd → age → target, streaming with bounded memory.
//!
//! Compression and encryption are CPU work with synchronous APIs, so they
//! run on one blocking thread that pulls from the async source and pushes
//! fixed-size chunks into a small bounded channel the target reads from.
//! At most `CHANNEL_CHUNKS` chunks of `CHUNK` bytes wait between the two,
//! whatever the archive's size. A failure on either side reaches the other:
//! a source error becomes the reader's last item (the target aborts the
//! upload); a target that stops reading makes the thread's next send fail.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use age::x25519;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use super::target::Reader;

/// Bytes per chunk handed to the target.
pub const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the encoder and the target.
const CHANNEL_CHUNKS: usize = 8;
/// What is read from the source ahead of the encoder: 16 reads of at most
/// 64 KiB (a pipe's size), 1 MiB at most.
const READ_AHEAD: usize = 16;
const READ_SIZE: usize = 64 * 1024;
/// Input per zstd job. The default (4 windows, 8 MiB at level 3) kept
/// about 35 MiB in zstd's buffers during a backup.
const ZSTD_JOB: u32 = 2 << 20;

/// What the encoder reports when the target side hung up first.
const TARGET_GONE: &str = "the target stopped reading";

/// Whether an encoder error only echoes the target giving up (whose own
/// error then says what happened).
pub fn target_gone(e: &anyhow::Error) -> bool {
    format!("{e:#}").contains(TARGET_GONE)
}

/// Counters the panel reads while a run or restore is going.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes read from the source (or, restoring, from the target).
    pub read: AtomicU64,
    /// Bytes written towards the target (or the destination).
    pub written: AtomicU64,
}

/// What the encoder saw once the stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub source_bytes: u64,
    /// Bytes of the finished archive.
    pub size: u64,
    /// SHA-256 of the finished archive, hex.
    pub sha256: String,
}

/// A writer that cuts what it gets into chunks for a channel.
pub struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: BytesMut,
    hasher: Sha256,
    size: u64,
    progress: Arc<Progress>,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<io::Result<Bytes>>, progress: Arc<Progress>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: BytesMut::with_capacity(CHUNK),
            hasher: Sha256::new(),
            size: 0,
            progress,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, TARGET_GONE))?;
        self.buf.reserve(CHUNK);
        Ok(())
    }

    /// Sends what is buffered and returns the size and hash of everything.
    pub fn finish(mut self) -> io::Result<(u64, String)> {
        self.send()?;
        Ok((self.size, hex::encode(self.hasher.finalize())))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        self.hasher.update(&data[..n]);
        self.size += n as u64;
        self.progress.written.fetch_add(n as u64, Ordering::Relaxed);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts what passes through a reader.
struct Counted<R> {
    inner: R,
    count: u64,
    progress: Arc<Progress>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        self.progress.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Either an age stream around the channel or the channel itself.
enum Sink {
    Age(age::stream::StreamWriter<ChannelWriter>),
    Plain(ChannelWriter),
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Age(w) => w.write(data),
            Sink::Plain(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader over a channel of chunks, and the channel's sending end.
pub fn channel() -> (mpsc::Sender<io::Result<Bytes>>, Reader) {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    (tx, Box::pin(StreamReader::new(ReceiverStream::new(rx))))
}

/// Compresses (zstd at `level`) and, with a recipient, encrypts `input`.
/// The returned reader is the archive; the handle resolves once it ended,
/// with its size and hash, or with why it failed. A source that produced
/// nothing is a failure: an empty dump is never a backup.
pub fn encode(
    input: Reader,
    level: i32,
    recipient: Option<x25519::Recipient>,
    progress: Arc<Progress>,
) -> (Reader, JoinHandle<anyhow::Result<Digest>>) {
    let (tx, reader) = channel();
    // The bridge needs the runtime's handle: made here, used on the thread.
    let input = SyncIoBridge::new(read_ahead(input, tx.clone()));
    let handle = tokio::task::spawn_blocking(move || {
        let result = encode_blocking(input, level, recipient, tx.clone(), progress);
        if let Err(e) = &result {
            // The target sees the failure instead of a clean end.
            let _ = tx.blocking_send(Err(io::Error::other(format!("{e:#}"))));
        }
        result
    });
    (reader, handle)
}

/// Reads the source on its own task, a bounded way ahead of the encoder. A
/// source writing into a pipe (pg_dump's 64 KiB stdout) otherwise stalls
/// whenever the encoder is busy compressing what it read last, so the two
/// take turns instead of running side by side. Errors arrive in order, after
/// the bytes before them.
///
/// The stream ends cleanly only when the source did: if the task dies (a
/// panic in the source) its end is an error, never a shorter archive. Once
/// the target has hung up (`archive` closed: the upload failed, or the run
/// was abandoned) the task stops waiting on the source and drops it, which
/// kills a `pg_dump` still waiting for a lock or a slow server.
fn read_ahead(input: Reader, archive: mpsc::Sender<io::Result<Bytes>>) -> Reader {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(READ_AHEAD);
    let ended = Arc::new(AtomicBool::new(false));
    let clean = ended.clone();
    tokio::spawn(async move {
        let mut chunks = ReaderStream::with_capacity(input, READ_SIZE);
        loop {
            let chunk = tokio::select! {
                _ = archive.closed() => return,
                chunk = chunks.next() => chunk,
            };
            let Some(chunk) = chunk else {
                clean.store(true, Ordering::Release);
                return;
            };
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    let end = futures::stream::once(async move {
        (!ended.load(Ordering::Acquire)).then(|| {
            Err(io::Error::other(
                "reading the source stopped before its end",
            ))
        })
    })
    .filter_map(|item| async move { item });
    Box::pin(StreamReader::new(ReceiverStream::new(rx).chain(end)))
}

fn encode_blocking(
    input: SyncIoBridge<Reader>,
    level: i32,
    recipient: Option<x25519::Recipient>,
    tx: mpsc::Sender<io::Result<Bytes>>,
    progress: Arc<Progress>,
) -> anyhow::Result<Digest> {
    let mut source = Counted {
        inner: input,
        count: 0,
        progress: progress.clone(),
    };
    let out = ChannelWriter::new(tx, progress);
    let sink = match &recipient {
        Some(r) => Sink::Age(
            age::Encryptor::with_recipients(std::iter::once(r as &dyn age::Recipient))
                .map_err(|e| anyhow::anyhow!("encryption setup failed: {e}"))?
                .wrap_output(out)?,
        ),
        None => Sink::Plain(out),
    };
    let mut zstd = zstd::Encoder::new(sink, level)?;
    // A checksum of the content in the frame: `zstd -d` (and berth)
    // notice a damaged unencrypted archive even without its manifest.
    zstd.include_checksum(true)?;
    // One zstd worker thread: compression runs beside this thread's reads
    // and writes, and on whole jobs of contiguous input. Single-threaded
    // streaming keeps its window in a ring buffer, and once that wraps
    // every block goes through the slower "external dictionary" match
    // finder: the same level took a quarter more CPU (the zstd CLI uses one
    // worker by default too).
    zstd.multithread(1)?;
    zstd.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB))?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = source.read(&mut buf).map_err(source_error)?;
        if n == 0 {
            break;
        }
        zstd.write_all(&buf[..n])?;
    }
    if source.count == 0 {
        anyhow::bail!("the source produced no data");
    }
    let out = match zstd.finish()? {
        Sink::Age(w) => w.finish()?,
        Sink::Plain(w) => w,
    };
    let (size, sha256) = out.finish()?;
    Ok(Digest {
        source_bytes: source.count,
        size,
        sha256,
    })
}

fn source_error(e: io::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Hashes what passes through a reader into a hasher the caller keeps
/// (the reader itself disappears into the decryptor).
struct Hashed<R> {
    inner: R,
    hasher: Rc<RefCell<Sha256>>,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.borrow_mut().update(&buf[..n]);
        Ok(n)
    }
}

/// The inverse of `encode`: decrypts with whichever identity opens the
/// archive, then decompresses. Errors (a wrong key, a truncated or altered
/// archive) end the reader with an error, never with a clean end. With
/// `sha256` (the manifest's), an archive whose stored bytes hash otherwise
/// ends with an error too, in place of its last chunk: a restore reading
/// it fails (in one transaction, so it changes nothing) instead of
/// applying bytes that rotted at the target.
pub fn decode(
    input: Reader,
    identities: Vec<x25519::Identity>,
    encrypted: bool,
    sha256: Option<String>,
    progress: Arc<Progress>,
) -> Reader {
    let (tx, reader) = channel();
    let input = SyncIoBridge::new(input);
    tokio::task::spawn_blocking(move || {
        let result = decode_blocking(input, identities, encrypted, sha256, tx.clone(), progress);
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(io::Error::other(format!("{e:#}"))));
        }
    });
    reader
}

fn decode_blocking(
    input: SyncIoBridge<Reader>,
    identities: Vec<x25519::Identity>,
    encrypted: bool,
    sha256: Option<String>,
    tx: mpsc::Sender<io::Result<Bytes>>,
    progress: Arc<Progress>,
) -> anyhow::Result<()> {
    let hasher = Rc::new(RefCell::new(Sha256::new()));
    let counted = Hashed {
        inner: Counted {
            inner: input,
            count: 0,
            progress: progress.clone(),
        },
        hasher: hasher.clone(),
    };
    let plain: Box<dyn Read> = if encrypted {
        let decryptor =
            age::Decryptor::new(counted).map_err(|e| anyhow::anyhow!("not an age archive: {e}"))?;
        let reader = decryptor
            .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
            .map_err(|e| {
                anyhow::anyhow!("cannot decrypt the archive with berth's backup keys: {e}")
            })?;
        Box::new(reader)
    } else {
        Box::new(counted)
    };
    let mut zstd = zstd::Decoder::new(plain)?;
    let mut out = ChannelWriter::new(tx, Arc::new(Progress::default()));
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = zstd
            .read(&mut buf)
            .map_err(|e| anyhow::anyhow!("the archive is damaged or incomplete: {e}"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    // The stored bytes after the end of zstd's frame count too.
    io::copy(&mut zstd.finish(), &mut io::sink())
        .map_err(|e| anyhow::anyhow!("the archive is damaged or incomplete: {e}"))?;
    if let Some(expected) = sha256 {
        let seen = hex::encode(hasher.borrow_mut().finalize_reset());
        if seen != expected {
            anyhow::bail!(
                "the archive's SHA-256 is {seen}, its manifest says {expected}: it was altered or damaged where it is stored"
            );
        }
    }
    out.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn reader(data: Vec<u8>) -> Reader {
        Box::pin(std::io::Cursor::new(data))
    }

    async fn read_all(mut r: Reader) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).await?;
        Ok(out)
    }

    fn sample(n: usize) -> Vec<u8> {
        // Compressible but not trivial.
        (0..n)
            .map(|i| ((i * 7919) % 251) as u8 ^ (i / 4096) as u8)
            .collect()
    }

    #[tokio::test]
    async fn round_trip_with_encryption_and_the_digest_matches_the_bytes() {
        let identity = x25519::Identity::generate();
        let data = sample(3 * CHUNK + 123);
        let progress = Arc::new(Progress::default());
        let (archive, done) = encode(
            reader(data.clone()),
            3,
            Some(identity.to_public()),
            progress.clone(),
        );
        let archive = read_all(archive).await.unwrap();
        let digest = done.await.unwrap().unwrap();
        assert_eq!(digest.source_bytes, data.len() as u64);
        assert_eq!(digest.size, archive.len() as u64);
        assert_eq!(digest.sha256, hex::encode(Sha256::digest(&archive)));
        assert!(archive.starts_with(b"age-encryption.org/v1"));
        assert_eq!(progress.read.load(Ordering::Relaxed), data.len() as u64);

        let back = decode(
            reader(archive.clone()),
            vec![identity.clone()],
            true,
            Some(digest.sha256.clone()),
            Arc::default(),
        );
        assert_eq!(read_all(back).await.unwrap(), data);

        // Another key cannot open it.
        let stranger = x25519::Identity::generate();
        let e = read_all(decode(
            reader(archive),
            vec![stranger],
            true,
            None,
            Arc::default(),
        ))
        .await
        .unwrap_err();
        assert!(e.to_string().contains("cannot decrypt"), "{e}");
    }

    #[tokio::test]
    async fn an_empty_source_is_a_failure_not_an_empty_archive() {
        let (archive, done) = encode(reader(Vec::new()), 3, None, Arc::default());
        let e = read_all(archive).await.unwrap_err();
        assert!(e.to_string().contains("no data"), "{e}");
        assert!(done.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_source_error_ends_the_archive_with_that_error() {
        let failing = tokio::io::AsyncReadExt::chain(
            std::io::Cursor::new(sample(CHUNK)),
            tokio_util::io::StreamReader::new(futures::stream::iter(vec![Err::<Bytes, _>(
                io::Error::other("pg_dump exited with status 1: connection lost"),
            )])),
        );
        let (archive, done) = encode(Box::pin(failing), 3, None, Arc::default());
        let e = read_all(archive).await.unwrap_err();
        assert!(e.to_string().contains("connection lost"), "{e}");
        assert!(done.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_truncated_archive_does_not_decode_cleanly() {
        let identity = x25519::Identity::generate();
        let (archive, done) = encode(
            reader(sample(2 * CHUNK)),
            3,
            Some(identity.to_public()),
            Arc::default(),
        );
        let mut archive = read_all(archive).await.unwrap();
        done.await.unwrap().unwrap();
        archive.truncate(archive.len() - 100);
        let r = read_all(decode(
            reader(archive),
            vec![identity],
            true,
            None,
            Arc::default(),
        ))
        .await;
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn bytes_that_differ_from_the_manifest_end_the_stream_with_an_error() {
        let data = sample(2 * CHUNK);
        let (archive, done) = encode(reader(data.clone()), 3, None, Arc::default());
        let archive = read_all(archive).await.unwrap();
        let digest = done.await.unwrap().unwrap();
        // The right bytes pass; the same bytes against another digest do not.
        let back = decode(
            reader(archive.clone()),
            Vec::new(),
            false,
            Some(digest.sha256),
            Arc::default(),
        );
        assert_eq!(read_all(back).await.unwrap(), data);
        let other = hex::encode(Sha256::digest(b"something else"));
        let e = read_all(decode(
            reader(archive.clone()),
            Vec::new(),
            false,
            Some(other),
            Arc::default(),
        ))
        .await
        .unwrap_err();
        assert!(e.to_string().contains("SHA-256"), "{e}");
        // A flipped bit in an unencrypted archive: zstd's own checksum
        // catches it even without a manifest.
        let mut rotten = archive;
        let middle = rotten.len() / 2;
        rotten[middle] ^= 0x10;
        let r = read_all(decode(
            reader(rotten),
            Vec::new(),
            false,
            None,
            Arc::default(),
        ))
        .await;
        assert!(r.is_err());
    }

    /// Yields `data`, then either panics or waits for ever; records being dropped.
    struct Source {
        data: Option<Vec<u8>>,
        panic: bool,
        dropped: Arc<std::sync::atomic::AtomicBool>,
    }

    impl tokio::io::AsyncRead for Source {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            if let Some(data) = self.data.take() {
                buf.put_slice(&data);
                return std::task::Poll::Ready(Ok(()));
            }
            if self.panic {
                panic!("the source broke");
            }
            std::task::Poll::Pending
        }
    }

    impl Drop for Source {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_source_that_dies_is_an_error_not_a_shorter_archive() {
        let source = Source {
            data: Some(sample(1000)),
            panic: true,
            dropped: Arc::default(),
        };
        let (archive, done) = encode(Box::pin(source), 3, None, Arc::default());
        let e = read_all(archive).await.unwrap_err();
        assert!(e.to_string().contains("before its end"), "{e}");
        assert!(done.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_target_that_hangs_up_stops_a_silent_source() {
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let source = Source {
            data: Some(sample(1000)),
            panic: false,
            dropped: dropped.clone(),
        };
        let (archive, _done) = encode(Box::pin(source), 3, None, Arc::default());
        // The source sends a little, then nothing more: the target gives up.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        drop(archive);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !dropped.load(Ordering::SeqCst) {
            assert!(std::time::Instant::now() < deadline, "the source lives on");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn memory_stays_bounded_when_the_target_is_slow() {
        // 64 MiB of incompressible bytes through a reader that is never
        // drained beyond one byte: the encoder must block, not buffer.
        let mut data = vec![0u8; 64 << 20];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut data);
        let progress = Arc::new(Progress::default());
        let (mut archive, _done) = encode(reader(data), 1, None, progress.clone());
        let mut first = [0u8; 1];
        archive.read_exact(&mut first).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let read = progress.read.load(Ordering::Relaxed);
        // What may legitimately sit between source and target: the output
        // queue (8 x 256 KiB), the chunk being filled, zstd's job being
        // compressed plus the one being filled (2 x 2 MiB) and its output
        // buffers, about 8.5 MiB measured. Twice that still proves the
        // encoder blocks: unbounded, it would have taken all 64 MiB.
        assert!(read > 0 && read <= 16 << 20, "{read} bytes read ahead");
    }
}
