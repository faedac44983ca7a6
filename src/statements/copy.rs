//! COPY: `FROM STDIN` reads the client's data into a table (cast to its columns as an INSERT
//! would, and written as one change in one epoch: all of it or, on a bad line, none);
//! `TO STDOUT` sends a table's or a query's rows. The server moves the bytes ([`crate::copy`]
//! reads and writes the formats).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, new_null_array};
use datafusion::arrow::compute::concat;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, cast};
use datafusion::sql::sqlparser::ast::{CopySource, CopyTarget, Statement};

use crate::catalog::{Relation, without_constraints};
use crate::coordinator::TableChange;
use crate::copy::{Format, Options, TextRows};
use crate::error::{Error, ExecutionError, PlanError, Result};
use crate::session::{QueryResult, Session};
use crate::statements::RowStream;

/// A COPY FROM STDIN waiting for its data: the table, the columns the data holds and how.
#[derive(Debug)]
pub struct CopyIn {
    table: Arc<Relation>,
    /// Positions in the table's schema of the data's columns, in the data's order.
    columns: Vec<usize>,
    pub options: Options,
}

impl CopyIn {
    /// How many fields each row of the data has.
    pub fn column_count(&self) -> usize {
        self.columns.len()
    }
}

/// The rows COPY TO STDOUT sends, and the format to write them in.
pub struct CopyOut {
    pub schema: SchemaRef,
    pub options: Options,
    batches: Batches,
}

enum Batches {
    Made(std::vec::IntoIter<RecordBatch>),
    Streamed(RowStream),
}

impl std::fmt::Debug for CopyOut {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CopyOut")
            .field("schema", &self.schema)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl CopyOut {
    /// The next batch of rows; `None` after the last.
    pub async fn next(&mut self) -> Option<Result<RecordBatch>> {
        match &mut self.batches {
            Batches::Made(batches) => batches.next().map(Ok),
            Batches::Streamed(rows) => rows.next().await,
        }
    }

    /// The names of the columns, as a header line and FORCE_QUOTE name them.
    pub fn column_names(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|field| field.name().clone())
            .collect()
    }
}

pub(super) async fn execute(session: &Session, statement: &Statement) -> Result<QueryResult> {
    let Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    } = statement
    else {
        return Err(ExecutionError::Internal("COPY expected".into()).into());
    };
    match (target, to) {
        (CopyTarget::Stdin, false) | (CopyTarget::Stdout, true) => {}
        (CopyTarget::Stdin, true) | (CopyTarget::Stdout, false) => {
            return Err(PlanError::Syntax(format!(
                "COPY {} STDIN/STDOUT: use FROM STDIN or TO STDOUT",
                if *to { "TO" } else { "FROM" }
            ))
            .into());
        }
        (CopyTarget::File { .. } | CopyTarget::Program { .. }, _) => {
            return Err(PlanError::Unsupported(
                "COPY to or from a file or program on the server: use COPY ... FROM STDIN or \
                 TO STDOUT (psql's \\copy)"
                    .into(),
            )
            .into());
        }
    }
    let options = Options::parse(options, legacy_options)?;
    if *to {
        copy_to(session, source, options).await
    } else {
        copy_from(session, source, options)
    }
}

fn copy_from(session: &Session, source: &CopySource, options: Options) -> Result<QueryResult> {
    let CopySource::Table {
        table_name,
        columns,
    } = source
    else {
        return Err(PlanError::Syntax("COPY FROM needs a table, not a query".into()).into());
    };
    let table = super::table_named(session, &crate::sql::relation_name(table_name)?)?;
    let columns = column_positions(&table, columns)?;
    Ok(QueryResult::CopyIn(CopyIn {
        table,
        columns,
        options,
    }))
}

