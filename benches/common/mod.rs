//! What the benchmarks share: the real server in this process, a real broker, and percentiles.

#![allow(dead_code)]

pub mod kafka;
pub mod nexmark;

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_postgres::{Client, NoTls};

/// Starts the server (in memory) on a loopback port and connects to it; dropping the sender
/// stops it.
pub async fn start_server() -> (Client, tokio::sync::watch::Sender<bool>) {
    start_in_process(tributary::Config::in_memory()).await
}

/// Starts the server with `config` on a loopback port and connects to it once it accepts
/// clients (after recovery, with a data directory); dropping the sender stops it.
pub async fn start_in_process(
    config: tributary::Config,
) -> (Client, tokio::sync::watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (shutdown, receiver) = tokio::sync::watch::channel(false);
    tokio::spawn(tributary::serve(listener, receiver, config));
    loop {
        if let Some(client) = connect(port).await {
            return (client, shutdown);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A client of the server on `port`, or None while it does not accept one yet.
pub async fn connect(port: u16) -> Option<Client> {
    let (client, connection) =
        tokio_postgres::connect(&format!("host=127.0.0.1 port={port} user=bench"), NoTls)
            .await
            .ok()?;
    tokio::spawn(connection);
    Some(client)
}

/// The sample below which `fraction` of the samples lie (sorts them).
pub fn percentile(samples: &mut [Duration], fraction: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * fraction).round() as usize]
}

/// A name suffix no earlier run used (topics, directories).
pub fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("{}_{nanos}", std::process::id())
}

/// A whole-number setting from the environment (`_` allowed as a digit separator).
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.replace('_', "").parse().ok())
        .unwrap_or(default)
}
