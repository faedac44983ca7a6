//! A Kafka source: a thread that reads every partition of its topic from Tributary's own offsets,
//! decodes what has arrived into one Arrow batch as soon as librdkafka's queue is drained (or a
//! batch is full), applies the envelope and hands the changes to the coordinator, which applies
//! them in the next epoch.

use std::collections::HashMap;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use rdkafka::Message as _;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use tokio::sync::oneshot;

use super::consumer_queue::{ConsumerQueue, MESSAGES_PER_CALL};
use super::dead_letters::DeadLetters;
use super::decode::{Message, PendingMessages, SourceDecoder, decode_in_slices};
use super::envelope::EnvelopeState;
use super::envelope::KeyUpdate;
use super::status::{SourceControl, SourceStatus, lock};
use super::{SourceDefinition, kafka};
use crate::dataflow::ChangeBatch;
use crate::error::{ConnectorError, Result};
use crate::sql::streaming::Envelope;

/// How often a source with a FLUSH waiting looks for its answer; also the longest messages wait
/// to be delivered while more keep arriving.
const TICK: Duration = Duration::from_millis(10);
/// While messages stream in, the clock is read once per this many.
const CLOCK_EVERY_MESSAGES: usize = 1024;
/// A batch is cut early when this many messages are waiting.
const MAX_BATCH_MESSAGES: usize = 65_536;
/// How long one attempt to learn a FLUSH's targets may hold up reading.
const FLUSH_WATERMARK_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the high watermarks shown in `tributary.source_progress` are refreshed.
const WATERMARK_INTERVAL: Duration = Duration::from_secs(1);

/// What a source hands on for the next epoch.
pub struct IngestBatch {
    pub changes: Vec<ChangeBatch>,
    /// The offset after the last message these came from, per partition.
    pub offsets: Vec<(i32, i64)>,
    /// For UPSERT and DEBEZIUM sources: what the batch did to each key's row.
    pub key_updates: Vec<KeyUpdate>,
}

/// Where a source's batches go: the coordinator's side implements it. Called from the source's
/// own (non-async) thread.
pub trait Ingest: Send {
    /// Hands a batch to the next epoch, waiting while the receiver is behind (which is how a
    /// source is slowed to the pace the dataflows keep); false when the receiver has stopped.
    fn send(&self, batch: IngestBatch) -> bool;

    /// Answers `reply` once every batch sent before is published.
    fn sync(&self, reply: oneshot::Sender<Result<()>>);
}

/// The coordinator's hold on a running source: dropping it stops the source's thread.
pub struct SourceHandle {
    pub status: Arc<SourceStatus>,
}

impl Drop for SourceHandle {
    fn drop(&mut self) {
        self.status.stop();
    }
}

