//! Top-N: `ORDER BY ... LIMIT n OFFSET m` in a view, and the first n rows per group by
//! `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...) <= n`.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::array::{ArrayRef, Int64Array, UInt64Array};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;
// Faster than std's SipHash on the short byte keys these maps hold; still seeded per map.
use hashbrown::HashMap;

use super::change_batch::{changes_in_schema, encode_rows, row_converter_for};
use super::{ChangeBatch, Epoch, Operator, Owned};
use crate::error::{DataflowError, ExecutionError};
use crate::storage::codec::{DecodeError, Decoder, Encoder};

/// Rows ordered by a sort key: (order key, row) in `arrow-row` bytes → multiplicity. Ties in
/// the sort key are broken by the row bytes.
pub type OrderedRows = BTreeMap<(Box<[u8]>, Box<[u8]>), i64>;

/// One ORDER BY term: the expression, its type and direction.
#[derive(Clone)]
pub struct SortKey {
    pub expression: Arc<dyn PhysicalExpr>,
    pub data_type: DataType,
    pub descending: bool,
    pub nulls_first: bool,
}

/// Everything the planner decides about a top-N.
#[derive(Clone)]
pub struct TopNDefinition {
    /// PARTITION BY expressions; empty for a plain ORDER BY ... LIMIT.
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    pub partition_types: Vec<DataType>,
    pub order_by: Vec<SortKey>,
    pub offset: usize,
    /// `None`: every row after the offset.
    pub limit: Option<usize>,
    /// ROW_NUMBER() is an output column (the last); ORDER BY ... LIMIT has none.
    pub row_number: bool,
    pub input_schema: SchemaRef,
    pub output_schema: SchemaRef,
}

/// Incremental rule: top-N integrates its input. Each partition keeps all its rows ordered by
/// the ORDER BY terms, ties broken by the whole row so the choice is deterministic. The first
/// time a partition changes in an epoch it remembers its visible window (rows `offset ..
/// offset + limit`, with their row numbers); at the barrier it emits the difference between the
/// window now and the remembered one. Deleting a row inside the window pulls the next one in;
/// an insertion pushes the last one out, and with ROW_NUMBER the rows behind a change move by
/// one. Work per epoch is O(changes × log rows + touched partitions × (offset + limit)).
pub struct TopN {
    definition: TopNDefinition,
    partition_converter: Option<RowConverter>,
    order_converter: RowConverter,
    row_converter: RowConverter,
    /// Partition key → (order key, row) → multiplicity.
    partitions: HashMap<Box<[u8]>, OrderedRows>,
    /// Partitions changed in this epoch, with the window they showed before.
    touched: HashMap<Box<[u8]>, Vec<WindowRow>>,
}

/// A row shown by a partition's window: the row's bytes and its 1-based row number.
#[derive(Clone, PartialEq, Eq, Hash)]
struct WindowRow {
    row: Box<[u8]>,
    number: u64,
}

/// Each expression evaluated over `rows`.
pub fn evaluate_columns<'a>(
    expressions: impl IntoIterator<Item = &'a Arc<dyn PhysicalExpr>>,
    rows: &RecordBatch,
) -> Result<Vec<ArrayRef>, DataflowError> {
    Ok(expressions
        .into_iter()
        .map(|expression| expression.evaluate(rows)?.into_array(rows.num_rows()))
        .collect::<Result<Vec<ArrayRef>, _>>()?)
}

/// The keys of `expressions` over `rows` in `converter`'s encoding (a PARTITION BY's or an
/// ORDER BY's); `None` without a converter, when every row's key is empty.
pub fn encoded_keys<'a>(
    converter: Option<&RowConverter>,
    expressions: impl IntoIterator<Item = &'a Arc<dyn PhysicalExpr>>,
    rows: &RecordBatch,
) -> Result<Option<Rows>, DataflowError> {
    let Some(converter) = converter else {
        return Ok(None);
    };
    let columns = evaluate_columns(expressions, rows)?;
    Ok(Some(converter.convert_columns(&columns)?))
}

/// The converter of PARTITION BY keys of these types; `None` without PARTITION BY.
pub fn partition_converter(types: &[DataType]) -> Result<Option<RowConverter>, ArrowError> {
    if types.is_empty() {
        return Ok(None);
    }
    RowConverter::new(
        types
            .iter()
            .map(|data_type| SortField::new(data_type.clone()))
            .collect(),
    )
    .map(Some)
}

/// A row converter whose byte order is the ORDER BY's: directions and NULL placement included.
pub fn order_converter(keys: &[SortKey]) -> Result<RowConverter, ArrowError> {
    RowConverter::new(
        keys.iter()
            .map(|key| {
                SortField::new_with_options(
                    key.data_type.clone(),
                    datafusion::arrow::compute::SortOptions {
                        descending: key.descending,
                        nulls_first: key.nulls_first,
                    },
                )
            })
            .collect(),
    )
}

