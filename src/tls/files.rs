//! Reading certificates and private keys from PEM files, and writing new ones: a private key file
//! must not be readable by group or others (as ssh refuses such a key), and new key files are
//! created 0600 and synced with their directory entry.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Every certificate in a PEM file, in order (leaf first for a chain). An empty file is an error.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::File {
            path: path.display().to_string(),
            message: "holds no PEM certificate".into(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1), refusing a file that group or others
/// may read.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    check_private(path)?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, e))
}

/// Refuses a secret file whose mode lets group or others read or write it.
pub fn check_private(path: &Path) -> Result<(), TlsError> {
    let meta = std::fs::metadata(path).map_err(|e| file_error(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::File {
            path: path.display().to_string(),
            message: format!(
                "is a private key with mode {mode:04o}: group and others must have no access \
                 (chmod 600)"
            ),
        });
    }
    Ok(())
}

/// Writes a new file with `mode`, synced with its directory entry; an existing file is kept and
/// the call fails unless `overwrite`.
pub fn write_new(path: &Path, contents: &[u8], mode: u32, overwrite: bool) -> Result<(), TlsError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(mode);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path).map_err(|e| file_error(path, e))?;
    // An existing file keeps its mode through `truncate`: set it.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| file_error(path, e))?;
    f.write_all(contents).map_err(|e| file_error(path, e))?;
    f.sync_all().map_err(|e| file_error(path, e))?;
    crate::durable_fs::sync_parent(path).map_err(|e| file_error(path, e))
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}
