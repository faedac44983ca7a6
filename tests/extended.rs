//! The extended query protocol through a real driver (tokio-postgres): prepared statements,
//! typed and untyped parameters, binary results for every type, command tags, errors, and
//! read-your-writes across sessions.

mod common;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::types::Type;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_and_binary_values() {
    let server = common::TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (b BOOLEAN, s SMALLINT, i INT, l BIGINT, r REAL, d DOUBLE PRECISION,
               n NUMERIC(10,2), tx TEXT, v VARCHAR(10), dt DATE, ts TIMESTAMP, tz TIMESTAMPTZ);
             CREATE MATERIALIZED VIEW per_b AS SELECT b, count(*) AS n, sum(l) AS total, avg(i) AS mean FROM t GROUP BY b;",
        )
        .await
        .expect("create");

    // Untyped parameters: the server infers their types from the table.
    let insert = client
        .prepare("INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
        .await
        .expect("prepare insert");
    assert_eq!(insert.params()[0], Type::BOOL);
    assert_eq!(insert.params()[3], Type::INT8);
    let timestamp = NaiveDate::from_ymd_opt(2026, 1, 1)
        .and_then(|d| d.and_hms_micro_opt(10, 9, 8, 500))
        .expect("time");
    let zoned: DateTime<Utc> = timestamp.and_utc();
    for value in 1..=3i64 {
        let inserted = client
            .execute(
                &insert,
                &[
                    &(value % 2 == 0),
                    &(value as i16),
                    &(value as i32),
                    &(value * 1_000_000_000_000),
                    &(value as f32 / 2.0),
                    &(value as f64 / 4.0),
                    &Decimal::new(value * 1234, 2),
                    &format!("text {value}"),
                    &"short",
                    &NaiveDate::from_ymd_opt(2026, 1, value as u32).expect("date"),
                    &timestamp,
                    &zoned,
                ],
            )
            .await
            .expect("insert");
        assert_eq!(inserted, 1);
    }

    // Binary results of every type, read back as Rust values.
    let rows = client
        .query(
            "SELECT b, s, i, l, r, d, n, tx, v, dt, ts, tz FROM t WHERE i = $1",
            &[&2i32],
        )
        .await
        .expect("select");
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, i16>(1), 2);
    assert_eq!(row.get::<_, i32>(2), 2);
    assert_eq!(row.get::<_, i64>(3), 2_000_000_000_000);
    assert_eq!(row.get::<_, f32>(4), 1.0);
    assert_eq!(row.get::<_, f64>(5), 0.5);
    assert_eq!(row.get::<_, Decimal>(6), Decimal::new(2468, 2));
    assert_eq!(row.get::<_, String>(7), "text 2");
    assert_eq!(row.get::<_, String>(8), "short");
    assert_eq!(
        row.get::<_, NaiveDate>(9),
        NaiveDate::from_ymd_opt(2026, 1, 2).expect("date")
    );
    assert_eq!(row.get::<_, NaiveDateTime>(10), timestamp);
    assert_eq!(row.get::<_, DateTime<Utc>>(11), zoned);

    // Result column types carry the real Postgres OIDs, Postgres types for aggregates included.
    let statement = client
        .prepare("SELECT * FROM per_b ORDER BY b")
        .await
        .expect("prepare");
    let types: Vec<Type> = statement
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    assert_eq!(
        types,
        vec![Type::BOOL, Type::INT8, Type::NUMERIC, Type::NUMERIC]
    );
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, vec!["b", "n", "total", "mean"]);
    let rows = client.query(&statement, &[]).await.expect("query view");
    let summary: Vec<(bool, i64, Decimal)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        summary,
        vec![
            (false, 2, Decimal::new(4_000_000_000_000, 0)),
            (true, 1, Decimal::new(2_000_000_000_000, 0))
        ]
    );

    // Typed parameters, a named statement reused many times, and command tags.
    let update = client
        .prepare_typed(
            "UPDATE t SET l = l + $1 WHERE s = $2",
            &[Type::INT8, Type::INT2],
        )
        .await
        .expect("prepare update");
    for _ in 0..5 {
        assert_eq!(
            client
                .execute(&update, &[&1i64, &1i16])
                .await
                .expect("update"),
            1
        );
    }
    let deleted = client
        .execute("DELETE FROM t WHERE b = $1", &[&true])
        .await
        .expect("delete");
    assert_eq!(deleted, 1);
    let rows = client
        .query("SELECT total FROM per_b", &[])
        .await
        .expect("view after changes");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].get::<_, Decimal>(0),
        Decimal::new(4_000_000_000_005, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstate_and_the_session_survives() {
    let server = common::TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE e (a INT NOT NULL)")
        .await
        .expect("create");
    let cases: &[(&str, &str)] = &[
        ("SELECT * FROM nowhere", "42P01"),
        ("SELECT nope FROM e", "42703"),
        ("SELECT 1/0", "22012"),
        ("INSERT INTO e VALUES (NULL)", "23502"),
        ("SELEC 1", "42601"),
    ];
    for (sql, expected) in cases {
        let error = client
            .prepare(sql)
            .await
            .and(Ok(()))
            .err()
            .or(client.query(*sql, &[]).await.err());
        let code = error.and_then(|error| error.code().map(|code| code.code().to_string()));
        assert_eq!(code.as_deref(), Some(*expected), "{sql}");
    }
    let error = client
        .query("INSERT INTO e VALUES ($1)", &[&None::<i32>])
        .await
        .expect_err("null");
    assert_eq!(error.code().map(|c| c.code()), Some("23502"));
    let rows = client
        .query("SELECT count(*) FROM e", &[])
        .await
        .expect("still usable");
    assert_eq!(rows[0].get::<_, i64>(0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_visible_to_other_sessions_when_they_return() {
    let server = common::TestServer::start().await;
    let writer = server.connect().await;
    let reader = server.connect().await;
    writer
        .batch_execute(
            "CREATE TABLE w (k INT, v INT);
             CREATE MATERIALIZED VIEW a AS SELECT k, sum(v) AS s FROM w GROUP BY k;
             CREATE MATERIALIZED VIEW b AS SELECT count(*) AS n FROM w;",
        )
        .await
        .expect("create");
    for round in 1..=50i64 {
        writer
            .execute("INSERT INTO w VALUES ($1, 1)", &[&((round % 3) as i32)])
            .await
            .expect("insert");
        // One snapshot across both views, and it includes the write that just returned.
        let rows = reader
            .query(
                "SELECT CAST((SELECT sum(s) FROM a) AS BIGINT), (SELECT n FROM b)",
                &[],
            )
            .await
            .expect("read");
        let sum: i64 = rows[0].get(0);
        let count: i64 = rows[0].get(1);
        assert_eq!((sum, count), (round, round));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_statements_see_new_data_and_new_time() {
    let server = common::TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE r (x INT)")
        .await
        .expect("create");
    let count = client
        .prepare("SELECT count(*) FROM r")
        .await
        .expect("prepare");
    let clock = client.prepare("SELECT now()").await.expect("prepare");
    let mut last_time: Option<DateTime<Utc>> = None;
    for expected in 0..5i64 {
        let counted: i64 = client.query_one(&count, &[]).await.expect("count").get(0);
        assert_eq!(
            counted, expected,
            "a reused plan reads the current snapshot"
        );
        client
            .execute("INSERT INTO r VALUES (1)", &[])
            .await
            .expect("insert");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let now: DateTime<Utc> = client.query_one(&clock, &[]).await.expect("now").get(0);
        assert!(
            last_time.is_none_or(|last| now > last),
            "now() is evaluated per statement"
        );
        last_time = Some(now);
    }
    // A dropped and recreated table is planned again, not read through a stale plan.
    client
        .batch_execute("DROP TABLE r; CREATE TABLE r (x INT, y INT); INSERT INTO r VALUES (1, 2)")
        .await
        .expect("recreate");
    let rows = client
        .query("SELECT count(*) FROM r", &[])
        .await
        .expect("count");
    assert_eq!(rows[0].get::<_, i64>(0), 1);
}

/// What the client said at startup shows in the session: the database, the user's
/// application_name (which RESET returns to), and version() names Postgres 16 and Tributary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_and_session_functions() {
    let server = common::TestServer::start().await;
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=alice dbname=shop application_name=reports \
             options='-c statement_timeout=250ms'",
            server.port
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(connection);
    let text = |row: &tokio_postgres::Row, index: usize| row.get::<_, String>(index);
    let row = client
        .query_one(
            "SELECT current_database(), current_schema(), current_setting('application_name'), version()",
            &[],
        )
        .await
        .expect("session functions");
    assert_eq!(text(&row, 0), "shop");
    assert_eq!(text(&row, 1), "public");
    assert_eq!(text(&row, 2), "reports");
    assert!(
        text(&row, 3).starts_with("PostgreSQL 16.") && text(&row, 3).contains("Tributary"),
        "{}",
        text(&row, 3)
    );
    client
        .batch_execute("SET application_name = 'changed'")
        .await
        .expect("set");
    let changed = client
        .query_one("SELECT set_config('search_path', 'public', false), current_setting('application_name')", &[])
        .await
        .expect("set_config");
    assert_eq!(text(&changed, 0), "public");
    assert_eq!(text(&changed, 1), "changed");
    client.batch_execute("RESET ALL").await.expect("reset");
    let reset = client
        .query_one(
            "SELECT current_setting('application_name'), current_setting('statement_timeout')",
            &[],
        )
        .await
        .expect("after reset");
    assert_eq!(text(&reset, 0), "reports");
    // The startup options' setting holds: a long query is stopped.
    assert_eq!(text(&reset, 1), "250ms");
    let error = client
        .query("SELECT count(*) FROM generate_series(1, 500000000)", &[])
        .await
        .expect_err("statement_timeout from the startup options");
    assert_eq!(error.code().map(|code| code.code()), Some("57014"));
}

/// COPY through tokio-postgres, which runs it over the extended protocol: binary in
/// (BinaryCopyInWriter) and out (BinaryCopyOutStream) for every scalar type, text and CSV in
/// and out, a bad line that leaves the table as it was, and a view that takes a whole COPY as
/// one change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_in_every_format() {
    use futures::{SinkExt, TryStreamExt};
    use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};

    let server = common::TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (b BOOLEAN, s SMALLINT, i INT, l BIGINT, r REAL, d DOUBLE PRECISION,
               n NUMERIC(10,2), tx TEXT, dt DATE, ts TIMESTAMP, tz TIMESTAMPTZ);
             CREATE MATERIALIZED VIEW per_b AS SELECT b, count(*) AS n, sum(l) AS total FROM t GROUP BY b;",
        )
        .await
        .expect("create");
    let types = [
        Type::BOOL,
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::NUMERIC,
        Type::TEXT,
        Type::DATE,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
    ];
    let timestamp = NaiveDate::from_ymd_opt(2026, 3, 4)
        .and_then(|d| d.and_hms_micro_opt(5, 6, 7, 890_123))
        .expect("time");
    let zoned: DateTime<Utc> = timestamp.and_utc();

    let sink = client
        .copy_in("COPY t FROM STDIN (FORMAT binary)")
        .await
        .expect("copy in binary");
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures::pin_mut!(writer);
    for value in 1..=100i64 {
        let text = (value % 10 != 0).then(|| format!("row\t{value}\n"));
        writer
            .as_mut()
            .write(&[
                &(value % 2 == 0),
                &(value as i16),
                &(value as i32),
                &(value * 1_000_000_000_000),
                &(value as f32 / 2.0),
                &(value as f64 / 4.0),
                &Decimal::new(value * 1234 + 5, 3),
                &text,
                &NaiveDate::from_ymd_opt(1999, 12, value as u32 % 28 + 1).expect("date"),
                &timestamp,
                &zoned,
            ])
            .await
            .expect("write row");
    }
    assert_eq!(writer.finish().await.expect("finish binary"), 100);

    // The view took all 100 rows in one change.
    let rows = client
        .query("SELECT b, n, total FROM per_b ORDER BY b", &[])
        .await
        .expect("view");
    let counts: Vec<(bool, i64)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(counts, vec![(false, 50), (true, 50)]);

    // Binary out reads back what binary in wrote, numerics rounded to the column's scale.
    let stream = client
        .copy_out("COPY (SELECT * FROM t WHERE i IN (7, 10) ORDER BY i) TO STDOUT (FORMAT binary)")
        .await
        .expect("copy out binary");
    let rows: Vec<_> = BinaryCopyOutStream::new(stream, &types)
        .try_collect()
        .await
        .expect("binary rows");
    assert_eq!(rows.len(), 2);
    assert!(!rows[0].get::<bool>(0));
    assert_eq!(rows[0].get::<i16>(1), 7);
    assert_eq!(rows[0].get::<i64>(3), 7_000_000_000_000);
    assert_eq!(rows[0].get::<f32>(4), 3.5);
    assert_eq!(rows[0].get::<Decimal>(6), Decimal::new(864, 2));
    assert_eq!(
        rows[0].get::<Option<String>>(7).as_deref(),
        Some("row\t7\n")
    );
    assert_eq!(rows[1].get::<Option<String>>(7), None);
    assert_eq!(
        rows[0].get::<NaiveDate>(8),
        NaiveDate::from_ymd_opt(1999, 12, 8).expect("date")
    );
    assert_eq!(rows[0].get::<NaiveDateTime>(9), timestamp);
    assert_eq!(rows[0].get::<DateTime<Utc>>(10), zoned);

    // CSV in with a header, quotes and NULLs, into some of the columns.
    let sink = client
        .copy_in("COPY t (b, i, tx) FROM STDIN WITH (FORMAT csv, HEADER true)")
        .await
        .expect("copy in csv");
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(
        b"b,i,tx\nt,1001,\"a,\"\"b\"\"\nc\"\nf,1002,\n",
    ))
    .await
    .expect("send csv");
    assert_eq!(sink.finish().await.expect("finish csv"), 2);

    // Text out escapes what would break a line; CSV out quotes it.
    let text = copy_out_text(
        &client,
        "COPY (SELECT i, tx FROM t WHERE i IN (1, 10, 1001, 1002) ORDER BY i) TO STDOUT",
    )
    .await;
    assert_eq!(
        text,
        "1\trow\\t1\\n\n10\t\\N\n1001\ta,\"b\"\\nc\n1002\t\\N\n"
    );
    let csv = copy_out_text(
        &client,
        "COPY (SELECT i, tx, n FROM t WHERE i IN (1, 1001) ORDER BY i) TO STDOUT WITH CSV HEADER",
    )
    .await;
    assert_eq!(
        csv,
        "i,tx,n\n1,\"row\t1\n\",1.24\n1001,\"a,\"\"b\"\"\nc\",\n"
    );

    // A bad value fails the whole COPY with its line and column; nothing of it is written.
    let sink = client
        .copy_in("COPY t (i, tx) FROM STDIN")
        .await
        .expect("copy in text");
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(
        b"2001\tok\n2002\tok\nnot a number\tbad\n",
    ))
    .await
    .expect("send text");
    let error = sink.finish().await.expect_err("bad line");
    assert_eq!(error.code().map(|code| code.code()), Some("22P02"));
    let database_error = error.as_db_error().expect("a database error");
    assert_eq!(
        database_error.message(),
        "invalid input syntax for type integer: \"not a number\""
    );
    assert_eq!(
        database_error.where_(),
        Some("COPY t, line 3, column i: \"not a number\"")
    );
    let sink = client
        .copy_in("COPY t (i, tx) FROM STDIN")
        .await
        .expect("copy in text");
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"3001\n"))
        .await
        .expect("send text");
    let error = sink.finish().await.expect_err("missing column");
    assert_eq!(error.code().map(|code| code.code()), Some("22P04"));
    let rows = client
        .query("SELECT count(*) FROM t", &[])
        .await
        .expect("count");
    assert_eq!(rows[0].get::<_, i64>(0), 102);
}

