//! A second oracle: the property tests' random workloads and views also run on a real
//! PostgreSQL server, and every maintained view must hold what Postgres returns for its query
//! over the same tables. Both answers travel the same way (the Postgres wire protocol, text
//! format), so NULLs, numeric scales, text and booleans are compared as a client sees them.
//!
//! The Postgres server is `scripts/postgres` (Debian's package, a cluster on 127.0.0.1:5499
//! with the C locale), or the one `TRIBUTARY_POSTGRES_URL` names. `TRIBUTARY_ORACLE_CASES`
//! (default 300 per family) sets the number of cases; `TRIBUTARY_PROPERTY_SEED` replays one.

mod common;

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

use common::TestServer;
use common::postgres::{agree, answer, postgres};
use common::workload::{BASE_VIEWS, Family, TABLES, random_change, random_query};

/// `query` as Postgres can run it: TUMBLE and HOP expanded into the SQL Tributary plans for
/// them, which is Postgres SQL too.
fn for_postgres(query: &str) -> Result<String> {
    let statements = tributary::sql::parse(query)?;
    Ok(statements
        .iter()
        .map(|statement| statement.to_string())
        .collect::<Vec<_>>()
        .join("; "))
}

async fn run_case(
    family: Family,
    seed: u64,
    tributary: &Client,
    postgres: &Client,
    schema: &str,
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    postgres
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET search_path = {schema}"
        ))
        .await?;
    let mut history: Vec<String> = Vec::new();
    let mut setup: Vec<&str> = TABLES.to_vec();
    if matches!(family, Family::ViewsOnViews) {
        setup.extend(BASE_VIEWS);
    }
    for statement in &setup {
        tributary
            .batch_execute(statement)
            .await
            .with_context(|| statement.to_string())?;
        // Postgres does not maintain materialized views; a plain view answers the same.
        let for_postgres = statement.replace("CREATE MATERIALIZED VIEW", "CREATE VIEW");
        postgres
            .batch_execute(&for_postgres)
            .await
            .with_context(|| for_postgres.clone())?;
        history.push(statement.to_string());
    }
    let mut views: Vec<(String, String)> = Vec::new();
    let view_count = rng.random_range(1..=3);
    let steps = rng.random_range(3..=10);
    for step in 0..steps {
        if views.len() < view_count && (step == 0 || rng.random_bool(0.3)) {
            let query = random_query(family, &mut rng);
            let name = format!("oracle_{}", views.len());
            let create = format!("CREATE MATERIALIZED VIEW {name} AS {query}");
            tributary
                .batch_execute(&create)
                .await
                .with_context(|| format!("seed {seed}: {create}"))?;
            history.push(create);
            views.push((name, query));
        }
        let change = random_change(&mut rng);
        for client in [tributary, postgres] {
            client
                .batch_execute(&change)
                .await
                .with_context(|| format!("seed {seed}: {change}"))?;
        }
        history.push(change);
        for (name, query) in &views {
            let maintained = answer(tributary, &format!("SELECT * FROM {name}")).await?;
            let expected = answer(postgres, &for_postgres(query)?).await?;
            if !agree(&maintained, &expected) {
                bail!(
                    "seed {seed}: view {name} ({query}) differs from PostgreSQL after:\n{}\ntributary: {:?}\npostgres:  {:?}",
                    history.join(";\n"),
                    maintained.0,
                    expected.0
                );
            }
        }
    }
    Ok(())
}

async fn run_family(family: Family, first_seed: u64) -> Result<()> {
    let cases: u64 = std::env::var("TRIBUTARY_ORACLE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let first_seed: u64 = std::env::var("TRIBUTARY_PROPERTY_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(first_seed);
    let postgres = postgres().await?;
    // Each family has its own schema in Postgres, so the families run side by side.
    let schema = format!("oracle_{family:?}").to_lowercase();
    for case in 0..cases {
        // Each case on a fresh in-process server; Postgres starts each in a fresh schema.
        let server = TestServer::start().await;
        let tributary = server.connect().await;
        run_case(family, first_seed + case, &tributary, &postgres, &schema).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_match_postgres() -> Result<()> {
    run_family(Family::Aggregates, 41000000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_match_postgres() -> Result<()> {
    run_family(Family::Joins, 42000000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subqueries_match_postgres() -> Result<()> {
    run_family(Family::Subqueries, 43000000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_operations_match_postgres() -> Result<()> {
    run_family(Family::SetOperations, 44000000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_n_matches_postgres() -> Result<()> {
    run_family(Family::TopN, 45000000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_on_views_match_postgres() -> Result<()> {
    run_family(Family::ViewsOnViews, 46000000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_windows_match_postgres() -> Result<()> {
    run_family(Family::TimeWindows, 47000000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_functions_match_postgres() -> Result<()> {
    run_family(Family::WindowFunctions, 47000000).await
}
