//! Transport security and the limits before authentication, against real node processes:
//! certificates made by `raftkms cert`, TLS 1.2 and 1.3 on the API listener, refusals (plaintext
//! on the TLS port, a foreign CA), a certificate reloaded on SIGHUP without dropping the node,
//! slow and idle clients cut off by the header-read timeout while a normal client is served, the
//! connection limit, and an unknown SecretId refused before its body is read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bin, counter, TestCluster};
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

/// A credential for a new account, through node 1's admin endpoints.
async fn credential(c: &TestCluster) -> (String, String) {
    let admin = c.admin(1);
    let account = admin.create_account("tls").await.unwrap();
    let cred = admin.create_credential(account.uin).await.unwrap();
    (cred.secret_id, cred.secret_key.expose().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_speaks_tls_refuses_plaintext_and_foreign_cas_and_reloads_its_certificate() {
    let mut c =
        TestCluster::configure(1, 27100, TimingConfig::default(), SnapshotConfig::default());
    let tls_dir = c.dir.path().join("tls");
    let (ca, tls) = make_certs(&tls_dir, &c.cluster_id.clone());
    c.edit_configs(|cfg| {
        cfg.insecure_plaintext = false;
        cfg.tls = Some(tls.clone());
    });
    let c = c.launch().await;
    let api = TestCluster::api_addr(c.base_port, 1);
    let (id, key) = credential(&c).await;

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

    // Plaintext on the TLS port gets no HTTP answer; a client trusting another CA refuses the
    // server.
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
    let metrics = kms_metrics(&api, &ca).await;
    assert!(
        counter(
            &metrics,
            "raftkms_listener_tls_handshake_failures_total{listener=\"api\"}"
        ) >= 2.0,
        "{metrics}"
    );

    // A renewed certificate is served after SIGHUP, without a restart: the open keep-alive
    // connections of `kms` go on working.
    cert_cli(&[
        "node",
        "--dir",
        tls_dir.to_str().unwrap(),
        "--cluster-id",
        &c.cluster_id,
        "--id",
        "1",
        "--host",
        "127.0.0.1",
        "--force",
    ]);
    let pid = c.nodes[0].pid().unwrap();
    // SAFETY: kill(2) on the pid of a child this test started; no memory is involved.
    unsafe {
        libc::kill(pid as i32, libc::SIGHUP);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, now) = handshake(&api, &ca, &rustls::version::TLS13).await.unwrap();
        if now != leaf {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kms.call("DescribeKey", serde_json::json!({"KeyId": key_id}))
        .await
        .unwrap();
    assert_eq!(c.admin(1).status().await.unwrap().id, 1);

    // A broken pair on SIGHUP is refused and the served certificate stays.
    std::fs::write(&tls.cert_file, "not a certificate").unwrap();
    // SAFETY: as above.
    unsafe {
        libc::kill(pid as i32, libc::SIGHUP);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    kms.call("ListKeys", serde_json::json!({})).await.unwrap();
    assert!(handshake(&api, &ca, &rustls::version::TLS13).await.is_ok());
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

/// Whether the server closed `s` (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An error page (e.g. 408) before the close: keep reading.
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_excess_connections_are_cut_off_while_others_are_served() {
    let mut c =
        TestCluster::configure(1, 27200, TimingConfig::default(), SnapshotConfig::default());
    c.edit_configs(|cfg| {
        cfg.limits = LimitsConfig {
            max_connections: 48,
            handshake_timeout_ms: 1_000,
            header_read_timeout_ms: 1_500,
            request_timeout_ms: 5_000,
        };
    });
    let c = c.launch().await;
    let api = TestCluster::api_addr(c.base_port, 1);
    let (id, key) = credential(&c).await;
    let kms = KmsClient::new(&api, "ap-guangzhou", &id, &key);
    let key_id = kms
        .call("CreateKey", serde_json::json!({"Alias": "limits"}))
        .await
        .unwrap()["KeyId"]
        .as_str()
        .unwrap()
        .to_string();

    // 20 slowloris clients (headers a byte at a time, never finished) and 20 idle ones.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(&api).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(&api).await.unwrap());
    }
    let trickle = tokio::spawn(async move {
        for _ in 0..10 {
            for s in slow.iter_mut() {
                let _ = s.write_all(b"X").await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        slow
    });
    // Meanwhile a normal client is served.
    for _ in 0..5 {
        kms.call(
            "Encrypt",
            serde_json::json!({"KeyId": key_id, "Plaintext": "aGk="}),
        )
        .await
        .unwrap();
    }
    // The server cuts both kinds off by the header-read timeout, trickling or not.
    let mut slow = trickle.await.unwrap();
    for s in slow.iter_mut().chain(idle.iter_mut()) {
        assert!(
            closed_within(s, Duration::from_secs(5)).await,
            "a slow or idle connection was kept open"
        );
    }

    // At max-connections, one more is closed at once; the slots come back when they close.
    let mut held = Vec::new();
    for _ in 0..48 {
        held.push(TcpStream::connect(&api).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(&api).await.unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_millis(800)).await,
        "a connection over max-connections was kept"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = reqwest::get(format!("http://{api}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        counter(
            &metrics,
            "raftkms_listener_connections_refused_total{listener=\"api\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        counter(
            &metrics,
            "raftkms_listener_connection_errors_total{listener=\"api\"}"
        ) >= 40.0,
        "{metrics}"
    );

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
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("no answer before the body was sent")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.contains("AuthFailure.SecretIdNotFound"), "{answer}");
}
