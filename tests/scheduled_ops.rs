//! Time-driven changes proposed by the leader: automatic rotation when due and deletion when the
//! pending window has ended. The whole cluster is restarted under libfaketime eight days later
//! (Debian package `faketime`, installed by `.ci/run`); the leader must notice both and propose
//! them, and old ciphertexts must keep decrypting.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::TestCluster;
use raftkms::client::KmsClient;
use serde_json::json;

const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

fn blob_version(blob_b64: &str) -> u32 {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob_b64)
        .unwrap();
    raftkms::crypto::blob::parse(&bytes).unwrap().version
}

/// (scheduler rounds, scheduler proposals) summed over the three nodes.
async fn scheduler_counters(c: &TestCluster) -> (f64, f64) {
    let mut sum = (0.0, 0.0);
    for node in 1..=3 {
        let text = common::metrics_of(c, node).await;
        sum.0 += common::counter(&text, "raftkms_scheduler_ticks_total");
        sum.1 += common::counter(&text, "raftkms_scheduler_proposals_total");
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_rotates_and_deletes_keys_when_due() {
    assert!(
        std::path::Path::new(FAKETIME_LIB).exists(),
        "libfaketime is missing: apt-get install faketime"
    );
    let mut c = TestCluster::start(3, 27000).await;
    let account = c.admin(1).create_account("sched").await.unwrap();
    let cred = c.admin(1).create_credential(account.uin).await.unwrap();
    let api = |c: &TestCluster, node: u64| {
        KmsClient::new(
            &TestCluster::api_addr(c.base_port, node),
            "ap-guangzhou",
            &cred.secret_id,
            cred.secret_key.expose(),
        )
    };

    let rotating = api(&c, 1)
        .call("CreateKey", json!({"Alias": "rotating"}))
        .await
        .unwrap();
    let rotating = rotating["KeyId"].as_str().unwrap().to_string();
    api(&c, 2)
        .call(
            "EnableKeyRotation",
            json!({"KeyId": rotating, "RotateDays": 7}),
        )
        .await
        .unwrap();
    let old_blob = api(&c, 3)
        .call("Encrypt", json!({"KeyId": rotating, "Plaintext": "b2xk"}))
        .await
        .unwrap();
    let old_blob = old_blob["CiphertextBlob"].as_str().unwrap().to_string();
    assert_eq!(blob_version(&old_blob), 1);

    let doomed = api(&c, 1)
        .call("CreateKey", json!({"Alias": "doomed"}))
        .await
        .unwrap();
    let doomed = doomed["KeyId"].as_str().unwrap().to_string();
    api(&c, 1)
        .call("DisableKey", json!({"KeyId": doomed}))
        .await
        .unwrap();
    api(&c, 1)
        .call(
            "ScheduleKeyDeletion",
            json!({"KeyId": doomed, "PendingWindowInDays": 7}),
        )
        .await
        .unwrap();

    // Nothing is due yet: two scheduler rounds run (observed through the leader's counter) and
    // propose nothing.
    let ticks_before = scheduler_counters(&c).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = scheduler_counters(&c).await;
        if now.0 >= ticks_before.0 + 2.0 {
            assert_eq!(
                now.1, ticks_before.1,
                "the scheduler proposed something not yet due"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduler did not run: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let meta = api(&c, 1)
        .call("DescribeKey", json!({"KeyId": doomed}))
        .await
        .unwrap();
    assert_eq!(meta["KeyMetadata"]["KeyState"], "PendingDelete");

    // BYOK: one key imported with material valid for 3 days, one with import parameters that
    // will be stale (24 h) when they are used.
    let wrap = |public_b64: &str, material: &[u8]| {
        use rsa::pkcs8::DecodePublicKey;
        let der = base64::engine::general_purpose::STANDARD
            .decode(public_b64)
            .unwrap();
        let public = rsa::PublicKey::from_public_key_der(&der).unwrap();
        let wrapped = public.oaep_encrypt::<rsa::sha2::Sha256>(material).unwrap();
        base64::engine::general_purpose::STANDARD.encode(wrapped)
    };
    let expiring = api(&c, 1)
        .call("CreateKey", json!({"Alias": "expiring", "Type": 2}))
        .await
        .unwrap();
    let expiring = expiring["KeyId"].as_str().unwrap().to_string();
    let p = api(&c, 2)
        .call("GetParametersForImport", json!({"KeyId": expiring, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"}))
        .await
        .unwrap();
    let material = [7u8; 16];
    let valid_to = raftkms::clock::Clock::wall_secs(&raftkms::clock::SystemClock) + 3 * 86_400;
    api(&c, 3)
        .call("ImportKeyMaterial", json!({"KeyId": expiring, "ImportToken": p["ImportToken"], "EncryptedKeyMaterial": wrap(p["PublicKey"].as_str().unwrap(), &material), "ValidTo": valid_to}))
        .await
        .unwrap();
    let late = api(&c, 1)
        .call("CreateKey", json!({"Alias": "late", "Type": 2}))
        .await
        .unwrap();
    let late = late["KeyId"].as_str().unwrap().to_string();
    let stale_params = api(&c, 1)
        .call("GetParametersForImport", json!({"KeyId": late, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"}))
        .await
        .unwrap();

    // Eight days later.
    for id in 1..=3 {
        assert!(c.stop(id).success());
    }
    let preload = format!("LD_PRELOAD={FAKETIME_LIB}");
    for i in 0..3 {
        c.spawn_wrapped(
            i,
            &[
                "env",
                "FAKETIME=+8d",
                "FAKETIME_DONT_FAKE_MONOTONIC=1",
                &preload,
            ],
        );
    }
    for i in 0..3 {
        c.wait_answering(i).await;
    }
    c.wait_leader(Duration::from_secs(20)).await;
    let later = |c: &TestCluster, node: u64| {
        let mut k = api(c, node);
        k.clock_offset_secs = 8 * 86_400;
        k
    };

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let gone = later(&c, 2)
            .call("DescribeKey", json!({"KeyId": doomed}))
            .await;
        let rotated = later(&c, 3)
            .call("DescribeKey", json!({"KeyId": rotating}))
            .await
            .unwrap();
        let done_delete =
            gone.as_ref().err().and_then(|e| e.code()) == Some("ResourceUnavailable.CmkNotFound");
        let done_rotate = rotated["KeyMetadata"]["LastRotateTime"]
            .as_u64()
            .unwrap_or(0)
            > 0;
        if done_delete && done_rotate {
            let next = rotated["KeyMetadata"]["NextRotateTime"].as_u64().unwrap();
            let last = rotated["KeyMetadata"]["LastRotateTime"].as_u64().unwrap();
            assert_eq!(next, last + 7 * 86_400);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not done: delete={done_delete} rotate={done_rotate} {rotated}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Rotated exactly once, and the same on every node; old ciphertexts still decrypt.
    for node in 1..=3 {
        let fresh = later(&c, node)
            .call("Encrypt", json!({"KeyId": rotating, "Plaintext": "bmV3"}))
            .await
            .unwrap();
        assert_eq!(
            blob_version(fresh["CiphertextBlob"].as_str().unwrap()),
            2,
            "node {node}"
        );
        let plain = later(&c, node)
            .call("Decrypt", json!({"CiphertextBlob": old_blob}))
            .await
            .unwrap();
        assert_eq!(plain["Plaintext"], "b2xk");
    }

    // The imported material passed its ValidTo: the leader expired it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = later(&c, 1)
            .call("DescribeKey", json!({"KeyId": expiring}))
            .await
            .unwrap();
        if m["KeyMetadata"]["KeyState"] == "PendingImport" {
            assert_eq!(m["KeyMetadata"]["ValidTo"], 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "imported material did not expire: {m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = later(&c, 2)
        .call("Encrypt", json!({"KeyId": expiring, "Plaintext": "eA=="}))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some("ResourceUnavailable.CmkStateNotSupport")
    );
    // Import parameters older than 24 hours are refused, and nothing changes.
    let err = later(&c, 3)
        .call("ImportKeyMaterial", json!({"KeyId": late, "ImportToken": stale_params["ImportToken"], "EncryptedKeyMaterial": wrap(stale_params["PublicKey"].as_str().unwrap(), &material)}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ResourceUnavailable.TokenExpired"));
    let m = later(&c, 1)
        .call("DescribeKey", json!({"KeyId": late}))
        .await
        .unwrap();
    assert_eq!(m["KeyMetadata"]["KeyState"], "PendingImport");
}
