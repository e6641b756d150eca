//! `relay-client login` and `logout`: a credential from the organisation's
//! identity instead of a file handed out (DESIGN "Single sign-on").
//!
//! ```text
//! dial the relay without a certificate ─▶ LoginHello ─▶ LoginOffer (providers, nonce)
//!   ─▶ ID token: browser (PKCE), device code, or a CI job's token file
//!   ─▶ LoginToken (token, CSR of a key made here) ─▶ LoginCert ─▶ credential file
//! ```
//!
//! The private key never leaves this machine: the relay signs a CSR. The
//! credential goes where every later command looks ([`store`]), so they
//! need no `--credential`.

pub mod provider;
pub mod store;

use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::{Frame, LoginHello, LoginToken, ProviderInfo, ProviderKind};
use relay_net::credential::Credential;
use relay_net::dial::dial_login;
use relay_net::endpoint::Transport;
use relay_net::framed::{write_frame, FrameReader};

/// How long the relay may take to answer (a token check may fetch the
/// provider's keys first).
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// How a token is obtained.
#[derive(Clone, Debug)]
pub enum Flow {
    /// A browser, opened here (`true`) or by the person from the printed URL.
    Browser {
        /// Open it here.
        open: bool,
    },
    /// A device code.
    Device,
    /// A workload token already in hand (a CI job's).
    Token(String),
}

/// What `login` was asked to do.
#[derive(Clone, Debug)]
pub struct Login {
    /// Relay addresses; empty: those of the credential at `out`.
    pub relay: Vec<String>,
    /// The relay's CA certificate (PEM text); `None`: the one at `out`.
    pub ca: Option<String>,
    /// The provider by name; `None`: the relay's first of the flow's kind.
    pub provider: Option<String>,
    /// How to get the token.
    pub flow: Flow,
    /// Certificate lifetime to ask for; `None`: the provider's default.
    pub lifetime: Option<Duration>,
    /// Where to write the credential.
    pub out: PathBuf,
    /// How to reach the relay.
    pub transport: Transport,
    /// Deadline for reaching it.
    pub timeout: Duration,
}

/// A finished login.
#[derive(Debug)]
pub struct LoggedIn {
    /// The credential written.
    pub credential: relay_net::credential::Loaded,
    /// The provider that vouched.
    pub provider: String,
}

