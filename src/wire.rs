//! The JSON and header vocabulary shared by the server, the CLI and the clients: the admin
//! endpoints' request and reply bodies, and the `X-Raftkms-*` headers. Plain data, no behaviour.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::registry::iam::IdentityKind;

use crate::config::Consistency;
use crate::crypto::SecretString;
use crate::raft::types::{self, NodeId};
use crate::registry::Outcome;

/// Header that picks a read's consistency (`linearizable` or `stale`).
pub const CONSISTENCY_HEADER: &str = "x-raftkms-consistency";
/// Header carrying a caller-chosen idempotency id (a UUID) for writes.
pub const REQUEST_ID_HEADER: &str = "x-raftkms-request-id";
/// Headers of a stale answer: how far behind it may be.
pub const APPLIED_INDEX_HEADER: &str = "x-raftkms-applied-index";
pub const COMMIT_INDEX_HEADER: &str = "x-raftkms-commit-index";
pub const LEADER_CONTACT_HEADER: &str = "x-raftkms-leader-contact-ms";
/// Header of a backup's answer: the last log index the backup holds.
pub const BACKUP_INDEX_HEADER: &str = "x-raftkms-backup-index";

/// Admin endpoint paths on the internal listener.
pub mod paths {
    pub const INIT: &str = "/admin/init";
    pub const JOIN: &str = "/admin/join";
    pub const REMOVE: &str = "/admin/remove";
    pub const STATUS: &str = "/admin/status";
    pub const DIGEST: &str = "/admin/digest";
    pub const BACKUP: &str = "/admin/backup";
    pub const RECORDS: &str = "/admin/records";
    pub const ACCOUNTS: &str = "/admin/accounts";
    pub const CREDENTIALS: &str = "/admin/credentials";
    pub const ROOT_KEY: &str = "/admin/root-key";
    pub const ROOT_KEY_ROTATE: &str = "/admin/root-key/rotate";
    pub const ROOT_KEY_RETIRE: &str = "/admin/root-key/retire";
    pub const UPGRADE: &str = "/admin/upgrade";
    pub const UPGRADE_FINALIZE: &str = "/admin/upgrade/finalize";
}

/// Where a read was served from, reported with every answer.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReadPosition {
    pub consistency: Consistency,
    /// Last log index applied locally when the read was served.
    pub applied_index: Option<u64>,
    /// Highest commit index this node knew of.
    pub known_commit_index: Option<u64>,
}

/// JSON error body of the admin endpoints.
#[derive(Debug, Serialize, Deserialize)]
pub struct AdminError {
    pub error: String,
    pub retryable: bool,
    /// On `421 Misdirected Request`: the internal address of the leader, where the admin client
    /// sends the request again (membership changes run on the leader).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

/// Body of a successful `POST /admin/init`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InitReply {
    pub initialized: bool,
    /// Configured learners this node could not add because another node leads: the admin
    /// client adds them through the leader.
    #[serde(default)]
    pub pending_learners: Vec<JoinRequest>,
    /// The new cluster's feature level (1 when a member did not say which release it runs:
    /// `raftkms cluster upgrade finalize` raises it later).
    #[serde(default)]
    pub feature_level: Option<u32>,
}

/// Body of `POST /admin/join`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub id: NodeId,
    pub raft_addr: String,
    pub api_addr: String,
    pub region: String,
    #[serde(default = "yes")]
    pub voter: bool,
}

fn yes() -> bool {
    true
}

/// Body of `POST /admin/remove`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemoveRequest {
    pub id: NodeId,
}

/// One node's view of the cluster, as `GET /admin/status` returns it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub region: String,
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub nodes: BTreeMap<NodeId, types::Node>,
    pub ready: bool,
    pub millis_since_quorum_ack: Option<u64>,
}

/// Applied position and state digest, for convergence checks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DigestReply {
    pub applied_index: Option<u64>,
    pub digest: String,
    pub records: usize,
}

/// Reply to a record write.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriteReply {
    pub outcome: Outcome,
}

/// Body of `POST /admin/records`: many UTF-8 records in one command.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PutManyRequest {
    pub records: BTreeMap<String, String>,
}

/// Reply to a record read: the value (UTF-8, lossy) and where it was read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadReply {
    pub name: String,
    pub value: Option<String>,
    pub position: ReadPosition,
}

/// Body of `POST /admin/accounts`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateAccountRequest {
    pub name: String,
}

/// Body of `POST /admin/credentials`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateCredentialRequest {
    pub uin: u64,
}

/// A new credential: the only time the secret key is shown.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewCredential {
    pub uin: u64,
    pub secret_id: String,
    pub secret_key: SecretString,
}

