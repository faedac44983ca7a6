//! Aggregate: GROUP BY with count, sum, avg, min, max, bool_and/or, variance and stddev,
//! string_agg and array_agg, each optionally DISTINCT and FILTERed, maintained per group.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float64Array, Int64Array,
    IntervalMonthDayNanoArray, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Float64Type, Int64Type, IntervalMonthDayNano,
    IntervalMonthDayNanoType, IntervalUnit, SchemaRef,
};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;
// Faster than std's SipHash on the short byte keys these maps hold; still seeded per map.
use hashbrown::HashMap;

use super::change_batch::changes_in_schema;
use super::group_index::GroupIndex;
use super::top_n::{OrderedRows, SortKey, order_converter};
use super::watermark::{WatermarkCell, timestamp_nanoseconds};
use super::{ChangeBatch, Epoch, Operator, Owned};
use crate::error::{DataflowError, ExecutionError};
use crate::storage::codec::{DecodeError, Decoder, Encoder};

/// The aggregate functions the incremental aggregate maintains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AggregateFunction {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    BoolAnd,
    BoolOr,
    VarianceSample,
    VariancePopulation,
    StddevSample,
    StddevPopulation,
    StringAgg,
    ArrayAgg,
}

/// Which part of an aggregation an [`Aggregate`] does. Splitting it in two lets a group whose
/// rows are spread over every worker (a global aggregate, a window's groups) be aggregated where
/// the rows are, with only each worker's partial state crossing to the group's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum AggregatePhase {
    /// All of it: rows in, each group's results out.
    #[default]
    Whole,
    /// The first half, on one worker's share of the rows: rows in, each group's partial state
    /// out (the columns [`partial_state_types`] lists per call, after the group columns).
    Partial,
    /// The second half: the partial states of a group (from every worker) in, results out.
    Final,
}

/// The columns a call's partial state takes in a partial aggregate's output: how many input
/// values were not NULL, then what the function sums (an exact sum as DECIMAL(38, 0) holding the
/// unscaled value, a float sum, the extreme value, the number of true values, or the sum and sum
/// of squares). `None` for calls whose state does not merge: DISTINCT (a value counted on two
/// workers counts once), string_agg and array_agg (their order is over all rows).
pub fn partial_state_types(
    function: AggregateFunction,
    input_type: &DataType,
    distinct: bool,
) -> Option<Vec<DataType>> {
    use AggregateFunction::*;
    if distinct {
        return None;
    }
    let mut types = vec![DataType::Int64];
    match function {
        Count => {}
        Sum | Avg if input_type.is_floating() => types.push(DataType::Float64),
        Sum | Avg
            if input_type.is_integer() || matches!(input_type, DataType::Decimal128(_, _)) =>
        {
            types.push(EXACT_SUM_TYPE)
        }
        Sum | Avg => return None,
        Min | Max => types.push(input_type.clone()),
        BoolAnd | BoolOr => types.push(DataType::Int64),
        VarianceSample | VariancePopulation | StddevSample | StddevPopulation => {
            types.extend([DataType::Float64, DataType::Float64])
        }
        StringAgg | ArrayAgg => return None,
    }
    Some(types)
}

/// How a partial state carries an exact (integer or decimal) sum: its unscaled 128-bit value.
const EXACT_SUM_TYPE: DataType = DataType::Decimal128(38, 0);

/// One aggregate in the SELECT list: `function([DISTINCT] argument [ORDER BY ...]) [FILTER
/// (WHERE ...)]`, producing `output_type`.
#[derive(Clone)]
pub struct AggregateCall {
    pub function: AggregateFunction,
    pub argument: Arc<dyn PhysicalExpr>,
    pub input_type: DataType,
    pub output_type: DataType,
    /// Each distinct argument value counts once.
    pub distinct: bool,
    /// Only rows passing it are aggregated.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// string_agg and array_agg: the order of the values (by value when empty).
    pub order_by: Vec<SortKey>,
    /// string_agg's separator.
    pub delimiter: String,
}

/// Incremental rule: aggregation integrates its input. Each group keeps its row count and, per
/// aggregate, a state that absorbs a change of weight w in O(1) (count += w·[x not null],
/// sum += w·x, bool_and/or count true values, variance keeps the sum and the sum of squares)
/// or O(log values) (min/max keep a multiset of values, so deleting the current extreme falls
/// back to the next one; string_agg and array_agg keep their values ordered and rebuild a
/// touched group's result). DISTINCT keeps each group's multiset of argument values and lets
/// a value through only when its count crosses zero; FILTER zeroes the weight of rows that do
/// not pass. At the barrier every group touched in the epoch emits
/// `-old row` and `+new row` (only `+new` if it is new, only `-old` if its last row left). A
/// global aggregate (no GROUP BY) has one group that always exists, so it emits a row even for an
/// empty input, as Postgres does. Work per epoch is O(changes + touched groups).
///
/// Emitting on window close ([`Aggregate::close_windows`]) changes when groups are emitted, not
/// what they hold: a group of a window still open emits nothing; when the watermark reaches the
/// window's end, each of its groups emits its final row once and its state is freed. The
/// watermark's filter keeps out the changes that could still touch a closed window.
///
/// Split in two ([`AggregatePhase`]), each worker's partial aggregate keeps the rule above for
/// its share of the rows but emits a group's partial state instead of its results, and the
/// final aggregate, by group key, treats each partial state row as a change of weight w that
/// adds w times that state (the counts and sums add, a min/max enters its multiset): the sum of
/// the partial states of a group is the state of all its rows, so its results are the same.
pub struct Aggregate {
    group_expressions: Vec<Arc<dyn PhysicalExpr>>,
    group_converter: Option<RowConverter>,
    calls: Vec<CallState>,
    schema: SchemaRef,
    /// Group key (row-encoded) → slot in the per-group state vectors.
    groups: GroupIndex,
    /// Total weight of the rows in each group; the group exists while it is positive.
    row_counts: Vec<i64>,
    /// Slots touched in the current epoch, with what they showed before it.
    touched: Vec<Touched>,
    touched_mark: Vec<bool>,
    /// A global aggregate emits its first row at the first barrier, even with no input.
    global_row_emitted: bool,
    /// Set when the aggregate emits each window once, when it closes.
    closing: Option<ClosingWindows>,
    phase: AggregatePhase,
}

/// How an aggregate that emits on window close finds a group's window and when it closes.
#[derive(Clone)]
pub struct WindowClosing {
    /// The group expression holding the window's bound (window_end or window_start).
    pub group_column: usize,
    /// Added to that bound to give the window's end: 0 for window_end, the size for
    /// window_start.
    pub end_offset_nanoseconds: i64,
    /// The watermarks of the inputs: windows ending at or before the least of them are
    /// closed.
    pub watermarks: Vec<WatermarkCell>,
}

struct ClosingWindows {
    definition: WindowClosing,
    /// Per slot, the end of its group's window (nanoseconds since 1970).
    window_ends: Vec<i64>,
    /// Open windows by end, with the slots of their groups. A slot released and reused may be
    /// listed under a window it no longer belongs to; closing checks `window_ends`.
    open: BTreeMap<i64, Vec<u32>>,
}

struct Touched {
    slot: usize,
    key: Box<[u8]>,
    before: Option<Vec<AggregateValue>>,
}

/// One aggregate's value for one group, before it becomes an Arrow array.
#[derive(Debug, Clone, PartialEq)]
enum AggregateValue {
    Null,
    Integer(i128),
    Float(f64),
    Bool(bool),
    Text(String),
    /// A min/max value in `arrow-row` encoding.
    Encoded(Box<[u8]>),
    /// array_agg's values in order, `arrow-row` encoded.
    Sequence(Vec<Box<[u8]>>),
    Interval(IntervalMonthDayNano),
}

/// Each value (`arrow-row` bytes) with its multiplicity.
type ValueCounts = HashMap<Box<[u8]>, i64>;

/// Exact per-group sums of integers or decimals (at their scale): 64-bit until a sum does not
/// fit, then every sum widens to 128 bits. Most sums never need the second half.
enum IntegerSums {
    Narrow(Vec<i64>),
    Wide(Vec<i128>),
}

impl Default for IntegerSums {
    fn default() -> Self {
        IntegerSums::Narrow(Vec::new())
    }
}

impl IntegerSums {
    fn get(&self, slot: usize) -> i128 {
        match self {
            IntegerSums::Narrow(sums) => i128::from(sums[slot]),
            IntegerSums::Wide(sums) => sums[slot],
        }
    }

