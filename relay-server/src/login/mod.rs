//! Single sign-on: a client without a certificate logs in with an OpenID
//! provider's token and leaves with a short-lived client certificate
//! (DESIGN "Single sign-on").
//!
//! ```text
//! client (no certificate) ── LoginHello ─▶ relay ── LoginOffer (providers, nonce) ─▶
//!   … the client signs in at the provider (browser + PKCE, or device code), nonce in the request …
//! client ── LoginToken (provider, ID token, CSR) ─▶ relay: token checks ─▶ signer ── LoginCert ─▶
//! ```
//!
//! The certificate is minted by the relay's online signer, an intermediate
//! of the CA (`relay-server signer`), so the root key stays offline; it
//! names the client, its groups and the login (issuer and subject), which
//! every later connection's audit records carry. A connection without a
//! certificate gets this service and nothing else.

pub(crate) mod keys;
pub(crate) mod names;
pub mod settings;
pub(crate) mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::{
    ErrorCode, Frame, Identity, LoginCert, LoginOffer, LoginToken, ProviderInfo, Refused, Role,
};
use relay_net::cert::{Login, PeerCert};
use relay_net::framed::{refuse, write_frame, FrameReader};
use relay_net::pki::{Ca, KeySource};

use crate::audit::{AuditEvent, Event};
use crate::config::Paths;
use crate::Shared;
use keys::ProviderKeys;
use settings::{LoginSettings, Provider};

/// How long a connection without a certificate may stay: a person signs
/// in at the provider meanwhile.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Nonces one login connection may hold at once.
const NONCES_PER_CONNECTION: usize = 4;
/// Token ids remembered (until their tokens expire) so none is used twice.
const USED_TOKENS: usize = 100_000;
/// Login connections one source address (an IPv6 /64) may hold at once:
/// a person needs one, a NAT of many people a few; a peer that opens
/// hundreds to hold the relay's memory is refused past it.
pub const LOGINS_PER_ADDRESS: usize = 16;

/// The relay's single sign-on: providers, their keys, the signer.
#[derive(Debug)]
pub(crate) struct Logins {
    providers: Vec<(Provider, ProviderKeys)>,
    skew: Duration,
    signer: Signer,
    /// Tokens used, by id, with their expiry (Unix seconds).
    used: Mutex<HashMap<String, u64>>,
    /// Live login connections per source address.
    per_address: relay_net::quota::Quota<std::net::IpAddr>,
}

/// The online signer, loaded.
struct Signer {
    ca: Ca,
    cert_pem: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer")
    }
}

