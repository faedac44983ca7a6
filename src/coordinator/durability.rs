//! The coordinator's durability: logging writes and catalog changes before they are
//! acknowledged, building checkpoints at epoch boundaries (written by a thread of their own),
//! and recovery's restore and replay.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::row::RowConverter;

use super::Engine;
use crate::catalog::{RelationId, RelationKind};
use crate::connectors::ConnectorDefinition;
use crate::connectors::envelope::KeyedRows;
use crate::connectors::sink::SinkBatch;
use crate::dataflow::change_batch::{encode_rows, row_converter_for, with_schema};
use crate::dataflow::{ChangeBatch, Epoch};
use crate::error::{ExecutionError, Result, StorageError};
use crate::storage::checkpoint::{
    self, Checkpoint, CheckpointImage, CheckpointReport, CheckpointReports, StoredRows,
};
use crate::storage::codec::{DecodeError, Decoder, Encoder};
use crate::storage::directory::DataDirectory;
use crate::storage::wal::{self, LogRecord, LoggedRecord, RelationRecord, WriteAheadLog};
use crate::storage::{Arrangement, TableData};

/// How long input must pause before exactly-once sinks' waiting output gets a checkpoint of
/// its own instead of waiting for the next interval: sources that have caught up send nothing
/// for longer than their 10 ms tick.
const QUIET_BEFORE_EARLY_CHECKPOINT: Duration = Duration::from_millis(20);
/// An early checkpoint is taken only once the time since the last one is this many times what
/// capturing the last one cost, so early ones pause epochs at most 1/20 of the time. (Writing
/// runs beside the epochs on the writer thread, one checkpoint at a time.)
const EARLY_CHECKPOINT_COST_FACTOR: u32 = 20;
/// Nor sooner than this after the last one: each checkpoint also starts a log segment.
const EARLY_CHECKPOINT_SPACING: Duration = Duration::from_millis(100);

/// Where recovery stands. Connectors wait until it is over, and nothing is logged meanwhile:
/// what recovery applies is already on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recovery {
    /// An in-memory server, or recovery is over.
    Off,
    /// Relations from the checkpoint's catalog are being created again, still empty.
    RecreatingCatalog,
    /// The checkpoint is loaded; the log after it is being applied.
    ReplayingLog,
}

/// The coordinator's hold on the data directory.
pub struct Durability {
    directory: DataDirectory,
    pub(super) interval: Duration,
    pub(super) reports: Arc<CheckpointReports>,
    /// The segment being appended to; opened when recovery is over.
    log: Option<WriteAheadLog>,
    writer: Option<CheckpointWriter>,
    /// The epoch of the newest checkpoint handed to the writer.
    last_checkpoint: Epoch,
    /// When the newest checkpoint was built (and handed to the writer, or failed to build);
    /// `None` before the first. Early checkpoints keep their distance from it.
    last_built: Option<Instant>,
}

