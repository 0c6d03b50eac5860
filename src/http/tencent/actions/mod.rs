//! The Tencent actions: each parses its parameters into a typed request of the KMS core, calls
//! one core operation and renders the typed result as the action's response fields. `dispatch`
//! maps the action name to its adapter in one `match` (docs/api.md links each action here).

mod asymmetric;
mod audit;
mod cloud;
mod cluster;
mod crypto;
mod data_keys;
mod import;
mod keys;
mod lifecycle;
mod post_quantum;
mod replica;
mod service;
mod tags;

use serde_json::{Map, Value};

use super::error_code::ApiError;
use super::Request;
use crate::kms::rate::ActionClass;

/// An action's response fields (without `RequestId`).
pub type Fields = Map<String, Value>;

/// The rate-limit class of an action: the cryptographic operations, or management.
pub fn class_of(action: &str) -> ActionClass {
    match action {
        "Encrypt"
        | "Decrypt"
        | "ReEncrypt"
        | "GenerateDataKey"
        | "GenerateRandom"
        | "AsymmetricRsaDecrypt"
        | "AsymmetricSm2Decrypt"
        | "SignByAsymmetricKey"
        | "VerifyByAsymmetricKey"
        | "GetDataKeyPlaintext"
        | "GetDataKeyCiphertextBlob"
        | "PostQuantumCryptoEncrypt"
        | "PostQuantumCryptoDecrypt"
        | "PostQuantumCryptoSign"
        | "PostQuantumCryptoVerify" => ActionClass::Crypto,
        _ => ActionClass::Management,
    }
}

/// Runs `action`. Unknown names are `InvalidAction`.
pub async fn dispatch(action: &str, r: &Request<'_>) -> Result<Fields, ApiError> {
    match action {
        "CreateKey" => keys::create_key(r).await,
        "DescribeKey" => keys::describe_key(r).await,
        "DescribeKeys" => keys::describe_keys(r).await,
        "ListKeys" => keys::list_keys(r).await,
        "ListKeyDetail" => keys::list_key_detail(r).await,
        "UpdateAlias" => keys::update_alias(r).await,
        "UpdateKeyDescription" => keys::update_key_description(r).await,
        "EnableKey" => lifecycle::enable_key(r).await,
        "DisableKey" => lifecycle::disable_key(r).await,
        "EnableKeys" => lifecycle::enable_keys(r).await,
        "DisableKeys" => lifecycle::disable_keys(r).await,
        "EnableKeyRotation" => lifecycle::enable_key_rotation(r).await,
        "DisableKeyRotation" => lifecycle::disable_key_rotation(r).await,
        "GetKeyRotationStatus" => lifecycle::get_key_rotation_status(r).await,
        "RotateKey" => lifecycle::rotate_key(r).await,
        "ScheduleKeyDeletion" => lifecycle::schedule_key_deletion(r).await,
        "CancelKeyDeletion" => lifecycle::cancel_key_deletion(r).await,
        "ArchiveKey" => lifecycle::archive_key(r).await,
        "CancelKeyArchive" => lifecycle::cancel_key_archive(r).await,
        "Encrypt" => crypto::encrypt(r).await,
        "Decrypt" => crypto::decrypt(r).await,
        "ReEncrypt" => crypto::re_encrypt(r).await,
        "GenerateDataKey" => crypto::generate_data_key(r).await,
        "GenerateRandom" => crypto::generate_random(r).await,
        "GetPublicKey" => asymmetric::get_public_key(r).await,
        "AsymmetricRsaDecrypt" => asymmetric::asymmetric_rsa_decrypt(r).await,
        "AsymmetricSm2Decrypt" => asymmetric::asymmetric_sm2_decrypt(r).await,
        "SignByAsymmetricKey" => asymmetric::sign_by_asymmetric_key(r).await,
        "VerifyByAsymmetricKey" => asymmetric::verify_by_asymmetric_key(r).await,
        "GetParametersForImport" => import::get_parameters_for_import(r).await,
        "ImportKeyMaterial" => import::import_key_material(r).await,
        "DeleteImportedKeyMaterial" => import::delete_imported_key_material(r).await,
        "GetServiceStatus" => service::get_service_status(r).await,
        "GetRegions" => service::get_regions(r).await,
        "ListAlgorithms" => service::list_algorithms(r).await,
        "ReplicateKey" => replica::replicate_key(r).await,
        "GetResourceTags" => tags::get_resource_tags(r).await,
        "ModifyResourceTags" => tags::modify_resource_tags(r).await,
        "LookUpEvents" => audit::look_up_events(r).await,
        "GetKeyDetails" => keys::get_key_details(r).await,
        "DescribeClusterStatus" => cluster::describe_cluster_status(r).await,
        "DescribeDrillReports" => cluster::describe_drill_reports(r).await,
        "StartDrill" => cluster::start_drill(r).await,
        "BindCloudResource" => cloud::bind_cloud_resource(r).await,
        "PostQuantumCryptoEncrypt" => post_quantum::encrypt(r).await,
        "PostQuantumCryptoDecrypt" => post_quantum::decrypt(r).await,
        "PostQuantumCryptoSign" => post_quantum::sign(r).await,
        "PostQuantumCryptoVerify" => post_quantum::verify(r).await,
        "ImportDataKey" => data_keys::import_data_key(r).await,
        "DescribeDataKey" => data_keys::describe_data_key(r).await,
        "DescribeDataKeys" => data_keys::describe_data_keys(r).await,
        "ListDataKeys" => data_keys::list_data_keys(r).await,
        "ListDataKeyDetail" => data_keys::list_data_key_detail(r).await,
        "EnableDataKey" => data_keys::enable_data_key(r).await,
        "DisableDataKey" => data_keys::disable_data_key(r).await,
        "EnableDataKeys" => data_keys::enable_data_keys(r).await,
        "DisableDataKeys" => data_keys::disable_data_keys(r).await,
        "GetDataKeyCiphertextBlob" => data_keys::get_data_key_ciphertext_blob(r).await,
        "GetDataKeyPlaintext" => data_keys::get_data_key_plaintext(r).await,
        "UpdateDataKeyName" => data_keys::update_data_key_name(r).await,
        "UpdateDataKeyDescription" => data_keys::update_data_key_description(r).await,
        "ScheduleDataKeyDeletion" => data_keys::schedule_data_key_deletion(r).await,
        "CancelDataKeyDeletion" => data_keys::cancel_data_key_deletion(r).await,
        "UnbindCloudResource" => cloud::unbind_cloud_resource(r).await,
        // White-box keys are not offered (docs/api.md): the service says so, and every other
        // white-box action is refused as unsupported (not unknown).
        "DescribeWhiteBoxServiceStatus" => {
            Ok(fields(serde_json::json!({ "ServiceEnabled": false })))
        }
        white_box if WHITE_BOX.contains(&white_box) => Err(ApiError::new(
            "UnsupportedOperation",
            format!(
                "{white_box}: raftkms offers no white-box keys (a white-box construction that \
                 does not expose the key is not implemented; see docs/api.md)"
            ),
        )),
        other => Err(ApiError::new(
            "InvalidAction",
            format!("action `{other}` is not supported by raftkms (see docs/api.md)"),
        )),
    }
}

