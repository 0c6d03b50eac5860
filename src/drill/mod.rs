//! `raftkms drill`: a disaster-recovery drill against a running cluster.
//!
//! It records acknowledged writes and ciphertexts, cuts one region off (by running an operator's
//! command: stop its processes or containers, or disconnect their network), measures the time
//! until writes are acknowledged again through the surviving regions (RTO), checks that every
//! acknowledged write and every ciphertext is intact (RPO = 0), heals the region, waits until
//! every node reports the same state digest, and checks everything again through every node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use rand::RngCore;
use serde::Serialize;
use serde_json::json;

use crate::admin::AdminClient;
use crate::client::{KmsClient, KmsError};
use crate::raft::types::NodeId;

mod phases;
mod report;
mod verify;

pub use report::render;
use verify::{verify, verify_until, Expected};

/// Options of `raftkms drill`.
#[derive(Clone, Debug)]
pub struct DrillOptions {
    /// Region whose nodes are cut off.
    pub region: String,
    /// KMS region (`X-TC-Region`) of the drill's keys; default: the region being cut.
    pub key_region: Option<String>,
    /// Shell command that cuts the region off; placeholders `{region}`, `{ids}`, `{services}`,
    /// `{pids}`.
    pub cut: Option<String>,
    /// Shell command that heals it (same placeholders).
    pub heal: Option<String>,
    /// Directory of a `raftkms dev` cluster: its `nodeN.pid` files give `{pids}`, and without
    /// `--cut`/`--heal` the region is frozen with SIGSTOP and healed with SIGCONT.
    pub dev_dir: Option<PathBuf>,
    /// `from=to` address rewrites (host:port) for clusters whose advertised addresses are not
    /// reachable from here (containers with published ports).
    pub rewrite: Vec<(String, String)>,
    /// Keys created (and encrypted under) before the cut.
    pub keys: usize,
    /// How long to keep writing once writes are acknowledged again.
    pub outage_secs: u64,
    /// Upper bound for each waiting phase.
    pub timeout_secs: u64,
    /// Keep the drill's keys (default: disable them and schedule their deletion at the end).
    pub keep_keys: bool,
    pub json: bool,
}

#[derive(Clone, Debug)]
struct DrillNode {
    id: NodeId,
    region: String,
    api: String,
    admin: AdminClient,
}

/// One acknowledged ciphertext and the plaintext it must decrypt to.
struct Sealed {
    key_id: String,
    plaintext_b64: String,
    blob: String,
    via: NodeId,
}

/// The drill's findings.
#[derive(Debug, Default, Serialize)]
pub struct DrillReport {
    pub region: String,
    pub cut_nodes: Vec<NodeId>,
    pub surviving_nodes: Vec<NodeId>,
    pub leader_before: Option<NodeId>,
    pub leader_was_in_region: bool,
    pub quorum_survives: bool,
    pub keys_created: usize,
    pub ciphertexts: usize,
    /// Milliseconds from the cut to the first acknowledged write through a survivor.
    pub rto_ms: Option<u64>,
    pub writes_acknowledged_during_outage: usize,
    pub writes_failed_during_outage: usize,
    /// Acknowledged writes or ciphertexts found missing or wrong (must be 0).
    pub lost: usize,
    pub problems: Vec<String>,
    /// Stale Decrypt through a cut-off node while cut (None when the nodes did not answer at all).
    pub stale_reads_in_cut_region: Option<bool>,
    pub convergence_ms: Option<u64>,
    pub digest: Option<String>,
    pub checks_after_heal: usize,
    pub passed: bool,
    /// Wall-clock time the drill started and ended (Unix ms).
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
    /// The registry record the report was stored in for the console's DR view
    /// (`drill.<started_at_ms>`), or why it could not be stored.
    pub stored_as: Option<String>,
}

/// Version of the stored report (`{"v": 1, "report": …}` in record `drill.<ms>`).
pub const REPORT_VERSION: u32 = crate::wire::records::DRILL_REPORT_VERSION;

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Parses one `--rewrite FROM=TO` item: two non-empty addresses joined by one `=`. The error
/// names the item, so that a typo is reported instead of silently leaving an address as it is.
pub fn parse_rewrite(item: &str) -> Result<(String, String), String> {
    match item.split_once('=') {
        Some((from, to))
            if !from.trim().is_empty() && !to.trim().is_empty() && !to.contains('=') =>
        {
            Ok((from.to_string(), to.to_string()))
        }
        _ => Err(format!(
            "`{item}` is not FROM=TO (two host:port addresses joined by `=`)"
        )),
    }
}

fn rewrite(addr: &str, rules: &[(String, String)]) -> String {
    rules
        .iter()
        .find(|(from, _)| from == addr)
        .map(|(_, to)| to.clone())
        .unwrap_or_else(|| addr.to_string())
}