/// A credential as listed (no secret).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CredentialInfo {
    pub uin: u64,
    pub secret_id: String,
    pub created_at: u64,
    /// Who it speaks for: `root`, `user/<name>` or `role/<name>`.
    #[serde(default)]
    pub principal: String,
}

/// Body of `POST /admin/accounts/{uin}/identities`: a new sub-user or role.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateIdentityRequest {
    pub kind: IdentityKind,
    pub name: String,
    /// For a role that a cloud product acts as: the product's name.
    #[serde(default)]
    pub service: Option<String>,
}

/// Body of `POST /admin/accounts/{uin}/policies` (create) and `PUT …/policies/{name}` (replace;
/// `name` is then taken from the path).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyRequest {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The CAM policy document (JSON text, version 2.0).
    pub document: String,
}

/// A policy as shown to operators.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyInfo {
    pub name: String,
    pub description: String,
    pub document: String,
    pub created_at: u64,
    pub updated_at: u64,
    /// `user/<name>` and `role/<name>` it is attached to.
    pub attached_to: Vec<String>,
}

/// A checkpointed audit chain head, as `GET /admin/audit/checkpoints` lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditCheckpointInfo {
    pub node_id: u64,
    pub seq: u64,
    /// The record's hash, hex.
    pub hash: String,
    pub at_ms: u64,
}

/// Body of `POST /admin/accounts/{uin}/attachments`: attach or detach a policy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttachRequest {
    pub kind: IdentityKind,
    pub name: String,
    pub policy: String,
    pub attach: bool,
}

/// `GET /admin/root-key`: the installed root-key versions and what each still protects.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RootKeyStatus {
    /// The version new values are wrapped under (0: no root key yet).
    pub current: u32,
    /// Every installed version, oldest first.
    pub versions: Vec<RootKeyVersionInfo>,
    /// Stored values still wrapped under an older version (the re-wrap's work left).
    pub pending: u64,
}

/// One installed root-key version.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RootKeyVersionInfo {
    pub version: u32,
    /// Stored values (key material, import keys, credentials' secret keys) wrapped under it.
    pub values: u64,
}

/// Body of `POST /admin/root-key/rotate`. With `version`, the call is idempotent: it installs
/// `version` if the current one is `version - 1`, and answers the status unchanged if `version`
/// is already installed (a retried call whose first answer was lost).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RotateRootKeyRequest {
    #[serde(default)]
    pub version: Option<u32>,
}

/// Body of `POST /admin/root-key/retire`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RetireRootKeyRequest {
    pub version: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_credential_never_shows_its_secret_in_debug() {
        let c = NewCredential {
            uin: 7,
            secret_id: "AKIDx".into(),
            secret_key: SecretString::from("very-secret-key"),
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("AKIDx") && !shown.contains("very-secret-key"),
            "{shown}"
        );
    }
}

/// `GET /admin/upgrade` (answered by the leader): the cluster's feature level and what each
/// member last reported about its build.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpgradeStatus {
    pub cluster_feature_level: u32,
    pub leader: NodeId,
    pub members: Vec<MemberVersion>,
}

/// One member's build, as it last reported it (`None`: it has not answered this leader).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberVersion {
    pub id: NodeId,
    pub voter: bool,
    pub release: Option<String>,
    pub protocol: Option<u32>,
    /// The highest cluster feature level its build knows.
    pub features: Option<u32>,
    /// How long ago it last answered (0 for the leader itself).
    pub seen_ms_ago: Option<u64>,
}

/// Body of `POST /admin/upgrade/finalize`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FinalizeRequest {
    /// The level to raise to; default the highest the leader's build knows.
    #[serde(default)]
    pub level: Option<u32>,
}

/// Reply to `POST /admin/upgrade/finalize`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinalizeReply {
    pub previous_level: u32,
    pub feature_level: u32,
}

/// Names of the registry's plain records that the console's views read (`kms::cluster`), written
/// by the admin tools (`raftkms account operator`, `raftkms drill`).
pub mod records {
    /// Prefix of the records naming operator accounts (`console.operator.<uin>`).
    pub const OPERATOR_PREFIX: &str = "console.operator.";
    /// Prefix of the records holding DR drill reports (`drill.<started-at-ms, 13 digits>`).
    pub const DRILL_PREFIX: &str = "drill.";
    /// Version of a stored drill report (`{"v": 1, "report": …}`).
    pub const DRILL_REPORT_VERSION: u32 = 1;

    /// The record naming account `uin` an operator.
    pub fn operator(uin: u64) -> String {
        format!("{OPERATOR_PREFIX}{uin}")
    }
}
