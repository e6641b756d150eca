//! One module per subcommand.

pub mod bench;
pub mod connect;
pub mod demo;
pub mod forward;
pub mod kubeconfig;
pub mod list;
pub mod login;
pub mod reach;
pub mod run;
pub mod shell;
pub mod socks;
pub mod with;
