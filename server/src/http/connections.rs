//! Numbers every connection the admin listener accepts, and can close the
//! ones opened before a given moment.
//!
//! Why: after a firewall apply, a confirmation only proves the admin can
//! still reach berth if it arrives over a connection the new rules let in.
//! A kept-alive connection from before is "established" and passes any
//! rule. So the apply closes the connections older than itself, and the
//! confirm route refuses a request whose connection is older than the apply.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// The number of the connection a request came over (an extension on every
/// request the listener serves; absent for in-process calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

#[derive(Debug)]
pub struct Connections {
    next: AtomicU64,
    /// Connections numbered below this are closed.
    closed_below: watch::Sender<u64>,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            next: AtomicU64::new(1),
            closed_below: watch::channel(0).0,
        }
    }
}

impl Connections {
    /// The number the next connection will get: every connection below it
    /// is already open (or gone).
    pub fn watermark(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }

    /// Closes every connection numbered below `watermark` the next time it
    /// reads or writes, idle ones included.
    pub fn close_below(&self, watermark: u64) {
        self.closed_below.send_if_modified(|v| {
            if *v < watermark {
                *v = watermark;
                true
            } else {
                false
            }
        });
    }

    fn register(&self) -> u64 {
        self.next.fetch_add(1, Ordering::SeqCst)
    }
}

/// The acceptor that numbers connections; TLS, if any, runs over it.
#[derive(Clone)]
pub struct Numbered {
    pub connections: Arc<Connections>,
}

impl<S> Accept<tokio::net::TcpStream, S> for Numbered {
    type Stream = Closable<tokio::net::TcpStream>;
    type Service = tower_http::add_extension::AddExtension<S, ConnectionId>;
    type Future = std::future::Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        let id = self.connections.register();
        let closed = self.connections.closed_below.subscribe();
        let stream = Closable {
            inner: stream,
            id,
            wake: changed(closed.clone()),
            closed,
        };
        let service = tower_http::add_extension::AddExtension::new(service, ConnectionId(id));
        std::future::ready(Ok((stream, service)))
    }
}

fn changed(mut rx: watch::Receiver<u64>) -> BoxFuture<'static, ()> {
    async move {
        if rx.changed().await.is_err() {
            // The listener is gone; nothing will ever close this one.
            std::future::pending::<()>().await;
        }
    }
    .boxed()
}

/// A stream that reads end-of-file once its connection is closed.
pub struct Closable<T> {
    inner: T,
    id: u64,
    closed: watch::Receiver<u64>,
    wake: BoxFuture<'static, ()>,
}

impl<T> Closable<T> {
    fn is_closed(&mut self, cx: &mut Context<'_>) -> bool {
        // Polling `wake` registers this task, so an idle connection wakes
        // up when a close is asked for.
        while self.wake.as_mut().poll(cx).is_ready() {
            // Seen: the next future waits for a newer change, not this one.
            self.closed.borrow_and_update();
            self.wake = changed(self.closed.clone());
        }
        *self.closed.borrow() > self.id
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Closable<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_closed(cx) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Closable<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    // Forwarded so hyper keeps writing headers and body in one syscall.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn closing_ends_older_idle_connections_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(Connections::default());
        let numbered = Numbered {
            connections: conns.clone(),
        };
        let mut clients = Vec::new();
        let mut served = Vec::new();
        for _ in 0..2 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            let (stream, _) = listener.accept().await.unwrap();
            let (stream, _) = Accept::<_, ()>::accept(&numbered, stream, ())
                .await
                .unwrap();
            served.push(stream);
        }
        assert_eq!(conns.watermark(), 3);
        let mut old = served.remove(0);
        let mut new = served.remove(0);
        // The old one is idle in a read when the close comes.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            old.read(&mut buf).await.unwrap()
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        conns.close_below(2);
        assert_eq!(reader.await.unwrap(), 0, "the older connection reads EOF");
        clients[1].write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        new.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi", "the newer connection still works");
    }
}
