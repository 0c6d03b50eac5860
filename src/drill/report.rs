//! The drill's human-readable report.

use super::*;

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
    if let Some(stored) = &r.stored_as {
        s.push_str(&format!(
            "  report stored as     {stored} (the console's DR view)\n"
        ));
    }
    for p in &r.problems {
        s.push_str(&format!("  problem: {p}\n"));
    }
    s.push_str(&format!(
        "  result               {}\n",
        if r.passed { "PASS (RPO 0)" } else { "FAIL" }
    ));
    s
}
