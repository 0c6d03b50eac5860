//! encrypt-data, decrypt-data, create-datakey(-without-plaintext), encrypt-datakey,
//! decrypt-datakey, gen-random. Huawei sends encrypt-data's plaintext as text and returns data
//! keys and random bytes in hex; ciphertexts are the same blobs every raftkms API makes
//! (Base64 in encrypt/decrypt-data, hex in the data-key operations), so a ciphertext made
//! through one API opens through another.

use axum::http::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Fields, HwError, Request};
use crate::crypto::asymmetric::RsaPadding;
use crate::crypto::recipient::{Recipient, RecipientAlgorithm};
use crate::crypto::Secret;
use crate::http::huawei::fields;
use crate::http::tencent::params::b64;
use crate::kms::asymmetric::AsymmetricCipher;

const MAX_PLAINTEXT: usize = 4096;
const MAX_AAD: usize = 128;

/// `additional_authenticated_data` (at most 128 bytes), bound to the ciphertext as its
/// encryption context, byte for byte.
fn aad(r: &Request<'_>) -> Result<Vec<u8>, HwError> {
    let a = r
        .body
        .opt_str("additional_authenticated_data")?
        .unwrap_or_default();
    if a.len() > MAX_AAD {
        return Err(HwError::invalid(
            "additional_authenticated_data",
            format!("must be at most {MAX_AAD} bytes"),
        ));
    }
    Ok(a.into_bytes())
}

/// The asymmetric algorithm of `encryption_algorithm`, or `None` for `SYMMETRIC_DEFAULT`.
fn asymmetric(r: &Request<'_>) -> Result<Option<RecipientAlgorithm>, HwError> {
    match r.body.opt_str("encryption_algorithm")?.as_deref() {
        None | Some("") | Some("SYMMETRIC_DEFAULT") => Ok(None),
        Some("RSAES_OAEP_SHA_256") => Ok(Some(RecipientAlgorithm::RsaOaepSha256)),
        Some("SM2_ENCRYPT") => Ok(Some(RecipientAlgorithm::Sm2C1C3C2Asn1)),
        Some(other) => Err(HwError::invalid(
            "encryption_algorithm",
            format!("`{other}` is not SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_256 or SM2_ENCRYPT"),
        )),
    }
}

pub async fn encrypt_data(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    let text = r.body.str("plain_text")?;
    if text.is_empty() || text.len() > MAX_PLAINTEXT {
        return Err(HwError::invalid(
            "plain_text",
            format!("must be 1 to {MAX_PLAINTEXT} bytes"),
        ));
    }
    let plaintext = Secret::new(text.into_bytes());
    let ciphertext = match asymmetric(r)? {
        None => {
            let context = aad(r)?;
            r.kms
                .encrypt(&r.scope, &id, &plaintext, &context)
                .await?
                .ciphertext
        }
        // Encryption under an asymmetric key's public key, done here as a client would.
        Some(algorithm) => {
            let pk = r.kms.get_public_key(&r.scope, &id).await?;
            let to = Recipient::parse(&b64(&pk.spki_der), algorithm).map_err(|e| {
                HwError::new(
                    StatusCode::BAD_REQUEST,
                    "KMS.2105",
                    format!("The key does not support this encryption algorithm: {e}"),
                )
            })?;
            to.encrypt(plaintext.expose()).map_err(|e| {
                HwError::new(
                    StatusCode::BAD_REQUEST,
                    "KMS.2108",
                    format!("The encryption plain_text is over length: {e}"),
                )
            })?
        }
    };
    Ok(fields(
        json!({ "key_id": id, "cipher_text": b64(&ciphertext) }),
    ))
}

pub async fn decrypt_data(r: &Request<'_>) -> Result<Fields, HwError> {
    let blob = r.body.base64("cipher_text", "KMS.2201")?;
    let (key_id, plaintext) = match asymmetric(r)? {
        None => {
            let context = aad(r)?;
            let opened = r.kms.decrypt(&r.scope, &blob, &context).await?;
            (opened.key_id, opened.plaintext)
        }
        Some(algorithm) => {
            let id = r.body.key_id()?;
            let cipher = match algorithm {
                RecipientAlgorithm::RsaOaepSha256 => AsymmetricCipher::Rsa(RsaPadding::OaepSha256),
                _ => AsymmetricCipher::Sm2,
            };
            r.kms
                .asymmetric_decrypt(&r.scope, &id, cipher, blob)
                .await?
        }
    };
    Ok(fields(json!({
        "key_id": key_id,
        "plain_text": String::from_utf8_lossy(plaintext.expose()),
        "plain_text_base64": b64(plaintext.expose()),
    })))
}