impl Logins {
    /// Loads the signer from the relay directory and sets up the providers.
    ///
    /// # Errors
    /// If the signer's files are missing or do not belong to this CA.
    pub(crate) fn load(settings: &LoginSettings, paths: &Paths) -> Result<Logins, String> {
        let read = |path: std::path::PathBuf| {
            std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "[login] is configured but {} cannot be read: {e}; make the online signer with `relay-server signer --dir {}` where the CA key is, and copy signer.crt and signer.key here",
                    path.display(),
                    paths.dir.display()
                )
            })
        };
        let cert_pem = read(paths.signer_cert())?;
        let ca = Ca::load(&cert_pem, &read(paths.signer_key())?)
            .map_err(|e| format!("{}: {e}", paths.signer_cert().display()))?;
        let http = relay_net::oidc::http_client()?;
        let providers = settings
            .providers
            .iter()
            .map(|p| (p.clone(), ProviderKeys::new(&p.issuer, http.clone())))
            .collect();
        Ok(Logins {
            providers,
            skew: settings.clock_skew,
            signer: Signer { ca, cert_pem },
            used: Mutex::default(),
            per_address: relay_net::quota::Quota::new(LOGINS_PER_ADDRESS),
        })
    }

    fn offer(&self, nonce: String) -> LoginOffer {
        LoginOffer {
            nonce,
            providers: self
                .providers
                .iter()
                .map(|(p, _)| ProviderInfo {
                    name: p.name.clone(),
                    kind: p.kind,
                    issuer: p.issuer.clone(),
                    client_id: p.client_id.clone(),
                    scopes: p.scopes.clone(),
                })
                .collect(),
        }
    }

    /// The longest certificate any provider gives: a certificate from the
    /// signer that claims more was not minted here.
    pub(crate) fn max_lifetime(&self) -> Duration {
        self.providers
            .iter()
            .map(|(p, _)| p.max_lifetime)
            .max()
            .unwrap_or(settings::PEOPLE_LIFETIME)
    }

    /// The provider named `name`, with its keys.
    pub(crate) fn provider(&self, name: &str) -> Option<(&Provider, &ProviderKeys)> {
        self.providers
            .iter()
            .find(|(p, _)| p.name.as_str() == name)
            .map(|(p, k)| (p, k))
    }

    /// The providers people sign in with, in the configured order.
    pub(crate) fn people(&self) -> impl Iterator<Item = &Provider> {
        self.providers
            .iter()
            .map(|(p, _)| p)
            .filter(|p| p.kind == proto::ProviderKind::People)
    }

    /// How far the relay's clock and a provider's may disagree.
    pub(crate) fn skew(&self) -> Duration {
        self.skew
    }

    /// Marks `token_id` used; `false` if it was used before.
    pub(crate) fn first_use(&self, token_id: &str, expires: u64) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let now = unix_now();
        if used.len() >= USED_TOKENS {
            used.retain(|_, exp| *exp + self.skew.as_secs() >= now);
        }
        used.insert(token_id.to_owned(), expires).is_none()
    }

    /// Checks a token and mints the certificate it earns.
    async fn exchange(
        &self,
        shared: &Shared,
        request: &LoginToken,
        nonces: &mut Vec<String>,
        offered_at: Option<u64>,
    ) -> Result<(LoginCert, PeerCert), Refused> {
        let refused = |message: String| Refused::new(ErrorCode::UNAUTHORIZED, message);
        let Some((provider, keys)) = self
            .providers
            .iter()
            .find(|(p, _)| p.name == request.provider)
        else {
            let known: Vec<&str> = self
                .providers
                .iter()
                .map(|(p, _)| p.name.as_str())
                .collect();
            return Err(refused(format!(
                "this relay has no login provider {:?} (it has {})",
                request.provider.as_str(),
                known.join(", ")
            )));
        };
        // A nonce counts once, whatever the outcome.
        let nonce = match provider.kind {
            proto::ProviderKind::People => {
                let claimed = token::nonce_of(&request.token);
                let at = nonces
                    .iter()
                    .position(|n| Some(n.as_str()) == claimed.as_deref());
                at.map(|at| nonces.remove(at))
            }
            proto::ProviderKind::Workload => None,
        };
        let verified = token::verify(
            provider,
            keys,
            &request.token,
            nonce.as_deref(),
            offered_at,
            self.skew,
        )
        .await
        .map_err(refused)?;
        not_revoked(shared, &verified.name)?;
        if !self.first_use(&verified.token_id, verified.expires) {
            return Err(refused(
                "this token was used for a login before: a token counts once; get a fresh one"
                    .into(),
            ));
        }
        let lifetime = match request.lifetime_s {
            0 => provider.lifetime,
            s => Duration::from_secs(u64::from(s)).min(provider.max_lifetime),
        };
        let identity = Identity::new(Role::Client, verified.name.clone());
        let login = Login {
            issuer: verified.issuer.clone(),
            subject: verified.subject.clone(),
        };
        let issued = self
            .signer
            .ca
            .issue_identity_with(
                &shared.relay_name,
                &identity,
                &verified.groups,
                Some(&login),
                lifetime,
                KeySource::Csr(&request.csr),
            )
            .map_err(|e| {
                Refused::new(
                    ErrorCode::PROTOCOL_VIOLATION,
                    format!("cannot issue the certificate: {e}"),
                )
            })?;
        let peer = PeerCert::from_pem(&issued.cert_pem).map_err(|e| {
            Refused::new(
                ErrorCode::INTERNAL,
                format!("the certificate minted is unreadable: {e}"),
            )
        })?;
        let chain = format!("{}{}", issued.cert_pem, self.signer.cert_pem);
        Ok((LoginCert { chain }, peer))
    }
}

