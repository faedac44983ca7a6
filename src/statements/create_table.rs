//! CREATE TABLE: columns with Postgres types and NOT NULL, and an optional event time
//! (`WATERMARK FOR`).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast::{
    ColumnDef, ColumnOption, CreateTable, Expr, IndexColumn, Statement, TableConstraint,
};

use crate::catalog::{MAX_LENGTH_KEY, RelationKind, UniqueKey, Watermark};
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
    let name = relation_name(&create.name)?;
    let mut fields = fields(&create.columns)?;
    serial_columns(&name, &create.columns, &mut fields);
    let unique_keys = unique_keys(&name, create, &fields)?;
    // A primary key's columns are NOT NULL, as if declared so.
    for key in unique_keys.iter().filter(|key| key.primary) {
        for &column in &key.columns {
            fields[column] = fields[column].clone().with_nullable(false);
        }
    }
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
        unique_keys,
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
        let mut metadata = HashMap::new();
        for option in &column.options {
            match &option.option {
                ColumnOption::NotNull => nullable = false,
                ColumnOption::Null => nullable = true,
                // Read by `unique_keys`.
                ColumnOption::PrimaryKey(_) | ColumnOption::Unique(_) => {}
                ColumnOption::Default(value) => {
                    if let Some(text) = constant_text(value)? {
                        metadata.insert(crate::catalog::DEFAULT_KEY.to_string(), text);
                    }
                }
                other => {
                    return Err(PlanError::Unsupported(format!(
                        "column option {other} is not supported yet"
                    ))
                    .into());
                }
            }
        }
        if let Some(length) = types::max_length(&column.data_type) {
            metadata.insert(MAX_LENGTH_KEY.to_string(), length.to_string());
        }
        fields.push(
            Field::new(column_name, types::arrow_type(&column.data_type)?, nullable)
                .with_metadata(metadata),
        );
    }
    Ok(fields)
}

/// `serial` columns of `table`: NOT NULL, with the sequence `table_column_seq` as default.
fn serial_columns(table: &str, columns: &[ColumnDef], fields: &mut [Field]) {
    for (column, field) in columns.iter().zip(fields.iter_mut()) {
        if types::is_serial(&column.data_type) {
            let mut metadata = field.metadata().clone();
            metadata.insert(
                crate::catalog::SEQUENCE_KEY.to_string(),
                format!("{table}_{}_seq", field.name()),
            );
            *field = field.clone().with_nullable(false).with_metadata(metadata);
        }
    }
}

/// A DEFAULT's constant as text (`None` for NULL, which is every column's default anyway).
fn constant_text(value: &Expr) -> Result<Option<String>> {
    use datafusion::sql::sqlparser::ast::{UnaryOperator, Value};
    Ok(match value {
        Expr::Value(value) => match &value.value {
            Value::Null => None,
            Value::Number(digits, _) => Some(digits.clone()),
            Value::SingleQuotedString(text) => Some(text.clone()),
            Value::Boolean(truth) => Some(truth.to_string()),
            _ => return Err(unsupported_default(value)),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } if matches!(expr.as_ref(), Expr::Value(_)) => {
            constant_text(expr)?.map(|digits| format!("-{digits}"))
        }
        Expr::Nested(inner) => constant_text(inner)?,
        other => return Err(unsupported_default(other)),
    })
}

fn unsupported_default(value: &impl std::fmt::Display) -> crate::error::Error {
    PlanError::Unsupported(format!(
        "DEFAULT {value} is not supported yet: a column default must be a constant"
    ))
    .into()
}

/// The table's PRIMARY KEY and UNIQUE constraints, from its column options and table
/// constraints, named as Postgres names them (`t_pkey`, `t_a_b_key`); the primary key first.
fn unique_keys(table: &str, create: &CreateTable, fields: &[Field]) -> Result<Vec<UniqueKey>> {
    // (constraint name if given, columns, primary)
    let mut declared: Vec<(Option<String>, Vec<String>, bool)> = Vec::new();
    for column in &create.columns {
        for option in &column.options {
            let constraint_name = option.name.as_ref().map(identifier);
            match &option.option {
                ColumnOption::PrimaryKey(_) => {
                    declared.push((constraint_name, vec![identifier(&column.name)], true))
                }
                ColumnOption::Unique(_) => {
                    declared.push((constraint_name, vec![identifier(&column.name)], false))
                }
                _ => {}
            }
        }
    }
    for constraint in &create.constraints {
        match constraint {
            TableConstraint::PrimaryKey(key) => declared.push((
                key.name.as_ref().map(identifier),
                key_columns(&key.columns)?,
                true,
            )),
            TableConstraint::Unique(key) => declared.push((
                key.name.as_ref().map(identifier),
                key_columns(&key.columns)?,
                false,
            )),
            other => {
                return Err(PlanError::Unsupported(format!(
                    "table constraint {other} is not supported yet"
                ))
                .into());
            }
        }
    }
    if declared.iter().filter(|(_, _, primary)| *primary).count() > 1 {
        return Err(PlanError::InvalidTableDefinition(format!(
            "multiple primary keys for table \"{table}\" are not allowed"
        ))
        .into());
    }
    let mut keys: Vec<UniqueKey> = Vec::new();
    for (constraint_name, names, primary) in declared {
        let mut columns = Vec::with_capacity(names.len());
        for name in &names {
            let column = fields
                .iter()
                .position(|field| field.name() == name)
                .ok_or_else(|| PlanError::UndefinedKeyColumn(name.clone()))?;
            if columns.contains(&column) {
                return Err(PlanError::DuplicateKeyColumn {
                    column: name.clone(),
                    constraint: if primary { "primary key" } else { "unique" },
                }
                .into());
            }
            columns.push(column);
        }
        // Postgres keeps one constraint where two declare the same key.
        if keys.iter().any(|key| key.columns == columns) {
            if primary {
                keys.retain(|key| key.columns != columns);
            } else {
                continue;
            }
        }
        let name = constraint_name.unwrap_or_else(|| {
            if primary {
                format!("{table}_pkey")
            } else {
                format!("{table}_{}_key", names.join("_"))
            }
        });
        keys.push(UniqueKey {
            name,
            columns,
            primary,
        });
    }
    keys.sort_by_key(|key| !key.primary);
    Ok(keys)
}

/// The column names of a key's column list, which may only name columns.
fn key_columns(columns: &[IndexColumn]) -> Result<Vec<String>> {
    columns
        .iter()
        .map(|column| match &column.column.expr {
            Expr::Identifier(name) => Ok(identifier(name)),
            other => Err(PlanError::Unsupported(format!(
                "a key on an expression ({other}) is not supported"
            ))
            .into()),
        })
        .collect()
}
