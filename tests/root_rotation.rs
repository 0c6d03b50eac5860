//! Root-key rotation in a real three-node cluster whose nodes unseal with a PKCS#11 token
//! (SoftHSM2): five rotations and retirements under a continuous load of Decrypts of earlier
//! ciphertexts, Encrypts, new keys and signatures, with not one failed request; afterwards every
//! earlier ciphertext still decrypts on every node, the asymmetric key signs, the pending import
//! completes with the parameters issued before the rotation, a sub-user's credential still signs
//! requests, and a node killed and restarted unseals the new root version through the token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{bin, counter, metrics_of, TestCluster, ADMIN_TOKEN};
use raftkms::client::KmsClient;
use raftkms::wire::RootKeyStatus;
use serde_json::json;

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
const BASE: u16 = 28100;
const REGION: &str = "ap-guangzhou";

/// A token of the test's own, shared by the three nodes (as a network HSM would be).
fn init_token(c: &mut TestCluster) {
    let conf = common::softhsm_token(c.dir.path(), "raftkms-rot", "246810");
    let pin = c.dir.path().join("pin");
    std::fs::write(&pin, "246810\n").unwrap();
    c.serve_env = vec![("SOFTHSM2_CONF".into(), conf)];
    c.serve_secret = Some(pin);
    c.edit_configs(|cfg| {
        cfg.kms.unseal = raftkms::config::UnsealSource::Pkcs11;
        cfg.kms.unseal_key_file = None;
        cfg.kms.pkcs11_module = Some(SOFTHSM.into());
        cfg.kms.pkcs11_token = Some("raftkms-rot".into());
    });
}

/// Node 0, 1 or 2, at random (added to 1: a node id).
fn rand_node() -> u64 {
    rand::random::<u64>() % 3
}

/// `raftkms root-key <args>` against node `node` (not necessarily the leader).
fn root_key_run(c: &TestCluster, node: u64, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("root-key")
        .args(args)
        .args(["--node", &TestCluster::raft_addr(BASE, node)])
        .args(["--cluster-id", &c.cluster_id])
        .args(["--admin-token", ADMIN_TOKEN])
        .output()
        .unwrap()
}

