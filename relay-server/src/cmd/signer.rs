//! `relay-server signer`: a new online signer, the intermediate of the CA
//! that mints client certificates at single sign-on. Made where the CA key
//! is (by `init` too); the relay host needs only `signer.crt` and
//! `signer.key`, never `ca.key`. Running it again rotates the signer: the
//! certificates the old one minted stay valid until they expire (hours),
//! unless its serial is revoked.

use std::time::Duration;

use relay_net::cert::PeerCert;
use relay_net::fsutil::{write_private, write_public};
use relay_net::pki::{Ca, Issued};

use crate::config::Paths;

/// Makes a signer from the CA in `paths` and writes its two files.
///
/// # Errors
/// If the CA cannot be read (this is not where its key is), or the CA was
/// made before it allowed an intermediate.
pub fn make(paths: &Paths, ttl: Duration) -> anyhow::Result<Issued> {
    let read = |path: std::path::PathBuf| {
        std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read {}: {e} (the signer is made where the CA key is, with `--dir` the directory of `relay-server init`)",
                path.display()
            )
        })
    };
    let ca_cert = read(paths.ca_cert())?;
    if !allows_an_intermediate(&ca_cert) {
        anyhow::bail!(
            "{} was made by an earlier version with no room for an intermediate (path length 0): single sign-on needs a CA made by this version's `relay-server init`",
            paths.ca_cert().display()
        );
    }
    let ca = Ca::load(&ca_cert, &read(paths.ca_key())?)?;
    let relay = PeerCert::from_pem(&read(paths.relay_cert())?)?.relay;
    let issued = ca.issue_signer(&relay, ttl)?;
    write_public(&paths.signer_cert(), issued.cert_pem.as_bytes())?;
    write_private(
        &paths.signer_key(),
        issued.key_pem.as_deref().unwrap_or_default().as_bytes(),
    )?;
    Ok(issued)
}

/// Whether the CA certificate lets one intermediate stand below it.
fn allows_an_intermediate(ca_pem: &str) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok(ders) = relay_net::pem::certs(ca_pem) else {
        return false;
    };
    let Some(der) = ders.first() else {
        return false;
    };
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return false;
    };
    match cert.basic_constraints() {
        Ok(Some(bc)) => bc.value.ca && bc.value.path_len_constraint.is_none_or(|n| n >= 1),
        _ => false,
    }
}
