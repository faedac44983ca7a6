//! CREATE VIEW and CREATE MATERIALIZED VIEW. A plain view stores its query and is inlined where
//! it is used; a materialized view is lowered to a dataflow and backfilled by the coordinator.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::resolve::resolve_table_references;
use datafusion::sql::sqlparser::ast::{CreateView, Statement};

use super::plan;
use crate::catalog::{RelationId, RelationKind};
use crate::coordinator::NewRelation;
use crate::dataflow::{DataflowPlan, render};
use crate::error::{CatalogError, ExecutionError, PlanError, Result};
use crate::planner::lower::{Emit, lower};
use crate::planner::plan_functions::plan_functions;
use crate::session::{CommandTag, QueryResult, Session};
use crate::sql::{identifier, names, relation_name};

/// The view's output columns that are its GROUP BY key, in the key's order, when the query's
/// last aggregation passes them through unchanged: the view is kept sorted by them first, so
/// `WHERE key = $1` is a point read whatever the columns' order.
fn group_key_columns(plan: &LogicalPlan) -> Option<Vec<usize>> {
    match plan {
        LogicalPlan::Aggregate(aggregate) => {
            if aggregate
                .group_expr
                .iter()
                .any(|expression| matches!(expression, Expr::GroupingSet(_)))
            {
                return None;
            }
            Some((0..aggregate.group_expr.len()).collect())
        }
        LogicalPlan::Projection(projection) => {
            let inner = group_key_columns(&projection.input)?;
            let input = projection.input.schema();
            inner
                .iter()
                .map(|&column| {
                    let (qualifier, field) = input.qualified_field(column);
                    projection.expr.iter().position(|expression| {
                        matches!(expression.clone().unalias_nested().data,
                            Expr::Column(ref reference)
                                if reference.name == *field.name()
                                    && reference.relation.as_ref() == qualifier)
                    })
                })
                .collect()
        }
        LogicalPlan::SubqueryAlias(alias) => group_key_columns(&alias.input),
        // HAVING keeps some groups, each still one row.
        LogicalPlan::Filter(filter) => group_key_columns(&filter.input),
        _ => None,
    }
}

/// `window_close` is set for `EMIT ON WINDOW CLOSE`: the sizes of the view's windows, and the
/// statement as written (which the catalog keeps: sqlparser cannot print the clause back).
pub(super) async fn execute(
    session: &Session,
    create: &CreateView,
    window_close: Option<(&[i128], &str)>,
) -> Result<QueryResult> {
    if create.or_alter || (create.or_replace && !create.materialized) {
        return Err(
            PlanError::Unsupported("CREATE OR REPLACE VIEW is not supported yet".into()).into(),
        );
    }
    if create.temporary {
        return Err(PlanError::Unsupported("temporary views are not supported".into()).into());
    }
    let name = relation_name(&create.name)?;
    let (kind, tag) = if create.materialized {
        (RelationKind::MaterializedView, "CREATE MATERIALIZED VIEW")
    } else {
        (RelationKind::View, "CREATE VIEW")
    };
    // CREATE OR REPLACE of an existing materialized view replaces it; of a name that is free,
    // it creates one.
    let replacing = match session.pinned.get().catalog.get(&name) {
        Some(existing) if create.or_replace => {
            if existing.kind != RelationKind::MaterializedView {
                return Err(CatalogError::WrongObjectType {
                    name,
                    expected: "materialized view",
                }
                .into());
            }
            true
        }
        Some(_) if create.if_not_exists => {
            return Ok(QueryResult::Command(CommandTag::new(tag)));
        }
        Some(_) => return Err(CatalogError::DuplicateObject(name).into()),
        None => false,
    };
    let query_statement = Statement::Query(create.query.clone());
    let logical = plan(session, &query_statement).await?;
    if !logical.get_parameter_types()?.is_empty() {
        return Err(PlanError::InvalidParameter(
            "there is no parameter $1 in a view definition".into(),
        )
        .into());
    }
    let depends_on = dependencies(session, &query_statement)?;
    let logical = match kind {
        // now() must stay live in a maintained view, not be folded into its creation time.
        RelationKind::MaterializedView => crate::planner::temporal::keep_now_live(logical)?,
        _ => logical,
    };
    let optimized = session.state.optimize(&logical)?;
    let schema = view_schema(create, &optimized)?;
    let dataflow = match kind {
        RelationKind::MaterializedView => {
            let emit = match window_close {
                Some((window_sizes, _)) => Emit::OnWindowClose {
                    window_sizes: window_sizes.to_vec(),
                },
                None => Emit::OnUpdate,
            };
            let functions = plan_functions(&session.state);
            let planned = lower(&optimized, emit, &functions)?;
            let plan = match session.recovering().and_then(|record| record.plan) {
                Some(stored) => stored_plan(&name, &stored, &planned)?,
                None => planned,
            };
            let mut dataflow = render(&plan, session.coordinator.workers(), &functions)?;
            if let Some(key) = group_key_columns(&optimized) {
                dataflow.sort_contents_by(key);
            }
            Some(dataflow)
        }
        _ => None,
    };
    let relation = NewRelation {
        sql: match window_close {
            Some((_, written)) => written.to_string(),
            None => Statement::CreateView(create.clone()).to_string(),
        },
        recovered_id: None,
        name,
        kind,
        schema,
        definition: Some(create.query.to_string()),
        depends_on,
        dataflow,
        connector: None,
        watermark: None,
        unique_keys: Vec::new(),
    };
    if replacing {
        session.coordinator.replace(relation).await?;
    } else {
        super::create_relation(session, relation, create.if_not_exists).await?;
    }
    Ok(QueryResult::Command(CommandTag::new(tag)))
}

