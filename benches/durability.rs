//! Benchmark of durability, through the real server and a real driver.
//!
//! `cargo bench --bench durability` prints:
//! - the cost of durable acknowledged writes: one-row INSERT latency and bulk INSERT ... SELECT
//!   throughput, in memory and with a data directory (write-ahead log synced per epoch);
//! - for a GROUP BY view of 1,000,000 and 10,000,000 groups (the `tributary` binary, killed
//!   with SIGKILL after its checkpoint): the checkpoint's duration and size, the recovery time
//!   until the server accepts clients, and peak memory during recovery against steady state.
//!
//! `TRIBUTARY_BENCH_GROUPS` overrides the group counts (comma-separated).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use common::{connect, percentile, start_in_process};

fn bench_directory(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("tributary-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

struct WriteCost {
    insert_median: Duration,
    insert_p99: Duration,
    bulk_rows_per_second: f64,
}

async fn write_cost(config: tributary::Config) -> WriteCost {
    let (client, _shutdown) = start_in_process(config).await;
    client
        .batch_execute(
            "CREATE TABLE t (g INT, v BIGINT);
             CREATE MATERIALIZED VIEW per_group AS SELECT g, sum(v) AS s, count(*) AS n FROM t GROUP BY g;",
        )
        .await
        .expect("create");
    let insert = client
        .prepare("INSERT INTO t VALUES ($1, 1)")
        .await
        .expect("prepare");
    let mut samples = Vec::new();
    for round in 0..1000i32 {
        let started = Instant::now();
        client
            .execute(&insert, &[&(round % 1000)])
            .await
            .expect("insert");
        samples.push(started.elapsed());
    }
    let rows = 2_000_000u64;
    let started = Instant::now();
    for chunk in 0..(rows / 500_000) {
        let first = chunk * 500_000 + 1;
        client
            .batch_execute(&format!(
                "INSERT INTO t SELECT i % 1000, i FROM generate_series({first}, {}) AS s(i)",
                first + 499_999
            ))
            .await
            .expect("bulk insert");
    }
    let bulk = started.elapsed();
    WriteCost {
        insert_median: percentile(&mut samples, 0.5),
        insert_p99: percentile(&mut samples, 0.99),
        bulk_rows_per_second: rows as f64 / bulk.as_secs_f64(),
    }
}

/// A `tributary serve` child process.
struct ServerProcess {
    child: Child,
    port: u16,
}

/// However a run ends (a failed check included), the server process does not outlive it.
impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    fn start(directory: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(directory)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("start tributary");
        Self { child, port }
    }

    async fn wait_ready(&mut self) -> Client {
        loop {
            if let Some(client) = connect(self.port).await {
                return client;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited with {status}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Kibibytes from /proc: `VmRSS` (now) or `VmHWM` (peak).
    fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("process status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn directory_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| {
                    if entry.path().is_dir() {
                        directory_bytes(&entry.path())
                    } else {
                        entry.metadata().map(|metadata| metadata.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The newest successful checkpoint report: (epoch, duration in ms, capture in ms, bytes).
async fn newest_checkpoint(client: &Client) -> Option<(i64, f64, f64, i64)> {
    let row = client
        .query_opt(
            "SELECT epoch, duration_ms, capture_ms, bytes FROM tributary.checkpoints
             WHERE error IS NULL ORDER BY epoch DESC LIMIT 1",
            &[],
        )
        .await
        .expect("checkpoints")?;
    Some((row.get(0), row.get(1), row.get(2), row.get(3)))
}

struct RecoveryFigures {
    groups: u64,
    checkpoint: Duration,
    /// The part of `checkpoint` the coordinator paused for.
    capture: Duration,
    checkpoint_bytes: i64,
    directory_bytes: u64,
    recovery: Duration,
    steady_rss_kib: u64,
    recovery_peak_kib: u64,
}

async fn checkpoint_and_recovery(groups: u64) -> RecoveryFigures {
    let directory = bench_directory(&format!("groups-{groups}"));
    let mut server = ServerProcess::start(&directory);
    let client = server.wait_ready().await;
    client
        .batch_execute(
            "CREATE TABLE t (g BIGINT, v BIGINT);
             CREATE MATERIALIZED VIEW per_group AS SELECT g, sum(v) AS s, count(*) AS n FROM t GROUP BY g;",
        )
        .await
        .expect("create");
    let chunk = 1_000_000;
    let mut first = 1;
    while first <= groups {
        let last = (first + chunk - 1).min(groups);
        client
            .batch_execute(&format!(
                "INSERT INTO t SELECT i, i * 2 FROM generate_series({first}, {last}) AS s(i)"
            ))
            .await
            .expect("load");
        first = last + 1;
    }
    // Nothing changes after the load, so the first checkpoint after it holds all of it.
    let loaded = newest_checkpoint(&client)
        .await
        .map_or(0, |(epoch, _, _, _)| epoch);
    let (checkpoint, capture, checkpoint_bytes) = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some((epoch, total, capture, bytes)) = newest_checkpoint(&client).await
            && epoch > loaded
        {
            break (
                Duration::from_secs_f64(total / 1000.0),
                Duration::from_secs_f64(capture / 1000.0),
                bytes,
            );
        }
    };
    let steady_rss_kib = server.memory("VmRSS:");
    let directory_bytes = directory_bytes(&directory);
    drop(client);
    server.kill();

    let started = Instant::now();
    let mut server = ServerProcess::start(&directory);
    let client = server.wait_ready().await;
    let recovery = started.elapsed();
    let recovery_peak_kib = server.memory("VmHWM:");
    let count: i64 = client
        .query_one("SELECT count(*) FROM per_group", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count as u64, groups, "every group recovered");
    drop(client);
    server.kill();
    let _ = std::fs::remove_dir_all(&directory);
    RecoveryFigures {
        groups,
        checkpoint,
        capture,
        checkpoint_bytes,
        directory_bytes,
        recovery,
        steady_rss_kib,
        recovery_peak_kib,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!("durable acknowledged writes (GROUP BY view with 1,000 groups):");
        for (label, config) in [
            ("in memory", tributary::Config::in_memory()),
            (
                "data directory",
                tributary::Config::durable(bench_directory("writes")),
            ),
        ] {
            let cost = write_cost(config).await;
            println!(
                "  {label:>14}: one-row INSERT median {:.3} ms, p99 {:.3} ms; bulk INSERT ... SELECT {:.2} M rows/s",
                cost.insert_median.as_secs_f64() * 1000.0,
                cost.insert_p99.as_secs_f64() * 1000.0,
                cost.bulk_rows_per_second / 1e6
            );
        }
        let _ = std::fs::remove_dir_all(bench_directory("writes"));
        let sizes: Vec<u64> = std::env::var("TRIBUTARY_BENCH_GROUPS")
            .ok()
            .map(|sizes| sizes.split(',').filter_map(|size| size.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![1_000_000, 10_000_000]);
        println!("checkpoint and recovery (table of N rows, view of N groups with sum and count):");
        for groups in sizes {
            let figures = checkpoint_and_recovery(groups).await;
            println!(
                "  {:>10} groups: checkpoint {:.2} s (coordinator paused {:.2} s), {:.1} MiB ({:.1} MiB on disk with the log); recovery after SIGKILL {:.2} s; memory steady {:.0} MiB, peak during recovery {:.0} MiB ({:.2}x)",
                figures.groups,
                figures.checkpoint.as_secs_f64(),
                figures.capture.as_secs_f64(),
                figures.checkpoint_bytes as f64 / 1_048_576.0,
                figures.directory_bytes as f64 / 1_048_576.0,
                figures.recovery.as_secs_f64(),
                figures.steady_rss_kib as f64 / 1024.0,
                figures.recovery_peak_kib as f64 / 1024.0,
                figures.recovery_peak_kib as f64 / figures.steady_rss_kib.max(1) as f64,
            );
        }
    });
}
