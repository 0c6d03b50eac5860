//! Encrypt, Decrypt, ReEncrypt, GenerateDataKey, GenerateRandom: served from the node's own
//! applied state after the read gate; material is unwrapped only in memory, per request.

use serde_json::json;

use super::{fields, usable_for_decrypt, usable_for_encrypt, ApiError, Ctx, Fields};
use crate::api::params::b64;
use crate::crypto::{blob, Secret};
use crate::registry::key::KeyRecord;

const MAX_PLAINTEXT: usize = 4096;
const MAX_CONTEXT: usize = 1024;

/// The canonical form of an EncryptionContext: the JSON object re-serialized with sorted keys
/// and no whitespace, so semantically equal contexts authenticate equally.
fn context(ctx: &Ctx, name: &str) -> Result<Vec<u8>, ApiError> {
    let Some(text) = ctx.params.opt_str(name)? else {
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
fn no_public_key_encryption(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.params.has("EncryptionPublicKey") {
        return Err(ApiError::new(
            "UnsupportedOperation",
            "EncryptionPublicKey is not supported yet",
        ));
    }
    Ok(())
}

fn key_uuid(k: &KeyRecord) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(&k.key_id)
        .map_err(|_| ApiError::new("InternalError", "stored KeyId is not a UUID"))
}

/// Encrypts under the newest material version of `k`.
fn seal(ctx: &Ctx, k: &KeyRecord, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, ApiError> {
    usable_for_encrypt(k)?;
    let current = k.current().ok_or_else(|| {
        ApiError::new(
            "ResourceUnavailable.CmkStateNotSupport",
            "the key has no material",
        )
    })?;
    let material = ctx.material(k, current.version)?;
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

/// Decodes a CiphertextBlob parameter and finds its key.
fn open_blob(
    ctx: &Ctx,
    name: &str,
    context: &[u8],
) -> Result<(KeyRecord, Vec<u8>, Secret), ApiError> {
    let bytes = ctx
        .params
        .base64(name, "InvalidParameterValue.InvalidCiphertext")?;
    let header = blob::parse(&bytes)?;
    let k = ctx.key(&header.key_id.to_string())?;
    usable_for_decrypt(&k)?;
    if header.algorithm != k.algorithm {
        return Err(ApiError::new(
            "InvalidParameterValue.InvalidCiphertext",
            "the ciphertext does not belong to this key",
        ));
    }
    let material = ctx.material(&k, header.version)?;
    let plaintext = blob::open(&bytes, &material, ctx.uin, context)?;
    Ok((k, bytes, plaintext))
}

pub async fn encrypt(ctx: Ctx) -> Result<Fields, ApiError> {
    let key_id = ctx.params.str("KeyId")?;
    let plaintext = Secret::new(
        ctx.params
            .base64("Plaintext", "InvalidParameterValue.InvalidPlaintext")?,
    );
    if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
        return Err(ApiError::new(
            "InvalidParameterValue.InvalidPlaintext",
            format!("Plaintext must decode to 1 to {MAX_PLAINTEXT} bytes"),
        ));
    }
    let context = context(&ctx, "EncryptionContext")?;
    ctx.gate().await?;
    let k = ctx.key(&key_id)?;
    let blob = seal(&ctx, &k, &context, plaintext.expose())?;
    Ok(fields(
        json!({ "CiphertextBlob": b64(&blob), "KeyId": k.key_id }),
    ))
}

pub async fn decrypt(ctx: Ctx) -> Result<Fields, ApiError> {
    ctx.params.str("CiphertextBlob")?;
    no_public_key_encryption(&ctx)?;
    let context = context(&ctx, "EncryptionContext")?;
    ctx.gate().await?;
    let (k, _, plaintext) = open_blob(&ctx, "CiphertextBlob", &context)?;
    Ok(fields(
        json!({ "KeyId": k.key_id, "Plaintext": b64(plaintext.expose()) }),
    ))
}

pub async fn re_encrypt(ctx: Ctx) -> Result<Fields, ApiError> {
    ctx.params.str("CiphertextBlob")?;
    let source_context = context(&ctx, "SourceEncryptionContext")?;
    let dest_context = context(&ctx, "DestinationEncryptionContext")?;
    let dest_id = ctx
        .params
        .opt_str("DestinationKeyId")?
        .filter(|s| !s.is_empty());
    ctx.gate().await?;
    let (source, original, plaintext) = open_blob(&ctx, "CiphertextBlob", &source_context)?;
    let dest = match &dest_id {
        Some(id) => ctx.key(id)?,
        None => source.clone(),
    };
    let header = blob::parse(&original)?;
    let unchanged = dest.key_id == source.key_id
        && dest.current().map(|c| c.version) == Some(header.version)
        && dest_context == source_context;
    let (out, re_encrypted) = if unchanged {
        (original, false)
    } else {
        (seal(&ctx, &dest, &dest_context, plaintext.expose())?, true)
    };
    Ok(fields(json!({
        "CiphertextBlob": b64(&out),
        "KeyId": dest.key_id,
        "SourceKeyId": source.key_id,
        "ReEncrypted": re_encrypted,
    })))
}

pub async fn generate_data_key(ctx: Ctx) -> Result<Fields, ApiError> {
    let key_id = ctx.params.str("KeyId")?;
    let len = match (
        ctx.params.opt_u64("NumberOfBytes")?,
        ctx.params.opt_str("KeySpec")?.as_deref(),
    ) {
        (Some(n), _) if (1..=1024).contains(&n) => n as usize,
        (Some(_), _) => {
            return Err(ApiError::invalid(
                "NumberOfBytes",
                "must be between 1 and 1024",
            ))
        }
        (None, Some("AES_128")) => 16,
        (None, Some("AES_256")) => 32,
        (None, Some(s)) => {
            return Err(ApiError::invalid(
                "KeySpec",
                format!("`{s}` is not AES_128 or AES_256"),
            ))
        }
        (None, None) => {
            return Err(ApiError::new(
                "InvalidParameter",
                "either KeySpec or NumberOfBytes is required",
            ))
        }
    };
    if ctx.params.opt_u64("IsHostedByKms")?.unwrap_or(0) != 0 {
        return Err(ApiError::new(
            "UnsupportedOperation",
            "hosted data keys (IsHostedByKms=1) are not supported",
        ));
    }
    no_public_key_encryption(&ctx)?;
    let context = context(&ctx, "EncryptionContext")?;
    ctx.gate().await?;
    let k = ctx.key(&key_id)?;
    let data_key = Secret::random(len);
    let blob = seal(&ctx, &k, &context, data_key.expose())?;
    Ok(fields(
        json!({ "KeyId": k.key_id, "Plaintext": b64(data_key.expose()), "CiphertextBlob": b64(&blob) }),
    ))
}

pub async fn generate_random(ctx: Ctx) -> Result<Fields, ApiError> {
    let n = ctx.params.u64("NumberOfBytes")?;
    if !(1..=1024).contains(&n) {
        return Err(ApiError::invalid(
            "NumberOfBytes",
            "must be between 1 and 1024",
        ));
    }
    let bytes = Secret::random(n as usize);
    Ok(fields(json!({ "Plaintext": b64(bytes.expose()) })))
}
