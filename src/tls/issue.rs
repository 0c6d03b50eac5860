//! Certificates made by raftkms (`raftkms cert ca | node | admin`, `raftkms dev`): a cluster CA,
//! node certificates (server and client use, the node's identity URI and DNS name plus the hosts
//! clients reach it by) and admin client certificates. Keys are ECDSA P-256.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::identity::{check_name, node_dns_name, PeerIdentity};
use super::TlsError;

/// A certificate and its private key, both PEM. The key is zeroized on drop and never printed.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: crate::crypto::SecretString,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &self.key_pem)
            .finish()
    }
}

fn rcgen_error(e: rcgen::Error) -> TlsError {
    TlsError::Issue(e.to_string())
}

/// Validity from an hour ago (clock differences between hosts) for `days` days (1 to 36500).
fn validity(params: &mut CertificateParams, days: u32) -> Result<(), TlsError> {
    if !(1..=36_500).contains(&days) {
        return Err(TlsError::Name(format!(
            "--days {days}: a certificate is valid for 1 to 36500 days"
        )));
    }
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    Ok(())
}

fn issued(cert: rcgen::Certificate, key: &KeyPair) -> Issued {
    Issued {
        cert_pem: cert.pem(),
        key_pem: crate::crypto::SecretString::new(key.serialize_pem()),
    }
}

/// A new self-signed CA for `cluster_id`, allowed to sign end-entity certificates only.
pub fn new_ca(cluster_id: &str, days: u32) -> Result<Issued, TlsError> {
    ca(cluster_id, days, None)
}

/// A CA that can only vouch for loopback names: `localhost`, `*.raftkms.internal` and
/// 127.0.0.0/8 (name constraints), for `raftkms dev`, so a dev CA added to a trust store cannot
/// impersonate any other site.
pub fn new_loopback_ca(cluster_id: &str, days: u32) -> Result<Issued, TlsError> {
    use rcgen::{CidrSubnet, GeneralSubtree, NameConstraints};
    ca(
        cluster_id,
        days,
        Some(NameConstraints {
            permitted_subtrees: vec![
                GeneralSubtree::DnsName("localhost".into()),
                GeneralSubtree::DnsName("raftkms.internal".into()),
                GeneralSubtree::IpAddress(CidrSubnet::V4([127, 0, 0, 0], [255, 0, 0, 0])),
            ],
            excluded_subtrees: Vec::new(),
        }),
    )
}

fn ca(
    cluster_id: &str,
    days: u32,
    constraints: Option<rcgen::NameConstraints>,
) -> Result<Issued, TlsError> {
    check_name("cluster id", cluster_id)?;
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "raftkms");
    dn.push(
        DnType::CommonName,
        format!("raftkms cluster CA {cluster_id}"),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.name_constraints = constraints;
    validity(&mut params, days)?;
    let cert = params.self_signed(&key).map_err(rcgen_error)?;
    Ok(issued(cert, &key))
}

/// The CA that signs: its certificate and key, both PEM.
pub struct Signer {
    issuer: Issuer<'static, KeyPair>,
}

impl Signer {
    pub fn from_pem(ca_cert_pem: &str, ca_key_pem: &str) -> Result<Signer, TlsError> {
        let key = KeyPair::from_pem(ca_key_pem).map_err(rcgen_error)?;
        let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, key).map_err(rcgen_error)?;
        Ok(Signer { issuer })
    }

    fn sign(
        &self,
        identity: &PeerIdentity,
        common_name: String,
        sans: Vec<SanType>,
        usages: Vec<ExtendedKeyUsagePurpose>,
        days: u32,
    ) -> Result<Issued, TlsError> {
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "raftkms");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        let uri = identity
            .uri()
            .try_into()
            .map_err(|e: rcgen::Error| rcgen_error(e))?;
        params.subject_alt_names = std::iter::once(SanType::URI(uri)).chain(sans).collect();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_error)?;
        Ok(issued(cert, &key))
    }

    /// A node certificate: server and client use, the identity URI, the DNS name peers verify
    /// (`node-<id>.raftkms.internal`) and `hosts` (DNS names or IP addresses clients of the API
    /// reach the node by).
    pub fn node(
        &self,
        cluster_id: &str,
        node_id: u64,
        hosts: &[String],
        days: u32,
    ) -> Result<Issued, TlsError> {
        check_name("cluster id", cluster_id)?;
        if node_id == 0 {
            return Err(TlsError::Name("node id must be greater than 0".into()));
        }
        let mut sans = vec![dns(&node_dns_name(node_id))?];
        for h in hosts {
            sans.push(match h.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => dns(h)?,
            });
        }
        self.sign(
            &PeerIdentity::Node {
                cluster_id: cluster_id.to_string(),
                node_id,
            },
            format!("raftkms node {node_id}"),
            sans,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            days,
        )
    }

    /// An admin client certificate (client use only) for `name`.
    pub fn admin(&self, cluster_id: &str, name: &str, days: u32) -> Result<Issued, TlsError> {
        check_name("cluster id", cluster_id)?;
        check_name("admin name", name)?;
        self.sign(
            &PeerIdentity::Admin {
                cluster_id: cluster_id.to_string(),
                name: name.to_string(),
            },
            format!("raftkms admin {name}"),
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            days,
        )
    }
}

