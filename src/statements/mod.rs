//! Statement execution: one file per statement kind; this module dispatches.

mod copy;
mod create_connection;
mod create_sink;
mod create_source;
mod create_table;
mod create_table_as;
mod create_view;
mod cursor;
mod delete;
mod drop;
mod drop_connector;
mod flush;
mod insert;
mod point_read;
mod query;
mod rename;
mod set;
mod show;
mod show_connectors;
mod subscribe;
mod truncate;
mod update;

use std::sync::Arc;

pub(crate) use copy::finish as finish_copy;
pub use copy::{CopyIn, CopyOut};
pub(crate) use cursor::Cursor;
pub use query::RowStream;
pub use subscribe::SubscriptionRows;

use datafusion::common::ParamValues;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::expr::{Cast, TryCast};
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan};
use datafusion::sql::parser::Statement as DataFusionStatement;
use datafusion::sql::sqlparser::ast::{CreateView, Statement};

use crate::catalog::{Relation, RelationKind};
use crate::error::{CatalogError, PlanError, Result};
use crate::session::{Description, QueryResult, Session};
use crate::sql::StreamingStatement;

pub(crate) async fn execute(
    session: &Session,
    statement: &crate::sql::Statement,
    parameters: Option<ParamValues>,
) -> Result<QueryResult> {
    match statement {
        crate::sql::Statement::Standard(statement) => {
            execute_standard(session, statement, parameters).await
        }
        crate::sql::Statement::Streaming(statement) => {
            execute_streaming(session, statement, parameters).await
        }
    }
}

async fn execute_streaming(
    session: &Session,
    statement: &StreamingStatement,
    parameters: Option<ParamValues>,
) -> Result<QueryResult> {
    match statement {
        StreamingStatement::CreateConnection(create) => {
            create_connection::execute(session, create).await
        }
        StreamingStatement::CreateSource(create) => create_source::execute(session, create).await,
        StreamingStatement::CreateSink(create) => create_sink::execute(session, create).await,
        StreamingStatement::Drop {
            kind,
            names,
            if_exists,
            cascade,
        } => drop_connector::execute(session, *kind, names, *if_exists, *cascade).await,
        StreamingStatement::Show(kind) => show_connectors::execute(session, *kind),
        StreamingStatement::Flush => flush::execute(session).await,
        StreamingStatement::CreateTable {
            sql,
            create,
            watermark,
        } => create_table::execute(session, create, Some((watermark, sql))).await,
        StreamingStatement::CreateWindowCloseView {
            sql,
            create,
            window_sizes,
        } => create_view::execute(session, create, Some((window_sizes, sql))).await,
        StreamingStatement::Subscribe { subscribe, output } => {
            subscribe::execute(session, subscribe, output).await
        }
        StreamingStatement::DeclareQuery { cursor, query } => {
            cursor::declare_query(session, cursor, query, parameters).await
        }
        StreamingStatement::Fetch(fetch) => cursor::fetch(session, fetch).await,
        StreamingStatement::Close(name) => cursor::close(session, name.as_deref()).await,
        StreamingStatement::ExplainView(name) => create_view::explain_existing(session, name).await,
        StreamingStatement::RefreshView(name) => create_view::refresh(session, name),
        StreamingStatement::Rename(rename) => rename::execute(session, rename).await,
    }
}

