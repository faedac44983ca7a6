//! Nexmark q0–q8 and q17 (`sql/nexmark/`) as materialized views over the Nexmark tables, filled
//! chunk by chunk with the `nexmark` crate's generated events (plus deletes and updates, which
//! the benchmark's append-only stream never has). After every step each view must equal its
//! query recomputed by DataFusion over the tables as they stand. Half the views exist before
//! any data, half are created midway (backfilled).
//!
//! `TRIBUTARY_NEXMARK_EVENTS` (default 40,000) sets the number of events.

mod common;

use anyhow::{Context, Result, bail};
use std::path::Path;

use tributary::Config;
use tributary::connectors::nexmark::NexmarkGenerator;
use tributary::coordinator::{Coordinator, TableChange};
use tributary::server::start_coordinator;
use tributary::session::Session;

use common::{same_rows, sorted_rows as rows};

const QUERIES: &[&str] = &["q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8", "q17"];

fn read(name: &str) -> Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sql/nexmark")
        .join(format!("{name}.sql"));
    std::fs::read_to_string(&path).with_context(|| path.display().to_string())
}

/// The view name and its query, from a `CREATE MATERIALIZED VIEW name AS query;` file.
fn view_and_query(sql: &str) -> Result<(String, String)> {
    let create = sql
        .find("CREATE MATERIALIZED VIEW ")
        .context("no CREATE MATERIALIZED VIEW")?;
    let rest = &sql[create + "CREATE MATERIALIZED VIEW ".len()..];
    let (name, query) = rest.split_once(" AS").context("no AS")?;
    Ok((
        name.trim().to_string(),
        query.trim().trim_end_matches(';').to_string(),
    ))
}

async fn insert(
    coordinator: &Coordinator,
    table: &str,
    batch: &datafusion::arrow::array::RecordBatch,
) -> Result<()> {
    if batch.num_rows() == 0 {
        return Ok(());
    }
    let id = coordinator
        .snapshot()
        .catalog
        .get(table)
        .with_context(|| format!("table {table}"))?
        .id;
    coordinator
        .write(id, TableChange::Insert(vec![batch.clone()]))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_views_equal_recomputation() -> Result<()> {
    let events: usize = std::env::var("TRIBUTARY_NEXMARK_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40_000);
    let (_shutdown, receiver) = tokio::sync::watch::channel(false);
    // Three copies of each keyed operator whatever the machine: the chunks below are large
    // enough that the copies run on their own threads.
    let config = Config {
        workers: 3,
        ..Config::in_memory()
    };
    let (coordinator, _stopped) = start_coordinator(&config, receiver).await?;
    let session = Session::new(coordinator.clone())?;
    session.execute(&read("schema")?).await?;
    let mut views = Vec::new();
    let (early, late) = QUERIES.split_at(QUERIES.len() / 2);
    for name in early {
        let sql = read(name)?;
        session.execute(&sql).await.with_context(|| sql.clone())?;
        views.push(view_and_query(&sql)?);
    }
    let mut generator = NexmarkGenerator::default();
    let chunk = (events / 8).max(1);
    let mut loaded = 0;
    let mut step = 0;
    while loaded < events {
        let batch = generator.next_batch(chunk)?;
        loaded += batch.events();
        insert(&coordinator, "person", &batch.person).await?;
        insert(&coordinator, "auction", &batch.auction).await?;
        insert(&coordinator, "bid", &batch.bid).await?;
        step += 1;
        // Changes the generated stream never makes: retractions through every operator.
        match step {
            3 => {
                session
                    .execute("DELETE FROM bid WHERE price % 5 = 0")
                    .await?;
            }
            5 => {
                session
                    .execute("UPDATE auction SET category = 10 WHERE id % 3 = 0")
                    .await?;
                session
                    .execute("UPDATE bid SET price = price + 1000000 WHERE bidder % 7 = 0")
                    .await?;
            }
            7 => {
                session
                    .execute("DELETE FROM person WHERE id % 4 = 0")
                    .await?;
            }
            _ => {}
        }
        if step == 4 {
            for name in late {
                let sql = read(name)?;
                session.execute(&sql).await.with_context(|| sql.clone())?;
                views.push(view_and_query(&sql)?);
            }
        }
        for (view, query) in &views {
            let maintained = rows(&session, &format!("SELECT * FROM {view}")).await?;
            let recomputed = rows(&session, query).await?;
            if !same_rows(&maintained, &recomputed) {
                bail!(
                    "{view} diverged after {loaded} events (step {step}): {} rows maintained, {} recomputed; first differences: {:?}",
                    maintained.len(),
                    recomputed.len(),
                    maintained
                        .iter()
                        .zip(&recomputed)
                        .filter(|(a, b)| a != b)
                        .take(3)
                        .collect::<Vec<_>>()
                );
            }
            if loaded >= events {
                eprintln!("{view}: {} rows after {loaded} events", maintained.len());
                if recomputed.is_empty() {
                    bail!("{view} is empty after {loaded} events: the test would prove nothing");
                }
            }
        }
    }
    Ok(())
}
