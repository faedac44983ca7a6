//! In-process Nexmark benchmark: the `nexmark` crate's events, cut into Arrow batches, written
//! into the Nexmark tables while one query of `sql/nexmark/` is maintained as a materialized
//! view. No Kafka and no client: the coordinator's own write path, one epoch per table per
//! batch, each write returning once the view reflects it.
//!
//! `cargo bench --bench nexmark` prints input events/s per query. The events are generated
//! before the clock starts. `TRIBUTARY_NEXMARK_EVENTS` (default 1,000,000) and
//! `TRIBUTARY_NEXMARK_BATCH` (events per batch, default 10,000) change the run;
//! `TRIBUTARY_NEXMARK_QUERIES` (say `q0,q4`) picks queries. Each query runs twice: with one
//! worker (every operator on the coordinator's thread) and with one worker per core (each runs
//! a shard of every dataflow, see `dataflow::workers`); `TRIBUTARY_NEXMARK_WORKERS` sets the
//! second figure's count, `TRIBUTARY_NEXMARK_RUNS` (default 3) how many runs each figure is the
//! median of.

mod common;

use std::time::Instant;

use datafusion::arrow::util::display::array_value_to_string;
use tributary::Config;
use tributary::connectors::nexmark::{NexmarkBatch, NexmarkGenerator};
use tributary::coordinator::{Coordinator, TableChange};
use tributary::server::start_coordinator;
use tributary::session::{QueryResult, Session};

use common::nexmark::{self, read};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

async fn write(
    coordinator: &Coordinator,
    table: &str,
    batch: &datafusion::arrow::array::RecordBatch,
) {
    if batch.num_rows() == 0 {
        return;
    }
    let id = coordinator
        .snapshot()
        .catalog
        .get(table)
        .map(|relation| relation.id)
        .unwrap_or_else(|| panic!("no table {table}"));
    coordinator
        .write(id, TableChange::Insert(vec![batch.clone()]))
        .await
        .unwrap_or_else(|error| panic!("write {table}: {error}"));
}

/// Events per second of `query` over `batches` with `workers`, and the rows its view ends with.
async fn run(query: &str, batches: &[NexmarkBatch], workers: usize) -> (f64, String) {
    let (shutdown, receiver) = tokio::sync::watch::channel(false);
    let config = Config {
        workers,
        ..Config::in_memory()
    };
    let (coordinator, mut stopped) = start_coordinator(&config, receiver)
        .await
        .expect("coordinator");
    let session = Session::new(coordinator.clone()).expect("session");
    session.execute(&read("schema")).await.expect("schema");
    session.execute(&read(query)).await.expect("view");
    let events: usize = batches.iter().map(NexmarkBatch::events).sum();
    let started = Instant::now();
    for batch in batches {
        write(&coordinator, "person", &batch.person).await;
        write(&coordinator, "auction", &batch.auction).await;
        write(&coordinator, "bid", &batch.bid).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let count = session
        .execute(&format!("SELECT count(*) FROM nexmark_{query}"))
        .await
        .expect("count");
    let rows = match count.last() {
        Some(QueryResult::Rows { batches, .. }) => batches
            .first()
            .and_then(|batch| array_value_to_string(batch.column(0), 0).ok())
            .unwrap_or_default(),
        _ => String::new(),
    };
    // The coordinator frees the run's tables and state on its own thread as it stops: waited
    // for here, or it would take a core from the next run's first half second.
    drop(session);
    drop(coordinator);
    let _ = shutdown.send(true);
    let _ = stopped.wait_for(|stopped| *stopped).await;
    (events as f64 / elapsed, rows)
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let events = setting("TRIBUTARY_NEXMARK_EVENTS", 1_000_000);
    let batch_size = setting("TRIBUTARY_NEXMARK_BATCH", 10_000);
    let chosen: Vec<String> = nexmark::chosen();
    let mut generator = NexmarkGenerator::default();
    let mut batches = Vec::new();
    let mut generated = 0;
    while generated < events {
        let batch = generator
            .next_batch(batch_size.min(events - generated))
            .expect("generate");
        generated += batch.events();
        batches.push(batch);
    }
    let runs = setting("TRIBUTARY_NEXMARK_RUNS", 3).max(1);
    let workers = setting(
        "TRIBUTARY_NEXMARK_WORKERS",
        tributary::server::default_workers(),
    );
    println!(
        "Nexmark, {events} events in batches of {batch_size}, in process; events/s with 1 worker and with {workers}, median of {runs} runs"
    );
    for query in &chosen {
        // Alternating runs, each figure their median: one run of a query lasts about a second,
        // and these machines' speed drifts by tens of percent from second to second.
        let (mut ones, mut alls, mut rows) = (Vec::new(), Vec::new(), String::new());
        for _ in 0..runs {
            let (rate, ended_with) = run(query, &batches, 1).await;
            ones.push(rate);
            rows = ended_with;
            alls.push(run(query, &batches, workers).await.0);
        }
        let (one, all) = (median(ones), median(alls));
        println!(
            "{query:>4}: {one:>10.0} events/s on 1 worker, {all:>10.0} on {workers} ({:.2}x; {rows} rows in the view)",
            all / one
        );
    }
}
