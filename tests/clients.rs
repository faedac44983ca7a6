//! The real Postgres drivers, each in its own language, against the real server over TCP: each
//! program under `tests/clients/` creates a table and views, writes and reads typed values
//! through prepared statements in text and binary formats, and runs the introspection the tools
//! built on it run. A program prints `ok` and exits 0, or names the failing check.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What a setup script (scripts/python-env, scripts/java-classpath) prints: the tool to use.
fn setup(script: &str) -> String {
    setup_with(script, &[])
}

/// [`setup`] with arguments for the script.
fn setup_with(script: &str, arguments: &[&str]) -> String {
    let output = Command::new(root().join(script))
        .args(arguments)
        .output()
        .unwrap_or_else(|error| panic!("run {script}: {error}"));
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Runs a client program against a fresh server and checks that it printed `ok`.
async fn run_client(program: &str, command: impl FnOnce(u16) -> Command + Send + 'static) {
    let server = TestServer::start().await;
    let port = server.port;
    let output = tokio::task::spawn_blocking(move || command(port).output())
        .await
        .expect("client thread")
        .unwrap_or_else(|error| panic!("run {program}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("ok"),
        "{program} failed:\n{stdout}\n{stderr}"
    );
}

fn in_directory(command: &mut Command, directory: &Path) {
    command.current_dir(directory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_psycopg_and_sqlalchemy() {
    let python = tokio::task::spawn_blocking(|| setup("scripts/python-env"))
        .await
        .expect("python");
    run_client("tests/clients/python/test_clients.py", move |port| {
        let mut command = Command::new(python);
        command
            .arg(root().join("tests/clients/python/test_clients.py"))
            .args(["--port", &port.to_string()]);
        command
    })
    .await;
}

/// dbt-postgres builds a project three times (tests/clients/dbt/test_dbt.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_dbt() {
    let python = tokio::task::spawn_blocking(|| setup_with("scripts/python-env", &["dbt"]))
        .await
        .expect("python");
    run_client("tests/clients/dbt/test_dbt.py", move |port| {
        let mut command = Command::new(python);
        command
            .arg(root().join("tests/clients/dbt/test_dbt.py"))
            .args(["--port", &port.to_string()]);
        command
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_pgjdbc() {
    java_client(None).await;
}

/// PgJDBC 42.7.5, which many tools still bundle, reads some results by other column names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_pgjdbc_42_7_5() {
    java_client(Some("42.7.5")).await;
}

/// ClientTest.java with the PgJDBC of pom.xml, or of `version`.
async fn java_client(version: Option<&'static str>) {
    let classpath = tokio::task::spawn_blocking(move || {
        setup_with("scripts/java-classpath", version.as_slice())
    })
    .await
    .expect("classpath");
    run_client("tests/clients/java/ClientTest.java", move |port| {
        let mut command = Command::new("java");
        in_directory(&mut command, &root());
        command
            .args(["-cp", &classpath, "tests/clients/java/ClientTest.java"])
            .arg(port.to_string());
        command
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres() {
    let modules = tokio::task::spawn_blocking(|| setup("scripts/node-modules"))
        .await
        .expect("node_modules");
    run_client("tests/clients/node/client_test.js", move |port| {
        let mut command = Command::new("node");
        command
            .env("NODE_PATH", modules)
            .arg(root().join("tests/clients/node/client_test.js"))
            .arg(port.to_string());
        command
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_pgx() {
    run_client("tests/clients/go", move |port| {
        let mut command = Command::new("go");
        in_directory(&mut command, &root().join("tests/clients/go"));
        command.args(["run", "."]).arg(port.to_string());
        command
    })
    .await;
}
