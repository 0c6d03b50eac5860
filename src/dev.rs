//! `raftkms dev`: a local N-node cluster of real `raftkms serve` processes, each with its own
//! RocksDB directory under the data dir. Started again on the same data dir it resumes the same
//! cluster with its data.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::RngCore;
use tokio::process::{Child, Command};

use crate::admin::{cluster_status, render_status, AdminClient};
use crate::config::{NodeConfig, PeerConfig, TlsConfig};
use crate::crypto::SecretString;

/// Options of `raftkms dev`.
#[derive(Clone, Debug)]
pub struct DevOptions {
    pub data_dir: PathBuf,
    /// API port of node 1; node i listens on `port + i - 1`, its internal port is 1000 higher.
    pub port: u16,
    pub nodes: u16,
    /// Regions the nodes are spread over, in blocks (5 nodes over 3 regions = 2+2+1).
    pub regions: Vec<String>,
    /// A new cluster serves its API in plaintext HTTP instead of TLS (for tools that cannot be
    /// given a CA). A resumed cluster keeps what it was created with.
    pub plaintext: bool,
}

/// Where a dev cluster keeps its CA and node certificates.
fn tls_dir(dir: &Path) -> PathBuf {
    dir.join("tls")
}

/// The dev CA certificate clients trust (`KMS_CA_BUNDLE` in dev.env).
pub fn ca_file(dir: &Path) -> PathBuf {
    tls_dir(dir).join("ca.pem")
}

/// The dev admin certificate and key (TLS clusters).
pub fn admin_cert_files(dir: &Path) -> (PathBuf, PathBuf) {
    (
        tls_dir(dir).join("admin-dev.pem"),
        tls_dir(dir).join("admin-dev.key"),
    )
}

/// A new CA for `cluster_id`, a certificate per node (for 127.0.0.1 and localhost) in
/// `<dir>/tls`; the `[tls]` section of each node.
fn create_certificates(
    dir: &Path,
    cluster_id: &str,
    peers: &[PeerConfig],
) -> anyhow::Result<Vec<TlsConfig>> {
    use crate::tls::issue;
    let tls = tls_dir(dir);
    // Name-constrained to loopback, and its key is not kept: the dev CA can vouch for nothing
    // but these nodes, even if someone adds it to a trust store.
    let ca = issue::new_loopback_ca(cluster_id, 3650)?;
    ca.write_certificate(&tls, "ca")?;
    let signer = issue::Signer::from_pem(&ca.cert_pem, ca.key_pem.expose())?;
    let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
    let mut out = Vec::new();
    for p in peers {
        let (cert_file, key_file) = signer.node(cluster_id, p.id, &hosts, 825)?.write(
            &tls,
            &format!("node{}", p.id),
            true,
        )?;
        out.push(TlsConfig {
            cert_file,
            key_file,
            ca_file: ca_file(dir),
            api_cert_file: None,
            api_key_file: None,
            reload_check_ms: 10_000,
        });
    }
    // The admin credential of `raftkms cluster …` (dev.env points at it).
    signer
        .admin(cluster_id, "dev", 825)?
        .write(&tls, "admin-dev", true)?;
    println!(
        "made the dev CA {}, a certificate per node and the admin certificate {}",
        ca_file(dir).display(),
        admin_cert_files(dir).0.display()
    );
    Ok(out)
}

/// The region of node `i` (0-based) of `n` spread over `regions` in blocks.
pub fn region_of(regions: &[String], i: usize, n: usize) -> String {
    if regions.is_empty() || n == 0 {
        return "ap-guangzhou".to_string();
    }
    regions[(i * regions.len() / n).min(regions.len() - 1)].clone()
}

/// Writes a file readable only by its owner (it holds the cluster secret).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn node_config_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("node{id}.toml"))
}

/// Creates the node configs for a new dev cluster, or loads the existing ones.
pub fn prepare(opts: &DevOptions) -> anyhow::Result<Vec<(PathBuf, NodeConfig)>> {
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("cannot create data dir {}", opts.data_dir.display()))?;
    let dir = std::fs::canonicalize(&opts.data_dir)?;
    if node_config_path(&dir, 1).exists() {
        return load_existing(&dir);
    }
    check_new_cluster(opts)?;
    create_configs(opts, &dir)
}

