//! Kafka for tests: the broker (KAFKA_BOOTSTRAP_SERVERS if set, else the one `scripts/kafka`
//! runs, else testcontainers' Kafka module where a Docker engine answers), the seed's Python
//! producer, and a consumer that reads a topic as a table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The broker's address, starting one the first time if none is given: the project's own
/// (`scripts/kafka`), or, when that cannot run (no Java or Maven) or `TRIBUTARY_TEST_KAFKA=docker`
/// asks for it, a container of testcontainers' Kafka module.
pub fn bootstrap() -> String {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP
        .get_or_init(|| {
            if let Ok(servers) = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
                && !servers.is_empty()
            {
                return servers;
            }
            if std::env::var("TRIBUTARY_TEST_KAFKA").as_deref() == Ok("docker") {
                return container_broker();
            }
            let started = Command::new(root().join("scripts/kafka")).arg("start").status();
            match started {
                Ok(status) if status.success() => "127.0.0.1:9092".to_string(),
                failed if docker_engine_answers() => {
                    eprintln!("scripts/kafka start failed ({failed:?}); using testcontainers' Kafka");
                    container_broker()
                }
                failed => panic!(
                    "scripts/kafka start failed ({failed:?}) and no Docker engine answers for testcontainers"
                ),
            }
        })
        .clone()
}

fn docker_engine_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A broker in a container of the apache/kafka image (the tag docker-compose.yml runs). The
/// container is named and reusable: the first test binary starts it and the others find it, as
/// they find the broker `scripts/kafka` leaves running; `docker rm -f tributary-test-kafka` ends it.
fn container_broker() -> String {
    // testcontainers' blocking runner starts a runtime of its own, which a test's async context
    // (tests call `bootstrap` from both) would refuse: it runs on a thread of its own.
    std::thread::spawn(start_container_broker)
        .join()
        .expect("start testcontainers' Kafka")
}

fn start_container_broker() -> String {
    const CONTAINER_NAME: &str = "tributary-test-kafka";
    use testcontainers::ReuseDirective;
    use testcontainers_modules::kafka::apache;
    use testcontainers_modules::testcontainers::ImageExt;
    use testcontainers_modules::testcontainers::runners::SyncRunner;

    let compose = std::fs::read_to_string(root().join("docker-compose.yml"))
        .expect("read docker-compose.yml");
    let tag = compose
        .lines()
        .find_map(|line| line.trim().strip_prefix("image: apache/kafka:"))
        .expect("docker-compose.yml names an apache/kafka image")
        .to_string();
    // Test binaries run in parallel under nextest: one creates the container, the others wait
    // on this lock (released when the file closes) and then reuse it.
    let lock = std::fs::File::create(std::env::temp_dir().join("tributary-test-kafka.lock"))
        .expect("create the container's lock file");
    // SAFETY: flock on a descriptor this function owns for the whole call.
    let locked = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(locked, 0, "lock the container's lock file");
    // A stopped one (an engine restart) would come back on another host port than the one its
    // broker advertises: only a running container is reused.
    let state = Command::new("docker")
        .args(["inspect", "--format", "{{.State.Running}}", CONTAINER_NAME])
        .output()
        .expect("run docker inspect");
    if state.status.success() && String::from_utf8_lossy(&state.stdout).trim() != "true" {
        let removed = Command::new("docker")
            .args(["rm", "-f", CONTAINER_NAME])
            .status()
            .expect("run docker rm");
        assert!(removed.success(), "docker rm -f {CONTAINER_NAME} failed");
    }
    let container = apache::Kafka::default()
        .with_jvm_image()
        .with_tag(tag)
        .with_container_name(CONTAINER_NAME)
        .with_reuse(ReuseDirective::Always)
        .start()
        .expect("start testcontainers' Kafka (scripts/docker-images provides the image offline)");
    let port = container
        .get_host_port_ipv4(apache::KAFKA_PORT)
        .expect("the container's Kafka port");
    format!("127.0.0.1:{port}")
}

/// The broker's SASL/PLAIN listener (user `tributary`, password `tributary-secret`):
/// KAFKA_SASL_BOOTSTRAP_SERVERS if set, the one `scripts/kafka` runs when this process started
/// that broker, and none when only an outside broker was given.
pub fn sasl_bootstrap() -> Option<String> {
    if let Ok(servers) = std::env::var("KAFKA_SASL_BOOTSTRAP_SERVERS")
        && !servers.is_empty()
    {
        return Some(servers);
    }
    let plain = bootstrap();
    (plain == "127.0.0.1:9092").then(|| "127.0.0.1:9094".to_string())
}

