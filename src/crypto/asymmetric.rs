//! Asymmetric keys: generation, public-key export, signatures and decryption. All private-key
//! operations of RSA, SM2 and ECDSA live in this file.
//!
//! RSA uses `rsa` 0.10, whose arithmetic is constant-time (crypto-bigint), which resolves the Marvin
//! timing attack (RUSTSEC-2023-0071) of earlier versions; PKCS#1 v1.5 decryption is offered only
//! because Tencent's API names it (see docs/security.md).

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{CryptoError, Secret};

/// SM2's default distinguishing ID (GB/T 32918), used for Z_A in signatures.
pub const SM2_DIST_ID: &str = "1234567812345678";

/// The kind of asymmetric key pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AsymmetricSpec {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    Sm2,
    EccP256,
    EccP384,
    Secp256k1,
    /// ML-DSA-65 (FIPS 204): PostQuantumCryptoSign / PostQuantumCryptoVerify only.
    MlDsa65,
    /// ML-KEM-768 (FIPS 203) with AES-256-GCM: PostQuantumCryptoEncrypt / Decrypt only.
    MlKem768,
}

impl AsymmetricSpec {
    fn rsa_bits(self) -> Option<usize> {
        match self {
            AsymmetricSpec::Rsa2048 => Some(2048),
            AsymmetricSpec::Rsa3072 => Some(3072),
            AsymmetricSpec::Rsa4096 => Some(4096),
            _ => None,
        }
    }

    /// The name ListAlgorithms reports.
    pub fn display_name(self) -> &'static str {
        match self {
            AsymmetricSpec::Rsa2048 => "RSA_2048",
            AsymmetricSpec::Rsa3072 => "RSA_3072",
            AsymmetricSpec::Rsa4096 => "RSA_4096",
            AsymmetricSpec::Sm2 => "SM2",
            AsymmetricSpec::EccP256 => "ECC",
            AsymmetricSpec::EccP384 => "ECDSA384_SHA384",
            AsymmetricSpec::Secp256k1 => "ECC_SECP256K1",
            AsymmetricSpec::MlDsa65 => "Dilithium",
            AsymmetricSpec::MlKem768 => "Kyber_AES",
        }
    }
}

/// Signature algorithms, by the names of SignByAsymmetricKey.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignAlgorithm {
    Sm2Dsa,
    EcdsaP256Sha256,
    EcdsaP384Sha384,
    EcdsaSecp256k1Sha256,
    RsaPssSha256,
    RsaPkcs1Sha256,
}

impl SignAlgorithm {
    /// Parses the API name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "SM2DSA" => SignAlgorithm::Sm2Dsa,
            "ECC_P256_R1" => SignAlgorithm::EcdsaP256Sha256,
            "ECC_P384_R1" | "ECDSA_P384_SHA_384" | "ECDSA384_SHA384" => {
                SignAlgorithm::EcdsaP384Sha384
            }
            "ECC_SECP256K1" | "ECDSA_SECP256K1_SHA_256" => SignAlgorithm::EcdsaSecp256k1Sha256,
            "RSA_PSS_SHA_256" => SignAlgorithm::RsaPssSha256,
            "RSA_PKCS1_SHA_256" => SignAlgorithm::RsaPkcs1Sha256,
            _ => return None,
        })
    }

    /// Whether a key of `spec` can use this algorithm.
    pub fn fits(self, spec: AsymmetricSpec) -> bool {
        use AsymmetricSpec::*;
        match self {
            SignAlgorithm::Sm2Dsa => spec == Sm2,
            SignAlgorithm::EcdsaP256Sha256 => spec == EccP256,
            SignAlgorithm::EcdsaP384Sha384 => spec == EccP384,
            SignAlgorithm::EcdsaSecp256k1Sha256 => spec == Secp256k1,
            SignAlgorithm::RsaPssSha256 | SignAlgorithm::RsaPkcs1Sha256 => {
                spec.rsa_bits().is_some()
            }
        }
    }

    /// Length of a precomputed digest (`MessageType=DIGEST`).
    pub fn digest_len(self) -> usize {
        match self {
            SignAlgorithm::EcdsaP384Sha384 => 48,
            _ => 32,
        }
    }
}

