//! `relay-server issue agent|client NAME`: one credential file to hand over.

use std::path::PathBuf;
use std::time::Duration;

use proto::{Identity, Name, Role};
use relay_net::cert::PeerCert;
use relay_net::credential::Credential;
use relay_net::pki::{Ca, Issued, KeySource, AGENT_TTL, CLIENT_TTL};

use crate::config::Paths;

/// What `issue` was asked to do.
#[derive(Clone, Debug)]
pub struct Issue {
    /// The relay directory (with the CA key).
    pub paths: Paths,
    /// `agent` or `client`.
    pub role: Role,
    /// The agent's or client's name.
    pub name: Name,
    /// Relay addresses (`host:port`) written into the credential.
    pub relay: Vec<String>,
    /// Lifetime; defaults by role.
    pub ttl: Option<Duration>,
    /// Sign this CSR instead of generating a key.
    pub csr: Option<PathBuf>,
}

impl Issue {
    /// Issues the certificate and builds the credential.
    ///
    /// # Errors
    /// If the CA cannot be read, the role is `relay`, or the CSR is invalid.
    pub fn run(&self) -> anyhow::Result<(Credential, Issued)> {
        let p = &self.paths;
        if self.role == Role::Relay {
            anyhow::bail!("issue makes agent and client credentials; the relay's own certificate comes from init");
        }
        if self.relay.is_empty() {
            anyhow::bail!("give the relay address agents and clients dial, e.g. --relay relay.example.com:4433");
        }
        let read = |path: PathBuf| {
            std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read {}: {e} (issue needs the CA made by `relay-server init`)",
                    path.display()
                )
            })
        };
        let ca_cert = read(p.ca_cert())?;
        let ca = Ca::load(&ca_cert, &read(p.ca_key())?)?;
        let relay = PeerCert::from_pem(&read(p.relay_cert())?)?.relay;
        let ttl = self.ttl.unwrap_or(match self.role {
            Role::Client => CLIENT_TTL,
            _ => AGENT_TTL,
        });
        let csr = self.csr.as_ref().map(|f| read(f.clone())).transpose()?;
        let key = match &csr {
            Some(pem) => KeySource::Csr(pem),
            None => KeySource::Generate,
        };
        let identity = Identity::new(self.role, self.name.clone());
        let issued = ca.issue_identity(&relay, &identity, ttl, key)?;
        let credential = Credential {
            relay: self.relay.clone(),
            identity: identity.to_uri(&relay),
            certificate: issued.cert_pem.clone(),
            private_key: issued.key_pem.clone(),
            ca: ca_cert,
        };
        Ok((credential, issued))
    }
}
