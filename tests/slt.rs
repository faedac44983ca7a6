//! Runs every sqllogictest file in `slt/` against a fresh real server per file, over TCP, three
//! times: with Tributary's own engine (tokio-postgres's simple query protocol, every value as the
//! server sent its text), and with sqllogictest-bin's `postgres` and `postgres-extended` engines
//! (the extended one prepares each statement and reads typed binary values).

mod common;

use std::path::PathBuf;

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};
use sqllogictest_engines::postgres::{PostgresExtended, PostgresSimple};
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

/// One of sqllogictest-bin's engines, with errors shown as `SQLSTATE: message` as the files
/// expect them (the engines show tokio-postgres's own wording).
struct BinaryEngine<D>(D);

#[async_trait]
impl<D> AsyncDB for BinaryEngine<D>
where
    D: AsyncDB<Error = tokio_postgres::Error, ColumnType = DefaultColumnType> + Send,
{
    type Error = DatabaseError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        self.0.run(sql).await.map_err(DatabaseError)
    }

    async fn shutdown(&mut self) {
        self.0.shutdown().await;
    }

    fn engine_name(&self) -> &str {
        self.0.engine_name()
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

#[derive(Clone, Copy, Debug)]
enum Engine {
    Tributary,
    PostgresSimple,
    PostgresExtended,
}

async fn connect<D, F>(
    connection_string: String,
    connect: impl FnOnce(tokio_postgres::Config) -> F,
) -> Result<BinaryEngine<D>, DatabaseError>
where
    F: std::future::Future<Output = Result<D, tokio_postgres::Error>>,
{
    let config: tokio_postgres::Config = connection_string.parse().map_err(DatabaseError)?;
    connect(config)
        .await
        .map(BinaryEngine)
        .map_err(DatabaseError)
}

/// Runs one file on a fresh server; the error display, if it failed.
async fn run_file<D, M>(file: &std::path::Path, make: M) -> Result<(), String>
where
    D: AsyncDB<ColumnType = DefaultColumnType> + 'static,
    M: sqllogictest::MakeConnection<Conn = D>,
{
    let mut runner = Runner::new(make);
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
    runner
        .run_file_async(file)
        .await
        .map_err(|error| error.display(true).to_string())
}

async fn run_suite(engine: Engine) {
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
        let outcome = match engine {
            Engine::Tributary => {
                run_file(file, move || {
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
                })
                .await
            }
            Engine::PostgresSimple => {
                run_file(file, move || {
                    connect(connection_string.clone(), PostgresSimple::connect)
                })
                .await
            }
            Engine::PostgresExtended => {
                run_file(file, move || {
                    connect(connection_string.clone(), PostgresExtended::connect)
                })
                .await
            }
        };
        match outcome {
            Ok(()) => println!("ok   {engine:?} {}", file.display()),
            Err(error) => {
                println!("FAIL {engine:?} {}\n{error}", file.display());
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "failing slt files ({engine:?}): {failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files() {
    run_suite(Engine::Tributary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files_with_the_postgres_engine() {
    run_suite(Engine::PostgresSimple).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files_with_the_postgres_extended_engine() {
    run_suite(Engine::PostgresExtended).await;
}
