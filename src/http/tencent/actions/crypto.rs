//! Encrypt, Decrypt, ReEncrypt, GenerateDataKey, GenerateRandom.

use serde_json::json;

use super::{fields, ApiError, Fields, Request};
use crate::crypto::Secret;
use crate::http::tencent::params::b64;
use crate::kms::crypto::ReEncrypt;

const MAX_PLAINTEXT: usize = 4096;
const MAX_CONTEXT: usize = 1024;

/// The canonical form of an EncryptionContext: the JSON object re-serialized with sorted keys
/// and no whitespace, so semantically equal contexts authenticate equally.
fn context(r: &Request<'_>, name: &str) -> Result<Vec<u8>, ApiError> {
    let Some(text) = r.params.opt_str(name)? else {
        return Ok(Vec::new());
    };
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if text.chars().count() > MAX_CONTEXT {
        return Err(ApiError::invalid(
            name,
            format!("must be at most {MAX_CONTEXT} characters"),
        ));
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v.to_string().into_bytes()),
        _ => Err(ApiError::invalid(
            name,
            "must be a JSON object, e.g. {\"purpose\":\"backup\"}",
        )),
    }
}

/// Returning a plaintext encrypted to a caller's public key (`EncryptionPublicKey`) is not
/// offered yet; refuse it rather than answer in clear.
fn no_public_key_encryption(r: &Request<'_>) -> Result<(), ApiError> {
    if r.params.has("EncryptionPublicKey") {
        return Err(ApiError::new(
            "UnsupportedOperation",
            "EncryptionPublicKey is not supported yet",
        ));
    }
    Ok(())
}

/// A `CiphertextBlob`-like parameter, decoded.
fn ciphertext(r: &Request<'_>, name: &str) -> Result<Vec<u8>, ApiError> {
    r.params
        .base64(name, "InvalidParameterValue.InvalidCiphertext")
}

pub async fn encrypt(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    let plaintext = Secret::new(
        r.params
            .base64("Plaintext", "InvalidParameterValue.InvalidPlaintext")?,
    );
    if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
        return Err(ApiError::new(
            "InvalidParameterValue.InvalidPlaintext",
            format!("Plaintext must decode to 1 to {MAX_PLAINTEXT} bytes"),
        ));
    }
    let context = context(r, "EncryptionContext")?;
    let sealed = r
        .kms
        .encrypt(&r.scope, &key_id, &plaintext, &context)
        .await?;
    Ok(fields(
        json!({ "CiphertextBlob": b64(&sealed.ciphertext), "KeyId": sealed.key_id }),
    ))
}

pub async fn decrypt(r: &Request<'_>) -> Result<Fields, ApiError> {
    r.params.str("CiphertextBlob")?;
    no_public_key_encryption(r)?;
    let context = context(r, "EncryptionContext")?;
    let blob = ciphertext(r, "CiphertextBlob")?;
    let opened = r.kms.decrypt(&r.scope, &blob, &context).await?;
    Ok(fields(
        json!({ "KeyId": opened.key_id, "Plaintext": b64(opened.plaintext.expose()) }),
    ))
}

pub async fn re_encrypt(r: &Request<'_>) -> Result<Fields, ApiError> {
    r.params.str("CiphertextBlob")?;
    let source_context = context(r, "SourceEncryptionContext")?;
    let destination_context = context(r, "DestinationEncryptionContext")?;
    let destination_key_id = r
        .params
        .opt_key_id("DestinationKeyId")?
        .filter(|s| !s.is_empty());
    let req = ReEncrypt {
        ciphertext: ciphertext(r, "CiphertextBlob")?,
        source_context,
        destination_key_id,
        destination_context,
    };
    let out = r.kms.re_encrypt(&r.scope, req).await?;
    Ok(fields(json!({
        "CiphertextBlob": b64(&out.ciphertext),
        "KeyId": out.key_id,
        "SourceKeyId": out.source_key_id,
        "ReEncrypted": out.re_encrypted,
    })))
}

/// The data key length: `NumberOfBytes` (1 to 1024) or `KeySpec` (AES_128, AES_256).
fn data_key_len(r: &Request<'_>) -> Result<usize, ApiError> {
    match (
        r.params.opt_u64("NumberOfBytes")?,
        r.params.opt_str("KeySpec")?.as_deref(),
    ) {
        (Some(n), _) if (1..=1024).contains(&n) => Ok(n as usize),
        (Some(_), _) => Err(ApiError::invalid(
            "NumberOfBytes",
            "must be between 1 and 1024",
        )),
        (None, Some("AES_128")) => Ok(16),
        (None, Some("AES_256")) => Ok(32),
        (None, Some(s)) => Err(ApiError::invalid(
            "KeySpec",
            format!("`{s}` is not AES_128 or AES_256"),
        )),
        (None, None) => Err(ApiError::new(
            "InvalidParameter",
            "either KeySpec or NumberOfBytes is required",
        )),
    }
}

pub async fn generate_data_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    let len = data_key_len(r)?;
    if r.params.opt_u64("IsHostedByKms")?.unwrap_or(0) != 0 {
        return Err(ApiError::new(
            "UnsupportedOperation",
            "hosted data keys (IsHostedByKms=1) are not supported",
        ));
    }
    no_public_key_encryption(r)?;
    let context = context(r, "EncryptionContext")?;
    let dk = r
        .kms
        .generate_data_key(&r.scope, &key_id, len, &context)
        .await?;
    Ok(fields(json!({
        "KeyId": dk.key_id,
        "Plaintext": b64(dk.plaintext.expose()),
        "CiphertextBlob": b64(&dk.ciphertext),
    })))
}

pub async fn generate_random(r: &Request<'_>) -> Result<Fields, ApiError> {
    let n = r.params.u64("NumberOfBytes")?;
    if !(1..=1024).contains(&n) {
        return Err(ApiError::invalid(
            "NumberOfBytes",
            "must be between 1 and 1024",
        ));
    }
    let bytes = r.kms.generate_random(&r.scope, n as usize).await?;
    Ok(fields(json!({ "Plaintext": b64(bytes.expose()) })))
}
