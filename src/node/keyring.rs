//! The keyring of one node: the versions of the cluster root key (each unsealed with this node's
//! unseal key on first use and cached while the registry holds it), and the generation of
//! material, key pairs and API credentials, each wrapped under the current root version before
//! it leaves this module. Root-key rotation: a new version installed through Raft
//! ([`Keyring::rotate`]), and the values of older versions re-wrapped ([`Keyring::rewrap`]).

use std::collections::BTreeMap;
use std::sync::RwLock;

use super::writes::Writes;
use crate::clock::SharedClock;
use crate::crypto::asymmetric::{self, AsymmetricSpec};
use crate::crypto::root_key::{root_version_of, UnsealKey};
use crate::crypto::{CryptoError, RootKey, Secret, SecretString, SymmetricAlgorithm};
use crate::raft::error::ClusterError;
use crate::raft::state_machine::AppliedState;
use crate::registry::account::{credential_aad, Credential};
use crate::registry::key::{material_aad, MaterialVersion};
use crate::registry::{Command, Outcome, RegistryError};

/// Length of generated SecretIds (after `AKID`) and SecretKeys.
const CREDENTIAL_CHARS: usize = 32;

/// How long a retired root version stays in memory after this node first sees it retired: a
/// request that read a key record just before the retirement was applied may still unwrap with
/// it.
const RETIRED_GRACE_MS: u64 = 30_000;

/// An unsealed root version, and since when (monotonic ms) the registry no longer holds it.
struct Cached {
    key: RootKey,
    retired_since: Option<u64>,
}

/// Root-key versions, the unseal key, and everything wrapped under them.
pub struct Keyring {
    unseal: UnsealKey,
    /// Unsealed root versions, by version (a retired one is dropped after a grace period).
    roots: RwLock<BTreeMap<u32, Cached>>,
    state: AppliedState,
    clock: SharedClock,
}

impl Keyring {
    pub fn new(unseal: UnsealKey, state: AppliedState, clock: SharedClock) -> Self {
        Keyring {
            unseal,
            roots: RwLock::new(BTreeMap::new()),
            state,
            clock,
        }
    }

    /// Whether the registry holds a sealed root key yet.
    pub fn has_root_key(&self) -> bool {
        self.state.read().registry.root_keys().current().is_some()
    }

    /// Root-key version `version`, unsealed on first use and cached.
    pub fn root_key_version(&self, version: u32) -> Result<RootKey, CryptoError> {
        if let Some(k) = self
            .roots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&version)
        {
            return Ok(k.key.clone());
        }
        let sealed = {
            let state = self.state.read();
            let roots = state.registry.root_keys();
            match roots.sealed(version) {
                Some(sealed) => sealed.to_vec(),
                None if roots.current().is_none() => return Err(CryptoError::NoRootKey),
                None => return Err(CryptoError::RootKeyVersion(version)),
            }
        };
        let key = self.unseal.unseal(version, &sealed)?;
        self.roots
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                version,
                Cached {
                    key: key.clone(),
                    retired_since: None,
                },
            );
        Ok(key)
    }

    /// The current root-key version (the one new values are wrapped under).
    pub fn root_key(&self) -> Result<RootKey, CryptoError> {
        let current = self.state.read().registry.root_keys().current();
        self.root_key_version(current.ok_or(CryptoError::NoRootKey)?)
    }

    /// Lets root versions the registry no longer holds (retired) leave this node's memory,
    /// [`RETIRED_GRACE_MS`] after this node first saw them retired. Called by every node each
    /// scheduler interval (`scheduler::rewrap::run`).
    pub fn prune_retired(&self) {
        let state = self.state.read();
        let roots = state.registry.root_keys();
        let now = self.clock.monotonic_ms();
        let due = |c: &Cached| {
            c.retired_since
                .is_some_and(|t| now.saturating_sub(t) >= RETIRED_GRACE_MS)
        };
        let changed = self
            .roots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(v, c)| roots.sealed(*v).is_none() && (c.retired_since.is_none() || due(c)));
        if changed {
            let mut cache = self.roots.write().unwrap_or_else(|p| p.into_inner());
            for (v, c) in cache.iter_mut() {
                if roots.sealed(*v).is_none() && c.retired_since.is_none() {
                    c.retired_since = Some(now);
                }
            }
            cache.retain(|_, c| !due(c));
        }
    }

    /// Wraps `plaintext` under the current root version; `aad` names what it is and whose.
    pub fn wrap(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.root_key()?.wrap(aad, plaintext)
    }

    /// Unwraps a stored value with the root version its header names.
    pub fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<Secret, CryptoError> {
        let version = root_version_of(wrapped).unwrap_or(1);
        self.root_key_version(version)?.unwrap(aad, wrapped)
    }

    /// The value `wrapped` re-wrapped under the current root version, or `None` if it already
    /// is under it.
    pub fn rewrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<Option<Vec<u8>>, CryptoError> {
        let current = self.root_key()?;
        if root_version_of(wrapped) == Some(current.version()) {
            return Ok(None);
        }
        let plain = self.unwrap(aad, wrapped)?;
        current.wrap(aad, plain.expose()).map(Some)
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
            .seal(&RootKey::generate(1))
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
            Outcome::NoCommand | Outcome::Batch(_) => Err(ClusterError::Seal(
                "installing the root key produced no outcome".into(),
            )),
        }
    }

    /// Root-key rotation, first step: makes the next root version, sealed under this node's
    /// unseal key, and installs it through Raft; from its apply on, every node wraps new values
    /// under it. Refused unless this node's unseal key opens the current version (a node with
    /// another unseal key would install a root no other node can open). Returns the new version.
    pub async fn rotate(&self, writes: &Writes) -> Result<u32, ClusterError> {
        let seal = |e: CryptoError| ClusterError::Seal(e.to_string());
        let current = self.root_key().map_err(seal)?;
        let version = current
            .version()
            .checked_add(1)
            .ok_or_else(|| ClusterError::BadRequest("no root-key version is left".into()))?;
        let sealed = self
            .unseal
            .seal(&RootKey::generate(version))
            .map_err(seal)?;
        let command = Command::InstallRootKeyVersion { version, sealed };
        match writes.propose(writes.envelope(None, command)).await? {
            Outcome::Applied { .. } => Ok(version),
            Outcome::Rejected(e) => Err(ClusterError::BadRequest(e.to_string())),
            Outcome::NoCommand | Outcome::Batch(_) => Err(ClusterError::Seal(
                "installing the root-key version produced no outcome".into(),
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
        let wrapped = self.wrap(&aad, material.expose())?;
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
        self.unwrap(&material_aad(key_id, version, uin), wrapped)
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
        let wrapped = self.wrap(&aad, secret_key.expose().as_bytes())?;
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
        self.unwrap(
            &credential_aad(&credential.secret_id, credential.uin),
            &credential.wrapped_secret_key,
        )
    }
}

fn random_alnum(n: usize) -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, n)
}
