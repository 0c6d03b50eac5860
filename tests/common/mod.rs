//! Test harness: real `raftkms serve` processes on loopback, each with its own RocksDB directory.
//! Nothing is mocked; nodes are killed with SIGKILL exactly as an operator (or a crash) would.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raftkms::admin::AdminClient;
use raftkms::config::{NodeConfig, PeerConfig, SnapshotConfig, TimingConfig};

pub const SECRET: &str = "test-cluster-secret-0123456789";
/// The admin token of a plaintext test cluster (not the peers' secret).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Writes a node config readable by its owner only (a plaintext config holds secrets, and a
/// node refuses to start on one that others may read).
pub fn write_config(path: &std::path::Path, cfg: &NodeConfig) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(toml::to_string(cfg).unwrap().as_bytes())
        .unwrap();
}

/// The TLS files of a test cluster after [`TestCluster::enable_tls`].
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
}

/// A SoftHSM2 token of a test's own under `dir` (`softhsm2-util --init-token`, user PIN `pin`):
/// the `SOFTHSM2_CONF` file that points at it.
pub fn softhsm_token(dir: &std::path::Path, label: &str, pin: &str) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\n", tokens.display()),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label])
        .args(["--pin", pin, "--so-pin", "654321"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util (the softhsm2 package) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    conf
}

/// The value of a Prometheus counter or gauge in a `/metrics` text.
pub fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

/// The `/metrics` text of a node.
pub async fn metrics_of(c: &TestCluster, node: u64) -> String {
    let api = TestCluster::api_addr(c.base_port, node);
    reqwest::get(format!("http://{api}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_raftkms"))
}

/// One node process of a test cluster.
pub struct TestNode {
    pub cfg: NodeConfig,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
}

impl TestNode {
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

/// A cluster of real node processes in a temporary directory.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub cluster_id: String,
    pub base_port: u16,
    pub nodes: Vec<TestNode>,
    pub timing: TimingConfig,
    pub snapshot: SnapshotConfig,
    /// Set by [`TestCluster::enable_tls`].
    pub tls: Option<TlsFiles>,
    /// Environment every node is started with (e.g. `SOFTHSM2_CONF`).
    pub serve_env: Vec<(String, std::path::PathBuf)>,
    /// A file every node reads its passphrase or token PIN from (`--passphrase-fd 0`).
    pub serve_secret: Option<std::path::PathBuf>,
}

impl TestCluster {
    /// Ports: node i listens on base+i (API) and base+50+i (internal).
    pub fn api_addr(base: u16, id: u64) -> String {
        format!("127.0.0.1:{}", base + id as u16)
    }

    pub fn raft_addr(base: u16, id: u64) -> String {
        format!("127.0.0.1:{}", base + 50 + id as u16)
    }

    fn peer(base: u16, id: u64) -> PeerConfig {
        PeerConfig {
            id,
            raft_addr: Self::raft_addr(base, id),
            api_addr: Self::api_addr(base, id),
            region: "ap-guangzhou".into(),
            voter: true,
        }
    }

    /// Writes configs for nodes 1..=layout.len() placed in the given (region, voter) slots,
    /// without starting them.
    pub fn configure_layout(
        layout: &[(&str, bool)],
        base_port: u16,
        timing: TimingConfig,
        snapshot: SnapshotConfig,
    ) -> Self {
        let mut c = Self::configure(0, base_port, timing, snapshot);
        let peers: Vec<PeerConfig> = layout
            .iter()
            .enumerate()
            .map(|(i, (region, voter))| PeerConfig {
                region: region.to_string(),
                voter: *voter,
                ..Self::peer(base_port, i as u64 + 1)
            })
            .collect();
        for id in 1..=layout.len() as u64 {
            c.add_node_config(id, peers.clone());
        }
        c
    }

    /// Starts nodes placed in (region, voter) slots, initializes and waits for a leader.
    pub async fn start_layout(
        layout: &[(&str, bool)],
        base_port: u16,
        timing: TimingConfig,
    ) -> Self {
        Self::configure_layout(layout, base_port, timing, SnapshotConfig::default())
            .launch()
            .await
    }

    /// Adds `[[regions]]` entries (regions served without a node of their own) to every node's
    /// config, before the nodes are started.
    pub fn serve_regions(&mut self, regions: &[&str]) {
        self.edit_configs(|cfg| {
            cfg.regions = regions
                .iter()
                .map(|r| raftkms::config::RegionConfig {
                    name: r.to_string(),
                    symmetric_algorithm: None,
                })
                .collect();
        });
    }

    /// Serves both listeners of every node over TLS (mutual TLS on the internal one): a cluster
    /// CA, a certificate per node (for 127.0.0.1) and an admin certificate in `<dir>/tls`; the
    /// admin clients use the admin certificate from then on. Returns the CA file clients trust.
    pub fn enable_tls(&mut self) -> PathBuf {
        use raftkms::tls::issue;
        let tls = self.dir.path().join("tls");
        let ca = issue::new_ca(&self.cluster_id, 30).unwrap();
        ca.write(&tls, "ca", true).unwrap();
        let signer = issue::Signer::from_pem(&ca.cert_pem, ca.key_pem.expose()).unwrap();
        let (admin_cert, admin_key) = signer
            .admin(&self.cluster_id, "test", 30)
            .unwrap()
            .write(&tls, "admin-test", true)
            .unwrap();
        let ca_file = tls.join("ca.pem");
        self.tls = Some(TlsFiles {
            dir: tls.clone(),
            ca: ca_file.clone(),
            admin_cert,
            admin_key,
        });
        let cluster_id = self.cluster_id.clone();
        self.edit_configs(|cfg| {
            let (cert_file, key_file) = signer
                .node(&cluster_id, cfg.node_id, &["127.0.0.1".to_string()], 30)
                .unwrap()
                .write(&tls, &format!("node{}", cfg.node_id), true)
                .unwrap();
            cfg.insecure_plaintext = false;
            cfg.cluster_secret = None;
            cfg.admin_token = None;
            cfg.tls = Some(raftkms::config::TlsConfig {
                cert_file,
                key_file,
                ca_file: ca_file.clone(),
                api_cert_file: None,
                api_key_file: None,
                reload_check_ms: 10_000,
            });
        });
        tls.join("ca.pem")
    }

    /// Changes every node's config and writes it again, before the nodes are started.
    pub fn edit_configs(&mut self, mut edit: impl FnMut(&mut NodeConfig)) {
        for n in &mut self.nodes {
            edit(&mut n.cfg);
            write_config(&n.config_path, &n.cfg);
        }
    }

    /// Starts every configured node, initializes the cluster through node 1 and waits for a
    /// leader.
    pub async fn launch(mut self) -> Self {
        for i in 0..self.nodes.len() {
            self.spawn(i);
        }
        for i in 0..self.nodes.len() {
            self.wait_answering(i).await;
        }
        self.admin(1).init().await.unwrap();
        self.wait_leader(Duration::from_secs(20)).await;
        self
    }

    /// Writes configs for `n` nodes without starting them.
    pub fn configure(
        n: u64,
        base_port: u16,
        timing: TimingConfig,
        snapshot: SnapshotConfig,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut c = TestCluster {
            dir,
            cluster_id: format!("test-{base_port}"),
            base_port,
            nodes: Vec::new(),
            timing,
            snapshot,
            tls: None,
            serve_env: Vec::new(),
            serve_secret: None,
        };
        let peers: Vec<PeerConfig> = (1..=n).map(|id| Self::peer(base_port, id)).collect();
        for id in 1..=n {
            c.add_node_config(id, peers.clone());
        }
        c
    }

    /// Adds (but does not start) a node config; `peers` empty means "will join".
    pub fn add_node_config(&mut self, id: u64, peers: Vec<PeerConfig>) -> usize {
        let region = peers
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.region.clone())
            .unwrap_or_else(|| "ap-guangzhou".into());
        let cfg = NodeConfig {
            node_id: id,
            cluster_id: self.cluster_id.clone(),
            cluster_secret: Some(SECRET.into()),
            admin_token: Some(ADMIN_TOKEN.into()),
            region,
            data_dir: self.dir.path().join(format!("node{id}")),
            api_listen: Self::api_addr(self.base_port, id),
            raft_listen: Self::raft_addr(self.base_port, id),
            raft_advertise: None,
            api_advertise: None,
            insecure_plaintext: true,
            default_consistency: Default::default(),
            tls: None,
            limits: Default::default(),
            auth: Default::default(),
            reads: Default::default(),
            // Tests drive nodes as hard as they can; the rate-limit test sets its own.
            rate_limits: raftkms::config::RateLimitsConfig {
                credential_crypto_per_second: 0,
                credential_management_per_second: 0,
                account_crypto_per_second: 0,
                account_management_per_second: 0,
            },
            timing: self.timing.clone(),
            snapshot: self.snapshot.clone(),
            kms: raftkms::config::KmsConfig {
                unseal_key_file: Some(self.dir.path().join("unseal.key")),
                ..Default::default()
            },
            audit: Default::default(),
            backup: Default::default(),
            console: Default::default(),
            regions: Vec::new(),
            peers,
        };
        let config_path = self.dir.path().join(format!("node{id}.toml"));
        write_config(&config_path, &cfg);
        let log_path = self.dir.path().join(format!("node{id}.log"));
        self.nodes.push(TestNode {
            cfg,
            config_path,
            log_path,
            child: None,
        });
        self.nodes.len() - 1
    }

    /// Starts a 3-node (or n-node) cluster with default timing and waits for a leader.
    pub async fn start(n: u64, base_port: u16) -> Self {
        Self::start_with(
            n,
            base_port,
            TimingConfig::default(),
            SnapshotConfig::default(),
        )
        .await
    }

    pub async fn start_with(
        n: u64,
        base_port: u16,
        timing: TimingConfig,
        snapshot: SnapshotConfig,
    ) -> Self {
        Self::configure(n, base_port, timing, snapshot)
            .launch()
            .await
    }

    /// Index in `nodes` of node `id`.
    pub fn idx(&self, id: u64) -> usize {
        self.nodes.iter().position(|n| n.cfg.node_id == id).unwrap()
    }

    pub fn spawn(&mut self, i: usize) {
        self.spawn_wrapped(i, &[]);
    }

    /// Starts node `i` under a wrapper command (e.g. `fiu-run -x`).
    pub fn spawn_wrapped(&mut self, i: usize, wrapper: &[&str]) {
        let stdin = match &self.serve_secret {
            Some(path) => Stdio::from(std::fs::File::open(path).unwrap()),
            None => Stdio::null(),
        };
        let env = self.serve_env.clone();
        let secret_fd = self.serve_secret.is_some();
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        cmd.arg("serve").arg("--config").arg(&node.config_path);
        if secret_fd {
            cmd.args(["--passphrase-fd", "0"]);
        }
        let child = cmd
            .envs(env)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(stdin)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        node.child = Some(child);
    }

    pub async fn wait_answering(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let id = self.nodes[i].cfg.node_id;
        loop {
            if self
                .admin(id)
                .with_timeout(Duration::from_secs(1))
                .status()
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                self.nodes[i].is_running(),
                "node {id} exited:\n{}",
                self.log_tail(id)
            );
            assert!(
                Instant::now() < deadline,
                "node {id} never answered:\n{}",
                self.log_tail(id)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts node `id` again on its existing data directory.
    pub async fn restart(&mut self, id: u64) {
        let i = self.idx(id);
        self.spawn(i);
        self.wait_answering(i).await;
    }

    /// SIGKILL: no shutdown, no flush — a crash.
    pub fn kill(&mut self, id: u64) {
        let i = self.idx(id);
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self, id: u64) -> std::process::ExitStatus {
        let i = self.idx(id);
        let mut c = self.nodes[i].child.take().expect("node not running");
        // SAFETY: kill(2) on the pid of a node this harness started; no memory is involved.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        c.wait().unwrap()
    }

    /// The admin client of node `id`: the admin certificate after [`Self::enable_tls`], else
    /// the admin token.
    /// Starts node `id` empty (no peers: it is added) and joins it as a voter of the serving
    /// region through node `via`, waiting up to `timeout` for the join (and its catch-up); the
    /// membership the join answers.
    pub async fn join_new_voter(
        &mut self,
        id: u64,
        via: u64,
        timeout: Duration,
    ) -> raftkms::wire::NodeStatus {
        let idx = self.add_node_config(id, Vec::new());
        self.spawn(idx);
        self.wait_answering(idx).await;
        let join = raftkms::wire::JoinRequest {
            id,
            raft_addr: TestCluster::raft_addr(self.base_port, id),
            api_addr: TestCluster::api_addr(self.base_port, id),
            region: "ap-guangzhou".into(),
            voter: true,
        };
        self.admin(via)
            .with_timeout(timeout)
            .join(&join)
            .await
            .expect("join")
    }

    pub fn admin(&self, id: u64) -> AdminClient {
        let addr = Self::raft_addr(self.base_port, id);
        match &self.tls {
            Some(t) => AdminClient::with_certificate(
                addr,
                self.cluster_id.clone(),
                &t.admin_cert,
                &t.admin_key,
                &t.ca,
            )
            .unwrap(),
            None => AdminClient::new(addr, self.cluster_id.clone(), ADMIN_TOKEN),
        }
    }

    pub fn running_ids(&mut self) -> Vec<u64> {
        let mut out = Vec::new();
        for n in &mut self.nodes {
            if n.is_running() {
                out.push(n.cfg.node_id);
            }
        }
        out
    }

    /// Waits until a running node reports a leader that is itself running, and returns its id.
    pub async fn wait_leader(&mut self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let running = self.running_ids();
            for id in &running {
                if let Ok(st) = self
                    .admin(*id)
                    .with_timeout(Duration::from_secs(1))
                    .status()
                    .await
                {
                    if let Some(l) = st.leader.filter(|l| running.contains(l)) {
                        return l;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader among {running:?} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running node has applied at least `index`.
    pub async fn wait_applied(&mut self, index: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for id in self.running_ids() {
            loop {
                let st = self.admin(id).status().await;
                if st
                    .as_ref()
                    .is_ok_and(|s| s.applied_index.is_some_and(|a| a >= index))
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {id} did not apply {index}: {st:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Waits until every running node reports the same applied index and digest; returns it.
    pub async fn wait_converged(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            for id in self.running_ids() {
                if let Ok(d) = self.admin(id).digest().await {
                    seen.push((d.applied_index, d.digest));
                }
            }
            if !seen.is_empty()
                && seen.iter().all(|s| s == &seen[0])
                && seen.len() == self.running_ids().len()
            {
                return seen[0].1.clone();
            }
            assert!(
                Instant::now() < deadline,
                "nodes did not converge: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_tail(&self, id: u64) -> String {
        let i = self.idx(id);
        let text = std::fs::read_to_string(&self.nodes[i].log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Writes a record through node `via`, retrying transient errors (no leader yet) for up to 20 s.
pub async fn put(c: &TestCluster, via: u64, name: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = uuid::Uuid::new_v4().to_string();
    loop {
        match c.admin(via).put_record(name, value, Some(&id)).await {
            Ok(r) => {
                assert!(
                    matches!(r.outcome, raftkms::registry::Outcome::Applied { .. }),
                    "{r:?}"
                );
                return;
            }
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "write {name} via {via} kept failing: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Linearizable read through node `via`, retrying while no leader is known (for up to 20 s).
pub async fn get(c: &TestCluster, via: u64, name: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.admin(via).get_record(name, "linearizable").await {
            Ok(r) => return r.value,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "read {name} via {via} kept failing: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Runs tests/sdk/run.sh with `env_file` (pytest in its virtualenv), prints its output, and
/// returns whether it succeeded and its standard output.
pub async fn run_sdk_script(env_file: PathBuf) -> (bool, String) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/run.sh");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg(script)
            .arg(&env_file)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout)
}
