//! Arrangements: a materialized view's contents as immutable, consolidated runs of Arrow rows.

use std::cmp::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{RowConverter, Rows};

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::row::SortField;

use super::change_batch::ChangeBatch;

/// Runs whose merge holds at most this many rows are merged at once (see [`Arrangement`]).
const EAGER_MERGE_ROWS: usize = 4096;

/// One consolidated run: unique rows sorted by their `arrow-row` encoding, each with a non-zero
/// weight. Runs never change once built; merging two makes a third.
#[derive(Debug)]
pub struct Run {
    changes: ChangeBatch,
    keys: Rows,
}

impl Run {
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// A view's contents as a spine of runs (differential dataflow's arrangement, simplified): each
/// epoch's consolidated output becomes a new run, and a run is merged into its older neighbour
/// once it is at least half that neighbour's size, or when both are small (`EAGER_MERGE_ROWS`).
/// Run sizes therefore grow geometrically, there are O(log n) runs, and each row is merged
/// O(log n) times: applying a change costs O(change × log view) plus a bounded eager merge,
/// never O(view).
///
/// Readers take a [`ArrangementSnapshot`] (an `Arc` per run, no copying) and consolidate on read,
/// so publishing an epoch never copies a view and old runs drop with their last reader.
///
/// Rows are sorted by a [`RowOrder`]: a key's columns first, so that the rows agreeing on a key
/// (a view's GROUP BY columns, a table's primary key) sit together and a lookup by key is a
/// binary search in each run.
#[derive(Clone)]
pub struct Arrangement {
    schema: SchemaRef,
    order: Arc<RowOrder>,
    runs: Vec<Arc<Run>>,
}

/// How an arrangement sorts its rows: by the `arrow-row` encoding of its columns taken in
/// `columns` order, the key's first. A row's encoding is its columns' encodings one after the
/// other, each self-delimiting, so the rows whose first columns equal a probe are exactly the
/// rows whose encoding starts with the probe's encoding, and they are contiguous in a run.
#[derive(Debug)]
pub struct RowOrder {
    converter: RowConverter,
    /// Every column of the schema once, key columns first.
    columns: Vec<usize>,
    /// How many of `columns` are the key.
    key_length: usize,
}

impl RowOrder {
    /// An order over `schema` whose first columns are `key` (in that order).
    pub fn new(schema: &SchemaRef, key: &[usize]) -> Result<Self, ArrowError> {
        let mut columns: Vec<usize> = key.to_vec();
        columns.extend((0..schema.fields().len()).filter(|column| !key.contains(column)));
        let converter = RowConverter::new(
            columns
                .iter()
                .map(|&column| SortField::new(schema.field(column).data_type().clone()))
                .collect(),
        )?;
        Ok(Self {
            converter,
            columns,
            key_length: key.len(),
        })
    }

    /// The key's columns, as indexes into the schema.
    pub fn key(&self) -> &[usize] {
        &self.columns[..self.key_length]
    }

    /// Every row of `rows` in this order's encoding. A batch without columns (`SELECT FROM t`)
    /// has one empty encoding per row.
    pub fn encode(&self, rows: &RecordBatch) -> Result<Rows, ArrowError> {
        if rows.num_columns() == 0 {
            return super::change_batch::encode_rows(&self.converter, rows);
        }
        let columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|&column| Arc::clone(rows.column(column)))
            .collect();
        self.converter.convert_columns(&columns)
    }

    /// The encodings of probe values for the first `columns.len()` columns of the order (one
    /// array per column, one row per probe): what [`ArrangementSnapshot::lookup`] takes.
    pub fn encode_prefix(&self, columns: &[ArrayRef]) -> Result<Rows, ArrowError> {
        if columns.len() > self.columns.len() {
            return Err(ArrowError::InvalidArgumentError(format!(
                "a probe of {} columns into an order of {}",
                columns.len(),
                self.columns.len()
            )));
        }
        let fields = self.columns[..columns.len()]
            .iter()
            .zip(columns)
            .map(|(_, column)| SortField::new(column.data_type().clone()))
            .collect();
        RowConverter::new(fields)?.convert_columns(columns)
    }

    /// Which schema column is the order's `position`-th.
    pub fn column_at(&self, position: usize) -> Option<usize> {
        self.columns.get(position).copied()
    }
}

