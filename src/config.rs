//! Node configuration, read from TOML. Every field is kebab-case; unknown fields are refused so a
//! typo is named at start instead of silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::crypto::SecretString;

use serde::{Deserialize, Serialize};

/// A configuration problem, naming the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: field `{field}`: {message}")]
    Field { field: String, message: String },
}

fn field(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// One member of the cluster, as listed under `[[peers]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PeerConfig {
    /// Raft node id, unique in the cluster, > 0.
    pub id: u64,
    /// Address other nodes use for Raft RPC and forwarding (host:port).
    pub raft_addr: String,
    /// Address clients use for the KMS API (host:port).
    pub api_addr: String,
    /// Region the node serves.
    pub region: String,
    /// Voters take part in elections and quorums; learners only replicate. Default true.
    #[serde(default = "default_true")]
    pub voter: bool,
}

fn default_true() -> bool {
    true
}

/// Raft and request timing, in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct TimingConfig {
    /// Leader heartbeat interval. Default 100.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout. Default 300.
    pub election_min_ms: u64,
    /// Upper bound of the randomized election timeout; also the leader lease during which
    /// followers refuse to vote for another candidate. Default 450 (with the 300 minimum, a
    /// killed leader is replaced within about 0.75-0.9 s; read-lease-ms must stay below it).
    pub election_max_ms: u64,
    /// How long a write may wait for a leader and a commit before failing. Default 5000.
    pub write_timeout_ms: u64,
    /// How long a linearizable read may wait for its read index. Default 3000.
    pub read_timeout_ms: u64,
    /// Timeout of internal calls between nodes that set no limit of their own.
    /// openraft 0.9 bounds an append by `heartbeat-ms` and a vote by `election-min-ms`, whatever
    /// this says (docs/multi-region.md, "Timing across regions"). Default 1000.
    pub rpc_timeout_ms: u64,
    /// Read lease: for this long after a quorum confirmed its leadership (measured from before
    /// the confirmation round started), the leader serves linearizable reads, its own and its
    /// followers' read-index requests, without another round. Safe because followers refuse
    /// to vote for `election-max-ms` after the leader's last append; must stay below it, and
    /// the gap is the margin for clock-rate differences between nodes. 0 = a round per batch
    /// of reads. Default 250.
    pub read_lease_ms: u64,
    /// Follower read leases (docs/architecture.md §6a): the leader grants each node that asks
    /// (`reads.hold-lease`) a lease and counts it for this long; a write is acknowledged only
    /// once every holder the leader counts has it in its log, so an unreachable holder stalls
    /// writes for at most this long. The holder serves linearizable reads from its own state for
    /// half of it, counted from when it sent its request (the other half is the margin for
    /// clock rates), and renews every sixth of it. Must stay below election-max-ms, like the
    /// read lease, and be the same on every node. 0 = off (reads on followers ask the leader).
    /// Default 0.
    pub holder_lease_ms: u64,
}

impl Default for TimingConfig {
    fn default() -> Self {
        TimingConfig {
            heartbeat_ms: 100,
            election_min_ms: 300,
            election_max_ms: 450,
            write_timeout_ms: 5000,
            read_timeout_ms: 3000,
            rpc_timeout_ms: 1000,
            read_lease_ms: 250,
            holder_lease_ms: 0,
        }
    }
}

impl TimingConfig {
    /// Heartbeat < election-min < election-max; the read lease below election-max; timeouts set.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_ms == 0 {
            return Err(field("timing.heartbeat-ms", "must be greater than 0"));
        }
        if self.election_min_ms <= self.heartbeat_ms {
            return Err(field(
                "timing.election-min-ms",
                "must be greater than heartbeat-ms",
            ));
        }
        if self.election_max_ms <= self.election_min_ms {
            return Err(field(
                "timing.election-max-ms",
                "must be greater than election-min-ms",
            ));
        }
        if self.read_lease_ms >= self.election_max_ms {
            return Err(field(
                "timing.read-lease-ms",
                "must be smaller than election-max-ms (the followers' lease), e.g. half of it; 0 disables read leases",
            ));
        }
        if self.holder_lease_ms >= self.election_max_ms {
            return Err(field(
                "timing.holder-lease-ms",
                "must be smaller than election-max-ms (the followers' lease), e.g. half of it; 0 disables follower read leases",
            ));
        }
        for (name, v) in [
            ("timing.write-timeout-ms", self.write_timeout_ms),
            ("timing.read-timeout-ms", self.read_timeout_ms),
            ("timing.rpc-timeout-ms", self.rpc_timeout_ms),
        ] {
            if v == 0 {
                return Err(field(name, "must be greater than 0"));
            }
        }
        Ok(())
    }
}