/// A Python with kafka-python (scripts/python-env makes it once).
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let output = Command::new(root().join("scripts/python-env"))
                .output()
                .expect("run scripts/python-env");
            assert!(
                output.status.success(),
                "scripts/python-env failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        })
        .clone()
}

/// A topic name no other test (or earlier run) uses.
pub fn unique_topic(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs tests/kafka/produce.py (the seed's kafka-python producer) with `arguments`.
pub fn produce_with_python(topic: &str, arguments: &[&str]) {
    let output = Command::new(python())
        .arg(root().join("tests/kafka/produce.py"))
        .args(["--bootstrap", &bootstrap(), "--topic", topic])
        .args(arguments)
        .output()
        .expect("run produce.py");
    assert!(
        output.status.success(),
        "produce.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Creates a topic with `partitions` partitions (through the Python admin client, so no
/// message is written).
pub fn create_topic(topic: &str, partitions: u32) {
    produce_with_python(
        topic,
        &["--count", "0", "--partitions", &partitions.to_string()],
    );
}

/// Creates a topic with `partitions` partitions and topic `configs` (`max.message.bytes`, ...)
/// through rdkafka's admin client.
pub fn create_topic_with(topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("create an admin client");
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (name, value) in configs {
        new_topic = new_topic.set(name, value);
    }
    let results =
        futures::executor::block_on(admin.create_topics([&new_topic], &AdminOptions::new()))
            .expect("create the topic");
    for result in results {
        result.expect("topic created");
    }
}

/// A message for [`produce`].
#[derive(Default, Clone)]
pub struct Record<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub partition: Option<i32>,
    pub headers: Vec<(&'a str, &'a [u8])>,
}

/// Produces records with rdkafka, waiting until all are acknowledged.
pub fn produce(topic: &str, records: &[Record<'_>]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        // Large enough for the tests' largest message; the topic's limit is what binds.
        .set("message.max.bytes", "16777216")
        .create()
        .expect("create a producer");
    for record in records {
        let mut message = BaseRecord::<[u8], [u8]>::to(topic);
        if let Some(key) = record.key {
            message = message.key(key);
        }
        if let Some(value) = record.value {
            message = message.payload(value);
        }
        if let Some(partition) = record.partition {
            message = message.partition(partition);
        }
        if !record.headers.is_empty() {
            let mut headers = rdkafka::message::OwnedHeaders::new();
            for (name, value) in &record.headers {
                headers = headers.insert(rdkafka::message::Header {
                    key: name,
                    value: Some(*value),
                });
            }
            message = message.headers(headers);
        }
        producer.send(message).map_err(|(e, _)| e).expect("produce");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("every record acknowledged");
}

/// Every message of a topic, in order per partition: (key, value) as text.
pub fn read_all(
    topic: &str,
    at_least: usize,
    timeout: Duration,
) -> Vec<(Option<String>, Option<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", "tributary-tests")
        .set("enable.auto.commit", "false")
        .create()
        .expect("create a consumer");
    let deadline = Instant::now() + timeout;
    // The sink may create the topic a moment after it starts.
    let partitions = loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .expect("metadata");
        let found = metadata
            .topics()
            .iter()
            .find(|found| found.name() == topic && found.error().is_none())
            .map(|found| found.partitions().len());
        match found {
            Some(count) if count > 0 => break count,
            _ if Instant::now() > deadline => return Vec::new(),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition as i32, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut messages = Vec::new();
    let text = |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8_lossy(b).into_owned());
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => messages.push((text(message.key()), text(message.payload()))),
            Some(Err(error)) => panic!("consume {topic}: {error}"),
            None if messages.len() >= at_least => break,
            None => {}
        }
    }
    messages
}

/// Reads an upsert topic as a table: the last value per key, keys whose last value is a
/// tombstone left out. Polls until `done` holds for the table or `timeout` passes.
pub fn read_table(
    topic: &str,
    timeout: Duration,
    done: impl Fn(&HashMap<String, String>) -> bool,
) -> HashMap<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut table = HashMap::new();
        for (key, value) in read_all(topic, 1, Duration::from_secs(5)) {
            let key = key.unwrap_or_default();
            match value {
                Some(value) => table.insert(key, value),
                None => table.remove(&key),
            };
        }
        if done(&table) || Instant::now() > deadline {
            return table;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
