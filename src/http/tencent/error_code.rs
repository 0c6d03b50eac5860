//! The one mapping from the KMS core's errors (and the dialect's own) to Tencent Cloud API error
//! codes.

use crate::kms::error::{CiphertextProblem, Operation, UnwrapFailure};
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
        | Encoding(_)
        | IdentityExists
        | IdentityNotFound
        | InvalidIdentityName
        | PolicyExists
        | PolicyNotFound
        | PolicyNotAttached
        | InvalidPolicy(_)
        | PolicyLimitExceeded
        | StaleAuditCheckpoint { .. }
        | RootKeyNotInstalled
        | RootKeyVersionConflict { .. }
        | RootKeyVersionUnknown { .. }
        | RootKeyIsCurrent { .. }
        | RootKeyInUse { .. }
        | TooManyRewrapItems { .. }
        | BatchNotApplicable
        | FeatureLevelNotRaised { .. } => "InternalError",
        NotUserCreatedCmk => "UnsupportedOperation.NotUserCreatedCmk",
        CmkUsedByCloudProduct => "FailedOperation.CmkUsedByCloudProduct",
        CloudBindingNotFound => "ResourceUnavailable.CloudResourceBindingNotFound",
        InvalidCloudResource => "InvalidParameterValue",
        DataKeyNotFound => "ResourceUnavailable.DataKeyNotFound",
        DataKeyExists => "InternalError",
        DataKeyNameExists => "InvalidParameterValue.DataKeyNameAlreadyExists",
        InvalidDataKeyName => "InvalidParameterValue.InvalidDataKeyName",
        InvalidDataKeyDescription => "InvalidParameterValue",
        InvalidDataKeyLength => "InvalidParameterValue.InvalidImportKeyMaterial",
        DataKeyLimitExceeded => "LimitExceeded.DataKeyLimitExceeded",
        DataKeyPendingDelete => "ResourceUnavailable.DataKeyPendingDelete",
        DataKeyNotPendingDelete => "ResourceUnavailable.DataKeyNotPendingDelete",
        DuplicatedDataKeyId => "InvalidParameterValue.DuplicatedDataKeyId",
        InvalidTags(_) => "InvalidParameterValue",
        TagKeysDuplicated => "InvalidParameterValue.TagKeysDuplicated",
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        ApiError::new(registry_code(&e), e.to_string())
    }
}

/// The message of a core error in this dialect's words (its parameter and action names); `None`
/// when the core's own text says it.
fn tencent_message(e: &KmsError) -> Option<String> {
    use KmsError::*;
    let invalid = |name: &str, why: String| format!("invalid value for `{name}`: {why}");
    Some(match e {
        AlgorithmMismatch { usage } => invalid(
            "Algorithm",
            format!(
                "the algorithm does not fit a key of usage {}",
                usage.as_str()
            ),
        ),
        DigestLength { expected } => invalid(
            "Message",
            format!("a DIGEST must be exactly {expected} bytes"),
        ),
        MessageLength { max } => {
            invalid("Message", format!("a RAW message must be 1 to {max} bytes"))
        }
        OwnRegion(r) => invalid(
            "DestinationRegions",
            format!("`{r}` is the key's own region"),
        ),
        WrongUsage {
            key_id,
            usage,
            what,
        } => {
            let usage = usage.as_str();
            match what {
                Operation::Symmetric => {
                    format!("key {key_id} has usage {usage}; use the asymmetric actions")
                }
                Operation::Asymmetric => {
                    format!(
                        "key {key_id} has usage {usage} and cannot be used as an asymmetric key"
                    )
                }
                Operation::RsaDecrypt => {
                    format!("key {key_id} has usage {usage} and cannot AsymmetricRsaDecrypt")
                }
                Operation::Sm2Decrypt => {
                    format!("key {key_id} has usage {usage} and cannot AsymmetricSm2Decrypt")
                }
                Operation::SignVerify => {
                    format!("key {key_id} has usage {usage} and cannot sign or verify")
                }
                Operation::PostQuantumEncrypt => format!(
                    "key {key_id} has usage {usage}; PostQuantumCryptoEncrypt/Decrypt need a key of usage ASYMMETRIC_Encrypt_Decrypt_Kyber_AES"
                ),
                Operation::PostQuantumSign => format!(
                    "key {key_id} has usage {usage}; PostQuantumCryptoSign/Verify need a key of usage ASYMMETRIC_SIGN_VERIFY_DILITHIUM"
                ),
            }
        }
        InvalidCiphertext(CiphertextProblem::Invalid) => {
            "the ciphertext is invalid, was tampered with, or does not match the EncryptionContext"
                .into()
        }
        InvalidCiphertext(CiphertextProblem::UnknownVersion) => {
            "the ciphertext names an unknown key version".into()
        }
        InvalidCiphertext(CiphertextProblem::OtherKey) => {
            "the ciphertext does not belong to this key".into()
        }
        MaterialUnwrap(UnwrapFailure::NotUnwrapped) => {
            "EncryptedKeyMaterial could not be unwrapped with the import parameters".into()
        }
        MaterialUnwrap(UnwrapFailure::WrongLength { got, want }) => {
            format!("the unwrapped material is {got} bytes; this region's keys need {want} bytes")
        }
        _ => return None,
    })
}