/// Snapshot and log-compaction thresholds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// Build a snapshot after this many applied entries since the last one. Default 10000.
    pub logs_since_last: u64,
    /// Entries kept in the log behind a snapshot, for followers slightly behind. Default 1000.
    pub max_logs_to_keep: u64,
    /// Largest snapshot chunk sent in one RPC, in bytes. Default 4 MiB.
    pub chunk_bytes: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            logs_since_last: 10_000,
            max_logs_to_keep: 1_000,
            chunk_bytes: 4 << 20,
        }
    }
}

/// A region the cluster serves, with its default symmetric algorithm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RegionConfig {
    /// Region id, e.g. `ap-guangzhou`.
    pub name: String,
    /// `SM4` or `AES_256`; default SM4 for mainland China regions, AES_256 elsewhere.
    #[serde(default)]
    pub symmetric_algorithm: Option<String>,
}

/// Mainland China regions, where Tencent's keys default to SM4.
const SM4_REGIONS: &[&str] = &[
    "ap-guangzhou",
    "ap-shanghai",
    "ap-beijing",
    "ap-chengdu",
    "ap-chongqing",
    "ap-nanjing",
    "ap-shenzhen",
    "ap-shenzhen-fsi",
    "ap-shanghai-fsi",
    "ap-beijing-fsi",
    "ap-tianjin",
    "ap-wuhan",
    "ap-changsha",
    "ap-hangzhou",
    "ap-jinan",
    "ap-hefei",
    "ap-fuzhou",
    "ap-shijiazhuang",
    "ap-xian",
    "ap-zhengzhou",
    "ap-qingyuan",
    "ap-shanghai-adc",
];

/// The default symmetric algorithm Tencent uses in a region.
pub fn default_symmetric_algorithm(region: &str) -> crate::crypto::SymmetricAlgorithm {
    if SM4_REGIONS.contains(&region) {
        crate::crypto::SymmetricAlgorithm::Sm4Gcm
    } else {
        crate::crypto::SymmetricAlgorithm::Aes256Gcm
    }
}

/// KMS behaviour settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct KmsConfig {
    /// Customer master keys per account and region. Default 200 (as Tencent).
    pub cmk_limit: u32,
    /// Hosted data keys (GenerateDataKey with IsHostedByKms=1, ImportDataKey) per account and
    /// region; those pending deletion do not count. Default 10000.
    pub data_key_limit: u32,
    /// Minimum seconds between two manual rotations of one key. Default 86400 (as Tencent).
    pub manual_rotation_interval_secs: u64,
    /// How often the leader checks for due rotations and deletions, in ms. Default 1000.
    pub scheduler_interval_ms: u64,
    /// Where the unseal key comes from: `key-file` (default: `unseal-key-file`), `passphrase`
    /// (Argon2id over a passphrase given to `raftkms serve --passphrase-fd N` or typed at its
    /// prompt, never on the command line; its salt and check value in `unseal-kdf-file`) or
    /// `pkcs11` (sealed by a non-extractable AES key on a PKCS#11 token, `pkcs11-*` below; the
    /// token's user PIN given like the passphrase; the sealed key in `unseal-sealed-file`).
    pub unseal: UnsealSource,
    /// With `unseal = "pkcs11"`: the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so.
    pub pkcs11_module: Option<PathBuf>,
    /// With `unseal = "pkcs11"`: the label of the token.
    pub pkcs11_token: Option<String>,
    /// With `unseal = "pkcs11"`: the label of the AES key on it (made on first start if the
    /// token has none). Default `raftkms-unseal`.
    pub pkcs11_key_label: Option<String>,
    /// With `unseal = "pkcs11"`: the sealed unseal key. Default `<data-dir>.unseal.p11`.
    pub unseal_sealed_file: Option<PathBuf>,
    /// With `unseal = "passphrase"`: the parameter file (salt, Argon2 costs, check value; not
    /// secret; the same on every node). Default `<data-dir>.unseal.kdf`, made by the first start.
    pub unseal_kdf_file: Option<PathBuf>,
    /// The passphrase (or token PIN) itself: set by `raftkms serve` at start, never read from the
    /// file (a `unseal-passphrase` key in the file is refused as unknown); the server takes it
    /// out of the config before anything else sees it.
    #[serde(skip)]
    pub unseal_passphrase: Option<crate::crypto::SecretString>,
    /// File holding this node's unseal key (64 hex digits, mode 0600). Every node of a cluster
    /// needs the same key. Default `<data-dir>.unseal.key` (beside the data directory, not in it),
    /// created if missing.
    pub unseal_key_file: Option<PathBuf>,
}

impl Default for KmsConfig {
    fn default() -> Self {
        KmsConfig {
            cmk_limit: 200,
            data_key_limit: 10_000,
            manual_rotation_interval_secs: 86_400,
            scheduler_interval_ms: 1000,
            unseal: UnsealSource::KeyFile,
            pkcs11_module: None,
            pkcs11_token: None,
            pkcs11_key_label: None,
            unseal_sealed_file: None,
            unseal_kdf_file: None,
            unseal_passphrase: None,
            unseal_key_file: None,
        }
    }
}

