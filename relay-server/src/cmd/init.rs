//! `relay-server init`: a new CA, the relay's server certificate and a
//! policy that allows nothing.

use std::time::Duration;

use proto::Name;
use relay_net::fsutil::{write_private, write_public};
use relay_net::pki::{Ca, RELAY_TTL};

use crate::config::Paths;
use crate::policy::INITIAL_POLICY;

/// What `init` was asked to do.
#[derive(Clone, Debug)]
pub struct Init {
    /// The relay directory to create.
    pub paths: Paths,
    /// Names clients dial (DNS names or IPs); the first valid name is the relay's name.
    pub names: Vec<String>,
    /// Lifetime of the relay's server certificate.
    pub ttl: Duration,
    /// Overwrite an existing CA.
    pub force: bool,
}

impl Init {
    /// `init` with default lifetime.
    pub fn new(paths: Paths, names: Vec<String>) -> Init {
        Init {
            paths,
            names,
            ttl: RELAY_TTL,
            force: false,
        }
    }

    /// The relay's own name: the first `--name` that is a valid identity name.
    ///
    /// # Errors
    /// If no name qualifies.
    pub fn relay_name(&self) -> anyhow::Result<Name> {
        self.names
            .iter()
            .find_map(|n| Name::try_from(n.to_ascii_lowercase().as_str()).ok())
            .ok_or_else(|| anyhow::anyhow!("no usable --name: give the relay's DNS name or IP address, e.g. --name relay.example.com"))
    }

    /// Creates the directory contents; returns the relay's name.
    ///
    /// # Errors
    /// If the directory already holds a CA (without `force`), or files cannot be written.
    pub fn run(&self) -> anyhow::Result<Name> {
        let p = &self.paths;
        if self.names.is_empty() {
            anyhow::bail!(
                "give at least one --name: the DNS name or IP address agents and clients dial"
            );
        }
        if p.ca_cert().exists() && !self.force {
            anyhow::bail!("{} already exists: this directory already has a CA (use --force to replace it and invalidate every credential)", p.ca_cert().display());
        }
        std::fs::create_dir_all(&p.dir)?;
        let relay = self.relay_name()?;
        let (ca, ca_key) = Ca::generate(&relay)?;
        let issued = ca.issue_relay(&relay, &self.names, self.ttl)?;
        write_private(&p.ca_key(), ca_key.as_bytes())?;
        write_public(&p.ca_cert(), ca.cert_pem().as_bytes())?;
        write_public(&p.relay_cert(), issued.cert_pem.as_bytes())?;
        write_private(
            &p.relay_key(),
            issued.key_pem.unwrap_or_default().as_bytes(),
        )?;
        super::signer::make(p, relay_net::pki::SIGNER_TTL)?;
        if !p.policy().exists() {
            write_public(&p.policy(), INITIAL_POLICY.as_bytes())?;
        }
        Ok(relay)
    }
}
