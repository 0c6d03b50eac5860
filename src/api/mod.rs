//! The client-facing listener. Today: health, readiness and metrics; the Tencent Cloud KMS API
//! (`POST /`) is mounted here too.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::node::RunningNode;

type Node = Arc<RunningNode>;

/// The API router of one node.
pub fn router(node: Node) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(node)
}

/// Alive: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: a leader is known and everything committed before start is applied.
async fn readyz(State(node): State<Node>) -> Response {
    if node.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no known leader or still catching up\n",
        )
            .into_response()
    }
}

async fn metrics(State(node): State<Node>) -> Response {
    {
        let m = node.raft.metrics();
        let m = m.borrow();
        node.metrics.observe_raft(&m, node.committed.get());
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics.render(),
    )
        .into_response()
}
