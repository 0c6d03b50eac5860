//! The legacy API's signature (`HmacSHA1` / `HmacSHA256`): an HMAC, keyed with the raw
//! SecretKey, of `METHOD + host[:port] + /v2/index.php + ? + name=value&…` over every parameter
//! but `Signature`, sorted by name, values as sent (not URL-encoded), `_` in names read as `.`.
//! This is the exact string `qcloudapi-sdk-python` 2.0.15 signs (`QcloudApi/common/sign.py`).

use base64::Engine;
use hmac_0_13::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;

/// How far a request's `Timestamp` may be from this node's clock (as for TC3).
pub const MAX_SKEW_SECS: u64 = 300;

/// The signature methods of the legacy API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    HmacSha1,
    HmacSha256,
}

impl Method {
    /// `SignatureMethod`: absent means `HmacSHA1`, as in the SDK.
    pub fn parse(name: Option<&str>) -> Option<Method> {
        match name {
            None | Some("HmacSHA1") => Some(Method::HmacSha1),
            Some("HmacSHA256") => Some(Method::HmacSha256),
            Some(_) => None,
        }
    }
}

/// The string the client signed: `params` are every decoded parameter but `Signature`.
pub fn string_to_sign(method: &str, host: &str, path: &str, params: &[(String, String)]) -> String {
    let mut named: Vec<(String, &str)> = params
        .iter()
        .map(|(k, v)| (k.replace('_', "."), v.as_str()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let joined: Vec<String> = named.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}{host}{path}?{}",
        method.to_ascii_uppercase(),
        joined.join("&")
    )
}

/// Base64 of the HMAC of `message` under `secret_key`.
pub fn sign(method: Method, secret_key: &[u8], message: &str) -> String {
    let tag = match method {
        Method::HmacSha1 => {
            let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret_key)
                .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
            mac.update(message.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Method::HmacSha256 => {
            let mut mac = <Hmac<sha2_0_11::Sha256> as KeyInit>::new_from_slice(secret_key)
                .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
            mac.update(message.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    };
    base64::engine::general_purpose::STANDARD.encode(tag)
}

/// Whether `signature` is the signature of `message` (compared in constant time).
pub fn verify(method: Method, secret_key: &[u8], message: &str, signature: &str) -> bool {
    let expected = sign(method, secret_key, message);
    bool::from(expected.as_bytes().ct_eq(signature.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<(String, String)> {
        [
            ("Action", "Encrypt"),
            ("Nonce", "4242"),
            ("Region", "ap-guangzhou"),
            ("SecretId", "AKIDexample"),
            ("SignatureMethod", "HmacSHA256"),
            ("Timestamp", "1700000000"),
            ("keyId", "k-1"),
            ("plaintext", "aGVsbG8="),
            ("RequestClient", "SDK_PYTHON_2.0.15"),
            ("a_b", "x y"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    const SDK_SHA256: &str = "vCG/p935DT7vGa8vWco8tsLBJC92xcob0tY5JHxUFGQ=";
    const SDK_SHA1: &str = "ZvUPGitWJ7DkfknbfsBv/+lv5Io=";

    #[test]
    fn string_to_sign_sorts_names_and_keeps_values_raw() {
        let s = string_to_sign("post", "127.0.0.1:8443", "/v2/index.php", &params());
        assert_eq!(
            s,
            "POST127.0.0.1:8443/v2/index.php?Action=Encrypt&Nonce=4242&Region=ap-guangzhou&\
             RequestClient=SDK_PYTHON_2.0.15&SecretId=AKIDexample&SignatureMethod=HmacSHA256&\
             Timestamp=1700000000&a.b=x y&keyId=k-1&plaintext=aGVsbG8="
        );
    }

    /// Signatures computed by the SDK's own `Sign.make` (qcloudapi-sdk-python 2.0.15) for the
    /// parameters above, secret key `secret`.
    #[test]
    fn signatures_match_the_sdk() {
        let s = string_to_sign("POST", "127.0.0.1:8443", "/v2/index.php", &params());
        assert_eq!(sign(Method::HmacSha256, b"secret", &s), SDK_SHA256);
        assert_eq!(sign(Method::HmacSha1, b"secret", &s), SDK_SHA1);
        assert!(verify(Method::HmacSha1, b"secret", &s, SDK_SHA1));
        assert!(!verify(Method::HmacSha1, b"secreT", &s, SDK_SHA1));
        assert!(!verify(Method::HmacSha256, b"secret", &s, SDK_SHA1));
    }

    #[test]
    fn signature_methods() {
        assert_eq!(Method::parse(None), Some(Method::HmacSha1));
        assert_eq!(Method::parse(Some("HmacSHA256")), Some(Method::HmacSha256));
        assert_eq!(Method::parse(Some("TC3-HMAC-SHA256")), None);
    }
}
