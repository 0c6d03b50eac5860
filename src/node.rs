//! One running node: storage, Raft, the write path (with leader forwarding), the read gate, and
//! the two HTTP listeners, shut down in order.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, SnapshotPolicy};
use tokio::net::TcpListener;

use crate::config::{Consistency, NodeConfig};
use crate::crypto::root_key::UnsealKey;
use crate::crypto::{CryptoError, RootKey};
use crate::metrics::Metrics;
use crate::raft::error::ClusterError;
use crate::raft::log_store::{CommitMarker, LogStore};
use crate::raft::network::{http_client, Network, PeerAuth};
use crate::raft::read_gate::Coalescer;
use crate::raft::read_lease::ReadLease;
use crate::raft::snapshot::SnapshotDir;
use crate::raft::state_machine::{AppliedState, StateMachine};
use crate::raft::types::{self, NodeId, Raft};
use crate::registry::{Command, Envelope, Outcome, RequestId};
use crate::storage::{self, Identity};

mod reads;

/// Start-up failures, each with a message an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] storage::StoreError),
    #[error("invalid Raft timing: {0}")]
    RaftConfig(String),
    #[error("cannot start Raft: {0}")]
    Raft(String),
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("cannot listen on {addr} ({field}): {error}")]
    Bind {
        field: &'static str,
        addr: String,
        error: std::io::Error,
    },
    #[error("the Raft core stopped: {0}; the node exits instead of running without it")]
    RaftStopped(String),
}

/// Where a read was served from, reported with every answer.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ReadPosition {
    pub consistency: Consistency,
    /// Last log index applied locally when the read was served.
    pub applied_index: Option<u64>,
    /// Highest commit index this node knew of.
    pub known_commit_index: Option<u64>,
}

/// Everything a request handler needs.
pub struct RunningNode {
    pub id: NodeId,
    pub config: NodeConfig,
    pub raft: Raft,
    pub state: AppliedState,
    pub committed: Arc<CommitMarker>,
    pub metrics: Arc<Metrics>,
    pub client: reqwest::Client,
    pub auth: PeerAuth,
    gate: Coalescer,
    leader_gate: Coalescer,
    initial_commit: Option<u64>,
    /// When this node last accepted an append (heartbeat) from a leader, in `monotonic_ms()`.
    last_leader_contact: std::sync::atomic::AtomicU64,
    /// The read lease this node holds as leader, if any.
    lease: Arc<ReadLease>,
    unseal: UnsealKey,
    root: std::sync::RwLock<Option<RootKey>>,
}

