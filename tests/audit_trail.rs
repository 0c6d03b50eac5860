//! The audit trail on real nodes: one record per request (refused ones included), written records
//! of acknowledged writes survive `kill -9`, `raftkms audit verify` checks a trail against the
//! chain heads the cluster checkpointed and names an edited, deleted, reordered or truncated
//! record, and a node whose trail cannot be written refuses requests (counted in `/metrics`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bin, TestCluster};
use raftkms::audit::{Reader, StoredRecord};
use raftkms::client::KmsClient;
use serde_json::json;

/// Every record of a node's trail.
fn records(dir: &std::path::Path) -> Vec<StoredRecord> {
    Reader::open(dir)
        .unwrap()
        .map(|r| r.unwrap())
        .collect::<Vec<_>>()
}

fn audit_dir(c: &TestCluster, id: u64) -> std::path::PathBuf {
    c.nodes[c.idx(id)].cfg.audit_dir()
}

/// `raftkms audit verify` of node `id`'s trail in `dir` against the cluster's checkpoints.
fn verify(c: &TestCluster, id: u64, dir: &std::path::Path) -> std::process::Output {
    Command::new(bin())
        .args(["audit", "verify", "--node-id", &id.to_string(), "--dir"])
        .arg(dir)
        .args([
            "--node",
            &TestCluster::raft_addr(c.base_port, 1),
            "--cluster-id",
            &c.cluster_id,
            "--admin-token",
            common::ADMIN_TOKEN,
        ])
        .output()
        .unwrap()
}

