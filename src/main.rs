//! The `raftkms` command line: serve a node, run a dev cluster, administer a cluster.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use raftkms::admin::{cluster_status, render_status, AdminClient};
use raftkms::config::NodeConfig;
use raftkms::dev::DevOptions;
use raftkms::drill::DrillOptions;
use raftkms::registry::iam::IdentityKind;
use raftkms::wire::JoinRequest;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "raftkms",
    version,
    about = "Raft-replicated KMS speaking the Tencent Cloud KMS API"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node from a TOML configuration file.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
        /// With `[kms] unseal = "passphrase"` (or "pkcs11"): read the passphrase (or the token's
        /// user PIN) from this open file descriptor (to its end; one trailing newline dropped).
        /// Without it, a terminal is asked.
        #[arg(long)]
        passphrase_fd: Option<i32>,
    },
    /// Start a local multi-node cluster (real processes and RocksDB directories) and print how to use it.
    Dev(DevArgs),
    /// Manage accounts (tenants that own keys).
    Account {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        action: AccountCmd,
    },
    /// Manage API credentials (SecretId/SecretKey pairs) of accounts.
    Credential {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        action: CredentialCmd,
    },
    /// Manage sub-users of an account (identities with their own credentials and policies).
    User {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        action: IdentityCmd,
    },
    /// Manage roles of an account (like sub-users; a role with `--service` acts for a cloud
    /// product, and the keys it creates are product-managed).
    Role {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        action: IdentityCmd,
    },
    /// Manage CAM-style policies of an account and attach them to users and roles.
    Policy {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        action: PolicyCmd,
    },
    /// Rotate the cluster root key: install a new version, watch every stored value be re-wrapped
    /// under it (no downtime), retire the old version.
    RootKey {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        action: RootKeyCmd,
    },
    /// Read, verify and export a node's audit trail (run where its files are).
    Audit {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        action: AuditCmd,
    },
    /// Load-test a cluster through the KMS API with real TC3-signed requests.
    Bench(raftkms::bench::BenchArgs),
    /// Disaster-recovery drill: record acknowledged writes and ciphertexts, cut a region off,
    /// measure the time until writes succeed again (RTO), verify nothing acknowledged was lost
    /// (RPO 0), heal, and verify that every node converges to the same state.
    Drill(DrillArgs),
    /// Make the cluster's TLS certificates: a CA, node certificates, admin certificates.
    Cert {
        #[command(subcommand)]
        action: CertCmd,
    },
    /// Back up the replicated state to a file (from any node, while the cluster serves), or check
    /// a backup file offline.
    Backup {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        action: BackupCmd,
    },
    /// Seed this node's new data directory from a backup file: `raftkms serve` then starts a
    /// one-node cluster with the backup's state, which other (empty) nodes join with `cluster
    /// join`. Everything is checked first; nothing is written on a refusal.
    Restore {
        /// The node's configuration (its data-dir must be absent or empty; its unseal key must
        /// be the backed-up cluster's).
        #[arg(long, short)]
        config: PathBuf,
        /// Restore under the backup's own cluster id (the configuration must say it); by default
        /// the configured cluster id must be a new one.
        #[arg(long)]
        same_cluster_id: bool,
        /// As for `serve`: the passphrase or token PIN from this open file descriptor.
        #[arg(long)]
        passphrase_fd: Option<i32>,
        /// The backup file (`raftkms backup create`).
        file: PathBuf,
    },
    /// Administer a running cluster through a node's internal listener.
    Cluster {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        action: ClusterCmd,
    },
}

#[derive(Subcommand)]
enum BackupCmd {
    /// Take a backup through the target node (any member: it first catches up with a quorum, so
    /// every write acknowledged before the call is in the file) and write it to a new file.
    Create {
        /// The file to write (refused if it exists; written whole or not at all, mode 0600).
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Check a backup file offline: format, checksums, and that its state matches its header.
    Verify {
        /// The backup file.
        file: PathBuf,
    },
}

#[derive(Args)]
struct Target {
    /// Internal (raft) address of any member, host:port.
    #[arg(long, env = "RAFTKMS_NODE", global = true)]
    node: Option<String>,
    /// Cluster id.
    #[arg(long, env = "RAFTKMS_CLUSTER_ID", global = true)]
    cluster_id: Option<String>,
    /// Admin certificate (raftkms cert admin), for a TLS cluster.
    #[arg(long, env = "RAFTKMS_ADMIN_CERT", global = true)]
    admin_cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, env = "RAFTKMS_ADMIN_KEY", global = true)]
    admin_key: Option<PathBuf>,
    /// The cluster CA the nodes' internal certificates must chain to.
    #[arg(long, env = "RAFTKMS_CA", global = true)]
    cluster_ca: Option<PathBuf>,
    /// Admin token of a plaintext (insecure-plaintext) cluster.
    #[arg(
        long,
        env = "RAFTKMS_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    admin_token: Option<String>,
    /// Take node address, cluster id, CA file and admin token from this node configuration
    /// file (an admin certificate still comes from --admin-cert/--admin-key).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

// The arguments of `raftkms dev` (no doc comment, so that the subcommand's text stays its help).
#[derive(Args)]
struct DevArgs {
    /// Where node data, configs, logs and dev.env live.
    #[arg(long, default_value = "./.raftkms-dev")]
    data_dir: PathBuf,
    /// API port of node 1; node i uses port+i-1, internal ports are 1000 higher.
    #[arg(long, default_value_t = 8081)]
    port: u16,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Region of the dev nodes, or a comma-separated list: nodes are spread over the regions
    /// in blocks (`--nodes 5 --region ap-guangzhou,ap-shanghai,ap-singapore` = 2+2+1).
    #[arg(long, default_value = "ap-guangzhou", value_delimiter = ',')]
    region: Vec<String>,
    /// Serve a new cluster's API in plaintext HTTP on loopback instead of TLS (for tools that
    /// cannot be given a CA); a resumed cluster keeps what it was created with.
    #[arg(long)]
    plaintext: bool,
}

impl From<DevArgs> for DevOptions {
    fn from(a: DevArgs) -> Self {
        DevOptions {
            data_dir: a.data_dir,
            port: a.port,
            nodes: a.nodes,
            regions: a.region,
            plaintext: a.plaintext,
        }
    }
}

