//! The replicated command: what the leader proposes and every node applies.

use serde::{Deserialize, Serialize};

use super::account::{Account, Credential};
use super::iam::{Identity, IdentityKind, Policy};
use super::key::{KeyOp, KeyRecord};
use super::replica::ReplicaSpec;
use super::RegistryError;

/// A client-chosen id that makes a proposal idempotent: a retried or re-forwarded write carrying
/// the same id is applied once, and the retry gets the first outcome back.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub [u8; 16]);

impl RequestId {
    /// A fresh random id (taken by the node that accepts the request, never inside apply).
    pub fn random() -> Self {
        RequestId(*uuid::Uuid::new_v4().as_bytes())
    }

    /// Parses the textual (UUID) form used in headers and logs.
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s)
            .ok()
            .map(|u| RequestId(*u.as_bytes()))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        uuid::Uuid::from_bytes(self.0).fmt(f)
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// What is proposed to Raft: the command plus everything non-deterministic about it, decided by
/// the proposing node before the proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Idempotency key; duplicates inside the dedup window are not applied again.
    pub request_id: RequestId,
    /// The proposer's wall clock, milliseconds since the Unix epoch. Apply uses this, never a clock.
    pub issued_at_ms: u64,
    pub command: Command,
}

impl Envelope {
    /// Its size in the log (as encoded in an entry), `usize::MAX` if it cannot be encoded.
    pub fn encoded_len(&self) -> usize {
        crate::codec::encode("envelope", self).map_or(usize::MAX, |b| b.len())
    }
}

/// Registry commands. New variants are only ever appended (bincode encodes the variant index).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Creates or replaces one plain record (cluster-level settings and replication probes).
    PutRecord { name: String, value: Vec<u8> },
    /// Creates or replaces many records in one log entry (bulk loads, snapshot tests).
    PutRecords { records: Vec<(String, Vec<u8>)> },
    /// Removes a record; removing an absent record is refused with `RecordNotFound`.
    DeleteRecord { name: String },
    /// Installs the cluster root key, sealed under the unseal key (once per cluster).
    InstallRootKey { sealed: Vec<u8> },
    /// Creates an account.
    CreateAccount { account: Account },
    /// Adds an API credential (secret key already wrapped by the root key).
    CreateCredential { credential: Credential },
    /// Removes an API credential.
    RevokeCredential { secret_id: String },
    /// Creates a key with its first material version (already wrapped), subject to the quota.
    CreateKey { key: Box<KeyRecord>, cmk_limit: u32 },
    /// Applies one lifecycle operation to one or more keys of an account, all or nothing.
    KeyOp {
        region: String,
        uin: u64,
        key_ids: Vec<String>,
        op: KeyOp,
    },
    /// Creates replicas of the primary key `key_id` (in `source_region`) in other regions: same
    /// KeyId, owner and material; alias, description and tags of their own; each subject to the
    /// quota of its region. All or nothing.
    ReplicateKey {
        uin: u64,
        key_id: String,
        source_region: String,
        replicas: Vec<ReplicaSpec>,
        cmk_limit: u32,
    },
    /// Creates a sub-user or role of an account (with no policy attached).
    CreateIdentity { identity: Identity },
    /// Removes a sub-user or role and revokes every credential bound to it.
    DeleteIdentity {
        uin: u64,
        kind: IdentityKind,
        name: String,
    },
    /// Adds an API credential that speaks for a sub-user or role (secret key already wrapped).
    CreateIdentityCredential {
        credential: Credential,
        kind: IdentityKind,
        name: String,
    },
    /// Creates (`replace` false) or replaces (`replace` true) a policy, already parsed.
    PutPolicy { policy: Policy, replace: bool },
    /// Deletes a policy, detaching it from every identity of the account.
    DeletePolicy { uin: u64, name: String },
    /// Attaches (`attach` true) or detaches a policy of the account to or from an identity.
    AttachPolicy {
        uin: u64,
        kind: IdentityKind,
        name: String,
        policy: String,
        attach: bool,
    },
    /// Creates a key on behalf of a cloud product (a role with a `service`): product-managed.
    CreateProductKey {
        key: Box<KeyRecord>,
        cmk_limit: u32,
        product: String,
    },
    /// Records a node's audit-trail chain head.
    AuditCheckpoint {
        checkpoint: super::audit_heads::Checkpoint,
    },
    /// Installs the next root-key version (sealed under the unseal key): root-key rotation. New
    /// values are wrapped under it from then on.
    InstallRootKeyVersion { version: u32, sealed: Vec<u8> },
    /// Re-wraps stored values under the current root-key version, each only if it is still the
    /// value the leader read (compare and set).
    Rewrap {
        items: Vec<super::root_keys::RewrapItem>,
    },
    /// Removes an older root-key version that no stored value uses any more.
    RetireRootKey { version: u32 },
    /// Several writes in one log entry (the leader's write batching, `node/writes.rs`): applied
    /// in order, each with its own request id, timestamp, dedup and outcome, exactly as if each
    /// were an entry of its own at this index. The state machine unpacks it (so that planted
    /// faults see each write); the registry refuses one it is handed directly, and a batch
    /// inside a batch.
    Batch { writes: Vec<Envelope> },
    /// Raises the cluster's feature level (`registry::features`); it never falls. Proposed by
    /// `raftkms cluster upgrade finalize` (and at `cluster init`) once every member reports a
    /// build that knows the level.
    SetFeatureLevel { level: u32 },
    /// Records that a cloud product uses a key for one of its resources (feature level 2).
    BindCloudResource {
        binding: super::cloud_binding::CloudBinding,
    },
    /// Removes such a record (feature level 2).
    UnbindCloudResource {
        binding: super::cloud_binding::CloudBinding,
    },
    /// Creates a hosted data key (already sealed under its CMK), subject to the data key quota
    /// (feature level 2).
    CreateDataKey {
        data_key: Box<super::data_key::DataKeyRecord>,
        limit: u32,
    },
    /// Applies one lifecycle operation to one or more hosted data keys of an account, all or
    /// nothing (feature level 2).
    DataKeyOp {
        region: String,
        uin: u64,
        data_key_ids: Vec<String>,
        op: super::data_key::DataKeyOp,
    },
}

