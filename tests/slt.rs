//! Runs every sqllogictest file in `slt/` against a fresh real server per file, over TCP with
//! tokio-postgres's simple query protocol.

mod common;

use std::path::PathBuf;

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};
use tokio_postgres::SimpleQueryMessage;

/// A client error whose text includes the server's message (tokio-postgres says only "db error").
#[derive(Debug)]
struct DatabaseError(tokio_postgres::Error);

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(error) => write!(formatter, "{}: {}", error.code().code(), error.message()),
            None => self.0.fmt(formatter),
        }
    }
}

impl std::error::Error for DatabaseError {}

struct Postgres {
    client: tokio_postgres::Client,
}

#[async_trait]
impl AsyncDB for Postgres {
    type Error = DatabaseError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        let messages = self.client.simple_query(sql).await.map_err(DatabaseError)?;
        let mut rows = Vec::new();
        let mut columns = None;
        let mut affected = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(description) => {
                    columns = Some(description.len())
                }
                SimpleQueryMessage::Row(row) => {
                    columns = Some(row.len());
                    rows.push(
                        (0..row.len())
                            .map(|index| match row.get(index) {
                                None => "NULL".to_string(),
                                Some("") => "(empty)".to_string(),
                                Some(value) => value.to_string(),
                            })
                            .collect(),
                    );
                }
                SimpleQueryMessage::CommandComplete(count) => affected = count,
                _ => {}
            }
        }
        match columns {
            Some(width) => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; width],
                rows,
            }),
            None => Ok(DBOutput::StatementComplete(affected)),
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tributary"
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }

    fn error_sql_state(error: &Self::Error) -> Option<String> {
        error.0.code().map(|code| code.code().to_string())
    }

    async fn run_command(command: std::process::Command) -> std::io::Result<std::process::Output> {
        tokio::process::Command::from(command).output().await
    }
}

/// Every `.slt` file under `directory` and its subdirectories, sorted.
fn slt_files(directory: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(directory)
        .expect("slt directory")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            files.extend(slt_files(&path));
        } else if path.extension().is_some_and(|extension| extension == "slt") {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files() {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("slt");
    let files = slt_files(&directory);
    assert!(
        !files.is_empty(),
        "no .slt files in {}",
        directory.display()
    );
    let filter = std::env::var("SLT_FILTER").unwrap_or_default();
    let mut failures = Vec::new();
    for file in files
        .iter()
        .filter(|file| file.to_string_lossy().contains(&filter))
    {
        let server = common::TestServer::start().await;
        let connection_string = server.connection_string();
        let mut runner = Runner::new(move || {
            let connection_string = connection_string.clone();
            async move {
                let (client, connection) =
                    tokio_postgres::connect(&connection_string, tokio_postgres::NoTls)
                        .await
                        .map_err(DatabaseError)?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok(Postgres { client })
            }
        });
        // Files under slt/kafka/ drive a real broker: they get its address, a topic prefix of
        // their own, and the Python that runs tests/kafka/*.py, as substitution variables.
        if file.components().any(|part| part.as_os_str() == "kafka") {
            let broker = tokio::task::spawn_blocking(common::kafka::bootstrap)
                .await
                .expect("start Kafka");
            let python = tokio::task::spawn_blocking(common::kafka::python)
                .await
                .expect("Python for the Kafka scripts");
            runner.set_var("KAFKA_BROKER".into(), broker);
            runner.set_var("TOPIC".into(), common::kafka::unique_topic("slt"));
            runner.set_var("PYTHON".into(), python.display().to_string());
            runner.set_var("ROOT".into(), env!("CARGO_MANIFEST_DIR").to_string());
        }
        match runner.run_file_async(file).await {
            Ok(()) => println!("ok   {}", file.display()),
            Err(error) => {
                println!("FAIL {}\n{}", file.display(), error.display(true));
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "failing slt files: {failures:?}");
}
