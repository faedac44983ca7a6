//! Statement execution: one file per statement kind; this module dispatches.

mod create_table;
mod create_view;
mod delete;
mod drop;
mod insert;
mod query;
mod set;
mod show;
mod update;

use std::sync::Arc;

pub use create_table::MAX_LENGTH_KEY;

use datafusion::common::ParamValues;
use datafusion::logical_expr::{DmlStatement, LogicalPlan};
use datafusion::sql::parser::Statement as DataFusionStatement;
use datafusion::sql::sqlparser::ast::Statement;

use crate::catalog::{Relation, RelationKind};
use crate::error::{CatalogError, PlanError, Result};
use crate::session::{Description, QueryResult, Session};

pub(crate) async fn execute(
    session: &Session,
    statement: &Statement,
    parameters: Option<ParamValues>,
) -> Result<QueryResult> {
    match statement {
        Statement::Query(_) | Statement::Explain { .. } => {
            query::execute(session, statement, parameters).await
        }
        Statement::Insert(_) => insert::execute(session, statement, parameters).await,
        Statement::Update(_) => update::execute(session, statement, parameters).await,
        Statement::Delete(_) => delete::execute(session, statement, parameters).await,
        Statement::CreateTable(create) => create_table::execute(session, create).await,
        Statement::CreateView(create) => create_view::execute(session, create).await,
        Statement::Drop {
            object_type,
            if_exists,
            names,
            cascade,
            ..
        } => drop::execute(session, *object_type, *if_exists, names, *cascade).await,
        Statement::ShowTables { .. } | Statement::ShowViews { .. } => {
            show::execute(session, statement)
        }
        Statement::ShowVariable { .. }
        | Statement::Set(_)
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. } => set::execute(session, statement),
        other => Err(PlanError::Unsupported(format!(
            "statement not supported: {}",
            first_words(&other.to_string())
        ))
        .into()),
    }
}

pub(crate) async fn describe(session: &Session, statement: &Statement) -> Result<Description> {
    match statement {
        Statement::Query(_) | Statement::Explain { .. } => {
            query::describe(session, statement).await
        }
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
            let plan = plan(session, statement).await?;
            Ok(Description {
                parameter_types: parameter_types(&plan)?,
                result_schema: None,
            })
        }
        Statement::ShowTables { .. } | Statement::ShowViews { .. } => Ok(Description {
            parameter_types: Vec::new(),
            result_schema: Some(show::schema()),
        }),
        Statement::ShowVariable { variable } => Ok(Description {
            parameter_types: Vec::new(),
            result_schema: Some(set::show_schema(variable)),
        }),
        _ => Ok(Description::default()),
    }
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Plans a statement with DataFusion against the session's pinned snapshot.
pub(crate) async fn plan(session: &Session, statement: &Statement) -> Result<LogicalPlan> {
    let state = session.context.state();
    let statement = match statement {
        Statement::Query(query) => match crate::sql::names::alias_duplicates(query) {
            Some(rewritten) => Statement::Query(Box::new(rewritten)),
            None => statement.clone(),
        },
        _ => statement.clone(),
    };
    let plan = state
        .statement_to_plan(DataFusionStatement::Statement(Box::new(statement)))
        .await?;
    Ok(plan)
}

/// The types DataFusion inferred for `$1`, `$2`, ... in order.
pub(crate) fn parameter_types(
    plan: &LogicalPlan,
) -> Result<Vec<Option<datafusion::arrow::datatypes::DataType>>> {
    let types = plan.get_parameter_types()?;
    let mut numbered: Vec<(usize, Option<datafusion::arrow::datatypes::DataType>)> = types
        .into_iter()
        .filter_map(|(name, data_type)| {
            name.trim_start_matches('$')
                .parse::<usize>()
                .ok()
                .map(|index| (index, data_type))
        })
        .collect();
    numbered.sort_by_key(|(index, _)| *index);
    let count = numbered.last().map(|(index, _)| *index).unwrap_or(0);
    let mut result = vec![None; count];
    for (index, data_type) in numbered {
        if index >= 1 {
            result[index - 1] = data_type;
        }
    }
    Ok(result)
}

/// Binds parameter values (if any), then runs DataFusion's analyzer (type coercion and
/// Tributary's Postgres rules) over a DML plan and returns its parts.
pub(crate) async fn plan_dml(
    session: &Session,
    statement: &Statement,
    parameters: Option<ParamValues>,
) -> Result<(Arc<Relation>, DmlStatement)> {
    let mut plan = plan(session, statement).await?;
    if let Some(parameters) = parameters {
        plan = plan.with_param_values(parameters)?;
    }
    let state = session.context.state();
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})?;
    let LogicalPlan::Dml(dml) = plan else {
        return Err(PlanError::Unsupported(
            "unexpected plan for a data-modifying statement".into(),
        )
        .into());
    };
    let name = dml.table_name.table().to_string();
    let snapshot = session.pinned.get();
    let relation = snapshot
        .catalog
        .get(&name)
        .cloned()
        .ok_or_else(|| PlanError::UndefinedTable(name.clone()))?;
    if relation.kind != RelationKind::Table {
        return Err(CatalogError::WrongObjectType {
            name,
            expected: "table",
        }
        .into());
    }
    Ok((relation, dml))
}
