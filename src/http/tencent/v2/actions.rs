//! The nine actions of the legacy KMS API (`/v2/index.php`), each over the same core operation as
//! its API 3.0 counterpart, with the legacy parameter and field names (lower camel case).

use serde_json::{json, Map, Value};

use crate::crypto::Secret;
use crate::http::tencent::error_code::ApiError;
use crate::http::tencent::params::{b64, canonical_context};
use crate::http::tencent::Request;
use crate::kms::keys::{CreateKey, CreatedKey};
use crate::kms::rate::ActionClass;
use crate::registry::key::{self, KeyRecord, KeyState, KeyUsage, Origin};

/// The fields of an answer (beside `code`, `message`, `codeDesc`, `requestId`).
pub type Fields = Map<String, Value>;

/// Every action the legacy API has, with the API 3.0 action its policies and audit records use.
pub const ACTIONS: [(&str, &str); 9] = [
    ("CreateKey", "CreateKey"),
    ("ListKey", "ListKeys"),
    ("GetKeyAttributes", "DescribeKey"),
    ("SetKeyAttributes", "UpdateAlias"),
    ("EnableKey", "EnableKey"),
    ("DisableKey", "DisableKey"),
    ("Encrypt", "Encrypt"),
    ("Decrypt", "Decrypt"),
    ("GenerateDataKey", "GenerateDataKey"),
];

/// The API 3.0 name of a legacy action, or `None` for an action the legacy API does not have.
pub fn policy_name(action: &str) -> Option<&'static str> {
    ACTIONS
        .iter()
        .find(|(v2, _)| *v2 == action)
        .map(|(_, v3)| *v3)
}

/// The rate-limit class of a legacy action.
pub fn class_of(action: &str) -> ActionClass {
    match action {
        "Encrypt" | "Decrypt" | "GenerateDataKey" => ActionClass::Crypto,
        _ => ActionClass::Management,
    }
}

/// Legacy aliases are 1–32 characters (and within the registry's alias rules).
const MAX_ALIAS: usize = 32;
/// Plaintexts are at most 4 KiB.
const MAX_PLAINTEXT: usize = 4096;
/// `encryptionContext` is at most 8192 characters.
const MAX_CONTEXT: usize = 8192;
/// `numberOfBytes` is 1 to 1024.
const MAX_DATA_KEY: u64 = 1024;
/// ListKey's largest page.
const MAX_LIMIT: u64 = 1000;

/// Runs a legacy action (`Action` already checked against [`ACTIONS`]).
pub async fn dispatch(action: &str, r: &Request<'_>) -> Result<Fields, ApiError> {
    match action {
        "CreateKey" => create_key(r).await,
        "ListKey" => list_key(r).await,
        "GetKeyAttributes" => get_key_attributes(r).await,
        "SetKeyAttributes" => set_key_attributes(r).await,
        "EnableKey" => {
            let id = r.params.key_id("keyId")?;
            r.kms.enable_keys(&r.scope, vec![id]).await?;
            Ok(Fields::new())
        }
        "DisableKey" => {
            let id = r.params.key_id("keyId")?;
            r.kms.disable_keys(&r.scope, vec![id]).await?;
            Ok(Fields::new())
        }
        "Encrypt" => encrypt(r).await,
        "Decrypt" => decrypt(r).await,
        "GenerateDataKey" => generate_data_key(r).await,
        other => Err(ApiError::new(
            "InvalidAction",
            format!("action is not existed: `{other}`"),
        )),
    }
}

fn fields(v: Value) -> Fields {
    match v {
        Value::Object(m) => m,
        _ => Fields::new(),
    }
}

/// The legacy name of a key usage: `ENCRYPT/DECRYPT` for symmetric keys, else the API 3.0 name.
fn usage_name(u: KeyUsage) -> &'static str {
    match u {
        KeyUsage::EncryptDecrypt => "ENCRYPT/DECRYPT",
        other => other.as_str(),
    }
}

