//! A Kafka sink: a thread that receives a relation's changes once per epoch (its contents first)
//! and writes them to a topic as JSON, in the UPSERT or DEBEZIUM envelope.
//!
//! On a server with a data directory the sink is exactly-once: it holds each epoch's output
//! until a checkpoint covering the epoch is durable, then writes everything up to that epoch in
//! one Kafka transaction together with a marker of the epoch (an offset committed for the
//! sink's own consumer group, through the transaction). Its transactional id is stable across
//! restarts, so a restarted sink fences its predecessor and aborts the transaction it left open;
//! it then reads the marker and rewrites, from the checkpoint, the output Kafka did not commit.
//! A `read_committed` consumer sees every change exactly once.
//!
//! Within an epoch the changes are paired by key: a key that lost a row and gained one is an
//! update, one that only lost a row a delete, one that only gained a row an insert. UPSERT writes
//! the new row, or a tombstone (null value) for a delete; DEBEZIUM writes
//! `{"before": ..., "after": ..., "op": "c" | "u" | "d"}`. What one write to Kafka carries
//! (a transaction, or the epochs an at-least-once sink found queued) writes each UPSERT key
//! once: its row after the last of those epochs, or a tombstone if it has none and had one
//! before the first. DEBEZIUM keeps every epoch's change.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::error::ArrowError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use rdkafka::{Offset, TopicPartitionList};

use super::status::SinkStatus;
use super::{SinkDefinition, kafka};
use crate::catalog::RelationId;
use crate::dataflow::{ChangeBatch, Epoch};
use crate::error::ConnectorError;
use crate::sql::streaming::Envelope;

/// How an exactly-once sink commits.
pub struct ExactlyOnce {
    /// Stable for this sink in this data directory: it fences the sink's earlier incarnations,
    /// and names the consumer group that holds the committed-epoch marker.
    pub transactional_id: String,
    /// Epochs up to its durable epoch are in a complete checkpoint, and may be committed.
    pub checkpoints: Arc<crate::storage::checkpoint::CheckpointReports>,
    /// Output of epochs in the checkpoint recovery loaded that Kafka may not have committed.
    pub recovered: Vec<SinkBatch>,
}

/// One epoch's changes of the sink's relation.
#[derive(Clone)]
pub struct SinkBatch {
    pub epoch: Epoch,
    pub changes: Vec<ChangeBatch>,
}

/// The coordinator's hold on a running sink. Dropping it closes the channel; the sink thread
/// then delivers what it was given and ends.
pub struct SinkHandle {
    /// The relation whose changes the sink writes.
    pub from: RelationId,
    /// To the sink thread, which owns the receiving end. Unbounded so that a slow or absent
    /// broker never blocks the coordinator; the backlog is the sink's to work off.
    sender: mpsc::Sender<SinkBatch>,
    pub status: Arc<SinkStatus>,
}

impl SinkHandle {
    pub fn send(&self, batch: SinkBatch) {
        self.status.queued_epochs.fetch_add(1, Ordering::Relaxed);
        if self.sender.send(batch).is_err() {
            self.status.set_state("stopped");
        }
    }
}

/// Counts deliveries into the sink's status.
struct SinkContext {
    status: Arc<SinkStatus>,
}

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.status.messages.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.status.errors.fetch_add(1, Ordering::Relaxed);
                self.status.set_state(format!("delivery failed: {error}"));
            }
        }
    }
}

