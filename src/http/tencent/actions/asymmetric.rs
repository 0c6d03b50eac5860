//! GetPublicKey, AsymmetricRsaDecrypt, AsymmetricSm2Decrypt, SignByAsymmetricKey,
//! VerifyByAsymmetricKey.

use serde_json::json;

use super::{fields, ApiError, Fields, Request};
use crate::crypto::asymmetric::{self, RsaPadding, SignAlgorithm};
use crate::http::tencent::params::b64;
use crate::kms::asymmetric::{AsymmetricCipher, Signing};
use crate::kms::KmsError;

/// Largest SM2 ciphertext (ASN.1 C1C3C2) accepted.
const MAX_SM2_CIPHERTEXT: usize = 256;

pub async fn get_public_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    let pk = r.kms.get_public_key(&r.scope, &key_id).await?;
    Ok(fields(json!({
        "KeyId": pk.key_id,
        "PublicKey": b64(&pk.spki_der),
        "PublicKeyPem": asymmetric::public_pem(&pk.spki_der),
    })))
}

pub async fn asymmetric_rsa_decrypt(r: &Request<'_>) -> Result<Fields, ApiError> {
    let ciphertext = r.params.base64("Ciphertext", "InvalidParameterValue")?;
    let algorithm = r.params.str("Algorithm")?;
    let padding = RsaPadding::parse(&algorithm).ok_or_else(|| {
        ApiError::invalid(
            "Algorithm",
            "must be RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256",
        )
    })?;
    let key_id = r.params.key_id("KeyId")?;
    let cipher = AsymmetricCipher::Rsa(padding);
    let (key_id, plain) = r
        .kms
        .asymmetric_decrypt(&r.scope, &key_id, cipher, ciphertext)
        .await?;
    Ok(fields(
        json!({ "KeyId": key_id, "Plaintext": b64(plain.expose()) }),
    ))
}

pub async fn asymmetric_sm2_decrypt(r: &Request<'_>) -> Result<Fields, ApiError> {
    let ciphertext = r.params.base64("Ciphertext", "InvalidParameterValue")?;
    if ciphertext.len() > MAX_SM2_CIPHERTEXT {
        return Err(ApiError::invalid(
            "Ciphertext",
            format!("must be at most {MAX_SM2_CIPHERTEXT} bytes (ASN.1 C1C3C2)"),
        ));
    }
    let key_id = r.params.key_id("KeyId")?;
    let (key_id, plain) = r
        .kms
        .asymmetric_decrypt(&r.scope, &key_id, AsymmetricCipher::Sm2, ciphertext)
        .await?;
    Ok(fields(
        json!({ "KeyId": key_id, "Plaintext": b64(plain.expose()) }),
    ))
}

/// KeyId, Algorithm, Message and MessageType (and the Algorithm as named, for messages).
fn signing(r: &Request<'_>) -> Result<(Signing, String), ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    let name = r.params.str("Algorithm")?;
    let algorithm = SignAlgorithm::parse(&name).ok_or_else(|| {
        ApiError::invalid("Algorithm", format!("`{name}` is not a signing algorithm"))
    })?;
    let message = r.params.base64("Message", "InvalidParameterValue")?;
    let is_digest = match r.params.opt_str("MessageType")?.as_deref() {
        None | Some("RAW") => false,
        Some("DIGEST") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "MessageType",
                format!("`{other}` is not RAW or DIGEST"),
            ))
        }
    };
    let req = Signing {
        key_id,
        algorithm,
        message,
        is_digest,
    };
    Ok((req, name))
}

/// The core's error, with an algorithm that does not fit the key named as the caller named it.
fn naming_algorithm(name: &str) -> impl Fn(KmsError) -> ApiError + '_ {
    move |e| match e {
        KmsError::AlgorithmMismatch { usage } => ApiError::invalid(
            "Algorithm",
            format!("{name} does not fit a key of usage {}", usage.as_str()),
        ),
        other => other.into(),
    }
}

pub async fn sign_by_asymmetric_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    let (req, name) = signing(r)?;
    let sig = r
        .kms
        .sign(&r.scope, req)
        .await
        .map_err(naming_algorithm(&name))?;
    Ok(fields(json!({ "Signature": b64(&sig) })))
}

pub async fn verify_by_asymmetric_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    let (req, name) = signing(r)?;
    let signature = r.params.base64("SignatureValue", "InvalidParameterValue")?;
    let valid = r
        .kms
        .verify(&r.scope, req, &signature)
        .await
        .map_err(naming_algorithm(&name))?;
    Ok(fields(json!({ "SignatureValid": valid })))
}
