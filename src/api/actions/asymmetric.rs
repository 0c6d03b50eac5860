//! GetPublicKey, AsymmetricRsaDecrypt, AsymmetricSm2Decrypt, SignByAsymmetricKey,
//! VerifyByAsymmetricKey: private keys are unwrapped only in memory for the one operation.

use serde_json::json;

use super::{fields, ApiError, Ctx, Fields};
use crate::api::params::b64;
use crate::crypto::asymmetric::{self, AsymmetricSpec, Message, RsaPadding, SignAlgorithm};
use crate::registry::key::{KeyRecord, KeyState};

const MAX_MESSAGE: usize = 4096;

fn unsupported(k: &KeyRecord, what: &str) -> ApiError {
    ApiError::new(
        "UnsupportedOperation",
        format!(
            "key {} has usage {} and cannot {what}",
            k.key_id,
            k.usage.as_str()
        ),
    )
}

/// An enabled asymmetric key of the caller, read through the gate.
async fn enabled_asymmetric(ctx: &Ctx) -> Result<(KeyRecord, AsymmetricSpec), ApiError> {
    let key_id = ctx.params.str("KeyId")?;
    ctx.gate().await?;
    let k = ctx.key(&key_id)?;
    match k.state {
        KeyState::Enabled => {}
        KeyState::Disabled => {
            return Err(ApiError::new(
                "ResourceUnavailable.CmkDisabled",
                format!("key {} is disabled", k.key_id),
            ))
        }
        other => {
            return Err(ApiError::new(
                "ResourceUnavailable.CmkStateNotSupport",
                format!("key {} is {}", k.key_id, other.as_str()),
            ))
        }
    }
    let spec = k
        .usage
        .asymmetric_spec()
        .ok_or_else(|| unsupported(&k, "be used as an asymmetric key"))?;
    Ok((k, spec))
}

pub async fn get_public_key(ctx: Ctx) -> Result<Fields, ApiError> {
    let (k, _) = enabled_asymmetric(&ctx).await?;
    Ok(fields(json!({
        "KeyId": k.key_id,
        "PublicKey": b64(&k.public_key),
        "PublicKeyPem": asymmetric::public_pem(&k.public_key),
    })))
}

/// Every asymmetric decryption failure looks the same to the caller.
fn decrypt_error() -> ApiError {
    ApiError::new(
        "FailedOperation.DecryptError",
        "the ciphertext could not be decrypted with this key",
    )
}

pub async fn asymmetric_rsa_decrypt(ctx: Ctx) -> Result<Fields, ApiError> {
    let ciphertext = ctx.params.base64("Ciphertext", "InvalidParameterValue")?;
    let algorithm = ctx.params.str("Algorithm")?;
    let padding = RsaPadding::parse(&algorithm).ok_or_else(|| {
        ApiError::invalid(
            "Algorithm",
            "must be RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256",
        )
    })?;
    let (k, _) = enabled_asymmetric(&ctx).await?;
    if k.usage != crate::registry::key::KeyUsage::AsymmetricDecryptRsa2048 {
        return Err(unsupported(&k, "AsymmetricRsaDecrypt"));
    }
    let private = ctx.material(&k, 1)?;
    let plain = tokio::task::spawn_blocking(move || {
        asymmetric::rsa_decrypt(&private, padding, &ciphertext)
    })
    .await
    .map_err(|e| ApiError::new("InternalError", e.to_string()))?
    .map_err(|_| decrypt_error())?;
    Ok(fields(
        json!({ "KeyId": k.key_id, "Plaintext": b64(plain.expose()) }),
    ))
}

pub async fn asymmetric_sm2_decrypt(ctx: Ctx) -> Result<Fields, ApiError> {
    let ciphertext = ctx.params.base64("Ciphertext", "InvalidParameterValue")?;
    if ciphertext.len() > 256 {
        return Err(ApiError::invalid(
            "Ciphertext",
            "must be at most 256 bytes (ASN.1 C1C3C2)",
        ));
    }
    let (k, _) = enabled_asymmetric(&ctx).await?;
    if k.usage != crate::registry::key::KeyUsage::AsymmetricDecryptSm2 {
        return Err(unsupported(&k, "AsymmetricSm2Decrypt"));
    }
    let private = ctx.material(&k, 1)?;
    let plain = asymmetric::sm2_decrypt(&private, &ciphertext).map_err(|_| decrypt_error())?;
    Ok(fields(
        json!({ "KeyId": k.key_id, "Plaintext": b64(plain.expose()) }),
    ))
}

/// Reads Algorithm, Message and MessageType and checks them against the key.
fn signing_input(
    ctx: &Ctx,
    k: &KeyRecord,
    spec: AsymmetricSpec,
) -> Result<(SignAlgorithm, Vec<u8>, bool), ApiError> {
    if !k.usage.is_sign_verify() {
        return Err(unsupported(k, "sign or verify"));
    }
    let name = ctx.params.str("Algorithm")?;
    let alg = SignAlgorithm::parse(&name).ok_or_else(|| {
        ApiError::invalid("Algorithm", format!("`{name}` is not a signing algorithm"))
    })?;
    if !alg.fits(spec) {
        return Err(ApiError::invalid(
            "Algorithm",
            format!("{name} does not fit a key of usage {}", k.usage.as_str()),
        ));
    }
    let message = ctx.params.base64("Message", "InvalidParameterValue")?;
    let digest = match ctx.params.opt_str("MessageType")?.as_deref() {
        None | Some("RAW") => false,
        Some("DIGEST") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "MessageType",
                format!("`{other}` is not RAW or DIGEST"),
            ))
        }
    };
    if digest && message.len() != alg.digest_len() {
        return Err(ApiError::invalid(
            "Message",
            format!("a DIGEST must be exactly {} bytes", alg.digest_len()),
        ));
    }
    if !digest && (message.is_empty() || message.len() > MAX_MESSAGE) {
        return Err(ApiError::invalid(
            "Message",
            format!("a RAW message must be 1 to {MAX_MESSAGE} bytes"),
        ));
    }
    Ok((alg, message, digest))
}

pub async fn sign_by_asymmetric_key(ctx: Ctx) -> Result<Fields, ApiError> {
    let (k, spec) = enabled_asymmetric(&ctx).await?;
    let (alg, message, digest) = signing_input(&ctx, &k, spec)?;
    let private = ctx.material(&k, 1)?;
    let sig = tokio::task::spawn_blocking(move || {
        let msg = if digest {
            Message::Digest(&message)
        } else {
            Message::Raw(&message)
        };
        asymmetric::sign(spec, &private, alg, msg)
    })
    .await
    .map_err(|e| ApiError::new("InternalError", e.to_string()))?
    .map_err(|_| ApiError::new("FailedOperation.SignError", "signing failed"))?;
    Ok(fields(json!({ "Signature": b64(&sig) })))
}

pub async fn verify_by_asymmetric_key(ctx: Ctx) -> Result<Fields, ApiError> {
    let (k, spec) = enabled_asymmetric(&ctx).await?;
    let (alg, message, digest) = signing_input(&ctx, &k, spec)?;
    let signature = ctx
        .params
        .base64("SignatureValue", "InvalidParameterValue")?;
    let msg = if digest {
        Message::Digest(&message)
    } else {
        Message::Raw(&message)
    };
    let valid = asymmetric::verify(spec, &k.public_key, alg, msg, &signature)
        .map_err(|_| ApiError::new("FailedOperation.VerifyError", "verification could not run"))?;
    Ok(fields(json!({ "SignatureValid": valid })))
}
