//! Cryptography: the data AEADs (AES-256-GCM, SM4-GCM), the ciphertext blob, the root key that
//! wraps all stored material, and secret containers. Every primitive comes from a maintained
//! RustCrypto crate; this module only composes them.

pub mod aead;
pub mod asymmetric;
pub mod blob;
pub mod derive;
pub mod passphrase;
pub mod pkcs11;
pub mod post_quantum;
pub mod recipient;
pub mod root_key;
pub mod secret;

pub use aead::SymmetricAlgorithm;
pub use root_key::RootKey;
pub use secret::{Secret, SecretString};

/// Crypto-layer failures. Messages never contain key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("authentication failed: wrong key, context, or tampered data")]
    Authentication,
    #[error("malformed ciphertext: {0}")]
    Malformed(&'static str),
    #[error("unsupported format version {0}")]
    Version(u8),
    #[error("wrong key length {0}")]
    KeyLength(usize),
    #[error("unseal passphrase: {0}")]
    Passphrase(String),
    #[error("PKCS#11 token: {0}")]
    Token(String),
    #[error("unseal key file {path}: {message}")]
    UnsealKey { path: String, message: String },
    #[error("the unseal key of this node does not open the cluster root key")]
    WrongUnsealKey,
    #[error("the cluster root key is not installed yet (run `raftkms cluster init`)")]
    NoRootKey,
    /// A value wrapped under a root-key version this node does not hold (retired, or installed by
    /// a command this node has not applied yet).
    #[error("no root key version {0} in this node's registry (retired, or not applied here yet)")]
    RootKeyVersion(u32),
}
