//! Shared test support: a real Tributary server on a loopback port, in this process.

#![allow(dead_code)]

pub mod kafka;
pub mod postgres;
pub mod workload;

use anyhow::{Context, Result, bail};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tributary::session::{QueryResult, Session};

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
        // Recovery runs before the server answers; a failed start ends the task. A server that
        // neither answers nor stops within the deadline fails the test rather than hang it.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            if tokio::time::Instant::now() > deadline {
                return Err(std::io::Error::other(
                    "the server did not answer within 300 s",
                ));
            }
            if server.task.as_ref().is_some_and(|task| task.is_finished()) {
                let mut server = server;
                let task = server.task.take().expect("task");
                return Err(task.await.expect("server task").err().unwrap_or_else(|| {
                    std::io::Error::other("the server stopped before it accepted clients")
                }));
            }
            // A server that asks for a password is answering too.
            match tokio_postgres::connect(&server.connection_string(), tokio_postgres::NoTls).await
            {
                Ok(_) => return Ok(server),
                Err(error) if format!("{error:?}").contains("password missing") => {
                    return Ok(server);
                }
                Err(_) => {}
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

/// Whether two renderings by [`sorted_rows`] hold the same rows. Floating-point cells (marked `~`) may
/// differ in their last digits: variances are summed in another order than DataFusion sums
/// them.
pub fn same_rows(maintained: &[String], recomputed: &[String]) -> bool {
    let same_cell = |a: &str, b: &str| match (a.strip_prefix('~'), b.strip_prefix('~')) {
        (Some(a), Some(b)) => match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(a), Ok(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
            _ => a == b,
        },
        _ => a == b,
    };
    maintained.len() == recomputed.len()
        && maintained.iter().zip(recomputed).all(|(a, b)| {
            let (a, b): (Vec<&str>, Vec<&str>) = (a.split('|').collect(), b.split('|').collect());
            a.len() == b.len() && a.iter().zip(&b).all(|(a, b)| same_cell(a, b))
        })
}

/// The rows `sql` returns through `session`, rendered `a|b|c` and sorted; floating-point
/// cells are marked `~` for [`same_rows`].
pub async fn sorted_rows(session: &Session, sql: &str) -> Result<Vec<String>> {
    let mut results = session
        .execute(sql)
        .await
        .with_context(|| sql.to_string())?;
    let Some(QueryResult::Rows { batches, .. }) = results.pop() else {
        bail!("{sql} returned no rows");
    };
    let mut rendered = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cells = batch
                .columns()
                .iter()
                .map(|column| {
                    if column.is_null(row) {
                        Ok("NULL".to_string())
                    } else if column.data_type() == &DataType::Float64 {
                        // Marked, to be compared approximately (see `same_rows`).
                        Ok(format!("~{}", array_value_to_string(column, row)?))
                    } else {
                        array_value_to_string(column, row)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            rendered.push(cells.join("|"));
        }
    }
    rendered.sort();
    Ok(rendered)
}
