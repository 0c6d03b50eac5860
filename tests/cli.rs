//! The command line: bad configurations, busy ports, foreign data directories, and `raftkms dev`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, TestCluster};
use raftkms::admin::AdminClient;
use raftkms::config::{SnapshotConfig, TimingConfig};

fn serve(config: &std::path::Path) -> std::process::Output {
    let mut child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not exit on a bad start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_bad_config_is_rejected_naming_the_field() {
    let c = TestCluster::configure(1, 24000, TimingConfig::default(), SnapshotConfig::default());
    let good = std::fs::read_to_string(&c.nodes[0].config_path).unwrap();
    let cases = [
        (good.replace("node-id = 1\n", ""), "node-id"),
        (
            good.replace(
                "api-listen = \"127.0.0.1:24001\"",
                "api-listen = \"not-an-address\"",
            ),
            "api-listen",
        ),
        (
            good.replace("election-min-ms = 300", "election-min-ms = 5"),
            "timing.election-min-ms",
        ),
        (format!("{good}\nbogus-field = 1\n"), "bogus-field"),
        (good.replace(common::SECRET, "short"), "cluster-secret"),
        (
            good.replace(common::SECRET, "CHANGE-ME-0123456789abcdef"),
            "placeholder",
        ),
        (
            good.replace(common::ADMIN_TOKEN, common::SECRET),
            "admin-token",
        ),
    ];
    for (text, field) in cases {
        let path = c.dir.path().join("bad.toml");
        write_private(&path, &text);
        let out = serve(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {stderr}");
        assert!(
            stderr.contains(field),
            "message does not name `{field}`: {stderr}"
        );
    }
    let out = serve(&c.dir.path().join("missing.toml"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));

    // A config holding secrets that others may read is refused, as ssh refuses such a key.
    let path = c.dir.path().join("readable.toml");
    std::fs::write(&path, &good).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = serve(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

fn write_private(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn the_data_directory_is_private_and_the_unseal_key_lives_outside_it() {
    let c = TestCluster::configure(1, 24600, TimingConfig::default(), SnapshotConfig::default());
    // A data directory others may enter is refused before anything opens.
    let data = &c.nodes[0].cfg.data_dir;
    std::fs::create_dir_all(data).unwrap();
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = serve(&c.nodes[0].config_path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("chmod 700"), "{stderr}");
    std::fs::remove_dir(data).unwrap();

    // The default unseal key sits beside the data directory; a new data directory is 0700.
    let mut cfg = c.nodes[0].cfg.clone();
    cfg.kms.unseal_key_file = None;
    let path = c.dir.path().join("default-unseal.toml");
    common::write_config(&path, &cfg);
    let mut node = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let key = c.dir.path().join("node1.unseal.key");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(key.exists() && data.join("db").exists()) {
        assert!(Instant::now() < deadline, "the node never created its key");
        assert!(node.try_wait().unwrap().is_none(), "the node exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = node.kill();
    let _ = node.wait();
    assert!(!data.join("unseal.key").exists());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(data), 0o700);
    assert_eq!(mode(&key), 0o600);

    // A node with data never makes a new unseal key: a missing key is refused, nothing changes.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !data.join("db/CURRENT").exists() {
        assert!(Instant::now() < deadline, "no database was made");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_file(&key).unwrap();
    let out = serve(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unseal key") && stderr.contains("missing"),
        "{stderr}"
    );
    assert!(!key.exists(), "a new unseal key was made for existing data");

    // A group-writable data directory is refused too.
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o770)).unwrap();
    let out = serve(&path);
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 700"));
}

#[test]
fn a_busy_port_and_a_foreign_data_dir_are_refused_clearly() {
    let c = TestCluster::configure(1, 24100, TimingConfig::default(), SnapshotConfig::default());
    let busy = std::net::TcpListener::bind(TestCluster::api_addr(24100, 1)).unwrap();
    let out = serve(&c.nodes[0].config_path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("api-listen") && stderr.contains("in use"),
        "{stderr}"
    );
    drop(busy);

    // The data directory now belongs to cluster test-24100 node 1; another cluster id is refused.
    let cfg = std::fs::read_to_string(&c.nodes[0].config_path)
        .unwrap()
        .replace("test-24100", "another-cluster");
    let path = c.dir.path().join("other.toml");
    write_private(&path, &cfg);
    let out = serve(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("belongs to cluster `test-24100`"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_drill_rewrite_is_reported_naming_it() {
    // Refused while the command line is parsed: no cluster is needed, nothing is contacted.
    for bad in ["node1:7001", "=127.0.0.1:17001", "node1:7001="] {
        let out = Command::new(bin())
            .args([
                "drill",
                "--region",
                "ap-guangzhou",
                "--secret-id",
                "id",
                "--secret-key",
                "key",
                "--node",
                "127.0.0.1:1",
                "--cluster-id",
                "c",
                "--admin-token",
                "t",
                "--rewrite",
                "node2:7002=127.0.0.1:17002",
                "--rewrite",
                bad,
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains("--rewrite") && stderr.contains(&format!("`{bad}`")),
            "{bad}: {stderr}"
        );
    }
}

fn read_env(path: &std::path::Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The value after `name` on the line of `text` (the CLI's `SecretId:` / `SecretKey:` output).
fn field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap()
        .trim()
        .to_string()
}

/// `raftkms dev`, stopped (SIGINT: it stops its nodes) if the test ends without stopping it, so
/// a failed test leaves no cluster holding the dev ports.
struct Dev(std::process::Child);

impl std::ops::Deref for Dev {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Dev {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: signalling a child process this test started and has not reaped.
            unsafe {
                libc::kill(self.0.id() as i32, libc::SIGINT);
            }
            let _ = self.0.wait();
        }
    }
}

fn start_dev(dir: &std::path::Path) -> Dev {
    Dev(Command::new(bin())
        .args(["dev", "--port", "24201", "--data-dir"])
        .arg(dir)
        .stdout(std::fs::File::create(dir.with_extension("out")).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap())
}

async fn wait_env(dir: &std::path::Path, child: &mut std::process::Child) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let env = read_env(&dir.join("dev.env"));
        if env.iter().any(|(k, _)| k == "RAFTKMS_NODE") {
            return env;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "raftkms dev exited early"
        );
        assert!(Instant::now() < deadline, "dev.env never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The cluster view through `client` (`DescribeClusterStatus`): how many members it lists, or the
/// code of its refusal.
async fn cluster_view(client: &raftkms::client::KmsClient) -> Result<usize, Option<String>> {
    match client
        .call("DescribeClusterStatus", serde_json::json!({}))
        .await
    {
        Ok(status) => Ok(status["Nodes"].as_array().map_or(0, Vec::len)),
        Err(e) => Err(e.code().map(str::to_string)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_starts_three_voters_writes_dev_env_and_resumes_with_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let mut dev = start_dev(&dir);
    let env = wait_env(&dir, &mut dev).await;
    let get = |k: &str| {
        env.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    // TLS by default: https endpoints, the dev CA in KMS_CA_BUNDLE, node keys 0600.
    assert_eq!(
        get("KMS_ENDPOINTS"),
        "https://127.0.0.1:24201,https://127.0.0.1:24202,https://127.0.0.1:24203"
    );
    assert_eq!(get("KMS_REGION"), "ap-guangzhou");
    let ca = std::path::PathBuf::from(get("KMS_CA_BUNDLE"));
    assert_eq!(ca, dir.canonicalize().unwrap().join("tls/ca.pem"));
    // The dev CA's key is not kept: it cannot sign anything else.
    assert!(!dir.join("tls/ca.key").exists());
    for f in ["node1.key", "node2.key", "node3.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("tls").join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }

    // `raftkms cluster status --json`, configured only by the dev.env variables.
    let out = Command::new(bin())
        .args(["cluster", "status", "--json"])
        .envs(env.clone())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|n| n["role"] == "voter"), "{status}");
    assert!(status["leader"].as_u64().is_some());
    let table = Command::new(bin())
        .args(["cluster", "status"])
        .envs(env.clone())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("leader:") && table.matches("voter").count() == 3,
        "{table}"
    );

    // The admin credential is the dev admin certificate; no secret is written anywhere.
    assert!(env
        .iter()
        .all(|(k, _)| k != "RAFTKMS_CLUSTER_SECRET" && k != "RAFTKMS_ADMIN_TOKEN"));
    let admin = AdminClient::with_certificate(
        get("RAFTKMS_NODE"),
        get("RAFTKMS_CLUSTER_ID"),
        std::path::Path::new(&get("RAFTKMS_ADMIN_CERT")),
        std::path::Path::new(&get("RAFTKMS_ADMIN_KEY")),
        std::path::Path::new(&get("RAFTKMS_CA")),
    )
    .unwrap();
    admin
        .put_record("kept", "across-restarts", None)
        .await
        .unwrap();

    // The dev credential works through the KMS API on every node.
    let kms = raftkms::client::KmsClient::new(
        "https://127.0.0.1:24201",
        "ap-guangzhou",
        &get("KMS_SECRET_ID"),
        &get("KMS_SECRET_KEY"),
    )
    .with_ca(&ca)
    .unwrap();
    // Plaintext HTTP to the TLS port gets no answer.
    let plain = raftkms::client::KmsClient::new(
        "http://127.0.0.1:24201",
        "ap-guangzhou",
        &get("KMS_SECRET_ID"),
        &get("KMS_SECRET_KEY"),
    );
    let e = plain
        .call("ListKeys", serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(e, raftkms::client::KmsError::Transport(_)),
        "{e:?}"
    );
    let key = kms
        .call("CreateKey", serde_json::json!({"Alias": "dev-kept"}))
        .await
        .unwrap();
    let key_id = key["KeyId"].as_str().unwrap().to_string();
    let blob = kms
        .at("127.0.0.1:24203")
        .call(
            "Encrypt",
            serde_json::json!({"KeyId": key_id, "Plaintext": "a2VwdA=="}),
        )
        .await
        .unwrap();

    // The admin CLI: a new account, a credential that works, then revoked and refused.
    let cli = |args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .envs(env.clone())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let created = cli(&["account", "create", "--name", "team-a"]);
    let uin = created
        .split("Uin ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(cli(&["account", "list"]).contains("team-a"));
    let cred = cli(&["credential", "create", "--uin", &uin]);
    let (id, secret) = (field(&cred, "SecretId:"), field(&cred, "SecretKey:"));
    assert!(cli(&["credential", "list"]).contains(&id));
    // The same credential in Huawei's terms: an AK/SK and the account's project id per region.
    let hw = cli(&["credential", "create", "--uin", &uin, "--dialect", "huawei"]);
    let project = raftkms::http::huawei::project::project_id(uin.parse().unwrap(), "ap-guangzhou");
    assert!(
        hw.contains(&format!("project id in ap-guangzhou: {project}")),
        "{hw}"
    );
    let hw_ak = field(&hw, "AK:");
    assert!(hw_ak.starts_with("AKID") && cli(&["credential", "list"]).contains(&hw_ak));
    // dev.env names the other APIs' coordinates for the dev credential.
    assert_eq!(get("HWC_AK"), get("KMS_SECRET_ID"));
    assert_eq!(get("HWC_SK"), get("KMS_SECRET_KEY"));
    assert_eq!(get("HWC_ENDPOINT"), "https://127.0.0.1:24201");
    assert_eq!(get("KMS_V2_ENDPOINT"), "127.0.0.1:24201");
    assert_eq!(get("HWC_PROJECT_ID").len(), 32);
    let team = raftkms::client::KmsClient::new("127.0.0.1:24202", "ap-guangzhou", &id, &secret)
        .with_ca(&ca)
        .unwrap();
    assert_eq!(
        team.call("ListKeys", serde_json::json!({})).await.unwrap()["TotalCount"],
        0
    );
    // The cluster view is the operators': the dev account is one, team-a only once made one.
    let dev_kms = kms.at("127.0.0.1:24202");
    assert_eq!(cluster_view(&dev_kms).await, Ok(3));
    // One region of three voters: no region can be cut off by a drill from the console.
    let drills = dev_kms
        .call("DescribeDrillReports", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(
        drills["StartableRegions"],
        serde_json::json!([]),
        "{drills}"
    );
    assert_eq!(
        cluster_view(&team).await,
        Err(Some("AuthFailure.UnauthorizedOperation".into()))
    );
    // The OPERATOR column of the account's row in `account list`.
    let operator_column = |list: String| {
        list.lines()
            .find(|l| l.starts_with(uin.as_str()))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap()
            .to_string()
    };
    assert_eq!(operator_column(cli(&["account", "list"])), "no");
    assert!(cli(&["account", "operator", "--uin", &uin]).contains("is an operator"));
    assert_eq!(operator_column(cli(&["account", "list"])), "yes");
    assert_eq!(cluster_view(&team).await, Ok(3));
    cli(&["account", "operator", "--uin", &uin, "--revoke"]);
    assert_eq!(
        cluster_view(&team).await,
        Err(Some("AuthFailure.UnauthorizedOperation".into()))
    );
    let cli_fails = |args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .envs(env.clone())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(
        cli_fails(&["account", "operator", "--uin", &uin, "--revoke"]).contains("not an operator")
    );
    assert!(cli_fails(&["account", "operator", "--uin", "1"]).contains("no account has Uin 1"));
    let foreign = team
        .call(
            "Decrypt",
            serde_json::json!({"CiphertextBlob": blob["CiphertextBlob"]}),
        )
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Some("ResourceUnavailable.CmkNotFound"));
    // Least privilege through the CLI: a sub-user with a policy file allowing Encrypt on one key.
    let root_key = team
        .call("CreateKey", serde_json::json!({"Alias": "team-key"}))
        .await
        .unwrap()["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let policy_file = tmp.path().join("encrypt-one.json");
    std::fs::write(
        &policy_file,
        format!(
            r#"{{"version":"2.0","statement":[{{"effect":"allow","action":"kms:Encrypt",
                "resource":"qcs::kms:ap-guangzhou:uin/{uin}:key/{root_key}"}}]}}"#
        ),
    )
    .unwrap();
    cli(&["user", "create", "--uin", &uin, "--name", "alice"]);
    cli(&[
        "policy",
        "create",
        "--uin",
        &uin,
        "--name",
        "encrypt-one",
        "--file",
        policy_file.to_str().unwrap(),
    ]);
    cli(&[
        "policy",
        "attach",
        "--uin",
        &uin,
        "--policy",
        "encrypt-one",
        "--user",
        "alice",
    ]);
    assert!(cli(&["user", "list", "--uin", &uin]).contains("encrypt-one"));
    assert!(cli(&["policy", "list", "--uin", &uin]).contains("user/alice"));
    assert!(cli(&["policy", "get", "--uin", &uin, "--name", "encrypt-one"]).contains(&root_key));
    let alice_cred = cli(&["user", "credential", "--uin", &uin, "--name", "alice"]);
    assert!(cli(&["credential", "list"]).contains("user/alice"));
    let alice = raftkms::client::KmsClient::new(
        "127.0.0.1:24203",
        "ap-guangzhou",
        &field(&alice_cred, "SecretId:"),
        &field(&alice_cred, "SecretKey:"),
    )
    .with_ca(&ca)
    .unwrap();
    alice
        .call(
            "Encrypt",
            serde_json::json!({"KeyId": root_key, "Plaintext": "eA=="}),
        )
        .await
        .unwrap();
    let denied = alice
        .call("DisableKey", serde_json::json!({"KeyId": root_key}))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Some("AuthFailure.UnauthorizedOperation"));
    // A malformed policy file is refused with the parser's message, and nothing changes.
    std::fs::write(
        &policy_file,
        r#"{"version":"2.0","statement":[{"effect":"allow","action":"kms:Nope","resource":"*"}]}"#,
    )
    .unwrap();
    let out = Command::new(bin())
        .args([
            "policy",
            "update",
            "--uin",
            &uin,
            "--name",
            "encrypt-one",
            "--file",
            policy_file.to_str().unwrap(),
        ])
        .envs(env.clone())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown action `kms:Nope`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cli(&[
        "policy",
        "detach",
        "--uin",
        &uin,
        "--policy",
        "encrypt-one",
        "--user",
        "alice",
    ]);
    let detached = alice
        .call(
            "Encrypt",
            serde_json::json!({"KeyId": root_key, "Plaintext": "eA=="}),
        )
        .await
        .unwrap_err();
    assert_eq!(detached.code(), Some("AuthFailure.UnauthorizedOperation"));
    cli(&["user", "delete", "--uin", &uin, "--name", "alice"]);
    assert!(!cli(&["credential", "list"]).contains("user/alice"));

    cli(&["credential", "revoke", "--secret-id", &id]);
    let refused = team
        .call("ListKeys", serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("AuthFailure.SecretIdNotFound"));

    // SIGINT: a clean stop of every node.
    // SAFETY: kill(2) on the pid of a child this test started; no memory is involved.
    unsafe {
        libc::kill(dev.id() as i32, libc::SIGINT);
    }
    let status = dev.wait().unwrap();
    assert!(status.success(), "dev exited with {status}");
    assert!(
        admin
            .clone()
            .with_timeout(Duration::from_secs(1))
            .status()
            .await
            .is_err(),
        "a node outlived raftkms dev"
    );

    // Again on the same data dir: the same cluster, with its data.
    std::fs::remove_file(dir.join("dev.env")).unwrap();
    let mut dev = start_dev(&dir);
    let env2 = wait_env(&dir, &mut dev).await;
    assert!(env2.contains(&("RAFTKMS_CLUSTER_ID".to_string(), get("RAFTKMS_CLUSTER_ID"))));
    let read = admin.get_record("kept", "linearizable").await.unwrap();
    let plain = kms
        .call(
            "Decrypt",
            serde_json::json!({"CiphertextBlob": blob["CiphertextBlob"]}),
        )
        .await
        .unwrap();
    assert_eq!(plain["Plaintext"], "a2VwdA==");
    assert_eq!(read.value.as_deref(), Some("across-restarts"));
    // SAFETY: kill(2) on the pid of a child this test started; no memory is involved.
    unsafe {
        libc::kill(dev.id() as i32, libc::SIGTERM);
    }
    assert!(dev.wait().unwrap().success());
}

#[test]
fn the_example_configs_in_cluster_config_are_valid_and_agree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster-config");
    let mut dirs = 0;
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        dirs += 1;
        let mut configs = Vec::new();
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "toml") {
                let cfg = raftkms::NodeConfig::load(&f)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                configs.push(cfg);
            }
        }
        assert!(configs.len() >= 3, "{}", dir.display());
        for cfg in &configs {
            assert_eq!(
                cfg.peers,
                configs[0].peers,
                "{}: peers differ between nodes",
                dir.display()
            );
            assert_eq!(cfg.cluster_id, configs[0].cluster_id);
            let me = cfg.peers.iter().find(|p| p.id == cfg.node_id).unwrap();
            // What the peers dial: the listen address, or the advertised one (containers).
            assert_eq!(
                (me.raft_addr.clone(), me.api_addr.clone()),
                (cfg.raft_advertise(), cfg.api_advertise())
            );
            assert_eq!(me.region, cfg.region);
        }
    }
    // single-region, three-regions and their docker-* variants (docker/compose-*.yml).
    assert_eq!(dirs, 4);
}

/// A child process killed when dropped (a failing test leaves no node behind).
struct Killed(std::process::Child);

impl Killed {
    /// Its exit status, which must come within 30 s (a start that should fail must not hang).
    fn exit_status(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the process did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `raftkms serve` with `passphrase` on its standard input (`--passphrase-fd 0`).
fn serve_with_passphrase(
    config: &std::path::Path,
    passphrase: &str,
    log: &std::path::Path,
) -> Killed {
    serve_with_secret(config, passphrase, log, &[])
}

/// [`serve_with_passphrase`] with extra environment variables.
fn serve_with_secret(
    config: &std::path::Path,
    passphrase: &str,
    log: &std::path::Path,
    env: &[(&str, &std::path::Path)],
) -> Killed {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(["serve", "--passphrase-fd", "0", "--config"])
        .arg(config)
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{passphrase}\n").as_bytes())
        .unwrap();
    drop(stdin);
    Killed(child)
}

/// Waits until the single node of `c` (API at `base`+1) answers, initializes the cluster and
/// encrypts `plaintext` (Base64) under a new key of a new account: the client and the blob.
async fn init_and_encrypt(
    c: &TestCluster,
    base: u16,
    plaintext: &str,
    log: &std::path::Path,
) -> (raftkms::client::KmsClient, serde_json::Value) {
    let admin = c.admin(1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !admin
        .status()
        .await
        .is_ok_and(|s| s.leader.is_some() && s.ready)
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        if admin.status().await.is_ok_and(|s| s.voters.is_empty()) {
            admin.init().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let account = admin.create_account("custody").await.unwrap();
    let cred = admin.create_credential(account.uin).await.unwrap();
    let kms = raftkms::client::KmsClient::new(
        &format!("http://{}", TestCluster::api_addr(base, 1)),
        "ap-guangzhou",
        &cred.secret_id,
        cred.secret_key.expose(),
    );
    let key = kms
        .call("CreateKey", serde_json::json!({"Alias": "custody"}))
        .await
        .unwrap();
    let blob = kms
        .call(
            "Encrypt",
            serde_json::json!({"KeyId": key["KeyId"], "Plaintext": plaintext}),
        )
        .await
        .unwrap()["CiphertextBlob"]
        .clone();
    (kms, blob)
}

/// Stops a node with SIGTERM and waits for it.
fn stop(node: &mut Killed) {
    // SAFETY: kill(2) on the pid of a child this test started; no memory is involved.
    unsafe {
        libc::kill(node.0.id() as i32, libc::SIGTERM);
    }
    node.exit_status();
}

/// Decrypts `blob` once the restarted node serves it (within 30 s): its Base64 plaintext.
async fn decrypt_when_up(
    kms: &raftkms::client::KmsClient,
    blob: &serde_json::Value,
    log: &std::path::Path,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match kms
            .call("Decrypt", serde_json::json!({"CiphertextBlob": blob}))
            .await
        {
            Ok(r) => return r["Plaintext"].clone(),
            Err(e) => assert!(
                Instant::now() < deadline,
                "{e:?}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passphrase_unseals_a_node_and_a_wrong_one_changes_nothing() {
    let mut c =
        TestCluster::configure(1, 24350, TimingConfig::default(), SnapshotConfig::default());
    c.edit_configs(|cfg| {
        cfg.kms.unseal = raftkms::config::UnsealSource::Passphrase;
        cfg.kms.unseal_key_file = None;
    });
    let cfg = c.nodes[0].cfg.clone();
    let path = c.nodes[0].config_path.clone();
    let params = cfg.unseal_kdf_file();
    let log = c.dir.path().join("serve.log");
    const GOOD: &str = "a long unseal passphrase";

    // Without a passphrase (no descriptor, no terminal): refused before anything is made.
    let out = serve(&path);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--passphrase-fd"));
    assert!(!params.exists() && !cfg.data_dir.exists());

    // First start: the parameters are made, the cluster is initialized, a key encrypts.
    let mut node = serve_with_passphrase(&path, GOOD, &log);
    let (kms, blob) = init_and_encrypt(&c, 24350, "cGFzcw==", &log).await;
    stop(&mut node);
    let text = std::fs::read_to_string(&params).unwrap();
    assert!(!text.contains(GOOD));

    // A wrong passphrase: the start fails with a clear message and nothing on disk changes.
    let mut wrong = serve_with_passphrase(&path, "not the passphrase", &log);
    let status = wrong.exit_status();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("does not match"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&params).unwrap(), text);

    // The right one again: the old ciphertext decrypts.
    let _node = serve_with_passphrase(&path, GOOD, &log);
    let plain = decrypt_when_up(&kms, &blob, &log).await;
    assert_eq!(plain, "cGFzcw==");
}

/// SoftHSM2, Debian's `softhsm2` package (`.ci/run` installs it).
const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pkcs11_token_key_unseals_a_node_and_never_leaves_the_token() {
    assert!(
        std::path::Path::new(SOFTHSM).exists(),
        "SoftHSM2 is not installed (apt-get install softhsm2): this test must not be skipped"
    );
    let mut c =
        TestCluster::configure(1, 24500, TimingConfig::default(), SnapshotConfig::default());
    // A token of its own in the test's directory.
    let conf = common::softhsm_token(c.dir.path(), "raftkms-test", "123456");
    c.edit_configs(|cfg| {
        cfg.kms.unseal = raftkms::config::UnsealSource::Pkcs11;
        cfg.kms.unseal_key_file = None;
        cfg.kms.pkcs11_module = Some(SOFTHSM.into());
        cfg.kms.pkcs11_token = Some("raftkms-test".into());
    });
    let cfg = c.nodes[0].cfg.clone();
    let path = c.nodes[0].config_path.clone();
    let sealed = cfg.unseal_sealed_file();
    let log = c.dir.path().join("serve.log");
    let env = [("SOFTHSM2_CONF", conf.as_path())];

    // First start: the token makes its key, the unseal key is sealed by it, a key encrypts.
    let mut node = serve_with_secret(&path, "123456", &log, &env);
    let (kms, blob) = init_and_encrypt(&c, 24500, "aHNt", &log).await;
    stop(&mut node);
    let text = std::fs::read_to_string(&sealed).unwrap();
    assert!(text.starts_with("raftkms-unseal-pkcs11 1\n"), "{text}");

    // The token's key is sensitive and was never extractable (opensc's pkcs11-tool lists it).
    let out = Command::new("pkcs11-tool")
        .args([
            "--module",
            SOFTHSM,
            "--token-label",
            "raftkms-test",
            "--login",
        ])
        .args(["--pin", "123456", "--list-objects", "--type", "secrkey"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("pkcs11-tool (the opensc package) must be installed");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listing.contains("raftkms-unseal"), "{listing}");
    assert!(
        listing.contains("sensitive") && listing.contains("never extractable"),
        "{listing}"
    );

    // A wrong PIN: the start fails with the token's refusal and nothing on disk changes.
    let mut wrong = serve_with_secret(&path, "000000", &log, &env);
    let status = wrong.exit_status();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("refused the PIN"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&sealed).unwrap(), text);

    // The right PIN again: the old ciphertext decrypts.
    let _node = serve_with_secret(&path, "123456", &log, &env);
    let plain = decrypt_when_up(&kms, &blob, &log).await;
    assert_eq!(plain, "aHNt");
}
