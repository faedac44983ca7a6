//! End-to-end Kafka benchmark: a real broker, the real server in this process, a real driver.
//!
//! `cargo bench --bench kafka` prints:
//! - throughput: a topic (3 partitions) is pre-loaded with N JSON messages `{"key": k, "value": v}`
//!   (1,000 keys); then a source, a GROUP BY view (sum, avg per key) and an upsert sink are
//!   created and FLUSH waits until the view reflects every message: events/s end to end;
//! - freshness: while a producer writes 50,000 events/s to another topic, a marker message is
//!   produced every 20 ms and a session polls the view until the marker is visible: the time
//!   from produce to visible in SELECT, p50 and p99.
//!
//! Environment: `KAFKA_BOOTSTRAP_SERVERS` (default: the broker `scripts/kafka` starts),
//! `TRIBUTARY_BENCH_EVENTS` (default 2,000,000), `TRIBUTARY_BENCH_RATE` (default 50,000),
//! `TRIBUTARY_BENCH_MARKERS` (default 300).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::producer::Producer;
use tokio_postgres::Client;

use common::kafka::{bootstrap, create_topic, producer, send};
use common::{percentile, setting, start_server, unique};

async fn throughput(client: &Client, broker: &str, events: u64) {
    let topic = format!("bench_in_{}", unique());
    let output = format!("{topic}_out");
    let loaded = {
        let (broker, topic) = (broker.to_string(), topic.clone());
        tokio::task::spawn_blocking(move || {
            create_topic(&broker, &topic, 3);
            let producer = producer(&broker, "20");
            let started = Instant::now();
            let mut payload = Vec::with_capacity(64);
            for i in 0..events {
                payload.clear();
                use std::io::Write;
                let _ = write!(
                    payload,
                    "{{\"key\": {}, \"value\": {}}}",
                    i % 1000,
                    (i * 7) % 1000
                );
                send(&producer, &topic, &payload);
            }
            producer.flush(Duration::from_secs(120)).expect("flush");
            started.elapsed()
        })
        .await
        .expect("pre-load")
    };
    println!(
        "pre-loaded {events} messages in {:.1} s",
        loaded.as_secs_f64()
    );
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "CREATE SOURCE visits (key INT, value INT)
               FROM KAFKA (BROKER '{broker}', TOPIC '{topic}') FORMAT JSON;
             CREATE MATERIALIZED VIEW per_key AS
               SELECT key, sum(value) AS sum, avg(value) AS avg FROM visits GROUP BY key;
             CREATE SINK per_key_out FROM per_key
               INTO KAFKA (BROKER '{broker}', TOPIC '{output}') KEY (key) FORMAT JSON ENVELOPE UPSERT;
             FLUSH;"
        ))
        .await
        .expect("pipeline");
    let elapsed = started.elapsed();
    let counted: i64 = client
        .query_one("SELECT count(*) FROM visits", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(counted as u64, events, "every message ingested");
    println!(
        "throughput: {events} events through source -> GROUP BY view (sum, avg) -> upsert sink in {:.2} s: {:.0} events/s",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64()
    );
    client
        .batch_execute("DROP SOURCE visits CASCADE")
        .await
        .expect("drop");
}

async fn freshness(client: &Client, broker: &str, rate: u64, markers: usize) {
    let topic = format!("bench_fresh_{}", unique());
    {
        let (broker, topic) = (broker.to_string(), topic.clone());
        tokio::task::spawn_blocking(move || create_topic(&broker, &topic, 3))
            .await
            .expect("topic");
    }
    client
        .batch_execute(&format!(
            "CREATE SOURCE live (key INT, value INT)
               FROM KAFKA (BROKER '{broker}', TOPIC '{topic}', START OFFSET 'latest') FORMAT JSON;
             CREATE MATERIALIZED VIEW live_per_key AS
               SELECT key, count(*) AS n, sum(value) AS sum FROM live GROUP BY key;"
        ))
        .await
        .expect("pipeline");
    // The background load: `rate` events/s in 1 ms bursts, on its own thread.
    let running = Arc::new(AtomicBool::new(true));
    let load = {
        let (broker, topic, running) = (broker.to_string(), topic.clone(), Arc::clone(&running));
        std::thread::spawn(move || {
            let producer = producer(&broker, "1");
            let started = Instant::now();
            let mut sent = 0u64;
            while running.load(Ordering::Relaxed) {
                let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                while sent < due {
                    let payload = format!("{{\"key\": {}, \"value\": {}}}", sent % 1000, sent % 7);
                    send(&producer, &topic, payload.as_bytes());
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            let _ = producer.flush(Duration::from_secs(10));
            sent as f64 / started.elapsed().as_secs_f64()
        })
    };
    let marker_producer = producer(broker, "0");
    let statement = client
        .prepare("SELECT n FROM live_per_key WHERE key = -1")
        .await
        .expect("prepare");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut samples = Vec::with_capacity(markers);
    for marker in 1..=markers as i64 {
        let produced = Instant::now();
        send(
            &marker_producer,
            &topic,
            format!("{{\"key\": -1, \"value\": {marker}}}").as_bytes(),
        );
        loop {
            let rows = client.query(&statement, &[]).await.expect("poll");
            let seen: i64 = rows.first().map(|row| row.get(0)).unwrap_or(0);
            if seen >= marker {
                break;
            }
            if produced.elapsed() > Duration::from_secs(30) {
                panic!("marker {marker} not visible after 30 s");
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        samples.push(produced.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.store(false, Ordering::Relaxed);
    let achieved = load.join().expect("load thread");
    println!(
        "freshness at {achieved:.0} events/s ({markers} markers): produce -> visible in SELECT p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&mut samples, 0.5).as_secs_f64() * 1e3,
        percentile(&mut samples, 0.99).as_secs_f64() * 1e3,
        percentile(&mut samples, 1.0).as_secs_f64() * 1e3,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let broker = tokio::task::spawn_blocking(bootstrap)
            .await
            .expect("broker");
        let (client, _shutdown) = start_server().await;
        throughput(
            &client,
            &broker,
            setting("TRIBUTARY_BENCH_EVENTS", 2_000_000),
        )
        .await;
        freshness(
            &client,
            &broker,
            setting("TRIBUTARY_BENCH_RATE", 50_000),
            setting("TRIBUTARY_BENCH_MARKERS", 300) as usize,
        )
        .await;
    });
}
