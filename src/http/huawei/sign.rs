//! Huawei Cloud's `SDK-HMAC-SHA256` request signature, as `huaweicloudsdkcore` 3.1.219 computes
//! it (`signer/signer.py`): a canonical request (method, path with every segment
//! percent-encoded and a trailing `/`, sorted query, the signed headers, the body's SHA-256),
//! hashed into `SDK-HMAC-SHA256\n<X-Sdk-Date>\n<hex>`, and an HMAC-SHA256 keyed with the raw
//! secret key (no derived keys). `Authorization: SDK-HMAC-SHA256 Access=<AK>,
//! SignedHeaders=<a;b>, Signature=<hex>`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How far `X-Sdk-Date` may be from this node's clock: Huawei's gateway allows 15 minutes.
pub const MAX_SKEW_SECS: u64 = 15 * 60;

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses `SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`.
pub fn parse_authorization(value: &str) -> Result<Authorization, &'static str> {
    let rest = value
        .strip_prefix("SDK-HMAC-SHA256 ")
        .ok_or("the Authorization header is not an SDK-HMAC-SHA256 signature")?;
    let (mut access, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or("the Authorization header is malformed")?;
        match k {
            "Access" => access = Some(v.to_string()),
            "SignedHeaders" => signed = Some(v.to_string()),
            "Signature" => signature = Some(v.to_string()),
            _ => return Err("the Authorization header has an unknown field"),
        }
    }
    let access_key = access
        .filter(|a| !a.is_empty())
        .ok_or("the Authorization header names no Access key")?;
    let signed_headers: Vec<String> = signed
        .ok_or("the Authorization header has no SignedHeaders")?
        .split(';')
        .map(str::to_string)
        .collect();
    let signature = signature
        .filter(|s| s.len() == 64)
        .ok_or("the Authorization header has no 64-digit Signature")?;
    for required in ["host", "x-sdk-date"] {
        if !signed_headers.iter().any(|h| h == required) {
            return Err("SignedHeaders must include host and x-sdk-date");
        }
    }
    Ok(Authorization {
        access_key,
        signed_headers,
        signature,
    })
}

/// `X-Sdk-Date` (`YYYYMMDDTHHMMSSZ`, UTC) in Unix seconds.
pub fn parse_sdk_date(value: &str) -> Option<u64> {
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = value.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let month = time::Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::try_from(num(0..4)?).ok()?,
        month,
        u8::try_from(num(6..8)?).ok()?,
    )
    .ok()?;
    let t = date
        .with_hms(
            u8::try_from(num(9..11)?).ok()?,
            u8::try_from(num(11..13)?).ok()?,
            u8::try_from(num(13..15)?).ok()?,
        )
        .ok()?;
    u64::try_from(t.assume_utc().unix_timestamp()).ok()
}