// The arguments of `raftkms drill` (no doc comment, so that the subcommand's text stays its
// help).
#[derive(Args)]
struct DrillArgs {
    #[command(flatten)]
    target: Target,
    /// The region whose nodes are cut off.
    #[arg(long)]
    region: String,
    /// KMS region (X-TC-Region) of the drill's keys; default: the region being cut.
    #[arg(long)]
    key_region: Option<String>,
    #[arg(long, env = "KMS_SECRET_ID", hide_env_values = true)]
    secret_id: String,
    #[arg(long, env = "KMS_SECRET_KEY", hide_env_values = true)]
    secret_key: raftkms::crypto::SecretString,
    /// CA file the nodes' API certificates chain to (TLS); default KMS_CA_BUNDLE from dev.env.
    #[arg(long, env = "KMS_CA_BUNDLE")]
    ca: Option<PathBuf>,
    /// Shell command that cuts the region off. Placeholders: {region}, {ids} (node ids),
    /// {services} (node<ID> ...), {pids} (with --dev). E.g. 'docker-compose -f F stop {services}'.
    #[arg(long)]
    cut: Option<String>,
    /// Shell command that heals it (same placeholders), e.g. 'docker-compose -f F start {services}'.
    #[arg(long)]
    heal: Option<String>,
    /// Data dir of a `raftkms dev` cluster: node pids come from it, and without --cut/--heal
    /// the region's processes are frozen (SIGSTOP) and resumed (SIGCONT).
    #[arg(long)]
    dev: Option<PathBuf>,
    /// Address rewrite FROM=TO (host:port), repeatable, for advertised addresses that are not
    /// reachable from here (e.g. container names -> published ports).
    #[arg(long, value_parser = raftkms::drill::parse_rewrite)]
    rewrite: Vec<(String, String)>,
    /// Keys created and encrypted under before the cut (at least 2).
    #[arg(long, default_value_t = 10)]
    keys: usize,
    /// Seconds of writes through the survivors once writes are acknowledged again.
    #[arg(long, default_value_t = 5)]
    outage_secs: u64,
    /// Upper bound of each waiting phase, seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Keep the drill's keys (default: disable them and schedule their deletion).
    #[arg(long)]
    keep_keys: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl DrillArgs {
    /// The drill's own options (the target and the credential are the caller's to use).
    fn options(&self) -> DrillOptions {
        DrillOptions {
            region: self.region.clone(),
            key_region: self.key_region.clone(),
            cut: self.cut.clone(),
            heal: self.heal.clone(),
            dev_dir: self.dev.clone(),
            rewrite: self.rewrite.clone(),
            keys: self.keys,
            outage_secs: self.outage_secs,
            timeout_secs: self.timeout_secs,
            keep_keys: self.keep_keys,
            json: self.json,
        }
    }
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Initialize a new cluster with the peers listed in the target node's configuration.
    Init,
    /// Show leader, term, membership and each node's log/commit/applied index.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a node: as a learner first, promoted to voter once it has caught up.
    Join {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        raft_addr: String,
        #[arg(long)]
        api_addr: String,
        #[arg(long)]
        region: String,
        /// Keep the node a learner (replicates, serves stale reads, never votes).
        #[arg(long)]
        learner: bool,
    },
    /// Remove a node from the cluster.
    Remove {
        #[arg(long)]
        id: u64,
    },
    /// Rolling upgrades: each member's release and the cluster's feature level
    /// (docs/operations.md, "Rolling upgrades").
    Upgrade {
        #[command(subcommand)]
        action: UpgradeCmd,
    },
}

#[derive(Subcommand)]
enum UpgradeCmd {
    /// Show the cluster's feature level and the release each member runs.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Raise the cluster's feature level once every member runs a release that knows it. After
    /// this no member can be rolled back to an older release.
    Finalize {
        /// The level to raise to (default: the highest the leader's release knows).
        #[arg(long)]
        level: Option<u32>,
    },
}

// The arguments every `raftkms cert` command shares.
#[derive(Args)]
struct CertCommon {
    /// Directory of the CA (`ca.pem`, `ca.key`) and of the certificates written.
    #[arg(long, default_value = "./tls")]
    dir: PathBuf,
    /// Cluster id the certificates belong to (as `cluster-id` in the node configs).
    #[arg(long)]
    cluster_id: String,
    /// Days the certificate is valid.
    #[arg(long)]
    days: Option<u32>,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand)]
enum CertCmd {
    /// A new cluster CA: `<dir>/ca.pem` and `<dir>/ca.key` (0600; keep it offline). Default 10 years.
    Ca {
        #[command(flatten)]
        common: CertCommon,
    },
    /// A node certificate signed by the CA: `<dir>/node<ID>.pem` and `.key` (0600), for both
    /// listeners and for calling peers. Default 825 days.
    Node {
        #[command(flatten)]
        common: CertCommon,
        /// The node id (`node-id`).
        #[arg(long)]
        id: u64,
        /// Host name or IP address clients reach the node's API by; repeatable.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// An admin client certificate signed by the CA: `<dir>/admin-<NAME>.pem` and `.key` (0600).
    /// Default 825 days.
    Admin {
        #[command(flatten)]
        common: CertCommon,
        /// Who holds it (letters, digits, '.', '_', '-').
        #[arg(long)]
        name: String,
    },
}

/// `raftkms cert …`: writes the certificate and key and says where.
fn cert(action: CertCmd) -> anyhow::Result<()> {
    use raftkms::tls::issue;
    let signer = |c: &CertCommon| -> anyhow::Result<issue::Signer> {
        let read = |name: &str| {
            let p = c.dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read {} ({e}); make the CA first: raftkms cert ca --dir {} --cluster-id {}",
                    p.display(),
                    c.dir.display(),
                    c.cluster_id
                )
            })
        };
        raftkms::tls::files::check_private(&c.dir.join("ca.key"))?;
        let key = zeroize::Zeroizing::new(read("ca.key")?);
        Ok(issue::Signer::from_pem(&read("ca.pem")?, &key)?)
    };
    let (what, issued, stem, common) = match action {
        CertCmd::Ca { common } => {
            let days = common.days.unwrap_or(3650);
            let ca = issue::new_ca(&common.cluster_id, days)?;
            ("cluster CA".to_string(), ca, "ca".to_string(), common)
        }
        CertCmd::Node { common, id, hosts } => {
            let days = common.days.unwrap_or(825);
            let c = signer(&common)?.node(&common.cluster_id, id, &hosts, days)?;
            (
                format!("node {id} certificate"),
                c,
                format!("node{id}"),
                common,
            )
        }
        CertCmd::Admin { common, name } => {
            let days = common.days.unwrap_or(825);
            let c = signer(&common)?.admin(&common.cluster_id, &name, days)?;
            (
                format!("admin certificate of `{name}`"),
                c,
                format!("admin-{name}"),
                common,
            )
        }
    };
    let (cert, key) = issued.write(&common.dir, &stem, common.force)?;
    println!(
        "wrote the {what} of cluster `{}`: {} and {} (0600)",
        common.cluster_id,
        cert.display(),
        key.display()
    );
    Ok(())
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Create an account; prints its Uin and AppId.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List accounts.
    List,
    /// Make an account an operator of the cluster (or with --revoke, no longer one): its root
    /// identity, and its users and roles as their policies allow, may then read the cluster's
    /// status and DR drill reports (the console's cluster and DR views). Replicated: every node
    /// honours it as soon as it applies it.
    Operator {
        #[arg(long)]
        uin: u64,
        #[arg(long)]
        revoke: bool,
    },
}

