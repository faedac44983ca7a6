//! Talking to Kafka before a connector starts: client settings, checking that the broker answers
//! and the topic exists, and resolving START OFFSET to an offset per partition.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::KafkaEndpoint;
use crate::error::ConnectorError;
use crate::sql::streaming::StartOffset;

/// How long CREATE SOURCE / SINK waits for the broker to answer.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// A client's settings: the broker, then `settings` (the client kind's own), then the user's
/// PROPERTIES, which come last and so win over everything Tributary chose.
pub fn client_config(endpoint: &KafkaEndpoint, settings: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &endpoint.broker);
    config.set("client.id", "tributary");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    for (key, value) in &endpoint.properties {
        config.set(key, value);
    }
    for (key, value) in &endpoint.secrets {
        config.set(key, value.expose());
    }
    config
}

/// A bad PROPERTIES entry is the user's to fix; anything else is Kafka's.
pub fn config_error(error: rdkafka::error::KafkaError) -> ConnectorError {
    match error {
        rdkafka::error::KafkaError::ClientConfig(_, description, key, value) => {
            let value = if crate::storage::secrets::is_secret_property(&key) {
                "****"
            } else {
                &value
            };
            ConnectorError::InvalidOption(format!(
                "Kafka property '{key}' = '{value}': {description}"
            ))
        }
        other => ConnectorError::Kafka(other.to_string()),
    }
}

/// The settings of a source's consumer: it reads partitions it is assigned; offsets are
/// Tributary's own, never committed.
pub fn consumer_config(endpoint: &KafkaEndpoint, group: &str) -> ClientConfig {
    client_config(
        endpoint,
        &[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "false"),
            // A source never creates the topic it reads.
            ("allow.auto.create.topics", "false"),
            // Deliver what arrived within 10 ms instead of waiting for a fuller fetch: freshness.
            ("fetch.wait.max.ms", "10"),
            // librdkafka stops fetching a partition whose local queue holds
            // `queued.min.messages` and, by default, waits a whole second before it looks again;
            // a source that drains its queue in milliseconds would idle most of that second.
            ("queued.min.messages", "1000000"),
            ("fetch.queue.backoff.ms", "5"),
            // A broker that comes back is found within a second, not librdkafka's default ten.
            ("reconnect.backoff.ms", "100"),
            ("reconnect.backoff.max.ms", "1000"),
        ],
    )
}

/// Remembers whether librdkafka reported a refused login, so that a failed check can say why:
/// a broker that refuses the credentials is not an unreachable one.
#[derive(Default)]
struct CheckContext {
    authentication_failure: std::sync::Mutex<Option<String>>,
}

impl rdkafka::ClientContext for CheckContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "Kafka check");
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::Authentication) {
            *super::status::lock(&self.authentication_failure) = Some(reason.to_string());
        }
    }
}

impl rdkafka::consumer::ConsumerContext for CheckContext {}

/// The error a failed check reports.
fn check_failure(
    consumer: &BaseConsumer<CheckContext>,
    endpoint: &KafkaEndpoint,
    error: rdkafka::error::KafkaError,
) -> ConnectorError {
    // librdkafka hands its error events to the context only while the client is polled.
    let _ = consumer.poll(Duration::from_millis(100));
    if let Some(reason) = super::status::lock(&consumer.context().authentication_failure).take() {
        return ConnectorError::Authentication {
            broker: endpoint.broker.clone(),
            reason,
        };
    }
    ConnectorError::BrokerUnreachable {
        broker: endpoint.broker.clone(),
        reason: error.to_string(),
    }
}

/// A consumer for checks before a connector starts.
fn checker(endpoint: &KafkaEndpoint) -> Result<BaseConsumer<CheckContext>, ConnectorError> {
    consumer_config(endpoint, "tributary-check")
        .create_with_context(CheckContext::default())
        .map_err(config_error)
}

/// The topic's partitions, in order; fails clearly if the broker does not answer or the topic
/// does not exist.
pub fn topic_partitions(endpoint: &KafkaEndpoint, topic: &str) -> Result<Vec<i32>, ConnectorError> {
    let consumer = checker(endpoint)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|error| check_failure(&consumer, endpoint, error))?;
    let Some(found) = metadata.topics().iter().find(|found| found.name() == topic) else {
        return Err(ConnectorError::UndefinedTopic(topic.to_string()));
    };
    if found.error().is_some() || found.partitions().is_empty() {
        return Err(ConnectorError::UndefinedTopic(topic.to_string()));
    }
    let mut partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    partitions.sort_unstable();
    Ok(partitions)
}

