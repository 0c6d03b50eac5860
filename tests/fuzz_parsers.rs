//! Fuzzing of every parser that untrusted bytes reach, on stable Rust (proptest, no nightly, no
//! cargo-fuzz). Each target is one `#[test]`: arbitrary inputs plus structure-aware mutations of
//! valid inputs (a signed TC3 header with fields flipped, truncated or duplicated; a sealed blob
//! with bytes flipped; a snapshot mutated and re-checksummed so the parser behind the checksum is
//! reached). A target fails on a panic, on a wrong verdict (a mutated blob that opens, a forged
//! signature that verifies, an error code outside the documented set) and on an oversized
//! allocation: this binary's global allocator records the largest single request, and every
//! target asserts it stayed under [`MAX_ALLOC`].
//!
//! Case counts are tuned for ~5–20 s per target in the `dev` profile; `RAFTKMS_FUZZ_CASES=N`
//! runs every target with N cases instead (docs/security.md, "Fuzzing").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use raftkms::codec;
use raftkms::crypto::asymmetric::{self, AsymmetricSpec, Message, RsaPadding, SignAlgorithm};
use raftkms::crypto::{blob, CryptoError, Secret, SymmetricAlgorithm};
use raftkms::http::tencent::params::Params;
use raftkms::http::tencent::query::unflatten;
use raftkms::http::tencent::tc3::{self, Authorization, SignedRequest, Tc3Error};
use raftkms::raft::snapshot::{self, SnapshotBody, SnapshotDir};
use raftkms::raft::types::typ::{AppendEntriesRequest, VoteRequest};
use raftkms::raft::types::{Entry, LogId, Node, StoredMembership, Vote};
use raftkms::registry::key::WrappingAlgorithm;
use raftkms::registry::{Command, Envelope, RequestId};
use raftkms::transport::raft_network::decode_snapshot_chunk;

// ---------------------------------------------------------------------------------------------
// Allocation watch
// ---------------------------------------------------------------------------------------------

/// No parser may make a single allocation this large from the small inputs fed here (at most a
/// few KiB; the decoders' bounds allow a few hundred times the input).
const MAX_ALLOC: usize = 64 << 20;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct Watch;

unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Watch = Watch;

fn assert_allocations_bounded() {
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= MAX_ALLOC,
        "a parser made a {largest}-byte allocation"
    );
}

// ---------------------------------------------------------------------------------------------
// Shared generators
// ---------------------------------------------------------------------------------------------

/// Cases for one target: its default, or `RAFTKMS_FUZZ_CASES` for a long run.
fn cases(default: u32) -> u32 {
    std::env::var("RAFTKMS_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        // Shrinking a failure of a slow target (RSA) must not run for hours.
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    }
}

/// One edit of a valid input. Positions are taken modulo the input's length.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
    /// A little-endian u32 or a bincode varint claiming a huge length, written over the input.
    HugeLength(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<usize>(), 1..16usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (any::<usize>(), 1..32usize).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        1 => (any::<usize>(), 0..4u8).prop_map(|(i, k)| Mutation::HugeLength(i, k)),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    vec(mutation(), 1..4)
}

fn apply(input: &[u8], edits: &[Mutation]) -> Vec<u8> {
    let mut b = input.to_vec();
    for m in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        let len = b.len();
        match m {
            Mutation::Flip(i, mask) if len > 0 => b[at(*i, len)] ^= mask,
            Mutation::Set(i, v) if len > 0 => b[at(*i, len)] = *v,
            Mutation::Truncate(i) => b.truncate(at(*i, len + 1)),
            Mutation::Insert(i, bytes) => {
                let p = at(*i, len + 1);
                b.splice(p..p, bytes.iter().copied());
            }
            Mutation::Delete(i, n) if len > 0 => {
                let p = at(*i, len);
                b.drain(p..(p + n).min(len));
            }
            Mutation::Duplicate(i, n) if len > 0 => {
                let p = at(*i, len);
                let part = b[p..(p + n).min(len)].to_vec();
                b.splice(p..p, part);
            }
            Mutation::HugeLength(i, kind) => {
                let huge: Vec<u8> = match kind {
                    0 => u32::MAX.to_le_bytes().to_vec(),
                    1 => [&[253u8][..], &(1u64 << 32).to_le_bytes()].concat(),
                    2 => [&[253u8][..], &u64::MAX.to_le_bytes()].concat(),
                    _ => [&[252u8][..], &u32::MAX.to_le_bytes()].concat(),
                };
                let p = at(*i, len + 1);
                let end = (p + huge.len()).min(len);
                b.splice(p..end, huge);
            }
            _ => {}
        }
    }
    b
}

fn log_id(term: u64, node: u64, index: u64) -> LogId {
    openraft::LogId::new(openraft::CommittedLeaderId::new(term, node), index)
}

fn node(s: &str) -> Node {
    Node {
        raft_addr: format!("{s}:1"),
        api_addr: format!("{s}:2"),
        region: "ap-fuzz".into(),
    }
}

