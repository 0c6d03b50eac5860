//! openraft's `RaftNetwork`: append entries, vote and snapshot chunks over HTTP to a peer's
//! internal listener, through [`Peers`] (mutual TLS with a client per peer that accepts only that
//! peer's node certificate, or plaintext with the cluster secret); keep-alive connections are
//! reused and every call has a timeout.

// openraft's error types (dictated by its storage and network traits) are large; they travel
// on cold paths only.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{NetworkError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::peer::{paths, Peers, QUORUM_AGE_HEADER, VISIBLE_HEADER};
use crate::codec;
use crate::raft::lease::Visibility;
use crate::raft::types::typ::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotError, InstallSnapshotRequest,
    InstallSnapshotResponse, RPCError, RaftError, VoteRequest, VoteResponse,
};
use crate::raft::types::{Node, NodeId, RaftMetrics, TypeConfig};

/// This node's view of its own Raft metrics, filled in once Raft has started (the network is
/// built before the Raft instance that owns it).
pub type MetricsView = Arc<std::sync::OnceLock<tokio::sync::watch::Receiver<RaftMetrics>>>;

/// Creates per-peer clients for openraft.
#[derive(Clone)]
pub struct Network {
    peers: Peers,
    metrics: MetricsView,
    visibility: Arc<Visibility>,
    /// When each unreachable peer was last reported, so a down peer is logged every 10 s, not at
    /// every heartbeat.
    warned: Arc<Mutex<HashMap<NodeId, Instant>>>,
    /// When a timed-out append to each peer was last reported (every 10 s at most).
    slow_warned: Arc<Mutex<HashMap<NodeId, Instant>>>,
    /// When each peer's refusal of this node's protocol was last reported (every 10 s at most).
    refused_warned: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

impl Network {
    pub fn new(peers: Peers, metrics: MetricsView, visibility: Arc<Visibility>) -> Self {
        Network {
            peers,
            metrics,
            visibility,
            warned: Arc::default(),
            slow_warned: Arc::default(),
            refused_warned: Arc::default(),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            target,
            addr: node.raft_addr.clone(),
            peers: self.peers.clone(),
            metrics: self.metrics.clone(),
            visibility: self.visibility.clone(),
            warned: self.warned.clone(),
            slow_warned: self.slow_warned.clone(),
            refused_warned: self.refused_warned.clone(),
        }
    }
}

/// A connection handle to one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    peers: Peers,
    metrics: MetricsView,
    visibility: Arc<Visibility>,
    warned: Arc<Mutex<HashMap<NodeId, Instant>>>,
    slow_warned: Arc<Mutex<HashMap<NodeId, Instant>>>,
    refused_warned: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

/// Whether a report about `target` is due (none in the last 10 s); if so, notes it as made now.
fn due(reported: &Mutex<HashMap<NodeId, Instant>>, target: NodeId) -> bool {
    let mut reported = reported.lock().unwrap_or_else(|p| p.into_inner());
    let due = reported
        .get(&target)
        .is_none_or(|t| t.elapsed() > Duration::from_secs(10));
    if due {
        reported.insert(target, Instant::now());
    }
    due
}

/// How much sooner than openraft's own limit an append gives up, so that this side sees the
/// timeout (and can say why) before openraft drops the call.
const APPEND_TIMEOUT_MARGIN: Duration = Duration::from_millis(2);

impl PeerClient {
    /// Milliseconds since a quorum last acknowledged this node as leader; `None` while unknown
    /// (not started, or no quorum acknowledgement yet in this term).
    fn quorum_age_ms(&self) -> Option<u64> {
        let m = self.metrics.get()?.borrow();
        if m.current_leader != Some(m.id) {
            return None;
        }
        m.millis_since_quorum_ack
    }

    fn note_unreachable(&self, e: &dyn std::fmt::Display) {
        if due(&self.warned, self.target) {
            tracing::warn!(peer = self.target, addr = %self.addr, error = %e, "peer unreachable; openraft keeps retrying with backoff");
        }
    }

    fn note_reachable(&self) {
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.remove(&self.target).is_some() {
            tracing::info!(peer = self.target, addr = %self.addr, "peer reachable again");
        }
    }

    /// openraft 0.9 gives every append (and heartbeat) `timing.heartbeat-ms` to complete: a peer
    /// whose round trip plus fsync takes longer never receives entries. Said every 10 s at most.
    fn note_append_timeout(&self, limit: Duration) {
        if due(&self.slow_warned, self.target) {
            tracing::warn!(
                peer = self.target,
                addr = %self.addr,
                limit_ms = limit.as_millis() as u64,
                "an append to this peer timed out (openraft allows one append timing.heartbeat-ms): the peer is cut off or stopped, or its round trip plus its fsync takes longer than that; in the last case raise heartbeat-ms and the election timeouts on every node (docs/multi-region.md, \"Timing across regions\")"
            );
        }
    }

    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = encode_rpc(req)?;
        self.send(path, body, timeout, None, None).await
    }

