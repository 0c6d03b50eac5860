//! One running node, split by concern: [`Writes`] (propose, forwarding, request ids), [`Reads`]
//! (read gate and lease), [`Membership`], [`Health`] (readiness, status, metrics) and
//! [`Keyring`] (root key and wrapping). [`Node`] owns one of each and the Raft core; the HTTP
//! layer and the KMS core use the parts, not the wiring.

mod backups;
mod batcher;
mod contact;
mod health;
mod keyring;
mod leader;
mod membership;
mod reads;
pub mod restore;
mod upgrade;
mod writes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::SnapshotPolicy;

pub use contact::LeaderContact;
pub use health::Health;
pub use keyring::Keyring;
pub use leader::LeaderView;
pub use membership::Membership;
pub use reads::{LeaseGrant, ReadParts, Reads};
pub use writes::Writes;

use crate::clock::SharedClock;
use crate::config::NodeConfig;
use crate::crypto::root_key::UnsealKey;
use crate::metrics::Metrics;
use crate::raft::error::ClusterError;
use crate::raft::log_store::LogStore;
use crate::raft::snapshot::SnapshotDir;
use crate::raft::state_machine::{AppliedState, StateMachine};
use crate::raft::types::{NodeId, Raft};
use crate::storage::{self, Identity};
use crate::tls::reload::CertStore;
use crate::transport::raft_network::{MetricsView, Network};
use crate::transport::{PeerSecurity, Peers};

/// The internal endpoints of peers (for callers that reach them through [`Node::ask_members`]).
pub use crate::transport::peer::paths as peer_paths;

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
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Config(String),
    #[error("cannot open the audit trail: {0}")]
    Audit(String),
}

/// The unseal key file to use: the configured (or default) one, except that a key found at the
/// old default inside the data directory keeps being used, with a warning to move it out.
fn unseal_key_file(config: &NodeConfig) -> std::path::PathBuf {
    let file = config.unseal_key_file();
    if let Some(legacy) = config.legacy_unseal_key_file() {
        if file.exists() && legacy.exists() {
            tracing::warn!(
                key = %file.display(),
                legacy = %legacy.display(),
                "an unseal key exists both beside and inside the data directory; using the one \
                 beside it: remove the other"
            );
        }
        if !file.exists() && legacy.exists() {
            tracing::warn!(
                key = %legacy.display(),
                "the unseal key is inside the data directory, so a copy of the data directory \
                 carries it: move it out and set kms.unseal-key-file"
            );
            return legacy;
        }
    }
    file
}

/// The node's unseal key: from its key file, or derived from the passphrase given at start. A
/// node whose data directory holds data never makes new unseal material (a new key or new
/// passphrase parameters could not open the root key its data is sealed under).
fn open_unseal_key(
    config: &NodeConfig,
    secret: Option<&crate::crypto::SecretString>,
) -> Result<UnsealKey, StartError> {
    open_unseal_key_with(config, secret, storage::has_database(&config.data_dir))
}

/// The unseal key of a node about to be given existing data (`raftkms restore`): never made anew.
fn open_unseal_key_existing(
    config: &NodeConfig,
    secret: Option<&crate::crypto::SecretString>,
) -> Result<UnsealKey, StartError> {
    open_unseal_key_with(config, secret, true)
}