/// Everything a COPY ... TO STDOUT sends, as text.
async fn copy_out_text(client: &tokio_postgres::Client, sql: &str) -> String {
    use futures::TryStreamExt;
    let chunks: Vec<bytes::Bytes> = client
        .copy_out(sql)
        .await
        .expect("copy out")
        .try_collect()
        .await
        .expect("copy data");
    String::from_utf8(chunks.concat()).expect("utf-8")
}

/// Arrays bound as parameters, as tokio-postgres sends them (binary): `= ANY($1)` with the
/// parameter's type inferred from the column, with an explicit cast, with NULL elements and
/// empty; `$1::int[]` read back as a typed array.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_parameters() {
    let server = common::TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE tagged (k BIGINT, name TEXT, day DATE);
             INSERT INTO tagged VALUES (1, 'x', '2026-01-01'), (2, 'y', '2026-01-02'), (3, 'z', NULL);",
        )
        .await
        .expect("create");
    let keys = |rows: Vec<tokio_postgres::Row>| -> Vec<i64> {
        rows.iter().map(|row| row.get::<_, i64>(0)).collect()
    };
    let by_key = client
        .prepare("SELECT k FROM tagged WHERE k = ANY($1) ORDER BY k")
        .await
        .expect("prepare");
    assert_eq!(by_key.params(), &[Type::INT8_ARRAY]);
    let rows = client.query(&by_key, &[&vec![1i64, 3]]).await.expect("any");
    assert_eq!(keys(rows), vec![1, 3]);
    let rows = client
        .query(&by_key, &[&vec![Some(2i64), None]])
        .await
        .expect("null element");
    assert_eq!(keys(rows), vec![2]);
    let rows = client
        .query(&by_key, &[&Vec::<i64>::new()])
        .await
        .expect("empty");
    assert!(rows.is_empty());
    let rows = client
        .query(
            "SELECT k FROM tagged WHERE k <> ALL($1) ORDER BY k",
            &[&vec![1i64, 3]],
        )
        .await
        .expect("<> ALL");
    assert_eq!(keys(rows), vec![2]);
    let rows = client
        .query(
            "SELECT k FROM tagged WHERE name = ANY($1) ORDER BY k",
            &[&vec!["x", "z"]],
        )
        .await
        .expect("text array");
    assert_eq!(keys(rows), vec![1, 3]);
    let day = NaiveDate::from_ymd_opt(2026, 1, 2).expect("date");
    let rows = client
        .query(
            "SELECT k FROM tagged WHERE day = ANY($1::date[]) ORDER BY k",
            &[&vec![day]],
        )
        .await
        .expect("date array");
    assert_eq!(keys(rows), vec![2]);
    let row = client
        .query_one(
            "SELECT $1::int[] AS numbers",
            &[&vec![Some(4i32), None, Some(6)]],
        )
        .await
        .expect("array value");
    assert_eq!(
        row.get::<_, Vec<Option<i32>>>(0),
        vec![Some(4), None, Some(6)]
    );
}

