//! Window functions in views: ROW_NUMBER, RANK, DENSE_RANK, LAG, LEAD, FIRST_VALUE, LAST_VALUE
//! and count/sum/avg/min/max over running, sliding or whole-partition frames.

use std::collections::BTreeMap;
use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::RowConverter;
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;
// Faster than std's SipHash on the short byte keys these maps hold; still seeded per map.
use hashbrown::HashMap;

use super::aggregate::rounded_average;
use super::change_batch::{changes_in_schema, encode_rows, row_converter_for};
use super::top_n::{SortKey, encoded_keys, evaluate_columns, order_converter, partition_converter};
use super::{ChangeBatch, Epoch, Operator, Owned};
use crate::error::{DataflowError, ExecutionError};
use crate::storage::codec::{DecodeError, Decoder, Encoder};

/// The window functions a view maintains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WindowFunctionKind {
    RowNumber,
    Rank,
    DenseRank,
    /// The value `offset` rows before, or the default.
    Lag,
    /// The value `offset` rows after, or the default.
    Lead,
    FirstValue,
    LastValue,
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

impl WindowFunctionKind {
    fn is_aggregate(self) -> bool {
        use WindowFunctionKind::*;
        matches!(self, Count | Sum | Avg | Min | Max)
    }
}

/// Which rows of its partition a function reads for a row (its frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Frame {
    /// From the partition's first row through the current row's last peer (rows with the same
    /// ORDER BY values): RANGE or GROUPS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW, the
    /// default with ORDER BY.
    ThroughPeers,
    /// ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW.
    ThroughRow,
    /// ROWS BETWEEN `start` AND `end` rows from the current one (negative: preceding).
    Rows { start: i64, end: i64 },
    /// Every row of the partition: no ORDER BY, or a frame ending UNBOUNDED FOLLOWING.
    Partition,
}

/// One window function of the SELECT list.
#[derive(Clone)]
pub struct WindowCall {
    pub kind: WindowFunctionKind,
    /// The value argument, if the function takes one, then LAG/LEAD's default.
    pub arguments: Vec<Arc<dyn PhysicalExpr>>,
    /// LAG/LEAD's distance (never negative: a negative LAG is planned as a LEAD).
    pub offset: usize,
    pub frame: Frame,
    pub output_type: DataType,
}

/// Everything the planner decides about a window node: the functions share their PARTITION BY
/// and ORDER BY.
#[derive(Clone)]
pub struct WindowDefinition {
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    pub partition_types: Vec<DataType>,
    pub order_by: Vec<SortKey>,
    pub calls: Vec<WindowCall>,
    pub input_schema: SchemaRef,
    /// The input's columns, then one per call.
    pub output_schema: SchemaRef,
}

/// A row's place in its partition: ORDER BY key and the row (both `arrow-row` bytes), then
/// which copy of an identical row it is, since copies get different row numbers.
type EntryKey = (Box<[u8]>, Box<[u8]>, u32);

struct Entry {
    /// Every call's arguments for this row, calls in order (shared by a row's copies).
    arguments: Arc<[ScalarValue]>,
    /// `None` while the row is new in this epoch.
    state: Option<RowState>,
}

/// What the barrier computed for a row: its outputs, and what the next row continues from.
#[derive(Clone, PartialEq)]
struct RowState {
    carry: Carry,
    outputs: Vec<ScalarValue>,
}

/// What a row's outputs continue from the row before: its 1-based position, its peer group's
/// number and first position (RANK), and each running aggregate through this row (one per
/// call with a running frame, in the calls' order: see `Window::running_slots`).
#[derive(Clone, PartialEq)]
struct Carry {
    position: u64,
    peer_group: u64,
    peer_group_start: u64,
    running: Vec<Accumulator>,
}

/// An aggregate over some rows: how many non-NULL values, and their sum or extreme (NULL
/// before the first).
#[derive(Clone, PartialEq)]
struct Accumulator {
    count: i64,
    value: ScalarValue,
}

impl Accumulator {
    fn empty() -> Self {
        Self {
            count: 0,
            value: ScalarValue::Null,
        }
    }
}

#[derive(Default)]
struct Partition {
    rows: BTreeMap<EntryKey, Entry>,
    /// The least and greatest keys inserted or deleted in this epoch.
    changed: Option<(EntryKey, EntryKey)>,
}

/// A row of output: the input row's bytes and the calls' values.
type OutputRow = (Box<[u8]>, Vec<ScalarValue>);