/// What is signed: the message itself, or its precomputed digest.
#[derive(Clone, Copy, Debug)]
pub enum Message<'a> {
    Raw(&'a [u8]),
    Digest(&'a [u8]),
}

/// RSA decryption paddings of AsymmetricRsaDecrypt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsaPadding {
    Pkcs1v15,
    OaepSha1,
    OaepSha256,
}

impl RsaPadding {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "RSAES_PKCS1_V1_5" => RsaPadding::Pkcs1v15,
            "RSAES_OAEP_SHA_1" => RsaPadding::OaepSha1,
            "RSAES_OAEP_SHA_256" => RsaPadding::OaepSha256,
            _ => return None,
        })
    }
}

/// A freshly generated key pair (`Debug` redacts the private half through [`Secret`]).
#[derive(Debug)]
pub struct KeyPair {
    /// PKCS#8 DER of the private key.
    pub private_pkcs8: Secret,
    /// SubjectPublicKeyInfo DER of the public key.
    pub public_spki: Vec<u8>,
}

fn enc(_: impl std::fmt::Display) -> CryptoError {
    CryptoError::Malformed("key encoding")
}

fn ecdsa_pair<C>() -> Result<KeyPair, CryptoError>
where
    C: ecdsa::EcdsaCurve
        + elliptic_curve::CurveArithmetic
        + elliptic_curve::point::PointCompression,
    ecdsa::SigningKey<C>: pkcs8::EncodePrivateKey,
    ecdsa::VerifyingKey<C>: pkcs8::EncodePublicKey,
{
    use elliptic_curve::Generate;
    use pkcs8::{EncodePrivateKey, EncodePublicKey};
    let sk = ecdsa::SigningKey::<C>::try_generate().map_err(|_| CryptoError::Malformed("rng"))?;
    let private = sk.to_pkcs8_der().map_err(enc)?;
    let public = sk.verifying_key().to_public_key_der().map_err(enc)?;
    Ok(KeyPair {
        private_pkcs8: Secret::new(private.as_bytes().to_vec()),
        public_spki: public.as_bytes().to_vec(),
    })
}

/// Generates a key pair of `spec` from the operating system's CSPRNG.
pub fn generate(spec: AsymmetricSpec) -> Result<KeyPair, CryptoError> {
    use pkcs8::{EncodePrivateKey, EncodePublicKey};
    match spec {
        AsymmetricSpec::Rsa2048 | AsymmetricSpec::Rsa3072 | AsymmetricSpec::Rsa4096 => {
            let bits = spec.rsa_bits().unwrap_or(2048);
            let key = rsa::PrivateKey::new(&mut rsa_rng(), bits)
                .map_err(|_| CryptoError::Malformed("rsa keygen"))?;
            let private = key.to_pkcs8_der().map_err(enc)?;
            let public = key.to_public_key().to_public_key_der().map_err(enc)?;
            Ok(KeyPair {
                private_pkcs8: Secret::new(private.as_bytes().to_vec()),
                public_spki: public.as_bytes().to_vec(),
            })
        }
        AsymmetricSpec::Sm2 => {
            use elliptic_curve::Generate;
            let sk = sm2::SecretKey::try_generate().map_err(|_| CryptoError::Malformed("rng"))?;
            let private = sk.to_pkcs8_der().map_err(enc)?;
            let public = sk.public_key().to_public_key_der().map_err(enc)?;
            Ok(KeyPair {
                private_pkcs8: Secret::new(private.as_bytes().to_vec()),
                public_spki: public.as_bytes().to_vec(),
            })
        }
        AsymmetricSpec::EccP256 => ecdsa_pair::<p256::NistP256>(),
        AsymmetricSpec::EccP384 => ecdsa_pair::<p384::NistP384>(),
        AsymmetricSpec::Secp256k1 => ecdsa_pair::<k256::Secp256k1>(),
        AsymmetricSpec::MlDsa65 => super::post_quantum::generate_ml_dsa(),
        AsymmetricSpec::MlKem768 => super::post_quantum::generate_ml_kem(),
    }
}

