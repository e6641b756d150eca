//! Administrative commands on the relay directory. `init` and `issue` are
//! the only code that reads the CA private key, so both can run on a host
//! that is not the internet-facing relay (README, "Keeping the CA key off
//! the relay"). `issued` is the record `issue` keeps; `revoke` also holds
//! `unrevoke`. `signer` makes the online signer of single sign-on (also
//! from the CA key); `check-oidc` asks the configured providers what they
//! publish.

pub mod check_oidc;
pub mod init;
pub mod issue;
pub mod issued;
pub mod revoke;
pub mod signer;
