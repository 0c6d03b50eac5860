//! The symmetric AEADs used for customer data. All AEAD calls live in this file.
//!
//! AES-256-GCM for FIPS regions; SM4 in GCM mode for Chinese-standard regions. GCM (RFC 8998 also
//! defines SM4-GCM for TLS) gives authentication of the header and encryption context, which a
//! bare SM4-CBC/CTR would not, at one pass over the data. The key given here is, for ciphertext
//! blobs since version 2, a per-message key (`super::derive`) with the second half of a 192-bit
//! random nonce; version-1 blobs ran GCM under the material itself with a 96-bit random nonce,
//! which is safe for only about 2^32 messages per material version.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::cipher::consts::U12;
use aes_gcm::{Aes256Gcm, AesGcm, Nonce};
use serde::{Deserialize, Serialize};

use super::CryptoError;

type Sm4Gcm = AesGcm<sm4::Sm4, U12>;

/// Length of every nonce, in bytes.
pub const NONCE_LEN: usize = 12;
/// Length of every tag, in bytes.
pub const TAG_LEN: usize = 16;

/// A symmetric key algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SymmetricAlgorithm {
    Aes256Gcm,
    Sm4Gcm,
}

impl SymmetricAlgorithm {
    /// Length of a key of this algorithm, in bytes.
    pub fn key_len(self) -> usize {
        match self {
            SymmetricAlgorithm::Aes256Gcm => 32,
            SymmetricAlgorithm::Sm4Gcm => 16,
        }
    }

    /// One-byte identifier used in the ciphertext blob.
    pub fn code(self) -> u8 {
        match self {
            SymmetricAlgorithm::Aes256Gcm => 1,
            SymmetricAlgorithm::Sm4Gcm => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(SymmetricAlgorithm::Aes256Gcm),
            2 => Some(SymmetricAlgorithm::Sm4Gcm),
            _ => None,
        }
    }

    /// The name Tencent's ListAlgorithms uses.
    pub fn display_name(self) -> &'static str {
        match self {
            SymmetricAlgorithm::Aes256Gcm => "AES_256",
            SymmetricAlgorithm::Sm4Gcm => "SM4",
        }
    }

    /// KeyMetadata.Type: 2 = FIPS family, 4 = Chinese national standard family.
    pub fn tencent_type(self) -> i64 {
        match self {
            SymmetricAlgorithm::Aes256Gcm => 2,
            SymmetricAlgorithm::Sm4Gcm => 4,
        }
    }
}

/// Encrypts `plaintext`, returning ciphertext ‖ tag.
pub fn seal(
    alg: SymmetricAlgorithm,
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let payload = Payload {
        msg: plaintext,
        aad,
    };
    let nonce = Nonce::<U12>::from_slice(nonce);
    match alg {
        SymmetricAlgorithm::Aes256Gcm => Aes256Gcm::new_from_slice(key)
            .map_err(|_| CryptoError::KeyLength(key.len()))?
            .encrypt(nonce, payload),
        SymmetricAlgorithm::Sm4Gcm => Sm4Gcm::new_from_slice(key)
            .map_err(|_| CryptoError::KeyLength(key.len()))?
            .encrypt(nonce, payload),
    }
    .map_err(|_| CryptoError::Authentication)
}

/// Decrypts ciphertext ‖ tag; any mismatch (key, nonce, AAD, data) is `Authentication`.
pub fn open(
    alg: SymmetricAlgorithm,
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < TAG_LEN {
        return Err(CryptoError::Malformed("shorter than a tag"));
    }
    let payload = Payload { msg: sealed, aad };
    let nonce = Nonce::<U12>::from_slice(nonce);
    match alg {
        SymmetricAlgorithm::Aes256Gcm => Aes256Gcm::new_from_slice(key)
            .map_err(|_| CryptoError::KeyLength(key.len()))?
            .decrypt(nonce, payload),
        SymmetricAlgorithm::Sm4Gcm => Sm4Gcm::new_from_slice(key)
            .map_err(|_| CryptoError::KeyLength(key.len()))?
            .decrypt(nonce, payload),
    }
    .map_err(|_| CryptoError::Authentication)
}

/// A fresh random nonce.
pub fn random_nonce() -> [u8; NONCE_LEN] {
    use rand::RngCore;
    let mut n = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// NIST GCM test vector (gcmEncryptExtIV256.rsp, Count 0 of [Keylen = 256][IVlen = 96]
    /// [PTlen = 128][AADlen = 128][Taglen = 128]) as published in the CAVP GCM test vectors.
    #[test]
    fn aes_256_gcm_nist_vector() {
        let key = unhex("92e11dcdaa866f5ce790fd24501f92509aacf4cb8b1339d50c9c1240935dd08b");
        let nonce: [u8; 12] = unhex("ac93a1a6145299bde902f21a").try_into().unwrap();
        let pt = unhex("2d71bcfa914e4ac045b2aa60955fad24");
        let aad = unhex("1e0889016f67601c8ebea4943bc23ad6");
        let out = seal(SymmetricAlgorithm::Aes256Gcm, &key, &nonce, &aad, &pt).unwrap();
        assert_eq!(
            hex::encode(&out),
            "8995ae2e6df3dbf96fac7b7137bae67f".to_string() + "eca5aa77d51d4a0a14d9c51e1da474ab"
        );
        assert_eq!(
            open(SymmetricAlgorithm::Aes256Gcm, &key, &nonce, &aad, &out).unwrap(),
            pt
        );
    }

    /// SM4-GCM example of RFC 8998, appendix A.1.
    #[test]
    fn sm4_gcm_rfc8998_vector() {
        let key = unhex("0123456789ABCDEFFEDCBA9876543210");
        let nonce: [u8; 12] = unhex("00001234567800000000ABCD").try_into().unwrap();
        let aad = unhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2");
        let pt = unhex(concat!(
            "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD",
            "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
        ));
        let out = seal(SymmetricAlgorithm::Sm4Gcm, &key, &nonce, &aad, &pt).unwrap();
        let expected = concat!(
            "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735",
            "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D",
            "83DE3541E4C2B58177E065A9BF7B62EC"
        );
        assert_eq!(hex::encode_upper(&out), expected);
        assert_eq!(
            open(SymmetricAlgorithm::Sm4Gcm, &key, &nonce, &aad, &out).unwrap(),
            pt
        );
    }

    #[test]
    fn tampering_anything_fails() {
        for alg in [SymmetricAlgorithm::Aes256Gcm, SymmetricAlgorithm::Sm4Gcm] {
            let key = vec![7u8; alg.key_len()];
            let nonce = random_nonce();
            let out = seal(alg, &key, &nonce, b"aad", b"hello world").unwrap();
            for i in 0..out.len() {
                let mut bad = out.clone();
                bad[i] ^= 1;
                assert_eq!(
                    open(alg, &key, &nonce, b"aad", &bad),
                    Err(CryptoError::Authentication)
                );
            }
            assert!(open(alg, &key, &nonce, b"aaD", &out).is_err());
            let mut other = key.clone();
            other[0] ^= 1;
            assert!(open(alg, &other, &nonce, b"aad", &out).is_err());
            assert!(open(alg, &key, &nonce, b"aad", &out[..10]).is_err());
        }
    }
}