/// The white-box actions other than DescribeWhiteBoxServiceStatus.
const WHITE_BOX: [&str; 12] = [
    "CreateWhiteBoxKey",
    "DeleteWhiteBoxKey",
    "DescribeWhiteBoxKey",
    "DescribeWhiteBoxKeyDetails",
    "DescribeWhiteBoxDecryptKey",
    "DescribeWhiteBoxDeviceFingerprints",
    "OverwriteWhiteBoxDeviceFingerprints",
    "EnableWhiteBoxKey",
    "EnableWhiteBoxKeys",
    "DisableWhiteBoxKey",
    "DisableWhiteBoxKeys",
    "EncryptByWhiteBox",
];

/// Builds a field map from a `json!` object.
fn fields(v: Value) -> Fields {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `HsmClusterId`: raftkms has no HSM clusters, so only empty or `default` (the shared
/// service) is accepted; anything else is `InvalidParameterValue.InvalidHsmClusterId`.
fn no_hsm_cluster(r: &Request<'_>) -> Result<(), ApiError> {
    match r.params.opt_str("HsmClusterId")?.as_deref() {
        None | Some("") | Some("default") => Ok(()),
        Some(other) => Err(ApiError::new(
            "InvalidParameterValue.InvalidHsmClusterId",
            format!(
                "HsmClusterId `{}` names no HSM cluster: raftkms has none (empty or `default` only)",
                other.chars().take(64).collect::<String>()
            ),
        )),
    }
}

/// `MemberAccount` / `MemberAccounts`: acting on another account's resources (Tencent's
/// multi-account management) is not offered; naming one is refused, not ignored.
fn no_member_account(r: &Request<'_>, name: &str) -> Result<(), ApiError> {
    let named = match r.params.0.get(name) {
        None | Some(Value::Null) => false,
        Some(Value::Array(items)) => !items.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
        Some(_) => true,
    };
    if named {
        return Err(ApiError::new(
            "UnsupportedOperation",
            format!("{name}: raftkms does not act on other accounts' resources (multi-account management is not offered)"),
        ));
    }
    Ok(())
}

/// At most this many KeyIds in one request.
const MAX_IDS: usize = 100;

/// `KeyIds`: 1 to [`MAX_IDS`] ids.
fn key_ids(r: &Request<'_>) -> Result<Vec<String>, ApiError> {
    id_list(r, "KeyIds", super::params::check_key_id)
}

/// `DataKeyIds`: 1 to [`MAX_IDS`] ids.
fn data_key_ids(r: &Request<'_>) -> Result<Vec<String>, ApiError> {
    id_list(r, "DataKeyIds", super::params::check_data_key_id)
}

/// A list parameter of 1 to [`MAX_IDS`] ids, each passing `check`.
fn id_list(
    r: &Request<'_>,
    name: &str,
    check: fn(&str, &str) -> Result<(), ApiError>,
) -> Result<Vec<String>, ApiError> {
    let ids = r.params.str_list(name)?;
    if ids.is_empty() || ids.len() > MAX_IDS {
        return Err(ApiError::invalid(
            name,
            format!("must list 1 to {MAX_IDS} {name}"),
        ));
    }
    for id in &ids {
        check(name, id)?;
    }
    Ok(ids)
}
