//! Multi-region clusters of real processes: replica keys sharing material across regions, a
//! learner in an extra region, a whole region lost (and the DR drill that measures it), and a
//! minority cut off from the quorum serving stale crypto.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::TestCluster;
use raftkms::client::KmsClient;
use raftkms::config::TimingConfig;
use serde_json::{json, Value};

const GZ: &str = "ap-guangzhou";
const SH: &str = "ap-shanghai";
const SG: &str = "ap-singapore";
const TOKYO: &str = "ap-tokyo";

/// 2+2+1 voters in three regions and a learner in a fourth.
const LAYOUT: [(&str, bool); 6] = [
    (GZ, true),
    (GZ, true),
    (SH, true),
    (SH, true),
    (SG, true),
    (TOKYO, false),
];

async fn credential(c: &TestCluster) -> (String, String) {
    let account = c.admin(1).create_account("multi-region").await.unwrap();
    let cred = c.admin(1).create_credential(account.uin).await.unwrap();
    (cred.secret_id, cred.secret_key.expose().to_string())
}

/// A client for node `id` acting in `region` (over TLS when the cluster has a CA).
fn kms(c: &TestCluster, cred: &(String, String), id: u64, region: &str) -> KmsClient {
    let client = KmsClient::new(
        &TestCluster::api_addr(c.base_port, id),
        region,
        &cred.0,
        &cred.1,
    );
    let ca = c.dir.path().join("tls/ca.pem");
    if ca.exists() {
        client.with_ca(&ca).unwrap()
    } else {
        client
    }
}