#[derive(Subcommand)]
enum RootKeyCmd {
    /// Show the installed root-key versions and how many stored values each still protects.
    Status {
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install a new root-key version; the leader re-wraps every stored value under it while
    /// the cluster keeps serving. Waits and shows progress until nothing is left under an older
    /// version (Ctrl-C stops only the waiting).
    Rotate {
        /// Return once the new version is installed, without waiting for the re-wrap.
        #[arg(long)]
        no_wait: bool,
    },
    /// Retire an older root-key version that no stored value uses any more (its sealed copy
    /// leaves the registry; snapshots taken later no longer hold it).
    Retire {
        #[arg(long)]
        version: u32,
    },
}

/// The API a credential is printed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Dialect {
    /// Tencent Cloud KMS API 3.0 (TC3-HMAC-SHA256).
    Tencent,
    /// Tencent's legacy KMS API v2 (`/v2/index.php`, HmacSHA1/HmacSHA256).
    TencentV2,
    /// Huawei Cloud KMS (SDK-HMAC-SHA256, with a project id per region).
    Huawei,
}

#[derive(Subcommand)]
enum CredentialCmd {
    /// Create a SecretId/SecretKey pair for an account. The SecretKey is shown only once. One
    /// credential signs every API: `--dialect` prints it in that API's terms (huawei: an AK/SK
    /// and the account's project id in each region; tencent-v2: the legacy API's SecretId).
    Create {
        #[arg(long)]
        uin: u64,
        #[arg(long, value_enum, default_value_t = Dialect::Tencent)]
        dialect: Dialect,
    },
    /// List credentials (SecretIds only).
    List,
    /// Revoke a credential.
    Revoke {
        #[arg(long)]
        secret_id: String,
    },
}

/// Which trail: `--dir` (and `--node-id`), or both from the node's `--config`.
#[derive(clap::Args)]
struct TrailArgs {
    /// The trail's directory (default: `[audit] dir` of --config, else <data-dir>/audit).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The node whose trail it is (default: --config's node-id).
    #[arg(long)]
    node_id: Option<u64>,
}

impl TrailArgs {
    fn resolve(&self, target: &Target) -> anyhow::Result<(PathBuf, Option<u64>)> {
        let (dir, node_id, _) = self.resolve_with_retention(target)?;
        Ok((dir, node_id))
    }

    /// Also the node's `[audit] retention-days`, when its config is given.
    fn resolve_with_retention(
        &self,
        target: &Target,
    ) -> anyhow::Result<(PathBuf, Option<u64>, Option<u64>)> {
        let cfg = target.config.as_deref().map(NodeConfig::load).transpose()?;
        let dir = match (&self.dir, &cfg) {
            (Some(d), _) => d.clone(),
            (None, Some(c)) => c.audit_dir(),
            (None, None) => anyhow::bail!("give --dir DIR, or --config node.toml"),
        };
        let retention = cfg.as_ref().map(|c| c.audit.retention_days);
        Ok((dir, self.node_id.or(cfg.map(|c| c.node_id)), retention))
    }
}

