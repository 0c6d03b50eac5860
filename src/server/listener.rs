//! One listener's accept loop: TLS (when configured) and the limits that hold before any request
//! is authenticated. A connection over `max-connections` is closed at once; a TLS handshake must
//! finish within `handshake-timeout-ms`; a request's headers must arrive within
//! `header-read-timeout-ms` of the connection becoming idle (hyper starts that timer again after
//! every response, so it is also the keep-alive idle timeout); a write that makes no progress for
//! `send-timeout-ms` (a client that stops reading its answers) closes the connection; the request
//! head and read buffer are capped per connection. A slow, idle or stalled client therefore holds
//! one connection slot and bounded memory, for a bounded time unless it keeps reading (such
//! clients are bounded by `max-connections`), and never blocks others. (The body
//! has its own deadline where it is read, `body-timeout-ms`, so a request that passed
//! authentication is never cut off mid-operation by the listener.)
//!
//! The peer's verified certificate identity (mutual TLS) and address go into every request's
//! extensions for the routers to check.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_io_timeout::TimeoutStream;
use tower::ServiceExt;

use crate::config::LimitsConfig;
use crate::metrics::{ListenerLabel, ListenerMetrics, Metrics};
use crate::tls::PeerIdentity;

/// Largest buffered request head (and read buffer) per connection.
const MAX_BUF: usize = 64 << 10;
/// Most headers a request may carry.
const MAX_HEADERS: usize = 64;

/// A client socket whose writes fail after `send-timeout-ms` without progress.
type Socket = Pin<Box<TimeoutStream<TcpStream>>>;

/// What a listener needs besides its socket and router.
pub struct Listener {
    /// `api` or `internal`: the metrics label and the log field.
    pub name: &'static str,
    /// TLS; `None` serves plaintext (only with `insecure-plaintext`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// With mutual TLS: the cluster a peer certificate must name.
    pub cluster_id: Option<String>,
    pub limits: LimitsConfig,
    pub metrics: Arc<Metrics>,
}

/// Serves `router` on `listener` until `stop` is raised, then lets the open connections finish
/// their requests for at most `drain` and closes what is left.
pub async fn serve(
    tcp: TcpListener,
    router: Router,
    l: Listener,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    let l = Arc::new(l);
    let label = ListenerMetrics::label(l.name);
    let slots = Arc::new(Semaphore::new(l.limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut tasks = JoinSet::new();
    let acceptor = l.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    loop {
        let (stream, remote) = tokio::select! {
            r = tcp.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = l.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopped => break,
        };
        // Finished connection tasks are reaped as we go.
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            l.metrics.listeners.refused.get_or_create(&label).inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut socket = TimeoutStream::new(stream);
        socket.set_write_timeout(Some(Duration::from_millis(l.limits.send_timeout_ms)));
        let socket: Socket = Box::pin(socket);
        let l = l.clone();
        let router = router.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tasks.spawn(async move {
            let _permit = permit;
            let label = ListenerMetrics::label(l.name);
            let _open = OpenConnection::new(&l.metrics, &label);
            match acceptor {
                None => serve_connection(socket, remote, None, router, &l, &label, watcher).await,
                Some(acceptor) => {
                    if let Some((tls, identity)) = handshake(&acceptor, socket, &l, &label).await {
                        serve_connection(tls, remote, identity, router, &l, &label, watcher).await;
                    }
                }
            }
        });
    }
    drop(tcp);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = l.name,
            "connections did not drain in time; closing them"
        );
    }
    // Whatever did not finish (a handshake in progress, a stuck connection) ends here, so nothing
    // outlives the listener.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// Counts an open connection in `listener_connections_open` for as long as it lives (a panic in
/// the connection's task included).
struct OpenConnection(prometheus_client::metrics::gauge::Gauge);

impl OpenConnection {
    fn new(metrics: &Metrics, label: &ListenerLabel) -> Self {
        let g = metrics.listeners.open.get_or_create(label).clone();
        g.inc();
        OpenConnection(g)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The TLS handshake, bounded in time; with mutual TLS, the identity the client's certificate
/// names, which must belong to this cluster.
async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: Socket,
    l: &Listener,
    label: &ListenerLabel,
) -> Option<(
    tokio_rustls::server::TlsStream<Socket>,
    Option<PeerIdentity>,
)> {
    let timeout = Duration::from_millis(l.limits.handshake_timeout_ms);
    let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            l.metrics
                .listeners
                .handshake_failures
                .get_or_create(label)
                .inc();
            tracing::debug!(listener = l.name, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            l.metrics
                .listeners
                .handshake_failures
                .get_or_create(label)
                .inc();
            return None;
        }
    };
    let Some(cluster_id) = &l.cluster_id else {
        return Some((tls, None));
    };
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| PeerIdentity::of_certificate(c.as_ref()));
    match leaf {
        Some(Ok(identity)) if identity.cluster_id() == cluster_id => Some((tls, Some(identity))),
        other => {
            l.metrics
                .listeners
                .identity_refused
                .get_or_create(label)
                .inc();
            tracing::warn!(listener = l.name, identity = ?other.map(|r| r.map_err(|e| e.to_string())),
                "a client certificate of the cluster CA names no identity of this cluster");
            None
        }
    }
}

/// HTTP/1.1 on one connection, with the header-read (and idle) timeout and bounded buffers.
async fn serve_connection<I>(
    io: I,
    remote: SocketAddr,
    identity: Option<PeerIdentity>,
    router: Router,
    l: &Listener,
    label: &ListenerLabel,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(ConnectInfo(remote));
        if let Some(id) = &identity {
            req.extensions_mut().insert(id.clone());
        }
        router.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(l.limits.header_read_timeout_ms))
        .max_buf_size(MAX_BUF)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        l.metrics
            .listeners
            .connection_errors
            .get_or_create(label)
            .inc();
        tracing::debug!(listener = l.name, error = %e, "connection ended in an error");
    }
}
