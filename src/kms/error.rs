//! The KMS core's one error type: what went wrong, in domain terms. Each API dialect maps it to
//! its own codes once (the Tencent table is `http::tencent::error_code`).

use crate::crypto::CryptoError;
use crate::raft::error::ClusterError;
use crate::registry::key::{KeyState, KeyUsage};
use crate::registry::RegistryError;

use super::authorize::Refusal;

/// What an operation needed a key to be able to do, when its usage does not allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Symmetric encryption and decryption.
    Symmetric,
    /// Any use as an asymmetric key (public key, asymmetric decryption, signing).
    Asymmetric,
    /// RSA decryption.
    RsaDecrypt,
    /// SM2 decryption.
    Sm2Decrypt,
    /// Signing or verification.
    SignVerify,
    /// PostQuantumCryptoEncrypt / Decrypt (an ML-KEM key).
    PostQuantumEncrypt,
    /// PostQuantumCryptoSign / Verify (an ML-DSA key).
    PostQuantumSign,
}

impl Operation {
    fn describe(self) -> &'static str {
        match self {
            Operation::Symmetric => "be used for symmetric encryption",
            Operation::Asymmetric => "be used as an asymmetric key",
            Operation::RsaDecrypt => "decrypt with RSA",
            Operation::Sm2Decrypt => "decrypt with SM2",
            Operation::SignVerify => "sign or verify",
            Operation::PostQuantumEncrypt => {
                "be used with PostQuantumCryptoEncrypt/Decrypt (needs ASYMMETRIC_Encrypt_Decrypt_Kyber_AES)"
            }
            Operation::PostQuantumSign => {
                "be used with PostQuantumCryptoSign/Verify (needs ASYMMETRIC_SIGN_VERIFY_DILITHIUM)"
            }
        }
    }
}

/// Why a ciphertext was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CiphertextProblem {
    /// Malformed, tampered with, or sealed under another encryption context.
    Invalid,
    /// It names a key version the key does not have.
    UnknownVersion,
    /// It was not made by this key (another algorithm).
    OtherKey,
}

/// Why imported material was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnwrapFailure {
    /// The import parameters do not unwrap it.
    NotUnwrapped,
    /// It unwrapped to the wrong length.
    WrongLength { got: usize, want: usize },
}

/// Why an operation of the KMS core failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    /// A signing algorithm that does not fit the key's usage.
    #[error("the signing algorithm does not fit a key of usage {}", usage.as_str())]
    AlgorithmMismatch { usage: KeyUsage },
    /// A digest to sign or verify of the wrong length for the algorithm.
    #[error("a digest must be exactly {expected} bytes")]
    DigestLength { expected: usize },
    /// A raw message to sign or verify that is empty or too long.
    #[error("a raw message must be 1 to {max} bytes")]
    MessageLength { max: usize },
    /// A replica asked for in the key's own region.
    #[error("`{0}` is the key's own region")]
    OwnRegion(String),
    #[error("key {0} does not exist in this region")]
    KeyNotFound(String),
    #[error("data key {0} does not exist in this region")]
    DataKeyNotFound(String),
    #[error("data key {0} is disabled")]
    DataKeyDisabled(String),
    #[error("data key {0} is pending deletion")]
    DataKeyPendingDelete(String),
    /// A plaintext could not be encrypted to the caller's public key (`EncryptionPublicKey`):
    /// too long for the key and padding, for instance.
    #[error("the plaintext cannot be encrypted to the given public key: {0}")]
    PublicKeyEncryption(String),
    /// ImportDataKey's material: not a usable ciphertext blob, or a data key of the wrong length.
    #[error("{0}")]
    InvalidImportedDataKey(String),
    #[error("key {0} is disabled")]
    KeyDisabled(String),
    #[error("key {0} is archived")]
    KeyArchived(String),
    /// The key's state does not allow the operation (`what` names it, if it is worth saying).
    #[error("key {key_id} is {}{}", state.as_str(), what.map(|w| format!(" and cannot {w}")).unwrap_or_default())]
    KeyState {
        key_id: String,
        state: KeyState,
        what: Option<&'static str>,
    },
    #[error("the imported material of key {key_id} expired at {valid_to}")]
    MaterialExpired { key_id: String, valid_to: u64 },
    #[error("the key has no material")]
    NoMaterial,
    /// The key's usage does not allow the operation.
    #[error("key {key_id} has usage {} and cannot {}", usage.as_str(), what.describe())]
    WrongUsage {
        key_id: String,
        usage: KeyUsage,
        what: Operation,
    },
    /// A feature raftkms does not offer.
    #[error("{0}")]
    Unsupported(String),
    #[error("the ciphertext is not valid for this key: {0:?}")]
    InvalidCiphertext(CiphertextProblem),
    #[error("the ciphertext could not be decrypted with this key")]
    DecryptFailed,
    #[error("signing failed")]
    SignFailed,
    #[error("verification could not run")]
    VerifyFailed,
    /// Imported material that the import parameters do not unwrap (or of the wrong length).
    #[error("the imported material was refused: {0:?}")]
    MaterialUnwrap(UnwrapFailure),
    #[error("SecretId {0} does not exist")]
    UnknownCredential(String),
    #[error("region `{0}` is not served by this cluster")]
    UnsupportedRegion(String),
    /// Over the rate limit of the caller's credential or account for this class of action.
    #[error("too many {class} requests for this {per} on this node (rate-limits); retry with exponential backoff")]
    RateLimited {
        per: &'static str,
        class: &'static str,
    },
    /// A stale read on a node that does not answer stale reads (`reads.allow-stale = false`).
    #[error(
        "stale reads are not allowed on this node (reads.allow-stale = false); read linearizable"
    )]
    StaleNotAllowed,
    /// A stale read on a node whose last leader contact is older than `reads.max-stale-ms`.
    #[error("this node last heard from a leader {lag_ms} ms ago, more than reads.max-stale-ms ({max_ms}); retry on another node, later, or linearizable")]
    StaleTooOld { lag_ms: u64, max_ms: u64 },
    #[error("destination region `{region}` is not served by this cluster (served: {served})")]
    UnsupportedDestination { region: String, served: String },
    #[error("access denied: {0}")]
    Denied(Refusal),
    /// The registry refused the command (deterministically, on every replica).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The cluster could not serve the request (no leader, timeout, …).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A cryptographic failure of this node (not of the caller's ciphertext).
    #[error(transparent)]
    Crypto(CryptoError),
    #[error("internal error: {0}")]
    Internal(String),
    /// This node's audit trail cannot record requests (`audit.fail-closed`): it answers none.
    #[error("this node's audit trail cannot be written, so it answers no request (audit.fail-closed); a write may have been applied — read before retrying, on another node")]
    AuditUnavailable,
}