fn rsa_rng() -> crypto_common::getrandom::SysRng {
    crypto_common::getrandom::SysRng
}

/// PEM text of a SubjectPublicKeyInfo (64-character lines), as openssl writes it.
pub fn public_pem(spki: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
    let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END PUBLIC KEY-----\n");
    out
}

fn bad_key(_: impl std::fmt::Debug) -> CryptoError {
    CryptoError::Malformed("stored private key")
}

/// ECDSA signing and verification for one curve crate (concrete types; the generic bounds of the
/// ecdsa crate are not worth spelling out).
macro_rules! ecdsa_ops {
    ($sign:ident, $verify:ident, $curve:ident) => {
        fn $sign(private: &Secret, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
            use pkcs8::DecodePrivateKey;
            use signature::hazmat::PrehashSigner;
            let sk =
                $curve::ecdsa::SigningKey::from_pkcs8_der(private.expose()).map_err(bad_key)?;
            let sig: $curve::ecdsa::DerSignature = sk
                .sign_prehash(digest)
                .map_err(|_| CryptoError::Malformed("digest"))?;
            Ok(sig.as_bytes().to_vec())
        }

        fn $verify(spki: &[u8], digest: &[u8], sig: &[u8]) -> Result<bool, CryptoError> {
            use pkcs8::DecodePublicKey;
            use signature::hazmat::PrehashVerifier;
            let vk = $curve::ecdsa::VerifyingKey::from_public_key_der(spki)
                .map_err(|_| CryptoError::Malformed("public key"))?;
            let Ok(parsed) = $curve::ecdsa::Signature::from_der(sig) else {
                return Ok(false);
            };
            // Signatures made elsewhere (openssl) may carry a high S; S and n-S are both valid.
            let parsed = parsed.normalize_s();
            Ok(vk.verify_prehash(digest, &parsed).is_ok())
        }
    };
}

ecdsa_ops!(p256_sign, p256_verify, p256);
ecdsa_ops!(p384_sign, p384_verify, p384);
ecdsa_ops!(k256_sign, k256_verify, k256);

fn digest_of(msg: Message<'_>, hash: fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    match msg {
        Message::Raw(m) => hash(m),
        Message::Digest(d) => d.to_vec(),
    }
}

fn sha256(m: &[u8]) -> Vec<u8> {
    use sha2_0_11::Digest;
    sha2_0_11::Sha256::digest(m).to_vec()
}

fn sha384(m: &[u8]) -> Vec<u8> {
    use sha2_0_11::Digest;
    sha2_0_11::Sha384::digest(m).to_vec()
}

/// The checks shared by signing and verification: the algorithm fits the key, and a digest has
/// the algorithm's length.
fn check_input(
    spec: AsymmetricSpec,
    alg: SignAlgorithm,
    msg: Message<'_>,
) -> Result<(), CryptoError> {
    if !alg.fits(spec) {
        return Err(CryptoError::Malformed("algorithm does not fit the key"));
    }
    if let Message::Digest(d) = msg {
        if d.len() != alg.digest_len() {
            return Err(CryptoError::Malformed("digest length"));
        }
    }
    Ok(())
}

