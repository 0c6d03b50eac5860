//! Parsing and checking a CAM policy document (JSON) into the registry's typed statements. Every
//! refusal says exactly which element is wrong, so a policy is fixed before it is attached.

use serde_json::{Map, Value};

use super::actions::KNOWN_ACTIONS;
use super::evaluate::{parse_time, ConditionKey, Operator};
use super::matching::{wildcard, Cidr};
use crate::registry::iam::{Condition, Effect, Statement, MAX_POLICY_TEXT, MAX_STATEMENTS};

/// Why a policy document was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(msg.into()))
}

/// Parses a policy document of account `owner_uin`, refusing anything this build would not
/// evaluate exactly as CAM describes it (unknown elements, actions, condition keys or operators;
/// malformed resources). Resources are stored normalized (see [`resource`]).
pub fn parse(text: &str, owner_uin: u64) -> Result<Vec<Statement>, PolicyError> {
    if text.len() > MAX_POLICY_TEXT {
        return err(format!(
            "the policy document is {} bytes; at most {MAX_POLICY_TEXT}",
            text.len()
        ));
    }
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| PolicyError(format!("the policy document is not valid JSON: {e}")))?;
    let Value::Object(doc) = doc else {
        return err("the policy document must be a JSON object");
    };
    for k in doc.keys() {
        if k != "version" && k != "statement" {
            return err(format!(
                "unknown element `{k}` (a policy has `version` and `statement`)"
            ));
        }
    }
    match doc.get("version") {
        Some(Value::String(v)) if v == "2.0" => {}
        Some(v) => return err(format!("`version` must be \"2.0\", not {v}")),
        None => return err("the policy document needs `\"version\": \"2.0\"`"),
    }
    let statements = match doc.get("statement") {
        Some(Value::Array(s)) => s.clone(),
        Some(s @ Value::Object(_)) => vec![s.clone()],
        Some(_) => return err("`statement` must be a list of statements"),
        None => return err("the policy document needs a `statement` list"),
    };
    if statements.is_empty() || statements.len() > MAX_STATEMENTS {
        return err(format!(
            "a policy has 1 to {MAX_STATEMENTS} statements, not {}",
            statements.len()
        ));
    }
    statements
        .iter()
        .enumerate()
        .map(|(i, s)| {
            statement(s, owner_uin).map_err(|e| PolicyError(format!("statement {i}: {}", e.0)))
        })
        .collect()
}

fn statement(v: &Value, owner_uin: u64) -> Result<Statement, PolicyError> {
    let Value::Object(s) = v else {
        return err("a statement must be a JSON object");
    };
    for k in s.keys() {
        match k.as_str() {
            "effect" | "action" | "resource" | "condition" => {}
            "principal" => {
                return err(
                    "`principal` belongs in a role's trust policy, not in a permission policy",
                )
            }
            other => {
                return err(format!(
                "unknown element `{other}` (a statement has effect, action, resource, condition)"
            ))
            }
        }
    }
    let effect = match s.get("effect").and_then(Value::as_str) {
        Some("allow") => Effect::Allow,
        Some("deny") => Effect::Deny,
        Some(e) => {
            return err(format!(
                "`effect` must be \"allow\" or \"deny\", not \"{e}\""
            ))
        }
        None => return err("`effect` (\"allow\" or \"deny\") is missing"),
    };
    let actions = strings(s, "action")?
        .into_iter()
        .map(|a| action(&a))
        .collect::<Result<Vec<_>, _>>()?;
    let resources = strings(s, "resource")?
        .into_iter()
        .map(|r| resource(&r, owner_uin))
        .collect::<Result<Vec<_>, _>>()?;
    let conditions = match s.get("condition") {
        None => Vec::new(),
        Some(Value::Object(c)) => conditions(c)?,
        Some(_) => return err("`condition` must be an object of operators"),
    };
    Ok(Statement {
        effect,
        actions,
        resources,
        conditions,
    })
}

