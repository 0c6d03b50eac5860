//! Transport security and the limits before authentication, against real node processes:
//! certificates made by `raftkms cert`, TLS 1.2 and 1.3 on the API listener, refusals (plaintext
//! on the TLS port, a foreign CA), a certificate reloaded on SIGHUP without dropping the node,
//! mutual TLS on the internal listener (no, a foreign, an expired or another cluster's
//! certificate; a node certificate on admin routes, an admin's on peer routes, a node speaking
//! for another; a server that is not the node dialled),
//! slow and idle clients cut off by the header-read timeout while a normal client is served, the
//! connection limit, and an unknown SecretId refused before its body is read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bin, TestCluster};
use raftkms::client::KmsClient;
use raftkms::config::{LimitsConfig, SnapshotConfig, TimingConfig, TlsConfig};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn cert_cli(args: &[&str]) -> String {
    let out = Command::new(bin()).arg("cert").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "raftkms cert {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A CA and a node-1 certificate for `cluster_id` in `dir`, made with the CLI.
fn make_certs(dir: &Path, cluster_id: &str) -> (PathBuf, TlsConfig) {
    let d = dir.to_str().unwrap();
    let out = cert_cli(&["ca", "--dir", d, "--cluster-id", cluster_id]);
    assert!(out.contains("ca.pem") && out.contains("0600"), "{out}");
    // A second CA does not silently replace the first.
    let again = Command::new(bin())
        .args(["cert", "ca", "--dir", d, "--cluster-id", cluster_id])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    cert_cli(&[
        "node",
        "--dir",
        d,
        "--cluster-id",
        cluster_id,
        "--id",
        "1",
        "--host",
        "127.0.0.1",
        "--host",
        "localhost",
    ]);
    cert_cli(&[
        "admin",
        "--dir",
        d,
        "--cluster-id",
        cluster_id,
        "--name",
        "ops",
    ]);
    for key in ["ca.key", "node1.key", "admin-ops.key"] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }
    (
        dir.join("ca.pem"),
        TlsConfig {
            cert_file: dir.join("node1.pem"),
            key_file: dir.join("node1.key"),
            ca_file: dir.join("ca.pem"),
            api_cert_file: None,
            api_key_file: None,
            reload_check_ms: 60_000,
        },
    )
}

