//! `relay-client kubeconfig AGENT/TARGET`: a kubeconfig context that
//! reaches the cluster of a context (`--kubeconfig FILE`, `--context NAME`:
//! read, as kubectl means them) through the relay, printed or merged into
//! `--out FILE`. Two routes (see [`crate::kube`]):
//! `--socks ADDR` (default `127.0.0.1:1080`, for a running `relay-client
//! socks ADDR AGENT`: server URL and TLS name unchanged, the agent resolves
//! the name) or `--forward ADDR` (for a running `relay-client forward ADDR
//! AGENT/TARGET`: server 127.0.0.1, `tls-server-name` the real host).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::kube::{self, KubeError, Route};
use crate::AgentTarget;

/// What `kubeconfig` was asked to do.
#[derive(Debug)]
pub struct Kubeconfig {
    /// The API server's target (its agent names the context).
    pub dest: AgentTarget,
    /// The kubeconfig to read (default: `KUBECONFIG`, `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// The context whose cluster to copy (default: the current one).
    pub context: Option<String>,
    /// Merge the new context into this file (created if missing) instead
    /// of printing it.
    pub out: Option<PathBuf>,
    /// The new context's name (default `relay-AGENT`).
    pub name: Option<String>,
    /// The route.
    pub route: Route,
}

/// Builds the context; prints it or merges it into the file.
///
/// # Errors
/// If there is no kubeconfig to copy from, kubectl is missing, or the file
/// cannot be written.
pub async fn run(k: Kubeconfig, out: &mut impl std::io::Write) -> Result<(), KubeError> {
    let source = kube::source(k.kubeconfig.as_deref()).ok_or_else(|| {
        KubeError::Invalid(
            "no kubeconfig to copy the cluster from (set KUBECONFIG, or fetch credentials first, e.g. `az aks get-credentials`)".into(),
        )
    })?;
    let view = kube::view(&source, k.context.as_deref()).await?;
    let name = k.name.unwrap_or_else(|| format!("relay-{}", k.dest.agent));
    let config = kube::rewrite(view, &k.route, &name)?;
    let Some(path) = k.out else {
        let text =
            serde_json::to_string_pretty(&config).map_err(|e| KubeError::Invalid(e.to_string()))?;
        let _ = writeln!(out, "{text}");
        return Ok(());
    };
    let merged = if path.exists() {
        // kubectl merges KUBECONFIG lists with the first file winning, so
        // the new entries replace same-named ones and the rest stays.
        let dir = tempfile::tempdir().map_err(|err| KubeError::Write {
            path: "temporary directory".into(),
            err,
        })?;
        let fresh = dir.path().join("new");
        kube::write(&fresh, &config)?;
        let mut list = fresh.into_os_string();
        list.push(":");
        list.push(&path);
        let mut merged = kube::view_all(&list).await?;
        merged["current-context"] = serde_json::json!(name);
        merged
    } else {
        config
    };
    kube::write(&path, &merged)?;
    let _ = writeln!(
        out,
        "wrote context {name} to {}{}",
        path.display(),
        match &k.route {
            Route::Socks(addr) => format!(
                " (through SOCKS on {addr}: keep `relay-client socks {addr} {}` running)",
                k.dest.agent
            ),
            Route::Forward(addr) => format!(
                " (through {addr}: keep `relay-client forward {addr} {}` running)",
                k.dest
            ),
        }
    );
    Ok(())
}

/// The default SOCKS address of the route.
pub fn default_socks() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1080))
}
