//! ReplicateKey: a raftkms extension (Tencent's 2019-01-18 API has no replicate action) that
//! makes multi-region replica keys of a primary key, sharing its KeyId and material.

use serde_json::json;

use super::{fields, ApiError, Fields, Request};
use crate::kms::replica::ReplicateKey;
use crate::registry::key;

/// At most this many destination regions per call.
const MAX_REGIONS: usize = 20;

/// `KeyId` (the primary, in the request's region), `DestinationRegions` (list), optional
/// `ReplicaAlias` (default: the primary's alias), `Description` (default: the primary's) and
/// `Tags` (default: the primary's).
pub async fn replicate_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    let p = &r.params;
    let key_id = p.key_id("KeyId")?;
    let regions = p.str_list("DestinationRegions")?;
    if regions.is_empty() || regions.len() > MAX_REGIONS {
        return Err(ApiError::invalid(
            "DestinationRegions",
            format!("must list 1 to {MAX_REGIONS} regions"),
        ));
    }
    let alias = p.opt_str("ReplicaAlias")?;
    if let Some(a) = &alias {
        key::validate_alias(a)?;
    }
    let description = p.opt_str("Description")?;
    if let Some(d) = &description {
        key::validate_description(d)?;
    }
    let tags = match p.0.get("Tags") {
        None | Some(serde_json::Value::Null) => None,
        Some(_) => Some(p.tags("Tags")?),
    };
    let req = ReplicateKey {
        key_id,
        regions,
        alias,
        description,
        tags,
    };
    let done = r.kms.replicate_key(&r.scope, req).await?;
    let replicas: Vec<_> = done
        .replicas
        .iter()
        .map(|s| json!({ "Region": s.region, "KeyId": done.key_id, "Alias": s.alias, "CreateTime": done.created_at }))
        .collect();
    Ok(fields(json!({
        "KeyId": done.key_id,
        "SourceRegion": done.source_region,
        "Replicas": replicas,
    })))
}
