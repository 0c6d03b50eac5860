//! Ciphertext blobs: arbitrary bytes never open, errors are only the documented ones.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use raftkms::crypto::{blob, CryptoError, Secret, SymmetricAlgorithm};

fn keys() -> &'static [(SymmetricAlgorithm, Secret); 2] {
    static KEYS: OnceLock<[(SymmetricAlgorithm, Secret); 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [SymmetricAlgorithm::Aes256Gcm, SymmetricAlgorithm::Sm4Gcm]
            .map(|a| (a, Secret::random(a.key_len())))
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = blob::parse(data);
    for (_, material) in keys() {
        match blob::open(data, material, 100_000_001, b"ctx") {
            Ok(_) => panic!("arbitrary bytes opened"),
            Err(e) => assert!(
                matches!(e, CryptoError::Authentication | CryptoError::Malformed(_) | CryptoError::Version(_)),
                "{e:?}"
            ),
        }
    }
});
