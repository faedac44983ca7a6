//! Exchange: how rows move between workers. A hashed edge sends every row to the worker that
//! owns its key; the owner of a key is a stable hash of its `arrow-row` encoding, so the keys in
//! operator state (the same encoding) can be sent to their new owners when the number of workers
//! changes.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;
use rayon::iter::{IntoParallelIterator, ParallelIterator};

use super::{ChangeBatch, join};
use crate::error::{DataflowError, ExecutionError};

/// The key one input port is partitioned by: the expressions the operator groups or joins on,
/// cast to the types it compares them in, so equal keys from either side of a join land on the
/// same worker.
pub struct PartitionKey {
    expressions: Vec<Arc<dyn PhysicalExpr>>,
    types: Vec<DataType>,
    converter: RowConverter,
}

impl PartitionKey {
    pub fn new(
        expressions: Vec<Arc<dyn PhysicalExpr>>,
        types: Vec<DataType>,
    ) -> Result<Self, DataflowError> {
        let converter = RowConverter::new(types.iter().cloned().map(SortField::new).collect())?;
        Ok(Self {
            expressions,
            types,
            converter,
        })
    }

    /// The worker (below `count`) that owns each row's key.
    fn owners(&self, rows: &RecordBatch, count: usize) -> Result<Vec<u32>, DataflowError> {
        let columns = join::evaluate_keys(&self.expressions, &self.types, rows)?;
        let keys = self.converter.convert_columns(&columns)?;
        Ok(keys
            .iter()
            .map(|key| owner(stable_hash(key.as_ref()), count))
            .collect())
    }
}

/// Who owns a key an operator keeps state under (its group, join or partition key, in
/// `arrow-row` encoding), among `count` workers: the worker its rows were hashed to. When the
/// rows were hashed by only some of the key's columns (they arrived already partitioned by
/// those), the key is decoded and those columns hashed alone.
pub enum KeyOwner {
    /// The rows were hashed by the whole key.
    WholeKey,
    /// The rows were hashed by the key's columns at `positions`, in that order.
    Columns {
        key: RowConverter,
        positions: Vec<usize>,
        hashed: RowConverter,
    },
}

impl KeyOwner {
    /// Owned by the hash of columns `positions` of a key of `types`.
    pub fn columns(types: &[DataType], positions: Vec<usize>) -> Result<Self, DataflowError> {
        if positions.len() == types.len() && positions.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(Self::WholeKey);
        }
        let field = |data_type: &DataType| SortField::new(data_type.clone());
        let hashed = positions
            .iter()
            .map(|&position| {
                types.get(position).map(field).ok_or_else(|| {
                    DataflowError::from(ExecutionError::Internal(format!(
                        "a key of {} columns is hashed by column {position}",
                        types.len()
                    )))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::Columns {
            key: RowConverter::new(types.iter().map(field).collect())?,
            positions,
            hashed: RowConverter::new(hashed)?,
        })
    }

    /// The worker (below `count`) owning `key`.
    pub fn owner(&self, key: &[u8], count: usize) -> Result<usize, DataflowError> {
        match self {
            KeyOwner::WholeKey => Ok(owner(stable_hash(key), count) as usize),
            KeyOwner::Columns {
                key: converter,
                positions,
                hashed,
            } => {
                let parser = converter.parser();
                let columns = converter.convert_rows([parser.parse(key)])?;
                let picked: Vec<_> = positions
                    .iter()
                    .map(|&position| Arc::clone(&columns[position]))
                    .collect();
                let rows = hashed.convert_columns(&picked)?;
                Ok(owner(stable_hash(rows.row(0).as_ref()), count) as usize)
            }
        }
    }
}

/// FNV-1a with a final avalanche: written here rather than taken from a hashing crate because
/// the worker that owns a key must not change between builds (checkpoints are redistributed
/// with it).
fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash
}

/// Maps a hash onto `0..count` by its high bits (a multiply, not a division).
fn owner(hash: u64, count: usize) -> u32 {
    ((u128::from(hash) * count as u128) >> 64) as u32
}

/// Rows on their way along one hashed edge: every worker's batches, and per slice of them, per
/// batch, per worker, the rows that worker owns (see [`Hashed::share`]).
pub struct Hashed {
    batches: Vec<ChangeBatch>,
    slices: Vec<Vec<Vec<Vec<u32>>>>,
}

impl Hashed {
    /// Finds the owner of every row of `batches` among `count` workers: the batches are cut into
    /// `count` slices hashed side by side when `parallel`.
    pub fn new(
        key: &PartitionKey,
        batches: Vec<ChangeBatch>,
        count: usize,
        parallel: bool,
    ) -> Result<Self, DataflowError> {
        let slices = for_each((0..count).collect(), parallel, |slice| {
            rows_by_owner(key, &batches, slice, count)
        })?;
        Ok(Self { batches, slices })
    }