/// A TLS connection to `addr` with only `version` offered, trusting `ca`; the negotiated version
/// and the server's leaf certificate.
async fn handshake(
    addr: &str,
    ca: &Path,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<(rustls::ProtocolVersion, Vec<u8>), std::io::Error> {
    let roots = raftkms::tls::config::roots(ca).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(raftkms::tls::provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(addr).await?;
    let tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await?;
    let (_, conn) = tls.get_ref();
    Ok((
        conn.protocol_version().unwrap(),
        conn.peer_certificates().unwrap()[0].as_ref().to_vec(),
    ))
}

/// Renews node 1's certificate in `dir` (`raftkms cert node --force`) and sends SIGHUP to `pid`.
fn renew_and_hup(dir: &Path, cluster_id: &str, pid: u32) {
    let d = dir.to_str().unwrap();
    cert_cli(&[
        "node",
        "--dir",
        d,
        "--cluster-id",
        cluster_id,
        "--id",
        "1",
        "--host",
        "127.0.0.1",
        "--force",
    ]);
    // SAFETY: kill(2) on the pid of a child this test started; no memory is involved.
    unsafe {
        libc::kill(pid as i32, libc::SIGHUP);
    }
}

/// `openssl s_client -showcerts` against `addr` with one protocol flag; its whole output.
fn s_client(addr: &str, ca: &Path, flag: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-showcerts", flag])
        .arg("-CAfile")
        .arg(ca)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl (the openssl package) must be installed");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A credential for a new account, through node 1's admin endpoints.
async fn credential(c: &TestCluster) -> (String, String) {
    let admin = c.admin(1);
    let account = admin.create_account("tls").await.unwrap();
    let cred = admin.create_credential(account.uin).await.unwrap();
    (cred.secret_id, cred.secret_key.expose().to_string())
}

/// Polls `name` in the node's metrics until it reaches `at_least` (within 10 s).
async fn wait_metric(
    fetch: impl Fn() -> futures::future::BoxFuture<'static, String>,
    name: &str,
    at_least: f64,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = fetch().await;
        let v = text
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if v >= at_least {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{name} stayed at {v} < {at_least}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One `GET /healthz` on an open stream; the status line of the answer.
async fn healthz<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S) -> String {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_speaks_tls_refuses_plaintext_and_foreign_cas_and_reloads_its_certificate() {
    let mut c =
        TestCluster::configure(1, 27100, TimingConfig::default(), SnapshotConfig::default());
    let tls_dir = c.dir.path().join("tls");
    let (ca, tls) = make_certs(&tls_dir, &c.cluster_id.clone());
    c.edit_configs(|cfg| {
        cfg.insecure_plaintext = false;
        cfg.cluster_secret = None;
        cfg.admin_token = None;
        cfg.tls = Some(tls.clone());
        cfg.limits.handshake_timeout_ms = 1_000;
    });
    c.tls = Some(common::TlsFiles {
        dir: tls_dir.clone(),
        ca: ca.clone(),
        admin_cert: tls_dir.join("admin-ops.pem"),
        admin_key: tls_dir.join("admin-ops.key"),
    });
    let c = c.launch().await;
    let api = TestCluster::api_addr(c.base_port, 1);
    let (id, key) = credential(&c).await;
    let metrics = {
        let (api, ca) = (api.clone(), ca.clone());
        move || -> futures::future::BoxFuture<'static, String> {
            let (api, ca) = (api.clone(), ca.clone());
            Box::pin(async move { kms_metrics(&api, &ca).await })
        }
    };

    // The SDK-like client over TLS, trusting the cluster CA.
    let kms = KmsClient::new(&format!("https://{api}"), "ap-guangzhou", &id, &key)
        .with_ca(&ca)
        .unwrap();
    let created = kms
        .call("CreateKey", serde_json::json!({"Alias": "tls"}))
        .await
        .unwrap();
    let key_id = created["KeyId"].as_str().unwrap().to_string();
    let enc = kms
        .call(
            "Encrypt",
            serde_json::json!({"KeyId": key_id, "Plaintext": "aGVsbG8="}),
        )
        .await
        .unwrap();
    assert!(enc["CiphertextBlob"].as_str().is_some());

    // TLS 1.3 and TLS 1.2 are both offered.
    let (v13, leaf) = handshake(&api, &ca, &rustls::version::TLS13).await.unwrap();
    assert_eq!(v13, rustls::ProtocolVersion::TLSv1_3);
    let (v12, _) = handshake(&api, &ca, &rustls::version::TLS12).await.unwrap();
    assert_eq!(v12, rustls::ProtocolVersion::TLSv1_2);

    // Refused, each counted: plaintext on the TLS port gets no HTTP answer; a client trusting
    // another CA refuses the server; a client that never starts its handshake is dropped after
    // handshake-timeout-ms.
    let plain = KmsClient::new(&api, "ap-guangzhou", &id, &key);
    let e = plain
        .call("ListKeys", serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(e, raftkms::client::KmsError::Transport(_)),
        "{e:?}"
    );
    let other_dir = c.dir.path().join("other");
    cert_cli(&[
        "ca",
        "--dir",
        other_dir.to_str().unwrap(),
        "--cluster-id",
        "other",
    ]);
    let foreign = handshake(&api, &other_dir.join("ca.pem"), &rustls::version::TLS13).await;
    assert!(foreign.is_err(), "a foreign CA must not verify the node");
    let mut silent = TcpStream::connect(&api).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(4)).await,
        "a connection that never started its handshake was kept"
    );
    wait_metric(
        &metrics,
        "raftkms_listener_tls_handshake_failures_total{listener=\"api\"}",
        3.0,
    )
    .await;

    // openssl s_client sees the chain (node certificate issued by the cluster CA, verified) and
    // the versions offered: TLS 1.3 and 1.2, nothing older.
    for (flag, version) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let out = s_client(&api, &ca, flag);
        assert!(out.contains("Verify return code: 0 (ok)"), "{flag}: {out}");
        assert!(
            out.contains(&format!("Protocol  : {version}"))
                || out.contains(&format!("New, {version}")),
            "{flag}: {out}"
        );
        assert!(
            out.contains("CN = raftkms node 1") && out.contains("CN = raftkms cluster CA"),
            "{out}"
        );
    }
    let old = s_client(&api, &ca, "-tls1_1");
    assert!(
        old.contains("Cipher is (NONE)") && !old.contains("CN = raftkms node 1"),
        "TLS 1.1 was accepted: {old}"
    );

    // Load during the renewals below: clients that keep their connections and clients that
    // open a new one for every request (a handshake each), none of which may see an error.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for fresh in [false, false, true, true] {
        let (stop, api, ca, id, key, key_id) = (
            stop.clone(),
            api.clone(),
            ca.clone(),
            id.clone(),
            key.clone(),
            key_id.clone(),
        );
        load.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (0u32, Vec::new());
            let mut client = KmsClient::new(&format!("https://{api}"), "ap-guangzhou", &id, &key)
                .with_ca(&ca)
                .unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if fresh {
                    client = KmsClient::new(&format!("https://{api}"), "ap-guangzhou", &id, &key)
                        .with_ca(&ca)
                        .unwrap();
                }
                match client
                    .call(
                        "Encrypt",
                        serde_json::json!({"KeyId": key_id, "Plaintext": "aGk="}),
                    )
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(e) => errors.push(format!("{e:?}")),
                }
            }
            (ok, errors)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A renewed certificate is served after SIGHUP, without a restart, and a TLS connection
    // opened before goes on working.
    let (_, mut before) = {
        let roots = raftkms::tls::config::roots(&ca).unwrap();
        let cfg = raftkms::tls::config::api_client(roots).unwrap();
        let tcp = TcpStream::connect(&api).await.unwrap();
        let s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        ((), s)
    };
    assert!(healthz(&mut before).await.contains("200"));
    let pid = c.nodes[0].pid().unwrap();
    renew_and_hup(&tls_dir, &c.cluster_id, pid);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, now) = handshake(&api, &ca, &rustls::version::TLS13).await.unwrap();
        if now != leaf {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthz(&mut before).await.contains("200"));
    kms.call("DescribeKey", serde_json::json!({"KeyId": key_id}))
        .await
        .unwrap();
    // Two more renewals under load, then the load stops: every request succeeded.
    for _ in 0..2 {
        renew_and_hup(&tls_dir, &c.cluster_id, pid);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut served, mut failed) = (0, Vec::new());
    for l in load {
        let (ok, errors) = l.await.unwrap();
        served += ok;
        failed.extend(errors);
    }
    assert!(
        failed.is_empty(),
        "requests failed during reloads: {failed:?}"
    );
    assert!(served >= 20, "the load made only {served} requests");
    let reloads = wait_metric(&metrics, "raftkms_tls_reloads_total", 3.0).await;
    assert!(reloads >= 3.0);
    let (_, renewed) = handshake(&api, &ca, &rustls::version::TLS13).await.unwrap();
    assert_eq!(c.admin(1).status().await.unwrap().id, 1);

    // A broken pair on SIGHUP is refused (counted) and the renewed certificate stays in use.
    let failures_before = wait_metric(&metrics, "raftkms_tls_reload_failures_total", 0.0).await;
    std::fs::write(&tls.cert_file, "not a certificate").unwrap();
    // SAFETY: as above.
    unsafe {
        libc::kill(pid as i32, libc::SIGHUP);
    }
    wait_metric(
        &metrics,
        "raftkms_tls_reload_failures_total",
        failures_before + 1.0,
    )
    .await;
    let (_, still) = handshake(&api, &ca, &rustls::version::TLS13).await.unwrap();
    assert_eq!(still, renewed);
    kms.call("ListKeys", serde_json::json!({})).await.unwrap();
}

