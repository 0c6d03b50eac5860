//! Typed access to a Huawei request's JSON body. Huawei's model types numbers as strings
//! (`"pending_days": "7"`) and a few as integers; both forms are accepted for numbers, as
//! Huawei's own clients send either.

use serde_json::{Map, Value};

use super::error::HwError;

/// The JSON body of a request (empty body: no fields).
pub struct Body(pub Map<String, Value>);

impl Body {
    pub fn parse(bytes: &[u8]) -> Result<Body, HwError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(Map::new()));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => Ok(Body(m)),
            _ => Err(HwError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "KMS.0202",
                "Invalid JSON format of the request message.",
            )),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<String>, HwError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(HwError::invalid(name, "must be a string")),
        }
    }

    pub fn str(&self, name: &str) -> Result<String, HwError> {
        self.opt_str(name)?.ok_or_else(|| HwError::missing(name))
    }

    /// A required `key_id`: a UUID (Huawei's form, lower-case hex), else `KMS.0205`.
    pub fn key_id(&self) -> Result<String, HwError> {
        let id = self.str("key_id")?;
        check_key_id(&id)?;
        Ok(id)
    }

    /// A number given as a JSON number or as a string of digits.
    pub fn opt_u64(&self, name: &str) -> Result<Option<u64>, HwError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| HwError::invalid(name, "must be a non-negative integer")),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| HwError::invalid(name, "must be a non-negative integer")),
            Some(_) => Err(HwError::invalid(name, "must be a non-negative integer")),
        }
    }

    pub fn u64(&self, name: &str) -> Result<u64, HwError> {
        self.opt_u64(name)?.ok_or_else(|| HwError::missing(name))
    }

    /// Base64 text, decoded (`code` for undecodable input).
    pub fn base64(&self, name: &str, code: &'static str) -> Result<Vec<u8>, HwError> {
        use base64::Engine;
        let s = self.str(name)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| {
                HwError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    code,
                    format!("Invalid parameter. `{name}` is not valid Base64."),
                )
            })
    }

    /// Hex text, decoded (`code` for undecodable input).
    pub fn hex(&self, name: &str, code: &'static str) -> Result<Vec<u8>, HwError> {
        let s = self.str(name)?;
        hex::decode(s.trim()).map_err(|_| {
            HwError::new(
                axum::http::StatusCode::BAD_REQUEST,
                code,
                format!("Invalid parameter. `{name}` is not valid hex."),
            )
        })
    }

    pub fn value(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// A key id: a UUID in its 36-character form, else `KMS.0205 Invalid key ID.`
pub fn check_key_id(id: &str) -> Result<(), HwError> {
    if id.len() == 36 && uuid::Uuid::try_parse(id).is_ok() {
        return Ok(());
    }
    Err(HwError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "KMS.0205",
        format!(
            "Invalid key ID. `{}` is not a key id (a UUID such as 7b2e5fa4-3c1d-4f7a-9e2b-0c6d8a1f5e3b).",
            id.chars().take(64).collect::<String>()
        ),
    ))
}
