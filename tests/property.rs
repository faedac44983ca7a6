//! Property test: random GROUP BY views under random inserts, updates and deletes in random batch
//! sizes. After every statement each maintained view must equal its query recomputed by
//! DataFusion over the table's current rows.
//!
//! `TRIBUTARY_PROPERTY_CASES` (default 300) sets the number of cases and
//! `TRIBUTARY_PROPERTY_SEED` replays a failing run.

use anyhow::{Context, Result, bail};
use datafusion::arrow::util::display::array_value_to_string;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tributary::coordinator::Coordinator;
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

async fn run_case(seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (_shutdown, receiver) = tokio::sync::watch::channel(false);
    let session = Session::new(Coordinator::start(receiver)?)?;
    session
        .execute("CREATE TABLE t (k1 INT, k2 TEXT, v BIGINT, f DOUBLE PRECISION, d NUMERIC(6,2))")
        .await?;
    let mut history = Vec::new();
    let mut views = Vec::new();
    let view_count = rng.random_range(1..=3);
    let steps = rng.random_range(3..=12);
    for step in 0..steps {
        // Views are created at random points: some over an empty table, some after data.
        if views.len() < view_count && (step == 0 || rng.random_bool(0.3)) {
            let query = random_query(&mut rng);
            let name = format!("v{}", views.len());
            let create = format!("CREATE MATERIALIZED VIEW {name} AS {query}");
            session
                .execute(&create)
                .await
                .with_context(|| create.clone())?;
            history.push(create);
            views.push((name, query));
        }
        let change = random_change(&mut rng);
        session
            .execute(&change)
            .await
            .with_context(|| change.clone())?;
        history.push(change);
        for (name, query) in &views {
            let maintained = rows(&session, &format!("SELECT * FROM {name}")).await?;
            let recomputed = rows(&session, query).await?;
            if maintained != recomputed {
                bail!(
                    "seed {seed}: view {name} ({query}) diverged after:\n{}\nmaintained: {maintained:#?}\nrecomputed: {recomputed:#?}",
                    history.join(";\n")
                );
            }
        }
    }
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
