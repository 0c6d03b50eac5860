//! Public keys and signatures given to verify: never `Ok(true)` for bytes nobody signed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use raftkms::crypto::asymmetric::{self, AsymmetricSpec, Message, SignAlgorithm};

#[path = "common.rs"]
mod common;

const SPECS: [AsymmetricSpec; 7] = [
    AsymmetricSpec::Rsa2048, AsymmetricSpec::Rsa3072, AsymmetricSpec::Rsa4096, AsymmetricSpec::Sm2,
    AsymmetricSpec::EccP256, AsymmetricSpec::EccP384, AsymmetricSpec::Secp256k1,
];
const ALGS: [SignAlgorithm; 6] = [
    SignAlgorithm::Sm2Dsa, SignAlgorithm::EcdsaP256Sha256, SignAlgorithm::EcdsaP384Sha384,
    SignAlgorithm::EcdsaSecp256k1Sha256, SignAlgorithm::RsaPssSha256, SignAlgorithm::RsaPkcs1Sha256,
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (spec, alg) = (SPECS[data[0] as usize % 7], ALGS[data[1] as usize % 6]);
    let rest = &data[3..];
    let cut = (data[2] as usize).min(rest.len());
    let (spki, tail) = rest.split_at(cut);
    let (sig, msg) = tail.split_at(tail.len() / 2);
    let own = &common::key(spec).public_spki;
    for m in [Message::Raw(msg), Message::Digest(msg)] {
        assert!(!matches!(asymmetric::verify(spec, spki, alg, m, sig), Ok(true)));
        assert!(!matches!(asymmetric::verify(spec, own, alg, m, sig), Ok(true)));
    }
});
