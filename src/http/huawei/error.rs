//! The one mapping from the KMS core's errors (and the dialect's own) to Huawei Cloud KMS
//! errors: an HTTP status ≥ 400 and `{"error": {"error_code": "KMS.xxxx", "error_msg": …}}`, or
//! for what Huawei's API gateway refuses (signature, throttling) the gateway's flat
//! `{"error_code": "APIGW.xxxx", "error_msg": …, "request_id": …}`. Codes and messages are
//! those of Huawei's KMS error-code table (API reference, "Error Codes").

use axum::http::StatusCode;

use crate::kms::error::{CiphertextProblem, Operation};
use crate::kms::KmsError;
use crate::registry::key::KeyState as State;
use crate::registry::RegistryError;

/// A Huawei error. Never carries secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Answered in the gateway's flat shape rather than KMS's nested one.
    pub gateway: bool,
    /// What went wrong inside the node, for its log only.
    pub detail: Option<String>,
}

impl HwError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        HwError {
            status,
            code,
            message: message.into(),
            gateway: false,
            detail: None,
        }
    }

    /// `KMS.0308 Invalid parameter.` naming the parameter and why.
    pub fn invalid(name: &str, why: impl std::fmt::Display) -> Self {
        HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.0308",
            format!("Invalid parameter. `{name}` {why}"),
        )
    }

    /// `KMS.0204 Parameters missing in the request message.`
    pub fn missing(name: &str) -> Self {
        HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.0204",
            format!("Parameters missing in the request message: `{name}`."),
        )
    }

    /// An authentication failure, as the gateway answers it (401 `APIGW.0301`).
    pub fn auth(why: impl std::fmt::Display) -> Self {
        HwError {
            status: StatusCode::UNAUTHORIZED,
            code: "APIGW.0301",
            message: format!("Incorrect IAM authentication information: {why}"),
            gateway: true,
            detail: None,
        }
    }

    fn internal(status: StatusCode, code: &'static str, message: &str, e: &KmsError) -> Self {
        HwError {
            status,
            code,
            message: message.to_string(),
            gateway: false,
            detail: Some(e.to_string()),
        }
    }
}

fn bad(code: &'static str, canonical: &str, e: &KmsError) -> HwError {
    HwError::new(StatusCode::BAD_REQUEST, code, format!("{canonical} ({e})"))
}

fn registry(r: &RegistryError, e: &KmsError) -> HwError {
    use RegistryError::*;
    match r {
        KeyNotFound | RecordNotFound => HwError::new(
            StatusCode::NOT_FOUND,
            "KMS.0207",
            format!("The key does not exist. ({e})"),
        ),
        AliasExists => bad("KMS.1104", "Duplicate key aliases.", e),
        InvalidAlias => bad("KMS.1101", "Invalid key_alias.", e),
        InvalidDescription => bad("KMS.1103", "Invalid key_description.", e),
        CmkLimitExceeded => bad("KMS.1105", "Too many keys.", e),
        KeyDisabled => bad("KMS.0209", "The key has been disabled.", e),
        NotPendingDelete => bad("KMS.1501", "The key is not in Pending deletion state.", e),
        InvalidPendingWindow => bad(
            "KMS.1401",
            "Set the pending deletion period between 7 to 30 days.",
            e,
        ),
        ExternalCannotRotate => bad("KMS.0312", "External keys cannot be rotated.", e),
        RotateNotSupported | ReplicaFollowsPrimary { .. } => bad(
            "KMS.0325",
            "The asymmetric key is not support this operation.",
            e,
        ),
        NotExternal => bad("KMS.0309", "External keys required.", e),
        ImportTokenExpired => bad("KMS.2601", "Token expired.", e),
        ImportTokenInvalid => bad("KMS.2605", "Token verification failed.", e),
        InvalidValidTo => bad(
            "KMS.2602",
            "Key expiration time must be later than the current time.",
            e,
        ),
        MaterialNotMatch => bad(
            "KMS.2606",
            "The imported key material does not match the earlier one.",
            e,
        ),
        NotUserCreatedCmk | CmkUsedByCloudProduct => bad(
            "KMS.0211",
            "Cannot perform this operation on Default Master Keys.",
            e,
        ),
        RotateRateLimited => HwError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "APIGW.0308",
            message: format!("The throttling threshold has been reached. ({e})"),
            gateway: true,
            detail: None,
        },
        StateNotSupported
        | ShouldBeDisabled
        | StaleRotation
        | NotDue
        | HasReplicas { .. }
        | CannotReplicate { .. }
        | ReplicaExists { .. }
        | DuplicatedKeyId
        | InvalidName
        | ValueTooLarge
        | InvalidRotateDays
        | InvalidCloudResource
        | CloudBindingNotFound
        | DataKeyNotFound => bad("KMS.0308", "Invalid parameter.", e),
        _ => HwError::internal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "KMS.0101",
            "KMS error.",
            e,
        ),
    }
}

