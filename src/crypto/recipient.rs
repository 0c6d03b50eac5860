//! Encrypting a plaintext the KMS returns (Decrypt, GenerateDataKey, GetDataKeyPlaintext) to a
//! public key the caller sends (`EncryptionPublicKey`), so the plaintext never crosses the wire
//! or the caller's proxies in clear: SM2 (raw C1C3C2 or its ASN.1 form) or RSA (PKCS#1 v1.5,
//! OAEP with SHA-1 or SHA-256).

use base64::Engine;

/// How the plaintext is encrypted to the caller's key (`EncryptionAlgorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipientAlgorithm {
    /// SM2 encryption (GB/T 32918.4), C1 ‖ C3 ‖ C2 concatenated, C1 an uncompressed point
    /// (`04 ‖ x ‖ y`). Tencent's default.
    Sm2C1C3C2,
    /// SM2 encryption, the ASN.1 `SEQUENCE {x, y, C3, C2}` that `openssl pkeyutl` reads.
    Sm2C1C3C2Asn1,
    RsaPkcs1V15,
    RsaOaepSha1,
    RsaOaepSha256,
}

impl RecipientAlgorithm {
    /// Every accepted name.
    pub const NAMES: [&'static str; 5] = [
        "SM2",
        "SM2_C1C3C2_ASN1",
        "RSAES_PKCS1_V1_5",
        "RSAES_OAEP_SHA_1",
        "RSAES_OAEP_SHA_256",
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "SM2" => RecipientAlgorithm::Sm2C1C3C2,
            "SM2_C1C3C2_ASN1" => RecipientAlgorithm::Sm2C1C3C2Asn1,
            "RSAES_PKCS1_V1_5" => RecipientAlgorithm::RsaPkcs1V15,
            "RSAES_OAEP_SHA_1" => RecipientAlgorithm::RsaOaepSha1,
            "RSAES_OAEP_SHA_256" => RecipientAlgorithm::RsaOaepSha256,
            _ => return None,
        })
    }

    fn is_sm2(self) -> bool {
        matches!(
            self,
            RecipientAlgorithm::Sm2C1C3C2 | RecipientAlgorithm::Sm2C1C3C2Asn1
        )
    }
}

/// Why a recipient key was refused or the encryption to it failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecipientError {
    /// The key text is not a PEM (or Base64 DER) SubjectPublicKeyInfo of the algorithm's kind.
    #[error("{0}")]
    InvalidKey(String),
    /// The plaintext cannot be encrypted to the key (too long for an RSA key and padding).
    #[error("{0}")]
    Encryption(String),
}

/// The caller's public key, parsed, with the algorithm to use.
#[derive(Clone, Debug)]
pub struct Recipient {
    key: RecipientKey,
    algorithm: RecipientAlgorithm,
}

#[derive(Clone, Debug)]
enum RecipientKey {
    Sm2(sm2::PublicKey),
    Rsa(rsa::PublicKey),
}

/// The DER of a `-----BEGIN PUBLIC KEY-----` PEM, or of Base64 DER without the armour.
fn spki_der(text: &str) -> Result<Vec<u8>, RecipientError> {
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let armoured = text.contains("-----BEGIN");
    if armoured && !text.contains("-----BEGIN PUBLIC KEY-----") {
        return Err(RecipientError::InvalidKey(
            "EncryptionPublicKey must be a `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo) PEM"
                .into(),
        ));
    }
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|_| {
            RecipientError::InvalidKey("EncryptionPublicKey is not a PEM public key".into())
        })
}

impl Recipient {
    /// Parses the key text for `algorithm`: an SM2 key for the SM2 algorithms, an RSA key of
    /// 2048 to 4096 bits for the RSA ones.
    pub fn parse(text: &str, algorithm: RecipientAlgorithm) -> Result<Self, RecipientError> {
        use pkcs8::DecodePublicKey;
        use rsa::traits::PublicKeyParts;
        let der = spki_der(text)?;
        let key = if algorithm.is_sm2() {
            RecipientKey::Sm2(sm2::PublicKey::from_public_key_der(&der).map_err(|_| {
                RecipientError::InvalidKey(
                    "EncryptionPublicKey is not an SM2 public key (EncryptionAlgorithm is SM2)"
                        .into(),
                )
            })?)
        } else {
            let key = rsa::PublicKey::from_public_key_der(&der).map_err(|_| {
                RecipientError::InvalidKey(
                    "EncryptionPublicKey is not an RSA public key (EncryptionAlgorithm is RSAES_*)"
                        .into(),
                )
            })?;
            let bits = key.size() * 8;
            if !(2048..=4096).contains(&bits) {
                return Err(RecipientError::InvalidKey(format!(
                    "EncryptionPublicKey is a {bits}-bit RSA key; 2048 to 4096 bits are accepted"
                )));
            }
            RecipientKey::Rsa(key)
        };
        Ok(Recipient { key, algorithm })
    }

    /// The longest plaintext the key and padding hold (RSA), or `None`: no limit (SM2).
    pub fn max_plaintext(&self) -> Option<usize> {
        use rsa::traits::PublicKeyParts;
        match (&self.key, self.algorithm) {
            (RecipientKey::Sm2(_), _) => None,
            (RecipientKey::Rsa(pk), alg) => {
                let overhead = match alg {
                    RecipientAlgorithm::RsaOaepSha1 => 2 * 20 + 2,
                    RecipientAlgorithm::RsaOaepSha256 => 2 * 32 + 2,
                    _ => 11,
                };
                Some(pk.size().saturating_sub(overhead))
            }
        }
    }