    fn set(&mut self, slot: usize, value: i128) {
        if let IntegerSums::Narrow(sums) = self {
            if let Ok(value) = i64::try_from(value) {
                sums[slot] = value;
                return;
            }
            let wide: Vec<i128> = sums.iter().map(|&sum| i128::from(sum)).collect();
            *self = IntegerSums::Wide(wide);
        }
        if let IntegerSums::Wide(sums) = self {
            sums[slot] = value;
        }
    }

    fn add(&mut self, slot: usize, value: i128) {
        let sum = self.get(slot) + value;
        self.set(slot, sum);
    }

    fn push_zero(&mut self) {
        match self {
            IntegerSums::Narrow(sums) => sums.push(0),
            IntegerSums::Wide(sums) => sums.push(0),
        }
    }
}

enum Sums {
    Integer(IntegerSums),
    Float(Vec<f64>),
    Extremes(Vec<BTreeMap<Box<[u8]>, i64>>, RowConverter),
    /// bool_and/bool_or: how many non-null inputs are true.
    Trues(Vec<i64>),
    /// Variance and standard deviation: the sum and the sum of squares.
    Moments(Vec<(f64, f64)>),
    /// string_agg/array_agg: (order key, value) → multiplicity, with the converters of both.
    Ordered(Vec<OrderedRows>, RowConverter, RowConverter),
    /// sum over intervals: months, days and nanoseconds, each summed apart as Postgres does
    /// (an interval's fields do not convert into each other exactly).
    Intervals(Vec<[i128; 3]>),
    CountOnly,
}

struct CallState {
    call: AggregateCall,
    /// Inputs counted per slot: the non-null ones (every one for array_agg); whether the
    /// result is NULL.
    non_null: Vec<i64>,
    sums: Sums,
    /// DISTINCT: per slot, each argument value's multiplicity, and their converter.
    distinct: Option<(Vec<ValueCounts>, RowConverter)>,
}

impl Aggregate {
    pub fn new(
        group_expressions: Vec<Arc<dyn PhysicalExpr>>,
        group_types: Vec<DataType>,
        calls: Vec<AggregateCall>,
        schema: SchemaRef,
    ) -> Result<Self, DataflowError> {
        let group_converter = if group_types.is_empty() {
            None
        } else {
            Some(RowConverter::new(
                group_types.into_iter().map(SortField::new).collect(),
            )?)
        };
        let calls = calls
            .into_iter()
            .map(CallState::new)
            .collect::<Result<Vec<_>, _>>()?;
        let mut aggregate = Self {
            group_expressions,
            group_converter,
            calls,
            schema,
            groups: GroupIndex::default(),
            row_counts: Vec::new(),
            touched: Vec::new(),
            touched_mark: Vec::new(),
            global_row_emitted: false,
            closing: None,
            phase: AggregatePhase::Whole,
        };
        if aggregate.is_global() {
            aggregate.slot_for(&[])?;
        }
        Ok(aggregate)
    }

    /// Makes the aggregate emit each group once, when the watermark closes its window (EMIT ON
    /// WINDOW CLOSE), and free the group then.
    pub fn close_windows(mut self, closing: WindowClosing) -> Result<Self, DataflowError> {
        if self.is_global() || closing.group_column >= self.group_expressions.len() {
            return Err(ExecutionError::Internal(
                "emitting on window close needs a window among the group keys".into(),
            )
            .into());
        }
        self.closing = Some(ClosingWindows {
            definition: closing,
            window_ends: vec![i64::MAX; self.row_counts.len()],
            open: BTreeMap::new(),
        });
        Ok(self)
    }

    /// Makes the aggregate do one half of a two-phase aggregation (see [`AggregatePhase`]). A
    /// final aggregate's input is the partial aggregate's output: the group columns, then each
    /// call's partial state.
    pub fn with_phase(mut self, phase: AggregatePhase) -> Result<Self, DataflowError> {
        if phase != AggregatePhase::Whole {
            let splits = self.closing.is_none()
                && self.calls.iter().all(|call| {
                    partial_state_types(
                        call.call.function,
                        &call.call.input_type,
                        call.call.distinct,
                    )
                    .is_some()
                });
            if !splits {
                return Err(ExecutionError::Internal(
                    "this aggregate cannot be split into a partial and a final phase".into(),
                )
                .into());
            }
        }
        self.phase = phase;
        Ok(self)
    }

    fn is_global(&self) -> bool {
        self.group_converter.is_none()
    }

    /// The group's slot, and whether the group is new.
    fn slot_for(&mut self, key: &[u8]) -> Result<(usize, bool), DataflowError> {
        let (slot, created) = self.groups.get_or_insert(key)?;
        if created && slot == self.row_counts.len() {
            self.row_counts.push(0);
            self.touched_mark.push(false);
            for call in &mut self.calls {
                call.grow();
            }
            if let Some(closing) = &mut self.closing {
                closing.window_ends.push(i64::MAX);
            }
        }
        Ok((slot, created))
    }

    fn touch(&mut self, slot: usize, key: &[u8]) -> Result<(), DataflowError> {
        if self.touched_mark[slot] {
            return Ok(());
        }
        self.touched_mark[slot] = true;
        // A group of an open window has shown nothing yet.
        let existed = if self.closing.is_some() {
            false
        } else if self.is_global() {
            self.global_row_emitted
        } else {
            self.exists(slot)?
        };
        let before = if existed {
            Some(self.values(slot)?)
        } else {
            None
        };
        self.touched.push(Touched {
            slot,
            key: key.into(),
            before,
        });
        Ok(())
    }

    /// What the aggregate shows for a group: its results, or a partial aggregate's state (each
    /// call's columns one after another).
    fn values(&self, slot: usize) -> Result<Vec<AggregateValue>, DataflowError> {
        if self.phase == AggregatePhase::Partial {
            let rows = AggregateValue::Integer(i128::from(self.row_counts[slot]));
            return Ok(std::iter::once(rows)
                .chain(self.calls.iter().flat_map(|call| call.partial_state(slot)))
                .collect());
        }
        self.calls.iter().map(|call| call.value(slot)).collect()
    }

    fn build_output(
        &self,
        keys: &[&[u8]],
        values: &[Vec<AggregateValue>],
        weights: Vec<i64>,
    ) -> Result<ChangeBatch, DataflowError> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        if let Some(converter) = &self.group_converter {
            let parser = converter.parser();
            columns.extend(converter.convert_rows(keys.iter().map(|key| parser.parse(key)))?);
        }
        let mut index = 0;
        if self.phase == AggregatePhase::Partial {
            let rows: Vec<&AggregateValue> = values.iter().map(|row| &row[0]).collect();
            columns.push(plain_column(&DataType::Int64, &rows)?);
            index = 1;
        }
        for call in &self.calls {
            if self.phase == AggregatePhase::Partial {
                for (part, data_type) in call.state_types().iter().enumerate() {
                    let column: Vec<&AggregateValue> =
                        values.iter().map(|row| &row[index]).collect();
                    columns.push(call.build_state(part, data_type, &column)?);
                    index += 1;
                }
            } else {
                let column: Vec<&AggregateValue> = values.iter().map(|row| &row[index]).collect();
                columns.push(call.build(&column)?);
                index += 1;
            }
        }
        Ok(changes_in_schema(
            &self.schema,
            columns,
            Int64Array::from(weights),
        )?)
    }

    /// Whether a (grouped) group is there. A partial aggregate's share of a group may hold
    /// more deletions than insertions (a row inserted on one worker and deleted on another): it
    /// is there while any of its state is, since the final aggregate adds it to the others.
    fn exists(&self, slot: usize) -> Result<bool, DataflowError> {
        if self.phase == AggregatePhase::Partial {
            return Ok(self.row_counts[slot] != 0 || self.calls.iter().any(|call| call.holds(slot)));
        }
        Ok(self.row_count(slot)? > 0)
    }

    /// The group's row count, which more deletions than insertions would make negative.
    fn row_count(&self, slot: usize) -> Result<i64, DataflowError> {
        let count = self.row_counts[slot];
        if count < 0 {
            return Err(ExecutionError::Internal(format!(
                "aggregate group holds {count} rows: more deletions than insertions arrived"
            ))
            .into());
        }
        Ok(count)
    }

    fn release(&mut self, slot: usize, key: &[u8]) {
        self.groups.remove(key);
        for call in &mut self.calls {
            call.reset(slot);
        }
        self.row_counts[slot] = 0;
    }
}

