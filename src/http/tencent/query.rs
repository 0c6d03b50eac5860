//! The query-string form of the API (`GET /?Action=…&KeyIds.0=a&Tags.0.TagKey=k`): flattened
//! parameters turned back into the JSON object the actions read.

use serde_json::{Map, Value};

use super::error_code::ApiError;

/// Limits of the query-string form: nesting (`Tags.0.TagKey` is 3 deep), list indices (the API's
/// lists hold at most 200 items) and the number of parameters.
const MAX_QUERY_DEPTH: usize = 4;
const MAX_QUERY_INDEX: usize = 200;
const MAX_QUERY_PARAMS: usize = 1000;

/// Turns a flattened query string (`KeyIds.0=a&Tags.0.TagKey=k`) into JSON. Bounded: a deep,
/// sparse or huge query is refused instead of being allowed to exhaust memory or stack.
pub fn unflatten(query: &str) -> Result<Map<String, Value>, ApiError> {
    fn too_complex() -> ApiError {
        ApiError::new(
            "InvalidParameter",
            "the query string is nested too deeply, too sparse, or too long",
        )
    }
    fn insert(target: &mut Value, path: &[&str], value: String) -> Result<(), ApiError> {
        let Some((first, rest)) = path.split_first() else {
            return Ok(());
        };
        if let Ok(i) = first.parse::<usize>() {
            if !target.is_array() {
                *target = Value::Array(Vec::new());
            }
            if let Value::Array(items) = target {
                // Indices arrive in order (0, 1, 2, …): never more than one past the end.
                if i > MAX_QUERY_INDEX || i > items.len() {
                    return Err(too_complex());
                }
                if i == items.len() {
                    items.push(Value::Null);
                }
                if rest.is_empty() {
                    items[i] = Value::String(value);
                } else {
                    insert(&mut items[i], rest, value)?;
                }
            }
        } else {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(m) = target {
                if rest.is_empty() {
                    m.insert(first.to_string(), Value::String(value));
                } else {
                    insert(
                        m.entry(first.to_string()).or_insert(Value::Null),
                        rest,
                        value,
                    )?;
                }
            }
        }
        Ok(())
    }
    let mut root = Value::Object(Map::new());
    for (n, (k, v)) in form_urlencoded::parse(query.as_bytes()).enumerate() {
        let path: Vec<&str> = k.split('.').collect();
        if n >= MAX_QUERY_PARAMS || path.len() > MAX_QUERY_DEPTH {
            return Err(too_complex());
        }
        insert(&mut root, &path, v.into_owned())?;
    }
    match root {
        Value::Object(m) => Ok(m),
        _ => Ok(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_unflatten_into_json() {
        let m = unflatten("KeyId=k-1&Plaintext=aGVsbG8%3D&KeyIds.0=a&KeyIds.1=b&Tags.0.TagKey=env&Tags.0.TagValue=dev")
            .unwrap();
        assert_eq!(
            Value::Object(m),
            serde_json::json!({
                "KeyId": "k-1", "Plaintext": "aGVsbG8=", "KeyIds": ["a", "b"],
                "Tags": [{"TagKey": "env", "TagValue": "dev"}]
            })
        );
    }

    #[test]
    fn hostile_query_strings_are_refused_not_expanded() {
        for q in [
            "KeyIds.18446744073709551615=x".to_string(),
            "KeyIds.100000000=x".to_string(),
            "KeyIds.1=x".to_string(),
            "a.a.a.a.a=x".to_string(),
            format!("{}=x", vec!["a"; 20_000].join(".")),
            (0..1001)
                .map(|i| format!("k{i}=v"))
                .collect::<Vec<_>>()
                .join("&"),
        ] {
            let e = unflatten(&q).unwrap_err();
            assert_eq!(e.code, "InvalidParameter", "{}", &q[..q.len().min(40)]);
        }
    }
}
