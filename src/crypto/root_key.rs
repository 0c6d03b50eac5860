//! The cluster root key (KEK) and the unseal key that protects it at rest.
//!
//! Every stored secret (key material, API secret keys) is `wrap(root, bytes, aad)`: AES-256-GCM
//! with a random nonce, where the AAD names what the bytes are and whose, so a wrapped value cannot
//! be moved to another record. The root key itself is replicated only sealed under the unseal key,
//! which each node reads from a 0600 file that never leaves the machine.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::aead::{self, SymmetricAlgorithm, NONCE_LEN};
use super::{CryptoError, Secret};

const WRAP_V1: u8 = 1;
const ROOT_AAD: &[u8] = b"raftkms/root-key/v1";

/// Wraps `plaintext` under a 256-bit key: `[1] ‖ nonce ‖ ciphertext ‖ tag`.
fn wrap_with(key: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let nonce = aead::random_nonce();
    let sealed = aead::seal(SymmetricAlgorithm::Aes256Gcm, key, &nonce, aad, plaintext)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    out.push(WRAP_V1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

fn unwrap_with(key: &[u8], aad: &[u8], wrapped: &[u8]) -> Result<Secret, CryptoError> {
    let (&version, rest) = wrapped
        .split_first()
        .ok_or(CryptoError::Malformed("empty wrapped value"))?;
    if version != WRAP_V1 {
        return Err(CryptoError::Version(version));
    }
    if rest.len() < NONCE_LEN {
        return Err(CryptoError::Malformed("wrapped value too short"));
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| CryptoError::Malformed("nonce"))?;
    aead::open(SymmetricAlgorithm::Aes256Gcm, key, &nonce, aad, sealed).map(Secret::new)
}

/// The cluster root key.
#[derive(Clone, Debug)]
pub struct RootKey(Secret);

impl RootKey {
    /// A new random root key (taken at `cluster init`).
    pub fn generate() -> Self {
        RootKey(Secret::random(32))
    }

    /// Wraps a secret for storage; `aad` must name what it is and whose.
    pub fn wrap(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        wrap_with(self.0.expose(), aad, plaintext)
    }

    /// Unwraps a stored secret; fails if the AAD differs from the one used to wrap.
    pub fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<Secret, CryptoError> {
        unwrap_with(self.0.expose(), aad, wrapped)
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

    /// Seals a root key for replication.
    pub fn seal(&self, root: &RootKey) -> Result<Vec<u8>, CryptoError> {
        wrap_with(self.0.expose(), ROOT_AAD, root.0.expose())
    }

    /// Opens a sealed root key; a different unseal key gives `WrongUnsealKey`.
    pub fn unseal(&self, sealed: &[u8]) -> Result<RootKey, CryptoError> {
        match unwrap_with(self.0.expose(), ROOT_AAD, sealed) {
            Ok(s) if s.len() == 32 => Ok(RootKey(s)),
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
        let root = RootKey::generate();
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
        assert!(RootKey::generate().unwrap(b"material/k1/1", &w).is_err());
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
        let root = RootKey::generate();
        let sealed = k1.seal(&root).unwrap();
        let back = k2.unseal(&sealed).unwrap();
        let w = root.wrap(b"x", b"y").unwrap();
        assert_eq!(back.unwrap(b"x", &w).unwrap().expose(), b"y");

        let other = dir.path().join("other.key");
        let k3 = UnsealKey::load_or_create(&other).unwrap();
        assert_eq!(k3.unseal(&sealed).unwrap_err(), CryptoError::WrongUnsealKey);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(UnsealKey::load_or_create(&path).is_err());
    }
}
