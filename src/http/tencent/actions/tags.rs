//! The raftkms extensions GetResourceTags and ModifyResourceTags (docs/api.md §5): a key's or a
//! hosted data key's tags, read and changed after creation.

use serde_json::{json, Value};

use super::{fields, ApiError, Fields, Request};
use crate::kms::tags::Tagged;

/// `KeyId` or `DataKeyId`: exactly one.
fn target(r: &Request<'_>) -> Result<Tagged, ApiError> {
    let key = r.params.opt_key_id("KeyId")?.filter(|s| !s.is_empty());
    let data_key = match r.params.opt_str("DataKeyId")?.filter(|s| !s.is_empty()) {
        Some(id) => {
            crate::http::tencent::params::check_data_key_id("DataKeyId", &id)?;
            Some(id)
        }
        None => None,
    };
    match (key, data_key) {
        (Some(k), None) => Ok(Tagged::Key(k)),
        (None, Some(d)) => Ok(Tagged::DataKey(d)),
        (None, None) => Err(ApiError::missing("KeyId")),
        (Some(_), Some(_)) => Err(ApiError::new(
            "InvalidParameter",
            "name either KeyId or DataKeyId, not both",
        )),
    }
}

fn rendered(tags: &[(String, String)]) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| json!({ "TagKey": k, "TagValue": v }))
            .collect(),
    )
}

pub async fn get_resource_tags(r: &Request<'_>) -> Result<Fields, ApiError> {
    let target = target(r)?;
    let tags = r.kms.resource_tags(&r.scope, target).await?;
    Ok(fields(json!({ "Tags": rendered(&tags) })))
}

/// `DeleteTags`: a list of `{TagKey}`.
fn delete_tags(r: &Request<'_>) -> Result<Vec<String>, ApiError> {
    match r.params.0.get("DeleteTags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| {
                t.get("TagKey")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::missing("DeleteTags.TagKey"))
            })
            .collect(),
        Some(_) => Err(ApiError::invalid(
            "DeleteTags",
            "must be a list of {TagKey}",
        )),
    }
}

pub async fn modify_resource_tags(r: &Request<'_>) -> Result<Fields, ApiError> {
    let target = target(r)?;
    let set = r.params.tags("ReplaceTags")?;
    let remove = delete_tags(r)?;
    if set.is_empty() && remove.is_empty() {
        return Err(ApiError::new(
            "MissingParameter",
            "give ReplaceTags (tags to set) or DeleteTags (tag keys to remove), or both",
        ));
    }
    let tags = r.kms.modify_tags(&r.scope, target, set, remove).await?;
    Ok(fields(json!({ "Tags": rendered(&tags) })))
}
