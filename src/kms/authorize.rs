//! The authorization seam: every operation of the KMS core asks an [`Authorizer`] whether the
//! caller may perform the action on the resource before anything is read or proposed.
//!
//! The rule ([`Policies`]): an account's root identity (a credential with no user or role bound
//! to it) may do everything within its own account; a sub-user or role may do only what the
//! CAM-style policies attached to it allow, evaluated from this node's applied registry on every
//! request (deny wins; no allowing statement, no access). Every resource is looked up within the
//! caller's account and region, so another account's key is never found whatever a policy says.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::node::Node;
use crate::policy::{self, Decision, Facts};
use crate::registry::iam::{Effect, Principal};

/// Who is calling, as a dialect authenticated them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The account.
    pub uin: u64,
    /// The credential (SecretId / access key) that signed the request.
    pub credential_id: String,
    /// Who the credential speaks for: the account's root, or one of its users or roles.
    pub principal: Principal,
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
    /// Querying the audit trail (CloudAudit's LookUpEvents).
    LookUpEvents,
    BindCloudResource,
    UnbindCloudResource,
    /// A hosted data key made (GenerateDataKey with IsHostedByKms=1, ImportDataKey).
    CreateDataKey,
    /// Describing or listing hosted data keys.
    DescribeDataKey,
    EnableDataKey,
    DisableDataKey,
    /// A new name or description of a hosted data key.
    UpdateDataKey,
    /// Reading a hosted data key as its CMK's ciphertext blob.
    GetDataKeyCiphertext,
    /// Reading a hosted data key in clear (or encrypted to the caller's public key).
    GetDataKeyPlaintext,
    ScheduleDataKeyDeletion,
    CancelDataKeyDeletion,
    /// Reading a key's or data key's tags (GetResourceTags).
    GetTags,
    /// Changing them (ModifyResourceTags).
    ModifyTags,
    /// Reading every member's status (the console's cluster view; operators only).
    DescribeCluster,
    /// Reading the DR drill reports (operators only).
    DescribeDrills,
    /// Starting a DR drill on a dev cluster (operators only).
    StartDrill,
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
            Action::LookUpEvents => "cloudaudit:LookUpEvents",
            Action::BindCloudResource => "kms:BindCloudResource",
            Action::UnbindCloudResource => "kms:UnbindCloudResource",
            Action::CreateDataKey => "kms:CreateDataKey",
            Action::DescribeDataKey => "kms:DescribeDataKey",
            Action::EnableDataKey => "kms:EnableDataKey",
            Action::DisableDataKey => "kms:DisableDataKey",
            Action::UpdateDataKey => "kms:UpdateDataKey",
            Action::GetDataKeyCiphertext => "kms:GetDataKeyCiphertextBlob",
            Action::GetDataKeyPlaintext => "kms:GetDataKeyPlaintext",
            Action::ScheduleDataKeyDeletion => "kms:ScheduleDataKeyDeletion",
            Action::CancelDataKeyDeletion => "kms:CancelDataKeyDeletion",
            Action::GetTags => "kms:GetResourceTags",
            Action::ModifyTags => "kms:ModifyResourceTags",
            Action::DescribeCluster => "kms:DescribeClusterStatus",
            Action::DescribeDrills => "kms:DescribeDrillReports",
            Action::StartDrill => "kms:StartDrill",
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
    /// Hosted data keys of the caller's account in a region (one or more DataKeyIds).
    DataKeys {
        region: String,
        data_key_ids: Vec<String>,
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
            Resource::DataKeys {
                region,
                data_key_ids,
            } => write!(f, "data keys {} in {region}", data_key_ids.join(",")),
            Resource::Ciphertext { region } => write!(f, "a ciphertext's key in {region}"),
            Resource::Account { region } => write!(f, "the account in {region}"),
            Resource::Service => f.write_str("the service"),
        }
    }
}

/// Whether a refusal concerns the action as a whole or the particular resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalScope {
    /// No policy of the caller allows the action on anything (or one denies it everywhere).
    Action,
    /// The action is allowed somewhere, but not on this resource or not under these conditions.
    Resource,
}

/// Why an authorizer refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    pub scope: RefusalScope,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// One request to authorize.
#[derive(Clone, Copy, Debug)]
pub struct AuthRequest<'a> {
    pub caller: &'a Caller,
    /// The core's operation.
    pub action: Action,
    /// The action as policies name it (`kms:EnableKeys`): the API action the caller invoked.
    pub policy_action: &'a str,
    pub resource: &'a Resource,
    /// The request's region.
    pub region: &'a str,
    /// The client's address, if the dialect knows it.
    pub source_ip: Option<IpAddr>,
}

