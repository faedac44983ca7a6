//! Kafka sources and sinks against a real broker (KAFKA_BOOTSTRAP_SERVERS, or the one
//! `scripts/kafka` starts) and the real server over pgwire.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::TestServer;
use common::kafka::{self, Record};
use rust_decimal::Decimal;
use tokio_postgres::{Client, SimpleQueryMessage};

/// Runs blocking work (Python, rdkafka) off the runtime's workers, which serve the server.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking test work")
}

/// Rows written as string slices, to compare with [`rows`].
fn table(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|row| row.iter().map(|cell| cell.to_string()).collect())
        .collect()
}

/// Rows of a query as text (NULL as "NULL").
async fn rows(client: &Client, sql: &str) -> Vec<Vec<String>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|index| row.get(index).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

async fn execute(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

async fn error_code(client: &Client, sql: &str) -> String {
    let error = client
        .batch_execute(sql)
        .await
        .expect_err("the statement must fail");
    error
        .code()
        .map(|code| code.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {error}"))
}

/// What the seed's producer wrote for messages 0..count: per key, (count, sum of values).
/// Creates `topic` with one partition and produces each payload to it, in order.
async fn produce_to_new_topic(topic: &str, payloads: Vec<&'static [u8]>) {
    let topic = topic.to_string();
    blocking(move || {
        let records: Vec<Record> = payloads
            .into_iter()
            .map(|value| Record {
                value: Some(value),
                partition: Some(0),
                ..Default::default()
            })
            .collect();
        kafka::create_topic(&topic, 1);
        kafka::produce(&topic, &records);
    })
    .await;
}

fn expected_per_key(count: u64, keys: u64) -> HashMap<i64, (i64, i64)> {
    let mut expected: HashMap<i64, (i64, i64)> = HashMap::new();
    for i in 0..count {
        let entry = expected.entry((i % keys) as i64).or_default();
        entry.0 += 1;
        entry.1 += ((i * 7) % 1000) as i64;
    }
    expected
}

/// Checks `SELECT key, sum, avg FROM per_key` against the expected counts and sums.
async fn check_view(client: &Client, view: &str, expected: &HashMap<i64, (i64, i64)>) {
    let rows = rows(client, &format!("SELECT key, sum, avg FROM {view}")).await;
    assert_eq!(rows.len(), expected.len(), "one row per key");
    for row in rows {
        let key: i64 = row[0].parse().expect("key");
        let (count, sum) = expected[&key];
        assert_eq!(row[1], sum.to_string(), "sum of key {key}");
        let avg: Decimal = row[2].parse().expect("avg is a decimal");
        let exact = Decimal::from(sum) / Decimal::from(count);
        assert!(
            (avg - exact).abs() < Decimal::new(1, 12),
            "avg of key {key}: {avg} vs {exact}"
        );
    }
}

/// Checks the upsert sink's topic, read as a table, against the expected counts and sums.
async fn check_sink(topic: &str, expected: &HashMap<i64, (i64, i64)>) {
    let expected_table: HashMap<String, (i64, i64)> = expected
        .iter()
        .map(|(key, value)| (format!("{{\"key\":{key}}}"), *value))
        .collect();
    let topic = topic.to_string();
    let wanted = expected_table.clone();
    let table = blocking(move || {
        kafka::read_table(&topic, Duration::from_secs(60), |table| {
            table.len() == wanted.len()
                && wanted.iter().all(|(key, (_, sum))| {
                    table
                        .get(key)
                        .is_some_and(|value| value.contains(&format!("\"sum\":{sum},")))
                })
        })
    })
    .await;
    assert_eq!(table.len(), expected_table.len(), "one sink row per key");
    for (key, (count, sum)) in &expected_table {
        let value = table.get(key).unwrap_or_else(|| panic!("no row for {key}"));
        assert!(
            value.contains(&format!("\"sum\":{sum},")),
            "sink row {key} = {value}, expected sum {sum}"
        );
        let avg = value
            .split("\"avg\":")
            .nth(1)
            .and_then(|rest| rest.strip_suffix('}'))
            .and_then(|avg| avg.parse::<Decimal>().ok())
            .unwrap_or_else(|| panic!("sink row {key} has no avg: {value}"));
        let exact = Decimal::from(*sum) / Decimal::from(*count);
        assert!((avg - exact).abs() < Decimal::new(1, 12), "avg in {value}");
    }
}

/// The seed job (Python producer → groupBy(key).agg(sum, avg) → result topic), as SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_pipeline_view_and_upsert_sink_hold_exact_aggregates() {
    let input = kafka::unique_topic("test_topic");
    let output = kafka::unique_topic("result_topic");
    let topic = input.clone();
    blocking(move || {
        kafka::produce_with_python(&topic, &["--count", "100000", "--partitions", "3"])
    })
    .await;
    let server = TestServer::start().await;
    let client = server.connect().await;
    let broker = kafka::bootstrap();
    execute(
        &client,
        &format!(
            "CREATE CONNECTION local_kafka TO KAFKA (BROKER '{broker}');
             CREATE SOURCE visits (key INT, value INT)
               FROM KAFKA (CONNECTION local_kafka, TOPIC '{input}', START OFFSET 'earliest')
               FORMAT JSON;
             CREATE MATERIALIZED VIEW per_key AS
               SELECT key, sum(value) AS sum, avg(value) AS avg FROM visits GROUP BY key;
             CREATE SINK per_key_out FROM per_key
               INTO KAFKA (BROKER '{broker}', TOPIC '{output}') KEY (key) FORMAT JSON ENVELOPE UPSERT;
             FLUSH;"
        ),
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT count(*) FROM visits").await,
        table(&[&["100000"]])
    );
    let expected = expected_per_key(100_000, 100);
    check_view(&client, "per_key", &expected).await;
    check_sink(&output, &expected).await;

    // Every partition was read to its end.
    let progress = rows(
        &client,
        "SELECT partition, lag, messages, errors FROM tributary.source_progress ORDER BY partition",
    )
    .await;
    assert_eq!(progress.len(), 3, "three partitions: {progress:?}");
    let total: i64 = progress
        .iter()
        .map(|row| row[2].parse::<i64>().unwrap_or(0))
        .sum();
    assert_eq!(total, 100_000);
    assert!(
        progress.iter().all(|row| row[1] == "0" && row[3] == "0"),
        "{progress:?}"
    );

    // More input: the view and the sink move on.
    let topic = input.clone();
    blocking(move || {
        kafka::produce_with_python(&topic, &["--count", "20000", "--start", "100000"])
    })
    .await;
    execute(&client, "FLUSH").await;
    let expected = expected_per_key(120_000, 100);
    check_view(&client, "per_key", &expected).await;
    check_sink(&output, &expected).await;

    assert_eq!(
        rows(&client, "SHOW SOURCES").await,
        vec![vec![
            "visits".to_string(),
            format!("{broker} topic {input}")
        ]]
    );
    assert_eq!(rows(&client, "SHOW SINKS").await.len(), 1);
    let sink = rows(
        &client,
        "SELECT sink, epoch > 0, errors, state FROM tributary.sink_progress",
    )
    .await;
    assert_eq!(sink, table(&[&["per_key_out", "t", "0", "running"]]));
    assert_eq!(rows(&client, "SHOW CONNECTIONS").await.len(), 1);
    assert_eq!(error_code(&client, "DROP SOURCE visits").await, "2BP01");
    assert_eq!(
        error_code(&client, "DROP CONNECTION local_kafka").await,
        "2BP01"
    );
    execute(
        &client,
        "DROP SOURCE visits CASCADE; DROP CONNECTION local_kafka",
    )
    .await;
    assert!(rows(&client, "SHOW SINKS").await.is_empty());
    assert!(
        rows(&client, "SELECT * FROM tributary.source_progress")
            .await
            .is_empty()
    );
}

/// Malformed messages mixed into a valid stream: each refused one is counted and kept with its
/// place and reason; every valid one arrives; the source keeps going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_recorded_and_skipped() {
    let topic = kafka::unique_topic("malformed");
    let payloads: Vec<Option<&[u8]>> = vec![
        Some(br#"{"id": 1, "name": "a"}"#),
        Some(br#"{"id": 2, "name": "b""#),            // truncated
        Some(br#"{"id": "three", "name": "c"}"#),     // wrong type
        Some(br#"{"name": "d"}"#),                    // NOT NULL id missing
        Some(b""),                                    // empty
        None,                                         // no value at all
        Some(br#"{"id": 7, "name": "g"} {"id": 8}"#), // two rows in one message
        Some(b"not json"),
        Some(br#"{"id": 9, "name": "i", "extra": true}"#),
        Some(br#"{"id": 10}"#),
    ];
    let records: Vec<Record> = payloads
        .iter()
        .map(|value| Record {
            value: *value,
            partition: Some(0),
            ..Default::default()
        })
        .collect();
    let produced = topic.clone();
    blocking(move || {
        kafka::create_topic(&produced, 1);
        let records: Vec<Record> = records;
        kafka::produce(&produced, &records);
    })
    .await;
    let server = TestServer::start().await;
    let client = server.connect().await;
    execute(
        &client,
        &format!(
            "CREATE SOURCE people (id INT NOT NULL, name TEXT)
               FROM KAFKA (BROKER '{}', TOPIC '{topic}') FORMAT JSON
               ERRORS TO KAFKA TOPIC '{topic}_dead';
             CREATE MATERIALIZED VIEW named AS SELECT count(*) AS n, count(name) AS names FROM people;
             FLUSH;",
            kafka::bootstrap()
        ),
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT id, name FROM people ORDER BY id").await,
        table(&[&["1", "a"], &["9", "i"], &["10", "NULL"]])
    );
    assert_eq!(
        rows(&client, "SELECT n, names FROM named").await,
        table(&[&["3", "2"]])
    );
    let errors = rows(
        &client,
        "SELECT source, partition, \"offset\", reason, payload FROM tributary.source_errors ORDER BY \"offset\"",
    )
    .await;
    let offsets: Vec<&str> = errors.iter().map(|row| row[2].as_str()).collect();
    assert_eq!(
        offsets,
        vec!["1", "2", "3", "4", "5", "6", "7"],
        "{errors:?}"
    );
    assert!(errors.iter().all(|row| row[0] == "people" && row[1] == "0"));
    assert!(
        errors.iter().all(|row| !row[3].is_empty()),
        "every error has a reason"
    );
    assert_eq!(
        errors[0][4], r#"{"id": 2, "name": "b""#,
        "the payload is kept"
    );
    assert_eq!(
        rows(
            &client,
            "SELECT messages, errors, lag FROM tributary.source_progress"
        )
        .await,
        table(&[&["10", "7", "0"]])
    );

    // The refused messages were forwarded, as they were, to the dead-letter topic.
    let dead = format!("{topic}_dead");
    let forwarded = blocking(move || kafka::read_all(&dead, 7, Duration::from_secs(30))).await;
    let forwarded: Vec<Option<String>> = forwarded.into_iter().map(|(_, value)| value).collect();
    assert_eq!(
        forwarded,
        vec![
            Some(r#"{"id": 2, "name": "b""#.to_string()),
            Some(r#"{"id": "three", "name": "c"}"#.to_string()),
            Some(r#"{"name": "d"}"#.to_string()),
            Some(String::new()),
            None,
            Some(r#"{"id": 7, "name": "g"} {"id": 8}"#.to_string()),
            Some("not json".to_string()),
        ]
    );

    // The source goes on after its errors.
    let more = topic.clone();
    blocking(move || {
        kafka::produce(
            &more,
            &[Record {
                value: Some(br#"{"id": 11, "name": "k"}"#),
                ..Default::default()
            }],
        )
    })
    .await;
    execute(&client, "FLUSH").await;
    assert_eq!(rows(&client, "SELECT n FROM named").await, table(&[&["4"]]));
}

/// A JSON source's jsonb columns take a field's value as it came (an object, an array, a
/// string), in jsonb's canonical form; views read them with the jsonb operators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonb_columns_take_nested_values_as_they_came() {
    let topic = kafka::unique_topic("jsonb");
    let payloads: Vec<&[u8]> = vec![
        br#"{"id": 1, "attrs": {"color": "red", "sizes": [1, 2]}, "tags": ["a", "b"]}"#,
        br#"{"id": 2, "attrs": null, "tags": ["b"]}"#,
        br#"{"id": 3}"#,
        br#"{"id": 4, "attrs": "plain", "tags": []}"#,
        br#"{"id": 5, "attrs": {"n": 1e999999999}}"#,
        br#"{"id": 6, "attrs": {"deep": {"x": [{"y": 1.50}]}, "color": "red"}}"#,
    ];
    produce_to_new_topic(&topic, payloads).await;
    let server = TestServer::start().await;
    let client = server.connect().await;
    execute(
        &client,
        &format!(
            "CREATE SOURCE items (id INT NOT NULL, attrs JSONB, tags JSONB)
               FROM KAFKA (BROKER '{}', TOPIC '{topic}') FORMAT JSON;
             CREATE MATERIALIZED VIEW colors AS
               SELECT attrs ->> 'color' AS color, count(*) AS n FROM items
               WHERE jsonb_typeof(attrs) = 'object' GROUP BY attrs ->> 'color';
             CREATE MATERIALIZED VIEW tag_counts AS
               SELECT jsonb_array_elements_text(tags) AS tag, count(*) AS n FROM items GROUP BY 1;
             FLUSH;",
            kafka::bootstrap()
        ),
    )
    .await;
    assert_eq!(
        rows(
            &client,
            "SELECT id, attrs::text, tags::text FROM items ORDER BY id"
        )
        .await,
        table(&[
            &["1", r#"{"color": "red", "sizes": [1, 2]}"#, r#"["a", "b"]"#],
            &["2", "NULL", r#"["b"]"#],
            &["3", "NULL", "NULL"],
            &["4", r#""plain""#, "[]"],
            &[
                "6",
                r#"{"deep": {"x": [{"y": 1.50}]}, "color": "red"}"#,
                "NULL"
            ],
        ])
    );
    assert_eq!(
        rows(
            &client,
            "SELECT attrs #>> '{deep,x,0,y}' FROM items WHERE id = 6"
        )
        .await,
        table(&[&["1.50"]])
    );
    assert_eq!(
        rows(&client, "SELECT color, n FROM colors ORDER BY color").await,
        table(&[&["red", "2"]])
    );
    assert_eq!(
        rows(&client, "SELECT tag, n FROM tag_counts ORDER BY tag").await,
        table(&[&["a", "1"], &["b", "2"]])
    );
    // The number jsonb cannot hold is an error of its message, not of the source.
    let errors = rows(
        &client,
        "SELECT \"offset\", reason FROM tributary.source_errors",
    )
    .await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0][0], "4");
    assert!(errors[0][1].contains("overflows numeric"), "{errors:?}");

    // A sink writes jsonb columns as the JSON they hold, not as strings of it.
    let output = format!("{topic}_out");
    execute(
        &client,
        &format!(
            "CREATE MATERIALIZED VIEW red AS SELECT id, attrs FROM items WHERE attrs @> '{{\"color\": \"red\"}}';
             CREATE SINK red_out FROM red
               INTO KAFKA (BROKER '{}', TOPIC '{output}') KEY (id) FORMAT JSON ENVELOPE UPSERT;",
            kafka::bootstrap()
        ),
    )
    .await;
    let mut messages = blocking(move || kafka::read_all(&output, 2, Duration::from_secs(30))).await;
    messages.sort();
    let values: Vec<serde_json::Value> = messages
        .iter()
        .map(|(_, value)| serde_json::from_str(value.as_deref().unwrap_or("null")).expect("JSON"))
        .collect();
    assert_eq!(
        values,
        vec![
            serde_json::json!({"id": 1, "attrs": {"color": "red", "sizes": [1, 2]}}),
            serde_json::json!({"id": 6, "attrs": {"deep": {"x": [{"y": 1.50}]}, "color": "red"}}),
        ]
    );
}

/// The dead-letter topic Tributary creates takes any message the source's topic does (a 4 MB
/// one here, where Kafka's default limit is 1 MB); a forward the topic refuses (one the user
/// made with a small limit) is an error in `tributary.source_errors`, not only a log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_topics_take_large_messages_and_failed_forwards_are_errors() {
    let topic = kafka::unique_topic("large_bad");
    let small_dead = kafka::unique_topic("small_dead");
    let large = vec![b'x'; 4 * 1024 * 1024];
    let medium = vec![b'y'; 5000];
    let (produced, small) = (topic.clone(), small_dead.clone());
    blocking(move || {
        kafka::create_topic_with(&produced, 1, &[("max.message.bytes", "8388608")]);
        kafka::create_topic_with(&small, 1, &[("max.message.bytes", "2000")]);
        kafka::produce(
            &produced,
            &[
                Record {
                    value: Some(&large),
                    ..Default::default()
                },
                Record {
                    value: Some(br#"{"id": 1}"#),
                    ..Default::default()
                },
                Record {
                    value: Some(&medium),
                    ..Default::default()
                },
            ],
        );
    })
    .await;
    let server = TestServer::start().await;
    let client = server.connect().await;
    execute(
        &client,
        &format!(
            "CREATE SOURCE large (id INT) FROM KAFKA (BROKER '{broker}', TOPIC '{topic}')
               FORMAT JSON ERRORS TO KAFKA TOPIC '{topic}_dead';
             CREATE SOURCE small (id INT) FROM KAFKA (BROKER '{broker}', TOPIC '{topic}')
               FORMAT JSON ERRORS TO KAFKA TOPIC '{small_dead}';
             FLUSH;",
            broker = kafka::bootstrap()
        ),
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT id FROM large").await,
        table(&[&["1"]])
    );
    let dead = format!("{topic}_dead");
    let forwarded = blocking(move || kafka::read_all(&dead, 2, Duration::from_secs(30))).await;
    let sizes: Vec<usize> = forwarded
        .iter()
        .map(|(_, value)| value.as_ref().map_or(0, String::len))
        .collect();
    assert_eq!(sizes, [4 * 1024 * 1024, 5000]);

    // Both messages are too large for the small topic: each failed forward is shown.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let failures = loop {
        let failures = rows(
            &client,
            "SELECT \"offset\", reason FROM tributary.source_errors
               WHERE source = 'small' AND reason LIKE 'could not forward%' ORDER BY \"offset\"",
        )
        .await;
        if failures.len() == 2 || tokio::time::Instant::now() > deadline {
            break failures;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let offsets: Vec<&str> = failures.iter().map(|row| row[0].as_str()).collect();
    assert_eq!(offsets, ["0", "2"], "{failures:?}");
    assert!(
        failures
            .iter()
            .all(|row| row[1].contains(&small_dead) && row[1].contains("retrying")),
        "{failures:?}"
    );
    let empty = small_dead.clone();
    let forwarded = blocking(move || kafka::read_all(&empty, 0, Duration::from_secs(2))).await;
    assert!(forwarded.is_empty());
}

/// A JSON number with a fraction for an integer column is a source error (Postgres: 22P02), as
/// is one out of the column's range; arrow-json alone would store 1.5 as 1. Whole numbers
/// written with a point or an exponent, and points inside strings or other columns, pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fractional_and_out_of_range_numbers_for_integer_columns_are_refused() {
    let topic = kafka::unique_topic("fractional");
    let payloads: [&[u8]; 8] = [
        br#"{"n": 1, "big": 1, "price": 0.5}"#,
        br#"{"n": 1.5, "big": 2}"#,
        br#"{"n": 2.0, "big": 1e3, "note": "3.5 apples"}"#,
        br#"{"n": 3, "big": 15e-1}"#,
        br#"{"n": 3000000000}"#,
        br#"{"n": 4, "inner": {"n": 0.25}, "list": [1.5]}"#,
        br#"{"note": "a "quoted" 9.5", "n": -7.25}"#,
        br#"{"n": 5, "price": 2.5}"#,
    ];
    produce_to_new_topic(&topic, payloads.to_vec()).await;
    let server = TestServer::start().await;
    let client = server.connect().await;
    execute(
        &client,
        &format!(
            "CREATE SOURCE numbers (n INT, big BIGINT, price DOUBLE PRECISION, note TEXT)
               FROM KAFKA (BROKER '{}', TOPIC '{topic}') FORMAT JSON;
             FLUSH;",
            kafka::bootstrap()
        ),
    )
    .await;
    assert_eq!(
        rows(
            &client,
            "SELECT n, big, price, note FROM numbers ORDER BY n"
        )
        .await,
        table(&[
            &["1", "1", "0.5", "NULL"],
            &["2", "1000", "NULL", "3.5 apples"],
            &["4", "NULL", "NULL", "NULL"],
            &["5", "NULL", "2.5", "NULL"],
        ])
    );
    let errors = rows(
        &client,
        "SELECT \"offset\", reason FROM tributary.source_errors ORDER BY \"offset\"",
    )
    .await;
    assert_eq!(
        errors,
        table(&[
            &[
                "1",
                r#"invalid input syntax for type integer: "1.5" (field "n")"#
            ],
            &[
                "3",
                r#"invalid input syntax for type bigint: "15e-1" (field "big")"#
            ],
            &[
                "4",
                r#"value "3000000000" is out of range for type integer (field "n")"#
            ],
            &[
                "6",
                r#"invalid input syntax for type integer: "-7.25" (field "n")"#
            ],
        ])
    );
    assert_eq!(
        rows(
            &client,
            "SELECT messages, errors FROM tributary.source_progress"
        )
        .await,
        table(&[&["8", "4"]])
    );
}

/// CSV (with a header message and another delimiter), TEXT and BYTES payloads, and every
/// INCLUDE column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_text_bytes_and_include_columns() {
    let csv = kafka::unique_topic("csv");
    let text = kafka::unique_topic("text");
    let (csv_topic, text_topic) = (csv.clone(), text.clone());
    blocking(move || {
        kafka::create_topic(&csv_topic, 1);
        kafka::create_topic(&text_topic, 2);
        kafka::produce(
            &csv_topic,
            &[
                Record {
                    value: Some(b"host;cpu;at"),
                    ..Default::default()
                },
                Record {
                    value: Some(b"a;0.5;2026-01-01 10:00:00"),
                    ..Default::default()
                },
                Record {
                    value: Some(b"b;x;2026-01-01 10:00:00"),
                    ..Default::default()
                },
                Record {
                    value: Some(b"a;1.5;2026-01-01 10:01:00"),
                    ..Default::default()
                },
            ],
        );
        kafka::produce(
            &text_topic,
            &[
                Record {
                    key: Some(b"k1"),
                    value: Some("héllo".as_bytes()),
                    partition: Some(0),
                    headers: vec![("trace", b"t-1")],
                },
                Record {
                    key: None,
                    value: Some(b"world"),
                    partition: Some(1),
                    headers: Vec::new(),
                },
                Record {
                    key: Some(b"k3"),
                    value: Some(b"\xff\xfe"),
                    partition: Some(1),
                    headers: Vec::new(),
                },
            ],
        );
    })
    .await;
    let server = TestServer::start().await;
    let client = server.connect().await;
    let broker = kafka::bootstrap();
    execute(
        &client,
        &format!(
            "CREATE SOURCE cpu (host TEXT, cpu DOUBLE PRECISION, at TIMESTAMP)
               FROM KAFKA (BROKER '{broker}', TOPIC '{csv}') FORMAT CSV (HEADER, DELIMITER ';');
             CREATE SOURCE lines FROM KAFKA (BROKER '{broker}', TOPIC '{text}') FORMAT TEXT
               INCLUDE KEY, PARTITION, OFFSET AS position, TIMESTAMP AS ts, HEADERS;
             CREATE SOURCE raw FROM KAFKA (BROKER '{broker}', TOPIC '{text}') FORMAT BYTES
               INCLUDE KEY AS k;
             CREATE MATERIALIZED VIEW per_host AS SELECT host, max(cpu) AS peak FROM cpu GROUP BY host;
             FLUSH;"
        ),
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT host, peak FROM per_host ORDER BY host").await,
        table(&[&["a", "1.5"]])
    );
    assert_eq!(
        rows(
            &client,
            "SELECT count(*) FROM tributary.source_errors WHERE source = 'cpu'"
        )
        .await,
        table(&[&["1"]]),
        "the header is skipped, the row with cpu 'x' refused"
    );
    assert_eq!(
        rows(
            &client,
            "SELECT text, key, partition, position, ts IS NOT NULL, headers FROM lines ORDER BY partition, position"
        )
        .await,
        table(&[
            &["héllo", "k1", "0", "0", "t", r#"{"trace":"t-1"}"#],
            &["world", "NULL", "1", "0", "t", "{}"],
        ]),
        "invalid UTF-8 is refused by a TEXT source"
    );
    assert_eq!(
        rows(
            &client,
            "SELECT encode(data, 'hex'), k FROM raw ORDER BY encode(data, 'hex')"
        )
        .await,
        table(&[
            &["68c3a96c6c6f", "\\x6b31"],
            &["776f726c64", "NULL"],
            &["fffe", "\\x6b33"]
        ])
    );
}

/// A DEBEZIUM sink writes before/after/op per key and epoch: inserts, updates, deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_sink_writes_inserts_updates_and_deletes() {
    let output = kafka::unique_topic("debezium");
    let topic = output.clone();
    blocking(move || kafka::create_topic(&topic, 1)).await;
    let server = TestServer::start().await;
    let client = server.connect().await;
    execute(
        &client,
        &format!(
            "CREATE TABLE sales (product TEXT, amount INT);
             CREATE MATERIALIZED VIEW totals AS SELECT product, sum(amount) AS total FROM sales GROUP BY product;
             INSERT INTO sales VALUES ('apple', 3), ('pear', 5);
             CREATE SINK totals_out FROM totals
               INTO KAFKA (BROKER '{}', TOPIC '{output}') KEY (product) FORMAT JSON ENVELOPE DEBEZIUM;
             INSERT INTO sales VALUES ('apple', 4);
             DELETE FROM sales WHERE product = 'pear';
             INSERT INTO sales VALUES ('fig', 1);",
            kafka::bootstrap()
        ),
    )
    .await;
    let messages = blocking(move || kafka::read_all(&output, 5, Duration::from_secs(30))).await;
    let as_text: Vec<(String, String)> = messages
        .into_iter()
        .map(|(key, value)| (key.unwrap_or_default(), value.unwrap_or_default()))
        .collect();
    let expected: Vec<(String, String)> = [
        (r#"{"product":"apple"}"#, r#"{"before":null,"after":{"product":"apple","total":3},"op":"c"}"#),
        (r#"{"product":"pear"}"#, r#"{"before":null,"after":{"product":"pear","total":5},"op":"c"}"#),
        (r#"{"product":"apple"}"#, r#"{"before":{"product":"apple","total":3},"after":{"product":"apple","total":7},"op":"u"}"#),
        (r#"{"product":"pear"}"#, r#"{"before":{"product":"pear","total":5},"after":null,"op":"d"}"#),
        (r#"{"product":"fig"}"#, r#"{"before":null,"after":{"product":"fig","total":1},"op":"c"}"#),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .collect();
    assert_eq!(as_text, expected);
}

/// A sink over a view replaced by CREATE OR REPLACE keeps running and writes exactly the
/// difference between the old rows and the new: here one delete, and no update for the rows the
/// two definitions share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_writes_only_what_a_replaced_view_changed() {
    let output = kafka::unique_topic("replaced");
    let topic = output.clone();
    blocking(move || kafka::create_topic(&topic, 1)).await;
    let server = TestServer::start().await;
    let client = server.connect().await;
    execute(
        &client,
        &format!(
            "CREATE TABLE sales (product TEXT, amount INT);
             CREATE MATERIALIZED VIEW totals AS SELECT product, sum(amount) AS total FROM sales GROUP BY product;
             INSERT INTO sales VALUES ('apple', 3), ('pear', 5), ('fig', 1);
             CREATE SINK totals_out FROM totals
               INTO KAFKA (BROKER '{}', TOPIC '{output}') KEY (product) FORMAT JSON ENVELOPE DEBEZIUM;
             CREATE OR REPLACE MATERIALIZED VIEW totals AS
               SELECT product, sum(amount) AS total FROM sales WHERE product <> 'pear' GROUP BY product;
             INSERT INTO sales VALUES ('kiwi', 2);",
            kafka::bootstrap()
        ),
    )
    .await;
    let messages = blocking(move || kafka::read_all(&output, 5, Duration::from_secs(30))).await;
    let mut as_text: Vec<(String, String)> = messages
        .into_iter()
        .map(|(key, value)| (key.unwrap_or_default(), value.unwrap_or_default()))
        .collect();
    // The sink's first epoch holds the view's rows in no particular order.
    as_text[..3].sort();
    let expected: Vec<(String, String)> = [
        (
            r#"{"product":"apple"}"#,
            r#"{"before":null,"after":{"product":"apple","total":3},"op":"c"}"#,
        ),
        (
            r#"{"product":"fig"}"#,
            r#"{"before":null,"after":{"product":"fig","total":1},"op":"c"}"#,
        ),
        (
            r#"{"product":"pear"}"#,
            r#"{"before":null,"after":{"product":"pear","total":5},"op":"c"}"#,
        ),
        (
            r#"{"product":"pear"}"#,
            r#"{"before":{"product":"pear","total":5},"after":null,"op":"d"}"#,
        ),
        (
            r#"{"product":"kiwi"}"#,
            r#"{"before":null,"after":{"product":"kiwi","total":2},"op":"c"}"#,
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .collect();
    assert_eq!(as_text, expected);
}

/// Clear errors at CREATE time, with SQLSTATEs, and nothing left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sources_and_sinks_are_refused_at_create() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    let broker = kafka::bootstrap();
    let missing = kafka::unique_topic("missing");
    assert_eq!(
        error_code(
            &client,
            &format!("CREATE SOURCE s (a INT) FROM KAFKA (BROKER '{broker}', TOPIC '{missing}') FORMAT JSON")
        )
        .await,
        "42704"
    );
    assert_eq!(
        error_code(
            &client,
            "CREATE SOURCE s (a INT) FROM KAFKA (BROKER '127.0.0.1:1', TOPIC 't') FORMAT JSON"
        )
        .await,
        "58000"
    );
    assert_eq!(
        error_code(
            &client,
            "CREATE SOURCE s (a INT) FROM KAFKA (TOPIC 't') FORMAT JSON"
        )
        .await,
        "22023"
    );
    assert_eq!(
        error_code(
            &client,
            "CREATE SOURCE s (a INT) FROM KAFKA (CONNECTION nope, TOPIC 't') FORMAT JSON"
        )
        .await,
        "42P01"
    );
    assert_eq!(
        error_code(
            &client,
            "CREATE SOURCE s (a INT) FROM KAFKA (BROKER 'x' TOPIC 't')"
        )
        .await,
        "42601"
    );
    execute(
        &client,
        "CREATE TABLE t (a INT); CREATE VIEW v AS SELECT a FROM t",
    )
    .await;
    assert_eq!(
        error_code(
            &client,
            &format!("CREATE SINK k FROM t INTO KAFKA (BROKER '{broker}', TOPIC 'x') FORMAT JSON ENVELOPE UPSERT")
        )
        .await,
        "22023",
        "UPSERT needs a KEY"
    );
    assert_eq!(
        error_code(
            &client,
            &format!("CREATE SINK k FROM t INTO KAFKA (BROKER '{broker}', TOPIC 'x') KEY (b) FORMAT JSON ENVELOPE UPSERT")
        )
        .await,
        "42703"
    );
    assert_eq!(
        error_code(
            &client,
            &format!("CREATE SINK k FROM v INTO KAFKA (BROKER '{broker}', TOPIC 'x') KEY (a) FORMAT JSON ENVELOPE UPSERT")
        )
        .await,
        "0A000"
    );
    assert_eq!(error_code(&client, "DROP SOURCE t").await, "42809");
    assert!(rows(&client, "SHOW SOURCES").await.is_empty());
    assert!(rows(&client, "SHOW SINKS").await.is_empty());
    // FLUSH with no source returns at once.
    execute(&client, "FLUSH").await;
}

/// ENVELOPE UPSERT: the key identifies the row, a value replaces it, a tombstone deletes it;
/// views over the source follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_source_replaces_and_deletes_by_key() {
    let topic = kafka::unique_topic("upsert");
    let produced = topic.clone();
    blocking(move || {
        kafka::create_topic(&produced, 2);
        let keyed = |key: &'static [u8], value: Option<&'static [u8]>| Record {
            key: Some(key),
            value,
            ..Default::default()
        };
        kafka::produce(
            &produced,
            &[
                keyed(b"k1", Some(br#"{"id": 1, "v": "a"}"#)),
                keyed(b"k2", Some(br#"{"id": 2, "v": "b"}"#)),
                keyed(b"k1", Some(br#"{"id": 1, "v": "a2"}"#)),
                keyed(b"k2", None),
                keyed(b"k3", Some(br#"{"id": 3, "v": "c"}"#)),
                keyed(b"k4", Some(br#"{"id": "four"}"#)),
                Record {
                    value: Some(br#"{"id": 5, "v": "no key"}"#),
                    ..Default::default()
                },
            ],
        );
    })
    .await;
    let server = TestServer::start().await;
    let client = server.connect().await;
    execute(
        &client,
        &format!(
            "CREATE SOURCE current (id INT, v TEXT)
               FROM KAFKA (BROKER '{}', TOPIC '{topic}') FORMAT JSON ENVELOPE UPSERT INCLUDE KEY AS k;
             CREATE MATERIALIZED VIEW counted AS SELECT count(*) AS n, max(id) AS top FROM current;
             CREATE SOURCE current_text FROM KAFKA (BROKER '{}', TOPIC '{topic}')
               FORMAT TEXT ENVELOPE UPSERT INCLUDE KEY;
             FLUSH;",
            kafka::bootstrap(),
            kafka::bootstrap()
        ),
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT id, v, k FROM current ORDER BY id").await,
        table(&[&["1", "a2", "k1"], &["3", "c", "k3"]])
    );
    assert_eq!(
        rows(&client, "SELECT n, top FROM counted").await,
        table(&[&["2", "3"]])
    );
    // The same topic as TEXT: every value is valid text, so k4's row exists there.
    assert_eq!(
        rows(&client, "SELECT key, text FROM current_text ORDER BY key").await,
        table(&[
            &["k1", r#"{"id": 1, "v": "a2"}"#],
            &["k3", r#"{"id": 3, "v": "c"}"#],
            &["k4", r#"{"id": "four"}"#],
        ])
    );
    assert_eq!(
        rows(
            &client,
            "SELECT source, count(*) FROM tributary.source_errors GROUP BY source ORDER BY source"
        )
        .await,
        table(&[&["current", "2"], &["current_text", "1"]]),
        "the malformed value and the message without a key"
    );

    let produced = topic.clone();
    blocking(move || {
        kafka::produce(
            &produced,
            &[
                Record {
                    key: Some(b"k3"),
                    value: None,
                    ..Default::default()
                },
                Record {
                    key: Some(b"k1"),
                    value: Some(br#"{"id": 10, "v": "z"}"#),
                    ..Default::default()
                },
            ],
        )
    })
    .await;
    execute(&client, "FLUSH").await;
    assert_eq!(
        rows(&client, "SELECT id, v FROM current").await,
        table(&[&["10", "z"]])
    );
    assert_eq!(
        rows(&client, "SELECT n, top FROM counted").await,
        table(&[&["1", "10"]])
    );
}

/// ENVELOPE DEBEZIUM: before/after/op drive inserts, updates and deletes, keyed by the
/// message key when there is one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_source_applies_inserts_updates_and_deletes() {
    let topic = kafka::unique_topic("debezium_in");
    let produced = topic.clone();
    blocking(move || {
        kafka::create_topic(&produced, 1);
        let message = |key: Option<&'static [u8]>, value: Option<&'static [u8]>| Record {
            key,
            value,
            ..Default::default()
        };
        kafka::produce(
            &produced,
            &[
                message(
                    Some(br#"{"id":1}"#),
                    Some(br#"{"before":null,"after":{"id":1,"name":"ann"},"op":"c"}"#),
                ),
                message(
                    Some(br#"{"id":2}"#),
                    Some(br#"{"before":null,"after":{"id":2,"name":"bob"},"op":"r"}"#),
                ),
                message(
                    Some(br#"{"id":1}"#),
                    Some(br#"{"before":{"id":1,"name":"ann"},"after":{"id":1,"name":"anna"},"op":"u"}"#),
                ),
                message(
                    Some(br#"{"id":2}"#),
                    Some(br#"{"before":{"id":2,"name":"bob"},"after":null,"op":"d"}"#),
                ),
                // Debezium's tombstone after a delete.
                message(Some(br#"{"id":2}"#), None),
                // Kafka Connect's JsonConverter with schemas on: the change is under "payload".
                message(
                    Some(br#"{"id":4}"#),
                    Some(br#"{"schema":{"type":"struct"},"payload":{"before":null,"after":{"id":4,"name":"dee"},"op":"c"}}"#),
                ),
                // Without keys: before is retracted, after added.
                message(None, Some(br#"{"before":null,"after":{"id":3,"name":"cy"},"op":"c"}"#)),
                message(None, Some(br#"{"before":{"id":3,"name":"cy"},"after":{"id":3,"name":"cyd"},"op":"u"}"#)),
                message(None, Some(br#"{"after":{"id":"x"}}"#)),
            ],
        );
    })
    .await;
    let server = TestServer::start().await;
    let client = server.connect().await;
    execute(
        &client,
        &format!(
            "CREATE SOURCE customers (id INT NOT NULL, name TEXT)
               FROM KAFKA (BROKER '{}', TOPIC '{topic}') FORMAT JSON ENVELOPE DEBEZIUM;
             CREATE MATERIALIZED VIEW names AS SELECT count(*) AS n FROM customers;
             FLUSH;",
            kafka::bootstrap()
        ),
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT id, name FROM customers ORDER BY id").await,
        table(&[&["1", "anna"], &["3", "cyd"], &["4", "dee"]])
    );
    assert_eq!(rows(&client, "SELECT n FROM names").await, table(&[&["3"]]));
    assert_eq!(
        rows(&client, "SELECT \"offset\" FROM tributary.source_errors").await,
        table(&[&["8"]])
    );
}

/// The scripts in sql/ run as written (with this test's broker and topics), and each view they
/// create holds what the same query computes from scratch over its source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_scripts_run_and_their_views_are_right() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let broker = kafka::bootstrap();
    let seed_topic = kafka::unique_topic("test_topic");
    let result_topic = kafka::unique_topic("result_topic");
    let topic = seed_topic.clone();
    blocking(move || kafka::produce_with_python(&topic, &["--count", "5000"])).await;
    // (script, example kind to produce, topics it names, (view, query computing it) pairs)
    type Check<'a> = (&'a str, &'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);
    let checks: [Check; 4] = [
        (
            "seed_pipeline",
            "",
            &["test_topic", "result_topic"],
            &[(
                "per_key",
                "SELECT key, sum(value) AS sum, avg(value) AS avg FROM visits GROUP BY key",
            )],
        ),
        (
            "visits",
            "visits",
            &["page_visits", "visits_per_page"],
            &[
                (
                    "visits_per_page",
                    "SELECT page, count(*), avg(ms), max(ms) FROM page_visits GROUP BY page",
                ),
                (
                    "visitors_per_page",
                    "SELECT page, count(DISTINCT user_id) FROM page_visits GROUP BY page",
                ),
            ],
        ),
        (
            "sales",
            "sales",
            &["sales", "sales_per_product"],
            &[(
                "sales_per_product",
                "SELECT product, count(*), sum(quantity), sum(quantity * price) FROM sales GROUP BY product",
            )],
        ),
        (
            "monitoring",
            "monitoring",
            &["metrics", "host_load"],
            &[(
                "overloaded",
                "SELECT host, count(*) FROM metrics WHERE cpu > 99 GROUP BY host",
            )],
        ),
    ];
    for (script, kind, topics, views) in checks {
        let server = TestServer::start().await;
        let client = server.connect().await;
        let mut sql = std::fs::read_to_string(root.join(format!("sql/{script}.sql")))
            .expect("read the script")
            .replace("127.0.0.1:9092", &broker);
        for topic in topics {
            let unique = match *topic {
                "test_topic" => seed_topic.clone(),
                "result_topic" => result_topic.clone(),
                _ => format!("{topic}_{}", kafka::unique_topic(script)),
            };
            sql = sql.replace(&format!("'{topic}'"), &format!("'{unique}'"));
            if topic == &topics[0] && !kind.is_empty() {
                let (kind, produced) = (kind.to_string(), unique.clone());
                let script_path = root.join("sql/produce_examples.py");
                blocking(move || {
                    let status = std::process::Command::new(kafka::python())
                        .arg(script_path)
                        .args([
                            &kind,
                            "--bootstrap",
                            &kafka::bootstrap(),
                            "--topic",
                            &produced,
                        ])
                        .args(["--count", "3000"])
                        .status()
                        .expect("run produce_examples.py");
                    assert!(status.success());
                })
                .await;
            }
        }
        execute(&client, &sql).await;
        for (view, query) in views {
            let maintained = rows(&client, &format!("SELECT * FROM {view}")).await;
            assert!(!maintained.is_empty(), "{script}: {view} is empty");
            let differences = rows(
                &client,
                &format!("(SELECT * FROM {view} EXCEPT {query}) UNION ALL ({query} EXCEPT SELECT * FROM {view})"),
            )
            .await;
            assert!(
                differences.is_empty(),
                "{script}: {view} differs: {differences:?}"
            );
        }
    }
}

/// START OFFSET 'latest', per-partition offsets and a timestamp; PROPERTIES passed to librdkafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_offsets_and_properties() {
    let topic = kafka::unique_topic("offsets");
    let produced = topic.clone();
    let middle = blocking(move || {
        kafka::create_topic(&produced, 2);
        let batch = |from: i32| -> Vec<(i32, String)> {
            (from..from + 10)
                .map(|i| (i % 2, format!("{{\"n\": {i}}}")))
                .collect()
        };
        let send = |messages: Vec<(i32, String)>| {
            let records: Vec<Record> = messages
                .iter()
                .map(|(partition, value)| Record {
                    value: Some(value.as_bytes()),
                    partition: Some(*partition),
                    ..Default::default()
                })
                .collect();
            kafka::produce(&produced, &records);
        };
        send(batch(0));
        std::thread::sleep(Duration::from_millis(100));
        let middle = chrono::Utc::now().timestamp_millis();
        std::thread::sleep(Duration::from_millis(100));
        send(batch(10));
        middle
    })
    .await;
    let server = TestServer::start().await;
    let client = server.connect().await;
    let broker = kafka::bootstrap();
    execute(
        &client,
        &format!(
            "CREATE SOURCE from_latest (n INT) FROM KAFKA (BROKER '{broker}', TOPIC '{topic}', START OFFSET 'latest') FORMAT JSON;
             CREATE SOURCE from_offsets (n INT) FROM KAFKA (BROKER '{broker}', TOPIC '{topic}', START OFFSET (7, 9)) FORMAT JSON;
             CREATE SOURCE from_time (n INT) FROM KAFKA (BROKER '{broker}', TOPIC '{topic}', START OFFSET '{middle}') FORMAT JSON;
             CREATE SOURCE tuned (n INT) FROM KAFKA (BROKER '{broker}', TOPIC '{topic}',
               PROPERTIES ('fetch.max.bytes' = '1048576', 'client.id' = 'tuned')) FORMAT JSON;
             FLUSH;"
        ),
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT count(*) FROM from_latest").await,
        table(&[&["0"]])
    );
    // Partition 0 holds 0, 2, ..., 18 (offsets 0-9), partition 1 holds 1, 3, ..., 19.
    assert_eq!(
        rows(&client, "SELECT n FROM from_offsets ORDER BY n").await,
        table(&[&["14"], &["16"], &["18"], &["19"]])
    );
    assert_eq!(
        rows(&client, "SELECT min(n), count(*) FROM from_time").await,
        table(&[&["10", "10"]])
    );
    assert_eq!(
        rows(&client, "SELECT count(*) FROM tuned").await,
        table(&[&["20"]])
    );
    let produced = topic.clone();
    blocking(move || {
        kafka::produce(
            &produced,
            &[Record {
                value: Some(br#"{"n": 100}"#),
                ..Default::default()
            }],
        )
    })
    .await;
    execute(&client, "FLUSH").await;
    assert_eq!(
        rows(&client, "SELECT n FROM from_latest").await,
        table(&[&["100"]])
    );
    assert_eq!(
        error_code(
            &client,
            &format!(
                "CREATE SOURCE bad (n INT) FROM KAFKA (BROKER '{broker}', TOPIC '{topic}',
                   PROPERTIES ('no.such.property' = 'x')) FORMAT JSON"
            )
        )
        .await,
        "22023"
    );
    assert_eq!(
        error_code(
            &client,
            &format!("CREATE SOURCE bad (n INT) FROM KAFKA (BROKER '{broker}', TOPIC '{topic}', START OFFSET (1, 2, 3)) FORMAT JSON")
        )
        .await,
        "22023"
    );
}

/// Every file under `root` that contains `needle`, and every entry whose mode is not the
/// owner's only (0700 directories, 0600 files).
fn secret_leaks_and_open_modes(root: &std::path::Path, needle: &str) -> (Vec<String>, Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    let (mut leaks, mut open) = (Vec::new(), Vec::new());
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::metadata(&path).expect("metadata");
        let mode = metadata.permissions().mode() & 0o777;
        if metadata.is_dir() {
            if mode != 0o700 {
                open.push(format!("{} {mode:o}", path.display()));
            }
            for entry in std::fs::read_dir(&path).expect("read the directory") {
                pending.push(entry.expect("entry").path());
            }
            continue;
        }
        if mode != 0o600 {
            open.push(format!("{} {mode:o}", path.display()));
        }
        let contents = std::fs::read(&path).unwrap_or_default();
        if contents
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
        {
            leaks.push(path.display().to_string());
        }
    }
    (leaks, open)
}

/// PROPERTIES reach librdkafka: a SASL/PLAIN listener is read with the right credentials and
/// refused, at CREATE, with wrong ones. The password is kept in the data directory's SECRETS
/// file only (not the log, not checkpoints), everything there is the owner's only, and a
/// restarted server reads the topic with the stored password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_properties_authenticate_the_source() {
    let Some(sasl) = blocking(kafka::sasl_bootstrap).await else {
        eprintln!(
            "the broker is not scripts/kafka's (KAFKA_BOOTSTRAP_SERVERS or a container) and KAFKA_SASL_BOOTSTRAP_SERVERS is not set: nothing to authenticate against"
        );
        return;
    };
    let topic = kafka::unique_topic("sasl");
    let produced = topic.clone();
    blocking(move || {
        kafka::create_topic(&produced, 1);
        kafka::produce(
            &produced,
            &[
                Record {
                    value: Some(br#"{"n": 1}"#),
                    ..Default::default()
                },
                Record {
                    value: Some(br#"{"n": 2}"#),
                    ..Default::default()
                },
            ],
        );
    })
    .await;
    let directory =
        std::env::temp_dir().join(format!("tributary-sasl-secrets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    let config = || tributary::Config {
        data_dir: Some(directory.clone()),
        checkpoint_interval: Duration::from_millis(200),
        ..tributary::Config::in_memory()
    };
    let server = TestServer::start_with(config()).await.expect("start");
    let client = server.connect().await;
    let properties = |password: &str| {
        format!(
            "PROPERTIES ('security.protocol' = 'SASL_PLAINTEXT', 'sasl.mechanism' = 'PLAIN',
                         'sasl.username' = 'tributary', 'sasl.password' = '{password}')"
        )
    };
    execute(
        &client,
        &format!(
            "CREATE CONNECTION secured TO KAFKA (BROKER '{sasl}', {});
             CREATE SOURCE numbers (n INT) FROM KAFKA (CONNECTION secured, TOPIC '{topic}') FORMAT JSON;
             FLUSH;",
            properties("tributary-secret")
        ),
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT sum(n) FROM numbers").await,
        table(&[&["3"]])
    );
    assert_eq!(
        error_code(
            &client,
            &format!(
                "CREATE SOURCE intruder (n INT) FROM KAFKA (BROKER '{sasl}', TOPIC '{topic}', {}) FORMAT JSON",
                properties("wrong")
            )
        )
        .await,
        "28000"
    );
    // A secret given by a reference that names nothing is refused.
    assert_eq!(
        error_code(
            &client,
            &format!(
                "CREATE SOURCE nameless (n INT) FROM KAFKA (BROKER '{sasl}', TOPIC '{topic}',
                   PROPERTIES ('sasl.password' = SECRET 'secret-unknown')) FORMAT JSON"
            )
        )
        .await,
        "42704"
    );
    let shown = rows(&client, "SHOW CONNECTIONS").await;
    assert!(
        !format!("{shown:?}").contains("tributary-secret"),
        "{shown:?}"
    );
    // The log holds the statements now; the clean stop below writes a checkpoint.
    let (leaks, open) = secret_leaks_and_open_modes(&directory, "tributary-secret");
    assert_eq!(leaks, [directory.join("SECRETS").display().to_string()]);
    assert!(open.is_empty(), "not private: {open:?}");
    drop(client);
    server.stop().await;
    let (leaks, open) = secret_leaks_and_open_modes(&directory, "tributary-secret");
    assert_eq!(leaks, [directory.join("SECRETS").display().to_string()]);
    assert!(open.is_empty(), "not private: {open:?}");

    let produced = topic.clone();
    blocking(move || {
        kafka::produce(
            &produced,
            &[Record {
                value: Some(br#"{"n": 4}"#),
                ..Default::default()
            }],
        );
    })
    .await;
    let server = TestServer::start_with(config()).await.expect("restart");
    let client = server.connect().await;
    execute(&client, "FLUSH").await;
    assert_eq!(
        rows(&client, "SELECT sum(n) FROM numbers").await,
        table(&[&["7"]])
    );
    drop(client);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&directory);
}
