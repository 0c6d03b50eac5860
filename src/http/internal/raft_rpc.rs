//! openraft's three RPCs, served: append entries (which also records leader contact), vote
//! (which first fences the read lease) and snapshot chunks.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{binary, decode_body, Internal};
use crate::raft::types::typ::{AppendEntriesRequest, VoteRequest};
use crate::transport::peer::QUORUM_AGE_HEADER;
use crate::transport::raft_network::decode_snapshot_chunk;

pub(super) async fn append(State(s): State<Internal>, headers: HeaderMap, body: Bytes) -> Response {
    let req: AppendEntriesRequest = match decode_body("append entries", &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    // The leader's own freshness: a leader that lost its quorum still feeds its learners, and
    // their contact with it says nothing about how current their state is.
    let quorum_age = headers
        .get(QUORUM_AGE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let result = s.node.raft().append_entries(req).await;
    if matches!(&result, Ok(openraft::raft::AppendEntriesResponse::Success)) {
        // No header (an older leader binary, or none yet this term): plain contact.
        s.node.leader_contact().note(quorum_age.unwrap_or(0));
    }
    binary(&result)
}

pub(super) async fn vote(State(s): State<Internal>, body: Bytes) -> Response {
    let req: VoteRequest = match decode_body("vote", &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    // Before openraft may grant it: a leader's own vote does not honour the lease its followers
    // keep, so from here on this node's read lease must not be used (see `ReadLease`).
    s.node
        .reads()
        .fence_read_lease(req.vote.leader_id().get_term());
    binary(&s.node.raft().vote(req).await)
}

pub(super) async fn snapshot(State(s): State<Internal>, body: Bytes) -> Response {
    let req = match decode_snapshot_chunk(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    binary(&s.node.raft().install_snapshot(req).await)
}
