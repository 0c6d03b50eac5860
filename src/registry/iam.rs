//! Identities under an account (sub-users and roles), their credentials, CAM-style policies and
//! their attachments, and the keys that cloud products created (product-managed keys).
//!
//! The account's own credentials (those without a binding here) are the root identity: full
//! rights within the account. A credential bound to a sub-user or role acts as that identity, and
//! may do only what the policies attached to it allow (`policy` evaluates them). Policies are
//! stored already parsed (the proposing node parses the JSON; apply never does) together with the
//! text as it was given.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Change, RegistryError};
use crate::codec::{self, CodecError};

pub const IDENTITY_PREFIX: &[u8] = b"u/";
pub const POLICY_PREFIX: &[u8] = b"p/";
pub const BINDING_PREFIX: &[u8] = b"i/";
pub const PRODUCT_KEY_PREFIX: &[u8] = b"s/";

/// Most policies one account may hold.
pub const MAX_POLICIES_PER_ACCOUNT: usize = 1000;
/// Most policies attached to one identity.
pub const MAX_ATTACHED: usize = 200;
/// Most statements in one policy.
pub const MAX_STATEMENTS: usize = 100;
/// Longest policy text, in bytes (CAM's limit is 6144 characters).
pub const MAX_POLICY_TEXT: usize = 6144;

/// A sub-user or a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    User,
    Role,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::User => "user",
            IdentityKind::Role => "role",
        }
    }
}

/// Who a credential speaks for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Principal {
    /// The account itself: full rights within it.
    Root,
    /// A sub-user or role of the account, by name.
    Identity { kind: IdentityKind, name: String },
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Root => f.write_str("root"),
            Principal::Identity { kind, name } => write!(f, "{}/{name}", kind.as_str()),
        }
    }
}

/// A sub-user or role of an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub uin: u64,
    pub kind: IdentityKind,
    pub name: String,
    /// A role that a cloud product acts as: keys it creates are product-managed (listed with
    /// `Role=1`, never disabled or deleted by the user). Only roles may carry one.
    pub service: Option<String>,
    /// Names of the account's policies attached to this identity.
    pub policies: BTreeSet<String>,
    pub created_at: u64,
}

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

/// One condition of a statement: `operator` (e.g. `ip_equal`, `string_equal_if_exist`) applied
/// to the request's value of `key` (e.g. `qcs:ip`) against `values` (any of them matches).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub operator: String,
    pub key: String,
    pub values: Vec<String>,
}

/// One statement: whether `actions` on `resources` under `conditions` (all of them) are allowed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub effect: Effect,
    /// `kms:Encrypt`, `kms:Describe*`, `kms:*`, `*`.
    pub actions: Vec<String>,
    /// `qcs::kms:<region>:uin/<owner-uin>:key/<KeyId>` with `*` wildcards, or `*`.
    pub resources: Vec<String>,
    pub conditions: Vec<Condition>,
}

/// A policy of an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub uin: u64,
    pub name: String,
    pub description: String,
    pub statements: Vec<Statement>,
    /// The document as it was given (shown back to operators).
    pub text: String,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A credential that speaks for an identity (absent: the account's root identity).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub secret_id: String,
    pub uin: u64,
    pub kind: IdentityKind,
    pub name: String,
}

/// A key that a cloud product created on the account's behalf.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductKey {
    pub region: String,
    pub uin: u64,
    pub key_id: String,
    /// The product (the creating role's `service`).
    pub product: String,
}

/// A checked, encoded mutation of these tables.
pub(super) enum Staged {
    PutIdentity {
        identity: Identity,
        stored: Vec<u8>,
    },
    DeleteIdentity {
        uin: u64,
        kind: IdentityKind,
        name: String,
    },
    PutPolicy {
        policy: Policy,
        stored: Vec<u8>,
    },
    DeletePolicy {
        uin: u64,
        name: String,
    },
    Bind {
        binding: Binding,
        stored: Vec<u8>,
    },
    Unbind {
        secret_id: String,
    },
    ProductKey {
        key: ProductKey,
        stored: Vec<u8>,
    },
}