/// Where a node's unseal key comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnsealSource {
    /// 64 hex digits in `unseal-key-file`.
    #[default]
    KeyFile,
    /// Argon2id over an operator's passphrase.
    Passphrase,
    /// Sealed by a key on a PKCS#11 token.
    Pkcs11,
}

/// TLS of both listeners: the API listener presents `cert-file`; the internal listener presents
/// it too and requires a client certificate from `ca-file` (a node's, or an admin's). The certificate and key are reread when their files change (checked
/// every `reload-check-ms`) or at once on SIGHUP; a bad new pair is logged and the old one kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain the API listener presents, leaf first (e.g. `raftkms cert node`).
    pub cert_file: PathBuf,
    /// Its PEM private key; refused if group or others may read it (chmod 600).
    pub key_file: PathBuf,
    /// A separate certificate for the API listener only (e.g. from a public or corporate CA, or
    /// one a TLS-terminating load balancer may hold): then the node certificate is presented on
    /// the internal listener alone. Both or neither of `api-cert-file` / `api-key-file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    /// The cluster CA (`raftkms cert ca`): the internal listener requires a client certificate
    /// from it (mutual TLS), and this node accepts only peers whose certificates chain to it.
    pub ca_file: PathBuf,
    /// How often the two files are checked for a change, in ms. Default 10000.
    #[serde(default = "default_reload_check_ms")]
    pub reload_check_ms: u64,
}

fn default_reload_check_ms() -> u64 {
    10_000
}

/// Limits every listener applies before a request is authenticated (docs/security.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Connections open at once per listener; one more is closed at once. Default 4096.
    pub max_connections: usize,
    /// A TLS handshake must finish within this many ms. Default 10000.
    pub handshake_timeout_ms: u64,
    /// A request's headers must arrive within this many ms of the connection becoming idle
    /// (so it is also the keep-alive idle timeout). Default 10000.
    pub header_read_timeout_ms: u64,
    /// A request body must arrive within this many ms once its headers have (checked where the
    /// body is read, after the credential lookup). Default 30000.
    pub body_timeout_ms: u64,
    /// A connection whose writes make no progress for this many ms (a client that stopped
    /// reading its answers) is closed. Default 30000.
    pub send_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 4096,
            handshake_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            send_timeout_ms: 30_000,
        }
    }
}

/// Request-authentication settings of the API listener.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accept `X-TC-Content-SHA256: UNSIGNED-PAYLOAD` (the body is then not covered by the
    /// signature). Default false.
    pub allow_unsigned_payload: bool,
    /// Headers every request must include in its `SignedHeaders`, lower case (e.g.
    /// `["x-tc-action", "x-tc-region"]`, for clients that sign them; the Tencent SDK signs only
    /// `content-type;host`). Default none.
    pub require_signed_headers: Vec<String>,
}

/// Request rates a node allows per credential and per account, per class of action (crypto:
/// Encrypt, Decrypt, ReEncrypt, GenerateDataKey, GenerateRandom, sign/verify and asymmetric
/// decryption; management: everything else). Token buckets holding one second's worth; 0 = no
/// limit. Over the limit: `RequestLimitExceeded`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// Default 1000.
    pub credential_crypto_per_second: u32,
    /// Default 1000.
    pub credential_management_per_second: u32,
    /// Default 2000.
    pub account_crypto_per_second: u32,
    /// Default 2000.
    pub account_management_per_second: u32,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig {
            credential_crypto_per_second: 1000,
            credential_management_per_second: 1000,
            account_crypto_per_second: 2000,
            account_management_per_second: 2000,
        }
    }
}

/// The audit trail (docs/security.md, "Audit trail"): one record per API request, hash-chained
/// per node, chain heads checkpointed through Raft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Keep the trail at all. Default true.
    pub enabled: bool,
    /// Where the segment files go. Default `<data-dir>/audit`.
    pub dir: Option<PathBuf>,
    /// Records of reads and crypto reach disk within this many ms (a write's record is on disk
    /// before the write is acknowledged). Default 100.
    pub flush_interval_ms: u64,
    /// A new segment file after this many MiB. Default 64.
    pub segment_mib: u64,
    /// Delete whole segments older than this many days; 0 = keep everything. Default 0.
    pub retention_days: u64,
    /// Also send every record to this syslog socket (e.g. `/dev/log`), best effort.
    pub syslog: Option<PathBuf>,
    /// When the trail cannot be written, refuse requests (true, the default) or serve them
    /// unrecorded (false; every such request is counted in `/metrics`).
    pub fail_closed: bool,
    /// How often the node checkpoints its chain head through Raft, in seconds. Default 30.
    pub checkpoint_interval_s: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            dir: None,
            flush_interval_ms: 100,
            segment_mib: 64,
            retention_days: 0,
            syslog: None,
            fail_closed: true,
            checkpoint_interval_s: 30,
        }
    }
}

