//! Aggregate: GROUP BY with count, sum, avg, min and max, maintained per group.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Float64Array, Int64Array, RecordBatch,
    RecordBatchOptions,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::{ChangeBatch, Epoch, Operator};
use crate::error::{DataflowError, ExecutionError};
use crate::storage::codec::{DecodeError, Decoder, Encoder};

/// The aggregate functions the incremental aggregate maintains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFunction {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

/// One aggregate in the SELECT list: `function(argument)`, producing `output_type`.
pub struct AggregateCall {
    pub function: AggregateFunction,
    pub argument: Arc<dyn PhysicalExpr>,
    pub input_type: DataType,
    pub output_type: DataType,
}

/// Incremental rule: aggregation integrates its input. Each group keeps its row count and, per
/// aggregate, a state that absorbs a change of weight w in O(1) (count += w·[x not null],
/// sum += w·x) or O(log values) (min/max keep a multiset of values, so deleting the current
/// extreme falls back to the next one). At the barrier every group touched in the epoch emits
/// `-old row` and `+new row` (only `+new` if it is new, only `-old` if its last row left). A
/// global aggregate (no GROUP BY) has one group that always exists, so it emits a row even for an
/// empty input, as Postgres does. Work per epoch is O(changes + touched groups).
pub struct Aggregate {
    group_expressions: Vec<Arc<dyn PhysicalExpr>>,
    group_converter: Option<RowConverter>,
    calls: Vec<CallState>,
    schema: SchemaRef,
    /// Group key (row-encoded) → slot in the per-group state vectors.
    slots: HashMap<Box<[u8]>, usize>,
    free_slots: Vec<usize>,
    /// Total weight of the rows in each group; the group exists while it is positive.
    row_counts: Vec<i64>,
    /// Slots touched in the current epoch, with what they showed before it.
    touched: Vec<Touched>,
    touched_mark: Vec<bool>,
    /// A global aggregate emits its first row at the first barrier, even with no input.
    global_row_emitted: bool,
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
    /// A min/max value in `arrow-row` encoding.
    Encoded(Box<[u8]>),
}

enum Sums {
    Integer(Vec<i128>),
    Float(Vec<f64>),
    Extremes(Vec<BTreeMap<Box<[u8]>, i64>>, RowConverter),
    CountOnly,
}

