//! Phases 3 to 7 of the drill: cut, failover and RTO, RPO while cut, heal, convergence.

use std::time::{Duration, Instant};

use super::*;

impl Drill {
    /// Phases 3 to 7 (but the phase-7 line): cut, failover, RPO while cut, heal and converge,
    /// and every check again through every node. Sets `healed` once the heal command has
    /// succeeded, so that the caller heals after any earlier failure.
    pub(super) async fn cut_and_heal(
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
    pub(super) async fn failover(
        &self,
        cut_at: Instant,
        keys: &[String],
        report: &mut DrillReport,
    ) -> Writes {
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
    pub(super) async fn probe_until_acknowledged(
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
    pub(super) async fn sequential_writes(&self, writes: &mut Writes, report: &mut DrillReport) {
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
    pub(super) async fn rpo_while_cut(
        &self,
        baseline: &Baseline,
        writes: &Writes,
        report: &mut DrillReport,
    ) {
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
    pub(super) async fn stale_reads_in_cut_region(&self, probe: &Sealed) -> Option<bool> {
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
    pub(super) async fn converge(&self, hooks: &Hooks, report: &mut DrillReport) {
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
    pub(super) async fn one_digest_since(&self, since: Instant) -> Option<String> {
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
    pub(super) async fn retire_keys(&self, keys: &[String]) {
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