/// The configs of the dev cluster already in `dir` (`node1.toml`, `node2.toml`, … up to the
/// first missing one).
fn load_existing(dir: &Path) -> anyhow::Result<Vec<(PathBuf, NodeConfig)>> {
    let mut out = Vec::new();
    let mut id = 1;
    while node_config_path(dir, id).exists() {
        let path = node_config_path(dir, id);
        out.push((path.clone(), NodeConfig::load(&path)?));
        id += 1;
    }
    println!(
        "resuming the {}-node dev cluster in {}",
        out.len(),
        dir.display()
    );
    Ok(out)
}

/// Refuses options a new dev cluster cannot have: 1 to 9 nodes, 1 to `nodes` regions, and
/// ports (API and internal, +1000) that fit below 65536.
fn check_new_cluster(opts: &DevOptions) -> anyhow::Result<()> {
    if opts.nodes == 0 || opts.nodes > 9 {
        bail!("--nodes must be between 1 and 9");
    }
    if opts.regions.is_empty() || opts.regions.len() > usize::from(opts.nodes) {
        bail!(
            "--region lists {} regions for {} nodes: give 1 to {} regions",
            opts.regions.len(),
            opts.nodes,
            opts.nodes
        );
    }
    if u32::from(opts.port) + 1000 + u32::from(opts.nodes) > 65535 {
        bail!(
            "--port {} leaves no room for {} nodes and their internal ports (+1000)",
            opts.port,
            opts.nodes
        );
    }
    Ok(())
}

/// Writes the configs of a new dev cluster into `dir` (0600: a plaintext cluster's hold its
/// secrets): a new cluster id, every node a voter, one shared unseal key file; with TLS the CA,
/// node and admin certificates, in plaintext a cluster secret and an admin token.
fn create_configs(opts: &DevOptions, dir: &Path) -> anyhow::Result<Vec<(PathBuf, NodeConfig)>> {
    let random_hex = || {
        let mut b = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut b);
        SecretString::from(hex::encode(b))
    };
    let (secret, admin_token) = (random_hex(), random_hex());
    let cluster_id = format!("dev-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let peers: Vec<PeerConfig> = (1..=opts.nodes)
        .map(|i| PeerConfig {
            id: u64::from(i),
            raft_addr: format!("127.0.0.1:{}", opts.port + 1000 + i - 1),
            api_addr: format!("127.0.0.1:{}", opts.port + i - 1),
            region: region_of(&opts.regions, usize::from(i - 1), usize::from(opts.nodes)),
            voter: true,
        })
        .collect();
    let tls = if opts.plaintext {
        None
    } else {
        Some(create_certificates(dir, &cluster_id, &peers)?)
    };
    let mut out = Vec::new();
    for (i, p) in peers.iter().enumerate() {
        let node_tls = tls.as_ref().and_then(|t| t.get(i).cloned());
        let cfg = NodeConfig {
            node_id: p.id,
            cluster_id: cluster_id.clone(),
            cluster_secret: node_tls.is_none().then(|| secret.clone()),
            admin_token: node_tls.is_none().then(|| admin_token.clone()),
            region: p.region.clone(),
            data_dir: dir.join(format!("node{}", p.id)),
            api_listen: p.api_addr.clone(),
            raft_listen: p.raft_addr.clone(),
            raft_advertise: None,
            api_advertise: None,
            insecure_plaintext: node_tls.is_none(),
            default_consistency: Default::default(),
            tls: node_tls,
            limits: Default::default(),
            auth: Default::default(),
            reads: Default::default(),
            rate_limits: Default::default(),
            timing: Default::default(),
            snapshot: Default::default(),
            // One unseal key for every dev node: they must all open the same root key.
            kms: crate::config::KmsConfig {
                unseal_key_file: Some(dir.join("unseal.key")),
                ..Default::default()
            },
            audit: Default::default(),
            backup: Default::default(),
            // The console may start DR drills here (they freeze this machine's dev nodes).
            console: crate::config::ConsoleConfig {
                dev_drill_dir: Some(dir.to_path_buf()),
            },
            regions: Vec::new(),
            peers: peers.clone(),
        };
        cfg.validate()?;
        let path = node_config_path(dir, p.id);
        let text = format!(
            "# raftkms dev cluster node {} (generated by `raftkms dev`)\n{}",
            p.id,
            toml::to_string_pretty(&cfg)?
        );
        write_private(&path, &text)?;
        out.push((path, cfg));
    }
    println!(
        "created a {}-node dev cluster `{cluster_id}` in {}",
        opts.nodes,
        dir.display()
    );
    Ok(out)
}

