//! Unnest: expands list columns into one row per element (what set-returning functions in a
//! view's select list, such as `jsonb_array_elements`, are planned as).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, RecordBatchOptions, UInt32Array,
};
use datafusion::arrow::compute::{concat, take};
use datafusion::arrow::datatypes::SchemaRef;

use super::{ChangeBatch, Operator};
use crate::error::DataflowError;

/// Incremental rule: unnest is linear, `unnest(ΔR) = Δunnest(R)`: a change to a row is the same
/// change to each row it expands into, so each output row takes its input row's weight. A NULL
/// or empty list expands into no rows; lists of different lengths in one row are padded with
/// NULLs to the longest, as Postgres runs set-returning functions side by side.
pub struct Unnest {
    /// Input column each output column is made from, in output order.
    sources: Vec<usize>,
    /// Input columns that are lists to expand.
    lists: Vec<usize>,
    schema: SchemaRef,
}

impl Unnest {
    pub fn new(sources: Vec<usize>, lists: Vec<usize>, schema: SchemaRef) -> Self {
        Self {
            sources,
            lists,
            schema,
        }
    }
}

impl Operator for Unnest {
    fn process(
        &mut self,
        _port: usize,
        input: ChangeBatch,
    ) -> Result<Vec<ChangeBatch>, DataflowError> {
        let rows = &input.rows;
        let lists: Vec<_> = self
            .lists
            .iter()
            .map(|&column| rows.column(column).as_list::<i32>())
            .collect();
        // For each output row: the input row it comes from, and its place in that row's lists.
        let mut from_row = Vec::new();
        let mut place = Vec::new();
        for row in 0..rows.num_rows() {
            let length = lists
                .iter()
                .map(|list| {
                    if list.is_null(row) {
                        0
                    } else {
                        list.value_length(row) as usize
                    }
                })
                .max()
                .unwrap_or(0);
            for index in 0..length {
                from_row.push(row as u32);
                place.push(index);
            }
        }
        let from_row = UInt32Array::from(from_row);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.sources.len());
        for &source in &self.sources {
            let column = match self.lists.iter().position(|&list| list == source) {
                Some(which) => {
                    let list = lists[which];
                    // Each output row's element: its list's value at `place`, or NULL past the
                    // list's end.
                    let values = list.values();
                    let offsets = list.value_offsets();
                    let picks: Vec<Option<u32>> = from_row
                        .values()
                        .iter()
                        .zip(&place)
                        .map(|(&row, &index)| {
                            let row = row as usize;
                            let length = if list.is_null(row) {
                                0
                            } else {
                                list.value_length(row) as usize
                            };
                            (index < length).then(|| offsets[row] as u32 + index as u32)
                        })
                        .collect();
                    let picks = UInt32Array::from(picks);
                    if values.is_empty() {
                        // `take` of all-NULL indices from no values.
                        let empty_with_null = concat(&[
                            values.as_ref(),
                            datafusion::arrow::array::new_null_array(values.data_type(), 1)
                                .as_ref(),
                        ])?;
                        take(empty_with_null.as_ref(), &picks, None)?
                    } else {
                        take(values.as_ref(), &picks, None)?
                    }
                }
                None => take(rows.column(source).as_ref(), &from_row, None)?,
            };
            columns.push(column);
        }
        let weights = take(&input.weights, &from_row, None)?;
        let weights = weights
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned()
            .ok_or_else(|| {
                crate::error::ExecutionError::Internal("unnest weights are not int64".into())
            })?;
        let options = RecordBatchOptions::new().with_row_count(Some(from_row.len()));
        let output =
            RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?;
        Ok(vec![ChangeBatch::new(output, weights)])
    }

    fn describe(&self) -> String {
        format!("Unnest: columns {:?}", self.lists)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int32Array, ListArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema};

    use super::*;

    #[test]
    fn each_element_is_a_row_with_its_input_rows_weight() {
        let ids = Int32Array::from(vec![1, 2, 3]);
        let lists = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(10), Some(11)]),
            None,
            Some(vec![Some(30)]),
        ]);
        let input_schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("list", lists.data_type().clone(), true),
        ]));
        let output_schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("element", DataType::Int32, true),
        ]));
        let rows = RecordBatch::try_new(input_schema, vec![Arc::new(ids), Arc::new(lists)])
            .expect("batch");
        let mut unnest = Unnest::new(vec![0, 1], vec![1], output_schema);
        let output = unnest
            .process(0, ChangeBatch::new(rows, Int64Array::from(vec![1, 1, -1])))
            .expect("unnest");
        let output = &output[0];
        assert_eq!(output.weights, Int64Array::from(vec![1, 1, -1]));
        assert_eq!(
            output.rows.column(0).as_primitive::<Int32Type>().values(),
            &[1, 1, 3]
        );
        assert_eq!(
            output.rows.column(1).as_primitive::<Int32Type>().values(),
            &[10, 11, 30]
        );
    }
}
