//! Property tests: for every family of incremental operators (aggregates, joins, subqueries,
//! set operations, top-N, views on views, TUMBLE and HOP windows), random views over random tables under random
//! inserts, updates and deletes in random batch sizes. After every statement each maintained
//! view must equal its query recomputed by DataFusion over the tables' current rows.
//!
//! One case in five keeps a data directory with checkpoints at a random short interval and
//! crashes once at a random step: the directory is copied as it stands (what a crash leaves
//! behind, since every acknowledged write is synced) and a new server recovers from the copy
//! and carries on, so every operator's checkpoint and restore are compared with recomputation
//! too.
//!
//! `TRIBUTARY_PROPERTY_CASES` (default 1000 per family) sets the number of cases (a soak run
//! sets it high) and `TRIBUTARY_PROPERTY_SEED` replays a failing run.

mod common;

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::Duration;

use common::workload::{BASE_VIEWS, Family, TABLES, random_change, random_query};
use common::{same_rows, sorted_rows as rows};
use tributary::Config;
use tributary::server::start_coordinator;
use tributary::session::Session;

/// A server's coordinator on a data directory, with a session on it.
struct Server {
    session: Session,
    shutdown: tokio::sync::watch::Sender<bool>,
    stopped: tokio::sync::watch::Receiver<bool>,
}

impl Server {
    /// A server on `directory`, or in memory without one.
    async fn start(directory: Option<&Path>, checkpoint_interval: Duration) -> Result<Server> {
        let (shutdown, receiver) = tokio::sync::watch::channel(false);
        let config = Config {
            data_dir: directory.map(Path::to_path_buf),
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

async fn run_case(family: Family, seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let root = std::env::temp_dir().join(format!(
        "tributary-property-{}-{family:?}-{seed}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&root);
    let durable = rng.random_bool(0.2);
    let checkpoint_interval = Duration::from_millis(rng.random_range(1..30));
    let live = root.join("0");
    let directory = durable.then_some(live.as_path());
    let mut server = Server::start(directory, checkpoint_interval).await?;
    let mut history: Vec<String> = Vec::new();
    let mut setup: Vec<&str> = TABLES.to_vec();
    if matches!(family, Family::ViewsOnViews) {
        setup.extend(BASE_VIEWS);
    }
    for statement in &setup {
        server.session.execute(statement).await?;
        history.push(statement.to_string());
    }
    let mut views: Vec<(String, String)> = Vec::new();
    if matches!(family, Family::ViewsOnViews) {
        views.push((
            "base_sums".into(),
            "SELECT k1, sum(v) AS s, count(*) AS n FROM t GROUP BY k1".into(),
        ));
    }
    let view_count = views.len() + rng.random_range(1..=3);
    let steps = rng.random_range(3..=12);
    let crash_at = durable.then(|| rng.random_range(0..steps));
    for step in 0..steps {
        if crash_at == Some(step) {
            let crashed = root.join("1");
            copy_directory(&live, &crashed)?;
            let recovered = Server::start(Some(&crashed), checkpoint_interval)
                .await
                .with_context(|| format!("seed {seed}: recovery after {}", history.join(";\n")))?;
            std::mem::replace(&mut server, recovered).stop().await;
            history.push("-- crash and recover".to_string());
        }
        // Views are created at random points: some over empty tables, some after data.
        if views.len() < view_count && (step == 0 || rng.random_bool(0.3)) {
            let query = random_query(family, &mut rng);
            let name = format!("v{}", views.len());
            let create = format!("CREATE MATERIALIZED VIEW {name} AS {query}");
            server
                .session
                .execute(&create)
                .await
                .with_context(|| format!("seed {seed}: {create}"))?;
            history.push(create);
            views.push((name, query));
        }
        let change = random_change(&mut rng);
        server
            .session
            .execute(&change)
            .await
            .with_context(|| format!("seed {seed}: {change}"))?;
        history.push(change);
        for (name, query) in &views {
            let maintained = rows(&server.session, &format!("SELECT * FROM {name}")).await?;
            let recomputed = rows(&server.session, query).await?;
            if !same_rows(&maintained, &recomputed) {
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

async fn run_family(family: Family, first_seed: u64) -> Result<()> {
    let cases: u64 = std::env::var("TRIBUTARY_PROPERTY_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let first_seed: u64 = std::env::var("TRIBUTARY_PROPERTY_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(first_seed);
    for case in 0..cases {
        run_case(family, first_seed + case).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_equal_recomputation() -> Result<()> {
    run_family(Family::Aggregates, 20261125).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_equal_recomputation() -> Result<()> {
    run_family(Family::Joins, 20261128).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subqueries_equal_recomputation() -> Result<()> {
    run_family(Family::Subqueries, 31000000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_operations_equal_recomputation() -> Result<()> {
    run_family(Family::SetOperations, 32000000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_n_equals_recomputation() -> Result<()> {
    run_family(Family::TopN, 33000000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_on_views_equal_recomputation() -> Result<()> {
    run_family(Family::ViewsOnViews, 34000000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_windows_equal_recomputation() -> Result<()> {
    run_family(Family::TimeWindows, 35000000).await
}