/// The offset each partition starts at.
pub fn start_offsets(
    endpoint: &KafkaEndpoint,
    topic: &str,
    partitions: &[i32],
    start: &StartOffset,
) -> Result<Vec<(i32, Offset)>, ConnectorError> {
    match start {
        StartOffset::Earliest => Ok(partitions.iter().map(|&p| (p, Offset::Beginning)).collect()),
        // 'latest' means the end as of CREATE: resolved now, so FLUSH knows where the source
        // stands before its first message.
        StartOffset::Latest => {
            let consumer = checker(endpoint)?;
            partitions
                .iter()
                .map(|&partition| {
                    Ok((
                        partition,
                        high_watermark(&consumer, endpoint, topic, partition)?,
                    ))
                })
                .collect()
        }
        StartOffset::Offsets(offsets) => {
            if offsets.len() > partitions.len() {
                return Err(ConnectorError::InvalidOption(format!(
                    "START OFFSET lists {} offsets but topic \"{topic}\" has {} partitions",
                    offsets.len(),
                    partitions.len()
                )));
            }
            if let Some(negative) = offsets.iter().find(|offset| **offset < 0) {
                return Err(ConnectorError::InvalidOption(format!(
                    "START OFFSET {negative} is negative"
                )));
            }
            // Partitions beyond the list start at their beginning.
            Ok(partitions
                .iter()
                .enumerate()
                .map(|(index, &partition)| {
                    let offset = offsets
                        .get(index)
                        .map(|&offset| Offset::Offset(offset))
                        .unwrap_or(Offset::Beginning);
                    (partition, offset)
                })
                .collect())
        }
        StartOffset::Timestamp(text) => {
            let millis = timestamp_millis(text)?;
            let consumer = checker(endpoint)?;
            let mut wanted = TopicPartitionList::new();
            for &partition in partitions {
                wanted
                    .add_partition_offset(topic, partition, Offset::Offset(millis))
                    .map_err(|error| ConnectorError::Kafka(error.to_string()))?;
            }
            let found = consumer
                .offsets_for_times(wanted, METADATA_TIMEOUT)
                .map_err(|error| check_failure(&consumer, endpoint, error))?;
            partitions
                .iter()
                .map(|&partition| {
                    let offset = found
                        .find_partition(topic, partition)
                        .map(|element| element.offset());
                    match offset {
                        Some(Offset::Offset(offset)) if offset >= 0 => {
                            Ok((partition, Offset::Offset(offset)))
                        }
                        // No message at or after the time: start at the end.
                        _ => Ok((
                            partition,
                            high_watermark(&consumer, endpoint, topic, partition)?,
                        )),
                    }
                })
                .collect()
        }
    }
}

fn high_watermark(
    consumer: &BaseConsumer<CheckContext>,
    endpoint: &KafkaEndpoint,
    topic: &str,
    partition: i32,
) -> Result<Offset, ConnectorError> {
    let (_, high) = consumer
        .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
        .map_err(|error| check_failure(consumer, endpoint, error))?;
    Ok(Offset::Offset(high))
}

/// START OFFSET's timestamp: milliseconds since the epoch, or a timestamp text (UTC).
fn timestamp_millis(text: &str) -> Result<i64, ConnectorError> {
    if let Ok(millis) = text.trim().parse::<i64>() {
        return Ok(millis);
    }
    if let Ok(parsed) = chrono::DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(parsed.timestamp_millis());
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
    ] {
        if let Ok(parsed) = chrono::NaiveDateTime::parse_from_str(text.trim(), format) {
            return Ok(parsed.and_utc().timestamp_millis());
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        return Ok(date
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis());
    }
    Err(ConnectorError::InvalidOption(format!(
        "START OFFSET '{text}' is neither 'earliest', 'latest' nor a timestamp"
    )))
}

/// What a forwarded message may carry beyond the refused message itself: the headers saying
/// where it came from and why (the reason cut to 4 KiB) and the record's framing.
const DEAD_LETTER_ALLOWANCE: u64 = 64 * 1024;
/// Kafka's default `max.message.bytes`, assumed when the broker does not say.
const DEFAULT_MAX_MESSAGE_BYTES: u64 = 1_048_588;

/// Creates a source's `ERRORS TO KAFKA TOPIC` topic if it does not exist, with as many
/// partitions as the source's and a `max.message.bytes` that fits any message the source's
/// topic accepts, with its headers. A topic that exists is left as it is (a forward it refuses
/// is shown in `tributary.source_errors`).
pub fn ensure_dead_letter_topic(
    endpoint: &KafkaEndpoint,
    topic: &str,
    source_topic: &str,
    partitions: usize,
) -> Result<(), ConnectorError> {
    use rdkafka::admin::{
        AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication,
    };
    let consumer = checker(endpoint)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|error| check_failure(&consumer, endpoint, error))?;
    if metadata
        .topics()
        .iter()
        .any(|found| found.name() == topic && found.error().is_none())
    {
        return Ok(());
    }
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = client_config(endpoint, &[])
        .create()
        .map_err(config_error)?;
    let options = AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT));
    let admin_error = |error: rdkafka::error::KafkaError| {
        ConnectorError::Kafka(format!(
            "cannot create the dead-letter topic \"{topic}\": {error}"
        ))
    };
    let described = futures::executor::block_on(
        admin.describe_configs([&ResourceSpecifier::Topic(source_topic)], &options),
    )
    .map_err(admin_error)?;
    let source_limit = described
        .iter()
        .flatten()
        .find_map(|resource| resource.get("max.message.bytes"))
        .and_then(|entry| entry.value.as_deref())
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
    let limit = (source_limit + DEAD_LETTER_ALLOWANCE).to_string();
    let new_topic = NewTopic::new(
        topic,
        i32::try_from(partitions.max(1)).unwrap_or(1),
        TopicReplication::Fixed(-1),
    )
    .set("max.message.bytes", &limit);
    let created = futures::executor::block_on(admin.create_topics([&new_topic], &options))
        .map_err(admin_error)?;
    for result in created {
        match result {
            Ok(_) => {}
            // Created meanwhile by someone else: theirs stands.
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(admin_error(rdkafka::error::KafkaError::AdminOp(code))),
        }
    }
    Ok(())
}

/// Checks that the broker answers.
pub fn check_broker(endpoint: &KafkaEndpoint) -> Result<(), ConnectorError> {
    let consumer = checker(endpoint)?;
    consumer
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map(|_| ())
        .map_err(|error| check_failure(&consumer, endpoint, error))
}

/// Runs a blocking Kafka call off the sessions' runtime threads.
pub async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, ConnectorError> + Send + 'static,
) -> Result<T, ConnectorError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|error| ConnectorError::Kafka(format!("the Kafka call failed: {error}")))?
}
