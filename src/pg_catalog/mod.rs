//! pg_catalog for Postgres clients and BI tools: datafusion-pg-catalog's tables and functions,
//! with what it lacks filled from Tributary's catalog (materialized views, view definitions);
//! and information_schema as Postgres's views over it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DataFusionResult};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::generate_series_arg_coercion::CoerceIntArgsToBigInt;
use datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;
use datafusion_pg_catalog::pg_catalog::{PgCatalogSchemaProvider, PgCatalogStaticTables};

use crate::catalog::RelationKind;
use crate::planner::context::{CATALOG, PUBLIC_SCHEMA, PinnedSnapshot};

mod dependencies;
mod information_schema;
mod keys;
pub mod rewrite;

pub use information_schema::InformationSchema;

pub const PG_CATALOG_SCHEMA: &str = "pg_catalog";

/// Installs pg_catalog and the functions clients call into a session's context. Tributary's
/// own session functions are registered after this, so theirs (version(), current_database())
/// win where both exist.
pub fn install(context: &SessionContext, pinned: Arc<PinnedSnapshot>) -> DataFusionResult<()> {
    let catalog = context
        .catalog(CATALOG)
        .ok_or_else(|| DataFusionError::Internal(format!("no catalog {CATALOG}")))?;
    let static_tables = static_tables()?;
    // The library's setup_pg_catalog, less its two costs per connection: it decodes the static
    // tables again (3.6 ms, most of a session's start) and its pg_catalog reads the session's
    // own catalog list, which would hold the context that holds it, leaking every session.
    let library = Arc::new(PgCatalogSchemaProvider::try_new(
        SnapshotCatalog {
            pinned: Arc::clone(&pinned),
        },
        Arc::clone(&static_tables),
        EmptyContextProvider,
    )?);
    catalog.register_schema(
        PG_CATALOG_SCHEMA,
        Arc::new(PgCatalog {
            library,
            pinned: Arc::clone(&pinned),
        }),
    )?;
    for function in library_functions()
        .into_iter()
        .chain(missing_functions())
        .chain(keys::functions(&pinned))
    {
        context.register_udf(function);
    }
    context.register_udtf("pg_get_keywords", static_tables.pg_get_keywords.clone());
    // Postgres's oid-alias type names (regclass, regtype, ...) parse, as int4.
    {
        let state = context.state_ref();
        let existing = state.read().clone();
        let with_oid_types = SessionStateBuilder::new_from_existing(existing)
            .with_type_planner(Arc::new(PostgresTypePlanner))
            .build();
        *state.write() = with_oid_types;
    }
    // generate_series/range take int4 bounds (array_upper's) as Postgres does.
    CoerceIntArgsToBigInt::widen(context);
    Ok(())
}

/// Type names DataFusion's SQL planner does not know: `jsonb` and `json` (see
/// [`crate::sql::jsonb`]), then datafusion-pg-catalog's oid aliases and `pg_catalog.` names.
#[derive(Debug)]
struct PostgresTypePlanner;

impl datafusion::logical_expr::planner::TypePlanner for PostgresTypePlanner {
    fn plan_type_field(
        &self,
        sql_type: &datafusion::sql::sqlparser::ast::DataType,
    ) -> datafusion::error::Result<Option<Arc<datafusion::arrow::datatypes::Field>>> {
        use datafusion::sql::sqlparser::ast::DataType as SqlType;
        let is_json = match sql_type {
            SqlType::JSON | SqlType::JSONB => true,
            SqlType::Custom(name, modifiers) if modifiers.is_empty() => {
                let name = name.to_string().to_lowercase();
                matches!(
                    name.as_str(),
                    "jsonb" | "json" | "pg_catalog.jsonb" | "pg_catalog.json"
                )
            }
            _ => false,
        };
        if is_json {
            return Ok(Some(Arc::new(datafusion::arrow::datatypes::Field::new(
                "",
                crate::sql::jsonb::JSONB,
                true,
            ))));
        }
        datafusion::logical_expr::planner::TypePlanner::plan_type_field(&PgOidTypePlanner, sql_type)
    }
}

/// Whether `name` is a relation of pg_catalog, which an unqualified name also finds: a user's
/// relation of that name would shadow it for every client that asks the catalog.
pub fn is_catalog_relation(context: &SessionContext, name: &str) -> bool {
    context
        .catalog(CATALOG)
        .and_then(|catalog| catalog.schema(PG_CATALOG_SCHEMA))
        .is_some_and(|schema| schema.table_exist(name))
}