impl Command {
    /// The cluster feature level a command needs: a node of a release that predates it could
    /// not decode it, so it is proposed only once the cluster's level is at least this
    /// (`node::writes`). Every command of the first release needs `features::BASE_LEVEL`; a
    /// command added later names the level that added it. `SetFeatureLevel` itself is the one
    /// exception to the gate: it is proposed (by `node::upgrade`) only once every member has
    /// reported a build that knows the level it raises to.
    pub fn required_level(&self) -> u32 {
        match self {
            Command::SetFeatureLevel { .. }
            | Command::BindCloudResource { .. }
            | Command::UnbindCloudResource { .. }
            | Command::CreateDataKey { .. }
            | Command::DataKeyOp { .. } => 2,
            // So was tagging an existing key.
            Command::KeyOp {
                op: super::key::KeyOp::ModifyTags { .. },
                ..
            } => 2,
            // Post-quantum key usages were added in level 2 (an older node cannot decode them).
            Command::CreateKey { key, .. } | Command::CreateProductKey { key, .. }
                if key.usage.is_post_quantum() =>
            {
                2
            }
            Command::Batch { writes } => writes
                .iter()
                .map(|w| w.command.required_level())
                .max()
                .unwrap_or(super::features::BASE_LEVEL),
            _ => super::features::BASE_LEVEL,
        }
    }
}

/// The deterministic result of applying one log entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The command was applied at this log index.
    Applied { index: u64 },
    /// The command was valid Raft-wise but refused by the registry; nothing changed.
    Rejected(RegistryError),
    /// Blank and membership entries carry no command.
    #[default]
    NoCommand,
    /// The outcomes of a [`Command::Batch`], in the order of its writes. Never stored (the
    /// dedup table remembers each write's own outcome) and never leaves the leader.
    Batch(Vec<Outcome>),
}