/// `keyMetadata` of a new key (answered from what creation returned: this node may not have
/// applied the key yet) or of a key read back. `deleteTime` is always present (the legacy SDKs
/// read it): the deletion date of a key pending deletion, else 0.
fn key_metadata(k: &CreatedKey, delete_time: u64) -> Value {
    json!({
        "keyId": k.key_id,
        "alias": k.alias,
        "createTime": k.created_at,
        "description": k.description,
        "keyState": k.state.as_str(),
        "keyUsage": usage_name(k.usage),
        "type": 1,
        "deleteTime": delete_time,
    })
}

/// `keyMetadata` of a key read back.
fn record_metadata(k: &KeyRecord) -> Value {
    let delete_time = if k.state == KeyState::PendingDelete {
        k.deletion_date
    } else {
        0
    };
    let created = CreatedKey {
        key_id: k.key_id.clone(),
        alias: k.alias.clone(),
        description: k.description.clone(),
        created_at: k.created_at,
        state: k.state,
        usage: k.usage,
        tagged: false,
    };
    key_metadata(&created, delete_time)
}

fn alias(r: &Request<'_>, required: bool) -> Result<Option<String>, ApiError> {
    let a = match r.params.opt_str("alias")? {
        Some(a) if !a.is_empty() => a,
        _ if required => return Err(ApiError::missing("alias")),
        _ => return Ok(None),
    };
    if a.chars().count() > MAX_ALIAS {
        return Err(ApiError::new(
            "InvalidParameterValue.InvalidAlias",
            format!("`alias` must be 1 to {MAX_ALIAS} characters"),
        ));
    }
    key::validate_alias(&a)?;
    Ok(Some(a))
}

async fn create_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    let alias = alias(r, true)?.unwrap_or_default();
    let description = r.params.opt_str("description")?.unwrap_or_default();
    key::validate_description(&description)?;
    match r.params.opt_str("keyUsage")?.as_deref() {
        None | Some("") | Some("ENCRYPT/DECRYPT") | Some("ENCRYPT_DECRYPT") => {}
        Some(u) => {
            return Err(ApiError::new(
                "InvalidParameterValue.InvalidKeyUsage",
                format!("string of keyUsage must be ENCRYPT/DECRYPT, not `{u}`"),
            ))
        }
    }
    match r.params.opt_u64("type")? {
        None | Some(1) => {}
        Some(2) => {
            return Err(ApiError::new(
                "UnsupportedOperation",
                "type 2 (keys from a quantum random source) is not offered by raftkms; use type 1",
            ))
        }
        Some(t) => return Err(ApiError::invalid("type", format!("{t} is not 1"))),
    }
    let req = CreateKey {
        alias,
        description,
        usage: KeyUsage::EncryptDecrypt,
        origin: Origin::TencentKms,
        tags: Vec::new(),
    };
    let k = r.kms.create_key(&r.scope, req).await?;
    Ok(fields(json!({ "keyMetadata": key_metadata(&k, 0) })))
}

async fn list_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    let offset = r.params.opt_u64("offset")?.unwrap_or(0);
    let limit = r.params.opt_u64("limit")?.unwrap_or(10);
    if limit > MAX_LIMIT {
        return Err(ApiError::invalid(
            "limit",
            format!("must be at most {MAX_LIMIT}"),
        ));
    }
    let page = r
        .kms
        .list_keys(
            &r.scope,
            usize::try_from(offset).unwrap_or(usize::MAX),
            limit as usize,
            false,
        )
        .await?;
    let keys: Vec<Value> = page.items.iter().map(|id| json!({ "keyId": id })).collect();
    Ok(fields(json!({ "keys": keys, "totalCount": page.total })))
}

async fn get_key_attributes(r: &Request<'_>) -> Result<Fields, ApiError> {
    let id = r.params.key_id("keyId")?;
    let d = r.kms.describe_key(&r.scope, &id).await?;
    Ok(fields(json!({ "keyMetadata": record_metadata(&d.key) })))
}

