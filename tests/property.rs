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
//! Views that emit on window close have their own oracle (`event_time_...` below): the test
//! tracks, per view, which changes arrived behind the view's watermark, and the view must equal
//! its query over the on-time rows, restricted to the windows the watermark has closed; its
//! count of late rows must match too.
//!
//! `TRIBUTARY_PROPERTY_CASES` (default 1000 per family) sets the number of cases (a soak run
//! sets it high) and `TRIBUTARY_PROPERTY_SEED` replays a failing run.

mod common;

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
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
    /// A server on `directory`, or in memory without one, whose keyed operators run `workers`
    /// copies each.
    async fn start(
        directory: Option<&Path>,
        checkpoint_interval: Duration,
        workers: usize,
    ) -> Result<Server> {
        let (shutdown, receiver) = tokio::sync::watch::channel(false);
        let config = Config {
            data_dir: directory.map(Path::to_path_buf),
            checkpoint_interval,
            workers,
            ..Config::in_memory()
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

/// Copies a directory tree that is being written: entries renamed or removed meanwhile are
/// skipped.
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

/// Copies the live directory under `root` as a crash would leave it, recovers a new server from
/// the copy with `workers` (the views' state is spread over them by key), and stops the old
/// one.
async fn crash_and_recover(
    server: Server,
    root: &Path,
    checkpoint_interval: Duration,
    workers: usize,
) -> Result<Server> {
    let crashed = root.join("1");
    copy_as_a_crash_leaves_it(&root.join("0"), &crashed)?;
    let recovered = Server::start(Some(&crashed), checkpoint_interval, workers).await?;
    server.stop().await;
    Ok(recovered)
}

/// Copies a live data directory into a state a crash could leave. The copy is not one instant,
/// so it is ordered: the log first, then the checkpoints, each newer than the log it follows
/// (what the log lacks they hold). A checkpoint is never changed once in place, only removed
/// once two newer ones are; if one the copy took was removed meanwhile, the copy may hold it
/// torn and nothing newer, which no crash leaves, so the copy is taken again.
fn copy_as_a_crash_leaves_it(live: &Path, to: &Path) -> Result<()> {
    let checkpoints = |root: &Path| -> Result<Vec<std::ffi::OsString>> {
        match std::fs::read_dir(root.join("checkpoints")) {
            Ok(entries) => Ok(entries
                .flatten()
                .map(|entry| entry.file_name())
                .filter(|name| !name.to_string_lossy().starts_with("tmp-"))
                .collect()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(error) => Err(error.into()),
        }
    };
    for _ in 0..100 {
        let _ = std::fs::remove_dir_all(to);
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(live)?.flatten() {
            let target = to.join(entry.file_name());
            if entry.file_name() == "checkpoints" {
                continue;
            } else if entry.path().is_dir() {
                copy_directory(&entry.path(), &target)?;
            } else {
                std::fs::copy(entry.path(), &target)?;
            }
        }
        copy_directory(&live.join("checkpoints"), &to.join("checkpoints"))?;
        let still_there = checkpoints(live)?;
        if checkpoints(to)?
            .iter()
            .all(|name| still_there.contains(name))
        {
            return Ok(());
        }
    }
    bail!("checkpoints were removed during each of 100 copies")
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
    // One to four workers, whatever the machine's cores: a split of the rows
    // must not change any view.
    let workers = rng.random_range(1..=4);
    let mut server = Server::start(directory, checkpoint_interval, workers).await?;
    let mut history: Vec<String> = vec![format!("-- {workers} workers")];
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
            let workers = rng.random_range(1..=4);
            server = crash_and_recover(server, &root, checkpoint_interval, workers)
                .await
                .with_context(|| format!("seed {seed}: recovery after {}", history.join(";\n")))?;
            history.push(format!("-- crash and recover with {workers} workers"));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_functions_equal_recomputation() -> Result<()> {
    run_family(Family::WindowFunctions, 36000000).await
}

/// Event times in the event-time cases: seconds after 2026-11-28 10:00:00.
fn event_time(seconds: i64) -> String {
    format!(
        "2026-11-28 {:02}:{:02}:{:02}",
        10 + seconds / 3600,
        (seconds / 60) % 60,
        seconds % 60
    )
}

/// One row of the event-time table `e`: (k, v, event time in seconds or NULL).
type EventRow = (i64, i64, Option<i64>);

/// What the test expects of one view that emits on window close: the rows it accepted (on
/// time), kept in the shadow table `accepted_<view>`, its watermark and its late rows.
struct WindowCloseModel {
    name: String,
    /// The query with `{relation}` standing for the table it reads.
    query: String,
    /// Keeps only the windows closed at a watermark `{watermark}`.
    closed: String,
    watermark: Option<i64>,
    late_rows: i64,
}

impl WindowCloseModel {
    /// Applies one statement's changes (one epoch): deletions of `deleted` rows and insertions
    /// of `inserted` ones, each on time when its event time is at or after the watermark the
    /// epoch began with. Returns the shadow table's changes.
    fn apply(
        &mut self,
        deleted: &[(i64, EventRow)],
        inserted: &[(i64, EventRow)],
        delay: i64,
    ) -> Vec<String> {
        let on_time = |row: &EventRow| {
            row.2
                .is_some_and(|time| self.watermark.is_none_or(|watermark| time >= watermark))
        };
        let mut statements = Vec::new();
        // A late deletion leaves the old version of the row in the view: versions of one row
        // differ in v (updates add 1), so (id, v) names one.
        let mut removed = Vec::new();
        for (id, row) in deleted {
            if on_time(row) {
                removed.push(format!("(id = {id} AND v = {})", row.1));
            } else {
                self.late_rows += 1;
            }
        }
        let mut added = Vec::new();
        let mut greatest = None;
        for (id, row) in inserted {
            if on_time(row) {
                added.push((*id, *row));
                greatest = greatest.max(row.2);
            } else {
                self.late_rows += 1;
            }
        }
        if !removed.is_empty() {
            statements.push(format!(
                "DELETE FROM accepted_{} WHERE {}",
                self.name,
                removed.join(" OR ")
            ));
        }
        if !added.is_empty() {
            let values: Vec<String> = added
                .iter()
                .map(|(id, (k, v, time))| {
                    format!(
                        "({id}, {k}, {v}, {})",
                        time.map_or("NULL".to_string(), |t| format!("'{}'", event_time(t)))
                    )
                })
                .collect();
            statements.push(format!(
                "INSERT INTO accepted_{} VALUES {}",
                self.name,
                values.join(", ")
            ));
        }
        if let Some(greatest) = greatest {
            self.watermark = self.watermark.max(Some(greatest - delay));
        }
        statements
    }

    fn expected_query(&self) -> String {
        let query = self
            .query
            .replace("{relation}", &format!("accepted_{}", self.name));
        let closed = match self.watermark {
            Some(watermark) => self.closed.replace(
                "{watermark}",
                &format!("TIMESTAMP '{}'", event_time(watermark)),
            ),
            None => "FALSE".to_string(),
        };
        format!("SELECT * FROM ({query}) AS q WHERE {closed}")
    }
}

/// A random windowed query that emits on window close, and its closed-window condition.
fn random_window_close_query(rng: &mut StdRng) -> (String, String) {
    let size = [5, 10, 20].choose(rng).copied().unwrap_or(10);
    let slide = [5, 10].choose(rng).copied().unwrap_or(5);
    match rng.random_range(0..4) {
        0 => (
            format!(
                "SELECT window_start, window_end, count(*) AS n, sum(v) AS s \
                 FROM TUMBLE({{relation}}, ts, INTERVAL '{size} seconds') GROUP BY window_start, window_end"
            ),
            "q.window_end <= {watermark}".to_string(),
        ),
        1 => (
            format!(
                "SELECT window_end, k, max(v) AS m, count(DISTINCT v) AS d \
                 FROM HOP({{relation}}, ts, INTERVAL '{slide} seconds', INTERVAL '{}' SECOND) GROUP BY window_end, k",
                slide * 3
            ),
            "q.window_end <= {watermark}".to_string(),
        ),
        2 => (
            format!(
                "SELECT window_start, k, avg(v) AS a FROM TUMBLE({{relation}}, ts, INTERVAL '{size} seconds') \
                 WHERE v > 0 GROUP BY window_start, k HAVING count(*) > 1"
            ),
            format!("q.window_start + INTERVAL '{size} seconds' <= {{watermark}}"),
        ),
        _ => (
            format!(
                "SELECT window_start, min(v) AS lo, string_agg(CAST(k AS TEXT), ',' ORDER BY k) AS ks \
                 FROM HOP({{relation}}, ts, INTERVAL '{slide} seconds', INTERVAL '20 seconds') GROUP BY window_start"
            ),
            "q.window_start + INTERVAL '20 seconds' <= {watermark}".to_string(),
        ),
    }
}

async fn run_event_time_case(seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let root = std::env::temp_dir().join(format!(
        "tributary-property-{}-event-time-{seed}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&root);
    let durable = rng.random_bool(0.2);
    let checkpoint_interval = Duration::from_millis(rng.random_range(1..30));
    let live = root.join("0");
    let mut server = Server::start(
        durable.then_some(live.as_path()),
        checkpoint_interval,
        rng.random_range(1..=4),
    )
    .await?;
    let delay = [0, 3, 10].choose(&mut rng).copied().unwrap_or(3);
    let mut history = vec![format!(
        "CREATE TABLE e (id BIGINT, k INT, v BIGINT, ts TIMESTAMP, \
         WATERMARK FOR ts AS ts - INTERVAL '{delay} seconds')"
    )];
    server.session.execute(&history[0]).await?;
    let mut table: BTreeMap<i64, EventRow> = BTreeMap::new();
    let mut next_id = 0i64;
    let mut models: Vec<WindowCloseModel> = Vec::new();
    let view_count = rng.random_range(1..=3);
    let steps = rng.random_range(4..=14);
    let crash_at = durable.then(|| rng.random_range(0..steps));
    for step in 0..steps {
        if crash_at == Some(step) {
            let workers = rng.random_range(1..=4);
            server = crash_and_recover(server, &root, checkpoint_interval, workers)
                .await
                .with_context(|| format!("seed {seed}: recovery after {}", history.join(";\n")))?;
            history.push(format!("-- crash and recover with {workers} workers"));
        }
        if models.len() < view_count && (step == 0 || rng.random_bool(0.3)) {
            let (query, closed) = random_window_close_query(&mut rng);
            let name = format!("v{}", models.len());
            let create = format!(
                "CREATE TABLE accepted_{name} (id BIGINT, k INT, v BIGINT, ts TIMESTAMP); \
                 CREATE MATERIALIZED VIEW {name} AS {} EMIT ON WINDOW CLOSE",
                query.replace("{relation}", "e")
            );
            server
                .session
                .execute(&create)
                .await
                .with_context(|| format!("seed {seed}: {create}"))?;
            history.push(create);
            let mut model = WindowCloseModel {
                name,
                query,
                closed,
                watermark: None,
                late_rows: 0,
            };
            // The view starts from the table as it is: one epoch inserting every row.
            let current: Vec<(i64, EventRow)> = table.iter().map(|(id, row)| (*id, *row)).collect();
            for statement in model.apply(&[], &current, delay) {
                server.session.execute(&statement).await?;
            }
            models.push(model);
        }
        // Event times move forward about 4 seconds a step, jittered back and forth so that
        // some rows arrive behind the watermark.
        let now = 60 + step as i64 * 4;
        let (deleted, inserted, statement) = match rng.random_range(0..10) {
            0..=5 => {
                let rows: Vec<(i64, EventRow)> = (0..rng.random_range(1..=8))
                    .map(|_| {
                        next_id += 1;
                        let time =
                            (!rng.random_bool(0.05)).then(|| now + rng.random_range(-15..=8));
                        (
                            next_id,
                            (rng.random_range(0..4), rng.random_range(-20..20), time),
                        )
                    })
                    .collect();
                let values: Vec<String> = rows
                    .iter()
                    .map(|(id, (k, v, time))| {
                        format!(
                            "({id}, {k}, {v}, {})",
                            time.map_or("NULL".to_string(), |t| format!("'{}'", event_time(t)))
                        )
                    })
                    .collect();
                let statement = format!("INSERT INTO e VALUES {}", values.join(", "));
                (Vec::new(), rows, statement)
            }
            6..=7 => {
                let ids: Vec<i64> = table
                    .keys()
                    .copied()
                    .filter(|_| rng.random_bool(0.2))
                    .collect();
                let rows: Vec<(i64, EventRow)> = ids.iter().map(|id| (*id, table[id])).collect();
                let list: Vec<String> = ids.iter().map(i64::to_string).collect();
                let statement = format!(
                    "DELETE FROM e WHERE id IN ({})",
                    list.join(", ").max("-1".to_string())
                );
                (rows, Vec::new(), statement)
            }
            _ => {
                let ids: Vec<i64> = table
                    .keys()
                    .copied()
                    .filter(|_| rng.random_bool(0.2))
                    .collect();
                let old: Vec<(i64, EventRow)> = ids.iter().map(|id| (*id, table[id])).collect();
                let new: Vec<(i64, EventRow)> = old
                    .iter()
                    .map(|(id, (k, v, time))| (*id, (*k, v + 1, time.map(|t| t + 3))))
                    .collect();
                let list: Vec<String> = ids.iter().map(i64::to_string).collect();
                let statement = format!(
                    "UPDATE e SET v = v + 1, ts = ts + INTERVAL '3 seconds' WHERE id IN ({})",
                    list.join(", ").max("-1".to_string())
                );
                (old, new, statement)
            }
        };
        server
            .session
            .execute(&statement)
            .await
            .with_context(|| format!("seed {seed}: {statement}"))?;
        history.push(statement);
        for (id, _) in &deleted {
            table.remove(id);
        }
        for (id, row) in &inserted {
            table.insert(*id, *row);
        }
        for model in &mut models {
            for statement in model.apply(&deleted, &inserted, delay) {
                server.session.execute(&statement).await?;
            }
            let maintained =
                rows(&server.session, &format!("SELECT * FROM {}", model.name)).await?;
            let expected_query = model.expected_query();
            let expected = rows(&server.session, &expected_query).await?;
            let late = rows(
                &server.session,
                &format!(
                    "SELECT late_rows FROM tributary.late_rows WHERE view = '{}'",
                    model.name
                ),
            )
            .await?;
            if !same_rows(&maintained, &expected) || late != vec![model.late_rows.to_string()] {
                bail!(
                    "seed {seed}: view {} diverged after:\n{}\nmaintained: {maintained:#?}\nexpected ({expected_query}): {expected:#?}\nlate rows {late:?}, expected {}",
                    model.name,
                    history.join(";\n"),
                    model.late_rows
                );
            }
        }
    }
    server.stop().await;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_time_views_equal_recomputation_of_on_time_rows() -> Result<()> {
    let cases: u64 = std::env::var("TRIBUTARY_PROPERTY_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let first_seed: u64 = std::env::var("TRIBUTARY_PROPERTY_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(36000000);
    for case in 0..cases {
        run_event_time_case(first_seed + case).await?;
    }
    Ok(())
}
