//! CREATE TABLE: columns with Postgres types and NOT NULL, and an optional event time
//! (`WATERMARK FOR`).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast::{ColumnDef, ColumnOption, CreateTable, Statement};

use crate::catalog::{MAX_LENGTH_KEY, RelationKind, Watermark};
use crate::coordinator::NewRelation;
use crate::error::{ExecutionError, PlanError, Result};
use crate::session::{CommandTag, QueryResult, Session};
use crate::sql::event_time::WatermarkClause;
use crate::sql::{identifier, relation_name, types};

/// `event_time` is the WATERMARK clause, with the statement as written (which the catalog keeps:
/// sqlparser cannot print the clause back).
pub(super) async fn execute(
    session: &Session,
    create: &CreateTable,
    event_time: Option<(&WatermarkClause, &str)>,
) -> Result<QueryResult> {
    if create.query.is_some() {
        return Err(
            ExecutionError::Internal("CREATE TABLE ... AS goes to create_table_as".into()).into(),
        );
    }
    if !create.constraints.is_empty() {
        return Err(
            PlanError::Unsupported("table constraints are not supported yet".into()).into(),
        );
    }
    let name = relation_name(&create.name)?;
    let fields = fields(&create.columns)?;
    let watermark = event_time
        .map(|(clause, _)| resolve_watermark(clause, &fields))
        .transpose()?;
    let sql = match event_time {
        Some((_, written)) => written.to_string(),
        None => Statement::CreateTable(create.clone()).to_string(),
    };
    let relation = NewRelation {
        sql,
        recovered_id: None,
        name,
        kind: RelationKind::Table,
        schema: Arc::new(Schema::new(fields)),
        definition: None,
        depends_on: Vec::new(),
        dataflow: None,
        connector: None,
        watermark,
    };
    super::create_relation(session, relation, create.if_not_exists).await?;
    Ok(QueryResult::Command(CommandTag::new("CREATE TABLE")))
}

/// The column a WATERMARK clause names among `fields`, which must be a timestamp, and its delay.
pub(super) fn resolve_watermark(clause: &WatermarkClause, fields: &[Field]) -> Result<Watermark> {
    let (column, delay_nanoseconds) = clause.resolve()?;
    let index = fields
        .iter()
        .position(|field| field.name() == &column)
        .ok_or_else(|| PlanError::UndefinedColumn(column.clone()))?;
    if !matches!(fields[index].data_type(), DataType::Timestamp(_, _)) {
        return Err(PlanError::DatatypeMismatch(format!(
            "WATERMARK FOR {column}: an event time must be a timestamp or timestamptz, not {}",
            crate::server::arrow_type_name(fields[index].data_type())
        ))
        .into());
    }
    Ok(Watermark {
        column: index,
        delay_nanoseconds,
    })
}

/// Arrow fields for column definitions: Postgres types, NOT NULL, VARCHAR(n) lengths.
pub(super) fn fields(columns: &[ColumnDef]) -> Result<Vec<Field>> {
    let mut fields = Vec::with_capacity(columns.len());
    for column in columns {
        let column_name = identifier(&column.name);
        if fields
            .iter()
            .any(|field: &Field| field.name() == &column_name)
        {
            return Err(PlanError::DuplicateColumn(column_name).into());
        }
        let mut nullable = true;
        for option in &column.options {
            match &option.option {
                ColumnOption::NotNull => nullable = false,
                ColumnOption::Null => nullable = true,
                other => {
                    return Err(PlanError::Unsupported(format!(
                        "column option {other} is not supported yet"
                    ))
                    .into());
                }
            }
        }
        let mut field = Field::new(column_name, types::arrow_type(&column.data_type)?, nullable);
        if let Some(length) = types::max_length(&column.data_type) {
            field = field.with_metadata(HashMap::from([(
                MAX_LENGTH_KEY.to_string(),
                length.to_string(),
            )]));
        }
        fields.push(field);
    }
    Ok(fields)
}
