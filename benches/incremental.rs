//! End-to-end benchmark of incremental maintenance, through the real server and a real driver.
//!
//! `cargo bench --bench incremental` prints:
//! - the latency of a one-row INSERT until the view shows it, for a GROUP BY view (1,000 groups,
//!   sum and count) over a table of 100,000 rows and of 10,000,000 rows;
//! - the time to recompute the same query over the whole table, for comparison;
//! - rows/s of a bulk INSERT ... SELECT into a table with three views on it;
//! - the latency of a one-row INSERT at the end of one window partition (ROW_NUMBER, LAG and a
//!   running sum over it) of 10,000 and of 1,000,000 rows.
//!
//! `TRIBUTARY_BENCH_ONLY=window` runs only the last.
//! `TRIBUTARY_BENCH_LARGE` overrides the large table size (default 10,000,000).

mod common;

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use common::{percentile, start_server};

async fn load(client: &Client, table: &str, rows: u64) {
    // In chunks, so that one statement never holds the whole table in flight.
    let chunk = 1_000_000;
    let mut start = 1;
    while start <= rows {
        let end = (start + chunk - 1).min(rows);
        client
            .batch_execute(&format!(
                "INSERT INTO {table} SELECT i % 1000, i FROM generate_series({start}, {end}) AS s(i)"
            ))
            .await
            .expect("load");
        start = end + 1;
    }
}

/// A one-row INSERT's latency: until the statement returns (when every view already reflects
/// it), and until a following SELECT of the changed group has read it.
struct Latency {
    insert_median: Duration,
    insert_and_read_median: Duration,
    insert_and_read_p99: Duration,
    recompute: Duration,
}

async fn single_row_latency(client: &Client, rows: u64) -> Latency {
    let table = format!("t{rows}");
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (g INT, v BIGINT);
             CREATE MATERIALIZED VIEW {table}_agg AS SELECT g, sum(v) AS s, count(*) AS n FROM {table} GROUP BY g;"
        ))
        .await
        .expect("create");
    load(client, &table, rows).await;
    let insert = client
        .prepare(&format!("INSERT INTO {table} VALUES ($1, 1)"))
        .await
        .expect("prepare");
    let read = client
        .prepare(&format!("SELECT n FROM {table}_agg WHERE g = $1"))
        .await
        .expect("prepare");
    let mut samples = Vec::new();
    let mut insert_samples = Vec::new();
    for round in 0..300i32 {
        let group = round % 1000;
        let before: i64 = client
            .query_one(&read, &[&group])
            .await
            .expect("read")
            .get(0);
        let started = Instant::now();
        client.execute(&insert, &[&group]).await.expect("insert");
        insert_samples.push(started.elapsed());
        let after: i64 = client
            .query_one(&read, &[&group])
            .await
            .expect("read")
            .get(0);
        samples.push(started.elapsed());
        assert_eq!(
            after,
            before + 1,
            "the view must show the insert once it returned"
        );
    }
    let insert_and_read_median = percentile(&mut samples, 0.5);
    let insert_and_read_p99 = percentile(&mut samples, 0.99);
    let insert_median = percentile(&mut insert_samples, 0.5);
    let mut recompute = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        client
            .query(
                &format!("SELECT g, sum(v), count(*) FROM {table} GROUP BY g"),
                &[],
            )
            .await
            .expect("recompute");
        recompute.push(started.elapsed());
    }
    Latency {
        insert_median,
        insert_and_read_median,
        insert_and_read_p99,
        recompute: percentile(&mut recompute, 0.5),
    }
}

async fn bulk_insert(client: &Client) -> f64 {
    client
        .batch_execute(
            "CREATE TABLE bulk (g INT, v BIGINT, f DOUBLE PRECISION);
             CREATE MATERIALIZED VIEW bulk_a AS SELECT g, sum(v) AS s, count(*) AS n FROM bulk GROUP BY g;
             CREATE MATERIALIZED VIEW bulk_b AS SELECT g % 10 AS bucket, max(f) AS top, avg(v) AS mean FROM bulk GROUP BY g % 10;
             CREATE MATERIALIZED VIEW bulk_c AS SELECT count(*) AS n, min(v) AS low FROM bulk WHERE v % 2 = 0;",
        )
        .await
        .expect("create");
    let rows = 1_000_000u64;
    let started = Instant::now();
    for chunk in 0..10u64 {
        let start = chunk * rows / 10 + 1;
        let end = (chunk + 1) * rows / 10;
        client
            .batch_execute(&format!(
                "INSERT INTO bulk SELECT i % 1000, i, i * 0.5 FROM generate_series({start}, {end}) AS s(i)"
            ))
            .await
            .expect("bulk insert");
    }
    rows as f64 / started.elapsed().as_secs_f64()
}

