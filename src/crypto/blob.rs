//! The ciphertext blob returned by Encrypt and GenerateDataKey (design §6).
//!
//! Version 2, written since 2026-12 (a per-message key: no limit on messages per key version):
//! ```text
//! [0]       format version (2)
//! [1]       algorithm (1 = AES-256-GCM, 2 = SM4-GCM)
//! [2..18]   KeyId (UUID bytes)
//! [18..22]  material version, u32 big-endian
//! [22..46]  192-bit random nonce N
//! [46..]    ciphertext ‖ 16-byte tag
//! ```
//! The AEAD runs under a key derived from the material and N[..12] (XAES-256-GCM for AES, the
//! SM3 KDF for SM4: [`super::derive`]) with N[12..] as its nonce.
//!
//! Version 1 (still read): the same header with a 96-bit nonce at [22..34], the AEAD directly
//! under the material.
//!
//! In both, the AAD is the header, the owning account's UIN and the canonical EncryptionContext,
//! so a changed header, another account or another context all fail authentication.

use super::aead::{self, SymmetricAlgorithm, NONCE_LEN, TAG_LEN};
use super::derive::{self, XNONCE_LEN};
use super::{CryptoError, Secret};

pub const BLOB_V1: u8 = 1;
pub const BLOB_V2: u8 = 2;
/// The fields before the nonce: version, algorithm, KeyId, material version.
const FIXED_LEN: usize = 2 + 16 + 4;

/// The nonce of a blob, by format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobNonce {
    /// Version 1: the AEAD's nonce, under the material itself.
    V1([u8; NONCE_LEN]),
    /// Version 2: the extended nonce; its first half derives the message key.
    V2([u8; XNONCE_LEN]),
}

impl BlobNonce {
    fn bytes(&self) -> &[u8] {
        match self {
            BlobNonce::V1(n) => n,
            BlobNonce::V2(n) => n,
        }
    }

    fn format(&self) -> u8 {
        match self {
            BlobNonce::V1(_) => BLOB_V1,
            BlobNonce::V2(_) => BLOB_V2,
        }
    }
}

/// The authenticated header of a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobHeader {
    pub algorithm: SymmetricAlgorithm,
    pub key_id: uuid::Uuid,
    pub version: u32,
    pub nonce: BlobNonce,
}

impl BlobHeader {
    fn encode(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(FIXED_LEN + XNONCE_LEN);
        h.push(self.nonce.format());
        h.push(self.algorithm.code());
        h.extend_from_slice(self.key_id.as_bytes());
        h.extend_from_slice(&self.version.to_be_bytes());
        h.extend_from_slice(self.nonce.bytes());
        h
    }
}

fn aad(header: &[u8], uin: u64, context: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(header.len() + 8 + context.len());
    a.extend_from_slice(header);
    a.extend_from_slice(&uin.to_be_bytes());
    a.extend_from_slice(context);
    a
}

