//! Encrypt, Decrypt, ReEncrypt, GenerateDataKey, GenerateRandom.

use serde_json::json;

use super::{fields, ApiError, Fields, Request};
use crate::crypto::recipient::{Recipient, RecipientAlgorithm};
use crate::crypto::Secret;
use crate::http::tencent::params::b64;
use crate::http::tencent::params::canonical_context;
use crate::kms::crypto::ReEncrypt;
use crate::kms::data_keys::NewDataKey;
use crate::kms::KmsError;
use crate::registry::data_key;

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
    canonical_context(&text).ok_or_else(|| {
        ApiError::invalid(name, "must be a JSON object, e.g. {\"purpose\":\"backup\"}")
    })
}

/// `EncryptionPublicKey` and `EncryptionAlgorithm` (default `SM2`): the public key a returned
/// plaintext is encrypted to, or `None` for a plaintext in clear. An empty key means none.
pub(super) fn recipient(r: &Request<'_>) -> Result<Option<Recipient>, ApiError> {
    let algorithm = match r.params.opt_str("EncryptionAlgorithm")?.as_deref() {
        None | Some("") => RecipientAlgorithm::Sm2C1C3C2,
        Some(a) => RecipientAlgorithm::parse(a).ok_or_else(|| {
            ApiError::invalid(
                "EncryptionAlgorithm",
                format!(
                    "`{a}` is not one of {}",
                    RecipientAlgorithm::NAMES.join(", ")
                ),
            )
        })?,
    };
    match r.params.opt_str("EncryptionPublicKey")? {
        None => Ok(None),
        Some(pem) if pem.trim().is_empty() => Ok(None),
        Some(pem) => Recipient::parse(&pem, algorithm)
            .map(Some)
            .map_err(|e| ApiError::invalid("EncryptionPublicKey", e)),
    }
}

/// A returned plaintext as the API sends it: Base64 of the plaintext, or of its encryption to
/// the caller's public key.
pub(super) fn plaintext_out(
    recipient: Option<&Recipient>,
    plaintext: &Secret,
) -> Result<String, ApiError> {
    match recipient {
        None => Ok(b64(plaintext.expose())),
        Some(to) => to
            .encrypt(plaintext.expose())
            .map(|c| b64(&c))
            .map_err(|e| KmsError::PublicKeyEncryption(e.to_string()).into()),
    }
}

/// Refuses, before anything is generated or stored, a data key of `len` bytes that cannot be
/// encrypted to the caller's key (longer than its RSA padding holds).
fn fits(recipient: Option<&Recipient>, len: usize) -> Result<(), ApiError> {
    match recipient.and_then(Recipient::max_plaintext) {
        Some(max) if len > max => Err(KmsError::PublicKeyEncryption(format!(
            "a {len}-byte data key is longer than the {max} bytes this RSA key and padding hold"
        ))
        .into()),
        _ => Ok(()),
    }
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
    let to = recipient(r)?;
    let context = context(r, "EncryptionContext")?;
    let blob = ciphertext(r, "CiphertextBlob")?;
    let opened = r.kms.decrypt(&r.scope, &blob, &context).await?;
    let plaintext = plaintext_out(to.as_ref(), &opened.plaintext)?;
    Ok(fields(
        json!({ "KeyId": opened.key_id, "Plaintext": plaintext }),
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

/// `IsHostedByKms`: 0 (default) or 1.
fn hosted(r: &Request<'_>) -> Result<bool, ApiError> {
    match r.params.opt_u64("IsHostedByKms")? {
        None | Some(0) => Ok(false),
        Some(1) => Ok(true),
        Some(_) => Err(ApiError::invalid("IsHostedByKms", "must be 0 or 1")),
    }
}

/// `DataKeyName` (required), `Description` and `Tags` of a new hosted data key.
pub(super) fn new_data_key(r: &Request<'_>) -> Result<NewDataKey, ApiError> {
    let name = r.params.str("DataKeyName")?;
    data_key::validate_name(&name)?;
    let description = r.params.opt_str("Description")?.unwrap_or_default();
    data_key::validate_description(&description)?;
    super::no_hsm_cluster(r)?;
    Ok(NewDataKey {
        name,
        description,
        tags: r.params.tags("Tags")?,
    })
}

pub async fn generate_data_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    let len = data_key_len(r)?;
    let to = recipient(r)?;
    fits(to.as_ref(), len)?;
    let context = context(r, "EncryptionContext")?;
    let (dk, hosted, sealed) = if hosted(r)? {
        let new = new_data_key(r)?;
        let tagged = !new.tags.is_empty();
        let (dk, id, sealed) = r
            .kms
            .generate_hosted_data_key(&r.scope, &key_id, len, &context, new, to.as_ref())
            .await?;
        (dk, Some((id, tagged)), sealed)
    } else {
        let dk = r
            .kms
            .generate_data_key(&r.scope, &key_id, len, &context)
            .await?;
        (dk, None, None)
    };
    let plaintext = match sealed {
        Some(c) => b64(&c),
        None => plaintext_out(to.as_ref(), &dk.plaintext)?,
    };
    let mut out = fields(json!({
        "KeyId": dk.key_id,
        "Plaintext": plaintext,
        "CiphertextBlob": b64(&dk.ciphertext),
    }));
    if let Some((id, tagged)) = hosted {
        out.insert("DataKeyId".into(), json!(id));
        if tagged {
            out.insert("TagCode".into(), json!(0));
            out.insert("TagMsg".into(), json!(""));
        }
    }
    Ok(out)
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
