//! rustls configurations for mutual TLS 1.3 over QUIC, with exactly one
//! crypto provider (ring) chosen explicitly so rustls never has to guess.
//!
//! 0-RTT stays off on both sides: forwarded bytes must never be replayable,
//! and quinn's convenience constructors would turn it on.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::pem;

/// Errors while building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM block did not parse.
    #[error(transparent)]
    Pem(#[from] pem::PemError),
    /// rustls rejected the configuration (e.g. key does not match certificate).
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built (e.g. empty CA).
    #[error("TLS client verifier: {0}")]
    Verifier(String),
    /// quinn does not accept the TLS configuration for QUIC.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Quic(String),
}

/// The one crypto provider of the build.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in pem::certs(ca_pem)? {
        roots.add(cert)?;
    }
    Ok(Arc::new(roots))
}

/// Whether the private key `key_pem` belongs to the first certificate of
/// `cert_pem` (same public key). `Ok(true)` also when the key type cannot
/// tell, as rustls then leaves it to the handshake.
///
/// # Errors
/// If either PEM is malformed or the key is of an unsupported type.
pub fn key_matches(cert_pem: &str, key_pem: &str) -> Result<bool, TlsError> {
    let provider = provider();
    let key = provider
        .key_provider
        .load_private_key(pem::private_key(key_pem)?)?;
    let certified = rustls::sign::CertifiedKey::new(pem::certs(cert_pem)?, key);
    match certified.keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Ok(false),
        Ok(()) | Err(rustls::Error::InconsistentKeys(_)) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// The relay's TLS: its own certificate, and a client certificate from
/// `ca_pem` required of every peer before any stream is read.
///
/// # Errors
/// If any PEM is malformed or the key does not match the certificate.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
) -> Result<QuicServerConfig, TlsError> {
    relay_server_config(cert_pem, key_pem, ca_pem, false)
}

/// The relay's TLS as [`server_config`]; with `login`, a peer may also come
/// without a certificate, and the relay then serves it nothing but a
/// single sign-on (relay-server `login`). A certificate that is presented
/// is verified all the same.
///
/// # Errors
/// If any PEM is malformed or the key does not match the certificate.
pub fn relay_server_config(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
    login: bool,
) -> Result<QuicServerConfig, TlsError> {
    let provider = provider();
    let builder = WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider.clone());
    let builder = if login {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    let verifier = builder
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(pem::certs(cert_pem)?, pem::private_key(key_pem)?)?;
    tls.alpn_protocols = vec![proto::ALPN.to_vec()];
    tls.max_early_data_size = 0;
    QuicServerConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))
}

/// An agent's or client's TLS: trusts only `ca_pem` and presents its own
/// certificate.
///
/// # Errors
/// If any PEM is malformed or the key does not match the certificate.
pub fn client_config(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
) -> Result<QuicClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(pem::certs(cert_pem)?, pem::private_key(key_pem)?)?;
    tls.alpn_protocols = vec![proto::ALPN.to_vec()];
    tls.enable_early_data = false;
    QuicClientConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))
}

/// A client's TLS for a single sign-on: it trusts only `ca_pem` and
/// presents no certificate, since getting one is what it came for.
///
/// # Errors
/// If the PEM is malformed.
pub fn login_client_config(ca_pem: &str) -> Result<QuicClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?)
        .with_no_client_auth();
    tls.alpn_protocols = vec![proto::ALPN.to_vec()];
    tls.enable_early_data = false;
    QuicClientConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))
}

/// The TLS handshake of the relay's TCP carrier ([`crate::tcp`]): its own
/// certificate, TLS 1.3, ALPN [`proto::carrier::CARRIER_ALPN`]. No client
/// certificate here: the QUIC connection inside asks for it, as over UDP.
///
/// # Errors
/// If any PEM is malformed or the key does not match the certificate.
pub fn carrier_server_config(
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(pem::certs(cert_pem)?, pem::private_key(key_pem)?)?;
    tls.alpn_protocols = vec![proto::carrier::CARRIER_ALPN.to_vec()];
    // Nothing goes through TLS after the handshake (`crate::tcp`): no
    // session tickets, which would follow it.
    tls.send_tls13_tickets = 0;
    Ok(Arc::new(tls))
}

/// The TLS of the relay's web page, on the carrier's TCP port
/// ([`crate::tcp::Web`]): a browser's, so TLS 1.2 and 1.3, ALPN `http/1.1`
/// (WebSockets ride HTTP/1.1), no client certificate (people sign in with
/// their organisation's provider).
///
/// # Errors
/// If any PEM is malformed or the key does not match the certificate.
pub fn web_server_config(
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(pem::certs(cert_pem)?, pem::private_key(key_pem)?)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

/// An agent's or client's TLS handshake on the TCP carrier: the relay's
/// certificate must lead to `ca_pem` and name the host dialled, as inside.
///
/// # Errors
/// If the PEM is malformed.
pub fn carrier_client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?)
        .with_no_client_auth();
    tls.alpn_protocols = vec![proto::carrier::CARRIER_ALPN.to_vec()];
    Ok(Arc::new(tls))
}

/// A client's TLS toward an agent on a direct path: the agent's chain must
/// lead to `ca_pem` like any peer's, but agent certificates name an identity
/// (a `relay://` URI), not a host, so the caller checks that identity once
/// the handshake is done ([`crate::cert::PeerCert::of_connection`]).
///
/// # Errors
/// If any PEM is malformed or the key does not match the certificate.
pub fn direct_client_config(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
) -> Result<QuicClientConfig, TlsError> {
    let provider = provider();
    let chain = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots(ca_pem)?,
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly(chain)))
        .with_client_auth_cert(pem::certs(cert_pem)?, pem::private_key(key_pem)?)?;
    tls.alpn_protocols = vec![proto::ALPN.to_vec()];
    tls.enable_early_data = false;
    QuicClientConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))
}

/// Verifies a server's chain, validity and key usage with webpki, and
/// leaves its name to the caller.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        intermediates: &[rustls_pki_types::CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            // webpki checks the name last, after chain, time and usage.
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
