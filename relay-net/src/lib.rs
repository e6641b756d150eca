//! IO shared by `relay-server`, `relay-agent` and `relay-client`, written once:
//!
//! - [`pki`]: the relay's CA, minting relay and identity certificates;
//! - [`cert`]: reading role, name and serial out of a verified certificate;
//! - [`credential`]: the one file an agent or client is handed, and
//!   [`renew`]: following it, so a renewed certificate needs no restart;
//! - [`tls`] and [`endpoint`]: mutual-TLS 1.3 QUIC endpoints and transport;
//! - [`tcp`]: QUIC over TLS/TCP where UDP is blocked, under quinn;
//! - [`dial`]: reaching the relay, with failures a person can act on;
//! - [`proxy`]: a TCP tunnel through an HTTP CONNECT proxy (`HTTPS_PROXY`);
//! - [`gone`]: why a connection ended, naming the peer that ended it;
//! - [`direct`]: connection IDs and the relay socket of direct paths;
//! - [`framed`]: frames at the start of a stream, early data kept;
//! - [`answer`]: reading the `Accepted`/`Refused` answer to an `Open` or `Grant`;
//! - [`splice`]: copying both ways with finish/reset mirrored;
//! - [`bench`](mod@bench): the benchmark service (sink, source, echo) on any splice ends;
//! - [`admin`]: the `/metrics`, `/healthz` and `/readyz` endpoint;
//! - [`audit`]: the audit record, the same from the relay and an agent;
//! - [`logging`], [`runtime`], [`signals`]: what each program's `main` sets up
//!   (log format and `RUST_LOG`, tokio runtime, SIGINT/SIGTERM, SIGHUP);
//! - [`pem`], [`fsutil`]: PEM blocks, and private files created 0600;
//! - [`quota`]: a cap per identity on what it holds at once.
//!
//! Nothing here knows which program it runs in: policy, registry and
//! allowlist live in the programs themselves.
//!
//! Without the default feature `net`, only the file formats build
//! ([`cert`], [`credential`], [`pem`], [`fsutil`]), with none of the network
//! stack: that is what the fuzz targets (`tests/fuzz`) compile.

#[cfg(feature = "net")]
pub mod admin;
#[cfg(feature = "net")]
pub mod answer;
pub mod audit;
#[cfg(feature = "net")]
pub mod bench;
pub mod cert;
pub mod credential;
#[cfg(feature = "net")]
pub mod dial;
#[cfg(feature = "net")]
pub mod direct;
#[cfg(feature = "net")]
pub mod endpoint;
#[cfg(feature = "net")]
pub mod framed;
pub mod fsutil;
#[cfg(feature = "net")]
pub mod gone;
#[cfg(feature = "net")]
pub mod heard;
#[cfg(feature = "net")]
pub mod logging;
#[cfg(feature = "oidc")]
pub mod oidc;
pub mod pem;
#[cfg(feature = "net")]
pub mod pki;
#[cfg(feature = "net")]
pub mod proxy;
pub mod quota;
#[cfg(feature = "net")]
pub mod renew;
#[cfg(feature = "net")]
pub mod runtime;
#[cfg(feature = "net")]
pub mod signals;
#[cfg(feature = "net")]
pub mod splice;
#[cfg(feature = "net")]
pub mod tcp;
#[cfg(feature = "net")]
pub mod tls;
