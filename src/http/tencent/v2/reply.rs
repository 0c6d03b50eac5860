//! The legacy API's answers: always HTTP 200 (the SDK raises on any other status and never reads
//! the body), a JSON object with `code` (0 on success), `message`, `codeDesc` and `requestId`,
//! and the action's fields beside them. Errors carry the numeric codes of the v2 documentation
//! (KMS table 573/8919 and the common table of the v2 API), mapped once here from the Tencent
//! codes the rest of the Tencent dialect already answers.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::http::tencent::error_code::ApiError;

/// A legacy error code: the `code` field, the module code put in front of the message (0 for
/// none) and `codeDesc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V2Code {
    pub code: u32,
    pub module: u32,
    pub desc: &'static str,
}

const fn c(code: u32, module: u32, desc: &'static str) -> V2Code {
    V2Code { code, module, desc }
}

/// The legacy code of a Tencent API 3.0 code (`ApiError::code`). Codes the legacy API has no
/// number for fall into its general classes (4000 parameter, 4100 authentication, 5100 resource
/// operation failed, 6000 internal, 6100 not supported, 6200 temporarily unavailable).
pub fn v2_code(code: &str) -> V2Code {
    match code {
        "MissingParameter" => c(4000, 10010, "MissingParameter"),
        "RequestSizeLimitExceeded" => c(4000, 10350, "InvalidParameter"),
        "InvalidAction" => c(4000, 10280, "InvalidAction"),
        "InvalidParameterValue.InvalidCiphertext" | "InvalidParameter.DecryptMaterialError" => {
            c(4580, 10680, "InvalidCiphertext")
        }
        "InvalidParameterValue.InvalidPlaintext" => c(4590, 10690, "InvalidPlaintext"),
        "InvalidParameterValue.AliasAlreadyExists" => c(4500, 10480, "AliasAlreadyExists"),
        "InvalidParameterValue.InvalidKeyUsage" => c(4490, 10470, "InvalidKeyUsage"),
        "InvalidParameterValue.InvalidEncryptionContext" => {
            c(4540, 10640, "InvalidEncryptionContext")
        }
        "InvalidParameterValue.InvalidKeySpec" => c(4520, 10620, "InvalidKeySpec"),
        "AuthFailure.SecretIdNotFound" => c(4104, 10270, "SecretidNotExit"),
        "AuthFailure.SignatureExpire" => c(4500, 0, "RequestExpired"),
        "AuthFailure.NonceUsed" => c(4500, 0, "NonceUsed"),
        "AuthFailure.TokenFailure" => c(4105, 0, "TokenFailure"),
        "AuthFailure.UnauthorizedOperation" | "UnauthorizedOperation" => {
            c(4102, 0, "UnauthorizedOperation")
        }
        "RequestLimitExceeded" | "RequestLimitExceeded.RotateRateLimited" => {
            c(4420, 10250, "RequestLimitExceeded")
        }
        "LimitExceeded.CmkLimitExceeded" => c(4510, 10610, "CmkLimitExceeded"),
        "ResourceUnavailable.CmkNotFound" | "ResourceNotFound" => c(4530, 10630, "KeyNotFound"),
        "ResourceUnavailable.CmkDisabled" => c(4550, 10650, "KeyDisabled"),
        "FailedOperation.EncryptionError" => c(4560, 10660, "EncryptFailed"),
        "FailedOperation.DecryptError" => c(4560, 10670, "DecryptFailed"),
        "UnsupportedOperation.ServiceTemporaryUnavailable" => c(6200, 0, "ServiceUnavailable"),
        "InternalError" => c(6000, 10050, "InternalError"),
        other if other.starts_with("AuthFailure") => c(4100, 10030, "AuthFailure"),
        other if other.starts_with("InvalidParameter") => c(4000, 10000, "InvalidParameter"),
        other if other.starts_with("LimitExceeded") => c(4400, 0, "LimitExceeded"),
        other if other.starts_with("ResourceUnavailable") => c(5100, 0, "ResourceUnavailable"),
        other if other.starts_with("UnsupportedOperation") || other == "UnsupportedRegion" => {
            c(6100, 0, "UnsupportedOperation")
        }
        _ => c(6000, 10050, "InternalError"),
    }
}

fn reply(body: Map<String, Value>) -> Response {
    let bytes = serde_json::to_vec(&Value::Object(body)).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = (StatusCode::OK, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A success: `code` 0 and the action's fields.
pub fn success(fields: Map<String, Value>, request_id: &str) -> Response {
    let mut body = Map::new();
    body.insert("code".into(), json!(0));
    body.insert("message".into(), json!(""));
    body.insert("codeDesc".into(), json!("Success"));
    body.insert("requestId".into(), json!(request_id));
    body.extend(fields);
    reply(body)
}

/// An error: its legacy code, `(module)message` and `codeDesc`.
pub fn error(e: &ApiError, request_id: &str) -> Response {
    let code = v2_code(e.code);
    let message = if code.module == 0 {
        e.message.clone()
    } else {
        format!("({}){}", code.module, e.message)
    };
    let mut body = Map::new();
    body.insert("code".into(), json!(code.code));
    body.insert("message".into(), json!(message));
    body.insert("codeDesc".into(), json!(code.desc));
    body.insert("requestId".into(), json!(request_id));
    reply(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_v2_tables() {
        assert_eq!(v2_code("MissingParameter").code, 4000);
        assert_eq!(v2_code("RequestSizeLimitExceeded").code, 4000);
        assert_eq!(v2_code("InvalidParameterValue.InvalidKeyId").code, 4000);
        assert_eq!(
            v2_code("ResourceUnavailable.CmkNotFound"),
            c(4530, 10630, "KeyNotFound")
        );
        assert_eq!(v2_code("ResourceUnavailable.CmkDisabled").code, 4550);
        assert_eq!(v2_code("ResourceUnavailable.CmkStateNotSupport").code, 5100);
        assert_eq!(v2_code("AuthFailure.SignatureFailure").code, 4100);
        assert_eq!(v2_code("AuthFailure.SecretIdNotFound").code, 4104);
        assert_eq!(v2_code("AuthFailure.NonceUsed").code, 4500);
        assert_eq!(v2_code("AuthFailure.SignatureExpire").code, 4500);
        assert_eq!(v2_code("UnauthorizedOperation").code, 4102);
        assert_eq!(v2_code("RequestLimitExceeded").code, 4420);
        assert_eq!(
            v2_code("InvalidParameterValue.InvalidCiphertext").code,
            4580
        );
        assert_eq!(
            v2_code("UnsupportedOperation.ServiceTemporaryUnavailable").code,
            6200
        );
        assert_eq!(v2_code("UnsupportedOperation").code, 6100);
        assert_eq!(v2_code("InternalError").code, 6000);
        assert_eq!(v2_code("SomethingNew").code, 6000);
    }

    #[test]
    fn an_error_is_http_200_with_a_nonzero_code() {
        let e = ApiError::new("ResourceUnavailable.CmkNotFound", "key k does not exist");
        let resp = error(&e, "r-1");
        assert_eq!(resp.status(), StatusCode::OK);
    }
}
