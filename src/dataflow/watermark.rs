//! Event time: the watermark of a relation as one dataflow sees it, and the filter that counts
//! and holds out the changes arriving behind it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::datatypes::{
    DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};

use super::{ChangeBatch, Epoch, Operator, Owned};
use crate::catalog::RelationId;
use crate::error::{DataflowError, ExecutionError};
use crate::storage::codec::{Decoder, Encoder};

/// The watermark before any row arrived: nothing is late and no window has closed.
pub const NO_WATERMARK: i64 = i64::MIN;

/// The watermark a [`LateRowFilter`] computes (nanoseconds since 1970), shared with the operators
/// of the same dataflow that close windows by it. Only the filter writes it, at its barrier;
/// the readers come after the filter in the dataflow's topological order and run on the same
/// thread in the same step, so each barrier sees the value of its own epoch.
#[derive(Debug, Clone)]
pub struct WatermarkCell(Arc<AtomicI64>);

impl Default for WatermarkCell {
    fn default() -> Self {
        Self(Arc::new(AtomicI64::new(NO_WATERMARK)))
    }
}

impl WatermarkCell {
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, watermark: i64) {
        self.0.store(watermark, Ordering::Relaxed);
    }
}

/// Incremental rule: a linear filter whose predicate moves with the watermark. A change passes
/// when its event time is at or after the watermark as it stood when the epoch began; the others
/// (and those without an event time) are late: counted, and kept out, so that windows closed by
/// the watermark never change again. At the barrier the watermark becomes the greatest event
/// time ever inserted minus the declared delay, and never moves back. Rows of one epoch are
/// never late to each other. Used only by views that emit on window close: every other view
/// maintains the relation exactly as it is, late rows included.
pub struct LateRowFilter {
    relation: RelationId,
    time_column: usize,
    delay_nanoseconds: i64,
    watermark: WatermarkCell,
    /// Greatest event time inserted in the current epoch.
    greatest_in_epoch: Option<i64>,
    late_rows: u64,
}

impl LateRowFilter {
    pub fn new(
        relation: RelationId,
        time_column: usize,
        delay_nanoseconds: i64,
        watermark: WatermarkCell,
    ) -> Self {
        Self {
            relation,
            time_column,
            delay_nanoseconds,
            watermark,
            greatest_in_epoch: None,
            late_rows: 0,
        }
    }
}

impl Operator for LateRowFilter {
    fn process(
        &mut self,
        _port: usize,
        input: ChangeBatch,
    ) -> Result<Vec<ChangeBatch>, DataflowError> {
        let watermark = self.watermark.get();
        let times = timestamp_nanoseconds(input.rows.column(self.time_column))?;
        let weights = input.weights.values();
        let mut late = 0u64;
        let mask: BooleanArray = times
            .iter()
            .zip(weights.iter())
            .map(|(time, &weight)| {
                let on_time = time.is_some_and(|time| time >= watermark);
                if on_time {
                    if weight > 0 {
                        self.greatest_in_epoch = self.greatest_in_epoch.max(*time);
                    }
                } else {
                    late += weight.unsigned_abs();
                }
                Some(on_time)
            })
            .collect();
        self.late_rows += late;
        if late == 0 {
            return Ok(vec![input]);
        }
        Ok(vec![input.filter(&mask)?])
    }

    fn barrier(&mut self, _epoch: Epoch) -> Result<Vec<ChangeBatch>, DataflowError> {
        if let Some(greatest) = self.greatest_in_epoch.take() {
            let candidate = greatest.saturating_sub(self.delay_nanoseconds);
            if candidate > self.watermark.get() {
                self.watermark.set(candidate);
            }
        }
        Ok(Vec::new())
    }

    fn late_rows(&self) -> Option<LateRows> {
        Some(LateRows {
            relation: self.relation,
            rows: self.late_rows,
            watermark: self.watermark.get(),
        })
    }

    /// The watermark and the count of late rows.
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, DataflowError> {
        let mut encoder = Encoder::default();
        encoder.i64(self.watermark.get()).u64(self.late_rows);
        Ok(Some(encoder.finish()))
    }

