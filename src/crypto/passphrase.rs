//! The unseal key derived from a passphrase (`[kms] unseal = "passphrase"`): Argon2id over the
//! passphrase and a random salt. The salt, the Argon2 parameters and a check value live in a small
//! parameter file (not secret, the same on every node of a cluster, like the key file was), so a
//! wrong passphrase is refused at start before anything is written.
//!
//! ```text
//! raftkms-unseal-kdf 1            (format version)
//! argon2id m=65536 t=3 p=1
//! salt <32 hex digits>
//! check <32 hex digits>          (HMAC-SHA-256(derived key, "raftkms unseal check")[..16])
//! ```

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{CryptoError, Secret};

const MAGIC: &str = "raftkms-unseal-kdf";
const VERSION: u32 = 1;
/// Argon2id cost: 64 MiB, 3 passes, 1 lane (the OWASP-recommended floor is 19 MiB, 2 passes).
const DEFAULT_M_KIB: u32 = 65_536;
const DEFAULT_T: u32 = 3;
const DEFAULT_P: u32 = 1;
const CHECK_LABEL: &[u8] = b"raftkms unseal check";
/// Shortest passphrase accepted when the parameters are first made, in bytes.
pub const MIN_LEN: usize = 12;
/// Costs accepted from a parameter file: a damaged or hostile file must not make a start
/// allocate terabytes or run for hours.
const M_KIB_RANGE: std::ops::RangeInclusive<u32> = 8_192..=4_194_304;
const T_RANGE: std::ops::RangeInclusive<u32> = 1..=16;
const P_RANGE: std::ops::RangeInclusive<u32> = 1..=16;

/// The parameters of one cluster's passphrase derivation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KdfParams {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
    pub salt: [u8; 16],
    pub check: [u8; 16],
}

fn err(path: &Path, message: impl Into<String>) -> CryptoError {
    CryptoError::UnsealKey {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Checks the first line of a small versioned text file: `<magic> <version>`.
pub(super) fn check_format(
    path: &Path,
    first: Option<&str>,
    magic: &str,
    version: u32,
    what: &str,
) -> Result<(), CryptoError> {
    match first.map(|l| l.split_whitespace().collect::<Vec<_>>()) {
        Some(v) if v.len() == 2 && v[0] == magic => {
            if v[1] == version.to_string() {
                Ok(())
            } else {
                Err(err(path, format!("unknown format version {}", v[1])))
            }
        }
        _ => Err(err(path, format!("is not {what}"))),
    }
}

fn derive(passphrase: &[u8], p: &KdfParams) -> Result<Secret, CryptoError> {
    let params = argon2::Params::new(p.m_kib, p.t, p.p, Some(32))
        .map_err(|e| CryptoError::Passphrase(format!("Argon2 parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, &p.salt, &mut out[..])
        .map_err(|e| CryptoError::Passphrase(format!("Argon2: {e}")))?;
    Ok(Secret::new(out.to_vec()))
}

fn check_of(key: &Secret) -> Result<[u8; 16], CryptoError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose())
        .map_err(|_| CryptoError::KeyLength(key.expose().len()))?;
    mac.update(CHECK_LABEL);
    let tag = mac.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&tag[..16]);
    Ok(out)
}

impl KdfParams {
    fn render(&self) -> String {
        format!(
            "{MAGIC} {VERSION}\nargon2id m={} t={} p={}\nsalt {}\ncheck {}\n",
            self.m_kib,
            self.t,
            self.p,
            hex::encode(self.salt),
            hex::encode(self.check)
        )
    }

    fn parse(path: &Path, text: &str) -> Result<KdfParams, CryptoError> {
        let mut lines = text.lines();
        check_format(
            path,
            lines.next(),
            MAGIC,
            VERSION,
            "a raftkms unseal parameter file",
        )?;
        let (mut m, mut t, mut p) = (None, None, None);
        let argon = lines.next().unwrap_or_default();
        let mut words = argon.split_whitespace();
        if words.next() != Some("argon2id") {
            return Err(err(path, "line 2 must name argon2id"));
        }
        for w in words {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| err(path, "bad Argon2 parameter"))?;
            let v: u32 = v.parse().map_err(|_| err(path, "bad Argon2 parameter"))?;
            let (slot, range) = match k {
                "m" => (&mut m, &M_KIB_RANGE),
                "t" => (&mut t, &T_RANGE),
                "p" => (&mut p, &P_RANGE),
                _ => return Err(err(path, format!("unknown Argon2 parameter `{k}`"))),
            };
            if slot.is_some() {
                return Err(err(path, format!("Argon2 parameter `{k}` given twice")));
            }
            if !range.contains(&v) {
                return Err(err(
                    path,
                    format!(
                        "Argon2 {k}={v} is outside {}..={}",
                        range.start(),
                        range.end()
                    ),
                ));
            }
            *slot = Some(v);
        }
        let mut field = |name: &str| -> Result<[u8; 16], CryptoError> {
            let line = lines.next().unwrap_or_default();
            let hexed = line
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix(' '))
                .map(str::trim)
                .ok_or_else(|| err(path, format!("missing `{name}`")))?;
            hex::decode(hexed)
                .ok()
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .ok_or_else(|| err(path, format!("`{name}` must be 32 hex digits")))
        };
        let salt = field("salt")?;
        let check = field("check")?;
        if lines.any(|l| !l.trim().is_empty()) {
            return Err(err(path, "unexpected lines after `check`"));
        }
        match (m, t, p) {
            (Some(m_kib), Some(t), Some(p)) => Ok(KdfParams {
                m_kib,
                t,
                p,
                salt,
                check,
            }),
            _ => Err(err(path, "line 2 needs m=, t= and p=")),
        }
    }
}