impl Login {
    /// Runs the login and writes the credential.
    ///
    /// # Errors
    /// A message that says what failed and what to do.
    pub async fn run(self) -> anyhow::Result<LoggedIn> {
        let (relay, ca) = self.relay_and_ca()?;
        let rc = dial_login(&ca, &relay, &self.transport, self.timeout)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let conn = rc.conn.clone();
        let offer = match request(&conn, LoginHello).await? {
            Frame::LoginOffer(offer) => offer,
            other => anyhow::bail!("the relay answered the login with {}", other.frame_type()),
        };
        let provider = self.choose(&offer.providers)?;
        let token = match &self.flow {
            Flow::Token(token) => token.trim().to_owned(),
            flow => {
                let doc = relay_net::oidc::discover(
                    &relay_net::oidc::http_client().map_err(anyhow::Error::msg)?,
                    &provider.issuer,
                )
                .await
                .map_err(anyhow::Error::msg)?;
                let http = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(relay_net::oidc::HTTP_TIMEOUT)
                    .build()?;
                match flow {
                    Flow::Device => provider::device(&http, provider, &doc, &offer.nonce).await?,
                    _ => {
                        let open = matches!(flow, Flow::Browser { open: true });
                        provider::browser(&http, provider, &doc, &offer.nonce, open).await?
                    }
                }
            }
        };
        let (key, csr) = relay_net::pki::keygen("relay client")?;
        let lifetime_s = self
            .lifetime
            .map_or(0, |l| u32::try_from(l.as_secs()).unwrap_or(u32::MAX).max(1));
        let ask = LoginToken {
            provider: provider.name.clone(),
            token,
            csr,
            lifetime_s,
        };
        if Frame::from(ask.clone()).payload_len() > proto::MAX_FRAME_LEN {
            anyhow::bail!("the token is too large to send ({} bytes)", ask.token.len());
        }
        let chain = match request(&conn, ask).await {
            Ok(Frame::LoginCert(cert)) => cert.chain,
            Ok(other) => anyhow::bail!("the relay answered the token with {}", other.frame_type()),
            Err(e) => return Err(e),
        };
        conn.close(0u32.into(), b"logged in");
        let identity_cert = relay_net::cert::PeerCert::from_pem(&chain)?;
        let credential = Credential {
            relay,
            identity: identity_cert.identity.to_uri(&identity_cert.relay),
            certificate: chain,
            private_key: Some(key),
            ca,
        };
        if let Some(dir) = self.out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        }
        credential.save(&self.out)?;
        let credential = Credential::load(&self.out, None)?;
        Ok(LoggedIn {
            credential,
            provider: provider.name.to_string(),
        })
    }

    /// The relay's addresses and CA: given, or from the credential a
    /// previous login wrote (expired or not).
    fn relay_and_ca(&self) -> anyhow::Result<(Vec<String>, String)> {
        let previous = || -> Option<Credential> {
            let text = std::fs::read_to_string(&self.out).ok()?;
            toml::from_str(&text).ok()
        };
        let ca = match &self.ca {
            Some(ca) => Some(ca.clone()),
            None => previous().map(|c| c.ca),
        };
        let relay = if self.relay.is_empty() {
            previous().map(|c| c.relay).unwrap_or_default()
        } else {
            self.relay.clone()
        };
        match (relay.is_empty(), ca) {
            (false, Some(ca)) => Ok((relay, ca)),
            _ => anyhow::bail!(
                "the first login needs the relay and its CA: relay-client login --relay relay.example.com:4433 --ca relay-ca.crt (the CA certificate is public: ask the relay's operator for ca.crt); later logins reuse them from {}",
                self.out.display()
            ),
        }
    }

    fn choose<'a>(&self, providers: &'a [ProviderInfo]) -> anyhow::Result<&'a ProviderInfo> {
        let kind = match self.flow {
            Flow::Token(_) => ProviderKind::Workload,
            _ => ProviderKind::People,
        };
        let names = || {
            providers
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if providers.is_empty() {
            anyhow::bail!("this relay offers no login");
        }
        let found = match &self.provider {
            Some(name) => providers
                .iter()
                .find(|p| p.name.as_str() == name)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "the relay has no login provider {name:?} (it has {})",
                        names()
                    )
                })?,
            None => providers.iter().find(|p| p.kind == kind).ok_or_else(|| {
                anyhow::anyhow!(
                    "the relay has no {} login provider (it has {}){}",
                    if kind == ProviderKind::Workload {
                        "CI-token"
                    } else {
                        "people"
                    },
                    names(),
                    if kind == ProviderKind::Workload {
                        ""
                    } else {
                        ": log in with --oidc-token-file"
                    }
                )
            })?,
        };
        if found.kind != kind {
            anyhow::bail!(
                "provider {} is for {}: {}",
                found.name,
                if found.kind == ProviderKind::Workload {
                    "CI tokens"
                } else {
                    "people"
                },
                if found.kind == ProviderKind::Workload {
                    "give --oidc-token-file FILE"
                } else {
                    "log in without --oidc-token-file"
                }
            );
        }
        Ok(found)
    }
}

/// Sends `frame` on a new stream and reads the one answer.
async fn request(conn: &quinn::Connection, frame: impl Into<Frame>) -> anyhow::Result<Frame> {
    let (mut send, recv) = conn.open_bi().await?;
    write_frame(&mut send, frame).await?;
    let _ = send.finish();
    match FrameReader::new(recv).expect(ANSWER_WITHIN).await {
        Ok(Frame::Refused(r)) => anyhow::bail!("the relay refused the login: {}", r.message),
        Ok(frame) => Ok(frame),
        Err(e) => anyhow::bail!("the login failed: {e}"),
    }
}

/// Removes the credential a login wrote.
///
/// # Errors
/// If it exists but cannot be removed.
pub fn logout(path: &Path) -> anyhow::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => anyhow::bail!("cannot remove {}: {e}", path.display()),
    }
}
