//! `relay-server issue agent|client NAME`: one credential file to hand over,
//! its relay addresses checked now rather than at first use, its
//! certificate recorded in `DIR/issued.jsonl` ([`super::issued`]).

use std::path::PathBuf;
use std::time::Duration;

use proto::{Identity, Name, Role};
use relay_net::cert::PeerCert;
use relay_net::credential::Credential;
use relay_net::pki::{Ca, Issued, KeySource, AGENT_TTL, CLIENT_TTL};

use crate::cmd::issued::Record;
use crate::config::Paths;
use crate::revocation::Revocations;

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
    /// Groups the certificate names (clients only), for the policy's
    /// `group = "..."` entries.
    pub groups: Vec<Name>,
}

impl Issue {
    /// Issues the certificate, records it in `DIR/issued.jsonl` and builds
    /// the credential.
    ///
    /// # Errors
    /// If a relay address is not `host:port`, the CA cannot be read, the role
    /// is `relay`, the CSR is invalid or the record cannot be written.
    pub fn run(&self) -> anyhow::Result<(Credential, Issued)> {
        let p = &self.paths;
        if self.role == Role::Relay {
            anyhow::bail!("issue makes agent and client credentials; the relay's own certificate comes from init");
        }
        if self.relay.is_empty() {
            anyhow::bail!("give the relay address agents and clients dial, e.g. --relay relay.example.com:4433");
        }
        for addr in &self.relay {
            check_relay_address(addr).map_err(|why| {
                anyhow::anyhow!(
                    "--relay {addr:?} is not HOST:PORT: {why} (e.g. --relay relay.example.com:4433 or --relay 203.0.113.7:4433)"
                )
            })?;
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
        let mut record = Record::open(&p.issued())?;
        if !self.groups.is_empty() && self.role != Role::Client {
            anyhow::bail!("--group is for clients: an agent is named in the policy by its name");
        }
        let issued = ca.issue_identity_with(&relay, &identity, &self.groups, None, ttl, key)?;
        record.append(&identity, &issued.serial, issued.not_after)?;
        let credential = Credential {
            relay: self.relay.clone(),
            identity: identity.to_uri(&relay),
            certificate: issued.cert_pem.clone(),
            private_key: issued.key_pem.clone(),
            ca: ca_cert,
        };
        Ok((credential, issued))
    }

    /// What the operator should know before handing the credential over:
    /// today, that its identity is revoked by name (a credential dead on
    /// arrival).
    pub fn warnings(&self) -> Vec<String> {
        let path = self.paths.revoked();
        match Revocations::load(&path) {
            Ok(list) => list
                .by_name(self.role, &self.name)
                .map(|entry| {
                    let since = entry
                        .at
                        .as_deref()
                        .map(|at| format!(" since {at}"))
                        .unwrap_or_default();
                    format!(
                        "{role}/{name} is revoked{since} in {path}: this credential will be refused until you run `relay-server unrevoke {role} {name} --dir {dir}`",
                        role = self.role,
                        name = self.name,
                        path = path.display(),
                        dir = self.paths.dir.display(),
                    )
                })
                .into_iter()
                .collect(),
            Err(err) => vec![format!("{err}: cannot tell whether {}/{} is revoked", self.role, self.name)],
        }
    }
}

/// Checks that `addr` is what the dial expects: `host:port`, an IPv6
/// address in brackets, no scheme, no path.
///
/// # Errors
/// A sentence saying what is wrong.
pub fn check_relay_address(addr: &str) -> Result<(), String> {
    if let Some((scheme, _)) = addr.split_once("://") {
        return Err(format!(
            "drop the {scheme}:// (the relay speaks QUIC, not a URL scheme)"
        ));
    }
    if addr.contains('/') {
        return Err("no path: only host and port".into());
    }
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("the port is missing".into());
    };
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("write an IPv6 address in brackets, e.g. [2001:db8::1]:4433".into());
    }
    match port.parse::<u16>() {
        Ok(0) => Err("port 0 cannot be dialed".into()),
        Ok(_) => Ok(()),
        Err(_) => Err(format!("{port:?} is not a port number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_addresses_are_host_and_port() {
        for good in [
            "relay.example.com:4433",
            "127.0.0.1:4433",
            "[::1]:4433",
            "[2001:db8::1]:443",
            "localhost:1",
        ] {
            assert_eq!(check_relay_address(good), Ok(()), "{good}");
        }
        let why = |addr: &str| check_relay_address(addr).unwrap_err();
        assert_eq!(why("127.0.0.1"), "the port is missing");
        assert_eq!(why("relay.example.com"), "the port is missing");
        assert_eq!(
            why("https://relay.example.com:4433"),
            "drop the https:// (the relay speaks QUIC, not a URL scheme)"
        );
        assert_eq!(
            why("relay.example.com:4433/x"),
            "no path: only host and port"
        );
        assert_eq!(why(":4433"), "the host is missing");
        assert_eq!(
            why("relay.example.com:http"),
            "\"http\" is not a port number"
        );
        assert_eq!(why("relay.example.com:0"), "port 0 cannot be dialed");
        assert!(why("2001:db8::1:4433").contains("brackets"));
    }

    #[test]
    fn issuing_a_revoked_name_warns_how_to_undo_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let paths = Paths::from(dir.path());
        let bob = Name::try_from("bob").unwrap_or_else(|e| panic!("{e}"));
        let issue = |role| Issue {
            paths: paths.clone(),
            role,
            name: bob.clone(),
            relay: vec!["relay.example.com:4433".into()],
            ttl: None,
            csr: None,
            groups: Vec::new(),
        };
        assert!(issue(Role::Client).warnings().is_empty());
        crate::cmd::revoke::revoke(
            &paths,
            crate::cmd::revoke::Target::Identity(Role::Client, bob.clone()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let warnings = issue(Role::Client).warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("client/bob is revoked since "),
            "{warnings:?}"
        );
        assert!(
            warnings[0].ends_with(&format!(
                "this credential will be refused until you run `relay-server unrevoke client bob --dir {}`",
                dir.path().display()
            )),
            "{warnings:?}"
        );
        assert!(
            issue(Role::Agent).warnings().is_empty(),
            "agent/bob is not revoked"
        );
    }
}
