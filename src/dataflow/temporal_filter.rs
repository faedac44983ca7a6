//! Temporal filter: keeps each row while the clock is within bounds computed from the row
//! (`WHERE ts > now() - INTERVAL '1 hour'`), so rows leave, or enter, as time passes.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampNanosecondType};
use datafusion::arrow::row::RowConverter;
use datafusion::physical_expr::PhysicalExpr;

use super::change_batch::{changes_in_schema, encode_rows, row_converter_for};
use super::{ChangeBatch, Epoch, Operator, Owned};
use crate::error::{DataflowError, ExecutionError};
use crate::storage::codec::{DecodeError, Decoder, Encoder};

/// A row (`arrow-row` bytes) and the weight it enters (+) or leaves (−) with.
type WeightedRow = (Box<[u8]>, i64);

/// The current time in nanoseconds since 1970 (UTC): the clock temporal filters compare with.
pub fn clock_nanoseconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How a row's time `t` (its expression minus the bound's offset) limits the clock `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BoundKind {
    /// Visible while `now < t`.
    Before,
    /// Visible while `now <= t`.
    AtOrBefore,
    /// Visible once `now > t`.
    After,
    /// Visible once `now >= t`.
    AtOrAfter,
}

/// One comparison with the clock: `row_expression op now() + offset`.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub kind: BoundKind,
    pub offset_nanoseconds: i64,
}

/// Incremental rule: a row is visible during `[from, until)`, the intersection of its bounds,
/// which depends only on the row. When a change arrives (at the barrier's clock reading) it
/// passes at once if the clock is inside its interval, and the interval's ends still ahead are
/// scheduled as a change of the same weight (entering at `from`) and of the opposite weight
/// (leaving at `until`). A deletion schedules the opposite of what its insertion did, so the two
/// cancel. Each barrier also emits every scheduled change whose time has come; the coordinator
/// runs an epoch when [`Operator::wakeup`] says one is due, even without input. Work is
/// O(changes × log scheduled + due changes).
pub struct TemporalFilter {
    bounds: Vec<(Arc<dyn PhysicalExpr>, Bound)>,
    converter: RowConverter,
    schema: SchemaRef,
    /// This epoch's changes, waiting for the barrier's clock reading.
    arrived: Vec<ChangeBatch>,
    /// Clock time (nanoseconds since 1970) → rows entering (+) or leaving (−) then.
    scheduled: BTreeMap<i64, Vec<WeightedRow>>,
}

impl TemporalFilter {
    pub fn new(
        bounds: Vec<(Arc<dyn PhysicalExpr>, Bound)>,
        schema: SchemaRef,
    ) -> Result<Self, DataflowError> {
        Ok(Self {
            converter: row_converter_for(&schema)?,
            bounds,
            schema,
            arrived: Vec::new(),
            scheduled: BTreeMap::new(),
        })
    }

    /// Each row's visible interval `[from, until)`; `None` where a bound's time is NULL.
    fn intervals(&self, batch: &ChangeBatch) -> Result<Vec<Option<(i64, i64)>>, DataflowError> {
        let mut intervals = vec![Some((i64::MIN, i64::MAX)); batch.len()];
        for (expression, bound) in &self.bounds {
            let times = expression.evaluate(&batch.rows)?.into_array(batch.len())?;
            let times = match times.data_type() {
                DataType::Timestamp(_, zone) => cast(
                    &times,
                    &DataType::Timestamp(TimeUnit::Nanosecond, zone.clone()),
                )?,
                other => {
                    return Err(ExecutionError::Internal(format!(
                        "a temporal filter compares now() with {other}, not a timestamp"
                    ))
                    .into());
                }
            };
            let times = times.as_primitive::<TimestampNanosecondType>();
            for (row, interval) in intervals.iter_mut().enumerate() {
                let Some((from, until)) = interval else {
                    continue;
                };
                if times.is_null(row) {
                    *interval = None;
                    continue;
                }
                let time = times.value(row).saturating_sub(bound.offset_nanoseconds);
                match bound.kind {
                    BoundKind::Before => *until = (*until).min(time),
                    BoundKind::AtOrBefore => *until = (*until).min(time.saturating_add(1)),
                    BoundKind::After => *from = (*from).max(time.saturating_add(1)),
                    BoundKind::AtOrAfter => *from = (*from).max(time),
                }
            }
        }
        Ok(intervals)
    }

    fn schedule(&mut self, time: i64, row: &[u8], weight: i64) {
        self.scheduled
            .entry(time)
            .or_default()
            .push((row.into(), weight));
    }
}

impl Operator for TemporalFilter {
    fn process(
        &mut self,
        _port: usize,
        input: ChangeBatch,
    ) -> Result<Vec<ChangeBatch>, DataflowError> {
        self.arrived.push(input);
        Ok(Vec::new())
    }

    fn barrier(&mut self, _epoch: Epoch) -> Result<Vec<ChangeBatch>, DataflowError> {
        let now = clock_nanoseconds();
        let mut rows: Vec<Box<[u8]>> = Vec::new();
        let mut weights: Vec<i64> = Vec::new();
        for batch in std::mem::take(&mut self.arrived) {
            let intervals = self.intervals(&batch)?;
            let encoded = encode_rows(&self.converter, &batch.rows)?;
            for (row, interval) in intervals.into_iter().enumerate() {
                let Some((from, until)) = interval else {
                    continue;
                };
                if from >= until || until <= now {
                    continue;
                }
                let weight = batch.weights.value(row);
                let bytes = encoded.row(row);
                if now < from {
                    self.schedule(from, bytes.data(), weight);
                } else {
                    rows.push(bytes.data().into());
                    weights.push(weight);
                }
                if until != i64::MAX {
                    self.schedule(until, bytes.data(), -weight);
                }
            }
        }
        let later = self.scheduled.split_off(&now.saturating_add(1));
        for (_, due) in std::mem::replace(&mut self.scheduled, later) {
            for (row, weight) in due {
                rows.push(row);
                weights.push(weight);
            }
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let parser = self.converter.parser();
        let columns = self
            .converter
            .convert_rows(rows.iter().map(|row| parser.parse(row)))?;
        Ok(vec![changes_in_schema(
            &self.schema,
            columns,
            Int64Array::from(weights),
        )?])
    }

    fn wakeup(&self) -> Option<i64> {
        self.scheduled.keys().next().copied()
    }

    /// The scheduled changes: the rows still to enter or leave, with their times.
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, DataflowError> {
        let mut encoder = Encoder::default();
        encoder.u64(self.scheduled.len() as u64);
        for (time, rows) in &self.scheduled {
            encoder.i64(*time).u64(rows.len() as u64);
            for (row, weight) in rows {
                encoder.bytes(row).i64(*weight);
            }
        }
        Ok(Some(encoder.finish()))
    }

    /// The rows waiting for the clock are not keyed: a worker takes all it is given.
    fn restore(&mut self, state: &[u8], _owned: Owned<'_>) -> Result<(), DataflowError> {
        let corrupted = |error: DecodeError| {
            DataflowError::from(ExecutionError::Internal(format!(
                "cannot restore a temporal filter: {error}"
            )))
        };
        let mut decoder = Decoder::new(state);
        let times = decoder.count().map_err(corrupted)?;
        for _ in 0..times {
            let time = decoder.i64().map_err(corrupted)?;
            let count = decoder.count().map_err(corrupted)?;
            let rows = self.scheduled.entry(time).or_default();
            for _ in 0..count {
                let row: Box<[u8]> = decoder.bytes().map_err(corrupted)?.into();
                rows.push((row, decoder.i64().map_err(corrupted)?));
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let bounds: Vec<String> = self
            .bounds
            .iter()
            .map(|(expression, bound)| {
                format!(
                    "{expression} {:?} now() + {} ns",
                    bound.kind, bound.offset_nanoseconds
                )
            })
            .collect();
        format!("TemporalFilter: {}", bounds.join(" AND "))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::dataflow::testing::{column, epoch};

    const SECOND: i64 = 1_000_000_000;

    /// Rows `(id, until)` visible while the clock is before `until`: `until > now()`.
    fn until_filter() -> (TemporalFilter, SchemaRef) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new(
                "until",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                true,
            ),
        ]));
        let bound = Bound {
            kind: BoundKind::Before,
            offset_nanoseconds: 0,
        };
        let filter = TemporalFilter::new(vec![(column("until", 1), bound)], Arc::clone(&schema))
            .expect("filter");
        (filter, schema)
    }

    fn rows(schema: &SchemaRef, rows: &[(i64, Option<i64>)], weight: i64) -> ChangeBatch {
        let batch = RecordBatch::try_new(
            Arc::clone(schema),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|row| row.0))),
                Arc::new(TimestampNanosecondArray::from_iter(
                    rows.iter().map(|row| row.1),
                )),
            ],
        )
        .expect("batch");
        ChangeBatch::new(batch, Int64Array::from(vec![weight; rows.len()]))
    }

    /// The ids in `batches` with their summed weights.
    fn ids(batches: &[ChangeBatch]) -> Vec<(i64, i64)> {
        let mut ids = std::collections::BTreeMap::new();
        for batch in batches {
            let column = batch
                .rows
                .column(0)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            for row in 0..batch.len() {
                *ids.entry(column.value(row)).or_insert(0) += batch.weights.value(row);
            }
        }
        ids.into_iter().filter(|(_, weight)| *weight != 0).collect()
    }

    #[test]
    fn rows_pass_while_their_time_is_ahead_and_leave_when_it_comes() {
        let (mut filter, schema) = until_filter();
        let now = clock_nanoseconds();
        let soon = now + SECOND / 5;
        let out = epoch(
            &mut filter,
            rows(
                &schema,
                &[
                    (1, Some(now + 3600 * SECOND)),
                    (2, Some(soon)),
                    (3, Some(now - SECOND)),
                    (4, None),
                ],
                1,
            ),
        );
        // The past row and the NULL time never enter.
        assert_eq!(ids(&out), vec![(1, 1), (2, 1)]);
        assert_eq!(filter.wakeup(), Some(soon));
        // A row deleted before its time leaves at once and is not scheduled to leave again.
        let out = epoch(
            &mut filter,
            rows(&schema, &[(1, Some(now + 3600 * SECOND))], -1),
        );
        assert_eq!(ids(&out), vec![(1, -1)]);
        // Its departure was scheduled and cancelled by the deletion's opposite one: the due
        // time of the remaining row is next.
        let state = filter
            .checkpoint()
            .expect("checkpoint")
            .expect("a temporal filter keeps state");
        let (mut restored, _) = until_filter();
        restored.restore(&state, &|_| Ok(true)).expect("restore");
        assert_eq!(restored.wakeup(), Some(soon));
        while clock_nanoseconds() <= soon {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = restored.barrier(2).expect("barrier");
        assert_eq!(ids(&out), vec![(2, -1)]);
    }
}
