//! The DataFusion context of a session: tables and views resolve against the snapshot pinned by
//! the running statement, so one statement sees one epoch across all relations.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock, Weak};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, SchemaProvider, Session,
    TableProvider,
};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableType, ViewTable};
use datafusion::error::{DataFusionError, Result as DataFusionResult};
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::optimizer::Analyzer;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::{Relation, RelationId, RelationKind};
use crate::coordinator::Snapshot;

pub const CATALOG: &str = "tributary";
pub const PUBLIC_SCHEMA: &str = "public";
/// Server-side relations about the server itself (relations, later sources and progress).
pub const SYSTEM_SCHEMA: &str = "tributary";

/// The snapshot the current statement reads. A session runs one statement at a time and pins a
/// snapshot before planning it; the lock is held only to clone or replace the `Arc`.
#[derive(Debug, Default)]
pub struct PinnedSnapshot(RwLock<Arc<Snapshot>>);

impl PinnedSnapshot {
    pub fn pin(&self, snapshot: Arc<Snapshot>) {
        match self.0.write() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }

    pub fn get(&self) -> Arc<Snapshot> {
        match self.0.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

/// Builds the DataFusion context for one session.
pub fn session_context(
    pinned: Arc<PinnedSnapshot>,
    variables: Arc<crate::session::SessionVariables>,
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
) -> DataFusionResult<Arc<SessionContext>> {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, PUBLIC_SCHEMA)
        // Tributary's own information_schema (Postgres's views over pg_catalog) replaces
        // DataFusion's, which prints Arrow type names and numbers columns from 0.
        .with_information_schema(false)
        .set_str("datafusion.sql_parser.dialect", "PostgreSQL")
        // The session time zone: now() is a timestamptz, as in Postgres.
        .set_str("datafusion.execution.time_zone", "+00:00");
    // Postgres result types for sum/avg must be settled before type coercion runs, so the rule
    // goes in front of DataFusion's analyzer rules.
    let mut rules = Analyzer::new().rules;
    rules.insert(0, Arc::new(super::postgres_types::PostgresAggregateTypes));
    rules.insert(1, Arc::new(super::postgres_arrays::NullsInArrays));
    rules.push(Arc::new(super::postgres_casts::PostgresTextCasts));
    rules.push(Arc::new(super::postgres_types::TextStringAgg));
    // After type coercion: both operands then have the result's type.
    rules.push(Arc::new(
        super::checked_arithmetic::CheckedIntegerArithmetic,
    ));
    let mut state = SessionStateBuilder::new()
        .with_catalog_list(Arc::new(OneDatabase::default()))
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_analyzer_rules(rules)
        .build();
    // After DataFusion's own planners, which leave an interval times a number unplanned.
    datafusion::execution::FunctionRegistry::register_expr_planner(
        &mut state,
        Arc::new(super::interval_arithmetic::IntervalArithmetic),
    )?;
    datafusion::execution::FunctionRegistry::register_expr_planner(
        &mut state,
        Arc::new(super::jsonb_operators::JsonbOperators),
    )?;
    let context = Arc::new(SessionContext::new_with_state(state));
    // Postgres calls the sample variance `variance` too.
    context.register_udaf(
        datafusion::functions_aggregate::variance::var_samp_udaf()
            .as_ref()
            .clone()
            .with_aliases(["variance"]),
    );
    let public = Arc::new(UserSchema {
        pinned: Arc::clone(&pinned),
        context: OnceLock::new(),
    });
    // The schema plans plain views with this same context; a weak reference avoids a cycle.
    let _ = public.context.set(Arc::downgrade(&context));
    let catalog = MemoryCatalogProvider::new();
    datafusion::catalog::CatalogProvider::register_schema(&catalog, PUBLIC_SCHEMA, public)?;
    datafusion::catalog::CatalogProvider::register_schema(
        &catalog,
        SYSTEM_SCHEMA,
        Arc::new(super::system::SystemSchema::new(Arc::clone(&pinned))),
    )?;
    let information_schema = Arc::new(crate::pg_catalog::InformationSchema::default());
    let _ = information_schema.context.set(Arc::downgrade(&context));
    datafusion::catalog::CatalogProvider::register_schema(
        &catalog,
        "information_schema",
        information_schema,
    )?;
    context.register_catalog(CATALOG, Arc::new(catalog));
    crate::pg_catalog::install(&context, Arc::clone(&pinned))?;
    // Registered after DataFusion's and pg_catalog's, so version() is Tributary's.
    for function in super::session_functions::session_functions(variables) {
        context.register_udf(function);
    }
    context.register_udf(super::long_in_lists::marker_function());
    context.register_udf(super::sequence_functions::next_value_function(Arc::clone(
        &pinned,
    )));
    context.register_udf(super::format_function::format_function());
    for function in super::interval_arithmetic::interval_functions() {
        context.register_udf(function);
    }
    for function in super::jsonb_functions::jsonb_functions() {
        context.register_udf(function);
    }
    // Postgres's templates, in place of DataFusion's strftime codes.
    if let (Some(to_timestamp), Some(to_date)) = (
        context
            .state()
            .scalar_functions()
            .get("to_timestamp")
            .cloned(),
        context.state().scalar_functions().get("to_date").cloned(),
    ) {
        for function in super::postgres_formats::formatting_functions(to_timestamp, to_date) {
            context.register_udf(function);
        }
    }
    Ok(context)
}

/// The catalogs a session resolves names in: every database name is the one catalog, so that
/// names qualified with the database a client connected to (`"analytics"."public"."orders"`,
/// as dbt writes them, also inside stored view definitions) resolve in every session. The lock
/// is held only to read or replace an entry.
#[derive(Debug, Default)]
struct OneDatabase {
    catalogs: RwLock<HashMap<String, Arc<dyn CatalogProvider>>>,
}

impl CatalogProviderList for OneDatabase {
    fn register_catalog(
        &self,
        name: String,
        catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        let mut catalogs = self
            .catalogs
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        catalogs.insert(name, catalog)
    }

