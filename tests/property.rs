//! Property test: random GROUP BY views under random inserts, updates and deletes in random batch
//! sizes. After every statement each maintained view must equal its query recomputed by
//! DataFusion over the table's current rows.
//!
//! The server keeps a data directory with checkpoints at a random short interval, and once per
//! case it crashes at a random step: the directory is copied as it stands (what a crash leaves
//! behind, since every acknowledged write is synced) and a new server recovers from the copy
//! and carries on, so checkpoint restore and log replay are compared with recomputation too.
//!
//! `TRIBUTARY_PROPERTY_CASES` (default 300) sets the number of cases and
//! `TRIBUTARY_PROPERTY_SEED` replays a failing run.

use anyhow::{Context, Result, bail};
use datafusion::arrow::util::display::array_value_to_string;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::Duration;

use tributary::Config;
use tributary::server::start_coordinator;
use tributary::session::{QueryResult, Session};

const GROUP_KEYS: &[&str] = &["k1", "k2", "k1 % 2"];
const AGGREGATES: &[&str] = &[
    "count(*)",
    "count(v)",
    "sum(v)",
    "avg(v)",
    "min(v)",
    "max(v)",
    "sum(f)",
    "avg(f)",
    "min(f)",
    "max(f)",
    "sum(d)",
    "avg(d)",
    "min(d)",
    "max(k2)",
    "min(k2)",
    "count(k1)",
    "sum(k1)",
    "avg(k1)",
];

fn random_query(rng: &mut StdRng) -> String {
    let group_count = rng.random_range(0..=2);
    let mut keys: Vec<&str> = GROUP_KEYS
        .choose_multiple(rng, group_count)
        .copied()
        .collect();
    keys.sort();
    let aggregate_count = rng.random_range(1..=4);
    let aggregates: Vec<&str> = AGGREGATES
        .choose_multiple(rng, aggregate_count)
        .copied()
        .collect();
    let mut select: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| format!("{key} AS g{i}"))
        .collect();
    select.extend(
        aggregates
            .iter()
            .enumerate()
            .map(|(i, aggregate)| format!("{aggregate} AS a{i}")),
    );
    let mut query = format!("SELECT {} FROM t", select.join(", "));
    if rng.random_bool(0.4) {
        query.push_str(&format!(
            " WHERE v > {} OR v IS NULL",
            rng.random_range(-30..30)
        ));
    }
    if !keys.is_empty() {
        query.push_str(&format!(" GROUP BY {}", keys.join(", ")));
        if rng.random_bool(0.3) {
            query.push_str(" HAVING count(*) > 1");
        }
    }
    query
}

fn random_value(rng: &mut StdRng) -> String {
    let k1 = if rng.random_bool(0.15) {
        "NULL".to_string()
    } else {
        rng.random_range(0..5).to_string()
    };
    let k2 = ["'x'", "'y'", "'z'", "NULL"]
        .choose(rng)
        .copied()
        .unwrap_or("NULL");
    let v = if rng.random_bool(0.15) {
        "NULL".to_string()
    } else {
        rng.random_range(-50..50).to_string()
    };
    // Multiples of 0.25 add up exactly in binary floating point, so float sums compare exactly.
    let f = if rng.random_bool(0.1) {
        "NULL".to_string()
    } else {
        format!("{}", rng.random_range(-40..40) as f64 * 0.25)
    };
    let d = format!(
        "{}.{:02}",
        rng.random_range(-99..99),
        rng.random_range(0..100)
    );
    format!("({k1}, {k2}, {v}, {f}, {d})")
}

fn random_change(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0..=4 => {
            let rows: Vec<String> = (0..rng.random_range(1..=20))
                .map(|_| random_value(rng))
                .collect();
            format!("INSERT INTO t VALUES {}", rows.join(", "))
        }
        5..=6 => match rng.random_range(0..3) {
            0 => format!("DELETE FROM t WHERE k1 = {}", rng.random_range(0..5)),
            1 => format!("DELETE FROM t WHERE v < {}", rng.random_range(-50..0)),
            _ => "DELETE FROM t WHERE k2 IS NULL".to_string(),
        },
        _ => match rng.random_range(0..3) {
            0 => format!(
                "UPDATE t SET v = v + 7 WHERE k1 = {}",
                rng.random_range(0..5)
            ),
            1 => format!(
                "UPDATE t SET k1 = {} WHERE v > {}",
                rng.random_range(0..5),
                rng.random_range(0..50)
            ),
            _ => "UPDATE t SET k2 = 'x', f = f * 2 WHERE k2 = 'y'".to_string(),
        },
    }
}

