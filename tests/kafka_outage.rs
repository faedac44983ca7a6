//! A broker that goes away while a source reads from it and an exactly-once sink writes to it:
//! the source shows the problem, retries, and when the broker returns it goes on from where it
//! was, losing nothing and duplicating nothing; the sink's transactions resume, and its topic
//! read `read_committed` holds every row once. Uses a broker of its own (scripts/kafka on port
//! 9192), since it stops it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestServer;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message};

const PORT: &str = "9192";
const BROKER: &str = "127.0.0.1:9192";

fn broker(action: &str) {
    let status = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka"))
        .arg(action)
        .env("KAFKA_PORT", PORT)
        .status()
        .expect("run scripts/kafka");
    assert!(status.success(), "scripts/kafka {action} failed");
}

fn produce(topic: &str, from: u64, count: u64) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", BROKER)
        .create()
        .expect("producer");
    for i in from..from + count {
        let payload = format!("{{\"id\": {i}}}");
        producer
            .send(BaseRecord::<[u8], [u8]>::to(topic).payload(payload.as_bytes()))
            .map_err(|(error, _)| error)
            .expect("send");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("acknowledged");
}

/// Every committed message of a topic, waiting until there are `count` or `timeout` passes.
fn read_committed(topic: &str, count: usize, timeout: Duration) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", BROKER)
        .set("group.id", "tributary-outage-test")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + timeout;
    let mut values = Vec::new();
    while values.len() < count && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            values
                .push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    // Anything beyond `count` would be a duplicate: wait a moment for it.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            values
                .push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    values
}

async fn query_one(client: &tokio_postgres::Client, sql: &str) -> String {
    let messages = client.simple_query(sql).await.expect(sql);
    messages
        .into_iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_default()
}

/// Stops this test's broker however the test ends.
struct StopBroker;

impl Drop for StopBroker {
    fn drop(&mut self) {
        broker("stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_survives_the_broker_going_away() {
    tokio::task::spawn_blocking(|| broker("start"))
        .await
        .expect("start the broker");
    let _stop = StopBroker;
    let topic = common::kafka::unique_topic("outage");
    let produced = topic.clone();
    tokio::task::spawn_blocking(move || produce(&produced, 0, 1000))
        .await
        .expect("produce");
    let directory = std::env::temp_dir().join(format!("tributary-outage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    let server = TestServer::start_with(tributary::Config::durable(&directory))
        .await
        .expect("start");
    let client = server.connect().await;
    let sink_topic = format!("{topic}-out");
    client
        .batch_execute(&format!(
            "CREATE SOURCE events (id BIGINT) FROM KAFKA (BROKER '{BROKER}', TOPIC '{topic}') FORMAT JSON;
             CREATE SINK events_out FROM events INTO KAFKA (BROKER '{BROKER}', TOPIC '{sink_topic}')
               FORMAT JSON ENVELOPE DEBEZIUM;
             CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(id) AS s FROM events;
             CREATE MATERIALIZED VIEW distinct_ids AS SELECT count(DISTINCT id) AS ids FROM events;
             FLUSH;"
        ))
        .await
        .expect("create the source");
    assert_eq!(query_one(&client, "SELECT n FROM totals").await, "1000");

    tokio::task::spawn_blocking(|| broker("stop"))
        .await
        .expect("stop the broker");
    // The problem shows in the progress relation while the source retries.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = query_one(&client, "SELECT state FROM tributary.source_progress").await;
        if state.starts_with("retrying") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "state never showed the outage: {state}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Queries keep working meanwhile.
    assert_eq!(query_one(&client, "SELECT n FROM totals").await, "1000");

    tokio::task::spawn_blocking(|| broker("start"))
        .await
        .expect("restart the broker");
    let produced = topic.clone();
    tokio::task::spawn_blocking(move || produce(&produced, 1000, 500))
        .await
        .expect("produce after the restart");
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        query_one(
            &client,
            "SELECT n || ' ' || ids || ' ' || s FROM totals, distinct_ids"
        )
        .await,
        format!("1500 1500 {}", (0..1500u64).sum::<u64>()),
        "nothing lost, nothing twice"
    );
    assert_eq!(
        query_one(&client, "SELECT state FROM tributary.source_progress").await,
        "running"
    );
    let mut ids: Vec<u64> = tokio::task::spawn_blocking(move || {
        read_committed(&sink_topic, 1500, Duration::from_secs(60))
    })
    .await
    .expect("read the sink's topic")
    .iter()
    .map(|value| {
        value
            .strip_prefix(r#"{"before":null,"after":{"id":"#)
            .and_then(|rest| rest.strip_suffix(r#"},"op":"c"}"#))
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("not a create: {value}"))
    })
    .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..1500).collect::<Vec<u64>>(),
        "every row once in the sink's topic"
    );
    drop(client);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&directory);
}
