//! Table storage: a table's rows as immutable Arrow chunks that readers share with the writer.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, not};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;

/// Chunks smaller than this are merged with the next insert, so that many one-row INSERTs do not
/// leave millions of one-row chunks behind.
const SMALL_CHUNK_ROWS: usize = 4096;

/// A table's rows. Chunks sit in levels; a level is an immutable `Arc` slice and a snapshot is a
/// clone of the (short) list of levels, so publishing an epoch never copies the table. Levels
/// combine like a binary counter, so the list stays O(log chunks) long and an insert costs
/// O(inserted rows) amortized, whatever the table's size.
#[derive(Debug, Clone)]
pub struct TableData {
    schema: SchemaRef,
    levels: Vec<Arc<[RecordBatch]>>,
}

impl TableData {
    pub fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            levels: Vec::new(),
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn chunks(&self) -> impl Iterator<Item = &RecordBatch> {
        self.levels.iter().flat_map(|level| level.iter())
    }

    /// Appends rows (already in the table's schema).
    pub fn append(&mut self, batches: Vec<RecordBatch>) -> Result<(), ArrowError> {
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
        Ok(removed)
    }

    pub fn snapshot(&self) -> TableData {
        self.clone()
    }

    pub fn to_batches(&self) -> Vec<RecordBatch> {
        self.chunks().cloned().collect()
    }
}