    /// Encrypts `plaintext` to the key.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, RecipientError> {
        let mut rng = crypto_common::getrandom::SysRng;
        let failed = |why: &str| RecipientError::Encryption(why.to_string());
        match (&self.key, self.algorithm) {
            (RecipientKey::Sm2(pk), alg) => {
                let ek = sm2::pke::EncryptingKey::new_with_mode(*pk, sm2::pke::Mode::C1C3C2);
                let out = if alg == RecipientAlgorithm::Sm2C1C3C2Asn1 {
                    ek.encrypt_der(&mut rng, plaintext)
                } else {
                    ek.encrypt(&mut rng, plaintext)
                };
                out.map_err(|_| failed("SM2 encryption failed"))
            }
            (RecipientKey::Rsa(pk), alg) => {
                let out = match alg {
                    RecipientAlgorithm::RsaOaepSha1 => {
                        pk.oaep_encrypt_with_rng::<sha1::Sha1, _>(&mut rng, plaintext)
                    }
                    RecipientAlgorithm::RsaOaepSha256 => {
                        pk.oaep_encrypt_with_rng::<sha2_0_11::Sha256, _>(&mut rng, plaintext)
                    }
                    _ => pk.pkcs1v15_encrypt_with_rng(&mut rng, plaintext),
                };
                out.map_err(|_| {
                    failed(&format!(
                        "a {}-byte plaintext is too long for this RSA key and padding",
                        plaintext.len()
                    ))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::asymmetric::{self, AsymmetricSpec, RsaPadding};

    fn pem(spki: &[u8]) -> String {
        asymmetric::public_pem(spki)
    }

    #[test]
    fn rsa_round_trips_through_the_private_key_for_every_padding() {
        let pair = asymmetric::generate(AsymmetricSpec::Rsa2048).unwrap();
        for (alg, padding) in [
            (RecipientAlgorithm::RsaPkcs1V15, RsaPadding::Pkcs1v15),
            (RecipientAlgorithm::RsaOaepSha1, RsaPadding::OaepSha1),
            (RecipientAlgorithm::RsaOaepSha256, RsaPadding::OaepSha256),
        ] {
            let r = Recipient::parse(&pem(&pair.public_spki), alg).unwrap();
            let c = r.encrypt(b"a 32-byte data key, for example!").unwrap();
            assert_eq!(c.len(), 256);
            let p = asymmetric::rsa_decrypt(&pair.private_pkcs8, padding, &c).unwrap();
            assert_eq!(p.expose(), b"a 32-byte data key, for example!");
        }
        // OAEP-SHA256 on a 2048-bit key holds at most 190 bytes.
        let r =
            Recipient::parse(&pem(&pair.public_spki), RecipientAlgorithm::RsaOaepSha256).unwrap();
        assert_eq!(r.max_plaintext(), Some(190));
        assert!(r.encrypt(&[7u8; 190]).is_ok());
        assert!(matches!(
            r.encrypt(&[7u8; 191]),
            Err(RecipientError::Encryption(_))
        ));
    }

    #[test]
    fn sm2_round_trips_in_both_forms() {
        let pair = asymmetric::generate(AsymmetricSpec::Sm2).unwrap();
        let asn1 =
            Recipient::parse(&pem(&pair.public_spki), RecipientAlgorithm::Sm2C1C3C2Asn1).unwrap();
        let c = asn1.encrypt(b"data key").unwrap();
        assert_eq!(c[0], 0x30, "an ASN.1 SEQUENCE");
        let p = asymmetric::sm2_decrypt(&pair.private_pkcs8, &c).unwrap();
        assert_eq!(p.expose(), b"data key");

        let raw = Recipient::parse(&pem(&pair.public_spki), RecipientAlgorithm::Sm2C1C3C2).unwrap();
        let c = raw.encrypt(b"data key").unwrap();
        // 04 ‖ x ‖ y (65) ‖ C3 (32) ‖ C2 (8).
        assert_eq!((c[0], c.len()), (0x04, 65 + 32 + 8));
        use pkcs8::DecodePrivateKey;
        let sk = sm2::SecretKey::from_pkcs8_der(pair.private_pkcs8.expose()).unwrap();
        let dk =
            sm2::pke::DecryptingKey::new_with_mode(sk.to_nonzero_scalar(), sm2::pke::Mode::C1C3C2);
        assert_eq!(dk.decrypt(&c).unwrap(), b"data key");
    }

    #[test]
    fn keys_of_the_wrong_kind_or_form_are_refused() {
        let rsa = asymmetric::generate(AsymmetricSpec::Rsa2048).unwrap();
        let sm2 = asymmetric::generate(AsymmetricSpec::Sm2).unwrap();
        let p256 = asymmetric::generate(AsymmetricSpec::EccP256).unwrap();
        for (spki, alg) in [
            (&rsa.public_spki, RecipientAlgorithm::Sm2C1C3C2),
            (&sm2.public_spki, RecipientAlgorithm::RsaOaepSha256),
            (&p256.public_spki, RecipientAlgorithm::Sm2C1C3C2),
        ] {
            assert!(matches!(
                Recipient::parse(&pem(spki), alg),
                Err(RecipientError::InvalidKey(_))
            ));
        }
        for text in [
            "",
            "not a key",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        ] {
            assert!(
                Recipient::parse(text, RecipientAlgorithm::Sm2C1C3C2).is_err(),
                "{text}"
            );
        }
        // Base64 DER without the armour is accepted too.
        let bare = base64::engine::general_purpose::STANDARD.encode(&sm2.public_spki);
        assert!(Recipient::parse(&bare, RecipientAlgorithm::Sm2C1C3C2).is_ok());
    }
}
