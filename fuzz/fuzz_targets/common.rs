//! Shared by the targets: keys made once per process.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::OnceLock;

use raftkms::crypto::asymmetric::{self, AsymmetricSpec, KeyPair};

pub fn key(spec: AsymmetricSpec) -> &'static KeyPair {
    static KEYS: OnceLock<Vec<(AsymmetricSpec, KeyPair)>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        [
            AsymmetricSpec::Rsa2048,
            AsymmetricSpec::Sm2,
            AsymmetricSpec::EccP256,
            AsymmetricSpec::EccP384,
            AsymmetricSpec::Secp256k1,
        ]
        .into_iter()
        .map(|s| (s, asymmetric::generate(s).unwrap()))
        .collect()
    });
    let want = match spec {
        AsymmetricSpec::Rsa3072 | AsymmetricSpec::Rsa4096 => AsymmetricSpec::Rsa2048,
        s => s,
    };
    &keys.iter().find(|(s, _)| *s == want).unwrap().1
}
