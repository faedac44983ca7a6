//! Shared test support: a real Tributary server on a loopback port, in this process.

#![allow(dead_code)]

pub mod kafka;
pub mod workload;

use tokio::net::TcpListener;
use tokio::sync::watch;

/// A running server; dropping it shuts the server down.
pub struct TestServer {
    pub port: u16,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// An in-memory server.
    pub async fn start() -> TestServer {
        Self::start_with(tributary::Config::in_memory())
            .await
            .expect("start the server")
    }

    /// A server with `config`; returns once it accepts clients (after recovery), or the error
    /// that stopped it from starting.
    pub async fn start_with(config: tributary::Config) -> std::io::Result<TestServer> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let (shutdown, receiver) = watch::channel(false);
        let task = tokio::spawn(tributary::serve(listener, receiver, config));
        let server = TestServer {
            port,
            shutdown,
            task: Some(task),
        };
        // Recovery runs before the server answers; a failed start ends the task.
        loop {
            if server.task.as_ref().is_some_and(|task| task.is_finished()) {
                let mut server = server;
                let task = server.task.take().expect("task");
                return Err(task.await.expect("server task").err().unwrap_or_else(|| {
                    std::io::Error::other("the server stopped before it accepted clients")
                }));
            }
            if tokio_postgres::connect(&server.connection_string(), tokio_postgres::NoTls)
                .await
                .is_ok()
            {
                return Ok(server);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Shuts the server down cleanly and waits until it has stopped (its last checkpoint
    /// written).
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stopped cleanly");
        }
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