impl From<KmsError> for ApiError {
    fn from(e: KmsError) -> Self {
        use KmsError::*;
        let code = match &e {
            AlgorithmMismatch { .. }
            | DigestLength { .. }
            | MessageLength { .. }
            | OwnRegion(_) => "InvalidParameterValue",
            KeyNotFound(_) => "ResourceUnavailable.CmkNotFound",
            DataKeyNotFound(_) => "ResourceUnavailable.DataKeyNotFound",
            DataKeyDisabled(_) => "ResourceUnavailable.DataKeyDisabled",
            DataKeyPendingDelete(_) => "ResourceUnavailable.DataKeyPendingDelete",
            PublicKeyEncryption(_) => "FailedOperation.EncryptionError",
            InvalidImportedDataKey(_) => "InvalidParameterValue.InvalidImportKeyMaterial",
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
            StaleNotAllowed => "UnsupportedOperation",
            RateLimited { .. } => "RequestLimitExceeded",
            StaleTooOld { .. } => "UnsupportedOperation.ServiceTemporaryUnavailable",
            Denied(r) => match r.scope {
                crate::kms::authorize::RefusalScope::Action => "AuthFailure.UnauthorizedOperation",
                crate::kms::authorize::RefusalScope::Resource => "UnauthorizedOperation",
            },
            Registry(r) => registry_code(r),
            Cluster(crate::raft::error::ClusterError::BadRequest(_)) => "InvalidParameter",
            Cluster(crate::raft::error::ClusterError::FeatureNotEnabled { .. }) => {
                "UnsupportedOperation"
            }
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
            Crypto(crate::crypto::CryptoError::RootKeyVersion(_)) => {
                return ApiError::internal(
                    "InternalError",
                    "a root-key rotation retired the version this request's value was wrapped under while it ran; retry the request",
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
            AuditUnavailable => "InternalError",
        };
        let message = tencent_message(&e).unwrap_or_else(|| e.to_string());
        ApiError::new(code, message)
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
    fn core_errors_speak_tencent_names_in_their_messages() {
        use crate::registry::key::{KeyState, KeyUsage};
        let cases: Vec<(KmsError, &str, &str)> = vec![
            (
                KmsError::WrongUsage {
                    key_id: "k".into(),
                    usage: KeyUsage::AsymmetricSignVerifySm2,
                    what: Operation::Symmetric,
                },
                "UnsupportedOperation",
                "key k has usage ASYMMETRIC_SIGN_VERIFY_SM2; use the asymmetric actions",
            ),
            (
                KmsError::WrongUsage {
                    key_id: "k".into(),
                    usage: KeyUsage::EncryptDecrypt,
                    what: Operation::RsaDecrypt,
                },
                "UnsupportedOperation",
                "key k has usage ENCRYPT_DECRYPT and cannot AsymmetricRsaDecrypt",
            ),
            (
                KmsError::DigestLength { expected: 32 },
                "InvalidParameterValue",
                "invalid value for `Message`: a DIGEST must be exactly 32 bytes",
            ),
            (
                KmsError::OwnRegion("ap-guangzhou".into()),
                "InvalidParameterValue",
                "invalid value for `DestinationRegions`: `ap-guangzhou` is the key's own region",
            ),
            (
                KmsError::KeyState {
                    key_id: "k".into(),
                    state: KeyState::PendingDelete,
                    what: Some("encrypt"),
                },
                "ResourceUnavailable.CmkStateNotSupport",
                "key k is PendingDelete and cannot encrypt",
            ),
            (
                KmsError::KeyState {
                    key_id: "k".into(),
                    state: KeyState::PendingDelete,
                    what: None,
                },
                "ResourceUnavailable.CmkStateNotSupport",
                "key k is PendingDelete",
            ),
            (
                KmsError::MaterialUnwrap(UnwrapFailure::WrongLength { got: 16, want: 32 }),
                "InvalidParameter.DecryptMaterialError",
                "the unwrapped material is 16 bytes; this region's keys need 32 bytes",
            ),
            (
                KmsError::InvalidCiphertext(CiphertextProblem::Invalid),
                "InvalidParameterValue.InvalidCiphertext",
                "the ciphertext is invalid, was tampered with, or does not match the EncryptionContext",
            ),
        ];
        for (e, code, message) in cases {
            let api = ApiError::from(e);
            assert_eq!((api.code, api.message.as_str()), (code, message));
        }
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
