//! Nexmark through Kafka: the `nexmark` crate's events are written to three topics (person,
//! auction, bid; JSON, 2 partitions each) before the clock starts; then, per query, the three
//! Kafka sources, the query's materialized view (`sql/nexmark/`) and an exactly-once DEBEZIUM
//! sink into a topic of its own are created on a server with a data directory, and the run
//! ends when the sink's output is committed in Kafka.
//!
//! `cargo bench --bench nexmark_kafka` prints per query the input events/s until the view
//! reflects every event (FLUSH returns) and until its sink has committed every change (no epoch
//! queued in `tributary.sink_progress`), and checks with a `read_committed` consumer that the
//! sink's topic holds every message the sink reports. `TRIBUTARY_NEXMARK_EVENTS` (default
//! 1,000,000) and `TRIBUTARY_NEXMARK_QUERIES` (say `q0,q4`) change the run;
//! `KAFKA_BOOTSTRAP_SERVERS` as for `cargo bench --bench kafka`.

mod common;

use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;
use tokio_postgres::Client;
use tributary::connectors::nexmark::NexmarkGenerator;

use common::kafka::{bootstrap, create_topic, producer, send};
use common::nexmark::{self, read};
use common::{setting, start_in_process, unique};

const TABLES: [&str; 3] = ["person", "auction", "bid"];
const PARTITIONS: u32 = 2;

/// `sql/nexmark/schema.sql` with every `CREATE TABLE name (columns)` turned into a JSON Kafka
/// source of the same name and columns over `{prefix}_{name}`, so the queries run unchanged.
fn sources(broker: &str, prefix: &str) -> String {
    // Comments first: they may hold semicolons.
    let code: Vec<String> = read("schema")
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .map(str::to_string)
        .collect();
    code.join("\n")
        .split(';')
        .filter_map(|statement| {
            let (name, columns) = statement
                .trim()
                .strip_prefix("CREATE TABLE ")?
                .split_once(' ')?;
            Some(format!(
                "CREATE SOURCE {name} {columns} FROM KAFKA (BROKER '{broker}', TOPIC '{prefix}_{name}') FORMAT JSON;\n"
            ))
        })
        .collect()
}

/// Each row of `batch` as one JSON message to `topic`.
fn produce_rows(
    producer: &rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    topic: &str,
    batch: &RecordBatch,
) {
    let mut lines = Vec::new();
    let mut writer = arrow_json::LineDelimitedWriter::new(&mut lines);
    writer.write(batch).expect("rows as JSON");
    writer.finish().expect("rows as JSON");
    drop(writer);
    for line in lines.split(|byte| *byte == b'\n') {
        if !line.is_empty() {
            send(producer, topic, line);
        }
    }
}

/// Writes `events` Nexmark events to the three topics; returns how many it wrote.
fn preload(broker: &str, prefix: &str, events: usize) -> usize {
    for table in TABLES {
        create_topic(broker, &format!("{prefix}_{table}"), PARTITIONS);
    }
    let producer = producer(broker, "20");
    let mut generator = NexmarkGenerator::default();
    let mut written = 0;
    while written < events {
        let batch = generator
            .next_batch(10_000.min(events - written))
            .expect("generate");
        written += batch.events();
        produce_rows(&producer, &format!("{prefix}_person"), &batch.person);
        produce_rows(&producer, &format!("{prefix}_auction"), &batch.auction);
        produce_rows(&producer, &format!("{prefix}_bid"), &batch.bid);
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    written
}

/// Messages a `read_committed` consumer finds in `topic`, read until `expected` or until ten
/// seconds pass without a new one.
fn committed_messages(broker: &str, topic: &str, expected: u64) -> u64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", format!("nexmark_check_{}", unique()))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut count = 0;
    let mut last_seen = Instant::now();
    while count < expected && last_seen.elapsed() < Duration::from_secs(10) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                count += 1;
                last_seen = Instant::now();
            }
            Some(Err(error)) => panic!("read {topic}: {error}"),
            None => {}
        }
    }
    count
}

/// One query: (events/s until the view is complete, until the sink is, messages the sink wrote).
async fn run(client: &Client, broker: &str, prefix: &str, query: &str, events: usize) -> Runs {
    let output = format!("{prefix}_{query}_out");
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "{}{}
             CREATE SINK nexmark_out FROM nexmark_{query}
               INTO KAFKA (BROKER '{broker}', TOPIC '{output}') FORMAT JSON ENVELOPE DEBEZIUM;
             FLUSH;",
            sources(broker, prefix),
            read(query)
        ))
        .await
        .unwrap_or_else(|error| panic!("{query}: {error}"));
    let view_complete = started.elapsed();
    let messages = loop {
        let row = client
            .query_one(
                "SELECT queued_epochs, messages, state FROM tributary.sink_progress WHERE sink = 'nexmark_out'",
                &[],
            )
            .await
            .expect("sink progress");
        let (queued, messages, state): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
        if queued == 0 {
            break messages as u64;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{query}: the sink is still {queued} epochs behind ({state})"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let sink_complete = started.elapsed();
    let found = {
        let (broker, output) = (broker.to_string(), output.clone());
        tokio::task::spawn_blocking(move || committed_messages(&broker, &output, messages))
            .await
            .expect("check the sink's topic")
    };
    assert_eq!(
        found, messages,
        "{query}: the sink's topic holds what the sink wrote"
    );
    client
        .batch_execute(
            "DROP SOURCE person CASCADE; DROP SOURCE auction CASCADE; DROP SOURCE bid CASCADE;",
        )
        .await
        .expect("drop");
    Runs {
        view: events as f64 / view_complete.as_secs_f64(),
        sink: events as f64 / sink_complete.as_secs_f64(),
        messages,
    }
}

struct Runs {
    view: f64,
    sink: f64,
    messages: u64,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let events = setting("TRIBUTARY_NEXMARK_EVENTS", 1_000_000) as usize;
    let chosen: Vec<String> = nexmark::chosen();
    let directory = std::env::temp_dir().join(format!("tributary-nexmark-kafka-{}", unique()));
    runtime.block_on(async {
        let broker = tokio::task::spawn_blocking(bootstrap)
            .await
            .expect("broker");
        let prefix = format!("nexmark_{}", unique());
        let loaded = Instant::now();
        let events = {
            let (broker, prefix) = (broker.clone(), prefix.clone());
            tokio::task::spawn_blocking(move || preload(&broker, &prefix, events))
                .await
                .expect("pre-load")
        };
        let (client, _shutdown) = start_in_process(tributary::Config::durable(&directory)).await;
        println!(
            "Nexmark through Kafka: {events} events pre-loaded in {:.1} s into 3 topics of {PARTITIONS} partitions; {} workers; sources -> view -> exactly-once DEBEZIUM sink",
            loaded.elapsed().as_secs_f64(),
            tributary::server::default_workers()
        );
        for query in &chosen {
            let runs = run(&client, &broker, &prefix, query, events).await;
            println!(
                "{query:>4}: {:>10.0} events/s view complete, {:>10.0} sink complete ({} sink messages)",
                runs.view, runs.sink, runs.messages
            );
        }
    });
    let _ = std::fs::remove_dir_all(&directory);
}
