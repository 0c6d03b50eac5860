//! An action's JSON body through every parameter accessor: only parameter error codes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use raftkms::http::tencent::params::Params;

const NAMES: &[&str] = &[
    "KeyId", "KeyIds", "Plaintext", "CiphertextBlob", "NumberOfBytes", "PendingWindowInDays",
    "Tags", "TagKey", "TagValue", "Limit", "Offset", "EncryptionContext", "Alias", "KeyUsage",
    "Algorithm", "Message", "MessageType", "Signature", "EncryptedKeyMaterial", "ImportToken",
];

fuzz_target!(|data: &[u8]| {
    let Ok(map) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data) else {
        return;
    };
    let p = Params(map);
    for name in NAMES {
        let _ = p.has(name);
        let results = [
            p.opt_str(name).map(drop),
            p.str(name).map(drop),
            p.opt_u64(name).map(drop),
            p.u64(name).map(drop),
            p.str_list(name).map(drop),
            p.base64(name, "InvalidParameterValue").map(drop),
            p.tags(name).map(drop),
            p.key_id(name).map(drop),
            p.opt_key_id(name).map(drop),
        ];
        for r in results {
            if let Err(e) = r {
                assert!(
                    e.code == "MissingParameter" || e.code.starts_with("InvalidParameter"),
                    "{} for {name}",
                    e.code
                );
            }
        }
    }
});
