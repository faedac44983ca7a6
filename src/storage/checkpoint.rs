//! Checkpoints: the catalog, every relation's rows, every operator's state and every source's
//! offsets, all of one epoch, written crash-safely.
//!
//! A checkpoint is a directory `checkpoints/<epoch>`. It is built under a temporary name: data
//! files first (each synced), then `MANIFEST` (every file's length and CRC-32, and its own
//! checksum), then the directory is synced and renamed into place and its parent synced. A
//! directory with a valid manifest whose files all match is complete; anything else is ignored,
//! and loading falls back to the next older checkpoint with a warning.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use datafusion::arrow::array::RecordBatch;

use super::Epoch;
use super::codec::{self, DecodeError, Decoder, Encoder};
use super::directory::{
    FORMAT_VERSION, io_error, numbered_entries, numbered_name, sync_directory, write_file_durably,
};
use super::wal::{RelationRecord, decode_relation, encode_relation};
use super::{ArrangementSnapshot, TableData};
use crate::catalog::RelationId;
use crate::error::{StorageError, lock};

/// How many checkpoint reports `tributary.checkpoints` shows.
const REPORTS_KEPT: usize = 20;

/// How many complete checkpoints stay on disk: the newest, and one to fall back to.
pub const CHECKPOINTS_KEPT: usize = 2;

const MANIFEST: &str = "MANIFEST";
const MANIFEST_MAGIC: &[u8; 8] = b"TRIBCKPT";
const CATALOG: &str = "catalog";

/// One checkpoint attempt, for `tributary.checkpoints` and the logs.
#[derive(Debug, Clone)]
pub struct CheckpointReport {
    pub epoch: Epoch,
    pub finished_at: SystemTime,
    pub duration: Duration,
    /// The part of `duration` the coordinator spent capturing it (its epochs paused meanwhile).
    pub capture: Duration,
    pub bytes: u64,
    /// Why it failed; the previous checkpoint and the log still hold everything.
    pub error: Option<String>,
}

/// Recent checkpoint reports, newest last. Written by the checkpoint writer thread (and the
/// coordinator, for failures before a checkpoint reaches it); read by system relations. The lock
/// is held only to push or copy.
#[derive(Debug, Default)]
pub struct CheckpointReports {
    reports: Mutex<VecDeque<CheckpointReport>>,
    /// The newest epoch whose checkpoint is complete on disk.
    durable_epoch: AtomicU64,
}

impl CheckpointReports {
    pub fn recent(&self) -> Vec<CheckpointReport> {
        lock(&self.reports).iter().cloned().collect()
    }

    /// The newest report, if any.
    pub fn latest(&self) -> Option<CheckpointReport> {
        lock(&self.reports).back().cloned()
    }

    pub fn durable_epoch(&self) -> Epoch {
        self.durable_epoch.load(Ordering::Acquire)
    }

