//! `LookUpEvents` (CloudAudit 2019-03-19, served here so that its own SDK client works against a
//! node unchanged): the audit records of the caller's account, from every member's trail.

use serde_json::{json, Value};

use super::{fields, Fields};
use crate::audit::Filter;
use crate::http::tencent::error_code::ApiError;
use crate::http::tencent::Request;
use crate::kms::audit_query::{Cursor, LookUp, MAX_PAGE};

/// `LookupAttributes` keys served, and the filter field each sets.
fn attribute(filter: &mut Filter, key: &str, value: String) -> Result<(), ApiError> {
    match key {
        "RequestId" => filter.request_id = Some(value),
        "EventName" => {
            filter.action = Some(if value.contains(':') {
                value
            } else {
                format!("kms:{value}")
            })
        }
        "ResourceId" | "ResourceName" => filter.key_id = Some(value),
        "AccessKeyId" => filter.secret_id = Some(value),
        "PrincipalId" => filter.principal = Some(value),
        "ApiErrorCode" => filter.result = Some(value),
        "SourceIPAddress" => filter.source_ip = Some(value),
        other => {
            return Err(ApiError::invalid(
                "LookupAttributes.AttributeKey",
                format!("`{other}` is not served (RequestId, EventName, ResourceId, ResourceName, AccessKeyId, PrincipalId, ApiErrorCode, SourceIPAddress)"),
            ))
        }
    }
    Ok(())
}

fn next_token(c: Cursor) -> String {
    format!("{}-{}-{}", c.at_ms, c.node_id, c.seq)
}

fn parse_token(t: &str) -> Result<Cursor, ApiError> {
    let bad = || ApiError::invalid("NextToken", "is not a token this service returned");
    let mut parts = t.split('-').map(|p| p.parse::<u64>().map_err(|_| bad()));
    let cursor = Cursor {
        at_ms: parts.next().ok_or_else(bad)??,
        node_id: parts.next().ok_or_else(bad)??,
        seq: parts.next().ok_or_else(bad)??,
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(cursor)
}

pub async fn look_up_events(r: &Request<'_>) -> Result<Fields, ApiError> {
    let p = &r.params;
    let start = p.u64("StartTime")?;
    let end = p.u64("EndTime")?;
    if end < start {
        return Err(ApiError::invalid("EndTime", "is before StartTime"));
    }
    let limit = p.opt_u64("MaxResults")?.unwrap_or(20);
    if !(1..=MAX_PAGE as u64).contains(&limit) {
        return Err(ApiError::invalid(
            "MaxResults",
            format!("must be 1 to {MAX_PAGE}"),
        ));
    }
    match p.opt_str("Mode")?.as_deref() {
        None | Some("standard") | Some("quick") => {}
        Some(m) => {
            return Err(ApiError::invalid(
                "Mode",
                format!("`{m}` is not standard or quick"),
            ))
        }
    }
    let mut filter = Filter {
        from_ms: Some(start.saturating_mul(1000)),
        to_ms: Some(end.saturating_mul(1000).saturating_add(999)),
        ..Default::default()
    };
    match p.0.get("LookupAttributes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                let key = item
                    .get("AttributeKey")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::missing("LookupAttributes.AttributeKey"))?;
                let value = item
                    .get("AttributeValue")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::missing("LookupAttributes.AttributeValue"))?;
                attribute(&mut filter, key, value.to_string())?;
            }
        }
        Some(_) => return Err(ApiError::invalid("LookupAttributes", "must be a list")),
    }
    let after = match p.opt_str("NextToken")?.filter(|t| !t.is_empty()) {
        Some(t) => Some(parse_token(&t)?),
        None => None,
    };
    let events = r
        .kms
        .look_up_events(
            &r.scope,
            LookUp {
                filter,
                limit: limit as usize,
                after,
            },
        )
        .await?;
    let list: Vec<Value> = events
        .rows
        .iter()
        .map(|row| {
            let e = &row.event;
            let name = e
                .action
                .split_once(':')
                .map_or(e.action.as_str(), |(_, n)| n);
            let ip = e
                .source
                .as_deref()
                .and_then(|s| s.parse::<std::net::SocketAddr>().ok())
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            json!({
                "EventId": format!("{}-{}", e.node_id, row.seq),
                "Username": e.principal.clone().unwrap_or_default(),
                "EventTime": (e.at_ms / 1000).to_string(),
                "CloudAuditEvent": serde_json::to_string(e).unwrap_or_default(),
                "ResourceTypeCn": "",
                "ErrorCode": if e.result == "Success" { 0 } else { 1 },
                "EventName": name,
                "SecretId": e.secret_id.clone().unwrap_or_default(),
                "EventSource": "kms.tencentcloudapi.com",
                "RequestID": e.request_id,
                "ResourceRegion": e.region,
                "AccountID": e.uin.unwrap_or(0),
                "SourceIPAddress": ip,
                "EventNameCn": "",
                "Resources": {
                    "ResourceType": "kms",
                    "ResourceName": e.key_ids.first().cloned().unwrap_or_default(),
                },
                "EventRegion": e.region,
                "Location": "",
            })
        })
        .collect();
    Ok(fields(json!({
        "Events": list,
        "TotalCount": list.len(),
        "ListOver": events.next.is_none(),
        "NextToken": events.next.map(next_token).unwrap_or_default(),
    })))
}