/// INSERT ... RETURNING through a prepared statement: Describe names the returned columns and
/// their types, and each execution returns the rows it wrote with the INSERT tag's count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_returning() {
    let server = common::TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE ledger (id BIGINT, note TEXT, amount NUMERIC(8,2))")
        .await
        .expect("create");
    let insert = client
        .prepare("INSERT INTO ledger (id, note) VALUES ($1, $2), ($1 + 1, upper($2)) RETURNING id, note AS text, amount")
        .await
        .expect("prepare");
    let described: Vec<(&str, &Type)> = insert
        .columns()
        .iter()
        .map(|column| (column.name(), column.type_()))
        .collect();
    assert_eq!(
        described,
        vec![
            ("id", &Type::INT8),
            ("text", &Type::TEXT),
            ("amount", &Type::NUMERIC)
        ]
    );
    let rows = client
        .query(&insert, &[&7i64, &"paid"])
        .await
        .expect("insert returning");
    let returned: Vec<(i64, String, Option<Decimal>)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        returned,
        vec![(7, "paid".into(), None), (8, "PAID".into(), None)]
    );
    let count = client
        .execute("INSERT INTO ledger VALUES (9, 'x', 1.5) RETURNING *", &[])
        .await
        .expect("count of an insert returning");
    assert_eq!(count, 1);
    let update = client
        .prepare("UPDATE ledger SET amount = $1 WHERE id = $2 RETURNING id, amount")
        .await
        .expect("prepare update returning");
    assert_eq!(update.params(), &[Type::NUMERIC, Type::INT8]);
    let rows = client
        .query(&update, &[&Decimal::new(250, 2), &9i64])
        .await
        .expect("update returning");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, Decimal>(1), Decimal::new(250, 2));
    let deleted = client
        .query("DELETE FROM ledger WHERE id = 9 RETURNING id", &[])
        .await
        .expect("delete returning");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].get::<_, i64>(0), 9);
    let rows = client
        .query_one("SELECT count(*) FROM ledger", &[])
        .await
        .expect("count");
    assert_eq!(rows.get::<_, i64>(0), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_reads_by_parameter() {
    let server = common::TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE readings (sensor TEXT, k INT, v BIGINT);
             INSERT INTO readings SELECT 's' || (n % 4), n % 100, n FROM generate_series(1, 1000) AS t(n);
             CREATE MATERIALIZED VIEW per_k AS SELECT k, sum(v) AS total, count(*) AS n FROM readings GROUP BY k;
             CREATE MATERIALIZED VIEW per_sensor_k AS SELECT sensor, k, max(v) AS highest FROM readings GROUP BY sensor, k;
             CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner TEXT);
             INSERT INTO accounts VALUES (1, 'ann'), (2, 'bob');",
        )
        .await
        .expect("create");
    let by_key = client
        .prepare("SELECT k, total, n FROM per_k WHERE k = $1")
        .await
        .expect("prepare");
    assert_eq!(by_key.params(), &[Type::INT4]);
    for key in [0i32, 7, 99] {
        let rows = client.query(&by_key, &[&key]).await.expect("point read");
        assert_eq!(rows.len(), 1);
        let expected: i64 = (1..=1000i64).filter(|n| n % 100 == i64::from(key)).sum();
        assert_eq!(rows[0].get::<_, i32>(0), key);
        assert_eq!(rows[0].get::<_, Decimal>(1), Decimal::from(expected));
        assert_eq!(rows[0].get::<_, i64>(2), 10);
    }
    assert!(
        client
            .query(&by_key, &[&100i32])
            .await
            .expect("miss")
            .is_empty()
    );
    assert!(
        client
            .query(&by_key, &[&None::<i32>])
            .await
            .expect("NULL")
            .is_empty()
    );
    // A write between two executions of the prepared statement is seen by the second.
    client
        .execute("INSERT INTO readings VALUES ('s9', 7, 1000000)", &[])
        .await
        .expect("insert");
    let rows = client.query(&by_key, &[&7i32]).await.expect("after write");
    assert_eq!(rows[0].get::<_, i64>(2), 11);

    let by_pair = client
        .prepare("SELECT highest FROM per_sensor_k WHERE k = $2 AND sensor = $1")
        .await
        .expect("prepare pair");
    let rows = client
        .query(&by_pair, &[&"s3", &43i32])
        .await
        .expect("pair");
    let expected: i64 = (1..=1000i64)
        .filter(|n| n % 4 == 3 && n % 100 == 43)
        .max()
        .expect("some");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), expected);

    let owner = client
        .prepare("SELECT owner FROM accounts WHERE id = $1")
        .await
        .expect("prepare owner");
    let rows = client.query(&owner, &[&2i64]).await.expect("owner");
    assert_eq!(rows[0].get::<_, &str>(0), "bob");
    // Binary results through the same path.
    let rows = client
        .query("SELECT id, owner FROM accounts WHERE id = $1", &[&1i64])
        .await
        .expect("binary");
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    assert_eq!(rows[0].get::<_, &str>(1), "ann");
}
