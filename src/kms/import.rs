//! BYOK: import parameters, importing material, deleting imported material.
//!
//! The node that hands out import parameters generates an RSA-2048 wrapping key pair, wraps the
//! private half under the root key and replicates it with the token, so the import can be
//! completed through any node. A newer request replaces the session (the older token stops
//! working); a session is good for 24 hours.

use super::error::UnwrapFailure;
use super::{one_key, Action, Kms, KmsError, Scope};
use crate::crypto::asymmetric::{self, AsymmetricSpec, RsaPadding};
use crate::crypto::Secret;
use crate::registry::key::{self, ImportSession, KeyOp, KeyRecord, Origin, WrappingAlgorithm};
use crate::registry::RegistryError;

/// How long import parameters stay valid.
const SESSION_SECS: u64 = 86_400;
/// Largest ValidTo accepted (Tencent's bound).
pub const MAX_VALID_TO: u64 = 2_147_443_200;

/// Parameters for wrapping material to import.
#[derive(Clone, Debug)]
pub struct ImportParameters {
    pub key_id: String,
    pub token: String,
    /// The wrapping public key (SubjectPublicKeyInfo DER).
    pub public_key: Vec<u8>,
    pub valid_to: u64,
}

/// Material to import, wrapped with the import parameters.
#[derive(Clone, Debug)]
pub struct ImportMaterial {
    pub key_id: String,
    pub token: String,
    pub wrapped_material: Vec<u8>,
    /// When the material expires (seconds; 0 = never).
    pub valid_to: u64,
}

fn external(k: &KeyRecord) -> Result<(), KmsError> {
    if k.origin == Origin::External {
        Ok(())
    } else {
        Err(RegistryError::NotExternal.into())
    }
}

impl Kms {
    /// New import parameters for an EXTERNAL key (replacing any earlier ones).
    pub async fn get_import_parameters(
        &self,
        scope: &Scope,
        key_id: &str,
        algorithm: WrappingAlgorithm,
    ) -> Result<ImportParameters, KmsError> {
        self.seams
            .run(
                scope,
                Action::GetImportParameters,
                one_key(scope, key_id),
                async {
                    self.gate(scope).await?;
                    let k = self.key(scope, key_id)?;
                    external(&k)?;
                    let token = uuid::Uuid::new_v4().simple().to_string();
                    let node = self.node.clone();
                    let (kid, tok, uin) = (k.key_id.clone(), token.clone(), scope.caller.uin);
                    let permit = self.key_generation_permit().await?;
                    let (public_key, wrapped_private) =
                        tokio::task::spawn_blocking(move || -> Result<_, KmsError> {
                            let _permit = permit;
                            let pair = asymmetric::generate(AsymmetricSpec::Rsa2048)?;
                            node.metrics().key_pairs_generated.inc();
                            let wrapped = node.keyring().wrap(
                                &key::import_aad(&kid, &tok, uin),
                                pair.private_pkcs8.expose(),
                            )?;
                            Ok((pair.public_spki, wrapped))
                        })
                        .await
                        .map_err(|e| KmsError::Internal(e.to_string()))??;
                    let valid_to = self.now_secs() + SESSION_SECS;
                    let session = ImportSession {
                        token: token.clone(),
                        algorithm,
                        public_key: public_key.clone(),
                        wrapped_private,
                        valid_to,
                    };
                    let op = KeyOp::SetImportParameters { session };
                    self.propose_key_op(scope, vec![k.key_id.clone()], op)
                        .await?;
                    Ok(ImportParameters {
                        key_id: k.key_id,
                        token,
                        public_key,
                        valid_to,
                    })
                },
            )
            .await
    }

    /// Imports material wrapped with the current import parameters.
    pub async fn import_key_material(
        &self,
        scope: &Scope,
        req: ImportMaterial,
    ) -> Result<(), KmsError> {
        let resource = one_key(scope, &req.key_id);
        self.seams
            .run(
                scope,
                Action::ImportKeyMaterial,
                resource,
                self.import_op(scope, req),
            )
            .await
    }

    async fn import_op(&self, scope: &Scope, req: ImportMaterial) -> Result<(), KmsError> {
        let now = self.now_secs();
        if req.valid_to != 0 && (req.valid_to <= now || req.valid_to > MAX_VALID_TO) {
            return Err(RegistryError::InvalidValidTo.into());
        }
        self.gate(scope).await?;
        let k = self.key(scope, &req.key_id)?;
        external(&k)?;
        let session = k.import.clone().ok_or(RegistryError::ImportTokenInvalid)?;
        if session.token != req.token {
            return Err(RegistryError::ImportTokenInvalid.into());
        }
        if now > session.valid_to {
            return Err(RegistryError::ImportTokenExpired.into());
        }
        let material = self
            .unwrap_import(&k, &session, req.wrapped_material)
            .await?;
        let fingerprint = key::material_fingerprint(material.expose());
        if !k.material_fingerprint.is_empty() && k.material_fingerprint != fingerprint {
            return Err(RegistryError::MaterialNotMatch.into());
        }
        let material = self
            .node
            .keyring()
            .wrap_material(&k.key_id, 1, k.owner_uin, &material)?;
        let op = KeyOp::ImportMaterial {
            token: req.token,
            material,
            fingerprint,
            valid_to: req.valid_to,
        };
        self.propose_key_op(scope, vec![k.key_id], op)
            .await
            .map(|_| ())
    }

    /// Unwraps imported material with the session's private key and checks its length.
    async fn unwrap_import(
        &self,
        k: &KeyRecord,
        session: &ImportSession,
        wrapped: Vec<u8>,
    ) -> Result<Secret, KmsError> {
        let private = self.node.keyring().unwrap(
            &key::import_aad(&k.key_id, &session.token, k.owner_uin),
            &session.wrapped_private,
        )?;
        let padding = match session.algorithm {
            WrappingAlgorithm::RsaesPkcs1V15 => RsaPadding::Pkcs1v15,
            WrappingAlgorithm::RsaesOaepSha1 => RsaPadding::OaepSha1,
            WrappingAlgorithm::RsaesOaepSha256 => RsaPadding::OaepSha256,
        };
        let material: Secret = tokio::task::spawn_blocking(move || {
            asymmetric::rsa_decrypt(&private, padding, &wrapped)
        })
        .await
        .map_err(|e| KmsError::Internal(e.to_string()))?
        .map_err(|_| KmsError::MaterialUnwrap(UnwrapFailure::NotUnwrapped))?;
        let want = k.algorithm.key_len();
        if material.len() != want {
            // With PKCS#1 v1.5's implicit rejection a wrong wrapping also lands here.
            return Err(KmsError::MaterialUnwrap(UnwrapFailure::WrongLength {
                got: material.len(),
                want,
            }));
        }
        Ok(material)
    }

    /// Deletes a key's imported material (the key waits for an import again).
    pub async fn delete_imported_material(
        &self,
        scope: &Scope,
        key_id: String,
    ) -> Result<(), KmsError> {
        let resource = one_key(scope, &key_id);
        self.seams
            .run(scope, Action::DeleteImportedKeyMaterial, resource, async {
                self.propose_key_op(scope, vec![key_id], KeyOp::DeleteImportedMaterial)
                    .await
                    .map(|_| ())
            })
            .await
    }
}