impl Issued {
    /// Writes only the certificate, `<dir>/<stem>.pem` (0644), replacing one that is there (for a
    /// CA whose key is not to be kept).
    pub fn write_certificate(
        &self,
        dir: &std::path::Path,
        stem: &str,
    ) -> Result<std::path::PathBuf, TlsError> {
        crate::durable_fs::create_dir_all(dir).map_err(|e| TlsError::File {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let cert = dir.join(format!("{stem}.pem"));
        super::files::write_new(&cert, self.cert_pem.as_bytes(), 0o644, true)?;
        Ok(cert)
    }

    /// Writes `<dir>/<stem>.pem` (0644) and `<dir>/<stem>.key` (0600), synced; existing files are
    /// kept (and the call fails) unless `overwrite`. Returns both paths.
    pub fn write(
        &self,
        dir: &std::path::Path,
        stem: &str,
        overwrite: bool,
    ) -> Result<(std::path::PathBuf, std::path::PathBuf), TlsError> {
        crate::durable_fs::create_dir_all(dir).map_err(|e| TlsError::File {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        for p in [&cert, &key] {
            if !overwrite && p.exists() {
                return Err(TlsError::File {
                    path: p.display().to_string(),
                    message: "exists; keeping it (--force replaces it)".into(),
                });
            }
        }
        super::files::write_new(&key, self.key_pem.expose().as_bytes(), 0o600, overwrite)?;
        super::files::write_new(&cert, self.cert_pem.as_bytes(), 0o644, overwrite)?;
        Ok((cert, key))
    }
}

/// A DNS subject-alternative name; the name must be one a client can verify (rustls's DNS-name
/// rules: labels of letters, digits and hyphens; a leading `*.` label for a wildcard).
fn dns(name: &str) -> Result<SanType, TlsError> {
    let plain = name.strip_prefix("*.").unwrap_or(name);
    if rustls::pki_types::DnsName::try_from(plain).is_err() {
        return Err(TlsError::Name(format!(
            "`{name}` is not a DNS name or IP address"
        )));
    }
    Ok(SanType::DnsName(name.try_into().map_err(
        |e: rcgen::Error| TlsError::Name(format!("`{name}` is not a DNS name or IP address: {e}")),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    #[test]
    fn issued_certificates_name_their_identity() {
        let ca = new_ca("c1", 30).unwrap();
        let signer = Signer::from_pem(&ca.cert_pem, ca.key_pem.expose()).unwrap();
        let node = signer
            .node("c1", 2, &["localhost".into(), "127.0.0.1".into()], 30)
            .unwrap();
        let der = CertificateDer::from_pem_slice(node.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            PeerIdentity::of_certificate(&der).unwrap(),
            PeerIdentity::Node {
                cluster_id: "c1".into(),
                node_id: 2
            }
        );
        let admin = signer.admin("c1", "ops", 30).unwrap();
        let der = CertificateDer::from_pem_slice(admin.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            PeerIdentity::of_certificate(&der).unwrap(),
            PeerIdentity::Admin {
                cluster_id: "c1".into(),
                name: "ops".into()
            }
        );
        // The CA names nobody.
        let der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        assert!(PeerIdentity::of_certificate(&der).is_err());
        assert!(!format!("{node:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn written_keys_are_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca("c1", 30).unwrap();
        let (cert, key) = ca.write(dir.path(), "ca", false).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&cert), 0o644);
        // A second CA does not silently replace the first.
        let other = new_ca("c1", 30).unwrap();
        assert!(other.write(dir.path(), "ca", false).is_err());
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), ca.cert_pem);
        other.write(dir.path(), "ca", true).unwrap();
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), other.cert_pem);
        assert_eq!(mode(&key), 0o600);
        // A certificate with another certificate's key is refused.
        let signer = Signer::from_pem(&ca.cert_pem, ca.key_pem.expose()).unwrap();
        let (node_cert, _) = signer
            .node("c1", 1, &[], 30)
            .unwrap()
            .write(dir.path(), "node1", false)
            .unwrap();
        let (_, admin_key) = signer
            .admin("c1", "ops", 30)
            .unwrap()
            .write(dir.path(), "admin-ops", false)
            .unwrap();
        let e = crate::tls::reload::CertStore::open(&node_cert, &admin_key).unwrap_err();
        assert!(e.to_string().contains("node1.pem"), "{e}");
        assert!(
            crate::tls::reload::CertStore::open(&node_cert, &dir.path().join("node1.key")).is_ok()
        );
        // The key reads back; a key file others may read is refused.
        assert!(crate::tls::files::read_private_key(&key).is_ok());
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = crate::tls::files::read_private_key(&key).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn bad_names_are_refused() {
        let ca = new_ca("c1", 30).unwrap();
        let signer = Signer::from_pem(&ca.cert_pem, ca.key_pem.expose()).unwrap();
        assert!(new_ca("a/b", 30).is_err());
        assert!(signer.node("c1", 0, &[], 30).is_err());
        assert!(signer.node("c1", 1, &["bad host!".into()], 30).is_err());
        assert!(signer.admin("c1", "a b", 30).is_err());
        assert!(new_ca("c1", 0).is_err());
        assert!(signer.node("c1", 1, &[], 1_000_000).is_err());
    }
}