impl From<CryptoError> for KmsError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Authentication | CryptoError::Malformed(_) | CryptoError::Version(_) => {
                KmsError::InvalidCiphertext(CiphertextProblem::Invalid)
            }
            other => KmsError::Crypto(other),
        }
    }
}

impl KmsError {
    /// A short, stable name of the error's kind, for audit records and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            KmsError::AlgorithmMismatch { .. }
            | KmsError::DigestLength { .. }
            | KmsError::MessageLength { .. }
            | KmsError::OwnRegion(_) => "invalid",
            KmsError::KeyNotFound(_) => "key-not-found",
            KmsError::DataKeyNotFound(_) => "data-key-not-found",
            KmsError::DataKeyDisabled(_) | KmsError::DataKeyPendingDelete(_) => "data-key-state",
            KmsError::PublicKeyEncryption(_) => "encryption-failed",
            KmsError::InvalidImportedDataKey(_) => "invalid",
            KmsError::KeyDisabled(_) => "key-disabled",
            KmsError::KeyArchived(_) => "key-archived",
            KmsError::KeyState { .. } | KmsError::MaterialExpired { .. } | KmsError::NoMaterial => {
                "key-state"
            }
            KmsError::WrongUsage { .. } | KmsError::Unsupported(_) => "unsupported",
            KmsError::InvalidCiphertext(_) => "invalid-ciphertext",
            KmsError::DecryptFailed => "decrypt-failed",
            KmsError::SignFailed => "sign-failed",
            KmsError::VerifyFailed => "verify-failed",
            KmsError::MaterialUnwrap(_) => "material-unwrap",
            KmsError::UnknownCredential(_) => "unknown-credential",
            KmsError::UnsupportedRegion(_) | KmsError::UnsupportedDestination { .. } => {
                "unsupported-region"
            }
            KmsError::StaleNotAllowed | KmsError::StaleTooOld { .. } => "stale-refused",
            KmsError::RateLimited { .. } => "rate-limited",
            KmsError::Denied(_) => "denied",
            KmsError::Registry(_) => "refused",
            KmsError::Cluster(_) => "unavailable",
            KmsError::Crypto(_) => "crypto",
            KmsError::Internal(_) => "internal",
            KmsError::AuditUnavailable => "audit-unavailable",
        }
    }

    /// Whether the failure lies with this node or the cluster rather than with the request, so
    /// its details belong in the node's log.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            KmsError::Cluster(_)
                | KmsError::Crypto(_)
                | KmsError::Internal(_)
                | KmsError::AuditUnavailable
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_ciphertext_faults_are_not_node_faults() {
        for e in [
            CryptoError::Authentication,
            CryptoError::Malformed("short"),
            CryptoError::Version(9),
        ] {
            let k = KmsError::from(e);
            assert_eq!(k.kind(), "invalid-ciphertext");
            assert!(!k.is_internal());
        }
        let k = KmsError::from(CryptoError::WrongUnsealKey);
        assert!(k.is_internal() && k.kind() == "crypto");
        assert!(KmsError::from(ClusterError::NoLeader(5)).is_internal());
    }
}
