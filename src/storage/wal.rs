//! The write-ahead log: every catalog change and every table write, appended and synced before
//! the statement that made it returns. Sources are not logged; their offsets are in checkpoints
//! and Kafka holds their data.
//!
//! The log is a series of segments, one per checkpoint interval, named by the first epoch they
//! may hold. Each record is framed as `length (u32) · CRC-32 (u32) · payload`. A crash can tear
//! only the record being appended, which was never acknowledged, so reading stops at the first
//! bad record of a segment.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};

use super::codec::{self, DecodeError, Decoder, Encoder};
use super::directory::{FORMAT_VERSION, io_error, numbered_entries, numbered_name, sync_directory};
use super::{ChangeBatch, Epoch};
use crate::catalog::RelationId;
use crate::error::StorageError;

const SEGMENT_MAGIC: &[u8; 8] = b"TRIBWAL\0";
const SEGMENT_SUFFIX: &str = ".log";

/// How a relation is recreated on recovery: the statement that created it, planned again, and
/// what that statement resolved against the outside world when it first ran.
#[derive(Debug, Clone, PartialEq)]
pub struct RelationRecord {
    pub id: RelationId,
    pub sql: String,
    /// For sources: each partition's start offset as CREATE resolved it (librdkafka's raw
    /// form: -2 the beginning), so recovery never asks the broker again.
    pub start_offsets: Vec<(i32, i64)>,
    /// For materialized views: the plan of the dataflow maintaining it, as JSON. Recovery
    /// renders it, so the operators line up with their saved state.
    pub plan: Option<String>,
}

/// A relation's new name and statement after a rename: the renamed relation's own, or a view's
/// that reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Redefinition {
    pub id: RelationId,
    pub name: String,
    pub sql: String,
    /// A view's defining query.
    pub definition: Option<String>,
}

#[derive(Debug, Clone)]
pub enum LogRecord {
    Create(RelationRecord),
    Drop(Vec<RelationId>),
    /// One rename: every relation whose name or statement it changed.
    Redefine(Vec<Redefinition>),
    /// The changes one statement made to one table, as computed when it ran.
    Write {
        table: RelationId,
        changes: Vec<ChangeBatch>,
    },
}

/// A log record with the epoch it belongs to.
#[derive(Debug, Clone)]
pub struct LoggedRecord {
    pub epoch: Epoch,
    pub record: LogRecord,
}

/// The segment being appended to. Only the coordinator holds it.
pub struct WriteAheadLog {
    directory: PathBuf,
    file: File,
    path: PathBuf,
    first_epoch: Epoch,
    /// Bytes of whole records (and the header) in the segment: where the next append starts.
    length: u64,
    /// Set when a failed append could not be cut off again: the segment may end in a partial
    /// record, after which nothing may be appended (recovery stops reading there).
    damaged: bool,
}

impl WriteAheadLog {
    /// Starts a new segment for epochs from `first_epoch` on.
    pub fn open(directory: &Path, first_epoch: Epoch) -> Result<Self, StorageError> {
        let path = directory.join(numbered_name(first_epoch, SEGMENT_SUFFIX));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(super::directory::PRIVATE_FILE_MODE)
            .open(&path)
            .map_err(|error| io_error("create", &path, &error))?;
        let mut header = SEGMENT_MAGIC.to_vec();
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        file.write_all(&header)
            .and_then(|()| file.sync_all())
            .map_err(|error| io_error("write", &path, &error))?;
        sync_directory(directory)?;
        Ok(Self {
            directory: directory.to_path_buf(),
            file,
            path,
            first_epoch,
            length: header.len() as u64,
            damaged: false,
        })
    }