fn blob_version(blob: &Value) -> u32 {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob["CiphertextBlob"].as_str().unwrap())
        .unwrap();
    raftkms::crypto::blob::parse(&bytes).unwrap().version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_keys_share_material_and_rotate_in_step_across_regions() {
    let mut c = TestCluster::start_layout(&LAYOUT, 29000, TimingConfig::default()).await;
    let cred = credential(&c).await;

    // Primary in Guangzhou (through node 1), ciphertext made there.
    let gz = kms(&c, &cred, 1, GZ);
    let key = gz
        .call(
            "CreateKey",
            json!({"Alias": "orders", "Description": "primary"}),
        )
        .await
        .unwrap();
    let key_id = key["KeyId"].as_str().unwrap().to_string();
    let old = gz
        .call("Encrypt", json!({"KeyId": key_id, "Plaintext": "b2xk"}))
        .await
        .unwrap();
    assert_eq!(blob_version(&old), 1);

    // Before replication the key does not exist elsewhere.
    let err = kms(&c, &cred, 3, SH)
        .call("Decrypt", json!({"CiphertextBlob": old["CiphertextBlob"]}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ResourceUnavailable.CmkNotFound"), "{err}");

    // Replicate to Shanghai, Singapore and Tokyo (the learner's region), through node 3.
    let rep = kms(&c, &cred, 3, GZ)
        .call(
            "ReplicateKey",
            json!({"KeyId": key_id, "DestinationRegions": [SH, SG, TOKYO], "Description": "replica"}),
        )
        .await
        .unwrap();
    assert_eq!(rep["Replicas"].as_array().unwrap().len(), 3, "{rep}");
    assert_eq!(rep["SourceRegion"], GZ);

    // DescribeKey reports the replica fields; each replica has its own description.
    let meta = kms(&c, &cred, 4, SH)
        .call("DescribeKey", json!({"KeyId": key_id}))
        .await
        .unwrap();
    let m = &meta["KeyMetadata"];
    assert_eq!(m["IsSyncReplica"], 1, "{meta}");
    assert_eq!(m["SourceRegion"], GZ);
    assert_eq!(m["SyncStatus"], 1);
    assert_eq!(m["Description"], "replica");
    assert_eq!(m["Alias"], "orders");
    let pm = gz
        .call("DescribeKey", json!({"KeyId": key_id}))
        .await
        .unwrap();
    assert_eq!(pm["KeyMetadata"]["IsSyncReplica"], 0);
    assert_eq!(pm["KeyMetadata"]["Description"], "primary");

    // The Guangzhou ciphertext decrypts in every region holding a replica, through nodes there.
    for (id, region) in [(3, SH), (4, SH), (5, SG)] {
        let d = kms(&c, &cred, id, region)
            .call("Decrypt", json!({"CiphertextBlob": old["CiphertextBlob"]}))
            .await
            .unwrap();
        assert_eq!(d["Plaintext"], "b2xk", "node {id} in {region}");
    }

    // A replica's material follows its primary: rotating it is refused with the documented code.
    let err = kms(&c, &cred, 5, SG)
        .call("RotateKey", json!({"KeyId": key_id}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnsupportedOperation.RotateNotSupported"));
    assert!(err.to_string().contains(GZ), "{err}");

    // Rotate the primary through the node in Singapore: one command on the shared material.
    kms(&c, &cred, 5, GZ)
        .call("RotateKey", json!({"KeyId": key_id}))
        .await
        .unwrap();

    // Every region now encrypts with version 2, and old and new ciphertexts from every region
    // decrypt in every region.
    let mut blobs = vec![(GZ, old.clone())];
    for (id, region) in [(2, GZ), (3, SH), (5, SG)] {
        let b = kms(&c, &cred, id, region)
            .call("Encrypt", json!({"KeyId": key_id, "Plaintext": "bmV3"}))
            .await
            .unwrap();
        assert_eq!(blob_version(&b), 2, "version in {region}");
        blobs.push((region, b));
    }
    for (made_in, b) in &blobs {
        for (id, region) in [(1, GZ), (4, SH), (5, SG)] {
            let d = kms(&c, &cred, id, region)
                .call("Decrypt", json!({"CiphertextBlob": b["CiphertextBlob"]}))
                .await
                .unwrap();
            let want = if blob_version(b) == 1 { "b2xk" } else { "bmV3" };
            assert_eq!(
                d["Plaintext"], want,
                "made in {made_in}, decrypted in {region}"
            );
        }
    }

    // The learner in Tokyo holds the registry: it serves stale crypto for its region's replica
    // (and forwards linearizable requests as any node does).
    let mut learner = kms(&c, &cred, 6, TOKYO);
    learner.consistency = Some("stale".into());
    let deadline = Instant::now() + Duration::from_secs(10);
    let (b, headers) = loop {
        match learner
            .call_with_headers("Encrypt", json!({"KeyId": key_id, "Plaintext": "bmV3"}))
            .await
        {
            Ok(r) if blob_version(&r.0) == 2 => break r,
            other => {
                assert!(Instant::now() < deadline, "learner never saw v2: {other:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(headers.contains_key("x-raftkms-applied-index"));
    let d = kms(&c, &cred, 1, SH)
        .call("Decrypt", json!({"CiphertextBlob": b["CiphertextBlob"]}))
        .await
        .unwrap();
    assert_eq!(d["Plaintext"], "bmV3");

    // Deletion rules: the primary cannot be scheduled for deletion while replicas exist; a
    // disabled replica stops serving in its region only.
    gz.call("DisableKey", json!({"KeyId": key_id}))
        .await
        .unwrap();
    let err = gz
        .call(
            "ScheduleKeyDeletion",
            json!({"KeyId": key_id, "PendingWindowInDays": 7}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnsupportedOperation"), "{err}");
    let sh = kms(&c, &cred, 3, SH);
    let d = sh
        .call("Decrypt", json!({"CiphertextBlob": old["CiphertextBlob"]}))
        .await
        .unwrap();
    assert_eq!(
        d["Plaintext"], "b2xk",
        "a disabled primary leaves replicas serving"
    );

    // Unserved destination regions and replicating a replica are refused with clear codes.
    gz.call("EnableKey", json!({"KeyId": key_id}))
        .await
        .unwrap();
    let err = gz
        .call(
            "ReplicateKey",
            json!({"KeyId": key_id, "DestinationRegions": ["eu-frankfurt"]}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterValue.UnsupportedRegion"));
    let err = sh
        .call(
            "ReplicateKey",
            json!({"KeyId": key_id, "DestinationRegions": [SG]}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnsupportedOperation"), "{err}");

    // Every node (the learner included) holds the same state.
    c.wait_converged(Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_whole_region_loses_no_acknowledged_write_and_the_minority_serves_stale() {
    let timing = TimingConfig {
        write_timeout_ms: 2000,
        read_timeout_ms: 2000,
        ..TimingConfig::default()
    };
    // Over TLS: the drill's client trusts the cluster CA (--ca).
    let mut c = TestCluster::configure_layout(&LAYOUT, 29100, timing, Default::default());
    let ca = c.enable_tls();
    let tls = c.tls.clone().unwrap();
    let mut c = c.launch().await;
    let cred = credential(&c).await;
    c.wait_leader(Duration::from_secs(10)).await;

    // The DR drill freezes Guangzhou's processes, measures the RTO through the other regions,
    // checks every acknowledged write and ciphertext, resumes them and checks convergence.
    let pids = |ids: &[u64], c: &TestCluster| {
        ids.iter()
            .map(|id| c.nodes[c.idx(*id)].pid().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let gz_pids = pids(&[1, 2], &c);
    let out = std::process::Command::new(common::bin())
        .args([
            "drill",
            "--node",
            &TestCluster::raft_addr(c.base_port, 3),
            "--cluster-id",
            &c.cluster_id,
            "--admin-cert",
            tls.admin_cert.to_str().unwrap(),
            "--admin-key",
            tls.admin_key.to_str().unwrap(),
            "--cluster-ca",
            tls.ca.to_str().unwrap(),
            "--region",
            GZ,
            "--keys",
            "6",
            "--outage-secs",
            "2",
            "--timeout-secs",
            "30",
            "--cut",
            &format!("kill -STOP {gz_pids}"),
            "--heal",
            &format!("kill -CONT {gz_pids}"),
            "--json",
            "--ca",
            ca.to_str().unwrap(),
        ])
        .env("KMS_SECRET_ID", &cred.0)
        .env("KMS_SECRET_KEY", &cred.1)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "drill failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["lost"], 0);
    assert_eq!(report["cut_nodes"], json!([1, 2]));
    assert!(report["rto_ms"].as_u64().is_some(), "{report}");
    assert!(
        report["writes_acknowledged_during_outage"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(report["digest"].as_str().is_some());

    // Now cut Guangzhou and Shanghai (4 of 5 voters): Singapore's voter and Tokyo's learner are
    // a minority. They keep serving stale crypto with their lag, and refuse writes and
    // linearizable reads quickly with the documented code.
    let sg = kms(&c, &cred, 5, SG);
    let key = sg
        .call("CreateKey", json!({"Alias": "minority"}))
        .await
        .unwrap();
    let key_id = key["KeyId"].as_str().unwrap().to_string();
    let sealed = sg
        .call("Encrypt", json!({"KeyId": key_id, "Plaintext": "c3RhbGU="}))
        .await
        .unwrap();
    kms(&c, &cred, 5, SG)
        .call(
            "ReplicateKey",
            json!({"KeyId": key_id, "DestinationRegions": [TOKYO]}),
        )
        .await
        .unwrap();
    c.wait_converged(Duration::from_secs(20)).await;
    let majority = pids(&[1, 2, 3, 4], &c);
    let frozen = std::process::Command::new("sh")
        .args(["-c", &format!("kill -STOP {majority}")])
        .status()
        .unwrap();
    assert!(frozen.success());
    tokio::time::sleep(Duration::from_millis(700)).await;
    let result = std::panic::AssertUnwindSafe(async {
        for (id, region) in [(5, SG), (6, TOKYO)] {
            let mut stale = kms(&c, &cred, id, region);
            stale.consistency = Some("stale".into());
            let (d, h) = stale
                .call_with_headers(
                    "Decrypt",
                    json!({"CiphertextBlob": sealed["CiphertextBlob"]}),
                )
                .await
                .unwrap();
            assert_eq!(d["Plaintext"], "c3RhbGU=", "node {id}");
            let contact: u64 = h["x-raftkms-leader-contact-ms"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                contact >= 500,
                "node {id} claims leader contact {contact} ms ago"
            );
            let (e, _) = stale
                .call_with_headers(
                    "GenerateDataKey",
                    json!({"KeyId": key_id, "NumberOfBytes": 32}),
                )
                .await
                .unwrap();
            assert!(e["CiphertextBlob"].as_str().is_some());
            for (action, params) in [
                ("Encrypt", json!({"KeyId": key_id, "Plaintext": "eA=="})),
                (
                    "UpdateKeyDescription",
                    json!({"KeyId": key_id, "Description": "x"}),
                ),
            ] {
                let started = Instant::now();
                let err = kms(&c, &cred, id, region)
                    .call(action, params)
                    .await
                    .unwrap_err();
                assert_eq!(
                    err.code(),
                    Some("UnsupportedOperation.ServiceTemporaryUnavailable"),
                    "{action} on node {id}: {err}"
                );
                assert!(started.elapsed() < Duration::from_secs(15), "{action} hung");
            }
        }
    });
    let outcome = futures::FutureExt::catch_unwind(result).await;
    let _ = std::process::Command::new("sh")
        .args(["-c", &format!("kill -CONT {majority}")])
        .status();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    c.wait_converged(Duration::from_secs(30)).await;
}
