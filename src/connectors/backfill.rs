//! Reading an append-only source's messages back from Kafka between fixed offsets: what a new
//! view, sink or subscription over the source starts from, and what an ad hoc SELECT of it
//! reads. Sources keep no rows of their own (the topic already is their durable log), so memory
//! and checkpoints follow the views' state, not the input's length.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::consumer_queue::{ConsumerQueue, MESSAGES_PER_CALL};
use super::decode::{PendingMessages, SourceDecoder, decode_in_slices};
use super::{SourceDefinition, kafka};
use crate::error::ConnectorError;
use crate::sql::streaming::IncludeKind;

/// Reading back gives up when no message arrives for this long (the broker is unreachable).
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages are decoded this many at a time, so their raw bytes are held only per chunk.
const CHUNK_MESSAGES: usize = 65_536;
/// How long one wait for messages lasts before the stall clock is looked at.
const WAIT: Duration = Duration::from_millis(100);

/// An append-only source's messages as of one epoch: per partition, from where the source
/// started to where it had ingested.
#[derive(Debug, Clone)]
pub struct SourceRange {
    pub name: String,
    pub definition: Arc<SourceDefinition>,
    /// The relation's stored schema: payload columns, then the INCLUDE columns.
    pub schema: SchemaRef,
    /// Per partition: the first offset (librdkafka's raw form: -2 is the beginning) and the
    /// offset after the last message ingested (negative while none has been).
    pub partitions: Vec<(i32, i64, i64)>,
}

impl SourceRange {
    /// Per partition with something to read, the offset to read up to (exclusive).
    fn ends(&self) -> HashMap<i32, i64> {
        self.partitions
            .iter()
            .filter(|&&(_, start, end)| end > 0 && (start < 0 || start < end))
            .map(|&(partition, _, end)| (partition, end))
            .collect()
    }

    /// Reads the range's messages from the broker and decodes them as the source did; messages
    /// the source refused are refused again (they are already in `tributary.source_errors`).
    /// Blocks: call it off the async runtime. A message the topic's retention or compaction has
    /// deleted since is not read.
    pub fn read(&self) -> Result<Vec<RecordBatch>, ConnectorError> {
        let mut remaining = self.ends();
        if remaining.is_empty() {
            return Ok(Vec::new());
        }
        let definition = &self.definition;
        let consumer: BaseConsumer = kafka::consumer_config(
            &definition.endpoint,
            &format!("tributary-read-{}", self.name),
        )
        // The end of a partition also ends its range: the last message in it may have been
        // compacted away.
        .set("enable.partition.eof", "true")
        .create()
        .map_err(kafka::config_error)?;
        let mut assignment = TopicPartitionList::new();
        for &(partition, start, _) in &self.partitions {
            if remaining.contains_key(&partition) {
                assignment
                    .add_partition_offset(
                        &definition.topic,
                        partition,
                        rdkafka::Offset::from_raw(start),
                    )
                    .map_err(|error| ConnectorError::Kafka(error.to_string()))?;
            }
        }
        consumer
            .assign(&assignment)
            .map_err(|error| ConnectorError::Kafka(error.to_string()))?;
        let wants_headers = definition
            .include
            .iter()
            .any(|include| include.kind == IncludeKind::Headers);
        let mut queue = if wants_headers {
            None
        } else {
            ConsumerQueue::new(&consumer)
        };
        let decoder = SourceDecoder::new(
            definition.format.clone(),
            Arc::clone(&definition.payload_schema),
            definition.include.clone(),
            Arc::clone(&self.schema),
            false,
        );
        let mut pending = PendingMessages::default();
        let mut batches = Vec::new();
        let mut last_message = Instant::now();
        let mut last_problem = None;
        while !remaining.is_empty() {
            let taken = match queue.as_mut() {
                Some(queue) => queue.take(MESSAGES_PER_CALL, WAIT, |taken| match taken {
                    Ok(message) => keep(message, &mut remaining, &mut pending),
                    Err(event) if event.end_of_partition => {
                        remaining.remove(&event.partition);
                    }
                    Err(event) => last_problem = Some(event.reason),
                }),
                None => match consumer.poll(WAIT) {
                    Some(Ok(message)) => {
                        keep(
                            super::source::borrowed_message(&message, wants_headers),
                            &mut remaining,
                            &mut pending,
                        );
                        1
                    }
                    Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                        remaining.remove(&partition);
                        1
                    }
                    Some(Err(error)) => {
                        last_problem = Some(error.to_string());
                        1
                    }
                    None => 0,
                },
            };
            if taken > 0 {
                last_message = Instant::now();
            } else if last_message.elapsed() > STALL_TIMEOUT {
                return Err(ConnectorError::Kafka(format!(
                    "cannot read source \"{}\" back from topic \"{}\": nothing arrived for {} s{}",
                    self.name,
                    definition.topic,
                    STALL_TIMEOUT.as_secs(),
                    last_problem
                        .map(|problem| format!(" ({problem})"))
                        .unwrap_or_default()
                )));
            }
            if pending.len() >= CHUNK_MESSAGES {
                self.decode(&decoder, &std::mem::take(&mut pending), &mut batches)?;
            }
        }
        self.decode(&decoder, &pending, &mut batches)?;
        Ok(batches)
    }

    fn decode(
        &self,
        decoder: &SourceDecoder,
        messages: &PendingMessages,
        batches: &mut Vec<RecordBatch>,
    ) -> Result<(), ConnectorError> {
        if messages.is_empty() {
            return Ok(());
        }
        let failed = |error: datafusion::arrow::error::ArrowError| {
            ConnectorError::Kafka(format!(
                "cannot decode source \"{}\" read back from Kafka: {error}",
                self.name
            ))
        };
        for decoded in decode_in_slices(decoder, messages).map_err(failed)? {
            let rows = decoder
                .with_includes(decoded.payload.columns().to_vec(), messages, &decoded.kept)
                .map_err(failed)?;
            if rows.num_rows() > 0 {
                batches.push(rows);
            }
        }
        Ok(())
    }
}

/// Keeps a message that falls inside its partition's range; a partition is done once its
/// range's last offset (or anything beyond it) has been seen.
fn keep(
    message: super::decode::Message<'_>,
    remaining: &mut HashMap<i32, i64>,
    pending: &mut PendingMessages,
) {
    let (partition, offset) = (message.partition, message.offset);
    let Some(&end) = remaining.get(&partition) else {
        return;
    };
    if offset < end {
        pending.push(message);
    }
    if offset >= end - 1 {
        remaining.remove(&partition);
    }
}
