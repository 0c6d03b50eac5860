//! The query-string form of an API request: only `InvalidParameter`, bounded output.
#![no_main]
use libfuzzer_sys::fuzz_target;
use raftkms::http::tencent::query::unflatten;

fuzz_target!(|data: &[u8]| {
    let q = String::from_utf8_lossy(data);
    match unflatten(&q) {
        Ok(m) => {
            let size = serde_json::to_string(&serde_json::Value::Object(m)).unwrap_or_default().len();
            assert!(size <= 16 * q.len() + 2, "{size} bytes from {}", q.len());
        }
        Err(e) => assert_eq!(e.code, "InvalidParameter"),
    }
});
