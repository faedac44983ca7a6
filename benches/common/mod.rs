//! What the benchmarks share: the real server in this process, and percentiles.

#![allow(dead_code)]

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_postgres::{Client, NoTls};

/// Starts the server on a loopback port and connects to it; dropping the sender stops it.
pub async fn start_server() -> (Client, tokio::sync::watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (shutdown, receiver) = tokio::sync::watch::channel(false);
    tokio::spawn(tributary::run(listener, receiver));
    let (client, connection) =
        tokio_postgres::connect(&format!("host=127.0.0.1 port={port} user=bench"), NoTls)
            .await
            .expect("connect");
    tokio::spawn(connection);
    (client, shutdown)
}

/// The sample below which `fraction` of the samples lie (sorts them).
pub fn percentile(samples: &mut [Duration], fraction: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * fraction).round() as usize]
}
