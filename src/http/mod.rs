//! The HTTP layer: the client-facing API listener (one module per API dialect, plus health and
//! metrics) and the internal listener between nodes ([`internal`]).
//!
//! Dialects: [`tencent`] (Tencent Cloud KMS API 3.0). Another dialect is a sibling module that
//! authenticates, parses into the typed requests of `crate::kms` and renders its results; the
//! core does not change.

mod health;
pub mod internal;
pub mod tencent;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;

use crate::kms::Kms;

/// The API router of one node.
pub fn api_router(kms: Arc<Kms>) -> Router {
    let health = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(kms.node().clone());
    Router::new()
        .route("/", get(tencent::serve).post(tencent::serve))
        .with_state(kms)
        .merge(health)
}