/// Scheduled backups (docs/operations.md, "Scheduled backups"): this node writes a backup of the
/// replicated state into a directory of its own on a fixed interval and keeps the newest few.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Where the backups go (created 0700 if missing). Unset (the default): no scheduled backups.
    pub dir: Option<PathBuf>,
    /// Seconds between two backups; the first one comes this long after the newest of this
    /// node's backups already in `dir` (at once if that is overdue), or after the start if
    /// there is none. Default 3600.
    pub interval_s: u64,
    /// How many of this node's backups of this cluster to keep in `dir` (older ones, by log
    /// index, are deleted once a new one is written). Default 24.
    pub keep: usize,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: None,
            interval_s: 3600,
            keep: 24,
        }
    }
}

/// What stale reads (`X-Raftkms-Consistency: stale`) this node answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ReadsConfig {
    /// Answer stale reads at all. Default true (a region cut off from the quorum keeps serving
    /// crypto; docs/multi-region.md).
    pub allow_stale: bool,
    /// Refuse a stale read when this node last heard from a leader longer ago than this, in ms
    /// (the age the stale answer's `X-Raftkms-Leader-Contact-Ms` header reports). 0 = no bound.
    /// Default 0.
    pub max_stale_ms: u64,
    /// Ask the leader for a follower read lease when `timing.holder-lease-ms` is set (a node
    /// whose linearizable reads should always go through the leader sets false). Default true.
    pub hold_lease: bool,
}

impl Default for ReadsConfig {
    fn default() -> Self {
        ReadsConfig {
            allow_stale: true,
            max_stale_ms: 0,
            hold_lease: true,
        }
    }
}

/// The web console's settings (docs/console.md). Who may see the cluster and DR views is not a
/// node setting but replicated: `raftkms account operator --uin N` (records `console.operator.N`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// The directory of a `raftkms dev` cluster: with it, an operator account may start a DR
    /// drill from the console (`StartDrill`), which runs `raftkms drill --dev DIR` on this
    /// machine and freezes a region's node processes for a few seconds. Set by `raftkms dev`
    /// only; never on a production node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev_drill_dir: Option<PathBuf>,
}

/// Consistency a node applies to reads when the request does not say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Consistency {
    /// Read index confirmed by a quorum, then wait until applied that far.
    #[default]
    Linearizable,
    /// Serve local applied state at once.
    Stale,
}

/// The configuration of one node. `Debug` shows the cluster secret as `<redacted>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's Raft id; must appear in `peers` when the node is part of the initial cluster.
    pub node_id: u64,
    /// Cluster identity; a data directory created for another cluster id is refused.
    pub cluster_id: String,
    /// Without `[tls]` only: the secret every peer presents on the plaintext internal listener
    /// (at least 16 characters). With `[tls]` peers authenticate by their node certificates and
    /// this setting is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_secret: Option<SecretString>,
    /// Without `[tls]` only: the token admin calls present on the internal listener (at least 16
    /// characters, not the cluster secret). With `[tls]` an admin certificate (`raftkms cert
    /// admin`) is the admin credential and this setting is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<SecretString>,
    /// Region this node serves.
    pub region: String,
    /// Directory for RocksDB, snapshots and keys.
    pub data_dir: PathBuf,
    /// Listen address of the KMS API (host:port).
    pub api_listen: String,
    /// Listen address of the internal Raft/admin listener (host:port).
    pub raft_listen: String,
    /// Address peers use to reach this node's internal listener; default `raft-listen`.
    #[serde(default)]
    pub raft_advertise: Option<String>,
    /// Address clients use to reach this node's API; default `api-listen`.
    #[serde(default)]
    pub api_advertise: Option<String>,
    /// Serve the API listener in plaintext HTTP. For tests on loopback only: requests carry
    /// plaintexts and data keys. Default false, and then `[tls]` is required.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// Default read consistency when a request does not choose. Default linearizable.
    #[serde(default)]
    pub default_consistency: Consistency,
    /// TLS of the API listener. Required unless `insecure-plaintext` is set.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub reads: ReadsConfig,
    #[serde(default)]
    pub rate_limits: RateLimitsConfig,
    #[serde(default)]
    pub timing: TimingConfig,
    #[serde(default)]
    pub snapshot: SnapshotConfig,
    #[serde(default)]
    pub kms: KmsConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub backup: BackupConfig,
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Regions served besides those of the peers, with optional algorithm overrides.
    #[serde(default)]
    pub regions: Vec<RegionConfig>,
    /// The initial members, used by `cluster init`. May be empty for a node that will `join`.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
}

