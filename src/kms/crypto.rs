//! Encrypt, Decrypt, ReEncrypt, GenerateDataKey, GenerateRandom: served from the node's own
//! applied state after the read gate; material is unwrapped only in memory, per request.

use super::error::{CiphertextProblem, Operation};
use super::{one_key, Action, Kms, KmsError, Resource, Scope};
use crate::crypto::{blob, Secret};
use crate::registry::key::{KeyRecord, KeyState, KeyUsage};

/// A ciphertext and the key it is under.
#[derive(Clone, Debug)]
pub struct Sealed {
    pub key_id: String,
    pub ciphertext: Vec<u8>,
}

/// A plaintext and the key it was under.
#[derive(Clone, Debug)]
pub struct Opened {
    pub key_id: String,
    pub plaintext: Secret,
}

/// A ciphertext moved under another key, version or context.
#[derive(Clone, Debug)]
pub struct ReSealed {
    pub ciphertext: Vec<u8>,
    pub key_id: String,
    pub source_key_id: String,
    /// Whether anything changed (same key, version and context: the input is returned).
    pub re_encrypted: bool,
}

/// A data key: in clear for the caller, and sealed under the key for storage.
#[derive(Clone, Debug)]
pub struct DataKey {
    pub key_id: String,
    pub plaintext: Secret,
    pub ciphertext: Vec<u8>,
}

/// What ReEncrypt does.
#[derive(Clone, Debug)]
pub struct ReEncrypt {
    pub ciphertext: Vec<u8>,
    pub source_context: Vec<u8>,
    /// The key to seal under (default: the source key).
    pub destination_key_id: Option<String>,
    pub destination_context: Vec<u8>,
}

/// The resource of a ciphertext: its key when the blob names one, else the region.
fn blob_resource(scope: &Scope, ciphertext: &[u8]) -> Resource {
    match blob::parse(ciphertext) {
        Ok(h) => one_key(scope, &h.key_id.to_string()),
        Err(_) => Resource::Ciphertext {
            region: scope.region.clone(),
        },
    }
}

impl Kms {
    /// Encrypts under the newest material version of a key.
    pub async fn encrypt(
        &self,
        scope: &Scope,
        key_id: &str,
        plaintext: &Secret,
        context: &[u8],
    ) -> Result<Sealed, KmsError> {
        self.seams
            .run(scope, Action::Encrypt, one_key(scope, key_id), async {
                self.gate(scope).await?;
                let k = self.key(scope, key_id)?;
                let ciphertext = self.seal(&k, context, plaintext.expose())?;
                Ok(Sealed {
                    key_id: k.key_id,
                    ciphertext,
                })
            })
            .await
    }

    /// Decrypts a ciphertext of one of the caller's keys.
    pub async fn decrypt(
        &self,
        scope: &Scope,
        ciphertext: &[u8],
        context: &[u8],
    ) -> Result<Opened, KmsError> {
        self.seams
            .run(
                scope,
                Action::Decrypt,
                blob_resource(scope, ciphertext),
                async {
                    self.gate(scope).await?;
                    let (k, _, plaintext) = self.open(scope, ciphertext, context)?;
                    Ok(Opened {
                        key_id: k.key_id,
                        plaintext,
                    })
                },
            )
            .await
    }

    /// Decrypts and seals again, under another key, the newest version or another context.
    pub async fn re_encrypt(&self, scope: &Scope, req: ReEncrypt) -> Result<ReSealed, KmsError> {
        self.seams
            .run(
                scope,
                Action::ReEncrypt,
                match (
                    blob_resource(scope, &req.ciphertext),
                    &req.destination_key_id,
                ) {
                    // Both keys are used: the policy must allow ReEncrypt on each.
                    (
                        Resource::Keys {
                            region,
                            mut key_ids,
                        },
                        Some(dest),
                    ) if !key_ids.contains(dest) => {
                        key_ids.push(dest.clone());
                        Resource::Keys { region, key_ids }
                    }
                    (resource, _) => resource,
                },
                async {
                    self.gate(scope).await?;
                    let (source, version, plaintext) =
                        self.open(scope, &req.ciphertext, &req.source_context)?;
                    let dest = match &req.destination_key_id {
                        Some(id) => self.key(scope, id)?,
                        None => source.clone(),
                    };
                    let unchanged = dest.key_id == source.key_id
                        && dest.current().map(|c| c.version) == Some(version)
                        && req.destination_context == req.source_context;
                    let (ciphertext, re_encrypted) = if unchanged {
                        (req.ciphertext.clone(), false)
                    } else {
                        (
                            self.seal(&dest, &req.destination_context, plaintext.expose())?,
                            true,
                        )
                    };
                    Ok(ReSealed {
                        ciphertext,
                        key_id: dest.key_id,
                        source_key_id: source.key_id,
                        re_encrypted,
                    })
                },
            )
            .await
    }