    /// Appends records and syncs them: when this returns Ok they survive a crash. When it fails
    /// (a full disk, say) the partial append is cut off again, so later appends still follow
    /// whole records.
    pub fn append(&mut self, records: &[LoggedRecord]) -> Result<(), StorageError> {
        if self.damaged {
            return Err(StorageError::NotDurable(format!(
                "log segment {} could not be repaired after a failed write; restart the server",
                self.path.display()
            )));
        }
        let mut bytes = Vec::new();
        for record in records {
            let payload = encode_record(record).map_err(StorageError::NotDurable)?;
            bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&codec::crc32(&payload).to_le_bytes());
            bytes.extend_from_slice(&payload);
        }
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.length += bytes.len() as u64;
                Ok(())
            }
            Err(error) => {
                let repaired = self
                    .file
                    .set_len(self.length)
                    .and_then(|()| self.file.seek(SeekFrom::Start(self.length)).map(|_| ()));
                if repaired.is_err() {
                    self.damaged = true;
                }
                Err(io_error("write", &self.path, &error))
            }
        }
    }

    /// Closes this segment and starts one for epochs from `first_epoch` on (after a checkpoint).
    pub fn rotate(&mut self, first_epoch: Epoch) -> Result<(), StorageError> {
        // A segment that starts there holds nothing before it yet.
        if first_epoch == self.first_epoch {
            return Ok(());
        }
        *self = Self::open(&self.directory, first_epoch)?;
        Ok(())
    }
}

/// Every record after `epoch`, from all segments in order.
pub fn read_after(directory: &Path, epoch: Epoch) -> Result<Vec<LoggedRecord>, StorageError> {
    let mut records = Vec::new();
    for (_, path) in numbered_entries(directory, SEGMENT_SUFFIX)? {
        let bytes = std::fs::read(&path).map_err(|error| io_error("read", &path, &error))?;
        for record in read_segment(&path, &bytes)? {
            if record.epoch > epoch {
                records.push(record);
            }
        }
    }
    Ok(records)
}

/// Deletes the segments that hold nothing after `epoch` (the oldest checkpoint kept).
pub fn remove_through(directory: &Path, epoch: Epoch) -> Result<(), StorageError> {
    let segments = numbered_entries(directory, SEGMENT_SUFFIX)?;
    // Segment i holds epochs from its number up to the next segment's number.
    for pair in segments.windows(2) {
        let (_, path) = &pair[0];
        let (next_start, _) = pair[1];
        if next_start <= epoch + 1 {
            std::fs::remove_file(path).map_err(|error| io_error("remove", path, &error))?;
        }
    }
    sync_directory(directory)
}

fn read_segment(path: &Path, bytes: &[u8]) -> Result<Vec<LoggedRecord>, StorageError> {
    let corrupted = |reason: String| StorageError::Corrupted {
        path: path.display().to_string(),
        reason,
    };
    if bytes.len() < 12 || &bytes[..8] != SEGMENT_MAGIC {
        // A segment whose header never reached the disk holds nothing acknowledged.
        if bytes.len() < 12 {
            return Ok(Vec::new());
        }
        return Err(corrupted("not a Tributary log segment".into()));
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&bytes[8..12]);
    let version = u32::from_le_bytes(version);
    if version != FORMAT_VERSION {
        return Err(StorageError::IncompatibleFormat {
            path: path.display().to_string(),
            found: format!("log format {version}"),
            expected: FORMAT_VERSION,
        });
    }
    let mut records = Vec::new();
    let mut position = 12;
    while position < bytes.len() {
        let frame = bytes.get(position..position + 8).and_then(|header| {
            let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let checksum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let payload = bytes.get(position + 8..position + 8 + length)?;
            (codec::crc32(payload) == checksum).then_some((payload, length))
        });
        let Some((payload, length)) = frame else {
            // A torn append: the crash came while it was written, so no one was told it was
            // durable, and nothing follows it in this segment.
            tracing::warn!(
                segment = %path.display(),
                offset = position,
                "ignoring an incomplete log record left by a crash"
            );
            break;
        };
        records.push(decode_record(payload).map_err(corrupted)?);
        position += 8 + length;
    }
    Ok(records)
}

const CREATE: u8 = 1;
const DROP: u8 = 2;
const WRITE: u8 = 3;
const REDEFINE: u8 = 4;

