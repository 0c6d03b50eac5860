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
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
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

/// The loaded module, finalized when dropped (after every session of it is gone: declare it
/// before them). A module that stays loaded keeps its state otherwise, and the next initialize
/// would fail.
struct Module(Option<Pkcs11>);

impl Drop for Module {
    fn drop(&mut self) {
        if let Some(ctx) = self.0.take() {
            let _ = ctx.finalize();
        }
    }
}

fn load(token: &Token) -> Result<Module, CryptoError> {
    let ctx = Pkcs11::new(token.module).map_err(|e| {
        CryptoError::Token(format!(
            "cannot load the PKCS#11 module {}: {e}",
            token.module.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(token_err(e)),
    }
    Ok(Module(Some(ctx)))
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
    match session.login(UserType::User, Some(&AuthPin::new(token.pin.into()))) {
        Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(Error::Pkcs11(
            RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
            _,
        )) => Err(CryptoError::Token("the token refused the PIN".into())),
        Err(Error::Pkcs11(RvError::PinLocked, _)) => Err(CryptoError::Token(
            "the token's user PIN is locked (too many wrong PINs)".into(),
        )),
        Err(e) => Err(CryptoError::Token(format!("login failed: {e}"))),
    }
}

/// The AES keys labelled `label` on the token.
fn find_keys(session: &Session, label: &str) -> Result<Vec<ObjectHandle>, CryptoError> {
    session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(token_err)
}

/// Refuses a key that could leave the token, or is not AES-256: the custody claim rests on it.
fn check_custody(session: &Session, key: ObjectHandle, label: &str) -> Result<(), CryptoError> {
    let attrs = session
        .get_attributes(
            key,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
                AttributeType::ValueLen,
            ],
        )
        .map_err(token_err)?;
    let (mut sensitive, mut extractable, mut never, mut len) = (false, true, false, 0u64);
    for a in attrs {
        match a {
            Attribute::Sensitive(v) => sensitive = v,
            Attribute::Extractable(v) => extractable = v,
            Attribute::NeverExtractable(v) => never = v,
            Attribute::ValueLen(v) => len = v.into(),
            _ => {}
        }
    }
    if sensitive && !extractable && never && len == 32 {
        Ok(())
    } else {
        Err(CryptoError::Token(format!(
            "the key `{label}` on the token is not a sensitive, never-extractable AES-256 key \
             (sensitive {sensitive}, extractable {extractable}, never extractable {never}, \
             {len} bytes): refusing to seal the unseal key with it"
        )))
    }
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

/// Opens a sealed unseal key with whichever key of `keys` sealed it.
fn open_sealed(
    session: &Session,
    keys: &[ObjectHandle],
    path: &Path,
    text: &str,
    label: &str,
) -> Result<Secret, CryptoError> {
    let (iv, sealed) = parse(path, text)?;
    for key in keys {
        let mut iv = iv;
        let params = GcmParams::new(&mut iv, AAD, 128.into()).map_err(token_err)?;
        if let Ok(opened) = session.decrypt(&Mechanism::AesGcm(params), *key, &sealed) {
            let opened = Secret::new(opened);
            if opened.expose().len() != 32 {
                return Err(CryptoError::KeyLength(opened.expose().len()));
            }
            return Ok(opened);
        }
    }
    Err(CryptoError::Token(format!(
        "no key labelled `{label}` on the token opens {}",
        path.display()
    )))
}

/// The unseal key: opened by the token from `sealed_file`. Without the file (the first node,
/// with an empty data directory), a new random unseal key is sealed by the token key (made on
/// the token if it has none) and written; copy the file to the other nodes.
pub fn unseal_key(sealed_file: &Path, token: &Token) -> Result<Secret, CryptoError> {
    let module = load(token)?;
    let Some(ctx) = module.0.as_ref() else {
        return Err(CryptoError::Token("the module was not loaded".into()));
    };
    let session = session(ctx, token)?;
    let keys = find_keys(&session, token.key_label)?;
    match std::fs::read_to_string(sealed_file) {
        Ok(text) => open_sealed(&session, &keys, sealed_file, &text, token.key_label),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = match keys.as_slice() {
                [] => generate_key(&session, token.key_label)?,
                [one] => *one,
                _ => {
                    return Err(CryptoError::Token(format!(
                        "the token holds {} keys labelled `{}`: keep one",
                        keys.len(),
                        token.key_label
                    )))
                }
            };
            check_custody(&session, key, token.key_label)?;
            let unseal = Secret::random(32);
            let mut iv = [0u8; 12];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut iv);
            // A token may write the IV it used into the buffer: store what it left there.
            let params = GcmParams::new(&mut iv, AAD, 128.into()).map_err(token_err)?;
            let sealed = session
                .encrypt(&Mechanism::AesGcm(params), key, unseal.expose())
                .map_err(token_err)?;
            if sealed.len() != 32 + 16 {
                return Err(CryptoError::Token(format!(
                    "the token sealed 32 bytes into {} (expected a 16-byte tag)",
                    sealed.len()
                )));
            }
            let text = format!(
                "{MAGIC} {VERSION}\niv {}\nsealed {}\n",
                hex::encode(iv),
                hex::encode(&sealed)
            );
            // Before publishing: the token must open what it sealed.
            let back = open_sealed(&session, &[key], sealed_file, &text, token.key_label)?;
            if back.expose() != unseal.expose() {
                return Err(CryptoError::Token(
                    "the token does not give back what it sealed".into(),
                ));
            }
            let created = crate::durable_fs::publish_new(sealed_file, text.as_bytes(), 0o600)
                .map_err(|e| file_err(sealed_file, e.to_string()))?;
            if created {
                return Ok(unseal);
            }
            // Another process sealed one first: use theirs (read once; no loop).
            let theirs = std::fs::read_to_string(sealed_file)
                .map_err(|e| file_err(sealed_file, format!("exists but cannot be read: {e}")))?;
            let keys = find_keys(&session, token.key_label)?;
            open_sealed(&session, &keys, sealed_file, &theirs, token.key_label)
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
            .and_then(|l| l.strip_prefix(' '))
            .and_then(|h| hex::decode(h.trim()).ok())
            .ok_or_else(|| file_err(path, format!("missing or bad `{name}`")))
    };
    let iv: [u8; 12] = field("iv")?
        .try_into()
        .map_err(|_| file_err(path, "`iv` must be 24 hex digits"))?;
    let sealed = field("sealed")?;
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(file_err(path, "unexpected lines after `sealed`"));
    }
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