/// A string or a non-empty list of strings.
fn strings(s: &Map<String, Value>, name: &str) -> Result<Vec<String>, PolicyError> {
    let list = match s.get(name) {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(x) => Ok(x.clone()),
                other => err(format!("`{name}` items must be strings, not {other}")),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return err(format!("`{name}` must be a string or a list, not {other}")),
        None => return err(format!("`{name}` is missing")),
    };
    if list.is_empty() {
        return err(format!("`{name}` must name at least one"));
    }
    Ok(list)
}

/// Normalizes an action (`name/kms:Encrypt` → `kms:Encrypt`) and checks that it names, or with
/// its wildcards matches, at least one known action.
fn action(a: &str) -> Result<String, PolicyError> {
    let a = a.strip_prefix("name/").unwrap_or(a);
    if a == "*" {
        return Ok(a.to_string());
    }
    let Some((service, name)) = a.split_once(':') else {
        return err(format!(
            "action `{a}` must be `kms:<Action>` (or `*`, `kms:*`)"
        ));
    };
    if service != "kms" && service != "cloudaudit" {
        return err(format!(
            "action `{a}`: this service answers only kms:* and cloudaudit:LookUpEvents"
        ));
    }
    if name.is_empty() {
        return err(format!("action `{a}` has no action name"));
    }
    if !KNOWN_ACTIONS.iter().any(|k| wildcard(a, k)) {
        return err(format!("unknown action `{a}`"));
    }
    Ok(a.to_string())
}

/// Checks a resource and normalizes it to the form requests are matched against,
/// `qcs::kms:<region>:uin/<owner-uin>:key/<KeyId>`, as CAM reads it:
/// - `*` stays `*`;
/// - six segments `qcs:<project>:<service>:<region>:<account>:<resource>`; an empty service or
///   region means every one (`*`), an empty account means the policy's own account;
/// - Tencent's key form `key/creatorUin/<creator-uin>/<KeyId>` names the key `<KeyId>` (a key's
///   creator is its owner account here), as `key/<KeyId>` does;
/// - a hosted data key is `datakey/<DataKeyId>`.
///
/// A project is refused (raftkms has none), and so is anything that could never match a key.
fn resource(r: &str, owner_uin: u64) -> Result<String, PolicyError> {
    if r == "*" {
        return Ok(r.to_string());
    }
    let parts: Vec<&str> = r.split(':').collect();
    let bad = |why: &str| {
        err(format!(
            "resource `{r}`: {why} (expected qcs::kms:<region>:uin/<owner-uin>:key/<KeyId>, \
             qcs::kms:<region>:uin/<owner-uin>:key/creatorUin/<uin>/<KeyId>, \
             qcs::kms:<region>:uin/<owner-uin>:datakey/<DataKeyId>, or *)"
        ))
    };
    if parts.len() != 6 {
        return bad("a resource has six segments separated by `:`");
    }
    if parts[0] != "qcs" {
        return bad("it must start with `qcs`");
    }
    if !(parts[1].is_empty() || parts[1] == "*") {
        return bad("raftkms has no projects: leave the project segment empty");
    }
    let service = match parts[2] {
        "" | "*" => "*",
        "kms" => "kms",
        "cloudaudit" => "cloudaudit",
        _ => return bad("the service segment must be `kms` (or empty)"),
    };
    let region = if parts[3].is_empty() { "*" } else { parts[3] };
    let account = match parts[4] {
        "" => format!("uin/{owner_uin}"),
        "*" => "*".to_string(),
        a => {
            let Some(uin) = a.strip_prefix("uin/") else {
                return bad("the account segment must be `uin/<owner-uin>`");
            };
            if uin.is_empty() || !uin.bytes().all(|b| b.is_ascii_digit() || b == b'*') {
                return bad("the owner uin must be digits (or *)");
            }
            a.to_string()
        }
    };
    let res = parts[5];
    let key = if res == "*" {
        "*".to_string()
    } else if let Some(rest) = res.strip_prefix("key/creatorUin/") {
        match rest.split_once('/') {
            Some((creator, id))
                if !id.is_empty()
                    && !creator.is_empty()
                    && creator.bytes().all(|b| b.is_ascii_digit() || b == b'*') =>
            {
                format!("key/{id}")
            }
            _ => return bad("`key/creatorUin/` must be followed by `<uin>/<KeyId>`"),
        }
    } else if (res.starts_with("key/") && res.len() > 4)
        || (res.starts_with("datakey/") && res.len() > 8)
    {
        res.to_string()
    } else {
        return bad(
            "the resource segment must be `key/<KeyId>`, `datakey/<DataKeyId>` (wildcards allowed) or `*`",
        );
    };
    Ok(format!("qcs::{service}:{region}:{account}:{key}"))
}

