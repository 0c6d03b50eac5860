//! The console's DR and cluster views on a two-region cluster set up as `raftkms dev` sets one up
//! (`[console] dev-drill-dir`, `nodeN.pid` files, `dev.env`), in Debian's headless Chromium
//! (tests/sdk/console_failover.py): a DR drill started from the console freezes the region's node
//! and reports RTO and RPO 0; then the leader is killed and the cluster view shows the new one.
//! A cluster of its own, since the test kills a node.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestCluster;
use raftkms::config::{SnapshotConfig, TimingConfig};

const BASE: u16 = 26500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_runs_a_drill_and_follows_a_new_leader() {
    let layout = [
        ("ap-guangzhou", true),
        ("ap-guangzhou", true),
        ("ap-shanghai", true),
    ];
    let mut c = TestCluster::configure_layout(
        &layout,
        BASE,
        TimingConfig::default(),
        SnapshotConfig::default(),
    );
    let ca_file = c.enable_tls();
    let dir = c.dir.path().to_path_buf();
    c.edit_configs(|cfg| cfg.console.dev_drill_dir = Some(dir.clone()));
    let c = c.launch().await;
    let admin = c.admin(1);
    let account = admin.create_account("console").await.unwrap();
    let cred = admin.create_credential(account.uin).await.unwrap();
    let operator = raftkms::wire::records::operator(account.uin);
    admin.put_record(&operator, "console", None).await.unwrap();

    // What `raftkms dev` leaves in its directory for `raftkms drill --dev`: the node pids and the
    // cluster's coordinates (also the test's environment file).
    let mut pids = Vec::new();
    for (i, node) in c.nodes.iter().enumerate() {
        let pid = node.pid().unwrap();
        std::fs::write(dir.join(format!("node{}.pid", i + 1)), format!("{pid}\n")).unwrap();
        pids.push(format!("{}:{pid}", i + 1));
    }
    let tls = c.tls.clone().unwrap();
    let endpoints: Vec<String> = (1..=3)
        .map(|i| format!("https://{}", TestCluster::api_addr(BASE, i)))
        .collect();
    let env_file = dir.join("dev.env");
    std::fs::write(
        &env_file,
        format!(
            "KMS_ENDPOINTS={}\nKMS_CA_BUNDLE={}\nKMS_REGION=ap-guangzhou\nKMS_SECRET_ID={}\nKMS_SECRET_KEY={}\nRAFTKMS_NODE={}\nRAFTKMS_CLUSTER_ID={}\nRAFTKMS_CA={}\nRAFTKMS_ADMIN_CERT={}\nRAFTKMS_ADMIN_KEY={}\nRAFTKMS_NODE_PIDS={}\nRAFTKMS_SDK_TESTS=tests/sdk/console_failover.py\n",
            endpoints.join(","),
            ca_file.display(),
            cred.secret_id,
            cred.secret_key.expose(),
            TestCluster::raft_addr(BASE, 1),
            c.cluster_id,
            tls.ca.display(),
            tls.admin_cert.display(),
            tls.admin_key.display(),
            pids.join(","),
        ),
    )
    .unwrap();

    let (passed, stdout) = common::run_sdk_script(env_file).await;
    let drills = std::fs::read_to_string(dir.join("console-drills.log")).unwrap_or_default();
    println!("--- console-drills.log:\n{drills}");
    assert!(passed, "the console failover tests failed");
    // Both tests ran (none skipped or deselected).
    assert!(
        stdout.contains("2 passed"),
        "not both tests passed: {stdout}"
    );
    // The drill really ran, as a child process of the node, and froze node 3 (the report's cut).
    assert!(
        drills.contains("result               PASS"),
        "no passing drill in its log"
    );
}
