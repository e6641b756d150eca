//! Kubeconfig rewriting for `with` and `kubeconfig`: take the cluster of
//! one context and make it reachable through the relay, by one of two
//! routes, with TLS still verifying the API server's real name:
//!
//! - **forward**: `server: https://127.0.0.1:PORT` plus
//!   `tls-server-name: <the original host>`, for a local forward to the
//!   API's target (`with`, or a running `forward PORT AGENT/kube-api`);
//! - **socks**: the original `server` unchanged plus
//!   `proxy-url: socks5://127.0.0.1:PORT`, for a running `socks` proxy; the
//!   agent resolves the API's private DNS name.
//!
//! The current kubeconfig is read with the user's own `kubectl config view
//! --minify --flatten -o json`: that is exactly kubectl's merging of
//! `KUBECONFIG` lists, relative paths and the current context, with
//! certificates inlined, and it spares us a YAML parser. The result is
//! written as JSON, which kubectl reads as YAML.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{json, Value};

/// Why a kubeconfig could not be read or rewritten.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// `kubectl` is not on `PATH`.
    #[error("kubectl not found on PATH (it is used to read the kubeconfig)")]
    NoKubectl,
    /// `kubectl config view` failed.
    #[error("kubectl config view failed: {0}")]
    View(String),
    /// The kubeconfig lacks what we need.
    #[error("kubeconfig: {0}")]
    Invalid(String),
    /// A file could not be written.
    #[error("cannot write {path}: {err}")]
    Write {
        /// The file.
        path: String,
        /// What went wrong.
        err: std::io::Error,
    },
}

/// The kubeconfig `kubectl` would use: `--kubeconfig`, else `KUBECONFIG`,
/// else `~/.kube/config` if it exists; `None` when there is none.
pub fn source(explicit: Option<&Path>) -> Option<std::ffi::OsString> {
    if let Some(path) = explicit {
        return Some(path.as_os_str().to_owned());
    }
    if let Some(env) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        return Some(env);
    }
    let home = std::env::var_os("HOME")?;
    let default = PathBuf::from(home).join(".kube").join("config");
    default.exists().then(|| default.into_os_string())
}

/// `kubectl config view --minify --flatten -o json` of `kubeconfig`, for
/// `context` (or the current one).
///
/// # Errors
/// If kubectl is missing or fails (no current context, unreadable file).
pub async fn view(kubeconfig: &std::ffi::OsStr, context: Option<&str>) -> Result<Value, KubeError> {
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.args(["config", "view", "--minify", "--flatten", "-o", "json"])
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(context) = context {
        cmd.args(["--context", context]);
    }
    let out = match cmd.output().await {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(KubeError::NoKubectl),
        Err(e) => return Err(KubeError::View(e.to_string())),
    };
    if !out.status.success() {
        return Err(KubeError::View(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| KubeError::View(e.to_string()))
}

/// `kubectl config view --flatten -o json` of a whole `KUBECONFIG` list
/// (every context), for merging.
///
/// # Errors
/// If kubectl is missing or fails.
pub async fn view_all(kubeconfig: &std::ffi::OsStr) -> Result<Value, KubeError> {
    let out = tokio::process::Command::new("kubectl")
        .args(["config", "view", "--flatten", "-o", "json"])
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => KubeError::NoKubectl,
            _ => KubeError::View(e.to_string()),
        })?;
    if !out.status.success() {
        return Err(KubeError::View(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| KubeError::View(e.to_string()))
}

/// How the rewritten cluster reaches the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Through a local forward on this address (`127.0.0.1:PORT`).
    Forward(std::net::SocketAddr),
    /// Through a local SOCKS5 proxy on this address.
    Socks(std::net::SocketAddr),
}

/// `https://host:port/path` → (`host`, the rest after host and port).
fn split_server(server: &str) -> Result<(String, String), KubeError> {
    let rest = server
        .strip_prefix("https://")
        .ok_or_else(|| KubeError::Invalid(format!("server {server:?} is not an https:// URL")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']').map(|(h, _)| h).unwrap_or(v6)
    } else {
        authority.split(':').next().unwrap_or(authority)
    };
    if host.is_empty() {
        return Err(KubeError::Invalid(format!("server {server:?} has no host")));
    }
    Ok((host.to_owned(), path.to_owned()))
}

/// Rewrites the one cluster of a minified `view` for `route`, renames its
/// context, cluster and user to `name`, and makes it the current context.
///
/// # Errors
/// If the view has no cluster, context or server.
pub fn rewrite(mut view: Value, route: &Route, name: &str) -> Result<Value, KubeError> {
    let first = |v: &mut Value, key: &str| -> Result<Value, KubeError> {
        v.get_mut(key)
            .and_then(Value::as_array_mut)
            .and_then(|a| a.first_mut())
            .map(Value::take)
            .ok_or_else(|| KubeError::Invalid(format!("no {key} in the current context")))
    };
    let mut cluster = first(&mut view, "clusters")?;
    let mut context = first(&mut view, "contexts")?;
    let user = first(&mut view, "users").unwrap_or_else(|_| json!({"name": name, "user": {}}));
    let c = cluster
        .get_mut("cluster")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| KubeError::Invalid("cluster has no fields".into()))?;
    let server = c
        .get("server")
        .and_then(Value::as_str)
        .ok_or_else(|| KubeError::Invalid("cluster has no server".into()))?
        .to_owned();
    let (host, path) = split_server(&server)?;
    c.remove("proxy-url");
    match route {
        Route::Forward(addr) => {
            c.insert("server".into(), json!(format!("https://{addr}{path}")));
            // The certificate names the real host, not 127.0.0.1: verify that.
            c.entry("tls-server-name").or_insert(json!(host));
        }
        Route::Socks(addr) => {
            c.insert("proxy-url".into(), json!(format!("socks5://{addr}")));
        }
    }
    cluster["name"] = json!(name);
    let mut user = user;
    user["name"] = json!(name);
    context["name"] = json!(name);
    if let Some(ctx) = context.get_mut("context").and_then(Value::as_object_mut) {
        ctx.insert("cluster".into(), json!(name));
        ctx.insert("user".into(), json!(name));
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [cluster],
        "users": [user],
        "contexts": [context],
        "current-context": name,
    }))
}

