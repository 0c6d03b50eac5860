//! The one mapping from the KMS core's errors (and the dialect's own) to Tencent Cloud API error
//! codes.

use crate::kms::KmsError;
use crate::registry::RegistryError;

use super::tc3::Tc3Error;

/// An API error: a Tencent code and a message a person can act on. Never carries secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    /// What went wrong inside the node, for its log only (never sent to the client).
    pub detail: Option<String>,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            detail: None,
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

    fn internal(code: &'static str, message: &str, detail: &KmsError) -> Self {
        ApiError {
            code,
            message: message.to_string(),
            detail: Some(detail.to_string()),
        }
    }
}

/// The Tencent code of a registry refusal.
fn registry_code(e: &RegistryError) -> &'static str {
    use RegistryError::*;
    match e {
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
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        ApiError::new(registry_code(&e), e.to_string())
    }
}

impl From<KmsError> for ApiError {
    fn from(e: KmsError) -> Self {
        use KmsError::*;
        let code = match &e {
            Invalid { .. } => "InvalidParameterValue",
            KeyNotFound(_) => "ResourceUnavailable.CmkNotFound",
            KeyDisabled(_) => "ResourceUnavailable.CmkDisabled",
            KeyArchived(_) => "ResourceUnavailable.CmkArchived",
            KeyState { .. } | MaterialExpired { .. } | NoMaterial => {
                "ResourceUnavailable.CmkStateNotSupport"
            }
            WrongUsage { .. } | Unsupported(_) => "UnsupportedOperation",
            InvalidCiphertext(_) => "InvalidParameterValue.InvalidCiphertext",
            DecryptFailed => "FailedOperation.DecryptError",
            SignFailed => "FailedOperation.SignError",
            VerifyFailed => "FailedOperation.VerifyError",
            MaterialUnwrap(_) => "InvalidParameter.DecryptMaterialError",
            UnknownCredential(_) => "AuthFailure.SecretIdNotFound",
            UnsupportedRegion(_) => "UnsupportedRegion",
            UnsupportedDestination { .. } => "InvalidParameterValue.UnsupportedRegion",
            Denied(_) => "AuthFailure.UnauthorizedOperation",
            Registry(r) => registry_code(r),
            Cluster(crate::raft::error::ClusterError::BadRequest(_)) => "InvalidParameter",
            Cluster(crate::raft::error::ClusterError::WriteTimeout(ms)) => {
                let message = format!("the change did not commit within {ms} ms and may or may not have been applied; read the key's state before retrying");
                return ApiError::internal("InternalError", &message, &e);
            }
            Cluster(_) => {
                return ApiError::internal(
                    "UnsupportedOperation.ServiceTemporaryUnavailable",
                    "the cluster cannot serve this request right now (no leader or no quorum reachable, or the leader changed); \
                     retry later, or use X-Raftkms-Consistency: stale for reads. A change may or may not have been applied: read the state before retrying",
                    &e,
                )
            }
            Crypto(_) => {
                return ApiError::internal(
                    "InternalError",
                    "internal cryptographic error on this node (for example its unseal key does not open the cluster root key); see its log",
                    &e,
                )
            }
            Internal(_) => {
                return ApiError::internal("InternalError", "internal error on this node; see its log", &e)
            }
        };
        ApiError::new(code, e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::CryptoError;
    use crate::raft::error::ClusterError;

    #[test]
    fn node_failures_keep_their_detail_out_of_the_message() {
        let e = ApiError::from(KmsError::from(ClusterError::Forward(
            "10.0.0.7:7001 refused".into(),
        )));
        assert_eq!(e.code, "UnsupportedOperation.ServiceTemporaryUnavailable");
        assert!(!e.message.contains("10.0.0.7"));
        assert!(e.detail.as_deref().is_some_and(|d| d.contains("10.0.0.7")));
        let e = ApiError::from(KmsError::from(CryptoError::WrongUnsealKey));
        assert_eq!(e.code, "InternalError");
        assert!(e.detail.is_some());
    }

    #[test]
    fn caller_errors_carry_no_detail() {
        let e = ApiError::from(KmsError::KeyNotFound("k".into()));
        assert_eq!(
            (e.code, e.detail),
            ("ResourceUnavailable.CmkNotFound", None)
        );
        let e = ApiError::from(KmsError::from(CryptoError::Authentication));
        assert_eq!(e.code, "InvalidParameterValue.InvalidCiphertext");
        let e = ApiError::from(KmsError::Registry(RegistryError::AliasExists));
        assert_eq!(e.code, "InvalidParameterValue.AliasAlreadyExists");
    }
}