/// What `audit export` selects (every given condition must hold).
#[derive(clap::Args)]
struct AuditFilterArgs {
    /// Records at or after this time (Unix milliseconds).
    #[arg(long)]
    from_ms: Option<u64>,
    /// Records at or before this time (Unix milliseconds).
    #[arg(long)]
    to_ms: Option<u64>,
    #[arg(long)]
    key_id: Option<String>,
    #[arg(long)]
    uin: Option<u64>,
    /// `root`, `user/<name>` or `role/<name>`.
    #[arg(long)]
    principal: Option<String>,
    #[arg(long)]
    secret_id: Option<String>,
    /// `kms:Encrypt`, …
    #[arg(long)]
    action: Option<String>,
    #[arg(long)]
    request_id: Option<String>,
    /// `Success` or an error code.
    #[arg(long)]
    result: Option<String>,
    /// The client's IP address.
    #[arg(long)]
    source_ip: Option<String>,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Print the newest records (JSON lines, oldest first).
    Tail {
        #[command(flatten)]
        trail: TrailArgs,
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
    },
    /// Check every record's hash and link, and the trail against the chain heads the cluster
    /// checkpointed (fetched through the admin endpoint unless --offline). Exits 1 on a problem.
    Verify {
        #[command(flatten)]
        trail: TrailArgs,
        /// Check the chain alone, without the cluster's checkpoints.
        #[arg(long)]
        offline: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write matching records as JSON lines (the stored lines: an export verifies like the trail).
    Export {
        #[command(flatten)]
        trail: TrailArgs,
        #[command(flatten)]
        filter: Box<AuditFilterArgs>,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

async fn audit(target: Target, action: AuditCmd) -> anyhow::Result<()> {
    use raftkms::audit;
    match action {
        AuditCmd::Tail { trail, lines } => {
            let (dir, _) = trail.resolve(&target)?;
            for r in audit::tail(&dir, lines)? {
                print!("{}", String::from_utf8_lossy(&r.to_line()?));
            }
        }
        AuditCmd::Verify {
            trail,
            offline,
            json,
        } => {
            let (dir, node_id, retention) = trail.resolve_with_retention(&target)?;
            let checkpoints = if offline {
                Vec::new()
            } else {
                let node_id = node_id.ok_or_else(|| {
                    anyhow::anyhow!("give --node-id (or --config) to check the trail against its checkpoints, or --offline")
                })?;
                let client = admin_client(&target)?;
                let mut heads = Vec::new();
                for c in client
                    .audit_checkpoints()
                    .await?
                    .into_iter()
                    .filter(|c| c.node_id == node_id)
                {
                    let mut hash = [0u8; 32];
                    hex::decode_to_slice(&c.hash, &mut hash)
                        .map_err(|e| anyhow::anyhow!("checkpoint {} has a bad hash: {e}", c.seq))?;
                    heads.push(audit::Head { seq: c.seq, hash });
                }
                heads
            };
            let report = audit::verify(&dir, &checkpoints)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{} records in {} segments (seq {}..={}), {} checkpoints checked, {} before the oldest record",
                    report.records,
                    report.segments,
                    report.first_seq.unwrap_or(0),
                    report.last_seq.unwrap_or(0),
                    report.checkpoints_checked,
                    report.checkpoints_pruned
                );
            }
            // Whole segments at the start are gone: pruning, unless this node never prunes.
            if retention == Some(0) && report.first_seq.is_some_and(|f| f > 1) {
                anyhow::bail!(
                    "the audit trail in {} starts at seq {} but this node keeps everything (audit.retention-days = 0): records 1..={} were deleted",
                    dir.display(),
                    report.first_seq.unwrap_or(0),
                    report.first_seq.unwrap_or(1).saturating_sub(1)
                );
            }
            match &report.problem {
                None => {
                    if !json {
                        println!(
                            "OK: the trail is intact{}",
                            if offline {
                                " (chain only, --offline)"
                            } else {
                                ""
                            }
                        );
                    }
                }
                Some(p) => anyhow::bail!("the audit trail in {} is not intact: {p}", dir.display()),
            }
        }
        AuditCmd::Export { trail, filter, out } => {
            let (dir, _) = trail.resolve(&target)?;
            let filter = *filter;
            let filter = audit::Filter {
                from_ms: filter.from_ms,
                to_ms: filter.to_ms,
                key_id: filter.key_id,
                uin: filter.uin,
                principal: filter.principal,
                secret_id: filter.secret_id,
                action: filter.action,
                request_id: filter.request_id,
                result: filter.result,
                source_ip: filter.source_ip,
            };
            let n = match out {
                Some(path) => {
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
                    audit::export(&dir, &filter, std::io::BufWriter::new(file))?
                }
                None => audit::export(&dir, &filter, std::io::stdout().lock())?,
            };
            eprintln!("{n} records exported");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum IdentityCmd {
    /// Create one (with no policy: it may do nothing until a policy is attached).
    Create {
        #[arg(long)]
        uin: u64,
        #[arg(long)]
        name: String,
        /// Roles only: the cloud product this role acts for.
        #[arg(long)]
        service: Option<String>,
    },
    /// List them, with their attached policies.
    List {
        #[arg(long)]
        uin: u64,
    },
    /// Delete one and revoke every credential it has.
    Delete {
        #[arg(long)]
        uin: u64,
        #[arg(long)]
        name: String,
    },
    /// Create a SecretId/SecretKey pair that speaks for it. The SecretKey is shown only once.
    Credential {
        #[arg(long)]
        uin: u64,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Create a policy from a CAM policy document (JSON, version 2.0); `-` reads standard input.
    Create(PolicyArgs),
    /// Replace a policy's document (binds everyone it is attached to once acknowledged).
    Update(PolicyArgs),
    /// List the account's policies and whom each is attached to.
    List {
        #[arg(long)]
        uin: u64,
    },
    /// Show one policy's document.
    Get {
        #[arg(long)]
        uin: u64,
        #[arg(long)]
        name: String,
    },
    /// Delete a policy (detached from everyone first).
    Delete {
        #[arg(long)]
        uin: u64,
        #[arg(long)]
        name: String,
    },
    /// Attach a policy to a user (`--user`) or role (`--role`).
    Attach(AttachArgs),
    /// Detach a policy from a user or role.
    Detach(AttachArgs),
}

/// A policy and its document, for `policy create` and `policy update`.
#[derive(clap::Args)]
struct PolicyArgs {
    #[arg(long)]
    uin: u64,
    #[arg(long)]
    name: String,
    #[arg(long)]
    file: PathBuf,
    #[arg(long, default_value = "")]
    description: String,
}

#[derive(clap::Args)]
struct AttachArgs {
    #[arg(long)]
    uin: u64,
    /// The policy's name.
    #[arg(long)]
    policy: String,
    /// The sub-user (or give --role).
    #[arg(long, conflicts_with = "role")]
    user: Option<String>,
    /// The role (or give --user).
    #[arg(long)]
    role: Option<String>,
}

impl AttachArgs {
    fn request(self, attach: bool) -> anyhow::Result<(u64, raftkms::wire::AttachRequest)> {
        let (kind, name) = match (self.user, self.role) {
            (Some(u), None) => (IdentityKind::User, u),
            (None, Some(r)) => (IdentityKind::Role, r),
            _ => anyhow::bail!("give --user NAME or --role NAME"),
        };
        Ok((
            self.uin,
            raftkms::wire::AttachRequest {
                kind,
                name,
                policy: self.policy,
                attach,
            },
        ))
    }
}

async fn identity(target: Target, kind: IdentityKind, action: IdentityCmd) -> anyhow::Result<()> {
    let client = admin_client(&target)?;
    let what = kind.as_str();
    match action {
        IdentityCmd::Create { uin, name, service } => {
            if kind == IdentityKind::User && service.is_some() {
                anyhow::bail!("--service is for roles: a role acts for a cloud product");
            }
            let req = raftkms::wire::CreateIdentityRequest {
                kind,
                name: name.clone(),
                service,
            };
            client.create_identity(uin, &req).await?;
            println!("created {what} `{name}` in account {uin} (no policy attached: it may do nothing yet)");
            println!("next: raftkms policy attach --uin {uin} --{what} {name} --policy <name>; raftkms {what} credential --uin {uin} --name {name}");
        }
        IdentityCmd::List { uin } => {
            println!("{:<6} {:<24} {:<12} POLICIES", "KIND", "NAME", "SERVICE");
            for i in client
                .identities(uin)
                .await?
                .iter()
                .filter(|i| i.kind == kind)
            {
                let policies: Vec<&str> = i.policies.iter().map(String::as_str).collect();
                println!(
                    "{:<6} {:<24} {:<12} {}",
                    i.kind.as_str(),
                    i.name,
                    i.service.as_deref().unwrap_or("-"),
                    policies.join(",")
                );
            }
        }
        IdentityCmd::Delete { uin, name } => {
            client.delete_identity(uin, kind, &name).await?;
            println!("deleted {what} `{name}` and revoked its credentials");
        }
        IdentityCmd::Credential { uin, name } => {
            let c = client.create_identity_credential(uin, kind, &name).await?;
            println!("SecretId:  {}", c.secret_id);
            println!("SecretKey: {}", c.secret_key.expose());
            println!("(speaks for {what} `{name}`; the SecretKey cannot be shown again)");
        }
    }
    Ok(())
}

/// A policy document from a file, or from standard input for `-`.
fn read_document(file: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    }
    Ok(text)
}

/// Creates or replaces a policy from its document file.
async fn put_policy(client: &AdminClient, p: &PolicyArgs, replace: bool) -> anyhow::Result<()> {
    let req = raftkms::wire::PolicyRequest {
        name: p.name.clone(),
        description: p.description.clone(),
        document: read_document(&p.file)?,
    };
    client.put_policy(p.uin, &req, replace).await?;
    Ok(())
}

async fn policy(target: Target, action: PolicyCmd) -> anyhow::Result<()> {
    let client = admin_client(&target)?;
    match action {
        PolicyCmd::Create(p) => {
            put_policy(&client, &p, false).await?;
            println!("created policy `{}` in account {}", p.name, p.uin);
        }
        PolicyCmd::Update(p) => {
            put_policy(&client, &p, true).await?;
            println!("replaced policy `{}`: it binds every node now", p.name);
        }
        PolicyCmd::List { uin } => {
            println!("{:<32} {:<10} ATTACHED TO", "NAME", "UPDATED");
            for p in client.policies(uin).await? {
                println!(
                    "{:<32} {:<10} {}",
                    p.name,
                    p.updated_at,
                    p.attached_to.join(",")
                );
            }
        }
        PolicyCmd::Get { uin, name } => {
            let p = client
                .policies(uin)
                .await?
                .into_iter()
                .find(|p| p.name == name)
                .ok_or_else(|| anyhow::anyhow!("no policy `{name}` in account {uin}"))?;
            println!("{}", p.document);
        }
        PolicyCmd::Delete { uin, name } => {
            client.delete_policy(uin, &name).await?;
            println!("deleted policy `{name}` (detached from everyone)");
        }
        PolicyCmd::Attach(args) => {
            let (uin, req) = args.request(true)?;
            client.attach_policy(uin, &req).await?;
            println!(
                "attached `{}` to {} `{}`",
                req.policy,
                req.kind.as_str(),
                req.name
            );
        }
        PolicyCmd::Detach(args) => {
            let (uin, req) = args.request(false)?;
            client.attach_policy(uin, &req).await?;
            println!(
                "detached `{}` from {} `{}`",
                req.policy,
                req.kind.as_str(),
                req.name
            );
        }
    }
    Ok(())
}

async fn account(target: Target, action: AccountCmd) -> anyhow::Result<()> {
    let client = admin_client(&target)?;
    match action {
        AccountCmd::Create { name } => {
            let a = client.create_account(&name).await?;
            println!(
                "created account `{}`: Uin {}  AppId {}",
                a.name, a.uin, a.app_id
            );
            println!("next: raftkms credential create --uin {}", a.uin);
        }
        AccountCmd::List => {
            println!("{:<14} {:<12} {:<9} NAME", "UIN", "APPID", "OPERATOR");
            for a in client.accounts().await? {
                let operator = client
                    .get_record(&raftkms::wire::records::operator(a.uin), "linearizable")
                    .await?
                    .value
                    .is_some();
                let operator = if operator { "yes" } else { "no" };
                println!("{:<14} {:<12} {operator:<9} {}", a.uin, a.app_id, a.name);
            }
        }
        AccountCmd::Operator { uin, revoke } => {
            let name = raftkms::wire::records::operator(uin);
            if revoke {
                let reply = client.delete_record(&name).await?;
                if let raftkms::registry::Outcome::Rejected(e) = reply.outcome {
                    anyhow::bail!("account {uin} is not an operator ({e})");
                }
                println!("account {uin} is no longer an operator of this cluster");
            } else {
                let accounts = client.accounts().await?;
                let Some(a) = accounts.iter().find(|a| a.uin == uin) else {
                    anyhow::bail!("no account has Uin {uin} (raftkms account list)");
                };
                let reply = client.put_record(&name, &a.name, None).await?;
                if let raftkms::registry::Outcome::Rejected(e) = reply.outcome {
                    anyhow::bail!("the cluster refused the change: {e}");
                }
                println!(
                    "account {uin} (`{}`) is an operator of this cluster: the console's cluster and DR views are open to it",
                    a.name
                );
            }
        }
    }
    Ok(())
}

fn print_root_key_status(s: &raftkms::wire::RootKeyStatus) {
    println!("{:<8} {:>12}  STATE", "VERSION", "VALUES");
    for v in &s.versions {
        let state = if v.version == s.current {
            "current"
        } else if v.values == 0 {
            "unused (can be retired)"
        } else {
            "being re-wrapped"
        };
        println!("{:<8} {:>12}  {state}", v.version, v.values);
    }
}

async fn root_key(target: Target, action: RootKeyCmd) -> anyhow::Result<()> {
    let client = admin_client(&target)?;
    match action {
        RootKeyCmd::Status { json } => {
            let s = client.root_key_status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_root_key_status(&s);
            }
        }
        RootKeyCmd::Rotate { no_wait } => {
            let before = client.root_key_status().await?;
            let target = before.current.saturating_add(1);
            let s = client.rotate_root_key(Some(target)).await?;
            println!(
                "installed root-key version {}: new values are wrapped under it",
                s.current
            );
            let total = s.pending;
            let mut last = (s.pending, std::time::Instant::now());
            let mut shown = None;
            let mut status = s;
            while !no_wait && status.pending > 0 {
                if shown != Some(status.pending) {
                    println!(
                        "re-wrapping: {} of {} values done, {} left",
                        total.saturating_sub(status.pending),
                        total,
                        status.pending
                    );
                    shown = Some(status.pending);
                }
                if status.pending != last.0 {
                    last = (status.pending, std::time::Instant::now());
                } else if last.1.elapsed() > std::time::Duration::from_secs(120) {
                    anyhow::bail!(
                        "the re-wrap made no progress for 120 s ({} values left under older versions); \
                         version {} is installed and current. See raftkms_root_key_rewrap_failures_total \
                         and the leader's log, then `raftkms root-key status`",
                        status.pending,
                        status.current
                    );
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                status = client.root_key_status().await?;
            }
            if !no_wait {
                println!(
                    "re-wrapped {total} values: every stored value is under version {}",
                    status.current
                );
            }
            print_root_key_status(&status);
            for v in status
                .versions
                .iter()
                .filter(|v| v.version != status.current)
            {
                println!("next: raftkms root-key retire --version {}", v.version);
            }
        }
        RootKeyCmd::Retire { version } => {
            let s = client.retire_root_key(version).await?;
            println!("retired root-key version {version}");
            print_root_key_status(&s);
        }
    }
    Ok(())
}

async fn credential(target: Target, action: CredentialCmd) -> anyhow::Result<()> {
    let client = admin_client(&target)?;
    match action {
        CredentialCmd::Create { uin, dialect } => {
            let c = client.create_credential(uin).await?;
            match dialect {
                Dialect::Tencent | Dialect::TencentV2 => {
                    println!("SecretId:  {}", c.secret_id);
                    println!("SecretKey: {}", c.secret_key.expose());
                }
                Dialect::Huawei => {
                    println!("AK: {}", c.secret_id);
                    println!("SK: {}", c.secret_key.expose());
                    // Printed before anything else can fail: the SK cannot be shown again.
                    // The regions of the members (a region served only through `[[regions]]`
                    // has a project id too: the same derivation, docs/api.md).
                    let mut regions: Vec<String> = match client.status().await {
                        Ok(s) => s.nodes.into_values().map(|n| n.region).collect(),
                        Err(e) => {
                            eprintln!("cannot list the cluster's regions for the project ids: {e}");
                            Vec::new()
                        }
                    };
                    regions.sort();
                    regions.dedup();
                    for region in regions {
                        println!(
                            "project id in {region}: {}",
                            raftkms::http::huawei::project::project_id(uin, &region)
                        );
                    }
                }
            }
            println!("(the secret key is stored only wrapped by the cluster root key and cannot be shown again; the same pair signs requests of every API raftkms serves)");
        }
        CredentialCmd::List => {
            println!(
                "{:<14} {:<40} {:<12} PRINCIPAL",
                "UIN", "SECRETID", "CREATED"
            );
            for c in client.credentials().await? {
                println!(
                    "{:<14} {:<40} {:<12} {}",
                    c.uin, c.secret_id, c.created_at, c.principal
                );
            }
        }
        CredentialCmd::Revoke { secret_id } => {
            client.revoke_credential(&secret_id).await?;
            println!("revoked {secret_id}");
        }
    }
    Ok(())
}

/// `raftkms drill`: runs the drill against the target cluster and prints its report; fails
/// when the drill found problems.
async fn drill(args: DrillArgs) -> anyhow::Result<()> {
    let admin = admin_client(&args.target)?;
    let opts = args.options();
    // Any endpoint will do for the client: the drill aims it at each node in turn.
    let mut kms = raftkms::client::KmsClient::new(
        "127.0.0.1:0",
        &opts.region,
        &args.secret_id,
        args.secret_key.expose(),
    );
    if let Some(ca) = args.ca.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        kms = kms.with_ca(ca)?;
    }
    let report = raftkms::drill::run(opts, admin, kms).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", raftkms::drill::render(&report));
    }
    if !report.passed {
        anyhow::bail!("the drill found problems (see the report)");
    }
    Ok(())
}

/// `raftkms bench`: a load run printing its summary (a table or JSON), or with
/// `--failover-kill-pid` the failover probe printing its result as JSON.
async fn bench(args: raftkms::bench::BenchArgs) -> anyhow::Result<()> {
    let (failover_kill_pid, json) = (args.failover_kill_pid, args.json);
    let opts = raftkms::bench::BenchOptions::from(args);
    if let Some(pid) = failover_kill_pid {
        let r = raftkms::bench::failover(
            opts,
            pid,
            Duration::from_millis(10),
            Duration::from_secs(2),
            Duration::from_secs(120),
        )
        .await?;
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
    } else {
        let summary = raftkms::bench::run(opts).await?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&summary).unwrap_or_default()
            );
        } else {
            print!("{}", raftkms::bench::render(&summary));
        }
    }
    Ok(())
}

