//! The Huawei operations: [`route`] finds the operation of a method and path, [`dispatch`] runs
//! its adapter. Each adapter parses the snake_case body into a typed request of the core, calls
//! one core operation (under the API 3.0 action name its policies use) and renders Huawei's
//! response fields. docs/api.md lists which of the SDK's 75 operations are served and why the
//! others are not.

mod crypto;
mod keys;
mod service;
mod signing;

use axum::http::{Method, StatusCode};
use serde_json::{Map, Value};

use super::error::HwError;
use super::Request;
use crate::kms::rate::ActionClass;

/// An operation's response fields.
pub type Fields = Map<String, Value>;

/// One served operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// The SDK's path verb (or tag path shape), for logs and docs.
    pub name: &'static str,
    /// The API 3.0 action whose policy statements govern it (`kms:<name>`).
    pub policy_action: &'static str,
    pub class: ActionClass,
}

const fn op(name: &'static str, policy_action: &'static str, class: ActionClass) -> Op {
    Op {
        name,
        policy_action,
        class,
    }
}

use ActionClass::{Crypto as C, Management as M};

/// The `POST /v1.0/{project_id}/kms/<verb>` operations.
pub const POST_VERBS: [Op; 27] = [
    op("create-key", "CreateKey", M),
    op("describe-key", "DescribeKey", M),
    op("list-keys", "ListKeyDetail", M),
    op("enable-key", "EnableKey", M),
    op("disable-key", "DisableKey", M),
    op("schedule-key-deletion", "ScheduleKeyDeletion", M),
    op("cancel-key-deletion", "CancelKeyDeletion", M),
    op("update-key-alias", "UpdateAlias", M),
    op("update-key-description", "UpdateKeyDescription", M),
    op("encrypt-data", "Encrypt", C),
    op("decrypt-data", "Decrypt", C),
    op("create-datakey", "GenerateDataKey", C),
    op("create-datakey-without-plaintext", "GenerateDataKey", C),
    op("encrypt-datakey", "Encrypt", C),
    op("decrypt-datakey", "Decrypt", C),
    op("gen-random", "GenerateRandom", C),
    op("enable-key-rotation", "EnableKeyRotation", M),
    op("disable-key-rotation", "DisableKeyRotation", M),
    op("update-key-rotation-interval", "EnableKeyRotation", M),
    op("get-key-rotation-status", "GetKeyRotationStatus", M),
    op("rotate-on-demand", "RotateKey", M),
    op("sign", "SignByAsymmetricKey", C),
    op("verify", "VerifyByAsymmetricKey", C),
    op("get-publickey", "GetPublicKey", M),
    op("get-parameters-for-import", "GetParametersForImport", M),
    op("import-key-material", "ImportKeyMaterial", M),
    op(
        "delete-imported-key-material",
        "DeleteImportedKeyMaterial",
        M,
    ),
];

const LIST_TAGS: Op = op("tags", "ListKeyDetail", M);
const BY_TAGS: Op = op("resource_instances/action", "ListKeyDetail", M);
const USER_INSTANCES: Op = op("user-instances", "GetServiceStatus", M);
const USER_QUOTAS: Op = op("user-quotas", "GetServiceStatus", M);
const SHOW_TAGS: Op = op("{key_id}/tags GET", "GetResourceTags", M);
const CREATE_TAG: Op = op("{key_id}/tags POST", "ModifyResourceTags", M);
const BATCH_TAGS: Op = op("{key_id}/tags/action", "ModifyResourceTags", M);
const DELETE_TAG: Op = op("{key_id}/tags/{key} DELETE", "ModifyResourceTags", M);

/// The operation of `method` on the path after `/kms/`; unknown paths are `KMS.0201`, a known
/// path with another method `KMS.0215`.
pub fn route(method: &Method, path: &[String]) -> Result<Op, HwError> {
    let found = match (path.len(), path.first().map(String::as_str)) {
        (1, Some(verb)) => {
            if let Some(o) = POST_VERBS.iter().find(|o| o.name == verb) {
                Some((*o, *method == Method::POST))
            } else {
                match verb {
                    "user-instances" => Some((USER_INSTANCES, *method == Method::GET)),
                    "user-quotas" => Some((USER_QUOTAS, *method == Method::GET)),
                    "tags" => Some((LIST_TAGS, *method == Method::GET)),
                    _ => None,
                }
            }
        }
        (2, Some("resource_instances")) if path[1] == "action" => {
            Some((BY_TAGS, *method == Method::POST))
        }
        (2, Some(_)) if path[1] == "tags" => {
            if *method == Method::GET {
                Some((SHOW_TAGS, true))
            } else {
                Some((CREATE_TAG, *method == Method::POST))
            }
        }
        (3, Some(_)) if path[1] == "tags" && path[2] == "action" && *method == Method::POST => {
            Some((BATCH_TAGS, true))
        }
        (3, Some(_)) if path[1] == "tags" => Some((DELETE_TAG, *method == Method::DELETE)),
        _ => None,
    };
    match found {
        Some((o, true)) => Ok(o),
        Some((_, false)) => Err(HwError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "KMS.0215",
            format!("Request method not supported: {method}."),
        )),
        None => Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.0201",
            format!(
                "Invalid request URL: `{}` is not an operation raftkms serves (docs/api.md, Huawei).",
                path.join("/").chars().take(128).collect::<String>()
            ),
        )),
    }
}