    async fn send<Resp, E>(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
        quorum_age_ms: Option<u64>,
        visible: Option<u64>,
    ) -> Result<Resp, RPCError<E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match self.peers.client_for(self.target) {
            Ok(c) => c,
            Err(e) => {
                self.note_unreachable(&e);
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        };
        let mut request = self
            .peers
            .authorize(client.post(self.peers.url(&self.addr, path)))
            .timeout(timeout)
            .body(body);
        if let Some(age) = quorum_age_ms {
            request = request.header(QUORUM_AGE_HEADER, age);
        }
        if let Some(v) = visible {
            request = request.header(VISIBLE_HEADER, v);
        }
        let resp = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                if e.is_timeout() && path == paths::RAFT_APPEND {
                    self.note_append_timeout(timeout);
                }
                return Err(if e.is_connect() {
                    self.note_unreachable(&super::peer::error_chain(&e));
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                });
            }
        };
        self.note_reachable();
        let status = resp.status();
        match super::version::PeerVersion::from_headers(resp.headers()) {
            Ok(v) => self.peers.versions().note(self.target, v),
            Err(e) => tracing::debug!(peer = self.target, error = %e, "unreadable version headers"),
        }
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            if status == reqwest::StatusCode::UPGRADE_REQUIRED
                && due(&self.refused_warned, self.target)
            {
                tracing::error!(peer = self.target, addr = %self.addr, refusal = %text, "the peer refuses this node's internal protocol");
            }
            let e =
                std::io::Error::other(format!("peer {} answered {status}: {text}", self.target));
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let result: Result<Resp, RaftError<E>> = codec::decode("raft rpc reply", &bytes)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// The fields of a snapshot chunk other than its data.
#[derive(Serialize, serde::Deserialize)]
struct ChunkHeader {
    vote: crate::raft::types::Vote,
    meta: crate::raft::types::SnapshotMeta,
    offset: u64,
    done: bool,
}

/// A snapshot chunk on the wire: u32 LE length ‖ versioned [`ChunkHeader`] ‖ the raw data. The
/// data is not a serde sequence: encoding and decoding a large chunk byte by byte took most of
/// a leader's CPU while it fed a joining node (1M-entry scale run).
fn encode_snapshot_chunk<E: std::error::Error>(
    req: &InstallSnapshotRequest,
) -> Result<Vec<u8>, RPCError<E>> {
    let header = encode_rpc(&ChunkHeader {
        vote: req.vote,
        meta: req.meta.clone(),
        offset: req.offset,
        done: req.done,
    })?;
    let len = u32::try_from(header.len()).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
    let mut out = Vec::with_capacity(4 + header.len() + req.data.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&req.data);
    Ok(out)
}

/// Reads a chunk written by [`encode_snapshot_chunk`].
pub fn decode_snapshot_chunk(bytes: &[u8]) -> Result<InstallSnapshotRequest, codec::CodecError> {
    let (len, rest) = bytes.split_at_checked(4).ok_or(codec::CodecError::Empty)?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let (header, data) = rest
        .split_at_checked(len)
        .ok_or(codec::CodecError::Trailing {
            what: "snapshot chunk (header longer than the request)",
        })?;
    let h: ChunkHeader = codec::decode("snapshot chunk", header)?;
    Ok(InstallSnapshotRequest {
        vote: h.vote,
        meta: h.meta,
        offset: h.offset,
        data: data.to_vec(),
        done: h.done,
    })
}

fn encode_rpc<Req: Serialize, E: std::error::Error>(req: &Req) -> Result<Vec<u8>, RPCError<E>> {
    codec::encode("raft rpc", req).map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RPCError> {
        let age = self.quorum_age_ms();
        let visible = self
            .visibility
            .to_announce(rpc.leader_commit.as_ref().map(|l| l.index));
        // Before the request leaves: the follower handles it later than this.
        let sent = Instant::now();
        let (term, leader) = (rpc.vote.leader_id().term, rpc.vote.leader_id().node_id);
        let committed = rpc.vote.is_committed();
        let body = encode_rpc(&rpc)?;
        let limit = option
            .hard_ttl()
            .saturating_sub(APPEND_TIMEOUT_MARGIN)
            .max(Duration::from_millis(1));
        let answer: Result<AppendEntriesResponse, RPCError> = self
            .send(paths::RAFT_APPEND, body, limit, age, visible)
            .await;
        // Any answer but a higher vote: the follower took this leader's vote first (openraft
        // refreshes its vote time before it compares logs), so it refuses other candidates for
        // `election-max-ms` from then (raft/acks.rs). Only lease grants read this: noted only
        // with follower leases on.
        if committed
            && self.visibility.enabled()
            && answer
                .as_ref()
                .is_ok_and(|a| !matches!(a, AppendEntriesResponse::HigherVote(_)))
        {
            self.visibility.acks.note(self.target, term, leader, sent);
        }
        answer
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse, RPCError<InstallSnapshotError>> {
        let body = encode_snapshot_chunk(&rpc)?;
        self.send(paths::RAFT_SNAPSHOT, body, option.hard_ttl(), None, None)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RPCError> {
        self.call(paths::RAFT_VOTE, &rpc, option.hard_ttl()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_chunks_round_trip_with_raw_data() {
        let req = InstallSnapshotRequest {
            vote: openraft::Vote::new_committed(3, 2),
            meta: Default::default(),
            offset: 4096,
            data: (0..=255u8).cycle().take(10_000).collect(),
            done: true,
        };
        let bytes = encode_snapshot_chunk::<openraft::error::Infallible>(&req).unwrap();
        let back = decode_snapshot_chunk(&bytes).unwrap();
        assert_eq!(back, req);
        assert!(decode_snapshot_chunk(&bytes[..3]).is_err());
        let mut lying = bytes.clone();
        lying[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_snapshot_chunk(&lying).is_err());
    }
}