fn encode_record(logged: &LoggedRecord) -> Result<Vec<u8>, String> {
    let mut encoder = Encoder::default();
    encoder.u64(logged.epoch);
    match &logged.record {
        LogRecord::Create(relation) => {
            encoder.u8(CREATE);
            encode_relation(&mut encoder, relation);
        }
        LogRecord::Drop(ids) => {
            encoder.u8(DROP).u64(ids.len() as u64);
            for id in ids {
                encoder.u64(*id);
            }
        }
        LogRecord::Write { table, changes } => {
            encoder.u8(WRITE).u64(*table);
            encoder.bytes(&encode_changes(changes)?);
        }
        LogRecord::Redefine(redefinitions) => {
            encoder.u8(REDEFINE).u64(redefinitions.len() as u64);
            for redefinition in redefinitions {
                encoder
                    .u64(redefinition.id)
                    .string(&redefinition.name)
                    .string(&redefinition.sql);
                match &redefinition.definition {
                    Some(definition) => encoder.u8(1).string(definition),
                    None => encoder.u8(0),
                };
            }
        }
    }
    Ok(encoder.finish())
}

fn decode_record(payload: &[u8]) -> Result<LoggedRecord, DecodeError> {
    let mut decoder = Decoder::new(payload);
    let epoch = decoder.u64()?;
    let record = match decoder.u8()? {
        CREATE => LogRecord::Create(decode_relation(&mut decoder)?),
        DROP => {
            let count = decoder.count()?;
            LogRecord::Drop(
                (0..count)
                    .map(|_| decoder.u64())
                    .collect::<Result<_, _>>()?,
            )
        }
        WRITE => LogRecord::Write {
            table: decoder.u64()?,
            changes: decode_changes(decoder.bytes()?)?,
        },
        REDEFINE => {
            let count = decoder.count()?;
            let mut redefinitions = Vec::with_capacity(count);
            for _ in 0..count {
                redefinitions.push(Redefinition {
                    id: decoder.u64()?,
                    name: decoder.string()?,
                    sql: decoder.string()?,
                    definition: match decoder.u8()? {
                        1 => Some(decoder.string()?),
                        _ => None,
                    },
                });
            }
            LogRecord::Redefine(redefinitions)
        }
        other => return Err(format!("unknown log record kind {other}")),
    };
    Ok(LoggedRecord { epoch, record })
}

pub fn encode_relation(encoder: &mut Encoder, relation: &RelationRecord) {
    encoder
        .u64(relation.id)
        .string(&relation.sql)
        .u64(relation.start_offsets.len() as u64);
    for (partition, offset) in &relation.start_offsets {
        encoder.i64(i64::from(*partition)).i64(*offset);
    }
    match &relation.plan {
        Some(plan) => encoder.u8(1).string(plan),
        None => encoder.u8(0),
    };
}

pub fn decode_relation(decoder: &mut Decoder) -> Result<RelationRecord, DecodeError> {
    let id = decoder.u64()?;
    let sql = decoder.string()?;
    let count = decoder.count()?;
    let mut start_offsets = Vec::with_capacity(count);
    for _ in 0..count {
        let partition = i32::try_from(decoder.i64()?).map_err(|error| error.to_string())?;
        start_offsets.push((partition, decoder.i64()?));
    }
    let plan = match decoder.u8()? {
        1 => Some(decoder.string()?),
        _ => None,
    };
    Ok(RelationRecord {
        id,
        sql,
        start_offsets,
        plan,
    })
}

/// The name of the weight column changes carry on disk.
const WEIGHT_COLUMN: &str = "__tributary_weight";