    /// A late-row filter runs on one worker: it takes the whole state.
    fn restore(&mut self, state: &[u8], _owned: Owned<'_>) -> Result<(), DataflowError> {
        let mut decoder = Decoder::new(state);
        let corrupted = |reason: String| {
            DataflowError::from(ExecutionError::Internal(format!(
                "cannot restore a watermark: {reason}"
            )))
        };
        self.watermark.set(decoder.i64().map_err(corrupted)?);
        self.late_rows = decoder.u64().map_err(corrupted)?;
        self.greatest_in_epoch = None;
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "LateRowFilter: column {} behind the watermark (greatest time - {} ns)",
            self.time_column, self.delay_nanoseconds
        )
    }
}

/// What a view's [`LateRowFilter`] has seen of one relation: the rows it kept out for arriving
/// behind the watermark, and the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LateRows {
    pub relation: RelationId,
    pub rows: u64,
    pub watermark: i64,
}

/// A timestamp column's values in nanoseconds since 1970, saturating at the ends of `i64`
/// (beyond the years 1677 and 2262 every time compares as the nearest end).
pub fn timestamp_nanoseconds(column: &ArrayRef) -> Result<Vec<Option<i64>>, DataflowError> {
    fn scaled<T: datafusion::arrow::datatypes::ArrowPrimitiveType<Native = i64>>(
        column: &ArrayRef,
        nanoseconds_per_unit: i64,
    ) -> Vec<Option<i64>> {
        column
            .as_primitive::<T>()
            .iter()
            .map(|value| value.map(|value| value.saturating_mul(nanoseconds_per_unit)))
            .collect()
    }
    Ok(match column.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            scaled::<TimestampSecondType>(column, 1_000_000_000)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            scaled::<TimestampMillisecondType>(column, 1_000_000)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            scaled::<TimestampMicrosecondType>(column, 1_000)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            scaled::<TimestampNanosecondType>(column, 1)
        }
        other => {
            return Err(ExecutionError::Internal(format!(
                "an event time must be a timestamp, not {other}"
            ))
            .into());
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn changes(times: &[Option<i64>], weights: &[i64]) -> ChangeBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        )]));
        let rows = RecordBatch::try_new(
            schema,
            vec![Arc::new(TimestampMicrosecondArray::from(times.to_vec()))],
        )
        .unwrap();
        ChangeBatch::new(rows, Int64Array::from(weights.to_vec()))
    }

    #[test]
    fn rows_behind_the_watermark_of_earlier_epochs_are_late() {
        let cell = WatermarkCell::default();
        // A delay of 5 µs.
        let mut filter = LateRowFilter::new(7, 0, 5_000, cell.clone());
        let out = filter
            .process(0, changes(&[Some(10), Some(3)], &[1, 1]))
            .unwrap();
        assert_eq!(
            out[0].len(),
            2,
            "rows of one epoch are never late to each other"
        );
        filter.barrier(1).unwrap();
        assert_eq!(cell.get(), 5_000);
        let out = filter
            .process(
                0,
                changes(&[Some(4), Some(5), None, Some(20)], &[1, -1, 1, 1]),
            )
            .unwrap();
        assert_eq!(out[0].len(), 2);
        assert_eq!(filter.late_rows().unwrap().rows, 2);
        filter.barrier(2).unwrap();
        assert_eq!(cell.get(), 15_000);
        // A deletion never raises the watermark, and it never moves back.
        filter.process(0, changes(&[Some(40)], &[-1])).unwrap();
        filter.barrier(3).unwrap();
        assert_eq!(cell.get(), 15_000);
        let state = filter.checkpoint().unwrap().unwrap();
        let restored_cell = WatermarkCell::default();
        let mut restored = LateRowFilter::new(7, 0, 5_000, restored_cell.clone());
        restored.restore(&state, &|_| Ok(true)).unwrap();
        assert_eq!(restored_cell.get(), 15_000);
        assert_eq!(restored.late_rows(), filter.late_rows());
    }
}
