//! Transport security: certificates made by raftkms ([`issue`]), the identities they carry
//! ([`identity`]), PEM files ([`files`]), and the rustls configurations of the API listener, the
//! internal listener (mutual TLS) and the peer client ([`config`]), with certificates reloaded
//! from their files without a restart ([`reload`]).

pub mod config;
pub mod files;
pub mod identity;
pub mod issue;
pub mod reload;

pub use identity::PeerIdentity;

/// A TLS problem: a file, a certificate, a name, or issuing.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("{0}")]
    Name(String),
    #[error("cannot issue the certificate: {0}")]
    Issue(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The process-wide rustls provider (ring). Installing it twice is harmless.
///
/// rustls marks ring's provider deprecated because it lacks the post-quantum hybrid key exchange
/// (X25519MLKEM768) that aws-lc-rs offers; aws-lc-rs needs cmake and a much longer C build, so
/// raftkms stays on ring for now (docs/security.md, "Transport").
#[allow(deprecated)]
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    let p = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let _ = rustls::crypto::CryptoProvider::install_default((*p).clone());
    p
}
