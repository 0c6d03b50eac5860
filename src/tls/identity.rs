//! Who a certificate names. Every certificate `raftkms cert` issues carries one URI
//! subject-alternative name that says which cluster it belongs to and what it may do:
//!
//! - `raftkms://<cluster-id>/node/<node-id>`: a node (peer) of that cluster; its certificate also
//!   names `node-<node-id>.raftkms.internal` as a DNS name, the name peers verify it under;
//! - `raftkms://<cluster-id>/admin/<name>`: an operator of that cluster.
//!
//! A node certificate never makes its holder an admin, and an admin certificate never makes its
//! holder a peer.

use super::TlsError;

/// The scheme of identity URIs.
const SCHEME: &str = "raftkms://";

/// The DNS name every node certificate carries and peers verify it under.
pub fn node_dns_name(node_id: u64) -> String {
    format!("node-{node_id}.raftkms.internal")
}

/// What a verified certificate allows its holder to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerIdentity {
    /// A node of `cluster_id`.
    Node { cluster_id: String, node_id: u64 },
    /// An operator of `cluster_id`.
    Admin { cluster_id: String, name: String },
}

impl PeerIdentity {
    /// The URI subject-alternative name that carries this identity.
    pub fn uri(&self) -> String {
        match self {
            PeerIdentity::Node {
                cluster_id,
                node_id,
            } => format!("{SCHEME}{cluster_id}/node/{node_id}"),
            PeerIdentity::Admin { cluster_id, name } => {
                format!("{SCHEME}{cluster_id}/admin/{name}")
            }
        }
    }

    pub fn cluster_id(&self) -> &str {
        match self {
            PeerIdentity::Node { cluster_id, .. } | PeerIdentity::Admin { cluster_id, .. } => {
                cluster_id
            }
        }
    }

    /// Reads an identity URI; `None` for anything else (another scheme, a malformed path).
    pub fn parse_uri(uri: &str) -> Option<PeerIdentity> {
        let rest = uri.strip_prefix(SCHEME)?;
        let mut parts = rest.split('/');
        let cluster_id = parts.next()?.to_string();
        let kind = parts.next()?;
        let value = parts.next()?;
        if parts.next().is_some() || check_name("cluster id", &cluster_id).is_err() {
            return None;
        }
        match kind {
            "node" => {
                let node_id: u64 = value.parse().ok()?;
                (node_id > 0 && value == node_id.to_string()).then_some(PeerIdentity::Node {
                    cluster_id,
                    node_id,
                })
            }
            "admin" => check_name("admin name", value)
                .is_ok()
                .then(|| PeerIdentity::Admin {
                    cluster_id,
                    name: value.to_string(),
                }),
            _ => None,
        }
    }

    /// The one identity URI of a DER certificate. A certificate with none, or with more than one,
    /// names nobody.
    pub fn of_certificate(der: &[u8]) -> Result<PeerIdentity, TlsError> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| TlsError::Certificate(format!("cannot parse the certificate: {e}")))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| TlsError::Certificate(format!("bad subjectAltName: {e}")))?;
        let mut found = Vec::new();
        if let Some(san) = san {
            for name in &san.value.general_names {
                if let GeneralName::URI(uri) = name {
                    if uri.starts_with(SCHEME) {
                        found.push(*uri);
                    }
                }
            }
        }
        match found.as_slice() {
            [one] => PeerIdentity::parse_uri(one)
                .ok_or_else(|| TlsError::Certificate(format!("`{one}` is not a raftkms identity"))),
            [] => Err(TlsError::Certificate(
                "the certificate names no raftkms identity (a raftkms:// URI)".into(),
            )),
            _ => Err(TlsError::Certificate(
                "the certificate names more than one raftkms identity".into(),
            )),
        }
    }
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerIdentity::Node { node_id, .. } => write!(f, "node {node_id}"),
            PeerIdentity::Admin { name, .. } => write!(f, "admin `{name}`"),
        }
    }
}

/// Cluster ids and admin names that go into a certificate: 1-64 characters of `A-Z a-z 0-9 . _ -`,
/// so an identity URI needs no escaping and cannot be confused with another.
pub fn check_name(what: &str, value: &str) -> Result<(), TlsError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(TlsError::Name(format!(
            "{what} `{value}` must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip_and_junk_names_nobody() {
        let node = PeerIdentity::Node {
            cluster_id: "prod-1".into(),
            node_id: 3,
        };
        assert_eq!(node.uri(), "raftkms://prod-1/node/3");
        assert_eq!(PeerIdentity::parse_uri(&node.uri()), Some(node));
        let admin = PeerIdentity::Admin {
            cluster_id: "prod-1".into(),
            name: "alice".into(),
        };
        assert_eq!(PeerIdentity::parse_uri(&admin.uri()), Some(admin));
        for junk in [
            "raftkms://prod-1/node/0",
            "raftkms://prod-1/node/03",
            "raftkms://prod-1/node/x",
            "raftkms://prod-1/node/3/extra",
            "raftkms://prod-1/root/3",
            "raftkms://pr od/node/3",
            "raftkms:///node/3",
            "raftkms://prod-1/admin/",
            "raftkms://prod-1/admin/a b",
            "https://prod-1/node/3",
        ] {
            assert_eq!(PeerIdentity::parse_uri(junk), None, "{junk}");
        }
    }

    #[test]
    fn names_are_restricted() {
        assert!(check_name("cluster id", "raftkms-dev_1.a").is_ok());
        for bad in ["", "a/b", "a b", "ü", &"x".repeat(65)] {
            assert!(check_name("cluster id", bad).is_err(), "{bad}");
        }
    }
}