/// `has_data`: the node's data is sealed under an existing key, so a missing key file (or
/// passphrase parameters, or sealed token key) is an error instead of being created.
fn open_unseal_key_with(
    config: &NodeConfig,
    secret: Option<&crate::crypto::SecretString>,
    has_data: bool,
) -> Result<UnsealKey, StartError> {
    let missing = |what: &str, file: &std::path::Path, setting: &str| {
        StartError::Config(format!(
            "the {what} {} is missing but {} holds (or is to hold) this cluster's data: install \
             it (every node of a cluster has the same one) or point kms.{setting} at it",
            file.display(),
            config.data_dir.display()
        ))
    };
    match config.kms.unseal {
        crate::config::UnsealSource::KeyFile => {
            let key_file = unseal_key_file(config);
            if !key_file.exists() && has_data {
                return Err(missing("unseal key", &key_file, "unseal-key-file"));
            }
            Ok(UnsealKey::load_or_create(&key_file)?)
        }
        crate::config::UnsealSource::Passphrase => {
            let params = config.unseal_kdf_file();
            if !params.exists() && has_data {
                return Err(missing("unseal parameter file", &params, "unseal-kdf-file"));
            }
            let Some(passphrase) = secret else {
                return Err(StartError::Config(
                    "kms.unseal is `passphrase` but no passphrase was given: start with \
                     `raftkms serve --passphrase-fd N`, or at a terminal to be asked"
                        .into(),
                ));
            };
            Ok(UnsealKey::from_passphrase(
                &params,
                passphrase.expose().as_bytes(),
            )?)
        }
        crate::config::UnsealSource::Pkcs11 => {
            let sealed = config.unseal_sealed_file();
            if !sealed.exists() && has_data {
                return Err(missing("sealed unseal key", &sealed, "unseal-sealed-file"));
            }
            let (Some(module), Some(token)) = (&config.kms.pkcs11_module, &config.kms.pkcs11_token)
            else {
                return Err(StartError::Config(
                    "kms.unseal is `pkcs11` but pkcs11-module or pkcs11-token is missing".into(),
                ));
            };
            let Some(pin) = secret else {
                return Err(StartError::Config(
                    "kms.unseal is `pkcs11` but no token PIN was given: start with \
                     `raftkms serve --passphrase-fd N`, or at a terminal to be asked"
                        .into(),
                ));
            };
            Ok(UnsealKey::from_token(
                &sealed,
                &crate::crypto::pkcs11::Token {
                    module,
                    token_label: token,
                    key_label: config
                        .kms
                        .pkcs11_key_label
                        .as_deref()
                        .unwrap_or("raftkms-unseal"),
                    pin: pin.expose(),
                },
            )?)
        }
    }
}

/// A started node: the Raft core and the parts request handlers use.
pub struct Node {
    id: NodeId,
    config: NodeConfig,
    raft: Raft,
    state: AppliedState,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    db: Arc<rocksdb::DB>,
    peers: Peers,
    leader: LeaderView,
    writes: Writes,
    reads: Reads,
    membership: Membership,
    health: Health,
    keyring: Keyring,
    contact: Arc<LeaderContact>,
    visibility: Arc<crate::raft::lease::Visibility>,
    /// One backup at a time: each holds the whole state several times over in memory.
    backups: tokio::sync::Semaphore,
    /// One membership change or feature-level raise at a time (`node::upgrade`).
    changes: tokio::sync::Mutex<()>,
}

