//! sign, verify, get-publickey, and importing key material (BYOK): get-parameters-for-import,
//! import-key-material, delete-imported-key-material.

use axum::http::StatusCode;
use serde_json::json;

use super::{Fields, HwError, Request};
use crate::crypto::asymmetric::{self, AsymmetricSpec, SignAlgorithm};
use crate::http::huawei::fields;
use crate::http::tencent::params::b64;
use crate::kms::asymmetric::Signing;
use crate::kms::import::ImportMaterial;
use crate::registry::key::WrappingAlgorithm;

/// Messages to sign are under 4096 bytes.
const MAX_MESSAGE: usize = 4095;

/// The signing request: `signing_algorithm` in Huawei's names, resolved against the key (Huawei's
/// `ECDSA_SHA_256` is P-256 or secp256k1 by the key's curve); `message_type` `DIGEST` (the
/// default) or `RAW`.
async fn signing(r: &Request<'_>) -> Result<Signing, HwError> {
    let id = r.body.key_id()?;
    let message = r.body.base64("message", "KMS.0308")?;
    if message.is_empty() || message.len() > MAX_MESSAGE {
        return Err(HwError::invalid("message", "must be 1 to 4095 bytes"));
    }
    let name = r.body.str("signing_algorithm")?;
    let is_digest = match r.body.opt_str("message_type")?.as_deref() {
        None | Some("") | Some("DIGEST") => true,
        Some("RAW") => false,
        Some(other) => {
            return Err(HwError::invalid(
                "message_type",
                format!("`{other}` is not DIGEST or RAW"),
            ))
        }
    };
    let d = r.kms.describe_key(&r.scope, &id).await?;
    let spec = d.key.usage.asymmetric_spec();
    let algorithm = match (name.as_str(), spec) {
        ("RSASSA_PSS_SHA_256", _) => SignAlgorithm::RsaPssSha256,
        ("RSASSA_PKCS1_V1_5_SHA_256", _) => SignAlgorithm::RsaPkcs1Sha256,
        ("ECDSA_SHA_256", Some(AsymmetricSpec::Secp256k1)) => SignAlgorithm::EcdsaSecp256k1Sha256,
        ("ECDSA_SHA_256", _) => SignAlgorithm::EcdsaP256Sha256,
        ("ECDSA_SHA_384", _) => SignAlgorithm::EcdsaP384Sha384,
        ("SM2DSA_SM3", _) => SignAlgorithm::Sm2Dsa,
        _ => {
            return Err(HwError::new(
                StatusCode::BAD_REQUEST,
                "KMS.0332",
                format!("This key is not support the signing algorithm `{name}` (raftkms signs with SHA-256 for RSA, P-256 and secp256k1, SHA-384 for P-384, and SM3 for SM2)."),
            ))
        }
    };
    Ok(Signing {
        key_id: id,
        algorithm,
        message,
        is_digest,
    })
}

pub async fn sign(r: &Request<'_>) -> Result<Fields, HwError> {
    let req = signing(r).await?;
    let id = req.key_id.clone();
    let signature = r.kms.sign(&r.scope, req).await?;
    Ok(fields(
        json!({ "key_id": id, "signature": b64(&signature) }),
    ))
}

pub async fn verify(r: &Request<'_>) -> Result<Fields, HwError> {
    let req = signing(r).await?;
    let signature = r.body.base64("signature", "KMS.0308")?;
    let id = req.key_id.clone();
    let valid = r.kms.verify(&r.scope, req, &signature).await?;
    Ok(fields(
        json!({ "key_id": id, "signature_valid": if valid { "true" } else { "false" } }),
    ))
}

/// The public key as a `-----BEGIN PUBLIC KEY-----` PEM.
pub async fn get_publickey(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    let pk = r.kms.get_public_key(&r.scope, &id).await?;
    Ok(fields(
        json!({ "key_id": pk.key_id, "public_key": asymmetric::public_pem(&pk.spki_der) }),
    ))
}

/// `wrapping_algorithm` `RSAES_OAEP_SHA_256` (Huawei's `SM2_ENCRYPT` wrapping is not offered).
pub async fn get_parameters_for_import(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    let algorithm = match r.body.str("wrapping_algorithm")?.as_str() {
        "RSAES_OAEP_SHA_256" => WrappingAlgorithm::RsaesOaepSha256,
        other => {
            return Err(HwError::invalid(
                "wrapping_algorithm",
                format!("`{other}`: raftkms wraps imported material with RSAES_OAEP_SHA_256 only"),
            ))
        }
    };
    let p = r
        .kms
        .get_import_parameters(&r.scope, &id, algorithm)
        .await?;
    Ok(fields(json!({
        "key_id": p.key_id,
        "import_token": p.token,
        "expiration_time": p.valid_to,
        "public_key": b64(&p.public_key),
    })))
}

/// `expiration_time` (Unix seconds) is when the material expires; absent or 0: never.
pub async fn import_key_material(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    let token = r.body.str("import_token")?;
    let wrapped = r.body.base64("encrypted_key_material", "KMS.0308")?;
    if r.body
        .opt_str("encrypted_privatekey")?
        .is_some_and(|v| !v.is_empty())
    {
        return Err(HwError::invalid(
            "encrypted_privatekey",
            "asymmetric material cannot be imported into raftkms",
        ));
    }
    let valid_to = match r.body.value("expiration_time") {
        None => 0,
        Some(_) => r.body.u64("expiration_time")?,
    };
    let req = ImportMaterial {
        key_id: id,
        token,
        wrapped_material: wrapped,
        valid_to,
    };
    r.kms.import_key_material(&r.scope, req).await?;
    Ok(fields(json!({})))
}

pub async fn delete_imported_key_material(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    r.kms.delete_imported_material(&r.scope, id).await?;
    Ok(fields(json!({})))
}
