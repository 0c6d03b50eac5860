//! The unmodified Tencent Cloud SDK (`tencentcloud-sdk-python-kms`, pinned) and `tccli` against a
//! real 3-node cluster (tests/sdk/, run through tests/sdk/run.sh, which prepares a virtualenv),
//! followed by the at-rest check: no key material or API secret key appears in clear in any file
//! of any node's data directory, snapshots and a backup included, or in the node logs; then the
//! suite again on a cluster restored from that backup (issue 21).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::TestCluster;
use raftkms::config::{SnapshotConfig, TimingConfig};
use raftkms::crypto::root_key::UnsealKey;
use raftkms::registry::account::credential_aad;
use raftkms::registry::key::material_aad;

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Writes the suite's environment file `env_name` (the cluster's endpoints, CA, the credential,
/// the admin certificate) and runs tests/sdk/run.sh against the cluster; fails the test unless
/// pytest ran and passed.
async fn run_suite(
    c: &TestCluster,
    ca_file: &Path,
    cred: &raftkms::wire::NewCredential,
    env_name: &str,
) {
    let tls = c.tls.clone().unwrap();
    let endpoints: Vec<String> = (1..=3)
        .map(|i| format!("https://{}", TestCluster::api_addr(c.base_port, i)))
        .collect();
    let env_file = c.dir.path().join(env_name);
    std::fs::write(
        &env_file,
        format!(
            "KMS_ENDPOINTS={}\nKMS_CA_BUNDLE={}\nKMS_REGION=ap-guangzhou\nKMS_SECRET_ID={}\nKMS_SECRET_KEY={}\nHWC_PROJECT_ID={}\nRAFTKMS_NODE={}\nRAFTKMS_CLUSTER_ID={}\nRAFTKMS_CA={}\nRAFTKMS_ADMIN_CERT={}\nRAFTKMS_ADMIN_KEY={}\n",
            endpoints.join(","),
            ca_file.display(),
            cred.secret_id,
            cred.secret_key.expose(),
            raftkms::http::huawei::project::project_id(cred.uin, "ap-guangzhou"),
            TestCluster::raft_addr(c.base_port, 1),
            c.cluster_id,
            tls.ca.display(),
            tls.admin_cert.display(),
            tls.admin_key.display(),
        ),
    )
    .unwrap();

    let (passed, stdout) = common::run_sdk_script(env_file).await;
    assert!(passed, "the SDK/tccli suite failed (see output above)");
    assert!(stdout.contains(" passed"), "pytest ran no test: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_and_tccli_work_and_no_secret_is_stored_in_clear() {
    // Frequent snapshots, so snapshot files are part of what the at-rest scan covers.
    let snapshot = SnapshotConfig {
        logs_since_last: 50,
        max_logs_to_keep: 10,
        chunk_bytes: 1 << 20,
    };
    // Shanghai is served too, so replica keys (ReplicateKey) have somewhere to go.
    let mut c = TestCluster::configure(3, 26000, TimingConfig::default(), snapshot);
    c.serve_regions(&["ap-shanghai"]);
    // A small hosted data key quota, so the suite can fill it (test_data_keys.py).
    c.edit_configs(|cfg| cfg.kms.data_key_limit = 30);
    // The whole suite over TLS, as `raftkms dev` serves it: a cluster CA and a node certificate
    // each, made by the library `raftkms cert` uses.
    let ca_file = c.enable_tls();
    let mut c = c.launch().await;
    let admin = c.admin(1);
    // Init asked every member its release: a new cluster is at this build's feature level (the
    // suite's BindCloudResource needs it).
    assert_eq!(
        admin.upgrade_status().await.unwrap().cluster_feature_level,
        raftkms::registry::features::FEATURE_LEVEL
    );
    let account = admin.create_account("sdk").await.unwrap();
    let cred = admin.create_credential(account.uin).await.unwrap();
    // The suite's account operates the cluster (the console's cluster and DR views).
    let operator = raftkms::wire::records::operator(account.uin);
    admin.put_record(&operator, "sdk", None).await.unwrap();
    run_suite(&c, &ca_file, &cred, "sdk.env").await;
    // A backup now: the at-rest scan below covers it too, and the suite runs again on a cluster
    // restored from it.
    let backup = c.dir.path().join("sdk.rkbak");
    raftkms::backup::create(&c.admin(1), &backup, &mut |_| {})
        .await
        .unwrap();

    // Stop every node cleanly, then read node 1's registry offline and unwrap every secret.
    c.wait_converged(Duration::from_secs(20)).await;
    for id in 1..=3 {
        assert!(c.stop(id).success());
    }
    let node1 = &c.nodes[0].cfg;
    let db = raftkms::storage::open(
        &node1.data_dir,
        &raftkms::storage::Identity {
            cluster_id: node1.cluster_id.clone(),
            node_id: 1,
        },
    )
    .unwrap();
    let metrics = Arc::new(raftkms::metrics::Metrics::new());
    let snapshots = raftkms::raft::snapshot::SnapshotDir::new(&node1.data_dir).unwrap();
    let sm =
        raftkms::raft::state_machine::StateMachine::open(db.clone(), snapshots, metrics).unwrap();
    let state = sm.applied_state();
    let unseal = UnsealKey::load_or_create(&node1.unseal_key_file()).unwrap();
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    {
        let applied = state.read();
        let reg = &applied.registry;
        let current = reg.root_keys().current().unwrap();
        let root = unseal
            .unseal(current, reg.root_keys().sealed(current).unwrap())
            .unwrap();
        for k in reg.keys().all() {
            for v in &k.versions {
                let m = root
                    .unwrap(&material_aad(&k.key_id, v.version, k.owner_uin), &v.wrapped)
                    .unwrap();
                secrets.push(m.expose().to_vec());
            }
        }
        for cr in reg.accounts().credentials() {
            let s = root
                .unwrap(
                    &credential_aad(&cr.secret_id, cr.uin),
                    &cr.wrapped_secret_key,
                )
                .unwrap();
            secrets.push(s.expose().to_vec());
        }
    }
    drop(sm);
    drop(db);
    assert!(
        secrets.len() > 50,
        "only {} secrets to look for",
        secrets.len()
    );
    // Each secret in raw, hex and Base64 form.
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for s in &secrets {
        needles.push(s.clone());
        needles.push(hex::encode(s).into_bytes());
        needles.push(
            base64::engine::general_purpose::STANDARD
                .encode(s)
                .into_bytes(),
        );
    }
    let mut files = Vec::new();
    files_under(c.dir.path(), &mut files);
    let snapshots = files
        .iter()
        .filter(|f| f.to_string_lossy().ends_with("current.snap"))
        .count();
    assert!(snapshots >= 1, "no snapshot file to scan");
    let mut scanned = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        // The env file handed to the SDK holds the credential on purpose; the unseal key is the
        // one secret that must live in a file (mode 0600).
        if name == "sdk.env" || name == "unseal.key" {
            continue;
        }
        let bytes = std::fs::read(f).unwrap();
        scanned += bytes.len();
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                "a secret appears in clear in {}",
                f.display()
            );
        }
    }
    assert!(scanned > 100_000, "scanned only {scanned} bytes");

    // The whole suite again, on a cluster restored from the backup (docs/operations.md): node 1
    // restored into an empty data directory (same cluster id, so the certificates still
    // apply), nodes 2 and 3 empty and joined, a new tenant.
    for n in &c.nodes {
        std::fs::remove_dir_all(&n.cfg.data_dir).unwrap();
    }
    let cfg = c.nodes[0].cfg.clone();
    raftkms::node::restore::restore(&cfg, None, &backup, true)
        .await
        .unwrap();
    for i in 0..3 {
        c.spawn(i);
    }
    for i in 0..3 {
        c.wait_answering(i).await;
    }
    assert_eq!(c.wait_leader(Duration::from_secs(20)).await, 1);
    for id in [2, 3] {
        c.admin(1)
            .with_timeout(Duration::from_secs(60))
            .join(&raftkms::wire::JoinRequest {
                id,
                raft_addr: TestCluster::raft_addr(c.base_port, id),
                api_addr: TestCluster::api_addr(c.base_port, id),
                region: "ap-guangzhou".into(),
                voter: true,
            })
            .await
            .unwrap();
    }
    let admin = c.admin(1);
    let account = admin.create_account("sdk-restored").await.unwrap();
    let cred = admin.create_credential(account.uin).await.unwrap();
    // The first account's operator record came back with the backup; the new one needs its own.
    let first_operator = admin.get_record(&operator, "linearizable").await.unwrap();
    assert_eq!(first_operator.value.as_deref(), Some("sdk"));
    let operator = raftkms::wire::records::operator(account.uin);
    admin.put_record(&operator, "sdk", None).await.unwrap();
    run_suite(&c, &ca_file, &cred, "sdk-restored.env").await;
}