/// The plan recovery found stored for view `name`: what its saved operator states belong to.
/// Planning the definition again only checks it; a build that plans it differently still
/// renders what was stored.
fn stored_plan(name: &str, stored: &str, planned: &DataflowPlan) -> Result<DataflowPlan> {
    let stored = DataflowPlan::from_json(stored)?;
    if stored != *planned {
        tracing::warn!(
            view = name,
            "this build plans the view differently from the plan stored with it; the stored plan is used"
        );
    }
    Ok(stored)
}

/// `EXPLAIN CREATE MATERIALIZED VIEW ...`: the plan of the incremental dataflow that would
/// maintain the view. Nothing is created.
pub(super) async fn explain(session: &Session, create: &CreateView) -> Result<QueryResult> {
    let query_statement = Statement::Query(create.query.clone());
    let logical = plan(session, &query_statement).await?;
    let logical = crate::planner::temporal::keep_now_live(logical)?;
    let optimized = session.state.optimize(&logical)?;
    let dataflow = lower(&optimized, Emit::OnUpdate, &plan_functions(&session.state))?;
    explain_plan(session, &dataflow)
}

/// A dataflow plan as EXPLAIN shows it: one operator per row in topological order, with its id,
/// what it computes and its inputs (relations by name, operators by id) with how rows reach it
/// from each when the view runs on several workers.
fn explain_plan(session: &Session, dataflow: &DataflowPlan) -> Result<QueryResult> {
    let snapshot = session.pinned.get();
    let lines = dataflow.explain(|id| {
        snapshot.catalog.by_id(id).map_or_else(
            || format!("relation {id}"),
            |relation| relation.name.clone(),
        )
    });
    let schema = explain_schema();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(lines))],
    )
    .map_err(|error| crate::error::ExecutionError::Internal(error.to_string()))?;
    Ok(QueryResult::Rows {
        schema,
        batches: vec![batch],
    })
}

/// EXPLAIN MATERIALIZED VIEW name: the plan of the dataflow maintaining it.
pub(super) async fn explain_existing(session: &Session, name: &str) -> Result<QueryResult> {
    let relation = materialized_view(session, name)?;
    let plan = relation.plan.as_deref().ok_or_else(|| {
        ExecutionError::Internal(format!("materialized view {name} has no dataflow plan"))
    })?;
    explain_plan(session, &DataflowPlan::from_json(plan)?)
}

/// `REFRESH MATERIALIZED VIEW`: the view exists and is materialized, and is already fresh.
pub(super) fn refresh(session: &Session, name: &str) -> Result<QueryResult> {
    materialized_view(session, name)?;
    Ok(QueryResult::Command(CommandTag::new(
        "REFRESH MATERIALIZED VIEW",
    )))
}

/// The materialized view `name` in the pinned snapshot.
fn materialized_view(session: &Session, name: &str) -> Result<Arc<crate::catalog::Relation>> {
    let snapshot = session.pinned.get();
    let relation = snapshot
        .catalog
        .get(name)
        .ok_or_else(|| PlanError::UndefinedTable(name.to_string()))?;
    if relation.kind != RelationKind::MaterializedView {
        return Err(CatalogError::WrongObjectType {
            name: relation.name.clone(),
            expected: "materialized view",
        }
        .into());
    }
    Ok(Arc::clone(relation))
}

/// The one text column EXPLAIN of a materialized view returns.
pub(super) fn explain_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "dataflow",
        datafusion::arrow::datatypes::DataType::Utf8,
        false,
    )]))
}

/// Column names: the explicit list if given, else Postgres's names for the SELECT list.
fn view_schema(create: &CreateView, plan: &LogicalPlan) -> Result<SchemaRef> {
    let actual: Vec<String> = plan
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let names: Vec<String> = if create.columns.is_empty() {
        match names::output_names(&create.query) {
            Some(names) => names::apply(&names, &actual),
            None => actual,
        }
    } else {
        if create.columns.len() > actual.len() {
            return Err(PlanError::Syntax(
                "CREATE VIEW specifies more column names than columns".into(),
            )
            .into());
        }
        let mut names: Vec<String> = create
            .columns
            .iter()
            .map(|column| identifier(&column.name))
            .collect();
        names.extend(actual[create.columns.len()..].iter().cloned());
        names
    };
    let mut seen = HashSet::new();
    for name in &names {
        if !seen.insert(name) {
            return Err(PlanError::DuplicateColumn(name.clone()).into());
        }
    }
    Ok(Arc::new(Schema::new(
        plan.schema()
            .fields()
            .iter()
            .zip(names)
            .map(|(field, name)| Field::new(name, field.data_type().clone(), true))
            .collect::<Vec<_>>(),
    )))
}

/// The catalog relations the query names directly (a plain view counts as itself, not as what it
/// reads), taken from the SQL: DataFusion inlines plain views while planning.
fn dependencies(session: &Session, query: &Statement) -> Result<Vec<RelationId>> {
    let snapshot = session.pinned.get();
    let statement = datafusion::sql::parser::Statement::Statement(Box::new(query.clone()));
    let (references, _common_table_expressions) = resolve_table_references(&statement, true)?;
    let mut ids = Vec::new();
    for reference in references {
        if reference.schema().is_some_and(|schema| schema != "public") {
            continue;
        }
        if let Some(relation) = snapshot.catalog.get(reference.table())
            && !ids.contains(&relation.id)
        {
            ids.push(relation.id);
        }
    }
    Ok(ids)
}
