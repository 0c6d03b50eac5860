//! The unseal key kept wrapped by a key that never leaves a PKCS#11 token (`[kms] unseal =
//! "pkcs11"`): an AES-256 key on the token (sensitive, not extractable) seals the unseal key with
//! AES-GCM inside the token; only that sealed form is on disk. Without the token (and its PIN) the
//! unseal key, hence the root key, hence every key of the cluster, cannot be opened.
//!
//! The sealed unseal key (not secret without the token; the same on every node that uses the
//! same token key):
//! ```text
//! raftkms-unseal-pkcs11 1        (format version)
//! iv <24 hex digits>
//! sealed <hex: 32-byte key ‖ 16-byte tag>
//! ```

use std::path::Path;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

use super::{CryptoError, Secret};

const MAGIC: &str = "raftkms-unseal-pkcs11";
const VERSION: u32 = 1;
/// Binds the sealed unseal key to its purpose.
const AAD: &[u8] = b"raftkms unseal key v1";

/// Where the token key is.
pub struct Token<'a> {
    /// The PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so).
    pub module: &'a Path,
    /// The label of the token.
    pub token_label: &'a str,
    /// The label of the AES key on it.
    pub key_label: &'a str,
    /// The user PIN.
    pub pin: &'a str,
}

fn token_err(e: impl std::fmt::Display) -> CryptoError {
    CryptoError::Token(e.to_string())
}

fn file_err(path: &Path, message: impl Into<String>) -> CryptoError {
    CryptoError::UnsealKey {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// A logged-in session on the token labelled `token.token_label`.
fn session(ctx: &Pkcs11, token: &Token) -> Result<Session, CryptoError> {
    let slots = ctx.get_slots_with_token().map_err(token_err)?;
    let slot = slots
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|i| i.label() == token.token_label)
        })
        .ok_or_else(|| {
            CryptoError::Token(format!(
                "no token labelled `{}` in {}",
                token.token_label,
                token.module.display()
            ))
        })?;
    let session = ctx.open_rw_session(slot).map_err(token_err)?;
    session
        .login(UserType::User, Some(&AuthPin::new(token.pin.into())))
        .map_err(|e| CryptoError::Token(format!("the token refused the PIN: {e}")))?;
    Ok(session)
}

/// The AES key labelled `label`, if the token has one.
fn find_key(session: &Session, label: &str) -> Result<Option<ObjectHandle>, CryptoError> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(token_err)?;
    Ok(found.into_iter().next())
}

/// A new AES-256 key on the token: stored on it, sensitive, never extractable.
fn generate_key(session: &Session, label: &str) -> Result<ObjectHandle, CryptoError> {
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::ValueLen(32.into()),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
        )
        .map_err(token_err)
}

/// The unseal key: opened by the token from `sealed_file`. Without the file (the first node,
/// with an empty data directory), a new random unseal key is sealed by the token key (made on
/// the token if it has none) and written; copy the file to the other nodes.
pub fn unseal_key(sealed_file: &Path, token: &Token) -> Result<Secret, CryptoError> {
    let ctx = Pkcs11::new(token.module).map_err(|e| {
        CryptoError::Token(format!(
            "cannot load the PKCS#11 module {}: {e}",
            token.module.display()
        ))
    })?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(token_err)?;
    let session = session(&ctx, token)?;
    match std::fs::read_to_string(sealed_file) {
        Ok(text) => {
            let (mut iv, sealed) = parse(sealed_file, &text)?;
            let key = find_key(&session, token.key_label)?.ok_or_else(|| {
                CryptoError::Token(format!(
                    "the token has no key labelled `{}` to open {}",
                    token.key_label,
                    sealed_file.display()
                ))
            })?;
            let params = GcmParams::new(&mut iv, AAD, 128.into()).map_err(token_err)?;
            let opened = session
                .decrypt(&Mechanism::AesGcm(params), key, &sealed)
                .map_err(|e| {
                    CryptoError::Token(format!(
                        "the token key `{}` does not open {}: {e}",
                        token.key_label,
                        sealed_file.display()
                    ))
                })?;
            let opened = Secret::new(opened);
            if opened.expose().len() != 32 {
                return Err(CryptoError::KeyLength(opened.expose().len()));
            }
            Ok(opened)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = match find_key(&session, token.key_label)? {
                Some(k) => k,
                None => generate_key(&session, token.key_label)?,
            };
            let unseal = Secret::random(32);
            let mut iv = [0u8; 12];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut iv);
            let mut iv_for_token = iv;
            let params = GcmParams::new(&mut iv_for_token, AAD, 128.into()).map_err(token_err)?;
            let sealed = session
                .encrypt(&Mechanism::AesGcm(params), key, unseal.expose())
                .map_err(token_err)?;
            let text = format!(
                "{MAGIC} {VERSION}\niv {}\nsealed {}\n",
                hex::encode(iv),
                hex::encode(&sealed)
            );
            let created = crate::durable_fs::publish_new(sealed_file, text.as_bytes(), 0o600)
                .map_err(|e| file_err(sealed_file, e.to_string()))?;
            if created {
                Ok(unseal)
            } else {
                // Another process sealed one first: use theirs.
                drop(session);
                drop(ctx);
                unseal_key(sealed_file, token)
            }
        }
        Err(e) => Err(file_err(sealed_file, e.to_string())),
    }
}

fn parse(path: &Path, text: &str) -> Result<([u8; 12], Vec<u8>), CryptoError> {
    let mut lines = text.lines();
    super::passphrase::check_format(
        path,
        lines.next(),
        MAGIC,
        VERSION,
        "a sealed raftkms unseal key",
    )?;
    let mut field = |name: &str| -> Result<Vec<u8>, CryptoError> {
        lines
            .next()
            .and_then(|l| l.strip_prefix(name))
            .and_then(|h| hex::decode(h.trim()).ok())
            .ok_or_else(|| file_err(path, format!("missing or bad `{name}`")))
    };
    let iv: [u8; 12] = field("iv")?
        .try_into()
        .map_err(|_| file_err(path, "`iv` must be 24 hex digits"))?;
    let sealed = field("sealed")?;
    if sealed.len() != 32 + 16 {
        return Err(file_err(path, "`sealed` must be 96 hex digits"));
    }
    Ok((iv, sealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_sealed_file_is_refused_with_its_reason() {
        let p = Path::new("/x");
        assert!(parse(p, "raftkms-unseal-pkcs11 2\n")
            .unwrap_err()
            .to_string()
            .contains("version 2"));
        assert!(parse(p, "something else\n").is_err());
        assert!(parse(p, "raftkms-unseal-pkcs11 1\niv 00\nsealed 00\n").is_err());
        let good = format!(
            "raftkms-unseal-pkcs11 1\niv {}\nsealed {}\n",
            "00".repeat(12),
            "11".repeat(48)
        );
        let (iv, sealed) = parse(p, &good).unwrap();
        assert_eq!((iv, sealed.len()), ([0u8; 12], 48));
    }
}