impl NodeConfig {
    /// Where this node's audit trail is kept.
    pub fn audit_dir(&self) -> PathBuf {
        self.audit
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit"))
    }

    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let cfg: NodeConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        cfg.check_file_mode(path)?;
        Ok(cfg)
    }

    /// A file holding a secret (cluster-secret, admin-token) must be private, as ssh requires of
    /// its keys: group and others may neither read nor write it.
    fn check_file_mode(&self, path: &Path) -> Result<(), ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        if self.cluster_secret.is_none() && self.admin_token.is_none() {
            return Ok(());
        }
        let mode = std::fs::metadata(path)
            .map_err(|error| ConfigError::Read {
                path: path.to_path_buf(),
                error,
            })?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "holds cluster-secret or admin-token and has mode {mode:04o}: group and \
                     others must have no access (chmod 600 {})",
                    path.display()
                ),
            });
        }
        Ok(())
    }

    /// Checks everything serde cannot: ranges, addresses and cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_identity()?;
        self.validate_listeners()?;
        self.validate_secrets()?;
        self.timing.validate()?;
        self.validate_snapshot_and_kms()?;
        self.validate_regions()?;
        self.validate_peers()
    }

    /// node-id, cluster-id, cluster-secret, region, data-dir.
    fn validate_identity(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(field("node-id", "must be greater than 0"));
        }
        if self.cluster_id.trim().is_empty() {
            return Err(field("cluster-id", "must not be empty"));
        }
        // It names files (scheduled backups) and goes into certificates: no path characters.
        if self.cluster_id.starts_with('.')
            || !self
                .cluster_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(field(
                "cluster-id",
                "may hold only letters, digits, `.`, `_` and `-`, and must not start with `.`",
            ));
        }
        if self.region.trim().is_empty() {
            return Err(field("region", "must not be empty"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(field("data-dir", "must not be empty"));
        }
        if self.data_dir.file_name().is_none() {
            // `.`, `..` or `/`: the default unseal key would land inside it.
            return Err(field(
                "data-dir",
                "must name a directory of its own (e.g. /var/lib/raftkms/node1), not `.`, `..` or `/`",
            ));
        }
        Ok(())
    }

    /// The peer and admin secrets of a plaintext internal listener: both set, long enough,
    /// different, and not an example's placeholder. With `[tls]` neither is used.
    fn validate_secrets(&self) -> Result<(), ConfigError> {
        let secrets = [
            ("cluster-secret", &self.cluster_secret),
            ("admin-token", &self.admin_token),
        ];
        for (name, value) in secrets {
            let Some(v) = value else {
                if self.tls.is_none() {
                    return Err(field(
                        name,
                        "is required without [tls] (peers and admins authenticate with it on \
                         the plaintext internal listener)",
                    ));
                }
                continue;
            };
            if self.tls.is_some() {
                return Err(field(
                    name,
                    "is not used with [tls]: peers authenticate with their node certificates \
                     and admins with an admin certificate (raftkms cert admin); remove it",
                ));
            }
            if v.len() < 16 {
                return Err(field(name, "must be at least 16 characters"));
            }
            if v.expose().to_ascii_uppercase().contains("CHANGE-ME") {
                return Err(field(
                    name,
                    "is still the example's placeholder (CHANGE-ME…): generate a secret, e.g. \
                     `openssl rand -hex 24`",
                ));
            }
        }
        if let (Some(a), Some(b)) = (&self.cluster_secret, &self.admin_token) {
            if a.expose() == b.expose() {
                return Err(field(
                    "admin-token",
                    "must differ from cluster-secret: a peer's credential must not make it an \
                     admin",
                ));
            }
        }
        Ok(())
    }

    /// Both listen addresses parse and differ.
    fn validate_listeners(&self) -> Result<(), ConfigError> {
        for (name, addr) in [
            ("api-listen", &self.api_listen),
            ("raft-listen", &self.raft_listen),
        ] {
            addr.parse::<SocketAddr>().map_err(|e| {
                field(
                    name,
                    format!("`{addr}` is not a host:port socket address ({e})"),
                )
            })?;
        }
        if self.api_listen == self.raft_listen {
            return Err(field("raft-listen", "must differ from api-listen"));
        }
        match (&self.tls, self.insecure_plaintext) {
            (None, false) => {
                return Err(field(
                    "tls",
                    "the API listener needs [tls] cert-file and key-file (raftkms cert node); \
                     `insecure-plaintext = true` serves plaintext HTTP instead, for loopback \
                     tests only",
                ))
            }
            (Some(_), true) => {
                return Err(field(
                    "insecure-plaintext",
                    "cannot be set together with [tls]",
                ))
            }
            (Some(t), false) if t.reload_check_ms == 0 => {
                return Err(field("tls.reload-check-ms", "must be greater than 0"))
            }
            (Some(t), false) if t.api_cert_file.is_some() != t.api_key_file.is_some() => {
                return Err(field(
                    "tls.api-cert-file",
                    "api-cert-file and api-key-file go together",
                ))
            }
            _ => {}
        }
        for (i, h) in self.auth.require_signed_headers.iter().enumerate() {
            if h.is_empty()
                || h.bytes()
                    .any(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
            {
                return Err(field(
                    format!("auth.require-signed-headers[{i}]"),
                    format!("`{h}` is not a lower-case header name"),
                ));
            }
        }
        if self.default_consistency == Consistency::Stale && !self.reads.allow_stale {
            return Err(field(
                "reads.allow-stale",
                "cannot be false while default-consistency is stale",
            ));
        }
        let l = &self.limits;
        for (name, v) in [
            ("limits.max-connections", l.max_connections as u64),
            ("limits.handshake-timeout-ms", l.handshake_timeout_ms),
            ("limits.header-read-timeout-ms", l.header_read_timeout_ms),
            ("limits.body-timeout-ms", l.body_timeout_ms),
            ("limits.send-timeout-ms", l.send_timeout_ms),
        ] {
            if v == 0 {
                return Err(field(name, "must be greater than 0"));
            }
        }
        if l.max_connections > 1_000_000 {
            return Err(field("limits.max-connections", "must be at most 1000000"));
        }
        Ok(())
    }

    /// The snapshot and KMS sections.
    fn validate_snapshot_and_kms(&self) -> Result<(), ConfigError> {
        if self.snapshot.logs_since_last == 0 {
            return Err(field("snapshot.logs-since-last", "must be greater than 0"));
        }
        if self.snapshot.chunk_bytes < 1024 {
            return Err(field("snapshot.chunk-bytes", "must be at least 1024"));
        }
        if self.kms.cmk_limit == 0 {
            return Err(field("kms.cmk-limit", "must be greater than 0"));
        }
        if self.kms.data_key_limit == 0 {
            return Err(field("kms.data-key-limit", "must be greater than 0"));
        }
        if self.kms.manual_rotation_interval_secs > 10 * 365 * 86_400 {
            return Err(field(
                "kms.manual-rotation-interval-secs",
                "must be at most 10 years (315360000)",
            ));
        }
        if self.kms.scheduler_interval_ms == 0 {
            return Err(field("kms.scheduler-interval-ms", "must be greater than 0"));
        }
        if !(1..=60_000).contains(&self.audit.flush_interval_ms) {
            return Err(field("audit.flush-interval-ms", "must be 1 to 60000"));
        }
        if !(1..=4096).contains(&self.audit.segment_mib) {
            return Err(field("audit.segment-mib", "must be 1 to 4096"));
        }
        if self.audit.checkpoint_interval_s == 0 {
            return Err(field(
                "audit.checkpoint-interval-s",
                "must be greater than 0",
            ));
        }
        if self.backup.interval_s == 0 {
            return Err(field("backup.interval-s", "must be greater than 0"));
        }
        if self.backup.keep == 0 {
            return Err(field("backup.keep", "must be at least 1"));
        }
        if self.backup.dir.as_ref().is_some_and(|d| !d.is_absolute()) {
            return Err(field("backup.dir", "must be an absolute path"));
        }
        if self.kms.unseal == UnsealSource::Pkcs11 {
            if !self
                .kms
                .pkcs11_module
                .as_ref()
                .is_some_and(|m| m.is_absolute())
            {
                return Err(field(
                    "kms.pkcs11-module",
                    "is required with unseal = \"pkcs11\", as an absolute path",
                ));
            }
            if self.kms.pkcs11_key_label.as_deref() == Some("") {
                return Err(field("kms.pkcs11-key-label", "must not be empty"));
            }
            if self.kms.pkcs11_token.as_deref().is_none_or(str::is_empty) {
                return Err(field(
                    "kms.pkcs11-token",
                    "is required with unseal = \"pkcs11\"",
                ));
            }
        }
        Ok(())
    }

    /// Every `[[regions]]` entry has a name and a known algorithm.
    fn validate_regions(&self) -> Result<(), ConfigError> {
        for (i, r) in self.regions.iter().enumerate() {
            if r.name.trim().is_empty() {
                return Err(field(format!("regions[{i}].name"), "must not be empty"));
            }
            if let Some(a) = &r.symmetric_algorithm {
                if a != "SM4" && a != "AES_256" {
                    return Err(field(
                        format!("regions[{i}].symmetric-algorithm"),
                        format!("`{a}` is not SM4 or AES_256"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Peers have unique ids and addresses; a non-empty list names this node and a voter.
    fn validate_peers(&self) -> Result<(), ConfigError> {
        let mut ids = std::collections::BTreeSet::new();
        for (i, p) in self.peers.iter().enumerate() {
            if p.id == 0 {
                return Err(field(format!("peers[{i}].id"), "must be greater than 0"));
            }
            if !ids.insert(p.id) {
                return Err(field(
                    format!("peers[{i}].id"),
                    format!("duplicate id {}", p.id),
                ));
            }
            for (name, value) in [
                ("raft-addr", &p.raft_addr),
                ("api-addr", &p.api_addr),
                ("region", &p.region),
            ] {
                if value.is_empty() {
                    return Err(field(format!("peers[{i}].{name}"), "must not be empty"));
                }
            }
        }
        if !self.peers.is_empty() {
            if !ids.contains(&self.node_id) {
                return Err(field(
                    "peers",
                    format!("must list this node (node-id {})", self.node_id),
                ));
            }
            if !self.peers.iter().any(|p| p.voter) {
                return Err(field("peers", "must contain at least one voter"));
            }
        }
        Ok(())
    }

    /// The unseal key file this node reads: `kms.unseal-key-file`, by default
    /// `<data-dir>.unseal.key` beside the data directory (outside it, so a copy of the data
    /// directory does not carry the key that unseals it).
    pub fn unseal_key_file(&self) -> PathBuf {
        match &self.kms.unseal_key_file {
            Some(f) => f.clone(),
            None => self.beside_data_dir(".unseal.key"),
        }
    }

    /// `<data-dir><suffix>`, beside the data directory (a trailing slash does not put it inside).
    fn beside_data_dir(&self, suffix: &str) -> PathBuf {
        match (self.data_dir.parent(), self.data_dir.file_name()) {
            (Some(parent), Some(name)) => {
                let mut file = name.to_os_string();
                file.push(suffix);
                parent.join(file)
            }
            // Refused by validation (`data-dir` must name a directory of its own).
            _ => self.data_dir.join(suffix.trim_start_matches('.')),
        }
    }

    /// The token-sealed unseal key: `kms.unseal-sealed-file`, by default `<data-dir>.unseal.p11`.
    pub fn unseal_sealed_file(&self) -> PathBuf {
        match &self.kms.unseal_sealed_file {
            Some(f) => f.clone(),
            None => self.beside_data_dir(".unseal.p11"),
        }
    }

    /// The passphrase parameter file: `kms.unseal-kdf-file`, by default `<data-dir>.unseal.kdf`.
    pub fn unseal_kdf_file(&self) -> PathBuf {
        match &self.kms.unseal_kdf_file {
            Some(f) => f.clone(),
            None => self.beside_data_dir(".unseal.kdf"),
        }
    }

    /// Where versions before 0.2 kept the unseal key by default: inside the data directory.
    pub fn legacy_unseal_key_file(&self) -> Option<PathBuf> {
        match &self.kms.unseal_key_file {
            Some(_) => None,
            None => Some(self.data_dir.join("unseal.key")),
        }
    }

    /// Every region this cluster serves: this node's, the peers', and `[[regions]]`.
    pub fn served_regions(&self) -> Vec<String> {
        let mut v: Vec<String> = std::iter::once(self.region.clone())
            .chain(self.peers.iter().map(|p| p.region.clone()))
            .chain(self.regions.iter().map(|r| r.name.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The symmetric algorithm new keys get in `region`.
    pub fn symmetric_algorithm(&self, region: &str) -> crate::crypto::SymmetricAlgorithm {
        match self
            .regions
            .iter()
            .find(|r| r.name == region)
            .and_then(|r| r.symmetric_algorithm.as_deref())
        {
            Some("SM4") => crate::crypto::SymmetricAlgorithm::Sm4Gcm,
            Some("AES_256") => crate::crypto::SymmetricAlgorithm::Aes256Gcm,
            _ => default_symmetric_algorithm(region),
        }
    }

    /// The internal address peers should use for this node.
    pub fn raft_advertise(&self) -> String {
        self.raft_advertise
            .clone()
            .unwrap_or_else(|| self.raft_listen.clone())
    }

    /// The API address clients should use for this node.
    pub fn api_advertise(&self) -> String {
        self.api_advertise
            .clone()
            .unwrap_or_else(|| self.api_listen.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node-id = 1
cluster-id = "test"
cluster-secret = "0123456789abcdef0123"
admin-token = "abcdef0123456789abcd"
region = "ap-guangzhou"
data-dir = "/tmp/x"
api-listen = "127.0.0.1:8081"
raft-listen = "127.0.0.1:9081"
insecure-plaintext = true
[[peers]]
id = 1
raft-addr = "127.0.0.1:9081"
api-addr = "127.0.0.1:8081"
region = "ap-guangzhou"
"#;

    fn parse(text: &str) -> Result<NodeConfig, String> {
        let cfg: NodeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let cfg = parse(GOOD).unwrap();
        assert_eq!(cfg.timing, TimingConfig::default());
        assert_eq!(cfg.default_consistency, Consistency::Linearizable);
        assert!(cfg.peers[0].voter);
    }

    #[test]
    fn errors_name_the_field() {
        let missing = GOOD.replace("node-id = 1\n", "");
        assert!(parse(&missing).unwrap_err().contains("node-id"));
        let typo = GOOD.replace(
            "region = \"ap-guangzhou\"\ndata-dir",
            "regoin = \"x\"\ndata-dir",
        );
        assert!(parse(&typo).unwrap_err().contains("regoin"));
        let bad_addr = GOOD.replace(
            "api-listen = \"127.0.0.1:8081\"",
            "api-listen = \"localhost\"",
        );
        assert!(parse(&bad_addr).unwrap_err().contains("api-listen"));
        let dot = GOOD.replace("data-dir = \"/tmp/x\"", "data-dir = \".\"");
        assert!(parse(&dot).unwrap_err().contains("data-dir"));
        let short = GOOD.replace("0123456789abcdef0123", "short");
        assert!(parse(&short).unwrap_err().contains("cluster-secret"));
        let timing = format!("{GOOD}\n[timing]\nelection-min-ms = 50\n");
        assert!(parse(&timing)
            .unwrap_err()
            .contains("timing.election-min-ms"));
        let not_member = GOOD.replace("id = 1\nraft-addr", "id = 2\nraft-addr");
        assert!(parse(&not_member).unwrap_err().contains("peers"));
    }

    #[test]
    fn plaintext_must_be_asked_for() {
        let neither = GOOD.replace("insecure-plaintext = true\n", "");
        assert!(parse(&neither).unwrap_err().contains("`tls`"));
        let tls = neither.replace(
            "[[peers]]",
            "[tls]\ncert-file = \"/c.pem\"\nkey-file = \"/k.pem\"\nca-file = \"/ca.pem\"\n[[peers]]",
        );
        // With TLS, peers and admins authenticate by certificate: the secrets are refused.
        assert!(parse(&tls).unwrap_err().contains("cluster-secret"));
        let tls = tls.replace("cluster-secret = \"0123456789abcdef0123\"\n", "");
        assert!(parse(&tls).unwrap_err().contains("admin-token"));
        let tls = tls.replace("admin-token = \"abcdef0123456789abcd\"\n", "");
        let cfg = parse(&tls).unwrap();
        assert_eq!(cfg.tls.unwrap().reload_check_ms, 10_000);
        let both = tls.replace("[tls]", "insecure-plaintext = true\n[tls]");
        let half = tls.replace("[tls]", "[tls]\napi-cert-file = \"/a.pem\"");
        assert!(parse(&half).unwrap_err().contains("tls.api-cert-file"));
        let no_ca = tls.replace("ca-file = \"/ca.pem\"\n", "");
        assert!(parse(&no_ca).unwrap_err().contains("ca-file"));
        assert!(parse(&both).unwrap_err().contains("insecure-plaintext"));
        let zero = format!("{GOOD}\n[limits]\nmax-connections = 0\n");
        assert!(parse(&zero).unwrap_err().contains("limits.max-connections"));
    }

    #[test]
    fn plaintext_secrets_are_real_and_distinct() {
        let no_admin = GOOD.replace("admin-token = \"abcdef0123456789abcd\"\n", "");
        assert!(parse(&no_admin).unwrap_err().contains("admin-token"));
        let no_peer = GOOD.replace("cluster-secret = \"0123456789abcdef0123\"\n", "");
        assert!(parse(&no_peer).unwrap_err().contains("cluster-secret"));
        let same = GOOD.replace("abcdef0123456789abcd", "0123456789abcdef0123");
        let e = parse(&same).unwrap_err();
        assert!(e.contains("admin-token") && e.contains("differ"), "{e}");
        let placeholder = GOOD.replace("0123456789abcdef0123", "CHANGE-ME-0123456789abcdef");
        let e = parse(&placeholder).unwrap_err();
        assert!(
            e.contains("cluster-secret") && e.contains("placeholder"),
            "{e}"
        );
        let placeholder = GOOD.replace("abcdef0123456789abcd", "change-me-0123456789abcdef");
        assert!(parse(&placeholder).unwrap_err().contains("admin-token"));
    }

    #[test]
    fn the_unseal_key_lives_beside_the_data_directory() {
        let cfg = parse(GOOD).unwrap();
        assert_eq!(cfg.unseal_key_file(), PathBuf::from("/tmp/x.unseal.key"));
        assert_eq!(
            cfg.legacy_unseal_key_file(),
            Some(PathBuf::from("/tmp/x/unseal.key"))
        );
        let set = format!("{GOOD}\n[kms]\nunseal-key-file = \"/etc/k\"\n");
        let cfg = parse(&set).unwrap();
        assert_eq!(cfg.unseal_key_file(), PathBuf::from("/etc/k"));
        assert_eq!(cfg.legacy_unseal_key_file(), None);
    }

    #[test]
    fn request_policies_are_checked() {
        let cfg = parse(GOOD).unwrap();
        assert!(!cfg.auth.allow_unsigned_payload);
        assert!(cfg.auth.require_signed_headers.is_empty());
        assert!(cfg.reads.allow_stale);
        assert_eq!(cfg.reads.max_stale_ms, 0);
        let upper = format!("{GOOD}\n[auth]\nrequire-signed-headers = [\"X-TC-Action\"]\n");
        assert!(parse(&upper)
            .unwrap_err()
            .contains("auth.require-signed-headers[0]"));
        let no_stale = GOOD.replace(
            "insecure-plaintext = true\n",
            "insecure-plaintext = true\ndefault-consistency = \"stale\"\n",
        ) + "\n[reads]\nallow-stale = false\n";
        assert!(parse(&no_stale).unwrap_err().contains("reads.allow-stale"));
    }
}