/// The checkpoint writer thread and the way to it.
struct CheckpointWriter {
    /// Holds at most one image; the writer thread holds the receiver.
    images: std::sync::mpsc::SyncSender<CheckpointImage>,
    /// True from when the coordinator hands over an image until the writer has finished it.
    /// While it is, ticks are skipped (before any state is encoded), so a slow disk delays
    /// checkpoints instead of queueing them.
    busy: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Durability {
    /// Checkpoints every `interval` into `directory` (opened and locked by the caller).
    pub fn new(directory: DataDirectory, interval: Duration) -> std::io::Result<Self> {
        let reports = Arc::new(CheckpointReports::default());
        let (images, received) = std::sync::mpsc::sync_channel::<CheckpointImage>(1);
        let checkpoints = directory.checkpoint_directory();
        let logs = directory.log_directory();
        let thread_reports = Arc::clone(&reports);
        let busy = Arc::new(AtomicBool::new(false));
        let thread_busy = Arc::clone(&busy);
        let thread = std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(move || {
                for image in received {
                    let _done = ClearOnDrop(&thread_busy);
                    match checkpoint::write(&checkpoints, &image) {
                        Ok((written, oldest_kept)) => {
                            tracing::debug!(
                                epoch = written.epoch,
                                bytes = written.bytes,
                                milliseconds = written.duration.as_millis() as u64,
                                "checkpoint written"
                            );
                            // The log is needed only after the oldest checkpoint kept.
                            if let Err(error) = wal::remove_through(&logs, oldest_kept) {
                                tracing::warn!(%error, "cannot remove old log segments");
                            }
                            thread_reports.push(CheckpointReport {
                                epoch: written.epoch,
                                finished_at: SystemTime::now(),
                                duration: written.duration,
                                capture: image.capture,
                                bytes: written.bytes,
                                error: None,
                            });
                        }
                        Err(error) => thread_reports.failed(image.epoch, &error),
                    }
                }
            })?;
        Ok(Self {
            directory,
            interval,
            reports,
            log: None,
            writer: Some(CheckpointWriter {
                images,
                busy,
                thread,
            }),
            last_checkpoint: 0,
            last_built: None,
        })
    }

    pub fn directory(&self) -> &DataDirectory {
        &self.directory
    }
}

impl Engine {
    /// Appends records to the log and syncs it. A no-op for an in-memory server and during
    /// recovery (what recovery applies is already logged).
    pub(super) fn log(&mut self, records: &[LoggedRecord]) -> Result<(), StorageError> {
        if records.is_empty() {
            return Ok(());
        }
        match self
            .durability
            .as_mut()
            .and_then(|durability| durability.log.as_mut())
        {
            Some(log) => log.append(records),
            None => Ok(()),
        }
    }

    /// When to checkpoint ahead of the interval: exactly-once sinks commit an epoch's output
    /// only once a checkpoint holds it, so when input pauses with output waiting, a checkpoint
    /// then (not up to an interval later) is what lets a sink's topic catch up with its view.
    /// Due `QUIET_BEFORE_EARLY_CHECKPOINT` from now (the loop asks again after every command,
    /// so steady input keeps moving it), and not before the last checkpoint's cost is paid
    /// back. `None` while no sink waits, without durability and during recovery.
    pub(super) fn early_checkpoint_due(&self) -> Option<Instant> {
        let durability = self.durability.as_ref()?;
        if self.recovery != Recovery::Off {
            return None;
        }
        let sinks_wait = self.sink_outputs.values().any(|outputs| {
            outputs
                .last()
                .is_some_and(|batch| batch.epoch > durability.last_checkpoint)
        });
        if !sinks_wait {
            return None;
        }
        let quiet = Instant::now() + QUIET_BEFORE_EARLY_CHECKPOINT;
        let writer_busy = durability
            .writer
            .as_ref()
            .is_some_and(|writer| writer.busy.load(Ordering::Acquire));
        if writer_busy {
            // The checkpoint being written may already hold the output; ask again shortly.
            return Some(quiet);
        }
        let Some(last) = durability.last_built else {
            return Some(quiet);
        };
        let cost = durability
            .reports
            .latest()
            .map(|report| report.capture)
            .unwrap_or_default();
        let paid_back = last + (cost * EARLY_CHECKPOINT_COST_FACTOR).max(EARLY_CHECKPOINT_SPACING);
        Some(quiet.max(paid_back))
    }

