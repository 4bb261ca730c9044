//! The embedded proxy's listeners: plain HTTP and HTTPS (rustls, SNI, ALPN
//! h2 + http/1.1), each connection served by hyper's auto (HTTP/1.1 or
//! HTTP/2) builder with upgrades for WebSockets, text responses compressed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Extensions, HeaderMap, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;

use super::handler::{handle, Conn, Shared};

/// A client that has not sent its request headers (or finished the TLS
/// handshake) by then is cut off, so idle sockets cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Text-like content types are worth compressing; images, archives and
/// video already are compressed.
fn is_text(_: StatusCode, _: Version, headers: &HeaderMap, _: &Extensions) -> bool {
    let Some(ct) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let ct = ct.to_ascii_lowercase();
    (ct.starts_with("text/") && !ct.starts_with("text/event-stream"))
        || ct.starts_with("application/json")
        || ct.starts_with("application/javascript")
        || ct.starts_with("application/xml")
        || ct.contains("+json")
        || ct.contains("+xml")
        || ct.starts_with("image/svg+xml")
}

pub fn tls_config(shared: &Shared) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(shared.certs.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Accepts connections until the process ends.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => {
                    let conn = Conn {
                        peer,
                        tls: false,
                        sni: None,
                    };
                    serve_connection(stream, conn, shared).await;
                }
                Some(acceptor) => {
                    let accepted =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    let Ok(Ok(tls)) = accepted else { return };
                    let sni = tls
                        .get_ref()
                        .1
                        .server_name()
                        .map(|s| s.to_ascii_lowercase());
                    let conn = Conn {
                        peer,
                        tls: true,
                        sni,
                    };
                    serve_connection(tls, conn, shared).await;
                }
            }
        });
    }
}

async fn serve_connection<S>(stream: S, conn: Conn, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let peer = conn.peer;
    let service = tower::ServiceBuilder::new()
        .layer(CompressionLayer::new().compress_when(SizeAbove::new(256).and(is_text)))
        .service_fn(move |req| handle(shared.clone(), conn.clone(), req));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
        .await
    {
        tracing::debug!(%peer, error = %e, "proxy connection ended with an error");
    }
}

/// Binds `count` sockets to one address with SO_REUSEPORT, one per proxy
/// worker: the kernel spreads new connections over them, and each worker
/// serves its connections start to finish on its own thread (as nginx's
/// workers do), with no hand-off between threads. The first socket fixes
/// the port when `addr` asks for port 0. Binding happens now, so a taken
/// port is reported at start-up.
pub fn bind_shared(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Runs one proxy worker: a single-threaded runtime serving its share of
/// every listener, for the life of the process.
pub fn spawn_worker(
    index: usize,
    listeners: Vec<(std::net::TcpListener, Option<Arc<rustls::ServerConfig>>)>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name(format!("berth-proxy-{index}"))
        .build()?;
    std::thread::Builder::new()
        .name(format!("berth-proxy-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                let mut serving = Vec::new();
                for (listener, tls) in listeners {
                    match TcpListener::from_std(listener) {
                        Ok(l) => serving.push(tokio::spawn(serve(l, shared.clone(), tls))),
                        Err(e) => {
                            tracing::error!(error = %e, "proxy worker cannot use its listener")
                        }
                    }
                }
                for task in serving {
                    let _ = task.await;
                }
            })
        })?;
    Ok(())
}