/// Starts a source's thread. `schema` is the relation's stored schema (payload columns, then
/// the INCLUDE columns).
pub fn start(
    definition: Arc<SourceDefinition>,
    offsets: &[(i32, rdkafka::Offset)],
    keyed_rows: Option<&super::envelope::KeyedRows>,
    schema: SchemaRef,
    status: Arc<SourceStatus>,
    ingest: Box<dyn Ingest>,
) -> Result<SourceHandle, ConnectorError> {
    let mut consumer: BaseConsumer<SourceContext> = kafka::consumer_config(
        &definition.endpoint,
        &format!("tributary-source-{}", status.name),
    )
    .create_with_context(SourceContext {
        status: Arc::clone(&status),
    })
    .map_err(kafka::config_error)?;
    let mut assignment = TopicPartitionList::new();
    for &(partition, offset) in offsets {
        assignment
            .add_partition_offset(&definition.topic, partition, offset)
            .map_err(|error| ConnectorError::Kafka(error.to_string()))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|error| ConnectorError::Kafka(error.to_string()))?;
    // One channel wakes the source's thread: control requests, and librdkafka's callback when
    // its queue of fetched messages stops being empty (called on librdkafka's own thread,
    // where only this send happens). The thread holds the receiving end.
    let (control, requests) = mpsc::channel();
    let arrivals = control.clone();
    consumer.set_nonempty_callback(move || {
        let _ = arrivals.send(SourceControl::MessagesArrived);
    });
    status.set_control(control);
    let mut envelope = EnvelopeState::new(definition.envelope, Arc::clone(&schema))
        .map_err(|error| ConnectorError::Kafka(error.to_string()))?;
    if let Some(rows) = keyed_rows {
        envelope.restore(rows);
    }
    let decoder = SourceDecoder::new(
        definition.format.clone(),
        Arc::clone(&definition.payload_schema),
        definition.include.clone(),
        schema,
        definition.envelope != Envelope::None,
    );
    let wants_headers = definition
        .include
        .iter()
        .any(|include| include.kind == crate::sql::streaming::IncludeKind::Headers);
    let dead_letters = match &definition.errors_topic {
        Some(topic) => Some(DeadLetters::new(&definition.endpoint, topic.clone())?),
        None => None,
    };
    // Messages with headers are read one by one, through rust-rdkafka's header parsing.
    let queue = if wants_headers {
        None
    } else {
        ConsumerQueue::new(&consumer)
    };
    let reader = SourceReader {
        queue,
        consumer,
        dead_letters,
        topic: definition.topic.clone(),
        decoder,
        envelope,
        wants_headers,
        status: Arc::clone(&status),
        ingest,
        pending: PendingMessages::default(),
        // Where each partition starts, when known, so FLUSH can tell a partition with nothing
        // new from one not yet read.
        next_offsets: offsets
            .iter()
            .filter_map(|(partition, offset)| match offset {
                rdkafka::Offset::Offset(offset) => Some((*partition, *offset)),
                _ => None,
            })
            .collect(),
        flushes: Vec::new(),
        unanswered: false,
    };
    std::thread::Builder::new()
        .name(format!("source-{}", status.name))
        .spawn(move || {
            let status = Arc::clone(&reader.status);
            // A bug must not end the source silently: the state says it stopped, and why.
            if let Err(panic) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.run(requests)))
            {
                let message = crate::error::panic_message(&panic);
                tracing::error!(source = %status.name, %message, "source thread panicked");
                status.set_degraded(format!("failed: {message}"));
            }
        })
        .map_err(|error| {
            ConnectorError::Kafka(format!("cannot start the source thread: {error}"))
        })?;
    Ok(SourceHandle { status })
}

/// A FLUSH waiting for the source to reach the high watermarks its topic had when it arrived.
struct PendingFlush {
    /// Per partition, the offset to reach; `None` until the broker tells.
    targets: Option<HashMap<i32, i64>>,
    reply: oneshot::Sender<Result<()>>,
}

/// Shows librdkafka's connection errors (a broker gone away, say) in the source's state while
/// librdkafka retries; the reader clears them when messages flow again.
struct SourceContext {
    status: Arc<SourceStatus>,
}

impl rdkafka::ClientContext for SourceContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(source = %self.status.name, %error, reason, "Kafka connection problem");
        self.status.set_degraded(format!("retrying: {reason}"));
    }

    /// A consumer read in batches ([`ConsumerQueue`]) hears of its errors (a broker that went
    /// away) as librdkafka's `ERROR` log lines, not as messages: they show in the source's state
    /// the same way.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::warn!(source = %self.status.name, facility, message, "Kafka connection problem");
                if facility == "ERROR" {
                    self.status.set_degraded(format!("retrying: {message}"));
                }
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(source = %self.status.name, facility, message, "librdkafka")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(source = %self.status.name, facility, message, "librdkafka")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(source = %self.status.name, facility, message, "librdkafka")
            }
        }
    }
}

impl rdkafka::consumer::ConsumerContext for SourceContext {}

struct SourceReader {
    /// The consumer's queue read in batches: declared before the consumer, so it is released
    /// first.
    queue: Option<ConsumerQueue>,
    consumer: BaseConsumer<SourceContext>,
    dead_letters: Option<DeadLetters>,
    topic: String,
    decoder: SourceDecoder,
    envelope: EnvelopeState,
    wants_headers: bool,
    status: Arc<SourceStatus>,
    ingest: Box<dyn Ingest>,
    pending: PendingMessages,
    /// The offset after the last message ingested, per partition.
    next_offsets: HashMap<i32, i64>,
    flushes: Vec<PendingFlush>,
    /// Set while the broker does not answer the high watermarks' refresh.
    unanswered: bool,
}