async fn execute_standard(
    session: &Session,
    statement: &Statement,
    parameters: Option<ParamValues>,
) -> Result<QueryResult> {
    match statement {
        Statement::Query(query)
            if let Some((name, query)) = create_table_as::select_into(query) =>
        {
            let table = create_table_as::NewTable {
                name: &name,
                columns: Vec::new(),
                if_not_exists: false,
            };
            create_table_as::execute(session, table, &query).await
        }
        Statement::Query(_) | Statement::Explain { .. } => {
            if let Some(create) = explained_materialized_view(statement) {
                return create_view::explain(session, create).await;
            }
            if let Some(rows) = point_read::execute(session, statement, parameters.as_ref())? {
                return Ok(rows);
            }
            query::execute(session, statement, parameters).await
        }
        Statement::Insert(_) => insert::execute(session, statement, parameters).await,
        Statement::Copy { .. } => copy::execute(session, statement).await,
        Statement::Update(_) => update::execute(session, statement, parameters).await,
        Statement::Delete(_) => delete::execute(session, statement, parameters).await,
        Statement::Truncate(truncate) => truncate::execute(session, truncate).await,
        Statement::CreateTable(create) => {
            let created = match &create.query {
                Some(query) => {
                    let table = create_table_as::NewTable::of(create);
                    create_table_as::execute(session, table, query).await
                }
                None => create_table::execute(session, create, None).await,
            }?;
            if create.temporary {
                session.remember_temporary_table(&crate::sql::relation_name(&create.name)?);
            }
            Ok(created)
        }
        Statement::CreateView(create) => create_view::execute(session, create, None).await,
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
        Statement::AlterTable(alter) => match rename::of_alter_table(alter)? {
            Some(rename) => rename::execute(session, &rename).await,
            None => Err(PlanError::Unsupported(format!(
                "ALTER TABLE {} is not supported (RENAME TO is)",
                first_words(
                    &alter
                        .operations
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            ))
            .into()),
        },
        Statement::ShowVariable { .. }
        | Statement::Set(_)
        | Statement::Reset(_)
        | Statement::Discard { .. }
        | Statement::Deallocate { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => set::execute(session, statement),
        // No session listens (LISTEN is not supported), so there is nothing to stop listening
        // to; connection pools send `UNLISTEN *` when they take a connection back.
        Statement::UNLISTEN { .. } => Ok(QueryResult::Command(crate::session::CommandTag::new(
            "UNLISTEN",
        ))),
        other => Err(PlanError::Unsupported(format!(
            "statement not supported: {}",
            first_words(&other.to_string())
        ))
        .into()),
    }
}

/// Whether a statement only reads, so that stopping it midway (a cancel request, a
/// statement_timeout) leaves nothing half done.
pub(crate) fn only_reads(statement: &crate::sql::Statement) -> bool {
    match statement {
        crate::sql::Statement::Standard(statement) => match statement {
            Statement::Query(_) | Statement::Copy { to: true, .. } => true,
            Statement::Explain { statement, .. } => {
                matches!(statement.as_ref(), Statement::Query(_))
            }
            _ => false,
        },
        crate::sql::Statement::Streaming(statement) => match statement {
            StreamingStatement::Flush
            | StreamingStatement::Fetch(_)
            | StreamingStatement::DeclareQuery { .. } => true,
            StreamingStatement::CreateConnection(_)
            | StreamingStatement::CreateSource(_)
            | StreamingStatement::CreateSink(_)
            | StreamingStatement::Drop { .. }
            | StreamingStatement::Show(_)
            | StreamingStatement::CreateTable { .. }
            | StreamingStatement::CreateWindowCloseView { .. }
            | StreamingStatement::Subscribe { .. }
            | StreamingStatement::Close(_)
            | StreamingStatement::ExplainView(_)
            | StreamingStatement::RefreshView(_)
            | StreamingStatement::Rename(_) => false,
        },
    }
}

/// Hands a new relation to the coordinator. While recovery replays a statement, the relation
/// gets back the id it had.
async fn create_relation(
    session: &Session,
    mut relation: crate::coordinator::NewRelation,
    if_not_exists: bool,
) -> Result<bool> {
    relation.recovered_id = session.recovering().map(|record| record.id);
    // A directory from before this check may hold such a name; recovery takes it back.
    if relation.recovered_id.is_none()
        && crate::pg_catalog::is_catalog_relation(&session.context, &relation.name)
    {
        return Err(CatalogError::ReservedName(relation.name).into());
    }
    session.coordinator.create(relation, if_not_exists).await
}

/// The view of `EXPLAIN CREATE MATERIALIZED VIEW ...`, which shows a dataflow rather than
/// DataFusion's plan.
fn explained_materialized_view(statement: &Statement) -> Option<&CreateView> {
    match statement {
        Statement::Explain { statement, .. } => match statement.as_ref() {
            Statement::CreateView(create) if create.materialized => Some(create),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) async fn describe(
    session: &Session,
    statement: &crate::sql::Statement,
) -> Result<Description> {
    let statement = match statement {
        crate::sql::Statement::Standard(statement) => statement,
        crate::sql::Statement::Streaming(StreamingStatement::Show(_)) => {
            return Ok(Description {
                parameter_types: Vec::new(),
                result_schema: Some(show_connectors::schema()),
            });
        }
        // The cursor's query may take parameters (psycopg's server-side cursors send them).
        crate::sql::Statement::Streaming(StreamingStatement::DeclareQuery { query, .. }) => {
            let statement = Statement::Query(query.clone());
            let plan = cached_plan(session, &statement, PlanStage::Analyzed).await?;
            return Ok(Description {
                parameter_types: parameter_types(&plan)?,
                result_schema: None,
            });
        }
        crate::sql::Statement::Streaming(StreamingStatement::Fetch(fetch)) => {
            return Ok(Description {
                parameter_types: Vec::new(),
                result_schema: Some(cursor::fetch_schema(session, &fetch.cursor).await?),
            });
        }
        crate::sql::Statement::Streaming(StreamingStatement::Subscribe {
            subscribe,
            output: crate::sql::streaming::SubscribeOutput::Rows,
        }) => {
            return Ok(Description {
                parameter_types: Vec::new(),
                result_schema: Some(subscribe::describe(session, subscribe)?),
            });
        }
        crate::sql::Statement::Streaming(StreamingStatement::ExplainView(_)) => {
            return Ok(Description {
                parameter_types: Vec::new(),
                result_schema: Some(create_view::explain_schema()),
            });
        }
        crate::sql::Statement::Streaming(_) => return Ok(Description::default()),
    };
    match statement {
        Statement::Explain { statement, .. } if matches!(statement.as_ref(), Statement::CreateView(create) if create.materialized) => {
            Ok(Description {
                parameter_types: Vec::new(),
                result_schema: Some(create_view::explain_schema()),
            })
        }
        Statement::Query(_) | Statement::Explain { .. } => {
            query::describe(session, statement).await
        }
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
            let (statement, returning) = insert::without_returning(statement);
            let plan = cached_plan(session, &statement, PlanStage::Analyzed).await?;
            let result_schema = match returning {
                Some(items) => {
                    let (table, _) = plan_dml(session, &statement, None).await?;
                    Some(insert::returning_rows(&table, &[], &items).await?.0)
                }
                None => None,
            };
            Ok(Description {
                parameter_types: parameter_types(&plan)?,
                result_schema,
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
    let state = &session.state;
    let statement = match statement {
        Statement::Query(query) => {
            let mut query = match crate::sql::names::alias_duplicates(query) {
                Some(rewritten) => rewritten,
                None => query.as_ref().clone(),
            };
            crate::planner::set_operations::rewrite_all_set_operations(session, &mut query).await?;
            crate::sql::set_returning::rewrite(&mut query);
            let is_scalar = |name: &str| {
                !state.table_functions().contains_key(name)
                    && state.scalar_functions().contains_key(name)
            };
            crate::sql::functions_in_from::rewrite(&mut query, &is_scalar);
            crate::sql::names::name_derived_columns(&mut query);
            Statement::Query(Box::new(query))
        }
        _ => statement.clone(),
    };
    let plan = state
        .statement_to_plan(DataFusionStatement::Statement(Box::new(statement)))
        .await?;
    let plan = crate::planner::correlated_not_in::correlated_not_in_as_not_exists(plan)?;
    crate::planner::correlated::correlated_scalar_subqueries_as_joins(plan)
}

/// How far [`cached_plan`] takes a statement.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PlanStage {
    /// Type-coerced by DataFusion's analyzer and Tributary's Postgres rules.
    Analyzed,
    /// Analyzed, then optimized: ready for physical planning.
    Optimized,
}

/// Most statements a client repeats are the same text (prepared statements above all). Planning
/// is most of a small statement's cost, so plans are kept per session by text and reused until
/// the catalog changes. Plans read rows from the snapshot pinned when they run, never from the
/// one they were made against.
const PLAN_CACHE_ENTRIES: usize = 256;

/// Statements longer than this are planned each time: one is rarely repeated, and 256 plans of
/// long ones (big IN lists above all) would hold a lot of memory per session.
const PLAN_CACHE_LONGEST_STATEMENT: usize = 64 * 1024;

pub(crate) async fn cached_plan(
    session: &Session,
    statement: &Statement,
    stage: PlanStage,
) -> Result<LogicalPlan> {
    let catalog_version = session.pinned.get().catalog_version;
    let key = format!("{stage:?} {statement}");
    if let Ok(plans) = session.plans.lock()
        && let Some(cached) = plans.get(&key)
        && cached.catalog_version == catalog_version
    {
        return Ok(cached.plan.clone());
    }
    // Run now, never stored (views plan theirs with `plan`).
    let mut raw =
        crate::planner::subqueries::nullable_scalar_subqueries(plan(session, statement).await?)?;
    if crate::sql::long_lists::is_query_or_its_explain(statement) {
        // A query's plan here is run, never stored (views plan theirs with `plan`): its long IN
        // lists can be sets of this session's.
        raw = crate::planner::long_in_lists::replace_long_in_lists(raw)?;
    }
    // now() is folded into a constant when a plan is optimized, from the time a fresh state
    // records; such plans are made with a fresh state and never reused.
    let reusable = !depends_on_time_or_chance(&raw) && key.len() <= PLAN_CACHE_LONGEST_STATEMENT;
    let fresh;
    let state = if reusable {
        &session.state
    } else {
        fresh = session.context.state();
        &fresh
    };
    let plan = match stage {
        PlanStage::Analyzed => {
            state
                .analyzer()
                .execute_and_check(raw, state.config_options(), |_, _| {})?
        }
        PlanStage::Optimized => state.optimize(&raw)?,
    };
    if !reusable {
        return Ok(plan);
    }
    if let Ok(mut plans) = session.plans.lock() {
        if plans.len() >= PLAN_CACHE_ENTRIES {
            plans.clear();
        }
        plans.insert(
            key,
            crate::session::CachedPlan {
                catalog_version,
                plan: plan.clone(),
            },
        );
    }
    Ok(plan)
}

/// Whether `plan` calls a function that is not immutable (now(), random(), ...).
pub(crate) fn depends_on_time_or_chance(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Expr, Volatility};
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expression| {
            expression.apply(|inner| {
                if let Expr::ScalarFunction(function) = inner
                    && function.func.signature().volatility != Volatility::Immutable
                {
                    found = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}

/// The types DataFusion inferred for `$1`, `$2`, ... in order.
pub(crate) fn parameter_types(
    plan: &LogicalPlan,
) -> Result<Vec<Option<datafusion::arrow::datatypes::DataType>>> {
    let mut types = plan.get_parameter_types()?;
    // DataFusion types a placeholder from what it is compared with or inserted into, but not
    // from a cast (`$1::timestamptz`); Postgres takes the cast's type.
    if types.values().any(Option::is_none) {
        plan.apply_with_subqueries(|node| {
            node.apply_expressions(|expression| {
                expression.apply(|expression| {
                    if let Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) =
                        expression
                        && let Expr::Placeholder(placeholder) = expr.as_ref()
                        && let Some(slot @ None) = types.get_mut(&placeholder.id)
                    {
                        *slot = Some(field.data_type().clone());
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        })?;
    }
    // `x = ANY($1)` (and `<> ALL`) plans as array_has($1, x): `$1` is an array of x's type.
    // (`<> ALL` also asks `$1 IS NULL`, from which DataFusion infers the type Null.)
    use datafusion::arrow::datatypes::DataType;
    if types
        .values()
        .any(|data_type| matches!(data_type, None | Some(DataType::Null)))
    {
        plan.apply_with_subqueries(|node| {
            let inputs = node.inputs();
            let Some(schema) = inputs.first().map(|input| input.schema()) else {
                return Ok(TreeNodeRecursion::Continue);
            };
            node.apply_expressions(|expression| {
                expression.apply(|expression| {
                    if let Expr::ScalarFunction(function) = expression
                        && function.name() == "array_has"
                        && let [Expr::Placeholder(placeholder), element] = function.args.as_slice()
                        && let Some(slot @ (None | Some(DataType::Null))) =
                            types.get_mut(&placeholder.id)
                        && let Ok(element_type) = datafusion::logical_expr::ExprSchemable::get_type(
                            element,
                            schema.as_ref(),
                        )
                    {
                        *slot = Some(DataType::new_list(element_type, true));
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        })?;
    }
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

/// The analyzed plan of a DML statement (type coercion and Tributary's Postgres rules applied),
/// with parameter values bound, split into the target table and the DML parts.
pub(crate) async fn plan_dml(
    session: &Session,
    statement: &Statement,
    parameters: Option<ParamValues>,
) -> Result<(Arc<Relation>, DmlStatement)> {
    let mut plan = cached_plan(session, statement, PlanStage::Analyzed).await?;
    if let Some(parameters) = parameters {
        plan = plan.with_param_values(parameters)?;
    }
    let LogicalPlan::Dml(dml) = plan else {
        return Err(PlanError::Unsupported(
            "unexpected plan for a data-modifying statement".into(),
        )
        .into());
    };
    let relation = table_named(session, dml.table_name.table())?;
    Ok((relation, dml))
}

/// The table `name` in the pinned snapshot: 42P01 if nothing has the name, 42809 if what has
/// it is not a table.
pub(crate) fn table_named(session: &Session, name: &str) -> Result<Arc<Relation>> {
    let relation = session
        .pinned
        .get()
        .catalog
        .get(name)
        .cloned()
        .ok_or_else(|| PlanError::UndefinedTable(name.to_string()))?;
    if relation.kind != RelationKind::Table {
        return Err(CatalogError::WrongObjectType {
            name: name.to_string(),
            expected: "table",
        }
        .into());
    }
    Ok(relation)
}

/// A name quoted for SQL text the server writes itself: `"a ""b"""`.
pub(crate) fn quoted_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The one standard statement in SQL text the server writes itself.
pub(crate) fn standard_statement(sql: &str) -> Result<Statement> {
    match crate::sql::parse(sql)?.pop() {
        Some(crate::sql::Statement::Standard(statement)) => Ok(statement),
        _ => Err(crate::error::ExecutionError::Internal(format!("cannot plan {sql}")).into()),
    }
}
