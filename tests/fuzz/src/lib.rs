//! The relay's and agent's file parsers, compiled here from their own source
//! files: the programs that own them pull in the whole network stack, whose
//! instrumented build takes minutes, while these need only `proto`, serde and
//! the file formats of `relay-net` — so CI can fuzz them on every run.
//!
//! A parser that grows a dependency on the rest of its program stops
//! compiling here, which CI notices (`tests/fuzz/run.sh`).

/// `relay-server`'s policy file.
#[path = "../../../relay-server/src/policy.rs"]
pub mod policy;

/// `relay-server`'s revocation list.
#[path = "../../../relay-server/src/revocation.rs"]
pub mod revocation;

/// `relay-agent`'s `--expose` rules.
#[path = "../../../relay-agent/src/allowlist.rs"]
pub mod allowlist;
