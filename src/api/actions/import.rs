//! BYOK: GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial.
//!
//! The node that takes GetParametersForImport generates an RSA-2048 wrapping key pair, wraps the
//! private half under the root key and replicates it with the token, so ImportKeyMaterial can be
//! completed through any node. A newer call replaces the session (the older token stops working);
//! a session is good for 24 hours.

use serde_json::json;

use super::{fields, ApiError, Ctx, Fields};
use crate::api::params::b64;
use crate::crypto::asymmetric::{self, AsymmetricSpec, RsaPadding};
use crate::crypto::Secret;
use crate::registry::key::{self, ImportSession, KeyOp, KeyRecord, Origin, WrappingAlgorithm};
use crate::registry::RegistryError;

const SESSION_SECS: u64 = 86_400;
/// Largest ValidTo Tencent accepts.
const MAX_VALID_TO: u64 = 2_147_443_200;

fn external(k: &KeyRecord) -> Result<(), ApiError> {
    if k.origin == Origin::External {
        Ok(())
    } else {
        Err(RegistryError::NotExternal.into())
    }
}

pub async fn get_parameters_for_import(ctx: Ctx) -> Result<Fields, ApiError> {
    let key_id = ctx.params.str("KeyId")?;
    let alg_name = ctx.params.str("WrappingAlgorithm")?;
    let algorithm = WrappingAlgorithm::parse(&alg_name).ok_or_else(|| {
        ApiError::invalid(
            "WrappingAlgorithm",
            "must be RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256",
        )
    })?;
    let spec = ctx.params.str("WrappingKeySpec")?;
    if spec != "RSA_2048" {
        return Err(ApiError::invalid("WrappingKeySpec", "must be RSA_2048"));
    }
    ctx.gate().await?;
    let k = ctx.key(&key_id)?;
    external(&k)?;
    let token = uuid::Uuid::new_v4().simple().to_string();
    let node = ctx.node.clone();
    let (kid, tok, uin) = (k.key_id.clone(), token.clone(), ctx.uin);
    let (public_key, wrapped_private) =
        tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            let pair = asymmetric::generate(AsymmetricSpec::Rsa2048)?;
            let wrapped = node.root_key()?.wrap(
                &key::import_aad(&kid, &tok, uin),
                pair.private_pkcs8.expose(),
            )?;
            Ok((pair.public_spki, wrapped))
        })
        .await
        .map_err(|e| ApiError::new("InternalError", e.to_string()))??;
    let valid_to = super::now_s() + SESSION_SECS;
    let session = ImportSession {
        token: token.clone(),
        algorithm,
        public_key: public_key.clone(),
        wrapped_private,
        valid_to,
    };
    let op = KeyOp::SetImportParameters { session };
    ctx.propose_key_op(vec![k.key_id.clone()], op).await?;
    Ok(fields(json!({
        "KeyId": k.key_id,
        "ImportToken": token,
        "PublicKey": b64(&public_key),
        "ParametersValidTo": valid_to,
    })))
}

pub async fn import_key_material(ctx: Ctx) -> Result<Fields, ApiError> {
    let wrapped_material = ctx
        .params
        .base64("EncryptedKeyMaterial", "InvalidParameterValue")?;
    let token = ctx.params.str("ImportToken")?;
    let key_id = ctx.params.str("KeyId")?;
    let valid_to = ctx.params.opt_u64("ValidTo")?.unwrap_or(0);
    let now = super::now_s();
    if valid_to != 0 && (valid_to <= now || valid_to > MAX_VALID_TO) {
        return Err(RegistryError::InvalidValidTo.into());
    }
    ctx.gate().await?;
    let k = ctx.key(&key_id)?;
    external(&k)?;
    let session = k.import.clone().ok_or(RegistryError::ImportTokenInvalid)?;
    if session.token != token {
        return Err(RegistryError::ImportTokenInvalid.into());
    }
    if now > session.valid_to {
        return Err(RegistryError::ImportTokenExpired.into());
    }
    let root = ctx.node.root_key()?;
    let private = root.unwrap(
        &key::import_aad(&k.key_id, &token, k.owner_uin),
        &session.wrapped_private,
    )?;
    let padding = match session.algorithm {
        WrappingAlgorithm::RsaesPkcs1V15 => RsaPadding::Pkcs1v15,
        WrappingAlgorithm::RsaesOaepSha1 => RsaPadding::OaepSha1,
        WrappingAlgorithm::RsaesOaepSha256 => RsaPadding::OaepSha256,
    };
    let material: Secret = tokio::task::spawn_blocking(move || {
        asymmetric::rsa_decrypt(&private, padding, &wrapped_material)
    })
    .await
    .map_err(|e| ApiError::new("InternalError", e.to_string()))?
    .map_err(|_| {
        ApiError::new(
            "InvalidParameter.DecryptMaterialError",
            "EncryptedKeyMaterial could not be unwrapped with the import parameters",
        )
    })?;
    let want = k.algorithm.key_len();
    if material.len() != want {
        // With PKCS#1 v1.5's implicit rejection a wrong wrapping also lands here.
        return Err(ApiError::new(
            "InvalidParameter.DecryptMaterialError",
            format!(
                "the unwrapped material is {} bytes; this region's keys need {} bytes",
                material.len(),
                want
            ),
        ));
    }
    let fingerprint = key::material_fingerprint(material.expose());
    if !k.material_fingerprint.is_empty() && k.material_fingerprint != fingerprint {
        return Err(RegistryError::MaterialNotMatch.into());
    }
    let aad = key::material_aad(&k.key_id, 1, k.owner_uin);
    let material = key::MaterialVersion {
        version: 1,
        created_at: now,
        wrapped: root.wrap(&aad, material.expose())?,
    };
    let op = KeyOp::ImportMaterial {
        token,
        material,
        fingerprint,
        valid_to,
    };
    ctx.propose_key_op(vec![k.key_id], op).await?;
    Ok(Fields::new())
}

pub async fn delete_imported_key_material(ctx: Ctx) -> Result<Fields, ApiError> {
    let key_id = ctx.params.str("KeyId")?;
    let op = KeyOp::DeleteImportedMaterial;
    ctx.propose_key_op(vec![key_id], op).await?;
    Ok(Fields::new())
}