fn spawn_node(exe: &Path, config: &Path, log: &Path) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true);
    // The nodes must not outlive `raftkms dev` if it is killed.
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe, allocates nothing and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn()
        .with_context(|| format!("cannot start {}", exe.display()))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The admin client of a dev cluster: its admin certificate, or (plaintext) its admin token.
pub fn dev_admin(dir: &Path, first: &NodeConfig) -> anyhow::Result<AdminClient> {
    match (&first.tls, &first.admin_token) {
        (Some(t), _) => {
            let (cert, key) = admin_cert_files(dir);
            Ok(AdminClient::with_certificate(
                first.raft_advertise(),
                first.cluster_id.clone(),
                &cert,
                &key,
                &t.ca_file,
            )?)
        }
        (None, Some(token)) => Ok(AdminClient::new(
            first.raft_advertise(),
            first.cluster_id.clone(),
            token.clone(),
        )),
        (None, None) => bail!("the dev configs hold neither [tls] nor an admin token"),
    }
}

/// The dev account's credential: created on first start, kept in `dev.credential` (0600).
async fn dev_credential(dir: &Path, admin: &AdminClient) -> anyhow::Result<(String, SecretString)> {
    let path = dir.join("dev.credential");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let text = zeroize::Zeroizing::new(text);
        let mut lines = text.lines();
        if let (Some(id), Some(key)) = (lines.next(), lines.next()) {
            return Ok((id.to_string(), SecretString::from(key)));
        }
    }
    let admin = admin.clone().with_timeout(Duration::from_secs(30));
    let account = admin.create_account("dev").await?;
    let c = admin.create_credential(account.uin).await?;
    let text = zeroize::Zeroizing::new(format!("{}\n{}\n", c.secret_id, c.secret_key.expose()));
    write_private(&path, &text)?;
    println!(
        "created the dev account (Uin {}) and its credential {}",
        account.uin, c.secret_id
    );
    Ok((c.secret_id, c.secret_key))
}

/// A started node: its config, its log file and its process.
type Running = (NodeConfig, PathBuf, Child);

