//! Requests between nodes of the cluster: a follower's forwarded write, and a follower's request
//! for a read index.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;

use super::{binary, decode_body, Internal};
use crate::registry::Envelope;

pub(super) async fn forwarded_write(State(s): State<Internal>, body: Bytes) -> Response {
    let env: Envelope = match decode_body("forwarded write", &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    binary(&s.node.writes().accept_forwarded(env).await)
}

pub(super) async fn read_index(State(s): State<Internal>) -> Response {
    binary(&s.node.reads().serve_read_index().await)
}
