//! Public keys, asymmetric decryption, signing and verification: private keys are unwrapped only
//! in memory for the one operation.

use super::error::Operation;
use super::{one_key, Action, Kms, KmsError, Scope};
use crate::crypto::asymmetric::{self, AsymmetricSpec, Message, RsaPadding, SignAlgorithm};
use crate::crypto::Secret;
use crate::registry::key::{KeyRecord, KeyState, KeyUsage};

/// Largest RAW message accepted for signing.
pub const MAX_MESSAGE: usize = 4096;

/// A key's public half (SubjectPublicKeyInfo DER).
#[derive(Clone, Debug)]
pub struct PublicKey {
    pub key_id: String,
    pub spki_der: Vec<u8>,
}

/// How an asymmetric ciphertext was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsymmetricCipher {
    Rsa(RsaPadding),
    /// SM2 encryption, ASN.1 C1C3C2.
    Sm2,
}

/// A message to sign or verify.
#[derive(Clone, Debug)]
pub struct Signing {
    pub key_id: String,
    pub algorithm: SignAlgorithm,
    pub message: Vec<u8>,
    /// The message is already a digest of the algorithm's hash.
    pub is_digest: bool,
}

impl Signing {
    fn message(&self) -> Message<'_> {
        if self.is_digest {
            Message::Digest(&self.message)
        } else {
            Message::Raw(&self.message)
        }
    }
}

fn wrong_usage(k: &KeyRecord, what: Operation) -> KmsError {
    KmsError::WrongUsage {
        key_id: k.key_id.clone(),
        usage: k.usage,
        what,
    }
}

impl Kms {
    /// An enabled asymmetric key of the caller, read through the gate.
    pub(super) async fn enabled_asymmetric(
        &self,
        scope: &Scope,
        key_id: &str,
    ) -> Result<(KeyRecord, AsymmetricSpec), KmsError> {
        self.gate(scope).await?;
        let k = self.key(scope, key_id)?;
        match k.state {
            KeyState::Enabled => {}
            KeyState::Disabled => return Err(KmsError::KeyDisabled(k.key_id)),
            state => {
                return Err(KmsError::KeyState {
                    key_id: k.key_id,
                    state,
                    what: None,
                })
            }
        }
        let spec = k
            .usage
            .asymmetric_spec()
            .ok_or_else(|| wrong_usage(&k, Operation::Asymmetric))?;
        Ok((k, spec))
    }

    /// The public key of an enabled asymmetric key.
    pub async fn get_public_key(&self, scope: &Scope, key_id: &str) -> Result<PublicKey, KmsError> {
        self.seams
            .run(scope, Action::GetPublicKey, one_key(scope, key_id), async {
                let (k, _) = self.enabled_asymmetric(scope, key_id).await?;
                Ok(PublicKey {
                    key_id: k.key_id,
                    spki_der: k.public_key,
                })
            })
            .await
    }

    /// Decrypts with the private key of an asymmetric decryption key. Every failure of the
    /// decryption itself looks the same to the caller.
    pub async fn asymmetric_decrypt(
        &self,
        scope: &Scope,
        key_id: &str,
        cipher: AsymmetricCipher,
        ciphertext: Vec<u8>,
    ) -> Result<(String, Secret), KmsError> {
        self.seams
            .run(
                scope,
                Action::AsymmetricDecrypt,
                one_key(scope, key_id),
                async {
                    let (k, _) = self.enabled_asymmetric(scope, key_id).await?;
                    let private = match cipher {
                        AsymmetricCipher::Rsa(_)
                            if k.usage != KeyUsage::AsymmetricDecryptRsa2048 =>
                        {
                            return Err(wrong_usage(&k, Operation::RsaDecrypt))
                        }
                        AsymmetricCipher::Sm2 if k.usage != KeyUsage::AsymmetricDecryptSm2 => {
                            return Err(wrong_usage(&k, Operation::Sm2Decrypt))
                        }
                        _ => self.material(&k, 1)?,
                    };
                    let plain = match cipher {
                        AsymmetricCipher::Rsa(padding) => tokio::task::spawn_blocking(move || {
                            asymmetric::rsa_decrypt(&private, padding, &ciphertext)
                        })
                        .await
                        .map_err(|e| KmsError::Internal(e.to_string()))?,
                        AsymmetricCipher::Sm2 => asymmetric::sm2_decrypt(&private, &ciphertext),
                    }
                    .map_err(|_| KmsError::DecryptFailed)?;
                    Ok((k.key_id, plain))
                },
            )
            .await
    }

    /// Checks a signing request against its key.
    fn check_signing(
        &self,
        k: &KeyRecord,
        spec: AsymmetricSpec,
        req: &Signing,
    ) -> Result<(), KmsError> {
        if !k.usage.is_sign_verify() {
            return Err(wrong_usage(k, Operation::SignVerify));
        }
        if !req.algorithm.fits(spec) {
            return Err(KmsError::AlgorithmMismatch { usage: k.usage });
        }
        let len = req.message.len();
        if req.is_digest && len != req.algorithm.digest_len() {
            return Err(KmsError::DigestLength {
                expected: req.algorithm.digest_len(),
            });
        }
        if !req.is_digest && (len == 0 || len > MAX_MESSAGE) {
            return Err(KmsError::MessageLength { max: MAX_MESSAGE });
        }
        Ok(())
    }

    /// Signs a message (or digest) with a signing key.
    pub async fn sign(&self, scope: &Scope, req: Signing) -> Result<Vec<u8>, KmsError> {
        self.seams
            .run(scope, Action::Sign, one_key(scope, &req.key_id), async {
                let (k, spec) = self.enabled_asymmetric(scope, &req.key_id).await?;
                self.check_signing(&k, spec, &req)?;
                let private = self.material(&k, 1)?;
                tokio::task::spawn_blocking(move || {
                    asymmetric::sign(spec, &private, req.algorithm, req.message())
                })
                .await
                .map_err(|e| KmsError::Internal(e.to_string()))?
                .map_err(|_| KmsError::SignFailed)
            })
            .await
    }

    /// Whether `signature` is valid for a message (or digest) under a signing key.
    pub async fn verify(
        &self,
        scope: &Scope,
        req: Signing,
        signature: &[u8],
    ) -> Result<bool, KmsError> {
        self.seams
            .run(scope, Action::Verify, one_key(scope, &req.key_id), async {
                let (k, spec) = self.enabled_asymmetric(scope, &req.key_id).await?;
                self.check_signing(&k, spec, &req)?;
                asymmetric::verify(spec, &k.public_key, req.algorithm, req.message(), signature)
                    .map_err(|_| KmsError::VerifyFailed)
            })
            .await
    }
}
