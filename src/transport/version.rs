//! Versions between peers: every internal request and answer says which internal protocol it
//! speaks, which cluster feature level its build knows, and which release it is. A node serves a
//! peer whose protocol it reads and refuses any other with `426` and a message naming both; the
//! first release sent no version at all, and a message without one is read as its protocol.
//! The leader keeps what each member last reported (`PeerVersions`): `raftkms cluster upgrade`
//! raises the cluster's feature level only once every member reports a build that knows it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::raft::types::NodeId;
use crate::registry::features::{BASE_LEVEL, FEATURE_LEVEL};

/// The internal protocol a message is in.
pub const PROTOCOL_HEADER: &str = "x-raftkms-protocol";
/// The highest cluster feature level the sender's build knows.
pub const FEATURES_HEADER: &str = "x-raftkms-features";
/// The sender's release (`CARGO_PKG_VERSION`), for operators.
pub const RELEASE_HEADER: &str = "x-raftkms-release";

/// The internal protocol this build speaks: version 1 is the first release's (no headers), 2
/// adds these headers and nothing else, so both are served.
pub const PROTOCOL: u32 = 2;
/// The oldest protocol this build still serves.
pub const MIN_PROTOCOL: u32 = 1;
/// What a message without a protocol header speaks: the first release's.
pub const LEGACY_PROTOCOL: u32 = 1;
/// The release that sent no version: every build before the headers existed.
pub const LEGACY_RELEASE: &str = "0.1.0";

/// This build's release, as `X-Raftkms-Release` carries it.
const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// Adds this build's version headers to an answer (every internal answer carries them).
pub fn put_this_build(headers: &mut HeaderMap) {
    use reqwest::header::HeaderValue;
    headers.insert(PROTOCOL_HEADER, HeaderValue::from(PROTOCOL));
    headers.insert(FEATURES_HEADER, HeaderValue::from(FEATURE_LEVEL));
    headers.insert(RELEASE_HEADER, HeaderValue::from_static(RELEASE));
}

/// Adds this build's version headers to a request to a peer.
pub fn with_this_build(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.header(PROTOCOL_HEADER, PROTOCOL)
        .header(FEATURES_HEADER, FEATURE_LEVEL)
        .header(RELEASE_HEADER, RELEASE)
}

/// What a peer said about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerVersion {
    pub protocol: u32,
    /// The highest cluster feature level its build knows.
    pub features: u32,
    pub release: String,
}

impl PeerVersion {
    /// This build.
    pub fn this_build() -> Self {
        PeerVersion {
            protocol: PROTOCOL,
            features: FEATURE_LEVEL,
            release: RELEASE.to_string(),
        }
    }

    /// What a message's headers say; a message without them comes from the first release. A
    /// header that is present but unreadable is an error (never guessed).
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, String> {
        let number = |name: &str| -> Result<Option<u32>, String> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => v
                    .to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .map(Some)
                    .ok_or_else(|| format!("unreadable {name} header")),
            }
        };
        let Some(protocol) = number(PROTOCOL_HEADER)? else {
            return Ok(PeerVersion {
                protocol: LEGACY_PROTOCOL,
                features: BASE_LEVEL,
                release: LEGACY_RELEASE.to_string(),
            });
        };
        let features = number(FEATURES_HEADER)?
            .ok_or_else(|| format!("{PROTOCOL_HEADER} without {FEATURES_HEADER}"))?;
        let release = headers
            .get(RELEASE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|r| r.chars().take(64).collect::<String>())
            .unwrap_or_else(|| "unknown".to_string());
        Ok(PeerVersion {
            protocol,
            features,
            release,
        })
    }

    /// Whether this build can serve (and be served by) a peer speaking this version; if not,
    /// the message a refusal carries.
    pub fn check_served(&self) -> Result<(), String> {
        if (MIN_PROTOCOL..=PROTOCOL).contains(&self.protocol) {
            return Ok(());
        }
        Err(format!(
            "this node runs raftkms {} (internal protocol {MIN_PROTOCOL} to {PROTOCOL}); the peer runs raftkms {} (internal protocol {}). Upgrade one release at a time (docs/operations.md, \"Rolling upgrades\")",
            RELEASE,
            self.release,
            self.protocol
        ))
    }
}

/// What a member last said about itself, and when.
#[derive(Clone, Debug)]
pub struct Seen {
    pub version: PeerVersion,
    pub at: Instant,
}

/// The versions this node's peers reported on their answers (the leader hears every member on
/// each heartbeat).
#[derive(Debug, Default)]
pub struct PeerVersions {
    seen: Mutex<HashMap<NodeId, Seen>>,
}

impl PeerVersions {
    /// Notes what `node` said just now.
    pub fn note(&self, node: NodeId, version: PeerVersion) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(
            node,
            Seen {
                version,
                at: Instant::now(),
            },
        );
    }

    /// What `node` last said, if it answered at all.
    pub fn get(&self, node: NodeId) -> Option<Seen> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&node).cloned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_message_without_headers_is_the_first_release() {
        let v = PeerVersion::from_headers(&HeaderMap::new()).unwrap();
        assert_eq!(v.protocol, LEGACY_PROTOCOL);
        assert_eq!(v.features, BASE_LEVEL);
        assert_eq!(v.release, LEGACY_RELEASE);
        assert!(v.check_served().is_ok());
    }

    #[test]
    fn headers_round_trip_and_unknown_protocols_are_refused() {
        let mut h = HeaderMap::new();
        put_this_build(&mut h);
        assert_eq!(
            PeerVersion::from_headers(&h).unwrap(),
            PeerVersion::this_build()
        );
        h.insert(PROTOCOL_HEADER, PROTOCOL.saturating_add(1).into());
        let v = PeerVersion::from_headers(&h).unwrap();
        let e = v.check_served().unwrap_err();
        assert!(e.contains("internal protocol 1 to 2"), "{e}");
        assert!(e.contains(&format!("protocol {}", PROTOCOL + 1)), "{e}");
        h.insert(PROTOCOL_HEADER, 0u32.into());
        assert!(PeerVersion::from_headers(&h)
            .unwrap()
            .check_served()
            .is_err());
    }

    #[test]
    fn unreadable_or_incomplete_headers_are_errors() {
        let mut h = HeaderMap::new();
        h.insert(PROTOCOL_HEADER, "two".parse().unwrap());
        assert!(PeerVersion::from_headers(&h).is_err());
        let mut h = HeaderMap::new();
        h.insert(PROTOCOL_HEADER, 2u32.into());
        assert!(PeerVersion::from_headers(&h).is_err(), "no features header");
    }
}