impl std::fmt::Debug for Arrangement {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Arrangement")
            .field(
                "runs",
                &self.runs.iter().map(|run| run.len()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Arrangement {
    /// An empty arrangement sorted by its columns in schema order.
    pub fn new(schema: SchemaRef) -> Result<Self, ArrowError> {
        Self::keyed(schema, &[])
    }

    /// An empty arrangement whose rows are sorted by the `key` columns first.
    pub fn keyed(schema: SchemaRef, key: &[usize]) -> Result<Self, ArrowError> {
        let order = Arc::new(RowOrder::new(&schema, key)?);
        Ok(Self {
            schema,
            order,
            runs: Vec::new(),
        })
    }

    pub fn order(&self) -> &RowOrder {
        &self.order
    }

    /// Whether any row's first order columns are the probe's (an encoding from
    /// [`RowOrder::encode_prefix`]).
    pub fn contains(&self, probe: &[u8]) -> bool {
        let mut weight = 0;
        for run in &self.runs {
            for row in run.matching(probe) {
                weight += run.changes.weights.value(row);
            }
        }
        weight > 0
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Adds one epoch's changes.
    pub fn apply(&mut self, changes: &[ChangeBatch]) -> Result<(), ArrowError> {
        let non_empty: Vec<ChangeBatch> =
            changes.iter().filter(|c| !c.is_empty()).cloned().collect();
        if non_empty.is_empty() {
            return Ok(());
        }
        let batches: Vec<ChangeBatch> = non_empty
            .iter()
            .map(|batch| {
                super::change_batch::with_schema(&batch.rows, &self.schema)
                    .map(|rows| ChangeBatch::new(rows, batch.weights.clone()))
            })
            .collect::<Result<_, _>>()?;
        let combined = ChangeBatch::concat(&self.schema, &batches)?;
        let keys = self.order.encode(&combined.rows)?;
        let (consolidated, keys) = combined.consolidate_encoded(keys, &self.order.converter)?;
        if consolidated.is_empty() {
            return Ok(());
        }
        self.runs.push(Arc::new(Run {
            changes: consolidated,
            keys,
        }));
        while self.runs.len() >= 2 {
            let newest = self.runs[self.runs.len() - 1].len();
            let older = self.runs[self.runs.len() - 2].len();
            // Small runs are merged right away, whatever their ratio: a bounded cost per epoch
            // that keeps small views in one run, which readers use without merging.
            if newest * 2 < older && newest + older > EAGER_MERGE_ROWS {
                break;
            }
            let Some(newer_run) = self.runs.pop() else {
                break;
            };
            let Some(older_run) = self.runs.pop() else {
                break;
            };
            let pair = [older_run, newer_run];
            let (merged, picks) = merge_runs(&self.schema, &pair)?;
            if !merged.is_empty() {
                // The merged rows' keys are the picked rows' keys: copied, not encoded again.
                let mut keys = self.order.converter.empty_rows(picks.len(), 0);
                for &(run, row) in &picks {
                    keys.push(pair[run].keys.row(row));
                }
                self.runs.push(Arc::new(Run {
                    changes: merged,
                    keys,
                }));
            }
        }
        Ok(())
    }

    pub fn snapshot(&self) -> ArrangementSnapshot {
        ArrangementSnapshot {
            schema: Arc::clone(&self.schema),
            order: Some(Arc::clone(&self.order)),
            runs: Arc::new(self.runs.clone()),
        }
    }
}

impl Run {
    /// The rows of this run whose encoding starts with `probe`: binary search to the first, then
    /// every neighbour that shares the prefix.
    fn matching(&self, probe: &[u8]) -> std::ops::Range<usize> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let middle = low + (high - low) / 2;
            if self.keys.row(middle).as_ref() < probe {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        let mut end = low;
        while end < self.len() && self.keys.row(end).as_ref().starts_with(probe) {
            end += 1;
        }
        low..end
    }
}

/// What a reader holds: the runs of one epoch.
#[derive(Debug, Clone)]
pub struct ArrangementSnapshot {
    schema: SchemaRef,
    /// How the runs are sorted; `None` only for a union of no arrangements, which has no runs.
    order: Option<Arc<RowOrder>>,
    runs: Arc<Vec<Arc<Run>>>,
}

impl ArrangementSnapshot {
    /// One snapshot of several arrangements of `schema` taken at the same epoch (the shards of
    /// one view): their runs together, consolidated on read like any runs.
    /// The parts must share one [`RowOrder`] (the shards of a view do).
    pub fn union(schema: SchemaRef, parts: impl IntoIterator<Item = ArrangementSnapshot>) -> Self {
        let mut runs = Vec::new();
        let mut order = None;
        for part in parts {
            runs.extend(part.runs.iter().cloned());
            order = order.or(part.order);
        }
        Self {
            schema,
            order,
            runs: Arc::new(runs),
        }
    }

    /// How the rows are sorted: lookups probe a prefix of this order's columns.
    pub fn order(&self) -> Option<&RowOrder> {
        self.order.as_deref()
    }

    /// The rows whose first order columns equal one of the probes (encodings from
    /// [`RowOrder::encode_prefix`]), consolidated across runs and expanded by multiplicity.
    /// Costs a binary search per run and probe, whatever the size of the arrangement.
    pub fn lookup(&self, probes: &Rows) -> Result<RecordBatch, ArrowError> {
        let mut picks: Vec<(usize, usize)> = Vec::new();
        for probe in probes.iter() {
            for (run_index, run) in self.runs.iter().enumerate() {
                picks.extend(run.matching(probe.as_ref()).map(|row| (run_index, row)));
            }
        }
        if picks.is_empty() {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.schema)));
        }
        // Equal rows from different runs (an insertion in one, its deletion in a newer one) are
        // summed; the rows of one run are already unique.
        let mut weights: Vec<i64> = Vec::with_capacity(picks.len());
        let mut kept: Vec<(usize, usize)> = Vec::with_capacity(picks.len());
        if self.runs.len() == 1 {
            for &(run, row) in &picks {
                weights.push(self.runs[run].changes.weights.value(row));
                kept.push((run, row));
            }
        } else {
            picks.sort_by(|&(run_a, row_a), &(run_b, row_b)| {
                self.runs[run_a]
                    .keys
                    .row(row_a)
                    .cmp(&self.runs[run_b].keys.row(row_b))
            });
            for &(run, row) in &picks {
                let weight = self.runs[run].changes.weights.value(row);
                match kept.last() {
                    Some(&(last_run, last_row))
                        if self.runs[last_run].keys.row(last_row)
                            == self.runs[run].keys.row(row) =>
                    {
                        if let Some(last) = weights.last_mut() {
                            *last += weight;
                        }
                    }
                    _ => {
                        kept.push((run, row));
                        weights.push(weight);
                    }
                }
            }
        }
        let mut indices: Vec<(usize, usize)> = Vec::with_capacity(kept.len());
        for (&pick, &weight) in kept.iter().zip(&weights) {
            if weight < 0 {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "relation holds a row with negative multiplicity {weight}"
                )));
            }
            indices.extend(std::iter::repeat_n(pick, weight as usize));
        }
        if indices.is_empty() {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.schema)));
        }
        let sources: Vec<&RecordBatch> = self.runs.iter().map(|run| &run.changes.rows).collect();
        interleave_record_batch(&sources, &indices)
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The view's rows, consolidated across runs and expanded by multiplicity.
    pub fn to_batches(&self) -> Result<Vec<RecordBatch>, ArrowError> {
        match self.runs.len() {
            0 => Ok(Vec::new()),
            1 => Ok(vec![self.runs[0].changes.expand()?]),
            _ => Ok(vec![merge_runs(&self.schema, &self.runs)?.0.expand()?]),
        }
    }
}