/// Signs with a stored private key. Signatures are DER (ECDSA, SM2) or raw (RSA), as openssl
/// produces and verifies them.
pub fn sign(
    spec: AsymmetricSpec,
    private: &Secret,
    alg: SignAlgorithm,
    msg: Message<'_>,
) -> Result<Vec<u8>, CryptoError> {
    check_input(spec, alg, msg)?;
    match alg {
        SignAlgorithm::EcdsaP256Sha256 => p256_sign(private, &digest_of(msg, sha256)),
        SignAlgorithm::EcdsaP384Sha384 => p384_sign(private, &digest_of(msg, sha384)),
        SignAlgorithm::EcdsaSecp256k1Sha256 => k256_sign(private, &digest_of(msg, sha256)),
        SignAlgorithm::Sm2Dsa => {
            use pkcs8::DecodePrivateKey;
            use signature::hazmat::PrehashSigner;
            let secret = sm2::SecretKey::from_pkcs8_der(private.expose()).map_err(bad_key)?;
            let sk = sm2::dsa::SigningKey::new(SM2_DIST_ID, &secret).map_err(bad_key)?;
            let sig: sm2::dsa::Signature = match msg {
                // The crate computes e = SM3(Z_A ‖ M) itself.
                Message::Raw(m) => signature::Signer::try_sign(&sk, m)
                    .map_err(|_| CryptoError::Malformed("sign"))?,
                Message::Digest(e) => sk
                    .sign_prehash(e)
                    .map_err(|_| CryptoError::Malformed("digest"))?,
            };
            Ok(sig.to_der().to_vec())
        }
        SignAlgorithm::RsaPssSha256 | SignAlgorithm::RsaPkcs1Sha256 => {
            use pkcs8::DecodePrivateKey;
            let key = rsa::PrivateKey::from_pkcs8_der(private.expose()).map_err(bad_key)?;
            let digest = match msg {
                Message::Raw(m) => sha256(m),
                Message::Digest(d) => d.to_vec(),
            };
            let r = if alg == SignAlgorithm::RsaPssSha256 {
                key.pss_sign_prehash::<sha2_0_11::Sha256>(&digest)
            } else {
                key.pkcs1v15_sign_prehash::<sha2_0_11::Sha256>(&digest)
            };
            r.map_err(|_| CryptoError::Malformed("rsa sign"))
        }
    }
}

/// Verifies a signature with a public key (SPKI DER). A wrong signature is `Ok(false)`.
pub fn verify(
    spec: AsymmetricSpec,
    spki: &[u8],
    alg: SignAlgorithm,
    msg: Message<'_>,
    sig: &[u8],
) -> Result<bool, CryptoError> {
    check_input(spec, alg, msg)?;
    match alg {
        SignAlgorithm::EcdsaP256Sha256 => p256_verify(spki, &digest_of(msg, sha256), sig),
        SignAlgorithm::EcdsaP384Sha384 => p384_verify(spki, &digest_of(msg, sha384), sig),
        SignAlgorithm::EcdsaSecp256k1Sha256 => k256_verify(spki, &digest_of(msg, sha256), sig),
        SignAlgorithm::Sm2Dsa => {
            use pkcs8::DecodePublicKey;
            use signature::hazmat::PrehashVerifier;
            let public = sm2::PublicKey::from_public_key_der(spki)
                .map_err(|_| CryptoError::Malformed("public key"))?;
            let vk = sm2::dsa::VerifyingKey::new(SM2_DIST_ID, public)
                .map_err(|_| CryptoError::Malformed("public key"))?;
            let Ok(parsed) = sm2::dsa::Signature::from_der(sig) else {
                return Ok(false);
            };
            Ok(match msg {
                Message::Raw(m) => signature::Verifier::verify(&vk, m, &parsed).is_ok(),
                Message::Digest(e) => vk.verify_prehash(e, &parsed).is_ok(),
            })
        }
        SignAlgorithm::RsaPssSha256 | SignAlgorithm::RsaPkcs1Sha256 => {
            use pkcs8::DecodePublicKey;
            let key = rsa::PublicKey::from_public_key_der(spki)
                .map_err(|_| CryptoError::Malformed("public key"))?;
            let digest = match msg {
                Message::Raw(m) => sha256(m),
                Message::Digest(d) => d.to_vec(),
            };
            Ok(if alg == SignAlgorithm::RsaPssSha256 {
                key.pss_verify_prehash::<sha2_0_11::Sha256>(&digest, sig)
                    .is_ok()
            } else {
                key.pkcs1v15_verify_prehash::<sha2_0_11::Sha256>(&digest, sig)
                    .is_ok()
            })
        }
    }
}