fn membership(n: u64) -> StoredMembership {
    let nodes: BTreeMap<u64, Node> = (1..=n).map(|i| (i, node(&format!("n{i}")))).collect();
    let ids = nodes.keys().copied().collect();
    StoredMembership::new(
        Some(log_id(1, 1, 2)),
        openraft::Membership::new(vec![ids], nodes),
    )
}

// ---------------------------------------------------------------------------------------------
// 1. TC3 Authorization header and signature verification
// ---------------------------------------------------------------------------------------------

fn render(auth: &Authorization) -> String {
    format!(
        "TC3-HMAC-SHA256 Credential={}/{}/{}/tc3_request, SignedHeaders={}, Signature={}",
        auth.secret_id,
        auth.date,
        auth.service,
        auth.signed_headers.join(";"),
        auth.signature
    )
}

#[derive(Debug, Clone)]
struct Tc3Case {
    method: String,
    query: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    timestamp: i64,
    unsigned_payload: bool,
    secret_id: String,
    key: Vec<u8>,
}

fn tc3_case() -> impl Strategy<Value = Tc3Case> {
    (
        prop_oneof!["POST", "GET", ".{0,8}"],
        prop_oneof![Just(String::new()), "[ -~]{0,64}", ".{0,32}"],
        btree_map("[a-z][a-z0-9-]{0,12}", ".{0,24}", 1..5),
        vec(any::<u8>(), 0..256),
        prop_oneof![0..4_102_444_800i64, any::<i64>()],
        any::<bool>(),
        "[A-Za-z0-9]{1,24}",
        vec(any::<u8>(), 0..48),
    )
        .prop_map(
            |(method, query, headers, body, timestamp, unsigned_payload, secret_id, key)| Tc3Case {
                method,
                query,
                headers,
                body,
                timestamp,
                unsigned_payload,
                secret_id,
                key,
            },
        )
}

proptest! {
    #![proptest_config(config(100_000))]

    #[test]
    fn fuzz_tc3(
        case in tc3_case(),
        junk in ".{0,200}",
        edits in mutations(),
        field in 0..4usize,
    ) {
        // Arbitrary text.
        if let Ok(a) = tc3::parse_authorization(&junk) {
            prop_assert!(!a.secret_id.is_empty() && !a.signed_headers.is_empty());
        }
        let lookup = |name: &str| case.headers.get(name).cloned();
        let req = SignedRequest {
            method: &case.method,
            query: &case.query,
            header: &lookup,
            body: &case.body,
            timestamp: case.timestamp,
            unsigned_payload: case.unsigned_payload,
        };
        // A valid signature over arbitrary request facts.
        let date = tc3::utc_date(case.timestamp);
        let mut auth = Authorization {
            secret_id: case.secret_id.clone(),
            date: date.clone().unwrap_or_else(|| "1970-01-01".into()),
            service: tc3::SERVICE.into(),
            signed_headers: case.headers.keys().cloned().collect(),
            signature: String::new(),
        };
        auth.signature = tc3::signature(&auth, &req, &case.key).unwrap();
        let header = render(&auth);
        let parsed = tc3::parse_authorization(&header).unwrap();
        prop_assert_eq!(&parsed, &auth);
        let verdict = tc3::verify_signature(&parsed, &req, &case.key);
        prop_assert_eq!(verdict.is_ok(), date.is_some());
        // A different body, query or key never verifies.
        let mut other = case.body.clone();
        other.push(0);
        let tampered = SignedRequest { body: &other, ..req };
        if !case.unsigned_payload {
            prop_assert_eq!(tc3::verify_signature(&parsed, &tampered, &case.key), Err(Tc3Error::Mismatch));
        }
        let q = format!("{}&x", case.query);
        let tampered = SignedRequest { query: &q, ..req };
        prop_assert_eq!(tc3::verify_signature(&parsed, &tampered, &case.key), Err(Tc3Error::Mismatch));
        let mut wrong_key = case.key.clone();
        wrong_key.push(1);
        prop_assert_eq!(tc3::verify_signature(&parsed, &req, &wrong_key), Err(Tc3Error::Mismatch));
        // The header, mutated at the byte level and at the field level.
        let mutated = String::from_utf8_lossy(&apply(header.as_bytes(), &edits)).into_owned();
        let fields: Vec<&str> = header.split(", ").collect();
        let mut dup = fields.clone();
        dup.insert(field.min(dup.len()), fields[field.min(fields.len() - 1)]);
        let mut dropped = fields.clone();
        dropped.remove(field.min(dropped.len() - 1));
        for h in [mutated, dup.join(", "), dropped.join(", "), fields.join(",")] {
            if let Ok(a) = tc3::parse_authorization(&h) {
                match tc3::verify_signature(&a, &req, &case.key) {
                    Ok(()) => prop_assert_eq!(&a.signature, &auth.signature),
                    Err(Tc3Error::Mismatch | Tc3Error::Malformed(_)) => {}
                    Err(e) => prop_assert!(false, "unexpected {e:?}"),
                }
            }
        }
        // An arbitrary parsed header against the request.
        if let Ok(a) = tc3::parse_authorization(&junk) {
            prop_assert!(tc3::verify_signature(&a, &req, &case.key).is_err());
        }
        assert_allocations_bounded();
    }
}

