//! Helpers for the operators' unit tests: change batches of nullable integer columns, and an
//! operator's output summed into a multiset.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;

use super::{ChangeBatch, Operator};

/// A schema of nullable BIGINT columns with these names.
pub fn integers(names: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        names
            .iter()
            .map(|name| Field::new(*name, DataType::Int64, true))
            .collect::<Vec<_>>(),
    ))
}

/// Rows of `schema` (all BIGINT), each with its weight.
pub fn changes(schema: &SchemaRef, rows: &[(&[Option<i64>], i64)]) -> ChangeBatch {
    let columns = (0..schema.fields().len())
        .map(|column| {
            Arc::new(Int64Array::from_iter(
                rows.iter().map(|(row, _)| row[column]),
            )) as Arc<dyn Array>
        })
        .collect();
    let batch = RecordBatch::try_new(Arc::clone(schema), columns).expect("batch");
    ChangeBatch::new(
        batch,
        Int64Array::from_iter_values(rows.iter().map(|(_, weight)| *weight)),
    )
}

/// One epoch of a unary operator: `input` on port 0, then the barrier; everything it emitted.
pub fn epoch(operator: &mut dyn Operator, input: ChangeBatch) -> Vec<ChangeBatch> {
    let mut output = operator.process(0, input).expect("process");
    output.extend(operator.barrier(1).expect("barrier"));
    output
}

/// Column `index` of its input.
pub fn column(name: &str, index: usize) -> Arc<dyn PhysicalExpr> {
    Arc::new(Column::new(name, index))
}

/// Every row of `batches` (BIGINT columns) with its total weight; rows whose weights cancel are
/// left out.
pub fn summed(batches: &[ChangeBatch]) -> BTreeMap<Vec<Option<i64>>, i64> {
    let mut rows = BTreeMap::new();
    for batch in batches {
        for row in 0..batch.len() {
            let values = batch
                .rows
                .columns()
                .iter()
                .map(|column| {
                    let column = column.as_primitive::<Int64Type>();
                    (!column.is_null(row)).then(|| column.value(row))
                })
                .collect();
            *rows.entry(values).or_insert(0) += batch.weights.value(row);
        }
    }
    rows.retain(|_, weight| *weight != 0);
    rows
}

/// `summed` of what `rows` says, for comparing.
pub fn expected(rows: &[(&[Option<i64>], i64)]) -> BTreeMap<Vec<Option<i64>>, i64> {
    rows.iter()
        .map(|(row, weight)| (row.to_vec(), *weight))
        .collect()
}
