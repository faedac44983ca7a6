//! `avg` over NUMERIC as Postgres computes it: the exact sum divided by the count, rounded half
//! away from zero to the result's scale. DataFusion's own decimal average truncates instead, so
//! ad hoc queries and materialized views both use this one (the dataflow's aggregate applies
//! the same [`rounded_average`]).

use std::collections::HashSet;
use std::mem::size_of;

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

use crate::dataflow::aggregate::rounded_average;

/// The result type of `avg` over integers and NUMERIC: 16 fractional digits, as Postgres shows
/// for typical averages.
pub const AVG_RESULT: DataType = DataType::Decimal128(38, 16);

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PostgresAvg {
    signature: Signature,
}

impl Default for PostgresAvg {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for PostgresAvg {
    /// Named `avg`, so that plans, column names and the incremental planner see the usual name.
    fn name(&self) -> &str {
        "avg"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arguments: &[DataType]) -> Result<DataType> {
        match arguments {
            [DataType::Decimal128(_, _)] => Ok(AVG_RESULT),
            other => Err(DataFusionError::Plan(format!(
                "Tributary's avg takes one NUMERIC argument, not {other:?}"
            ))),
        }
    }

    fn accumulator(&self, arguments: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let input_scale = match arguments.expr_fields.first().map(|field| field.data_type()) {
            Some(DataType::Decimal128(_, scale)) => *scale,
            other => {
                return Err(DataFusionError::Plan(format!(
                    "Tributary's avg takes one NUMERIC argument, not {other:?}"
                )));
            }
        };
        Ok(Box::new(AverageAccumulator {
            sum: 0,
            count: 0,
            input_scale,
            distinct_values: arguments.is_distinct.then(HashSet::new),
        }))
    }

    fn state_fields(&self, arguments: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let sum_type = arguments
            .input_fields
            .first()
            .map(|field| field.data_type().clone())
            .unwrap_or(DataType::Decimal128(38, 0));
        if arguments.is_distinct {
            // avg(DISTINCT x): partial states are the distinct values seen.
            let item = Field::new_list_field(sum_type, true);
            return Ok(vec![
                Field::new(
                    format!("{}[distinct]", arguments.name),
                    DataType::List(item.into()),
                    true,
                )
                .into(),
            ]);
        }
        Ok(vec![
            Field::new(format!("{}[sum]", arguments.name), sum_type, true).into(),
            Field::new(format!("{}[count]", arguments.name), DataType::Int64, true).into(),
        ])
    }
}

/// The exact sum (at the argument's scale) and the count of non-null arguments; for
/// avg(DISTINCT x), the set of values instead.
#[derive(Debug)]
struct AverageAccumulator {
    sum: i128,
    count: i64,
    input_scale: i8,
    distinct_values: Option<HashSet<i128>>,
}

impl AverageAccumulator {
    fn add(&mut self, sum: i128, count: i64) -> Result<()> {
        self.sum = self.sum.checked_add(sum).ok_or_else(overflow)?;
        self.count += count;
        Ok(())
    }
}

fn overflow() -> DataFusionError {
    DataFusionError::Execution("numeric field overflow in avg".into())
}

impl Accumulator for AverageAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(values) = values.first() else {
            return Ok(());
        };
        if let Some(distinct) = self.distinct_values.as_mut() {
            distinct.extend(values.as_primitive::<Decimal128Type>().iter().flatten());
            return Ok(());
        }
        let mut sum: i128 = 0;
        let mut count = 0;
        for value in values.as_primitive::<Decimal128Type>().iter().flatten() {
            sum = sum.checked_add(value).ok_or_else(overflow)?;
            count += 1;
        }
        self.add(sum, count)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let DataType::Decimal128(precision, scale) = AVG_RESULT else {
            return Err(DataFusionError::Internal("avg result type".into()));
        };
        if let Some(distinct) = self.distinct_values.take() {
            self.sum = 0;
            self.count = 0;
            for value in &distinct {
                self.add(*value, 1)?;
            }
            self.distinct_values = Some(distinct);
        }
        if self.count == 0 {
            return Ok(ScalarValue::Decimal128(None, precision, scale));
        }
        let average =
            rounded_average(self.sum, self.count, self.input_scale, scale).ok_or_else(overflow)?;
        Ok(ScalarValue::Decimal128(Some(average), precision, scale))
    }

    /// Rows leaving a sliding window frame.
    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(values) = values.first() else {
            return Ok(());
        };
        if self.distinct_values.is_some() {
            return Err(DataFusionError::NotImplemented(
                "avg(DISTINCT ...) over a sliding window frame".into(),
            ));
        }
        let mut sum: i128 = 0;
        let mut count = 0;
        for value in values.as_primitive::<Decimal128Type>().iter().flatten() {
            sum = sum.checked_add(value).ok_or_else(overflow)?;
            count += 1;
        }
        self.add(-sum, -count)
    }

    fn supports_retract_batch(&self) -> bool {
        self.distinct_values.is_none()
    }

    fn size(&self) -> usize {
        size_of::<Self>()
            + self
                .distinct_values
                .as_ref()
                .map_or(0, |values| values.capacity() * size_of::<i128>())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        if let Some(distinct) = &self.distinct_values {
            let values: Vec<ScalarValue> = distinct
                .iter()
                .map(|value| ScalarValue::Decimal128(Some(*value), 38, self.input_scale))
                .collect();
            let list = ScalarValue::new_list_nullable(
                &values,
                &DataType::Decimal128(38, self.input_scale),
            );
            return Ok(vec![ScalarValue::List(list)]);
        }
        Ok(vec![
            ScalarValue::Decimal128(Some(self.sum), 38, self.input_scale),
            ScalarValue::Int64(Some(self.count)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        if let Some(distinct) = self.distinct_values.as_mut() {
            let [lists] = states else {
                return Err(DataFusionError::Internal(
                    "avg(DISTINCT) state has one column".into(),
                ));
            };
            for values in lists.as_list::<i32>().iter().flatten() {
                distinct.extend(values.as_primitive::<Decimal128Type>().iter().flatten());
            }
            return Ok(());
        }
        let [sums, counts] = states else {
            return Err(DataFusionError::Internal(
                "avg state has two columns".into(),
            ));
        };
        let sums = sums.as_primitive::<Decimal128Type>();
        let counts = counts.as_primitive::<Int64Type>();
        for (sum, count) in sums.iter().zip(counts.iter()) {
            self.add(sum.unwrap_or(0), count.unwrap_or(0))?;
        }
        Ok(())
    }
}