/// Refuses a login for a client name the operator revoked.
pub(crate) fn not_revoked(shared: &Shared, name: &proto::Name) -> Result<(), Refused> {
    let revocations = shared.revocations();
    let Some(entry) = revocations.by_name(Role::Client, name) else {
        return Ok(());
    };
    let since = entry
        .at
        .as_deref()
        .map(|at| format!(" since {at}"))
        .unwrap_or_default();
    Err(Refused::new(
        ErrorCode::REVOKED,
        format!("client/{name} is revoked on this relay{since}: ask its operator"),
    ))
}

/// Serves a connection that came without a certificate: login streams
/// only, for at most [`LOGIN_WINDOW`].
pub(crate) async fn serve(shared: &Arc<Shared>, conn: &quinn::Connection, logins: &Logins) {
    let remote = shared.remote(conn.remote_address());
    let Some(_held) = logins
        .per_address
        .try_hold(&crate::conn::address_key(remote.ip()))
    else {
        shared.metrics.limit_hit("logins_per_address");
        conn.close(
            ErrorCode::LIMIT_EXCEEDED.0.into(),
            b"too many logins under way from this address; finish one first",
        );
        return;
    };
    let mut nonces: Vec<String> = Vec::new();
    // When the relay first answered here: a token without a nonce must be younger.
    let mut offered_at: Option<u64> = None;
    let window = tokio::time::sleep(LOGIN_WINDOW);
    tokio::pin!(window);
    loop {
        let (mut send, recv) = tokio::select! {
            accepted = conn.accept_bi() => match accepted {
                Ok(stream) => stream,
                Err(_) => return,
            },
            () = &mut window => {
                conn.close(ErrorCode::LIMIT_EXCEEDED.0.into(), b"the login took too long; start again");
                return;
            }
        };
        let mut reader = FrameReader::new(recv);
        let frame = match reader.expect(shared.limits.first_frame_timeout).await {
            Ok(frame) => frame,
            Err(e) => {
                let _ = send.reset(e.code().0.into());
                continue;
            }
        };
        match frame {
            Frame::LoginHello(_) => {
                let nonce = hex::encode(rand::random::<[u8; 24]>());
                if nonces.len() == NONCES_PER_CONNECTION {
                    nonces.remove(0);
                }
                nonces.push(nonce.clone());
                offered_at.get_or_insert_with(unix_now);
                let _ = write_frame(&mut send, logins.offer(nonce)).await;
                let _ = send.finish();
            }
            Frame::LoginToken(request) => {
                match logins
                    .exchange(shared, &request, &mut nonces, offered_at)
                    .await
                {
                    Ok((cert, peer)) => {
                        let event = AuditEvent::of_peer(Event::Login, &peer, Some(remote));
                        if let Err(e) = shared.audit.record(event).await {
                            // Fail closed: a login that cannot be audited gives nothing.
                            let r = Refused::new(
                                ErrorCode::INTERNAL,
                                format!("the relay cannot audit: {e}"),
                            );
                            refuse(&mut send, &mut reader.recv, r).await;
                            continue;
                        }
                        tracing::info!(client = %peer.identity.name, serial = %peer.serial, provider = %request.provider, %remote, "login");
                        shared.metrics.login("issued");
                        let _ = write_frame(&mut send, cert).await;
                        let _ = send.finish();
                    }
                    Err(refused) => {
                        tracing::warn!(%remote, provider = %request.provider, reason = %refused.message, "login refused");
                        shared.metrics.login("refused");
                        let event = AuditEvent {
                            remote: Some(remote.to_string()),
                            ..AuditEvent::new(Event::AuthFailed)
                        };
                        shared.audit.auth_failed(
                            remote.ip(),
                            event.because(
                                Some(refused.code),
                                format!("login refused: {}", refused.message),
                            ),
                        );
                        refuse(&mut send, &mut reader.recv, refused).await;
                    }
                }
            }
            other => {
                let r = Refused::new(
                    ErrorCode::UNAUTHORIZED,
                    format!("a connection without a client certificate may only log in (LoginHello, LoginToken), not send {}; get a certificate with `relay-client login`", other.frame_type()),
                );
                refuse(&mut send, &mut reader.recv, r).await;
            }
        }
    }
}

/// Now, in Unix seconds.
fn unix_now() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or_default()
}
