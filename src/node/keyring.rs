//! The keyring of one node: the cluster root key (unsealed with this node's unseal key on first
//! use and cached), and the generation of material, key pairs and API credentials, each wrapped
//! under the root key before it leaves this module.

use std::sync::RwLock;

use super::writes::Writes;
use crate::clock::SharedClock;
use crate::crypto::asymmetric::{self, AsymmetricSpec};
use crate::crypto::root_key::UnsealKey;
use crate::crypto::{CryptoError, RootKey, Secret, SecretString, SymmetricAlgorithm};
use crate::raft::error::ClusterError;
use crate::raft::state_machine::AppliedState;
use crate::registry::account::{credential_aad, Credential};
use crate::registry::key::{material_aad, MaterialVersion};
use crate::registry::{Command, Outcome, RegistryError};

/// Length of generated SecretIds (after `AKID`) and SecretKeys.
const CREDENTIAL_CHARS: usize = 32;

/// Root key, unseal key and everything wrapped under them.
pub struct Keyring {
    unseal: UnsealKey,
    root: RwLock<Option<RootKey>>,
    state: AppliedState,
    clock: SharedClock,
}

impl Keyring {
    pub fn new(unseal: UnsealKey, state: AppliedState, clock: SharedClock) -> Self {
        Keyring {
            unseal,
            root: RwLock::new(None),
            state,
            clock,
        }
    }

    /// Whether the registry holds a sealed root key yet.
    pub fn has_root_key(&self) -> bool {
        self.state
            .read()
            .registry
            .accounts()
            .sealed_root()
            .is_some()
    }

    /// The cluster root key, unsealed with this node's unseal key on first use and cached.
    pub fn root_key(&self) -> Result<RootKey, CryptoError> {
        if let Some(k) = self.root.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(k.clone());
        }
        let sealed = self
            .state
            .read()
            .registry
            .accounts()
            .sealed_root()
            .map(<[u8]>::to_vec);
        let key = self.unseal.unseal(&sealed.ok_or(CryptoError::NoRootKey)?)?;
        *self.root.write().unwrap_or_else(|p| p.into_inner()) = Some(key.clone());
        Ok(key)
    }

    /// Whether this node can serve crypto: no root key yet, or one its unseal key opens.
    pub fn can_open_root(&self) -> bool {
        !self.has_root_key() || self.root_key().is_ok()
    }

    /// Creates the cluster root key if the registry has none yet (idempotent).
    pub async fn ensure_root_key(&self, writes: &Writes) -> Result<(), ClusterError> {
        if self.has_root_key() {
            return Ok(());
        }
        let sealed = self
            .unseal
            .seal(&RootKey::generate())
            .map_err(|e| ClusterError::Seal(e.to_string()))?;
        match writes
            .propose(writes.envelope(None, Command::InstallRootKey { sealed }))
            .await?
        {
            Outcome::Applied { .. } | Outcome::Rejected(RegistryError::RootKeyAlreadyInstalled) => {
                Ok(())
            }
            Outcome::Rejected(e) => {
                Err(ClusterError::Seal(format!("installing the root key: {e}")))
            }
            Outcome::NoCommand => Err(ClusterError::Seal(
                "installing the root key produced no outcome".into(),
            )),
        }
    }

    /// Generates fresh material for `version` of a key and wraps it under the root key.
    pub fn new_material(
        &self,
        algorithm: SymmetricAlgorithm,
        key_id: &str,
        version: u32,
        uin: u64,
    ) -> Result<MaterialVersion, CryptoError> {
        let material = Secret::random(algorithm.key_len());
        self.wrap_material(key_id, version, uin, &material)
    }

    /// Wraps given material (imported, or generated) as `version` of a key.
    pub fn wrap_material(
        &self,
        key_id: &str,
        version: u32,
        uin: u64,
        material: &Secret,
    ) -> Result<MaterialVersion, CryptoError> {
        let aad = material_aad(key_id, version, uin);
        let wrapped = self.root_key()?.wrap(&aad, material.expose())?;
        Ok(MaterialVersion {
            version,
            created_at: self.clock.wall_secs(),
            wrapped,
        })
    }

    /// Unwraps `version` of a key's material.
    pub fn unwrap_material(
        &self,
        key_id: &str,
        version: u32,
        uin: u64,
        wrapped: &[u8],
    ) -> Result<Secret, CryptoError> {
        self.root_key()?
            .unwrap(&material_aad(key_id, version, uin), wrapped)
    }

    /// Generates an asymmetric key pair; returns the wrapped private key (as material version 1)
    /// and the public key (SubjectPublicKeyInfo DER). Blocking: RSA generation takes a while.
    pub fn new_key_pair(
        &self,
        spec: AsymmetricSpec,
        key_id: &str,
        uin: u64,
    ) -> Result<(MaterialVersion, Vec<u8>), CryptoError> {
        let pair = asymmetric::generate(spec)?;
        let material = self.wrap_material(key_id, 1, uin, &pair.private_pkcs8)?;
        Ok((material, pair.public_spki))
    }

    /// A new API credential of account `uin`: the record to replicate (secret key wrapped) and
    /// the secret key, shown once to the caller.
    pub fn new_credential(&self, uin: u64) -> Result<(Credential, SecretString), CryptoError> {
        let secret_id = format!("AKID{}", random_alnum(CREDENTIAL_CHARS));
        let secret_key = SecretString::new(random_alnum(CREDENTIAL_CHARS));
        let aad = credential_aad(&secret_id, uin);
        let wrapped = self
            .root_key()?
            .wrap(&aad, secret_key.expose().as_bytes())?;
        let credential = Credential {
            secret_id,
            uin,
            wrapped_secret_key: wrapped,
            created_at: self.clock.wall_secs(),
        };
        Ok((credential, secret_key))
    }

    /// The secret key of a credential, unwrapped for one signature check.
    pub fn credential_secret(&self, credential: &Credential) -> Result<Secret, CryptoError> {
        self.root_key()?.unwrap(
            &credential_aad(&credential.secret_id, credential.uin),
            &credential.wrapped_secret_key,
        )
    }
}

fn random_alnum(n: usize) -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, n)
}