/// A data key's length in bytes: `datakey_length` (bits, a multiple of 8, 8–8192) wins over
/// `key_spec` (`AES_256`, `AES_128`, `SM4`); neither: 256 bits.
fn data_key_len(r: &Request<'_>) -> Result<usize, HwError> {
    if let Some(bits) = r.body.opt_u64("datakey_length")? {
        if !(8..=8192).contains(&bits) {
            return Err(HwError::new(
                StatusCode::BAD_REQUEST,
                "KMS.1901",
                "datakey_length must be in the range 8 bits to 8,192 bits.",
            ));
        }
        if bits % 8 != 0 {
            return Err(HwError::new(
                StatusCode::BAD_REQUEST,
                "KMS.1903",
                "datakey_length must be a multiple of 8.",
            ));
        }
        return Ok((bits / 8) as usize);
    }
    match r.body.opt_str("key_spec")?.as_deref() {
        None | Some("") | Some("AES_256") => Ok(32),
        Some("AES_128") | Some("SM4") => Ok(16),
        Some(other) => Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.1902",
            format!("key_spec can only be AES_128, AES_256 or SM4, not `{other}`."),
        )),
    }
}

fn no_pin(r: &Request<'_>) -> Result<(), HwError> {
    for name in ["pin", "pin_type"] {
        if r.body.opt_str(name)?.is_some_and(|v| !v.is_empty()) {
            return Err(HwError::invalid(
                name,
                "is for Huawei's dedicated compliance mode, which raftkms does not offer",
            ));
        }
    }
    Ok(())
}

pub async fn create_datakey(r: &Request<'_>, with_plaintext: bool) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    let len = data_key_len(r)?;
    no_pin(r)?;
    let context = aad(r)?;
    let dk = r
        .kms
        .generate_data_key(&r.scope, &id, len, &context)
        .await?;
    let mut out =
        fields(json!({ "key_id": dk.key_id, "cipher_text": hex::encode(&dk.ciphertext) }));
    if with_plaintext {
        out.insert(
            "plain_text".into(),
            json!(hex::encode(dk.plaintext.expose())),
        );
    }
    Ok(out)
}

/// The digests a DEK may carry in encrypt-datakey: SHA-256, or SM3 (Huawei's rule for SM4 keys).
fn digest_matches(dek: &[u8], digest: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let sha = Sha256::digest(dek);
    let sm3 = <sm3::Sm3 as sm3::Digest>::digest(dek);
    bool::from(sha.as_slice().ct_eq(digest)) || bool::from(sm3.as_slice().ct_eq(digest))
}

/// A DEK length in bytes (`datakey_plain_length`, `datakey_cipher_length`): 1–1024.
fn dek_len(r: &Request<'_>, name: &str) -> Result<u64, HwError> {
    let len = r.body.u64(name)?;
    if !(1..=1024).contains(&len) {
        return Err(HwError::invalid(name, "must be 1 to 1024 bytes"));
    }
    Ok(len)
}

/// `plain_text` is hex of the DEK followed by its 32-byte digest; `datakey_plain_length` the
/// DEK's length in bytes (1–1024).
pub async fn encrypt_datakey(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    no_pin(r)?;
    let len = dek_len(r, "datakey_plain_length")?;
    let raw = Secret::new(r.body.hex("plain_text", "KMS.2101")?);
    let len = len as usize;
    if raw.len() != len + 32 {
        return Err(HwError::new(StatusCode::BAD_REQUEST, "KMS.2104", "The length of plain_text does not match datakey_plain_length (the DEK and its 32-byte digest)."));
    }
    let (dek, digest) = raw.expose().split_at(len);
    if !digest_matches(dek, digest) {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.2103",
            "Failed to verify the DEK hash.",
        ));
    }
    let dek = Secret::new(dek.to_vec());
    let context = aad(r)?;
    let sealed = r.kms.encrypt(&r.scope, &id, &dek, &context).await?;
    Ok(fields(json!({
        "key_id": sealed.key_id,
        "cipher_text": hex::encode(&sealed.ciphertext),
        "datakey_length": len.to_string(),
    })))
}

/// `cipher_text` in hex; `datakey_cipher_length` the DEK's length in bytes, checked against the
/// DEK it decrypts to.
pub async fn decrypt_datakey(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    no_pin(r)?;
    let len = dek_len(r, "datakey_cipher_length")?;
    let blob = r.body.hex("cipher_text", "KMS.2201")?;
    let context = aad(r)?;
    let opened = r.kms.decrypt(&r.scope, &blob, &context).await?;
    if opened.key_id != id {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.2201",
            "Invalid cipher_text: it was not made under key_id.",
        ));
    }
    if opened.plaintext.len() as u64 != len {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.2204",
            "The length of cipher_text does not match datakey_cipher_length.",
        ));
    }
    Ok(fields(json!({
        "data_key": hex::encode(opened.plaintext.expose()),
        "datakey_length": len.to_string(),
        "datakey_dgst": hex::encode(Sha256::digest(opened.plaintext.expose())),
    })))
}

/// `random_data_length` in bits: a multiple of 8, 8–8192.
pub async fn gen_random(r: &Request<'_>) -> Result<Fields, HwError> {
    let bits = r.body.u64("random_data_length")?;
    if bits % 8 != 0 {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.1802",
            "random_data_length must be a multiple of 8.",
        ));
    }
    if !(8..=8192).contains(&bits) {
        return Err(HwError::invalid(
            "random_data_length",
            "must be 8 to 8192 bits",
        ));
    }
    let random = r.kms.generate_random(&r.scope, (bits / 8) as usize).await?;
    Ok(fields(
        json!({ "random_data": hex::encode(random.expose()) }),
    ))
}