// ---------------------------------------------------------------------------------------------
// 1b. The other two dialects' signatures (Huawei SDK-HMAC-SHA256, the legacy v2 HMAC)
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(20_000))]

    #[test]
    fn fuzz_huawei_signature(
        path in "(/[a-zA-Z0-9%_.~ +&=-]{0,12}){1,5}",
        query in "[a-z0-9=&%+]{0,30}",
        body in vec(any::<u8>(), 0..200),
        key in "[a-zA-Z0-9]{1,40}",
        junk in ".{0,200}",
        date in "[0-9T Z]{0,20}",
        edits in mutations(),
    ) {
        use raftkms::http::huawei::sign as hw;
        // Arbitrary text never panics; what parses names a key and signs host and date.
        if let Ok(a) = hw::parse_authorization(&junk) {
            prop_assert!(!a.access_key.is_empty() && a.signature.len() == 64);
            prop_assert!(a.signed_headers.iter().any(|h| h == "host"));
        }
        if let Some(t) = hw::parse_sdk_date(&date) {
            prop_assert!(date.len() == 16 && t < 253_402_300_800);
        }
        let uri = hw::canonical_uri(&path);
        prop_assert!(uri.ends_with('/') && uri.starts_with('/'));
        let _ = hw::canonical_query(&query);
        // A signature we make verifies; a changed body, path or key does not.
        let headers = |n: &str| match n {
            "host" => Some("127.0.0.1:1".to_string()),
            "x-sdk-date" => Some("20261206T000000Z".to_string()),
            _ => None,
        };
        let mut auth = hw::Authorization {
            access_key: "AK".into(),
            signed_headers: vec!["host".into(), "x-sdk-date".into()],
            signature: String::new(),
        };
        let req = hw::SignedRequest { method: "POST", raw_path: &path, raw_query: &query, header: &headers, body: &body };
        let to_sign = hw::string_to_sign(&auth, &req, "20261206T000000Z").unwrap();
        auth.signature = hw::sign(key.as_bytes(), &to_sign);
        prop_assert!(hw::verify(&auth, &req, "20261206T000000Z", key.as_bytes()));
        let mut other = body.clone();
        other.push(1);
        let other_body = hw::SignedRequest { body: &other, ..req };
        let verified = hw::verify(&auth, &other_body, "20261206T000000Z", key.as_bytes());
        prop_assert!(!verified);
        let longer = format!("{path}/x");
        let other_path = hw::SignedRequest { raw_path: &longer, ..req };
        let verified = hw::verify(&auth, &other_path, "20261206T000000Z", key.as_bytes());
        prop_assert!(!verified);
        let verified = hw::verify(&auth, &req, "20261206T000001Z", key.as_bytes());
        prop_assert!(!verified);
        let other_key = format!("{key}x");
        let verified = hw::verify(&auth, &req, "20261206T000000Z", other_key.as_bytes());
        prop_assert!(!verified);
        // The rendered header, mutated: parses only to itself or to something that fails.
        let header = format!(
            "SDK-HMAC-SHA256 Access={}, SignedHeaders={}, Signature={}",
            auth.access_key, auth.signed_headers.join(";"), auth.signature
        );
        let parsed = hw::parse_authorization(&header);
        prop_assert_eq!(parsed.as_ref(), Ok(&auth));
        let mutated = String::from_utf8_lossy(&apply(header.as_bytes(), &edits)).into_owned();
        if let Ok(a) = hw::parse_authorization(&mutated) {
            if hw::verify(&a, &req, "20261206T000000Z", key.as_bytes()) {
                prop_assert_eq!(&a.signature, &auth.signature);
            }
        }
        assert_allocations_bounded();
    }

    #[test]
    fn fuzz_legacy_v2_signature(
        params in btree_map("[a-zA-Z_.]{1,8}", "[ -%'-~]{0,20}", 0..12),
        key in "[a-zA-Z0-9]{1,40}",
        which in any::<prop::sample::Index>(),
    ) {
        use raftkms::http::tencent::v2::sign as v2;
        let pairs: Vec<(String, String)> = params.clone().into_iter().collect();
        for method in [v2::Method::HmacSha1, v2::Method::HmacSha256] {
            let s = v2::string_to_sign("GET", "h:1", "/v2/index.php", &pairs);
            let sig = v2::sign(method, key.as_bytes(), &s);
            prop_assert!(v2::verify(method, key.as_bytes(), &s, &sig));
            // Any changed value changes the string, so the signature no longer matches.
            if !pairs.is_empty() {
                let mut changed = pairs.clone();
                let i = which.index(changed.len());
                changed[i].1.push('x');
                let s2 = v2::string_to_sign("GET", "h:1", "/v2/index.php", &changed);
                prop_assert!(!v2::verify(method, key.as_bytes(), &s2, &sig));
            }
            let other_host = v2::string_to_sign("GET", "h:2", "/v2/index.php", &pairs);
            prop_assert!(!v2::verify(method, key.as_bytes(), &other_host, &sig));
        }
        assert_allocations_bounded();
    }
}

