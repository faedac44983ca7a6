//! `ERRORS TO KAFKA TOPIC`: refused messages forwarded, as they were, with headers saying where
//! they came from and why they were refused. A forward that fails (the topic's size limit, the
//! broker away) is shown in `tributary.source_errors` and tried again, never only logged.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};

use super::decode::PendingMessages;
use super::status::{KEPT_PAYLOAD_BYTES, SourceErrorRecord, SourceStatus, lock};
use super::{KafkaEndpoint, kafka};
use crate::error::ConnectorError;

/// The largest record the forwarding producer sends: the topic's own `max.message.bytes` (set
/// when Tributary creates it, see [`kafka::ensure_dead_letter_topic`]) is what binds.
const PRODUCER_MAX_MESSAGE_BYTES: &str = "200000000";
/// A refusal's reason is cut to this many bytes in its header.
const MAX_REASON_BYTES: usize = 4096;
/// The first retry of a failed forward waits this long; each next one twice as long.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(60);
/// Payload bytes of failed forwards held for retrying; past it the oldest are given up (and
/// that is shown as an error too), so a dead-letter topic that stays unwritable cannot grow the
/// server's memory without bound.
const MAX_RETRYING_BYTES: usize = 256 * 1024 * 1024;

/// One refused message on its way to the dead-letter topic. It travels with its Kafka record
/// (as the delivery opaque), so a failed delivery comes back whole to be tried again.
struct Forward {
    partition: i32,
    offset: i64,
    key: Option<Arc<[u8]>>,
    payload: Option<Arc<[u8]>>,
    reason: String,
    attempts: u32,
    due: Instant,
    last_error: String,
}

impl Forward {
    fn bytes(&self) -> usize {
        self.key.as_ref().map_or(0, |key| key.len())
            + self.payload.as_ref().map_or(0, |payload| payload.len())
    }
}

/// Collects the deliveries the broker refused. The producer's polling thread pushes; the
/// source thread takes them on its next look. The lock is held only to push or take the list.
#[derive(Default)]
struct ForwardContext {
    failed: Mutex<Vec<Forward>>,
}

impl ClientContext for ForwardContext {}

impl ProducerContext for ForwardContext {
    type DeliveryOpaque = Box<Forward>;

    fn delivery(&self, result: &DeliveryResult<'_>, mut forward: Box<Forward>) {
        if let Err((error, _)) = result {
            forward.last_error = error.to_string();
            lock(&self.failed).push(*forward);
        }
    }
}

/// A source's dead-letter producer and the forwards waiting to be tried again. Owned by the
/// source's thread.
pub struct DeadLetters {
    producer: ThreadedProducer<ForwardContext>,
    topic: String,
    /// Failed forwards, each retried once its `due` time has come.
    retrying: VecDeque<Box<Forward>>,
    retrying_bytes: usize,
}

impl DeadLetters {
    pub fn new(endpoint: &KafkaEndpoint, topic: String) -> Result<Self, ConnectorError> {
        let producer = kafka::client_config(
            endpoint,
            &[("message.max.bytes", PRODUCER_MAX_MESSAGE_BYTES)],
        )
        .create_with_context(ForwardContext::default())
        .map_err(kafka::config_error)?;
        Ok(Self {
            producer,
            topic,
            retrying: VecDeque::new(),
            retrying_bytes: 0,
        })
    }

    /// Forwards the `refused` messages of `messages`. The producer queues them; a forward that
    /// fails comes back through [`DeadLetters::retry`].
    pub fn forward(
        &mut self,
        source: &SourceStatus,
        messages: &PendingMessages,
        refused: &[SourceErrorRecord],
    ) {
        let positions = messages.positions();
        for record in refused {
            let Some(&index) = positions.get(&(record.partition, record.offset)) else {
                continue;
            };
            let forward = Box::new(Forward {
                partition: record.partition,
                offset: record.offset,
                key: messages.key(index).map(Arc::from),
                payload: messages.payload(index).map(Arc::from),
                reason: record.reason.clone(),
                attempts: 0,
                due: Instant::now(),
                last_error: String::new(),
            });
            self.send(source, forward);
        }
    }

