//! Restarts on the same data directory: every object kind comes back with its rows, views hold
//! what they held, sources continue where they stopped; a corrupted newest checkpoint falls back
//! to the previous one; a directory in another format is refused.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::TestServer;
use common::kafka::{self, Record};
use tributary::Config;

/// A fresh data directory for one test.
/// Produces each of `values` as a message without key to `topic`, on any partition.
fn produce_values(topic: &str, values: &[Vec<u8>]) {
    let records: Vec<Record> = values
        .iter()
        .map(|value| Record {
            value: Some(value),
            ..Default::default()
        })
        .collect();
    kafka::produce(topic, &records);
}

fn data_directory(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("tributary-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

fn config(path: &Path) -> Config {
    Config {
        data_dir: Some(path.to_path_buf()),
        checkpoint_interval: Duration::from_millis(200),
        ..Config::in_memory()
    }
}

/// A server on `directory` and a client of it; `what` names the start in a failure.
async fn start(directory: &Path, what: &str) -> (TestServer, tokio_postgres::Client) {
    let server = TestServer::start_with(config(directory))
        .await
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    let client = server.connect().await;
    (server, client)
}

/// A server on `directory` that checkpoints only when it stops, so that what it does before is
/// recovered from the log; and a client of it.
async fn start_without_checkpoints(directory: &Path) -> (TestServer, tokio_postgres::Client) {
    let without_checkpoints = Config {
        checkpoint_interval: Duration::from_secs(3600),
        ..config(directory)
    };
    let server = TestServer::start_with(without_checkpoints)
        .await
        .expect("start");
    let client = server.connect().await;
    (server, client)
}

/// Rows of a query as text, in the query's order.
async fn rows(client: &tokio_postgres::Client, query: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(query)
        .await
        .unwrap_or_else(|error| panic!("{query}: {error}"))
        .into_iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|index| row.get(index).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Rows of a query as one line: values joined by spaces, rows by `|` (NULL as empty).
async fn rows_as_text(client: &tokio_postgres::Client, query: &str) -> String {
    rows(client, query)
        .await
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|value| value.unwrap_or_default())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("|")
}

async fn execute(client: &tokio_postgres::Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// A copy of a running server's data directory, named `name`: what a crash at this moment
/// would leave.
fn crash_copy(directory: &Path, name: &str) -> PathBuf {
    let crashed = data_directory(name);
    std::fs::create_dir_all(&crashed).expect("copy");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", directory.display()))
        .arg(&crashed)
        .status()
        .expect("cp");
    assert!(copied.success(), "copy the data directory");
    crashed
}

/// Copies `directory` as a crash of `server` would leave it, stops the server (which leaves a
/// checkpoint), and runs `check` on a server recovered from each: the copy by replaying the
/// log, the directory from its checkpoint. Both directories are removed after.
async fn check_both_recoveries<Check, Checked>(
    server: TestServer,
    client: tokio_postgres::Client,
    directory: &Path,
    name: &str,
    check: Check,
) where
    Check: Fn(tokio_postgres::Client, &'static str) -> Checked,
    Checked: std::future::Future<Output = tokio_postgres::Client>,
{
    let crashed = crash_copy(directory, &format!("{name}-crashed"));
    drop(client);
    server.stop().await;
    for (what, path) in [
        ("after the log", crashed.as_path()),
        ("after a checkpoint", directory),
    ] {
        let (server, client) = start(path, what).await;
        let client = check(client, what).await;
        drop(client);
        server.stop().await;
    }
    let _ = std::fs::remove_dir_all(&crashed);
    let _ = std::fs::remove_dir_all(directory);
}

/// A view's rows must equal its defining query run over the base data.
async fn assert_view_equals_query(client: &tokio_postgres::Client, view: &str, query: &str) {
    let maintained = rows(client, &format!("SELECT * FROM {view} ORDER BY 1")).await;
    let recomputed = rows(client, &format!("{query} ORDER BY 1")).await;
    assert_eq!(maintained, recomputed, "view {view}");
}

/// A message with a key (or none) and a value (or a tombstone).
fn message<'a>(key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> Record<'a> {
    Record {
        key,
        value,
        ..Default::default()
    }
}

fn json(key: i64, value: i64) -> Vec<u8> {
    format!(r#"{{"key": {key}, "value": {value}}}"#).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_kind_survives_a_restart() {
    let directory = data_directory("restart");
    let broker = kafka::bootstrap();
    let topic = kafka::unique_topic("durable-visits");
    let upserts = kafka::unique_topic("durable-upserts");
    let sink_topic = kafka::unique_topic("durable-sink");
    kafka::create_topic(&topic, 2);
    kafka::create_topic(&upserts, 1);
    let first: Vec<Vec<u8>> = (0..200).map(|n| json(n % 7, n)).collect();
    let records: Vec<Record> = first
        .iter()
        .enumerate()
        .map(|(n, value)| Record {
            value: Some(value),
            partition: Some((n % 2) as i32),
            ..Default::default()
        })
        .collect();
    kafka::produce(&topic, &records);
    kafka::produce(
        &upserts,
        &[
            message(Some(b"a"), Some(br#"{"v": 1}"#)),
            message(Some(b"b"), Some(br#"{"v": 2}"#)),
        ],
    );

    let (server, client) = start(&directory, "start").await;
    execute(
        &client,
        &format!(
            "CREATE TABLE orders (id INT PRIMARY KEY, product TEXT, amount NUMERIC(10, 2), at TIMESTAMP);
             INSERT INTO orders VALUES (1, 'apple', 1.50, '2026-01-01 10:00:00'), (2, 'pear', 2.25, NULL),
                                       (3, 'apple', 3.00, '2026-01-02 11:00:00'), (4, NULL, NULL, NULL);
             UPDATE orders SET amount = amount * 2 WHERE product = 'apple';
             DELETE FROM orders WHERE id = 2;
             CREATE VIEW apples AS SELECT * FROM orders WHERE product = 'apple';
             CREATE TABLE tickets (id SERIAL PRIMARY KEY, title TEXT);
             INSERT INTO tickets (title) VALUES ('a'), ('b'), ('c');
             CREATE MATERIALIZED VIEW per_product AS
               SELECT product, count(*) AS orders, sum(amount) AS total, avg(amount) AS average,
                      min(at) AS first, max(id) AS last_id
               FROM orders GROUP BY product;
             CREATE MATERIALIZED VIEW order_count AS SELECT count(*) AS n FROM orders;
             CREATE CONNECTION local_kafka TO KAFKA (BROKER '{broker}');
             CREATE SOURCE visits (key INT, value INT)
               FROM KAFKA (CONNECTION local_kafka, TOPIC '{topic}') FORMAT JSON;
             CREATE MATERIALIZED VIEW per_key AS
               SELECT key, sum(value) AS sum, count(*) AS n FROM visits GROUP BY key;
             CREATE MATERIALIZED VIEW big_keys AS SELECT key, sum FROM per_key WHERE sum > 2000;
             CREATE SOURCE latest (v INT) FROM KAFKA (BROKER '{broker}', TOPIC '{upserts}')
               FORMAT JSON ENVELOPE UPSERT INCLUDE KEY AS k;
             CREATE MATERIALIZED VIEW latest_total AS SELECT sum(v) AS total, count(*) AS n FROM latest;
             CREATE SINK per_key_out FROM per_key
               INTO KAFKA (CONNECTION local_kafka, TOPIC '{sink_topic}') KEY (key) FORMAT JSON ENVELOPE UPSERT;
             FLUSH;"
        ),
    )
    .await;
    let before_per_key = rows(&client, "SELECT * FROM per_key ORDER BY key").await;
    let before_products = rows(&client, "SELECT * FROM per_product ORDER BY product").await;
    assert_eq!(
        rows(&client, "SELECT count(*) FROM visits").await,
        vec![vec![Some("200".to_string())]]
    );
    drop(client);
    server.stop().await;

    // Messages that arrive while the server is down are read after the restart, once.
    let second: Vec<Vec<u8>> = (200..300).map(|n| json(n % 7, n)).collect();
    produce_values(&topic, &second);
    kafka::produce(
        &upserts,
        &[
            message(Some(b"a"), Some(br#"{"v": 10}"#)),
            message(Some(b"b"), None),
        ],
    );

    let (server, client) = start(&directory, "restart").await;
    // Before new data is read, the views hold exactly what they held.
    assert_eq!(
        rows(&client, "SELECT * FROM per_product ORDER BY product").await,
        before_products
    );
    let kinds = rows(
        &client,
        "SELECT name, kind FROM tributary.relations ORDER BY name",
    )
    .await;
    let names: Vec<String> = kinds
        .iter()
        .map(|row| {
            format!(
                "{} {}",
                row[0].as_deref().unwrap_or(""),
                row[1].as_deref().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "apples view",
            "big_keys materialized view",
            "latest source",
            "latest_total materialized view",
            "local_kafka connection",
            "order_count materialized view",
            "orders table",
            "per_key materialized view",
            "per_key_out sink",
            "per_product materialized view",
            "tickets table",
            "visits source",
        ]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT id, product, amount FROM orders ORDER BY id"
        )
        .await,
        vec![
            vec![Some("1".into()), Some("apple".into()), Some("3.00".into())],
            vec![Some("3".into()), Some("apple".into()), Some("6.00".into())],
            vec![Some("4".into()), None, None],
        ]
    );
    assert_eq!(
        rows(&client, "SELECT id FROM apples ORDER BY id").await,
        vec![vec![Some("1".into())], vec![Some("3".into())]]
    );
    execute(&client, "FLUSH").await;
    assert_eq!(
        rows(&client, "SELECT count(*), sum(value) FROM visits").await,
        vec![vec![
            Some("300".into()),
            Some((0..300).sum::<i64>().to_string())
        ]]
    );
    assert_ne!(
        rows(&client, "SELECT * FROM per_key ORDER BY key").await,
        before_per_key
    );
    assert_view_equals_query(
        &client,
        "per_key",
        "SELECT key, sum(value) AS sum, count(*) AS n FROM visits GROUP BY key",
    )
    .await;
    assert_view_equals_query(
        &client,
        "big_keys",
        "SELECT key, sum(value) AS sum FROM visits GROUP BY key HAVING sum(value) > 2000",
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT k, v FROM latest ORDER BY k").await,
        vec![vec![Some("a".into()), Some("10".into())]]
    );
    assert_eq!(
        rows(&client, "SELECT total, n FROM latest_total").await,
        vec![vec![Some("10".into()), Some("1".into())]]
    );

    // Writes after the restart maintain the restored views.
    execute(
        &client,
        "INSERT INTO orders VALUES (5, 'pear', 4.00, '2026-01-03 12:00:00');
         DELETE FROM orders WHERE id = 1;",
    )
    .await;
    // A serial column's sequence goes on after the greatest value the table held.
    assert_eq!(
        rows(
            &client,
            "INSERT INTO tickets (title) VALUES ('d') RETURNING id"
        )
        .await,
        vec![vec![Some("4".into())]]
    );
    // The primary key is enforced over the restored rows and what was written since.
    for duplicate in [3, 5] {
        let error = client
            .batch_execute(&format!(
                "INSERT INTO orders VALUES ({duplicate}, 'plum', 1.00, NULL)"
            ))
            .await
            .expect_err("a duplicate primary key after a restart");
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION),
            "{error}"
        );
    }
    execute(&client, "INSERT INTO orders VALUES (2, 'plum', 1.00, NULL)").await;
    execute(&client, "DELETE FROM orders WHERE id = 2").await;
    assert_view_equals_query(
        &client,
        "per_product",
        "SELECT product, count(*) AS orders, sum(amount) AS total, avg(amount) AS average,
                min(at) AS first, max(id) AS last_id FROM orders GROUP BY product",
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT n FROM order_count").await,
        vec![vec![Some("3".into())]]
    );
    // The sink kept writing: its topic ends with the view's current rows.
    let expected: std::collections::HashMap<String, String> =
        rows(&client, "SELECT key, sum, n FROM per_key")
            .await
            .into_iter()
            .map(|row| {
                let key = row[0].clone().unwrap_or_default();
                let value = format!(
                    r#"{{"key":{},"sum":{},"n":{}}}"#,
                    key,
                    row[1].clone().unwrap_or_default(),
                    row[2].clone().unwrap_or_default()
                );
                (format!(r#"{{"key":{key}}}"#), value)
            })
            .collect();
    let table = kafka::read_table(&sink_topic, Duration::from_secs(30), |table| {
        table == &expected
    });
    assert_eq!(table, expected);
    drop(client);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&directory);
}

/// An append-only source keeps no rows: checkpoints hold its offsets, and what a new view or a
/// SELECT needs of it is read back from the topic, before and after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_hold_a_sources_offsets_and_its_rows_are_read_back_from_kafka() {
    let directory = data_directory("read-back");
    let broker = kafka::bootstrap();
    let topic = kafka::unique_topic("read-back");
    kafka::create_topic(&topic, 2);
    let note = "n".repeat(200);
    let payloads: Vec<Vec<u8>> = (0..5000)
        .map(|n| format!(r#"{{"key": {}, "note": "{note}{n}"}}"#, n % 7).into_bytes())
        .collect();
    let records: Vec<Record> = payloads
        .iter()
        .enumerate()
        .map(|(n, value)| Record {
            value: Some(value),
            partition: Some((n % 2) as i32),
            ..Default::default()
        })
        .collect();
    kafka::produce(&topic, &records);
    let expected_counts = |total: i64| {
        (0..7)
            .map(|key| {
                let count = (0..total).filter(|n| n % 7 == key).count();
                vec![Some(key.to_string()), Some(count.to_string())]
            })
            .collect::<Vec<_>>()
    };

    let (server, client) = start(&directory, "start").await;
    execute(
        &client,
        &format!(
            "CREATE SOURCE notes (key INT, note TEXT) FROM KAFKA (BROKER '{broker}', TOPIC '{topic}') FORMAT JSON;
             CREATE MATERIALIZED VIEW per_key AS SELECT key, count(*) AS n FROM notes GROUP BY key;
             FLUSH;"
        ),
    )
    .await;
    // A view created after the source has read everything starts from the same rows.
    execute(
        &client,
        "CREATE MATERIALIZED VIEW later AS SELECT key, count(*) AS n FROM notes GROUP BY key",
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT * FROM later ORDER BY key").await,
        expected_counts(5000)
    );
    assert_eq!(
        rows(&client, "SELECT count(*), count(DISTINCT note) FROM notes").await,
        vec![vec![Some("5000".into()), Some("5000".into())]]
    );
    // The source's rows are over 1 MB; a checkpoint taken after they were read holds only the
    // views' few groups and the offsets.
    let flushed = rows(&client, "SELECT max(epoch) FROM tributary.checkpoints").await;
    let flushed: i64 = flushed[0][0].as_deref().unwrap_or("0").parse().unwrap_or(0);
    // A checkpoint is taken when the epoch moves.
    execute(
        &client,
        "CREATE TABLE tick (x INT); INSERT INTO tick VALUES (1)",
    )
    .await;
    let mut newest = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        newest = rows(
            &client,
            &format!(
                "SELECT bytes FROM tributary.checkpoints WHERE epoch > {flushed} AND error IS NULL"
            ),
        )
        .await;
        if !newest.is_empty() {
            break;
        }
    }
    let bytes: i64 = newest
        .first()
        .and_then(|row| row[0].as_deref())
        .and_then(|bytes| bytes.parse().ok())
        .expect("a checkpoint after the source's rows were read");
    assert!(
        bytes < 100_000,
        "a checkpoint holds {bytes} bytes: more than offsets and 14 groups"
    );
    drop(client);
    server.stop().await;

    let more: Vec<Vec<u8>> = (5000..6000)
        .map(|n| format!(r#"{{"key": {}, "note": "{note}{n}"}}"#, n % 7).into_bytes())
        .collect();
    produce_values(&topic, &more);
    let (server, client) = start(&directory, "restart").await;
    execute(&client, "FLUSH").await;
    execute(
        &client,
        "CREATE MATERIALIZED VIEW after_restart AS SELECT key, count(*) AS n FROM notes GROUP BY key",
    )
    .await;
    for view in ["per_key", "later", "after_restart"] {
        assert_eq!(
            rows(&client, &format!("SELECT * FROM {view} ORDER BY key")).await,
            expected_counts(6000),
            "{view}"
        );
    }
    assert_eq!(
        rows(&client, "SELECT count(*), count(DISTINCT note) FROM notes").await,
        vec![vec![Some("6000".into()), Some("6000".into())]]
    );
    drop(client);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&directory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_newest_checkpoint_falls_back_to_the_previous_one() {
    let directory = data_directory("corrupted");
    let (server, client) = start(&directory, "start").await;
    execute(
        &client,
        "CREATE TABLE t (k INT, v INT);
         INSERT INTO t SELECT n % 10, n FROM generate_series(1, 1000) AS s(n);
         CREATE MATERIALIZED VIEW sums AS SELECT k, sum(v) AS s, count(*) AS c, min(v) AS lo FROM t GROUP BY k;",
    )
    .await;
    drop(client);
    server.stop().await;
    // A second life adds a checkpoint (at recovery) and rows after it.
    let (server, client) = start(&directory, "restart").await;
    execute(
        &client,
        "INSERT INTO t VALUES (1, 5000), (11, 1); DELETE FROM t WHERE v < 100;",
    )
    .await;
    let expected = rows(&client, "SELECT * FROM sums ORDER BY k").await;
    drop(client);
    server.stop().await;

    let checkpoints = directory.join("checkpoints");
    let mut names: Vec<_> = std::fs::read_dir(&checkpoints)
        .expect("checkpoints")
        .map(|entry| entry.expect("entry").path())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "two checkpoints are kept: {names:?}");
    let newest = names.last().expect("newest").clone();
    let state = std::fs::read_dir(&newest)
        .expect("newest checkpoint")
        .map(|entry| entry.expect("entry").path())
        .find(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("state-"))
        })
        .expect("a state file");
    let mut bytes = std::fs::read(&state).expect("read state");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&state, bytes).expect("corrupt state");

    let (server, client) = start(&directory, "restart past the corrupted checkpoint").await;
    assert_eq!(
        rows(&client, "SELECT * FROM sums ORDER BY k").await,
        expected
    );
    assert_view_equals_query(
        &client,
        "sums",
        "SELECT k, sum(v) AS s, count(*) AS c, min(v) AS lo FROM t GROUP BY k",
    )
    .await;
    drop(client);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&directory);
}

#[tokio::test]
async fn a_directory_in_another_format_or_unusable_is_refused() {
    let directory = data_directory("format");
    std::fs::create_dir_all(&directory).expect("directory");
    std::fs::write(directory.join("FORMAT"), "tributary data format 999\n").expect("marker");
    let error = TestServer::start_with(config(&directory))
        .await
        .err()
        .expect("refused");
    let message = error.to_string();
    assert!(
        message.contains("format 999")
            && message.contains(&format!(
                "reads format {}",
                tributary::storage::directory::FORMAT_VERSION
            )),
        "{message}"
    );
    // Nothing was changed in the directory it refused.
    assert_eq!(
        std::fs::read_to_string(directory.join("FORMAT")).expect("marker"),
        "tributary data format 999\n"
    );

    // A directory that cannot be created: its parent is a file.
    let file = data_directory("not-a-directory");
    std::fs::write(&file, "").expect("file");
    let error = TestServer::start_with(config(&file.join("data")))
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("could not create"), "{error}");
    let _ = std::fs::remove_dir_all(&directory);
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_that_cannot_be_written_is_reported_and_nothing_is_lost() {
    let directory = data_directory("unwritable");
    let (server, client) = start(&directory, "start").await;
    execute(
        &client,
        "CREATE TABLE t (k INT);
         INSERT INTO t VALUES (1), (2), (3);
         CREATE MATERIALIZED VIEW total AS SELECT count(*) AS n, sum(k) AS s FROM t;",
    )
    .await;
    // The checkpoint directory becomes unusable: a file stands where it was.
    let checkpoints = directory.join("checkpoints");
    let moved = directory.join("checkpoints-moved");
    std::fs::rename(&checkpoints, &moved).expect("move checkpoints");
    std::fs::write(&checkpoints, "").expect("file in the way");
    execute(&client, "INSERT INTO t VALUES (4)").await;
    let failure = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let failed = rows(
                &client,
                "SELECT epoch, error FROM tributary.checkpoints WHERE error IS NOT NULL",
            )
            .await;
            if let Some(row) = failed.into_iter().next() {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the failed checkpoint is reported");
    assert!(
        failure[1]
            .as_deref()
            .unwrap_or("")
            .contains("could not create"),
        "{failure:?}"
    );
    // Reads and logged writes go on.
    execute(&client, "INSERT INTO t VALUES (5)").await;
    assert_eq!(
        rows(&client, "SELECT n, s FROM total").await,
        vec![vec![Some("5".into()), Some("15".into())]]
    );
    // Once the directory is back, checkpoints succeed again.
    std::fs::remove_file(&checkpoints).expect("remove the file");
    std::fs::rename(&moved, &checkpoints).expect("restore checkpoints");
    let failed_epoch: i64 = failure[0].as_deref().unwrap_or("0").parse().expect("epoch");
    execute(&client, "INSERT INTO t VALUES (6)").await;
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let succeeded = rows(
                &client,
                &format!(
                    "SELECT epoch FROM tributary.checkpoints WHERE error IS NULL AND epoch > {failed_epoch}"
                ),
            )
            .await;
            if !succeeded.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("checkpoints succeed again");
    drop(client);
    server.stop().await;
    let (server, client) = start(&directory, "restart").await;
    assert_eq!(
        rows(&client, "SELECT n, s FROM total").await,
        vec![vec![Some("6".into()), Some("21".into())]]
    );
    drop(client);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&directory);
}

/// The materialized views of [`views_come_back_from_their_stored_plans`]: every operator family
/// (grouped and global aggregates, a Postgres time cast, an equality join, NOT IN, top-N per
/// partition and overall, UNION, a temporal filter, EMIT ON WINDOW CLOSE), each with the query
/// it must equal.
const PLANNED_VIEWS: &[(&str, &str)] = &[
    (
        "per_product",
        "SELECT product, count(*) AS n, sum(amount) AS total, min(at::text) AS first FROM orders GROUP BY product",
    ),
    (
        "everything",
        "SELECT count(*) AS n, max(amount) AS largest FROM orders",
    ),
    (
        "per_category",
        "SELECT p.category, sum(o.amount) AS total FROM orders o JOIN products p ON o.product = p.name GROUP BY p.category",
    ),
    (
        "unlisted",
        "SELECT id FROM orders WHERE product NOT IN (SELECT name FROM products WHERE name IS NOT NULL)",
    ),
    (
        "top_two",
        "SELECT product, id, amount FROM (SELECT product, id, amount, ROW_NUMBER() OVER (PARTITION BY product ORDER BY amount DESC, id) AS rank FROM orders) AS ranked WHERE rank <= 2",
    ),
    (
        "largest",
        "SELECT id, amount FROM orders ORDER BY amount DESC, id LIMIT 3",
    ),
    (
        "names",
        "SELECT product AS name FROM orders UNION SELECT name FROM products",
    ),
    (
        "this_century",
        "SELECT id FROM orders WHERE at + INTERVAL '36500 days' > now()",
    ),
];

/// EXPLAIN MATERIALIZED VIEW of every view in `names`.
async fn plans(client: &tokio_postgres::Client, names: &[&str]) -> Vec<Vec<Vec<Option<String>>>> {
    let mut plans = Vec::new();
    for name in names {
        plans.push(rows(client, &format!("EXPLAIN MATERIALIZED VIEW {name}")).await);
    }
    plans
}

/// Every view of [`PLANNED_VIEWS`] equals its query, and the window view holds the windows the
/// watermark has closed.
async fn assert_planned_views(client: &tokio_postgres::Client, what: &str) {
    for (view, query) in PLANNED_VIEWS {
        let mut maintained = rows(client, &format!("SELECT * FROM {view}")).await;
        let mut recomputed = rows(client, query).await;
        maintained.sort();
        recomputed.sort();
        assert_eq!(maintained, recomputed, "{what}: view {view}");
    }
    let closed = rows(
        client,
        "SELECT window_start::text, page, clicks FROM per_minute ORDER BY 1, 2",
    )
    .await;
    let expected = rows(
        client,
        "SELECT date_bin(INTERVAL '1 minute', at)::text AS window_start, page, count(*)
         FROM clicks
         WHERE date_bin(INTERVAL '1 minute', at) + INTERVAL '1 minute'
               <= (SELECT max(at) FROM clicks) - INTERVAL '5 seconds'
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .await;
    assert_eq!(closed, expected, "{what}: view per_minute");
}

/// Writes one round of rows to the tables the planned views read.
async fn write_round(client: &tokio_postgres::Client, round: i64) {
    let base = round * 100;
    execute(
        client,
        &format!(
            "INSERT INTO orders VALUES ({a}, 'apple', {round} * 3 + 1, '2026-01-01 10:00:00'),
                                       ({b}, 'pear', 7, NULL), ({c}, 'plum', {round}, '2026-02-01 00:00:00'),
                                       ({d}, NULL, NULL, '2026-03-01 00:00:00');
             DELETE FROM orders WHERE id = {gone};
             UPDATE orders SET amount = amount + 1 WHERE product = 'pear';
             INSERT INTO clicks VALUES ('home', TIMESTAMP '2026-01-01 10:00:00' + INTERVAL '{later} seconds'),
                                       ('cart', TIMESTAMP '2026-01-01 10:00:10' + INTERVAL '{later} seconds');",
            later = round * 40,
            a = base + 1,
            b = base + 2,
            c = base + 3,
            d = base + 4,
            gone = base - 97,
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_come_back_from_their_stored_plans() {
    // Checkpoints only at shutdown: views created after the start are recovered from the log,
    // where their CREATE records carry their plans.
    let directory = data_directory("plans");
    let (server, client) = start_without_checkpoints(&directory).await;
    execute(
        &client,
        "CREATE TABLE orders (id INT, product TEXT, amount INT, at TIMESTAMP);
         CREATE TABLE products (name TEXT, category TEXT);
         CREATE TABLE clicks (page TEXT, at TIMESTAMP, WATERMARK FOR at AS at - INTERVAL '5 seconds');
         INSERT INTO products VALUES ('apple', 'fruit'), ('pear', 'fruit'), ('kale', 'leaf');",
    )
    .await;
    for (view, query) in PLANNED_VIEWS {
        execute(
            &client,
            &format!("CREATE MATERIALIZED VIEW {view} AS {query}"),
        )
        .await;
    }
    execute(
        &client,
        "CREATE MATERIALIZED VIEW per_minute AS
           SELECT window_start, window_end, page, count(*) AS clicks
           FROM TUMBLE(clicks, at, INTERVAL '1 minute')
           GROUP BY window_start, window_end, page EMIT ON WINDOW CLOSE",
    )
    .await;
    let names: Vec<&str> = PLANNED_VIEWS
        .iter()
        .map(|(view, _)| *view)
        .chain(["per_minute"])
        .collect();
    for round in 1..=3 {
        write_round(&client, round).await;
    }
    assert_planned_views(&client, "before any restart").await;
    let created = plans(&client, &names).await;
    assert!(
        created.iter().all(|plan| !plan.is_empty()),
        "every view has a plan: {created:?}"
    );

    // A copy of the directory as it stands is what a crash would leave: the log holds every
    // CREATE and write, no checkpoint holds them.
    let crashed = crash_copy(&directory, "plans-crashed");
    drop(client);
    server.stop().await;

    for (what, path) in [
        ("after the log", &crashed),
        ("after a checkpoint", &directory),
    ] {
        let server = TestServer::start_with(Config {
            checkpoint_interval: Duration::from_secs(3600),
            ..config(path)
        })
        .await
        .unwrap_or_else(|error| panic!("{what}: {error}"));
        let client = server.connect().await;
        assert_eq!(
            plans(&client, &names).await,
            created,
            "{what}: the stored plans"
        );
        assert_planned_views(&client, what).await;
        for round in 4..=6 {
            write_round(&client, round).await;
        }
        assert_planned_views(&client, &format!("{what}, then more writes")).await;
        drop(client);
        server.stop().await;
    }
    let _ = std::fs::remove_dir_all(&crashed);
    let _ = std::fs::remove_dir_all(&directory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exactly_once_sink_commits_when_its_input_pauses_not_at_the_next_interval() {
    // With an hour between checkpoints, only a checkpoint taken because the input paused lets
    // the sink commit what it was sent.
    let directory = data_directory("early-checkpoint");
    let broker = kafka::bootstrap();
    let topic = kafka::unique_topic("early-checkpoint-in");
    let sink_topic = kafka::unique_topic("early-checkpoint-out");
    kafka::create_topic(&topic, 1);
    let hourly = Config {
        checkpoint_interval: Duration::from_secs(3600),
        ..config(&directory)
    };
    let server = TestServer::start_with(hourly).await.expect("start");
    let client = server.connect().await;
    execute(
        &client,
        &format!(
            "CREATE SOURCE visits (key INT, value INT)
               FROM KAFKA (BROKER '{broker}', TOPIC '{topic}') FORMAT JSON;
             CREATE MATERIALIZED VIEW per_key AS
               SELECT key, sum(value) AS sum FROM visits GROUP BY key;
             CREATE SINK per_key_out FROM per_key
               INTO KAFKA (BROKER '{broker}', TOPIC '{sink_topic}') KEY (key) FORMAT JSON ENVELOPE UPSERT;"
        ),
    )
    .await;
    let expected = |rounds: i64| {
        (0..3)
            .map(|key| {
                let sum: i64 = (0..rounds * 30).filter(|n| n % 3 == key).sum();
                (
                    format!(r#"{{"key":{key}}}"#),
                    format!(r#"{{"key":{key},"sum":{sum}}}"#),
                )
            })
            .collect::<std::collections::HashMap<_, _>>()
    };
    for round in 1..=2 {
        let payloads: Vec<Vec<u8>> = ((round - 1) * 30..round * 30)
            .map(|n| json(n % 3, n))
            .collect();
        produce_values(&topic, &payloads);
        let want = expected(round);
        let sink_topic = sink_topic.clone();
        let committed = tokio::task::spawn_blocking(move || {
            kafka::read_table(&sink_topic, Duration::from_secs(20), |table| table == &want)
        })
        .await
        .expect("read the sink's topic");
        assert_eq!(committed, expected(round), "round {round}");
    }
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_survive_a_restart_from_the_log_and_from_a_checkpoint() {
    let directory = data_directory("renames");
    let (server, client) = start_without_checkpoints(&directory).await;
    execute(
        &client,
        "CREATE TABLE orders (id INT PRIMARY KEY, customer TEXT, amount INT);
         INSERT INTO orders VALUES (1, 'ann', 10), (2, 'bob', 20);
         CREATE MATERIALIZED VIEW totals AS
           SELECT customer, sum(amount) AS total FROM orders GROUP BY customer;
         CREATE VIEW large AS SELECT orders.id FROM orders WHERE orders.amount > 15;
         ALTER TABLE orders RENAME TO purchases;
         ALTER MATERIALIZED VIEW totals RENAME TO sums;
         INSERT INTO purchases VALUES (3, 'ann', 30);
         CREATE MATERIALIZED VIEW biggest AS SELECT max(total) AS most FROM sums;
         ALTER VIEW large RENAME TO over_fifteen;",
    )
    .await;
    let expected = [
        (
            "SELECT * FROM purchases ORDER BY id",
            "1 ann 10|2 bob 20|3 ann 30",
        ),
        ("SELECT * FROM sums ORDER BY customer", "ann 40|bob 20"),
        ("SELECT * FROM over_fifteen ORDER BY id", "2|3"),
        ("SELECT * FROM biggest", "40"),
    ];
    let check = |client: tokio_postgres::Client, what: &'static str| async move {
        for (query, rows_expected) in expected {
            assert_eq!(
                rows_as_text(&client, query).await,
                rows_expected,
                "{what}: {query}"
            );
        }
        for gone in ["orders", "totals", "large"] {
            let error = client
                .simple_query(&format!("SELECT * FROM {gone}"))
                .await
                .expect_err("the old name is gone");
            assert_eq!(
                error.code(),
                Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE),
                "{what}: {gone}"
            );
        }
        // The views still follow the renamed table.
        execute(&client, "INSERT INTO purchases VALUES (100, 'cat', 1)").await;
        let most = rows(&client, "SELECT most FROM biggest").await;
        assert_eq!(most, vec![vec![Some("40".to_string())]], "{what}");
        execute(&client, "DELETE FROM purchases WHERE id = 100").await;
        client
    };
    let client = check(client, "before any restart").await;

    check_both_recoveries(server, client, &directory, "renames", check).await;
}

/// A view replaced by CREATE OR REPLACE comes back with its new definition, and the views on
/// it keep following it, whether recovery replays the log or starts from a checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_views_survive_a_restart_from_the_log_and_from_a_checkpoint() {
    let directory = data_directory("replaced");
    let (server, client) = start_without_checkpoints(&directory).await;
    execute(
        &client,
        "CREATE TABLE orders (id INT, customer TEXT, amount INT);
         INSERT INTO orders VALUES (1, 'ann', 10), (2, 'bob', 20), (3, 'ann', 30);
         CREATE MATERIALIZED VIEW big AS SELECT id, customer, amount FROM orders WHERE amount > 15;
         CREATE MATERIALIZED VIEW per_customer AS SELECT customer, count(*) AS n FROM big GROUP BY customer;
         CREATE OR REPLACE MATERIALIZED VIEW big AS SELECT id, customer, amount FROM orders WHERE amount > 5;
         INSERT INTO orders VALUES (4, 'cid', 8);
         CREATE MATERIALIZED VIEW customers AS SELECT DISTINCT customer FROM orders;
         CREATE OR REPLACE MATERIALIZED VIEW customers AS
           SELECT customer, sum(amount) AS total FROM orders GROUP BY customer;",
    )
    .await;
    let expected = [
        (
            "SELECT * FROM big ORDER BY id",
            "1 ann 10|2 bob 20|3 ann 30|4 cid 8",
        ),
        (
            "SELECT * FROM per_customer ORDER BY customer",
            "ann 2|bob 1|cid 1",
        ),
        (
            "SELECT * FROM customers ORDER BY customer",
            "ann 40|bob 20|cid 8",
        ),
    ];
    let check = |client: tokio_postgres::Client, what: &'static str| async move {
        for (query, rows_expected) in expected {
            assert_eq!(
                rows_as_text(&client, query).await,
                rows_expected,
                "{what}: {query}"
            );
        }
        // The new definition keeps a row of 6, which the old one would not have.
        execute(&client, "INSERT INTO orders VALUES (100, 'bob', 6)").await;
        let bob = rows(&client, "SELECT n FROM per_customer WHERE customer = 'bob'").await;
        assert_eq!(bob, vec![vec![Some("2".to_string())]], "{what}");
        execute(&client, "DELETE FROM orders WHERE id = 100").await;
        client
    };
    let client = check(client, "before any restart").await;

    check_both_recoveries(server, client, &directory, "replaced", check).await;
}

/// A sink keeps writing a view it reads after the view is renamed, and comes back after a
/// restart with its statement rewritten to the new name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_follows_a_renamed_view_across_a_restart() {
    let directory = data_directory("renamed-sink");
    let broker = kafka::bootstrap();
    let output = kafka::unique_topic("renamed-sink-out");
    let (server, client) = start(&directory, "first start").await;
    execute(
        &client,
        &format!(
            "CREATE TABLE sales (product TEXT, amount INT);
             CREATE MATERIALIZED VIEW totals AS
               SELECT product, sum(amount) AS total FROM sales GROUP BY product;
             CREATE SINK totals_out FROM public.totals
               INTO KAFKA (BROKER '{broker}', TOPIC '{output}') KEY (product) FORMAT JSON ENVELOPE UPSERT;
             INSERT INTO sales VALUES ('apple', 3);
             ALTER MATERIALIZED VIEW totals RENAME TO sums;
             INSERT INTO sales VALUES ('apple', 4);"
        ),
    )
    .await;
    drop(client);
    server.stop().await;
    let (server, client) = start(&directory, "after the rename").await;
    execute(&client, "INSERT INTO sales VALUES ('pear', 5)").await;
    let expected: std::collections::HashMap<String, String> = [
        (r#"{"product":"apple"}"#, r#"{"product":"apple","total":7}"#),
        (r#"{"product":"pear"}"#, r#"{"product":"pear","total":5}"#),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .collect();
    let want = expected.clone();
    let written = tokio::task::spawn_blocking(move || {
        kafka::read_table(&output, Duration::from_secs(30), |table| table == &want)
    })
    .await
    .expect("read the sink's topic");
    assert_eq!(written, expected);
    drop(client);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&directory);
}