/// Changes as one Arrow IPC stream: each batch's rows plus a weight column.
pub fn encode_changes(changes: &[ChangeBatch]) -> Result<Vec<u8>, String> {
    let Some(first) = changes.first() else {
        return Ok(Vec::new());
    };
    let mut fields: Vec<Field> = first
        .rows
        .schema()
        .fields()
        .iter()
        .map(|field| field.as_ref().clone())
        .collect();
    fields.push(Field::new(WEIGHT_COLUMN, DataType::Int64, false));
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let batches = changes
        .iter()
        .map(|change| {
            let mut columns = change.rows.columns().to_vec();
            columns.push(Arc::new(change.weights.clone()));
            RecordBatch::try_new(Arc::clone(&schema), columns)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| error.to_string())?;
    codec::encode_batches(&schema, &batches)
}

pub fn decode_changes(bytes: &[u8]) -> Result<Vec<ChangeBatch>, DecodeError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    codec::decode_batches(bytes)?
        .into_iter()
        .map(|batch| {
            let weight_index = batch
                .num_columns()
                .checked_sub(1)
                .ok_or("a change batch without a weight column")?;
            let weights = batch
                .column(weight_index)
                .as_primitive_opt::<Int64Type>()
                .filter(|weights| weights.null_count() == 0)
                .ok_or("a change batch whose weights are not BIGINT")?
                .clone();
            let mut rows = batch;
            rows.remove_column(weight_index);
            Ok(ChangeBatch::new(rows, weights))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, Int64Array, StringArray};

    fn changes() -> Vec<ChangeBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int32, true),
            Field::new("v", DataType::Utf8, true),
        ]));
        let rows = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("a"), Some("b")])),
            ],
        )
        .expect("batch");
        vec![ChangeBatch::new(rows, Int64Array::from(vec![1, -2]))]
    }

    #[test]
    fn a_full_disk_fails_the_append() {
        let directory =
            std::env::temp_dir().join(format!("tributary-wal-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).expect("directory");
        let mut log = WriteAheadLog::open(&directory, 1).expect("open");
        // Every write to /dev/full fails with ENOSPC, as on a full disk.
        log.file = OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let error = log
            .append(&[LoggedRecord {
                epoch: 1,
                record: LogRecord::Drop(vec![1]),
            }])
            .expect_err("a full disk");
        assert!(
            matches!(&error, StorageError::Io { action: "write", reason, .. } if reason.contains("space")),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(&directory);
    }

    #[test]
    fn records_survive_and_a_torn_tail_is_dropped() {
        let directory = std::env::temp_dir().join(format!("tributary-wal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).expect("directory");
        let mut log = WriteAheadLog::open(&directory, 1).expect("open");
        let records = vec![
            LoggedRecord {
                epoch: 1,
                record: LogRecord::Create(RelationRecord {
                    id: 1,
                    sql: "CREATE TABLE t (k INT, v TEXT)".into(),
                    start_offsets: vec![(0, -2), (1, 17)],
                    plan: Some("{}".into()),
                }),
            },
            LoggedRecord {
                epoch: 2,
                record: LogRecord::Write {
                    table: 1,
                    changes: changes(),
                },
            },
            LoggedRecord {
                epoch: 2,
                record: LogRecord::Redefine(vec![
                    Redefinition {
                        id: 1,
                        name: "u".into(),
                        sql: "CREATE TABLE \"u\" (k INT, v TEXT)".into(),
                        definition: None,
                    },
                    Redefinition {
                        id: 2,
                        name: "v".into(),
                        sql: "CREATE VIEW v AS SELECT k FROM \"u\" AS \"t\"".into(),
                        definition: Some("SELECT k FROM \"u\" AS \"t\"".into()),
                    },
                ]),
            },
        ];
        log.append(&records).expect("append");
        log.append(&[LoggedRecord {
            epoch: 3,
            record: LogRecord::Drop(vec![1]),
        }])
        .expect("append");
        let read = read_after(&directory, 0).expect("read");
        assert_eq!(read.len(), 4);
        assert!(matches!(&read[0].record, LogRecord::Create(r) if r.start_offsets[1] == (1, 17)));
        match (&read[2].record, &records[2].record) {
            (LogRecord::Redefine(read), LogRecord::Redefine(written)) => assert_eq!(read, written),
            other => panic!("unexpected {other:?}"),
        }
        match &read[1].record {
            LogRecord::Write { changes: read, .. } => {
                assert_eq!(read[0].rows, changes()[0].rows);
                assert_eq!(read[0].weights, changes()[0].weights);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(read_after(&directory, 2).expect("read").len(), 1);
        // Tear the last record: the three before it remain.
        let path = directory.join(numbered_name(1, SEGMENT_SUFFIX));
        let length = std::fs::metadata(&path).expect("metadata").len();
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.set_len(length - 3).expect("truncate");
        assert_eq!(read_after(&directory, 0).expect("read").len(), 3);
        // A later segment is still read after a torn one.
        let mut log = WriteAheadLog::open(&directory, 4).expect("open");
        log.append(&[LoggedRecord {
            epoch: 4,
            record: LogRecord::Drop(vec![2]),
        }])
        .expect("append");
        assert_eq!(read_after(&directory, 0).expect("read").len(), 4);
        remove_through(&directory, 3).expect("remove");
        assert_eq!(read_after(&directory, 0).expect("read").len(), 1);
        let _ = std::fs::remove_dir_all(&directory);
    }
}
