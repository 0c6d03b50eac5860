//! Rolling-upgrade plumbing on real nodes (docs/operations.md, "Rolling upgrades"): the
//! internal protocol's version headers and the refusal of an unknown protocol, the feature level
//! a new cluster starts at, finalize, and the join of a node of the previous release refused
//! once the level has risen. The upgrade from the previous tagged release itself is
//! tests/upgrade/run.sh (it needs that release's binary).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::TestCluster;
use raftkms::admin::ClientError;
use raftkms::registry::features::FEATURE_LEVEL;
use raftkms::transport::version::{FEATURES_HEADER, PROTOCOL, PROTOCOL_HEADER, RELEASE_HEADER};
use raftkms::wire::JoinRequest;

const SECRET_HEADER: &str = "authorization";

fn peer_request(
    client: &reqwest::Client,
    c: &TestCluster,
    id: u64,
    path: &str,
) -> reqwest::RequestBuilder {
    client
        .get(format!(
            "http://{}{path}",
            TestCluster::raft_addr(c.base_port, id)
        ))
        .header(SECRET_HEADER, format!("Bearer {}", common::SECRET))
        .header("x-raftkms-cluster", &c.cluster_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_reported_and_unknown_protocols_refused() {
    let mut c = TestCluster::start(3, 29900).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let admin = c.admin(leader);

    // A new cluster starts at this build's level: init asked every member.
    let status = admin.upgrade_status().await.unwrap();
    assert_eq!(status.cluster_feature_level, FEATURE_LEVEL);
    assert_eq!(status.members.len(), 3);
    for m in &status.members {
        assert_eq!(
            m.release.as_deref(),
            Some(env!("CARGO_PKG_VERSION")),
            "{m:?}"
        );
        assert_eq!(m.protocol, Some(PROTOCOL));
        assert_eq!(m.features, Some(FEATURE_LEVEL));
        assert!(
            m.seen_ms_ago.is_some(),
            "every member answered the leader: {m:?}"
        );
    }
    // From a follower too (sent on to the leader).
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let via = c.admin(follower).upgrade_status().await.unwrap();
    assert_eq!(via.leader, leader);

    // Finalize is idempotent; a level beyond this build is refused.
    let r = admin.finalize_upgrade(None).await.unwrap();
    assert_eq!(
        (r.previous_level, r.feature_level),
        (FEATURE_LEVEL, FEATURE_LEVEL)
    );
    match admin.finalize_upgrade(Some(FEATURE_LEVEL + 1)).await {
        Err(ClientError::Refused {
            status, message, ..
        }) => {
            assert_eq!(status, 400);
            assert!(message.contains("knows feature levels up to"), "{message}");
        }
        other => panic!("finalize beyond this build: {other:?}"),
    }

    // The version endpoint answers a peer with this build's headers; a request without any
    // version (the first release's) is served.
    let client = reqwest::Client::new();
    let r = peer_request(&client, &c, follower, "/internal/version")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()[PROTOCOL_HEADER], PROTOCOL.to_string().as_str());
    assert_eq!(
        r.headers()[FEATURES_HEADER],
        FEATURE_LEVEL.to_string().as_str()
    );
    assert_eq!(r.headers()[RELEASE_HEADER], env!("CARGO_PKG_VERSION"));
    // A protocol this build does not speak: refused with a message naming both, before Raft.
    let r = peer_request(&client, &c, follower, "/internal/version")
        .header(PROTOCOL_HEADER, (PROTOCOL + 1).to_string())
        .header(FEATURES_HEADER, "9")
        .header(RELEASE_HEADER, "9.9.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 426);
    let text = r.text().await.unwrap();
    assert!(text.contains("internal protocol 1 to 2"), "{text}");
    assert!(text.contains("raftkms 9.9.9"), "{text}");
    let r = client
        .post(format!(
            "http://{}/raft/append",
            TestCluster::raft_addr(c.base_port, follower)
        ))
        .header(SECRET_HEADER, format!("Bearer {}", common::SECRET))
        .header("x-raftkms-cluster", &c.cluster_id)
        .header(PROTOCOL_HEADER, "0")
        .header(FEATURES_HEADER, "1")
        .body(vec![1u8, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        426,
        "an append in protocol 0 never reaches Raft"
    );
    // Without the cluster secret: refused, and the refusal says which build refused (how a
    // leader tells a new build's refusal from the first release's answer).
    let r = client
        .get(format!(
            "http://{}/internal/version",
            TestCluster::raft_addr(c.base_port, follower)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()[PROTOCOL_HEADER], PROTOCOL.to_string().as_str());
}

/// A stand-in for a node of the first release: it has no version endpoint and answers a GET
/// from a node `401` without version headers, as that release's internal router does (its admin
/// routes' fallback). Counts the version requests it answered; gives up after 30 s.
fn first_release_stand_in() -> (String, std::thread::JoinHandle<usize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let mut asked = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while asked == 0 && std::time::Instant::now() < deadline {
            let mut s = match listener.accept() {
                Ok((s, _)) => s,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            if String::from_utf8_lossy(&buf[..n]).starts_with("GET /internal/version") {
                asked += 1;
            }
            let _ = s.write_all(
                b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 28\r\nconnection: close\r\n\r\nmissing or wrong admin token",
            );
        }
        asked
    });
    (addr, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_the_first_release_cannot_join_a_cluster_past_its_level() {
    let mut c = TestCluster::start(1, 29960).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let admin = c.admin(leader);
    assert_eq!(
        admin.upgrade_status().await.unwrap().cluster_feature_level,
        FEATURE_LEVEL
    );
    let (addr, stand_in) = first_release_stand_in();
    let refused = admin
        .join(&JoinRequest {
            id: 7,
            raft_addr: addr.clone(),
            api_addr: addr,
            region: "ap-guangzhou".into(),
            voter: true,
        })
        .await;
    match refused {
        Err(ClientError::Refused {
            status, message, ..
        }) => {
            assert_eq!(status, 409);
            assert!(
                message.contains("node 7 runs raftkms 0.1.0, which knows feature levels up to 1"),
                "{message}"
            );
        }
        other => panic!("join of a first-release node: {other:?}"),
    }
    assert_eq!(
        stand_in.join().unwrap(),
        1,
        "the leader asked the new node its version"
    );
    // Nothing changed: still one member.
    let status = admin.status().await.unwrap();
    assert_eq!(status.voters, vec![1]);
    assert!(status.learners.is_empty());
}
