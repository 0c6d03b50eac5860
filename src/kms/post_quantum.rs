//! Post-quantum keys (`crypto::post_quantum`): PostQuantumCryptoEncrypt / Decrypt with ML-KEM-768
//! keys (usage `ASYMMETRIC_Encrypt_Decrypt_Kyber_AES`) and PostQuantumCryptoSign / Verify with
//! ML-DSA-65 keys (`ASYMMETRIC_SIGN_VERIFY_DILITHIUM`). Keys are made by CreateKey (cluster
//! feature level 2) and read with GetPublicKey like the other asymmetric keys.
//!
//! The CiphertextBlob of PostQuantumCryptoEncrypt, version 0x81 (apart from the symmetric blob's
//! versions, so neither Decrypt reads the other's):
//! ```text
//! [0]       format version (0x81)
//! [1]       algorithm (1 = ML-KEM-768 + AES-256-GCM)
//! [2..18]   KeyId (UUID bytes)
//! [18..22]  material version, u32 big-endian (1: post-quantum keys do not rotate)
//! [22..]    ML-KEM ciphertext ‖ nonce ‖ AES-256-GCM ciphertext ‖ tag (`crypto::post_quantum`)
//! ```
//! The AEAD's additional data is a label, the header and the owning account's UIN, so a changed
//! header or another account fails authentication.

use super::asymmetric::MAX_MESSAGE;
use super::error::{CiphertextProblem, Operation};
use super::{one_key, Action, Kms, KmsError, Resource, Scope};
use crate::crypto::post_quantum;
use crate::crypto::Secret;
use crate::registry::key::{KeyRecord, KeyUsage};

/// The format version of a post-quantum ciphertext blob.
pub const PQ_BLOB_V1: u8 = 0x81;
const ALG_ML_KEM_768_AES_256_GCM: u8 = 1;
const HEADER_LEN: usize = 22;

fn header(k: &KeyRecord) -> Result<[u8; HEADER_LEN], KmsError> {
    let id = uuid::Uuid::parse_str(&k.key_id)
        .map_err(|_| KmsError::Internal("stored KeyId is not a UUID".into()))?;
    let mut h = [0u8; HEADER_LEN];
    h[0] = PQ_BLOB_V1;
    h[1] = ALG_ML_KEM_768_AES_256_GCM;
    h[2..18].copy_from_slice(id.as_bytes());
    h[18..22].copy_from_slice(&1u32.to_be_bytes());
    Ok(h)
}

fn aad(header: &[u8], uin: u64) -> Vec<u8> {
    let mut a = b"raftkms/post-quantum/v1".to_vec();
    a.extend_from_slice(header);
    a.extend_from_slice(&uin.to_be_bytes());
    a
}

/// The KeyId a post-quantum blob names, if it is one.
fn blob_key_id(blob: &[u8]) -> Option<String> {
    if blob.len() < HEADER_LEN || blob[0] != PQ_BLOB_V1 || blob[1] != ALG_ML_KEM_768_AES_256_GCM {
        return None;
    }
    let id = uuid::Uuid::from_slice(&blob[2..18]).ok()?;
    Some(id.to_string())
}

fn needs(k: &KeyRecord, usage: KeyUsage, what: Operation) -> Result<(), KmsError> {
    if k.usage == usage {
        Ok(())
    } else {
        Err(KmsError::WrongUsage {
            key_id: k.key_id.clone(),
            usage: k.usage,
            what,
        })
    }
}

fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> impl std::future::Future<Output = Result<T, KmsError>> {
    let task = tokio::task::spawn_blocking(f);
    async move { task.await.map_err(|e| KmsError::Internal(e.to_string())) }
}

impl Kms {
    /// An enabled ML-DSA key of the caller, for a message of 1 to [`MAX_MESSAGE`] bytes.
    async fn signing_key(
        &self,
        scope: &Scope,
        key_id: &str,
        message: &[u8],
    ) -> Result<KeyRecord, KmsError> {
        let (k, _) = self.enabled_asymmetric(scope, key_id).await?;
        needs(
            &k,
            KeyUsage::AsymmetricSignVerifyDilithium,
            Operation::PostQuantumSign,
        )?;
        if message.is_empty() || message.len() > MAX_MESSAGE {
            return Err(KmsError::MessageLength { max: MAX_MESSAGE });
        }
        Ok(k)
    }