fn phase(json: bool, n: usize, total: usize, text: impl std::fmt::Display) {
    if !json {
        println!("[{n}/{total}] {text}");
    }
}

fn note(json: bool, text: impl std::fmt::Display) {
    if !json {
        println!("      {text}");
    }
}

/// Runs an operator command with the placeholders filled in; fails on a non-zero exit.
async fn run_hook(template: &str, vars: &BTreeMap<&str, String>) -> anyhow::Result<()> {
    let cmd = fill(template, vars);
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .status()
        .await
        .with_context(|| format!("cannot run `{cmd}`"))?;
    if !status.success() {
        bail!("`{cmd}` failed ({status})");
    }
    Ok(())
}

async fn with_timeout<T>(
    d: Duration,
    f: impl std::future::Future<Output = Result<T, KmsError>>,
) -> Result<T, KmsError> {
    tokio::time::timeout(d, f)
        .await
        .unwrap_or_else(|_| Err(KmsError::Transport(format!("no answer within {d:?}"))))
}

/// Phases of the drill, for the progress lines.
const PHASES: usize = 7;
/// Upper bound of one admin call, and of a stale read through a cut-off node.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Upper bound of one write while the region is cut: longer than the server's own write timeout.
const WRITE_TIMEOUT: Duration = Duration::from_secs(8);

/// What every phase works with: the options, the cluster's nodes split by the cut, and a KMS
/// client in the drill's key region.
struct Drill {
    opts: DrillOptions,
    /// Aimed at each node in turn (`kms.at(api)`), in `key_region`.
    kms: KmsClient,
    key_region: String,
    nodes: Vec<DrillNode>,
    cut: Vec<DrillNode>,
    survivors: Vec<DrillNode>,
    /// Upper bound of each waiting phase.
    timeout: Duration,
}

/// The keys and ciphertexts acknowledged before the cut.
struct Baseline {
    keys: Vec<String>,
    sealed: Vec<Sealed>,
}

/// The sequential writes to `target`'s description while the region is cut.
struct Writes {
    target: String,
    /// The sequence number of the last write sent (0: none).
    last_invoked: u64,
    last_acked: Option<u64>,
}

/// The operator's cut and heal commands and the placeholder values they are filled with.
struct Hooks {
    vars: BTreeMap<&'static str, String>,
    cut: String,
    heal: String,
}

impl Baseline {
    /// What must be found intact after `writes`.
    fn expected<'a>(&'a self, writes: &'a Writes) -> Expected<'a> {
        Expected {
            keys: &self.keys,
            sealed: &self.sealed,
            target: &writes.target,
            last_acked: writes.last_acked,
            last_invoked: writes.last_invoked,
        }
    }
}

/// Runs the drill; the report says whether it passed.
pub async fn run(
    opts: DrillOptions,
    admin: AdminClient,
    kms: KmsClient,
) -> anyhow::Result<DrillReport> {
    let mut report = DrillReport {
        region: opts.region.clone(),
        started_at_ms: wall_ms(),
        ..Default::default()
    };
    let outcome = run_phases(opts, &admin, kms, &mut report).await;
    // Stored however it ended: a drill that stopped early is in the DR view too, with why.
    if let Err(e) = &outcome {
        report.passed = false;
        report.problems.push(format!("the drill stopped: {e:#}"));
    }
    report.finished_at_ms = wall_ms();
    store(&admin, &mut report).await;
    match outcome {
        Ok(()) => Ok(report),
        // The error is all a stopped drill prints: it says where its report went.
        Err(e) => Err(e.context(format!(
            "the drill stopped (its report: {})",
            report.stored_as.as_deref().unwrap_or("not stored")
        ))),
    }
}

/// The drill's seven phases, filling in `report`.
async fn run_phases(
    opts: DrillOptions,
    admin: &AdminClient,
    kms: KmsClient,
    report: &mut DrillReport,
) -> anyhow::Result<()> {
    let drill = Drill::discover(opts, admin, kms, report).await?;
    let baseline = drill.baseline(report).await?;
    let hooks = drill.hooks(&report.cut_nodes)?;
    let mut healed = false;
    let result = drill
        .cut_and_heal(&hooks, &baseline, report, &mut healed)
        .await;
    if !healed {
        // Never leave a region cut off because a later step failed.
        if let Err(e) = run_hook(&hooks.heal, &hooks.vars).await {
            report.problems.push(format!("heal failed: {e}"));
        }
    }
    result?;
    report.passed = report.lost == 0
        && report.problems.is_empty()
        && report.convergence_ms.is_some()
        && (report.rto_ms.is_some() || !report.quorum_survives);
    phase(
        drill.opts.json,
        7,
        PHASES,
        format_args!(
            "verify: {} checks through all {} nodes after the heal; lost {}",
            report.checks_after_heal,
            drill.nodes.len(),
            report.lost
        ),
    );
    if !drill.opts.keep_keys {
        drill.retire_keys(&baseline.keys).await;
    }
    Ok(())
}

