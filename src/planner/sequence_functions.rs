//! `nextval('name')`: the next value of a sequence (the default of a serial column).

use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result as DataFusionResult};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::context::PinnedSnapshot;

/// `nextval(name)`, counting in the sequences of the snapshot pinned by the statement (one
/// instance for every snapshot: see `Snapshot::sequences`). Volatile: a value per row, never
/// folded into a constant.
#[derive(Debug)]
struct NextValue {
    pinned: Arc<PinnedSnapshot>,
    signature: Signature,
}

impl PartialEq for NextValue {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for NextValue {}

impl std::hash::Hash for NextValue {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "nextval".hash(state);
    }
}

impl ScalarUDFImpl for NextValue {
    fn name(&self) -> &str {
        "nextval"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arguments: &[DataType]) -> DataFusionResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, arguments: ScalarFunctionArgs) -> DataFusionResult<ColumnarValue> {
        let rows = arguments.number_rows;
        let names = arguments
            .args
            .first()
            .ok_or_else(|| DataFusionError::Plan("nextval takes a sequence's name".into()))?
            .to_array(rows)?;
        let names = datafusion::arrow::compute::cast(&names, &DataType::Utf8)?;
        let names = names
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| DataFusionError::Internal("nextval's names as text".into()))?;
        let sequences = Arc::clone(&self.pinned.get().sequences);
        let values = (0..rows)
            .map(|row| {
                if names.is_null(row) {
                    return Ok(None);
                }
                // Postgres accepts the name qualified with the schema (regclass text).
                let name = names.value(row);
                let name = name.strip_prefix("public.").unwrap_or(name);
                sequences.next(name).map(Some).ok_or_else(|| {
                    DataFusionError::External(Box::new(
                        crate::error::ExecutionError::UndefinedSequence(name.to_string()),
                    ))
                })
            })
            .collect::<DataFusionResult<Int64Array>>()?;
        Ok(ColumnarValue::Array(Arc::new(values)))
    }
}

pub fn next_value_function(pinned: Arc<PinnedSnapshot>) -> ScalarUDF {
    ScalarUDF::new_from_impl(NextValue {
        pinned,
        signature: Signature::any(1, Volatility::Volatile),
    })
}

/// `nextval('sequence')`, what a serial column's missing values are.
pub fn next_value_of(pinned: Arc<PinnedSnapshot>, sequence: &str) -> Expr {
    Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
        Arc::new(next_value_function(pinned)),
        vec![datafusion::prelude::lit(sequence.to_string())],
    ))
}
