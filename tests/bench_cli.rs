//! `raftkms bench` drives a real cluster and reports what it measured (no timing is asserted,
//! only that requests were made, answered and counted).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{bin, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_closed_and_open_loop_and_reports_json() {
    // 1 % of the mix creates keys: room above the default CMK quota (200) for a fast run.
    let mut c = TestCluster::configure(
        3,
        28000,
        raftkms::config::TimingConfig::default(),
        raftkms::config::SnapshotConfig::default(),
    );
    c.edit_configs(|cfg| cfg.kms.cmk_limit = 100_000);
    let c = c.launch().await;
    let account = c.admin(1).create_account("bench").await.unwrap();
    let cred = c.admin(1).create_credential(account.uin).await.unwrap();
    let endpoints: Vec<String> = (1..=3)
        .map(|i| format!("http://{}", TestCluster::api_addr(c.base_port, i)))
        .collect();
    for extra in [
        vec!["--workload", "mix", "--connections", "4"],
        vec!["--workload", "encrypt", "--rate", "200"],
    ] {
        let out = tokio::task::spawn_blocking({
            let (endpoints, id, key) = (
                endpoints.join(","),
                cred.secret_id.clone(),
                cred.secret_key.expose().to_string(),
            );
            move || {
                Command::new(bin())
                    .args([
                        "bench",
                        "--duration",
                        "2",
                        "--json",
                        "--endpoints",
                        &endpoints,
                        "--secret-id",
                        &id,
                        "--secret-key",
                        &key,
                    ])
                    .args(&extra)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(summary["ok"].as_u64().unwrap() > 50, "{summary}");
        // Errors are reported by code. On a loaded 2-core machine a heartbeat can starve and an
        // election fail a request or two with the retryable code; nothing else is acceptable.
        let errors = summary["errors"].as_object().unwrap();
        let retryable = errors
            .get("UnsupportedOperation.ServiceTemporaryUnavailable")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        assert!(
            errors.len() == usize::from(retryable > 0)
                && retryable * 100 <= summary["ok"].as_u64().unwrap(),
            "{summary}"
        );
        assert!(summary["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
        // A progress line per second went to stderr.
        assert!(String::from_utf8_lossy(&out.stderr).contains("ok/s"));
    }
}