/// A request id from a call's outcome, success or refusal.
fn request_id(r: &Result<serde_json::Value, raftkms::client::KmsError>) -> String {
    match r {
        Ok(v) => v["RequestId"].as_str().unwrap().to_string(),
        Err(raftkms::client::KmsError::Api { request_id, .. }) => request_id.clone(),
        Err(e) => panic!("no answer: {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_has_one_record_that_survives_a_crash_and_verifies() {
    let mut c = TestCluster::configure(3, 27700, Default::default(), Default::default());
    c.edit_configs(|cfg| cfg.audit.checkpoint_interval_s = 1);
    let mut c = c.launch().await;
    let account = c.admin(1).create_account("audited").await.unwrap();
    let cred = c.admin(1).create_credential(account.uin).await.unwrap();
    let api = |c: &TestCluster, node: u64| {
        KmsClient::new(
            &TestCluster::api_addr(c.base_port, node),
            "ap-guangzhou",
            &cred.secret_id,
            cred.secret_key.expose(),
        )
    };

    // A mixed workload through every node: writes, crypto, refusals; each answer's RequestId
    // with the node that answered it and its outcome.
    let mut asked: BTreeMap<String, (u64, &'static str, String)> = BTreeMap::new();
    let mut keys = Vec::new();
    for round in 0..4u64 {
        for node in 1..=3 {
            let k = api(&c, node)
                .call("CreateKey", json!({"Alias": format!("a{round}n{node}")}))
                .await;
            asked.insert(request_id(&k), (node, "kms:CreateKey", "Success".into()));
            let key_id = k.unwrap()["KeyId"].as_str().unwrap().to_string();
            let enc = api(&c, node)
                .call("Encrypt", json!({"KeyId": key_id, "Plaintext": "c2VjcmV0"}))
                .await;
            asked.insert(request_id(&enc), (node, "kms:Encrypt", "Success".into()));
            let missing = api(&c, node)
                .call(
                    "DescribeKey",
                    json!({"KeyId": "00000000-0000-0000-0000-000000000000"}),
                )
                .await;
            assert!(missing.is_err());
            asked.insert(
                request_id(&missing),
                (
                    node,
                    "kms:DescribeKey",
                    "ResourceUnavailable.CmkNotFound".into(),
                ),
            );
            keys.push((node, key_id));
        }
    }
    // A request refused before its caller is known: recorded with the claimed SecretId.
    let forged = KmsClient::new(
        &TestCluster::api_addr(c.base_port, 2),
        "ap-guangzhou",
        &cred.secret_id,
        "not-the-secret-key-not-the-secret",
    )
    .call("ListKeys", json!({}))
    .await;
    asked.insert(
        request_id(&forged),
        (2, "kms:ListKeys", "AuthFailure.SignatureFailure".into()),
    );
    // Writes acknowledged by node 1 just before it crashes.
    let mut acknowledged = Vec::new();
    for (i, (_, key_id)) in keys.iter().enumerate().take(3) {
        let r = api(&c, 1)
            .call(
                "UpdateKeyDescription",
                json!({"KeyId": key_id, "Description": format!("d{i}")}),
            )
            .await;
        let id = request_id(&r);
        r.unwrap();
        asked.insert(
            id.clone(),
            (1, "kms:UpdateKeyDescription", "Success".into()),
        );
        acknowledged.push(id);
    }
    c.kill(1);
    let on_node1: Vec<String> = records(&audit_dir(&c, 1))
        .into_iter()
        .map(|r| r.event.request_id)
        .collect();
    for id in &acknowledged {
        assert!(
            on_node1.contains(id),
            "an acknowledged write's record was lost in the crash: {id}"
        );
    }
    c.restart(1).await;
    c.wait_leader(Duration::from_secs(20)).await;
    // Let every node sync its batch and checkpoint its head.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Exactly one record of each request, on the node that answered it, with its outcome.
    let mut found: BTreeMap<String, Vec<(u64, StoredRecord)>> = BTreeMap::new();
    for node in 1..=3 {
        for r in records(&audit_dir(&c, node)) {
            assert_eq!(r.event.node_id, node);
            found
                .entry(r.event.request_id.clone())
                .or_default()
                .push((node, r));
        }
    }
    for (id, (node, action, result)) in &asked {
        let recs = found.get(id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            recs.len(),
            1,
            "request {id} ({action}) has {} records",
            recs.len()
        );
        let (on, r) = &recs[0];
        assert_eq!(on, node, "{id}");
        assert_eq!(&r.event.action, action, "{id}");
        assert_eq!(&r.event.result, result, "{id}");
        assert_eq!(r.event.secret_id.as_deref(), Some(cred.secret_id.as_str()));
        if result == "Success" {
            assert_eq!(r.event.uin, Some(account.uin));
            assert_eq!(r.event.principal.as_deref(), Some("root"));
        }
        assert!(r.event.source.is_some());
    }
    // Admin requests are on the record too (the account and credential made above, by node 1).
    let admin_records: Vec<StoredRecord> = records(&audit_dir(&c, 1))
        .into_iter()
        .filter(|r| r.event.dialect == "admin")
        .collect();
    assert!(
        admin_records
            .iter()
            .any(|r| r.event.action == "admin:POST /admin/accounts"
                && r.event.result == "Success"
                && r.event.principal.as_deref() == Some("admin-token")
                && r.event.write),
        "{admin_records:?}"
    );
    // Nothing secret: no plaintext, no secret key in any trail file.
    for node in 1..=3 {
        for entry in std::fs::read_dir(audit_dir(&c, node)).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(!text.contains("c2VjcmV0") && !text.contains(cred.secret_key.expose()));
        }
    }

    // Every trail verifies against the cluster's checkpoints, and the checkpoints exist.
    let checkpoints = c.admin(2).audit_checkpoints().await.unwrap();
    for node in 1..=3 {
        assert!(
            checkpoints.iter().any(|k| k.node_id == node),
            "node {node} never checkpointed its trail: {checkpoints:?}"
        );
        let out = verify(&c, node, &audit_dir(&c, node));
        assert!(
            out.status.success(),
            "node {node}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Tampering with a copy of node 2's trail: each kind is detected and named.
    let seg = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .min()
            .unwrap()
    };
    let tamper = |name: &str, edit: &dyn Fn(Vec<String>) -> Vec<String>, want: &str| {
        let copy = c.dir.path().join(format!("tampered-{name}"));
        std::fs::create_dir_all(&copy).unwrap();
        let src = seg(&audit_dir(&c, 2));
        let lines: Vec<String> = std::fs::read_to_string(&src)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert!(lines.len() > 5, "too few records to tamper with");
        let mut text = edit(lines).join("\n");
        text.push('\n');
        std::fs::write(copy.join(src.file_name().unwrap()), text).unwrap();
        let out = verify(&c, 2, &copy);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{name}: verify passed a tampered trail"
        );
        assert!(stderr.contains(want), "{name}: {stderr}");
    };
    tamper(
        "edited",
        &|mut l| {
            l[1] = l[1].replace("\"Success\"", "\"AuthFailure.SignatureFailure\"");
            l
        },
        "was changed",
    );
    tamper(
        "deleted",
        &|mut l| {
            l.remove(3);
            l
        },
        "missing",
    );
    tamper(
        "reordered",
        &|mut l| {
            l.swap(2, 3);
            l
        },
        "out of place",
    );
    tamper(
        "truncated",
        &|mut l| {
            l.truncate(2);
            l
        },
        "cut from its end",
    );
}

/// A tmpfs mounted for one test, unmounted when dropped (needs root, as CI runs).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` until a write fails: a real full disk.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_trail_cannot_be_written_refuses_requests_and_recovers() {
    let mut c = TestCluster::configure(1, 27900, Default::default(), Default::default());
    c.edit_configs(|cfg| cfg.audit.checkpoint_interval_s = 1);
    let dir = c.nodes[0].cfg.audit_dir();
    let data = c.nodes[0].cfg.data_dir.clone();
    std::fs::create_dir_all(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    // The trail on a small disk of its own.
    let _disk = Tmpfs::mount(&dir, "2m");
    let c = c.launch().await;
    let account = c.admin(1).create_account("full").await.unwrap();
    let cred = c.admin(1).create_credential(account.uin).await.unwrap();
    let api = KmsClient::new(
        &TestCluster::api_addr(c.base_port, 1),
        "ap-guangzhou",
        &cred.secret_id,
        cred.secret_key.expose(),
    );
    api.call("CreateKey", json!({"Alias": "before"}))
        .await
        .unwrap();
    let filler = fill(&dir);

    // A write's record must be durable before its answer. The disk is full, but the trail's last
    // page may still hold a record or two: every write answered has its record on disk, and the
    // first whose record cannot be written is not answered.
    let mut answered = Vec::new();
    let mut refused = None;
    for i in 0..200 {
        match api
            .call("CreateKey", json!({"Alias": format!("full{i}")}))
            .await
        {
            Ok(v) => answered.push(v["RequestId"].as_str().unwrap().to_string()),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    match &refused {
        Some(raftkms::client::KmsError::Api { code, message, .. }) => {
            assert_eq!(code, "InternalError");
            assert!(message.contains("audit trail"), "{message}");
        }
        other => panic!("200 writes on a full disk, and none refused: {other:?}"),
    }
    let on_disk: Vec<String> = records(&dir)
        .into_iter()
        .map(|r| r.event.request_id)
        .collect();
    for id in &answered {
        assert!(
            on_disk.contains(id),
            "write {id} answered without its record"
        );
    }
    // From then on every request is refused before anything runs, and counted.
    let r = api.call("ListKeys", json!({})).await;
    assert!(
        matches!(&r, Err(raftkms::client::KmsError::Api { code, .. }) if code == "InternalError"),
        "{r:?}"
    );
    let metrics = common::metrics_of(&c, 1).await;
    assert!(
        common::counter(&metrics, "raftkms_audit_refusals_total") >= 2.0,
        "{metrics}"
    );

    // Space again: the node recovers its trail and serves, and the trail verifies.
    std::fs::remove_file(filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match api.call("ListKeys", json!({})).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "never recovered: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = Command::new(bin())
        .args(["audit", "verify", "--offline", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