impl TopN {
    pub fn new(definition: TopNDefinition) -> Result<Self, DataflowError> {
        let partition_converter = partition_converter(&definition.partition_types)?;
        let order_converter = order_converter(&definition.order_by)?;
        let row_converter = row_converter_for(&definition.input_schema)?;
        Ok(Self {
            definition,
            partition_converter,
            order_converter,
            row_converter,
            partitions: HashMap::new(),
            touched: HashMap::new(),
        })
    }

    /// The rows a partition shows, in order.
    fn window(&self, partition: &[u8]) -> Vec<WindowRow> {
        let Some(rows) = self.partitions.get(partition) else {
            return Vec::new();
        };
        let offset = self.definition.offset;
        let end = self.definition.limit.map(|limit| offset + limit);
        let mut window = Vec::new();
        let mut position = 0usize;
        'rows: for ((_, row), &count) in rows {
            for _ in 0..count.max(0) {
                if end.is_some_and(|end| position >= end) {
                    break 'rows;
                }
                if position >= offset {
                    window.push(WindowRow {
                        row: row.clone(),
                        number: (position + 1) as u64,
                    });
                }
                position += 1;
            }
        }
        window
    }

    fn build_output(&self, rows: &[(WindowRow, i64)]) -> Result<ChangeBatch, DataflowError> {
        let parser = self.row_converter.parser();
        let mut columns: Vec<ArrayRef> = self.row_converter.convert_rows(
            rows.iter()
                .map(|(window_row, _)| parser.parse(&window_row.row)),
        )?;
        if self.definition.row_number {
            let numbers: UInt64Array = rows
                .iter()
                .map(|(window_row, _)| window_row.number)
                .collect();
            columns.push(Arc::new(numbers));
        }
        let weights: Int64Array = rows.iter().map(|(_, weight)| *weight).collect();
        Ok(changes_in_schema(
            &self.definition.output_schema,
            columns,
            weights,
        )?)
    }
}

