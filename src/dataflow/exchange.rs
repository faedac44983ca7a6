//! Exchange: data parallelism for a stateful operator. N copies of it each own the keys that hash
//! to them; an epoch's input is split by key and the copies run side by side at the barrier.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;
use rayon::iter::{IntoParallelIterator, ParallelIterator};

use super::{ChangeBatch, Epoch, Operator, checkpoint_operators, join, operator_states};
use crate::error::{DataflowError, ExecutionError};

/// Below this many input rows in an epoch the copies run one after another on the calling
/// thread: handing work to the pool and waiting for it costs more than a small epoch's work.
const PARALLEL_ROWS: usize = 2048;

/// Makes one fresh copy of the partitioned operator.
pub type OperatorFactory = Box<dyn Fn() -> Result<Box<dyn Operator>, DataflowError> + Send>;

/// The key one input port is partitioned by: the expressions the operator groups or joins on,
/// cast to the types it compares them in, so equal keys from either side of a join land on the
/// same copy.
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

    /// The copy (below `count`) that owns each row's key.
    fn owners(&self, rows: &RecordBatch, count: usize) -> Result<Vec<u32>, DataflowError> {
        let columns = join::evaluate_keys(&self.expressions, &self.types, rows)?;
        let keys = self.converter.convert_columns(&columns)?;
        Ok(keys
            .iter()
            .map(|key| owner(stable_hash(key.as_ref()), count))
            .collect())
    }
}

/// FNV-1a with a final avalanche: written here rather than taken from a hashing crate because
/// the copy that owns a key is recorded in checkpoints, so the hash must never change between
/// builds.
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

/// Incremental rule: that of the operator it partitions. An operator whose state and output for
/// one key depend only on that key's rows (a grouped aggregate, an equality join, a top-N per
/// partition) gives the same changes whether one copy sees every key or each of N copies sees
/// its share, so the exchange sends every row to the copy owning its key and concatenates what
/// the copies emit. Nothing is emitted before the barrier, where a large epoch runs in two
/// parallel rounds: each task hashes the keys of one slice of every batch, then each copy
/// takes its rows of every batch, processes them in arrival order and closes the epoch. A small
/// epoch does the same on the calling thread; a single copy takes the input as it came.
pub struct Exchange {
    copies: Vec<Box<dyn Operator>>,
    /// One per input port.
    keys: Vec<PartitionKey>,
    /// The epoch's input so far, (port, batch) in arrival order, not yet split.
    pending: Vec<(usize, ChangeBatch)>,
    pending_rows: usize,
    make: OperatorFactory,
}

impl Exchange {
    /// `count` copies made by `make`, input port `p` partitioned by `keys[p]`.
    pub fn new(
        count: usize,
        keys: Vec<PartitionKey>,
        make: OperatorFactory,
    ) -> Result<Self, DataflowError> {
        let count = count.max(1);
        let copies = (0..count).map(|_| make()).collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            copies,
            keys,
            pending: Vec::new(),
            pending_rows: 0,
            make,
        })
    }
}