/// A fresh 192-bit nonce.
fn random_xnonce() -> [u8; XNONCE_LEN] {
    use rand::RngCore;
    let mut n = [0u8; XNONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

/// The AEAD key and nonce of a blob: the material and the nonce (version 1), or the per-message
/// key derived from the material and the first half of the nonce, and the second half.
fn message_key(
    algorithm: SymmetricAlgorithm,
    material: &[u8],
    nonce: &BlobNonce,
) -> Result<(zeroize::Zeroizing<Vec<u8>>, [u8; NONCE_LEN]), CryptoError> {
    if material.len() != algorithm.key_len() {
        return Err(CryptoError::KeyLength(material.len()));
    }
    match nonce {
        BlobNonce::V1(n) => Ok((zeroize::Zeroizing::new(material.to_vec()), *n)),
        BlobNonce::V2(n) => {
            let (first, second) = n.split_at(NONCE_LEN);
            let first: &[u8; NONCE_LEN] = first
                .try_into()
                .map_err(|_| CryptoError::Malformed("nonce"))?;
            let second: [u8; NONCE_LEN] = second
                .try_into()
                .map_err(|_| CryptoError::Malformed("nonce"))?;
            let key = match algorithm {
                SymmetricAlgorithm::Aes256Gcm => {
                    let k: &[u8; 32] = material
                        .try_into()
                        .map_err(|_| CryptoError::KeyLength(material.len()))?;
                    zeroize::Zeroizing::new(derive::xaes_subkey(k, first).to_vec())
                }
                SymmetricAlgorithm::Sm4Gcm => {
                    let k: &[u8; 16] = material
                        .try_into()
                        .map_err(|_| CryptoError::KeyLength(material.len()))?;
                    zeroize::Zeroizing::new(derive::sm4_subkey(k, first).to_vec())
                }
            };
            Ok((key, second))
        }
    }
}

/// Encrypts `plaintext` under one material version of a key (format version 2).
pub fn seal(
    algorithm: SymmetricAlgorithm,
    material: &Secret,
    key_id: uuid::Uuid,
    version: u32,
    uin: u64,
    context: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let header = BlobHeader {
        algorithm,
        key_id,
        version,
        nonce: BlobNonce::V2(random_xnonce()),
    };
    seal_with(&header, material, uin, context, plaintext)
}

/// Encrypts under an explicit header (its nonce decides the format).
fn seal_with(
    header: &BlobHeader,
    material: &Secret,
    uin: u64,
    context: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let h = header.encode();
    let (key, nonce) = message_key(header.algorithm, material.expose(), &header.nonce)?;
    let body = aead::seal(
        header.algorithm,
        &key,
        &nonce,
        &aad(&h, uin, context),
        plaintext,
    )?;
    let mut out = Vec::with_capacity(h.len() + body.len());
    out.extend_from_slice(&h);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads the header of a blob (either version) without decrypting it.
pub fn parse(blob: &[u8]) -> Result<BlobHeader, CryptoError> {
    let Some(&format) = blob.first() else {
        return Err(CryptoError::Malformed("empty"));
    };
    let nonce_len = match format {
        BLOB_V1 => NONCE_LEN,
        BLOB_V2 => XNONCE_LEN,
        other => return Err(CryptoError::Version(other)),
    };
    if blob.len() < FIXED_LEN + nonce_len + TAG_LEN {
        return Err(CryptoError::Malformed("truncated"));
    }
    let algorithm =
        SymmetricAlgorithm::from_code(blob[1]).ok_or(CryptoError::Malformed("algorithm"))?;
    let key_id =
        uuid::Uuid::from_slice(&blob[2..18]).map_err(|_| CryptoError::Malformed("key id"))?;
    let version = u32::from_be_bytes(
        blob[18..22]
            .try_into()
            .map_err(|_| CryptoError::Malformed("version"))?,
    );
    let raw = &blob[FIXED_LEN..FIXED_LEN + nonce_len];
    let nonce = match format {
        BLOB_V1 => BlobNonce::V1(
            raw.try_into()
                .map_err(|_| CryptoError::Malformed("nonce"))?,
        ),
        _ => BlobNonce::V2(
            raw.try_into()
                .map_err(|_| CryptoError::Malformed("nonce"))?,
        ),
    };
    Ok(BlobHeader {
        algorithm,
        key_id,
        version,
        nonce,
    })
}

/// Decrypts a blob (either version) whose header was read by [`parse`], with the material it
/// names.
pub fn open(
    blob: &[u8],
    material: &Secret,
    uin: u64,
    context: &[u8],
) -> Result<Secret, CryptoError> {
    let header = parse(blob)?;
    // A header naming another algorithm than the material's is a forgery, not a key-length
    // problem of this node (the core checks the key's algorithm first; found by fuzzing).
    if material.expose().len() != header.algorithm.key_len() {
        return Err(CryptoError::Authentication);
    }
    let h = header.encode();
    let (key, nonce) = message_key(header.algorithm, material.expose(), &header.nonce)?;
    aead::open(
        header.algorithm,
        &key,
        &nonce,
        &aad(&h, uin, context),
        &blob[h.len()..],
    )
    .map(Secret::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_binding() {
        for alg in [SymmetricAlgorithm::Aes256Gcm, SymmetricAlgorithm::Sm4Gcm] {
            let material = Secret::random(alg.key_len());
            let id = uuid::Uuid::new_v4();
            let blob = seal(alg, &material, id, 3, 100, br#"{"a":"b"}"#, b"plain").unwrap();
            let h = parse(&blob).unwrap();
            assert_eq!((h.algorithm, h.key_id, h.version), (alg, id, 3));
            assert_eq!(
                open(&blob, &material, 100, br#"{"a":"b"}"#)
                    .unwrap()
                    .expose(),
                b"plain"
            );
            // Another account, another context, a tampered header or body, a truncation: all fail.
            assert!(open(&blob, &material, 101, br#"{"a":"b"}"#).is_err());
            assert!(open(&blob, &material, 100, br#"{"a":"c"}"#).is_err());
            assert!(open(&blob, &material, 100, b"").is_err());
            for i in 0..blob.len() {
                let mut bad = blob.clone();
                bad[i] ^= 0x40;
                assert!(
                    open(&bad, &material, 100, br#"{"a":"b"}"#).is_err(),
                    "flip at {i}"
                );
            }
            assert!(parse(&blob[..FIXED_LEN + XNONCE_LEN + 3]).is_err());
        }
    }

    /// Version-1 blobs as earlier releases wrote them, fixed: key 0x42…, KeyId 0x11…, material
    /// version 2, nonce 0x24…, Uin 1234, context `{}`, plaintext "v1 kat". The AES one was
    /// computed independently with Python's `cryptography` AESGCM over the same header and AAD.
    #[test]
    fn version_1_known_answers_still_open() {
        for (alg, hexed) in [
            (
                SymmetricAlgorithm::Aes256Gcm,
                "0101111111111111111111111111111111110000000224242424242424242424242463a0e42a88b25ae82298cc97e38525a1d5ce40c94eb8",
            ),
            (
                SymmetricAlgorithm::Sm4Gcm,
                "010211111111111111111111111111111111000000022424242424242424242424247f5b2b2bbdc7d2fe0aa7938c5eaa5d845f1f423b38a3",
            ),
        ] {
            let blob = hex::decode(hexed).unwrap();
            let material = Secret::new(vec![0x42; alg.key_len()]);
            let h = parse(&blob).unwrap();
            assert_eq!((h.algorithm, h.version), (alg, 2));
            assert_eq!(h.nonce, BlobNonce::V1([0x24; 12]));
            assert_eq!(open(&blob, &material, 1234, b"{}").unwrap().expose(), b"v1 kat");
            assert!(open(&blob, &material, 1235, b"{}").is_err());
        }
    }

    #[test]
    fn new_blobs_are_version_2_and_version_1_blobs_still_open() {
        for alg in [SymmetricAlgorithm::Aes256Gcm, SymmetricAlgorithm::Sm4Gcm] {
            let material = Secret::random(alg.key_len());
            let id = uuid::Uuid::new_v4();
            let v2 = seal(alg, &material, id, 1, 7, b"ctx", b"new").unwrap();
            assert_eq!(v2[0], BLOB_V2);
            assert_eq!(v2.len(), FIXED_LEN + XNONCE_LEN + 3 + TAG_LEN);
            assert!(matches!(parse(&v2).unwrap().nonce, BlobNonce::V2(_)));
            // A version-1 blob as the previous release wrote it: the AEAD under the material.
            let header = BlobHeader {
                algorithm: alg,
                key_id: id,
                version: 1,
                nonce: BlobNonce::V1(aead::random_nonce()),
            };
            let h = header.encode();
            assert_eq!(h.len(), 34);
            let BlobNonce::V1(n) = header.nonce else {
                unreachable!()
            };
            let body = aead::seal(alg, material.expose(), &n, &aad(&h, 7, b"ctx"), b"old").unwrap();
            let v1 = [h, body].concat();
            assert_eq!(open(&v1, &material, 7, b"ctx").unwrap().expose(), b"old");
            assert_eq!(
                seal_with(&header, &material, 7, b"ctx", b"old").unwrap(),
                v1
            );
            // A version-2 body relabelled as version 1 (or the reverse) does not open.
            let mut relabelled = v2.clone();
            relabelled[0] = BLOB_V1;
            assert!(open(&relabelled, &material, 7, b"ctx").is_err());
            let mut relabelled = v1.clone();
            relabelled[0] = BLOB_V2;
            assert!(open(&relabelled, &material, 7, b"ctx").is_err());
            // The message key is not the material: the v2 body does not open under it directly.
            let BlobNonce::V2(x) = parse(&v2).unwrap().nonce else {
                unreachable!()
            };
            let direct = aead::open(
                alg,
                material.expose(),
                x[NONCE_LEN..].try_into().unwrap(),
                &aad(&v2[..FIXED_LEN + XNONCE_LEN], 7, b"ctx"),
                &v2[FIXED_LEN + XNONCE_LEN..],
            );
            assert!(direct.is_err());
            assert_eq!(parse(&[3u8; 80]).unwrap_err(), CryptoError::Version(3));
        }
    }
}