/// The unseal key for `passphrase` under the parameters `text` (read from `path`), refused if
/// the check value does not match.
fn open_with(path: &Path, text: &str, passphrase: &[u8]) -> Result<Secret, CryptoError> {
    let params = KdfParams::parse(path, text)?;
    let key = derive(passphrase, &params)?;
    use subtle::ConstantTimeEq;
    if !bool::from(check_of(&key)?.ct_eq(&params.check)) {
        return Err(CryptoError::Passphrase(format!(
            "the passphrase does not match {} (nothing was changed)",
            path.display()
        )));
    }
    Ok(key)
}

/// The unseal key for `passphrase`: derived with the parameters in `path`, refused if their check
/// value does not match (a wrong passphrase, nothing written). Without the file, new parameters
/// are made and written (0600, synced) — the first node of a cluster; copy the file to the others.
pub fn unseal_key(path: &Path, passphrase: &[u8]) -> Result<Secret, CryptoError> {
    match std::fs::read_to_string(path) {
        Ok(text) => open_with(path, &text, passphrase),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if passphrase.len() < MIN_LEN {
                return Err(CryptoError::Passphrase(format!(
                    "a new passphrase must have at least {MIN_LEN} characters"
                )));
            }
            let mut salt = [0u8; 16];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
            let mut params = KdfParams {
                m_kib: DEFAULT_M_KIB,
                t: DEFAULT_T,
                p: DEFAULT_P,
                salt,
                check: [0; 16],
            };
            let key = derive(passphrase, &params)?;
            params.check = check_of(&key)?;
            let created = crate::durable_fs::publish_new(path, params.render().as_bytes(), 0o600)
                .map_err(|e| err(path, e.to_string()))?;
            if created {
                return Ok(key);
            }
            // Another process made the parameters first: theirs win, checked as usual (read
            // once: a name that exists but cannot be read is an error, not a loop).
            let theirs = std::fs::read_to_string(path)
                .map_err(|e| err(path, format!("exists but cannot be read: {e}")))?;
            open_with(path, &theirs, passphrase)
        }
        Err(e) => Err(err(path, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9106 §5.3, the Argon2id test vector, through the crate and version used here.
    #[test]
    fn argon2id_matches_rfc_9106() {
        let params = argon2::ParamsBuilder::new()
            .m_cost(32)
            .t_cost(3)
            .p_cost(4)
            .output_len(32)
            .data(argon2::AssociatedData::new(&[4u8; 12]).unwrap())
            .build()
            .unwrap();
        let argon = argon2::Argon2::new_with_secret(
            &[3u8; 8],
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        )
        .unwrap();
        let mut out = [0u8; 32];
        argon
            .hash_password_into(&[1u8; 32], &[2u8; 16], &mut out)
            .unwrap();
        assert_eq!(
            hex::encode(out),
            "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"
        );
    }

    #[test]
    fn the_right_passphrase_opens_a_wrong_one_is_refused_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unseal.kdf");
        let key = unseal_key(&path, b"correct horse battery").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("raftkms-unseal-kdf 1\nargon2id m=65536 t=3 p=1\n"),
            "{text}"
        );
        assert!(!text.contains("correct"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The same passphrase gives the same key, on any node with a copy of the file.
        let again = unseal_key(&path, b"correct horse battery").unwrap();
        assert_eq!(again.expose(), key.expose());
        let e = unseal_key(&path, b"wrong horse battery").unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        // Another salt, another key.
        let other = dir.path().join("other.kdf");
        let k2 = unseal_key(&other, b"correct horse battery").unwrap();
        assert_ne!(k2.expose(), key.expose());
        // A short first passphrase and a damaged file are refused.
        assert!(unseal_key(&dir.path().join("short.kdf"), b"short").is_err());
        // Costs out of range (a damaged or hostile file) are refused before any allocation.
        let huge = text.replace("m=65536", "m=4294967295");
        std::fs::write(&other, &huge).unwrap();
        let e = unseal_key(&other, b"correct horse battery").unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
        std::fs::write(&other, text.replace("t=3", "t=3 t=3")).unwrap();
        assert!(unseal_key(&other, b"correct horse battery").is_err());
        std::fs::write(&other, "raftkms-unseal-kdf 9\n").unwrap();
        assert!(unseal_key(&other, b"correct horse battery")
            .unwrap_err()
            .to_string()
            .contains("version 9"));
    }
}