/// `raftkms serve`: runs one node until SIGINT/SIGTERM. An unreadable or invalid
/// configuration exits with status 2.
async fn serve(config: &std::path::Path, passphrase_fd: Option<i32>) -> ExitCode {
    let mut cfg = match NodeConfig::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("raftkms: {e}");
            return ExitCode::from(2);
        }
    };
    let secret_prompt = match cfg.kms.unseal {
        raftkms::config::UnsealSource::Passphrase => Some((
            "raftkms unseal passphrase: ",
            !cfg.unseal_kdf_file().exists(),
        )),
        raftkms::config::UnsealSource::Pkcs11 => Some(("PKCS#11 token user PIN: ", false)),
        raftkms::config::UnsealSource::KeyFile => None,
    };
    if let Some((prompt, first_time)) = secret_prompt {
        match read_passphrase(passphrase_fd, prompt, first_time) {
            Ok(p) => cfg.kms.unseal_passphrase = Some(p),
            Err(e) => {
                eprintln!("raftkms: {e}");
                return ExitCode::from(2);
            }
        }
    } else if passphrase_fd.is_some() {
        eprintln!(
            "raftkms: --passphrase-fd needs `[kms] unseal = \"passphrase\"` or \"pkcs11\" in the config"
        );
        return ExitCode::from(2);
    }
    raftkms::telemetry::init(format!("node={} region={}", cfg.node_id, cfg.region));
    exit_code(
        raftkms::run(cfg, shutdown_signal())
            .await
            .map_err(anyhow::Error::from),
    )
}

