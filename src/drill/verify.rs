//! The checks of the drill: every acknowledged key and ciphertext intact, through every node.

use super::*;

/// What must be found intact: the acknowledged keys and ciphertexts, and the sequential writes
/// to `target`'s description (the last acknowledged and the last sent sequence numbers).
pub(super) struct Expected<'a> {
    pub(super) keys: &'a [String],
    pub(super) sealed: &'a [Sealed],
    pub(super) target: &'a str,
    pub(super) last_acked: Option<u64>,
    pub(super) last_invoked: u64,
}

/// Checks every key and ciphertext through `nodes` (linearizable reads); returns the number of
/// checks and adds every loss to the report.
pub(super) async fn verify(
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
pub(super) async fn check_key(
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
pub(super) async fn check_sealed(
    c: &KmsClient,
    node: NodeId,
    s: &Sealed,
    report: &mut DrillReport,
) {
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
pub(super) async fn verify_until(
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
