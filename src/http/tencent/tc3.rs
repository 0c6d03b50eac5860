//! TC3-HMAC-SHA256 request signatures (Tencent Cloud API 3.0).
//!
//! The server recomputes the signature from the request exactly as received: the signed header
//! values verbatim (tccli signs `Host: http://127.0.0.1:PORT`, scheme included), the raw query
//! string, and the body bytes, never a re-serialisation.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The service name in the credential scope.
pub const SERVICE: &str = "kms";
/// How far `X-TC-Timestamp` may be from the server's clock, in seconds.
pub const MAX_SKEW_SECS: i64 = 300;

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub secret_id: String,
    pub date: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Why a signature was not accepted (mapped to AuthFailure.* codes by the API layer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tc3Error {
    #[error("the Authorization header is not a TC3-HMAC-SHA256 authorization: {0}")]
    Malformed(&'static str),
    #[error("the request timestamp is more than 5 minutes from the server's time")]
    Expired,
    #[error("the signature does not match")]
    Mismatch,
}

/// Parses `TC3-HMAC-SHA256 Credential=ID/DATE/SERVICE/tc3_request, SignedHeaders=a;b, Signature=HEX`.
pub fn parse_authorization(value: &str) -> Result<Authorization, Tc3Error> {
    let rest = value
        .trim()
        .strip_prefix("TC3-HMAC-SHA256")
        .ok_or(Tc3Error::Malformed("algorithm"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential.ok_or(Tc3Error::Malformed("Credential"))?;
    let mut scope = credential.split('/');
    let secret_id = scope
        .next()
        .filter(|s| !s.is_empty())
        .ok_or(Tc3Error::Malformed("SecretId"))?;
    let date = scope.next().ok_or(Tc3Error::Malformed("date"))?;
    let service = scope.next().ok_or(Tc3Error::Malformed("service"))?;
    if scope.next() != Some("tc3_request") || scope.next().is_some() {
        return Err(Tc3Error::Malformed("credential scope"));
    }
    let signed_headers: Vec<String> = signed
        .ok_or(Tc3Error::Malformed("SignedHeaders"))?
        .split(';')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    if signed_headers.is_empty() {
        return Err(Tc3Error::Malformed("SignedHeaders"));
    }
    let signature = signature
        .ok_or(Tc3Error::Malformed("Signature"))?
        .to_ascii_lowercase();
    Ok(Authorization {
        secret_id: secret_id.to_string(),
        date: date.to_string(),
        service: service.to_string(),
        signed_headers,
        signature,
    })
}

/// The request facts a signature covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The raw query string (empty for POST).
    pub query: &'a str,
    /// Value of each signed header, looked up by lower-case name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    pub body: &'a [u8],
    /// `X-TC-Timestamp`, seconds.
    pub timestamp: i64,
    /// Whether the client sent `X-TC-Content-SHA256: UNSIGNED-PAYLOAD`.
    pub unsigned_payload: bool,
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// The UTC calendar date of a Unix timestamp, `YYYY-MM-DD`.
pub fn utc_date(timestamp: i64) -> Option<String> {
    let dt = time::OffsetDateTime::from_unix_timestamp(timestamp).ok()?;
    Some(format!(
        "{:04}-{:02}-{:02}",
        dt.year(),
        u8::from(dt.month()),
        dt.day()
    ))
}

/// Computes the signature of `req` with `secret_key` for the given authorization's scope.
pub fn signature(
    auth: &Authorization,
    req: &SignedRequest<'_>,
    secret_key: &[u8],
) -> Result<String, Tc3Error> {
    let payload_hash = if req.unsigned_payload {
        hex::encode(Sha256::digest(b"UNSIGNED-PAYLOAD"))
    } else {
        hex::encode(Sha256::digest(req.body))
    };
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let value = (req.header)(name).ok_or(Tc3Error::Malformed("a signed header is missing"))?;
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let canonical_request = format!(
        "{}\n/\n{}\n{}\n{}\n{}",
        req.method.to_ascii_uppercase(),
        req.query,
        canonical_headers,
        auth.signed_headers.join(";"),
        payload_hash
    );
    let scope = format!("{}/{}/tc3_request", auth.date, auth.service);
    let string_to_sign = format!(
        "TC3-HMAC-SHA256\n{}\n{}\n{}",
        req.timestamp,
        scope,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    // Every derived key is as sensitive as the secret key itself.
    let mut k = zeroize::Zeroizing::new(b"TC3".to_vec());
    k.extend_from_slice(secret_key);
    let k_date = zeroize::Zeroizing::new(hmac(&k, auth.date.as_bytes()));
    let k_service = zeroize::Zeroizing::new(hmac(&k_date, auth.service.as_bytes()));
    let k_signing = zeroize::Zeroizing::new(hmac(&k_service, b"tc3_request"));
    Ok(hex::encode(hmac(&k_signing, string_to_sign.as_bytes())))
}

/// Checks the scope, the clock skew (against `now`) and the signature, in constant time.
pub fn verify(
    auth: &Authorization,
    req: &SignedRequest<'_>,
    secret_key: &[u8],
    now: i64,
) -> Result<(), Tc3Error> {
    if now.abs_diff(req.timestamp) > MAX_SKEW_SECS as u64 {
        return Err(Tc3Error::Expired);
    }
    verify_signature(auth, req, secret_key)
}

/// Checks scope and signature only (no clock), for the KMS service.
pub fn verify_signature(
    auth: &Authorization,
    req: &SignedRequest<'_>,
    secret_key: &[u8],
) -> Result<(), Tc3Error> {
    verify_signature_for(SERVICE, auth, req, secret_key)
}

/// Checks scope and signature only (no clock), for the service the action belongs to (`kms`;
/// `cloudaudit` for LookUpEvents).
pub fn verify_signature_for(
    service: &str,
    auth: &Authorization,
    req: &SignedRequest<'_>,
    secret_key: &[u8],
) -> Result<(), Tc3Error> {
    if auth.service != service || utc_date(req.timestamp).as_deref() != Some(auth.date.as_str()) {
        return Err(Tc3Error::Mismatch);
    }
    let expected = signature(auth, req, secret_key)?;
    if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        Ok(())
    } else {
        Err(Tc3Error::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The captured SDK request of `shared/reference/tencent-client-howto.md` §4.
    #[test]
    fn reference_capture_verifies() {
        let body = br#"{"Alias": "demo-alias", "Description": "captured", "KeyUsage": "ENCRYPT_DECRYPT", "Type": 1, "Tags": [{"TagKey": "env", "TagValue": "dev"}]}"#;
        let header_value = "TC3-HMAC-SHA256 Credential=AKIDexampleSecretId0001/2026-11-22/kms/tc3_request, SignedHeaders=content-type;host, Signature=edd029cc9f4579b5c0d67d2e505e82291616ed3f7d6c8090e0ec04a2f88eac30";
        let auth = parse_authorization(header_value).unwrap();
        assert_eq!(auth.secret_id, "AKIDexampleSecretId0001");
        let host = |h: &str| match h {
            "content-type" => Some("application/json".to_string()),
            "host" => Some("127.0.0.1:18765".to_string()),
            _ => None,
        };
        let req = SignedRequest {
            method: "POST",
            query: "",
            header: &host,
            body,
            timestamp: 1795377449,
            unsigned_payload: false,
        };
        let key = b"dummySecretKeyForCapture0123456789";
        assert_eq!(signature(&auth, &req, key).unwrap(), auth.signature);
        verify_signature(&auth, &req, key).unwrap();
        // Within the window of the capture's own clock, and outside it.
        verify(&auth, &req, key, 1795377449 + 299).unwrap();
        assert_eq!(
            verify(&auth, &req, key, 1795377449 + 301),
            Err(Tc3Error::Expired)
        );
        assert_eq!(
            verify(&auth, &req, key, 1795377449 - 301),
            Err(Tc3Error::Expired)
        );
        // Wrong key, tampered body.
        assert_eq!(
            verify_signature(&auth, &req, b"wrong"),
            Err(Tc3Error::Mismatch)
        );
        let tampered = SignedRequest { body: b"{}", ..req };
        assert_eq!(
            verify_signature(&auth, &tampered, key),
            Err(Tc3Error::Mismatch)
        );
    }

    /// tccli's variant: `Host` carries the scheme and is signed as such.
    #[test]
    fn tccli_host_with_scheme_verifies() {
        let body = br#"{"Alias": "demo-alias", "Description": "captured", "KeyUsage": "ENCRYPT_DECRYPT", "Type": 1, "Tags": [{"TagKey": "env", "TagValue": "dev"}]}"#;
        let auth = parse_authorization("TC3-HMAC-SHA256 Credential=AKIDtccliSecretId0002/2026-11-22/kms/tc3_request, SignedHeaders=content-type;host, Signature=0c75980a229c3bcaa0b95467db138aeb2757f603d935bb98554edb966635a09f").unwrap();
        let host = |h: &str| match h {
            "content-type" => Some("application/json".to_string()),
            "host" => Some("http://127.0.0.1:18765".to_string()),
            _ => None,
        };
        let req = SignedRequest {
            method: "POST",
            query: "",
            header: &host,
            body,
            timestamp: 1795377478,
            unsigned_payload: false,
        };
        verify_signature(&auth, &req, b"dummySecretKeyForCapture0123456789").unwrap();
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "",
            "HMAC-SHA1 Credential=a/2026-01-01/kms/tc3_request, SignedHeaders=host, Signature=00",
            "TC3-HMAC-SHA256 SignedHeaders=host, Signature=00",
            "TC3-HMAC-SHA256 Credential=a/2026-01-01/kms/other, SignedHeaders=host, Signature=00",
            "TC3-HMAC-SHA256 Credential=a/2026-01-01/kms/tc3_request, Signature=00",
        ] {
            assert!(parse_authorization(bad).is_err(), "{bad}");
        }
        assert_eq!(utc_date(1795377449).unwrap(), "2026-11-22");
    }
}