/// The functions datafusion-pg-catalog's setup registers.
fn library_functions() -> Vec<ScalarUDF> {
    use datafusion_pg_catalog::pg_catalog::{
        array_bounds_udf, format_type, has_privilege_udf, pg_get_expr_udf, quote_ident_udf,
    };
    use datafusion_pg_catalog::pg_catalog::{
        create_current_database_udf, create_current_schema_udf, create_current_schemas_udf,
        create_pg_backend_pid_udf, create_pg_encoding_to_char_udf, create_pg_get_constraintdef,
        create_pg_get_partition_ancestors_udf, create_pg_get_partkeydef_udf,
        create_pg_get_statisticsobjdef_columns_udf, create_pg_get_userbyid_udf,
        create_pg_relation_is_publishable_udf, create_pg_relation_size_udf,
        create_pg_stat_get_numscans, create_pg_table_is_visible, create_pg_total_relation_size_udf,
        create_session_user_udf,
    };
    vec![
        create_current_database_udf(CATALOG),
        create_current_schema_udf(),
        create_current_schemas_udf(),
        create_pg_get_userbyid_udf(),
        has_privilege_udf::create_has_privilege_udf("has_table_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_schema_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_database_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_any_column_privilege"),
        create_pg_table_is_visible(),
        format_type::create_format_type_udf(),
        create_session_user_udf(),
        pg_get_expr_udf::create_pg_get_expr_udf(),
        create_pg_get_partkeydef_udf(),
        create_pg_relation_is_publishable_udf(),
        create_pg_get_statisticsobjdef_columns_udf(),
        create_pg_encoding_to_char_udf(),
        create_pg_backend_pid_udf(),
        create_pg_relation_size_udf(),
        create_pg_total_relation_size_udf(),
        create_pg_stat_get_numscans(),
        create_pg_get_constraintdef(),
        create_pg_get_partition_ancestors_udf(),
        quote_ident_udf::create_quote_ident_udf(),
        quote_ident_udf::create_parse_ident_udf(),
        array_bounds_udf::create_array_upper_udf(),
        array_bounds_udf::create_array_lower_udf(),
    ]
}

/// pg_type, pg_proc and the other fixed tables, decoded once per process and shared by every
/// session.
fn static_tables() -> DataFusionResult<Arc<PgCatalogStaticTables>> {
    static TABLES: OnceLock<Arc<PgCatalogStaticTables>> = OnceLock::new();
    if let Some(tables) = TABLES.get() {
        return Ok(Arc::clone(tables));
    }
    let tables = Arc::new(PgCatalogStaticTables::try_new()?);
    Ok(Arc::clone(TABLES.get_or_init(|| tables)))
}

/// What the library's pg_class, pg_attribute and pg_namespace list: the public schema's
/// relations, as of the statement's snapshot. The `tributary` system relations stay out: every
/// relation listed here is on the search path (the library's pg_table_is_visible says yes to
/// all), which they are not.
#[derive(Debug, Clone)]
struct SnapshotCatalog {
    pinned: Arc<PinnedSnapshot>,
}

#[async_trait]
impl CatalogInfo for SnapshotCatalog {
    async fn catalog_names(&self) -> DataFusionResult<Vec<String>> {
        Ok(vec![CATALOG.to_string()])
    }

    async fn schema_names(&self, catalog: &str) -> DataFusionResult<Option<Vec<String>>> {
        Ok((catalog == CATALOG).then(|| vec![PUBLIC_SCHEMA.to_string()]))
    }