async fn rows(session: &Session, sql: &str) -> Result<Vec<String>> {
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

/// A server's coordinator on a data directory, with a session on it.
struct Server {
    session: Session,
    shutdown: tokio::sync::watch::Sender<bool>,
    stopped: tokio::sync::watch::Receiver<bool>,
}

impl Server {
    async fn start(directory: &Path, checkpoint_interval: Duration) -> Result<Server> {
        let (shutdown, receiver) = tokio::sync::watch::channel(false);
        let config = Config {
            data_dir: Some(directory.to_path_buf()),
            checkpoint_interval,
        };
        let (coordinator, stopped) = start_coordinator(&config, receiver).await?;
        Ok(Server {
            session: Session::new(coordinator)?,
            shutdown,
            stopped,
        })
    }

    /// Stops the coordinator and waits until it has (so it no longer touches its directory).
    async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        let _ = self.stopped.wait_for(|stopped| *stopped).await;
    }
}

/// Copies a live data directory: what a crash at this moment would leave. The checkpoint writer
/// may rename or remove entries meanwhile; those are skipped, as a crash would lose them.
fn copy_directory(from: &Path, to: &Path) -> Result<()> {
    let gone = |error: &std::io::Error| error.kind() == std::io::ErrorKind::NotFound;
    std::fs::create_dir_all(to)?;
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(error) if gone(&error) => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    for entry in entries.flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_directory(&entry.path(), &target)?;
        } else if let Err(error) = std::fs::copy(entry.path(), &target)
            && !gone(&error)
        {
            return Err(error.into());
        }
    }
    Ok(())
}

async fn run_case(seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let root =
        std::env::temp_dir().join(format!("tributary-property-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let checkpoint_interval = Duration::from_millis(rng.random_range(1..30));
    let mut server = Server::start(&root.join("0"), checkpoint_interval).await?;
    server
        .session
        .execute("CREATE TABLE t (k1 INT, k2 TEXT, v BIGINT, f DOUBLE PRECISION, d NUMERIC(6,2))")
        .await?;
    let mut history = Vec::new();
    let mut views = Vec::new();
    let view_count = rng.random_range(1..=3);
    let steps = rng.random_range(3..=12);
    let crash_at = rng.random_range(0..steps);
    for step in 0..steps {
        if step == crash_at {
            let crashed = root.join("1");
            copy_directory(&root.join("0"), &crashed)?;
            let recovered = Server::start(&crashed, checkpoint_interval)
                .await
                .with_context(|| format!("seed {seed}: recovery after {}", history.join(";\n")))?;
            std::mem::replace(&mut server, recovered).stop().await;
            history.push("-- crash and recover".to_string());
        }
        // Views are created at random points: some over an empty table, some after data.
        if views.len() < view_count && (step == 0 || rng.random_bool(0.3)) {
            let query = random_query(&mut rng);
            let name = format!("v{}", views.len());
            let create = format!("CREATE MATERIALIZED VIEW {name} AS {query}");
            server
                .session
                .execute(&create)
                .await
                .with_context(|| create.clone())?;
            history.push(create);
            views.push((name, query));
        }
        let change = random_change(&mut rng);
        server
            .session
            .execute(&change)
            .await
            .with_context(|| change.clone())?;
        history.push(change);
        for (name, query) in &views {
            let maintained = rows(&server.session, &format!("SELECT * FROM {name}")).await?;
            let recomputed = rows(&server.session, query).await?;
            if maintained != recomputed {
                bail!(
                    "seed {seed}: view {name} ({query}) diverged after:\n{}\nmaintained: {maintained:#?}\nrecomputed: {recomputed:#?}",
                    history.join(";\n")
                );
            }
        }
    }
    server.stop().await;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintained_views_equal_recomputation() -> Result<()> {
    let cases: u64 = std::env::var("TRIBUTARY_PROPERTY_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let first_seed: u64 = std::env::var("TRIBUTARY_PROPERTY_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20261125);
    for case in 0..cases {
        run_case(first_seed + case).await?;
    }
    Ok(())
}
