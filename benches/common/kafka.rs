//! The broker the Kafka benchmarks use, and a fast producer for pre-loading topics.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};

/// `KAFKA_BOOTSTRAP_SERVERS`, or the broker `scripts/kafka start` runs (started if need be).
pub fn bootstrap() -> String {
    if let Ok(servers) = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        && !servers.is_empty()
    {
        return servers;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka");
    let status = std::process::Command::new(script)
        .arg("start")
        .status()
        .expect("run scripts/kafka start");
    assert!(status.success(), "scripts/kafka start failed");
    "127.0.0.1:9092".to_string()
}

/// A producer tuned for throughput, or for latency with `linger_ms` "0".
pub fn producer(broker: &str, linger_ms: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("linger.ms", linger_ms)
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

/// Sends one message, waiting while the producer's queue is full.
pub fn send(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, payload: &[u8]) {
    loop {
        match producer.send(BaseRecord::<[u8], [u8]>::to(topic).payload(payload)) {
            Ok(()) => return,
            Err((_, _)) => producer.poll(Duration::from_millis(1)),
        }
    }
}

/// Creates `topic` with `partitions` partitions.
pub fn create_topic(broker: &str, topic: &str, partitions: u32) {
    // Through the seed's Python admin client, as the tests do.
    let python =
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/python-env"))
            .output()
            .expect("scripts/python-env");
    let python = String::from_utf8_lossy(&python.stdout).trim().to_string();
    let status = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/kafka/produce.py"
        ))
        .args(["--bootstrap", broker, "--topic", topic])
        .args(["--count", "0", "--partitions", &partitions.to_string()])
        .status()
        .expect("create topic");
    assert!(status.success());
}