/// Incremental rule: the window integrates its input. Each partition keeps its rows ordered by
/// the ORDER BY key (ties broken by the row, copies of a row numbered), and each row keeps its
/// outputs and a carry: its position, peer group and the running aggregates through it. A
/// row's outputs depend only on the carry of the row before it and on a bounded neighbourhood
/// (LAG/LEAD's offset, a ROWS frame's extent, its peers). So at the barrier a changed partition
/// is recomputed from just before its first change, continuing from the stored carry there,
/// and the walk stops at the first peer group past the last change (and past the reach of LAG
/// and sliding frames) whose carry came out as it was: every later row's outputs are then
/// unchanged. Rows whose outputs changed emit `-old` and `+new`. Work per epoch is
/// O(changes × log rows + rows whose outputs change), except that a frame over the whole
/// partition (no ORDER BY, or UNBOUNDED FOLLOWING) and a change of the partition's first row
/// under FIRST_VALUE recompute the partition, as every row's output changes then anyway.
pub struct Window {
    definition: WindowDefinition,
    partition_converter: Option<RowConverter>,
    order_converter: Option<RowConverter>,
    row_converter: RowConverter,
    partitions: HashMap<Box<[u8]>, Partition>,
    /// Partitions changed in this epoch.
    touched: Vec<Box<[u8]>>,
    /// Rows deleted in this epoch that had been emitted: their outputs leave at the barrier.
    retracted: Vec<OutputRow>,
    /// Where each call's arguments start in an entry's `arguments`.
    argument_starts: Vec<usize>,
    /// Each call's place in a carry's `running`, for aggregates over a running frame.
    running_slots: Vec<Option<usize>>,
    reach: Reach,
    /// Rows the barriers have recomputed, for tests of how far a change's work reaches.
    recomputed: std::cell::Cell<u64>,
}

/// How far a change's effect travels, from the calls.
struct Reach {
    /// Rows after a change whose outputs read it directly (LAG, a ROWS frame's preceding part).
    after: usize,
    /// Rows before a change whose outputs read it (LEAD, a ROWS frame's following part).
    before: usize,
    /// Some call reads the whole partition for every row.
    whole_partition: bool,
    /// FIRST_VALUE from the partition's first row.
    first_row: bool,
    /// The carry's position and peer group matter (ROW_NUMBER, RANK, DENSE_RANK).
    positions: bool,
}

impl Window {
    pub fn new(definition: WindowDefinition) -> Result<Self, DataflowError> {
        let partition_converter = partition_converter(&definition.partition_types)?;
        let order_converter = if definition.order_by.is_empty() {
            None
        } else {
            Some(order_converter(&definition.order_by)?)
        };
        let row_converter = row_converter_for(&definition.input_schema)?;
        let mut argument_starts = Vec::new();
        let mut start = 0;
        let mut reach = Reach {
            after: 0,
            before: 0,
            whole_partition: false,
            first_row: false,
            positions: false,
        };
        use WindowFunctionKind::*;
        for call in &definition.calls {
            argument_starts.push(start);
            start += call.arguments.len();
            match call.kind {
                RowNumber | Rank | DenseRank => reach.positions = true,
                Lag => reach.after = reach.after.max(call.offset),
                Lead => reach.before = reach.before.max(call.offset),
                _ => {}
            }
            if matches!(call.kind, Lag | Lead | RowNumber | Rank | DenseRank) {
                continue;
            }
            match call.frame {
                Frame::Partition => reach.whole_partition = true,
                Frame::Rows { start, end } => {
                    reach.after = reach.after.max(start.min(0).unsigned_abs() as usize);
                    reach.before = reach.before.max(end.max(0) as usize);
                }
                Frame::ThroughPeers | Frame::ThroughRow => {
                    if call.kind == FirstValue {
                        reach.first_row = true;
                    }
                }
            }
        }
        let mut running_calls = 0;
        let running_slots = definition
            .calls
            .iter()
            .map(|call| {
                let running = call.kind.is_aggregate()
                    && matches!(call.frame, Frame::ThroughPeers | Frame::ThroughRow);
                running.then(|| {
                    running_calls += 1;
                    running_calls - 1
                })
            })
            .collect();
        Ok(Self {
            definition,
            partition_converter,
            order_converter,
            row_converter,
            partitions: HashMap::new(),
            touched: Vec::new(),
            retracted: Vec::new(),
            argument_starts,
            running_slots,
            reach,
            recomputed: std::cell::Cell::new(0),
        })
    }

    /// The carry before a partition's first row.
    fn initial_carry(&self) -> Carry {
        Carry {
            position: 0,
            peer_group: 0,
            peer_group_start: 0,
            running: vec![Accumulator::empty(); self.running_slots.iter().flatten().count()],
        }
    }

