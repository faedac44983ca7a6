//! Arrangements: a materialized view's contents as immutable, consolidated runs of Arrow rows.

use std::cmp::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{RowConverter, Rows};

use super::change_batch::{ChangeBatch, row_converter_for};

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
pub struct Arrangement {
    schema: SchemaRef,
    converter: RowConverter,
    runs: Vec<Arc<Run>>,
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
    pub fn new(schema: SchemaRef) -> Result<Self, ArrowError> {
        let converter = row_converter_for(&schema)?;
        Ok(Self {
            schema,
            converter,
            runs: Vec::new(),
        })
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
        let (consolidated, keys) = combined.consolidate(&self.converter)?;
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
                let mut keys = self.converter.empty_rows(picks.len(), 0);
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
            runs: Arc::new(self.runs.clone()),
        }
    }
}

/// What a reader holds: the runs of one epoch.
#[derive(Debug, Clone)]
pub struct ArrangementSnapshot {
    schema: SchemaRef,
    runs: Arc<Vec<Arc<Run>>>,
}

impl ArrangementSnapshot {
    /// One snapshot of several arrangements of `schema` taken at the same epoch (the shards of
    /// one view): their runs together, consolidated on read like any runs.
    pub fn union(schema: SchemaRef, parts: impl IntoIterator<Item = ArrangementSnapshot>) -> Self {
        let mut runs = Vec::new();
        for part in parts {
            runs.extend(part.runs.iter().cloned());
        }
        Self {
            schema,
            runs: Arc::new(runs),
        }
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