async fn kms_metrics(api: &str, ca: &Path) -> String {
    raftkms::client::https_client(ca)
        .unwrap()
        .get(format!("https://{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Whether the server closed `s` (EOF or reset) within `within`, reading whatever it sends.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An error page before the close: keep reading.
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// A slowloris client: sends a request head a byte every 200 ms, for ever; returns how long the
/// server took to close the connection (or `None` if it had not after `give_up`).
async fn slowloris(api: String, give_up: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut s = TcpStream::connect(&api).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").await.ok()?;
    let mut buf = [0u8; 256];
    while started.elapsed() < give_up {
        if s.write_all(b"X").await.is_err() {
            return Some(started.elapsed());
        }
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            _ => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_stalled_and_excess_connections_are_cut_off_while_others_are_served() {
    let mut c =
        TestCluster::configure(1, 27200, TimingConfig::default(), SnapshotConfig::default());
    c.edit_configs(|cfg| {
        cfg.limits = LimitsConfig {
            max_connections: 48,
            handshake_timeout_ms: 1_000,
            header_read_timeout_ms: 1_500,
            body_timeout_ms: 5_000,
            send_timeout_ms: 1_000,
        };
    });
    let c = c.launch().await;
    let api = TestCluster::api_addr(c.base_port, 1);
    let metrics = {
        let api = api.clone();
        move || -> futures::future::BoxFuture<'static, String> {
            let api = api.clone();
            Box::pin(async move {
                // The node may be at max-connections a moment (the test holds and drops 48):
                // a refused fetch is retried.
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let fetched = match reqwest::get(format!("http://{api}/metrics")).await {
                        Ok(r) => r.text().await.ok(),
                        Err(_) => None,
                    };
                    if let Some(text) = fetched {
                        return text;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "/metrics did not answer for 10 s"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        }
    };
    let (id, key) = credential(&c).await;
    let kms = KmsClient::new(&api, "ap-guangzhou", &id, &key);
    let key_id = kms
        .call("CreateKey", serde_json::json!({"Alias": "limits"}))
        .await
        .unwrap()["KeyId"]
        .as_str()
        .unwrap()
        .to_string();

    // 20 slowloris clients that never stop trickling, 20 sockets that never send a byte, and
    // one keep-alive connection that goes idle after a request.
    let slow: Vec<_> = (0..20)
        .map(|_| tokio::spawn(slowloris(api.clone(), Duration::from_secs(8))))
        .collect();
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(&api).await.unwrap());
    }
    let mut kept_alive = TcpStream::connect(&api).await.unwrap();
    assert!(healthz(&mut kept_alive).await.contains("200"));
    // Meanwhile a normal client is served.
    for _ in 0..5 {
        kms.call(
            "Encrypt",
            serde_json::json!({"KeyId": key_id, "Plaintext": "aGk="}),
        )
        .await
        .unwrap();
    }
    // Each is closed by the header-read timeout (1.5 s), trickling or not.
    for t in slow {
        let closed = t.await.unwrap();
        assert!(
            closed.is_some_and(|d| d >= Duration::from_millis(1_200) && d < Duration::from_secs(5)),
            "a slowloris client was not closed by the header-read timeout ({closed:?})"
        );
    }
    for s in idle.iter_mut().chain(std::iter::once(&mut kept_alive)) {
        assert!(
            closed_within(s, Duration::from_secs(5)).await,
            "an idle connection was kept open"
        );
    }
    wait_metric(
        &metrics,
        "raftkms_listener_connection_errors_total{listener=\"api\"}",
        20.0,
    )
    .await;

    // A client that sends requests but never reads the answers: once the node's writes make no
    // progress for send-timeout-ms, the connection is closed (an error on the listener), though
    // the client keeps it open.
    let errors = wait_metric(
        &metrics,
        "raftkms_listener_connection_errors_total{listener=\"api\"}",
        0.0,
    )
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(api.parse().unwrap()).await.unwrap();
    // 1500 pipelined GET /metrics (57 kB of requests, within the node's 64 kB read buffer) ask for
    // megabytes of answers, more than the socket buffers hold. The client reads nothing for 3 s
    // (three send timeouts); by then the node must have given up on it.
    let one = metrics().await.len();
    let req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1500);
    stalled.write_all(&req).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_metric(
        &metrics,
        "raftkms_listener_connection_errors_total{listener=\"api\"}",
        errors + 1.0,
    )
    .await;
    // ... and it was this connection: reading what was buffered ends in EOF (or a reset) well
    // before the 1500 answers.
    let mut drained = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the stalled connection was kept open");
    assert!(
        drained < 1000 * one,
        "{drained} bytes of answers arrived (one is {one}): the connection was not cut off"
    );

    // So far nothing was refused for the connection limit (the closes above were timeouts).
    let text = metrics().await;
    assert!(
        !text.contains("raftkms_listener_connections_refused_total{listener=\"api\"} 1"),
        "{text}"
    );
    // At max-connections, one more is closed at once; the slots come back when they close.
    // The kernel completes a connection before the node accepts it, so which of the 49 the node
    // accepts last (and refuses) is not known: exactly one of them must be closed at once (the
    // others are closed only by the 1.5 s header-read timeout).
    let mut held = Vec::new();
    for _ in 0..49 {
        held.push(TcpStream::connect(&api).await.unwrap());
    }
    let closed = futures::future::join_all(
        held.iter_mut()
            .map(|s| closed_within(s, Duration::from_millis(800))),
    )
    .await;
    assert_eq!(
        closed.iter().filter(|c| **c).count(),
        1,
        "not exactly one of 49 connections was refused at max-connections 48: {closed:?}"
    );
    drop(held);
    wait_metric(
        &metrics,
        "raftkms_listener_connections_refused_total{listener=\"api\"}",
        1.0,
    )
    .await;

    // An unknown SecretId is refused before its body is read: the answer comes while the
    // announced body has not been sent.
    let mut s = TcpStream::connect(&api).await.unwrap();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\n\
         Content-Length: 500000\r\nX-TC-Action: ListKeys\r\nX-TC-Timestamp: {ts}\r\n\
         Authorization: TC3-HMAC-SHA256 Credential=AKIDnobody/2026-01-01/kms/tc3_request, \
         SignedHeaders=content-type;host, Signature=00\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !String::from_utf8_lossy(&answer).contains("AuthFailure.SecretIdNotFound") {
        let mut buf = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, s.read(&mut buf))
            .await
            .expect("no answer before the body was sent")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
}

/// A POST signed over `content-type;host` with `X-TC-Content-SHA256: UNSIGNED-PAYLOAD`; the reply.
async fn unsigned_payload_call(api: &str, id: &str, key: &str) -> serde_json::Value {
    use raftkms::http::tencent::tc3;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = b"{}";
    let mut auth = tc3::Authorization {
        secret_id: id.to_string(),
        date: tc3::utc_date(ts).unwrap(),
        service: tc3::SERVICE.into(),
        signed_headers: vec!["content-type".into(), "host".into()],
        signature: String::new(),
    };
    let header = |n: &str| match n {
        "content-type" => Some("application/json".to_string()),
        "host" => Some(api.to_string()),
        _ => None,
    };
    let signed = tc3::SignedRequest {
        method: "POST",
        query: "",
        header: &header,
        body,
        timestamp: ts,
        unsigned_payload: true,
    };
    auth.signature = tc3::signature(&auth, &signed, key.as_bytes()).unwrap();
    let authorization = format!(
        "TC3-HMAC-SHA256 Credential={id}/{}/kms/tc3_request, SignedHeaders=content-type;host, Signature={}",
        auth.date, auth.signature
    );
    reqwest::Client::new()
        .post(format!("http://{api}/"))
        .header("content-type", "application/json")
        .header("x-tc-action", "ListKeys")
        .header("x-tc-version", "2019-01-18")
        .header("x-tc-timestamp", ts.to_string())
        .header("x-tc-region", "ap-guangzhou")
        .header("x-tc-content-sha256", "UNSIGNED-PAYLOAD")
        .header("authorization", authorization)
        .body(&body[..])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_and_stale_read_policies_are_enforced_with_clear_errors() {
    let mut c =
        TestCluster::configure(3, 27300, TimingConfig::default(), SnapshotConfig::default());
    c.edit_configs(|cfg| {
        cfg.reads.max_stale_ms = 1_500;
        if cfg.node_id == 2 {
            cfg.auth.allow_unsigned_payload = true;
        }
        if cfg.node_id == 3 {
            cfg.auth.require_signed_headers = vec!["x-tc-action".into(), "x-tc-region".into()];
            cfg.reads.allow_stale = false;
        }
    });
    let mut c = c.launch().await;
    let (id, key) = credential(&c).await;
    let api = |n| TestCluster::api_addr(27300, n);

    // UNSIGNED-PAYLOAD: refused by default, accepted where allowed.
    let r = unsigned_payload_call(&api(1), &id, &key).await;
    assert_eq!(
        r["Response"]["Error"]["Code"], "AuthFailure.InvalidAuthorization",
        "{r}"
    );
    assert!(r["Response"]["Error"]["Message"]
        .as_str()
        .unwrap()
        .contains("UNSIGNED-PAYLOAD"));
    let r = unsigned_payload_call(&api(2), &id, &key).await;
    assert!(r["Response"]["TotalCount"].is_number(), "{r}");

    // Required signed headers: the SDK's content-type;host is refused on node 3, a client that
    // signs x-tc-action and x-tc-region is served there (and on node 1, which verifies them too).
    let sdk_like = KmsClient::new(&api(3), "ap-guangzhou", &id, &key);
    let e = sdk_like
        .call("ListKeys", serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("AuthFailure.InvalidAuthorization"), "{e}");
    assert!(e.to_string().contains("x-tc-action"), "{e}");
    let mut signing = sdk_like.clone();
    signing.sign_action_headers = true;
    signing
        .call("ListKeys", serde_json::json!({}))
        .await
        .unwrap();
    signing
        .at(&api(1))
        .call("ListKeys", serde_json::json!({}))
        .await
        .unwrap();

    // Stale reads: refused where not allowed; bounded by max-stale-ms elsewhere.
    let stale = |n: u64| {
        let mut k = KmsClient::new(&api(n), "ap-guangzhou", &id, &key);
        k.consistency = Some("stale".into());
        k.sign_action_headers = n == 3;
        k
    };
    let e = stale(3)
        .call("ListKeys", serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("UnsupportedOperation"), "{e}");
    assert!(e.to_string().contains("allow-stale"), "{e}");
    stale(2)
        .call("ListKeys", serde_json::json!({}))
        .await
        .unwrap();
    // A write sent with the stale header is not served on stale authority: it passes the read
    // gate (and the credential check on the caught-up state) before it is proposed.
    let waits = |m: &str| common::counter(m, "raftkms_read_gate_waits_total");
    let before = waits(&common::metrics_of(&c, 2).await);
    stale(2)
        .call("CreateKey", serde_json::json!({"Alias": "stale-write"}))
        .await
        .unwrap();
    let after = waits(&common::metrics_of(&c, 2).await);
    assert!(
        after >= before + 1.0,
        "the stale write skipped the gate: {before} -> {after}"
    );
    // Node 2 alone: no leader contact any more; once that is older than 1.5 s its stale
    // answers stop, with the reason.
    c.kill(1);
    c.kill(3);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let e = stale(2)
        .call("ListKeys", serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some("UnsupportedOperation.ServiceTemporaryUnavailable"),
        "{e}"
    );
    assert!(e.to_string().contains("max-stale-ms"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_credential_gets_request_limit_exceeded_and_backoff_succeeds() {
    let mut c =
        TestCluster::configure(1, 27400, TimingConfig::default(), SnapshotConfig::default());
    c.edit_configs(|cfg| {
        cfg.rate_limits.credential_crypto_per_second = 5;
    });
    let c = c.launch().await;
    let (id, key) = credential(&c).await;
    let kms = KmsClient::new(
        &TestCluster::api_addr(c.base_port, 1),
        "ap-guangzhou",
        &id,
        &key,
    );
    let key_id = kms
        .call("CreateKey", serde_json::json!({"Alias": "rate"}))
        .await
        .unwrap()["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let encrypt = || {
        kms.call(
            "Encrypt",
            serde_json::json!({"KeyId": key_id, "Plaintext": "aGk="}),
        )
    };
    // A burst of 20: the bucket holds 5, plus 5 a second refilled meanwhile; the rest are refused.
    let (mut ok, mut limited) = (0, 0);
    let started = Instant::now();
    for _ in 0..20 {
        match encrypt().await {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.code(), Some("RequestLimitExceeded"), "{e}");
                assert!(e.to_string().contains("credential"), "{e}");
                limited += 1;
            }
        }
    }
    let refilled = (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        ok >= 5 && ok <= 5 + refilled + 1,
        "{ok} succeeded in {:?}",
        started.elapsed()
    );
    assert!(limited >= 1 && ok + limited == 20, "{limited} refused");
    // Management has its own bucket (unlimited here) and is served meanwhile.
    kms.call("DescribeKey", serde_json::json!({"KeyId": key_id}))
        .await
        .unwrap();
    // Exponential backoff (as the Tencent best practice): the retry succeeds.
    let mut delay = Duration::from_millis(100);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match encrypt().await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.code(), Some("RequestLimitExceeded"), "{e}");
                assert!(attempts < 8, "still refused after {attempts} attempts");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_at_its_quota_spends_no_key_generation() {
    let mut c =
        TestCluster::configure(1, 27500, TimingConfig::default(), SnapshotConfig::default());
    c.edit_configs(|cfg| cfg.kms.cmk_limit = 2);
    let c = c.launch().await;
    let (id, key) = credential(&c).await;
    let api = TestCluster::api_addr(c.base_port, 1);
    let kms = KmsClient::new(&api, "ap-guangzhou", &id, &key);
    let generated = || async {
        let text = reqwest::get(format!("http://{api}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        common::counter(&text, "raftkms_key_pairs_generated_total")
    };
    kms.call(
        "CreateKey",
        serde_json::json!({"Alias": "rsa", "KeyUsage": "ASYMMETRIC_SIGN_VERIFY_RSA_2048"}),
    )
    .await
    .unwrap();
    assert_eq!(generated().await, 1.0);
    kms.call("CreateKey", serde_json::json!({"Alias": "sym"}))
        .await
        .unwrap();
    // At the quota: refused with Tencent's code, and no RSA-4096 pair was generated for it.
    let e = kms
        .call(
            "CreateKey",
            serde_json::json!({"Alias": "big", "KeyUsage": "ASYMMETRIC_SIGN_VERIFY_RSA_4096"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("LimitExceeded.CmkLimitExceeded"), "{e}");
    assert_eq!(generated().await, 1.0);
}

/// An internal-listener client presenting `cert` (or nothing), trusting `ca`, accepting any node
/// of `cluster_id`.
fn internal_client(cert: Option<(&Path, &Path)>, ca: &Path, cluster_id: &str) -> reqwest::Client {
    let store = cert.map(|(c, k)| raftkms::tls::reload::CertStore::open(c, k).unwrap());
    let roots = raftkms::tls::config::roots(ca).unwrap();
    let tls = raftkms::tls::config::internal_client(store, roots, cluster_id, None).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A vote for `term` from candidate `candidate`, encoded for `/raft/vote`.
fn vote_body(term: u64, candidate: u64) -> Vec<u8> {
    let vote =
        raftkms::raft::types::typ::VoteRequest::new(openraft::Vote::new(term, candidate), None);
    raftkms::codec::encode("vote", &vote).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_listener_admits_only_this_clusters_nodes_and_admins_each_to_their_routes() {
    let mut c =
        TestCluster::configure(3, 27600, TimingConfig::default(), SnapshotConfig::default());
    let ca = c.enable_tls();
    // Node 1's API presents a certificate of another CA (say a corporate one), its internal
    // listener the node certificate: the two roles do not share a key.
    let public = c.dir.path().join("public");
    let pd = public.to_str().unwrap();
    cert_cli(&["ca", "--dir", pd, "--cluster-id", "public"]);
    cert_cli(&[
        "node",
        "--dir",
        pd,
        "--cluster-id",
        "public",
        "--id",
        "1",
        "--host",
        "127.0.0.1",
    ]);
    c.edit_configs(|cfg| {
        cfg.limits.handshake_timeout_ms = 1_000;
        if cfg.node_id == 1 {
            let tls = cfg.tls.as_mut().unwrap();
            tls.api_cert_file = Some(public.join("node1.pem"));
            tls.api_key_file = Some(public.join("node1.key"));
        }
    });
    let t = c.tls.clone().unwrap();
    let mut c = c.launch().await;
    let api1 = TestCluster::api_addr(c.base_port, 1);
    assert!(
        handshake(&api1, &public.join("ca.pem"), &rustls::version::TLS13)
            .await
            .is_ok()
    );
    assert!(
        handshake(&api1, &ca, &rustls::version::TLS13)
            .await
            .is_err(),
        "node 1's API still presents its node certificate"
    );
    // Raft, forwarding and reads all run over mutual TLS: a write through a follower and a
    // linearizable read on another node.
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    c.admin(follower).put_record("k", "v", None).await.unwrap();
    let other = (1..=3).find(|i| *i != leader && *i != follower).unwrap();
    let read = c
        .admin(other)
        .get_record("k", "linearizable")
        .await
        .unwrap();
    assert_eq!(read.value.as_deref(), Some("v"));
    let before = c.admin(leader).status().await.unwrap();

    let raft = TestCluster::raft_addr(c.base_port, leader);
    let api = TestCluster::api_addr(c.base_port, leader);
    let (node2_cert, node2_key) = (t.dir.join("node2.pem"), t.dir.join("node2.key"));
    let node2 = internal_client(Some((&node2_cert, &node2_key)), &ca, &c.cluster_id);
    let admin = internal_client(Some((&t.admin_cert, &t.admin_key)), &ca, &c.cluster_id);

    // A node certificate does not make its holder an admin.
    for path in ["/admin/status", "/admin/accounts"] {
        let r = node2
            .get(format!("https://{raft}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(r.text().await.unwrap().contains("not an admin"));
    }
    let r = node2
        .put(format!("https://{raft}/admin/records/intruder"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // An admin certificate is not a node's: no votes, no appends, no read index.
    for path in ["/raft/vote", "/raft/append", "/internal/read-index"] {
        let r = admin
            .post(format!("https://{raft}{path}"))
            .body(vote_body(before.term + 100, 9))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    // Node 2's certificate cannot speak for node 9: a vote for a huge term is refused unread.
    let r = node2
        .post(format!("https://{raft}/raft/vote"))
        .body(vote_body(before.term + 100, 9))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("speaks for node 9"));
    // The same for an append and a snapshot chunk whose leader is not the certificate's node.
    let append = raftkms::raft::types::typ::AppendEntriesRequest {
        vote: openraft::Vote::new_committed(before.term + 100, 9),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let r = node2
        .post(format!("https://{raft}/raft/append"))
        .body(raftkms::codec::encode("append", &append).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("speaks for node 9"));

    // Nothing at all without a certificate of this cluster: none, a foreign CA's, an expired
    // one, another cluster's from the same CA.
    let none = internal_client(None, &ca, &c.cluster_id);
    assert!(none
        .get(format!("https://{raft}/admin/status"))
        .send()
        .await
        .is_err());
    let foreign = c.dir.path().join("foreign");
    let fd = foreign.to_str().unwrap();
    cert_cli(&["ca", "--dir", fd, "--cluster-id", &c.cluster_id]);
    cert_cli(&[
        "admin",
        "--dir",
        fd,
        "--cluster-id",
        &c.cluster_id,
        "--name",
        "ops",
    ]);
    let foreign_admin = internal_client(
        Some((
            &foreign.join("admin-ops.pem"),
            &foreign.join("admin-ops.key"),
        )),
        &ca,
        &c.cluster_id,
    );
    assert!(foreign_admin
        .get(format!("https://{raft}/admin/status"))
        .send()
        .await
        .is_err());
    // An admin certificate that expired yesterday (made 3 days ago, valid for 1 day).
    let out = Command::new(bin())
        .args([
            "cert",
            "admin",
            "--dir",
            t.dir.to_str().unwrap(),
            "--cluster-id",
            &c.cluster_id,
        ])
        .args(["--name", "expired", "--days", "1"])
        .env(
            "LD_PRELOAD",
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        )
        .env("FAKETIME", "-3d")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expired = internal_client(
        Some((
            &t.dir.join("admin-expired.pem"),
            &t.dir.join("admin-expired.key"),
        )),
        &ca,
        &c.cluster_id,
    );
    assert!(expired
        .get(format!("https://{raft}/admin/status"))
        .send()
        .await
        .is_err());
    // The same CA, another cluster's node: the handshake passes, the identity does not.
    let signer = raftkms::tls::issue::Signer::from_pem(
        &std::fs::read_to_string(&ca).unwrap(),
        &std::fs::read_to_string(t.dir.join("ca.key")).unwrap(),
    )
    .unwrap();
    signer
        .node("another-cluster", 2, &[], 30)
        .unwrap()
        .write(&t.dir, "stranger", true)
        .unwrap();
    let stranger = internal_client(
        Some((&t.dir.join("stranger.pem"), &t.dir.join("stranger.key"))),
        &ca,
        &c.cluster_id,
    );
    assert!(stranger
        .post(format!("https://{raft}/raft/vote"))
        .body(vote_body(before.term + 100, 2))
        .send()
        .await
        .is_err());

    // A node dialling a peer checks that the server is the node it meant: node 2's transport
    // reaches the leader as the leader, not as anyone else.
    let peers = raftkms::transport::Peers::new(
        c.cluster_id.clone(),
        raftkms::transport::PeerSecurity::Tls {
            cert: raftkms::tls::reload::CertStore::open(&node2_cert, &node2_key).unwrap(),
            roots: raftkms::tls::config::roots(&ca).unwrap(),
        },
        Duration::from_secs(2),
        Duration::from_secs(1),
    )
    .unwrap();
    type ReadIndex = Result<u64, raftkms::raft::error::ClusterError>;
    // Dialling the leader's address while meaning another member (a stale address book): refused.
    let wrong = (1..=3).find(|i| *i != leader).unwrap();
    let e = peers
        .call::<(), ReadIndex>(
            wrong,
            &raft,
            "/internal/read-index",
            &(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, raftkms::raft::error::ClusterError::Forward(m)
            if m.contains(&format!("dialled node {wrong}, the certificate names node {leader}"))),
        "{e:?}"
    );
    let index = peers
        .call::<(), ReadIndex>(
            leader,
            &raft,
            "/internal/read-index",
            &(),
            Duration::from_secs(5),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(index >= before.commit_index.unwrap_or(0));

    // A node certificate of an id that is not a member gets no read index and forwards nothing.
    signer
        .node(&c.cluster_id, 7, &[], 30)
        .unwrap()
        .write(&t.dir, "node7", true)
        .unwrap();
    let node7 = internal_client(
        Some((&t.dir.join("node7.pem"), &t.dir.join("node7.key"))),
        &ca,
        &c.cluster_id,
    );
    let r = node7
        .post(format!("https://{raft}/internal/read-index"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("not a member"));

    // A membership change sent to a follower is redirected to the leader (421 with its
    // address), never proxied; the admin client follows it.
    let follower_raft = TestCluster::raft_addr(c.base_port, follower);
    let r = admin
        .post(format!("https://{follower_raft}/admin/remove"))
        .json(&serde_json::json!({"id": 99}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["leader"], raft.as_str(), "{body}");
    // (Removing a node that is not a member: the leader answers, whatever it answers.)
    match c.admin(follower).remove(99).await {
        Ok(status) => assert_eq!(status.id, leader),
        Err(e) => assert!(
            matches!(&e, raftkms::admin::ClientError::Refused { addr, status, .. }
                if *addr == raft && *status != 421),
            "{e:?}"
        ),
    }

    // Nothing changed, and each refusal was counted.
    assert_eq!(
        c.admin(other)
            .get_record("intruder", "linearizable")
            .await
            .unwrap()
            .value,
        None
    );
    let api_ca = if leader == 1 {
        public.join("ca.pem")
    } else {
        ca.clone()
    };
    let metrics = kms_metrics(&api, &api_ca).await;
    for (name, at_least) in [
        (
            "raftkms_internal_requests_refused_total{reason=\"not-an-admin\"}",
            3.0,
        ),
        (
            "raftkms_internal_requests_refused_total{reason=\"not-a-node\"}",
            3.0,
        ),
        (
            "raftkms_internal_requests_refused_total{reason=\"wrong-sender\"}",
            1.0,
        ),
        (
            "raftkms_listener_identity_refused_total{listener=\"internal\"}",
            1.0,
        ),
        (
            "raftkms_listener_tls_handshake_failures_total{listener=\"internal\"}",
            3.0,
        ),
    ] {
        let v = common::counter(&metrics, name);
        assert!(v >= at_least, "{name} = {v} < {at_least}");
    }
}
