//! Password authentication (SCRAM-SHA-256) and TLS, each turned on by the server's
//! configuration: tokio-postgres for SCRAM, psql (libpq) for TLS and channel binding.

mod common;

use std::process::Command;

use common::TestServer;

fn credentials() -> tributary::Credentials {
    tributary::Credentials {
        user: "analyst".into(),
        password: "correct horse".into(),
    }
}

/// A self-signed certificate for localhost and its key, written to a fresh directory.
fn certificate_files(name: &str) -> tributary::TlsFiles {
    let directory =
        std::env::temp_dir().join(format!("tributary-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("certificate directory");
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()])
        .expect("generate a certificate");
    let certificate = directory.join("server.crt");
    let key = directory.join("server.key");
    std::fs::write(&certificate, generated.cert.pem()).expect("write the certificate");
    std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write the key");
    tributary::TlsFiles { certificate, key }
}

async fn connect(
    port: u16,
    user: &str,
    password: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    let mut config = format!("host=127.0.0.1 port={port} user={user} dbname=tributary");
    if let Some(password) = password {
        config.push_str(&format!(" password='{password}'"));
    }
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client.simple_query("SELECT 1").await?;
    Ok(())
}

fn sqlstate(error: &tokio_postgres::Error) -> Option<&str> {
    error.as_db_error().map(|error| error.code().code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_lets_in_the_right_password_only() {
    let server = TestServer::start_with(tributary::Config {
        credentials: Some(credentials()),
        ..tributary::Config::in_memory()
    })
    .await
    .expect("start the server");
    connect(server.port, "analyst", Some("correct horse"))
        .await
        .expect("the right password connects");
    let wrong = connect(server.port, "analyst", Some("wrong"))
        .await
        .expect_err("a wrong password is refused");
    assert_eq!(sqlstate(&wrong), Some("28P01"));
    assert_eq!(
        wrong.as_db_error().map(|error| error.message()),
        Some("password authentication failed for user \"analyst\"")
    );
    let stranger = connect(server.port, "stranger", Some("correct horse"))
        .await
        .expect_err("another user is refused");
    assert_eq!(sqlstate(&stranger), Some("28P01"));
    let anonymous = connect(server.port, "analyst", None)
        .await
        .expect_err("no password is refused");
    assert!(
        format!("{anonymous:?}").contains("password missing"),
        "{anonymous:?}"
    );
}

fn psql(port: u16, connection: &str, password: Option<&str>) -> std::process::Output {
    let mut command = Command::new("psql");
    command
        .arg("-X")
        .arg(format!(
            "host=127.0.0.1 port={port} dbname=tributary {connection}"
        ))
        .args(["-c", "\\conninfo", "-c", "SELECT 1 AS one"])
        .env_remove("PGPASSWORD")
        .env("PGCONNECT_TIMEOUT", "10");
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command
        .output()
        .expect("psql must be installed: scripts/postgres start installs it")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_encrypts_when_the_client_asks_and_binds_scram_to_the_channel() {
    let server = TestServer::start_with(tributary::Config {
        credentials: Some(credentials()),
        tls: Some(certificate_files("scram")),
        ..tributary::Config::in_memory()
    })
    .await
    .expect("start the server");
    let port = server.port;
    let outputs = tokio::task::spawn_blocking(move || {
        [
            psql(
                port,
                "user=analyst sslmode=require channel_binding=require",
                Some("correct horse"),
            ),
            psql(port, "user=analyst sslmode=disable", Some("correct horse")),
            psql(port, "user=analyst sslmode=require", Some("wrong")),
        ]
    })
    .await
    .expect("psql ran");
    let [bound, plain, wrong] = outputs;
    let stdout = String::from_utf8_lossy(&bound.stdout);
    assert!(
        bound.status.success(),
        "{}",
        String::from_utf8_lossy(&bound.stderr)
    );
    assert!(
        stdout.contains("SSL connection (protocol: TLSv1.3"),
        "{stdout}"
    );
    // Without TLS, SCRAM goes on without channel binding.
    let stdout = String::from_utf8_lossy(&plain.stdout);
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    assert!(!stdout.contains("SSL connection"), "{stdout}");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success());
    assert!(
        stderr.contains("FATAL:  password authentication failed for user \"analyst\""),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_refused_unless_configured() {
    let server = TestServer::start().await;
    let port = server.port;
    let output = tokio::task::spawn_blocking(move || psql(port, "user=any sslmode=require", None))
        .await
        .expect("psql ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("server does not support SSL"), "{stderr}");
}
