//! create-key, describe-key, list-keys, enable-key, disable-key, schedule-key-deletion,
//! cancel-key-deletion, update-key-alias, update-key-description.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{Fields, HwError, Request};
use crate::crypto::SymmetricAlgorithm;
use crate::http::huawei::fields;
use crate::kms::keys::{CreateKey, KeyDescription, KeyFilter};
use crate::registry::key::{self, KeyRecord, KeyState, KeyUsage, Origin};

/// Huawei's `key_state`: "2" enabled, "3" disabled (archived keys too: they encrypt nothing),
/// "4" pending deletion, "5" pending import.
pub(super) fn state_code(s: KeyState) -> &'static str {
    match s {
        KeyState::Enabled => "2",
        KeyState::Disabled | KeyState::Archived => "3",
        KeyState::PendingDelete => "4",
        KeyState::PendingImport => "5",
    }
}

/// Huawei's `key_spec` of a key.
pub(super) fn key_spec(k: &KeyRecord) -> &'static str {
    use crate::crypto::asymmetric::AsymmetricSpec::*;
    match k.usage.asymmetric_spec() {
        None => match k.algorithm {
            SymmetricAlgorithm::Aes256Gcm => "AES_256",
            SymmetricAlgorithm::Sm4Gcm => "SM4",
        },
        Some(Rsa2048) => "RSA_2048",
        Some(Rsa3072) => "RSA_3072",
        Some(Rsa4096) => "RSA_4096",
        Some(Sm2) => "SM2",
        Some(EccP256) => "EC_P256",
        Some(EccP384) => "EC_P384",
        Some(Secp256k1) => "SECP256K1",
        Some(MlDsa65) => "ML_DSA_65",
        Some(MlKem768) => "ML_KEM_768",
    }
}

/// Huawei's `key_usage`.
pub(super) fn usage_name(u: KeyUsage) -> &'static str {
    if u.is_sign_verify() {
        "SIGN_VERIFY"
    } else {
        "ENCRYPT_DECRYPT"
    }
}

/// The usage of a new key of `spec` and `usage` in a region whose symmetric keys are `sym`.
fn new_usage(
    spec: &str,
    usage: Option<&str>,
    sym: SymmetricAlgorithm,
) -> Result<KeyUsage, HwError> {
    let sign = match usage {
        None | Some("") => !matches!(spec, "AES_256" | "SM4"),
        Some("SIGN_VERIFY") => true,
        Some("ENCRYPT_DECRYPT") => false,
        Some(other) => {
            return Err(HwError::invalid(
                "key_usage",
                format!("`{other}` is not ENCRYPT_DECRYPT or SIGN_VERIFY"),
            ))
        }
    };
    let u =
        match (spec, sign, sym) {
            ("AES_256", false, SymmetricAlgorithm::Aes256Gcm)
            | ("SM4", false, SymmetricAlgorithm::Sm4Gcm) => KeyUsage::EncryptDecrypt,
            ("RSA_2048", false, _) => KeyUsage::AsymmetricDecryptRsa2048,
            ("RSA_2048", true, _) => KeyUsage::AsymmetricSignVerifyRsa2048,
            ("RSA_3072", true, _) => KeyUsage::AsymmetricSignVerifyRsa3072,
            ("RSA_4096", true, _) => KeyUsage::AsymmetricSignVerifyRsa4096,
            ("SM2", false, _) => KeyUsage::AsymmetricDecryptSm2,
            ("SM2", true, _) => KeyUsage::AsymmetricSignVerifySm2,
            ("EC_P256", true, _) => KeyUsage::AsymmetricSignVerifyEcc,
            ("EC_P384", true, _) => KeyUsage::AsymmetricSignVerifyEcdsa384,
            ("SECP256K1", true, _) => KeyUsage::AsymmetricSignVerifySecp256k1,
            _ => {
                return Err(HwError::new(
                    StatusCode::BAD_REQUEST,
                    "KMS.1110",
                    format!(
                    "Invalid alg_type: key_spec `{spec}` with {} is not offered in this region \
                     (symmetric keys here are {}; see docs/api.md, Huawei)",
                    if sign { "SIGN_VERIFY" } else { "ENCRYPT_DECRYPT" },
                    match sym {
                        SymmetricAlgorithm::Aes256Gcm => "AES_256",
                        SymmetricAlgorithm::Sm4Gcm => "SM4",
                    }
                ),
                ))
            }
        };
    Ok(u)
}