    /// Whether two carries give the rows after them the same outputs.
    fn same_continuation(&self, new: &Carry, old: &Carry) -> bool {
        new.running == old.running
            && (!self.reach.positions
                || (new.position == old.position
                    && new.peer_group == old.peer_group
                    && new.peer_group_start == old.peer_group_start))
    }

    /// Call `index`'s first argument in `arguments`, NULL when it takes none.
    fn argument<'a>(&self, arguments: &'a [ScalarValue], index: usize) -> &'a ScalarValue {
        static NULL: ScalarValue = ScalarValue::Null;
        if self.definition.calls[index].arguments.is_empty() {
            return &NULL;
        }
        &arguments[self.argument_starts[index]]
    }

    /// Adds one row's value to an aggregate.
    fn fold(
        &self,
        index: usize,
        accumulator: &mut Accumulator,
        value: &ScalarValue,
    ) -> Result<(), DataflowError> {
        let call = &self.definition.calls[index];
        if value.is_null() && !call.arguments.is_empty() {
            return Ok(());
        }
        accumulator.count += 1;
        use WindowFunctionKind::*;
        match call.kind {
            Sum | Avg => {
                let value = in_type(value.clone(), &sum_type(call, value))?;
                accumulator.value = if accumulator.value.is_null() {
                    value
                } else {
                    accumulator.value.add_checked(&value).map_err(|_| {
                        ExecutionError::NumericOutOfRange(format!(
                            "{} out of range in a window's sum",
                            call.output_type
                        ))
                    })?
                };
            }
            Min | Max => {
                let replace = accumulator.value.is_null()
                    || match value.partial_cmp(&accumulator.value) {
                        Some(std::cmp::Ordering::Less) => call.kind == Min,
                        Some(std::cmp::Ordering::Greater) => call.kind == Max,
                        _ => false,
                    };
                if replace {
                    accumulator.value = value.clone();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// An aggregate's value (cast to the call's output type with the other outputs).
    fn finish(
        &self,
        index: usize,
        accumulator: &Accumulator,
    ) -> Result<ScalarValue, DataflowError> {
        let call = &self.definition.calls[index];
        let value = match call.kind {
            WindowFunctionKind::Count => ScalarValue::Int64(Some(accumulator.count)),
            WindowFunctionKind::Avg if accumulator.count > 0 => {
                match (&accumulator.value, &call.output_type) {
                    (
                        ScalarValue::Decimal128(Some(sum), _, input_scale),
                        DataType::Decimal128(precision, scale),
                    ) => ScalarValue::Decimal128(
                        rounded_average(*sum, accumulator.count, *input_scale, *scale),
                        *precision,
                        *scale,
                    ),
                    (sum, _) => {
                        let sum = sum.cast_to(&DataType::Float64)?;
                        let ScalarValue::Float64(sum) = sum else {
                            return Err(internal("a window's average is not a number"));
                        };
                        ScalarValue::Float64(sum.map(|sum| sum / accumulator.count as f64))
                    }
                }
            }
            _ if accumulator.count == 0 => ScalarValue::Null,
            _ => accumulator.value.clone(),
        };
        Ok(value)
    }

    /// The arguments of the row `offset` rows from `key` (negative: before), if there is one.
    fn neighbour<'a>(
        rows: &'a BTreeMap<EntryKey, Entry>,
        key: &EntryKey,
        offset: i64,
    ) -> Option<&'a Arc<[ScalarValue]>> {
        let entry = match offset {
            0 => rows.get(key),
            offset if offset < 0 => rows
                .range::<EntryKey, _>((Unbounded, Excluded(key)))
                .rev()
                .nth(offset.unsigned_abs() as usize - 1)
                .map(|(_, entry)| entry),
            offset => rows
                .range::<EntryKey, _>((Excluded(key), Unbounded))
                .nth(offset as usize - 1)
                .map(|(_, entry)| entry),
        };
        entry.map(|entry| &entry.arguments)
    }

    /// The arguments of the rows of a ROWS frame `start ..= end` around `key`, in order.
    fn frame_rows<'a>(
        rows: &'a BTreeMap<EntryKey, Entry>,
        key: &EntryKey,
        start: i64,
        end: i64,
    ) -> Vec<&'a Arc<[ScalarValue]>> {
        let mut frame = Vec::new();
        if start < 0 {
            let preceding: Vec<_> = rows
                .range::<EntryKey, _>((Unbounded, Excluded(key)))
                .rev()
                .take(start.unsigned_abs() as usize)
                .enumerate()
                .filter(|(distance, _)| -(*distance as i64 + 1) <= end)
                .map(|(_, (_, entry))| &entry.arguments)
                .collect();
            frame.extend(preceding.into_iter().rev());
        }
        if start <= 0
            && end >= 0
            && let Some(entry) = rows.get(key)
        {
            frame.push(&entry.arguments);
        }
        if end > 0 {
            frame.extend(
                rows.range::<EntryKey, _>((Excluded(key), Unbounded))
                    .take(end as usize)
                    .enumerate()
                    .filter(|(distance, _)| *distance as i64 + 1 >= start)
                    .map(|(_, (_, entry))| &entry.arguments),
            );
        }
        frame
    }

    /// Recomputes a changed partition's outputs from just before its first change, pushing
    /// `(row, outputs, weight)` for every row whose outputs changed.
    fn settle(
        &self,
        partition: &mut Partition,
        output: &mut Vec<(OutputRow, i64)>,
    ) -> Result<(), DataflowError> {
        let Some((lowest, highest)) = partition.changed.take() else {
            return Ok(());
        };
        let rows = &mut partition.rows;
        let Some((first_key, _)) = rows.first_key_value() else {
            return Ok(());
        };
        let restart_from_first =
            self.reach.whole_partition || (self.reach.first_row && lowest <= *first_key);
        let start: EntryKey = if self.reach.whole_partition {
            first_key.clone()
        } else {
            // Back far enough for LEAD and following frames, and at least one row, so that a
            // deleted row's peers before it are recomputed; then back to that peer group's start.
            let mut candidate = rows
                .range::<EntryKey, _>((Included(&lowest), Unbounded))
                .next()
                .map(|(key, _)| key);
            for (key, _) in rows
                .range::<EntryKey, _>((Unbounded, Excluded(&lowest)))
                .rev()
                .take(self.reach.before.max(1))
            {
                candidate = Some(key);
            }
            let Some(candidate) = candidate else {
                return Ok(());
            };
            let group_start: EntryKey = (candidate.0.clone(), Box::default(), 0);
            match rows.range(group_start..).next() {
                Some((key, _)) => key.clone(),
                None => return Ok(()),
            }
        };
        let mut carry = match rows
            .range::<EntryKey, _>((Unbounded, Excluded(&start)))
            .next_back()
        {
            Some((_, entry)) => match &entry.state {
                Some(state) => state.carry.clone(),
                None => return Err(internal("a window row before a change has no state")),
            },
            None => self.initial_carry(),
        };
        let calls = &self.definition.calls;
        // Aggregates over the whole partition, computed once.
        let mut totals = Vec::new();
        if self.reach.whole_partition {
            for (index, call) in calls.iter().enumerate() {
                let mut accumulator = Accumulator::empty();
                if call.kind.is_aggregate() && call.frame == Frame::Partition {
                    for entry in rows.values() {
                        self.fold(
                            index,
                            &mut accumulator,
                            self.argument(&entry.arguments, index),
                        )?;
                    }
                }
                totals.push(accumulator);
            }
        }
        let first_row = rows
            .first_key_value()
            .map(|(_, entry)| Arc::clone(&entry.arguments));
        let last_row = rows
            .last_key_value()
            .map(|(_, entry)| Arc::clone(&entry.arguments));

        let mut cursor: Bound<EntryKey> = Included(start);
        let mut rows_past_last_change = 0usize;
        loop {
            // One peer group: its rows, their arguments and what they showed before.
            let group: Vec<(EntryKey, Arc<[ScalarValue]>, Option<RowState>)> = {
                let mut range = rows.range::<EntryKey, _>((cursor.as_ref(), Unbounded));
                let Some((first, _)) = range.clone().next() else {
                    break;
                };
                let order = first.0.clone();
                range
                    .by_ref()
                    .take_while(|(key, _)| key.0 == order)
                    .map(|(key, entry)| {
                        (
                            key.clone(),
                            Arc::clone(&entry.arguments),
                            entry.state.clone(),
                        )
                    })
                    .collect()
            };
            self.recomputed
                .set(self.recomputed.get() + group.len() as u64);
            let group_start = carry.position + 1;
            let peer_group = carry.peer_group + 1;
            let mut carries = Vec::with_capacity(group.len());
            for (_, arguments, _) in &group {
                carry.position += 1;
                carry.peer_group = peer_group;
                carry.peer_group_start = group_start;
                for (index, slot) in self.running_slots.iter().enumerate() {
                    if let Some(slot) = *slot {
                        self.fold(
                            index,
                            &mut carry.running[slot],
                            self.argument(arguments, index),
                        )?;
                    }
                }
                carries.push(carry.clone());
            }
            let group_arguments = group.last().map(|(_, arguments, _)| Arc::clone(arguments));
            let mut states = Vec::with_capacity(group.len());
            for (place, (key, arguments, old)) in group.iter().enumerate() {
                let row_carry = &carries[place];
                let mut outputs = Vec::with_capacity(calls.len());
                for (index, call) in calls.iter().enumerate() {
                    let value_of = |arguments: Option<&Arc<[ScalarValue]>>| -> ScalarValue {
                        arguments.map_or(ScalarValue::Null, |arguments| {
                            self.argument(arguments, index).clone()
                        })
                    };
                    use WindowFunctionKind::*;
                    let value = match (call.kind, call.frame) {
                        (RowNumber, _) => ScalarValue::UInt64(Some(row_carry.position)),
                        (Rank, _) => ScalarValue::UInt64(Some(row_carry.peer_group_start)),
                        (DenseRank, _) => ScalarValue::UInt64(Some(row_carry.peer_group)),
                        (Lag | Lead, _) => {
                            let offset = call.offset as i64;
                            let offset = if call.kind == Lag { -offset } else { offset };
                            match Self::neighbour(rows, key, offset) {
                                Some(neighbour) => value_of(Some(neighbour)),
                                // The default, when the call has one.
                                None if call.arguments.len() > 1 => {
                                    arguments[self.argument_starts[index] + 1].clone()
                                }
                                None => ScalarValue::Null,
                            }
                        }
                        (FirstValue, Frame::Rows { start, end }) => {
                            value_of(Self::frame_rows(rows, key, start, end).first().copied())
                        }
                        (FirstValue, _) => value_of(first_row.as_ref()),
                        (LastValue, Frame::Rows { start, end }) => {
                            value_of(Self::frame_rows(rows, key, start, end).last().copied())
                        }
                        (LastValue, Frame::ThroughPeers) => value_of(group_arguments.as_ref()),
                        (LastValue, Frame::ThroughRow) => value_of(Some(arguments)),
                        (LastValue, Frame::Partition) => value_of(last_row.as_ref()),
                        (_, Frame::ThroughRow | Frame::ThroughPeers) => {
                            let Some(slot) = self.running_slots[index] else {
                                return Err(internal("a running aggregate has no slot"));
                            };
                            // Through the row itself, or through its last peer.
                            let through = if call.frame == Frame::ThroughRow {
                                row_carry
                            } else {
                                &carry
                            };
                            self.finish(index, &through.running[slot])?
                        }
                        (_, Frame::Partition) => self.finish(index, &totals[index])?,
                        (_, Frame::Rows { start, end }) => {
                            let mut accumulator = Accumulator::empty();
                            for frame_row in Self::frame_rows(rows, key, start, end) {
                                self.fold(
                                    index,
                                    &mut accumulator,
                                    self.argument(frame_row, index),
                                )?;
                            }
                            self.finish(index, &accumulator)?
                        }
                    };
                    outputs.push(in_type(value, &call.output_type)?);
                }
                let state = RowState {
                    carry: row_carry.clone(),
                    outputs,
                };
                let unchanged = old.as_ref().is_some_and(|old| old.outputs == state.outputs);
                if !unchanged {
                    if let Some(old) = old {
                        output.push(((key.1.clone(), old.outputs.clone()), -1));
                    }
                    output.push(((key.1.clone(), state.outputs.clone()), 1));
                }
                states.push(state);
            }
            for ((key, _, _), state) in group.iter().zip(states) {
                if let Some(entry) = rows.get_mut(key) {
                    entry.state = Some(state);
                }
            }
            let Some((last_key, _, last_old)) = group.last() else {
                break;
            };
            rows_past_last_change += group.iter().filter(|(key, _, _)| *key > highest).count();
            let settled = !restart_from_first
                && *last_key > highest
                && rows_past_last_change >= self.reach.after
                && last_old
                    .as_ref()
                    .is_some_and(|old| self.same_continuation(&carry, &old.carry));
            if settled {
                break;
            }
            cursor = Excluded(last_key.clone());
        }
        Ok(())
    }

    /// Output rows with their weights as a change batch of the output schema.
    fn build_output(&self, rows: Vec<(OutputRow, i64)>) -> Result<ChangeBatch, DataflowError> {
        let parser = self.row_converter.parser();
        let mut columns: Vec<ArrayRef> = if self.definition.input_schema.fields().is_empty() {
            Vec::new()
        } else {
            self.row_converter
                .convert_rows(rows.iter().map(|((row, _), _)| parser.parse(row)))?
        };
        for (index, call) in self.definition.calls.iter().enumerate() {
            let values = rows.iter().map(|((_, outputs), _)| outputs[index].clone());
            let column = if rows.is_empty() {
                datafusion::arrow::array::new_empty_array(&call.output_type)
            } else {
                ScalarValue::iter_to_array(values)?
            };
            columns.push(column);
        }
        let weights: Int64Array = rows.iter().map(|(_, weight)| *weight).collect();
        Ok(changes_in_schema(
            &self.definition.output_schema,
            columns,
            weights,
        )?)
    }
}