impl Aggregate {
    /// Emit on window close, at a barrier: groups of open windows stay silent (and those whose
    /// last row left are freed); each group of a window the watermark has closed emits its final
    /// row and is freed.
    fn close_due_windows(&mut self) -> Result<Vec<ChangeBatch>, DataflowError> {
        for entry in std::mem::take(&mut self.touched) {
            self.touched_mark[entry.slot] = false;
            let count = self.row_count(entry.slot)?;
            if count == 0 {
                self.release(entry.slot, &entry.key);
            }
        }
        let Some(closing) = &mut self.closing else {
            return Ok(Vec::new());
        };
        let watermark = closing
            .definition
            .watermarks
            .iter()
            .map(WatermarkCell::get)
            .min()
            .unwrap_or(super::watermark::NO_WATERMARK);
        let mut closed: Vec<usize> = Vec::new();
        while let Some(entry) = closing.open.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            let (end, mut slots) = entry.remove_entry();
            slots.sort_unstable();
            slots.dedup();
            closed.extend(
                slots
                    .into_iter()
                    .map(|slot| slot as usize)
                    .filter(|&slot| closing.window_ends[slot] == end),
            );
        }
        closed.retain(|&slot| self.row_counts[slot] > 0);
        if closed.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<Box<[u8]>> = closed
            .iter()
            .map(|&slot| self.groups.key(slot).into())
            .collect();
        let values = closed
            .iter()
            .map(|&slot| self.values(slot))
            .collect::<Result<Vec<_>, _>>()?;
        let key_slices: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
        let output = self.build_output(&key_slices, &values, vec![1; closed.len()])?;
        for (slot, key) in closed.into_iter().zip(&keys) {
            self.release(slot, key);
        }
        Ok(vec![output])
    }

    /// After a restore: finds every group's window again from its key.
    fn reopen_windows(&mut self) -> Result<(), DataflowError> {
        let (Some(closing), Some(converter)) = (&mut self.closing, &self.group_converter) else {
            return Ok(());
        };
        closing.open.clear();
        closing.window_ends.fill(i64::MAX);
        let live: Vec<(Box<[u8]>, usize)> = self
            .groups
            .iter()
            .map(|(key, slot)| (key.into(), slot))
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        let parser = converter.parser();
        let columns = converter.convert_rows(live.iter().map(|(key, _)| parser.parse(key)))?;
        let ends = window_ends(
            &columns[closing.definition.group_column],
            closing.definition.end_offset_nanoseconds,
        )?;
        for ((_, slot), end) in live.iter().zip(ends) {
            closing.open_window(*slot, end);
        }
        Ok(())
    }
}

impl ClosingWindows {
    fn open_window(&mut self, slot: usize, end: i64) {
        self.window_ends[slot] = end;
        self.open.entry(end).or_default().push(slot as u32);
    }
}

/// The end of each row's window, from the bound the group key holds; a window without a bound
/// never closes.
fn window_ends(bounds: &ArrayRef, end_offset_nanoseconds: i64) -> Result<Vec<i64>, DataflowError> {
    Ok(timestamp_nanoseconds(bounds)?
        .into_iter()
        .map(|bound| {
            bound.map_or(i64::MAX, |bound| {
                bound.saturating_add(end_offset_nanoseconds)
            })
        })
        .collect())
}

impl Operator for Aggregate {
    fn process(
        &mut self,
        _port: usize,
        input: ChangeBatch,
    ) -> Result<Vec<ChangeBatch>, DataflowError> {
        let rows = input.len();
        let group_slots: Vec<usize> = match &self.group_converter {
            None => {
                self.touch(0, &[])?;
                vec![0; rows]
            }
            Some(converter) => {
                let columns = self
                    .group_expressions
                    .iter()
                    .map(|expression| expression.evaluate(&input.rows)?.into_array(rows))
                    .collect::<Result<Vec<_>, _>>()?;
                let keys = converter.convert_columns(&columns)?;
                let window_ends = match &self.closing {
                    Some(closing) => Some(window_ends(
                        &columns[closing.definition.group_column],
                        closing.definition.end_offset_nanoseconds,
                    )?),
                    None => None,
                };
                let mut group_slots = Vec::with_capacity(rows);
                for (row, key) in keys.iter().enumerate() {
                    let (slot, created) = self.slot_for(key.as_ref())?;
                    if created
                        && let (Some(closing), Some(ends)) = (&mut self.closing, &window_ends)
                    {
                        closing.open_window(slot, ends[row]);
                    }
                    self.touch(slot, key.as_ref())?;
                    group_slots.push(slot);
                }
                group_slots
            }
        };
        let weights = input.weights.values();
        if self.phase == AggregatePhase::Final {
            // After the group columns: the partial state's row count, then each call's state.
            let groups = self.group_expressions.len();
            let rows = input.rows.columns().get(groups).ok_or_else(|| {
                ExecutionError::Internal("a final aggregate's input lacks its row counts".into())
            })?;
            let rows = integer_values(rows)?;
            for (row, (&slot, &weight)) in group_slots.iter().zip(weights.iter()).enumerate() {
                self.row_counts[slot] += weight * rows[row].unwrap_or(0) as i64;
            }
            let mut column = groups + 1;
            for call in &mut self.calls {
                column += call.merge(&input, &group_slots, column)?;
            }
        } else {
            for (&slot, &weight) in group_slots.iter().zip(weights.iter()) {
                self.row_counts[slot] += weight;
            }
            for call in &mut self.calls {
                call.update(&input, &group_slots)?;
            }
        }
        Ok(Vec::new())
    }

    fn barrier(&mut self, _epoch: Epoch) -> Result<Vec<ChangeBatch>, DataflowError> {
        if self.closing.is_some() {
            return self.close_due_windows();
        }
        let touched = std::mem::take(&mut self.touched);
        let mut keys: Vec<&[u8]> = Vec::new();
        let mut values = Vec::new();
        let mut weights = Vec::new();
        let mut released = vec![false; touched.len()];
        if self.is_global() && !self.global_row_emitted && touched.is_empty() {
            keys.push(&[]);
            values.push(self.values(0)?);
            weights.push(1);
        }
        for (index, entry) in touched.iter().enumerate() {
            self.touched_mark[entry.slot] = false;
            let exists = self.is_global() || self.exists(entry.slot)?;
            let after = if exists {
                Some(self.values(entry.slot)?)
            } else {
                None
            };
            released[index] = !exists;
            if entry.before == after {
                continue;
            }
            if let Some(before) = &entry.before {
                keys.push(&entry.key);
                values.push(before.clone());
                weights.push(-1);
            }
            if let Some(after) = after {
                keys.push(&entry.key);
                values.push(after);
                weights.push(1);
            }
        }
        self.global_row_emitted = self.global_row_emitted || self.is_global();
        let output = if weights.is_empty() {
            Vec::new()
        } else {
            vec![self.build_output(&keys, &values, weights)?]
        };
        for (entry, released) in touched.iter().zip(released) {
            if released {
                self.release(entry.slot, &entry.key);
            }
        }
        Ok(output)
    }

    /// Every live group: its key, row count and each aggregate's running state.
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, DataflowError> {
        let mut encoder = Encoder::default();
        encoder
            .u8(u8::from(self.global_row_emitted))
            .u64(self.groups.len() as u64);
        for (key, slot) in self.groups.iter() {
            encoder.bytes(key).i64(self.row_counts[slot]);
            for call in &self.calls {
                call.checkpoint(slot, &mut encoder);
            }
        }
        Ok(Some(encoder.finish()))
    }

    fn restore(&mut self, state: &[u8], owned: Owned<'_>) -> Result<(), DataflowError> {
        let corrupted = |reason: String| {
            DataflowError::from(ExecutionError::Internal(format!(
                "cannot restore an aggregate: {reason}"
            )))
        };
        let mut decoder = Decoder::new(state);
        self.global_row_emitted |= decoder.u8().map_err(corrupted)? == 1;
        let groups = decoder.count().map_err(corrupted)?;
        let everything = |_: &[u8]| Ok(true);
        // A group this worker does not own is still read through, into a slot released after.
        for _ in 0..groups {
            let key = decoder.bytes().map_err(corrupted)?;
            let keep = owned(key)?;
            let (slot, _) = self.slot_for(key)?;
            let rows = decoder.i64().map_err(corrupted)?;
            if self.phase == AggregatePhase::Partial {
                // Shares of one group saved on several workers add up here. The min/max values
                // go to the worker their rows are hashed to now (so a deletion finds its
                // insertion); the sums, which any worker may hold, to the one owning the hash of
                // the group key.
                if keep {
                    self.row_counts[slot] += rows;
                }
                for call in &mut self.calls {
                    call.restore(slot, &mut decoder, keep, owned)?;
                }
                // (The global group is always there, in slot 0.)
                if !self.is_global() && !self.exists(slot)? {
                    self.release(slot, key);
                }
                continue;
            }
            self.row_counts[slot] += rows;
            for call in &mut self.calls {
                call.restore(slot, &mut decoder, true, &everything)?;
            }
            if !keep {
                self.row_counts[slot] = 0;
                self.release(slot, key);
            }
        }
        if self.is_global() {
            // The global group always exists, even when the checkpoint saw no rows.
            self.slot_for(&[])?;
        }
        self.reopen_windows()?;
        Ok(())
    }