/// Wall-clock milliseconds since the epoch, taken by the proposing node.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Milliseconds on a process-local monotonic clock, starting at 1 (0 means "never"). Durations
/// such as the leader-contact age must not follow wall-clock steps: a clock stepped back made a
/// cut-off node report 0 ms since leader contact on its stale answers (found by jepsen/).
fn monotonic_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl RunningNode {
    fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.config.timing.write_timeout_ms)
    }

    fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.config.timing.read_timeout_ms)
    }

    /// The leader this node currently knows, with its address.
    pub fn leader(&self) -> Option<(NodeId, types::Node)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// Waits (bounded by `deadline`) until some leader is known.
    async fn wait_for_leader(
        &self,
        deadline: Instant,
    ) -> Result<(NodeId, types::Node), ClusterError> {
        let mut rx = self.raft.metrics();
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
                return Err(ClusterError::NoLeader(self.config.timing.write_timeout_ms));
            }
        }
    }

    /// Wraps a command into an envelope stamped by this node.
    pub fn envelope(&self, request_id: Option<RequestId>, command: Command) -> Envelope {
        Envelope {
            request_id: request_id.unwrap_or_else(RequestId::random),
            issued_at_ms: now_ms(),
            command,
        }
    }

    /// Proposes a write through whichever node leads: locally if this node leads, otherwise
    /// forwarded over the internal listener. Follows one leader change; bounded by the write
    /// timeout. A retry carries the same request id, so it is never applied twice.
    pub async fn propose(&self, env: Envelope) -> Result<Outcome, ClusterError> {
        let deadline = Instant::now() + self.write_timeout();
        let mut followed = false;
        loop {
            let (leader, node) = self.wait_for_leader(deadline).await?;
            let attempt = if leader == self.id {
                self.propose_local(env.clone(), deadline).await
            } else {
                self.metrics.forwarded_writes.inc();
                self.forward_write(&node, &env, deadline).await
            };
            match attempt {
                Ok(outcome) => return Ok(outcome),
                Err(e @ (ClusterError::NotLeader { .. } | ClusterError::Forward(_))) => {
                    if followed {
                        return Err(if matches!(e, ClusterError::NotLeader { .. }) {
                            ClusterError::LeaderChanged
                        } else {
                            e
                        });
                    }
                    followed = true;
                    if matches!(e, ClusterError::Forward(_)) {
                        self.metrics.forward_failures.inc();
                    }
                    // Give the cluster a moment to settle on (or tell us about) the new leader.
                    let pause = Duration::from_millis(self.config.timing.heartbeat_ms);
                    tokio::time::sleep(
                        pause.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Proposes on this node, which must be the leader.
    pub async fn propose_local(
        &self,
        env: Envelope,
        deadline: Instant,
    ) -> Result<Outcome, ClusterError> {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.raft.client_write(env)).await {
            Err(_) => Err(ClusterError::WriteTimeout(
                self.config.timing.write_timeout_ms,
            )),
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(ClusterError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(ClusterError::Membership(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(f))) => Err(ClusterError::Stopped(f.to_string())),
        }
    }

    async fn forward_write(
        &self,
        leader: &types::Node,
        env: &Envelope,
        deadline: Instant,
    ) -> Result<Outcome, ClusterError> {
        let left = deadline.saturating_duration_since(Instant::now());
        #[cfg(feature = "planted-bugs")]
        if std::env::var("RAFTKMS_PLANT").is_ok_and(|v| v == "forwarded-write-applied-twice") {
            // PLANTED BUG (jepsen/README.md): the forwarded write is delivered once more 300 ms
            // later (a retry racing the first reply); with the dedup bypass it applies twice.
            let (client, auth, addr, env) = (
                self.client.clone(),
                self.auth.clone(),
                leader.raft_addr.clone(),
                env.clone(),
            );
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _: Result<Result<Outcome, ClusterError>, ClusterError> =
                    crate::raft::service::call_internal(
                        &client,
                        &auth,
                        &addr,
                        "/internal/write",
                        &env,
                        Duration::from_secs(5),
                    )
                    .await;
            });
        }
        crate::raft::service::call_internal(
            &self.client,
            &self.auth,
            &leader.raft_addr,
            "/internal/write",
            env,
            left,
        )
        .await?
    }

    /// The cluster root key, unsealed with this node's unseal key on first use and cached.
    pub fn root_key(&self) -> Result<RootKey, CryptoError> {
        if let Some(k) = self.root.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(k.clone());
        }
        let sealed = self
            .state
            .read()
            .registry
            .accounts()
            .sealed_root()
            .map(<[u8]>::to_vec);
        let key = self.unseal.unseal(&sealed.ok_or(CryptoError::NoRootKey)?)?;
        *self.root.write().unwrap_or_else(|p| p.into_inner()) = Some(key.clone());
        Ok(key)
    }

    /// Generates fresh material for `version` of a key and wraps it under the root key.
    pub fn new_material(
        &self,
        algorithm: crate::crypto::SymmetricAlgorithm,
        key_id: &str,
        version: u32,
        uin: u64,
    ) -> Result<crate::registry::key::MaterialVersion, CryptoError> {
        let material = crate::crypto::Secret::random(algorithm.key_len());
        let aad = crate::registry::key::material_aad(key_id, version, uin);
        let wrapped = self.root_key()?.wrap(&aad, material.expose())?;
        Ok(crate::registry::key::MaterialVersion {
            version,
            created_at: now_ms() / 1000,
            wrapped,
        })
    }

    /// Generates an asymmetric key pair; returns the wrapped private key (as material version 1)
    /// and the public key (SubjectPublicKeyInfo DER). Blocking: RSA generation takes a while.
    pub fn new_key_pair(
        &self,
        spec: crate::crypto::asymmetric::AsymmetricSpec,
        key_id: &str,
        uin: u64,
    ) -> Result<(crate::registry::key::MaterialVersion, Vec<u8>), CryptoError> {
        let pair = crate::crypto::asymmetric::generate(spec)?;
        let aad = crate::registry::key::material_aad(key_id, 1, uin);
        let wrapped = self.root_key()?.wrap(&aad, pair.private_pkcs8.expose())?;
        let material = crate::registry::key::MaterialVersion {
            version: 1,
            created_at: now_ms() / 1000,
            wrapped,
        };
        Ok((material, pair.public_spki))
    }

    /// Creates the cluster root key if the registry has none yet (idempotent).
    pub async fn ensure_root_key(&self) -> Result<(), ClusterError> {
        if self
            .state
            .read()
            .registry
            .accounts()
            .sealed_root()
            .is_some()
        {
            return Ok(());
        }
        let sealed = self
            .unseal
            .seal(&RootKey::generate())
            .map_err(|e| ClusterError::Stopped(e.to_string()))?;
        match self
            .propose(self.envelope(None, Command::InstallRootKey { sealed }))
            .await?
        {
            Outcome::Applied { .. }
            | Outcome::Rejected(crate::registry::RegistryError::RootKeyAlreadyInstalled) => Ok(()),
            other => Err(ClusterError::Stopped(format!(
                "installing the root key: {other:?}"
            ))),
        }
    }

    /// Records an accepted append (or heartbeat) from a leader that a quorum acknowledged
    /// `quorum_age_ms` ago: the contact is dated back to that acknowledgement. It never moves
    /// backwards (appends on parallel connections may arrive out of order).
    pub fn note_leader_contact(&self, quorum_age_ms: u64) {
        let at = monotonic_ms().saturating_sub(quorum_age_ms).max(1);
        self.last_leader_contact
            .fetch_max(at, std::sync::atomic::Ordering::Relaxed);
    }

    /// Milliseconds since this node last heard from a leader: for the leader, since a quorum
    /// last acknowledged it; for a follower, since the last append it accepted plus how long the
    /// sending leader had then gone without a quorum acknowledgement. `None` = never.
    pub fn millis_since_leader_contact(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow();
        if m.current_leader == Some(self.id) {
            return m.millis_since_quorum_ack;
        }
        match self
            .last_leader_contact
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            0 => None,
            t => Some(monotonic_ms().saturating_sub(t)),
        }
    }

    /// Whether the node can serve its default consistency: it knows a leader it has heard from
    /// recently (for linearizable service: within three maximum election timeouts; a leader cut
    /// off from its quorum stops being ready), has applied what was committed when it started,
    /// and can open the root key.
    pub fn is_ready(&self) -> bool {
        let bound = 3 * self.config.timing.election_max_ms;
        let in_contact = self.config.default_consistency == Consistency::Stale
            || self
                .millis_since_leader_contact()
                .is_some_and(|ms| ms <= bound);
        let applied_enough = match self.initial_commit {
            None => true,
            Some(c) => self.state.applied_index().is_some_and(|a| a >= c),
        };
        // A node whose unseal key cannot open the cluster root key cannot serve crypto.
        let has_root = self
            .state
            .read()
            .registry
            .accounts()
            .sealed_root()
            .is_some();
        let root_ok = !has_root || self.root_key().is_ok();
        self.leader().is_some() && in_contact && applied_enough && root_ok
    }

    /// Initializes a new cluster with the configured peers as its first members: the voters at
    /// once, then any learners once a leader exists.
    pub async fn initialize(&self) -> Result<(), ClusterError> {
        if self.config.peers.is_empty() {
            return Err(ClusterError::BadRequest(
                "this node's config lists no peers to initialize with".into(),
            ));
        }
        let info = |p: &crate::config::PeerConfig| types::Node {
            raft_addr: p.raft_addr.clone(),
            api_addr: p.api_addr.clone(),
            region: p.region.clone(),
        };
        let voters: std::collections::BTreeMap<NodeId, types::Node> = self
            .config
            .peers
            .iter()
            .filter(|p| p.voter)
            .map(|p| (p.id, info(p)))
            .collect();
        match self.raft.initialize(voters).await {
            Ok(()) => {}
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {
                return Err(ClusterError::AlreadyInitialized)
            }
            Err(e) => return Err(ClusterError::Membership(e.to_string())),
        }
        self.ensure_root_key().await?;
        let learners: Vec<_> = self.config.peers.iter().filter(|p| !p.voter).collect();
        if learners.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.write_timeout() * 4;
        for p in learners {
            let (leader, node) = self.wait_for_leader(deadline).await?;
            if leader == self.id {
                self.join(p.id, info(p), false).await?;
            } else {
                let req = crate::raft::service::JoinRequest {
                    id: p.id,
                    raft_addr: p.raft_addr.clone(),
                    api_addr: p.api_addr.clone(),
                    region: p.region.clone(),
                    voter: false,
                };
                let resp = self
                    .auth
                    .apply(
                        self.client
                            .post(format!("http://{}/admin/join", node.raft_addr)),
                    )
                    .timeout(Duration::from_secs(300))
                    .json(&req)
                    .send()
                    .await
                    .map_err(|e| ClusterError::Forward(e.to_string()))?;
                if !resp.status().is_success() {
                    let text = resp.text().await.unwrap_or_default();
                    return Err(ClusterError::Membership(format!(
                        "adding learner {}: {text}",
                        p.id
                    )));
                }
            }
        }
        Ok(())
    }

    /// Adds a node as a learner, waits until it has replicated everything the leader had when
    /// it was added (through a snapshot if the log was compacted), then (for voters) promotes it.
    pub async fn join(
        &self,
        id: NodeId,
        node: types::Node,
        voter: bool,
    ) -> Result<(), ClusterError> {
        let added = self
            .raft
            .add_learner(id, node, false)
            .await
            .map_err(membership_err)?;
        // openraft's own "blocking" add considers a learner caught up once it lags by less than
        // `replication_lag_threshold` entries, which can be before it has received anything.
        // Promotion must wait for real data, so wait until it has matched the add itself.
        let target = added.log_id.index;
        let mut rx = self.raft.metrics();
        let mut last_report = Instant::now();
        loop {
            let matched = {
                let m = rx.borrow_and_update();
                if m.current_leader != Some(self.id) {
                    return Err(ClusterError::NotLeader {
                        leader: m.current_leader,
                    });
                }
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned())
                    .flatten()
                    .map(|l| l.index)
            };
            if matched.is_some_and(|i| i >= target) {
                break;
            }
            if last_report.elapsed() > Duration::from_secs(5) {
                tracing::info!(node = id, matched = ?matched, target, "waiting for the new node to catch up");
                last_report = Instant::now();
            }
            // Wake on every metrics change; re-check at least every second.
            let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
        }
        tracing::info!(node = id, "new node has caught up");
        if voter {
            let ids = std::collections::BTreeSet::from([id]);
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(ids), false)
                .await
                .map_err(membership_err)?;
        }
        Ok(())
    }

    /// Removes a voter or learner from the cluster.
    pub async fn remove(&self, id: NodeId) -> Result<(), ClusterError> {
        let is_voter = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let is_voter = m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == id);
            is_voter
        };
        let ids = std::collections::BTreeSet::from([id]);
        let change = if is_voter {
            ChangeMembers::RemoveVoters(ids)
        } else {
            ChangeMembers::RemoveNodes(ids)
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(membership_err)?;
        Ok(())
    }
}