/// The unseal passphrase: from the file descriptor `fd` (read to its end, one trailing newline
/// dropped), or asked at the terminal without echo. Never from the command line.
fn read_passphrase(
    fd: Option<i32>,
    prompt: &str,
    first_time: bool,
) -> anyhow::Result<raftkms::crypto::SecretString> {
    use std::io::{IsTerminal, Read};
    /// Longest passphrase or PIN read from a descriptor.
    const MAX: usize = 4096;
    let mut text = zeroize::Zeroizing::new(String::with_capacity(MAX + 3));
    match fd {
        Some(fd) => {
            // 1 and 2 are where this process writes; reading them would take its logs away.
            anyhow::ensure!(
                fd == 0 || fd >= 3,
                "--passphrase-fd {fd}: use 0 (standard input) or a descriptor of your own (3 and up)"
            );
            // Read a duplicate, so that closing it never closes a descriptor this process (or
            // its runtime) uses under that number; a number that is not open fails here.
            // SAFETY: dup(2) has no memory effects; the result is checked before use.
            let dup = unsafe { libc::dup(fd) };
            anyhow::ensure!(
                dup >= 0,
                "--passphrase-fd {fd} is not an open descriptor (e.g. `--passphrase-fd 3 3<file`)"
            );
            // SAFETY: `dup` is a new descriptor owned by nothing else; the File closes it.
            let f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(dup) };
            f.take(MAX as u64 + 1)
                .read_to_string(&mut text)
                .map_err(|e| anyhow::anyhow!("cannot read the passphrase from fd {fd}: {e}"))?;
            anyhow::ensure!(
                text.len() <= MAX,
                "the passphrase is longer than {MAX} bytes"
            );
        }
        None if std::io::stdin().is_terminal() => {
            *text = rpassword::prompt_password(prompt)
                .map_err(|e| anyhow::anyhow!("cannot read the passphrase: {e}"))?;
            if first_time {
                // A typo now would become the cluster's passphrase: ask again.
                let again = zeroize::Zeroizing::new(
                    rpassword::prompt_password("again, to confirm: ")
                        .map_err(|e| anyhow::anyhow!("cannot read the passphrase: {e}"))?,
                );
                anyhow::ensure!(*again == *text, "the two entries differ; nothing was made");
            }
        }
        None => anyhow::bail!(
            "kms.unseal needs a secret (passphrase or token PIN): give it with --passphrase-fd N \
             (e.g. 3 with `3<file`) or start at a terminal"
        ),
    }
    let trimmed = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    anyhow::ensure!(!trimmed.is_empty(), "the passphrase or PIN is empty");
    anyhow::ensure!(
        trimmed.len() <= MAX,
        "the passphrase or PIN is longer than {MAX} bytes"
    );
    Ok(raftkms::crypto::SecretString::from(trimmed))
}

