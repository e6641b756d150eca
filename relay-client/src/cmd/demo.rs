//! `relay-client demo`: the whole product on loopback in one command: a
//! throwaway CA, `relay-server run`, a `relay-agent` exposing a built-in
//! "hello" web page, and a local forward to it; it checks that bytes go
//! through and prints what to run.

use std::process::ExitCode;
use std::sync::Arc;

use relay_net::credential::Credential;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::local::{Binaries, LocalRelay};
use crate::{AgentTarget, Client};

const PAGE: &str = "hello from behind the relay-agent\n";

/// A tiny HTTP/1.0 responder standing in for a private service.
async fn hello_target() -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = tcp.write_all(reply.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    Ok(addr)
}

/// Runs the demo; with `check`, exits once bytes went through; the
/// forward's path follows `end_to_end` (auto by default).
///
/// # Errors
/// If any part fails to start.
pub async fn run(check: bool, end_to_end: crate::direct::EndToEnd) -> anyhow::Result<ExitCode> {
    let bins = Binaries::find()?;
    eprintln!("demo: starting a relay, an agent and a forward on 127.0.0.1 ...");
    let policy = "[[allow]]\nclient = \"demo\"\nagent = \"demo-agent\"\ntargets = [\"hello\"]\n";
    let relay = LocalRelay::start(&bins, policy, &[]).await?;
    let agent_cred = relay.issue("agent", "demo-agent").await?;
    let client_cred = relay.issue("client", "demo").await?;
    let target = hello_target().await?;
    let _agent = relay
        .start_agent(&agent_cred, &[format!("--expose=hello={target}")])
        .await?;
    let client =
        Arc::new(Client::new(Credential::load(&client_cred, None)?).end_to_end(end_to_end));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?;
    let dest: AgentTarget = "demo-agent/hello"
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let path = super::reach::ensure_target(&client, &dest).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(super::forward::run(
        client.clone(),
        listener,
        dest,
        shutdown.clone(),
    ));

    // Bytes through the whole path: local port -> client -> relay -> agent -> target.
    let mut tcp = tokio::net::TcpStream::connect(local).await?;
    tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).await?;
    anyhow::ensure!(
        reply.ends_with(PAGE),
        "unexpected reply through the tunnel: {reply:?}"
    );
    // Our half stays open until dropped: end it, so the check's stream
    // closes (and gets its audit line) now, not when the demo stops.
    drop(tcp);

    let d = relay.path().display();
    let mode = match path.peer {
        crate::Side::Agent => " (end-to-end: the relay forwards packets it cannot decrypt)",
        _ => " (relay path)",
    };
    println!(
        "\nThe tunnel works: {} -> relay {} -> agent demo-agent -> {target}{mode}",
        local, relay.addr
    );
    println!("reply: {}", PAGE.trim_end());
    if check {
        shutdown.cancel();
        return Ok(ExitCode::SUCCESS);
    }
    // Before the hints: whoever acts on them may stop the demo at once.
    relay_net::signals::cancel_on_signal(shutdown.clone())?;
    println!("\nTry it:");
    println!("  curl http://{local}/");
    let me = crate::local::current_program();
    println!("  {me} --credential {d}/client-demo.cred list");
    println!("  {me} --credential {d}/client-demo.cred connect demo-agent/hello");
    println!(
        "  {me} --credential {d}/client-demo.cred --end-to-end forward 18080 demo-agent/hello"
    );
    println!("Relay directory (CA, policy.toml, audit.jsonl): {d}");
    println!("Press Ctrl-C to stop; everything is removed on exit.");
    shutdown.cancelled().await;
    Ok(ExitCode::SUCCESS)
}
