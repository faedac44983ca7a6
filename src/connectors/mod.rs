//! Connectors to the outside world: Kafka sources that feed change batches into the coordinator,
//! and Kafka sinks that write a view's changes out, once per epoch.
//!
//! A statement validates a connector against the broker first ([`kafka`]), so a bad broker or
//! topic fails the CREATE; the coordinator then starts it ([`source::start`], [`sink::start`]) and
//! owns its handle, which stops it when dropped. Each connector runs on a thread of its own:
//! librdkafka's calls block, and a busy source must not slow the sessions' runtime.

pub mod backfill;
pub mod consumer_queue;
pub mod dead_letters;
pub mod decode;
pub mod envelope;
pub mod kafka;
pub mod nexmark;
pub mod sink;
pub mod source;
pub mod status;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;

use crate::sql::streaming::{Envelope, Format, Include};
pub use status::{SinkStatus, SourceStatus};

/// Where a connector finds its broker: the resolved `BROKER` (or the `CONNECTION`'s) and the
/// librdkafka properties passed through.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaEndpoint {
    pub broker: String,
    pub properties: Vec<(String, String)>,
    /// Properties whose values are secrets, resolved from the server's secret store.
    pub secrets: Vec<(String, crate::storage::secrets::SecretValue)>,
}

/// A source ready to start: checked against the broker, start offsets resolved per partition.
#[derive(Debug)]
pub struct SourceDefinition {
    pub endpoint: KafkaEndpoint,
    pub topic: String,
    /// The offset each partition starts at, by partition number.
    pub start_offsets: Vec<(i32, rdkafka::Offset)>,
    pub format: Format,
    pub envelope: Envelope,
    /// The columns the payload decodes into; the relation's schema is these plus `include`.
    pub payload_schema: SchemaRef,
    pub include: Vec<Include>,
    pub errors_topic: Option<String>,
}

impl SourceDefinition {
    /// The start offsets in librdkafka's raw form (-2 is the beginning), as logs and
    /// checkpoints store them.
    pub fn raw_start_offsets(&self) -> Vec<(i32, i64)> {
        self.start_offsets
            .iter()
            .map(|(partition, offset)| (*partition, offset.to_raw().unwrap_or(-2)))
            .collect()
    }
}

/// A sink ready to start: its view, topic and encoding.
#[derive(Debug)]
pub struct SinkDefinition {
    pub endpoint: KafkaEndpoint,
    pub topic: String,
    /// Indexes of the KEY columns in the view's schema.
    pub key: Vec<usize>,
    pub envelope: Envelope,
    pub schema: SchemaRef,
}

/// What the catalog keeps of a connector, beside the relation's name and schema.
#[derive(Debug, Clone)]
pub enum ConnectorDefinition {
    Connection(KafkaEndpoint),
    Source(Arc<SourceDefinition>),
    Sink(Arc<SinkDefinition>),
}
