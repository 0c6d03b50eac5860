//! openraft's three RPCs, served: append entries (which also records leader contact), vote
//! (which first fences the read lease) and snapshot chunks.

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{binary, decode_body, sender_is, Internal};
use crate::raft::types::typ::{AppendEntriesRequest, VoteRequest};
use crate::tls::PeerIdentity;
use crate::transport::peer::{QUORUM_AGE_HEADER, VISIBLE_HEADER};
use crate::transport::raft_network::decode_snapshot_chunk;

type Identity = Option<Extension<PeerIdentity>>;

pub(super) async fn append(
    State(s): State<Internal>,
    identity: Identity,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: AppendEntriesRequest = match decode_body("append entries", &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Err(r) = sender_is(
        &s.node,
        identity.as_deref(),
        req.vote.leader_id().voted_for(),
    ) {
        return r;
    }
    // The leader's own freshness: a leader that lost its quorum still feeds its learners, and
    // their contact with it says nothing about how current their state is.
    let quorum_age = headers
        .get(QUORUM_AGE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let visible = headers
        .get(VISIBLE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Taken before openraft handles the append (which may wait behind a gated apply): what an
    // authenticated leader with a committed vote declares visible is committed and stays
    // visible whoever leads next.
    if let Some(v) = visible {
        if req.vote.is_committed() && req.leader_commit.is_some_and(|c| v <= c.index) {
            s.node.visibility().announced(v);
        }
    }
    let caught_up = holds_leader_commit(&req);
    let result = s.node.raft().append_entries(req).await;
    let accepted = matches!(&result, Ok(openraft::raft::AppendEntriesResponse::Success));
    if caught_up && accepted {
        // No header (an older leader binary, or none yet this term): plain contact.
        s.node.leader_contact().note(quorum_age.unwrap_or(0));
    }
    binary(&result)
}

/// Whether accepting `req` leaves this node's log holding everything the leader had committed
/// when it sent it. Only then is the append a contact that dates this node's state: a node
/// catching up (after a restart, or far behind) accepts appends that carry only part of the
/// missing log, and its state is older than the append's arrival (found by `jepsen/run
/// --workload stale --nemesis power-all`: a restarted follower claimed 154 ms of lag for a
/// state seconds old).
fn holds_leader_commit(req: &AppendEntriesRequest) -> bool {
    let Some(commit) = req.leader_commit else {
        return true;
    };
    let holds = req
        .entries
        .last()
        .map(|e| e.log_id.index)
        .or(req.prev_log_id.map(|l| l.index));
    holds.is_some_and(|i| i >= commit.index)
}

pub(super) async fn vote(State(s): State<Internal>, identity: Identity, body: Bytes) -> Response {
    let req: VoteRequest = match decode_body("vote", &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Err(r) = sender_is(
        &s.node,
        identity.as_deref(),
        req.vote.leader_id().voted_for(),
    ) {
        return r;
    }
    // A node that still counts a follower read lease it granted does not vote for a candidate
    // of a higher term: the holder may still read, and the new leader would not wait for it
    // (raft/lease.rs). The candidate sees no answer and tries again later.
    // Whatever the term (openraft may already have moved this node to the candidate's term on a
    // heartbeat reply), and serialized with granting: a grant counts either after this vote was
    // decided (it then sees the fence raised below and confirms the term by a round through
    // openraft, which fails if the vote was granted) or before (the vote is refused).
    let _gate = s.node.visibility().vote_gate.lock().await;
    if s.node.visibility().counting(std::time::Instant::now()) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "a follower read lease this node granted is still counted; no vote yet",
        )
            .into_response();
    }
    // Before openraft may grant it: a leader's own vote does not honour the lease its followers
    // keep, so from here on this node's read lease must not be used (see `ReadLease`).
    s.node
        .reads()
        .fence_read_lease(req.vote.leader_id().get_term());
    binary(&s.node.raft().vote(req).await)
}

pub(super) async fn snapshot(
    State(s): State<Internal>,
    identity: Identity,
    body: Bytes,
) -> Response {
    let req = match decode_snapshot_chunk(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    if let Err(r) = sender_is(
        &s.node,
        identity.as_deref(),
        req.vote.leader_id().voted_for(),
    ) {
        return r;
    }
    binary(&s.node.raft().install_snapshot(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::{Entry, LogId, Vote};

    fn log_id(index: u64) -> LogId {
        LogId::new(openraft::CommittedLeaderId::new(1, 1), index)
    }

    fn req(prev: Option<u64>, entries: &[u64], commit: Option<u64>) -> AppendEntriesRequest {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: prev.map(log_id),
            entries: entries
                .iter()
                .map(|&i| Entry {
                    log_id: log_id(i),
                    payload: openraft::EntryPayload::Blank,
                })
                .collect(),
            leader_commit: commit.map(log_id),
        }
    }

    #[test]
    fn only_an_append_that_reaches_the_leader_commit_is_contact() {
        assert!(
            holds_leader_commit(&req(Some(10), &[], Some(10))),
            "heartbeat, caught up"
        );
        assert!(holds_leader_commit(&req(Some(8), &[9, 10], Some(10))));
        assert!(
            !holds_leader_commit(&req(Some(5), &[6, 7], Some(10))),
            "catching up"
        );
        assert!(!holds_leader_commit(&req(None, &[], Some(3))), "empty log");
        assert!(
            holds_leader_commit(&req(None, &[], None)),
            "nothing committed yet"
        );
    }
}