/// Success, or the error and its causes on stderr and a failure status.
fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftkms: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn admin_client(t: &Target) -> anyhow::Result<AdminClient> {
    let mut node = t.node.clone();
    let mut cluster_id = t.cluster_id.clone();
    let mut ca = t.cluster_ca.clone();
    let mut token = t.admin_token.clone();
    if let Some(path) = &t.config {
        let cfg = NodeConfig::load(path)?;
        node = node.or_else(|| Some(cfg.raft_advertise()));
        cluster_id = Some(cfg.cluster_id.clone());
        ca = ca.or_else(|| cfg.tls.as_ref().map(|t| t.ca_file.clone()));
        token = token.or_else(|| cfg.admin_token.as_ref().map(|s| s.expose().to_string()));
    }
    let missing =
        |what: &str, env: &str| anyhow::anyhow!("missing --{what} (or ${env}, or --config FILE)");
    let node = node.ok_or_else(|| missing("node", "RAFTKMS_NODE"))?;
    let cluster_id = cluster_id.ok_or_else(|| missing("cluster-id", "RAFTKMS_CLUSTER_ID"))?;
    match (&t.admin_cert, &t.admin_key, token) {
        (Some(cert), Some(key), _) => {
            let ca = ca.ok_or_else(|| missing("cluster-ca", "RAFTKMS_CA"))?;
            Ok(AdminClient::with_certificate(
                node, cluster_id, cert, key, &ca,
            )?)
        }
        (Some(_), None, _) | (None, Some(_), _) => {
            anyhow::bail!("--admin-cert and --admin-key go together")
        }
        (None, None, Some(token)) => Ok(AdminClient::new(node, cluster_id, token)),
        (None, None, None) => anyhow::bail!(
            "no admin credential: give --admin-cert and --admin-key (raftkms cert admin; or \
             $RAFTKMS_ADMIN_CERT and $RAFTKMS_ADMIN_KEY), or --admin-token for a plaintext cluster"
        ),
    }
}

async fn backup(target: Target, action: BackupCmd) -> anyhow::Result<()> {
    match action {
        BackupCmd::Create { out } => {
            let client = admin_client(&target)?;
            eprintln!("backup: asking {} for a backup", client.addr);
            let mut last = Instant::now();
            let mut progress = |n: u64| {
                if last.elapsed() >= Duration::from_secs(1) {
                    last = Instant::now();
                    eprintln!("backup: {} MiB received", n / (1 << 20));
                }
            };
            let saved = raftkms::backup::create(&client, &out, &mut progress).await?;
            println!(
                "backup written to {} in {} ms: {}",
                out.display(),
                saved.elapsed.as_millis(),
                raftkms::backup::describe(&saved.header, Some(saved.bytes))
            );
            Ok(())
        }
        BackupCmd::Verify { file } => {
            let (header, bytes) = raftkms::backup::verify(&file)?;
            println!(
                "{}: OK: {}",
                file.display(),
                raftkms::backup::describe(&header, Some(bytes))
            );
            Ok(())
        }
    }
}

