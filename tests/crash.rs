//! Crash test: the `tributary` binary is killed with SIGKILL at random moments while it ingests
//! from the real broker and clients write to a table. After every restart on the same data
//! directory, the table holds exactly the acknowledged writes (the one in flight at the kill
//! either way), the source holds every produced message exactly once, the views equal their
//! queries recomputed, and the sinks' topics, read `read_committed`, hold every change exactly
//! once: a DEBEZIUM sink of the source has one create per produced message, an UPSERT sink of
//! a view ends with the view's rows.
//!
//! `TRIBUTARY_CRASH_SEED` replays a run (the seed is printed); `TRIBUTARY_CRASH_KILLS` sets how
//! many kills (default 10).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::kafka;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// A `tributary serve` process.
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
    fn start(directory: &Path, log: &Path, checkpoint_interval_ms: u64) -> Result<Self> {
        Self::start_with_file_limit(directory, log, checkpoint_interval_ms, None)
    }

    /// With `file_limit`, the server cannot make a file larger than that many bytes: its writes
    /// beyond fail with EFBIG, as on a full disk.
    fn start_with_file_limit(
        directory: &Path,
        log: &Path,
        checkpoint_interval_ms: u64,
        file_limit: Option<u64>,
    ) -> Result<Self> {
        // A free port: bound and released; the server binds it again right away.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_tributary"));
        command
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(directory)
            .args([
                "--checkpoint-interval-ms",
                &checkpoint_interval_ms.to_string(),
            ])
            .env("RUST_LOG", "warn,tributary=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?);
        if let Some(limit) = file_limit {
            // SAFETY: between fork and exec only async-signal-safe calls (signal, setrlimit).
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    // Ignored, SIGXFSZ turns into an EFBIG error from write(2); the disposition
                    // survives exec.
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    let limit = libc::rlimit {
                        rlim_cur: limit as libc::rlim_t,
                        rlim_max: limit as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command.stderr(log).spawn().context("start tributary")?;
        Ok(Self { child, port })
    }

    async fn connect(&mut self) -> Result<tokio_postgres::Client> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let connected = tokio_postgres::connect(
                &format!("host=127.0.0.1 port={} user=crash", self.port),
                tokio_postgres::NoTls,
            )
            .await;
            match connected {
                Ok((client, connection)) => {
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    return Ok(client);
                }
                Err(_) if Instant::now() < deadline => {
                    if let Some(status) = self.child.try_wait()? {
                        bail!("the server exited with {status} before it accepted clients");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => return Err(error).context("the server never accepted clients"),
            }
        }
    }

    /// SIGTERM, and waits for a clean exit.
    fn terminate(mut self) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: kill(2) on our own child's pid; it has not been waited for, so the pid is
        // still ours.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            bail!("kill(SIGTERM): {}", std::io::Error::last_os_error());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the server exited with {status} after SIGTERM");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the server did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(mut self) -> Result<()> {
        // Child::kill sends SIGKILL on Unix: no shutdown, no last checkpoint.
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// What the table writer did: ids whose insert or delete was acknowledged, and the statement in
/// flight when the server died.
#[derive(Default)]
struct Writes {
    present: BTreeSet<i64>,
    in_flight: Option<Write>,
}

#[derive(Clone, Copy, Debug)]
enum Write {
    Insert(i64),
    Delete(i64),
}

/// Inserts and deletes rows until the connection dies, recording each acknowledged write.
async fn write_until_killed(
    client: tokio_postgres::Client,
    writes: Arc<Mutex<Writes>>,
    mut next_id: i64,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        let write = {
            let writes = writes.lock().expect("writes");
            match writes.present.iter().next() {
                Some(&id) if rng.random_bool(0.3) => Write::Delete(id),
                _ => {
                    next_id += 1;
                    Write::Insert(next_id)
                }
            }
        };
        writes.lock().expect("writes").in_flight = Some(write);
        let sql = match write {
            Write::Insert(id) => format!("INSERT INTO t VALUES ({}, {id})", id % 13),
            Write::Delete(id) => format!("DELETE FROM t WHERE v = {id}"),
        };
        if client.simple_query(&sql).await.is_err() {
            return;
        }
        let mut writes = writes.lock().expect("writes");
        writes.in_flight = None;
        match write {
            Write::Insert(id) => writes.present.insert(id),
            Write::Delete(id) => writes.present.remove(&id),
        };
    }
}

async fn query(client: &tokio_postgres::Client, sql: &str) -> Result<Vec<Vec<String>>> {
    Ok(client
        .simple_query(sql)
        .await
        .with_context(|| sql.to_string())?
        .into_iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|index| row.get(index).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

async fn assert_view_equals_query(
    client: &tokio_postgres::Client,
    view: &str,
    recompute: &str,
) -> Result<()> {
    let maintained = query(client, &format!("SELECT * FROM {view} ORDER BY 1")).await?;
    let recomputed = query(client, &format!("{recompute} ORDER BY 1")).await?;
    if maintained != recomputed {
        bail!("view {view} differs from recomputation:\n{maintained:?}\n{recomputed:?}");
    }
    Ok(())
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_survive_sigkill_at_random_moments() -> Result<()> {
    let seed: u64 = std::env::var("TRIBUTARY_CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|since| since.as_secs())
                .unwrap_or(1)
        });
    let kills: usize = std::env::var("TRIBUTARY_CRASH_KILLS")
        .ok()
        .and_then(|kills| kills.parse().ok())
        .unwrap_or(10);
    println!("crash test seed {seed} (TRIBUTARY_CRASH_SEED={seed} replays it), {kills} kills");
    let mut rng = StdRng::seed_from_u64(seed);
    let directory: PathBuf =
        std::env::temp_dir().join(format!("tributary-crash-{}", std::process::id()));
    let log = directory.with_extension("log");
    let _ = std::fs::remove_dir_all(&directory);
    let _ = std::fs::remove_file(&log);
    let topic = kafka::unique_topic("crash");
    kafka::create_topic(&topic, 2);
    let topics = Topics {
        source: topic.clone(),
        events_out: format!("{topic}-events-out"),
        groups_out: format!("{topic}-groups-out"),
    };

    let result = run(&mut rng, seed, kills, &directory, &log, &topics).await;
    if result.is_err() {
        eprintln!("server log ({}):\n{}", log.display(), tail(&log));
    } else {
        let _ = std::fs::remove_dir_all(&directory);
        let _ = std::fs::remove_file(&log);
    }
    result
}

struct Topics {
    source: String,
    /// The DEBEZIUM sink of the source.
    events_out: String,
    /// The UPSERT sink of `event_groups`.
    groups_out: String,
}

/// Checks the sinks' topics against what was produced, waiting for the sinks' next commits.
fn check_sinks(
    topics: &Topics,
    produced: &[(i64, i64)],
    groups: &[Vec<String>],
    kill: usize,
) -> Result<()> {
    let mut expected: Vec<String> = produced
        .iter()
        .map(|(key, value)| format!(r#"{{"key":{key},"value":{value}}}"#))
        .collect();
    expected.sort();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let messages = kafka::read_all(&topics.events_out, produced.len(), Duration::from_secs(10));
        let mut creates = Vec::new();
        for (_, value) in &messages {
            let value = value.as_deref().unwrap_or("");
            let Some(after) = value
                .strip_prefix(r#"{"before":null,"after":"#)
                .and_then(|rest| rest.strip_suffix(r#","op":"c"}"#))
            else {
                bail!(
                    "kill {kill}: the source's sink wrote something other than a create: {value}"
                );
            };
            creates.push(after.to_string());
        }
        creates.sort();
        if creates == expected {
            break;
        }
        if creates.len() > expected.len() || Instant::now() > deadline {
            bail!(
                "kill {kill}: the source's sink holds {} creates for {} produced messages",
                creates.len(),
                expected.len()
            );
        }
    }
    let expected: std::collections::HashMap<String, String> = groups
        .iter()
        .map(|row| {
            (
                format!(r#"{{"key":{}}}"#, row[0]),
                format!(
                    r#"{{"key":{},"n":{},"s":{},"lo":{}}}"#,
                    row[0], row[1], row[2], row[3]
                ),
            )
        })
        .collect();
    let table = kafka::read_table(&topics.groups_out, Duration::from_secs(60), |table| {
        table == &expected
    });
    if table != expected {
        bail!("kill {kill}: the view's sink ends with {table:?}, the view holds {expected:?}");
    }
    Ok(())
}

async fn run(
    rng: &mut StdRng,
    seed: u64,
    kills: usize,
    directory: &Path,
    log: &Path,
    topics: &Topics,
) -> Result<()> {
    let topic = topics.source.as_str();
    let checkpoint_interval_ms = rng.random_range(20..400);
    let mut server = ServerProcess::start(directory, log, checkpoint_interval_ms)?;
    let client = server.connect().await?;
    client
        .batch_execute(&format!(
            "CREATE TABLE t (k INT, v BIGINT);
             CREATE MATERIALIZED VIEW table_groups AS
               SELECT k, count(*) AS n, sum(v) AS s, max(v) AS hi FROM t GROUP BY k;
             CREATE SOURCE events (key INT, value BIGINT)
               FROM KAFKA (BROKER '{broker}', TOPIC '{topic}') FORMAT JSON;
             CREATE MATERIALIZED VIEW event_groups AS
               SELECT key, count(*) AS n, sum(value) AS s, min(value) AS lo FROM events GROUP BY key;
             CREATE MATERIALIZED VIEW event_total AS SELECT count(*) AS n FROM events;
             CREATE SINK events_out FROM events INTO KAFKA (BROKER '{broker}', TOPIC '{}')
               FORMAT JSON ENVELOPE DEBEZIUM;
             CREATE SINK groups_out FROM event_groups INTO KAFKA (BROKER '{broker}', TOPIC '{}')
               KEY (key) FORMAT JSON ENVELOPE UPSERT;",
            topics.events_out,
            topics.groups_out,
            broker = kafka::bootstrap(),
        ))
        .await?;
    drop(client);

    let writes = Arc::new(Mutex::new(Writes::default()));
    let mut next_id = 0i64;
    let mut produced: Vec<(i64, i64)> = Vec::new();
    let mut late_views: Vec<String> = Vec::new();
    for kill in 0..kills {
        let client = server.connect().await?;
        let writer = tokio::spawn(write_until_killed(
            client,
            Arc::clone(&writes),
            next_id,
            seed.wrapping_add(kill as u64),
        ));
        // Messages arrive while the server runs: some before the kill, some it reads after.
        let batch: Vec<(i64, i64)> = (0..rng.random_range(100..2000))
            .map(|_| (rng.random_range(0..17), rng.random_range(-1000..1000)))
            .collect();
        let payloads: Vec<Vec<u8>> = batch
            .iter()
            .map(|(key, value)| format!(r#"{{"key": {key}, "value": {value}}}"#).into_bytes())
            .collect();
        // Produced in small chunks while the server runs and dies, so the kill falls between
        // ingesting messages and checkpointing their offsets.
        let chunk = rng.random_range(20..200);
        let producer_topic = topic.to_string();
        let producer = std::thread::spawn(move || {
            let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                .set("bootstrap.servers", kafka::bootstrap())
                .set("linger.ms", "0")
                .create()
                .expect("create a producer");
            for chunk in payloads.chunks(chunk) {
                for payload in chunk {
                    producer
                        .send(BaseRecord::<[u8], [u8]>::to(&producer_topic).payload(payload))
                        .map_err(|(error, _)| error)
                        .expect("produce");
                }
                producer
                    .flush(Duration::from_secs(30))
                    .expect("every message acknowledged");
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..1000))).await;
        // A view created while the source ingests starts from the rows read back from the
        // topic; killed soon after, it is often only in the log, and recovery reads them back.
        let late_view = format!("late_{kill}");
        server
            .connect()
            .await?
            .batch_execute(&format!(
                "CREATE MATERIALIZED VIEW {late_view} AS
                   SELECT key, count(*) AS n, sum(value) AS s FROM events GROUP BY key"
            ))
            .await?;
        late_views.push(late_view);
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..500))).await;
        server.kill()?;
        let _ = writer.await;
        producer
            .join()
            .map_err(|_| anyhow::anyhow!("the producer thread panicked"))?;
        produced.extend(batch);

        server = ServerProcess::start(directory, log, checkpoint_interval_ms)?;
        let client = server.connect().await?;
        // The table: every acknowledged write; the one in flight may or may not have landed.
        let actual: BTreeSet<i64> = query(&client, "SELECT v FROM t")
            .await?
            .into_iter()
            .map(|row| row[0].parse::<i64>())
            .collect::<std::result::Result<_, _>>()?;
        {
            let mut writes = writes.lock().expect("writes");
            let mut with_in_flight = writes.present.clone();
            match writes.in_flight.take() {
                Some(Write::Insert(id)) => {
                    with_in_flight.insert(id);
                    next_id = next_id.max(id);
                }
                Some(Write::Delete(id)) => {
                    with_in_flight.remove(&id);
                }
                None => {}
            }
            if actual != writes.present && actual != with_in_flight {
                let lost: Vec<_> = writes.present.difference(&actual).collect();
                let extra: Vec<_> = actual.difference(&with_in_flight).collect();
                bail!(
                    "kill {kill}: table differs from acknowledged writes; lost {lost:?}, extra {extra:?}"
                );
            }
            next_id = next_id.max(actual.iter().copied().max().unwrap_or(0));
            writes.present = actual;
        }
        assert_view_equals_query(
            &client,
            "table_groups",
            "SELECT k, count(*) AS n, sum(v) AS s, max(v) AS hi FROM t GROUP BY k",
        )
        .await
        .with_context(|| format!("kill {kill}"))?;

        // The source: every produced message exactly once.
        client.batch_execute("FLUSH").await?;
        let total = query(&client, "SELECT n FROM event_total").await?;
        if total != vec![vec![produced.len().to_string()]] {
            bail!(
                "kill {kill}: the source holds {total:?} messages, {} were produced",
                produced.len()
            );
        }
        let mut expected = std::collections::BTreeMap::<i64, (i64, i64, i64)>::new();
        for (key, value) in &produced {
            let entry = expected.entry(*key).or_insert((0, 0, i64::MAX));
            entry.0 += 1;
            entry.1 += value;
            entry.2 = entry.2.min(*value);
        }
        let expected: Vec<Vec<String>> = expected
            .into_iter()
            .map(|(key, (n, s, lo))| {
                vec![
                    key.to_string(),
                    n.to_string(),
                    s.to_string(),
                    lo.to_string(),
                ]
            })
            .collect();
        let groups = query(&client, "SELECT * FROM event_groups ORDER BY key").await?;
        if groups != expected {
            bail!("kill {kill}: event_groups {groups:?}, expected {expected:?}");
        }
        assert_view_equals_query(
            &client,
            "event_groups",
            "SELECT key, count(*) AS n, sum(value) AS s, min(value) AS lo FROM events GROUP BY key",
        )
        .await
        .with_context(|| format!("kill {kill}"))?;
        for view in &late_views {
            assert_view_equals_query(
                &client,
                view,
                "SELECT key, count(*) AS n, sum(value) AS s FROM events GROUP BY key",
            )
            .await
            .with_context(|| format!("kill {kill}, view {view}"))?;
        }
        // The Kafka consumer blocks; the server's other work goes on meanwhile.
        tokio::task::block_in_place(|| check_sinks(topics, &produced, &groups, kill))?;
        // Output recovered from a checkpoint counts as queued too (it once went negative).
        let queued = query(
            &client,
            "SELECT sink FROM tributary.sink_progress WHERE queued_epochs < 0",
        )
        .await?;
        if !queued.is_empty() {
            bail!("kill {kill}: sinks with fewer than no queued epochs: {queued:?}");
        }
    }
    // SIGTERM: a clean stop with a last checkpoint, so the next start replays no log.
    let client = server.connect().await?;
    client.batch_execute("INSERT INTO t VALUES (0, 0)").await?;
    drop(client);
    server.terminate()?;
    server = ServerProcess::start(directory, log, checkpoint_interval_ms)?;
    let client = server.connect().await?;
    let zero = query(&client, "SELECT count(*) FROM t WHERE v = 0").await?;
    if zero != vec![vec!["1".to_string()]] {
        bail!("the write before SIGTERM: {zero:?}");
    }
    let log_text = std::fs::read_to_string(log)?;
    let last_recovery = log_text
        .lines()
        .rfind(|line| line.contains("recovered"))
        .unwrap_or_default();
    if !last_recovery.contains("replayed=0") {
        bail!("after SIGTERM the log was replayed: {last_recovery}");
    }
    server.kill()?;
    Ok(())
}

/// A disk that fills up: the server may not grow a file past 256 KiB. A write whose log record
/// cannot be written fails with 58030 and changes nothing; smaller writes, reads and the views
/// go on; a restart has exactly the writes that succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_cannot_be_made_durable_fails_and_changes_nothing() -> Result<()> {
    let directory: PathBuf =
        std::env::temp_dir().join(format!("tributary-full-disk-{}", std::process::id()));
    let log = directory.with_extension("log");
    let _ = std::fs::remove_dir_all(&directory);
    let _ = std::fs::remove_file(&log);
    let limit = Some(256 * 1024);
    // Checkpoints are rare here, so the log segment keeps growing toward the limit.
    let mut server = ServerProcess::start_with_file_limit(&directory, &log, 600_000, limit)?;
    let client = server.connect().await?;
    client
        .batch_execute(
            "CREATE TABLE t (k INT, v BIGINT);
             CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(v) AS s FROM t;
             INSERT INTO t VALUES (1, 10), (2, 20);",
        )
        .await
        .map_err(|error| anyhow::anyhow!("create: {error:?}"))?;
    // Far more than 256 KiB of log record: refused.
    let error = client
        .batch_execute("INSERT INTO t SELECT i % 7, i FROM generate_series(1, 200000) AS s(i)")
        .await
        .err()
        .context("a write larger than the disk has room for succeeded")?;
    let code = error.code().map(|code| code.code().to_string());
    if code.as_deref() != Some("58030") {
        bail!("expected SQLSTATE 58030, got {code:?}: {error}");
    }
    // Nothing of it is visible; small writes and reads go on.
    client.batch_execute("INSERT INTO t VALUES (3, 30)").await?;
    let totals = query(&client, "SELECT n, s FROM totals").await?;
    if totals != vec![vec!["3".to_string(), "60".to_string()]] {
        bail!("after the refused write the view holds {totals:?}");
    }
    assert_view_equals_query(
        &client,
        "totals",
        "SELECT count(*) AS n, sum(v) AS s FROM t",
    )
    .await?;
    drop(client);
    server.kill()?;
    let mut server = ServerProcess::start(&directory, &log, 1000)?;
    let client = server.connect().await?;
    let rows = query(&client, "SELECT k, v FROM t ORDER BY k").await?;
    if rows != vec![vec!["1", "10"], vec!["2", "20"], vec!["3", "30"]] {
        bail!("after a restart the table holds {rows:?}");
    }
    drop(client);
    server.kill()?;
    let _ = std::fs::remove_dir_all(&directory);
    let _ = std::fs::remove_file(&log);
    Ok(())
}