    /// After a restore onto another number of workers, a worker's partial state of a group is
    /// the sum of what several workers had (or nothing of what it had), so the final
    /// aggregate's record of every partial state is stale: each partial aggregate announces
    /// every group's state afresh at the next barrier, and each final aggregate forgets the
    /// states it had while remembering what it showed, so it emits only what changed.
    fn redistributed(&mut self) -> Result<(), DataflowError> {
        if self.phase == AggregatePhase::Whole {
            return Ok(());
        }
        let live: Vec<(Box<[u8]>, usize)> = self
            .groups
            .iter()
            .map(|(key, slot)| (key.into(), slot))
            .collect();
        for (key, slot) in live {
            if self.touched_mark[slot] {
                continue;
            }
            let before = match self.phase {
                AggregatePhase::Final if self.row_counts[slot] > 0 || self.global_row_emitted => {
                    Some(self.values(slot)?)
                }
                _ => None,
            };
            if self.phase == AggregatePhase::Final {
                self.row_counts[slot] = 0;
                for call in &mut self.calls {
                    call.reset(slot);
                }
            }
            self.touched_mark[slot] = true;
            self.touched.push(Touched { slot, key, before });
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let groups: Vec<String> = self
            .group_expressions
            .iter()
            .map(|e| e.to_string())
            .collect();
        let calls: Vec<String> = self
            .calls
            .iter()
            .map(|call| {
                let distinct = if call.call.distinct { "DISTINCT " } else { "" };
                format!("{:?}({distinct}{})", call.call.function, call.call.argument)
            })
            .collect();
        format!(
            "Aggregate: group by [{}], [{}]",
            groups.join(", "),
            calls.join(", ")
        )
    }
}

impl CallState {
    fn new(call: AggregateCall) -> Result<Self, DataflowError> {
        use AggregateFunction::*;
        let value_converter = || RowConverter::new(vec![SortField::new(call.input_type.clone())]);
        let sums = match call.function {
            Count => Sums::CountOnly,
            Min | Max => Sums::Extremes(Vec::new(), value_converter()?),
            BoolAnd | BoolOr => Sums::Trues(Vec::new()),
            VarianceSample | VariancePopulation | StddevSample | StddevPopulation => {
                Sums::Moments(Vec::new())
            }
            StringAgg | ArrayAgg => {
                let order_converter = order_converter(&call.order_by)?;
                Sums::Ordered(Vec::new(), value_converter()?, order_converter)
            }
            Sum | Avg => match call.input_type {
                ref float if float.is_floating() => Sums::Float(Vec::new()),
                ref integer if integer.is_integer() => Sums::Integer(IntegerSums::default()),
                DataType::Decimal128(_, _) => Sums::Integer(IntegerSums::default()),
                DataType::Interval(_) if call.function == Sum => Sums::Intervals(Vec::new()),
                ref other => {
                    return Err(ExecutionError::Internal(format!(
                        "{:?} over {other} is not maintained incrementally",
                        call.function
                    ))
                    .into());
                }
            },
        };
        let distinct = if call.distinct {
            Some((Vec::new(), value_converter()?))
        } else {
            None
        };
        Ok(Self {
            call,
            non_null: Vec::new(),
            sums,
            distinct,
        })
    }

    fn checkpoint(&self, slot: usize, encoder: &mut Encoder) {
        encoder.i64(self.non_null[slot]);
        match &self.sums {
            Sums::Integer(sums) => {
                encoder.i128(sums.get(slot));
            }
            Sums::Float(sums) => {
                encoder.f64(sums[slot]);
            }
            Sums::Extremes(multisets, _) => {
                encoder.u64(multisets[slot].len() as u64);
                for (value, count) in &multisets[slot] {
                    encoder.bytes(value).i64(*count);
                }
            }
            Sums::Trues(trues) => {
                encoder.i64(trues[slot]);
            }
            Sums::Moments(moments) => {
                encoder.f64(moments[slot].0).f64(moments[slot].1);
            }
            Sums::Ordered(values, _, _) => {
                encoder.u64(values[slot].len() as u64);
                for ((order, value), count) in &values[slot] {
                    encoder.bytes(order).bytes(value).i64(*count);
                }
            }
            Sums::Intervals(sums) => {
                let [months, days, nanoseconds] = sums[slot];
                encoder.i128(months).i128(days).i128(nanoseconds);
            }
            Sums::CountOnly => {}
        }
        if let Some((distinct, _)) = &self.distinct {
            encoder.u64(distinct[slot].len() as u64);
            for (value, count) in &distinct[slot] {
                encoder.bytes(value).i64(*count);
            }
        }
    }

    /// Adds a group's saved state to the slot (see [`Aggregate::restore`]): its counts and sums
    /// if `keep_sums`, and each min/max value `keep_value` accepts.
    fn restore(
        &mut self,
        slot: usize,
        decoder: &mut Decoder,
        keep_sums: bool,
        keep_value: Owned<'_>,
    ) -> Result<(), DataflowError> {
        fn add_counts<K: Ord>(counts: &mut BTreeMap<K, i64>, key: K, count: i64) {
            *counts.entry(key).or_insert(0) += count;
        }
        let corrupted = |reason: DecodeError| {
            DataflowError::from(ExecutionError::Internal(format!(
                "cannot restore an aggregate: {reason}"
            )))
        };
        let kept = |value: i64| if keep_sums { value } else { 0 };
        let kept_float = |value: f64| if keep_sums { value } else { 0.0 };
        self.non_null[slot] += kept(decoder.i64().map_err(corrupted)?);
        match &mut self.sums {
            Sums::Integer(sums) => {
                let sum = decoder.i128().map_err(corrupted)?;
                if keep_sums {
                    sums.add(slot, sum);
                }
            }
            Sums::Float(sums) => sums[slot] += kept_float(decoder.f64().map_err(corrupted)?),
            Sums::Extremes(multisets, _) => {
                let count = decoder.count().map_err(corrupted)?;
                for _ in 0..count {
                    let value: Box<[u8]> = decoder.bytes().map_err(corrupted)?.into();
                    let count = decoder.i64().map_err(corrupted)?;
                    if keep_value(&value)? {
                        add_counts(&mut multisets[slot], value, count);
                    }
                }
            }
            Sums::Trues(trues) => trues[slot] += kept(decoder.i64().map_err(corrupted)?),
            Sums::Moments(moments) => {
                moments[slot].0 += kept_float(decoder.f64().map_err(corrupted)?);
                moments[slot].1 += kept_float(decoder.f64().map_err(corrupted)?);
            }
            Sums::Ordered(values, _, _) => {
                let count = decoder.count().map_err(corrupted)?;
                for _ in 0..count {
                    let order: Box<[u8]> = decoder.bytes().map_err(corrupted)?.into();
                    let value: Box<[u8]> = decoder.bytes().map_err(corrupted)?.into();
                    add_counts(
                        &mut values[slot],
                        (order, value),
                        decoder.i64().map_err(corrupted)?,
                    );
                }
            }
            Sums::Intervals(sums) => {
                for field in sums[slot].iter_mut() {
                    let value = decoder.i128().map_err(corrupted)?;
                    if keep_sums {
                        *field += value;
                    }
                }
            }
            Sums::CountOnly => {}
        }
        if let Some((distinct, _)) = &mut self.distinct {
            let count = decoder.count().map_err(corrupted)?;
            for _ in 0..count {
                let value: Box<[u8]> = decoder.bytes().map_err(corrupted)?.into();
                *distinct[slot].entry(value).or_insert(0) += decoder.i64().map_err(corrupted)?;
            }
        }
        Ok(())
    }

    /// Whether the slot holds anything of this call's state.
    fn holds(&self, slot: usize) -> bool {
        self.non_null[slot] != 0
            || match &self.sums {
                Sums::CountOnly => false,
                Sums::Integer(sums) => sums.get(slot) != 0,
                Sums::Float(sums) => sums[slot] != 0.0,
                Sums::Extremes(multisets, _) => !multisets[slot].is_empty(),
                Sums::Trues(trues) => trues[slot] != 0,
                Sums::Moments(moments) => moments[slot] != (0.0, 0.0),
                Sums::Ordered(values, _, _) => !values[slot].is_empty(),
                Sums::Intervals(sums) => sums[slot] != [0; 3],
            }
    }

