//! `/healthz` (the process answers), `/readyz` (the node can serve) and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::node::Node;

/// Alive: the process answers.
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: a leader is known and everything committed before start is applied.
pub(super) async fn readyz(State(node): State<Arc<Node>>) -> Response {
    if node.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no known leader, no recent contact with a leader or quorum, or still catching up\n",
        )
            .into_response()
    }
}

pub(super) async fn metrics(State(node): State<Arc<Node>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.health().render_metrics(),
    )
        .into_response()
}