/// The listed columns' positions in the table, or every column when none are listed.
fn column_positions(
    table: &Relation,
    columns: &[datafusion::sql::sqlparser::ast::Ident],
) -> Result<Vec<usize>> {
    if columns.is_empty() {
        return Ok((0..table.schema.fields().len()).collect());
    }
    let mut positions = Vec::with_capacity(columns.len());
    for column in columns {
        let name = crate::sql::identifier(column);
        let position = table
            .schema
            .index_of(&name)
            .map_err(|_| PlanError::UndefinedColumn(name.clone()))?;
        if positions.contains(&position) {
            return Err(PlanError::DuplicateColumn(name).into());
        }
        positions.push(position);
    }
    Ok(positions)
}

async fn copy_to(session: &Session, source: &CopySource, options: Options) -> Result<QueryResult> {
    let query = match source {
        CopySource::Query(query) => Statement::Query(query.clone()),
        CopySource::Table {
            table_name,
            columns,
        } => {
            let name = crate::sql::relation_name(table_name)?;
            let list = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(|column| super::quoted_identifier(&crate::sql::identifier(column)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            super::standard_statement(&format!(
                "SELECT {list} FROM {}",
                super::quoted_identifier(&name)
            ))?
        }
    };
    let (schema, batches) = match super::query::execute(session, &query, None).await? {
        QueryResult::Rows { schema, batches } => (schema, Batches::Made(batches.into_iter())),
        QueryResult::Streamed(rows) => (rows.schema.clone(), Batches::Streamed(rows)),
        _ => {
            return Err(
                PlanError::Unsupported("COPY TO needs a query that returns rows".into()).into(),
            );
        }
    };
    Ok(QueryResult::CopyOut(CopyOut {
        schema,
        options,
        batches,
    }))
}

/// Reads the data of a COPY FROM STDIN and writes its rows to the table in one change; returns
/// how many rows it wrote.
pub(crate) async fn finish(session: &Session, copy: CopyIn, data: &[u8]) -> Result<u64> {
    let CopyIn {
        table,
        columns,
        options,
    } = copy;
    let types: Vec<DataType> = columns
        .iter()
        .map(|position| table.schema.field(*position).data_type().clone())
        .collect();
    let arrays = match options.format {
        Format::Binary => crate::copy::decode_binary(data, &types)?,
        Format::Text | Format::Csv => {
            let names: Vec<String> = columns
                .iter()
                .map(|position| table.schema.field(*position).name().clone())
                .collect();
            let rows = options.decode_text(data, &names)?;
            cast_text(session, &table.name, &names, &types, rows).await?
        }
    };
    let row_count = arrays.first().map_or(0, |array| array.len());
    if row_count == 0 {
        return Ok(0);
    }
    // Columns the data leaves out take their defaults, as an INSERT's do.
    let sequences = Arc::clone(&session.pinned.get().sequences);
    let full: Vec<ArrayRef> = table
        .schema
        .fields()
        .iter()
        .enumerate()
        .map(
            |(position, field)| match columns.iter().position(|c| *c == position) {
                Some(index) => Ok(Arc::clone(&arrays[index])),
                None => column_default(field, row_count, &sequences),
            },
        )
        .collect::<Result<_>>()?;
    let batch = RecordBatch::try_new(without_constraints(&table.schema), full)?;
    session
        .coordinator
        .write(table.id, TableChange::Insert(vec![batch]))
        .await
        .map(|written| written.rows)
}

/// `rows` values of a column a COPY leaves out: its sequence's next values, its constant
/// DEFAULT, or NULL.
fn column_default(
    field: &datafusion::arrow::datatypes::Field,
    rows: usize,
    sequences: &crate::storage::Sequences,
) -> Result<ArrayRef> {
    let metadata = field.metadata();
    let values: ArrayRef = if let Some(sequence) = metadata.get(crate::catalog::SEQUENCE_KEY) {
        let values = (0..rows)
            .map(|_| {
                sequences
                    .next(sequence)
                    .ok_or_else(|| ExecutionError::UndefinedSequence(sequence.clone()))
            })
            .collect::<std::result::Result<Vec<i64>, _>>()?;
        Arc::new(datafusion::arrow::array::Int64Array::from(values))
    } else if let Some(text) = metadata.get(crate::catalog::DEFAULT_KEY) {
        Arc::new(datafusion::arrow::array::StringArray::from(vec![
            text.as_str();
            rows
        ]))
    } else {
        return Ok(new_null_array(field.data_type(), rows));
    };
    Ok(datafusion::arrow::compute::cast(
        &values,
        field.data_type(),
    )?)
}

/// Casts each column of text to its type the way `'text'::type` does. A value its type refuses
/// fails the whole COPY with the line and column it came from.
async fn cast_text(
    session: &Session,
    table: &str,
    names: &[String],
    types: &[DataType],
    rows: TextRows,
) -> Result<Vec<ArrayRef>> {
    let text: Vec<ArrayRef> = rows
        .columns
        .iter()
        .map(|values| {
            Arc::new(values.iter().map(Option::as_deref).collect::<StringArray>()) as ArrayRef
        })
        .collect();
    match cast_rows(session, &text, types, 0, rows.len()).await {
        Ok(arrays) => Ok(arrays),
        Err(error) => {
            let failing = first_failing_row(session, &text, types, rows.len()).await;
            Err(locate(session, &text, names, types, &rows, table, failing, error).await)
        }
    }
}

/// Rows `offset..offset + length` of the text columns cast to `types`.
async fn cast_rows(
    session: &Session,
    text: &[ArrayRef],
    types: &[DataType],
    offset: usize,
    length: usize,
) -> Result<Vec<ArrayRef>> {
    let fields: Vec<Field> = (0..text.len())
        .map(|index| Field::new(format!("column{index}"), DataType::Utf8, true))
        .collect();
    let columns = text
        .iter()
        .map(|array| array.slice(offset, length))
        .collect();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    let casts: Vec<Expr> = types
        .iter()
        .enumerate()
        .map(|(index, data_type)| {
            cast(
                Expr::Column(Column::new_unqualified(format!("column{index}"))),
                data_type.clone(),
            )
            .alias(format!("column{index}"))
        })
        .collect();
    let batches = session
        .context
        .read_batch(batch)?
        .select(casts)?
        .collect()
        .await?;
    (0..types.len())
        .map(|index| {
            let pieces: Vec<&dyn Array> = batches
                .iter()
                .map(|batch| batch.column(index).as_ref())
                .collect();
            if pieces.is_empty() {
                return Ok(datafusion::arrow::array::new_empty_array(&types[index]));
            }
            Ok(concat(&pieces)?)
        })
        .collect()
}

/// The first row whose cast fails: the shortest failing prefix, found by halving.
async fn first_failing_row(
    session: &Session,
    text: &[ArrayRef],
    types: &[DataType],
    rows: usize,
) -> Option<usize> {
    // Invariant: the first `good` rows cast; the first `bad` rows do not.
    let (mut good, mut bad) = (0, rows);
    while bad - good > 1 {
        let middle = good + (bad - good) / 2;
        if cast_rows(session, text, types, 0, middle).await.is_ok() {
            good = middle;
        } else {
            bad = middle;
        }
    }
    (bad > 0).then(|| bad - 1)
}

/// The cast error of the failing row, with its line, column and value.
#[allow(clippy::too_many_arguments)]
async fn locate(
    session: &Session,
    text: &[ArrayRef],
    names: &[String],
    types: &[DataType],
    rows: &TextRows,
    table: &str,
    failing: Option<usize>,
    error: Error,
) -> Error {
    let Some(row) = failing else { return error };
    for (index, data_type) in types.iter().enumerate() {
        let single = [Arc::clone(&text[index])];
        let Err(column_error) =
            cast_rows(session, &single, std::slice::from_ref(data_type), row, 1).await
        else {
            continue;
        };
        let Error::Execution(source) = column_error else {
            return column_error;
        };
        let value = rows.columns[index][row].as_deref().unwrap_or("");
        return ExecutionError::CopyValue {
            context: format!(
                "{table}, line {}, column {}: \"{value}\"",
                rows.lines[row], names[index]
            ),
            source: Box::new(source),
        }
        .into();
    }
    error
}