    /// The columns of this call's partial state.
    fn state_types(&self) -> Vec<DataType> {
        partial_state_types(
            self.call.function,
            &self.call.input_type,
            self.call.distinct,
        )
        .unwrap_or_default()
    }

    /// The slot's partial state, one value per column of [`CallState::state_types`].
    fn partial_state(&self, slot: usize) -> Vec<AggregateValue> {
        let mut state = vec![AggregateValue::Integer(i128::from(self.non_null[slot]))];
        match &self.sums {
            // Their calls are never split in two (`partial_state_types` is None).
            Sums::CountOnly | Sums::Ordered(..) | Sums::Intervals(_) => {}
            Sums::Integer(sums) => state.push(AggregateValue::Integer(sums.get(slot))),
            Sums::Float(sums) => state.push(AggregateValue::Float(sums[slot])),
            Sums::Extremes(multisets, _) => {
                let extreme = if self.call.function == AggregateFunction::Min {
                    multisets[slot].first_key_value()
                } else {
                    multisets[slot].last_key_value()
                };
                state.push(match extreme {
                    Some((value, _)) => AggregateValue::Encoded(value.clone()),
                    None => AggregateValue::Null,
                });
            }
            Sums::Trues(trues) => state.push(AggregateValue::Integer(i128::from(trues[slot]))),
            Sums::Moments(moments) => state.extend([
                AggregateValue::Float(moments[slot].0),
                AggregateValue::Float(moments[slot].1),
            ]),
        }
        state
    }

    /// Column `part` of partial states (of type `data_type`).
    fn build_state(
        &self,
        part: usize,
        data_type: &DataType,
        values: &[&AggregateValue],
    ) -> Result<ArrayRef, DataflowError> {
        match &self.sums {
            // The count comes first; then the extreme, encoded.
            Sums::Extremes(_, converter) if part > 0 => {
                encoded_column(converter, &self.call.input_type, values)
            }
            _ => plain_column(data_type, values),
        }
    }

    /// Final phase: adds the partial states in the input's columns from `first_column` on, each
    /// times its row's weight, to the groups in `slots`. Returns how many columns they took.
    fn merge(
        &mut self,
        input: &ChangeBatch,
        slots: &[usize],
        first_column: usize,
    ) -> Result<usize, DataflowError> {
        let width = self.state_types().len();
        let column = |offset: usize| {
            input
                .rows
                .columns()
                .get(first_column + offset)
                .ok_or_else(|| {
                    DataflowError::from(ExecutionError::Internal(
                        "a final aggregate's input lacks a partial state column".into(),
                    ))
                })
        };
        let weights = input.weights.values();
        let counts = integer_values(column(0)?)?;
        for (row, (&slot, &weight)) in slots.iter().zip(weights.iter()).enumerate() {
            self.non_null[slot] += weight * counts[row].unwrap_or(0) as i64;
        }
        let rows = slots.iter().zip(weights.iter()).enumerate();
        match &mut self.sums {
            Sums::CountOnly | Sums::Ordered(..) | Sums::Intervals(_) => {}
            Sums::Integer(sums) => {
                let values = integer_values(column(1)?)?;
                for (row, (&slot, &weight)) in rows {
                    if let Some(value) = values[row] {
                        sums.add(slot, value * weight as i128);
                    }
                }
            }
            Sums::Float(sums) => {
                let values = cast(column(1)?, &DataType::Float64)?;
                let values = values.as_primitive::<Float64Type>();
                for (row, (&slot, &weight)) in rows {
                    if values.is_valid(row) {
                        sums[slot] += values.value(row) * weight as f64;
                    }
                }
            }
            Sums::Extremes(multisets, converter) => {
                let extremes = column(1)?;
                let encoded = converter.convert_columns(&[Arc::clone(extremes)])?;
                for (row, (&slot, &weight)) in rows {
                    if extremes.is_valid(row) && weight != 0 {
                        add_to_multiset(&mut multisets[slot], encoded.row(row).data(), weight);
                    }
                }
            }
            Sums::Trues(trues) => {
                let values = integer_values(column(1)?)?;
                for (row, (&slot, &weight)) in rows {
                    trues[slot] += weight * values[row].unwrap_or(0) as i64;
                }
            }
            Sums::Moments(moments) => {
                let sums = cast(column(1)?, &DataType::Float64)?;
                let squares = cast(column(2)?, &DataType::Float64)?;
                let (sums, squares) = (
                    sums.as_primitive::<Float64Type>(),
                    squares.as_primitive::<Float64Type>(),
                );
                for (row, (&slot, &weight)) in rows {
                    if sums.is_valid(row) && squares.is_valid(row) {
                        moments[slot].0 += sums.value(row) * weight as f64;
                        moments[slot].1 += squares.value(row) * weight as f64;
                    }
                }
            }
        }
        Ok(width)
    }

    fn grow(&mut self) {
        self.non_null.push(0);
        match &mut self.sums {
            Sums::Integer(sums) => sums.push_zero(),
            Sums::Float(sums) => sums.push(0.0),
            Sums::Extremes(values, _) => values.push(BTreeMap::new()),
            Sums::Trues(trues) => trues.push(0),
            Sums::Moments(moments) => moments.push((0.0, 0.0)),
            Sums::Ordered(values, _, _) => values.push(BTreeMap::new()),
            Sums::Intervals(sums) => sums.push([0; 3]),
            Sums::CountOnly => {}
        }
        if let Some((distinct, _)) = &mut self.distinct {
            distinct.push(HashMap::new());
        }
    }

    fn reset(&mut self, slot: usize) {
        self.non_null[slot] = 0;
        match &mut self.sums {
            Sums::Integer(sums) => sums.set(slot, 0),
            Sums::Float(sums) => sums[slot] = 0.0,
            Sums::Extremes(values, _) => values[slot].clear(),
            Sums::Trues(trues) => trues[slot] = 0,
            Sums::Moments(moments) => moments[slot] = (0.0, 0.0),
            Sums::Ordered(values, _, _) => values[slot].clear(),
            Sums::Intervals(sums) => sums[slot] = [0; 3],
            Sums::CountOnly => {}
        }
        if let Some((distinct, _)) = &mut self.distinct {
            distinct[slot].clear();
        }
    }

    /// The weight each row adds to its group's aggregate: zero when FILTER rejects it; with
    /// DISTINCT, ±1 only when its value's count crosses zero.
    fn effective_weights(
        &mut self,
        input: &ChangeBatch,
        argument: &ArrayRef,
        slots: &[usize],
    ) -> Result<Vec<i64>, DataflowError> {
        let mut weights = input.weights.values().to_vec();
        if let Some(filter) = &self.call.filter {
            let mask = filter.evaluate(&input.rows)?.into_array(input.len())?;
            let mask = mask.as_boolean_opt().ok_or_else(|| {
                ExecutionError::Internal(format!("aggregate FILTER {filter} is not boolean"))
            })?;
            for (row, weight) in weights.iter_mut().enumerate() {
                if !(mask.is_valid(row) && mask.value(row)) {
                    *weight = 0;
                }
            }
        }
        if let Some((distinct, converter)) = &mut self.distinct {
            let encoded = converter.convert_columns(&[Arc::clone(argument)])?;
            for (row, weight) in weights.iter_mut().enumerate() {
                if *weight == 0 || !argument.is_valid(row) {
                    continue;
                }
                let values = &mut distinct[slots[row]];
                let value = encoded.row(row);
                let before = values.get(value.data()).copied().unwrap_or(0);
                let after = before + *weight;
                if after == 0 {
                    values.remove(value.data());
                } else {
                    values.insert(value.data().into(), after);
                }
                *weight = i64::from(after > 0) - i64::from(before > 0);
            }
        }
        Ok(weights)
    }

