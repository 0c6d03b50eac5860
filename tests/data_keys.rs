//! Hosted data keys through crashes and snapshots: data keys made before and after the leader is
//! killed are readable, with the states they were left in, on every node, the restarted one
//! included, and on a fourth node that catches up through a snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use common::TestCluster;
use raftkms::client::KmsClient;
use raftkms::config::{SnapshotConfig, TimingConfig};
use serde_json::json;

const BASE: u16 = 28600;

fn client(cred: &(String, String), id: u64) -> KmsClient {
    KmsClient::new(
        &TestCluster::api_addr(BASE, id),
        "ap-guangzhou",
        &cred.0,
        &cred.1,
    )
}

/// Calls until an answer comes (a node may be electing a leader after the kill).
async fn call(c: &KmsClient, action: &str, params: serde_json::Value) -> serde_json::Value {
    let mut last = None;
    for _ in 0..50 {
        match c.call(action, params.clone()).await {
            Ok(v) => return v,
            Err(e) if e.code() == Some("UnsupportedOperation.ServiceTemporaryUnavailable") => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{action}: {e}"),
        }
    }
    panic!("{action}: {last:?}");
}

fn unb64(v: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

/// What each data key must read as: its plaintext, or the code a read answers.
type Expected = BTreeMap<String, Result<Vec<u8>, &'static str>>;

async fn check_all(c: &KmsClient, expected: &Expected, node: u64) {
    for (id, want) in expected {
        let got = c
            .call("GetDataKeyPlaintext", json!({ "DataKeyId": id }))
            .await;
        match (want, got) {
            (Ok(p), Ok(v)) => assert_eq!(&unb64(&v["Plaintext"]), p, "node {node} {id}"),
            (Err(code), Err(e)) => assert_eq!(e.code(), Some(*code), "node {node} {id}"),
            (want, got) => panic!("node {node} {id}: want {want:?}, got {got:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_data_keys_survive_a_leader_kill_and_reach_a_node_through_a_snapshot() {
    // Snapshot often and keep few entries behind it, so the joining node needs the snapshot.
    let snapshot = SnapshotConfig {
        logs_since_last: 20,
        max_logs_to_keep: 5,
        chunk_bytes: 1 << 20,
    };
    let mut c = TestCluster::start_with(3, BASE, TimingConfig::default(), snapshot).await;
    let account = c.admin(1).create_account("data-keys").await.unwrap();
    let cred = c.admin(1).create_credential(account.uin).await.unwrap();
    let cred = (cred.secret_id, cred.secret_key.expose().to_string());
    let clients: Vec<KmsClient> = (1..=4).map(|id| client(&cred, id)).collect();
    let cmk = call(&clients[0], "CreateKey", json!({ "Alias": "dk-cmk" })).await["KeyId"]
        .as_str()
        .unwrap()
        .to_string();

    let mut expected = Expected::new();
    let mut ids = Vec::new();
    let generate = |via: usize, n: usize| {
        let c = clients[via].clone();
        let cmk = cmk.clone();
        async move {
            let v = call(
                &c,
                "GenerateDataKey",
                json!({ "KeyId": cmk, "NumberOfBytes": 16 + n, "IsHostedByKms": 1,
                        "DataKeyName": format!("dk-{n}") }),
            )
            .await;
            (
                v["DataKeyId"].as_str().unwrap().to_string(),
                unb64(&v["Plaintext"]),
            )
        }
    };
    for n in 0..10 {
        let (id, p) = generate(n % 3, n).await;
        ids.push(id.clone());
        expected.insert(id, Ok(p));
    }

    let old = c.wait_leader(Duration::from_secs(5)).await;
    c.kill(old);
    let new = c.wait_leader(Duration::from_secs(15)).await;
    assert_ne!(new, old);
    let survivors: Vec<usize> = (1..=3u64)
        .filter(|i| *i != old)
        .map(|i| i as usize - 1)
        .collect();
    for n in 10..20 {
        let (id, p) = generate(survivors[n % 2], n).await;
        ids.push(id.clone());
        expected.insert(id, Ok(p));
    }
    let s = &clients[survivors[0]];
    call(s, "DisableDataKey", json!({ "DataKeyId": ids[0] })).await;
    expected.insert(ids[0].clone(), Err("ResourceUnavailable.DataKeyDisabled"));
    call(
        s,
        "ScheduleDataKeyDeletion",
        json!({ "DataKeyId": ids[11], "PendingWindowInDays": 7 }),
    )
    .await;
    expected.insert(
        ids[11].clone(),
        Err("ResourceUnavailable.DataKeyPendingDelete"),
    );
    call(
        &clients[survivors[1]],
        "UpdateDataKeyName",
        json!({ "DataKeyId": ids[12], "DataKeyName": "renamed" }),
    )
    .await;

    c.restart(old).await;
    c.wait_converged(Duration::from_secs(30)).await;
    for id in 1..=3u64 {
        check_all(&clients[id as usize - 1], &expected, id).await;
        let listed = call(
            &clients[id as usize - 1],
            "ListDataKeyDetail",
            json!({ "KeyId": cmk, "Limit": 100, "SearchKeyAlias": "renamed" }),
        )
        .await;
        assert_eq!(listed["TotalCount"], 1, "node {id}");
        assert_eq!(listed["DataKeyMetadatas"][0]["DataKeyId"], ids[12].as_str());
    }

    // Enough entries for a snapshot and a purge, then node 4 joins and installs it.
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    for batch in 0..3 {
        let records: BTreeMap<String, String> = (0..50)
            .map(|i| (format!("pad-{batch}-{i}"), "x".into()))
            .collect();
        for (k, v) in records {
            common::put(&c, leader, &k, &v).await;
        }
    }
    let digest = c.wait_converged(Duration::from_secs(30)).await;
    let st = c.admin(leader).status().await.unwrap();
    assert!(
        st.snapshot_index.is_some() && st.purged_index.is_some(),
        "{st:?}"
    );
    let after = c.join_new_voter(4, 2, Duration::from_secs(120)).await;
    assert!(after.voters.contains(&4), "{after:?}");
    let st4 = c.admin(4).status().await.unwrap();
    assert!(
        st4.snapshot_index.is_some(),
        "node 4 installed no snapshot: {st4:?}"
    );
    assert_eq!(c.wait_converged(Duration::from_secs(60)).await, digest);
    check_all(&clients[3], &expected, 4).await;
    let d = call(
        &clients[3],
        "DescribeDataKey",
        json!({ "DataKeyId": ids[11] }),
    )
    .await;
    assert_eq!(d["DataKeyMetadata"]["KeyState"], "PendingDelete");
}
