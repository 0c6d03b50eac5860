//! BYOK: GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial.

use serde_json::json;

use super::{fields, ApiError, Fields, Request};
use crate::http::tencent::params::b64;
use crate::kms::import::ImportMaterial;
use crate::registry::key::WrappingAlgorithm;

pub async fn get_parameters_for_import(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    let alg_name = r.params.str("WrappingAlgorithm")?;
    let algorithm = WrappingAlgorithm::parse(&alg_name).ok_or_else(|| {
        ApiError::invalid(
            "WrappingAlgorithm",
            "must be RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256",
        )
    })?;
    let spec = r.params.str("WrappingKeySpec")?;
    if spec != "RSA_2048" {
        return Err(ApiError::invalid("WrappingKeySpec", "must be RSA_2048"));
    }
    let p = r
        .kms
        .get_import_parameters(&r.scope, &key_id, algorithm)
        .await?;
    Ok(fields(json!({
        "KeyId": p.key_id,
        "ImportToken": p.token,
        "PublicKey": b64(&p.public_key),
        "ParametersValidTo": p.valid_to,
    })))
}

pub async fn import_key_material(r: &Request<'_>) -> Result<Fields, ApiError> {
    let wrapped_material = r
        .params
        .base64("EncryptedKeyMaterial", "InvalidParameterValue")?;
    let token = r.params.str("ImportToken")?;
    let key_id = r.params.key_id("KeyId")?;
    let valid_to = r.params.opt_u64("ValidTo")?.unwrap_or(0);
    let req = ImportMaterial {
        key_id,
        token,
        wrapped_material,
        valid_to,
    };
    r.kms.import_key_material(&r.scope, req).await?;
    Ok(Fields::new())
}

pub async fn delete_imported_key_material(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    r.kms.delete_imported_material(&r.scope, key_id).await?;
    Ok(Fields::new())
}