impl SourceReader {
    /// One loop over data (the consumer), a ticker (`deadline`) and control (`requests`, and the
    /// stop flag the coordinator sets). librdkafka's poll is never left waiting: once its queue
    /// is empty the thread sleeps on `requests`, which wakes it when messages arrive (the
    /// queue's callback), on a request or stop, or when something is due (a FLUSH's next look,
    /// the high watermarks' refresh). An idle source costs one wakeup a second.
    fn run(mut self, requests: mpsc::Receiver<SourceControl>) {
        let mut deadline = Instant::now() + TICK;
        let mut watermarks_due = Instant::now();
        let mut since_clock = 0;
        self.status.set_running();
        loop {
            if self.status.stopped() {
                break;
            }
            loop {
                match requests.try_recv() {
                    Ok(SourceControl::Flush(reply)) => self.begin_flush(reply),
                    Ok(SourceControl::MessagesArrived | SourceControl::Stop) => {}
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
            let taken = self.take_messages();
            let drained = taken == 0;
            since_clock += taken;
            // Deliver as soon as nothing more has arrived: at a low rate every message goes
            // through at once, at a high rate batches grow (up to a full one) by themselves.
            if (drained && !self.pending.is_empty()) || self.pending.len() >= MAX_BATCH_MESSAGES {
                if !self.deliver() {
                    return;
                }
            } else if !drained && since_clock < CLOCK_EVERY_MESSAGES {
                // Reading the clock costs as much as taking a message; skip it while busy.
                continue;
            }
            since_clock = 0;
            let now = Instant::now();
            if now >= deadline {
                if !self.deliver() {
                    return;
                }
                deadline = now + TICK;
                if now >= watermarks_due {
                    self.refresh_watermarks();
                    if let Some(dead_letters) = &mut self.dead_letters {
                        dead_letters.retry(&self.status);
                    }
                    watermarks_due = now + WATERMARK_INTERVAL;
                }
                self.answer_flushes();
            }
            if drained && self.pending.is_empty() {
                let due = if self.flushes.is_empty() {
                    watermarks_due
                } else {
                    deadline
                };
                match requests.recv_timeout(due.saturating_duration_since(now)) {
                    Ok(SourceControl::Flush(reply)) => self.begin_flush(reply),
                    Ok(SourceControl::MessagesArrived | SourceControl::Stop)
                    | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        }
        tracing::info!(source = %self.status.name, "source stopped");
    }

    /// Takes what has arrived into the pending batch: a batch of messages from the queue, or
    /// (for a source that includes headers) one message. Returns how many were taken (an error
    /// in a message's place counts): 0 when nothing is waiting.
    fn take_messages(&mut self) -> usize {
        let room = MAX_BATCH_MESSAGES.saturating_sub(self.pending.len());
        if let Some(queue) = self.queue.as_mut() {
            let (pending, status) = (&mut self.pending, &self.status);
            return queue.take(
                room.min(MESSAGES_PER_CALL),
                Duration::ZERO,
                |taken| match taken {
                    Ok(message) => {
                        pending.push(message);
                        status.set_running();
                    }
                    // librdkafka reconnects by itself and keeps its fetch positions; the error is
                    // shown until messages flow again.
                    Err(error) => status.set_degraded(format!("retrying: {error}")),
                },
            );
        }
        match self.consumer.poll(Duration::ZERO) {
            Some(Ok(message)) => {
                self.pending
                    .push(borrowed_message(&message, self.wants_headers));
                self.status.set_running();
                1
            }
            Some(Err(error)) => {
                self.status.set_degraded(format!("retrying: {error}"));
                1
            }
            None => 0,
        }
    }

    /// Decodes the pending messages and hands the rows to the coordinator. False when the
    /// coordinator is gone.
    fn deliver(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let messages = std::mem::take(&mut self.pending);
        let mut per_partition: HashMap<i32, (i64, u64)> = HashMap::new();
        for index in 0..messages.len() {
            let (partition, offset) = messages.partition_and_offset(index);
            let entry = per_partition.entry(partition).or_insert((offset, 0));
            entry.0 = entry.0.max(offset);
            entry.1 += 1;
        }
        let decoded = decode_in_slices(&self.decoder, &messages).and_then(|slices| {
            // The envelope goes through the slices in message order: an UPSERT key's last
            // message wins.
            let mut changes = Vec::new();
            let mut refused = Vec::new();
            for mut decoded in slices {
                refused.append(&mut decoded.refused);
                changes.extend(self.envelope.changes(
                    &self.decoder,
                    &messages,
                    decoded,
                    &mut refused,
                )?);
            }
            // Refused in the order they arrived, whatever stage refused them.
            refused.sort_by_key(|record| (record.partition, record.offset));
            Ok((changes, refused))
        });
        let (changes, refused) = match decoded {
            Ok(decoded) => decoded,
            Err(error) => {
                // Not a bad message (those are refused one by one) but a bug. The batch is lost
                // to it and its offsets not counted as ingested; the state says so until
                // messages flow again, so nothing is skipped silently.
                tracing::error!(source = %self.status.name, %error, "cannot decode a batch");
                self.status
                    .set_degraded(format!("failed to decode a batch: {error}"));
                return true;
            }
        };
        if let Some(dead_letters) = &mut self.dead_letters
            && !refused.is_empty()
        {
            dead_letters.forward(&self.status, &messages, &refused);
        }
        let mut errors_per_partition: HashMap<i32, u64> = HashMap::new();
        for refused in refused {
            *errors_per_partition.entry(refused.partition).or_default() += 1;
            self.status.record_error(refused);
        }
        let changes: Vec<_> = changes.into_iter().filter(|c| !c.is_empty()).collect();
        // Sent even without changes (say, every message was malformed): the coordinator keeps
        // the offsets for checkpoints, so a restart does not read these messages again.
        let offsets = per_partition
            .iter()
            .map(|(&partition, &(last_offset, _))| (partition, last_offset + 1))
            .collect();
        let batch = IngestBatch {
            changes,
            offsets,
            key_updates: self.envelope.take_key_updates(),
        };
        if !self.ingest.send(batch) {
            return false;
        }
        let bytes_per_message = messages.payload_bytes() as u64 / messages.len().max(1) as u64;
        let mut partitions = lock(&self.status.partitions);
        for progress in partitions.iter_mut() {
            if let Some(&(last_offset, count)) = per_partition.get(&progress.partition) {
                progress.offset = last_offset + 1;
                progress.messages += count;
                progress.bytes += count * bytes_per_message;
                progress.errors += errors_per_partition
                    .get(&progress.partition)
                    .copied()
                    .unwrap_or(0);
                self.next_offsets
                    .insert(progress.partition, last_offset + 1);
            }
        }
        true
    }

    fn refresh_watermarks(&mut self) {
        let partitions: Vec<i32> = lock(&self.status.partitions)
            .iter()
            .map(|progress| progress.partition)
            .collect();
        let mut highs = Vec::with_capacity(partitions.len());
        for partition in partitions {
            match self
                .consumer
                .fetch_watermarks(&self.topic, partition, Duration::from_millis(500))
            {
                Ok((_, high)) => highs.push((partition, high)),
                // Messages read in batches do not carry the consumer's errors: a broker that
                // does not answer shows here, within a second, until it answers again.
                Err(error) => {
                    self.status.set_degraded(format!("retrying: {error}"));
                    self.unanswered = true;
                }
            }
        }
        if self.unanswered && highs.len() == lock(&self.status.partitions).len() {
            self.unanswered = false;
            self.status.set_running();
        }
        let mut progress = lock(&self.status.partitions);
        for (partition, high) in highs {
            if let Some(entry) = progress.iter_mut().find(|p| p.partition == partition) {
                entry.high_watermark = high;
            }
        }
    }

    fn begin_flush(&mut self, reply: oneshot::Sender<Result<()>>) {
        self.flushes.push(PendingFlush {
            targets: None,
            reply,
        });
    }

    /// The high watermark of every partition that has something to read: what a FLUSH asked
    /// now waits for. `None` while the broker does not answer.
    fn flush_targets(&self) -> Option<HashMap<i32, i64>> {
        let partitions: Vec<i32> = lock(&self.status.partitions)
            .iter()
            .map(|progress| progress.partition)
            .collect();
        let mut targets = HashMap::new();
        for partition in partitions {
            match self
                .consumer
                .fetch_watermarks(&self.topic, partition, FLUSH_WATERMARK_TIMEOUT)
            {
                // An empty partition (or one whose messages all expired) has nothing to wait for.
                Ok((low, high)) if low >= high => {}
                Ok((_, high)) => {
                    targets.insert(partition, high);
                }
                Err(_) => return None,
            }
        }
        Some(targets)
    }

    /// Answers the FLUSHes whose targets are reached, through the coordinator so that the
    /// answer comes after the epoch holding those messages is published.
    fn answer_flushes(&mut self) {
        if self.flushes.is_empty() {
            return;
        }
        // A FLUSH whose targets are not known yet (the broker did not answer) asks again; the
        // session gives up on its own after its timeout.
        if self.flushes.iter().any(|flush| flush.targets.is_none()) {
            let targets = self.flush_targets();
            for flush in &mut self.flushes {
                if flush.targets.is_none() {
                    flush.targets = targets.clone();
                }
            }
            if targets.is_none() {
                tracing::debug!(source = %self.status.name, "FLUSH waits for the broker");
                return;
            }
        }
        // Transaction markers and compaction leave gaps, so the consumer's position (past
        // them) counts as well as the last message seen.
        let positions: HashMap<i32, i64> = self
            .consumer
            .position()
            .map(|list| {
                list.elements()
                    .iter()
                    .filter_map(|element| Some((element.partition(), element.offset().to_raw()?)))
                    .collect()
            })
            .unwrap_or_default();
        let next_offsets = &self.next_offsets;
        let reached = |partition: &i32, target: &i64| {
            let seen = next_offsets.get(partition).copied().unwrap_or(0);
            let position = positions.get(partition).copied().unwrap_or(-1);
            // A position is only trusted once nothing is waiting to be delivered.
            *target <= 0 || seen >= *target || position >= *target
        };
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(|flush| {
                flush
                    .targets
                    .as_ref()
                    .is_some_and(|targets| targets.iter().all(|(p, t)| reached(p, t)))
            });
        self.flushes = waiting;
        for flush in done {
            self.ingest.sync(flush.reply);
        }
    }
}

/// A message rust-rdkafka polled, as decoding takes it; its headers only when they are wanted.
pub(super) fn borrowed_message<'a>(
    message: &'a rdkafka::message::BorrowedMessage<'_>,
    wants_headers: bool,
) -> Message<'a> {
    Message {
        payload: message.payload(),
        key: message.key(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp: message.timestamp().to_millis(),
        headers: wants_headers.then(|| headers_json(message.headers())),
    }
}

/// Message headers as a JSON object of text values (invalid UTF-8 replaced).
fn headers_json(headers: Option<&rdkafka::message::BorrowedHeaders>) -> String {
    let mut json = String::from("{");
    if let Some(headers) = headers {
        for (index, header) in headers.iter().enumerate() {
            if index > 0 {
                json.push(',');
            }
            push_json_string(&mut json, header.key);
            json.push(':');
            match header.value {
                Some(value) => push_json_string(&mut json, &String::from_utf8_lossy(value)),
                None => json.push_str("null"),
            }
        }
    }
    json.push('}');
    json
}

fn push_json_string(json: &mut String, text: &str) {
    json.push('"');
    for character in text.chars() {
        match character {
            '"' => json.push_str("\\\""),
            '\\' => json.push_str("\\\\"),
            '\n' => json.push_str("\\n"),
            '\r' => json.push_str("\\r"),
            '\t' => json.push_str("\\t"),
            control if (control as u32) < 0x20 => {
                json.push_str(&format!("\\u{:04x}", control as u32))
            }
            other => json.push(other),
        }
    }
    json.push('"');
}