    /// Takes a checkpoint of the current epoch if anything changed since the last one. A
    /// `final_one` waits until it is on disk and stops the writer (at shutdown).
    pub(super) fn checkpoint(&mut self, final_one: bool) {
        if self.recovery != Recovery::Off {
            return;
        }
        let Some(durability) = &self.durability else {
            return;
        };
        let writer_busy = durability
            .writer
            .as_ref()
            .is_none_or(|writer| writer.busy.load(Ordering::Acquire));
        if writer_busy && !final_one {
            return;
        }
        let changed = durability.last_checkpoint != self.epoch;
        // Output Kafka has committed is no longer anyone's to keep.
        for (id, outputs) in self.sink_outputs.iter_mut() {
            if let Some(sink) = self.sinks.get(id) {
                let committed = sink.status.committed_epoch.load(Ordering::Acquire);
                outputs.retain(|batch| batch.epoch > committed);
            }
        }
        let image = if changed {
            match self.checkpoint_image() {
                Ok(image) => Some(image),
                Err(error) => {
                    let error = StorageError::Io {
                        action: "build",
                        path: format!("checkpoint {}", self.epoch),
                        reason: error.to_string(),
                    };
                    durability.reports.failed(self.epoch, &error);
                    None
                }
            }
        } else {
            None
        };
        let epoch = self.epoch;
        let Some(durability) = self.durability.as_mut() else {
            return;
        };
        if changed {
            durability.last_built = Some(Instant::now());
        }
        if final_one {
            let Some(writer) = durability.writer.take() else {
                return;
            };
            if let Some(image) = image {
                let _ = writer.images.send(image);
            }
            drop(writer.images);
            if writer.thread.join().is_err() {
                tracing::error!("the checkpoint writer panicked");
            }
            return;
        }
        let (Some(image), Some(writer)) = (image, durability.writer.as_ref()) else {
            return;
        };
        writer.busy.store(true, Ordering::Release);
        match writer.images.try_send(image) {
            Ok(()) => {
                durability.last_checkpoint = epoch;
                // Later records go to a segment of their own, which outlives this checkpoint's
                // predecessors.
                if let Some(log) = durability.log.as_mut()
                    && let Err(error) = log.rotate(epoch + 1)
                {
                    tracing::warn!(%error, "cannot start a new log segment; appending to the old one");
                }
            }
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                // Cannot happen while `busy` is honoured; the next tick tries again.
                tracing::debug!(epoch, "previous checkpoint still being written; skipping");
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                writer.busy.store(false, Ordering::Release);
                tracing::error!("the checkpoint writer stopped");
            }
        }
    }

    /// Everything a checkpoint of the current epoch holds. Rows are shared, not copied; operator
    /// states are encoded here, at the epoch boundary.
    fn checkpoint_image(&self) -> Result<CheckpointImage> {
        let started = std::time::Instant::now();
        let mut relations: Vec<RelationRecord> = self
            .catalog
            .relations()
            .map(|relation| RelationRecord {
                id: relation.id,
                sql: relation.sql.clone(),
                start_offsets: match &relation.connector {
                    Some(ConnectorDefinition::Source(definition)) => definition.raw_start_offsets(),
                    _ => Vec::new(),
                },
                plan: relation.plan.as_deref().map(str::to_string),
            })
            .collect();
        relations.sort_by_key(|relation| relation.id);
        let mut rows = Vec::new();
        for (&id, table) in &self.tables {
            rows.push((id, StoredRows::Table(table.snapshot())));
        }
        for (&id, source) in &self.keyed_sources {
            rows.push((id, StoredRows::Arrangement(source.snapshot())));
        }
        let mut states = Vec::new();
        for (&id, view) in &self.views {
            // A failed view keeps neither: it comes back failed.
            if view.failed.is_none() {
                rows.push((id, StoredRows::Arrangement(view.contents())));
                states.push((id, view.dataflow.checkpoint()?));
            }
        }
        let keyed_rows = self
            .keyed_rows
            .iter()
            .map(|(&id, rows)| {
                let mut encoder = Encoder::default();
                encoder.u64(rows.len() as u64);
                for (key, row) in rows {
                    encoder.bytes(key).bytes(row);
                }
                (id, encoder.finish())
            })
            .collect();
        let mut sink_outputs = Vec::with_capacity(self.sink_outputs.len());
        for (&id, outputs) in &self.sink_outputs {
            let mut encoder = Encoder::default();
            encoder.u64(outputs.len() as u64);
            for batch in outputs {
                encoder
                    .u64(batch.epoch)
                    .bytes(&wal::encode_changes(&batch.changes).map_err(StorageError::NotDurable)?);
            }
            sink_outputs.push((id, encoder.finish()));
        }
        Ok(CheckpointImage {
            capture: started.elapsed(),
            epoch: self.epoch,
            keyed_rows,
            sink_outputs,
            catalog_version: self.catalog_version,
            last_relation_id: self.catalog.last_id(),
            relations,
            rows,
            states,
            source_offsets: self
                .source_offsets
                .iter()
                .map(|(&id, offsets)| (id, sorted_offsets(offsets)))
                .collect(),
        })
    }