// ---------------------------------------------------------------------------------------------
// 2. The query-string form
// ---------------------------------------------------------------------------------------------

fn query_key() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("Tags".to_string()),
        Just("KeyIds".to_string()),
        Just("TagKey".to_string()),
        Just("0".to_string()),
        Just("1".to_string()),
        Just("2".to_string()),
        Just("200".to_string()),
        Just("201".to_string()),
        Just("18446744073709551616".to_string()),
        Just(String::new()),
        Just("%2E".to_string()),
        "[0-9]{1,3}",
        "[A-Za-z%&=+.]{0,6}",
    ];
    vec(seg, 1..7).prop_map(|s| s.join("."))
}

fn hostile_query() -> impl Strategy<Value = String> {
    prop_oneof![
        // Valid-looking flattened parameters, possibly deep, sparse or out of order.
        vec((query_key(), "[ -~]{0,12}"), 0..40).prop_map(|ps| {
            ps.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        }),
        // A long in-order list followed by hostile nesting.
        (0..260usize, 1..8usize).prop_map(|(n, depth)| {
            let mut q: Vec<String> = (0..n).map(|i| format!("KeyIds.{i}=k{i}")).collect();
            q.push(format!("{}=x", vec!["0"; depth].join(".")));
            q.join("&")
        }),
        // Many parameters.
        (990..1010usize).prop_map(|n| (0..n)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join("&")),
        ".{0,200}",
    ]
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn max_array(v: &Value) -> usize {
    match v {
        Value::Array(a) => a.len().max(a.iter().map(max_array).max().unwrap_or(0)),
        Value::Object(m) => m.values().map(max_array).max().unwrap_or(0),
        _ => 0,
    }
}

proptest! {
    #![proptest_config(config(30_000))]

    #[test]
    fn fuzz_query_unflatten(q in hostile_query(), edits in mutations()) {
        for q in [q.clone(), String::from_utf8_lossy(&apply(q.as_bytes(), &edits)).into_owned()] {
            match unflatten(&q) {
                Ok(m) => {
                    let v = Value::Object(m);
                    // The root object plus at most four path segments.
                    prop_assert!(depth(&v) <= 5, "depth {}", depth(&v));
                    prop_assert!(max_array(&v) <= 201);
                    // Output bounded by the input (JSON escaping is at most 6 bytes per byte).
                    let size = serde_json::to_string(&v).unwrap().len();
                    prop_assert!(size <= 16 * q.len() + 2, "{size} bytes from {}", q.len());
                }
                Err(e) => prop_assert_eq!(e.code, "InvalidParameter"),
            }
        }
        assert_allocations_bounded();
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Action parameters
// ---------------------------------------------------------------------------------------------

const PARAM_NAMES: &[&str] = &[
    "KeyId",
    "KeyIds",
    "Plaintext",
    "CiphertextBlob",
    "NumberOfBytes",
    "PendingWindowInDays",
    "Tags",
    "TagKey",
    "TagValue",
    "Limit",
    "Offset",
    "EncryptionContext",
];

fn param_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(PARAM_NAMES).prop_map(str::to_string),
        1 => ".{0,8}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,16}".prop_map(Value::String),
        "[0-9]{0,24}".prop_map(Value::String),
        "[A-Za-z0-9+/=\\- ]{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(param_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn allowed_code(code: &str) -> bool {
    code == "MissingParameter"
        || code.starts_with("InvalidParameterValue")
        || code.starts_with("InvalidParameter")
}

fn exercise(params: &Params) -> Result<(), TestCaseError> {
    for name in PARAM_NAMES {
        let _ = params.has(name);
        let results = [
            params.opt_str(name).map(drop),
            params.str(name).map(drop),
            params.opt_u64(name).map(drop),
            params.u64(name).map(drop),
            params.str_list(name).map(drop),
            params.base64(name, "InvalidParameterValue").map(drop),
            params.base64(name, "InvalidParameter").map(drop),
            params.tags(name).map(drop),
            params.key_id(name).map(drop),
            params.opt_key_id(name).map(drop),
        ];
        for r in results {
            if let Err(e) = r {
                prop_assert!(allowed_code(e.code), "{} for {name}", e.code);
            }
        }
        // A KeyId accepted is one in form: 36 characters, a UUID.
        if let Ok(id) = params.key_id(name) {
            prop_assert!(
                id.len() == 36 && uuid::Uuid::try_parse(&id).is_ok(),
                "{id:?}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(80_000))]

    #[test]
    fn fuzz_action_params(
        fields in btree_map(param_name(), json_value(), 0..8),
        raw in vec(any::<u8>(), 0..128),
        edits in mutations(),
    ) {
        let map: Map<String, Value> = fields.into_iter().collect();
        let text = serde_json::to_vec(&map).unwrap();
        exercise(&Params(map))?;
        // Raw and mutated JSON bodies, as the API reads them.
        for body in [raw, apply(&text, &edits)] {
            if let Ok(m) = serde_json::from_slice::<Map<String, Value>>(&body) {
                exercise(&Params(m))?;
            }
        }
        assert_allocations_bounded();
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Ciphertext blobs
// ---------------------------------------------------------------------------------------------

fn blob_keys() -> &'static [(SymmetricAlgorithm, Secret); 2] {
    static KEYS: OnceLock<[(SymmetricAlgorithm, Secret); 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [SymmetricAlgorithm::Aes256Gcm, SymmetricAlgorithm::Sm4Gcm]
            .map(|a| (a, Secret::random(a.key_len())))
    })
}

fn crypto_error_ok(e: &CryptoError) -> bool {
    matches!(
        e,
        CryptoError::Authentication | CryptoError::Malformed(_) | CryptoError::Version(_)
    )
}

proptest! {
    #![proptest_config(config(1_000_000))]

    #[test]
    fn fuzz_ciphertext_blob(
        raw in vec(any::<u8>(), 0..128),
        alg in 0..2usize,
        plaintext in vec(any::<u8>(), 0..96),
        context in vec(any::<u8>(), 0..24),
        uin in any::<u64>(),
        edits in mutations(),
    ) {
        let (a, material) = &blob_keys()[alg];
        let key_id = uuid::Uuid::from_bytes([7; 16]);
        // Arbitrary bytes: parse and open never panic, never open.
        let _ = blob::parse(&raw);
        match blob::open(&raw, material, uin, &context) {
            Ok(_) => prop_assert!(false, "arbitrary bytes opened"),
            Err(e) => prop_assert!(crypto_error_ok(&e), "{e:?}"),
        }
        // Arbitrary bytes under either version's header never open.
        for version in [blob::BLOB_V1, blob::BLOB_V2] {
            let mut forged = raw.clone();
            if forged.len() > 1 {
                forged[0] = version;
                forged[1] = a.code();
            }
            prop_assert!(blob::open(&forged, material, uin, &context).is_err());
        }
        // A valid blob, mutated: never opens.
        let good = blob::seal(*a, material, key_id, 3, uin, &context, &plaintext).unwrap();
        let opened = blob::open(&good, material, uin, &context).unwrap();
        prop_assert_eq!(opened.expose(), &plaintext[..]);
        let bad = apply(&good, &edits);
        if bad != good {
            let _ = blob::parse(&bad);
            match blob::open(&bad, material, uin, &context) {
                Ok(_) => prop_assert!(false, "a mutated blob opened"),
                Err(e) => prop_assert!(crypto_error_ok(&e), "{e:?}"),
            }
        }
        assert_allocations_bounded();
    }
}

// ---------------------------------------------------------------------------------------------
// 5. BYOK: RSA decryption of import material, wrapping algorithm names
// ---------------------------------------------------------------------------------------------

fn rsa_key() -> &'static asymmetric::KeyPair {
    static KEY: OnceLock<asymmetric::KeyPair> = OnceLock::new();
    KEY.get_or_init(|| asymmetric::generate(AsymmetricSpec::Rsa2048).unwrap())
}

fn rsa_encrypt(padding: RsaPadding, plain: &[u8]) -> Vec<u8> {
    use pkcs8::DecodePublicKey;
    let key = rsa::PublicKey::from_public_key_der(&rsa_key().public_spki).unwrap();
    let mut rng = crypto_common::getrandom::SysRng;
    match padding {
        RsaPadding::Pkcs1v15 => key.encrypt(&mut rng, rsa::Pkcs1v15Encrypt, plain).unwrap(),
        RsaPadding::OaepSha1 => key
            .encrypt(&mut rng, rsa::Oaep::<sha1::Sha1>::new(), plain)
            .unwrap(),
        RsaPadding::OaepSha256 => key
            .encrypt(&mut rng, rsa::Oaep::<sha2_0_11::Sha256>::new(), plain)
            .unwrap(),
    }
}

const PADDINGS: [RsaPadding; 3] = [
    RsaPadding::Pkcs1v15,
    RsaPadding::OaepSha1,
    RsaPadding::OaepSha256,
];

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn fuzz_byok_rsa_decrypt(
        raw in prop_oneof![vec(any::<u8>(), 0..300), vec(any::<u8>(), 256..=256)],
        pad in 0..3usize,
        plain in vec(any::<u8>(), 1..32),
        edits in mutations(),
        name in prop_oneof![
            Just("RSAES_PKCS1_V1_5".to_string()),
            Just("RSAES_OAEP_SHA_1".to_string()),
            Just("RSAES_OAEP_SHA_256".to_string()),
            "RSAES_[A-Z0-9_]{0,12}",
            ".{0,24}",
        ],
    ) {
        let key = rsa_key();
        let padding = PADDINGS[pad];
        // Arbitrary ciphertexts: the one indistinct error, or (PKCS#1 v1.5, ~2^-16) a plaintext.
        match asymmetric::rsa_decrypt(&key.private_pkcs8, padding, &raw) {
            Ok(_) => prop_assert!(padding == RsaPadding::Pkcs1v15 && raw.len() == 256),
            Err(e) => prop_assert_eq!(e, CryptoError::Authentication),
        }
        // A valid ciphertext, mutated: OAEP never decrypts it; v1.5 never to the same plaintext.
        let good = rsa_encrypt(padding, &plain);
        let bad = apply(&good, &edits);
        if bad != good {
            match asymmetric::rsa_decrypt(&key.private_pkcs8, padding, &bad) {
                Ok(p) => prop_assert!(padding == RsaPadding::Pkcs1v15 && p.expose() != &plain[..]),
                Err(e) => prop_assert_eq!(e, CryptoError::Authentication),
            }
        }
        // Wrapping algorithm names: exactly the three, and the same set as the RSA paddings.
        let w = WrappingAlgorithm::parse(&name);
        prop_assert_eq!(w.is_some(), RsaPadding::parse(&name).is_some());
        prop_assert_eq!(
            w.is_some(),
            ["RSAES_PKCS1_V1_5", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"].contains(&name.as_str())
        );
        assert_allocations_bounded();
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Public keys and signatures given to verify
// ---------------------------------------------------------------------------------------------

const SPECS: [AsymmetricSpec; 7] = [
    AsymmetricSpec::Rsa2048,
    AsymmetricSpec::Rsa3072,
    AsymmetricSpec::Rsa4096,
    AsymmetricSpec::Sm2,
    AsymmetricSpec::EccP256,
    AsymmetricSpec::EccP384,
    AsymmetricSpec::Secp256k1,
];

const ALGS: [SignAlgorithm; 6] = [
    SignAlgorithm::Sm2Dsa,
    SignAlgorithm::EcdsaP256Sha256,
    SignAlgorithm::EcdsaP384Sha384,
    SignAlgorithm::EcdsaSecp256k1Sha256,
    SignAlgorithm::RsaPssSha256,
    SignAlgorithm::RsaPkcs1Sha256,
];

/// One generated key per curve; the RSA-2048 key stands in for every RSA spec.
fn signing_key(spec: AsymmetricSpec) -> &'static asymmetric::KeyPair {
    static KEYS: OnceLock<Vec<asymmetric::KeyPair>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        [
            AsymmetricSpec::Sm2,
            AsymmetricSpec::EccP256,
            AsymmetricSpec::EccP384,
            AsymmetricSpec::Secp256k1,
        ]
        .map(|s| asymmetric::generate(s).unwrap())
        .into()
    });
    match spec {
        AsymmetricSpec::Sm2 => &keys[0],
        AsymmetricSpec::EccP256 => &keys[1],
        AsymmetricSpec::EccP384 => &keys[2],
        AsymmetricSpec::Secp256k1 => &keys[3],
        _ => rsa_key(),
    }
}

proptest! {
    #![proptest_config(config(16_000))]

    #[test]
    fn fuzz_asymmetric_verify(
        s in 0..7usize,
        a in 0..6usize,
        spki_raw in vec(any::<u8>(), 0..200),
        sig_raw in vec(any::<u8>(), 0..300),
        msg in vec(any::<u8>(), 0..64),
        digest in prop_oneof![vec(any::<u8>(), 0..64), vec(any::<u8>(), 32..=32), vec(any::<u8>(), 48..=48)],
        spki_edits in mutations(),
        sig_edits in mutations(),
    ) {
        let (spec, alg) = (SPECS[s], ALGS[a]);
        let key = signing_key(spec);
        let check = |spki: &[u8], sig: &[u8], m: Message<'_>| asymmetric::verify(spec, spki, alg, m, sig);
        // Arbitrary key and signature: never a valid signature.
        for m in [Message::Raw(&msg), Message::Digest(&digest)] {
            prop_assert!(!matches!(check(&spki_raw, &sig_raw, m), Ok(true)));
            prop_assert!(!matches!(check(&key.public_spki, &sig_raw, m), Ok(true)));
        }
        // A real signature by the key of a fitting spec, then the key or the signature mutated.
        if alg.fits(spec) {
            let good = asymmetric::sign(spec, &key.private_pkcs8, alg, Message::Raw(&msg)).unwrap();
            prop_assert!(check(&key.public_spki, &good, Message::Raw(&msg)).unwrap());
            let bad_sig = apply(&good, &sig_edits);
            if bad_sig != good {
                prop_assert!(!matches!(check(&key.public_spki, &bad_sig, Message::Raw(&msg)), Ok(true)));
            }
            let bad_spki = apply(&key.public_spki, &spki_edits);
            if bad_spki != key.public_spki {
                prop_assert!(!matches!(check(&bad_spki, &good, Message::Raw(&msg)), Ok(true)));
            }
        } else {
            prop_assert!(check(&key.public_spki, &sig_raw, Message::Raw(&msg)).is_err());
        }
        assert_allocations_bounded();
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Internal RPC and snapshot decoders
// ---------------------------------------------------------------------------------------------

fn envelope() -> impl Strategy<Value = Envelope> {
    let command = prop_oneof![
        (".{0,16}", vec(any::<u8>(), 0..32))
            .prop_map(|(name, value)| Command::PutRecord { name, value }),
        vec((".{0,8}", vec(any::<u8>(), 0..8)), 0..4)
            .prop_map(|records| Command::PutRecords { records }),
        ".{0,16}".prop_map(|name| Command::DeleteRecord { name }),
        vec(any::<u8>(), 0..48).prop_map(|sealed| Command::InstallRootKey { sealed }),
    ];
    (any::<[u8; 16]>(), any::<u64>(), command).prop_map(|(id, at, command)| Envelope {
        request_id: RequestId(id),
        issued_at_ms: at,
        command,
    })
}

fn vote(term: u64, node: u64, committed: bool) -> Vote {
    if committed {
        Vote::new_committed(term, node)
    } else {
        Vote::new(term, node)
    }
}

fn append_entries() -> impl Strategy<Value = AppendEntriesRequest> {
    (
        any::<u64>(),
        any::<bool>(),
        vec(envelope(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(term, committed, envs, with_membership)| {
            let mut entries: Vec<Entry> = envs
                .into_iter()
                .enumerate()
                .map(|(i, env)| Entry {
                    log_id: log_id(term, 1, i as u64 + 10),
                    payload: openraft::EntryPayload::Normal(env),
                })
                .collect();
            if with_membership {
                entries.push(Entry {
                    log_id: log_id(term, 1, 99),
                    payload: openraft::EntryPayload::Membership(membership(3).membership().clone()),
                });
            }
            AppendEntriesRequest {
                vote: vote(term, 1, committed),
                prev_log_id: Some(log_id(term, 1, 9)),
                leader_commit: Some(log_id(term, 1, 9)),
                entries,
            }
        })
}

/// The wire layout of a snapshot chunk's header (`transport::raft_network`'s private
/// `ChunkHeader`: bincode is positional, so the same field types encode identically).
#[derive(Serialize, Deserialize)]
struct ChunkHeader {
    vote: Vote,
    meta: raftkms::raft::types::SnapshotMeta,
    offset: u64,
    done: bool,
}

fn snapshot_chunk() -> impl Strategy<Value = Vec<u8>> {
    (
        ".{0,16}",
        0..4u64,
        any::<u64>(),
        any::<bool>(),
        vec(any::<u8>(), 0..64),
    )
        .prop_map(|(id, members, offset, done, data)| {
            let header = codec::encode(
                "snapshot chunk",
                &ChunkHeader {
                    vote: vote(2, 1, true),
                    meta: openraft::SnapshotMeta {
                        last_log_id: Some(log_id(2, 1, 40)),
                        last_membership: membership(members),
                        snapshot_id: id,
                    },
                    offset,
                    done,
                },
            )
            .unwrap();
            let mut out = (header.len() as u32).to_le_bytes().to_vec();
            out.extend_from_slice(&header);
            out.extend_from_slice(&data);
            out
        })
}

fn snapshot_body() -> impl Strategy<Value = SnapshotBody> {
    (
        ".{0,16}",
        0..4u64,
        vec((vec(any::<u8>(), 0..12), vec(any::<u8>(), 0..24)), 0..6),
    )
        .prop_map(|(snapshot_id, members, pairs)| SnapshotBody {
            snapshot_id,
            last_applied: Some(log_id(3, 1, 77)),
            membership: membership(members),
            pairs,
        })
}

/// A snapshot in the version-1 layout (`RKMSSNAP` ‖ versioned bincode body ‖ SHA-256).
fn snapshot_v1(body: &SnapshotBody) -> Vec<u8> {
    let mut v1 = b"RKMSSNAP".to_vec();
    v1.extend_from_slice(&codec::encode("snapshot", body).unwrap());
    reseal(v1)
}

/// Appends the checksum, so that a mutation reaches the parser behind it.
fn reseal(mut content: Vec<u8>) -> Vec<u8> {
    let sum = Sha256::digest(&content);
    content.extend_from_slice(&sum);
    content
}

fn decode_internal(bytes: &[u8]) {
    let _ = codec::decode::<AppendEntriesRequest>("append entries", bytes);
    let _ = codec::decode::<VoteRequest>("vote", bytes);
    let _ = codec::decode::<Envelope>("forwarded write", bytes);
    let _ = decode_snapshot_chunk(bytes);
}

fn snapshot_file() -> &'static (tempfile::TempDir, SnapshotDir) {
    static DIR: OnceLock<(tempfile::TempDir, SnapshotDir)> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let sd = SnapshotDir::new(dir.path()).unwrap();
        (dir, sd)
    })
}

proptest! {
    #![proptest_config(config(250_000))]

    #[test]
    fn fuzz_internal_decoders(
        raw in vec(any::<u8>(), 0..256),
        append in append_entries(),
        env in envelope(),
        term in any::<u64>(),
        chunk in snapshot_chunk(),
        edits in mutations(),
    ) {
        // Arbitrary bytes, with and without a valid version byte.
        decode_internal(&raw);
        let mut versioned = vec![codec::FORMAT_V1];
        versioned.extend_from_slice(&raw);
        decode_internal(&versioned);
        // Valid records, mutated.
        let vote_req = VoteRequest::new(vote(term, 2, false), Some(log_id(term, 2, 5)));
        let valid = [
            codec::encode("append entries", &append).unwrap(),
            codec::encode("vote", &vote_req).unwrap(),
            codec::encode("forwarded write", &env).unwrap(),
            chunk.clone(),
        ];
        prop_assert_eq!(codec::decode::<AppendEntriesRequest>("a", &valid[0]).unwrap().entries.len(), append.entries.len());
        prop_assert_eq!(codec::decode::<VoteRequest>("v", &valid[1]).unwrap(), vote_req);
        prop_assert_eq!(codec::decode::<Envelope>("e", &valid[2]).unwrap(), env);
        prop_assert!(decode_snapshot_chunk(&valid[3]).is_ok());
        for v in &valid {
            decode_internal(&apply(v, &edits));
        }
        assert_allocations_bounded();
    }
}

proptest! {
    #![proptest_config(config(40_000))]

    #[test]
    fn fuzz_snapshot_reader(
        raw in vec(any::<u8>(), 0..256),
        body in snapshot_body(),
        edits in mutations(),
        on_disk in any::<bool>(),
    ) {
        // Arbitrary bytes, bare and behind a valid magic and checksum.
        let _ = snapshot::decode(&raw);
        let _ = snapshot::read_header(&raw);
        let mut framed = b"RKMSSNAP".to_vec();
        framed.extend_from_slice(&raw);
        let framed = reseal(framed);
        let _ = snapshot::decode(&framed);
        let _ = snapshot::read_header(&framed);
        // Both layouts, mutated and re-checksummed.
        let v2 = snapshot::encode(&body).unwrap();
        prop_assert_eq!(&snapshot::decode(&v2).unwrap(), &body);
        let v1 = snapshot_v1(&body);
        prop_assert_eq!(&snapshot::decode(&v1).unwrap(), &body);
        for good in [&v2, &v1] {
            let content = apply(&good[..good.len() - 32], &edits);
            let bad = reseal(content);
            let _ = snapshot::decode(&bad);
            let _ = snapshot::read_header(&bad);
            // Mutated without fixing the checksum: refused unless unchanged.
            let unsealed = apply(good, &edits);
            if unsealed != *good {
                prop_assert!(snapshot::decode(&unsealed).is_err());
            }
            if on_disk {
                // The file reader (header only for version 2, the whole file for version 1).
                let (dir, sd) = snapshot_file();
                std::fs::write(dir.path().join("snapshots/current.snap"), &bad).unwrap();
                let _ = sd.load_header();
            }
        }
        assert_allocations_bounded();
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions
// ---------------------------------------------------------------------------------------------

/// A length prefix claiming 4 GiB (or 2^64 − 1) bytes for a string must be refused without
/// allocating it: bincode sizes a string's buffer by its prefix before reading the bytes.
#[test]
fn a_lying_string_length_does_not_allocate_it() {
    for prefix in [
        [&[253u8][..], &(1u64 << 32).to_le_bytes()].concat(),
        [&[253u8][..], &u64::MAX.to_le_bytes()].concat(),
        [&[252u8][..], &u32::MAX.to_le_bytes()].concat(),
    ] {
        let mut bytes = vec![codec::FORMAT_V1];
        bytes.extend_from_slice(&prefix);
        bytes.extend_from_slice(b"short");
        assert!(codec::decode::<String>("string", &bytes).is_err());
        // The same inside a forwarded write (`Command::DeleteRecord { name }`, variant 2).
        let mut env = codec::encode(
            "forwarded write",
            &Envelope {
                request_id: RequestId([0; 16]),
                issued_at_ms: 1,
                command: Command::DeleteRecord { name: "n".into() },
            },
        )
        .unwrap();
        env.truncate(env.len() - 2);
        env.extend_from_slice(&prefix);
        env.extend_from_slice(b"short");
        assert!(codec::decode::<Envelope>("forwarded write", &env).is_err());
    }
    assert_allocations_bounded();
}

/// Valid records still decode at sizes past the smaller decode bounds.
#[test]
fn large_valid_records_still_decode() {
    for n in [0usize, 10, 70_000, 3_000_000] {
        let s = "x".repeat(n);
        let bytes = codec::encode("string", &s).unwrap();
        assert_eq!(codec::decode::<String>("string", &bytes).unwrap(), s);
        let many: Vec<u64> = vec![1; n / 8];
        let bytes = codec::encode("numbers", &many).unwrap();
        assert_eq!(codec::decode::<Vec<u64>>("numbers", &bytes).unwrap(), many);
    }
}

/// A blob whose header names another algorithm than its key's is refused as not authentic (it
/// was `KeyLength`, which the API layer maps to an internal error).
#[test]
fn a_blob_naming_another_algorithm_is_not_authentic() {
    for (i, (a, material)) in blob_keys().iter().enumerate() {
        let mut b = blob::seal(*a, material, uuid::Uuid::nil(), 1, 7, b"", b"p").unwrap();
        b[1] = blob_keys()[1 - i].0.code();
        assert_eq!(
            blob::open(&b, material, 7, b"").unwrap_err(),
            CryptoError::Authentication
        );
    }
}
