//! What a running connector reports about itself: progress per partition, recent errors, and
//! its control channel. Shared between the connector's thread (the only writer), the coordinator
//! (which stops it) and sessions (which read `tributary.source_progress` and send FLUSH).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};

pub use crate::error::lock;

use tokio::sync::oneshot;

use crate::error::Result;

/// How many malformed messages a source keeps for `tributary.source_errors`; older ones are
/// dropped (and still counted per partition in `tributary.source_progress`).
pub const KEPT_ERRORS: usize = 10_000;
/// The longest payload prefix kept with a malformed message.
pub const KEPT_PAYLOAD_BYTES: usize = 1024;

/// A request to a running source, or a reason for its sleeping thread to look again.
pub enum SourceControl {
    /// Answer once everything the topic held when this arrived is ingested and every view
    /// reflects it.
    Flush(oneshot::Sender<Result<()>>),
    /// librdkafka's queue of fetched messages is no longer empty (sent by its callback).
    MessagesArrived,
    /// The source was stopped ([`SourceStatus::stop`]).
    Stop,
}

#[derive(Debug, Clone, Default)]
pub struct PartitionProgress {
    pub partition: i32,
    /// The next offset the source will ingest.
    pub offset: i64,
    /// The partition's high watermark when last asked (-1 before the first answer).
    pub high_watermark: i64,
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
}

/// A malformed message, kept with where it came from and why it was refused.
#[derive(Debug, Clone)]
pub struct SourceErrorRecord {
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
    /// The payload's first [`KEPT_PAYLOAD_BYTES`] bytes, lossily as text.
    pub payload: String,
}

/// A source's shared state. Each lock is held only to copy or update a few fields; the source
/// thread never holds one across a Kafka call.
#[derive(Debug)]
pub struct SourceStatus {
    pub name: String,
    pub topic: String,
    /// "running", or the last connection problem while the broker is away.
    pub state: Mutex<String>,
    pub partitions: Mutex<Vec<PartitionProgress>>,
    pub errors: Mutex<VecDeque<SourceErrorRecord>>,
    /// Whether `state` shows a connection problem; cleared (cheaply) by the next message.
    degraded: AtomicBool,
    /// Set by the coordinator when the source is dropped or the server stops; the thread checks
    /// it on every tick and ends.
    stop: AtomicBool,
    /// To the source thread, which holds the receiving end for its whole life.
    control: Mutex<Option<mpsc::Sender<SourceControl>>>,
}

impl SourceStatus {
    /// `partitions`: each partition and the offset it starts at (0 where not yet known).
    pub fn new(name: String, topic: String, partitions: &[(i32, i64)]) -> Self {
        Self {
            name,
            topic,
            state: Mutex::new("starting".into()),
            partitions: Mutex::new(
                partitions
                    .iter()
                    .map(|&(partition, offset)| PartitionProgress {
                        partition,
                        offset,
                        high_watermark: -1,
                        ..Default::default()
                    })
                    .collect(),
            ),
            errors: Mutex::new(VecDeque::new()),
            degraded: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            control: Mutex::new(None),
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the thread if it sleeps; one that has ended needs nothing.
        let _ = self.send(SourceControl::Stop);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub fn set_control(&self, sender: mpsc::Sender<SourceControl>) {
        *lock(&self.control) = Some(sender);
    }

    /// Sends a request to the source thread; false if the thread has ended.
    pub fn send(&self, request: SourceControl) -> bool {
        match lock(&self.control).as_ref() {
            Some(sender) => sender.send(request).is_ok(),
            None => false,
        }
    }

    pub fn set_state(&self, state: impl Into<String>) {
        *lock(&self.state) = state.into();
    }

    /// Shows a connection problem until [`SourceStatus::set_running`].
    pub fn set_degraded(&self, state: impl Into<String>) {
        self.degraded.store(true, Ordering::Release);
        self.set_state(state);
    }

    /// Messages flow: called for every message, so it only takes the lock after a problem.
    pub fn set_running(&self) {
        // A plain load first: the write (and its cache-line traffic) only after a problem.
        if self.degraded.load(Ordering::Acquire) && self.degraded.swap(false, Ordering::AcqRel) {
            self.set_state("running");
        }
    }

    pub fn record_error(&self, record: SourceErrorRecord) {
        let mut errors = lock(&self.errors);
        if errors.len() >= KEPT_ERRORS {
            errors.pop_front();
        }
        errors.push_back(record);
    }
}

/// A sink's shared state, written by its thread.
#[derive(Debug)]
pub struct SinkStatus {
    pub name: String,
    pub topic: String,
    pub messages: AtomicU64,
    pub errors: AtomicU64,
    /// The last epoch whose changes were handed to the producer.
    pub epoch: AtomicU64,
    /// Epochs sent to the sink and not yet handed to the producer: how far it lags.
    pub queued_epochs: AtomicU64,
    /// For an exactly-once sink: the last epoch whose output Kafka committed. The coordinator
    /// stops keeping output up to here.
    pub committed_epoch: AtomicU64,
    pub state: Mutex<String>,
}

impl SinkStatus {
    /// `count` epochs left the sink's queue (written, or found already committed). Never below
    /// zero, whatever a restart did to the count.
    pub fn dequeued_epochs(&self, count: usize) {
        let _ = self.queued_epochs.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |queued| Some(queued.saturating_sub(count as u64)),
        );
    }

    pub fn new(name: String, topic: String) -> Self {
        Self {
            name,
            topic,
            messages: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            queued_epochs: AtomicU64::new(0),
            committed_epoch: AtomicU64::new(0),
            state: Mutex::new("starting".into()),
        }
    }

    pub fn set_state(&self, state: impl Into<String>) {
        *lock(&self.state) = state.into();
    }
}

/// The running connectors, published with every snapshot so that system relations and FLUSH
/// find them. Replaced (not changed) when a connector is created or dropped.
#[derive(Debug, Clone, Default)]
pub struct ConnectorStatuses {
    pub sources:
        std::collections::BTreeMap<crate::catalog::RelationId, std::sync::Arc<SourceStatus>>,
    pub sinks: std::collections::BTreeMap<crate::catalog::RelationId, std::sync::Arc<SinkStatus>>,
}
