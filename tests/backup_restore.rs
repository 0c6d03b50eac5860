//! Backups and restore (docs/operations.md, "Backups and restore"): a backup taken through a
//! follower while writes go on holds every write acknowledged before it was asked for; it
//! restores into a new cluster (new cluster id, the same unseal key) whose state digest is the
//! backup's, whose credentials, keys and ciphertexts work, and which another node then joins;
//! a second backup with no writes in between has the live state's digest. Bad input (a truncated
//! or edited file, the old cluster's id, a wrong unseal key, a used data directory, an existing
//! output file) is refused and writes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{get, put, TestCluster};
use raftkms::client::KmsClient;
use raftkms::config::{SnapshotConfig, TimingConfig};
use raftkms::wire::JoinRequest;
use serde_json::json;

fn kms(base: u16, node: u64, id: &str, key: &str) -> KmsClient {
    KmsClient::new(&TestCluster::api_addr(base, node), "ap-guangzhou", id, key)
}

/// A one-node cluster configured (not started) at `base`, with its data directory to be
/// restored into and the unseal key of `from`.
fn target(base: u16, from: &TestCluster) -> TestCluster {
    let mut dst =
        TestCluster::configure(1, base, TimingConfig::default(), SnapshotConfig::default());
    // No chain-head checkpoint of the new trail within the test: the digest stays the backup's.
    dst.edit_configs(|cfg| cfg.audit.checkpoint_interval_s = 3600);
    std::fs::copy(
        from.dir.path().join("unseal.key"),
        dst.dir.path().join("unseal.key"),
    )
    .unwrap();
    dst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_into_a_new_cluster_with_every_acknowledged_write() {
    let mut src =
        TestCluster::configure(3, 29500, TimingConfig::default(), SnapshotConfig::default());
    // No audit checkpoint through Raft within the test: nothing but the test writes.
    src.edit_configs(|cfg| cfg.audit.checkpoint_interval_s = 3600);
    let mut src = src.launch().await;
    let leader = src.wait_leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    // A tenant with a key and a ciphertext, and some records.
    let account = src.admin(1).create_account("backup").await.unwrap();
    let cred = src.admin(1).create_credential(account.uin).await.unwrap();
    let (sid, skey) = (cred.secret_id.clone(), cred.secret_key.expose().to_string());
    let k = kms(29500, leader, &sid, &skey)
        .call("CreateKey", json!({"Alias": "kept"}))
        .await
        .unwrap();
    let key_id = k["KeyId"].as_str().unwrap().to_string();
    let ct = kms(29500, leader, &sid, &skey)
        .call("Encrypt", json!({"KeyId": key_id, "Plaintext": "c2VjcmV0"}))
        .await
        .unwrap()["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..20 {
        put(&src, leader, &format!("pre-{i}"), "v").await;
    }

    // Writes go on while the backup is taken (through a follower).
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let admin = src.admin(leader);
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("load-{i}");
                if admin.put_record(&name, "v", None).await.is_ok() {
                    acked.lock().unwrap().push(name);
                }
                i += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before: Vec<String> = acked.lock().unwrap().clone();
    assert!(!before.is_empty(), "the load acknowledged nothing");
    let file = src.dir.path().join("kms.rkbak");
    // What the leader had committed just before: the follower's backup must hold at least that
    // (its read barrier catches up with the leader first).
    let committed = src
        .admin(leader)
        .status()
        .await
        .unwrap()
        .commit_index
        .unwrap();
    let mut progress_calls = 0;
    let saved = raftkms::backup::create(&src.admin(follower), &file, &mut |_| progress_calls += 1)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    assert!(progress_calls > 0);
    assert!(
        saved.header.last_applied.index >= committed,
        "the backup ({}) is behind what the leader had committed before it was asked for ({committed})",
        saved.header.last_applied.index
    );
    assert_eq!(saved.header.cluster_id, "test-29500");
    assert_eq!(saved.header.source_node, follower);
    assert!(saved.header.counts["records"] >= 20 + before.len() as u64);
    // The load went on after the backup's point: the live state has more.
    let total = src.admin(leader).digest().await.unwrap().records as u64;
    assert!(
        total > saved.header.counts["records"],
        "the load stopped before the backup"
    );
    assert_eq!(saved.header.counts["keys"], 1);
    assert_eq!(saved.header.counts["accounts"], 1);
    let (checked, size) = raftkms::backup::verify(&file).unwrap();
    assert_eq!(checked, saved.header);
    assert_eq!(size, saved.bytes);
    // A backup never replaces a file.
    let again = raftkms::backup::create(&src.admin(leader), &file, &mut |_| {}).await;
    assert!(again.unwrap_err().to_string().contains("exists"));

    // With no writes in between, a backup's digest is the live state's.
    let quiet = src.dir.path().join("quiet.rkbak");
    let q = raftkms::backup::create(&src.admin(leader), &quiet, &mut |_| {})
        .await
        .unwrap();
    let live = src.admin(leader).digest().await.unwrap();
    assert_eq!(live.applied_index, Some(q.header.last_applied.index));
    assert_eq!(live.digest, q.header.digest);

    // Restore into a new cluster: one node from the file, then a second joins.
    let mut dst = target(29600, &src);
    let cfg = dst.nodes[0].cfg.clone();
    let restored = raftkms::node::restore::restore(&cfg, None, &file, false)
        .await
        .unwrap();
    assert_eq!(restored.header, saved.header);
    dst.spawn(0);
    dst.wait_answering(0).await;
    assert_eq!(dst.wait_leader(Duration::from_secs(20)).await, 1);
    let d = dst.admin(1).digest().await.unwrap();
    assert_eq!(
        d.digest, restored.digest,
        "the restored state is not the backup's"
    );
    for name in (0..20)
        .map(|i| format!("pre-{i}"))
        .chain(before.iter().cloned())
    {
        assert_eq!(
            get(&dst, 1, &name).await.as_deref(),
            Some("v"),
            "{name} lost"
        );
    }
    // The credential, the key and the ciphertext work on the restored cluster.
    let p = kms(29600, 1, &sid, &skey)
        .call("Decrypt", json!({"CiphertextBlob": ct}))
        .await
        .unwrap();
    assert_eq!(p["Plaintext"], "c2VjcmV0");
    kms(29600, 1, &sid, &skey)
        .call("Encrypt", json!({"KeyId": key_id, "Plaintext": "eA=="}))
        .await
        .unwrap();
    // It takes writes and grows like any cluster.
    put(&dst, 1, "after-restore", "w").await;
    let idx = dst.add_node_config(2, Vec::new());
    dst.nodes[idx].cfg.audit.checkpoint_interval_s = 3600;
    common::write_config(&dst.nodes[idx].config_path, &dst.nodes[idx].cfg);
    dst.spawn(idx);
    dst.wait_answering(idx).await;
    let st = dst
        .admin(1)
        .with_timeout(Duration::from_secs(60))
        .join(&JoinRequest {
            id: 2,
            raft_addr: TestCluster::raft_addr(29600, 2),
            api_addr: TestCluster::api_addr(29600, 2),
            region: "ap-guangzhou".into(),
            voter: true,
        })
        .await
        .unwrap();
    assert_eq!(
        st.voters.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([1, 2])
    );
    dst.wait_converged(Duration::from_secs(30)).await;
    assert_eq!(get(&dst, 2, "pre-0").await.as_deref(), Some("v"));
    assert_eq!(get(&dst, 2, "after-restore").await.as_deref(), Some("w"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_refuses_bad_input_and_writes_nothing() {
    let src = TestCluster::start(1, 29700).await;
    put(&src, 1, "r", "v").await;
    let file = src.dir.path().join("b.rkbak");
    raftkms::backup::create(&src.admin(1), &file, &mut |_| {})
        .await
        .unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let dst = target(29750, &src);
    let cfg = dst.nodes[0].cfg.clone();
    let staging = {
        let mut s = cfg.data_dir.as_os_str().to_os_string();
        s.push(".restoring");
        std::path::PathBuf::from(s)
    };
    let refused = |r: Result<_, raftkms::node::StartError>| {
        let e = r
            .map(|_: raftkms::node::restore::Restored| ())
            .unwrap_err()
            .to_string();
        for d in [&cfg.data_dir, &staging] {
            assert!(!d.exists(), "a refused restore left {}", d.display());
        }
        e
    };

    // Truncated, and one byte changed.
    let truncated = dst.dir.path().join("truncated.rkbak");
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    let e = refused(raftkms::node::restore::restore(&cfg, None, &truncated, false).await);
    assert!(e.contains("checksum"), "{e}");
    assert!(raftkms::backup::verify(&truncated).is_err());
    let edited = dst.dir.path().join("edited.rkbak");
    let mut b = bytes.clone();
    let at = b.len() - 100;
    b[at] ^= 0x40;
    std::fs::write(&edited, &b).unwrap();
    let e = refused(raftkms::node::restore::restore(&cfg, None, &edited, false).await);
    assert!(e.contains("checksum"), "{e}");

    // A file whose authentication tag was changed and its checksum made to match: it passes the
    // offline check (which holds no key), and restore refuses it.
    let forged = dst.dir.path().join("forged.rkbak");
    let mut f = bytes.clone();
    let n = f.len();
    f[n - 40] ^= 1;
    let sum = <sha2::Sha256 as sha2::Digest>::digest(&f[..n - 32]);
    f[n - 32..].copy_from_slice(&sum);
    std::fs::write(&forged, &f).unwrap();
    raftkms::backup::verify(&forged).unwrap();
    let e = refused(raftkms::node::restore::restore(&cfg, None, &forged, false).await);
    assert!(e.contains("authentication tag"), "{e}");

    // The old cluster's id, unless asked for; asked for with another id.
    let mut same = cfg.clone();
    same.cluster_id = "test-29700".into();
    let e = refused(raftkms::node::restore::restore(&same, None, &file, false).await);
    assert!(e.contains("--same-cluster-id"), "{e}");
    let e = refused(raftkms::node::restore::restore(&cfg, None, &file, true).await);
    assert!(e.contains("configured as"), "{e}");

    // Another unseal key; none at all (never created by a restore).
    let mut wrong = cfg.clone();
    let other_key = dst.dir.path().join("other.key");
    std::fs::write(&other_key, format!("{}\n", "ab".repeat(32))).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&other_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    wrong.kms.unseal_key_file = Some(other_key);
    let e = refused(raftkms::node::restore::restore(&wrong, None, &file, false).await);
    assert!(e.contains("does not open root-key version"), "{e}");
    let mut none = cfg.clone();
    let absent = dst.dir.path().join("absent.key");
    none.kms.unseal_key_file = Some(absent.clone());
    let e = refused(raftkms::node::restore::restore(&none, None, &file, false).await);
    assert!(e.contains("missing"), "{e}");
    assert!(!absent.exists(), "a restore created an unseal key");

    // A data directory in use.
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    std::fs::write(cfg.data_dir.join("something"), b"x").unwrap();
    let e = raftkms::node::restore::restore(&cfg, None, &file, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not empty"), "{e}");
    assert!(cfg.data_dir.join("something").exists());
    std::fs::remove_dir_all(&cfg.data_dir).unwrap();

    // The good file restores once; a second restore into the same directory is refused.
    raftkms::node::restore::restore(&cfg, None, &file, false)
        .await
        .unwrap();
    let e = raftkms::node::restore::restore(&cfg, None, &file, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not empty"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scheduled_backups_land_in_their_directory_and_only_the_newest_are_kept() {
    let mut c =
        TestCluster::configure(1, 29800, TimingConfig::default(), SnapshotConfig::default());
    let dir = c.dir.path().join("backups");
    std::fs::create_dir_all(&dir).unwrap();
    // Somebody else's file in the same directory is never touched.
    std::fs::write(dir.join("other-cluster-20200101T000000Z-1.rkbak"), b"x").unwrap();
    let d = dir.clone();
    c.edit_configs(move |cfg| {
        cfg.backup.dir = Some(d.clone());
        cfg.backup.interval_s = 1;
        cfg.backup.keep = 2;
    });
    let mut c = c.launch().await;
    put(&c, 1, "scheduled", "v").await;
    let ours = |dir: &std::path::Path| {
        let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                n.starts_with("test-29800-") && n.ends_with("-n1.rkbak")
            })
            .collect();
        v.sort();
        v
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while common::counter(
        &common::metrics_of(&c, 1).await,
        "raftkms_backups_written_total",
    ) < 3.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than 3 scheduled backups in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Stopped, so that no backup is caught between its write and its pruning.
    c.stop(1);
    let files = ours(&dir);
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        let (h, _) = raftkms::backup::verify(f).unwrap();
        assert_eq!(h.cluster_id, "test-29800");
        assert!(h.counts["records"] >= 1);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(dir.join("other-cluster-20200101T000000Z-1.rkbak").exists());
}
