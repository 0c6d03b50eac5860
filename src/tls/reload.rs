//! A certificate and key read from their files and swapped in place when the files change: the
//! listeners and the peer client pick up a renewed certificate on the next handshake, without a
//! restart and without dropping the connections already open.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

use super::files;
use super::TlsError;

/// The current certificate of one role (a node's, an admin's), reloadable from its files.
pub struct CertStore {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: RwLock<Loaded>,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    /// The files' modification times when they were read.
    stamp: (Option<SystemTime>, Option<SystemTime>),
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl CertStore {
    /// Reads the pair; a key that does not match the certificate is refused.
    pub fn open(cert_file: &Path, key_file: &Path) -> Result<Arc<CertStore>, TlsError> {
        let provider = super::provider();
        let loaded = load(cert_file, key_file, &provider)?;
        Ok(Arc::new(CertStore {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            provider,
            current: RwLock::new(loaded),
        }))
    }

    /// Rereads the files. On an error the certificate in use stays and the error is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load(&self.cert_file, &self.key_file, &self.provider)?;
        // Nothing can panic while the lock is held, so a poisoned lock still holds a whole value.
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = loaded;
        Ok(())
    }

    /// Rereads the files if either changed since they were read; `Ok(true)` if it did.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = (modified(&self.cert_file), modified(&self.key_file));
        let changed = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stamp
            != now;
        if changed {
            self.reload()?;
        }
        Ok(changed)
    }

    /// The certificate in use.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .key
                .clone(),
        )
    }

    /// The leaf certificate in use, DER.
    pub fn leaf(&self) -> Option<Vec<u8>> {
        self.current()
            .and_then(|k| k.cert.first().map(|c| c.as_ref().to_vec()))
    }
}

fn load(
    cert_file: &Path,
    key_file: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Loaded, TlsError> {
    let stamp = (modified(cert_file), modified(key_file));
    let chain = files::read_certificates(cert_file)?;
    let key = files::read_private_key(key_file)?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        TlsError::Config(format!(
            "{} and {}: {e}",
            cert_file.display(),
            key_file.display()
        ))
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        stamp,
    })
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl ResolvesClientCert for CertStore {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        true
    }
}