    async fn table_names(
        &self,
        catalog: &str,
        schema: &str,
    ) -> DataFusionResult<Option<Vec<String>>> {
        if catalog != CATALOG {
            return Ok(None);
        }
        Ok(match schema {
            PUBLIC_SCHEMA => Some(
                self.pinned
                    .get()
                    .catalog
                    .relations()
                    .filter(|relation| relation.kind.is_queryable())
                    .map(|relation| relation.name.clone())
                    .collect(),
            ),
            _ => None,
        })
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> DataFusionResult<Option<SchemaRef>> {
        if catalog != CATALOG {
            return Ok(None);
        }
        Ok(match schema {
            PUBLIC_SCHEMA => self
                .pinned
                .get()
                .catalog
                .get(table)
                .filter(|relation| relation.kind.is_queryable())
                .map(|relation| Arc::clone(&relation.schema)),
            _ => None,
        })
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> DataFusionResult<Option<TableType>> {
        if catalog != CATALOG {
            return Ok(None);
        }
        Ok(match schema {
            PUBLIC_SCHEMA => self.pinned.get().catalog.get(table).map(|relation| {
                match relation.kind {
                    RelationKind::Table | RelationKind::Source => TableType::Base,
                    // pg_class shows materialized views as 'm' (see Patch).
                    RelationKind::View
                    | RelationKind::MaterializedView
                    | RelationKind::Sink
                    | RelationKind::Connection => TableType::View,
                }
            }),
            _ => None,
        })
    }
}

/// Functions psql's `\\d` family calls that the library does not define. Tributary has no user
/// functions, types or comments: every object is visible, and descriptions are NULL.
fn missing_functions() -> Vec<ScalarUDF> {
    vec![
        constant("pg_function_is_visible", ScalarValue::Boolean(Some(true))),
        constant("pg_type_is_visible", ScalarValue::Boolean(Some(true))),
        constant(
            "pg_get_function_result",
            ScalarValue::Utf8(Some(String::new())),
        ),
        constant(
            "pg_get_function_arguments",
            ScalarValue::Utf8(Some(String::new())),
        ),
        constant("col_description", ScalarValue::Utf8(None)),
        constant("obj_description", ScalarValue::Utf8(None)),
        constant("shobj_description", ScalarValue::Utf8(None)),
        // There are no temporary schemas.
        constant("pg_is_other_temp_schema", ScalarValue::Boolean(Some(false))),
        // Tributary takes no advisory locks (pg_advisory_lock is not a function here), so a
        // session has none to release; asyncpg's pool calls this whenever it releases a
        // connection.
        datafusion::logical_expr::create_udf(
            "pg_advisory_unlock_all",
            vec![],
            DataType::Null,
            Volatility::Volatile,
            Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Null))),
        ),
        // There are no triggers or rules to describe.
        constant("pg_get_triggerdef", ScalarValue::Utf8(None)),
        constant("pg_get_ruledef", ScalarValue::Utf8(None)),
        // Rows live in memory, not in relation files: nothing on disk to measure.
        constant("pg_table_size", ScalarValue::Int64(Some(0))),
        constant("pg_indexes_size", ScalarValue::Int64(Some(0))),
        constant("pg_database_size", ScalarValue::Int64(Some(0))),
        ScalarUDF::new_from_impl(SizePretty::default()),
    ]
}

fn constant(name: &str, value: ScalarValue) -> ScalarUDF {
    ScalarUDF::new_from_impl(Constant {
        name: name.to_string(),
        signature: Signature::variadic_any(Volatility::Stable),
        value,
    })
}

/// A catalog function whose answer does not depend on its arguments, whatever they are.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Constant {
    name: String,
    signature: Signature,
    value: ScalarValue,
}

impl ScalarUDFImpl for Constant {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arguments: &[DataType]) -> DataFusionResult<DataType> {
        Ok(self.value.data_type())
    }

    fn invoke_with_args(&self, arguments: ScalarFunctionArgs) -> DataFusionResult<ColumnarValue> {
        let rows = arguments.args.iter().find_map(|argument| match argument {
            ColumnarValue::Array(array) => Some(array.len()),
            ColumnarValue::Scalar(_) => None,
        });
        Ok(match rows {
            Some(rows) => ColumnarValue::Array(self.value.to_array_of_size(rows)?),
            None => ColumnarValue::Scalar(self.value.clone()),
        })
    }
}

/// `pg_size_pretty(bytes)`: Postgres's rounding, halving into kB, MB, GB, TB and PB while the
/// number is at least 10,240 of the current unit.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SizePretty {
    signature: Signature,
}

impl Default for SizePretty {
    fn default() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Int64], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for SizePretty {
    fn name(&self) -> &str {
        "pg_size_pretty"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arguments: &[DataType]) -> DataFusionResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, arguments: ScalarFunctionArgs) -> DataFusionResult<ColumnarValue> {
        let sizes = ColumnarValue::values_to_arrays(&arguments.args)?;
        let sizes = sizes
            .first()
            .and_then(|sizes| sizes.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| DataFusionError::Internal("pg_size_pretty takes a bigint".into()))?;
        let pretty: StringArray = sizes.iter().map(|size| size.map(size_pretty)).collect();
        Ok(ColumnarValue::Array(Arc::new(pretty)))
    }
}