/// What a sum or average adds `value` up in: the output type for a sum; for a decimal
/// average the value's own scale (rounded to the output's at the end), else double.
fn sum_type(call: &WindowCall, value: &ScalarValue) -> DataType {
    match (call.kind, &call.output_type) {
        (WindowFunctionKind::Avg, DataType::Decimal128(_, _)) => match value.data_type() {
            DataType::Decimal128(_, scale) => DataType::Decimal128(38, scale),
            _ => DataType::Decimal128(38, 0),
        },
        (WindowFunctionKind::Avg, _) => DataType::Float64,
        (_, output) => output.clone(),
    }
}

/// `value` as `data_type`. Casting a scalar goes through a one-row array, so values already of
/// the type (most, on the per-row path) skip it.
fn in_type(value: ScalarValue, data_type: &DataType) -> Result<ScalarValue, DataflowError> {
    if value.data_type() == *data_type {
        return Ok(value);
    }
    Ok(value.cast_to(data_type)?)
}

fn internal(message: &str) -> DataflowError {
    ExecutionError::Internal(message.to_string()).into()
}

impl Operator for Window {
    fn process(
        &mut self,
        _port: usize,
        input: ChangeBatch,
    ) -> Result<Vec<ChangeBatch>, DataflowError> {
        let row_count = input.len();
        let partition_keys = encoded_keys(
            self.partition_converter.as_ref(),
            &self.definition.partition_by,
            &input.rows,
        )?;
        let order_keys = encoded_keys(
            self.order_converter.as_ref(),
            self.definition.order_by.iter().map(|key| &key.expression),
            &input.rows,
        )?;
        let argument_columns = evaluate_columns(
            self.definition
                .calls
                .iter()
                .flat_map(|call| &call.arguments),
            &input.rows,
        )?;
        let rows = encode_rows(&self.row_converter, &input.rows)?;
        for row in 0..row_count {
            let partition_key: &[u8] = match &partition_keys {
                Some(keys) => keys.row(row).data(),
                None => &[],
            };
            let order_key: Box<[u8]> = match &order_keys {
                Some(keys) => keys.row(row).data().into(),
                None => Box::default(),
            };
            let row_bytes: Box<[u8]> = rows.row(row).data().into();
            let weight = input.weights.value(row);
            if !self.partitions.contains_key(partition_key) {
                self.partitions
                    .insert(partition_key.into(), Partition::default());
            }
            let Some(partition) = self.partitions.get_mut(partition_key) else {
                return Err(internal("a window partition vanished"));
            };
            if partition.changed.is_none() {
                self.touched.push(partition_key.into());
            }
            let copies = partition
                .rows
                .range(
                    (order_key.clone(), row_bytes.clone(), 0)
                        ..=(order_key.clone(), row_bytes.clone(), u32::MAX),
                )
                .next_back()
                .map_or(0, |((_, _, copy), _)| copy + 1);
            let (first, last) = if weight > 0 {
                let added = u32::try_from(weight)
                    .ok()
                    .and_then(|added| copies.checked_add(added))
                    .ok_or_else(|| internal("a window row has too many copies"))?;
                let arguments: Arc<[ScalarValue]> = argument_columns
                    .iter()
                    .map(|column| ScalarValue::try_from_array(column, row))
                    .collect::<Result<Vec<_>, _>>()?
                    .into();
                for copy in copies..added {
                    partition.rows.insert(
                        (order_key.clone(), row_bytes.clone(), copy),
                        Entry {
                            arguments: Arc::clone(&arguments),
                            state: None,
                        },
                    );
                }
                (copies, added.saturating_sub(1))
            } else if weight < 0 {
                let kept = u32::try_from(i64::from(copies) + weight).unwrap_or(0);
                for copy in kept..copies {
                    let key = (order_key.clone(), row_bytes.clone(), copy);
                    if let Some(Entry {
                        state: Some(state), ..
                    }) = partition.rows.remove(&key)
                    {
                        self.retracted.push((row_bytes.clone(), state.outputs));
                    }
                }
                (kept, copies.saturating_sub(1))
            } else {
                continue;
            };
            let first = (order_key.clone(), row_bytes.clone(), first);
            let last = (order_key, row_bytes, last);
            partition.changed = Some(match partition.changed.take() {
                None => (first, last),
                Some((lowest, highest)) => (lowest.min(first), highest.max(last)),
            });
        }
        Ok(Vec::new())
    }