    /// Loads a checkpoint into the relations recovery recreated from its catalog, then starts
    /// the sinks, so the log's replayed changes reach them.
    pub(super) fn restore(&mut self, checkpoint: Option<Checkpoint>) -> Result<()> {
        if self.recovery != Recovery::RecreatingCatalog {
            return Err(ExecutionError::Internal("restore outside recovery".into()).into());
        }
        let mut recovered_outputs: HashMap<RelationId, Vec<SinkBatch>> = HashMap::new();
        if let Some(checkpoint) = checkpoint {
            // Everything up to the checkpoint is durable: sinks may commit it.
            if let Some(durability) = &self.durability {
                durability.reports.mark_durable(checkpoint.epoch);
            }
            for (id, bytes) in &checkpoint.sink_outputs {
                let outputs =
                    decode_sink_outputs(bytes).map_err(|reason| StorageError::Corrupted {
                        path: format!("checkpoint {} output of sink {id}", checkpoint.epoch),
                        reason,
                    })?;
                recovered_outputs.insert(*id, outputs);
            }
            Arc::make_mut(&mut self.catalog).reserve_through(checkpoint.last_relation_id);
            self.epoch = self.epoch.max(checkpoint.epoch);
            self.catalog_version = self.catalog_version.max(checkpoint.catalog_version);
            let mut rows = checkpoint.rows;
            for (&id, table) in self.tables.iter_mut() {
                let schema = Arc::clone(table.schema());
                let mut restored = table.empty_like();
                let batches = rows.remove(&id).unwrap_or_default();
                restored.append(
                    batches
                        .iter()
                        .map(|batch| with_schema(batch, &schema))
                        .collect::<Result<_, _>>()?,
                )?;
                *table = restored;
            }
            for (&id, source) in self.keyed_sources.iter_mut() {
                *source = restored_arrangement(source, rows.remove(&id).unwrap_or_default())?;
            }
            for (&id, view) in self.views.iter_mut() {
                match (rows.remove(&id), checkpoint.states.get(&id)) {
                    (Some(batches), Some(state)) => {
                        view.dataflow.restore_contents(&view.schema, batches)?;
                        view.dataflow.restore(state)?;
                    }
                    _ => {
                        view.failed = Some(ExecutionError::Internal(
                            "the view had failed before the server restarted".into(),
                        ));
                    }
                }
            }
            for (id, bytes) in &checkpoint.keyed_rows {
                if let Some(rows) = self.keyed_rows.get_mut(id) {
                    *rows = decode_keyed_rows(bytes).map_err(|reason| StorageError::Corrupted {
                        path: format!("checkpoint {} keys of relation {id}", checkpoint.epoch),
                        reason,
                    })?;
                }
            }
            for (id, offsets) in checkpoint.source_offsets {
                if let Some(current) = self.source_offsets.get_mut(&id) {
                    current.extend(offsets);
                }
            }
        }
        self.recovery = Recovery::ReplayingLog;
        let sinks: Vec<_> = self
            .catalog
            .relations()
            .filter(|relation| relation.kind == RelationKind::Sink)
            .cloned()
            .collect();
        for relation in sinks {
            let (Some(ConnectorDefinition::Sink(definition)), Some(&from)) =
                (&relation.connector, relation.depends_on.first())
            else {
                continue;
            };
            // What Kafka committed is in the topic; the rest of what the checkpoint holds is
            // written again.
            let recovered = recovered_outputs.remove(&relation.id).unwrap_or_default();
            if !recovered.is_empty() {
                self.sink_outputs.insert(relation.id, recovered.clone());
            }
            let handle =
                self.start_sink(relation.id, &relation.name, from, definition, recovered)?;
            self.register_sink(relation.id, handle);
        }
        self.publish();
        Ok(())
    }

