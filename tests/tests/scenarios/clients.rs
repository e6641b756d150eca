//! Real clients no one here wrote, through a real relay and agent on
//! loopback: `kubectl` (through `with` and through `socks` with
//! `proxy-url`), `curl --socks5-hostname`, and OpenSSH with `connect` as
//! its ProxyCommand. Certificate verification stays on everywhere: the
//! test API's certificate names only the private host `kube.internal`.
//!
//! `.ci/run` installs the programs from Debian packages; a test whose
//! program is missing prints why and passes without running.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;

use proto::Role;
use relay_tests::{guard, launch, TestRelay};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Whether `program` is on `PATH` (or is an existing absolute path).
fn have(program: &str) -> bool {
    if program.starts_with('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// `false` with a printed reason if a program is missing.
fn need(programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !have(p)).collect();
    if missing.is_empty() {
        return true;
    }
    println!(
        "SKIPPED: {} not installed (.ci/run installs them from Debian packages)",
        missing.join(", ")
    );
    false
}

/// The private host name the test API's certificate is issued for.
const API_NAME: &str = "kube.internal";

/// What a real API server answers on `/version`.
const VERSION: &str = r#"{"major":"1","minor":"30","gitVersion":"v1.30.0","gitCommit":"7c48c2bd72b9bf5c44d21d7338cc7bea77d0ad2a","gitTreeState":"clean","buildDate":"2024-04-17T17:27:03Z","goVersion":"go1.22.2","compiler":"gc","platform":"linux/amd64"}"#;

/// A small HTTPS API on 127.0.0.1 whose certificate (from its own test
/// CA) names only [`API_NAME`]; it answers `/version` like an apiserver.
struct Api {
    addr: SocketAddr,
    ca_file: PathBuf,
}

fn https_api(dir: &Path) -> anyhow::Result<Api> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test kube CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec![API_NAME.to_owned()])?.signed_by(&key, &issuer)?;
    let ca_file = dir.join("kube-ca.pem");
    std::fs::write(&ca_file, ca_cert.pem())?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let path = line.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = if path == "/version" || path.starts_with("/version?") {
                    ("200 OK", VERSION)
                } else {
                    ("404 Not Found", r#"{"kind":"Status","code":404}"#)
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    Ok(Api { addr, ca_file })
}

/// A kubeconfig for the private cluster as its operators have it: the
/// real server name and the cluster's CA.
fn kubeconfig(dir: &Path, api: &Api) -> anyhow::Result<PathBuf> {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "private", "cluster": {
            "server": format!("https://{API_NAME}:{}", api.addr.port()),
            "certificate-authority": api.ca_file,
        }}],
        "users": [{"name": "ops", "user": {"token": "not-checked-by-the-test-api"}}],
        "contexts": [{"name": "private", "context": {"cluster": "private", "user": "ops"}}],
        "current-context": "private",
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(path)
}