/// Writes `config` to `path`, mode 0600 (it may hold credentials).
///
/// # Errors
/// If the file cannot be written.
pub fn write(path: &Path, config: &Value) -> Result<(), KubeError> {
    let mut text = serde_json::to_vec_pretty(config).map_err(|e| KubeError::Write {
        path: path.display().to_string(),
        err: std::io::Error::other(e),
    })?;
    text.push(b'\n');
    relay_net::fsutil::write_private(path, &text).map_err(|err| KubeError::Write {
        path: path.display().to_string(),
        err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> Value {
        json!({
            "clusters": [{"name": "aks", "cluster": {"server": "https://kube.internal:443", "certificate-authority-data": "Q0E="}}],
            "users": [{"name": "admin", "user": {"token": "t"}}],
            "contexts": [{"name": "aks", "context": {"cluster": "aks", "user": "admin", "namespace": "apps"}}],
            "current-context": "aks",
        })
    }

    #[test]
    fn forward_route_keeps_the_tls_name() {
        let addr = "127.0.0.1:41000".parse().unwrap();
        let out = rewrite(view(), &Route::Forward(addr), "relay-aks").unwrap();
        let c = &out["clusters"][0]["cluster"];
        assert_eq!(c["server"], "https://127.0.0.1:41000");
        assert_eq!(c["tls-server-name"], "kube.internal");
        assert_eq!(c["certificate-authority-data"], "Q0E=");
        assert_eq!(out["contexts"][0]["context"]["namespace"], "apps");
        assert_eq!(out["contexts"][0]["context"]["user"], "relay-aks");
        assert_eq!(out["users"][0]["user"]["token"], "t");
        assert_eq!(out["current-context"], "relay-aks");
    }

    #[test]
    fn socks_route_keeps_the_server() {
        let addr = "127.0.0.1:1080".parse().unwrap();
        let out = rewrite(view(), &Route::Socks(addr), "relay-aks").unwrap();
        let c = &out["clusters"][0]["cluster"];
        assert_eq!(c["server"], "https://kube.internal:443");
        assert_eq!(c["proxy-url"], "socks5://127.0.0.1:1080");
        assert!(c.get("tls-server-name").is_none());
    }

    #[test]
    fn servers_split() {
        assert_eq!(
            split_server("https://[fd00::1]:6443/k8s").unwrap(),
            ("fd00::1".into(), "/k8s".into())
        );
        assert_eq!(
            split_server("https://api.x").unwrap(),
            ("api.x".into(), String::new())
        );
        assert!(split_server("http://api.x").is_err());
        assert!(rewrite(
            json!({}),
            &Route::Socks("127.0.0.1:1".parse().unwrap()),
            "x"
        )
        .is_err());
    }
}