    /// Applies a logged drop or table write again, as one epoch.
    pub(super) fn replay(&mut self, logged: LoggedRecord) -> Result<()> {
        if self.recovery != Recovery::ReplayingLog {
            return Err(ExecutionError::Internal("replay outside recovery".into()).into());
        }
        match logged.record {
            LogRecord::Create(_) => Err(ExecutionError::Internal(
                "a logged CREATE is replayed by planning its statement".into(),
            )
            .into()),
            LogRecord::Drop(ids) => {
                self.epoch = self.epoch.max(logged.epoch);
                let existing: Vec<RelationId> = ids
                    .into_iter()
                    .filter(|id| self.catalog.by_id(*id).is_some())
                    .collect();
                self.remove_relations(&existing);
                Ok(())
            }
            LogRecord::Redefine(redefinitions) => {
                self.epoch = self.epoch.max(logged.epoch);
                self.apply_redefinitions(&redefinitions)
            }
            LogRecord::Write { table, changes } => {
                self.epoch = self.epoch.max(logged.epoch.saturating_sub(1));
                let epoch = self.next_epoch();
                let Some(data) = self.tables.get_mut(&table) else {
                    return Ok(());
                };
                apply_changes(data, &changes)?;
                self.propagate(HashMap::from([(table, changes)]), epoch);
                self.publish();
                Ok(())
            }
        }
    }