    /// Worker `index`'s rows, in the order they came; batches where it owns nothing are left
    /// out, and a batch it owns whole is passed on as it is.
    pub fn share(&self, index: usize) -> Result<Vec<ChangeBatch>, DataflowError> {
        let mut share = Vec::new();
        for (position, batch) in self.batches.iter().enumerate() {
            let rows: Vec<u32> = self
                .slices
                .iter()
                .flat_map(|slice| &slice[position][index])
                .copied()
                .collect();
            if rows.len() == batch.len() {
                share.push(batch.clone());
            } else if !rows.is_empty() {
                share.push(batch.take(rows)?);
            }
        }
        Ok(share)
    }
}

/// Per batch, per worker (of `count`), the rows of the batch's slice `slice` that the worker
/// owns, each batch cut into `count` equal slices: one slice per task.
fn rows_by_owner(
    key: &PartitionKey,
    batches: &[ChangeBatch],
    slice: usize,
    count: usize,
) -> Result<Vec<Vec<Vec<u32>>>, DataflowError> {
    batches
        .iter()
        .map(|batch| {
            let start = batch.len() * slice / count;
            let end = batch.len() * (slice + 1) / count;
            let owners = key.owners(&batch.rows.slice(start, end - start), count)?;
            let mut rows = vec![Vec::new(); count];
            for (offset, owner) in owners.into_iter().enumerate() {
                rows[owner as usize].push((start + offset) as u32);
            }
            Ok(rows)
        })
        .collect()
}

/// `batches` shared among `count` workers where any split will do (a forwarded relation): each
/// batch cut into `count` equal slices, which share its buffers.
pub fn split(batches: &[ChangeBatch], count: usize) -> Vec<Vec<ChangeBatch>> {
    let mut shares = vec![Vec::new(); count.max(1)];
    if count <= 1 {
        shares[0] = batches.to_vec();
        return shares;
    }
    for batch in batches {
        for (index, share) in shares.iter_mut().enumerate() {
            let start = batch.len() * index / count;
            let end = batch.len() * (index + 1) / count;
            if end > start {
                share.push(batch.slice(start, end - start));
            }
        }
    }
    shares
}

/// `work` applied to every item, results in item order: with `parallel`, on rayon's pool (one
/// thread per core, kept warm between epochs; the caller waits, and a panic in `work` reaches
/// it after every item is done); otherwise one after another on the calling thread.
pub fn for_each<I: Send, T: Send>(
    items: Vec<I>,
    parallel: bool,
    work: impl Fn(I) -> Result<T, DataflowError> + Sync,
) -> Result<Vec<T>, DataflowError> {
    if !parallel {
        return items.into_iter().map(work).collect();
    }
    items.into_par_iter().map(&work).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};

    #[test]
    fn owners_spread_over_every_worker_and_stay_put() {
        let mut counts = [0usize; 4];
        for key in 0u64..10_000 {
            counts[owner(stable_hash(&key.to_be_bytes()), 4) as usize] += 1;
        }
        for count in counts {
            assert!((2_000..3_000).contains(&count), "{counts:?}");
        }
        // Checkpoints are redistributed by it: a change would send restored keys elsewhere.
        assert_eq!(stable_hash(b"tributary"), 0x6d13_12f3_99b4_27dc);
    }

    #[test]
    fn a_key_hashed_by_some_columns_is_owned_where_those_columns_went() {
        let types = [DataType::Utf8, DataType::Int64];
        let key = RowConverter::new(types.iter().cloned().map(SortField::new).collect()).unwrap();
        let hashed = RowConverter::new(vec![SortField::new(DataType::Int64)]).unwrap();
        let owner_of_columns = KeyOwner::columns(&types, vec![1]).unwrap();
        for value in 0..200i64 {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(vec![format!("group {value}")])),
                Arc::new(Int64Array::from(vec![value])),
            ];
            let whole = key.convert_columns(&columns).unwrap();
            let part = hashed.convert_columns(&columns[1..]).unwrap();
            for count in 1..=4 {
                assert_eq!(
                    owner_of_columns
                        .owner(whole.row(0).as_ref(), count)
                        .unwrap(),
                    owner(stable_hash(part.row(0).as_ref()), count) as usize
                );
            }
        }
        assert!(matches!(
            KeyOwner::columns(&types, vec![0, 1]).unwrap(),
            KeyOwner::WholeKey
        ));
    }
}