    /// Epochs up to `epoch` are in a complete checkpoint.
    pub(crate) fn mark_durable(&self, epoch: Epoch) {
        self.durable_epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    pub(crate) fn push(&self, report: CheckpointReport) {
        if report.error.is_none() {
            self.mark_durable(report.epoch);
        }
        let mut reports = lock(&self.reports);
        reports.push_back(report);
        while reports.len() > REPORTS_KEPT {
            reports.pop_front();
        }
    }

    pub(crate) fn failed(&self, epoch: Epoch, error: &StorageError) {
        tracing::error!(epoch, %error, "checkpoint failed; the log still holds every write");
        self.push(CheckpointReport {
            epoch,
            finished_at: SystemTime::now(),
            duration: Duration::ZERO,
            capture: Duration::ZERO,
            bytes: 0,
            error: Some(error.to_string()),
        });
    }
}

/// A relation's rows as the coordinator holds them; turned into Arrow batches by the writer,
/// off the coordinator's thread.
pub enum StoredRows {
    Table(TableData),
    Arrangement(ArrangementSnapshot),
}

/// What one checkpoint holds. Built by the coordinator at the end of an epoch: rows are shared
/// `Arc`s (no copies), operator states already encoded.
pub struct CheckpointImage {
    pub epoch: Epoch,
    /// How long the coordinator took to capture it (encoding operator states): how long the
    /// epoch loop paused for it.
    pub capture: Duration,
    pub catalog_version: u64,
    /// The highest relation id ever given, dropped relations included.
    pub last_relation_id: RelationId,
    /// Every live relation, in id order (which is dependency order).
    pub relations: Vec<RelationRecord>,
    pub rows: Vec<(RelationId, StoredRows)>,
    /// Encoded operator states of each materialized view's dataflow.
    pub states: Vec<(RelationId, Vec<u8>)>,
    /// Per source, the next offset to read in each partition.
    pub source_offsets: Vec<(RelationId, Vec<(i32, i64)>)>,
    /// Per UPSERT or DEBEZIUM source, each key's row, encoded.
    pub keyed_rows: Vec<(RelationId, Vec<u8>)>,
    /// Per exactly-once sink, the output Kafka had not committed, encoded.
    pub sink_outputs: Vec<(RelationId, Vec<u8>)>,
}

/// A checkpoint read back from disk.
#[derive(Debug)]
pub struct Checkpoint {
    pub epoch: Epoch,
    pub catalog_version: u64,
    pub last_relation_id: RelationId,
    pub relations: Vec<RelationRecord>,
    pub rows: HashMap<RelationId, Vec<RecordBatch>>,
    pub states: HashMap<RelationId, Vec<u8>>,
    pub source_offsets: HashMap<RelationId, Vec<(i32, i64)>>,
    pub keyed_rows: HashMap<RelationId, Vec<u8>>,
    pub sink_outputs: HashMap<RelationId, Vec<u8>>,
}

/// What writing one checkpoint took.
#[derive(Debug, Clone)]
pub struct WrittenCheckpoint {
    pub epoch: Epoch,
    pub bytes: u64,
    /// From capture to the renamed directory synced: the capture plus the writing.
    pub duration: Duration,
}

/// Writes `image` under `directory` and removes checkpoints beyond the newest
/// [`CHECKPOINTS_KEPT`]. Returns the oldest checkpoint epoch still kept, with what was written.
pub fn write(
    directory: &Path,
    image: &CheckpointImage,
) -> Result<(WrittenCheckpoint, Epoch), StorageError> {
    let started = Instant::now();
    let final_path = directory.join(numbered_name(image.epoch, ""));
    let temporary = directory.join(format!("tmp-{}", numbered_name(image.epoch, "")));
    if temporary.exists() {
        std::fs::remove_dir_all(&temporary)
            .map_err(|error| io_error("remove", &temporary, &error))?;
    }
    super::directory::create_private_directory(&temporary)?;
    // Each file is written (and synced) as soon as it is encoded, so at most one relation's
    // encoded rows are in memory at a time; the manifest collects lengths and checksums.
    let mut entries: Vec<(String, u64, u32)> = Vec::new();
    let mut write_entry = |name: String, contents: &[u8]| -> Result<(), StorageError> {
        write_file_durably(&temporary.join(&name), contents)?;
        entries.push((name, contents.len() as u64, codec::crc32(contents)));
        Ok(())
    };
    write_entry(CATALOG.to_string(), &encode_catalog(image))?;
    for (id, rows) in &image.rows {
        let encode_error = |reason: String| StorageError::Io {
            action: "encode",
            path: format!("rows of relation {id}"),
            reason,
        };
        let (schema, batches) = match rows {
            StoredRows::Table(table) => (table.schema().clone(), table.to_batches()),
            StoredRows::Arrangement(arrangement) => (
                arrangement.schema().clone(),
                arrangement
                    .to_batches()
                    .map_err(|error| encode_error(error.to_string()))?,
            ),
        };
        let bytes = codec::encode_batches(&schema, &batches).map_err(encode_error)?;
        write_entry(format!("rows-{id}"), &bytes)?;
    }
    let encoded = [
        ("state", &image.states),
        ("keys", &image.keyed_rows),
        ("sink", &image.sink_outputs),
    ];
    for (prefix, files) in encoded {
        for (id, bytes) in files {
            write_entry(format!("{prefix}-{id}"), bytes)?;
        }
    }
    let mut manifest = Encoder::default();
    manifest
        .u64(u64::from(FORMAT_VERSION))
        .u64(image.epoch)
        .u64(entries.len() as u64);
    let mut bytes = 0u64;
    for (name, length, checksum) in &entries {
        manifest.string(name).u64(*length).u64(u64::from(*checksum));
        bytes += length;
    }
    let body = manifest.finish();
    let mut manifest_bytes = MANIFEST_MAGIC.to_vec();
    manifest_bytes.extend_from_slice(&codec::crc32(&body).to_le_bytes());
    manifest_bytes.extend_from_slice(&body);
    write_file_durably(&temporary.join(MANIFEST), &manifest_bytes)?;
    sync_directory(&temporary)?;
    if final_path.exists() {
        std::fs::remove_dir_all(&final_path)
            .map_err(|error| io_error("remove", &final_path, &error))?;
    }
    std::fs::rename(&temporary, &final_path)
        .map_err(|error| io_error("rename", &temporary, &error))?;
    sync_directory(directory)?;
    let oldest_kept = prune(directory)?;
    Ok((
        WrittenCheckpoint {
            epoch: image.epoch,
            bytes: bytes + manifest_bytes.len() as u64,
            duration: image.capture + started.elapsed(),
        },
        oldest_kept,
    ))
}

/// Removes all but the newest [`CHECKPOINTS_KEPT`] checkpoints and any unfinished ones; returns
/// the oldest epoch kept.
fn prune(directory: &Path) -> Result<Epoch, StorageError> {
    let checkpoints = numbered_entries(directory, "")?;
    let keep_from = checkpoints.len().saturating_sub(CHECKPOINTS_KEPT);
    for (_, path) in &checkpoints[..keep_from] {
        std::fs::remove_dir_all(path).map_err(|error| io_error("remove", path, &error))?;
    }
    for entry in
        std::fs::read_dir(directory).map_err(|error| io_error("read", directory, &error))?
    {
        let entry = entry.map_err(|error| io_error("read", directory, &error))?;
        if entry.file_name().to_string_lossy().starts_with("tmp-") {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(|error| io_error("remove", &path, &error))?;
        }
    }
    sync_directory(directory)?;
    Ok(checkpoints
        .get(keep_from)
        .map(|(epoch, _)| *epoch)
        .unwrap_or(0))
}

/// The newest complete checkpoint, falling back past corrupted ones (each logged). `None` when
/// there is none at all; an error when checkpoints exist but none can be read, since starting
/// empty would silently lose everything.
pub fn load_newest(directory: &Path) -> Result<Option<Checkpoint>, StorageError> {
    let checkpoints = numbered_entries(directory, "")?;
    let mut last_error = None;
    for (epoch, path) in checkpoints.iter().rev() {
        match load(path) {
            Ok(checkpoint) if checkpoint.epoch == *epoch => return Ok(Some(checkpoint)),
            Ok(checkpoint) => {
                let error = StorageError::Corrupted {
                    path: path.display().to_string(),
                    reason: format!("holds epoch {} under another name", checkpoint.epoch),
                };
                tracing::warn!(%error, "skipping a checkpoint");
                last_error = Some(error);
            }
            // Another format is never "corrupted": falling back would misread older data too.
            Err(error @ StorageError::IncompatibleFormat { .. }) => return Err(error),
            Err(error) => {
                tracing::warn!(%error, "checkpoint unusable; falling back to the one before");
                last_error = Some(error);
            }
        }
    }
    match last_error {
        Some(error) => Err(error),
        None => Ok(None),
    }
}

fn load(path: &Path) -> Result<Checkpoint, StorageError> {
    let corrupted = |file: &PathBuf, reason: DecodeError| StorageError::Corrupted {
        path: file.display().to_string(),
        reason,
    };
    let manifest_path = path.join(MANIFEST);
    let manifest =
        std::fs::read(&manifest_path).map_err(|error| io_error("read", &manifest_path, &error))?;
    if manifest.len() < 12 || &manifest[..8] != MANIFEST_MAGIC {
        return Err(corrupted(
            &manifest_path,
            "not a checkpoint manifest".into(),
        ));
    }
    let checksum = u32::from_le_bytes([manifest[8], manifest[9], manifest[10], manifest[11]]);
    let body = &manifest[12..];
    if codec::crc32(body) != checksum {
        return Err(corrupted(&manifest_path, "checksum mismatch".into()));
    }
    let mut decoder = Decoder::new(body);
    let format = decoder.u64().map_err(|e| corrupted(&manifest_path, e))?;
    if format != u64::from(FORMAT_VERSION) {
        return Err(StorageError::IncompatibleFormat {
            path: path.display().to_string(),
            found: format!("checkpoint format {format}"),
            expected: FORMAT_VERSION,
        });
    }
    let epoch = decoder.u64().map_err(|e| corrupted(&manifest_path, e))?;
    let count = decoder.count().map_err(|e| corrupted(&manifest_path, e))?;
    // One file at a time: read, checked, decoded, and its bytes dropped before the next. The
    // catalog is written first, so it comes first.
    let mut checkpoint: Option<Checkpoint> = None;
    for _ in 0..count {
        let entry =
            (|| Ok::<_, DecodeError>((decoder.string()?, decoder.u64()?, decoder.u64()?)))()
                .map_err(|e| corrupted(&manifest_path, e))?;
        let (name, length, checksum) = entry;
        let file = path.join(&name);
        let contents = std::fs::read(&file).map_err(|error| io_error("read", &file, &error))?;
        if contents.len() as u64 != length || u64::from(codec::crc32(&contents)) != checksum {
            return Err(corrupted(&file, "length or checksum mismatch".into()));
        }
        let Some(loaded) = checkpoint.as_mut() else {
            if name != CATALOG {
                return Err(corrupted(&manifest_path, "the catalog is not first".into()));
            }
            checkpoint = Some(decode_catalog(epoch, &contents).map_err(|e| corrupted(&file, e))?);
            continue;
        };
        if let Some(id) = name.strip_prefix("rows-").and_then(|id| id.parse().ok()) {
            let batches = codec::decode_batches(&contents).map_err(|e| corrupted(&file, e))?;
            loaded.rows.insert(id, batches);
        } else if let Some(id) = name.strip_prefix("state-").and_then(|id| id.parse().ok()) {
            loaded.states.insert(id, contents);
        } else if let Some(id) = name.strip_prefix("keys-").and_then(|id| id.parse().ok()) {
            loaded.keyed_rows.insert(id, contents);
        } else if let Some(id) = name.strip_prefix("sink-").and_then(|id| id.parse().ok()) {
            loaded.sink_outputs.insert(id, contents);
        }
    }
    let checkpoint = checkpoint.ok_or_else(|| corrupted(&path.join(CATALOG), "missing".into()))?;
    Ok(checkpoint)
}

fn encode_catalog(image: &CheckpointImage) -> Vec<u8> {
    let mut encoder = Encoder::default();
    encoder
        .u64(image.catalog_version)
        .u64(image.last_relation_id)
        .u64(image.relations.len() as u64);
    for relation in &image.relations {
        encode_relation(&mut encoder, relation);
    }
    encoder.u64(image.source_offsets.len() as u64);
    for (source, offsets) in &image.source_offsets {
        encoder.u64(*source).u64(offsets.len() as u64);
        for (partition, offset) in offsets {
            encoder.i64(i64::from(*partition)).i64(*offset);
        }
    }
    encoder.finish()
}

fn decode_catalog(epoch: Epoch, bytes: &[u8]) -> Result<Checkpoint, DecodeError> {
    let mut decoder = Decoder::new(bytes);
    let catalog_version = decoder.u64()?;
    let last_relation_id = decoder.u64()?;
    let count = decoder.count()?;
    let relations = (0..count)
        .map(|_| decode_relation(&mut decoder))
        .collect::<Result<Vec<_>, _>>()?;
    let sources = decoder.count()?;
    let mut source_offsets = HashMap::with_capacity(sources);
    for _ in 0..sources {
        let source = decoder.u64()?;
        let partitions = decoder.count()?;
        let mut offsets = Vec::with_capacity(partitions);
        for _ in 0..partitions {
            let partition = i32::try_from(decoder.i64()?).map_err(|error| error.to_string())?;
            offsets.push((partition, decoder.i64()?));
        }
        source_offsets.insert(source, offsets);
    }
    Ok(Checkpoint {
        epoch,
        catalog_version,
        last_relation_id,
        relations,
        rows: HashMap::new(),
        states: HashMap::new(),
        source_offsets,
        keyed_rows: HashMap::new(),
        sink_outputs: HashMap::new(),
    })
}
