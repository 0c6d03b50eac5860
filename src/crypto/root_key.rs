//! The cluster root key (KEK) and the unseal key that protects it at rest.
//!
//! Every stored secret (key material, API secret keys, import wrapping keys) is
//! `wrap(root, bytes, aad)`: AES-256-GCM with a random nonce, where the AAD names what the bytes
//! are and whose, so a wrapped value cannot be moved to another record. The root key itself is
//! replicated only sealed under the unseal key, which each node reads from a 0600 file (or derives
//! from a passphrase, or opens with a PKCS#11 token) that never leaves the machine.
//!
//! The root key has versions (root-key rotation adds one, re-wraps every stored value under it,
//! then retires the old one). Wrapped formats:
//! - v1: `[1] ‖ nonce(12) ‖ ciphertext ‖ tag`, always under root version 1 (what every value
//!   wrapped before rotation existed looks like, and still what root version 1 writes, so a
//!   cluster that never rotates keeps the format an earlier release reads);
//! - v2: `[2] ‖ root version (u32, big-endian) ‖ nonce(12) ‖ ciphertext ‖ tag`, for root
//!   versions 2 and later; the 5-byte header is authenticated (prefixed to the AAD).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::aead::{self, SymmetricAlgorithm, NONCE_LEN};
use super::{CryptoError, Secret};

const WRAP_V1: u8 = 1;
const WRAP_V2: u8 = 2;
const V2_HEADER: usize = 5;
const TAG_LEN: usize = 16;
const ROOT_AAD: &[u8] = b"raftkms/root-key/v1";

/// The root-key version a wrapped value was made under, read from its header (`None` if the
/// bytes are no wrapped value of a known format). Pure: the registry uses it to refuse values
/// wrapped under a retired root version and to count what each version still protects.
pub fn root_version_of(wrapped: &[u8]) -> Option<u32> {
    match *wrapped.first()? {
        WRAP_V1 if wrapped.len() >= 1 + NONCE_LEN + TAG_LEN => Some(1),
        WRAP_V2 if wrapped.len() >= V2_HEADER + NONCE_LEN + TAG_LEN => {
            let v = u32::from_be_bytes(wrapped[1..V2_HEADER].try_into().ok()?);
            (v >= 2).then_some(v)
        }
        _ => None,
    }
}

