//! PEM documents: certificates and private keys as the files hold them.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM block that did not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid PEM {what}: {err}")]
pub struct PemError {
    /// What was being read ("certificate", "private key").
    pub what: &'static str,
    /// The parser's complaint.
    pub err: String,
}

/// Parses every certificate of a PEM document.
///
/// # Errors
/// If a block is malformed or there is no certificate at all.
pub fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let invalid = |err: String| PemError {
        what: "certificate",
        err,
    };
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// Parses the private key of a PEM document.
///
/// # Errors
/// If there is no key or it is malformed.
pub fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| PemError {
        what: "private key",
        err: e.to_string(),
    })
}
