//! Table storage: a table's rows as immutable Arrow chunks that readers share with the writer.

use std::sync::Arc;

use std::collections::HashSet;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, not};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::arrangement::{Arrangement, ArrangementSnapshot};
use super::change_batch::ChangeBatch;
use crate::catalog::UniqueKey;
use crate::error::{Error, ExecutionError};

/// Chunks smaller than this are merged with the next insert, so that many one-row INSERTs do not
/// leave millions of one-row chunks behind.
const SMALL_CHUNK_ROWS: usize = 4096;

/// A table's rows. Chunks sit in levels; a level is an immutable `Arc` slice and a snapshot is a
/// clone of the (short) list of levels, so publishing an epoch never copies the table. Levels
/// combine like a binary counter, so the list stays O(log chunks) long and an insert costs
/// O(inserted rows) amortized, whatever the table's size.
///
/// A table with PRIMARY KEY or UNIQUE constraints also keeps an index per constraint, updated
/// with every append and removal, which refuses duplicates and serves point reads.
#[derive(Debug, Clone)]
pub struct TableData {
    schema: SchemaRef,
    levels: Vec<Arc<[RecordBatch]>>,
    indexes: Vec<UniqueIndex>,
}

/// The index of one PRIMARY KEY or UNIQUE constraint: an arrangement sorted by the key, so that
/// finding a key is a binary search per run and a snapshot of it is as cheap as the table's.
#[derive(Debug, Clone)]
struct UniqueIndex {
    key: UniqueKey,
    /// The table's columns the index holds: all of them for the primary key, whose index serves
    /// point reads, only the key's own for another UNIQUE constraint.
    columns: Vec<usize>,
    rows: Arrangement,
}

impl UniqueIndex {
    fn new(schema: &SchemaRef, key: &UniqueKey) -> Result<Self, ArrowError> {
        let columns: Vec<usize> = if key.primary {
            (0..schema.fields().len()).collect()
        } else {
            key.columns.clone()
        };
        let projected = Arc::new(schema.project(&columns)?);
        let key_positions: Vec<usize> = key
            .columns
            .iter()
            .filter_map(|column| columns.iter().position(|held| held == column))
            .collect();
        Ok(Self {
            key: key.clone(),
            rows: Arrangement::keyed(projected, &key_positions)?,
            columns,
        })
    }

    fn project(&self, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|&column| Arc::clone(batch.column(column)))
            .collect();
        RecordBatch::try_new(Arc::clone(self.rows.schema()), columns)
    }

    /// Adds (`change` is insertions) or removes (deletions) the index's columns of `batches`.
    fn apply(
        &mut self,
        batches: &[RecordBatch],
        change: fn(RecordBatch) -> ChangeBatch,
    ) -> Result<(), ArrowError> {
        let changes = batches
            .iter()
            .map(|batch| self.project(batch).map(change))
            .collect::<Result<Vec<_>, _>>()?;
        self.rows.apply(&changes)
    }

    /// Fails with 23505 if a row of `batches` has the key of a row already held or of another
    /// row of `batches`.
    fn check(&self, batches: &[RecordBatch]) -> Result<(), Error> {
        let mut seen: HashSet<Box<[u8]>> = HashSet::new();
        for batch in batches {
            let keys: Vec<ArrayRef> = self
                .key
                .columns
                .iter()
                .map(|&column| Arc::clone(batch.column(column)))
                .collect();
            let encoded = self.rows.order().encode_prefix(&keys)?;
            for row in 0..batch.num_rows() {
                if keys.iter().any(|key| key.is_null(row)) {
                    continue;
                }
                let probe = encoded.row(row);
                if self.rows.contains(probe.as_ref()) || !seen.insert(probe.as_ref().into()) {
                    return Err(self.violation(batch, &keys, row));
                }
            }
        }
        Ok(())
    }

    /// Postgres's error for a duplicate key, with the key in the DETAIL line.
    fn violation(&self, batch: &RecordBatch, keys: &[ArrayRef], row: usize) -> Error {
        let schema = batch.schema();
        let names: Vec<&str> = self
            .key
            .columns
            .iter()
            .map(|&column| schema.field(column).name().as_str())
            .collect();
        let options = FormatOptions::default().with_null("null");
        let values: Vec<String> = keys
            .iter()
            .map(|key| {
                ArrayFormatter::try_new(key.as_ref(), &options)
                    .map(|formatter| formatter.value(row).to_string())
                    .unwrap_or_default()
            })
            .collect();
        ExecutionError::UniqueViolation {
            constraint: self.key.name.clone(),
            detail: format!(
                "Key ({})=({}) already exists.",
                names.join(", "),
                values.join(", ")
            ),
        }
        .into()
    }
}

