//! Change batches: Arrow rows paired with Z-set weights, the currency every operator trades in.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{RowConverter, Rows, SortField};

/// A set of changes to a relation: row `i` of `rows` occurs `weights[i]` more times (negative:
/// fewer). A batch of such rows is a Z-set; adding two Z-sets concatenates them.
///
/// The weight column travels beside the data columns rather than inside the `RecordBatch`, so
/// that expressions compiled against a relation's schema evaluate directly on `rows`.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    pub rows: RecordBatch,
    pub weights: Int64Array,
}

impl ChangeBatch {
    pub fn new(rows: RecordBatch, weights: Int64Array) -> Self {
        debug_assert_eq!(rows.num_rows(), weights.len());
        Self { rows, weights }
    }

    /// Every row of `rows` inserted once.
    pub fn insertions(rows: RecordBatch) -> Self {
        let weights = Int64Array::from(vec![1; rows.num_rows()]);
        Self { rows, weights }
    }

    /// Every row of `rows` deleted once.
    pub fn deletions(rows: RecordBatch) -> Self {
        let weights = Int64Array::from(vec![-1; rows.num_rows()]);
        Self { rows, weights }
    }

    pub fn len(&self) -> usize {
        self.rows.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.num_rows() == 0
    }

    pub fn schema(&self) -> SchemaRef {
        self.rows.schema()
    }

    /// Keeps the rows where `mask` is true (nulls count as false, as in SQL WHERE).
    pub fn filter(
        &self,
        mask: &datafusion::arrow::array::BooleanArray,
    ) -> Result<Self, ArrowError> {
        let mask = if mask.null_count() > 0 {
            datafusion::arrow::compute::prep_null_mask_filter(mask)
        } else {
            mask.clone()
        };
        let rows = filter_record_batch(&self.rows, &mask)?;
        let weights = datafusion::arrow::compute::filter(&self.weights, &mask)?;
        let weights = weights
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned()
            .ok_or_else(|| ArrowError::CastError("weights are not Int64".into()))?;
        Ok(Self::new(rows, weights))
    }

    /// The rows at `indices`, in that order, with their weights.
    pub fn take(&self, indices: Vec<u32>) -> Result<Self, ArrowError> {
        let weights: Int64Array = indices
            .iter()
            .map(|&index| self.weights.value(index as usize))
            .collect::<Vec<i64>>()
            .into();
        let rows = take_record_batch(&self.rows, &UInt32Array::from(indices))?;
        Ok(Self::new(rows, weights))
    }

    /// Rows `offset..offset + length`, sharing this batch's buffers.
    pub fn slice(&self, offset: usize, length: usize) -> Self {
        Self::new(
            self.rows.slice(offset, length),
            self.weights.slice(offset, length),
        )
    }

    /// Concatenates batches that share `schema` into one.
    pub fn concat(schema: &SchemaRef, batches: &[ChangeBatch]) -> Result<Self, ArrowError> {
        let rows = concat_batches(schema, batches.iter().map(|b| &b.rows))?;
        let weights: Int64Array = batches
            .iter()
            .flat_map(|b| b.weights.iter())
            .map(|w| w.unwrap_or(0))
            .map(Some)
            .collect();
        Ok(Self::new(rows, weights))
    }

    /// Sums the weights of identical rows and drops rows whose weight becomes zero. The result is
    /// sorted by the rows' `arrow-row` encoding, which is returned alongside: arrangements store
    /// both.
    pub fn consolidate(&self, converter: &RowConverter) -> Result<(Self, Rows), ArrowError> {
        let keys = encode_rows(converter, &self.rows)?;
        self.consolidate_encoded(keys, converter)
    }

    /// [`ChangeBatch::consolidate`] with the rows already encoded (`keys`, by `converter`), in
    /// whatever column order the caller sorts by.
    pub fn consolidate_encoded(
        &self,
        keys: Rows,
        converter: &RowConverter,
    ) -> Result<(Self, Rows), ArrowError> {
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| keys.row(a as usize).cmp(&keys.row(b as usize)));
        let mut indices = Vec::with_capacity(order.len());
        let mut weights = Vec::with_capacity(order.len());
        let mut kept_keys = converter.empty_rows(order.len(), keys.size());
        let mut position = 0;
        while position < order.len() {
            let first = order[position];
            let mut weight = 0i64;
            while position < order.len()
                && keys.row(order[position] as usize) == keys.row(first as usize)
            {
                weight += self.weights.value(order[position] as usize);
                position += 1;
            }
            if weight != 0 {
                indices.push(first);
                weights.push(weight);
                kept_keys.push(keys.row(first as usize));
            }
        }
        let rows = take_record_batch(&self.rows, &UInt32Array::from(indices))?;
        Ok((Self::new(rows, Int64Array::from(weights)), kept_keys))
    }

    /// The rows as a plain relation: each row repeated `weight` times. Fails if a weight is
    /// negative, which means more deletions than insertions reached a relation (a bug upstream).
    pub fn expand(&self) -> Result<RecordBatch, ArrowError> {
        if self.weights.values().iter().all(|&w| w == 1) {
            return Ok(self.rows.clone());
        }
        let mut indices = Vec::with_capacity(self.len());
        for (row, &weight) in self.weights.values().iter().enumerate() {
            if weight < 0 {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "relation holds a row with negative multiplicity {weight}"
                )));
            }
            indices.extend(std::iter::repeat_n(row as u32, weight as usize));
        }
        take_record_batch(&self.rows, &UInt32Array::from(indices))
    }
}

/// Every row of `rows` in `converter`'s encoding (a converter from [`row_converter_for`]).
/// Unlike `convert_columns`, it keeps the rows of a batch without columns (`SELECT FROM t`, a
/// join side whose columns are all projected away): each is one empty encoding, not none.
pub fn encode_rows(converter: &RowConverter, rows: &RecordBatch) -> Result<Rows, ArrowError> {
    if rows.num_columns() > 0 {
        return converter.convert_columns(rows.columns());
    }
    let empty: &[u8] = &[];
    let encodings = BinaryArray::from_iter_values(std::iter::repeat_n(empty, rows.num_rows()));
    Ok(converter.from_binary(encodings))
}

/// A row converter over every column of `schema`, the key of consolidation and arrangements.
pub fn row_converter_for(schema: &SchemaRef) -> Result<RowConverter, ArrowError> {
    RowConverter::new(
        schema
            .fields()
            .iter()
            .map(|field| SortField::new(field.data_type().clone()))
            .collect(),
    )
}

/// A change batch of `columns` under `schema`, each column cast to the schema's type where it
/// differs (an operator computes in its own types, say Int64 counts for an INT column), with
/// `weights`.
pub fn changes_in_schema(
    schema: &SchemaRef,
    columns: Vec<ArrayRef>,
    weights: Int64Array,
) -> Result<ChangeBatch, ArrowError> {
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column)
            } else {
                datafusion::arrow::compute::cast(&column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options =
        datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(weights.len()));
    let rows = RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)?;
    Ok(ChangeBatch::new(rows, weights))
}

/// Replaces the schema of `batch` (same types, other names or nullability).
pub fn with_schema(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = batch.columns().to_vec();
    RecordBatch::try_new(Arc::clone(schema), columns)
}