/// RSA decryption (AsymmetricRsaDecrypt). Any failure is the same `Authentication` error, so the
/// answer does not tell a padding error from another (Bleichenbacher/Marvin oracles).
pub fn rsa_decrypt(
    private: &Secret,
    padding: RsaPadding,
    ciphertext: &[u8],
) -> Result<Secret, CryptoError> {
    use pkcs8::DecodePrivateKey;
    let key = rsa::PrivateKey::from_pkcs8_der(private.expose()).map_err(bad_key)?;
    let r = match padding {
        RsaPadding::Pkcs1v15 => key.pkcs1v15_decrypt(ciphertext),
        RsaPadding::OaepSha1 => key.oaep_decrypt::<sha1::Sha1>(ciphertext),
        RsaPadding::OaepSha256 => key.oaep_decrypt::<sha2_0_11::Sha256>(ciphertext),
    };
    let leading_zero = match padding {
        RsaPadding::Pkcs1v15 => subtle::Choice::from(1),
        RsaPadding::OaepSha1 | RsaPadding::OaepSha256 => {
            oaep_leading_octet_is_zero(&key, ciphertext)
        }
    };
    // Both checks always run; only their combined outcome decides, so the answer does not tell
    // which one failed (no Manger-style oracle on the leading octet).
    match r {
        Ok(plain) if bool::from(leading_zero) => Ok(Secret::new(plain)),
        Ok(mut plain) => {
            zeroize::Zeroize::zeroize(&mut plain);
            Err(CryptoError::Authentication)
        }
        Err(_) => Err(CryptoError::Authentication),
    }
}

/// RFC 8017 §7.1.2 step 3g: the first octet Y of the decoded message must be 0. rsa 0.10.0's OAEP
/// decoding omits this check (Wycheproof rsa_oaep tc 23 "First byte is 1" is accepted), so it is
/// checked here on the raw RSA decryption, in constant time.
fn oaep_leading_octet_is_zero(key: &rsa::PrivateKey, ciphertext: &[u8]) -> subtle::Choice {
    use rsa::traits::PublicKeyParts;
    use subtle::ConstantTimeEq;
    let k = key.size();
    if ciphertext.len() != k {
        return subtle::Choice::from(0);
    }
    let Ok(c) = rsa::BoxedUint::from_be_slice(ciphertext, key.n_bits_precision()) else {
        return subtle::Choice::from(0);
    };
    match rsa::hazmat::rsa_decrypt_and_check(key, Some(&mut crypto_common::getrandom::SysRng), &c) {
        Ok(m) => {
            let bytes = zeroize::Zeroizing::new(m.to_be_bytes());
            match bytes.len().checked_sub(k) {
                Some(top) => bytes[top].ct_eq(&0),
                None => subtle::Choice::from(0),
            }
        }
        Err(_) => subtle::Choice::from(0),
    }
}