/// The statements that apply to one identity.
pub type Effective = Arc<Vec<Statement>>;

/// Identities, policies, bindings and product-managed keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Iam {
    /// By account and kind, then name (looked up by `&str`, without allocating, on every
    /// request of a sub-user).
    identities: BTreeMap<(u64, IdentityKind), BTreeMap<String, Identity>>,
    /// By account, then name.
    policies: BTreeMap<u64, BTreeMap<String, Policy>>,
    bindings: BTreeMap<String, Binding>,
    product_keys: BTreeMap<(String, u64, String), ProductKey>,
    /// Derived, never persisted: each identity's effective statements (those of its attached
    /// policies, in policy-name order), kept current by `commit` and rebuilt after a load, so that
    /// authorizing a request reads one entry instead of every attached policy.
    effective: BTreeMap<(u64, IdentityKind), BTreeMap<String, Effective>>,
}

fn identity_key(uin: u64, kind: IdentityKind, name: &str) -> Vec<u8> {
    let mut k = IDENTITY_PREFIX.to_vec();
    k.extend_from_slice(&uin.to_be_bytes());
    k.push(match kind {
        IdentityKind::User => b'u',
        IdentityKind::Role => b'r',
    });
    k.extend_from_slice(name.as_bytes());
    k
}

fn policy_key(uin: u64, name: &str) -> Vec<u8> {
    let mut k = POLICY_PREFIX.to_vec();
    k.extend_from_slice(&uin.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

fn binding_key(secret_id: &str) -> Vec<u8> {
    let mut k = BINDING_PREFIX.to_vec();
    k.extend_from_slice(secret_id.as_bytes());
    k
}

fn product_key_key(region: &str, uin: u64, key_id: &str) -> Vec<u8> {
    let mut k = PRODUCT_KEY_PREFIX.to_vec();
    k.extend_from_slice(region.as_bytes());
    k.push(0);
    k.extend_from_slice(&uin.to_be_bytes());
    k.extend_from_slice(key_id.as_bytes());
    k
}

/// CAM's rule for user, role and policy names: letters, digits and `+=,.@_-`.
fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// The structural rules of a policy that apply checks (the grammar itself is checked where the
/// JSON is parsed, `policy::parse`; these hold whatever proposed the command).
fn check_policy(p: &Policy) -> Result<(), RegistryError> {
    let bad = |why: &str| Err(RegistryError::InvalidPolicy(why.to_string()));
    if !valid_name(&p.name, 128) {
        return bad("the policy name must be 1 to 128 letters, digits or +=,.@_-");
    }
    if p.description.len() > 300 {
        return bad("the description exceeds 300 bytes");
    }
    if p.text.len() > MAX_POLICY_TEXT {
        return bad("the policy document exceeds 6144 bytes");
    }
    if p.statements.is_empty() || p.statements.len() > MAX_STATEMENTS {
        return bad("a policy has 1 to 100 statements");
    }
    if p.statements
        .iter()
        .any(|s| s.actions.is_empty() || s.resources.is_empty())
    {
        return bad("every statement names at least one action and one resource");
    }
    Ok(())
}

impl Iam {
    /// An identity of an account.
    pub fn identity(&self, uin: u64, kind: IdentityKind, name: &str) -> Option<&Identity> {
        self.identities.get(&(uin, kind))?.get(name)
    }

    /// The identities of an account.
    pub fn identities(&self, uin: u64) -> impl Iterator<Item = &Identity> {
        self.identities
            .range((uin, IdentityKind::User)..=(uin, IdentityKind::Role))
            .flat_map(|(_, by_name)| by_name.values())
    }

    /// The statements of every policy attached to an identity (`None`: no such identity).
    pub fn statements_of(
        &self,
        uin: u64,
        kind: IdentityKind,
        name: &str,
    ) -> Option<&Arc<Vec<Statement>>> {
        self.effective.get(&(uin, kind))?.get(name)
    }

    /// An identity's effective statements, from its attached policies as they are now.
    fn compile(&self, i: &Identity) -> Arc<Vec<Statement>> {
        Arc::new(
            i.policies
                .iter()
                .filter_map(|p| self.policy(i.uin, p))
                .flat_map(|p| p.statements.iter().cloned())
                .collect(),
        )
    }

    /// Recomputes one identity's effective statements (or drops them if it is gone).
    fn refresh(&mut self, uin: u64, kind: IdentityKind, name: &str) {
        match self.identity(uin, kind, name).map(|i| self.compile(i)) {
            Some(compiled) => {
                self.effective
                    .entry((uin, kind))
                    .or_default()
                    .insert(name.to_string(), compiled);
            }
            None => {
                if let Some(by_name) = self.effective.get_mut(&(uin, kind)) {
                    by_name.remove(name);
                    if by_name.is_empty() {
                        self.effective.remove(&(uin, kind));
                    }
                }
            }
        }
    }

    /// Recomputes the effective statements of every identity of `uin` that has `policy`
    /// attached.
    fn refresh_holders(&mut self, uin: u64, policy: &str) {
        let holders: Vec<(IdentityKind, String)> = self
            .identities(uin)
            .filter(|i| i.policies.contains(policy))
            .map(|i| (i.kind, i.name.clone()))
            .collect();
        for (kind, name) in holders {
            self.refresh(uin, kind, &name);
        }
    }

    /// Rebuilds every identity's effective statements (after a load).
    pub(super) fn rebuild(&mut self) {
        let all: Vec<(u64, IdentityKind, String)> = self
            .identities
            .values()
            .flat_map(BTreeMap::values)
            .map(|i| (i.uin, i.kind, i.name.clone()))
            .collect();
        self.effective.clear();
        for (uin, kind, name) in all {
            self.refresh(uin, kind, &name);
        }
    }

    /// A policy of an account.
    pub fn policy(&self, uin: u64, name: &str) -> Option<&Policy> {
        self.policies.get(&uin)?.get(name)
    }

    /// The policies of an account.
    pub fn policies(&self, uin: u64) -> impl Iterator<Item = &Policy> {
        self.policies
            .get(&uin)
            .into_iter()
            .flat_map(BTreeMap::values)
    }

    /// Who a credential speaks for (credentials without a binding: the account's root).
    pub fn principal(&self, secret_id: &str) -> Principal {
        match self.bindings.get(secret_id) {
            Some(b) => Principal::Identity {
                kind: b.kind,
                name: b.name.clone(),
            },
            None => Principal::Root,
        }
    }

    /// The credentials bound to identities.
    pub fn bindings(&self) -> impl Iterator<Item = &Binding> {
        self.bindings.values()
    }

    /// The product that created a key, if a product did.
    pub fn product_of(&self, region: &str, uin: u64, key_id: &str) -> Option<&str> {
        self.product_keys
            .get(&(region.to_string(), uin, key_id.to_string()))
            .map(|p| p.product.as_str())
    }

    pub(super) fn stage_create_identity(&self, i: &Identity) -> Result<Staged, RegistryError> {
        if !valid_name(&i.name, 64) {
            return Err(RegistryError::InvalidIdentityName);
        }
        if i.kind == IdentityKind::User && i.service.is_some() {
            return Err(RegistryError::InvalidIdentityName);
        }
        if i.service.as_deref().is_some_and(|s| !valid_name(s, 64)) {
            return Err(RegistryError::InvalidIdentityName);
        }
        if self.identity(i.uin, i.kind, &i.name).is_some() {
            return Err(RegistryError::IdentityExists);
        }
        let mut i = i.clone();
        // Policies are attached afterwards, each checked.
        i.policies.clear();
        Ok(Staged::PutIdentity {
            stored: super::encode("identity", &i)?,
            identity: i,
        })
    }

    /// Removes an identity; the caller stages the revocation of its credentials
    /// ([`Iam::bound_to`]).
    pub(super) fn stage_delete_identity(
        &self,
        uin: u64,
        kind: IdentityKind,
        name: &str,
    ) -> Result<Staged, RegistryError> {
        if self.identity(uin, kind, name).is_none() {
            return Err(RegistryError::IdentityNotFound);
        }
        Ok(Staged::DeleteIdentity {
            uin,
            kind,
            name: name.to_string(),
        })
    }

    /// The credentials bound to one identity.
    pub(super) fn bound_to(&self, uin: u64, kind: IdentityKind, name: &str) -> Vec<String> {
        self.bindings
            .values()
            .filter(|b| b.uin == uin && b.kind == kind && b.name == name)
            .map(|b| b.secret_id.clone())
            .collect()
    }

    pub(super) fn stage_bind(&self, b: &Binding) -> Result<Staged, RegistryError> {
        if self.identity(b.uin, b.kind, &b.name).is_none() {
            return Err(RegistryError::IdentityNotFound);
        }
        Ok(Staged::Bind {
            stored: super::encode("credential binding", b)?,
            binding: b.clone(),
        })
    }

    /// Removes a credential's binding, if it has one.
    pub(super) fn stage_unbind(&self, secret_id: &str) -> Option<Staged> {
        self.bindings
            .contains_key(secret_id)
            .then(|| Staged::Unbind {
                secret_id: secret_id.to_string(),
            })
    }

    pub(super) fn stage_put_policy(
        &self,
        p: &Policy,
        replace: bool,
    ) -> Result<Staged, RegistryError> {
        check_policy(p)?;
        let existing = self.policy(p.uin, &p.name);
        let mut p = p.clone();
        match (existing, replace) {
            (Some(_), false) => return Err(RegistryError::PolicyExists),
            (None, true) => return Err(RegistryError::PolicyNotFound),
            (Some(old), true) => p.created_at = old.created_at,
            (None, false) => {
                if self.policies(p.uin).count() >= MAX_POLICIES_PER_ACCOUNT {
                    return Err(RegistryError::PolicyLimitExceeded);
                }
            }
        }
        Ok(Staged::PutPolicy {
            stored: super::encode("policy", &p)?,
            policy: p,
        })
    }

    /// Deletes a policy and detaches it from every identity of the account (as CAM does).
    pub(super) fn stage_delete_policy(
        &self,
        uin: u64,
        name: &str,
    ) -> Result<Vec<Staged>, RegistryError> {
        if self.policy(uin, name).is_none() {
            return Err(RegistryError::PolicyNotFound);
        }
        let mut staged = Vec::new();
        for i in self.identities(uin).filter(|i| i.policies.contains(name)) {
            let mut i = i.clone();
            i.policies.remove(name);
            staged.push(Staged::PutIdentity {
                stored: super::encode("identity", &i)?,
                identity: i,
            });
        }
        staged.push(Staged::DeletePolicy {
            uin,
            name: name.to_string(),
        });
        Ok(staged)
    }

    pub(super) fn stage_attach(
        &self,
        uin: u64,
        kind: IdentityKind,
        name: &str,
        policy: &str,
        attach: bool,
    ) -> Result<Staged, RegistryError> {
        let mut i = self
            .identity(uin, kind, name)
            .ok_or(RegistryError::IdentityNotFound)?
            .clone();
        if attach {
            if self.policy(uin, policy).is_none() {
                return Err(RegistryError::PolicyNotFound);
            }
            if !i.policies.contains(policy) && i.policies.len() >= MAX_ATTACHED {
                return Err(RegistryError::PolicyLimitExceeded);
            }
            i.policies.insert(policy.to_string());
        } else if !i.policies.remove(policy) {
            return Err(RegistryError::PolicyNotAttached);
        }
        Ok(Staged::PutIdentity {
            stored: super::encode("identity", &i)?,
            identity: i,
        })
    }

    pub(super) fn stage_product_key(&self, k: &ProductKey) -> Result<Staged, RegistryError> {
        if !valid_name(&k.product, 64) {
            return Err(RegistryError::InvalidIdentityName);
        }
        Ok(Staged::ProductKey {
            stored: super::encode("product key", k)?,
            key: k.clone(),
        })
    }

    pub(super) fn commit(&mut self, staged: Staged, changes: &mut Vec<Change>) {
        match staged {
            Staged::PutIdentity { identity, stored } => {
                changes.push(Change::Put(
                    identity_key(identity.uin, identity.kind, &identity.name),
                    stored,
                ));
                let (uin, kind, name) = (identity.uin, identity.kind, identity.name.clone());
                self.identities
                    .entry((uin, kind))
                    .or_default()
                    .insert(identity.name.clone(), identity);
                self.refresh(uin, kind, &name);
            }
            Staged::DeleteIdentity { uin, kind, name } => {
                changes.push(Change::Delete(identity_key(uin, kind, &name)));
                if let Some(by_name) = self.identities.get_mut(&(uin, kind)) {
                    by_name.remove(&name);
                    if by_name.is_empty() {
                        self.identities.remove(&(uin, kind));
                    }
                }
                self.refresh(uin, kind, &name);
            }
            Staged::PutPolicy { policy, stored } => {
                changes.push(Change::Put(policy_key(policy.uin, &policy.name), stored));
                let (uin, name) = (policy.uin, policy.name.clone());
                self.policies
                    .entry(uin)
                    .or_default()
                    .insert(policy.name.clone(), policy);
                self.refresh_holders(uin, &name);
            }
            Staged::DeletePolicy { uin, name } => {
                changes.push(Change::Delete(policy_key(uin, &name)));
                if let Some(by_name) = self.policies.get_mut(&uin) {
                    by_name.remove(&name);
                    if by_name.is_empty() {
                        self.policies.remove(&uin);
                    }
                }
                self.refresh_holders(uin, &name);
            }
            Staged::Bind { binding, stored } => {
                changes.push(Change::Put(binding_key(&binding.secret_id), stored));
                self.bindings.insert(binding.secret_id.clone(), binding);
            }
            Staged::Unbind { secret_id } => {
                changes.push(Change::Delete(binding_key(&secret_id)));
                self.bindings.remove(&secret_id);
            }
            Staged::ProductKey { key, stored } => {
                changes.push(Change::Put(
                    product_key_key(&key.region, key.uin, &key.key_id),
                    stored,
                ));
                self.product_keys
                    .insert((key.region.clone(), key.uin, key.key_id.clone()), key);
            }
        }
    }

    pub(super) fn load(&mut self, key: &[u8], value: &[u8]) -> Result<bool, CodecError> {
        if key.starts_with(IDENTITY_PREFIX) {
            let i: Identity = codec::decode("identity", value)?;
            self.identities
                .entry((i.uin, i.kind))
                .or_default()
                .insert(i.name.clone(), i);
        } else if key.starts_with(POLICY_PREFIX) {
            let p: Policy = codec::decode("policy", value)?;
            self.policies
                .entry(p.uin)
                .or_default()
                .insert(p.name.clone(), p);
        } else if key.starts_with(BINDING_PREFIX) {
            let b: Binding = codec::decode("credential binding", value)?;
            self.bindings.insert(b.secret_id.clone(), b);
        } else if key.starts_with(PRODUCT_KEY_PREFIX) {
            let k: ProductKey = codec::decode("product key", value)?;
            self.product_keys
                .insert((k.region.clone(), k.uin, k.key_id.clone()), k);
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    pub(super) fn dump(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), CodecError> {
        for i in self.identities.values().flat_map(BTreeMap::values) {
            out.push((
                identity_key(i.uin, i.kind, &i.name),
                codec::encode("identity", i)?,
            ));
        }
        for p in self.policies.values().flat_map(BTreeMap::values) {
            out.push((policy_key(p.uin, &p.name), codec::encode("policy", p)?));
        }
        for b in self.bindings.values() {
            out.push((
                binding_key(&b.secret_id),
                codec::encode("credential binding", b)?,
            ));
        }
        for k in self.product_keys.values() {
            out.push((
                product_key_key(&k.region, k.uin, &k.key_id),
                codec::encode("product key", k)?,
            ));
        }
        Ok(())
    }
}