/// The same against node 2, which must succeed; its standard output.
fn root_key_cli(c: &TestCluster, args: &[&str]) -> String {
    let out = root_key_run(c, 2, args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "root-key {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Retires `version` through node `via`, retrying while a late write still uses it (the next
/// re-wrap pass moves it).
async fn retire(c: &TestCluster, via: u64, version: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.admin(via).retire_root_key(version).await {
            Ok(s) => {
                assert!(s.versions.iter().all(|v| v.version != version), "{s:?}");
                return;
            }
            Err(e) if e.to_string().contains("still protects") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("retiring root-key version {version}: {e}"),
        }
    }
}

async fn status(c: &TestCluster) -> RootKeyStatus {
    c.admin(1).root_key_status().await.unwrap()
}

fn versions(s: &RootKeyStatus) -> Vec<(u32, u64)> {
    s.versions.iter().map(|v| (v.version, v.values)).collect()
}

/// What the load saw: successes per kind and every failure.
#[derive(Default)]
struct Load {
    decrypts: AtomicU64,
    writes: AtomicU64,
    failures: std::sync::Mutex<Vec<String>>,
}

impl Load {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_the_root_key_under_load_fails_no_request() {
    assert!(
        std::path::Path::new(SOFTHSM).exists(),
        "SoftHSM2 is not installed (apt-get install softhsm2): this test must not be skipped"
    );
    let mut c = TestCluster::configure(3, BASE, Default::default(), Default::default());
    c.edit_configs(|cfg| cfg.kms.scheduler_interval_ms = 200);
    init_token(&mut c);

    // Node 1 starts first: the token makes its key and node 1 seals a new unseal key with it.
    // The sealed file is then copied to the other nodes (docs/security.md), which open it with
    // the same token key.
    c.spawn(0);
    c.wait_answering(0).await;
    // One at a time: SoftHSM2's file store is one directory here, and a process that lists the
    // token while another opens it may not see it (separate machines each reach their own HSM
    // client).
    let sealed = c.nodes[0].cfg.unseal_sealed_file();
    for i in 1..3 {
        std::fs::copy(&sealed, c.nodes[i].cfg.unseal_sealed_file()).unwrap();
        c.spawn(i);
        c.wait_answering(i).await;
    }
    c.admin(1).init().await.unwrap();
    c.wait_leader(Duration::from_secs(20)).await;

    let account = c.admin(1).create_account("rotating").await.unwrap();
    let cred = c.admin(1).create_credential(account.uin).await.unwrap();
    let api = {
        let (id, key) = (cred.secret_id.clone(), cred.secret_key.expose().to_string());
        move |node: u64| KmsClient::new(&TestCluster::api_addr(BASE, node), REGION, &id, &key)
    };
    // A sub-user with its own credential and a policy that lets it encrypt.
    let admin = c.admin(1);
    let user = admin
        .create_identity(
            account.uin,
            &raftkms::wire::CreateIdentityRequest {
                kind: raftkms::registry::iam::IdentityKind::User,
                name: "app".into(),
                service: None,
            },
        )
        .await;
    user.unwrap();
    let user_cred = admin
        .create_identity_credential(
            account.uin,
            raftkms::registry::iam::IdentityKind::User,
            "app",
        )
        .await
        .unwrap();
    admin
        .put_policy(
            account.uin,
            &raftkms::wire::PolicyRequest {
                name: "enc".into(),
                description: String::new(),
                document: r#"{"version":"2.0","statement":[{"effect":"allow","action":["kms:Encrypt","kms:Decrypt"],"resource":["*"]}]}"#.into(),
            },
            false,
        )
        .await
        .unwrap();
    admin
        .attach_policy(
            account.uin,
            &raftkms::wire::AttachRequest {
                kind: raftkms::registry::iam::IdentityKind::User,
                name: "app".into(),
                policy: "enc".into(),
                attach: true,
            },
        )
        .await
        .unwrap();

    // Keys of every kind that holds a wrapped value: symmetric keys with two material versions,
    // a signing key, and an EXTERNAL key with pending import parameters.
    let mut ciphertexts: Vec<(String, String)> = Vec::new();
    let mut key_ids = Vec::new();
    for i in 0..40 {
        let k = api(1 + i % 3)
            .call("CreateKey", json!({"Alias": format!("k{i}")}))
            .await
            .unwrap();
        let key_id = k["KeyId"].as_str().unwrap().to_string();
        let plain = base64::engine::general_purpose::STANDARD.encode(format!("before-{i}-v1"));
        let blob = api(1)
            .call("Encrypt", json!({"KeyId": key_id, "Plaintext": plain}))
            .await;
        ciphertexts.push((
            blob.unwrap()["CiphertextBlob"].as_str().unwrap().into(),
            plain,
        ));
        if i % 2 == 0 {
            api(2)
                .call("RotateKey", json!({"KeyId": key_id}))
                .await
                .unwrap();
            let plain = base64::engine::general_purpose::STANDARD.encode(format!("before-{i}-v2"));
            let blob = api(3)
                .call("Encrypt", json!({"KeyId": key_id, "Plaintext": plain}))
                .await;
            ciphertexts.push((
                blob.unwrap()["CiphertextBlob"].as_str().unwrap().into(),
                plain,
            ));
        }
        key_ids.push(key_id);
    }
    let signer = api(1)
        .call(
            "CreateKey",
            json!({"Alias": "signer", "KeyUsage": "ASYMMETRIC_SIGN_VERIFY_ECC"}),
        )
        .await
        .unwrap()["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let external = api(1)
        .call("CreateKey", json!({"Alias": "external", "Type": 2}))
        .await
        .unwrap()["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let import = api(2)
        .call("GetParametersForImport", json!({"KeyId": external, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"}))
        .await
        .unwrap();
    let user_api = KmsClient::new(
        &TestCluster::api_addr(BASE, 3),
        REGION,
        &user_cred.secret_id,
        user_cred.secret_key.expose(),
    );
    let user_blob = user_api
        .call(
            "Encrypt",
            json!({"KeyId": key_ids[0], "Plaintext": "dXNlcg=="}),
        )
        .await
        .unwrap()["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();

    // More credentials: more values for each re-wrap to move.
    for _ in 0..20 {
        c.admin(1 + rand_node())
            .create_credential(account.uin)
            .await
            .unwrap();
    }
    let before = status(&c).await;
    assert_eq!(before.current, 1);
    // 40 keys + 20 rotations + the signer + the import key; 22 credentials.
    assert_eq!(versions(&before), vec![(1, 84)]);

    // The load: Decrypts of the earlier ciphertexts through every node, Encrypt-then-Decrypt
    // and new keys, signatures, all the time.
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let ciphertexts = Arc::new(ciphertexts);
    let mut tasks = Vec::new();
    for t in 0..3u64 {
        let (load, stop, ciphertexts, api) =
            (load.clone(), stop.clone(), ciphertexts.clone(), api.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = t as usize;
            while !stop.load(Ordering::Relaxed) {
                let (blob, plain) = &ciphertexts[i % ciphertexts.len()];
                let node = 1 + (i as u64 % 3);
                match api(node)
                    .call("Decrypt", json!({"CiphertextBlob": blob}))
                    .await
                {
                    Ok(r) if r["Plaintext"] == plain.as_str() => {
                        load.decrypts.fetch_add(1, Ordering::Relaxed);
                    }
                    other => load.fail(format!("Decrypt #{i} on node {node}: {other:?}")),
                }
                i += 3;
            }
        }));
    }
    {
        let (load, stop, api, signer) = (load.clone(), stop.clone(), api.clone(), signer.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            let mut created: Vec<String> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let node = 1 + i % 3;
                let step = async {
                    // A new key every 8th round (at most 100: the account's quota is 200),
                    // otherwise the newest one.
                    if i.is_multiple_of(8) && created.len() < 100 {
                        let k = api(node)
                            .call("CreateKey", json!({"Alias": format!("load{i}")}))
                            .await
                            .map_err(|e| format!("CreateKey: {e:?}"))?;
                        created.push(k["KeyId"].as_str().unwrap_or_default().to_string());
                    }
                    let key_id = created.last().cloned().unwrap_or_default();
                    let blob = api(node)
                        .call("Encrypt", json!({"KeyId": key_id, "Plaintext": "bG9hZA=="}))
                        .await
                        .map_err(|e| format!("Encrypt: {e:?}"))?;
                    let back = api(1 + (node % 3))
                        .call("Decrypt", json!({"CiphertextBlob": blob["CiphertextBlob"]}))
                        .await
                        .map_err(|e| format!("Decrypt: {e:?}"))?;
                    if back["Plaintext"] != "bG9hZA==" {
                        return Err(format!("Decrypt gave {back}"));
                    }
                    api(node)
                        .call("SignByAsymmetricKey", json!({"KeyId": signer, "Algorithm": "ECC_P256_R1", "Message": "bWVzc2FnZQ==", "MessageType": "RAW"}))
                        .await
                        .map_err(|e| format!("Sign: {e:?}"))?;
                    Ok::<_, String>(())
                };
                match step.await {
                    Ok(()) => {
                        load.writes.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => load.fail(format!("round {i} on node {node}: {e}")),
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // First rotation, through the CLI on a node that need not lead: installed, re-wrapped with
    // progress shown, version 1 retired.
    let decrypts_before = load.decrypts.load(Ordering::Relaxed);
    let out = root_key_cli(&c, &["rotate"]);
    assert!(out.contains("installed root-key version 2"), "{out}");
    assert!(out.contains("re-wrapped"), "{out}");
    assert!(
        out.contains("next: raftkms root-key retire --version 1"),
        "{out}"
    );
    let s = status(&c).await;
    assert_eq!((s.current, s.pending), (2, 0), "{s:?}");
    assert_eq!(s.versions[0].values, 0, "{s:?}");
    // Retiring the current version is refused, and so is a version that is not there.
    let refused = root_key_run(&c, 1, &["retire", "--version", "2"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is the current one"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // A write wrapped under version 1 just before its node applied the new version can land after
    // the re-wrap finished: the retirement is then refused until the next pass moves it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = root_key_run(&c, 2, &["retire", "--version", "1"]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).to_string();
        }
        assert!(
            stderr.contains("still protects") && Instant::now() < deadline,
            "{stderr}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(out.contains("retired root-key version 1"), "{out}");
    let s = status(&c).await;
    assert_eq!(s.versions.len(), 1, "{s:?}");
    assert_eq!(s.versions[0].version, 2);

    // Four more rotations through the admin API of each node in turn; the load goes on.
    for version in 3..=6u32 {
        let via = 1 + u64::from(version) % 3;
        let rotated = c.admin(via).rotate_root_key(Some(version)).await.unwrap();
        assert_eq!(rotated.current, version);
        // The same call again (a retry whose first answer was lost) rotates nothing.
        let again = c
            .admin(1 + via % 3)
            .rotate_root_key(Some(version))
            .await
            .unwrap();
        assert_eq!(again.current, version);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = status(&c).await;
            if s.pending == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the re-wrap did not finish: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        retire(&c, 1 + via % 3, version - 1).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let failures = load.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed requests: {failures:#?}",
        failures.len()
    );
    let decrypts = load.decrypts.load(Ordering::Relaxed);
    eprintln!(
        "load: {decrypts} decrypts ({decrypts_before} before the first rotation), {} write rounds",
        load.writes.load(Ordering::Relaxed)
    );
    assert!(
        decrypts > decrypts_before + 50,
        "the load barely ran during the rotations: {decrypts_before} -> {decrypts}"
    );
    assert!(load.writes.load(Ordering::Relaxed) > 5);

    // Everything is under version 6 now, on every node.
    let s = status(&c).await;
    assert_eq!(s.current, 6);
    assert_eq!(versions(&s).len(), 1, "{s:?}");
    let everything = s.versions[0].values;
    assert!(everything >= 84, "{s:?}");
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let mut rewrapped = 0.0;
    for id in 1..=3 {
        let m = metrics_of(&c, id).await;
        assert_eq!(counter(&m, "raftkms_root_key_version"), 6.0, "node {id}");
        assert_eq!(
            counter(&m, "raftkms_root_key_pending_values"),
            0.0,
            "node {id}"
        );
        assert_eq!(
            counter(&m, "raftkms_root_key_rewrap_failures_total"),
            0.0,
            "node {id}"
        );
        rewrapped += counter(&m, "raftkms_root_key_rewrapped_total");
    }
    eprintln!("re-wrapped {rewrapped} values; {everything} values under version 6");
    // Five rotations, each re-wrapping at least the 84 values there were before the first.
    assert!(
        rewrapped >= 5.0 * 84.0,
        "re-wrapped {rewrapped} (leader {leader})"
    );

    // A node killed and restarted opens root version 6 through the token; every earlier
    // ciphertext decrypts on every node.
    c.kill(3);
    c.restart(3).await;
    c.wait_converged(Duration::from_secs(20)).await;
    let mut decrypted = BTreeMap::new();
    for node in 1..=3 {
        for (blob, plain) in ciphertexts.iter() {
            let r = api(node)
                .call("Decrypt", json!({"CiphertextBlob": blob}))
                .await
                .unwrap();
            assert_eq!(r["Plaintext"], plain.as_str());
            *decrypted.entry(node).or_insert(0) += 1;
        }
    }
    assert_eq!(decrypted.values().sum::<usize>(), 3 * ciphertexts.len());
    // The sub-user's credential (re-wrapped) still signs; its ciphertext decrypts.
    let back = user_api
        .call("Decrypt", json!({"CiphertextBlob": user_blob}))
        .await
        .unwrap();
    assert_eq!(back["Plaintext"], "dXNlcg==");
    // The import parameters issued under version 1 still work: their private key was re-wrapped.
    let wrapped = {
        use rsa::pkcs8::DecodePublicKey;
        let der = base64::engine::general_purpose::STANDARD
            .decode(import["PublicKey"].as_str().unwrap())
            .unwrap();
        let public = rsa::PublicKey::from_public_key_der(&der).unwrap();
        let w = public
            .oaep_encrypt::<rsa::sha2::Sha256>(&[5u8; 16])
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(w)
    };
    api(3)
        .call("ImportKeyMaterial", json!({"KeyId": external, "ImportToken": import["ImportToken"], "EncryptedKeyMaterial": wrapped, "ValidTo": 0}))
        .await
        .unwrap();
    let blob = api(1)
        .call(
            "Encrypt",
            json!({"KeyId": external, "Plaintext": "aW1wb3J0ZWQ="}),
        )
        .await
        .unwrap();
    let back = api(3)
        .call("Decrypt", json!({"CiphertextBlob": blob["CiphertextBlob"]}))
        .await
        .unwrap();
    assert_eq!(back["Plaintext"], "aW1wb3J0ZWQ=");
    api(2)
        .call("SignByAsymmetricKey", json!({"KeyId": signer, "Algorithm": "ECC_P256_R1", "Message": "bWVzc2FnZQ==", "MessageType": "RAW"}))
        .await
        .unwrap();
}

/// Passphrase unseal in a three-node cluster: node 1 makes the Argon2id parameters, the file is
/// copied to the others (docs/security.md), every node derives the same unseal key from the
/// passphrase on its descriptor and serves crypto; a rotation re-wraps everything, and a node
/// restarted afterwards derives the key again and decrypts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passphrase_unseals_every_node_of_a_cluster_across_a_rotation() {
    const PORT: u16 = 28200;
    let mut c = TestCluster::configure(3, PORT, Default::default(), Default::default());
    let secret = c.dir.path().join("passphrase");
    std::fs::write(&secret, "correct horse battery staple\n").unwrap();
    c.serve_secret = Some(secret);
    c.edit_configs(|cfg| {
        cfg.kms.unseal = raftkms::config::UnsealSource::Passphrase;
        cfg.kms.unseal_key_file = None;
        cfg.kms.scheduler_interval_ms = 200;
    });
    c.spawn(0);
    c.wait_answering(0).await;
    let params = c.nodes[0].cfg.unseal_kdf_file();
    for i in 1..3 {
        std::fs::copy(&params, c.nodes[i].cfg.unseal_kdf_file()).unwrap();
        c.spawn(i);
    }
    for i in 1..3 {
        c.wait_answering(i).await;
    }
    c.admin(1).init().await.unwrap();
    c.wait_leader(Duration::from_secs(20)).await;
    let account = c.admin(1).create_account("phrase").await.unwrap();
    let cred = c.admin(2).create_credential(account.uin).await.unwrap();
    let api = |node: u64| {
        KmsClient::new(
            &TestCluster::api_addr(PORT, node),
            REGION,
            &cred.secret_id,
            cred.secret_key.expose(),
        )
    };
    let key = api(1)
        .call("CreateKey", json!({"Alias": "p"}))
        .await
        .unwrap();
    let blob = api(2)
        .call(
            "Encrypt",
            json!({"KeyId": key["KeyId"], "Plaintext": "cGhyYXNl"}),
        )
        .await
        .unwrap()["CiphertextBlob"]
        .clone();
    for node in 1..=3 {
        let r = api(node)
            .call("Decrypt", json!({"CiphertextBlob": blob}))
            .await
            .unwrap();
        assert_eq!(r["Plaintext"], "cGhyYXNl", "node {node}");
    }
    let rotated = c.admin(2).rotate_root_key(None).await.unwrap();
    assert_eq!(rotated.current, 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.admin(1).root_key_status().await.unwrap().pending > 0 {
        assert!(Instant::now() < deadline, "the re-wrap did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    retire(&c, 1, 1).await;
    c.stop(2);
    c.restart(2).await;
    c.wait_converged(Duration::from_secs(20)).await;
    for node in 1..=3 {
        let r = api(node)
            .call("Decrypt", json!({"CiphertextBlob": blob}))
            .await
            .unwrap();
        assert_eq!(r["Plaintext"], "cGhyYXNl", "node {node}");
    }
}
