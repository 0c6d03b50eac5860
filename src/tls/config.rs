//! The rustls configurations: the API listener (server authentication), the internal listener
//! (mutual TLS: a certificate from the cluster CA is required), the peer client (presents the
//! node's certificate and accepts only a node of its own cluster, with the expected node id), and
//! clients of the API that trust the cluster CA.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use super::identity::{node_dns_name, PeerIdentity};
use super::reload::CertStore;
use super::{files, TlsError};

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn config_error(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

/// The cluster CA (or any CA bundle) as trust roots.
pub fn roots(ca_file: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in files::read_certificates(ca_file)? {
        roots.add(cert).map_err(|e| TlsError::File {
            path: ca_file.display().to_string(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// The API listener: TLS 1.2 and 1.3, HTTP/1.1, no client certificate.
pub fn api_server(cert: Arc<CertStore>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut cfg = ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(VERSIONS)
        .map_err(config_error)?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The internal listener: a client certificate from the cluster CA is required; what it may do
/// (node or admin) is read from its identity after the handshake.
pub fn internal_server(
    cert: Arc<CertStore>,
    roots: Arc<RootCertStore>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, super::provider())
        .build()
        .map_err(config_error)?;
    let mut cfg = ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(VERSIONS)
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A client of the internal listener (a peer, or the admin CLI): presents `cert` and accepts a
/// server only if its certificate chains to the cluster CA and names a node of `cluster_id`
/// (node `expect`, when the caller knows which node it dials).
pub fn internal_client(
    cert: Option<Arc<CertStore>>,
    roots: Arc<RootCertStore>,
    cluster_id: &str,
    expect: Option<u64>,
) -> Result<ClientConfig, TlsError> {
    let inner = WebPkiServerVerifier::builder_with_provider(roots, super::provider())
        .build()
        .map_err(config_error)?;
    let verifier = Arc::new(NodeVerifier {
        inner,
        cluster_id: cluster_id.to_string(),
        expect,
    });
    let builder = ClientConfig::builder_with_provider(super::provider())
        .with_protocol_versions(VERSIONS)
        .map_err(config_error)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match cert {
        Some(c) => builder.with_client_cert_resolver(c),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A client of the API listener that trusts `roots` and checks the host name as usual.
pub fn api_client(roots: Arc<RootCertStore>) -> Result<ClientConfig, TlsError> {
    let mut cfg = ClientConfig::builder_with_provider(super::provider())
        .with_protocol_versions(VERSIONS)
        .map_err(config_error)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Verifies a peer's server certificate: the chain to the cluster CA (webpki), under the DNS name
/// of the node the certificate's identity names, which must be a node of this cluster (and the
/// expected node, when known). The host name or address dialled plays no part: peers are found by
/// address, identified by certificate.
#[derive(Debug)]
struct NodeVerifier {
    inner: Arc<WebPkiServerVerifier>,
    cluster_id: String,
    expect: Option<u64>,
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let identity = PeerIdentity::of_certificate(end_entity)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let node_id = match identity {
            PeerIdentity::Node {
                ref cluster_id,
                node_id,
            } if *cluster_id == self.cluster_id => node_id,
            other => {
                return Err(rustls::Error::General(format!(
                    "the server's certificate names {other} of cluster `{}`, not a node of `{}`",
                    other.cluster_id(),
                    self.cluster_id
                )))
            }
        };
        if let Some(expect) = self.expect {
            if expect != node_id {
                return Err(rustls::Error::General(format!(
                    "dialled node {expect}, the certificate names node {node_id}"
                )));
            }
        }
        let name = ServerName::try_from(node_dns_name(node_id))
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        self.inner
            .verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