    /// Takes back the forwards the broker refused and sends again those whose time has come.
    /// The source thread calls this about once a second.
    pub fn retry(&mut self, source: &SourceStatus) {
        let failed = std::mem::take(&mut *lock(&self.producer.context().failed));
        for forward in failed {
            self.schedule_retry(source, Box::new(forward));
        }
        let now = Instant::now();
        for _ in 0..self.retrying.len() {
            let Some(forward) = self.retrying.pop_front() else {
                break;
            };
            if forward.due > now {
                self.retrying.push_back(forward);
                continue;
            }
            self.retrying_bytes -= forward.bytes();
            self.send(source, forward);
        }
    }

    fn send(&mut self, source: &SourceStatus, forward: Box<Forward>) {
        let mut reason = forward.reason.as_str();
        if reason.len() > MAX_REASON_BYTES {
            let mut end = MAX_REASON_BYTES;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason = &reason[..end];
        }
        let headers = OwnedHeaders::new()
            .insert(header("tributary.source", source.name.as_bytes()))
            .insert(header("tributary.topic", source.topic.as_bytes()))
            .insert(header(
                "tributary.partition",
                forward.partition.to_string().as_bytes(),
            ))
            .insert(header(
                "tributary.offset",
                forward.offset.to_string().as_bytes(),
            ))
            .insert(header("tributary.reason", reason.as_bytes()));
        // librdkafka copies key and payload when the record is queued; these handles keep them
        // alive until then while the forward itself rides along as the opaque.
        let (key, payload) = (forward.key.clone(), forward.payload.clone());
        let mut message =
            BaseRecord::<[u8], [u8], Box<Forward>>::with_opaque_to(&self.topic, forward)
                .headers(headers);
        if let Some(key) = &key {
            message = message.key(key);
        }
        if let Some(payload) = &payload {
            message = message.payload(payload);
        }
        if let Err((error, message)) = self.producer.send(message) {
            let mut forward = message.delivery_opaque;
            forward.last_error = error.to_string();
            self.schedule_retry(source, forward);
        }
    }

    /// Shows a failed forward in `tributary.source_errors` (on its first failure) and queues it
    /// to be tried again after a backoff.
    fn schedule_retry(&mut self, source: &SourceStatus, mut forward: Box<Forward>) {
        if forward.attempts == 0 {
            source.record_error(self.failure(&forward, "retrying"));
        }
        forward.attempts += 1;
        let backoff = FIRST_RETRY
            .saturating_mul(1 << forward.attempts.min(16))
            .min(LONGEST_RETRY);
        forward.due = Instant::now() + backoff;
        self.retrying_bytes += forward.bytes();
        self.retrying.push_back(forward);
        while self.retrying_bytes > MAX_RETRYING_BYTES {
            let Some(oldest) = self.retrying.pop_front() else {
                break;
            };
            self.retrying_bytes -= oldest.bytes();
            source.record_error(self.failure(
                &oldest,
                "given up: too many failed forwards are waiting to be retried",
            ));
        }
    }

    fn failure(&self, forward: &Forward, outcome: &str) -> SourceErrorRecord {
        let payload = forward.payload.as_deref().unwrap_or_default();
        SourceErrorRecord {
            partition: forward.partition,
            offset: forward.offset,
            reason: format!(
                "could not forward to the dead-letter topic \"{}\" ({}); {outcome}. Refused because: {}",
                self.topic, forward.last_error, forward.reason
            ),
            payload: String::from_utf8_lossy(&payload[..payload.len().min(KEPT_PAYLOAD_BYTES)])
                .into_owned(),
        }
    }
}

fn header<'a>(key: &'a str, value: &'a [u8]) -> Header<'a, &'a [u8]> {
    Header {
        key,
        value: Some(value),
    }
}