impl Node {
    /// Opens the unseal key and storage (the first phase of a start: a foreign or corrupt data
    /// directory is refused here, before any listener is bound).
    /// `unseal_secret`: the passphrase or token PIN of `[kms] unseal = "passphrase" | "pkcs11"`
    /// (dropped once the unseal key is open).
    pub fn open(
        config: NodeConfig,
        unseal_secret: Option<crate::crypto::SecretString>,
    ) -> Result<OpenedStorage, StartError> {
        // TLS material first: a bad certificate, key or CA is a start error before anything opens.
        let tls = match &config.tls {
            Some(t) => Some(NodeTls {
                cert: CertStore::open(&t.cert_file, &t.key_file)?,
                roots: crate::tls::config::roots(&t.ca_file)?,
            }),
            None => None,
        };
        // The data directory before the unseal key: a key file configured inside it must not
        // create it with the default mode first.
        storage::prepare_data_dir(&config.data_dir)?;
        let unseal = open_unseal_key(&config, unseal_secret.as_ref())?;
        drop(unseal_secret);
        let identity = Identity {
            cluster_id: config.cluster_id.clone(),
            node_id: config.node_id,
        };
        let db = storage::open(&config.data_dir, &identity)?;
        let metrics = Arc::new(Metrics::new());
        let mut log_store = LogStore::new(db.clone(), metrics.clone())?;
        let snapshots = SnapshotDir::new(&config.data_dir)?;
        let sm = StateMachine::open(db.clone(), snapshots, metrics.clone())?;
        // Follower read leases gate every apply from the start (docs/architecture.md §6a).
        let holder_lease = Duration::from_millis(config.timing.holder_lease_ms);
        sm.visibility()
            .configure(holder_lease, log_store.commit_marker());
        if !holder_lease.is_zero() {
            log_store.forget_commit_at_start();
        }
        Ok(OpenedStorage {
            config,
            tls,
            unseal,
            db,
            metrics,
            log_store,
            sm,
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The Raft core, for the Raft RPC handlers.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The applied registry.
    pub fn state(&self) -> &AppliedState {
        &self.state
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The node's Prometheus metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A shared handle on the metrics, for tasks that outlive a borrow (the listeners).
    pub fn metrics_handle(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn writes(&self) -> &Writes {
        &self.writes
    }

    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    /// The apply gate of follower read leases, and the leases granted as leader.
    pub fn visibility(&self) -> &crate::raft::lease::Visibility {
        &self.visibility
    }

    /// Follower read leases, run until the task is aborted: a follower renews its lease every
    /// third of the length it uses; the leader sends a heartbeat whenever what its lease holders
    /// have rises, so followers learn at once that more is visible (and apply it).
    pub async fn run_leases(self: Arc<Self>) {
        if self.config.timing.holder_lease_ms == 0 {
            return;
        }
        let renew = {
            let node = self.clone();
            async move {
                // Zero when this node holds no lease (`reads.hold-lease = false`).
                let every = node.reads.holder_lease().length() / 3;
                if every.is_zero() {
                    return;
                }
                // On a fixed period, without waiting for the previous answer: a renewal may take
                // up to half the length (its timeout), and a holder whose round trip to the
                // leader exceeds a third of it would otherwise let its lease lapse between
                // answers. At most two are in flight; aborting this task aborts them.
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut inflight = tokio::task::JoinSet::new();
                loop {
                    tick.tick().await;
                    while inflight.try_join_next().is_some() {}
                    let n = node.clone();
                    inflight.spawn(async move { n.reads.renew_holder_lease().await });
                }
            }
        };
        let announce = {
            let node = self.clone();
            async move {
                let mut rx = node.raft.metrics();
                let mut last = (0, None);
                loop {
                    if rx.changed().await.is_err() {
                        return;
                    }
                    let term = rx.borrow().current_term;
                    if term != last.0 {
                        last = (term, None);
                    }
                    // A heartbeat on every rise of the mark, so followers apply (and their
                    // leased reads answer) promptly. Announcing only at the end of a burst
                    // (appends carry the mark otherwise) made cross-region writes faster but
                    // delayed follower applies enough to hide the `leader-acks-without-holder`
                    // plant from jepsen (1 of 5 runs caught, against 4 of 5): not done.
                    let mark = node.visibility.announce_mark();
                    if mark.is_some() && mark > last.1 {
                        last.1 = mark;
                        let _ = node.raft.trigger().heartbeat().await;
                    }
                }
            }
        };
        tokio::join!(renew, announce);
    }

    /// A backup of the replicated state (`raft/backup.rs`): after a linearizable read barrier,
    /// so every write acknowledged before the call is in it, from a point-in-time view of this
    /// node's applied state, taken while the node goes on applying and serving.
    pub async fn backup(
        &self,
    ) -> Result<(crate::raft::backup::BackupHeader, Vec<u8>), ClusterError> {
        let _one = self.backups.try_acquire().map_err(|_| {
            ClusterError::Backup("another backup is being taken on this node: try again".into())
        })?;
        self.reads
            .read_barrier(crate::config::Consistency::Linearizable)
            .await?;
        // The root-key versions the tag may be made with (the backed-up state's current one is
        // among them unless a rotation finished in between: the backup is then refused).
        let versions: Vec<u32> = self.state.read().registry.root_keys().versions().collect();
        let mut roots = std::collections::BTreeMap::new();
        for v in versions {
            let key = self
                .keyring
                .root_key_version(v)
                .map_err(|e| ClusterError::Seal(e.to_string()))?;
            roots.insert(v, key);
        }
        let db = self.db.clone();
        let origin = crate::raft::backup::Origin {
            cluster_id: self.config.cluster_id.clone(),
            source_node: self.id,
            created_at_ms: self.clock.wall_ms(),
        };
        let taken = tokio::task::spawn_blocking(move || {
            let state = crate::raft::state_machine::point_in_time(&db)?;
            let mac = |v: u32, data: &[u8]| match roots.get(&v) {
                Some(root) => Ok(root.mac(crate::raft::backup::MAC_PURPOSE, data)),
                None => Err(storage::StoreError::CorruptBackup(format!(
                    "root-key version {v} was retired while the backup was taken: try again"
                ))),
            };
            crate::raft::backup::make(origin, &state, &mac)
        })
        .await
        .map_err(|e| ClusterError::Backup(e.to_string()))?;
        taken.map_err(|e| ClusterError::Backup(e.to_string()))
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The record of leader contact, fed by accepted appends.
    pub fn leader_contact(&self) -> &LeaderContact {
        &self.contact
    }

    /// Whether this node leads now.
    pub fn is_leader(&self) -> bool {
        self.leader.is_leader()
    }

    /// Whether `id` is a voter or learner in this node's latest membership.
    pub fn is_member(&self, id: NodeId) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        let member = m
            .membership_config
            .membership()
            .nodes()
            .any(|(n, _)| *n == id);
        member
    }

    /// Calls a binary internal endpoint on every other member of this node's latest membership
    /// at once; each answer (or failure) with the member's id.
    pub async fn ask_members<Req, Resp>(
        &self,
        path: &str,
        req: &Req,
        timeout: std::time::Duration,
    ) -> Vec<(NodeId, Result<Resp, ClusterError>)>
    where
        Req: serde::Serialize + Sync,
        Resp: serde::de::DeserializeOwned,
    {
        let others: Vec<(NodeId, String)> = {
            let m = self.raft.metrics();
            let m = m.borrow();
            m.membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != self.id())
                .map(|(id, n)| (*id, n.raft_addr.clone()))
                .collect()
        };
        let calls = others.iter().map(|(id, addr)| async move {
            (*id, self.peers.call(*id, addr, path, req, timeout).await)
        });
        futures::future::join_all(calls).await
    }

    /// The leader this node knows, with its address.
    pub fn leader(&self) -> Option<(NodeId, crate::raft::types::Node)> {
        self.leader.leader()
    }

    /// The pooled client and credentials for calls to peers.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Whether the node can serve (see [`Health::is_ready`]).
    pub fn is_ready(&self) -> bool {
        self.health.is_ready(&self.keyring)
    }

    /// This node's view of the cluster.
    pub fn status(&self) -> crate::wire::NodeStatus {
        self.health.status(&self.keyring)
    }

    /// Initializes a new cluster with the configured peers as its first members: the voters at
    /// once, then the root key, then any learners once a leader exists (when this node leads;
    /// otherwise they are returned, for the admin caller to add through the leader).
    /// Returns the learners left for the admin caller and the new cluster's feature level.
    pub async fn initialize(&self) -> Result<(Vec<crate::wire::JoinRequest>, u32), ClusterError> {
        self.membership
            .initialize_voters(&self.config.peers)
            .await?;
        self.keyring.ensure_root_key(&self.writes).await?;
        let timeout_ms = self.config.timing.write_timeout_ms * 4;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let pending = self
            .membership
            .add_learners(&self.config.peers, deadline, timeout_ms)
            .await?;
        let level = self.raise_feature_level_at_init().await;
        Ok((pending, level))
    }

    /// Watches the Raft core: keeps the metrics in step, logs leader changes, and resolves with
    /// the reason once the core has stopped (a fatal storage error, for example).
    pub async fn watch_raft(self: Arc<Self>) -> String {
        let mut rx = self.raft.metrics();
        let mut last_leader = None;
        loop {
            let (leader, term, fatal) = {
                let m = rx.borrow_and_update();
                self.health.observe(&m);
                let fatal = m.running_state.as_ref().err().map(|f| f.to_string());
                (m.current_leader, m.current_term, fatal)
            };
            if leader != last_leader {
                tracing::info!(leader = ?leader, term, "leader changed");
                last_leader = leader;
            }
            if let Some(f) = fatal {
                return f;
            }
            if rx.changed().await.is_err() {
                return "the Raft core ended".into();
            }
        }
    }

    /// Stops the Raft core and syncs the WAL.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        if let Err(e) = self.db.flush_wal(true) {
            tracing::warn!(error = %e, "final WAL flush");
        }
    }
}

/// A node's storage, opened but not yet serving.
pub struct OpenedStorage {
    config: NodeConfig,
    tls: Option<NodeTls>,
    unseal: UnsealKey,
    db: Arc<rocksdb::DB>,
    metrics: Arc<Metrics>,
    log_store: LogStore,
    sm: StateMachine,
}

/// This node's certificate (both listeners and its calls to peers) and the cluster CA.
#[derive(Clone)]
pub struct NodeTls {
    pub cert: Arc<CertStore>,
    pub roots: Arc<rustls::RootCertStore>,
}

impl OpenedStorage {
    /// The node's TLS material, when `[tls]` is set.
    pub fn tls(&self) -> Option<NodeTls> {
        self.tls.clone()
    }

    /// Starts the Raft core over the opened storage and builds the node's parts.
    pub async fn start(self, clock: SharedClock) -> Result<Arc<Node>, StartError> {
        let OpenedStorage {
            config,
            tls,
            unseal,
            db,
            metrics,
            log_store,
            sm,
        } = self;
        let committed = log_store.commit_marker();
        let initial_commit = committed.get();
        let state = sm.applied_state();
        let t = &config.timing;
        let security = match (tls, &config.cluster_secret) {
            (Some(t), _) => PeerSecurity::Tls {
                cert: t.cert,
                roots: t.roots,
            },
            (None, Some(secret)) => PeerSecurity::Secret(Arc::new(secret.clone())),
            // Config validation requires one of the two.
            (None, None) => {
                return Err(StartError::Config(
                    "neither [tls] nor cluster-secret is set".into(),
                ))
            }
        };
        let peers = Peers::new(
            config.cluster_id.clone(),
            security,
            Duration::from_millis(t.rpc_timeout_ms),
            // Half the peers' keep-alive idle timeout (the same setting cluster-wide).
            Duration::from_millis(config.limits.header_read_timeout_ms / 2)
                .min(Duration::from_secs(60)),
        )
        .map_err(|e| StartError::Config(e.to_string()))?;
        let raft_metrics = MetricsView::default();
        let visibility = sm.visibility();
        let appended = log_store.append_marker();
        let network = Network::new(peers.clone(), raft_metrics.clone(), visibility.clone());
        let raft = Raft::new(
            config.node_id,
            raft_config(&config)?,
            network,
            log_store,
            sm,
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        // Set once, right after the Raft instance exists; a failed set cannot happen (fresh cell).
        let _ = raft_metrics.set(raft.metrics());
        visibility.start(config.node_id, raft.metrics());

        let leader = LeaderView::new(config.node_id, raft.clone());
        let contact = Arc::new(LeaderContact::new(leader.clone(), clock.clone()));
        let (writes, reads) = io_parts(
            &config,
            &leader,
            &clock,
            ReadParts {
                state: state.clone(),
                committed: committed.clone(),
                appended,
                visibility: visibility.clone(),
                peers: peers.clone(),
                metrics: metrics.clone(),
            },
        );
        let health = Health {
            leader: leader.clone(),
            contact: contact.clone(),
            state: state.clone(),
            committed,
            metrics: metrics.clone(),
            initial_commit,
            default_consistency: config.default_consistency,
            election_max_ms: t.election_max_ms,
            region: config.region.clone(),
        };
        Ok(Arc::new(Node {
            id: config.node_id,
            membership: Membership::new(leader.clone()),
            peers,
            leader,
            keyring: Keyring::new(unseal, state.clone(), clock.clone()),
            config,
            raft,
            state,
            clock,
            metrics,
            db,
            writes,
            reads,
            health,
            contact,
            visibility,
            backups: tokio::sync::Semaphore::new(1),
            changes: tokio::sync::Mutex::new(()),
        }))
    }
}

/// The write path and the read path of a node.
fn io_parts(
    config: &NodeConfig,
    leader: &LeaderView,
    clock: &SharedClock,
    parts: ReadParts,
) -> (Writes, Reads) {
    let t = &config.timing;
    let writes = Writes::new(
        parts.state.clone(),
        leader.clone(),
        parts.peers.clone(),
        parts.metrics.clone(),
        clock.clone(),
        t.write_timeout_ms,
        t.heartbeat_ms,
    );
    // The holder uses half of what the leader counts (the clock-rate margin, raft/lease.rs).
    let holder_lease = if config.reads.hold_lease {
        crate::raft::lease::holder_length(Duration::from_millis(t.holder_lease_ms))
    } else {
        Duration::ZERO
    };
    let reads = Reads::new(
        leader.clone(),
        parts,
        Duration::from_millis(t.read_lease_ms),
        holder_lease,
        t.read_timeout_ms,
    );
    (writes, reads)
}

/// openraft's configuration from the node's timing and snapshot settings.
fn raft_config(config: &NodeConfig) -> Result<Arc<openraft::Config>, StartError> {
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
    Ok(Arc::new(raft_config))
}