/// Runs a program to completion under the hang guard, with `HOME` in the
/// test's directory (kubectl's cache) and proxy variables cleared.
async fn run(
    dir: &Path,
    program: &Path,
    args: &[&str],
    env: &[(&str, &Path)],
) -> anyhow::Result<Output> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("HOME", dir)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Ok(guard("program", cmd.output()).await?)
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Checks `kubectl get --raw /version` and `kubectl version -o json`
/// answers with the test API's version.
fn assert_kube_version(raw: &Output, version: &Output) -> anyhow::Result<()> {
    assert!(
        raw.status.success(),
        "kubectl get --raw /version: {}",
        text(raw)
    );
    let v: serde_json::Value = serde_json::from_slice(&raw.stdout)?;
    assert_eq!(v["gitVersion"], "v1.30.0", "{}", text(raw));
    assert!(
        version.status.success(),
        "kubectl version: {}",
        text(version)
    );
    let v: serde_json::Value = serde_json::from_slice(&version.stdout)?;
    assert_eq!(
        v["serverVersion"]["gitVersion"],
        "v1.30.0",
        "{}",
        text(version)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_through_with_verifies_the_api_name() -> anyhow::Result<()> {
    relay_tests::trace_init();
    if !need(&["kubectl"]) {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let api = https_api(tmp.path())?;
    let kubeconfig = kubeconfig(tmp.path(), &api)?;
    let relay = TestRelay::start(
        "[[allow]]\nclient = \"ci\"\nagent = \"aks-prod\"\ntargets = [\"kube-api\"]\n",
    )
    .await;
    let agent = relay.agent("aks-prod", &[("kube-api", api.addr)]).await;
    let cred = relay.issue(Role::Client, "ci");
    let client = relay_tests::programs!().client;
    let cred_s = cred.to_string_lossy().into_owned();
    let with = |cmd: &'static [&'static str]| {
        let mut args = vec![
            "--credential",
            cred_s.as_str(),
            "with",
            "aks-prod/kube-api",
            "--",
        ];
        args.extend_from_slice(cmd);
        args
    };
    let env = [("KUBECONFIG", kubeconfig.as_path())];
    let raw = run(
        tmp.path(),
        &client,
        &with(&["kubectl", "get", "--raw", "/version"]),
        &env,
    )
    .await?;
    let version = run(
        tmp.path(),
        &client,
        &with(&["kubectl", "version", "-o", "json"]),
        &env,
    )
    .await?;
    assert_kube_version(&raw, &version)?;

    // The command's status is ours; its environment names the forward;
    // the temporary kubeconfig is gone afterwards.
    let out = run(
        tmp.path(),
        &client,
        &with(&[
            "sh",
            "-c",
            "echo \"$RELAY_FORWARD_ADDR $RELAY_FORWARD_PORT $KUBECONFIG\"; exit 3",
        ]),
        &env,
    )
    .await?;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let parts: Vec<&str> = line.split(' ').collect();
    assert_eq!(parts.len(), 3, "{line}");
    assert!(
        parts[0].starts_with("127.0.0.1:") && parts[0].ends_with(parts[1]),
        "{line}"
    );
    assert!(
        !Path::new(parts[2]).exists(),
        "temporary kubeconfig left behind: {line}"
    );
    let out = run(tmp.path(), &client, &with(&["no-such-program-xyz"]), &env).await?;
    assert_eq!(out.status.code(), Some(127), "{}", text(&out));

    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fails_before_the_command_when_the_target_is_out_of_reach() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let tmp = tempfile::tempdir()?;
    let echo = relay_tests::tcp_echo().await;
    let relay =
        TestRelay::start("[[allow]]\nclient = \"ci\"\nagent = \"edge\"\ntargets = [\"echo\"]\n")
            .await;
    let agent = relay
        .agent("edge", &[("echo", echo), ("secret", echo)])
        .await;
    let cred = relay.issue(Role::Client, "ci");
    let cred = cred.to_string_lossy();
    let client = relay_tests::programs!().client;
    let with = |dest| {
        [
            "--credential",
            &*cred,
            "with",
            "--no-kubeconfig",
            dest,
            "--",
            "sh",
            "-c",
            "echo ran; exit 3",
        ]
    };
    // Granted: CMD runs and its status is ours.
    let out = run(tmp.path(), &client, &with("edge/echo"), &[]).await?;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    // Exposed but not granted, not exposed, agent unknown: 255 with the
    // reason, and CMD never runs.
    for (dest, why) in [
        ("edge/secret", "does not offer target secret"),
        ("edge/nothere", "does not offer target nothere"),
        ("ghost/echo", "agent ghost is not online"),
    ] {
        let out = run(tmp.path(), &client, &with(dest), &[]).await?;
        assert_eq!(out.status.code(), Some(255), "{dest}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{dest}: {}", text(&out));
        assert!(out.stdout.is_empty(), "{dest}: CMD ran: {}", text(&out));
    }

    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_and_curl_through_socks_with_names_resolved_by_the_agent() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let have_kubectl = need(&["kubectl"]);
    let have_curl = need(&["curl"]);
    if !have_kubectl && !have_curl {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let api = https_api(tmp.path())?;
    let port = api.addr.port();
    let relay =
        TestRelay::start("[[allow]]\nclient = \"alice\"\nagent = \"aks-prod\"\nsocks = true\n")
            .await;
    let agent = relay
        .agent_with("aks-prod", &[], |c| {
            // kube.internal exists only inside the "private network": the
            // agent's host map stands in for its DNS; the API listens on
            // loopback here, which must be listed explicitly.
            c.socks
                .add_rules(&format!("{API_NAME}:{port},127.0.0.1/32:{port}"))
                .expect("rules");
            c.socks
                .add_host(&format!("{API_NAME}=127.0.0.1"))
                .expect("host map");
        })
        .await;
    let cred = relay.issue(Role::Client, "alice");
    let (mut proxy, addr) = launch::socks(&relay_tests::programs!(), &cred, "aks-prod").await?;
    let addr_s = addr.to_string();

    if have_curl {
        let url = format!("https://{API_NAME}:{port}/version");
        let ca = api.ca_file.to_string_lossy().into_owned();
        let out = run(
            tmp.path(),
            Path::new("curl"),
            &[
                "-sS",
                "--fail",
                "--max-time",
                "20",
                "--socks5-hostname",
                &addr_s,
                "--cacert",
                &ca,
                &url,
            ],
            &[],
        )
        .await?;
        assert!(out.status.success(), "curl: {}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        assert_eq!(v["gitVersion"], "v1.30.0");
    }
    if have_kubectl {
        let source = kubeconfig(tmp.path(), &api)?;
        let out_file = tmp.path().join("relay-kubeconfig");
        let cred_s = cred.to_string_lossy().into_owned();
        let out_s = out_file.to_string_lossy().into_owned();
        let made = run(
            tmp.path(),
            &relay_tests::programs!().client,
            &[
                "--credential",
                &cred_s,
                "kubeconfig",
                "aks-prod/kube-api",
                "--socks",
                &addr_s,
                "--out",
                &out_s,
            ],
            &[("KUBECONFIG", source.as_path())],
        )
        .await?;
        assert!(
            made.status.success(),
            "relay-client kubeconfig: {}",
            text(&made)
        );
        let config: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_file)?)?;
        let cluster = &config["clusters"][0]["cluster"];
        assert_eq!(cluster["server"], format!("https://{API_NAME}:{port}"));
        assert_eq!(cluster["proxy-url"], format!("socks5://{addr}"));
        let raw = run(
            tmp.path(),
            Path::new("kubectl"),
            &["--kubeconfig", &out_s, "get", "--raw", "/version"],
            &[],
        )
        .await?;
        let version = run(
            tmp.path(),
            Path::new("kubectl"),
            &["--kubeconfig", &out_s, "version", "-o", "json"],
            &[],
        )
        .await?;
        assert_kube_version(&raw, &version)?;
    }

    let _ = proxy.kill();
    let _ = proxy.wait().await;
    agent.shutdown().await;
    let dir = relay.stop().await;
    // End to end (the default), the agent audits what the relay cannot see.
    let audit = relay_tests::agent_audit_in(dir.path());
    assert!(
        audit
            .iter()
            .any(|e| e["destination"] == format!("{API_NAME}:{port}")),
        "{audit:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_through_connect_as_proxy_command() -> anyhow::Result<()> {
    relay_tests::trace_init();
    if !need(&["ssh", "ssh-keygen", "/usr/sbin/sshd"]) {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    for key in ["host_key", "user_key"] {
        let out = run(
            dir,
            Path::new("ssh-keygen"),
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                &dir.join(key).to_string_lossy(),
            ],
            &[],
        )
        .await?;
        assert!(out.status.success(), "ssh-keygen: {}", text(&out));
    }
    std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys"))?;
    // sshd cannot report a port it chose, so take a free one (loopback).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
         PidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n",
        d = dir.display()
    );
    std::fs::write(dir.join("sshd_config"), config)?;
    if rustix::process::geteuid().is_root() {
        // sshd's privilege separation directory, absent where sshd never ran.
        std::fs::create_dir_all("/run/sshd")?;
    }
    let mut sshd = tokio::process::Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stderr = sshd
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("sshd stderr"))?;
    let mut lines = BufReader::new(stderr).lines();
    guard("sshd start", async {
        while let Some(line) = lines.next_line().await? {
            if line.contains("Server listening on 127.0.0.1") {
                return Ok(());
            }
            println!("sshd: {line}");
        }
        anyhow::bail!("sshd exited before listening")
    })
    .await?;
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            println!("sshd: {line}");
        }
    });

    let relay =
        TestRelay::start("[[allow]]\nclient = \"alice\"\nagent = \"edge\"\ntargets = [\"ssh\"]\n")
            .await;
    let agent = relay
        .agent("edge", &[("ssh", SocketAddr::from(([127, 0, 0, 1], port)))])
        .await;
    let cred = relay.issue(Role::Client, "alice");
    let host_pub = std::fs::read_to_string(dir.join("host_key.pub"))?;
    std::fs::write(dir.join("known_hosts"), format!("edge-ssh {host_pub}"))?;
    let user = String::from_utf8(std::process::Command::new("id").arg("-un").output()?.stdout)?
        .trim()
        .to_owned();
    let proxy = format!(
        "ProxyCommand={} --credential {} connect edge/ssh",
        relay_tests::programs!().client.display(),
        cred.display()
    );
    let key = dir.join("user_key").to_string_lossy().into_owned();
    let known = format!("UserKnownHostsFile={}", dir.join("known_hosts").display());
    let target = format!("{user}@edge-ssh");
    let out = run(
        dir,
        Path::new("ssh"),
        &[
            "-F",
            "/dev/null",
            "-i",
            &key,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &known,
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            &proxy,
            &target,
            "echo",
            "ok",
        ],
        &[],
    )
    .await?;
    assert!(out.status.success(), "ssh: {}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");

    let _ = sshd.start_kill();
    let _ = sshd.wait().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}