    fn update(&mut self, input: &ChangeBatch, slots: &[usize]) -> Result<(), DataflowError> {
        let argument = self
            .call
            .argument
            .evaluate(&input.rows)?
            .into_array(input.len())?;
        let weights = self.effective_weights(input, &argument, slots)?;
        // array_agg keeps NULL values; every other aggregate skips them.
        let counts_nulls = self.call.function == AggregateFunction::ArrayAgg;
        for (row, (&slot, &weight)) in slots.iter().zip(weights.iter()).enumerate() {
            if counts_nulls || argument.is_valid(row) {
                self.non_null[slot] += weight;
            }
        }
        let rows = slots.iter().zip(weights.iter()).enumerate();
        match &mut self.sums {
            Sums::CountOnly => {}
            Sums::Intervals(sums) => {
                let values = cast(&argument, &DataType::Interval(IntervalUnit::MonthDayNano))?;
                let values = values.as_primitive::<IntervalMonthDayNanoType>();
                for (row, (&slot, &weight)) in rows {
                    if values.is_valid(row) {
                        let value = values.value(row);
                        let weight = i128::from(weight);
                        sums[slot][0] += i128::from(value.months) * weight;
                        sums[slot][1] += i128::from(value.days) * weight;
                        sums[slot][2] += i128::from(value.nanoseconds) * weight;
                    }
                }
            }
            Sums::Integer(sums) => {
                let values = integer_values(&argument)?;
                for (row, (&slot, &weight)) in rows {
                    if let Some(value) = values[row] {
                        sums.add(slot, value * weight as i128);
                    }
                }
            }
            Sums::Float(sums) => {
                let values = cast(&argument, &DataType::Float64)?;
                let values = values.as_primitive::<Float64Type>();
                for (row, (&slot, &weight)) in rows {
                    if values.is_valid(row) {
                        sums[slot] += values.value(row) * weight as f64;
                    }
                }
            }
            Sums::Moments(moments) => {
                let values = cast(&argument, &DataType::Float64)?;
                let values = values.as_primitive::<Float64Type>();
                for (row, (&slot, &weight)) in rows {
                    if values.is_valid(row) {
                        let value = values.value(row);
                        moments[slot].0 += value * weight as f64;
                        moments[slot].1 += value * value * weight as f64;
                    }
                }
            }
            Sums::Trues(trues) => {
                let values = argument.as_boolean_opt().ok_or_else(|| {
                    ExecutionError::Internal("bool_and/bool_or over a non-boolean".into())
                })?;
                for (row, (&slot, &weight)) in rows {
                    if values.is_valid(row) && values.value(row) {
                        trues[slot] += weight;
                    }
                }
            }
            Sums::Extremes(multisets, converter) => {
                let encoded = converter.convert_columns(&[Arc::clone(&argument)])?;
                for (row, (&slot, &weight)) in rows {
                    if argument.is_valid(row) && weight != 0 {
                        add_to_multiset(&mut multisets[slot], encoded.row(row).data(), weight);
                    }
                }
            }
            Sums::Ordered(values, value_converter, order_converter) => {
                let encoded = value_converter.convert_columns(&[Arc::clone(&argument)])?;
                let order_columns = self
                    .call
                    .order_by
                    .iter()
                    .map(|key| {
                        key.expression
                            .evaluate(&input.rows)?
                            .into_array(input.len())
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let order = if order_columns.is_empty() {
                    None
                } else {
                    Some(order_converter.convert_columns(&order_columns)?)
                };
                for (row, (&slot, &weight)) in rows {
                    if weight == 0 || !(counts_nulls || argument.is_valid(row)) {
                        continue;
                    }
                    let order_key: Box<[u8]> = match &order {
                        Some(order) => order.row(row).data().into(),
                        None => Box::default(),
                    };
                    let entry = (order_key, encoded.row(row).data().into());
                    let count = values[slot].entry(entry).or_insert(0);
                    *count += weight;
                    if *count == 0 {
                        let order_key: Box<[u8]> = match &order {
                            Some(order) => order.row(row).data().into(),
                            None => Box::default(),
                        };
                        values[slot].remove(&(order_key, encoded.row(row).data().into()));
                    }
                }
            }
        }
        Ok(())
    }

    fn value(&self, slot: usize) -> Result<AggregateValue, DataflowError> {
        use AggregateFunction::*;
        let non_null = self.non_null[slot];
        Ok(match (&self.call.function, &self.sums) {
            (Count, _) => AggregateValue::Integer(non_null as i128),
            (_, _) if non_null == 0 => AggregateValue::Null,
            (Sum, Sums::Integer(sums)) => AggregateValue::Integer(sums.get(slot)),
            (Sum, Sums::Float(sums)) => AggregateValue::Float(sums[slot]),
            (Sum, Sums::Intervals(sums)) => {
                let [months, days, nanoseconds] = sums[slot];
                match (
                    i32::try_from(months),
                    i32::try_from(days),
                    i64::try_from(nanoseconds),
                ) {
                    (Ok(months), Ok(days), Ok(nanoseconds)) => AggregateValue::Interval(
                        IntervalMonthDayNano::new(months, days, nanoseconds),
                    ),
                    _ => {
                        return Err(ExecutionError::DatetimeFieldOverflow(
                            "interval out of range".into(),
                        )
                        .into());
                    }
                }
            }
            (Avg, Sums::Float(sums)) => AggregateValue::Float(sums[slot] / non_null as f64),
            (Avg, Sums::Integer(sums)) => {
                match (&self.call.input_type, &self.call.output_type) {
                    (
                        DataType::Decimal128(_, input_scale),
                        DataType::Decimal128(_, output_scale),
                    ) => {
                        // Postgres's rule, which ad hoc queries follow too (planner::postgres_avg).
                        match rounded_average(sums.get(slot), non_null, *input_scale, *output_scale)
                        {
                            Some(average) => AggregateValue::Integer(average),
                            None => {
                                return Err(ExecutionError::NumericOutOfRange(
                                    "numeric field overflow in avg".into(),
                                )
                                .into());
                            }
                        }
                    }
                    _ => AggregateValue::Float(sums.get(slot) as f64 / non_null as f64),
                }
            }
            (Min, Sums::Extremes(multisets, _)) => match multisets[slot].first_key_value() {
                Some((key, _)) => AggregateValue::Encoded(key.clone()),
                None => AggregateValue::Null,
            },
            (Max, Sums::Extremes(multisets, _)) => match multisets[slot].last_key_value() {
                Some((key, _)) => AggregateValue::Encoded(key.clone()),
                None => AggregateValue::Null,
            },
            (BoolAnd, Sums::Trues(trues)) => AggregateValue::Bool(trues[slot] == non_null),
            (BoolOr, Sums::Trues(trues)) => AggregateValue::Bool(trues[slot] > 0),
            (
                function @ (VarianceSample | VariancePopulation | StddevSample | StddevPopulation),
                Sums::Moments(moments),
            ) => {
                let (sum, squares) = moments[slot];
                let count = non_null as f64;
                let sample = matches!(function, VarianceSample | StddevSample);
                if sample && non_null < 2 {
                    AggregateValue::Null
                } else {
                    // Postgres's formula; rounding can leave a tiny negative for equal values.
                    let spread = (count * squares - sum * sum).max(0.0);
                    let variance = if sample {
                        spread / (count * (count - 1.0))
                    } else {
                        spread / (count * count)
                    };
                    match function {
                        StddevSample | StddevPopulation => AggregateValue::Float(variance.sqrt()),
                        _ => AggregateValue::Float(variance),
                    }
                }
            }
            (StringAgg, Sums::Ordered(values, converter, _)) => {
                let parser = converter.parser();
                let rows = values[slot].iter().flat_map(|((_, value), &count)| {
                    std::iter::repeat_n(parser.parse(value), count.max(0) as usize)
                });
                let mut decoded = converter.convert_rows(rows)?;
                let strings = cast(&decoded.remove(0), &DataType::Utf8)?;
                let strings = strings.as_string::<i32>();
                let parts: Vec<&str> = strings.iter().flatten().collect();
                AggregateValue::Text(parts.join(&self.call.delimiter))
            }
            (ArrayAgg, Sums::Ordered(values, _, _)) => AggregateValue::Sequence(
                values[slot]
                    .iter()
                    .flat_map(|((_, value), &count)| {
                        std::iter::repeat_n(value.clone(), count.max(0) as usize)
                    })
                    .collect(),
            ),
            (function, _) => {
                return Err(
                    ExecutionError::Internal(format!("{function:?} has mismatched state")).into(),
                );
            }
        })
    }

    fn build(&self, values: &[&AggregateValue]) -> Result<ArrayRef, DataflowError> {
        if let Sums::Extremes(_, converter) = &self.sums {
            return encoded_column(converter, &self.call.input_type, values);
        }
        if let (Sums::Ordered(_, converter, _), DataType::List(field)) =
            (&self.sums, &self.call.output_type)
        {
            return array_of_sequences(values, converter, field);
        }
        plain_column(&self.call.output_type, values)
    }
}

/// A column of `arrow-row` encoded values of `data_type`; anything else is NULL (a min/max of
/// only NULL inputs has no encoded value).
fn encoded_column(
    converter: &RowConverter,
    data_type: &DataType,
    values: &[&AggregateValue],
) -> Result<ArrayRef, DataflowError> {
    let parser = converter.parser();
    let null_row =
        converter.convert_columns(&[datafusion::arrow::array::new_null_array(data_type, 1)])?;
    let rows = values.iter().map(|value| match value {
        AggregateValue::Encoded(bytes) => parser.parse(bytes),
        _ => null_row.row(0),
    });
    let mut columns = converter.convert_rows(rows)?;
    Ok(columns.remove(0))
}

/// A column of `data_type` (boolean, text, decimal, float or bigint) from values of that kind.
fn plain_column(
    data_type: &DataType,
    values: &[&AggregateValue],
) -> Result<ArrayRef, DataflowError> {
    let array: ArrayRef = match data_type {
        DataType::Boolean => Arc::new(
            values
                .iter()
                .map(|value| match value {
                    AggregateValue::Bool(value) => Some(*value),
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Arc::new(
            values
                .iter()
                .map(|value| match value {
                    AggregateValue::Text(value) => Some(value.as_str()),
                    _ => None,
                })
                .collect::<StringArray>(),
        ),
        DataType::Decimal128(precision, scale) => {
            let array: Decimal128Array = values
                .iter()
                .map(|value| match value {
                    AggregateValue::Integer(value) => Some(*value),
                    _ => None,
                })
                .collect();
            let array = array.with_precision_and_scale(*precision, *scale)?;
            array
                .validate_decimal_precision(*precision)
                .map_err(|_| ExecutionError::NumericOutOfRange("numeric field overflow".into()))?;
            Arc::new(array)
        }
        DataType::Interval(_) => {
            let array: IntervalMonthDayNanoArray = values
                .iter()
                .map(|value| match value {
                    AggregateValue::Interval(value) => Some(*value),
                    _ => None,
                })
                .collect();
            cast(&array, data_type)?
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let array: Float64Array = values
                .iter()
                .map(|value| match value {
                    AggregateValue::Float(value) => Some(*value),
                    AggregateValue::Integer(value) => Some(*value as f64),
                    _ => None,
                })
                .collect();
            Arc::new(array)
        }
        _ => {
            let mut out_of_range = false;
            let array: Int64Array = values
                .iter()
                .map(|value| match value {
                    AggregateValue::Integer(value) => match i64::try_from(*value) {
                        Ok(value) => Some(value),
                        Err(_) => {
                            out_of_range = true;
                            None
                        }
                    },
                    _ => None,
                })
                .collect();
            if out_of_range {
                return Err(ExecutionError::NumericOutOfRange("bigint out of range".into()).into());
            }
            Arc::new(array)
        }
    };
    Ok(array)
}

fn add_to_multiset(multiset: &mut BTreeMap<Box<[u8]>, i64>, value: &[u8], weight: i64) {
    let remaining = match multiset.get_mut(value) {
        Some(count) => {
            *count += weight;
            *count
        }
        None => {
            multiset.insert(value.into(), weight);
            weight
        }
    };
    if remaining == 0 {
        multiset.remove(value);
    }
}

/// array_agg's results as a list array: one list per group (NULL when it has no rows).
fn array_of_sequences(
    values: &[&AggregateValue],
    converter: &RowConverter,
    field: &datafusion::arrow::datatypes::FieldRef,
) -> Result<ArrayRef, DataflowError> {
    let parser = converter.parser();
    let mut offsets = vec![0i32];
    let mut valid = Vec::with_capacity(values.len());
    let mut elements = Vec::new();
    for value in values {
        if let AggregateValue::Sequence(sequence) = value {
            elements.extend(sequence.iter().map(|element| parser.parse(element)));
            valid.push(true);
        } else {
            valid.push(false);
        }
        offsets.push(
            i32::try_from(elements.len()).map_err(|_| {
                ExecutionError::NumericOutOfRange("array_agg result too large".into())
            })?,
        );
    }
    let mut decoded = converter.convert_rows(elements)?;
    let mut items = decoded.remove(0);
    if items.data_type() != field.data_type() {
        items = cast(&items, field.data_type())?;
    }
    let list = datafusion::arrow::array::ListArray::try_new(
        Arc::clone(field),
        datafusion::arrow::buffer::OffsetBuffer::new(offsets.into()),
        items,
        Some(valid.into()),
    )?;
    Ok(Arc::new(list))
}

/// The argument of an integer or decimal sum as i128 (decimals at their own scale).
fn integer_values(array: &ArrayRef) -> Result<Vec<Option<i128>>, DataflowError> {
    Ok(match array.data_type() {
        DataType::Decimal128(_, _) => array.as_primitive::<Decimal128Type>().iter().collect(),
        _ => {
            let array = cast(array, &DataType::Int64)?;
            array
                .as_primitive::<Int64Type>()
                .iter()
                .map(|value| value.map(i128::from))
                .collect()
        }
    })
}

/// `sum / count` for a decimal sum at `input_scale`, as a decimal at `output_scale`, rounded half
/// away from zero as Postgres rounds NUMERIC division. `None` on overflow.
pub fn rounded_average(sum: i128, count: i64, input_scale: i8, output_scale: i8) -> Option<i128> {
    if count <= 0 {
        return None;
    }
    let factor = 10i128.checked_pow((output_scale - input_scale).max(0) as u32)?;
    let scaled = sum.checked_mul(factor)?;
    let count = count as i128;
    let quotient = scaled / count;
    let remainder = scaled % count;
    if remainder.unsigned_abs() * 2 >= count.unsigned_abs() {
        Some(quotient + scaled.signum())
    } else {
        Some(quotient)
    }
}

#[cfg(test)]
mod rounding_tests {
    use super::rounded_average;

    #[test]
    fn averages_round_half_away_from_zero() {
        // 2/3 at scale 2: 0.67; -2/3: -0.67; 1/8 at scale 2: 0.13 (0.125 rounds up); 1/3: 0.33.
        assert_eq!(rounded_average(2, 3, 0, 2), Some(67));
        assert_eq!(rounded_average(-2, 3, 0, 2), Some(-67));
        assert_eq!(rounded_average(1, 8, 0, 2), Some(13));
        assert_eq!(rounded_average(-1, 8, 0, 2), Some(-13));
        assert_eq!(rounded_average(1, 3, 0, 2), Some(33));
        assert_eq!(rounded_average(6, 3, 0, 2), Some(200));
        assert_eq!(rounded_average(i128::MAX, 1, 0, 2), None);
    }
}

#[cfg(test)]
mod window_close_tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{RecordBatch, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::physical_expr::expressions::Column;

    use super::*;
    use crate::dataflow::watermark::{LateRowFilter, WatermarkCell};

    fn window_ends(ends: &[i64]) -> ChangeBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "window_end",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        )]));
        let rows = RecordBatch::try_new(
            schema,
            vec![Arc::new(TimestampMicrosecondArray::from(ends.to_vec()))],
        )
        .unwrap();
        ChangeBatch::insertions(rows)
    }