/// Merges sorted runs into one, summing the weights of equal rows and dropping zeros. The result
/// is sorted like its inputs; each of its rows comes from the (run, row) at the same position in
/// the returned picks.
fn merge_runs(
    schema: &SchemaRef,
    runs: &[Arc<Run>],
) -> Result<(ChangeBatch, Vec<(usize, usize)>), ArrowError> {
    let total: usize = runs.iter().map(|run| run.len()).sum();
    let mut positions = vec![0usize; runs.len()];
    let mut picks: Vec<(usize, usize)> = Vec::with_capacity(total);
    let mut weights: Vec<i64> = Vec::with_capacity(total);
    loop {
        // The smallest key among the heads of all runs; runs are few (O(log n)), so a linear scan
        // over the heads beats a heap.
        let mut smallest: Option<usize> = None;
        for (run_index, run) in runs.iter().enumerate() {
            if positions[run_index] >= run.len() {
                continue;
            }
            smallest = match smallest {
                None => Some(run_index),
                Some(best) => {
                    let ordering = run
                        .keys
                        .row(positions[run_index])
                        .cmp(&runs[best].keys.row(positions[best]));
                    if ordering == Ordering::Less {
                        Some(run_index)
                    } else {
                        Some(best)
                    }
                }
            };
        }
        let Some(first) = smallest else { break };
        let key = runs[first].keys.row(positions[first]);
        let mut weight = 0i64;
        for (run_index, run) in runs.iter().enumerate() {
            if positions[run_index] < run.len() && run.keys.row(positions[run_index]) == key {
                weight += run.changes.weights.value(positions[run_index]);
                if run_index != first {
                    positions[run_index] += 1;
                }
            }
        }
        if weight != 0 {
            picks.push((first, positions[first]));
            weights.push(weight);
        }
        positions[first] += 1;
    }
    let sources: Vec<&RecordBatch> = runs.iter().map(|run| &run.changes.rows).collect();
    let rows = if picks.is_empty() {
        RecordBatch::new_empty(Arc::clone(schema))
    } else {
        interleave_record_batch(&sources, &picks)?
    };
    Ok((ChangeBatch::new(rows, Int64Array::from(weights)), picks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn batch(schema: &SchemaRef, keys: &[i32], names: &[&str]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::clone(schema),
            vec![
                Arc::new(Int32Array::from(keys.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
            ],
        )
        .expect("valid batch")
    }

    #[test]
    fn insert_delete_and_merge_keep_multiset_semantics() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int32, true),
            Field::new("v", DataType::Utf8, true),
        ]));
        let mut arrangement = Arrangement::new(Arc::clone(&schema)).expect("arrangement");
        for round in 0..50 {
            let rows = batch(&schema, &[round, round, 1000], &["a", "a", "x"]);
            arrangement
                .apply(&[ChangeBatch::insertions(rows)])
                .expect("apply");
        }
        let rows = batch(&schema, &[3, 1000], &["a", "x"]);
        arrangement
            .apply(&[ChangeBatch::deletions(rows)])
            .expect("apply");
        let batches = arrangement.snapshot().to_batches().expect("read");
        let total: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(total, 50 * 3 - 2);
        assert!(arrangement.runs.len() <= 8, "runs: {:?}", arrangement);
    }
}
