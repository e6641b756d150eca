//! IO shared by `relay-server`, `relay-agent` and `relay-client`, written once:
//!
//! - [`pki`]: the relay's CA, minting relay and identity certificates;
//! - [`cert`]: reading role, name and serial out of a verified certificate;
//! - [`credential`]: the one file an agent or client is handed;
//! - [`tls`] and [`endpoint`]: mutual-TLS 1.3 QUIC endpoints and transport;
//! - [`dial`]: reaching the relay, with failures a person can act on;
//! - [`framed`]: frames at the start of a stream, early data kept;
//! - [`splice`]: copying both ways with finish/reset mirrored;
//! - [`bench`]: the benchmark service (sink, source, echo) on any splice ends.
//!
//! Nothing here knows which program it runs in: policy, registry and
//! allowlist live in the programs themselves.

pub mod admin;
pub mod bench;
pub mod cert;
pub mod credential;
pub mod dial;
pub mod endpoint;
pub mod framed;
pub mod fsutil;
pub mod logging;
pub mod pki;
pub mod runtime;
pub mod signals;
pub mod splice;
pub mod tls;