impl From<KmsError> for HwError {
    fn from(e: KmsError) -> Self {
        use KmsError::*;
        match &e {
            KeyNotFound(_) => HwError::new(
                StatusCode::NOT_FOUND,
                "KMS.0207",
                format!("The key does not exist. ({e})"),
            ),
            KeyDisabled(_) | KeyArchived(_) => bad("KMS.0209", "The key has been disabled.", &e),
            KeyState { state: State::PendingDelete, .. } => bad(
                "KMS.0210",
                "The key is in Scheduled deletion state and cannot be used.",
                &e,
            ),
            KeyState { state: State::PendingImport, .. } | MaterialExpired { .. } | NoMaterial => {
                bad("KMS.0310", "The key is not in Pending import state or has no material.", &e)
            }
            KeyState { .. } => bad("KMS.0308", "Invalid parameter.", &e),
            AlgorithmMismatch { .. } => bad("KMS.0332", "This key is not support the signing algorithm.", &e),
            DigestLength { .. } => bad("KMS.0329", "Hash algorithm does not match the digest length.", &e),
            WrongUsage { what: Operation::Symmetric, .. } => {
                bad("KMS.0325", "The asymmetric key is not support this operation.", &e)
            }
            WrongUsage { what: Operation::SignVerify | Operation::Asymmetric, .. } => {
                bad("KMS.0331", "The symmetric key is not support this operation.", &e)
            }
            InvalidCiphertext(CiphertextProblem::Invalid | CiphertextProblem::UnknownVersion | CiphertextProblem::OtherKey) => {
                bad("KMS.2201", "Invalid cipher_text.", &e)
            }
            DecryptFailed => bad("KMS.0311", "Failed to decrypt data using the private key.", &e),
            MaterialUnwrap(_) => bad("KMS.2605", "Token verification failed.", &e),
            UnknownCredential(_) => HwError::auth(format!("Get secretKey failed, ak not exist ({e})")),
            RateLimited { .. } => HwError {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "APIGW.0308",
                message: format!("The throttling threshold has been reached. ({e})"),
                gateway: true,
                detail: None,
            },
            Denied(_) => HwError::new(
                StatusCode::FORBIDDEN,
                "KMS.0307",
                format!("User has no permission. ({e})"),
            ),
            Registry(r) => registry(r, &e),
            Cluster(crate::raft::error::ClusterError::BadRequest(_))
            | Cluster(crate::raft::error::ClusterError::FeatureNotEnabled { .. }) => {
                bad("KMS.0308", "Invalid parameter.", &e)
            }
            Cluster(_) | StaleNotAllowed | StaleTooOld { .. } | AuditUnavailable => HwError::internal(
                StatusCode::SERVICE_UNAVAILABLE,
                "KMS.0104",
                "A system exception occurred: the cluster cannot serve this request right now \
                 (no leader or quorum reachable). Retry; a change may or may not have been applied.",
                &e,
            ),
            Crypto(_) | Internal(_) | SignFailed | VerifyFailed => {
                HwError::internal(StatusCode::INTERNAL_SERVER_ERROR, "KMS.0101", "KMS error.", &e)
            }
            MessageLength { .. } | OwnRegion(_) | PublicKeyEncryption(_) | InvalidImportedDataKey(_)
            | WrongUsage { .. } | Unsupported(_) | UnsupportedRegion(_)
            | UnsupportedDestination { .. } | DataKeyNotFound(_) | DataKeyDisabled(_)
            | DataKeyPendingDelete(_) => bad("KMS.0308", "Invalid parameter.", &e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_get_huawei_codes_and_statuses() {
        let e = HwError::from(KmsError::KeyNotFound("k".into()));
        assert_eq!((e.status, e.code), (StatusCode::NOT_FOUND, "KMS.0207"));
        let e = HwError::from(KmsError::KeyDisabled("k".into()));
        assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "KMS.0209"));
        let e = HwError::from(KmsError::from(RegistryError::AliasExists));
        assert_eq!(e.code, "KMS.1104");
        let e = HwError::from(KmsError::UnknownCredential("AK".into()));
        assert_eq!(
            (e.status, e.code, e.gateway),
            (StatusCode::UNAUTHORIZED, "APIGW.0301", true)
        );
        let e = HwError::from(KmsError::Internal("disk on fire".into()));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.message.contains("disk") && e.detail.is_some());
        let e = HwError::from(KmsError::from(crate::raft::error::ClusterError::NoLeader(
            5,
        )));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "KMS.0104")
        );
    }
}
