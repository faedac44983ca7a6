//! CREATE TABLE ... AS query (and SELECT ... INTO, the same in Postgres): a table with the
//! columns the query returns (named as it names them, or as the statement lists them), filled
//! with its rows. The catalog keeps the table as a plain CREATE TABLE with those columns, and
//! the rows go in as one INSERT ... SELECT.

use datafusion::sql::sqlparser::ast::{
    CreateTable, Ident, ObjectName, ObjectType, Query, SetExpr, Statement,
};

use super::PlanStage;
use crate::error::{ExecutionError, PlanError, Result};
use crate::session::{CommandTag, QueryResult, Session};
use crate::sql::{identifier, relation_name};

/// The table a CREATE TABLE ... AS or SELECT ... INTO makes.
pub(super) struct NewTable<'a> {
    pub name: &'a ObjectName,
    /// Names for the query's columns, in order; the query's own names for the rest.
    pub columns: Vec<&'a Ident>,
    pub if_not_exists: bool,
}

impl<'a> NewTable<'a> {
    pub fn of(create: &'a CreateTable) -> Self {
        Self {
            name: &create.name,
            columns: create.columns.iter().map(|column| &column.name).collect(),
            if_not_exists: create.if_not_exists,
        }
    }
}

/// `SELECT ... INTO t ...`: the table it names and the query without INTO.
pub(super) fn select_into(query: &Query) -> Option<(ObjectName, Query)> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let into = select.into.as_ref()?;
    let mut without = query.clone();
    if let SetExpr::Select(select) = without.body.as_mut() {
        select.into = None;
    }
    Some((into.name.clone(), without))
}

pub(super) async fn execute(
    session: &Session,
    table: NewTable<'_>,
    query: &Query,
) -> Result<QueryResult> {
    let name = relation_name(table.name)?;
    if table.if_not_exists && session.pinned.get().catalog.get(&name).is_some() {
        return Ok(QueryResult::Command(CommandTag::new("CREATE TABLE AS")));
    }
    let select = Statement::Query(Box::new(query.clone()));
    let plan = super::cached_plan(session, &select, PlanStage::Optimized).await?;
    let schema = super::query::postgres_schema(&select, &plan.schema().as_arrow().clone().into());
    if table.columns.len() > schema.fields().len() {
        return Err(
            PlanError::Syntax("CREATE TABLE AS specifies too many column names".into()).into(),
        );
    }
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (position, field) in schema.fields().iter().enumerate() {
        let column = match table.columns.get(position) {
            Some(listed) => identifier(listed),
            None => field.name().clone(),
        };
        let sql_type = crate::sql::types::sql_type_name(field.data_type()).ok_or_else(|| {
            PlanError::Unsupported(format!(
                "column \"{column}\" of type {} cannot be stored in a table",
                crate::server::arrow_type_name(field.data_type())
            ))
        })?;
        columns.push(format!("{} {sql_type}", super::quoted_identifier(&column)));
    }
    let definition = format!(
        "CREATE TABLE {} ({})",
        super::quoted_identifier(&name),
        columns.join(", ")
    );
    let Statement::CreateTable(plain) = super::standard_statement(&definition)? else {
        return Err(ExecutionError::Internal(format!("cannot plan {definition}")).into());
    };
    super::create_table::execute(session, &plain, None).await?;
    // The INSERT plans against a snapshot that holds the new table.
    session.pinned.pin(session.coordinator.snapshot());
    let insert = super::standard_statement(&format!(
        "INSERT INTO {} {query}",
        super::quoted_identifier(&name)
    ))?;
    let rows = match super::insert::execute(session, &insert, None).await {
        Ok(QueryResult::Command(tag)) => tag.rows.unwrap_or_default(),
        Ok(_) => 0,
        // Nothing half made stays behind: the new table goes again.
        Err(error) => {
            let names = [table.name.clone()];
            let dropped =
                super::drop::execute(session, ObjectType::Table, true, &names, false).await;
            if let Err(drop_error) = dropped {
                tracing::warn!(%drop_error, table = %name, "could not drop a table CREATE TABLE AS left");
            }
            return Err(error);
        }
    };
    Ok(QueryResult::Command(CommandTag::with_rows("SELECT", rows)))
}