pub fn start(
    from: RelationId,
    definition: Arc<SinkDefinition>,
    status: Arc<SinkStatus>,
    exactly_once: Option<ExactlyOnce>,
) -> Result<SinkHandle, ConnectorError> {
    let transactional_id = exactly_once
        .as_ref()
        .map(|exactly_once| exactly_once.transactional_id.clone());
    let mut settings = vec![
        // Retries must not reorder a key's updates.
        ("linger.ms", "5"),
        ("enable.idempotence", "true"),
    ];
    if let Some(id) = &transactional_id {
        settings.push(("transactional.id", id.as_str()));
    }
    let config = kafka::client_config(&definition.endpoint, &settings);
    let producer: ThreadedProducer<SinkContext> = config
        .create_with_context(SinkContext {
            status: Arc::clone(&status),
        })
        .map_err(kafka::config_error)?;
    // Only for the marker's group metadata; it never reads.
    let marker_consumer: Option<BaseConsumer> = match &transactional_id {
        Some(id) => Some(
            kafka::client_config(
                &definition.endpoint,
                &[
                    ("group.id", id.as_str()),
                    ("enable.auto.commit", "false"),
                    ("isolation.level", "read_committed"),
                ],
            )
            .create()
            .map_err(kafka::config_error)?,
        ),
        None => None,
    };
    let (sender, batches) = mpsc::channel();
    let thread_status = Arc::clone(&status);
    std::thread::Builder::new()
        .name(format!("sink-{}", status.name))
        .spawn(move || {
            let status = Arc::clone(&thread_status);
            let run = || match (exactly_once, marker_consumer) {
                (Some(exactly_once), Some(consumer)) => {
                    let sink = TransactionalSink {
                        producer,
                        config,
                        consumer,
                        definition,
                        status: thread_status,
                        checkpoints: exactly_once.checkpoints,
                    };
                    sink.run(exactly_once.recovered, batches);
                }
                _ => run(producer, definition, thread_status, batches),
            };
            if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
                let message = crate::error::panic_message(&panic);
                tracing::error!(sink = %status.name, %message, "sink thread panicked");
                status.set_state(format!("failed: {message}"));
            }
        })
        .map_err(|error| ConnectorError::Kafka(format!("cannot start the sink thread: {error}")))?;
    Ok(SinkHandle {
        from,
        sender,
        status,
    })
}

/// The sink's loop: one epoch at a time until the coordinator drops its handle. The producer
/// polls on its own thread (ThreadedProducer), so there is nothing else to wait for.
fn run(
    producer: ThreadedProducer<SinkContext>,
    definition: Arc<SinkDefinition>,
    status: Arc<SinkStatus>,
    batches: mpsc::Receiver<SinkBatch>,
) {
    status.set_state("running");
    while let Ok(first) = batches.recv() {
        // Everything queued behind the first epoch is written with it.
        let mut queued = vec![first];
        queued.extend(batches.try_iter());
        for record in encode_epochs(&definition, &queued, &status) {
            // Reported in the status; an at-least-once sink goes on with the next.
            let _ = produce(&producer, &definition.topic, &record, &status);
        }
        if let Some(last) = queued.last() {
            status.epoch.store(last.epoch, Ordering::Release);
        }
        status.dequeued_epochs(queued.len());
    }
    let _ = producer.flush(Duration::from_secs(10));
    tracing::info!(sink = %status.name, "sink stopped");
}

/// How long a transactional call may take before the sink retries it.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// How often an exactly-once sink with output waiting looks for newly durable epochs.
const COMMIT_TICK: Duration = Duration::from_millis(20);

/// How long an exactly-once sink with nothing waiting sleeps before it looks again (a new
/// batch wakes it at once).
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// An exactly-once sink's thread state (see the module doc).
struct TransactionalSink {
    producer: ThreadedProducer<SinkContext>,
    /// To make the producer again after a failed transaction.
    config: ClientConfig,
    consumer: BaseConsumer,
    definition: Arc<SinkDefinition>,
    status: Arc<SinkStatus>,
    checkpoints: Arc<crate::storage::checkpoint::CheckpointReports>,
}