/// Runs the dev cluster until SIGINT/SIGTERM.
pub async fn run(opts: DevOptions) -> anyhow::Result<()> {
    let nodes = prepare(&opts)?;
    let dir = std::fs::canonicalize(&opts.data_dir)?;
    let exe = std::env::current_exe().context("cannot locate the raftkms binary")?;
    let first = &nodes[0].1;
    let admin = dev_admin(&dir, first)?.with_timeout(Duration::from_secs(2));

    let mut children = start_nodes(&exe, &dir, &nodes)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    wait_until_answering(&admin, &mut children, deadline).await?;
    init_and_wait_for_leader(&admin, &dir, deadline + Duration::from_secs(30)).await?;

    let (secret_id, secret_key) = dev_credential(&dir, &admin).await?;
    let uin = admin
        .clone()
        .with_timeout(Duration::from_secs(30))
        .credentials()
        .await?
        .into_iter()
        .find(|c| c.secret_id == secret_id)
        .map(|c| c.uin)
        .context(
            "the dev credential is not in the cluster (remove dev.credential to make a new one)",
        )?;
    // The dev account operates the cluster: the console's cluster and DR views are open to it.
    let operator = crate::wire::records::operator(uin);
    admin
        .clone()
        .with_timeout(Duration::from_secs(30))
        .put_record(&operator, "dev", None)
        .await
        .context("cannot make the dev account an operator")?;
    let tls = first.tls.is_some();
    let endpoints: Vec<String> = nodes
        .iter()
        .map(|(_, c)| {
            let scheme = if tls { "https" } else { "http" };
            format!("{scheme}://{}", c.api_advertise())
        })
        .collect();
    let env_path = dir.join("dev.env");
    // KMS_CA_BUNDLE: the CA the API's certificates chain to (empty for a plaintext cluster).
    let ca_bundle = if tls {
        ca_file(&dir).display().to_string()
    } else {
        String::new()
    };
    // The admin credential of `raftkms cluster …`: the admin certificate, or the admin token.
    let admin_env = match &first.admin_token {
        None => {
            let (cert, key) = admin_cert_files(&dir);
            format!(
                "RAFTKMS_CA={ca_bundle}\nRAFTKMS_ADMIN_CERT={}\nRAFTKMS_ADMIN_KEY={}\n",
                cert.display(),
                key.display()
            )
        }
        Some(token) => format!("RAFTKMS_ADMIN_TOKEN={}\n", token.expose()),
    };
    // The same credential in the other dialects' terms: a Huawei AK/SK with the account's
    // project id in the first node's region, and the legacy v2 API's host:port.
    let env = zeroize::Zeroizing::new(format!(
        "KMS_ENDPOINTS={}\nKMS_CA_BUNDLE={ca_bundle}\nKMS_REGION={}\nKMS_SECRET_ID={secret_id}\nKMS_SECRET_KEY={}\n\
         KMS_V2_ENDPOINT={}\nHWC_ENDPOINT={}\nHWC_AK={secret_id}\nHWC_SK={}\nHWC_PROJECT_ID={}\n\
         RAFTKMS_NODE={}\nRAFTKMS_CLUSTER_ID={}\n{admin_env}",
        endpoints.join(","),
        first.region,
        secret_key.expose(),
        first.api_advertise(),
        endpoints[0],
        secret_key.expose(),
        crate::http::huawei::project::project_id(uin, &first.region),
        first.raft_advertise(),
        first.cluster_id,
    ));
    write_private(&env_path, &env)?;

    let status = cluster_status(&admin).await?;
    let mut regions: Vec<&str> = nodes.iter().map(|(_, c)| c.region.as_str()).collect();
    regions.dedup();
    println!(
        "\nraftkms dev cluster is up ({} nodes, region{} {})\n",
        nodes.len(),
        if regions.len() > 1 { "s" } else { "" },
        regions.join(", ")
    );
    print!("{}", render_status(&status));
    let ca = tls.then(|| ca_file(&dir));
    print_usage(
        &dir,
        &children,
        &endpoints,
        (&env_path, ca.as_deref()),
        &regions,
        &first.region,
    );

    wait_and_stop(children).await
}

/// Step 1/3: starts a `raftkms serve` process per node (its output appended to
/// `nodeN.log`) and writes its pid to `nodeN.pid`.
fn start_nodes(
    exe: &Path,
    dir: &Path,
    nodes: &[(PathBuf, NodeConfig)],
) -> anyhow::Result<Vec<Running>> {
    let mut children = Vec::new();
    for (path, cfg) in nodes {
        let log = dir.join(format!("node{}.log", cfg.node_id));
        let child = spawn_node(exe, path, &log)?;
        let pid = child.id().unwrap_or(0);
        // For operators' tools (`raftkms drill --dev DIR` freezes a region by pid).
        std::fs::write(
            dir.join(format!("node{}.pid", cfg.node_id)),
            format!("{pid}\n"),
        )
        .with_context(|| format!("cannot write the pid file of node {}", cfg.node_id))?;
        println!(
            "[1/3] started node {} in {} (pid {pid}), log {}",
            cfg.node_id,
            cfg.region,
            log.display()
        );
        children.push((cfg.clone(), log, child));
    }
    Ok(children)
}

/// Step 2/3: waits until every node answers on its internal listener; fails (with the end of
/// its log) if a node exits, or if one has not answered by `deadline`.
async fn wait_until_answering(
    admin: &AdminClient,
    children: &mut [Running],
    deadline: Instant,
) -> anyhow::Result<()> {
    for (cfg, log, child) in children.iter_mut() {
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "node {} exited during start ({status}); last log lines:\n{}",
                    cfg.node_id,
                    tail(log, 15)
                );
            }
            if admin.at(cfg.raft_listen.clone()).status().await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} did not answer within 60 s; see {}",
                    cfg.node_id,
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!("[2/3] all {} nodes answer", children.len());
    Ok(())
}