/// SM2 decryption of an ASN.1 (C1C3C2) ciphertext, as `openssl pkeyutl -encrypt` produces it.
pub fn sm2_decrypt(private: &Secret, ciphertext: &[u8]) -> Result<Secret, CryptoError> {
    use pkcs8::DecodePrivateKey;
    let secret = sm2::SecretKey::from_pkcs8_der(private.expose()).map_err(bad_key)?;
    let dk = sm2::pke::DecryptingKey::new(secret);
    dk.decrypt_der(ciphertext)
        .map(Secret::new)
        .map_err(|_| CryptoError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [(AsymmetricSpec, &[SignAlgorithm]); 6] = [
        (
            AsymmetricSpec::Rsa2048,
            &[SignAlgorithm::RsaPssSha256, SignAlgorithm::RsaPkcs1Sha256],
        ),
        (AsymmetricSpec::Rsa3072, &[SignAlgorithm::RsaPssSha256]),
        (AsymmetricSpec::Sm2, &[SignAlgorithm::Sm2Dsa]),
        (AsymmetricSpec::EccP256, &[SignAlgorithm::EcdsaP256Sha256]),
        (AsymmetricSpec::EccP384, &[SignAlgorithm::EcdsaP384Sha384]),
        (
            AsymmetricSpec::Secp256k1,
            &[SignAlgorithm::EcdsaSecp256k1Sha256],
        ),
    ];

    #[test]
    fn sign_and_verify_raw_and_digest_for_every_spec() {
        for (spec, algs) in ALL {
            let pair = generate(spec).unwrap();
            assert!(public_pem(&pair.public_spki).starts_with("-----BEGIN PUBLIC KEY-----\n"));
            for &alg in algs {
                let msg = b"the message";
                let sig = sign(spec, &pair.private_pkcs8, alg, Message::Raw(msg)).unwrap();
                assert!(
                    verify(spec, &pair.public_spki, alg, Message::Raw(msg), &sig).unwrap(),
                    "{spec:?} {alg:?}"
                );
                assert!(!verify(
                    spec,
                    &pair.public_spki,
                    alg,
                    Message::Raw(b"other message"),
                    &sig
                )
                .unwrap());
                let mut bad = sig.clone();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                assert!(!verify(spec, &pair.public_spki, alg, Message::Raw(msg), &bad).unwrap());
                if alg != SignAlgorithm::Sm2Dsa {
                    // DIGEST mode signs the hash of the message: the two modes agree.
                    let d = if alg == SignAlgorithm::EcdsaP384Sha384 {
                        sha384(msg)
                    } else {
                        sha256(msg)
                    };
                    let dsig = sign(spec, &pair.private_pkcs8, alg, Message::Digest(&d)).unwrap();
                    assert!(
                        verify(spec, &pair.public_spki, alg, Message::Raw(msg), &dsig).unwrap()
                    );
                    assert!(
                        verify(spec, &pair.public_spki, alg, Message::Digest(&d), &sig).unwrap()
                    );
                    assert!(
                        sign(spec, &pair.private_pkcs8, alg, Message::Digest(&d[..20])).is_err()
                    );
                }
            }
        }
    }

    #[test]
    fn rsa_decrypts_every_padding_and_hides_padding_errors() {
        use pkcs8::DecodePublicKey;
        let pair = generate(AsymmetricSpec::Rsa2048).unwrap();
        let public = rsa::PublicKey::from_public_key_der(&pair.public_spki).unwrap();
        let ct = public
            .oaep_encrypt::<sha2_0_11::Sha256>(b"oaep256")
            .unwrap();
        assert_eq!(
            rsa_decrypt(&pair.private_pkcs8, RsaPadding::OaepSha256, &ct)
                .unwrap()
                .expose(),
            b"oaep256"
        );
        assert_eq!(
            rsa_decrypt(&pair.private_pkcs8, RsaPadding::OaepSha1, &ct).unwrap_err(),
            CryptoError::Authentication
        );
        let ct = public.oaep_encrypt::<sha1::Sha1>(b"oaep1").unwrap();
        assert_eq!(
            rsa_decrypt(&pair.private_pkcs8, RsaPadding::OaepSha1, &ct)
                .unwrap()
                .expose(),
            b"oaep1"
        );
        let ct = public.pkcs1v15_encrypt(b"v15").unwrap();
        assert_eq!(
            rsa_decrypt(&pair.private_pkcs8, RsaPadding::Pkcs1v15, &ct)
                .unwrap()
                .expose(),
            b"v15"
        );
        assert!(rsa_decrypt(&pair.private_pkcs8, RsaPadding::Pkcs1v15, &ct[1..]).is_err());
    }

    #[test]
    fn sm2_decrypts_asn1_ciphertexts() {
        use pkcs8::DecodePublicKey;
        let pair = generate(AsymmetricSpec::Sm2).unwrap();
        let public = sm2::PublicKey::from_public_key_der(&pair.public_spki).unwrap();
        let ek = sm2::pke::EncryptingKey::new(public);
        let ct = ek
            .encrypt_der(&mut crypto_common::getrandom::SysRng, b"sm2 plaintext")
            .unwrap();
        assert_eq!(
            sm2_decrypt(&pair.private_pkcs8, &ct).unwrap().expose(),
            b"sm2 plaintext"
        );
        let mut bad = ct.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            sm2_decrypt(&pair.private_pkcs8, &bad).unwrap_err(),
            CryptoError::Authentication
        );
    }
}