fn conditions(c: &Map<String, Value>) -> Result<Vec<Condition>, PolicyError> {
    let mut out = Vec::new();
    for (operator, body) in c {
        let op = Operator::parse(operator)
            .ok_or_else(|| PolicyError(format!("unknown condition operator `{operator}`")))?;
        let Value::Object(keys) = body else {
            return err(format!(
                "condition `{operator}` must map condition keys to values"
            ));
        };
        if keys.is_empty() {
            return err(format!("condition `{operator}` names no condition key"));
        }
        for (key, values) in keys {
            let k = ConditionKey::parse(key).ok_or_else(|| {
                PolicyError(format!(
                    "unsupported condition key `{key}` (this service evaluates qcs:ip, qcs:current_time and qcs:resource_tag)"
                ))
            })?;
            let values: Vec<String> = match values {
                Value::String(v) => vec![v.clone()],
                Value::Bool(b) => vec![b.to_string()],
                Value::Number(n) => vec![n.to_string()],
                Value::Array(vs) if !vs.is_empty() => vs
                    .iter()
                    .map(|v| match v {
                        Value::String(v) => Ok(v.clone()),
                        Value::Bool(b) => Ok(b.to_string()),
                        Value::Number(n) => Ok(n.to_string()),
                        other => err(format!(
                            "condition `{operator}`/`{key}`: value {other} is not a string"
                        )),
                    })
                    .collect::<Result<_, _>>()?,
                other => {
                    return err(format!(
                        "condition `{operator}`/`{key}`: {other} is not a value or a non-empty list"
                    ))
                }
            };
            check_values(op, k, &values)
                .map_err(|why| PolicyError(format!("condition `{operator}`/`{key}`: {why}")))?;
            out.push(Condition {
                operator: operator.clone(),
                key: key.clone(),
                values,
            });
        }
    }
    Ok(out)
}

/// Whether the operator fits the key's type and every value parses as that type.
fn check_values(op: Operator, key: ConditionKey, values: &[String]) -> Result<(), String> {
    use super::evaluate::Family;
    if op.family == Family::Null {
        return values
            .iter()
            .all(|v| v == "true" || v == "false")
            .then_some(())
            .ok_or_else(|| "null_equal takes true or false".to_string());
    }
    match (key, op.family) {
        (ConditionKey::Ip, Family::Ip) => values
            .iter()
            .find(|v| Cidr::parse(v).is_none())
            .map_or(Ok(()), |v| {
                Err(format!("`{v}` is not an IP address or CIDR block"))
            }),
        (ConditionKey::CurrentTime, Family::Date) => values
            .iter()
            .find(|v| parse_time(v).is_none())
            .map_or(Ok(()), |v| {
                Err(format!("`{v}` is not a UTC time like 2026-01-31T23:59:59Z"))
            }),
        (ConditionKey::ResourceTag, Family::String) => values
            .iter()
            .find(|v| !v.contains('&'))
            .map_or(Ok(()), |v| {
                Err(format!("`{v}` is not `<tag key>&<tag value>`"))
            }),
        (k, _) => Err(format!(
            "this operator does not apply to {} (use {})",
            k.name(),
            k.operators()
        )),
    }
}