/// *KeyDetails*: every field a string; dates in milliseconds, as Huawei sends them.
pub(super) fn key_details(d: &KeyDescription) -> Value {
    let k = &d.key;
    json!({
        "key_id": k.key_id,
        "domain_id": k.owner_uin.to_string(),
        "key_alias": k.alias,
        "realm": k.region,
        "key_spec": key_spec(k),
        "key_usage": usage_name(k.usage),
        "key_description": k.description,
        "creation_date": (k.created_at.saturating_mul(1000)).to_string(),
        "scheduled_deletion_date": if k.state == KeyState::PendingDelete {
            (k.deletion_date.saturating_mul(1000)).to_string()
        } else {
            String::new()
        },
        "key_state": state_code(k.state),
        "default_key_flag": if d.product.is_some() { "1" } else { "0" },
        "key_type": if k.usage.asymmetric_spec().is_some() { "2" } else { "1" },
        "expiration_time": if k.material_valid_to > 0 { (k.material_valid_to.saturating_mul(1000)).to_string() } else { String::new() },
        "origin": match k.origin { Origin::TencentKms => "kms", Origin::External => "external" },
        "key_rotation_enabled": if k.rotation_enabled { "true" } else { "false" },
        "sys_enterprise_project_id": "0",
        "keystore_id": "0",
    })
}

/// An alias within both dialects' rules: Huawei reserves the suffix `/default` for the keys
/// cloud services create; the registry's rules (shared by every dialect) are stricter than
/// Huawei's (no `:` or `/`), so a key keeps one alias whichever API reads it.
fn alias(r: &Request<'_>) -> Result<String, HwError> {
    let a = r.body.str("key_alias")?;
    if a.ends_with("/default") {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.1101",
            "Invalid key_alias: the suffix /default is reserved for the default keys of cloud services.",
        ));
    }
    key::validate_alias(&a).map_err(|_| {
        HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.1101",
            "Invalid key_alias: 1 to 60 letters, digits, `-` and `_`, starting with a letter or digit \
             (raftkms keys share one alias across its APIs, so `:` and `/` are not allowed).",
        )
    })?;
    Ok(a)
}

fn description(r: &Request<'_>, required: bool) -> Result<String, HwError> {
    let d = match r.body.opt_str("key_description")? {
        Some(d) => d,
        None if required => return Err(HwError::missing("key_description")),
        None => String::new(),
    };
    if d.chars().count() > 255 {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.1103",
            "Invalid key_description: at most 255 characters.",
        ));
    }
    Ok(d)
}

pub async fn create_key(r: &Request<'_>) -> Result<Fields, HwError> {
    let alias = alias(r)?;
    let description = description(r, false)?;
    let usage_text = r.body.opt_str("key_usage")?;
    let origin = match r.body.opt_str("origin")?.as_deref() {
        None | Some("") | Some("kms") => Origin::TencentKms,
        Some("external") => Origin::External,
        Some(o) => {
            return Err(HwError::invalid(
                "origin",
                format!("`{o}` is not kms or external"),
            ))
        }
    };
    for (name, default) in [("keystore_id", "0"), ("enterprise_project_id", "0")] {
        if let Some(v) = r
            .body
            .opt_str(name)?
            .filter(|v| !v.is_empty() && v != default)
        {
            return Err(HwError::invalid(
                name,
                format!("`{v}`: raftkms has only the default ({default})"),
            ));
        }
    }
    let sym = r.kms.symmetric_algorithm(&r.scope).await?;
    // Absent: the region's symmetric keys (Huawei's default, AES_256, where that is what the
    // region makes; SM4 in regions configured for SM4).
    let spec = match r.body.opt_str("key_spec")?.filter(|s| !s.is_empty()) {
        Some(s) => s,
        None => match sym {
            SymmetricAlgorithm::Aes256Gcm => "AES_256".into(),
            SymmetricAlgorithm::Sm4Gcm => "SM4".into(),
        },
    };
    let usage = new_usage(&spec, usage_text.as_deref(), sym)?;
    let req = CreateKey {
        alias,
        description,
        usage,
        origin,
        tags: Vec::new(),
    };
    let k = r.kms.create_key(&r.scope, req).await?;
    Ok(fields(json!({ "key_info": {
        "key_id": k.key_id,
        "domain_id": r.scope.caller().uin.to_string(),
        "region_id": r.scope.region(),
    }})))
}