/// Stores the report in the registry (record `drill.<started_at_ms>`, 13 digits so that names
/// sort by time), where the console's DR view reads it. A failure is noted in the report, not
/// fatal: the drill's findings are printed either way.
async fn store(admin: &AdminClient, report: &mut DrillReport) {
    let name = format!(
        "{}{:013}",
        crate::wire::records::DRILL_PREFIX,
        report.started_at_ms
    );
    let value = match serde_json::to_string(&json!({ "v": REPORT_VERSION, "report": &*report })) {
        Ok(v) => v,
        Err(e) => {
            report.stored_as = Some(format!("not stored: {e}"));
            return;
        }
    };
    let admin = admin.clone().with_timeout(Duration::from_secs(10));
    report.stored_as = Some(match admin.put_record(&name, &value, None).await {
        Ok(reply) => match reply.outcome {
            crate::registry::Outcome::Applied { .. } => name,
            crate::registry::Outcome::Rejected(e) => format!("not stored: {e}"),
            other => format!("not stored: the cluster answered {other:?}"),
        },
        Err(e) => format!("not stored: {e}"),
    });
}

impl Drill {
    /// Phase 1, topology: reads the membership the cluster itself reports, splits its nodes
    /// into the region being cut and the survivors (refusing a cut of nothing or of
    /// everything), and records the leader and whether a quorum of voters survives.
    async fn discover(
        opts: DrillOptions,
        admin: &AdminClient,
        kms: KmsClient,
        report: &mut DrillReport,
    ) -> anyhow::Result<Drill> {
        let status = admin
            .status()
            .await
            .context("cannot read the cluster status")?;
        let nodes: Vec<DrillNode> = status
            .nodes
            .iter()
            .map(|(id, n)| DrillNode {
                id: *id,
                region: n.region.clone(),
                api: rewrite(&n.api_addr, &opts.rewrite),
                admin: admin
                    .at(rewrite(&n.raft_addr, &opts.rewrite))
                    .with_timeout(CALL_TIMEOUT),
            })
            .collect();
        let (cut, survivors): (Vec<DrillNode>, Vec<DrillNode>) =
            nodes.iter().cloned().partition(|n| n.region == opts.region);
        if cut.is_empty() {
            let regions: std::collections::BTreeSet<&str> =
                nodes.iter().map(|n| n.region.as_str()).collect();
            bail!(
                "no node of this cluster is in region `{}` (regions: {})",
                opts.region,
                regions.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        if survivors.is_empty() {
            bail!(
                "every node is in region `{}`: nothing would survive the cut",
                opts.region
            );
        }
        let key_region = opts
            .key_region
            .clone()
            .unwrap_or_else(|| opts.region.clone());
        let drill = Drill {
            kms: kms.in_region(&key_region),
            key_region,
            nodes,
            cut,
            survivors,
            timeout: Duration::from_secs(opts.timeout_secs),
            opts,
        };
        drill.record_topology(status.leader, &status.voters, report);
        Ok(drill)
    }

    /// The end of phase 1: cut and surviving nodes, the leader and the surviving voters go
    /// into the report and the phase line.
    fn record_topology(&self, leader: Option<NodeId>, voters: &[NodeId], report: &mut DrillReport) {
        report.cut_nodes = self.cut.iter().map(|n| n.id).collect();
        report.surviving_nodes = self.survivors.iter().map(|n| n.id).collect();
        report.leader_before = leader;
        report.leader_was_in_region = leader.is_some_and(|l| report.cut_nodes.contains(&l));
        let surviving_voters = voters
            .iter()
            .filter(|v| !report.cut_nodes.contains(v))
            .count();
        report.quorum_survives = surviving_voters * 2 > voters.len();
        phase(
            self.opts.json,
            1,
            PHASES,
            format_args!(
                "topology: cutting region {} = nodes {:?}; survivors {:?}; leader {:?}{}; {} of {} voters survive ({})",
                self.opts.region,
                report.cut_nodes,
                report.surviving_nodes,
                leader,
                if report.leader_was_in_region { " (in the cut region)" } else { "" },
                surviving_voters,
                voters.len(),
                if report.quorum_survives { "a quorum" } else { "NO quorum: writes stop until the heal" }
            ),
        );
    }

    /// Phase 2, baseline: keys created and ciphertexts made through every node in turn (the
    /// region's included), each acknowledged before the cut.
    async fn baseline(&self, report: &mut DrillReport) -> anyhow::Result<Baseline> {
        let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let mut keys: Vec<String> = Vec::new();
        let mut sealed: Vec<Sealed> = Vec::new();
        for i in 0..self.opts.keys.max(2) {
            let node = &self.nodes[i % self.nodes.len()];
            let s = self
                .create_and_seal(node, &format!("drill-{run_id}-{i}"))
                .await?;
            keys.push(s.key_id.clone());
            sealed.push(s);
        }
        report.keys_created = keys.len();
        report.ciphertexts = sealed.len();
        phase(
            self.opts.json,
            2,
            PHASES,
            format_args!(
                "baseline: {} keys created and {} ciphertexts made in region {}, through every node",
                keys.len(),
                sealed.len(),
                self.key_region
            ),
        );
        Ok(Baseline { keys, sealed })
    }

    /// One key of the baseline: CreateKey with `alias`, then Encrypt of random bytes under it,
    /// both through `node`.
    async fn create_and_seal(&self, node: &DrillNode, alias: &str) -> anyhow::Result<Sealed> {
        let c = self.kms.at(&node.api);
        let key = with_timeout(
            Duration::from_secs(10),
            c.call(
                "CreateKey",
                json!({"Alias": alias, "Description": "raftkms drill"}),
            ),
        )
        .await
        .with_context(|| format!("CreateKey through node {} before the cut", node.id))?;
        let key_id = key["KeyId"].as_str().unwrap_or_default().to_string();
        let mut pt = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut pt);
        let plaintext_b64 = base64::engine::general_purpose::STANDARD.encode(pt);
        let enc = with_timeout(
            Duration::from_secs(10),
            c.call(
                "Encrypt",
                json!({"KeyId": key_id, "Plaintext": plaintext_b64}),
            ),
        )
        .await
        .with_context(|| format!("Encrypt through node {} before the cut", node.id))?;
        Ok(Sealed {
            key_id,
            plaintext_b64,
            blob: enc["CiphertextBlob"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            via: node.id,
        })
    }

    /// The cut and heal commands with their placeholders: `{region}`, `{ids}`, `{services}`,
    /// and `{pids}` from the pid files of a `raftkms dev` cluster (whose default hooks freeze
    /// and resume those processes).
    fn hooks(&self, cut_nodes: &[NodeId]) -> anyhow::Result<Hooks> {
        let mut vars: BTreeMap<&'static str, String> = BTreeMap::new();
        vars.insert("region", self.opts.region.clone());
        let ids: Vec<String> = cut_nodes.iter().map(|i| i.to_string()).collect();
        vars.insert("ids", ids.join(" "));
        let services: Vec<String> = cut_nodes.iter().map(|i| format!("node{i}")).collect();
        vars.insert("services", services.join(" "));
        if let Some(dir) = &self.opts.dev_dir {
            let mut pids = Vec::new();
            for id in cut_nodes {
                let path = dir.join(format!("node{id}.pid"));
                let pid = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                pids.push(pid.trim().to_string());
            }
            vars.insert("pids", pids.join(" "));
        }
        let (cut, heal) = match (&self.opts.cut, &self.opts.heal, &self.opts.dev_dir) {
            (Some(c), Some(h), _) => (c.clone(), h.clone()),
            (None, None, Some(_)) => (
                "kill -STOP {pids}".to_string(),
                "kill -CONT {pids}".to_string(),
            ),
            _ => bail!(
                "give both --cut and --heal commands, or --dev DIR for a `raftkms dev` cluster"
            ),
        };
        Ok(Hooks { vars, cut, heal })
    }
}

fn fill(template: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_is_two_addresses_joined_by_one_equals_sign() {
        assert_eq!(
            parse_rewrite("node1:7001=127.0.0.1:17001"),
            Ok(("node1:7001".to_string(), "127.0.0.1:17001".to_string()))
        );
        let rules = vec![parse_rewrite("a:1=b:2").unwrap()];
        assert_eq!(rewrite("a:1", &rules), "b:2");
        assert_eq!(rewrite("c:3", &rules), "c:3");
    }

    #[test]
    fn a_malformed_rewrite_is_an_error_naming_it() {
        for bad in [
            "node1:7001",
            "=b:2",
            "a:1=",
            "=",
            "",
            " =b:2",
            "a:1=b:2=c:3",
        ] {
            let err = parse_rewrite(bad).unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{bad:?}: {err}");
        }
    }

    #[test]
    fn placeholders_are_filled() {
        let vars = BTreeMap::from([("ids", "1 2".to_string()), ("region", "r".to_string())]);
        assert_eq!(
            fill("stop {ids} in {region} {x}", &vars),
            "stop 1 2 in r {x}"
        );
    }
}
