//! [`AgentError`]: why the agent stops on its own, with what to do about
//! it. Everything else (a relay that is down, restarting, going away, at a
//! limit) is retried with backoff and never ends the agent.

use proto::{ErrorCode, Identity, Role};
use relay_net::credential::Loaded;
use relay_net::dial::DialError;

use crate::uplink::RegisterError;

/// An error that retrying cannot heal: the agent exits with it.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The credential is not an agent's (a client's, say): the relay would
    /// refuse every registration.
    #[error(
        "this is a {role} credential ({identity}); relay-agent needs an agent credential: relay-server issue agent {name}",
        role = .identity.role,
        name = .identity.name
    )]
    NotAnAgent {
        /// Whom the credential names.
        identity: Identity,
    },
    /// The credential cannot be used at all (expired, key and certificate
    /// do not match).
    #[error("this agent's credential cannot be used ({error}); fix the credential file, or issue a new one: relay-server issue agent {name}", name = .identity.name)]
    Credential {
        /// The agent's identity, for the remedy.
        identity: Identity,
        /// What is wrong with it.
        error: Box<RegisterError>,
    },
    /// A relay refused the registration in a way that will not change.
    #[error("relay {addr} will not take this agent ({error}); {remedy}", remedy = remedy(.error, .identity))]
    Refused {
        /// The relay address, as in the credential.
        addr: String,
        /// The agent's identity, for the remedy.
        identity: Identity,
        /// What the relay (or the credential) said.
        error: Box<RegisterError>,
    },
}

impl AgentError {
    /// The relay's error code, when a relay refused us.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            AgentError::NotAnAgent { .. } => None,
            AgentError::Credential { error, .. } | AgentError::Refused { error, .. } => {
                error.code()
            }
        }
    }

    /// The error of a registration with `addr` that cannot heal
    /// ([`RegisterError::heals`] is false).
    pub fn registration(addr: &str, identity: &Identity, error: RegisterError) -> AgentError {
        let identity = identity.clone();
        match error {
            RegisterError::Dial(DialError::Credential(_)) | RegisterError::DirectTls(_) => {
                AgentError::Credential {
                    identity,
                    error: Box::new(error),
                }
            }
            error => AgentError::Refused {
                addr: addr.to_owned(),
                identity,
                error: Box::new(error),
            },
        }
    }
}

/// Checks, before any dial, that `credential` is an agent's.
///
/// # Errors
/// [`AgentError::NotAnAgent`] naming the command that issues the right one.
pub fn check_role(credential: &Loaded) -> Result<(), AgentError> {
    let identity = &credential.cert.identity;
    if identity.role == Role::Agent {
        Ok(())
    } else {
        Err(AgentError::NotAnAgent {
            identity: identity.clone(),
        })
    }
}

/// What a person does about a registration that cannot heal.
fn remedy(error: &RegisterError, identity: &Identity) -> String {
    let issue = format!("relay-server issue agent {}", identity.name);
    match error.code() {
        Some(ErrorCode::REVOKED) => {
            format!("its credential is revoked: issue a new one ({issue}) and restart the agent")
        }
        Some(ErrorCode::CERT_EXPIRED) => {
            format!("its credential has expired: issue a new one ({issue}) and restart the agent")
        }
        Some(ErrorCode::UNAUTHORIZED) => format!(
            "the relay does not accept this credential: use one this relay issued ({issue})"
        ),
        Some(ErrorCode::PROTOCOL_VIOLATION) => format!(
            "the relay does not take a registration from this credential: is it an agent credential ({issue}), and do agent and relay run the same version?"
        ),
        _ => "retrying cannot help".to_owned(),
    }
}