/// Per batch of `input`, per copy (of `count`), the rows of the batch's slice `slice` that the
/// copy owns, each batch cut into `count` equal slices: one slice per task.
fn rows_by_owner(
    keys: &[PartitionKey],
    input: &[(usize, ChangeBatch)],
    slice: usize,
    count: usize,
) -> Result<Vec<Vec<Vec<u32>>>, DataflowError> {
    input
        .iter()
        .map(|(port, batch)| {
            let key = keys.get(*port).ok_or_else(|| {
                ExecutionError::Internal(format!("an exchange has no key for input {port}"))
            })?;
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

/// Copy `index`'s rows of every batch of `input`, gathered from the slices' `rows_by_owner`
/// in slice order (so in row order); batches where it owns nothing are left out.
fn share_of(
    index: usize,
    input: &[(usize, ChangeBatch)],
    slices: &[Vec<Vec<Vec<u32>>>],
) -> Result<Vec<(usize, ChangeBatch)>, DataflowError> {
    let mut share = Vec::new();
    for (position, (port, batch)) in input.iter().enumerate() {
        let rows: Vec<u32> = slices
            .iter()
            .flat_map(|slice| &slice[position][index])
            .copied()
            .collect();
        if rows.len() == batch.len() {
            share.push((*port, batch.clone()));
        } else if !rows.is_empty() {
            share.push((*port, batch.take(rows)?));
        }
    }
    Ok(share)
}

/// One copy's part of an epoch: its input in arrival order, then its barrier.
fn close_copy(
    copy: &mut dyn Operator,
    input: Vec<(usize, ChangeBatch)>,
    epoch: Epoch,
) -> Result<Vec<ChangeBatch>, DataflowError> {
    let mut output = Vec::new();
    for (port, batch) in input {
        output.extend(copy.process(port, batch)?);
    }
    output.extend(copy.barrier(epoch)?);
    Ok(output)
}

/// `work` applied to every item, results in item order: with `parallel`, on rayon's pool (one
/// thread per core, kept warm between epochs; the caller waits, and a panic in `work` reaches
/// it after every item is done); otherwise one after another on the calling thread.
fn for_each<I: Send, T: Send>(
    items: Vec<I>,
    parallel: bool,
    work: impl Fn(I) -> Result<T, DataflowError> + Sync,
) -> Result<Vec<T>, DataflowError> {
    if !parallel {
        return items.into_iter().map(work).collect();
    }
    items.into_par_iter().map(&work).collect()
}

impl Operator for Exchange {
    fn process(
        &mut self,
        port: usize,
        input: ChangeBatch,
    ) -> Result<Vec<ChangeBatch>, DataflowError> {
        self.pending_rows += input.len();
        self.pending.push((port, input));
        Ok(Vec::new())
    }

    fn barrier(&mut self, epoch: Epoch) -> Result<Vec<ChangeBatch>, DataflowError> {
        let input = std::mem::take(&mut self.pending);
        let parallel = self.pending_rows >= PARALLEL_ROWS;
        self.pending_rows = 0;
        if let [copy] = self.copies.as_mut_slice() {
            return close_copy(copy.as_mut(), input, epoch);
        }
        let count = self.copies.len();
        let keys = &self.keys;
        let slices = for_each((0..count).collect(), parallel, |slice| {
            rows_by_owner(keys, &input, slice, count)
        })?;
        let copies: Vec<(usize, &mut Box<dyn Operator>)> =
            self.copies.iter_mut().enumerate().collect();
        let outputs = for_each(copies, parallel, |(index, copy)| {
            close_copy(copy.as_mut(), share_of(index, &input, &slices)?, epoch)
        })?;
        Ok(outputs.into_iter().flatten().collect())
    }

    fn wakeup(&self) -> Option<i64> {
        self.copies.iter().filter_map(|copy| copy.wakeup()).min()
    }

    /// The number of copies, then each copy's state: a restore with another number of workers
    /// keeps the checkpoint's number, since which copy owns a key depends on it.
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, DataflowError> {
        checkpoint_operators(self.copies.iter().map(AsRef::as_ref)).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), DataflowError> {
        let states = operator_states(state, "an exchange")?;
        if states.is_empty() {
            return Err(ExecutionError::Internal(
                "cannot restore an exchange without copies".into(),
            )
            .into());
        }
        if states.len() != self.copies.len() {
            self.copies = states
                .iter()
                .map(|_| (self.make)())
                .collect::<Result<_, _>>()?;
        }
        for (copy, state) in self.copies.iter_mut().zip(states) {
            if let Some(state) = state {
                copy.restore(state)?;
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let inner = self
            .copies
            .first()
            .map(|copy| copy.describe())
            .unwrap_or_default();
        format!("{inner}, partitioned by key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_spread_over_every_copy_and_stay_put() {
        let mut counts = [0usize; 4];
        for key in 0u64..10_000 {
            counts[owner(stable_hash(&key.to_be_bytes()), 4) as usize] += 1;
        }
        for count in counts {
            assert!((2_000..3_000).contains(&count), "{counts:?}");
        }
        // Recorded in checkpoints: a change to the hash would send restored keys elsewhere.
        assert_eq!(stable_hash(b"tributary"), 0x6d13_12f3_99b4_27dc);
    }
}