/// Python's `quote(s, safe='~')`: every byte but letters, digits and `_.-~` percent-encoded.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical URI: the path decoded, split at `/`, each segment encoded, a `/` at the end.
pub fn canonical_uri(raw_path: &str) -> String {
    let decoded = percent_decode(raw_path);
    let mut uri: String = decoded.split('/').map(encode).collect::<Vec<_>>().join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// Percent-decoding of a path segment (`+` stays `+`; a stray `%` stays as it is).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The canonical query: parameters sorted by (name, value), each encoded.
pub fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(raw_query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// What the signature covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    /// The value of a (lower-case) header, if present.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    pub body: &'a [u8],
}

/// The string to sign, or `None` when a signed header is absent.
pub fn string_to_sign(auth: &Authorization, req: &SignedRequest<'_>, date: &str) -> Option<String> {
    let mut headers = String::new();
    for name in &auth.signed_headers {
        let value = (req.header)(name)?;
        headers.push_str(name);
        headers.push(':');
        headers.push_str(value.trim());
        headers.push('\n');
    }
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.to_ascii_uppercase(),
        canonical_uri(req.raw_path),
        canonical_query(req.raw_query),
        headers,
        auth.signed_headers.join(";"),
        hex::encode(Sha256::digest(req.body)),
    );
    Some(format!(
        "SDK-HMAC-SHA256\n{date}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    ))
}

/// Lower-case hex of HMAC-SHA256 under the raw secret key.
pub fn sign(secret_key: &[u8], string_to_sign: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret_key)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether the request carries a valid signature under `secret_key` (constant-time compare).
pub fn verify(
    auth: &Authorization,
    req: &SignedRequest<'_>,
    date: &str,
    secret_key: &[u8],
) -> bool {
    let Some(s) = string_to_sign(auth, req, date) else {
        return false;
    };
    bool::from(
        sign(secret_key, &s)
            .as_bytes()
            .ct_eq(auth.signature.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROJECT: &str = "0123456789abcdef0123456789abcdef";

    fn headers(content_type: &'static str) -> impl Fn(&str) -> Option<String> {
        move |name: &str| {
            match name {
                "content-type" => Some(content_type),
                "host" => Some("127.0.0.1:8443"),
                "user-agent" => Some("huaweicloud-usdk-python/3.0"),
                "x-project-id" => Some(PROJECT),
                "x-sdk-date" => Some("20261122T200042Z"),
                _ => None,
            }
            .map(str::to_string)
        }
    }

    /// Signatures computed by `huaweicloudsdkcore` 3.1.219's own `Signer.sign` for these requests,
    /// AK `MYAK`, SK `dummyHuaweiSecretKey0123456789`.
    #[test]
    fn signatures_match_the_sdk() {
        let sk = b"dummyHuaweiSecretKey0123456789";
        let auth = parse_authorization(
            "SDK-HMAC-SHA256 Access=MYAK, SignedHeaders=content-type;host;user-agent;x-project-id;x-sdk-date, Signature=58e66269e71d2301084c54549cc8070ea24a3008389f38bdee498d12e8ffae6c",
        )
        .unwrap();
        assert_eq!(auth.access_key, "MYAK");
        let h = headers("application/json;charset=utf-8");
        let path = format!("/v1.0/{PROJECT}/kms/create-key");
        let req = SignedRequest {
            method: "POST",
            raw_path: &path,
            raw_query: "",
            header: &h,
            body: br#"{"key_alias": "demo-alias", "key_spec": "AES_256"}"#,
        };
        assert!(verify(&auth, &req, "20261122T200042Z", sk));
        assert!(!verify(&auth, &req, "20261122T200042Z", b"another secret"));
        let tampered = SignedRequest {
            body: br#"{"key_alias": "demo-alias", "key_spec": "SM4"}"#,
            ..req
        };
        assert!(!verify(&auth, &tampered, "20261122T200042Z", sk));

        // A DELETE with a percent-encoded path segment and an empty body.
        let auth = parse_authorization(
            "SDK-HMAC-SHA256 Access=MYAK, SignedHeaders=content-type;host;user-agent;x-project-id;x-sdk-date, Signature=d1d8094160e58359a6684637b5b20b80a647a49d2c1cefb99b5518c2498d1bdc",
        )
        .unwrap();
        let h = headers("application/json");
        let path = format!("/v1.0/{PROJECT}/kms/5f6c/tags/a%20b%2Fc");
        let req = SignedRequest {
            method: "DELETE",
            raw_path: &path,
            raw_query: "",
            header: &h,
            body: b"",
        };
        assert!(verify(&auth, &req, "20261122T200042Z", sk));
    }

    #[test]
    fn authorization_must_sign_host_and_date() {
        assert!(parse_authorization(&format!(
            "SDK-HMAC-SHA256 Access=A, SignedHeaders=content-type;host, Signature={}",
            "0".repeat(64)
        ))
        .is_err());
        assert!(parse_authorization(&format!(
            "SDK-HMAC-SHA256 Access=A, SignedHeaders=host;x-sdk-date, Signature={}",
            "0".repeat(64)
        ))
        .is_ok());
        assert!(parse_authorization("TC3-HMAC-SHA256 Credential=x").is_err());
    }

    #[test]
    fn sdk_dates_and_uris() {
        assert_eq!(parse_sdk_date("19700101T000100Z"), Some(60));
        assert_eq!(parse_sdk_date("2026-11-22T20:00:42Z"), None);
        assert_eq!(canonical_uri("/v1.0/p/kms/x"), "/v1.0/p/kms/x/");
        assert_eq!(canonical_uri("/a/b%20c"), "/a/b%20c/");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
    }
}
