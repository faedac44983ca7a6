//! SUBSCRIBE over the wire: COPY (SUBSCRIBE ...) TO STDOUT and SUBSCRIBE alone stream a view's
//! rows and then its changes as they happen until the client cancels; a cursor hands out the
//! same through FETCH; folding every change a subscriber saw gives the view's contents.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::TestServer;

/// How long a test waits for a change it expects before it fails.
const PATIENCE: Duration = Duration::from_secs(30);

async fn setup(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE TABLE t (k TEXT, v INT);
             INSERT INTO t VALUES ('a', 1), ('b', 2), ('a', 3);
             CREATE MATERIALIZED VIEW m AS SELECT k, sum(v) AS total FROM t GROUP BY k",
        )
        .await
        .expect("setup");
}

/// A COPY text line split into its fields.
fn fields(line: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(line)
        .trim_end_matches('\n')
        .split('\t')
        .map(str::to_string)
        .collect()
}

/// The next line of a `COPY (SUBSCRIBE ...)` stream, split into its fields; fails the test if
/// none comes within PATIENCE or the stream ends.
async fn next_line(
    stream: &mut std::pin::Pin<&mut tokio_postgres::CopyOutStream>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("a change arrives")
        .expect("the stream goes on")
        .map(|bytes| fields(&bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_subscribe_streams_rows_then_changes_until_canceled() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    setup(&client).await;
    let writer = server.connect().await;
    let cancel = client.cancel_token();
    // tokio-postgres sends COPY through the extended protocol (Parse, Bind, Execute).
    let stream = client
        .copy_out("COPY (SUBSCRIBE TO m) TO STDOUT")
        .await
        .expect("subscribe");
    futures::pin_mut!(stream);
    let first = next_line(&mut stream).await.expect("first row");
    let second = next_line(&mut stream).await.expect("second row");
    let snapshot_epoch = first[0].clone();
    assert_eq!(second[0], snapshot_epoch, "the snapshot is one epoch");
    assert_eq!(
        vec![first[1..].to_vec(), second[1..].to_vec()],
        vec![vec!["1", "a", "4"], vec!["1", "b", "2"]]
    );
    writer
        .batch_execute("INSERT INTO t VALUES ('b', 10)")
        .await
        .expect("insert");
    let retracted = next_line(&mut stream).await.expect("retraction");
    let inserted = next_line(&mut stream).await.expect("insertion");
    assert_eq!(retracted[1..], ["-1", "b", "2"]);
    assert_eq!(inserted[1..], ["1", "b", "12"]);
    assert_eq!(retracted[0], inserted[0], "one epoch's changes share it");
    assert!(
        retracted[0].parse::<i64>().expect("epoch") > snapshot_epoch.parse::<i64>().expect("epoch")
    );
    // NULLs and characters COPY escapes.
    writer
        .batch_execute("INSERT INTO t VALUES (E'tab\\there\\\\', NULL)")
        .await
        .expect("insert");
    assert_eq!(
        next_line(&mut stream).await.expect("escaped row")[1..],
        ["1", "tab\\there\\\\", "\\N"]
    );
    cancel
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel");
    let ended = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("the stream ends")
        .expect("with an error");
    let error = ended.expect_err("a canceled subscription fails");
    assert_eq!(
        error.as_db_error().map(|error| error.code().code()),
        Some("57014")
    );
    // The connection is usable again.
    let rows = client
        .query("SELECT total FROM m WHERE k = 'b'", &[])
        .await
        .expect("query after the subscription");
    assert_eq!(rows[0].get::<_, Option<i64>>(0), Some(12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_alone_streams_typed_rows_and_ends_when_the_view_is_dropped() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    setup(&client).await;
    let writer = server.connect().await;
    let statement = client.prepare("SUBSCRIBE m").await.expect("prepare");
    let columns: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(columns, ["tributary_epoch", "tributary_diff", "k", "total"]);
    let rows = client
        .query_raw(&statement, Vec::<i32>::new())
        .await
        .expect("subscribe");
    futures::pin_mut!(rows);
    let mut next_row = async || {
        tokio::time::timeout(PATIENCE, rows.next())
            .await
            .expect("a row arrives")
            .expect("a row")
            .expect("no error")
    };
    // The snapshot first (so the subscription is in place before the write below); binary
    // values decode as their types.
    let mut snapshot = Vec::new();
    for _ in 0..2 {
        let row = next_row().await;
        snapshot.push((
            row.get::<_, i64>(1),
            row.get::<_, String>(2),
            row.get::<_, Option<i64>>(3),
        ));
    }
    assert_eq!(
        snapshot,
        [(1, "a".to_string(), Some(4)), (1, "b".to_string(), Some(2))]
    );
    writer
        .batch_execute("INSERT INTO t VALUES ('c', 7)")
        .await
        .expect("insert");
    let row = next_row().await;
    assert_eq!(row.get::<_, i64>(1), 1);
    assert_eq!(row.get::<_, String>(2), "c");
    assert_eq!(row.get::<_, Option<i64>>(3), Some(7));
    writer
        .batch_execute("DROP MATERIALIZED VIEW m")
        .await
        .expect("drop");
    let ended = tokio::time::timeout(PATIENCE, rows.next())
        .await
        .expect("the stream ends")
        .expect("with an error");
    let error = ended.expect_err("the subscription ends");
    let error = error.as_db_error().expect("a server error");
    assert_eq!(error.code().code(), "42P01");
    assert!(
        error.message().contains("was dropped"),
        "{}",
        error.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_snapshot_a_cursor_hands_out_only_later_changes() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    setup(&client).await;
    let writer = server.connect().await;
    let transaction = client.transaction().await.expect("begin");
    // DECLARE returns once the subscription is in place: the write below comes after it.
    transaction
        .batch_execute("DECLARE c CURSOR FOR SUBSCRIBE m WITH (SNAPSHOT = false)")
        .await
        .expect("declare");
    writer
        .batch_execute("INSERT INTO t VALUES ('c', 7)")
        .await
        .expect("insert");
    let rows = transaction
        .query("FETCH ALL c WITH (TIMEOUT = '30s')", &[])
        .await
        .expect("fetch");
    let changes: Vec<(i64, String, Option<i64>)> = rows
        .iter()
        .map(|row| (row.get(1), row.get(2), row.get(3)))
        .collect();
    assert_eq!(changes, [(1, "c".to_string(), Some(7))]);
    transaction.commit().await.expect("commit");
}

/// Every change a cursor hands out, folded into a multiset of rows, equals the view after each
/// round of random writes; epochs never go back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folding_a_subscription_gives_the_view_after_random_changes() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let writer = server.connect().await;
    writer
        .batch_execute(
            "CREATE TABLE facts (id INT, k INT, v INT);
             CREATE MATERIALIZED VIEW per_key AS
                 SELECT k, count(*) AS n, sum(v) AS total FROM facts GROUP BY k",
        )
        .await
        .expect("setup");
    let transaction = client.transaction().await.expect("begin");
    transaction
        .batch_execute("DECLARE changes CURSOR FOR SUBSCRIBE per_key")
        .await
        .expect("declare");
    let mut rng = StdRng::seed_from_u64(7);
    let mut folded: BTreeMap<String, i64> = BTreeMap::new();
    let mut last_epoch = 0i64;
    let mut next_id = 0;
    for round in 0..30 {
        for _ in 0..rng.random_range(1..4) {
            let statement = match rng.random_range(0..4) {
                0 | 1 => {
                    next_id += 1;
                    format!(
                        "INSERT INTO facts VALUES ({next_id}, {}, {})",
                        rng.random_range(0..5),
                        rng.random_range(-3..10)
                    )
                }
                2 => format!(
                    "DELETE FROM facts WHERE id % 7 = {}",
                    rng.random_range(0..7)
                ),
                _ => format!(
                    "UPDATE facts SET k = {} WHERE id % 5 = {}",
                    rng.random_range(0..5),
                    rng.random_range(0..5)
                ),
            };
            writer.batch_execute(&statement).await.expect("write");
        }
        // Each write returns once its epoch is published, and the subscription was handed the
        // epoch before that: a FETCH that does not wait sees all of it.
        let fetched = transaction
            .query("FETCH ALL changes WITH (TIMEOUT = '0s')", &[])
            .await
            .expect("fetch");
        for row in fetched {
            let epoch: i64 = row.get(0);
            assert!(epoch >= last_epoch, "epochs go forward");
            last_epoch = epoch;
            let diff: i64 = row.get(1);
            let key = format!(
                "{:?} {:?} {:?}",
                row.get::<_, Option<i32>>(2),
                row.get::<_, i64>(3),
                row.get::<_, Option<i64>>(4)
            );
            let count = folded.entry(key).or_default();
            *count += diff;
            if *count == 0 {
                folded.retain(|_, count| *count != 0);
            }
        }
        let mut expected: BTreeMap<String, i64> = BTreeMap::new();
        for row in writer
            .query("SELECT k, n, total FROM per_key", &[])
            .await
            .expect("read the view")
        {
            let key = format!(
                "{:?} {:?} {:?}",
                row.get::<_, Option<i32>>(0),
                row.get::<_, i64>(1),
                row.get::<_, Option<i64>>(2)
            );
            *expected.entry(key).or_default() += 1;
        }
        assert_eq!(folded, expected, "after round {round}");
    }
    transaction.commit().await.expect("commit");
}

/// A subscriber to a view replaced by CREATE OR REPLACE keeps its subscription and receives
/// exactly the difference between the old rows and the new, in one epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_only_what_a_replacement_changed() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    setup(&client).await;
    let writer = server.connect().await;
    let stream = client
        .copy_out("COPY (SUBSCRIBE TO m) TO STDOUT")
        .await
        .expect("subscribe");
    futures::pin_mut!(stream);
    let snapshot = [next_line(&mut stream).await, next_line(&mut stream).await];
    assert_eq!(snapshot.len(), 2);
    // 'a' (1 + 3) and 'c' keep their totals; 'b' (2) drops out.
    writer
        .batch_execute(
            "INSERT INTO t VALUES ('c', 7);
             CREATE OR REPLACE MATERIALIZED VIEW m AS
               SELECT k, sum(v) AS total FROM t WHERE k <> 'b' GROUP BY k",
        )
        .await
        .expect("insert and replace");
    let inserted = next_line(&mut stream).await.expect("the insert's change");
    assert_eq!(inserted[1..], ["1", "c", "7"]);
    let replaced = next_line(&mut stream)
        .await
        .expect("the replacement's change");
    assert_eq!(replaced[1..], ["-1", "b", "2"]);
    // Nothing else came ('a' and 'c' are as they were): the next change is the next write's.
    writer
        .batch_execute("INSERT INTO t VALUES ('a', 10)")
        .await
        .expect("insert");
    let retracted = next_line(&mut stream).await.expect("retraction");
    let added = next_line(&mut stream).await.expect("insertion");
    assert_eq!(retracted[1..], ["-1", "a", "4"]);
    assert_eq!(added[1..], ["1", "a", "14"]);
}