    fn barrier(&mut self, _epoch: Epoch) -> Result<Vec<ChangeBatch>, DataflowError> {
        let mut output: Vec<(OutputRow, i64)> = std::mem::take(&mut self.retracted)
            .into_iter()
            .map(|row| (row, -1))
            .collect();
        for partition_key in std::mem::take(&mut self.touched) {
            let Some(mut partition) = self.partitions.remove(&partition_key) else {
                continue;
            };
            self.settle(&mut partition, &mut output)?;
            if !partition.rows.is_empty() {
                self.partitions.insert(partition_key, partition);
            }
        }
        // A row recomputed to what a deleted copy showed cancels out.
        let mut merged: HashMap<OutputRow, i64> = HashMap::new();
        for (row, weight) in output {
            *merged.entry(row).or_insert(0) += weight;
        }
        let rows: Vec<(OutputRow, i64)> = merged
            .into_iter()
            .filter(|(_, weight)| *weight != 0)
            .collect();
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![self.build_output(rows)?])
    }

    /// Every partition's rows (a row once per copy); outputs are recomputed on restore.
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, DataflowError> {
        let mut encoder = Encoder::default();
        encoder.u64(self.partitions.len() as u64);
        for (partition_key, partition) in &self.partitions {
            encoder
                .bytes(partition_key)
                .u64(partition.rows.len() as u64);
            for (_, row, _) in partition.rows.keys() {
                encoder.bytes(row);
            }
        }
        Ok(Some(encoder.finish()))
    }

    fn restore(&mut self, state: &[u8], owned: Owned<'_>) -> Result<(), DataflowError> {
        let corrupted = |error: DecodeError| {
            DataflowError::from(ExecutionError::Internal(format!(
                "cannot restore a window: {error}"
            )))
        };
        let mut decoder = Decoder::new(state);
        let partitions = decoder.count().map_err(corrupted)?;
        let mut kept: Vec<Box<[u8]>> = Vec::new();
        for _ in 0..partitions {
            let partition_key: Box<[u8]> = decoder.bytes().map_err(corrupted)?.into();
            let count = decoder.count().map_err(corrupted)?;
            let mut rows = Vec::with_capacity(count);
            for _ in 0..count {
                rows.push(Box::<[u8]>::from(decoder.bytes().map_err(corrupted)?));
            }
            if owned(&partition_key)? {
                kept.extend(rows);
            }
        }
        if kept.is_empty() {
            return Ok(());
        }
        let parser = self.row_converter.parser();
        let columns = if self.definition.input_schema.fields().is_empty() {
            Vec::new()
        } else {
            self.row_converter
                .convert_rows(kept.iter().map(|row| parser.parse(row)))?
        };
        let options = RecordBatchOptions::new().with_row_count(Some(kept.len()));
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(&self.definition.input_schema),
            columns,
            &options,
        )?;
        self.process(0, ChangeBatch::insertions(batch))?;
        // The restored rows were emitted before the checkpoint: compute, emit nothing.
        let mut discarded = Vec::new();
        for partition_key in std::mem::take(&mut self.touched) {
            if let Some(mut partition) = self.partitions.remove(&partition_key) {
                self.settle(&mut partition, &mut discarded)?;
                self.partitions.insert(partition_key, partition);
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let calls: Vec<String> = self
            .definition
            .calls
            .iter()
            .map(|call| format!("{:?}", call.kind))
            .collect();
        format!("Window: [{}]", calls.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::testing::{changes, column, epoch, integers, summed};

    /// A call reading column v (or nothing), BIGINT out.
    fn call(kind: WindowFunctionKind, reads_v: bool, offset: usize, frame: Frame) -> WindowCall {
        WindowCall {
            kind,
            arguments: if reads_v {
                vec![column("v", 2)]
            } else {
                Vec::new()
            },
            offset,
            frame,
            output_type: DataType::Int64,
        }
    }

    /// `calls` over rows `(g, t, v)` ordered by t, partitioned by g or not at all; the output
    /// columns are the input's, then `outputs`.
    fn window_over_t(partitioned: bool, calls: Vec<WindowCall>, outputs: &[&str]) -> Window {
        let input = integers(&["g", "t", "v"]);
        let output = integers(&[&["g", "t", "v"], outputs].concat());
        Window::new(WindowDefinition {
            partition_by: if partitioned {
                vec![column("g", 0)]
            } else {
                Vec::new()
            },
            partition_types: if partitioned {
                vec![DataType::Int64]
            } else {
                Vec::new()
            },
            order_by: vec![SortKey {
                expression: column("t", 1),
                data_type: DataType::Int64,
                descending: false,
                nulls_first: false,
            }],
            calls,
            input_schema: input,
            output_schema: output,
        })
        .expect("window")
    }

    /// Over rows `(g, t, v)` partitioned by g, ordered by t: row_number, lag(v), a running
    /// sum of v (ROWS), and the sum of v over the partition.
    fn window() -> (Window, SchemaRef) {
        let calls = vec![
            call(WindowFunctionKind::RowNumber, false, 0, Frame::ThroughRow),
            call(WindowFunctionKind::Lag, true, 1, Frame::ThroughRow),
            call(WindowFunctionKind::Sum, true, 0, Frame::ThroughRow),
            call(WindowFunctionKind::Sum, true, 0, Frame::Partition),
        ];
        let window = window_over_t(true, calls, &["rn", "previous", "running", "total"]);
        (window, integers(&["g", "t", "v"]))
    }

    fn row(g: i64, t: i64, v: i64) -> [Option<i64>; 3] {
        [Some(g), Some(t), Some(v)]
    }

    fn out(values: [i64; 4], previous: Option<i64>, running: i64, total: i64) -> Vec<Option<i64>> {
        let [g, t, v, rn] = values;
        vec![
            Some(g),
            Some(t),
            Some(v),
            Some(rn),
            previous,
            Some(running),
            Some(total),
        ]
    }

    #[test]
    fn a_change_updates_the_rows_behind_it_and_a_restore_continues() {
        let (mut window, schema) = window();
        let rows = [row(1, 10, 1), row(1, 20, 2), row(1, 30, 4), row(2, 10, 8)];
        let output = epoch(
            &mut window,
            changes(
                &schema,
                &[(&rows[0], 1), (&rows[1], 1), (&rows[2], 1), (&rows[3], 1)],
            ),
        );
        let expected: BTreeMap<_, _> = [
            (out([1, 10, 1, 1], None, 1, 7), 1),
            (out([1, 20, 2, 2], Some(1), 3, 7), 1),
            (out([1, 30, 4, 3], Some(2), 7, 7), 1),
            (out([2, 10, 8, 1], None, 8, 8), 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(summed(&output), expected);

        let state = window.checkpoint().expect("checkpoint").expect("state");
        let (mut restored, _) = self::window();
        restored.restore(&state, &|_| Ok(true)).expect("restore");
        // Deleting the middle row of group 1: the row behind it moves up and loses 2 from its
        // sum, and every row of the group sees the new total; group 2 is untouched.
        let output = epoch(&mut restored, changes(&schema, &[(&rows[1], -1)]));
        let expected: BTreeMap<_, _> = [
            (out([1, 10, 1, 1], None, 1, 7), -1),
            (out([1, 10, 1, 1], None, 1, 5), 1),
            (out([1, 20, 2, 2], Some(1), 3, 7), -1),
            (out([1, 30, 4, 3], Some(2), 7, 7), -1),
            (out([1, 30, 4, 2], Some(1), 5, 5), 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(summed(&output), expected);
    }

    #[test]
    fn an_insert_at_the_end_of_a_large_partition_recomputes_only_its_neighbourhood() {
        let input = integers(&["g", "t", "v"]);
        let calls = vec![
            call(WindowFunctionKind::RowNumber, false, 0, Frame::ThroughPeers),
            call(WindowFunctionKind::Lag, true, 1, Frame::ThroughPeers),
            call(WindowFunctionKind::Sum, true, 0, Frame::ThroughPeers),
        ];
        let mut window = window_over_t(false, calls, &["rn", "previous", "running"]);
        let rows: Vec<[Option<i64>; 3]> = (0..20_000).map(|t| row(0, t, 1)).collect();
        let batch: Vec<(&[Option<i64>], i64)> = rows.iter().map(|row| (&row[..], 1)).collect();
        epoch(&mut window, changes(&input, &batch));
        let before = window.recomputed.get();
        let output = epoch(&mut window, changes(&input, &[(&row(0, 20_000, 5), 1)]));
        // The new row and the peer group before it, where the walk starts.
        assert!(window.recomputed.get() - before <= 2);
        let expected: BTreeMap<_, _> = [(
            vec![
                Some(0),
                Some(20_000),
                Some(5),
                Some(20_001),
                Some(1),
                Some(20_005),
            ],
            1,
        )]
        .into_iter()
        .collect();
        assert_eq!(summed(&output), expected);
        // A change in the middle under LAG alone would stop after one row; a running sum and
        // row numbers change for every row behind it, and so must be recomputed.
        let before = window.recomputed.get();
        let output = epoch(&mut window, changes(&input, &[(&row(0, 19_990, 1), -1)]));
        assert!(window.recomputed.get() - before <= 13);
        assert_eq!(summed(&output).len(), 21);
    }
}
