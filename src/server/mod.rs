//! The process: a node, its scheduler and its two listeners, started in order and shut down in
//! order (listeners drained, Raft stopped, WAL synced).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::config::NodeConfig;
use crate::kms::Kms;
use crate::node::{Node, StartError};

/// How long the listeners may take to drain at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Opens storage, starts Raft and both listeners, and runs until `shutdown` resolves (or the
/// Raft core stops, which is an error: a supervisor restarts the process).
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    run_with_clock(config, crate::clock::system(), shutdown).await
}

/// [`run`] with an injected clock.
pub async fn run_with_clock(
    config: NodeConfig,
    clock: SharedClock,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    // Storage first (a foreign data directory is refused before anything else), then bind before
    // starting Raft so a busy port is reported at once and nothing half-starts.
    let storage = Node::open(config.clone())?;
    let api_listener = bind("api-listen", &config.api_listen).await?;
    let raft_listener = bind("raft-listen", &config.raft_listen).await?;
    let node = storage.start(clock).await?;
    let kms = Arc::new(Kms::new(node.clone()));
    let scheduler = tokio::spawn(crate::scheduler::run(node.clone()));
    let watcher = tokio::spawn(node.clone().watch_raft());
    tracing::info!(
        api = %config.api_listen,
        raft = %config.raft_listen,
        data_dir = %config.data_dir.display(),
        "node started"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let api = axum::serve(api_listener, crate::http::api_router(kms.clone()))
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let internal = axum::serve(raft_listener, crate::http::internal::router(node.clone()))
        .with_graceful_shutdown(stopped(stop_rx));
    let api = tokio::spawn(async move { api.await });
    let internal = tokio::spawn(async move { internal.await });

    let mut watcher = watcher;
    let fatal = tokio::select! {
        _ = shutdown => None,
        f = &mut watcher => Some(f.unwrap_or_else(|e| format!("the Raft watcher failed: {e}"))),
    };
    match &fatal {
        Some(f) => tracing::error!(error = %f, "the Raft core stopped; shutting down"),
        None => tracing::info!("shutting down: draining listeners"),
    }
    let _ = stop_tx.send(true);
    drain(api, internal).await;
    // The scheduler proposes through Raft: stop it before Raft stops.
    scheduler.abort();
    node.shutdown().await;
    watcher.abort();
    tracing::info!("stopped");
    match fatal {
        Some(f) => Err(StartError::RaftStopped(f)),
        None => Ok(()),
    }
}

/// Resolves once the stop flag is raised.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Waits for both listeners to finish their connections, at most [`DRAIN`]: a stuck
/// connection must not keep the node from stopping.
async fn drain<A, B>(api: tokio::task::JoinHandle<A>, internal: tokio::task::JoinHandle<B>) {
    let both = async {
        let _ = api.await;
        let _ = internal.await;
    };
    if tokio::time::timeout(DRAIN, both).await.is_err() {
        tracing::warn!("listeners did not drain within 5 s; stopping anyway");
    }
}

async fn bind(field: &'static str, addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| StartError::Bind {
            field,
            addr: addr.to_string(),
            error,
        })
}