    /// PostQuantumCryptoEncrypt: seals `plaintext` to an enabled ML-KEM-768 key.
    pub async fn pq_encrypt(
        &self,
        scope: &Scope,
        key_id: &str,
        plaintext: &Secret,
    ) -> Result<(String, Vec<u8>), KmsError> {
        self.seams
            .run(scope, Action::Encrypt, one_key(scope, key_id), async {
                let (k, _) = self.enabled_asymmetric(scope, key_id).await?;
                needs(
                    &k,
                    KeyUsage::AsymmetricEncryptDecryptKyberAes,
                    Operation::PostQuantumEncrypt,
                )?;
                let h = header(&k)?;
                let ad = aad(&h, k.owner_uin);
                let public = k.public_key.clone();
                let plain = Secret::new(plaintext.expose().to_vec());
                let sealed =
                    blocking(move || post_quantum::ml_kem_seal(&public, &ad, plain.expose()))
                        .await??;
                let mut blob = h.to_vec();
                blob.extend_from_slice(&sealed);
                Ok((k.key_id, blob))
            })
            .await
    }

    /// PostQuantumCryptoDecrypt: opens a blob of [`Kms::pq_encrypt`] with its key's private
    /// half. Every failure of the decryption itself looks the same to the caller.
    pub async fn pq_decrypt(
        &self,
        scope: &Scope,
        blob: Vec<u8>,
    ) -> Result<(String, Secret), KmsError> {
        let key_id = blob_key_id(&blob);
        let resource = match &key_id {
            Some(id) => one_key(scope, id),
            None => Resource::Ciphertext {
                region: scope.region.clone(),
            },
        };
        self.seams
            .run(scope, Action::Decrypt, resource, async {
                let key_id =
                    key_id.ok_or(KmsError::InvalidCiphertext(CiphertextProblem::Invalid))?;
                let (k, _) = self.enabled_asymmetric(scope, &key_id).await?;
                needs(
                    &k,
                    KeyUsage::AsymmetricEncryptDecryptKyberAes,
                    Operation::PostQuantumEncrypt,
                )?;
                let private = self.material(&k, 1)?;
                let ad = aad(&blob[..HEADER_LEN], k.owner_uin);
                let plain =
                    blocking(move || post_quantum::ml_kem_open(&private, &ad, &blob[HEADER_LEN..]))
                        .await?
                        .map_err(|_| KmsError::InvalidCiphertext(CiphertextProblem::Invalid))?;
                Ok((k.key_id, plain))
            })
            .await
    }

    /// PostQuantumCryptoSign: an ML-DSA-65 signature of `message` (1 to [`MAX_MESSAGE`] bytes).
    pub async fn pq_sign(
        &self,
        scope: &Scope,
        key_id: &str,
        message: Vec<u8>,
    ) -> Result<Vec<u8>, KmsError> {
        self.seams
            .run(scope, Action::Sign, one_key(scope, key_id), async {
                let k = self.signing_key(scope, key_id, &message).await?;
                let private = self.material(&k, 1)?;
                blocking(move || post_quantum::ml_dsa_sign(&private, &message))
                    .await?
                    .map_err(|_| KmsError::SignFailed)
            })
            .await
    }

    /// PostQuantumCryptoVerify: whether `signature` is a valid ML-DSA-65 signature of `message`.
    pub async fn pq_verify(
        &self,
        scope: &Scope,
        key_id: &str,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<bool, KmsError> {
        self.seams
            .run(scope, Action::Verify, one_key(scope, key_id), async {
                let k = self.signing_key(scope, key_id, &message).await?;
                let public = k.public_key.clone();
                blocking(move || post_quantum::ml_dsa_verify(&public, &message, &signature))
                    .await?
                    .map_err(|_| KmsError::VerifyFailed)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_post_quantum_header_names_a_key() {
        let id = uuid::Uuid::new_v4();
        let mut blob = vec![PQ_BLOB_V1, ALG_ML_KEM_768_AES_256_GCM];
        blob.extend_from_slice(id.as_bytes());
        blob.extend_from_slice(&1u32.to_be_bytes());
        assert_eq!(blob_key_id(&blob), Some(id.to_string()));
        // A symmetric blob (version 1 or 2) and a short one name none.
        for v in [1u8, 2] {
            let mut b = blob.clone();
            b[0] = v;
            assert_eq!(blob_key_id(&b), None);
        }
        assert_eq!(blob_key_id(&blob[..21]), None);
        let mut other_alg = blob.clone();
        other_alg[1] = 2;
        assert_eq!(blob_key_id(&other_alg), None);
    }
}
