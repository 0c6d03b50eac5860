//! ReplicateKey: a raftkms extension (Tencent's 2019-01-18 API has no replicate action) that
//! makes multi-region replica keys of a primary key, sharing its KeyId and material.

use serde_json::json;

use super::{fields, ApiError, Ctx, Fields};
use crate::registry::key;
use crate::registry::replica::ReplicaSpec;
use crate::registry::Command;

/// At most this many destination regions per call.
const MAX_REGIONS: usize = 20;

/// `KeyId` (the primary, in the request's region), `DestinationRegions` (list), optional
/// `ReplicaAlias` (default: the primary's alias), `Description` (default: the primary's) and
/// `Tags` (default: the primary's).
pub async fn replicate_key(ctx: Ctx) -> Result<Fields, ApiError> {
    let p = &ctx.params;
    let key_id = p.str("KeyId")?;
    let regions = p.str_list("DestinationRegions")?;
    if regions.is_empty() || regions.len() > MAX_REGIONS {
        return Err(ApiError::invalid(
            "DestinationRegions",
            format!("must list 1 to {MAX_REGIONS} regions"),
        ));
    }
    let served = ctx.node.config.served_regions();
    for r in &regions {
        if !served.contains(r) {
            return Err(ApiError::new(
                "InvalidParameterValue.UnsupportedRegion",
                format!(
                    "destination region `{r}` is not served by this cluster (served: {})",
                    served.join(", ")
                ),
            ));
        }
        if r == &ctx.region {
            return Err(ApiError::invalid(
                "DestinationRegions",
                format!("`{r}` is the key's own region"),
            ));
        }
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
    // Defaults come from the primary as this node sees it; the material itself is copied by
    // apply from the committed state, never from here.
    ctx.gate().await?;
    let primary = ctx.key(&key_id)?;
    let specs: Vec<ReplicaSpec> = regions
        .iter()
        .map(|r| ReplicaSpec {
            region: r.clone(),
            alias: alias.clone().unwrap_or_else(|| primary.alias.clone()),
            description: description
                .clone()
                .unwrap_or_else(|| primary.description.clone()),
            tags: tags.clone().unwrap_or_else(|| primary.tags.clone()),
        })
        .collect();
    let at = ctx
        .propose(Command::ReplicateKey {
            uin: ctx.uin,
            key_id: key_id.clone(),
            source_region: ctx.region.clone(),
            replicas: specs.clone(),
            cmk_limit: ctx.node.config.kms.cmk_limit,
        })
        .await?;
    let replicas: Vec<_> = specs
        .iter()
        .map(|s| json!({ "Region": s.region, "KeyId": key_id, "Alias": s.alias, "CreateTime": at }))
        .collect();
    Ok(fields(json!({
        "KeyId": key_id,
        "SourceRegion": ctx.region,
        "Replicas": replicas,
    })))
}
