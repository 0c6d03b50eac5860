//! Typed access to an action's JSON parameters, with the right error code for each problem.

use base64::Engine;
use serde_json::{Map, Value};

use super::error_code::ApiError;

/// Checks the form of a KeyId: a UUID in its 36-character hyphenated form, as every KeyId is.
/// Anything else answers `InvalidParameterValue.InvalidKeyId`, as Tencent does; a well-formed id
/// that names no key of the caller is `ResourceUnavailable.CmkNotFound`, later.
pub fn check_key_id(name: &str, id: &str) -> Result<(), ApiError> {
    check_uuid(name, id, "InvalidParameterValue.InvalidKeyId", "KeyId")
}

/// Checks the form of a DataKeyId (a UUID, as every DataKeyId is): else
/// `InvalidParameterValue.InvalidDataKeyId`.
pub fn check_data_key_id(name: &str, id: &str) -> Result<(), ApiError> {
    check_uuid(
        name,
        id,
        "InvalidParameterValue.InvalidDataKeyId",
        "DataKeyId",
    )
}

/// An id in the 36-character hyphenated UUID form, else `code`.
fn check_uuid(name: &str, id: &str, code: &'static str, what: &str) -> Result<(), ApiError> {
    if id.len() == 36 && uuid::Uuid::try_parse(id).is_ok() {
        return Ok(());
    }
    Err(ApiError::new(
        code,
        format!(
            "`{name}` must be a {what} (a UUID such as 7b2e5fa4-3c1d-4f7a-9e2b-0c6d8a1f5e3b), not `{}`",
            id.chars().take(64).collect::<String>()
        ),
    ))
}

/// The canonical form of an encryption context given as the text of a JSON object: re-serialized
/// with sorted keys and no whitespace, so semantically equal contexts authenticate equally (and a
/// ciphertext made through one Tencent dialect opens through the other). `None`: not an object.
pub fn canonical_context(text: &str) -> Option<Vec<u8>> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Some(v.to_string().into_bytes()),
        _ => None,
    }
}

/// The parameters of one request (the JSON body object).
pub struct Params(pub Map<String, Value>);

impl Params {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::invalid(name, "must be a string")),
        }
    }

    pub fn str(&self, name: &str) -> Result<String, ApiError> {
        self.opt_str(name)?.ok_or_else(|| ApiError::missing(name))
    }

    /// A required KeyId (see [`check_key_id`]).
    pub fn key_id(&self, name: &str) -> Result<String, ApiError> {
        let id = self.str(name)?;
        check_key_id(name, &id)?;
        Ok(id)
    }

    /// A required DataKeyId (see [`check_data_key_id`]).
    pub fn data_key_id(&self, name: &str) -> Result<String, ApiError> {
        let id = self.str(name)?;
        check_data_key_id(name, &id)?;
        Ok(id)
    }

    /// An optional KeyId (see [`check_key_id`]).
    pub fn opt_key_id(&self, name: &str) -> Result<Option<String>, ApiError> {
        let id = self.opt_str(name)?;
        if let Some(id) = &id {
            check_key_id(name, id)?;
        }
        Ok(id)
    }

    pub fn opt_u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| ApiError::invalid(name, "must be a non-negative integer")),
            // Query-string requests carry numbers as text.
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| ApiError::invalid(name, "must be a non-negative integer")),
            Some(_) => Err(ApiError::invalid(name, "must be a non-negative integer")),
        }
    }

    pub fn u64(&self, name: &str) -> Result<u64, ApiError> {
        self.opt_u64(name)?.ok_or_else(|| ApiError::missing(name))
    }

    pub fn str_list(&self, name: &str) -> Result<Vec<String>, ApiError> {
        match self.get(name) {
            None => Err(ApiError::missing(name)),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| ApiError::invalid(name, "must be a list of strings"))
                })
                .collect(),
            Some(_) => Err(ApiError::invalid(name, "must be a list of strings")),
        }
    }

    /// Decodes a Base64 parameter; `code` is the error code for undecodable input.
    pub fn base64(&self, name: &str, code: &'static str) -> Result<Vec<u8>, ApiError> {
        let s = self.str(name)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| ApiError::new(code, format!("`{name}` is not valid Base64")))
    }

    /// Tags: a list of `{TagKey, TagValue}`, keys unique, within Tencent's tag rules
    /// (`registry::tags`).
    pub fn tags(&self, name: &str) -> Result<Vec<(String, String)>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(Vec::new());
        };
        let items = v
            .as_array()
            .ok_or_else(|| ApiError::invalid(name, "must be a list of {TagKey, TagValue}"))?;
        let mut out: Vec<(String, String)> = Vec::new();
        for item in items {
            let k = item
                .get("TagKey")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::missing(&format!("{name}.TagKey")))?;
            let val = item
                .get("TagValue")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::missing(&format!("{name}.TagValue")))?;
            out.push((k.to_string(), val.to_string()));
        }
        crate::registry::tags::validate(&out)?;
        Ok(out)
    }
}

/// Standard Base64 with padding, as the API uses for all binary values.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
