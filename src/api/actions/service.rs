//! GetServiceStatus, GetRegions, ListAlgorithms.

use serde_json::json;

use super::{fields, ApiError, Ctx, Fields};

pub async fn get_service_status(ctx: Ctx) -> Result<Fields, ApiError> {
    ctx.gate().await?;
    let used = ctx
        .node
        .state
        .read()
        .registry
        .keys()
        .count(&ctx.region, ctx.uin);
    Ok(fields(json!({
        "ServiceEnabled": true,
        "InvalidType": 1,
        "UserLevel": 0,
        "ProExpireTime": 0,
        "ProRenewFlag": 0,
        "ProResourceId": "",
        "ExclusiveVSMEnabled": false,
        "ExclusiveHSMEnabled": false,
        "SubscriptionInfo": "raftkms",
        "CmkUserCount": used,
        "CmkLimit": ctx.node.config.kms.cmk_limit,
        "ExclusiveHSMList": [],
        "IsAllowedDataKeyHosted": false,
        "DataKeyLimit": 0,
        "FreeDataKeyLimit": 0,
        "DataKeyUsedCount": 0,
        "SyncTaskList": [],
        "IsAllowedSync": false,
    })))
}

pub async fn get_regions(ctx: Ctx) -> Result<Fields, ApiError> {
    Ok(fields(
        json!({ "Regions": ctx.node.config.served_regions() }),
    ))
}

pub async fn list_algorithms(ctx: Ctx) -> Result<Fields, ApiError> {
    use crate::registry::key::KeyUsage;
    let alg = ctx.node.config.symmetric_algorithm(&ctx.region);
    let entry = |u: KeyUsage| json!({ "KeyUsage": u.as_str(), "Algorithm": u.asymmetric_spec().map(|s| s.display_name()).unwrap_or("") });
    let decrypt: Vec<_> = KeyUsage::ALL
        .into_iter()
        .filter(|u| u.is_asymmetric_decrypt())
        .map(entry)
        .collect();
    let sign: Vec<_> = KeyUsage::ALL
        .into_iter()
        .filter(|u| u.is_sign_verify())
        .map(entry)
        .collect();
    Ok(fields(json!({
        "SymmetricAlgorithms": [{ "KeyUsage": "ENCRYPT_DECRYPT", "Algorithm": alg.display_name() }],
        "AsymmetricAlgorithms": decrypt,
        "AsymmetricSignVerifyAlgorithms": sign,
    })))
}
