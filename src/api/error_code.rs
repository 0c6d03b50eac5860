//! The one mapping from every layer's errors to Tencent Cloud API error codes.

use crate::crypto::CryptoError;
use crate::raft::error::ClusterError;
use crate::registry::RegistryError;

use super::tc3::Tc3Error;

/// An API error: a Tencent code and a message a person can act on. Never carries secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn missing(name: &str) -> Self {
        ApiError::new(
            "MissingParameter",
            format!("the request is missing the required parameter `{name}`"),
        )
    }

    pub fn invalid(name: &str, why: impl std::fmt::Display) -> Self {
        ApiError::new(
            "InvalidParameterValue",
            format!("invalid value for `{name}`: {why}"),
        )
    }

    pub fn key_not_found(key_id: &str) -> Self {
        ApiError::new(
            "ResourceUnavailable.CmkNotFound",
            format!("key {key_id} does not exist in this region"),
        )
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        use RegistryError::*;
        let code = match e {
            KeyNotFound => "ResourceUnavailable.CmkNotFound",
            AliasExists => "InvalidParameterValue.AliasAlreadyExists",
            InvalidAlias => "InvalidParameterValue.InvalidAlias",
            InvalidDescription | InvalidName | ValueTooLarge | InvalidRotateDays => {
                "InvalidParameterValue"
            }
            CmkLimitExceeded => "LimitExceeded.CmkLimitExceeded",
            StateNotSupported => "ResourceUnavailable.CmkStateNotSupport",
            ShouldBeDisabled => "ResourceUnavailable.CmkShouldBeDisabled",
            NotPendingDelete => "ResourceUnavailable.CmkNotPendingDelete",
            KeyDisabled => "ResourceUnavailable.CmkDisabled",
            ExternalCannotRotate => "UnsupportedOperation.ExternalCmkCanNotRotate",
            RotateRateLimited => "RequestLimitExceeded.RotateRateLimited",
            RotateNotSupported => "UnsupportedOperation.RotateNotSupported",
            NotExternal => "UnsupportedOperation.NotExternalCmk",
            ImportTokenInvalid | InvalidValidTo => "InvalidParameterValue",
            ImportTokenExpired => "ResourceUnavailable.TokenExpired",
            MaterialNotMatch => "InvalidParameterValue.MaterialNotMatch",
            StaleRotation => "FailedOperation.RotateTaskRunning",
            InvalidPendingWindow => "InvalidParameter.InvalidPendingWindowInDays",
            DuplicatedKeyId => "InvalidParameterValue.DuplicatedKeyId",
            RecordNotFound => "ResourceNotFound",
            NotDue => "FailedOperation",
            ReplicaFollowsPrimary { .. } => "UnsupportedOperation.RotateNotSupported",
            HasReplicas { .. } | CannotReplicate { .. } => "UnsupportedOperation",
            ReplicaExists { .. } => "InvalidParameterValue.ReplicaAlreadyExists",
            RootKeyAlreadyInstalled
            | AccountExists
            | AccountNotFound
            | CredentialExists
            | CredentialNotFound
            | KeyExists
            | Encoding(_) => "InternalError",
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        // Details (peer addresses, internal errors) go to the log, not to the client.
        tracing::warn!(error = %e, "request failed in the cluster layer");
        match e {
            ClusterError::BadRequest(_) => ApiError::new("InvalidParameter", e.to_string()),
            ClusterError::WriteTimeout(ms) => ApiError::new(
                "InternalError",
                format!("the change did not commit within {ms} ms and may or may not have been applied; read the key's state before retrying"),
            ),
            _ => ApiError::new(
                "UnsupportedOperation.ServiceTemporaryUnavailable",
                "the cluster cannot serve this request right now (no leader or no quorum reachable, or the leader changed); \
                 retry later, or use X-Raftkms-Consistency: stale for reads. A change may or may not have been applied: read the state before retrying",
            ),
        }
    }
}

impl From<CryptoError> for ApiError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Authentication | CryptoError::Malformed(_) | CryptoError::Version(_) => ApiError::new(
                "InvalidParameterValue.InvalidCiphertext",
                "the ciphertext is invalid, was tampered with, or does not match the EncryptionContext",
            ),
            other => {
                tracing::error!(error = %other, "crypto failure");
                ApiError::new("InternalError", "internal cryptographic error on this node (for example its unseal key does not open the cluster root key); see its log")
            }
        }
    }
}

impl From<Tc3Error> for ApiError {
    fn from(e: Tc3Error) -> Self {
        let code = match e {
            Tc3Error::Malformed(_) => "AuthFailure.InvalidAuthorization",
            Tc3Error::Expired => "AuthFailure.SignatureExpire",
            Tc3Error::Mismatch => "AuthFailure.SignatureFailure",
        };
        ApiError::new(code, e.to_string())
    }
}