fn size_pretty(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes.unsigned_abs() < 10 * 1024 {
        return format!("{bytes} bytes");
    }
    // Each step halves first, then rounds the last halving: Postgres's half_rounded().
    let mut size = bytes / 512;
    let mut unit = 0;
    while size.unsigned_abs() >= 20 * 1024 - 1 && unit + 1 < UNITS.len() {
        size /= 1024;
        unit += 1;
    }
    let rounded = (size + size.signum()) / 2;
    format!("{rounded} {}", UNITS[unit])
}

/// The library's pg_catalog, with the relations it leaves empty or gets wrong for Tributary
/// answered from the pinned snapshot.
#[derive(Debug)]
struct PgCatalog {
    library: Arc<PgCatalogSchemaProvider<SnapshotCatalog, EmptyContextProvider>>,
    pinned: Arc<PinnedSnapshot>,
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.library.table_names()
    }

    async fn table(&self, name: &str) -> DataFusionResult<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.library.table(name).await? else {
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        let patch = match name.as_str() {
            "pg_class" => Patch::MaterializedViewKinds,
            "pg_attribute" => Patch::ColumnConstraints,
            "pg_views" => Patch::Views,
            "pg_matviews" => Patch::MaterializedViews,
            "pg_namespace" => Patch::SystemNamespaces,
            "pg_settings" => Patch::Settings,
            "pg_index" => Patch::Indexes,
            "pg_constraint" => Patch::Constraints,
            "pg_rewrite" => Patch::Rules,
            "pg_depend" => Patch::Dependencies,
            _ if CHAR_COLUMNS.iter().any(|(table, _)| *table == name) => Patch::CharColumnsOnly,
            _ => return Ok(Some(table)),
        };
        Ok(Some(Arc::new(PatchedTable {
            library: table,
            library_schema: Arc::clone(&self.library) as Arc<dyn SchemaProvider>,
            patch,
            pinned: Arc::clone(&self.pinned),
            name,
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.library.table_exist(name)
    }
}

#[derive(Debug, Clone, Copy)]
enum Patch {
    /// pg_class knows only tables and views: materialized views become relkind 'm'.
    MaterializedViewKinds,
    /// pg_attribute sees the columns as DataFusion scans them (all nullable, no type
    /// modifiers, some types unknown): NOT NULL, NUMERIC(p, s) and the type OIDs the protocol
    /// sends come from the catalog.
    ColumnConstraints,
    /// pg_views is empty in the library: one row per view, with its definition.
    Views,
    /// pg_matviews likewise, per materialized view.
    MaterializedViews,
    /// pg_settings holds one setting in the library: it lists every setting a session starts
    /// with, and the server's fixed limits (PgJDBC's key lookups read `max_index_keys`).
    Settings,
    /// Only the `"char"` columns marked (see [`CHAR_COLUMNS`]).
    CharColumnsOnly,
    /// pg_index holds the system catalogs' indexes: the indexes of tables' PRIMARY KEY and
    /// UNIQUE constraints are added (`keys`), and pg_class lists them too.
    Indexes,
    /// pg_constraint likewise, with the constraints themselves.
    Constraints,
    /// pg_rewrite holds the system views' rules: each view's and materialized view's
    /// `_RETURN` rule is added (`dependencies`).
    Rules,
    /// pg_depend likewise, with what each of those rules reads.
    Dependencies,
    /// pg_namespace lists only public: pg_catalog (oid 11, which every pg_type row names as
    /// its namespace) and information_schema are added, so that catalog queries joining types
    /// with their namespace (asyncpg's type introspection) find them.
    SystemNamespaces,
}

/// Catalog columns of Postgres's one-byte `"char"` type, which the library holds as text:
/// marked so that arrow-pg describes them as `"char"` (OID 18) and sends a binary one as its
/// byte. asyncpg decides what a type is from `pg_type.typtype` read so (`b'b'`, not `'b'`).
const CHAR_COLUMNS: &[(&str, &[&str])] = &[
    (
        "pg_type",
        &[
            "typtype",
            "typcategory",
            "typdelim",
            "typalign",
            "typstorage",
        ],
    ),
    ("pg_class", &["relkind", "relpersistence", "relreplident"]),
    // (attidentity and attgenerated are the empty "char" here, which arrow-pg cannot send
    // as one; they stay text.)
    ("pg_attribute", &["attalign", "attstorage"]),
    (
        "pg_constraint",
        &["contype", "confupdtype", "confdeltype", "confmatchtype"],
    ),
    ("pg_proc", &["prokind", "provolatile", "proparallel"]),
];

/// `schema` with the `"char"` columns of `table` marked.
fn with_char_columns(table: &str, schema: SchemaRef) -> SchemaRef {
    let Some((_, columns)) = CHAR_COLUMNS.iter().find(|(name, _)| *name == table) else {
        return schema;
    };
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .map(|field| {
            if columns.contains(&field.name().as_str())
                && matches!(field.data_type(), DataType::Utf8 | DataType::Utf8View)
            {
                let mut metadata = field.metadata().clone();
                metadata.insert(arrow_pg::datatypes::PG_CHAR_KEY.to_string(), "char".into());
                Arc::new(field.as_ref().clone().with_metadata(metadata))
            } else {
                Arc::clone(field)
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The system schemas pg_namespace adds, with the oids Postgres gives them.
const SYSTEM_NAMESPACES: [(i64, &str); 2] = [(11, "pg_catalog"), (13207, "information_schema")];

/// One of the library's tables, corrected when scanned.
#[derive(Debug)]
struct PatchedTable {
    library: Arc<dyn TableProvider>,
    /// The library's pg_catalog, for the relations a patch joins with.
    library_schema: Arc<dyn SchemaProvider>,
    patch: Patch,
    pinned: Arc<PinnedSnapshot>,
    /// The table's name, lower case.
    name: String,
}

/// Columns of pg_class the library leaves out, NULL for every relation: storage options and
/// access privileges.
const PG_CLASS_EXTRA_COLUMNS: [&str; 2] = ["reloptions", "relacl"];

#[async_trait]
impl TableProvider for PatchedTable {
    fn schema(&self) -> SchemaRef {
        with_char_columns(&self.name, self.patched_schema())
    }

    fn table_type(&self) -> TableType {
        self.library.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DataFusionResult<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        let batches = match self.patch {
            Patch::MaterializedViewKinds => {
                let library = scan_all(self.library.as_ref(), state).await?;
                let (namespace, tables) = self.public_relations(state).await?;
                let indexes = keys::class_rows(
                    &self.library.schema(),
                    &self.pinned.get(),
                    &tables,
                    namespace,
                )?;
                library
                    .iter()
                    .map(|batch| self.materialized_view_kinds(batch))
                    .chain(std::iter::once(Ok(indexes)))
                    .map(|batch| self.with_extra_columns(batch?))
                    .collect::<DataFusionResult<Vec<_>>>()?
            }
            Patch::Rules | Patch::Dependencies => {
                let mut batches = scan_all(self.library.as_ref(), state).await?;
                let (_, relations) = self.public_relations(state).await?;
                let rows = match self.patch {
                    Patch::Rules => dependencies::rule_rows,
                    _ => dependencies::dependency_rows,
                };
                batches.push(rows(
                    &self.library.schema(),
                    &self.pinned.get(),
                    &relations,
                )?);
                batches
            }
            Patch::Indexes | Patch::Constraints => {
                let mut batches = scan_all(self.library.as_ref(), state).await?;
                let (namespace, tables) = self.public_relations(state).await?;
                let rows = match self.patch {
                    Patch::Indexes => keys::index_rows,
                    _ => keys::constraint_rows,
                };
                batches.push(rows(
                    &self.library.schema(),
                    &self.pinned.get(),
                    &tables,
                    namespace,
                )?);
                batches
            }
            Patch::SystemNamespaces => {
                let mut batches = scan_all(self.library.as_ref(), state).await?;
                batches.push(system_namespaces(&schema)?);
                batches
            }
            Patch::ColumnConstraints => {
                let (_, tables) = self.public_relations(state).await?;
                let public_relations: HashMap<i64, String> =
                    tables.into_iter().map(|(name, oid)| (oid, name)).collect();
                scan_all(self.library.as_ref(), state)
                    .await?
                    .iter()
                    .map(|batch| self.column_constraints(batch, &public_relations))
                    .collect::<DataFusionResult<Vec<_>>>()?
            }
            Patch::Views => vec![self.views(&schema, RelationKind::View)?],
            Patch::MaterializedViews => {
                vec![self.views(&schema, RelationKind::MaterializedView)?]
            }
            Patch::CharColumnsOnly => scan_all(self.library.as_ref(), state).await?,
            Patch::Settings => vec![settings(&schema)?],
        };
        // The same columns, under the schema that marks the "char" ones.
        let batches = batches
            .into_iter()
            .map(|batch| RecordBatch::try_new(Arc::clone(&schema), batch.columns().to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        MemorySourceConfig::try_new_exec(&[batches], schema, projection.cloned())
            .map(|exec| exec as Arc<dyn ExecutionPlan>)
    }
}

impl PatchedTable {
    /// The library's schema with the columns a patch adds.
    fn patched_schema(&self) -> SchemaRef {
        let library = self.library.schema();
        match self.patch {
            Patch::MaterializedViewKinds => {
                let mut fields: Vec<FieldRef> = library.fields().iter().cloned().collect();
                for name in PG_CLASS_EXTRA_COLUMNS {
                    if library.index_of(name).is_err() {
                        fields.push(Arc::new(Field::new(
                            name,
                            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
                            true,
                        )));
                    }
                }
                Arc::new(Schema::new(fields))
            }
            _ => library,
        }
    }
}

impl PatchedTable {
    /// The public schema's oid, and its relations' pg_class oids by name, from the library's
    /// own tables (it numbers them).
    async fn public_relations(
        &self,
        state: &dyn Session,
    ) -> DataFusionResult<(i64, HashMap<String, i64>)> {
        let mut public_namespace = None;
        if let Some(namespaces) = self.library_schema.table("pg_namespace").await? {
            for batch in scan_all(namespaces.as_ref(), state).await? {
                let oids = integer_column(&batch, "oid")?;
                let names = text_column(&batch, "nspname")?;
                for (oid, name) in oids.into_iter().zip(names) {
                    if name.as_deref() == Some(PUBLIC_SCHEMA) {
                        public_namespace = oid;
                    }
                }
            }
        }
        let mut relations = HashMap::new();
        if let (Some(public), Some(classes)) = (
            public_namespace,
            self.library_schema.table("pg_class").await?,
        ) {
            for batch in scan_all(classes.as_ref(), state).await? {
                let oids = integer_column(&batch, "oid")?;
                let names = text_column(&batch, "relname")?;
                let namespaces = integer_column(&batch, "relnamespace")?;
                for ((oid, name), namespace) in oids.into_iter().zip(names).zip(namespaces) {
                    if let (Some(oid), Some(name), Some(namespace)) = (oid, name, namespace)
                        && namespace == public
                    {
                        relations.insert(name, oid);
                    }
                }
            }
        }
        Ok((public_namespace.unwrap_or(2200), relations))
    }

    /// attnotnull and atttypmod of the public relations' columns, as declared.
    fn column_constraints(
        &self,
        batch: &RecordBatch,
        public_relations: &HashMap<i64, String>,
    ) -> DataFusionResult<RecordBatch> {
        let snapshot = self.pinned.get();
        let schema = batch.schema();
        let (Ok(not_null_index), Ok(modifier_index), Ok(type_index)) = (
            schema.index_of("attnotnull"),
            schema.index_of("atttypmod"),
            schema.index_of("atttypid"),
        ) else {
            return Ok(batch.clone());
        };
        let mut types: Vec<Option<i64>> = integer_column(batch, "atttypid")?;
        let relations = integer_column(batch, "attrelid")?;
        let names = text_column(batch, "attname")?;
        let mut not_null: Vec<bool> = batch
            .column(not_null_index)
            .as_any()
            .downcast_ref::<BooleanArray>()
            .map(|column| column.iter().map(|value| value.unwrap_or(false)).collect())
            .unwrap_or_else(|| vec![false; batch.num_rows()]);
        let mut modifiers: Vec<i32> = integer_column(batch, "atttypmod")?
            .into_iter()
            .map(|value| {
                value
                    .and_then(|value| i32::try_from(value).ok())
                    .unwrap_or(-1)
            })
            .collect();
        for (row, (relation, name)) in relations.iter().zip(&names).enumerate() {
            let declared = relation
                .and_then(|oid| public_relations.get(&oid))
                .and_then(|relation| snapshot.catalog.get(relation))
                .zip(name.as_deref())
                .and_then(|(relation, name)| relation.schema.field_with_name(name).ok().cloned());
            if let Some(field) = declared {
                not_null[row] = !field.is_nullable();
                // The type OIDs the wire protocol sends (the library's table lacks some, such
                // as interval's).
                if let Some(pg_type) = crate::server::types::arrow_to_pg_type(field.data_type()) {
                    types[row] = Some(i64::from(pg_type.oid()));
                }
                // VARCHAR(n) is text that keeps its length in the field's metadata.
                if let Some(length) = field
                    .metadata()
                    .get(crate::catalog::MAX_LENGTH_KEY)
                    .and_then(|length| length.parse::<i32>().ok())
                {
                    types[row] = Some(i64::from(pgwire::api::Type::VARCHAR.oid()));
                    modifiers[row] = length.saturating_add(4);
                }
                if let datafusion::arrow::datatypes::DataType::Decimal128(precision, scale) =
                    field.data_type()
                {
                    // Postgres packs NUMERIC(p, s) as ((p << 16) | s) + 4.
                    modifiers[row] = ((i32::from(*precision) << 16) | i32::from(*scale as u8)) + 4;
                }
            }
        }
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns[not_null_index] = Arc::new(BooleanArray::from(not_null));
        columns[modifier_index] = Arc::new(datafusion::arrow::array::Int32Array::from(modifiers));
        let types = datafusion::arrow::array::Int64Array::from(types);
        columns[type_index] =
            datafusion::arrow::compute::cast(&types, schema.field(type_index).data_type())?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// relkind 'm' for the rows naming a materialized view in the public schema.
    fn materialized_view_kinds(&self, batch: &RecordBatch) -> DataFusionResult<RecordBatch> {
        let snapshot = self.pinned.get();
        let schema = batch.schema();
        let Ok(kind_index) = schema.index_of("relkind") else {
            return Ok(batch.clone());
        };
        let names = text_column(batch, "relname")?;
        let materialized: BooleanArray = names
            .iter()
            .map(|name| {
                Some(name.as_deref().is_some_and(|name| {
                    snapshot
                        .catalog
                        .get(name)
                        .is_some_and(|relation| relation.kind == RelationKind::MaterializedView)
                }))
            })
            .collect();
        if materialized.true_count() == 0 {
            return Ok(batch.clone());
        }
        let kinds = zip(
            &materialized,
            &datafusion::arrow::array::Scalar::new(StringArray::from(vec!["m"])),
            batch.column(kind_index),
        )?;
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns[kind_index] = kinds;
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// The library's pg_class rows with the columns it lacks, NULL.
    fn with_extra_columns(&self, batch: RecordBatch) -> DataFusionResult<RecordBatch> {
        let schema = self.schema();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for field in schema.fields().iter().skip(columns.len()) {
            columns.push(datafusion::arrow::array::new_null_array(
                field.data_type(),
                batch.num_rows(),
            ));
        }
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// pg_views or pg_matviews: schema, name, owner and definition of every view of `kind`; the
    /// other columns (tablespace, indexes) say there are none, and a materialized view is
    /// always populated.
    fn views(&self, schema: &SchemaRef, kind: RelationKind) -> DataFusionResult<RecordBatch> {
        let snapshot = self.pinned.get();
        let views: Vec<_> = snapshot
            .catalog
            .relations()
            .filter(|relation| relation.kind == kind)
            .collect();
        let columns = schema
            .fields()
            .iter()
            .map(|field| -> ArrayRef {
                match field.name().as_str() {
                    "schemaname" => Arc::new(StringArray::from_iter_values(
                        views.iter().map(|_| PUBLIC_SCHEMA),
                    )),
                    "viewname" | "matviewname" => Arc::new(StringArray::from_iter_values(
                        views.iter().map(|view| view.name.as_str()),
                    )),
                    "viewowner" | "matviewowner" => Arc::new(StringArray::from_iter_values(
                        views.iter().map(|_| "tributary"),
                    )),
                    "definition" => Arc::new(StringArray::from_iter(
                        views.iter().map(|view| view.definition.as_deref()),
                    )),
                    "hasindexes" => Arc::new(BooleanArray::from(vec![false; views.len()])),
                    "ispopulated" => Arc::new(BooleanArray::from(vec![true; views.len()])),
                    _ => datafusion::arrow::array::new_null_array(field.data_type(), views.len()),
                }
            })
            .collect();
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }
}

/// Limits Postgres reports in pg_settings that no session changes, as a default build has them.
const FIXED_SETTINGS: &[(&str, &str, &str)] = &[
    (
        "max_index_keys",
        "32",
        "Shows the maximum number of index keys.",
    ),
    (
        "max_identifier_length",
        "63",
        "Shows the maximum identifier length.",
    ),
    (
        "max_function_args",
        "100",
        "Shows the maximum number of function arguments.",
    ),
    ("block_size", "8192", "Shows the size of a disk block."),
];

/// pg_settings: the settings every session starts with, then the fixed limits; each with its
/// value as `setting` and `reset_val`, described, and of type string.
fn settings(schema: &SchemaRef) -> DataFusionResult<RecordBatch> {
    let rows: Vec<[&str; 3]> = crate::session::DEFAULT_SETTINGS
        .iter()
        .chain(FIXED_SETTINGS)
        .map(|(name, value, description)| [*name, *value, *description])
        .collect();
    let column = |index: usize| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|row| row[index]),
        ))
    };
    let constant =
        |value: &str| -> ArrayRef { Arc::new(StringArray::from(vec![value; rows.len()])) };
    let columns = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            match field.name().as_str() {
                "name" => column(0),
                "setting" | "reset_val" | "boot_val" => column(1),
                "short_desc" => column(2),
                "vartype" => constant("string"),
                "source" => constant("default"),
                "context" => constant("user"),
                "pending_restart" => Arc::new(BooleanArray::from(vec![false; rows.len()])),
                _ => datafusion::arrow::array::new_null_array(field.data_type(), rows.len()),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// pg_namespace's rows for [`SYSTEM_NAMESPACES`], owned by the bootstrap superuser (10).
fn system_namespaces(schema: &SchemaRef) -> DataFusionResult<RecordBatch> {
    let rows = SYSTEM_NAMESPACES.len();
    let columns = schema
        .fields()
        .iter()
        .map(|field| -> DataFusionResult<ArrayRef> {
            let values: ArrayRef = match field.name().as_str() {
                "oid" => Arc::new(datafusion::arrow::array::Int64Array::from_iter_values(
                    SYSTEM_NAMESPACES.iter().map(|(oid, _)| *oid),
                )),
                "nspname" => Arc::new(StringArray::from_iter_values(
                    SYSTEM_NAMESPACES.iter().map(|(_, name)| *name),
                )),
                "nspowner" => Arc::new(datafusion::arrow::array::Int64Array::from(vec![10; rows])),
                _ => {
                    return Ok(datafusion::arrow::array::new_null_array(
                        field.data_type(),
                        rows,
                    ));
                }
            };
            Ok(datafusion::arrow::compute::cast(
                &values,
                field.data_type(),
            )?)
        })
        .collect::<DataFusionResult<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// Every row of a library table.
async fn scan_all(
    table: &dyn TableProvider,
    state: &dyn Session,
) -> DataFusionResult<Vec<RecordBatch>> {
    let plan = table.scan(state, None, &[], None).await?;
    collect(plan, state.task_ctx()).await
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> DataFusionResult<&'a ArrayRef> {
    let index = batch.schema().index_of(name)?;
    Ok(batch.column(index))
}

fn integer_column(batch: &RecordBatch, name: &str) -> DataFusionResult<Vec<Option<i64>>> {
    let column = datafusion::arrow::compute::cast(
        column(batch, name)?,
        &datafusion::arrow::datatypes::DataType::Int64,
    )?;
    let column = column
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Int64Array>()
        .ok_or_else(|| DataFusionError::Internal("an integer column is not integer".into()))?;
    Ok(column.iter().collect())
}

fn text_column(batch: &RecordBatch, name: &str) -> DataFusionResult<Vec<Option<String>>> {
    let column = datafusion::arrow::compute::cast(
        column(batch, name)?,
        &datafusion::arrow::datatypes::DataType::Utf8,
    )?;
    let column = column
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Internal("a text column is not text".into()))?;
    Ok(column
        .iter()
        .map(|value| value.map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::size_pretty;

    #[test]
    fn sizes_print_as_postgres_prints_them() {
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(10239), "10239 bytes");
        assert_eq!(size_pretty(10240), "10 kB");
        assert_eq!(size_pretty(1_000_000), "977 kB");
        assert_eq!(size_pretty(10_485_760), "10 MB");
        assert_eq!(size_pretty(1_073_741_824), "1024 MB");
        assert_eq!(size_pretty(-20_000), "-20 kB");
    }
}

#[cfg(test)]
mod lifetime_tests {
    use std::sync::Arc;

    use crate::planner::context::{PinnedSnapshot, session_context};
    use crate::session::SessionVariables;

    /// pg_catalog must not hold the context that holds it: every connection builds one.
    #[test]
    fn a_dropped_session_context_is_freed() {
        let pinned = Arc::new(PinnedSnapshot::default());
        let variables = Arc::new(SessionVariables::default());
        for _ in 0..3 {
            let context =
                session_context(Arc::clone(&pinned), Arc::clone(&variables), Arc::default())
                    .unwrap();
            let weak = Arc::downgrade(&context);
            drop(context);
            assert!(weak.upgrade().is_none(), "the session context leaked");
        }
    }
}
