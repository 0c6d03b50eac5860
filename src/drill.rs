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
        ..Default::default()
    };
    let drill = Drill::discover(opts, &admin, kms, &mut report).await?;
    let baseline = drill.baseline(&mut report).await?;
    let hooks = drill.hooks(&report.cut_nodes)?;
    let mut healed = false;
    let result = drill
        .cut_and_heal(&hooks, &baseline, &mut report, &mut healed)
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
    Ok(report)
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

    /// Phases 3 to 7 (but the phase-7 line): cut, failover, RPO while cut, heal and converge,
    /// and every check again through every node. Sets `healed` once the heal command has
    /// succeeded, so that the caller heals after any earlier failure.
    async fn cut_and_heal(
        &self,
        hooks: &Hooks,
        baseline: &Baseline,
        report: &mut DrillReport,
        healed: &mut bool,
    ) -> anyhow::Result<()> {
        run_hook(&hooks.cut, &hooks.vars).await?;
        let cut_at = Instant::now();
        phase(
            self.opts.json,
            3,
            PHASES,
            format_args!("cut: `{}` done", fill(&hooks.cut, &hooks.vars)),
        );
        let writes = self.failover(cut_at, &baseline.keys, report).await;
        self.rpo_while_cut(baseline, &writes, report).await;
        run_hook(&hooks.heal, &hooks.vars).await?;
        *healed = true;
        self.converge(hooks, report).await;
        // Phase 7: everything again, through every node (the healed ones included).
        let expected = baseline.expected(&writes);
        report.checks_after_heal =
            verify_until(&self.kms, &self.nodes, &expected, self.timeout, report).await;
        Ok(())
    }

    /// Phase 4, failover: probes until a write through the survivors is acknowledged (the
    /// RTO), then `outage_secs` of sequential writes, each setting the description of the
    /// first drill key to the next sequence number, so that the final value tells whether an
    /// acknowledged write was lost.
    async fn failover(&self, cut_at: Instant, keys: &[String], report: &mut DrillReport) -> Writes {
        let probe_key = &keys[1 % keys.len()];
        self.probe_until_acknowledged(cut_at, probe_key, report)
            .await;
        let mut writes = Writes {
            target: keys[0].clone(),
            last_invoked: 0,
            last_acked: None,
        };
        if report.rto_ms.is_some() {
            self.sequential_writes(&mut writes, report).await;
        }
        phase(
            self.opts.json,
            4,
            PHASES,
            match report.rto_ms {
                Some(ms) => format!(
                    "failover: writes resumed after {ms} ms (RTO); {} acknowledged, {} failed during the outage",
                    report.writes_acknowledged_during_outage, report.writes_failed_during_outage
                ),
                None => format!(
                    "failover: no write acknowledged within {} s of the cut ({} failed)",
                    self.opts.timeout_secs, report.writes_failed_during_outage
                ),
            },
        );
        writes
    }

    /// The RTO probe: a write every 50 ms through the survivors in turn, each allowed
    /// [`WRITE_TIMEOUT`], until one is acknowledged (sets `rto_ms`) or the timeout ends.
    async fn probe_until_acknowledged(
        &self,
        cut_at: Instant,
        probe_key: &str,
        report: &mut DrillReport,
    ) {
        let json = self.opts.json;
        let mut probes = tokio::task::JoinSet::new();
        let mut probe_n = 0usize;
        while report.rto_ms.is_none() && cut_at.elapsed() < self.timeout {
            let node = &self.survivors[probe_n % self.survivors.len()];
            probe_n += 1;
            let c = self.kms.at(&node.api);
            let (key, id, n) = (probe_key.to_string(), node.id, probe_n);
            probes.spawn(async move {
                let r = with_timeout(
                    WRITE_TIMEOUT,
                    c.call(
                        "UpdateKeyDescription",
                        json!({"KeyId": key, "Description": format!("drill-probe-{n}")}),
                    ),
                )
                .await;
                (id, r.is_ok())
            });
            let tick = tokio::time::sleep(Duration::from_millis(50));
            tokio::pin!(tick);
            loop {
                tokio::select! {
                    _ = &mut tick => break,
                    Some(done) = probes.join_next() => {
                        match done {
                            Ok((id, true)) => {
                                let rto = cut_at.elapsed();
                                report.rto_ms = Some(rto.as_millis() as u64);
                                report.writes_acknowledged_during_outage += 1;
                                note(json, format_args!("first write acknowledged {} ms after the cut (through node {id})", rto.as_millis()));
                                break;
                            }
                            _ => report.writes_failed_during_outage += 1,
                        }
                    }
                }
            }
        }
        probes.abort_all();
    }

    /// `outage_secs` of sequential writes `drill-seq-N` to the target key's description
    /// through the survivors in turn, counting acknowledged and failed ones.
    async fn sequential_writes(&self, writes: &mut Writes, report: &mut DrillReport) {
        let until = Instant::now() + Duration::from_secs(self.opts.outage_secs);
        let mut rr = 0usize;
        while Instant::now() < until {
            writes.last_invoked += 1;
            let seq = writes.last_invoked;
            let node = &self.survivors[rr % self.survivors.len()];
            rr += 1;
            let r = with_timeout(
                WRITE_TIMEOUT,
                self.kms.at(&node.api).call(
                    "UpdateKeyDescription",
                    json!({"KeyId": writes.target, "Description": format!("drill-seq-{seq}")}),
                ),
            )
            .await;
            if r.is_ok() {
                writes.last_acked = Some(seq);
                report.writes_acknowledged_during_outage += 1;
            } else {
                report.writes_failed_during_outage += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Phase 5, RPO while cut: everything acknowledged is readable through the survivors (when
    /// writes resumed, i.e. they have a quorum), and the cut region answers stale reads if it
    /// can be reached at all.
    async fn rpo_while_cut(&self, baseline: &Baseline, writes: &Writes, report: &mut DrillReport) {
        if report.rto_ms.is_some() {
            let expected = baseline.expected(writes);
            let checks = verify(&self.kms, &self.survivors, &expected, report).await;
            note(
                self.opts.json,
                format_args!("{checks} checks through the survivors"),
            );
        }
        report.stale_reads_in_cut_region =
            self.stale_reads_in_cut_region(&baseline.sealed[0]).await;
        phase(
            self.opts.json,
            5,
            PHASES,
            format_args!(
                "RPO: {} acknowledged writes/ciphertexts lost; stale reads in the cut region: {}",
                report.lost,
                match report.stale_reads_in_cut_region {
                    None => "nodes unreachable (stopped)",
                    Some(true) => "answering",
                    Some(false) => "FAILING",
                }
            ),
        );
    }

    /// A stale Decrypt of `probe` through each cut-off node: `None` when none answered at all,
    /// else whether every answer was the right plaintext.
    async fn stale_reads_in_cut_region(&self, probe: &Sealed) -> Option<bool> {
        let mut stale = self.kms.clone();
        stale.consistency = Some("stale".into());
        let mut answered = false;
        let mut ok = true;
        for n in &self.cut {
            match with_timeout(
                CALL_TIMEOUT,
                stale
                    .at(&n.api)
                    .call("Decrypt", json!({"CiphertextBlob": probe.blob})),
            )
            .await
            {
                Ok(v) => {
                    answered = true;
                    ok &= v["Plaintext"].as_str() == Some(probe.plaintext_b64.as_str());
                }
                Err(KmsError::Api { .. }) => {
                    answered = true;
                    ok = false;
                }
                Err(_) => {}
            }
        }
        answered.then_some(ok)
    }

    /// Phase 6 after the heal command: waits until every node reports the same applied index
    /// and state digest, and records how long that took (or a problem at the timeout).
    async fn converge(&self, hooks: &Hooks, report: &mut DrillReport) {
        let healed_at = Instant::now();
        match self.one_digest_since(healed_at).await {
            Some(d) => {
                report.convergence_ms = Some(healed_at.elapsed().as_millis() as u64);
                report.digest = Some(d);
            }
            None => report.problems.push(format!(
                "nodes did not converge to one state digest within {} s of the heal",
                self.opts.timeout_secs
            )),
        }
        let heal = fill(&hooks.heal, &hooks.vars);
        phase(
            self.opts.json,
            6,
            PHASES,
            match report.convergence_ms {
                Some(ms) => format!(
                    "heal: `{heal}`; all {} nodes converged in {ms} ms (digest {})",
                    self.nodes.len(),
                    report
                        .digest
                        .as_deref()
                        .unwrap_or("")
                        .get(..16)
                        .unwrap_or("")
                ),
                None => format!("heal: `{heal}`; nodes did NOT converge"),
            },
        );
    }

    /// Polls every node's digest every 100 ms until all answer with the same one (returned),
    /// or `None` once the timeout has passed since `since`.
    async fn one_digest_since(&self, since: Instant) -> Option<String> {
        loop {
            let mut seen = Vec::new();
            for n in &self.nodes {
                if let Ok(d) = n.admin.digest().await {
                    seen.push((d.applied_index, d.digest));
                }
            }
            if seen.len() == self.nodes.len() && seen.windows(2).all(|w| w[0] == w[1]) {
                return seen.first().map(|(_, d)| d.clone());
            }
            if since.elapsed() > self.timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The end of the drill: disables the drill's keys and schedules their deletion, through
    /// the first survivor (failures are ignored).
    async fn retire_keys(&self, keys: &[String]) {
        for k in keys {
            let c = self.kms.at(&self.survivors[0].api);
            let _ = c.call("DisableKey", json!({"KeyId": k})).await;
            let _ = c
                .call(
                    "ScheduleKeyDeletion",
                    json!({"KeyId": k, "PendingWindowInDays": 7}),
                )
                .await;
        }
    }
}

fn fill(template: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

/// What must be found intact: the acknowledged keys and ciphertexts, and the sequential writes
/// to `target`'s description (the last acknowledged and the last sent sequence numbers).
struct Expected<'a> {
    keys: &'a [String],
    sealed: &'a [Sealed],
    target: &'a str,
    last_acked: Option<u64>,
    last_invoked: u64,
}

/// Checks every key and ciphertext through `nodes` (linearizable reads); returns the number of
/// checks and adds every loss to the report.
async fn verify(
    kms: &KmsClient,
    nodes: &[DrillNode],
    expected: &Expected<'_>,
    report: &mut DrillReport,
) -> usize {
    let mut checks = 0;
    for n in nodes {
        let c = kms.at(&n.api);
        for k in expected.keys {
            checks += 1;
            check_key(&c, n.id, k, expected, report).await;
        }
        for s in expected.sealed {
            checks += 1;
            check_sealed(&c, n.id, s, report).await;
        }
    }
    checks
}

/// DescribeKey of `k` through `c` (node `node`); for the target key, its description must be
/// a sequential write at least as late as the last acknowledged one and one actually sent.
async fn check_key(
    c: &KmsClient,
    node: NodeId,
    k: &str,
    expected: &Expected<'_>,
    report: &mut DrillReport,
) {
    let (last_acked, last_invoked) = (expected.last_acked, expected.last_invoked);
    match with_timeout(
        Duration::from_secs(5),
        c.call("DescribeKey", json!({"KeyId": k})),
    )
    .await
    {
        Ok(v) => {
            if k == expected.target {
                let desc = v["KeyMetadata"]["Description"].as_str().unwrap_or_default();
                let seen = desc
                    .strip_prefix("drill-seq-")
                    .and_then(|s| s.parse::<u64>().ok());
                // The value must be at least the last acknowledged write and one that
                // was actually sent.
                let fine = match (last_acked, seen) {
                    (None, _) => true,
                    (Some(a), Some(s)) => s >= a && s <= last_invoked,
                    (Some(_), None) => false,
                };
                if !fine {
                    report.lost += 1;
                    report.problems.push(format!(
                        "node {node}: key {k} has description `{desc}`, but write {} was acknowledged",
                        last_acked.unwrap_or(0)
                    ));
                }
            }
        }
        Err(e) => {
            report.lost += 1;
            report
                .problems
                .push(format!("node {node}: DescribeKey {k}: {e}"));
        }
    }
}

/// Decrypt of one acknowledged ciphertext through `c` (node `node`): it must give back its
/// plaintext.
async fn check_sealed(c: &KmsClient, node: NodeId, s: &Sealed, report: &mut DrillReport) {
    match with_timeout(
        Duration::from_secs(5),
        c.call("Decrypt", json!({"CiphertextBlob": s.blob})),
    )
    .await
    {
        Ok(v) if v["Plaintext"].as_str() == Some(s.plaintext_b64.as_str()) => {}
        Ok(_) => {
            report.lost += 1;
            report.problems.push(format!(
                "node {node}: a ciphertext of key {} (made via node {}) decrypts to the wrong plaintext",
                s.key_id, s.via
            ));
        }
        Err(e) => {
            report.lost += 1;
            report.problems.push(format!(
                "node {node}: a ciphertext of key {} (made via node {}) does not decrypt: {e}",
                s.key_id, s.via
            ));
        }
    }
}

/// As [`verify`], retried until it passes or `timeout` ends (healed nodes may still be
/// electing or catching up); losses are counted from the last attempt only.
async fn verify_until(
    kms: &KmsClient,
    nodes: &[DrillNode],
    expected: &Expected<'_>,
    timeout: Duration,
    report: &mut DrillReport,
) -> usize {
    let started = Instant::now();
    loop {
        let mut attempt = DrillReport::default();
        let checks = verify(kms, nodes, expected, &mut attempt).await;
        if attempt.lost == 0 || started.elapsed() > timeout {
            report.lost += attempt.lost;
            report.problems.extend(attempt.problems);
            return checks;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The human-readable report.
pub fn render(r: &DrillReport) -> String {
    let mut s = String::new();
    s.push_str(&format!("\nDR drill report: region {}\n", r.region));
    s.push_str(&format!(
        "  cut nodes            {:?} (leader before: {:?}{})\n",
        r.cut_nodes,
        r.leader_before,
        if r.leader_was_in_region {
            ", in the cut region"
        } else {
            ""
        }
    ));
    s.push_str(&format!(
        "  surviving nodes      {:?} (quorum: {})\n",
        r.surviving_nodes,
        if r.quorum_survives { "yes" } else { "no" }
    ));
    s.push_str(&format!(
        "  RTO                  {}\n",
        r.rto_ms
            .map(|m| format!("{m} ms (cut -> first acknowledged write)"))
            .unwrap_or_else(|| "writes did not resume while cut".into())
    ));
    s.push_str(&format!(
        "  RPO                  {} lost of {} keys, {} ciphertexts and {} writes acknowledged during the outage\n",
        r.lost, r.keys_created, r.ciphertexts, r.writes_acknowledged_during_outage
    ));
    s.push_str(&format!(
        "  stale reads (cut)    {}\n",
        match r.stale_reads_in_cut_region {
            None => "not reachable (nodes stopped)",
            Some(true) => "served",
            Some(false) => "FAILED",
        }
    ));
    s.push_str(&format!(
        "  convergence          {}\n",
        r.convergence_ms
            .map(|m| format!(
                "{m} ms after the heal, digest {}",
                r.digest.as_deref().unwrap_or("")
            ))
            .unwrap_or_else(|| "NOT reached".into())
    ));
    for p in &r.problems {
        s.push_str(&format!("  problem: {p}\n"));
    }
    s.push_str(&format!(
        "  result               {}\n",
        if r.passed { "PASS (RPO 0)" } else { "FAIL" }
    ));
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