/// Step 3/3: initializes a new cluster (a resumed one already is), then waits until it has a
/// leader and is ready, failing at `deadline`.
async fn init_and_wait_for_leader(
    admin: &AdminClient,
    dir: &Path,
    deadline: Instant,
) -> anyhow::Result<()> {
    let status = admin.status().await?;
    if status.voters.is_empty() {
        admin.init().await?;
        println!("[3/3] initialized the cluster; waiting for a leader");
    } else {
        println!(
            "[3/3] cluster already initialized (term {}); waiting for a leader",
            status.term
        );
    }
    loop {
        let st = admin.status().await?;
        if st.leader.is_some() && st.ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "no leader after 90 s; see the node logs in {}",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints the endpoints, pids and environment file of the running cluster and commands to try.
fn print_usage(
    dir: &Path,
    children: &[Running],
    endpoints: &[String],
    (env_path, ca): (&Path, Option<&Path>),
    regions: &[&str],
    first_region: &str,
) {
    let curl = match ca {
        Some(ca) => format!("curl -s --cacert {}", ca.display()),
        None => "curl -s".to_string(),
    };
    let pids: Vec<String> = children
        .iter()
        .map(|(c, _, ch)| format!("node{}={}", c.node_id, ch.id().unwrap_or(0)))
        .collect();
    println!("\nAPI endpoints:      {}", endpoints.join("  "));
    println!(
        "Node pids:          {}   (logs: {}/nodeN.log)",
        pids.join("  "),
        dir.display()
    );
    println!("Environment file:   {}", env_path.display());
    println!(
        "Web console:        {}/console/   (any node; sign in with KMS_SECRET_ID and KMS_SECRET_KEY from the environment file; docs/console.md)",
        endpoints[0]
    );
    match ca {
        Some(ca) => println!(
            "TLS:                the API speaks TLS; its CA is {} (KMS_CA_BUNDLE)",
            ca.display()
        ),
        None => println!("TLS:                none (--plaintext): plaintext HTTP on loopback"),
    }
    println!("\nTry it:");
    println!("  set -a; . {}; set +a", env_path.display());
    println!("  raftkms cluster status            # leader, term, members, indices");
    println!(
        "  tccli kms CreateKey --Alias demo --secretId \"$KMS_SECRET_ID\" --secretKey \"$KMS_SECRET_KEY\" --region {} --endpoint {}",
        first_region,
        // tccli speaks HTTPS by default and takes the endpoint without a scheme; for plain HTTP
        // the scheme goes into the endpoint.
        endpoints[0].trim_start_matches("https://")
    );
    if let Some(ca) = ca {
        println!(
            "  # tccli trusts only certifi's bundle: in tccli's own virtualenv, cat {} >> \"$(python -m certifi)\"; then --endpoint without https://",
            ca.display()
        );
    }
    println!(
        "  # the same credential signs Tencent's legacy API (KMS_V2_ENDPOINT) and the Huawei API (HWC_*): README, \"Calling the KMS API\""
    );
    println!("  {curl} {}/readyz", endpoints[0]);
    if regions.len() > 1 {
        println!(
            "  raftkms drill --dev {} --region {}   # DR drill: freeze that region, measure RTO, check RPO 0 (also from the console's DR view)",
            dir.display(),
            // The last region holds the fewest nodes (nodes are spread in blocks): cutting it
            // off leaves a quorum.
            regions.last().copied().unwrap_or(first_region)
        );
    }
    println!("  {curl} {}/metrics | grep raftkms_raft", endpoints[0]);
    println!("  kill -9 <pid of the leader>       # a new leader is elected in about a second");
    println!(
        "\nPress Ctrl-C to stop the cluster; run `raftkms dev` again to resume it with its data."
    );
}

/// Waits for SIGINT/SIGTERM (reporting any node that exits meanwhile), then stops every node:
/// SIGTERM, and SIGKILL for one still running 10 s later.
async fn wait_and_stop(mut children: Vec<Running>) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut reported = vec![false; children.len()];
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                for (i, (cfg, log, child)) in children.iter_mut().enumerate() {
                    if !reported[i] {
                        if let Ok(Some(status)) = child.try_wait() {
                            reported[i] = true;
                            println!("node {} exited ({status}); the others keep serving. Log: {}", cfg.node_id, log.display());
                        }
                    }
                }
            }
        }
    }
    println!("stopping the dev cluster…");
    for (_, _, child) in &children {
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) on the pid of a child this process started; no memory is involved.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
    for (cfg, _, child) in children.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                println!("node {} did not stop within 10 s; killing it", cfg.node_id);
                let _ = child.kill().await;
            }
        }
    }
    println!("stopped; data kept for the next `raftkms dev`");
    Ok(())
}