async fn restore(
    config: &std::path::Path,
    same_cluster_id: bool,
    passphrase_fd: Option<i32>,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    let cfg = NodeConfig::load(config)?;
    let secret = match cfg.kms.unseal {
        raftkms::config::UnsealSource::Passphrase => Some(read_passphrase(
            passphrase_fd,
            "raftkms unseal passphrase: ",
            false,
        )?),
        raftkms::config::UnsealSource::Pkcs11 => Some(read_passphrase(
            passphrase_fd,
            "PKCS#11 token user PIN: ",
            false,
        )?),
        raftkms::config::UnsealSource::KeyFile => None,
    };
    eprintln!("restore: checking {}", file.display());
    let r = raftkms::node::restore::restore(&cfg, secret.as_ref(), file, same_cluster_id).await?;
    println!(
        "restored into {} as node {} of cluster {}: {}",
        cfg.data_dir.display(),
        cfg.node_id,
        cfg.cluster_id,
        raftkms::backup::describe(&r.header, None)
    );
    println!(
        "state digest after restore {} ({} audit checkpoints of the old nodes dropped); start it \
         with `raftkms serve --config {}`, then join the other nodes with `raftkms cluster join`",
        r.digest,
        r.dropped_audit_checkpoints,
        config.display()
    );
    Ok(())
}

async fn cluster(target: Target, action: ClusterCmd) -> anyhow::Result<()> {
    let client = admin_client(&target)?;
    match action {
        ClusterCmd::Init => {
            let reply = client.init().await?;
            match reply.feature_level {
                Some(level) if level < raftkms::registry::features::FEATURE_LEVEL => println!(
                    "initialized at cluster feature level {level}: a member did not say which release it runs (see the node's log); once every member runs this release, `raftkms cluster upgrade finalize` raises it"
                ),
                Some(level) => println!("initialized at cluster feature level {level}"),
                None => println!("initialized"),
            }
            println!("waiting for a leader…");
            for _ in 0..100 {
                if let Ok(s) = client.status().await {
                    if let Some(l) = s.leader {
                        println!("leader: node {l} (term {})", s.term);
                        return Ok(());
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::bail!("initialized, but no leader after 10 s: are the other peers running?");
        }
        ClusterCmd::Status { json } => {
            let s = cluster_status(&client).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", render_status(&s));
            }
        }
        ClusterCmd::Join {
            id,
            raft_addr,
            api_addr,
            region,
            learner,
        } => {
            println!(
                "adding node {id} as a learner; it becomes a {} once it has caught up…",
                if learner { "learner" } else { "voter" }
            );
            let req = JoinRequest {
                id,
                raft_addr,
                api_addr,
                region,
                voter: !learner,
            };
            let client = client.with_timeout(Duration::from_secs(600));
            client.join(&req).await?;
            print!("{}", render_status(&cluster_status(&client).await?));
        }
        ClusterCmd::Remove { id } => {
            client.remove(id).await?;
            println!("removed node {id}");
            print!("{}", render_status(&cluster_status(&client).await?));
        }
        ClusterCmd::Upgrade { action } => upgrade(&client, action).await?,
    }
    Ok(())
}

fn print_upgrade_status(s: &raftkms::wire::UpgradeStatus) {
    println!("cluster feature level: {}", s.cluster_feature_level);
    println!(
        "{:<6} {:<8} {:<10} {:>8} {:>8} {:>10}",
        "NODE", "ROLE", "RELEASE", "PROTOCOL", "KNOWS", "SEEN"
    );
    let dash = || "-".to_string();
    for m in &s.members {
        let role = if m.id == s.leader {
            "leader"
        } else if m.voter {
            "voter"
        } else {
            "learner"
        };
        println!(
            "{:<6} {:<8} {:<10} {:>8} {:>8} {:>10}",
            m.id,
            role,
            m.release.clone().unwrap_or_else(dash),
            m.protocol.map_or_else(dash, |p| p.to_string()),
            m.features.map_or_else(dash, |f| f.to_string()),
            m.seen_ms_ago
                .map_or_else(|| "never".to_string(), |ms| format!("{ms} ms ago")),
        );
    }
    let knows = s
        .members
        .iter()
        .map(|m| m.features.unwrap_or(0))
        .min()
        .unwrap_or(0);
    if knows > s.cluster_feature_level {
        println!("every member knows level {knows}: `raftkms cluster upgrade finalize` raises it (no rollback after that)");
    }
}

async fn upgrade(client: &raftkms::admin::AdminClient, action: UpgradeCmd) -> anyhow::Result<()> {
    match action {
        UpgradeCmd::Status { json } => {
            let s = client.upgrade_status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_upgrade_status(&s);
            }
        }
        UpgradeCmd::Finalize { level } => {
            let r = client.finalize_upgrade(level).await?;
            if r.feature_level > r.previous_level {
                println!(
                    "cluster feature level raised from {} to {}: members can no longer be rolled back to a release older than this level",
                    r.previous_level, r.feature_level
                );
            } else {
                println!(
                    "the cluster is already at feature level {}; nothing to do",
                    r.feature_level
                );
            }
        }
    }
    Ok(())
}

/// The error and its causes, leaving out causes whose text the message above already shows.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // A serving node tags its log lines with node id and region; every other command logs plain.
    if !matches!(cli.command, Cmd::Serve { .. }) {
        raftkms::telemetry::init(String::new());
    }
    let result = match cli.command {
        Cmd::Serve {
            config,
            passphrase_fd,
        } => return serve(&config, passphrase_fd).await,
        Cmd::Dev(args) => raftkms::dev::run(args.into()).await,
        Cmd::Bench(args) => bench(args).await,
        Cmd::Drill(args) => drill(args).await,
        Cmd::Account { target, action } => account(target, action).await,
        Cmd::Credential { target, action } => credential(target, action).await,
        Cmd::User { target, action } => identity(target, IdentityKind::User, action).await,
        Cmd::Role { target, action } => identity(target, IdentityKind::Role, action).await,
        Cmd::Policy { target, action } => policy(target, action).await,
        Cmd::Audit { target, action } => audit(target, action).await,
        Cmd::RootKey { target, action } => root_key(target, action).await,
        Cmd::Cert { action } => cert(action),
        Cmd::Cluster { target, action } => cluster(target, action).await,
        Cmd::Backup { target, action } => backup(target, action).await,
        Cmd::Restore {
            config,
            same_cluster_id,
            passphrase_fd,
            file,
        } => restore(&config, same_cluster_id, passphrase_fd, &file).await,
    };
    exit_code(result)
}
