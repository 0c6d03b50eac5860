//! The process: a node, its scheduler and its two listeners ([`listener`]: TLS and the limits
//! before authentication), started in order and shut down in order (listeners drained, Raft
//! stopped, WAL synced).

mod audit;
pub mod listener;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::config::NodeConfig;
use crate::kms::Kms;
use crate::node::{Node, StartError};
use crate::tls::reload::CertStore;

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
    // TLS material is read before anything starts: a bad certificate, key or CA is a start error.
    // The unseal passphrase or PIN goes to the node's opening alone; no copy of the config
    // that outlives the start keeps it.
    let mut config = config;
    let unseal_secret = config.kms.unseal_passphrase.take();
    let storage = Node::open(config.clone(), unseal_secret)?;
    let tls = listener_tls(&config, storage.tls())?;
    let api_listener = bind("api-listen", &config.api_listen).await?;
    let raft_listener = bind("raft-listen", &config.raft_listen).await?;
    let audit_log = audit::open(&config)?;
    let node = storage.start(clock).await?;
    let kms = Arc::new(Kms::new(
        node.clone(),
        audit::trail(&config, audit_log.as_ref()),
    ));
    let auditor = audit_log
        .clone()
        .map(|log| tokio::spawn(audit::run(node.clone(), log)));
    let scheduler = tokio::spawn(crate::scheduler::run(node.clone()));
    let rewrapper = tokio::spawn(crate::scheduler::rewrap::run(node.clone()));
    let leases = tokio::spawn(node.clone().run_leases());
    let backups = tokio::spawn(node.clone().run_backups());
    let watcher = tokio::spawn(node.clone().watch_raft());
    tracing::info!(
        api = %config.api_listen,
        raft = %config.raft_listen,
        data_dir = %config.data_dir.display(),
        "node started"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = node.metrics_handle();
    let reloader = tls.as_ref().map(|t| {
        tokio::spawn(reload_certificates(
            t.stores.clone(),
            t.check_every,
            metrics.clone(),
        ))
    });
    let api = listener::serve(
        api_listener,
        crate::http::api_router(kms.clone()),
        listener::Listener {
            name: "api",
            tls: tls.as_ref().map(|t| t.api.clone()),
            cluster_id: None,
            limits: config.limits.clone(),
            metrics: metrics.clone(),
        },
        stop_rx.clone(),
        DRAIN,
    );
    let internal = listener::serve(
        raft_listener,
        crate::http::internal::router(node.clone(), audit_log.clone()),
        listener::Listener {
            name: "internal",
            tls: tls.as_ref().map(|t| t.internal.clone()),
            cluster_id: tls.as_ref().map(|_| config.cluster_id.clone()),
            limits: config.limits.clone(),
            metrics,
        },
        stop_rx,
        DRAIN,
    );
    let api = tokio::spawn(api);
    let internal = tokio::spawn(internal);

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
    // The scheduler and the audit checkpoints propose through Raft: stop them before Raft stops.
    scheduler.abort();
    rewrapper.abort();
    leases.abort();
    backups.abort();
    if let Some(a) = auditor {
        a.abort();
    }
    if let Some(log) = &audit_log {
        if let Err(e) = log.close() {
            tracing::error!(error = %e, "the audit trail could not be flushed at shutdown");
        }
    }
    if let Some(r) = reloader {
        r.abort();
    }
    node.shutdown().await;
    watcher.abort();
    tracing::info!("stopped");
    match fatal {
        Some(f) => Err(StartError::RaftStopped(f)),
        None => Ok(()),
    }
}

/// The listeners' TLS: the node's certificate store (both listeners present it), the API
/// listener's configuration (server authentication), the internal listener's (mutual TLS), and
/// how often to check the files.
struct ListenerTls {
    /// The node certificate, and the API's own when `api-cert-file` is set.
    stores: Vec<Arc<CertStore>>,
    api: Arc<rustls::ServerConfig>,
    internal: Arc<rustls::ServerConfig>,
    check_every: Duration,
}

/// The listeners' TLS when `[tls]` is set.
fn listener_tls(
    config: &NodeConfig,
    node_tls: Option<crate::node::NodeTls>,
) -> Result<Option<ListenerTls>, StartError> {
    let (t, n) = match (&config.tls, node_tls) {
        (Some(t), Some(n)) => (t, n),
        (None, None) => {
            tracing::warn!(
                "insecure-plaintext: both listeners serve plaintext HTTP (loopback tests only)"
            );
            return Ok(None);
        }
        // Never fall back to plaintext because one half is missing.
        _ => {
            return Err(StartError::Config(
                "[tls] is set but its certificates were not loaded".into(),
            ))
        }
    };
    let mut stores = vec![n.cert.clone()];
    let api_cert = match (&t.api_cert_file, &t.api_key_file) {
        (Some(cert), Some(key)) => {
            let store = CertStore::open(cert, key)?;
            stores.push(store.clone());
            store
        }
        _ => n.cert.clone(),
    };
    Ok(Some(ListenerTls {
        api: crate::tls::config::api_server(api_cert)?,
        internal: crate::tls::config::internal_server(n.cert, n.roots)?,
        stores,
        check_every: Duration::from_millis(t.reload_check_ms),
    }))
}

/// Rereads the certificates when their files change, and at once on SIGHUP. A bad new pair is
/// logged and the one in use kept.
async fn reload_certificates(
    stores: Vec<Arc<CertStore>>,
    period: Duration,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; certificates are reloaded when their files change");
            None
        }
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => true,
        };
        for store in &stores {
            let outcome = if forced {
                store.reload().map(|()| true)
            } else {
                store.reload_if_changed()
            };
            match outcome {
                Ok(true) => {
                    metrics.tls_reloads.inc();
                    tracing::info!(forced, certificate = ?store, "TLS certificate reloaded");
                }
                Ok(false) => {}
                Err(e) => {
                    metrics.tls_reload_failures.inc();
                    tracing::error!(error = %e, "TLS certificate not reloaded; keeping the one in use");
                }
            }
        }
    }
}

/// Waits for both listeners to finish (each drains its connections for at most [`DRAIN`]): a
/// stuck connection must not keep the node from stopping.
async fn drain<A, B>(api: tokio::task::JoinHandle<A>, internal: tokio::task::JoinHandle<B>) {
    let both = async {
        let _ = api.await;
        let _ = internal.await;
    };
    if tokio::time::timeout(DRAIN + Duration::from_secs(1), both)
        .await
        .is_err()
    {
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
