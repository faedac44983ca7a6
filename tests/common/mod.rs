//! Shared test support: a real Tributary server on a loopback port, in this process.

#![allow(dead_code)]

pub mod kafka;

use tokio::net::TcpListener;
use tokio::sync::watch;

/// A running server; dropping it shuts the server down.
pub struct TestServer {
    pub port: u16,
    shutdown: watch::Sender<bool>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let (shutdown, receiver) = watch::channel(false);
        tokio::spawn(async move {
            if let Err(error) = tributary::run(listener, receiver).await {
                eprintln!("server failed: {error}");
            }
        });
        TestServer { port, shutdown }
    }

    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=tester dbname=tributary",
            self.port
        )
    }

    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.connection_string(), tokio_postgres::NoTls)
                .await
                .expect("connect to the test server");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
