//! Accounts (AppId/Uin), their API credentials, and the sealed cluster root key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Change, RegistryError};
use crate::codec::{self, CodecError};

pub const ACCOUNT_PREFIX: &[u8] = b"a/";
pub const CREDENTIAL_PREFIX: &[u8] = b"c/";
pub const ROOT_KEY: &[u8] = b"R/root";

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
    Root {
        sealed: Vec<u8>,
        stored: Vec<u8>,
    },
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

/// Accounts, credentials and the sealed root key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounts {
    accounts: BTreeMap<u64, Account>,
    credentials: BTreeMap<String, Credential>,
    sealed_root: Option<Vec<u8>>,
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

    pub fn sealed_root(&self) -> Option<&[u8]> {
        self.sealed_root.as_deref()
    }

    pub(super) fn stage_install_root(&self, sealed: &[u8]) -> Result<Staged, RegistryError> {
        if self.sealed_root.is_some() {
            return Err(RegistryError::RootKeyAlreadyInstalled);
        }
        let sealed = sealed.to_vec();
        let stored = super::encode("root key", &sealed)?;
        Ok(Staged::Root { sealed, stored })
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
            Staged::Root { sealed, stored } => {
                changes.push(Change::Put(ROOT_KEY.to_vec(), stored));
                self.sealed_root = Some(sealed);
            }
            Staged::Account { account, stored } => {
                changes.push(Change::Put(account_key(account.uin), stored));
                self.accounts.insert(account.uin, account);
            }
            Staged::Credential { credential, stored } => {
                changes.push(Change::Put(credential_key(&credential.secret_id), stored));
                self.credentials
                    .insert(credential.secret_id.clone(), credential);
            }
            Staged::Revoke { secret_id } => {
                self.credentials.remove(&secret_id);
                changes.push(Change::Delete(credential_key(&secret_id)));
            }
        }
    }

    pub(super) fn load(&mut self, key: &[u8], value: &[u8]) -> Result<bool, CodecError> {
        if key == ROOT_KEY {
            self.sealed_root = Some(codec::decode("root key", value)?);
        } else if key.starts_with(ACCOUNT_PREFIX) {
            let a: Account = codec::decode("account", value)?;
            self.accounts.insert(a.uin, a);
        } else if key.starts_with(CREDENTIAL_PREFIX) {
            let c: Credential = codec::decode("credential", value)?;
            self.credentials.insert(c.secret_id.clone(), c);
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    pub(super) fn dump(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), CodecError> {
        if let Some(r) = &self.sealed_root {
            out.push((ROOT_KEY.to_vec(), codec::encode("root key", r)?));
        }
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