pub async fn describe_key(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    let d = r.kms.describe_key(&r.scope, &id).await?;
    Ok(fields(json!({ "key_info": key_details(&d) })))
}

/// `limit` (default 100, 1–1000) and `marker` (a 0-based offset; `next_marker` while
/// `truncated` is "true"); `key_state` "1"–"5"; `key_spec` a spec or `ALL` (absent: all).
pub async fn list_keys(r: &Request<'_>) -> Result<Fields, HwError> {
    let limit = r
        .body
        .opt_u64("limit")
        .map_err(|_| bad_list("KMS.1601", "Invalid limit."))?
        .unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad_list("KMS.1601", "Invalid limit: 1 to 1000."));
    }
    let marker = r
        .body
        .opt_u64("marker")
        .map_err(|_| bad_list("KMS.1602", "marker must be greater than or equals 0."))?
        .unwrap_or(0);
    let state = match r.body.opt_str("key_state")?.as_deref() {
        None | Some("") => None,
        Some("1") => Some(None),
        Some("2") => Some(Some(KeyState::Enabled)),
        Some("3") => Some(Some(KeyState::Disabled)),
        Some("4") => Some(Some(KeyState::PendingDelete)),
        Some("5") => Some(Some(KeyState::PendingImport)),
        Some(s) => {
            return Err(HwError::invalid(
                "key_state",
                format!("`{s}` is not 1 to 5"),
            ))
        }
    };
    let spec = r
        .body
        .opt_str("key_spec")?
        .filter(|s| !s.is_empty() && s != "ALL");
    // State "1" (pending activation): raftkms keys are usable once created, so none.
    let all = if state == Some(None) {
        Vec::new()
    } else {
        let filter = KeyFilter {
            state: state.flatten(),
            ..KeyFilter::default()
        };
        all_keys(r, filter).await?
    };
    let matching: Vec<&KeyDescription> = all
        .iter()
        .filter(|d| spec.as_deref().is_none_or(|s| key_spec(&d.key) == s))
        .collect();
    let total = matching.len();
    let start = usize::try_from(marker).unwrap_or(usize::MAX).min(total);
    let page: Vec<&KeyDescription> = matching
        .into_iter()
        .skip(start)
        .take(limit as usize)
        .collect();
    let end = start + page.len();
    let truncated = end < total;
    Ok(fields(json!({
        "keys": page.iter().map(|d| d.key.key_id.clone()).collect::<Vec<_>>(),
        "key_details": page.iter().map(|d| key_details(d)).collect::<Vec<_>>(),
        "next_marker": if truncated { end.to_string() } else { String::new() },
        "truncated": if truncated { "true" } else { "false" },
        "total": total,
    })))
}

/// Every key of the account in the region that `filter` selects: the user's own, then the
/// default keys cloud services created for them (the core lists the two apart).
pub(super) async fn all_keys(
    r: &Request<'_>,
    filter: KeyFilter,
) -> Result<Vec<KeyDescription>, HwError> {
    let mut all = Vec::new();
    for granted in [false, true] {
        let f = KeyFilter {
            offset: 0,
            limit: usize::MAX,
            granted,
            ..filter.clone()
        };
        all.extend(r.kms.list_key_details(&r.scope, f).await?.items);
    }
    Ok(all)
}

