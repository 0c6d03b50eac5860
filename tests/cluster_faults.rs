//! Crashes: SIGKILL of the leader, of every node at once, and writes with no quorum.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{get, put, TestCluster};
use raftkms::config::{SnapshotConfig, TimingConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_a_new_one_and_loses_no_acknowledged_write() {
    let mut c = TestCluster::start(3, 22000).await;
    for k in 0..20 {
        put(&c, (k % 3) + 1, &format!("a{k}"), "before").await;
    }
    let old = c.wait_leader(Duration::from_secs(5)).await;
    c.kill(old);
    let new = c.wait_leader(Duration::from_secs(15)).await;
    assert_ne!(new, old);
    let survivors: Vec<u64> = (1..=3).filter(|i| *i != old).collect();
    for k in 0..20u64 {
        put(&c, survivors[(k % 2) as usize], &format!("b{k}"), "after").await;
    }
    c.restart(old).await;
    // Every acknowledged write is on every node, the restarted one included.
    for n in 1..=3 {
        for k in 0..20 {
            assert_eq!(
                get(&c, n, &format!("a{k}")).await.as_deref(),
                Some("before"),
                "node {n} a{k}"
            );
            assert_eq!(
                get(&c, n, &format!("b{k}")).await.as_deref(),
                Some("after"),
                "node {n} b{k}"
            );
        }
    }
    c.wait_converged(Duration::from_secs(15)).await;

    // Then every node restarts after a crash.
    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        c.restart(id).await;
    }
    c.wait_leader(Duration::from_secs(20)).await;
    for k in 0..20 {
        assert_eq!(
            get(&c, 2, &format!("a{k}")).await.as_deref(),
            Some("before")
        );
        assert_eq!(get(&c, 3, &format!("b{k}")).await.as_deref(), Some("after"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_abrupt_stop_loses_nothing_acknowledged() {
    let mut c = TestCluster::start(3, 22100).await;
    // Writes acknowledged right up to the crash, from concurrent writers on every node.
    let mut tasks = Vec::new();
    for via in 1..=3u64 {
        let admin = c.admin(via);
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for k in 0..40 {
                let name = format!("n{via}-{k}");
                if admin.put_record(&name, "v", None).await.is_ok() {
                    acked.push(name);
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(
        acked.len() >= 100,
        "only {} writes were acknowledged",
        acked.len()
    );
    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        c.restart(id).await;
    }
    c.wait_leader(Duration::from_secs(20)).await;
    for name in &acked {
        assert_eq!(get(&c, 1, name).await.as_deref(), Some("v"), "{name} lost");
    }
    c.wait_converged(Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_a_quorum_fails_in_bounded_time() {
    let timing = TimingConfig {
        write_timeout_ms: 2000,
        read_timeout_ms: 2000,
        ..TimingConfig::default()
    };
    let mut c = TestCluster::start_with(3, 22200, timing, SnapshotConfig::default()).await;
    put(&c, 1, "x", "1").await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let others: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    c.kill(others[0]);
    c.kill(others[1]);
    // The lone leader cannot commit: the write must come back as an error, not hang.
    let started = Instant::now();
    let res = c
        .admin(leader)
        .with_timeout(Duration::from_secs(60))
        .put_record("y", "2", None)
        .await;
    let err = res.expect_err("a write without quorum was acknowledged");
    let waited = started.elapsed();
    assert!(
        err.to_string().contains("did not commit") || err.to_string().contains("leader"),
        "{err}"
    );
    assert!(
        waited < Duration::from_secs(60),
        "no answer within the client's patience"
    );
    // A linearizable read cannot confirm a read index either; a stale read still answers.
    assert!(c
        .admin(leader)
        .get_record("x", "linearizable")
        .await
        .is_err());
    let stale = c.admin(leader).get_record("x", "stale").await.unwrap();
    assert_eq!(stale.value.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_node_serves_stale_crypto_with_its_lag_and_refuses_the_rest_in_bounded_time() {
    use raftkms::client::KmsClient;
    use serde_json::json;
    let timing = TimingConfig {
        write_timeout_ms: 2000,
        read_timeout_ms: 2000,
        ..TimingConfig::default()
    };
    let mut c = TestCluster::start_with(3, 22300, timing, SnapshotConfig::default()).await;
    let account = c.admin(1).create_account("cutoff").await.unwrap();
    let cred = c.admin(1).create_credential(account.uin).await.unwrap();
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let lonely = (1..=3).find(|i| *i != leader).unwrap();
    let kms = KmsClient::new(
        &TestCluster::api_addr(c.base_port, lonely),
        "ap-guangzhou",
        &cred.secret_id,
        cred.secret_key.expose(),
    );
    let key = kms.call("CreateKey", json!({"Alias": "dr"})).await.unwrap();
    let key_id = key["KeyId"].as_str().unwrap().to_string();
    let blob = kms
        .call("Encrypt", json!({"KeyId": key_id, "Plaintext": "ZHI="}))
        .await
        .unwrap();

    // Cut the follower off: both other nodes die.
    for id in (1..=3).filter(|i| *i != lonely) {
        c.kill(id);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut stale = kms.clone();
    stale.consistency = Some("stale".into());
    let (enc, headers) = stale
        .call_with_headers("Encrypt", json!({"KeyId": key_id, "Plaintext": "ZHI="}))
        .await
        .unwrap();
    assert!(enc["CiphertextBlob"].as_str().is_some());
    assert_eq!(headers["x-raftkms-consistency"], "stale");
    let applied: u64 = headers["x-raftkms-applied-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let commit: u64 = headers["x-raftkms-commit-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let contact: u64 = headers["x-raftkms-leader-contact-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(applied >= 1 && commit >= applied, "{headers:?}");
    assert!(
        contact >= 200,
        "claims recent leader contact after the leader died: {contact} ms"
    );
    let (dec, _) = stale
        .call_with_headers("Decrypt", json!({"CiphertextBlob": blob["CiphertextBlob"]}))
        .await
        .unwrap();
    assert_eq!(dec["Plaintext"], "ZHI=");
    // Linearizable reads and writes fail with a clear code, within bounded time.
    for (action, params) in [
        ("Encrypt", json!({"KeyId": key_id, "Plaintext": "ZHI="})),
        ("DisableKey", json!({"KeyId": key_id})),
    ] {
        let started = Instant::now();
        let err = kms.call(action, params).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some("UnsupportedOperation.ServiceTemporaryUnavailable"),
            "{action}: {err}"
        );
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    // A node out of contact with any leader is no longer ready for linearizable service, so a
    // load balancer or container health check takes it out of rotation.
    let api = TestCluster::api_addr(c.base_port, lonely);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = reqwest::get(format!("http://{api}/readyz")).await.unwrap();
        if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(Instant::now() < deadline, "a cut-off node stays ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