    /// A new random data key of `len` bytes, also sealed under a key.
    pub async fn generate_data_key(
        &self,
        scope: &Scope,
        key_id: &str,
        len: usize,
        context: &[u8],
    ) -> Result<DataKey, KmsError> {
        self.seams
            .run(
                scope,
                Action::GenerateDataKey,
                one_key(scope, key_id),
                self.fresh_data_key(scope, key_id, len, context),
            )
            .await
    }

    /// After the read gate: `len` random bytes and their seal under the newest material of one
    /// of the caller's keys.
    pub(super) async fn fresh_data_key(
        &self,
        scope: &Scope,
        key_id: &str,
        len: usize,
        context: &[u8],
    ) -> Result<DataKey, KmsError> {
        self.gate(scope).await?;
        let k = self.key(scope, key_id)?;
        let plaintext = Secret::random(len);
        let ciphertext = self.seal(&k, context, plaintext.expose())?;
        Ok(DataKey {
            key_id: k.key_id,
            plaintext,
            ciphertext,
        })
    }

    /// `len` random bytes from the operating system's CSPRNG.
    pub async fn generate_random(&self, scope: &Scope, len: usize) -> Result<Secret, KmsError> {
        self.seams
            .run(scope, Action::GenerateRandom, Resource::Service, async {
                Ok(Secret::random(len))
            })
            .await
    }

    /// Encrypts under the newest material version of `k`.
    pub(super) fn seal(
        &self,
        k: &KeyRecord,
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        self.usable_for_encrypt(k)?;
        let current = k.current().ok_or(KmsError::NoMaterial)?;
        let material = self.material(k, current.version)?;
        Ok(blob::seal(
            k.algorithm,
            &material,
            key_uuid(k)?,
            current.version,
            k.owner_uin,
            context,
            plaintext,
        )?)
    }

    /// Finds a ciphertext's key and decrypts it; the key, the material version the ciphertext
    /// names, and the plaintext.
    pub(super) fn open(
        &self,
        scope: &Scope,
        ciphertext: &[u8],
        context: &[u8],
    ) -> Result<(KeyRecord, u32, Secret), KmsError> {
        let header = blob::parse(ciphertext)?;
        let k = self.key(scope, &header.key_id.to_string())?;
        self.usable_for_decrypt(&k)?;
        if header.algorithm != k.algorithm {
            return Err(KmsError::InvalidCiphertext(CiphertextProblem::OtherKey));
        }
        let material = self.material(&k, header.version)?;
        let plaintext = blob::open(ciphertext, &material, scope.caller.uin, context)?;
        Ok((k, header.version, plaintext))
    }

    /// Refuses keys that cannot encrypt now.
    fn usable_for_encrypt(&self, k: &KeyRecord) -> Result<(), KmsError> {
        symmetric_only(k)?;
        self.material_not_expired(k)?;
        match k.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::KeyDisabled(k.key_id.clone())),
            KeyState::Archived => Err(KmsError::KeyArchived(k.key_id.clone())),
            state => Err(KmsError::KeyState {
                key_id: k.key_id.clone(),
                state,
                what: Some("encrypt"),
            }),
        }
    }

    /// Refuses keys that cannot decrypt now (archived keys still decrypt).
    fn usable_for_decrypt(&self, k: &KeyRecord) -> Result<(), KmsError> {
        symmetric_only(k)?;
        self.material_not_expired(k)?;
        match k.state {
            KeyState::Enabled | KeyState::Archived => Ok(()),
            KeyState::Disabled => Err(KmsError::KeyDisabled(k.key_id.clone())),
            state => Err(KmsError::KeyState {
                key_id: k.key_id.clone(),
                state,
                what: Some("decrypt"),
            }),
        }
    }

    /// Imported material past its ValidTo is unusable at once, before the leader's expiry
    /// commits (a read-side refusal only; the replicated state changes through the scheduler).
    fn material_not_expired(&self, k: &KeyRecord) -> Result<(), KmsError> {
        if k.material_valid_to != 0 && self.now_secs() >= k.material_valid_to {
            return Err(KmsError::MaterialExpired {
                key_id: k.key_id.clone(),
                valid_to: k.material_valid_to,
            });
        }
        Ok(())
    }
}

/// Refuses asymmetric keys in the symmetric crypto operations.
fn symmetric_only(k: &KeyRecord) -> Result<(), KmsError> {
    if k.usage == KeyUsage::EncryptDecrypt {
        Ok(())
    } else {
        Err(KmsError::WrongUsage {
            key_id: k.key_id.clone(),
            usage: k.usage,
            what: Operation::Symmetric,
        })
    }
}

fn key_uuid(k: &KeyRecord) -> Result<uuid::Uuid, KmsError> {
    uuid::Uuid::parse_str(&k.key_id)
        .map_err(|_| KmsError::Internal("stored KeyId is not a UUID".into()))
}
