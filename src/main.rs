//! The `tributary` command: `tributary serve` runs the server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tributary",
    version,
    about = "A streaming SQL database server speaking the Postgres protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server until SIGINT or SIGTERM.
    Serve {
        /// Address the Postgres protocol listens on.
        #[arg(long, env = "TRIBUTARY_LISTEN", default_value = "127.0.0.1:6570")]
        listen: SocketAddr,
        /// Directory for the write-ahead log and checkpoints; restarting on the same
        /// directory recovers everything.
        #[arg(long, env = "TRIBUTARY_DATA_DIR", default_value = "./tributary-data")]
        data_dir: PathBuf,
        /// Milliseconds between checkpoints.
        #[arg(long, env = "TRIBUTARY_CHECKPOINT_INTERVAL_MS", default_value_t = 1000)]
        checkpoint_interval_ms: u64,
        /// Require clients to authenticate with SCRAM-SHA-256 using this password (as --user).
        /// Without it, anyone who can reach the port connects.
        #[arg(long, env = "TRIBUTARY_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// The user name clients authenticate as when --password is given.
        #[arg(long, env = "TRIBUTARY_USER", default_value = "tributary")]
        user: String,
        /// A PEM certificate chain: with --tls-key, clients may encrypt their connections
        /// (sslmode=require).
        #[arg(long, env = "TRIBUTARY_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, env = "TRIBUTARY_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// How many copies of each keyed operator share a view's keys and run side by side;
        /// by default one per core. Views restored from a checkpoint keep the number they were
        /// checkpointed with.
        #[arg(long, env = "TRIBUTARY_WORKERS")]
        workers: Option<usize>,
        /// Memory that running queries may hold together (sorts, hash tables): bytes, or a
        /// number with kB, MB or GB (1024-based, as Postgres). Past it a query fails with
        /// 53200. By default a quarter of the machine's memory.
        #[arg(long, env = "TRIBUTARY_MAX_QUERY_MEMORY", value_parser = parse_size)]
        max_query_memory: Option<usize>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        // Colours only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            checkpoint_interval_ms,
            password,
            user,
            tls_cert,
            tls_key,
            workers,
            max_query_memory,
        } => {
            let runtime = tributary::server::runtime().context("starting the runtime")?;
            let config = tributary::Config {
                data_dir: Some(data_dir),
                checkpoint_interval: std::time::Duration::from_millis(
                    checkpoint_interval_ms.max(1),
                ),
                credentials: password.map(|password| tributary::Credentials { user, password }),
                tls: tls_cert
                    .zip(tls_key)
                    .map(|(certificate, key)| tributary::TlsFiles { certificate, key }),
                workers: workers
                    .unwrap_or_else(tributary::server::default_workers)
                    .max(1),
                max_query_memory: max_query_memory
                    .unwrap_or_else(tributary::server::default_max_query_memory),
            };
            runtime.block_on(serve(listen, config))
        }
    }
}

/// A size in bytes: a plain number, or one followed by kB, MB or GB (each 1024 of the one
/// before, as Postgres counts them).
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: usize = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size such as 512MB"))?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "kib" => 1 << 10,
        "mb" | "mib" => 1 << 20,
        "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown unit '{other}': use kB, MB or GB")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("'{text}' is too large"))
}

async fn serve(listen: SocketAddr, config: tributary::Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let (shutdown_sender, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = shutdown_sender.send(true);
    });
    tributary::serve(listener, shutdown, config).await?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
