//! The raftkms extensions behind the console's cluster and DR views (docs/api.md §5):
//! DescribeClusterStatus, DescribeDrillReports and StartDrill, for operator accounts only.

use serde_json::{json, Value};

use super::{fields, ApiError, Fields, Request};
use crate::kms::cluster::{MemberRow, MemberStatus};

fn member(row: &MemberRow, reference: Option<u64>) -> Value {
    let role = if row.voter { "Voter" } else { "Learner" };
    let mut v = json!({
        "NodeId": row.id,
        "Region": row.region,
        "Role": role,
        "ApiAddress": row.api_addr,
    });
    let extra = match &row.answer {
        Err(e) => json!({ "Reachable": false, "Error": e }),
        Ok(MemberStatus {
            status: s,
            leader_contact_ms,
            api,
            release,
        }) => json!({
            "Reachable": true,
            "State": s.state,
            "Term": s.term,
            "Leader": s.leader,
            "LastLogIndex": s.last_log_index,
            "CommitIndex": s.commit_index,
            "AppliedIndex": s.applied_index,
            "SnapshotIndex": s.snapshot_index,
            // Entries committed (as the leader says) that the member has not applied yet.
            "LagEntries": reference.map(|r| r.saturating_sub(s.applied_index.unwrap_or(0))),
            "LeaderContactMs": leader_contact_ms,
            "Ready": s.ready,
            "Release": release,
            "ApiRequests": api.requests,
            "ApiLatencyMicros": api.micros,
            "ApiLatencyBuckets": api.buckets,
        }),
    };
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    v
}

pub async fn describe_cluster_status(r: &Request<'_>) -> Result<Fields, ApiError> {
    let view = r.kms.cluster_status(&r.scope).await?;
    let answers: Vec<&MemberStatus> = view
        .members
        .iter()
        .filter_map(|m| m.answer.as_ref().ok())
        .collect();
    // The newest term any member reports, and the leader it names (preferring a member of
    // that term that knows one).
    let newest = answers
        .iter()
        .max_by_key(|a| (a.status.term, a.status.leader.is_some()));
    let leader = newest.and_then(|a| a.status.leader);
    // What is committed: the leader's commit index, or without an answer from it the highest
    // any member knows.
    let reference = answers
        .iter()
        .find(|a| Some(a.status.id) == leader && a.status.leader == leader)
        .and_then(|a| a.status.commit_index)
        .or_else(|| answers.iter().filter_map(|a| a.status.commit_index).max());
    let bounds = crate::kms::cluster::latency_bounds_ms();
    Ok(fields(json!({
        "ServedBy": view.served_by,
        "Term": newest.map(|a| a.status.term),
        "Leader": leader,
        "Nodes": view.members.iter().map(|m| member(m, reference)).collect::<Vec<_>>(),
        "LatencyBucketBoundsMs": bounds,
    })))
}

pub async fn describe_drill_reports(r: &Request<'_>) -> Result<Fields, ApiError> {
    let drills = r.kms.drill_reports(&r.scope).await?;
    let reports: Vec<Value> = drills
        .reports
        .iter()
        .map(|d| {
            // Version 1 is the only one written so far; another is shown as unreadable.
            let report = serde_json::from_slice::<Value>(&d.value)
                .ok()
                .filter(|v| v.get("v") == Some(&json!(crate::wire::records::DRILL_REPORT_VERSION)))
                .unwrap_or_else(|| json!({ "unreadable": true }));
            json!({ "Name": d.name, "Report": report })
        })
        .collect();
    Ok(fields(json!({
        "Reports": reports,
        "StartableRegions": drills.startable_regions,
        "Running": drills.running,
    })))
}

pub async fn start_drill(r: &Request<'_>) -> Result<Fields, ApiError> {
    let region = r.params.str("Region")?;
    r.kms.start_drill(&r.scope, &region).await?;
    Ok(fields(json!({})))
}