    /// Counts rows per window_end, emitting on window close by the watermark of a filter on the
    /// same column with a delay of 1 µs (a window closes when the greatest time seen passes its
    /// end).
    fn counting() -> (LateRowFilter, Aggregate) {
        let cell = WatermarkCell::default();
        let filter = LateRowFilter::new(0, 0, 1000, cell.clone());
        let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new("window_end", 0));
        let output = Arc::new(Schema::new(vec![
            Field::new(
                "window_end",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
            Field::new("n", DataType::Int64, true),
        ]));
        let count = AggregateCall {
            function: AggregateFunction::Count,
            argument: Arc::clone(&column),
            input_type: DataType::Timestamp(TimeUnit::Microsecond, None),
            output_type: DataType::Int64,
            distinct: false,
            filter: None,
            order_by: Vec::new(),
            delimiter: String::new(),
        };
        let aggregate = Aggregate::new(
            vec![column],
            vec![DataType::Timestamp(TimeUnit::Microsecond, None)],
            vec![count],
            output,
        )
        .unwrap()
        .close_windows(WindowClosing {
            group_column: 0,
            end_offset_nanoseconds: 0,
            watermarks: vec![cell],
        })
        .unwrap();
        (filter, aggregate)
    }

    fn epoch(
        filter: &mut LateRowFilter,
        aggregate: &mut Aggregate,
        ends: &[i64],
    ) -> Vec<(i64, i64)> {
        for batch in filter.process(0, window_ends(ends)).unwrap() {
            aggregate.process(0, batch).unwrap();
        }
        filter.barrier(0).unwrap();
        let mut emitted = Vec::new();
        for batch in aggregate.barrier(0).unwrap() {
            let ends = batch
                .rows
                .column(0)
                .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
            let counts = batch.rows.column(1).as_primitive::<Int64Type>();
            assert!(batch.weights.values().iter().all(|&weight| weight == 1));
            emitted.extend((0..batch.len()).map(|row| (ends.value(row), counts.value(row))));
        }
        emitted.sort_unstable();
        emitted
    }

