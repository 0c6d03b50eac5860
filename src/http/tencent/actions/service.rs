//! GetServiceStatus, GetRegions, ListAlgorithms.

use serde_json::json;

use super::{fields, ApiError, Fields, Request};
use crate::registry::key::KeyUsage;

pub async fn get_service_status(r: &Request<'_>) -> Result<Fields, ApiError> {
    let quota = r.kms.service_status(&r.scope).await?;
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
        "CmkUserCount": quota.used,
        "CmkLimit": quota.limit,
        "ExclusiveHSMList": [],
        "IsAllowedDataKeyHosted": true,
        "DataKeyLimit": quota.data_key_limit,
        "FreeDataKeyLimit": quota.data_key_limit,
        "DataKeyUsedCount": quota.data_keys_used,
        "SyncTaskList": [],
        "IsAllowedSync": false,
    })))
}

pub async fn get_regions(r: &Request<'_>) -> Result<Fields, ApiError> {
    let regions = r.kms.regions(&r.scope).await?;
    Ok(fields(json!({ "Regions": regions })))
}

pub async fn list_algorithms(r: &Request<'_>) -> Result<Fields, ApiError> {
    let alg = r.kms.symmetric_algorithm(&r.scope).await?;
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