fn bad_list(code: &'static str, msg: &str) -> HwError {
    HwError::new(StatusCode::BAD_REQUEST, code, msg)
}

/// The key as this request sees it, for the state checks Huawei makes that API 3.0 does not
/// (enabling an enabled key is an error here, a no-op there).
async fn current(r: &Request<'_>, id: &str) -> Result<KeyDescription, HwError> {
    Ok(r.kms.describe_key(&r.scope, id).await?)
}

fn default_key(d: &KeyDescription) -> Result<(), HwError> {
    if d.product.is_some() {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.0211",
            "Cannot perform this operation on Default Master Keys (a key a cloud service created).",
        ));
    }
    Ok(())
}

fn key_status(id: &str, state: &str) -> Fields {
    fields(json!({ "key_info": { "key_id": id, "key_state": state } }))
}

pub async fn enable_key(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    let d = current(r, &id).await?;
    if d.key.state != KeyState::Disabled {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.1201",
            "The key is not disabled.",
        ));
    }
    r.kms.enable_keys(&r.scope, vec![id.clone()]).await?;
    Ok(key_status(&id, "2"))
}

pub async fn disable_key(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    let d = current(r, &id).await?;
    default_key(&d)?;
    if d.key.state != KeyState::Enabled {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.1301",
            "The key is not enabled.",
        ));
    }
    r.kms.disable_keys(&r.scope, vec![id.clone()]).await?;
    Ok(key_status(&id, "3"))
}

/// `pending_days`: Huawei allows 7–1096; a raftkms key is pending deletion 7–30 days whichever
/// API schedules it (the registry's rule, shared by every dialect), so 31–1096 is refused with
/// Huawei's code for the range.
pub async fn schedule_key_deletion(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    let days = r.body.u64("pending_days")?;
    if !(7..=30).contains(&days) {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.1401",
            "Set the pending deletion period between 7 to 30 days (raftkms keeps one range for \
             every API; Huawei's own service allows up to 1096).",
        ));
    }
    let d = current(r, &id).await?;
    default_key(&d)?;
    if d.key.state == KeyState::PendingDelete {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.1402",
            "The key is already in Pending deletion state.",
        ));
    }
    // Huawei schedules an enabled key's deletion directly; raftkms, whichever API asks, wants
    // the key disabled first (one atomic change per request: disabling on the caller's behalf
    // would be a second write, under another permission).
    if d.key.state == KeyState::Enabled {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.0308",
            "Invalid parameter: disable the key (disable-key) before scheduling its deletion; \
             raftkms keeps one rule for every API.",
        ));
    }
    r.kms
        .schedule_deletion(&r.scope, id.clone(), days as u32)
        .await?;
    Ok(fields(json!({ "key_id": id, "key_state": "4" })))
}

/// The key comes back disabled, or pending import if it has no material (the registry's rule); the state is computed from the key as read before, since this node may not
/// have applied the change yet when it answers.
pub async fn cancel_key_deletion(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    let d = current(r, &id).await?;
    if d.key.state != KeyState::PendingDelete {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.1501",
            "The key is not in Pending deletion state.",
        ));
    }
    r.kms.cancel_deletion(&r.scope, id.clone()).await?;
    let state = if d.key.versions.is_empty() { "5" } else { "3" };
    Ok(fields(json!({ "key_id": id, "key_state": state })))
}

pub async fn update_key_alias(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    let alias = alias(r)?;
    default_key(&current(r, &id).await?)?;
    r.kms
        .update_alias(&r.scope, id.clone(), alias.clone())
        .await?;
    Ok(fields(
        json!({ "key_info": { "key_id": id, "key_alias": alias } }),
    ))
}

pub async fn update_key_description(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    let d = description(r, true)?;
    default_key(&current(r, &id).await?)?;
    r.kms
        .update_description(&r.scope, id.clone(), d.clone())
        .await?;
    Ok(fields(
        json!({ "key_info": { "key_id": id, "key_description": d } }),
    ))
}
