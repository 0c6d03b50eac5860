//! The HTTP layer: the client-facing API listener (one module per API dialect, plus health and
//! metrics) and the internal listener between nodes ([`internal`]).
//!
//! Dialects: [`tencent`] (Tencent Cloud KMS API 3.0, and its legacy API v2 in `tencent::v2`) and
//! [`huawei`] (Huawei Cloud KMS, `/v1.0/{project_id}/kms/…`). Another dialect is a sibling module that
//! authenticates, parses into the typed requests of `crate::kms` and renders its results; the
//! core does not change.

pub mod body;
pub mod console;
mod health;
pub mod huawei;
pub mod internal;
pub mod tencent;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::routing::{any, get};
use axum::Router;

use crate::kms::Kms;

/// Runs one API request in a task of its own, so a client that hangs up does not cut it short:
/// a write it started is still recorded in the audit trail (hyper drops the connection's future
/// on a mid-request EOF). A task that fails answers a bare 500.
pub(crate) async fn in_own_task(
    request: impl std::future::Future<Output = axum::response::Response> + Send + 'static,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::spawn(request).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!(error = %e, "a request's task failed");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Writes the audit record of a request that ended with `result` (`finished` describes it, given
/// the code about to be answered). The answer leaves only once the request is on the record: when
/// the record cannot be written, the audit failure is answered instead.
pub(crate) async fn recorded<'a, T, E: From<crate::kms::KmsError>>(
    kms: &Kms,
    result: Result<T, E>,
    code_of: fn(&E) -> &'static str,
    finished: impl Fn(Option<&'static str>) -> crate::kms::Finished<'a>,
) -> Result<T, E> {
    match result {
        Ok(v) => match kms.finish(finished(None)).await {
            Ok(()) => Ok(v),
            Err(audit) => Err(E::from(audit)),
        },
        Err(e) => match kms.finish(finished(Some(code_of(&e)))).await {
            Ok(()) => Err(e),
            Err(audit) => Err(E::from(audit)),
        },
    }
}

/// Counts one API request of `dialect` and its latency (the node's `api` metrics, which the
/// console's cluster view draws).
async fn counted(
    State((node, dialect)): State<(Arc<crate::node::Node>, &'static str)>,
    request: Request,
    next: Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    node.metrics().api.observe(dialect, started.elapsed());
    response
}

/// The API router of one node.
pub fn api_router(kms: Arc<Kms>) -> Router {
    let node = kms.node().clone();
    let count = |dialect: &'static str| from_fn_with_state((node.clone(), dialect), counted);
    let health = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(kms.node().clone());
    let legacy = tencent::v2::V2State {
        kms: kms.clone(),
        nonces: Arc::new(tencent::v2::nonce::NonceCache::default()),
    };
    let legacy = Router::new()
        .route(
            tencent::v2::PATH,
            get(tencent::v2::serve).post(tencent::v2::serve),
        )
        .route_layer(count("tencent-v2"))
        .with_state(legacy);
    let huawei = Router::new()
        .route("/v1.0/{project}/kms/{*rest}", any(huawei::serve))
        .route_layer(count("huawei"))
        .with_state(kms.clone());
    Router::new()
        .route("/", get(tencent::serve).post(tencent::serve))
        .route_layer(count("tencent"))
        .with_state(kms)
        .merge(legacy)
        .merge(huawei)
        .merge(console::router())
        .merge(health)
}
