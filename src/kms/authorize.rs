//! The authorization seam: every operation of the KMS core asks an [`Authorizer`] whether the
//! caller may perform the action on the resource before anything is read or proposed.
//!
//! Today's rule ([`AccountScope`]): a credential may do everything within its own account, and
//! every resource is looked up within the caller's account and region, so another account's key
//! is never found. Policies (CAM-style) plug in here.

use std::fmt;

/// Who is calling, as a dialect authenticated them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The account.
    pub uin: u64,
    /// The credential (SecretId / access key) that signed the request.
    pub credential_id: String,
}

/// The operations of the KMS core, by dialect-neutral name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    CreateKey,
    DescribeKey,
    ListKeys,
    UpdateAlias,
    UpdateDescription,
    EnableKey,
    DisableKey,
    EnableRotation,
    DisableRotation,
    GetRotationStatus,
    RotateKey,
    ScheduleDeletion,
    CancelDeletion,
    ArchiveKey,
    CancelArchive,
    Encrypt,
    Decrypt,
    ReEncrypt,
    GenerateDataKey,
    GenerateRandom,
    GetPublicKey,
    AsymmetricDecrypt,
    Sign,
    Verify,
    GetImportParameters,
    ImportKeyMaterial,
    DeleteImportedKeyMaterial,
    ReplicateKey,
    GetServiceStatus,
    ListRegions,
    ListAlgorithms,
}

impl Action {
    /// The stable name used in audit records and policies.
    pub fn name(self) -> &'static str {
        match self {
            Action::CreateKey => "kms:CreateKey",
            Action::DescribeKey => "kms:DescribeKey",
            Action::ListKeys => "kms:ListKeys",
            Action::UpdateAlias => "kms:UpdateAlias",
            Action::UpdateDescription => "kms:UpdateDescription",
            Action::EnableKey => "kms:EnableKey",
            Action::DisableKey => "kms:DisableKey",
            Action::EnableRotation => "kms:EnableRotation",
            Action::DisableRotation => "kms:DisableRotation",
            Action::GetRotationStatus => "kms:GetRotationStatus",
            Action::RotateKey => "kms:RotateKey",
            Action::ScheduleDeletion => "kms:ScheduleDeletion",
            Action::CancelDeletion => "kms:CancelDeletion",
            Action::ArchiveKey => "kms:ArchiveKey",
            Action::CancelArchive => "kms:CancelArchive",
            Action::Encrypt => "kms:Encrypt",
            Action::Decrypt => "kms:Decrypt",
            Action::ReEncrypt => "kms:ReEncrypt",
            Action::GenerateDataKey => "kms:GenerateDataKey",
            Action::GenerateRandom => "kms:GenerateRandom",
            Action::GetPublicKey => "kms:GetPublicKey",
            Action::AsymmetricDecrypt => "kms:AsymmetricDecrypt",
            Action::Sign => "kms:Sign",
            Action::Verify => "kms:Verify",
            Action::GetImportParameters => "kms:GetImportParameters",
            Action::ImportKeyMaterial => "kms:ImportKeyMaterial",
            Action::DeleteImportedKeyMaterial => "kms:DeleteImportedKeyMaterial",
            Action::ReplicateKey => "kms:ReplicateKey",
            Action::GetServiceStatus => "kms:GetServiceStatus",
            Action::ListRegions => "kms:ListRegions",
            Action::ListAlgorithms => "kms:ListAlgorithms",
        }
    }
}

/// What an operation acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// Keys of the caller's account in a region (one or more KeyIds).
    Keys {
        region: String,
        key_ids: Vec<String>,
    },
    /// A key whose id is inside a ciphertext (known only once the blob is parsed).
    Ciphertext { region: String },
    /// The caller's account in a region (creating or listing keys, quotas).
    Account { region: String },
    /// The service itself (random bytes, regions, algorithms).
    Service,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Keys { region, key_ids } => {
                write!(f, "keys {} in {region}", key_ids.join(","))
            }
            Resource::Ciphertext { region } => write!(f, "a ciphertext's key in {region}"),
            Resource::Account { region } => write!(f, "the account in {region}"),
            Resource::Service => f.write_str("the service"),
        }
    }
}

/// Why an authorizer refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Decides whether a caller may perform an action on a resource.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize(
        &self,
        caller: &Caller,
        action: Action,
        resource: &Resource,
    ) -> Result<(), Refusal>;
}

/// Every credential may do everything within its own account (resources are always looked up
/// within the caller's account, so this grants nothing across accounts).
#[derive(Clone, Copy, Debug, Default)]
pub struct AccountScope;

impl Authorizer for AccountScope {
    fn authorize(&self, _: &Caller, _: Action, _: &Resource) -> Result<(), Refusal> {
        Ok(())
    }
}
