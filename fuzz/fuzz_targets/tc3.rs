//! The TC3 `Authorization` header and the signature check over it: no panic, and no header
//! that was not made with the key verifies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use raftkms::http::tencent::tc3::{self, SignedRequest};

fuzz_target!(|data: &[u8]| {
    let (head, body) = data.split_at(data.len().min(data.iter().position(|&b| b == 0).unwrap_or(data.len())));
    let header = String::from_utf8_lossy(head);
    let Ok(auth) = tc3::parse_authorization(&header) else { return };
    assert!(!auth.secret_id.is_empty() && !auth.signed_headers.is_empty());
    let lookup = |name: &str| match name {
        "content-type" => Some("application/json".to_string()),
        "host" => Some("kms.tencentcloudapi.com".to_string()),
        _ => None,
    };
    let req = SignedRequest {
        method: "POST",
        query: "",
        header: &lookup,
        body,
        timestamp: 1_700_000_000,
        unsigned_payload: false,
    };
    assert!(tc3::verify_signature(&auth, &req, b"the secret key").is_err());
});
