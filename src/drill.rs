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

/// Runs the drill; the report says whether it passed.
pub async fn run(
    opts: DrillOptions,
    admin: AdminClient,
    kms: KmsClient,
) -> anyhow::Result<DrillReport> {
    const PHASES: usize = 7;
    let json = opts.json;
    let timeout = Duration::from_secs(opts.timeout_secs);
    let call_timeout = Duration::from_secs(3);
    let mut report = DrillReport {
        region: opts.region.clone(),
        ..Default::default()
    };

    // 1. Topology, from the membership the cluster itself reports.
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
                .with_timeout(call_timeout),
        })
        .collect();
    let (cut, survivors): (Vec<&DrillNode>, Vec<&DrillNode>) =
        nodes.iter().partition(|n| n.region == opts.region);
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
    report.cut_nodes = cut.iter().map(|n| n.id).collect();
    report.surviving_nodes = survivors.iter().map(|n| n.id).collect();
    report.leader_before = status.leader;
    report.leader_was_in_region = status.leader.is_some_and(|l| report.cut_nodes.contains(&l));
    let surviving_voters = status
        .voters
        .iter()
        .filter(|v| !report.cut_nodes.contains(v))
        .count();
    report.quorum_survives = surviving_voters * 2 > status.voters.len();
    phase(
        json,
        1,
        PHASES,
        format_args!(
            "topology: cutting region {} = nodes {:?}; survivors {:?}; leader {:?}{}; {} of {} voters survive ({})",
            opts.region,
            report.cut_nodes,
            report.surviving_nodes,
            status.leader,
            if report.leader_was_in_region { " (in the cut region)" } else { "" },
            surviving_voters,
            status.voters.len(),
            if report.quorum_survives { "a quorum" } else { "NO quorum: writes stop until the heal" }
        ),
    );

    // 2. Baseline: keys and ciphertexts acknowledged through every node, including the region's.
    let key_region = opts
        .key_region
        .clone()
        .unwrap_or_else(|| opts.region.clone());
    let kms = kms.in_region(&key_region);
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut keys: Vec<String> = Vec::new();
    let mut sealed: Vec<Sealed> = Vec::new();
    for i in 0..opts.keys.max(2) {
        let node = &nodes[i % nodes.len()];
        let c = kms.at(&node.api);
        let key = with_timeout(
            Duration::from_secs(10),
            c.call(
                "CreateKey",
                json!({"Alias": format!("drill-{run_id}-{i}"), "Description": "raftkms drill"}),
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
        sealed.push(Sealed {
            key_id: key_id.clone(),
            plaintext_b64,
            blob: enc["CiphertextBlob"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            via: node.id,
        });
        keys.push(key_id);
    }
    report.keys_created = keys.len();
    report.ciphertexts = sealed.len();
    phase(
        json,
        2,
        PHASES,
        format_args!(
            "baseline: {} keys created and {} ciphertexts made in region {key_region}, through every node",
            keys.len(),
            sealed.len()
        ),
    );

    // 3. Cut.
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    vars.insert("region", opts.region.clone());
    vars.insert(
        "ids",
        report
            .cut_nodes
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" "),
    );
    vars.insert(
        "services",
        report
            .cut_nodes
            .iter()
            .map(|i| format!("node{i}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    if let Some(dir) = &opts.dev_dir {
        let mut pids = Vec::new();
        for id in &report.cut_nodes {
            let path = dir.join(format!("node{id}.pid"));
            let pid = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            pids.push(pid.trim().to_string());
        }
        vars.insert("pids", pids.join(" "));
    }
    let (cut_cmd, heal_cmd) = match (&opts.cut, &opts.heal, &opts.dev_dir) {
        (Some(c), Some(h), _) => (c.clone(), h.clone()),
        (None, None, Some(_)) => (
            "kill -STOP {pids}".to_string(),
            "kill -CONT {pids}".to_string(),
        ),
        _ => bail!("give both --cut and --heal commands, or --dev DIR for a `raftkms dev` cluster"),
    };
    let mut healed = false;
    let result = async {
        run_hook(&cut_cmd, &vars).await?;
        let cut_at = Instant::now();
        phase(json, 3, PHASES, format_args!("cut: `{}` done", fill(&cut_cmd, &vars)));

        // 4. Failover. Probes (a write every 50 ms through the survivors in turn, each allowed
        // longer than the server's own write timeout) until one is acknowledged: that is the
        // RTO. Then `outage_secs` of sequential writes, each setting the description of the first
        // drill key to the next sequence number, so the final value tells whether an
        // acknowledged write was lost.
        let target = keys[0].clone();
        let probe_key = keys[1 % keys.len()].clone();
        let write_timeout = Duration::from_secs(8);
        let mut probes = tokio::task::JoinSet::new();
        let mut probe_n = 0usize;
        while report.rto_ms.is_none() && cut_at.elapsed() < timeout {
            let node = survivors[probe_n % survivors.len()];
            probe_n += 1;
            let c = kms.at(&node.api);
            let (key, id, n) = (probe_key.clone(), node.id, probe_n);
            probes.spawn(async move {
                let r = with_timeout(
                    write_timeout,
                    c.call("UpdateKeyDescription", json!({"KeyId": key, "Description": format!("drill-probe-{n}")})),
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
        let mut seq = 0u64;
        let mut last_acked: Option<u64> = None;
        if report.rto_ms.is_some() {
            let until = Instant::now() + Duration::from_secs(opts.outage_secs);
            let mut rr = 0usize;
            while Instant::now() < until {
                seq += 1;
                let node = survivors[rr % survivors.len()];
                rr += 1;
                let r = with_timeout(
                    write_timeout,
                    kms.at(&node.api).call(
                        "UpdateKeyDescription",
                        json!({"KeyId": target, "Description": format!("drill-seq-{seq}")}),
                    ),
                )
                .await;
                if r.is_ok() {
                    last_acked = Some(seq);
                    report.writes_acknowledged_during_outage += 1;
                } else {
                    report.writes_failed_during_outage += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        phase(
            json,
            4,
            PHASES,
            match report.rto_ms {
                Some(ms) => format!(
                    "failover: writes resumed after {ms} ms (RTO); {} acknowledged, {} failed during the outage",
                    report.writes_acknowledged_during_outage, report.writes_failed_during_outage
                ),
                None => format!(
                    "failover: no write acknowledged within {} s of the cut ({} failed)",
                    opts.timeout_secs, report.writes_failed_during_outage
                ),
            },
        );

        // 5. RPO while cut: everything acknowledged is readable through the survivors (when they
        // have a quorum), and the cut region answers stale reads if it can be reached at all.
        if report.rto_ms.is_some() {
            let expected = Expected { keys: &keys, sealed: &sealed, target: &target, last_acked, last_invoked: seq };
            let checks = verify(&kms, &survivors, &expected, &mut report).await;
            note(json, format_args!("{checks} checks through the survivors"));
        }
        let mut stale = kms.clone();
        stale.consistency = Some("stale".into());
        let probe = &sealed[0];
        let mut answered = false;
        let mut ok = true;
        for n in &cut {
            match with_timeout(call_timeout, stale.at(&n.api).call("Decrypt", json!({"CiphertextBlob": probe.blob}))).await {
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
        report.stale_reads_in_cut_region = answered.then_some(ok);
        phase(
            json,
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

        // 6. Heal and converge.
        run_hook(&heal_cmd, &vars).await?;
        healed = true;
        let healed_at = Instant::now();
        let digest = loop {
            let mut seen = Vec::new();
            for n in &nodes {
                if let Ok(d) = n.admin.digest().await {
                    seen.push((d.applied_index, d.digest));
                }
            }
            if seen.len() == nodes.len() && seen.windows(2).all(|w| w[0] == w[1]) {
                break seen.first().map(|(_, d)| d.clone());
            }
            if healed_at.elapsed() > timeout {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        match &digest {
            Some(d) => {
                report.convergence_ms = Some(healed_at.elapsed().as_millis() as u64);
                report.digest = Some(d.clone());
            }
            None => report.problems.push(format!(
                "nodes did not converge to one state digest within {} s of the heal",
                opts.timeout_secs
            )),
        }
        phase(
            json,
            6,
            PHASES,
            match report.convergence_ms {
                Some(ms) => format!("heal: `{}`; all {} nodes converged in {ms} ms (digest {})", fill(&heal_cmd, &vars), nodes.len(), report.digest.as_deref().unwrap_or("").get(..16).unwrap_or("")),
                None => format!("heal: `{}`; nodes did NOT converge", fill(&heal_cmd, &vars)),
            },
        );

        // 7. Everything again, through every node (the healed ones included).
        let all: Vec<&DrillNode> = nodes.iter().collect();
        let expected = Expected { keys: &keys, sealed: &sealed, target: &target, last_acked, last_invoked: seq };
        let checks = verify_until(&kms, &all, &expected, timeout, &mut report).await;
        report.checks_after_heal = checks;
        anyhow::Ok(())
    }
    .await;
    if !healed {
        // Never leave a region cut off because a later step failed.
        if let Err(e) = run_hook(&heal_cmd, &vars).await {
            report.problems.push(format!("heal failed: {e}"));
        }
    }
    result?;
    report.passed = report.lost == 0
        && report.problems.is_empty()
        && report.convergence_ms.is_some()
        && (report.rto_ms.is_some() || !report.quorum_survives);
    phase(
        json,
        7,
        PHASES,
        format_args!(
            "verify: {} checks through all {} nodes after the heal; lost {}",
            report.checks_after_heal,
            nodes.len(),
            report.lost
        ),
    );
    if !opts.keep_keys {
        for k in &keys {
            let c = kms.at(&survivors[0].api);
            let _ = c.call("DisableKey", json!({"KeyId": k})).await;
            let _ = c
                .call(
                    "ScheduleKeyDeletion",
                    json!({"KeyId": k, "PendingWindowInDays": 7}),
                )
                .await;
        }
    }
    Ok(report)
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
    nodes: &[&DrillNode],
    expected: &Expected<'_>,
    report: &mut DrillReport,
) -> usize {
    let Expected {
        keys,
        sealed,
        target,
        last_acked,
        last_invoked,
    } = *expected;
    let mut checks = 0;
    for n in nodes {
        let c = kms.at(&n.api);
        for k in keys {
            checks += 1;
            match with_timeout(
                Duration::from_secs(5),
                c.call("DescribeKey", json!({"KeyId": k})),
            )
            .await
            {
                Ok(v) => {
                    if k == target {
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
                                "node {}: key {k} has description `{desc}`, but write {} was acknowledged",
                                n.id,
                                last_acked.unwrap_or(0)
                            ));
                        }
                    }
                }
                Err(e) => {
                    report.lost += 1;
                    report
                        .problems
                        .push(format!("node {}: DescribeKey {k}: {e}", n.id));
                }
            }
        }
        for s in sealed {
            checks += 1;
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
                        "node {}: a ciphertext of key {} (made via node {}) decrypts to the wrong plaintext",
                        n.id, s.key_id, s.via
                    ));
                }
                Err(e) => {
                    report.lost += 1;
                    report.problems.push(format!(
                        "node {}: a ciphertext of key {} (made via node {}) does not decrypt: {e}",
                        n.id, s.key_id, s.via
                    ));
                }
            }
        }
    }
    checks
}

/// As [`verify`], retried until it passes or `timeout` ends (healed nodes may still be
/// electing or catching up); losses are counted from the last attempt only.
async fn verify_until(
    kms: &KmsClient,
    nodes: &[&DrillNode],
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