impl Operator for TopN {
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
        let order_columns = evaluate_columns(
            self.definition.order_by.iter().map(|key| &key.expression),
            &input.rows,
        )?;
        // Without ORDER BY every row has the same (empty) order key: ties broken by the row.
        let order_keys = if order_columns.is_empty() {
            None
        } else {
            Some(self.order_converter.convert_columns(&order_columns)?)
        };
        let rows = encode_rows(&self.row_converter, &input.rows)?;
        for row in 0..row_count {
            let partition: &[u8] = match &partition_keys {
                Some(keys) => keys.row(row).data(),
                None => &[],
            };
            if !self.touched.contains_key(partition) {
                let window = self.window(partition);
                self.touched.insert(partition.into(), window);
            }
            let order_key: &[u8] = match &order_keys {
                Some(keys) => keys.row(row).data(),
                None => &[],
            };
            let entry: (Box<[u8]>, Box<[u8]>) = (order_key.into(), rows.row(row).data().into());
            let entries = self.partitions.entry(partition.into()).or_default();
            let count = entries.entry(entry.clone()).or_insert(0);
            *count += input.weights.value(row);
            if *count == 0 {
                entries.remove(&entry);
            }
            if entries.is_empty() {
                self.partitions.remove(partition);
            }
        }
        Ok(Vec::new())
    }

    fn barrier(&mut self, _epoch: Epoch) -> Result<Vec<ChangeBatch>, DataflowError> {
        let touched = std::mem::take(&mut self.touched);
        let mut changes: HashMap<WindowRow, i64> = HashMap::new();
        for (partition, before) in touched {
            for window_row in before {
                *changes.entry(window_row).or_insert(0) -= 1;
            }
            for window_row in self.window(&partition) {
                *changes.entry(window_row).or_insert(0) += 1;
            }
        }
        let mut rows: Vec<(WindowRow, i64)> = changes
            .into_iter()
            .filter(|(_, weight)| *weight != 0)
            .collect();
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // Without ROW_NUMBER, copies of a row all carry number 0 apart from their position;
        // the output is the same either way, so equal rows are merged.
        if !self.definition.row_number {
            let mut merged: HashMap<Box<[u8]>, i64> = HashMap::new();
            for (window_row, weight) in rows {
                *merged.entry(window_row.row).or_insert(0) += weight;
            }
            rows = merged
                .into_iter()
                .filter(|(_, weight)| *weight != 0)
                .map(|(row, weight)| (WindowRow { row, number: 0 }, weight))
                .collect();
        }
        Ok(vec![self.build_output(&rows)?])
    }

    /// Every partition's rows with their order keys and multiplicities.
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, DataflowError> {
        let mut encoder = Encoder::default();
        encoder.u64(self.partitions.len() as u64);
        for (partition, rows) in &self.partitions {
            encoder.bytes(partition).u64(rows.len() as u64);
            for ((order, row), count) in rows {
                encoder.bytes(order).bytes(row).i64(*count);
            }
        }
        Ok(Some(encoder.finish()))
    }

    fn restore(&mut self, state: &[u8], owned: Owned<'_>) -> Result<(), DataflowError> {
        let corrupted = |error: DecodeError| {
            DataflowError::from(ExecutionError::Internal(format!(
                "cannot restore a top-N: {error}"
            )))
        };
        let mut decoder = Decoder::new(state);
        let partitions = decoder.count().map_err(corrupted)?;
        for _ in 0..partitions {
            let partition: Box<[u8]> = decoder.bytes().map_err(corrupted)?.into();
            let mut rows = BTreeMap::new();
            let count = decoder.count().map_err(corrupted)?;
            for _ in 0..count {
                let order: Box<[u8]> = decoder.bytes().map_err(corrupted)?.into();
                let row: Box<[u8]> = decoder.bytes().map_err(corrupted)?.into();
                rows.insert((order, row), decoder.i64().map_err(corrupted)?);
            }
            if owned(&partition)? {
                self.partitions.insert(partition, rows);
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let order: Vec<String> = self
            .definition
            .order_by
            .iter()
            .map(|key| {
                format!(
                    "{}{}",
                    key.expression,
                    if key.descending { " DESC" } else { "" }
                )
            })
            .collect();
        let partition: Vec<String> = self
            .definition
            .partition_by
            .iter()
            .map(|expression| expression.to_string())
            .collect();
        format!(
            "TopN: partition by [{}] order by [{}] offset {} limit {:?}{}",
            partition.join(", "),
            order.join(", "),
            self.definition.offset,
            self.definition.limit,
            if self.definition.row_number {
                " with row_number"
            } else {
                ""
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::testing::{changes, column, epoch, expected, integers, summed};

    /// Rows `(g, id, v)`: the two largest `v` (ties by smaller id), overall or per `g`.
    fn top_two(per_group: bool) -> (TopN, SchemaRef) {
        let schema = integers(&["g", "id", "v"]);
        let order = |name, index, descending| SortKey {
            expression: column(name, index),
            data_type: DataType::Int64,
            descending,
            nulls_first: false,
        };
        let top_n = TopN::new(TopNDefinition {
            partition_by: if per_group {
                vec![column("g", 0)]
            } else {
                Vec::new()
            },
            partition_types: if per_group {
                vec![DataType::Int64]
            } else {
                Vec::new()
            },
            order_by: vec![order("v", 2, true), order("id", 1, false)],
            offset: 0,
            limit: Some(2),
            row_number: false,
            input_schema: Arc::clone(&schema),
            output_schema: Arc::clone(&schema),
        })
        .expect("top-n");
        (top_n, schema)
    }

    fn row(g: i64, id: i64, v: i64) -> [Option<i64>; 3] {
        [Some(g), Some(id), Some(v)]
    }

    #[test]
    fn deleting_a_row_of_the_top_pulls_the_next_one_in() {
        let (mut top_n, schema) = top_two(false);
        let (a, b, c, d) = (row(0, 1, 5), row(0, 2, 9), row(0, 3, 7), row(0, 4, 7));
        let out = epoch(
            &mut top_n,
            changes(&schema, &[(&a, 1), (&b, 1), (&c, 1), (&d, 1)]),
        );
        assert_eq!(summed(&out), expected(&[(&b, 1), (&c, 1)]));
        // b leaves: c stays, d (the tie with the larger id) comes in.
        let out = epoch(&mut top_n, changes(&schema, &[(&b, -1)]));
        assert_eq!(summed(&out), expected(&[(&b, -1), (&d, 1)]));
        // A row below the top changes nothing.
        let out = epoch(&mut top_n, changes(&schema, &[(&row(0, 5, 1), 1)]));
        assert_eq!(summed(&out), expected(&[]));
    }

    #[test]
    fn each_partition_keeps_its_own_top_across_a_restore() {
        let (mut top_n, schema) = top_two(true);
        let rows = [row(1, 1, 1), row(1, 2, 2), row(1, 3, 3), row(2, 4, 4)];
        let out = epoch(
            &mut top_n,
            changes(
                &schema,
                &[(&rows[0], 1), (&rows[1], 1), (&rows[2], 1), (&rows[3], 1)],
            ),
        );
        assert_eq!(
            summed(&out),
            expected(&[(&rows[1], 1), (&rows[2], 1), (&rows[3], 1)])
        );
        let state = top_n
            .checkpoint()
            .expect("checkpoint")
            .expect("a top-n keeps state");
        let (mut restored, _) = top_two(true);
        restored.restore(&state, &|_| Ok(true)).expect("restore");
        // Group 1's top loses a row and takes back the one it had dropped; group 2 is untouched.
        let out = epoch(&mut restored, changes(&schema, &[(&rows[2], -1)]));
        assert_eq!(summed(&out), expected(&[(&rows[2], -1), (&rows[0], 1)]));
    }
}
