//! SM2 decryption of an ASN.1 ciphertext (AsymmetricSm2Decrypt): one indistinct error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use raftkms::crypto::asymmetric::{self, AsymmetricSpec};
use raftkms::crypto::CryptoError;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let key = common::key(AsymmetricSpec::Sm2);
    if let Err(e) = asymmetric::sm2_decrypt(&key.private_pkcs8, data) {
        assert_eq!(e, CryptoError::Authentication);
    }
});