/// Only the alias can be set; an empty or absent alias changes nothing.
async fn set_key_attributes(r: &Request<'_>) -> Result<Fields, ApiError> {
    let id = r.params.key_id("keyId")?;
    match alias(r, false)? {
        Some(a) => r.kms.update_alias(&r.scope, id, a).await?,
        // Nothing to change: still the key must exist and the caller may read it.
        None => {
            r.kms.describe_key(&r.scope, &id).await?;
        }
    }
    Ok(Fields::new())
}

fn context(r: &Request<'_>) -> Result<Vec<u8>, ApiError> {
    let Some(text) = r
        .params
        .opt_str("encryptionContext")?
        .filter(|t| !t.is_empty())
    else {
        return Ok(Vec::new());
    };
    if text.chars().count() > MAX_CONTEXT {
        return Err(ApiError::new(
            "InvalidParameterValue.InvalidEncryptionContext",
            format!("illegal encryptionContext: at most {MAX_CONTEXT} characters"),
        ));
    }
    canonical_context(&text).ok_or_else(|| {
        ApiError::new(
            "InvalidParameterValue.InvalidEncryptionContext",
            "illegal encryptionContext: it must be a JSON object, e.g. {\"purpose\":\"backup\"}",
        )
    })
}

async fn encrypt(r: &Request<'_>) -> Result<Fields, ApiError> {
    let id = r.params.key_id("keyId")?;
    let plaintext = Secret::new(
        r.params
            .base64("plaintext", "InvalidParameterValue.InvalidPlaintext")?,
    );
    if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
        return Err(ApiError::new(
            "InvalidParameterValue.InvalidPlaintext",
            format!("`plaintext` must decode to 1 to {MAX_PLAINTEXT} bytes"),
        ));
    }
    let context = context(r)?;
    let sealed = r.kms.encrypt(&r.scope, &id, &plaintext, &context).await?;
    Ok(fields(
        json!({ "keyId": sealed.key_id, "ciphertextBlob": b64(&sealed.ciphertext) }),
    ))
}

async fn decrypt(r: &Request<'_>) -> Result<Fields, ApiError> {
    let blob = r
        .params
        .base64("ciphertextBlob", "InvalidParameterValue.InvalidCiphertext")?;
    let context = context(r)?;
    let opened = r.kms.decrypt(&r.scope, &blob, &context).await?;
    Ok(fields(
        json!({ "keyId": opened.key_id, "plaintext": b64(opened.plaintext.expose()) }),
    ))
}

/// `numberOfBytes` (1–1024) wins over `keySpec` (`AES_128` or `AES_256`, the default).
async fn generate_data_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    let id = r.params.key_id("keyId")?;
    let len = match (
        r.params.opt_u64("numberOfBytes")?,
        r.params.opt_str("keySpec")?.as_deref(),
    ) {
        (Some(n), _) if (1..=MAX_DATA_KEY).contains(&n) => n as usize,
        (Some(_), _) => {
            return Err(ApiError::invalid(
                "numberOfBytes",
                format!("must be 1 to {MAX_DATA_KEY}"),
            ))
        }
        (None, None | Some("") | Some("AES_256")) => 32,
        (None, Some("AES_128")) => 16,
        (None, Some(other)) => {
            return Err(ApiError::new(
                "InvalidParameterValue.InvalidKeySpec",
                format!("keySpec value error: `{other}` is not AES_128 or AES_256"),
            ))
        }
    };
    let context = context(r)?;
    let dk = r
        .kms
        .generate_data_key(&r.scope, &id, len, &context)
        .await?;
    Ok(fields(json!({
        "keyId": dk.key_id,
        "plaintext": b64(dk.plaintext.expose()),
        "ciphertextBlob": b64(&dk.ciphertext),
    })))
}