struct CallState {
    call: AggregateCall,
    /// Non-null inputs per slot: the count, and whether a sum/avg is NULL.
    non_null: Vec<i64>,
    sums: Sums,
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
            slots: HashMap::new(),
            free_slots: Vec::new(),
            row_counts: Vec::new(),
            touched: Vec::new(),
            touched_mark: Vec::new(),
            global_row_emitted: false,
        };
        if aggregate.is_global() {
            aggregate.slot_for(&[]);
        }
        Ok(aggregate)
    }

    fn is_global(&self) -> bool {
        self.group_converter.is_none()
    }

    fn slot_for(&mut self, key: &[u8]) -> usize {
        if let Some(&slot) = self.slots.get(key) {
            return slot;
        }
        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None => {
                let slot = self.row_counts.len();
                self.row_counts.push(0);
                self.touched_mark.push(false);
                for call in &mut self.calls {
                    call.grow();
                }
                slot
            }
        };
        self.slots.insert(key.into(), slot);
        slot
    }

    fn touch(&mut self, slot: usize, key: &[u8]) -> Result<(), DataflowError> {
        if self.touched_mark[slot] {
            return Ok(());
        }
        self.touched_mark[slot] = true;
        let existed = if self.is_global() {
            self.global_row_emitted
        } else {
            self.row_counts[slot] > 0
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

    fn values(&self, slot: usize) -> Result<Vec<AggregateValue>, DataflowError> {
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
        for (index, call) in self.calls.iter().enumerate() {
            let column: Vec<&AggregateValue> = values.iter().map(|row| &row[index]).collect();
            columns.push(call.build(&column)?);
        }
        let columns = columns
            .into_iter()
            .zip(self.schema.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(column)
                } else {
                    cast(&column, field.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(weights.len()));
        let rows = RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?;
        Ok(ChangeBatch::new(rows, Int64Array::from(weights)))
    }

    fn release(&mut self, slot: usize, key: &[u8]) {
        self.slots.remove(key);
        for call in &mut self.calls {
            call.reset(slot);
        }
        self.row_counts[slot] = 0;
        self.free_slots.push(slot);
    }
}

impl Operator for Aggregate {
    fn process(&mut self, input: ChangeBatch) -> Result<Vec<ChangeBatch>, DataflowError> {
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
                let mut group_slots = Vec::with_capacity(rows);
                for key in keys.iter() {
                    let slot = self.slot_for(key.as_ref());
                    self.touch(slot, key.as_ref())?;
                    group_slots.push(slot);
                }
                group_slots
            }
        };
        let weights = input.weights.values();
        for (&slot, &weight) in group_slots.iter().zip(weights.iter()) {
            self.row_counts[slot] += weight;
        }
        for call in &mut self.calls {
            call.update(&input, &group_slots)?;
        }
        Ok(Vec::new())
    }

    fn barrier(&mut self, _epoch: Epoch) -> Result<Vec<ChangeBatch>, DataflowError> {
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
            let count = self.row_counts[entry.slot];
            if count < 0 {
                return Err(ExecutionError::Internal(format!(
                    "aggregate group holds {count} rows: more deletions than insertions arrived"
                ))
                .into());
            }
            let exists = self.is_global() || count > 0;
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
            .u64(self.slots.len() as u64);
        for (key, &slot) in &self.slots {
            encoder.bytes(key).i64(self.row_counts[slot]);
            for call in &self.calls {
                call.checkpoint(slot, &mut encoder);
            }
        }
        Ok(Some(encoder.finish()))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), DataflowError> {
        let corrupted = |reason: String| {
            DataflowError::from(ExecutionError::Internal(format!(
                "cannot restore an aggregate: {reason}"
            )))
        };
        let keys: Vec<Box<[u8]>> = self.slots.keys().cloned().collect();
        for key in keys {
            if let Some(&slot) = self.slots.get(&key) {
                self.release(slot, &key);
            }
        }
        let mut decoder = Decoder::new(state);
        self.global_row_emitted = decoder.u8().map_err(corrupted)? == 1;
        let groups = decoder.count().map_err(corrupted)?;
        for _ in 0..groups {
            let key = decoder.bytes().map_err(corrupted)?;
            let slot = self.slot_for(key);
            self.row_counts[slot] = decoder.i64().map_err(corrupted)?;
            for call in &mut self.calls {
                call.restore(slot, &mut decoder).map_err(corrupted)?;
            }
        }
        if self.is_global() {
            // The global group always exists, even when the checkpoint saw no rows.
            self.slot_for(&[]);
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
            .map(|call| format!("{:?}({})", call.call.function, call.call.argument))
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
        let sums = match call.function {
            AggregateFunction::Count => Sums::CountOnly,
            AggregateFunction::Min | AggregateFunction::Max => Sums::Extremes(
                Vec::new(),
                RowConverter::new(vec![SortField::new(call.input_type.clone())])?,
            ),
            AggregateFunction::Sum | AggregateFunction::Avg => match call.input_type {
                ref float if float.is_floating() => Sums::Float(Vec::new()),
                ref integer if integer.is_integer() => Sums::Integer(Vec::new()),
                DataType::Decimal128(_, _) => Sums::Integer(Vec::new()),
                ref other => {
                    return Err(ExecutionError::Internal(format!(
                        "{:?} over {other} is not maintained incrementally",
                        call.function
                    ))
                    .into());
                }
            },
        };
        Ok(Self {
            call,
            non_null: Vec::new(),
            sums,
        })
    }

    fn checkpoint(&self, slot: usize, encoder: &mut Encoder) {
        encoder.i64(self.non_null[slot]);
        match &self.sums {
            Sums::Integer(sums) => {
                encoder.i128(sums[slot]);
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
            Sums::CountOnly => {}
        }
    }

    fn restore(&mut self, slot: usize, decoder: &mut Decoder) -> Result<(), DecodeError> {
        self.non_null[slot] = decoder.i64()?;
        match &mut self.sums {
            Sums::Integer(sums) => sums[slot] = decoder.i128()?,
            Sums::Float(sums) => sums[slot] = decoder.f64()?,
            Sums::Extremes(multisets, _) => {
                let count = decoder.count()?;
                for _ in 0..count {
                    let value: Box<[u8]> = decoder.bytes()?.into();
                    multisets[slot].insert(value, decoder.i64()?);
                }
            }
            Sums::CountOnly => {}
        }
        Ok(())
    }

    fn grow(&mut self) {
        self.non_null.push(0);
        match &mut self.sums {
            Sums::Integer(sums) => sums.push(0),
            Sums::Float(sums) => sums.push(0.0),
            Sums::Extremes(values, _) => values.push(BTreeMap::new()),
            Sums::CountOnly => {}
        }
    }

    fn reset(&mut self, slot: usize) {
        self.non_null[slot] = 0;
        match &mut self.sums {
            Sums::Integer(sums) => sums[slot] = 0,
            Sums::Float(sums) => sums[slot] = 0.0,
            Sums::Extremes(values, _) => values[slot].clear(),
            Sums::CountOnly => {}
        }
    }

    fn update(&mut self, input: &ChangeBatch, slots: &[usize]) -> Result<(), DataflowError> {
        let argument = self
            .call
            .argument
            .evaluate(&input.rows)?
            .into_array(input.len())?;
        let weights = input.weights.values();
        let valid = |row: usize| argument.is_valid(row);
        for (row, (&slot, &weight)) in slots.iter().zip(weights.iter()).enumerate() {
            if valid(row) {
                self.non_null[slot] += weight;
            }
        }
        match &mut self.sums {
            Sums::CountOnly => {}
            Sums::Integer(sums) => {
                let values = integer_values(&argument)?;
                for (row, (&slot, &weight)) in slots.iter().zip(weights.iter()).enumerate() {
                    if let Some(value) = values[row] {
                        sums[slot] += value * weight as i128;
                    }
                }
            }
            Sums::Float(sums) => {
                let values = cast(&argument, &DataType::Float64)?;
                let values = values.as_primitive::<Float64Type>();
                for (row, (&slot, &weight)) in slots.iter().zip(weights.iter()).enumerate() {
                    if values.is_valid(row) {
                        sums[slot] += values.value(row) * weight as f64;
                    }
                }
            }
            Sums::Extremes(multisets, converter) => {
                let encoded = converter.convert_columns(&[Arc::clone(&argument)])?;
                for (row, (&slot, &weight)) in slots.iter().zip(weights.iter()).enumerate() {
                    if !argument.is_valid(row) {
                        continue;
                    }
                    let multiset = &mut multisets[slot];
                    let key = encoded.row(row);
                    let remaining = match multiset.get_mut(key.as_ref()) {
                        Some(count) => {
                            *count += weight;
                            *count
                        }
                        None => {
                            multiset.insert(key.as_ref().into(), weight);
                            weight
                        }
                    };
                    if remaining == 0 {
                        multiset.remove(key.as_ref());
                    }
                }
            }
        }
        Ok(())
    }

    fn value(&self, slot: usize) -> Result<AggregateValue, DataflowError> {
        let non_null = self.non_null[slot];
        Ok(match (&self.call.function, &self.sums) {
            (AggregateFunction::Count, _) => AggregateValue::Integer(non_null as i128),
            (_, _) if non_null == 0 => AggregateValue::Null,
            (AggregateFunction::Sum, Sums::Integer(sums)) => AggregateValue::Integer(sums[slot]),
            (AggregateFunction::Sum, Sums::Float(sums)) => AggregateValue::Float(sums[slot]),
            (AggregateFunction::Avg, Sums::Float(sums)) => {
                AggregateValue::Float(sums[slot] / non_null as f64)
            }
            (AggregateFunction::Avg, Sums::Integer(sums)) => {
                match (&self.call.input_type, &self.call.output_type) {
                    (
                        DataType::Decimal128(_, input_scale),
                        DataType::Decimal128(_, output_scale),
                    ) => {
                        // Postgres's rule, which ad hoc queries follow too (planner::postgres_avg).
                        match rounded_average(sums[slot], non_null, *input_scale, *output_scale) {
                            Some(average) => AggregateValue::Integer(average),
                            None => {
                                return Err(ExecutionError::NumericOutOfRange(
                                    "numeric field overflow in avg".into(),
                                )
                                .into());
                            }
                        }
                    }
                    _ => AggregateValue::Float(sums[slot] as f64 / non_null as f64),
                }
            }
            (AggregateFunction::Min, Sums::Extremes(multisets, _)) => {
                match multisets[slot].first_key_value() {
                    Some((key, _)) => AggregateValue::Encoded(key.clone()),
                    None => AggregateValue::Null,
                }
            }
            (AggregateFunction::Max, Sums::Extremes(multisets, _)) => {
                match multisets[slot].last_key_value() {
                    Some((key, _)) => AggregateValue::Encoded(key.clone()),
                    None => AggregateValue::Null,
                }
            }
            (function, _) => {
                return Err(
                    ExecutionError::Internal(format!("{function:?} has mismatched state")).into(),
                );
            }
        })
    }

    fn build(&self, values: &[&AggregateValue]) -> Result<ArrayRef, DataflowError> {
        if let Sums::Extremes(_, converter) = &self.sums {
            let parser = converter.parser();
            // A NULL min/max (all inputs NULL) has no encoded value; encode NULL's row for it.
            let null_row =
                converter.convert_columns(&[datafusion::arrow::array::new_null_array(
                    &self.call.input_type,
                    1,
                )])?;
            let rows = values.iter().map(|value| match value {
                AggregateValue::Encoded(bytes) => parser.parse(bytes),
                _ => null_row.row(0),
            });
            let mut columns = converter.convert_rows(rows)?;
            return Ok(columns.remove(0));
        }
        let array: ArrayRef = match &self.call.output_type {
            DataType::Decimal128(precision, scale) => {
                let array: Decimal128Array = values
                    .iter()
                    .map(|value| match value {
                        AggregateValue::Integer(value) => Some(*value),
                        _ => None,
                    })
                    .collect();
                let array = array.with_precision_and_scale(*precision, *scale)?;
                array.validate_decimal_precision(*precision).map_err(|_| {
                    ExecutionError::NumericOutOfRange("numeric field overflow".into())
                })?;
                Arc::new(array)
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
                    return Err(
                        ExecutionError::NumericOutOfRange("bigint out of range".into()).into(),
                    );
                }
                Arc::new(array)
            }
        };
        Ok(array)
    }
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