/// The median latency of a one-row INSERT at the end of a window view's only partition of
/// `rows` rows, and the time the view took to build over them.
async fn window_insert_latency(client: &Client, rows: u64) -> (Duration, Duration) {
    let table = format!("w{rows}");
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (t BIGINT, v BIGINT);
             INSERT INTO {table} SELECT i, i % 7 FROM generate_series(1, {rows}) AS s(i);"
        ))
        .await
        .expect("create");
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "CREATE MATERIALIZED VIEW {table}_window AS SELECT t, v,
                 row_number() OVER (ORDER BY t) AS n,
                 lag(v) OVER (ORDER BY t) AS previous,
                 sum(v) OVER (ORDER BY t) AS running
             FROM {table}"
        ))
        .await
        .expect("create view");
    let build = started.elapsed();
    let insert = client
        .prepare(&format!("INSERT INTO {table} VALUES ($1, 1)"))
        .await
        .expect("prepare");
    let mut samples = Vec::new();
    for round in 1..=200i64 {
        let started = Instant::now();
        client
            .execute(&insert, &[&(rows as i64 + round)])
            .await
            .expect("insert");
        samples.push(started.elapsed());
    }
    let number: i64 = client
        .query_one(
            &format!("SELECT n FROM {table}_window WHERE t = $1"),
            &[&(rows as i64 + 200)],
        )
        .await
        .expect("read")
        .get(0);
    assert_eq!(number, rows as i64 + 200, "the last row's number");
    (percentile(&mut samples, 0.5), build)
}

async fn window_figures(client: &Client) {
    println!("one-row INSERT at the end of a window partition (row_number, lag, running sum):");
    let mut medians = Vec::new();
    for rows in [10_000u64, 1_000_000] {
        let (median, build) = window_insert_latency(client, rows).await;
        println!(
            "  partition of {rows} rows: INSERT median {:.3} ms (view built in {:.2} s)",
            median.as_secs_f64() * 1e3,
            build.as_secs_f64()
        );
        medians.push(median);
    }
    println!(
        "  1,000,000/10,000 median ratio: {:.2}",
        medians[1].as_secs_f64() / medians[0].as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|argument| argument == "--list") {
        return;
    }
    let large: u64 = std::env::var("TRIBUTARY_BENCH_LARGE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000_000);
    let (client, _shutdown) = start_server().await;
    if std::env::var("TRIBUTARY_BENCH_ONLY").as_deref() == Ok("window") {
        window_figures(&client).await;
        return;
    }
    println!("one-row INSERT into a table with a GROUP BY view (1,000 groups, sum + count):");
    let mut medians = Vec::new();
    for rows in [100_000u64, large] {
        let latency = single_row_latency(&client, rows).await;
        let milliseconds = |duration: Duration| duration.as_secs_f64() * 1e3;
        println!("  table of {rows} rows:");
        println!(
            "    INSERT returned (the view reflects it): median {:.3} ms",
            milliseconds(latency.insert_median)
        );
        println!(
            "    INSERT + SELECT that reads the change:  median {:.3} ms, p99 {:.3} ms",
            milliseconds(latency.insert_and_read_median),
            milliseconds(latency.insert_and_read_p99)
        );
        println!(
            "    recomputing the query over the table:   {:.3} ms ({:.0}x the INSERT, {:.0}x INSERT + SELECT)",
            milliseconds(latency.recompute),
            latency.recompute.as_secs_f64() / latency.insert_median.as_secs_f64(),
            latency.recompute.as_secs_f64() / latency.insert_and_read_median.as_secs_f64()
        );
        medians.push((latency.insert_median, latency.insert_and_read_median));
    }
    println!(
        "  large/small median ratio: {:.2} (INSERT), {:.2} (INSERT + SELECT)",
        medians[1].0.as_secs_f64() / medians[0].0.as_secs_f64(),
        medians[1].1.as_secs_f64() / medians[0].1.as_secs_f64()
    );
    let rate = bulk_insert(&client).await;
    println!("bulk INSERT ... SELECT into a table with three views: {rate:.0} rows/s");
    window_figures(&client).await;
}
