//! Temporal filters over the real server: rows leave a `ts > now() - INTERVAL` view and enter a
//! `ts <= now()` view as the clock passes their times, with no input (also inside a subquery);
//! a deleted row never enters; scheduled rows survive a restart; and now() anywhere else in a
//! view is 0A000.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio_postgres::Client;

use common::TestServer;

async fn ids(client: &Client, view: &str) -> Result<Vec<i32>> {
    let rows = client
        .query(&format!("SELECT id FROM {view} ORDER BY id"), &[])
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Polls `view` until it holds `expected`; fails after 20 seconds.
async fn wait_for(client: &Client, view: &str, expected: &[i32]) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let now = ids(client, view).await?;
        if now == expected {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(20) {
            bail!("{view} holds {now:?}, not {expected:?}, after 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_enter_and_leave_with_the_clock() -> Result<()> {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE events (id INT, ts TIMESTAMPTZ);
             CREATE MATERIALIZED VIEW recent AS SELECT id FROM events WHERE ts > now() - INTERVAL '2 seconds';
             CREATE MATERIALIZED VIEW arrived AS SELECT id FROM events WHERE now() >= ts AND id > 0;
             CREATE MATERIALIZED VIEW recent_by_subquery AS SELECT id FROM events
               WHERE id IN (SELECT id FROM events WHERE ts > now() - INTERVAL '2 seconds');
             INSERT INTO events VALUES (1, now()), (2, now() - INTERVAL '10 seconds'),
               (3, now() + INTERVAL '1 second'), (4, now() + INTERVAL '1 hour'), (5, NULL);",
        )
        .await?;
    assert_eq!(ids(&client, "recent").await?, vec![1, 3, 4]);
    assert_eq!(ids(&client, "arrived").await?, vec![1, 2]);
    // Row 3 arrives after about a second, row 1 leaves after about two; nothing is written.
    wait_for(&client, "arrived", &[1, 2, 3]).await?;
    wait_for(&client, "recent", &[3, 4]).await?;
    // now() inside a subquery is live too.
    wait_for(&client, "recent_by_subquery", &[3, 4]).await?;
    // A row deleted before its time never enters.
    client
        .batch_execute(
            "INSERT INTO events VALUES (6, now() + INTERVAL '500 milliseconds');
             DELETE FROM events WHERE id = 6;
             INSERT INTO events VALUES (7, now() + INTERVAL '600 milliseconds');",
        )
        .await?;
    wait_for(&client, "arrived", &[1, 2, 3, 7]).await?;
    assert_eq!(ids(&client, "arrived").await?, vec![1, 2, 3, 7]);
    // Far from every boundary now: the views equal their queries run ad hoc.
    for (view, query) in [
        (
            "recent",
            "SELECT id FROM events WHERE ts > now() - INTERVAL '2 seconds'",
        ),
        (
            "arrived",
            "SELECT id FROM events WHERE now() >= ts AND id > 0",
        ),
    ] {
        let rows = client.query(&format!("{query} ORDER BY id"), &[]).await?;
        let expected: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
        assert_eq!(ids(&client, view).await?, expected, "{view}");
    }
    for refused in [
        "CREATE MATERIALIZED VIEW stamped AS SELECT id, now() AS seen FROM events",
        "CREATE MATERIALIZED VIEW exact AS SELECT id FROM events WHERE ts = now()",
        "CREATE MATERIALIZED VIEW monthly AS SELECT id FROM events WHERE ts > now() - INTERVAL '1 month'",
    ] {
        let error = client.batch_execute(refused).await.err().and_then(|error| {
            error
                .as_db_error()
                .map(|error| error.code().code().to_string())
        });
        assert_eq!(error.as_deref(), Some("0A000"), "{refused}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rows_survive_a_restart() -> Result<()> {
    let directory = std::env::temp_dir().join(format!("tributary-temporal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    let config = || tributary::Config {
        data_dir: Some(directory.clone()),
        checkpoint_interval: Duration::from_millis(100),
        ..tributary::Config::in_memory()
    };
    let server = TestServer::start_with(config()).await?;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE events (id INT, ts TIMESTAMPTZ);
             CREATE MATERIALIZED VIEW arrived AS SELECT id FROM events WHERE ts <= now();
             INSERT INTO events VALUES (1, now()), (2, now() + INTERVAL '3 seconds');",
        )
        .await?;
    assert_eq!(ids(&client, "arrived").await?, vec![1]);
    drop(client);
    server.stop().await;
    let server = TestServer::start_with(config()).await?;
    let client = server.connect().await;
    assert_eq!(ids(&client, "arrived").await?, vec![1]);
    wait_for(&client, "arrived", &[1, 2]).await?;
    drop(client);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&directory);
    Ok(())
}
