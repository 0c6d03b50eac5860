//! BYOK wrapped material (RSA, three paddings) and the wrapping algorithm's name.
#![no_main]
use libfuzzer_sys::fuzz_target;
use raftkms::crypto::asymmetric::{self, AsymmetricSpec, RsaPadding};
use raftkms::crypto::CryptoError;
use raftkms::registry::key::WrappingAlgorithm;

#[path = "common.rs"]
mod common;

const PADDINGS: [RsaPadding; 3] = [RsaPadding::Pkcs1v15, RsaPadding::OaepSha1, RsaPadding::OaepSha256];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let padding = PADDINGS[sel as usize % 3];
    let key = common::key(AsymmetricSpec::Rsa2048);
    match asymmetric::rsa_decrypt(&key.private_pkcs8, padding, rest) {
        Ok(_) => assert!(padding == RsaPadding::Pkcs1v15 && rest.len() == 256),
        Err(e) => assert_eq!(e, CryptoError::Authentication),
    }
    let name = String::from_utf8_lossy(rest);
    assert_eq!(WrappingAlgorithm::parse(&name).is_some(), RsaPadding::parse(&name).is_some());
});