impl TransactionalSink {
    /// One loop over data (`batches`), a ticker (`COMMIT_TICK`) and control (the channel
    /// closing when the coordinator drops the handle).
    fn run(mut self, recovered: Vec<SinkBatch>, batches: mpsc::Receiver<SinkBatch>) {
        // Recovered output never went through `SinkHandle::send`: counted here, so the count
        // goes down by exactly what it went up by.
        self.status
            .queued_epochs
            .fetch_add(recovered.len() as u64, Ordering::Relaxed);
        let mut pending = recovered;
        if !self.start_transactions(&batches, &mut pending) {
            return;
        }
        loop {
            // With nothing waiting for a checkpoint, only a new batch can give work: sleep
            // until one comes.
            let wait = if pending.is_empty() {
                IDLE_WAIT
            } else {
                COMMIT_TICK
            };
            match batches.recv_timeout(wait) {
                Ok(batch) => {
                    pending.push(batch);
                    while let Ok(batch) = batches.try_recv() {
                        pending.push(batch);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let durable = self.checkpoints.durable_epoch();
            let ready = pending
                .iter()
                .take_while(|batch| batch.epoch <= durable)
                .count();
            if ready == 0 {
                continue;
            }
            match self.commit(&pending[..ready]) {
                Ok(()) => {
                    pending.drain(..ready);
                    self.status.set_state("running");
                }
                Err(error) => {
                    // Whatever state the transaction is in (a broker gone, a timeout that may
                    // or may not have committed), a new producer with the same transactional id
                    // settles it, and the marker says what Kafka has.
                    tracing::warn!(sink = %self.status.name, %error, "sink transaction failed; starting over");
                    self.status.set_state(format!("retrying: {error}"));
                    match self.config.create_with_context(SinkContext {
                        status: Arc::clone(&self.status),
                    }) {
                        Ok(producer) => self.producer = producer,
                        Err(error) => {
                            self.status.set_state(format!("failed: {error}"));
                            return;
                        }
                    }
                    if !self.start_transactions(&batches, &mut pending) {
                        return;
                    }
                }
            }
        }
        tracing::info!(sink = %self.status.name, "sink stopped");
    }

    /// Initializes transactions (fencing earlier producers with the sink's id and settling what
    /// they left open) and drops from `pending` what the marker says Kafka committed. Retries
    /// while the broker is away, keeping what arrives meanwhile; false when the sink must stop.
    fn start_transactions(
        &self,
        batches: &mpsc::Receiver<SinkBatch>,
        pending: &mut Vec<SinkBatch>,
    ) -> bool {
        self.status.set_state("starting transactions");
        loop {
            let started = self
                .producer
                .init_transactions(TRANSACTION_TIMEOUT)
                .and_then(|()| self.wait_for_topic())
                .and_then(|()| self.committed_marker());
            match started {
                Ok(committed) => {
                    self.status
                        .committed_epoch
                        .fetch_max(committed, Ordering::AcqRel);
                    let before = pending.len();
                    pending.retain(|batch| batch.epoch > committed);
                    self.status.dequeued_epochs(before - pending.len());
                    self.status.set_state("running");
                    return true;
                }
                Err(error) if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fenced) => {
                    // Another server with this data directory's sink took over.
                    self.status.set_state(format!("failed: {error}"));
                    return false;
                }
                Err(error) => {
                    self.status.set_state(format!("retrying: {error}"));
                    std::thread::sleep(Duration::from_secs(1));
                    loop {
                        match batches.try_recv() {
                            Ok(batch) => pending.push(batch),
                            Err(mpsc::TryRecvError::Empty) => break,
                            Err(mpsc::TryRecvError::Disconnected) => return false,
                        }
                    }
                }
            }
        }
    }

    /// Waits until the sink's topic exists (asking for its metadata creates it where the broker
    /// allows): the marker is committed against its first partition, which must exist.
    fn wait_for_topic(&self) -> Result<(), KafkaError> {
        let deadline = std::time::Instant::now() + TRANSACTION_TIMEOUT;
        loop {
            let metadata = self
                .producer
                .client()
                .fetch_metadata(Some(&self.definition.topic), TRANSACTION_TIMEOUT)?;
            let ready = metadata.topics().iter().any(|topic| {
                topic.name() == self.definition.topic
                    && topic.error().is_none()
                    && !topic.partitions().is_empty()
            });
            if ready {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(KafkaError::MetadataFetch(
                    RDKafkaErrorCode::UnknownTopicOrPartition,
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last epoch whose output Kafka committed, from the marker (0 for none).
    fn committed_marker(&self) -> Result<Epoch, KafkaError> {
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition(&self.definition.topic, 0);
        let committed = self
            .consumer
            .committed_offsets(partitions, TRANSACTION_TIMEOUT)?;
        Ok(committed
            .elements()
            .first()
            .and_then(|element| match element.offset() {
                Offset::Offset(epoch) => u64::try_from(epoch).ok(),
                _ => None,
            })
            .unwrap_or(0))
    }

    /// Writes `batches` (in epoch order) and the marker of the last one in one transaction.
    fn commit(&self, batches: &[SinkBatch]) -> Result<(), KafkaError> {
        let Some(last) = batches.last() else {
            return Ok(());
        };
        self.producer.begin_transaction()?;
        for record in encode_epochs(&self.definition, batches, &self.status) {
            produce(
                &self.producer,
                &self.definition.topic,
                &record,
                &self.status,
            )?;
        }
        let mut marker = TopicPartitionList::new();
        marker.add_partition_offset(
            &self.definition.topic,
            0,
            Offset::Offset(i64::try_from(last.epoch).unwrap_or(i64::MAX)),
        )?;
        let group = self
            .consumer
            .group_metadata()
            .ok_or(KafkaError::MetadataFetch(RDKafkaErrorCode::InvalidGroupId))?;
        self.producer
            .send_offsets_to_transaction(&marker, &group, TRANSACTION_TIMEOUT)?;
        self.producer.commit_transaction(TRANSACTION_TIMEOUT)?;
        self.status
            .committed_epoch
            .fetch_max(last.epoch, Ordering::AcqRel);
        self.status.epoch.store(last.epoch, Ordering::Release);
        self.status.dequeued_epochs(batches.len());
        Ok(())
    }
}

/// Hands one record to the producer, waiting while its queue is full.
fn produce(
    producer: &ThreadedProducer<SinkContext>,
    topic: &str,
    record: &EncodedRecord,
    status: &SinkStatus,
) -> Result<(), KafkaError> {
    loop {
        let mut message = BaseRecord::<[u8], [u8]>::to(topic);
        if let Some(key) = &record.key {
            message = message.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            message = message.payload(value.as_slice());
        }
        match producer.send(message) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((error, _)) => {
                status.errors.fetch_add(1, Ordering::Relaxed);
                status.set_state(format!("cannot produce: {error}"));
                return Err(error);
            }
        }
    }
}

/// A Kafka record: key and value bytes, `None` for null (a tombstone's value).
#[derive(Debug, PartialEq)]
pub struct EncodedRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// A key's row before and after an epoch, JSON-encoded; `None` where it had none.
type BeforeAfter = (Option<Vec<u8>>, Option<Vec<u8>>);

/// One epoch's changes paired: per key (its JSON), and the rows without a key.
type Paired = (BTreeMap<Vec<u8>, BeforeAfter>, Vec<BeforeAfter>);

/// The records one write to Kafka carries for `epochs` (in epoch order): each epoch's changes
/// paired by key, and for UPSERT each key once (see the module doc). An epoch that cannot be
/// encoded is not the broker's fault and would fail every retry: it is reported in `status`
/// and left out rather than blocking every later epoch.
fn encode_epochs(
    definition: &SinkDefinition,
    epochs: &[SinkBatch],
    status: &SinkStatus,
) -> Vec<EncodedRecord> {
    let fold = definition.envelope != Envelope::Debezium && !definition.key.is_empty();
    let mut records = Vec::new();
    // UPSERT: per key, its row before the first epoch and after the last.
    let mut by_key: BTreeMap<Vec<u8>, BeforeAfter> = BTreeMap::new();
    for batch in epochs {
        let (pairs, unkeyed) = match pair_by_key(definition, &batch.changes) {
            Ok(paired) => paired,
            Err(error) => {
                status.errors.fetch_add(1, Ordering::Relaxed);
                status.set_state(format!("cannot encode epoch {}: {error}", batch.epoch));
                tracing::error!(sink = %status.name, %error, "cannot encode a sink batch");
                continue;
            }
        };
        if fold {
            for (key, (before, after)) in pairs {
                by_key
                    .entry(key)
                    .and_modify(|pair| pair.1 = after.clone())
                    .or_insert((before, after));
            }
        } else {
            records.extend(envelopes(definition.envelope, pairs, unkeyed));
        }
    }
    if fold {
        records.extend(envelopes(definition.envelope, by_key, Vec::new()));
    }
    records
}

/// One epoch's changes as records, paired by key (see the module doc).
pub fn encode(
    definition: &SinkDefinition,
    changes: &[ChangeBatch],
) -> Result<Vec<EncodedRecord>, ArrowError> {
    let (by_key, unkeyed) = pair_by_key(definition, changes)?;
    Ok(envelopes(definition.envelope, by_key, unkeyed))
}

/// Records for keyed pairs, then for rows without a key.
fn envelopes(
    envelope_kind: Envelope,
    by_key: BTreeMap<Vec<u8>, BeforeAfter>,
    unkeyed: Vec<BeforeAfter>,
) -> Vec<EncodedRecord> {
    let mut records = Vec::with_capacity(by_key.len() + unkeyed.len());
    for (key, (before, after)) in by_key {
        if let Some(record) = envelope(envelope_kind, Some(key), before, after) {
            records.push(record);
        }
    }
    for (before, after) in unkeyed {
        if let Some(record) = envelope(envelope_kind, None, before, after) {
            records.push(record);
        }
    }
    records
}

/// One epoch's changes as (before, after) JSON rows: per key, the row it lost and the row it
/// gained; without a key, one pair per copy of each row.
fn pair_by_key(definition: &SinkDefinition, changes: &[ChangeBatch]) -> Result<Paired, ArrowError> {
    let mut by_key: BTreeMap<Vec<u8>, BeforeAfter> = BTreeMap::new();
    let mut unkeyed = Vec::new();
    for change in changes {
        if change.is_empty() {
            continue;
        }
        let values = json_lines(&change.rows)?;
        let keys = if definition.key.is_empty() {
            None
        } else {
            Some(json_lines(&change.rows.project(&definition.key)?)?)
        };
        for (row, value) in values.into_iter().enumerate() {
            let weight = change.weights.value(row);
            match &keys {
                Some(keys) => {
                    let entry = by_key.entry(keys[row].clone()).or_default();
                    if weight < 0 {
                        entry.0 = Some(value);
                    } else if weight > 0 {
                        entry.1 = Some(value);
                    }
                }
                None => {
                    for _ in 0..weight.unsigned_abs() {
                        if weight < 0 {
                            unkeyed.push((Some(value.clone()), None));
                        } else {
                            unkeyed.push((None, Some(value.clone())));
                        }
                    }
                }
            }
        }
    }
    Ok((by_key, unkeyed))
}

fn envelope(
    envelope: Envelope,
    key: Option<Vec<u8>>,
    before: Option<Vec<u8>>,
    after: Option<Vec<u8>>,
) -> Option<EncodedRecord> {
    match envelope {
        Envelope::Upsert | Envelope::None => match (before, after) {
            (_, Some(after)) => Some(EncodedRecord {
                key,
                value: Some(after),
            }),
            (Some(_), None) => Some(EncodedRecord { key, value: None }),
            (None, None) => None,
        },
        Envelope::Debezium => {
            let op = match (&before, &after) {
                (None, Some(_)) => "c",
                (Some(_), Some(_)) => "u",
                (Some(_), None) => "d",
                (None, None) => return None,
            };
            let mut value = Vec::new();
            value.extend_from_slice(b"{\"before\":");
            value.extend_from_slice(before.as_deref().unwrap_or(b"null"));
            value.extend_from_slice(b",\"after\":");
            value.extend_from_slice(after.as_deref().unwrap_or(b"null"));
            value.extend_from_slice(format!(",\"op\":\"{op}\"}}").as_bytes());
            Some(EncodedRecord {
                key,
                value: Some(value),
            })
        }
    }
}

/// Each row of a batch as a JSON object (nulls written out), encoded by arrow-json for the whole
/// batch at once.
fn json_lines(batch: &RecordBatch) -> Result<Vec<Vec<u8>>, ArrowError> {
    let mut buffer = Vec::new();
    let mut writer = arrow_json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .with_encoder_factory(Arc::new(JsonbAsJson))
        .build::<_, arrow_json::writer::LineDelimited>(&mut buffer);
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    // JSON escapes newlines inside strings, so each line is one row.
    Ok(buffer
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// Writes jsonb columns as the JSON they hold (`{"tags": ["a"]}`), not as a string of it: their
/// values are canonical jsonb text, which is JSON.
#[derive(Debug)]
struct JsonbAsJson;

impl arrow_json::writer::EncoderFactory for JsonbAsJson {
    fn make_default_encoder<'a>(
        &self,
        field: &'a datafusion::arrow::datatypes::FieldRef,
        array: &'a dyn datafusion::arrow::array::Array,
        _options: &'a arrow_json::writer::EncoderOptions,
    ) -> Result<Option<arrow_json::writer::NullableEncoder<'a>>, ArrowError> {
        use datafusion::arrow::array::AsArray;
        if *field.data_type() != crate::sql::jsonb::JSONB
            || *array.data_type() != crate::sql::jsonb::JSONB
        {
            return Ok(None);
        }
        struct Raw<'a>(&'a datafusion::arrow::array::LargeStringArray);
        impl arrow_json::writer::Encoder for Raw<'_> {
            fn encode(&mut self, index: usize, out: &mut Vec<u8>) {
                out.extend_from_slice(self.0.value(index).as_bytes());
            }
        }
        Ok(Some(arrow_json::writer::NullableEncoder::new(
            Box::new(Raw(array.as_string::<i64>())),
            array.nulls().cloned(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int32Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::connectors::KafkaEndpoint;

    fn changes(rows: &[(&str, i32, i64)]) -> ChangeBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .expect("batch");
        ChangeBatch::new(
            batch,
            Int64Array::from_iter_values(rows.iter().map(|r| r.2)),
        )
    }

    fn definition(envelope: Envelope) -> SinkDefinition {
        SinkDefinition {
            endpoint: KafkaEndpoint {
                broker: String::new(),
                properties: Vec::new(),
                secrets: Vec::new(),
            },
            topic: String::new(),
            key: vec![0],
            envelope,
            schema: Arc::new(Schema::empty()),
        }
    }

    fn text(records: Vec<EncodedRecord>) -> Vec<(String, Option<String>)> {
        records
            .into_iter()
            .map(|record| {
                (
                    String::from_utf8(record.key.unwrap_or_default()).expect("utf-8"),
                    record.value.map(|v| String::from_utf8(v).expect("utf-8")),
                )
            })
            .collect()
    }

    #[test]
    fn a_write_of_several_epochs_sends_each_upsert_key_once() {
        let status = SinkStatus::new("test".into(), String::new());
        let epochs = [
            // a inserted, b inserted, c deleted (it existed before).
            vec![changes(&[("a", 1, 1), ("b", 1, 1), ("c", 9, -1)])],
            // a updated twice over two epochs, b deleted, d inserted.
            vec![changes(&[
                ("a", 1, -1),
                ("a", 2, 1),
                ("b", 1, -1),
                ("d", 4, 1),
            ])],
            vec![changes(&[("a", 2, -1), ("a", 3, 1)])],
        ]
        .into_iter()
        .enumerate()
        .map(|(epoch, changes)| SinkBatch {
            epoch: epoch as Epoch + 1,
            changes,
        })
        .collect::<Vec<_>>();
        // b came and went inside the write: nothing; c's deletion: a tombstone.
        assert_eq!(
            text(encode_epochs(
                &definition(Envelope::Upsert),
                &epochs,
                &status
            )),
            vec![
                (r#"{"k":"a"}"#.into(), Some(r#"{"k":"a","v":3}"#.into())),
                (r#"{"k":"c"}"#.into(), None),
                (r#"{"k":"d"}"#.into(), Some(r#"{"k":"d","v":4}"#.into())),
            ]
        );
        // DEBEZIUM keeps every epoch's change: a is created, then updated twice.
        let debezium = text(encode_epochs(
            &definition(Envelope::Debezium),
            &epochs,
            &status,
        ));
        assert_eq!(
            debezium
                .iter()
                .filter(|(key, _)| key == r#"{"k":"a"}"#)
                .count(),
            3
        );
        assert_eq!(debezium.len(), 7);
    }

    #[test]
    fn an_epoch_pairs_changes_by_key() {
        // a is updated (retraction and insertion in different batches), b deleted, c inserted.
        let epoch = [
            changes(&[("a", 1, -1), ("b", 5, -1)]),
            changes(&[("c", 3, 1), ("a", 2, 1)]),
        ];
        assert_eq!(
            text(encode(&definition(Envelope::Upsert), &epoch).expect("encode")),
            vec![
                (r#"{"k":"a"}"#.into(), Some(r#"{"k":"a","v":2}"#.into())),
                (r#"{"k":"b"}"#.into(), None),
                (r#"{"k":"c"}"#.into(), Some(r#"{"k":"c","v":3}"#.into())),
            ]
        );
        assert_eq!(
            text(encode(&definition(Envelope::Debezium), &epoch).expect("encode")),
            vec![
                (
                    r#"{"k":"a"}"#.into(),
                    Some(r#"{"before":{"k":"a","v":1},"after":{"k":"a","v":2},"op":"u"}"#.into())
                ),
                (
                    r#"{"k":"b"}"#.into(),
                    Some(r#"{"before":{"k":"b","v":5},"after":null,"op":"d"}"#.into())
                ),
                (
                    r#"{"k":"c"}"#.into(),
                    Some(r#"{"before":null,"after":{"k":"c","v":3},"op":"c"}"#.into())
                ),
            ]
        );
    }
}