    /// Ends recovery: the epoch moves past everything logged, the log opens a new segment, the
    /// sources start from their checkpointed offsets, and a checkpoint makes the replay final.
    /// Moves each serial column's sequence past the greatest value the recovered table holds.
    fn resume_sequences(&self) -> Result<()> {
        for (id, table) in &self.tables {
            let Some(relation) = self.catalog.by_id(*id) else {
                continue;
            };
            for (column, field) in relation.schema.fields().iter().enumerate() {
                let Some(sequence) = field.metadata().get(crate::catalog::SEQUENCE_KEY) else {
                    continue;
                };
                for chunk in table.chunks() {
                    let values = datafusion::arrow::compute::cast(
                        chunk.column(column),
                        &datafusion::arrow::datatypes::DataType::Int64,
                    )?;
                    let greatest = values
                        .as_any()
                        .downcast_ref::<datafusion::arrow::array::Int64Array>()
                        .and_then(datafusion::arrow::compute::max);
                    if let Some(greatest) = greatest {
                        self.sequences.advance_past(sequence, greatest);
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn finish_recovery(&mut self, last_logged_epoch: Epoch) -> Result<()> {
        if self.recovery == Recovery::Off {
            return Err(ExecutionError::Internal("recovery already finished".into()).into());
        }
        self.recovery = Recovery::Off;
        self.epoch = self.epoch.max(last_logged_epoch);
        self.resume_sequences()?;
        if let Some(durability) = self.durability.as_mut() {
            durability.log = Some(WriteAheadLog::open(
                &durability.directory.log_directory(),
                self.epoch + 1,
            )?);
        }
        let sources: Vec<_> = self
            .catalog
            .relations()
            .filter(|relation| relation.kind == RelationKind::Source)
            .cloned()
            .collect();
        for relation in sources {
            let Some(ConnectorDefinition::Source(definition)) = &relation.connector else {
                continue;
            };
            let offsets = self
                .source_offsets
                .get(&relation.id)
                .map(sorted_offsets)
                .unwrap_or_default();
            let stored = crate::catalog::without_constraints(&relation.schema);
            let (handle, status) = self.start_source(
                relation.id,
                &relation.name,
                definition,
                &stored,
                &offsets,
                self.keyed_rows.get(&relation.id),
            )?;
            self.register_source(relation.id, handle, status);
        }
        self.publish();
        // Forces a checkpoint even when the epoch did not move: the next start should not
        // replay this log again.
        if let Some(durability) = self.durability.as_mut() {
            durability.last_checkpoint = Epoch::MAX;
        }
        self.checkpoint(false);
        Ok(())
    }
}

/// A source's offsets by partition, as a list in partition order.
fn sorted_offsets(offsets: &HashMap<i32, i64>) -> Vec<(i32, i64)> {
    let mut sorted: Vec<(i32, i64)> = offsets.iter().map(|(&p, &o)| (p, o)).collect();
    sorted.sort();
    sorted
}

fn decode_sink_outputs(bytes: &[u8]) -> Result<Vec<SinkBatch>, DecodeError> {
    let mut decoder = Decoder::new(bytes);
    let count = decoder.count()?;
    (0..count)
        .map(|_| {
            let epoch = decoder.u64()?;
            let changes = wal::decode_changes(decoder.bytes()?)?;
            Ok(SinkBatch { epoch, changes })
        })
        .collect()
}

fn decode_keyed_rows(bytes: &[u8]) -> Result<KeyedRows, DecodeError> {
    let mut decoder = Decoder::new(bytes);
    let count = decoder.count()?;
    let mut rows = KeyedRows::with_capacity(count);
    for _ in 0..count {
        let key: Box<[u8]> = decoder.bytes()?.into();
        rows.insert(key, decoder.bytes()?.into());
    }
    Ok(rows)
}

/// Clears the writer's busy flag however writing a checkpoint ends.
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A new arrangement like `like`, holding `batches`.
fn restored_arrangement(like: &Arrangement, batches: Vec<RecordBatch>) -> Result<Arrangement> {
    let mut arrangement = Arrangement::new(Arc::clone(like.schema()))?;
    let changes: Vec<ChangeBatch> = batches.into_iter().map(ChangeBatch::insertions).collect();
    arrangement.apply(&changes)?;
    Ok(arrangement)
}

/// Applies logged changes to a table: insertions are appended, deletions remove that many
/// copies of each row.
fn apply_changes(table: &mut TableData, changes: &[ChangeBatch]) -> Result<()> {
    let schema = Arc::clone(table.schema());
    let converter: RowConverter = row_converter_for(&schema)?;
    let mut doomed: HashMap<Box<[u8]>, i64> = HashMap::new();
    let mut insertions = Vec::new();
    for change in changes {
        let rows = with_schema(&change.rows, &schema)?;
        let keys = encode_rows(&converter, &rows)?;
        let mut inserted = Vec::new();
        for (row, weight) in change.weights.values().iter().enumerate() {
            if *weight < 0 {
                *doomed.entry(keys.row(row).as_ref().into()).or_default() -= weight;
            } else {
                for _ in 0..*weight {
                    inserted.push(row as u32);
                }
            }
        }
        if !inserted.is_empty() {
            let indexes = datafusion::arrow::array::UInt32Array::from(inserted);
            insertions.push(datafusion::arrow::compute::take_record_batch(
                &rows, &indexes,
            )?);
        }
    }
    if !doomed.is_empty() {
        table.remove_where(|chunk| {
            let keys = encode_rows(&converter, chunk)?;
            Ok(BooleanArray::from(
                keys.iter()
                    .map(|key| match doomed.get_mut(key.as_ref()) {
                        Some(count) if *count > 0 => {
                            *count -= 1;
                            true
                        }
                        _ => false,
                    })
                    .collect::<Vec<_>>(),
            ))
        })?;
    }
    table.append(insertions)?;
    Ok(())
}