/// Seals `plaintext` under a 256-bit key in format v1: `[1] ‖ nonce ‖ ciphertext ‖ tag`.
fn wrap_with(key: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let nonce = aead::random_nonce();
    let sealed = aead::seal(SymmetricAlgorithm::Aes256Gcm, key, &nonce, aad, plaintext)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    out.push(WRAP_V1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Seals in format v2 under root version `version` (>= 2), the header bound into the AAD.
fn wrap_v2(key: &[u8], version: u32, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut header = Vec::with_capacity(V2_HEADER + aad.len());
    header.push(WRAP_V2);
    header.extend_from_slice(&version.to_be_bytes());
    let nonce = aead::random_nonce();
    let mut bound = header.clone();
    bound.extend_from_slice(aad);
    let sealed = aead::seal(
        SymmetricAlgorithm::Aes256Gcm,
        key,
        &nonce,
        &bound,
        plaintext,
    )?;
    let mut out = header;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a v1 or v2 value with `key` (the caller picked the key of the value's root version).
fn unwrap_with(key: &[u8], aad: &[u8], wrapped: &[u8]) -> Result<Secret, CryptoError> {
    let (&format, rest) = wrapped
        .split_first()
        .ok_or(CryptoError::Malformed("empty wrapped value"))?;
    let (bound, rest) = match format {
        WRAP_V1 => (aad.to_vec(), rest),
        WRAP_V2 => {
            if rest.len() < V2_HEADER - 1 {
                return Err(CryptoError::Malformed("wrapped value too short"));
            }
            let mut bound = wrapped[..V2_HEADER].to_vec();
            bound.extend_from_slice(aad);
            (bound, &rest[V2_HEADER - 1..])
        }
        other => return Err(CryptoError::Version(other)),
    };
    if rest.len() < NONCE_LEN {
        return Err(CryptoError::Malformed("wrapped value too short"));
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| CryptoError::Malformed("nonce"))?;
    aead::open(SymmetricAlgorithm::Aes256Gcm, key, &nonce, &bound, sealed).map(Secret::new)
}

/// One version of the cluster root key.
#[derive(Clone, Debug)]
pub struct RootKey {
    key: Secret,
    version: u32,
}

impl RootKey {
    /// A new random root key of `version` (1 is taken at `cluster init`; rotation takes the next).
    pub fn generate(version: u32) -> Self {
        RootKey {
            key: Secret::random(32),
            version,
        }
    }

    /// Which root-key version this is.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Wraps a secret for storage; `aad` must name what it is and whose. Version 1 writes
    /// format v1, later versions format v2 (which names the version).
    pub fn wrap(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if self.version <= 1 {
            wrap_with(self.key.expose(), aad, plaintext)
        } else {
            wrap_v2(self.key.expose(), self.version, aad, plaintext)
        }
    }

    /// Unwraps a stored secret; fails if the AAD differs from the one used to wrap, or if the
    /// value was wrapped under another root version.
    pub fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<Secret, CryptoError> {
        match root_version_of(wrapped) {
            Some(v) if v != self.version => Err(CryptoError::RootKeyVersion(v)),
            _ => unwrap_with(self.key.expose(), aad, wrapped),
        }
    }

    /// HMAC-SHA256 of `data` under a key derived from this root key for `purpose` (e.g. a backup
    /// file's authentication tag): only holders of the root key can make or check it.
    pub fn mac(&self, purpose: &[u8], data: &[u8]) -> [u8; 32] {
        use hmac::Mac;
        self.mac_state(purpose, data).finalize().into_bytes().into()
    }

    /// Whether `tag` is [`RootKey::mac`] of `data` for `purpose` (compared in constant time).
    pub fn verify_mac(&self, purpose: &[u8], data: &[u8], tag: &[u8]) -> bool {
        use hmac::Mac;
        self.mac_state(purpose, data).verify_slice(tag).is_ok()
    }

    fn mac_state(&self, purpose: &[u8], data: &[u8]) -> hmac::Hmac<sha2::Sha256> {
        use hmac::Mac;
        // HMAC accepts keys of any length: neither call can fail.
        let mut derive = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(self.key.expose())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        derive.update(purpose);
        let subkey = zeroize::Zeroizing::new(<[u8; 32]>::from(derive.finalize().into_bytes()));
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(subkey.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(data);
        mac
    }
}

/// The AAD sealing root version `version` under the unseal key: version 1 keeps the AAD it always
/// had; later versions name themselves, so a sealed version cannot pass for another.
fn root_aad(version: u32) -> Vec<u8> {
    if version <= 1 {
        ROOT_AAD.to_vec()
    } else {
        format!("raftkms/root-key/v1/version/{version}").into_bytes()
    }
}

/// The key that seals the root key, read from a file on each node.
#[derive(Clone, Debug)]
pub struct UnsealKey(Secret);

impl UnsealKey {
    /// The unseal key opened by a PKCS#11 token key ([`super::pkcs11::unseal_key`]).
    pub fn from_token(
        sealed_file: &Path,
        token: &super::pkcs11::Token,
    ) -> Result<Self, CryptoError> {
        super::pkcs11::unseal_key(sealed_file, token).map(UnsealKey)
    }

    /// The unseal key derived from a passphrase ([`super::passphrase::unseal_key`]).
    pub fn from_passphrase(params_file: &Path, passphrase: &[u8]) -> Result<Self, CryptoError> {
        super::passphrase::unseal_key(params_file, passphrase).map(UnsealKey)
    }

    /// Reads the unseal key (64 hex digits); creates it with mode 0600 if the file is missing.
    /// A file readable by group or others is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        let err = |message: String| CryptoError::UnsealKey {
            path: path.display().to_string(),
            message,
        };
        match std::fs::metadata(path) {
            Ok(meta) => {
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(err(format!(
                        "permissions {:o} are too open; run `chmod 600 {}`",
                        meta.permissions().mode() & 0o777,
                        path.display()
                    )));
                }
                let text = zeroize::Zeroizing::new(
                    std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?,
                );
                let bytes = hex::decode(text.trim())
                    .map_err(|_| err("is not 64 hexadecimal digits".into()))?;
                if bytes.len() != 32 {
                    return Err(err(format!("holds {} bytes, expected 32", bytes.len())));
                }
                // The key may have been linked by a process that crashed (or lost the race)
                // before syncing its directory: make its name durable before relying on it.
                // Best effort: an operator-provisioned key may sit in a read-only place, where
                // there is nothing to sync.
                let _ = crate::durable_fs::sync_parent(path);
                Ok(UnsealKey(Secret::new(bytes)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Published atomically (a private temporary file linked into place, the
                // directory synced: the key that seals the cluster's root key survives a power
                // loss); if another process created the key first, its key wins.
                let key = Secret::random(32);
                let text = zeroize::Zeroizing::new(format!("{}\n", hex::encode(key.expose())));
                match crate::durable_fs::publish_new(path, text.as_bytes(), 0o600) {
                    Ok(true) => Ok(UnsealKey(key)),
                    Ok(false) => Self::load_or_create(path),
                    Err(e) => Err(err(e.to_string())),
                }
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Seals a root key (of its version) for replication.
    pub fn seal(&self, root: &RootKey) -> Result<Vec<u8>, CryptoError> {
        wrap_with(self.0.expose(), &root_aad(root.version), root.key.expose())
    }

    /// Opens root-key version `version`, sealed; a different unseal key gives `WrongUnsealKey`.
    pub fn unseal(&self, version: u32, sealed: &[u8]) -> Result<RootKey, CryptoError> {
        match unwrap_with(self.0.expose(), &root_aad(version), sealed) {
            Ok(key) if key.len() == 32 => Ok(RootKey { key, version }),
            Ok(_) => Err(CryptoError::Malformed("root key length")),
            Err(CryptoError::Authentication) => Err(CryptoError::WrongUnsealKey),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_is_bound_to_its_aad_and_key() {
        let root = RootKey::generate(1);
        let w = root.wrap(b"material/k1/1", b"secret bytes").unwrap();
        assert_eq!(w[0], WRAP_V1);
        assert_eq!(
            root.unwrap(b"material/k1/1", &w).unwrap().expose(),
            b"secret bytes"
        );
        assert_eq!(
            root.unwrap(b"material/k2/1", &w).unwrap_err(),
            CryptoError::Authentication
        );
        assert!(RootKey::generate(1).unwrap(b"material/k1/1", &w).is_err());
        assert_eq!(root_version_of(&w), Some(1));
        assert!(!w.windows(12).any(|win| win == b"secret bytes"));
    }

    #[test]
    fn unseal_key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unseal.key");
        let k1 = UnsealKey::load_or_create(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let k2 = UnsealKey::load_or_create(&path).unwrap();
        let root = RootKey::generate(1);
        let sealed = k1.seal(&root).unwrap();
        let back = k2.unseal(1, &sealed).unwrap();
        let w = root.wrap(b"x", b"y").unwrap();
        assert_eq!(back.unwrap(b"x", &w).unwrap().expose(), b"y");

        let other = dir.path().join("other.key");
        let k3 = UnsealKey::load_or_create(&other).unwrap();
        assert_eq!(
            k3.unseal(1, &sealed).unwrap_err(),
            CryptoError::WrongUnsealKey
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(UnsealKey::load_or_create(&path).is_err());
    }

    #[test]
    fn later_root_versions_write_v2_naming_their_version() {
        let v1 = RootKey::generate(1);
        let v7 = RootKey::generate(7);
        let w = v7.wrap(b"raftkms/material/1/k/1", b"material").unwrap();
        assert_eq!(w[0], WRAP_V2);
        assert_eq!(&w[1..5], &7u32.to_be_bytes());
        assert_eq!(root_version_of(&w), Some(7));
        assert_eq!(
            v7.unwrap(b"raftkms/material/1/k/1", &w).unwrap().expose(),
            b"material"
        );
        // The wrong version's key says which version the value needs.
        assert_eq!(
            v1.unwrap(b"raftkms/material/1/k/1", &w).unwrap_err(),
            CryptoError::RootKeyVersion(7)
        );
        let old = v1.wrap(b"a", b"b").unwrap();
        assert_eq!(
            v7.unwrap(b"a", &old).unwrap_err(),
            CryptoError::RootKeyVersion(1)
        );
        // Another AAD, a flipped bit anywhere, or a header naming another version: refused.
        assert!(v7.unwrap(b"raftkms/material/1/k/2", &w).is_err());
        for i in 0..w.len() {
            let mut bad = w.clone();
            bad[i] ^= 1;
            assert!(
                v7.unwrap(b"raftkms/material/1/k/1", &bad).is_err(),
                "byte {i}"
            );
        }
        // A v7 key under a header relabelled as v8 with the same key bytes still fails: the
        // header is authenticated.
        let v8_same_key = RootKey {
            key: v7.key.clone(),
            version: 8,
        };
        let mut relabelled = w.clone();
        relabelled[1..5].copy_from_slice(&8u32.to_be_bytes());
        assert!(v8_same_key
            .unwrap(b"raftkms/material/1/k/1", &relabelled)
            .is_err());
        // Headers that are no wrapped value.
        assert_eq!(root_version_of(&[]), None);
        assert_eq!(root_version_of(&[2, 0, 0, 0, 1, 0]), None);
        assert_eq!(root_version_of(&[3; 64]), None);
        assert_eq!(root_version_of(&[1; 8]), None);
    }

    #[test]
    fn each_sealed_root_version_opens_only_as_itself() {
        let dir = tempfile::tempdir().unwrap();
        let unseal = UnsealKey::load_or_create(&dir.path().join("k")).unwrap();
        let v3 = RootKey::generate(3);
        let sealed = unseal.seal(&v3).unwrap();
        let back = unseal.unseal(3, &sealed).unwrap();
        assert_eq!(back.version(), 3);
        let w = v3.wrap(b"x", b"y").unwrap();
        assert_eq!(back.unwrap(b"x", &w).unwrap().expose(), b"y");
        // Presented as version 1 or 4, the sealed version-3 key does not open.
        assert!(unseal.unseal(1, &sealed).is_err());
        assert!(unseal.unseal(4, &sealed).is_err());
    }

    proptest::proptest! {
        /// Arbitrary bytes, and a real value with any one byte replaced, never unwrap; the header
        /// parser never panics and names version 1 only for format v1.
        #[test]
        fn arbitrary_or_mutated_values_never_unwrap(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            version in 1u32..5,
            at in 0usize..80,
            to in proptest::prelude::any::<u8>(),
        ) {
            let root = RootKey::generate(version);
            proptest::prop_assert!(root.unwrap(b"aad", &bytes).is_err());
            if root_version_of(&bytes) == Some(1) {
                proptest::prop_assert_eq!(bytes[0], WRAP_V1);
            }
            let good = root.wrap(b"aad", b"some secret bytes").unwrap();
            let mut bad = good.clone();
            let i = at % bad.len();
            bad[i] = to;
            if bad != good {
                proptest::prop_assert!(root.unwrap(b"aad", &bad).is_err());
            }
        }
    }
}