/// The API 3.0 action an operation is authorized as. encrypt-data and decrypt-data with an
/// asymmetric `encryption_algorithm` are a public-key encryption and a private-key decryption:
/// `GetPublicKey`, and `AsymmetricRsaDecrypt` / `AsymmetricSm2Decrypt`, as in API 3.0 (a caller
/// allowed only symmetric `Decrypt` does not decrypt with private keys).
pub fn policy_action(op: Op, body: &super::params::Body) -> &'static str {
    let algorithm = body
        .value("encryption_algorithm")
        .and_then(Value::as_str)
        .unwrap_or("");
    match (op.name, algorithm) {
        ("decrypt-data", "RSAES_OAEP_SHA_256") => "AsymmetricRsaDecrypt",
        ("decrypt-data", "SM2_ENCRYPT") => "AsymmetricSm2Decrypt",
        ("encrypt-data", "RSAES_OAEP_SHA_256" | "SM2_ENCRYPT") => "GetPublicKey",
        _ => op.policy_action,
    }
}

/// Runs an operation.
pub async fn dispatch(op: Op, r: &Request<'_>) -> Result<Fields, HwError> {
    match op.name {
        "create-key" => keys::create_key(r).await,
        "describe-key" => keys::describe_key(r).await,
        "list-keys" => keys::list_keys(r).await,
        "enable-key" => keys::enable_key(r).await,
        "disable-key" => keys::disable_key(r).await,
        "schedule-key-deletion" => keys::schedule_key_deletion(r).await,
        "cancel-key-deletion" => keys::cancel_key_deletion(r).await,
        "update-key-alias" => keys::update_key_alias(r).await,
        "update-key-description" => keys::update_key_description(r).await,
        "encrypt-data" => crypto::encrypt_data(r).await,
        "decrypt-data" => crypto::decrypt_data(r).await,
        "create-datakey" => crypto::create_datakey(r, true).await,
        "create-datakey-without-plaintext" => crypto::create_datakey(r, false).await,
        "encrypt-datakey" => crypto::encrypt_datakey(r).await,
        "decrypt-datakey" => crypto::decrypt_datakey(r).await,
        "gen-random" => crypto::gen_random(r).await,
        "enable-key-rotation" => service::enable_key_rotation(r).await,
        "disable-key-rotation" => service::disable_key_rotation(r).await,
        "update-key-rotation-interval" => service::update_key_rotation_interval(r).await,
        "get-key-rotation-status" => service::get_key_rotation_status(r).await,
        "rotate-on-demand" => service::rotate_on_demand(r).await,
        "sign" => signing::sign(r).await,
        "verify" => signing::verify(r).await,
        "get-publickey" => signing::get_publickey(r).await,
        "get-parameters-for-import" => signing::get_parameters_for_import(r).await,
        "import-key-material" => signing::import_key_material(r).await,
        "delete-imported-key-material" => signing::delete_imported_key_material(r).await,
        "user-instances" => service::user_instances(r).await,
        "user-quotas" => service::user_quotas(r).await,
        "tags" => service::list_tags(r).await,
        "resource_instances/action" => service::list_by_tags(r).await,
        n if n == SHOW_TAGS.name => service::show_tags(r).await,
        n if n == CREATE_TAG.name => service::create_tag(r).await,
        n if n == BATCH_TAGS.name => service::batch_tags(r).await,
        n if n == DELETE_TAG.name => service::delete_tag(r).await,
        other => Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.0201",
            format!("Invalid request URL: `{other}`."),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn routes() {
        assert_eq!(
            route(&Method::POST, &p(&["create-key"]))
                .unwrap()
                .policy_action,
            "CreateKey"
        );
        assert_eq!(
            route(&Method::GET, &p(&["create-key"])).unwrap_err().code,
            "KMS.0215"
        );
        assert_eq!(
            route(&Method::GET, &p(&["user-quotas"])).unwrap(),
            USER_QUOTAS
        );
        assert_eq!(
            route(&Method::POST, &p(&["k", "tags"])).unwrap(),
            CREATE_TAG
        );
        assert_eq!(route(&Method::GET, &p(&["k", "tags"])).unwrap(), SHOW_TAGS);
        assert_eq!(
            route(&Method::POST, &p(&["k", "tags", "action"])).unwrap(),
            BATCH_TAGS
        );
        assert_eq!(
            route(&Method::DELETE, &p(&["k", "tags", "owner"])).unwrap(),
            DELETE_TAG
        );
        assert_eq!(
            route(&Method::POST, &p(&["create-grant"]))
                .unwrap_err()
                .code,
            "KMS.0201"
        );
        assert_eq!(route(&Method::POST, &p(&[])).unwrap_err().code, "KMS.0201");
        assert_eq!(route(&Method::GET, &p(&["tags"])).unwrap(), LIST_TAGS);
        assert_eq!(
            route(&Method::POST, &p(&["resource_instances", "action"])).unwrap(),
            BY_TAGS
        );
        assert_eq!(
            route(&Method::POST, &p(&["tags"])).unwrap_err().code,
            "KMS.0215"
        );
    }
}
