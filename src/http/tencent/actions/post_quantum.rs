//! PostQuantumCryptoEncrypt, PostQuantumCryptoDecrypt, PostQuantumCryptoSign,
//! PostQuantumCryptoVerify. Note the spelling `PlainText` (not `Plaintext`) of these actions.

use serde_json::json;

use super::crypto::{plaintext_out, recipient};
use super::{fields, ApiError, Fields, Request};
use crate::crypto::Secret;
use crate::http::tencent::params::b64;

const MAX_PLAINTEXT: usize = 4096;

pub async fn encrypt(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    let plaintext = Secret::new(
        r.params
            .base64("PlainText", "InvalidParameterValue.InvalidPlaintext")?,
    );
    if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
        return Err(ApiError::new(
            "InvalidParameterValue.InvalidPlaintext",
            format!("PlainText must decode to 1 to {MAX_PLAINTEXT} bytes"),
        ));
    }
    let (key_id, blob) = r.kms.pq_encrypt(&r.scope, &key_id, &plaintext).await?;
    Ok(fields(
        json!({ "CiphertextBlob": b64(&blob), "KeyId": key_id }),
    ))
}

pub async fn decrypt(r: &Request<'_>) -> Result<Fields, ApiError> {
    let blob = r
        .params
        .base64("CiphertextBlob", "InvalidParameterValue.InvalidCiphertext")?;
    let to = recipient(r)?;
    let (key_id, plaintext) = r.kms.pq_decrypt(&r.scope, blob).await?;
    Ok(fields(json!({
        "KeyId": key_id,
        "PlainText": plaintext_out(to.as_ref(), &plaintext)?,
    })))
}

/// `Message`, Base64.
fn message(r: &Request<'_>) -> Result<Vec<u8>, ApiError> {
    r.params.base64("Message", "InvalidParameterValue")
}

pub async fn sign(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    let msg = message(r)?;
    let sig = r.kms.pq_sign(&r.scope, &key_id, msg).await?;
    Ok(fields(json!({ "Signature": b64(&sig) })))
}

pub async fn verify(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    let msg = message(r)?;
    let sig = r.params.base64("SignatureValue", "InvalidParameterValue")?;
    let valid = r.kms.pq_verify(&r.scope, &key_id, msg, sig).await?;
    Ok(fields(json!({ "SignatureValid": valid })))
}