impl TableData {
    pub fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            levels: Vec::new(),
            indexes: Vec::new(),
        }
    }

    /// An empty table whose `unique_keys` are enforced and indexed.
    pub fn with_unique_keys(schema: SchemaRef, unique_keys: &[UniqueKey]) -> Result<Self, Error> {
        let indexes = unique_keys
            .iter()
            .map(|key| UniqueIndex::new(&schema, key))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            schema,
            levels: Vec::new(),
            indexes,
        })
    }

    /// An empty table with this one's schema and constraints.
    pub fn empty_like(&self) -> Self {
        let mut indexes = self.indexes.clone();
        for index in &mut indexes {
            if let Ok(empty) =
                Arrangement::keyed(Arc::clone(index.rows.schema()), index.rows.order().key())
            {
                index.rows = empty;
            }
        }
        Self {
            schema: Arc::clone(&self.schema),
            levels: Vec::new(),
            indexes,
        }
    }

    /// The primary key's index: every row, sorted by the key (see
    /// [`ArrangementSnapshot::lookup`]).
    pub fn primary_index(&self) -> Option<ArrangementSnapshot> {
        self.indexes
            .iter()
            .find(|index| index.key.primary)
            .map(|index| index.rows.snapshot())
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn chunks(&self) -> impl Iterator<Item = &RecordBatch> {
        self.levels.iter().flat_map(|level| level.iter())
    }

    /// Appends rows (already in the table's schema). Rows that would break a PRIMARY KEY or
    /// UNIQUE constraint fail the whole append (23505) and change nothing.
    pub fn append(&mut self, batches: Vec<RecordBatch>) -> Result<(), Error> {
        if !self.indexes.is_empty() {
            for index in &self.indexes {
                index.check(&batches)?;
            }
            for index in &mut self.indexes {
                index.apply(&batches, ChangeBatch::insertions)?;
            }
        }
        for batch in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            self.append_chunk(batch)?;
        }
        Ok(())
    }

    fn append_chunk(&mut self, batch: RecordBatch) -> Result<(), ArrowError> {
        // A small chunk on top absorbs the new rows instead of becoming a neighbour.
        if let Some(last) = self.levels.last()
            && last.len() == 1
            && last[0].num_rows() < SMALL_CHUNK_ROWS
            && batch.num_rows() < SMALL_CHUNK_ROWS
        {
            let merged = concat_batches(&self.schema, [&last[0], &batch])?;
            self.levels.pop();
            self.push_level(Arc::from(vec![merged]));
            return Ok(());
        }
        self.push_level(Arc::from(vec![batch]));
        Ok(())
    }

    fn push_level(&mut self, level: Arc<[RecordBatch]>) {
        self.levels.push(level);
        while self.levels.len() >= 2 {
            let newest = self.levels[self.levels.len() - 1].len();
            let older = self.levels[self.levels.len() - 2].len();
            if newest < older {
                break;
            }
            let (Some(newer_level), Some(older_level)) = (self.levels.pop(), self.levels.pop())
            else {
                break;
            };
            let combined: Vec<RecordBatch> = older_level
                .iter()
                .chain(newer_level.iter())
                .cloned()
                .collect();
            self.levels.push(Arc::from(combined));
        }
    }

    /// Removes the rows where `matches` says true and returns them. `matches` is asked once per
    /// chunk; chunks without a match are kept as they are (shared, not copied).
    pub fn remove_where(
        &mut self,
        mut matches: impl FnMut(&RecordBatch) -> Result<BooleanArray, crate::error::Error>,
    ) -> Result<Vec<RecordBatch>, crate::error::Error> {
        let mut removed = Vec::new();
        let mut new_levels = Vec::with_capacity(self.levels.len());
        for level in &self.levels {
            let mut changed = false;
            let mut kept = Vec::with_capacity(level.len());
            for chunk in level.iter() {
                let mask = matches(chunk)?;
                // NULL is not true: a row whose predicate is NULL stays.
                let mask = if mask.null_count() > 0 {
                    datafusion::arrow::compute::prep_null_mask_filter(&mask)
                } else {
                    mask
                };
                if mask.true_count() == 0 {
                    kept.push(chunk.clone());
                    continue;
                }
                changed = true;
                removed.push(filter_record_batch(chunk, &mask)?);
                let remaining = filter_record_batch(chunk, &not(&mask)?)?;
                if remaining.num_rows() > 0 {
                    kept.push(remaining);
                }
            }
            if changed {
                new_levels.push(Arc::from(kept));
            } else {
                new_levels.push(Arc::clone(level));
            }
        }
        self.levels = new_levels;
        for index in &mut self.indexes {
            index.apply(&removed, ChangeBatch::deletions)?;
        }
        Ok(removed)
    }

    pub fn snapshot(&self) -> TableData {
        self.clone()
    }

    pub fn to_batches(&self) -> Vec<RecordBatch> {
        self.chunks().cloned().collect()
    }
}