    fn catalog_names(&self) -> Vec<String> {
        let catalogs = self.catalogs.read().unwrap_or_else(PoisonError::into_inner);
        catalogs.keys().cloned().collect()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        let catalogs = self.catalogs.read().unwrap_or_else(PoisonError::into_inner);
        catalogs
            .get(name)
            .or_else(|| catalogs.get(CATALOG))
            .cloned()
    }
}

/// The `public` schema: user tables, views and materialized views.
#[derive(Debug)]
struct UserSchema {
    pinned: Arc<PinnedSnapshot>,
    context: OnceLock<Weak<SessionContext>>,
}

#[async_trait]
impl SchemaProvider for UserSchema {
    fn table_names(&self) -> Vec<String> {
        self.pinned
            .get()
            .catalog
            .relations()
            .filter(|r| r.kind.is_queryable())
            .map(|r| r.name.clone())
            .collect()
    }

    async fn table(&self, name: &str) -> DataFusionResult<Option<Arc<dyn TableProvider>>> {
        let snapshot = self.pinned.get();
        let Some(relation) = snapshot.catalog.get(name).cloned() else {
            return Ok(None);
        };
        match relation.kind {
            // Sinks and connections share the namespace but have no rows.
            RelationKind::Sink | RelationKind::Connection => Ok(None),
            RelationKind::Table | RelationKind::MaterializedView | RelationKind::Source => {
                Ok(Some(Arc::new(RelationProvider::new(
                    relation,
                    Arc::clone(&self.pinned),
                ))))
            }
            RelationKind::View => {
                let context =
                    self.context.get().and_then(Weak::upgrade).ok_or_else(|| {
                        DataFusionError::Internal("session context is gone".into())
                    })?;
                let definition = relation.definition.clone().unwrap_or_default();
                let plan = context.state().create_logical_plan(&definition).await?;
                let plan = rename_columns(plan, &relation.schema)?;
                Ok(Some(Arc::new(ViewTable::new(plan, Some(definition)))))
            }
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.pinned
            .get()
            .catalog
            .get(name)
            .is_some_and(|relation| relation.kind.is_queryable())
    }
}

/// Gives a plan's output columns the names in `schema` (Postgres's names, or a view's column
/// list), by position.
pub fn rename_columns(plan: LogicalPlan, schema: &SchemaRef) -> DataFusionResult<LogicalPlan> {
    let expressions: Vec<Expr> = plan
        .schema()
        .columns()
        .into_iter()
        .zip(schema.fields())
        .map(|(column, field)| Expr::Column(column).alias(field.name()))
        .collect();
    LogicalPlanBuilder::from(plan).project(expressions)?.build()
}

/// A table or materialized view as DataFusion sees it: its rows in the snapshot pinned when the
/// scan runs, so a plan cached across statements always reads the current statement's epoch.
#[derive(Debug)]
pub struct RelationProvider {
    relation: Arc<Relation>,
    pinned: Arc<PinnedSnapshot>,
    /// What a write that leaves a column out puts there: the next value of a serial column's
    /// sequence, or a column's constant DEFAULT (as text, which the INSERT casts).
    defaults: std::collections::HashMap<String, Expr>,
}

impl RelationProvider {
    pub fn new(relation: Arc<Relation>, pinned: Arc<PinnedSnapshot>) -> Self {
        let mut defaults = std::collections::HashMap::new();
        for field in relation.schema.fields() {
            let metadata = field.metadata();
            let default = if let Some(sequence) = metadata.get(crate::catalog::SEQUENCE_KEY) {
                super::sequence_functions::next_value_of(Arc::clone(&pinned), sequence)
            } else if let Some(text) = metadata.get(crate::catalog::DEFAULT_KEY) {
                datafusion::prelude::lit(text.clone())
            } else {
                continue;
            };
            defaults.insert(field.name().clone(), default);
        }
        Self {
            relation,
            pinned,
            defaults,
        }
    }

    pub fn relation(&self) -> &Arc<Relation> {
        &self.relation
    }

    pub fn id(&self) -> RelationId {
        self.relation.id
    }
}

#[async_trait]
impl TableProvider for RelationProvider {
    fn schema(&self) -> SchemaRef {
        crate::catalog::without_constraints(&self.relation.schema)
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
    }

    fn table_type(&self) -> TableType {
        match self.relation.kind {
            RelationKind::Table | RelationKind::Source => TableType::Base,
            RelationKind::View
            | RelationKind::MaterializedView
            | RelationKind::Sink
            | RelationKind::Connection => TableType::View,
        }
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DataFusionResult<Arc<dyn ExecutionPlan>> {
        let snapshot = self.pinned.get();
        let (id, name) = (self.relation.id, self.relation.name.clone());
        let rows = if self.relation.kind == RelationKind::Source {
            // A source's rows are read back from Kafka: blocking work, kept off the runtime.
            tokio::task::spawn_blocking(move || snapshot.rows(id, &name))
                .await
                .map_err(|error| DataFusionError::External(Box::new(error)))?
        } else {
            snapshot.rows(id, &name)
        }
        .map_err(|error| DataFusionError::External(Box::new(error)))?;
        let exec = MemorySourceConfig::try_new_exec(&[rows], self.schema(), projection.cloned())?;
        Ok(exec)
    }
}