    #[test]
    fn closed_windows_emit_once_and_are_freed() {
        let (mut filter, mut aggregate) = counting();
        assert_eq!(
            epoch(&mut filter, &mut aggregate, &[10, 20, 20]),
            vec![(10, 1)]
        );
        assert_eq!(
            aggregate.groups.len(),
            1,
            "the closed window's group is freed"
        );
        assert_eq!(epoch(&mut filter, &mut aggregate, &[30, 20]), vec![(20, 3)]);
        assert_eq!(aggregate.groups.len(), 1);
        // Behind the watermark: kept out, nothing emitted again.
        assert_eq!(epoch(&mut filter, &mut aggregate, &[10]), vec![]);
        let state = aggregate.checkpoint().unwrap().unwrap();
        let (mut restored_filter, mut restored) = counting();
        restored.restore(&state, &|_| Ok(true)).unwrap();
        restored_filter
            .restore(&filter.checkpoint().unwrap().unwrap(), &|_| Ok(true))
            .unwrap();
        assert_eq!(
            epoch(&mut restored_filter, &mut restored, &[40, 30]),
            vec![(30, 2)]
        );
        assert_eq!(restored.groups.len(), 1);
    }
}

#[cfg(test)]
mod two_phase_tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::dataflow::testing::{changes, column, integers, summed};

    const FUNCTIONS: [AggregateFunction; 4] = [
        AggregateFunction::Count,
        AggregateFunction::Sum,
        AggregateFunction::Min,
        AggregateFunction::Max,
    ];

    fn calls(argument: impl Fn(usize) -> Arc<dyn PhysicalExpr>) -> Vec<AggregateCall> {
        FUNCTIONS
            .iter()
            .enumerate()
            .map(|(index, &function)| AggregateCall {
                function,
                argument: argument(index),
                input_type: DataType::Int64,
                output_type: DataType::Int64,
                distinct: false,
                filter: None,
                order_by: Vec::new(),
                delimiter: String::new(),
            })
            .collect()
    }

    /// count, sum, min and max of `v` per `g` (or over all rows when `grouped` is false), split
    /// as `phase` says; the final phase reads what the partial one writes.
    fn aggregate(grouped: bool, phase: AggregatePhase) -> Aggregate {
        let groups = usize::from(grouped);
        let mut output = if grouped { vec!["g"] } else { vec![] };
        output.extend(["n", "s", "lo", "hi"]);
        let mut states: Vec<Field> = output[..groups]
            .iter()
            .map(|name| Field::new(*name, DataType::Int64, true))
            .collect();
        states.push(Field::new("rows", DataType::Int64, true));
        let mut first_state = Vec::new();
        for function in FUNCTIONS {
            first_state.push(states.len());
            for data_type in partial_state_types(function, &DataType::Int64, false).unwrap() {
                states.push(Field::new(
                    format!("state{}", states.len()),
                    data_type,
                    true,
                ));
            }
        }
        // The group is input column 0 (the final phase's group columns come first too); the
        // argument is `v`, or the call's first state column in the final phase.
        let group_columns = (0..groups).map(|_| column("g", 0)).collect();
        let arguments = (0..FUNCTIONS.len())
            .map(|call| match phase {
                AggregatePhase::Final => column("state", first_state[call]),
                _ => column("v", 1),
            })
            .collect::<Vec<_>>();
        let schema = match phase {
            AggregatePhase::Partial => Arc::new(Schema::new(states.clone())),
            _ => integers(&output),
        };
        Aggregate::new(
            group_columns,
            vec![DataType::Int64; groups],
            calls(|call| Arc::clone(&arguments[call])),
            schema,
        )
        .unwrap()
        .with_phase(phase)
        .unwrap()
    }

    /// What a group's rows are over the epochs: (g, v) changes, deleting the current extremes
    /// and emptying a group, so min/max fall back and groups come and go.
    fn epochs() -> Vec<Vec<(i64, i64, i64)>> {
        vec![
            vec![(1, 5, 1), (1, 9, 1), (2, 3, 1), (1, 7, 1), (3, 4, 2)],
            vec![(1, 9, -1), (2, 1, 1), (2, 8, 1), (1, 2, 1)],
            vec![(2, 3, -1), (2, 1, -1), (3, 4, -2), (1, 5, -1)],
            vec![(3, 6, 1), (2, 8, -1), (1, 11, 1), (1, 11, 1)],
            vec![(1, 11, -1), (4, 0, 1), (1, 2, -1)],
            vec![(1, 7, -1), (1, 11, -1), (4, 5, 1), (3, 6, -1)],
        ]
    }

    fn batch(rows: &[(i64, i64, i64)]) -> ChangeBatch {
        let values: Vec<[Option<i64>; 2]> = rows
            .iter()
            .map(|&(group, value, _)| [Some(group), Some(value)])
            .collect();
        let weighted: Vec<(&[Option<i64>], i64)> = values
            .iter()
            .zip(rows)
            .map(|(row, &(_, _, weight))| (row.as_slice(), weight))
            .collect();
        changes(&integers(&["g", "v"]), &weighted)
    }

    /// The worker owning a key or value (`arrow-row` bytes): any function of the bytes will do.
    fn owner(bytes: &[u8], workers: usize) -> usize {
        bytes.iter().map(|&byte| usize::from(byte)).sum::<usize>() % workers
    }

    /// The worker each row's `v` is hashed to.
    fn value_owners(rows: &[(i64, i64, i64)], workers: usize) -> Vec<usize> {
        let converter = RowConverter::new(vec![SortField::new(DataType::Int64)]).unwrap();
        let values: ArrayRef = Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|&(_, value, _)| value),
        ));
        let encoded = converter.convert_columns(&[values]).unwrap();
        (0..rows.len())
            .map(|row| owner(encoded.row(row).data(), workers))
            .collect()
    }

    /// One epoch through the partial aggregates (each row on the worker owning its `v`, as the
    /// plan hashes rows into a partial aggregate with min/max calls) and the final one.
    fn two_phase_epoch(
        partials: &mut [Aggregate],
        last: &mut Aggregate,
        rows: &[(i64, i64, i64)],
    ) -> Vec<ChangeBatch> {
        let owners = value_owners(rows, partials.len());
        for (worker, partial) in partials.iter_mut().enumerate() {
            let share: Vec<_> = rows
                .iter()
                .zip(&owners)
                .filter(|(_, owner)| **owner == worker)
                .map(|(row, _)| *row)
                .collect();
            partial.process(0, batch(&share)).unwrap();
            for states in partial.barrier(0).unwrap() {
                last.process(0, states).unwrap();
            }
        }
        last.barrier(0).unwrap()
    }

    fn add(contents: &mut BTreeMap<Vec<Option<i64>>, i64>, batches: &[ChangeBatch]) {
        for (row, weight) in summed(batches) {
            *contents.entry(row).or_insert(0) += weight;
        }
        contents.retain(|_, weight| *weight != 0);
    }

    #[test]
    fn partial_and_final_phases_equal_the_whole_aggregate_across_a_redistribution() {
        for grouped in [true, false] {
            let mut whole = aggregate(grouped, AggregatePhase::Whole);
            let mut partials: Vec<Aggregate> = (0..3)
                .map(|_| aggregate(grouped, AggregatePhase::Partial))
                .collect();
            let mut last = aggregate(grouped, AggregatePhase::Final);
            let (mut expected, mut actual) = (BTreeMap::new(), BTreeMap::new());
            let epochs = epochs();
            for (index, rows) in epochs.iter().enumerate() {
                if index == 3 {
                    // A restart onto 2 workers: each saved partial state spreads by ownership.
                    let saved: Vec<Vec<u8>> = partials
                        .iter()
                        .map(|partial| partial.checkpoint().unwrap().unwrap())
                        .collect();
                    let saved_last = last.checkpoint().unwrap().unwrap();
                    partials = (0..2)
                        .map(|_| aggregate(grouped, AggregatePhase::Partial))
                        .collect();
                    for state in &saved {
                        for (worker, partial) in partials.iter_mut().enumerate() {
                            partial
                                .restore(state, &|bytes| Ok(owner(bytes, 2) == worker))
                                .unwrap();
                        }
                    }
                    last = aggregate(grouped, AggregatePhase::Final);
                    last.restore(&saved_last, &|_| Ok(true)).unwrap();
                    for partial in &mut partials {
                        partial.redistributed().unwrap();
                    }
                    last.redistributed().unwrap();
                }
                whole.process(0, batch(rows)).unwrap();
                add(&mut expected, &whole.barrier(0).unwrap());
                add(
                    &mut actual,
                    &two_phase_epoch(&mut partials, &mut last, rows),
                );
                assert_eq!(actual, expected, "grouped: {grouped}, after epoch {index}");
            }
        }
    }
}