fn membership_err<E: std::fmt::Display>(e: RaftError<NodeId, E>) -> ClusterError {
    match e {
        RaftError::Fatal(f) => ClusterError::Stopped(f.to_string()),
        RaftError::APIError(e) => {
            let text = e.to_string();
            if text.contains("forward") {
                ClusterError::NotLeader { leader: None }
            } else {
                ClusterError::Membership(text)
            }
        }
    }
}

/// Opens storage, starts Raft and both listeners, and runs until `shutdown` resolves.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let unseal = UnsealKey::load_or_create(&config.unseal_key_file())?;
    let identity = Identity {
        cluster_id: config.cluster_id.clone(),
        node_id: config.node_id,
    };
    let db = storage::open(&config.data_dir, &identity)?;
    let metrics = Arc::new(Metrics::new());
    let log_store = LogStore::new(db.clone(), metrics.clone())?;
    let committed = log_store.commit_marker();
    let initial_commit = committed.get();
    let snapshots = SnapshotDir::new(&config.data_dir)?;
    let sm = StateMachine::open(db.clone(), snapshots, metrics.clone())?;
    let state = sm.applied_state();

    let t = &config.timing;
    let raft_config = openraft::Config {
        cluster_name: config.cluster_id.clone(),
        heartbeat_interval: t.heartbeat_ms,
        election_timeout_min: t.election_min_ms,
        election_timeout_max: t.election_max_ms,
        // Per snapshot chunk, and the last one waits for the install: at a million entries that is
        // seconds of verifying and writing on the receiver.
        install_snapshot_timeout: t.rpc_timeout_ms.max(30_000),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot.logs_since_last),
        max_in_snapshot_log_to_keep: config.snapshot.max_logs_to_keep,
        snapshot_max_chunk_size: config.snapshot.chunk_bytes,
        ..Default::default()
    }
    .validate()
    .map_err(|e| StartError::RaftConfig(e.to_string()))?;

    // Bind before starting Raft so a busy port is reported at once and nothing half-starts.
    let api_listener = bind("api-listen", &config.api_listen).await?;
    let raft_listener = bind("raft-listen", &config.raft_listen).await?;

    let client = http_client(Duration::from_millis(t.rpc_timeout_ms));
    let auth = PeerAuth::new(config.cluster_id.clone(), config.cluster_secret.clone());
    let raft_metrics = crate::raft::network::MetricsView::default();
    let network = Network::new(client.clone(), auth.clone(), raft_metrics.clone());
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config),
        network,
        log_store,
        sm,
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;
    // Set once, right after the Raft instance exists; a failed set cannot happen (fresh cell).
    let _ = raft_metrics.set(raft.metrics());

    let node = Arc::new(RunningNode {
        id: config.node_id,
        config: config.clone(),
        raft: raft.clone(),
        state,
        committed,
        metrics: metrics.clone(),
        client,
        auth,
        gate: Coalescer::default(),
        leader_gate: Coalescer::default(),
        initial_commit,
        last_leader_contact: std::sync::atomic::AtomicU64::new(0),
        lease: Arc::new(ReadLease::new(Duration::from_millis(
            config.timing.read_lease_ms,
        ))),
        unseal,
        root: std::sync::RwLock::new(None),
    });
    let scheduler = tokio::spawn(crate::scheduler::run(node.clone()));

    // Keep the Prometheus gauges in step with openraft's metrics, and notice a fatal stop of the
    // Raft core (a storage error, for example): the node then exits rather than keep a process
    // running that can never serve again.
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel::<String>();
    let watcher = {
        let node = node.clone();
        tokio::spawn(async move {
            let mut rx = node.raft.metrics();
            let mut last_leader = None;
            let mut fatal_tx = Some(fatal_tx);
            loop {
                let (leader, term, fatal) = {
                    let m = rx.borrow_and_update();
                    node.metrics.observe_raft(&m, node.committed.get());
                    let fatal = m.running_state.as_ref().err().map(|f| f.to_string());
                    (m.current_leader, m.current_term, fatal)
                };
                if leader != last_leader {
                    tracing::info!(leader = ?leader, term, "leader changed");
                    last_leader = leader;
                }
                if let Some(f) = fatal {
                    if let Some(tx) = fatal_tx.take() {
                        let _ = tx.send(f);
                    }
                    break;
                }
                if rx.changed().await.is_err() {
                    if let Some(tx) = fatal_tx.take() {
                        let _ = tx.send("the Raft core ended".into());
                    }
                    break;
                }
            }
        })
    };

    tracing::info!(
        api = %config.api_listen,
        raft = %config.raft_listen,
        data_dir = %config.data_dir.display(),
        "node started"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let api = axum::serve(api_listener, crate::api::router(node.clone()))
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let internal = axum::serve(raft_listener, crate::raft::service::router(node.clone()))
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let api_task = tokio::spawn(async move { api.await });
    let internal_task = tokio::spawn(async move { internal.await });

    let fatal = tokio::select! {
        _ = shutdown => None,
        f = fatal_rx => f.ok(),
    };
    match &fatal {
        Some(f) => tracing::error!(error = %f, "the Raft core stopped; shutting down"),
        None => tracing::info!("shutting down: draining listeners"),
    }
    let _ = stop_tx.send(true);
    // Bounded drain: a stuck connection must not keep the node from stopping.
    let drain = async {
        let _ = api_task.await;
        let _ = internal_task.await;
    };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        tracing::warn!("listeners did not drain within 5 s; stopping anyway");
    }
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    watcher.abort();
    scheduler.abort();
    if let Err(e) = db.flush_wal(true) {
        tracing::warn!(error = %e, "final WAL flush");
    }
    tracing::info!("stopped");
    match fatal {
        Some(f) => Err(StartError::RaftStopped(f)),
        None => Ok(()),
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