/// Decides whether a caller may perform an action on a resource.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize(&self, request: &AuthRequest<'_>) -> Result<(), Refusal>;
}

/// Every credential may do everything within its own account (resources are always looked up
/// within the caller's account, so this grants nothing across accounts). For tests of the core.
#[derive(Clone, Copy, Debug, Default)]
pub struct AccountScope;

impl Authorizer for AccountScope {
    fn authorize(&self, _: &AuthRequest<'_>) -> Result<(), Refusal> {
        Ok(())
    }
}

/// The account's root may do everything in its account; users and roles what their attached
/// policies allow, read from the node's applied registry (so a policy change binds a node as
/// soon as it applies it, and every node once the change is acknowledged: linearizable
/// requests pass the read gate before they are authorized).
pub struct Policies {
    node: Arc<Node>,
}

impl Policies {
    pub fn new(node: Arc<Node>) -> Self {
        Policies { node }
    }
}

impl Authorizer for Policies {
    fn authorize(&self, r: &AuthRequest<'_>) -> Result<(), Refusal> {
        let Principal::Identity { kind, name } = &r.caller.principal else {
            return Ok(());
        };
        let uin = r.caller.uin;
        let state = self.node.state().read();
        let registry = &state.registry;
        let iam = registry.iam();
        let denied = |scope, reason: String| Err(Refusal { reason, scope });
        let Some(statements) = iam.statements_of(uin, *kind, name) else {
            return denied(
                RefusalScope::Action,
                format!("{} no longer exists", r.caller.principal),
            );
        };
        // Whether any allowing statement names the action at all decides which code a refusal
        // gets (AuthFailure.UnauthorizedOperation vs UnauthorizedOperation): worked out only
        // when refusing.
        let scope_of_refusal = || {
            if statements.iter().any(|s| {
                s.effect == Effect::Allow
                    && s.actions
                        .iter()
                        .any(|a| policy::wildcard(a, r.policy_action))
            }) {
                RefusalScope::Resource
            } else {
                RefusalScope::Action
            }
        };
        // The key's tags are looked up only if a statement has a condition on them.
        let needs_tags = statements
            .iter()
            .any(|s| s.conditions.iter().any(|c| c.key == "qcs:resource_tag"));
        let now_ms = self.node.clock().wall_ms();
        let check = |resource: &str, tags: Option<&[String]>| {
            let facts = Facts {
                ip: r.source_ip,
                now_ms,
                resource_tags: tags,
            };
            match policy::evaluate(statements.iter(), r.policy_action, resource, &facts) {
                Decision::Allow => Ok(()),
                Decision::Deny => denied(
                    scope_of_refusal(),
                    format!(
                        "{} is denied {} on {resource} by a policy",
                        r.caller.principal, r.policy_action
                    ),
                ),
                Decision::NoMatch => denied(
                    scope_of_refusal(),
                    format!(
                        "no policy allows {} {} on {resource}",
                        r.caller.principal, r.policy_action
                    ),
                ),
            }
        };
        match r.resource {
            Resource::Keys { region, key_ids } if key_ids.is_empty() => {
                check(&policy::account_resource(region, uin), None)
            }
            Resource::Keys { region, key_ids } => {
                for id in key_ids {
                    let tags: Option<Vec<String>> = needs_tags
                        .then(|| registry.keys().get(region, uin, id))
                        .flatten()
                        .map(|k| k.tags.iter().map(|(k, v)| format!("{k}&{v}")).collect());
                    check(&policy::key_resource(region, uin, id), tags.as_deref())?;
                }
                Ok(())
            }
            Resource::DataKeys {
                region,
                data_key_ids,
            } => {
                for id in data_key_ids {
                    let tags: Option<Vec<String>> = needs_tags
                        .then(|| registry.data_keys().get(region, uin, id))
                        .flatten()
                        .map(|d| d.tags.iter().map(|(k, v)| format!("{k}&{v}")).collect());
                    check(&policy::data_key_resource(region, uin, id), tags.as_deref())?;
                }
                Ok(())
            }
            Resource::Ciphertext { region } | Resource::Account { region } => {
                check(&policy::account_resource(region, uin), None)
            }
            Resource::Service => check(&policy::account_resource(r.region, uin), None),
        }
    }
}
