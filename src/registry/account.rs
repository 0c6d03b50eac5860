//! Accounts (AppId/Uin) and their API credentials.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::root_keys::{RewrapItem, RewrapTarget, RootUses};
use super::{Change, RegistryError};
use crate::codec::{self, CodecError};

pub const ACCOUNT_PREFIX: &[u8] = b"a/";
pub const CREDENTIAL_PREFIX: &[u8] = b"c/";

/// A tenant: owns keys; identified by its Uin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub uin: u64,
    pub app_id: u64,
    pub name: String,
    pub created_at: u64,
}

/// A SecretId/SecretKey pair; the secret key is stored only wrapped by the root key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub secret_id: String,
    pub uin: u64,
    /// `RootKey::wrap(credential_aad(secret_id, uin), secret_key)`.
    pub wrapped_secret_key: Vec<u8>,
    pub created_at: u64,
}

/// The AAD binding a wrapped secret key to its SecretId and account.
pub fn credential_aad(secret_id: &str, uin: u64) -> Vec<u8> {
    format!("raftkms/secret-key/{uin}/{secret_id}").into_bytes()
}

/// A checked, encoded mutation of the account tables (see `Registry::apply`).
pub(super) enum Staged {
    Account {
        account: Account,
        stored: Vec<u8>,
    },
    Credential {
        credential: Credential,
        stored: Vec<u8>,
    },
    Revoke {
        secret_id: String,
    },
}

/// Accounts and credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounts {
    accounts: BTreeMap<u64, Account>,
    credentials: BTreeMap<String, Credential>,
    /// Credentials' secret keys per root-key version (derived, kept in step with `credentials`).
    root_uses: RootUses,
}

fn account_key(uin: u64) -> Vec<u8> {
    let mut k = ACCOUNT_PREFIX.to_vec();
    k.extend_from_slice(&uin.to_be_bytes());
    k
}

fn credential_key(id: &str) -> Vec<u8> {
    let mut k = CREDENTIAL_PREFIX.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

impl Accounts {
    pub fn account(&self, uin: u64) -> Option<&Account> {
        self.accounts.get(&uin)
    }

    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    pub fn credential(&self, secret_id: &str) -> Option<&Credential> {
        self.credentials.get(secret_id)
    }

    pub fn credentials(&self) -> impl Iterator<Item = &Credential> {
        self.credentials.values()
    }

    /// Credentials' secret keys per root-key version.
    pub fn root_uses(&self) -> &RootUses {
        &self.root_uses
    }

    /// Credentials from the one after `after` (all of them with `None`), in SecretId order.
    pub fn credentials_after<'a>(
        &'a self,
        after: Option<&str>,
    ) -> impl Iterator<Item = &'a Credential> + 'a {
        use std::ops::Bound;
        let lower = match after {
            Some(a) => Bound::Excluded(a.to_string()),
            None => Bound::Unbounded,
        };
        self.credentials
            .range::<String, _>((lower, Bound::Unbounded))
            .map(|(_, c)| c)
    }

    /// Stages the credential items of a re-wrap: each credential whose secret key is still the
    /// item's `old` bytes gets the `new` ones; the others are left alone.
    pub(super) fn stage_rewrap(&self, items: &[RewrapItem]) -> Result<Vec<Staged>, RegistryError> {
        let mut changed: BTreeMap<&str, Credential> = BTreeMap::new();
        for item in items {
            let RewrapTarget::Credential { secret_id } = &item.target else {
                continue;
            };
            let current = match changed.get(secret_id.as_str()) {
                Some(c) => c.clone(),
                None => match self.credentials.get(secret_id) {
                    Some(c) => c.clone(),
                    None => continue,
                },
            };
            if current.wrapped_secret_key == item.old {
                let mut c = current;
                c.wrapped_secret_key = item.new.clone();
                changed.insert(secret_id, c);
            }
        }
        changed
            .into_values()
            .map(|credential| {
                Ok(Staged::Credential {
                    stored: super::encode("credential", &credential)?,
                    credential,
                })
            })
            .collect()
    }

    fn insert_credential(&mut self, c: Credential) {
        self.root_uses.add(&c.wrapped_secret_key);
        if let Some(old) = self.credentials.insert(c.secret_id.clone(), c) {
            self.root_uses.remove(&old.wrapped_secret_key);
        }
    }

    pub(super) fn stage_create_account(&self, a: &Account) -> Result<Staged, RegistryError> {
        if a.uin == 0 || a.name.is_empty() || a.name.len() > 128 {
            return Err(RegistryError::InvalidName);
        }
        if self.accounts.contains_key(&a.uin) {
            return Err(RegistryError::AccountExists);
        }
        Ok(Staged::Account {
            stored: super::encode("account", a)?,
            account: a.clone(),
        })
    }

    pub(super) fn stage_create_credential(&self, c: &Credential) -> Result<Staged, RegistryError> {
        if !self.accounts.contains_key(&c.uin) {
            return Err(RegistryError::AccountNotFound);
        }
        if c.secret_id.is_empty() || self.credentials.contains_key(&c.secret_id) {
            return Err(RegistryError::CredentialExists);
        }
        Ok(Staged::Credential {
            stored: super::encode("credential", c)?,
            credential: c.clone(),
        })
    }

    pub(super) fn stage_revoke_credential(&self, secret_id: &str) -> Result<Staged, RegistryError> {
        if !self.credentials.contains_key(secret_id) {
            return Err(RegistryError::CredentialNotFound);
        }
        Ok(Staged::Revoke {
            secret_id: secret_id.to_string(),
        })
    }

    pub(super) fn commit(&mut self, staged: Staged, changes: &mut Vec<Change>) {
        match staged {
            Staged::Account { account, stored } => {
                changes.push(Change::Put(account_key(account.uin), stored));
                self.accounts.insert(account.uin, account);
            }
            Staged::Credential { credential, stored } => {
                changes.push(Change::Put(credential_key(&credential.secret_id), stored));
                self.insert_credential(credential);
            }
            Staged::Revoke { secret_id } => {
                if let Some(old) = self.credentials.remove(&secret_id) {
                    self.root_uses.remove(&old.wrapped_secret_key);
                }
                changes.push(Change::Delete(credential_key(&secret_id)));
            }
        }
    }

    pub(super) fn load(&mut self, key: &[u8], value: &[u8]) -> Result<bool, CodecError> {
        if key.starts_with(ACCOUNT_PREFIX) {
            let a: Account = codec::decode("account", value)?;
            self.accounts.insert(a.uin, a);
        } else if key.starts_with(CREDENTIAL_PREFIX) {
            let c: Credential = codec::decode("credential", value)?;
            self.insert_credential(c);
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    pub(super) fn dump(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), CodecError> {
        for a in self.accounts.values() {
            out.push((account_key(a.uin), codec::encode("account", a)?));
        }
        for c in self.credentials.values() {
            out.push((
                credential_key(&c.secret_id),
                codec::encode("credential", c)?,
            ));
        }
        Ok(())
    }
}
