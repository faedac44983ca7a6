//! information_schema as Postgres defines it: views over pg_catalog, planned when read, so that
//! tools reading it (dbt's column lookups, Grafana, Metabase) see Postgres's type names,
//! positions from 1, NOT NULL as `is_nullable`, numeric precision and scale, and the views
//! Postgres has (the constraint views list tables' PRIMARY KEY and UNIQUE constraints). Materialized views
//! are listed with the views, as `VIEW`: they are what Tributary serves.

use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DataFusionResult};
use datafusion::prelude::SessionContext;

/// The relations Tributary's pg_class holds (tables, sources, views, materialized views), with
/// their schema's name.
const RELATIONS: &str = "pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid";

/// Each view's name and defining query.
const VIEWS: &[(&str, &str)] = &[
    (
        "schemata",
        "SELECT current_database() AS catalog_name, n.nspname AS schema_name, \
         'tributary' AS schema_owner, CAST(NULL AS text) AS default_character_set_catalog, \
         CAST(NULL AS text) AS default_character_set_schema, \
         CAST(NULL AS text) AS default_character_set_name, CAST(NULL AS text) AS sql_path \
         FROM pg_catalog.pg_namespace n",
    ),
    (
        "tables",
        "SELECT current_database() AS table_catalog, n.nspname AS table_schema, \
         c.relname AS table_name, \
         CASE WHEN c.relkind IN ('v', 'm') THEN 'VIEW' ELSE 'BASE TABLE' END AS table_type, \
         CAST(NULL AS text) AS self_referencing_column_name, \
         CAST(NULL AS text) AS reference_generation, \
         CAST(NULL AS text) AS user_defined_type_catalog, \
         CAST(NULL AS text) AS user_defined_type_schema, \
         CAST(NULL AS text) AS user_defined_type_name, \
         CASE WHEN c.relkind = 'r' THEN 'YES' ELSE 'NO' END AS is_insertable_into, \
         'NO' AS is_typed, CAST(NULL AS text) AS commit_action \
         FROM RELATIONS WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p')",
    ),
    (
        "views",
        "SELECT current_database() AS table_catalog, schemaname AS table_schema, \
         viewname AS table_name, definition AS view_definition, 'NONE' AS check_option, \
         'NO' AS is_updatable, 'NO' AS is_insertable_into, 'NO' AS is_trigger_updatable, \
         'NO' AS is_trigger_deletable, 'NO' AS is_trigger_insertable_into \
         FROM pg_catalog.pg_views \
         UNION ALL \
         SELECT current_database(), schemaname, matviewname, definition, 'NONE', 'NO', 'NO', \
         'NO', 'NO', 'NO' FROM pg_catalog.pg_matviews",
    ),
    (
        "columns",
        "SELECT current_database() AS table_catalog, n.nspname AS table_schema, \
         c.relname AS table_name, a.attname AS column_name, \
         CAST(a.attnum AS int) AS ordinal_position, CAST(NULL AS text) AS column_default, \
         CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable, \
         CASE WHEN t.typcategory = 'A' THEN 'ARRAY' \
              WHEN t.typname = 'varchar' THEN 'character varying' \
              ELSE format_type(a.atttypid, NULL) END AS data_type, \
         CASE WHEN t.typname IN ('varchar', 'bpchar') AND a.atttypmod > 0 \
              THEN CAST(a.atttypmod - 4 AS int) END AS character_maximum_length, \
         CASE WHEN t.typcategory = 'S' THEN 1073741824 END AS character_octet_length, \
         CASE t.typname WHEN 'int2' THEN 16 WHEN 'int4' THEN 32 WHEN 'int8' THEN 64 \
              WHEN 'float4' THEN 24 WHEN 'float8' THEN 53 \
              WHEN 'numeric' THEN CASE WHEN a.atttypmod > 0 \
                   THEN CAST((a.atttypmod - 4) / 65536 AS int) END END AS numeric_precision, \
         CASE WHEN t.typname IN ('int2', 'int4', 'int8', 'float4', 'float8') THEN 2 \
              WHEN t.typname = 'numeric' THEN 10 END AS numeric_precision_radix, \
         CASE WHEN t.typname IN ('int2', 'int4', 'int8') THEN 0 \
              WHEN t.typname = 'numeric' AND a.atttypmod > 0 \
              THEN CAST((a.atttypmod - 4) % 65536 AS int) END AS numeric_scale, \
         CASE WHEN t.typname = 'date' THEN 0 \
              WHEN t.typname IN ('timestamp', 'timestamptz', 'time', 'timetz', 'interval') \
              THEN 6 END AS datetime_precision, \
         CAST(NULL AS text) AS interval_type, CAST(NULL AS int) AS interval_precision, \
         CAST(NULL AS text) AS character_set_catalog, \
         CAST(NULL AS text) AS character_set_schema, CAST(NULL AS text) AS character_set_name, \
         CAST(NULL AS text) AS collation_catalog, CAST(NULL AS text) AS collation_schema, \
         CAST(NULL AS text) AS collation_name, CAST(NULL AS text) AS domain_catalog, \
         CAST(NULL AS text) AS domain_schema, CAST(NULL AS text) AS domain_name, \
         current_database() AS udt_catalog, 'pg_catalog' AS udt_schema, \
         t.typname AS udt_name, CAST(NULL AS text) AS scope_catalog, \
         CAST(NULL AS text) AS scope_schema, CAST(NULL AS text) AS scope_name, \
         CAST(NULL AS int) AS maximum_cardinality, CAST(a.attnum AS text) AS dtd_identifier, \
         'NO' AS is_self_referencing, 'NO' AS is_identity, \
         CAST(NULL AS text) AS identity_generation, CAST(NULL AS text) AS identity_start, \
         CAST(NULL AS text) AS identity_increment, CAST(NULL AS text) AS identity_maximum, \
         CAST(NULL AS text) AS identity_minimum, CAST(NULL AS text) AS identity_cycle, \
         'NEVER' AS is_generated, CAST(NULL AS text) AS generation_expression, \
         CASE WHEN c.relkind = 'r' THEN 'YES' ELSE 'NO' END AS is_updatable \
         FROM RELATIONS JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
         JOIN pg_catalog.pg_type t ON a.atttypid = t.oid \
         WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v', 'm', 'f', 'p')",
    ),
    (
        "table_constraints",
        "SELECT DISTINCT current_database() AS constraint_catalog, \
         'public' AS constraint_schema, k.constraint_name, \
         current_database() AS table_catalog, 'public' AS table_schema, k.table_name, \
         k.constraint_type, 'NO' AS is_deferrable, 'NO' AS initially_deferred, \
         'YES' AS enforced, \
         CASE WHEN k.constraint_type = 'UNIQUE' THEN 'YES' END AS nulls_distinct \
         FROM tributary.key_columns k",
    ),
    (
        "key_column_usage",
        "SELECT current_database() AS constraint_catalog, 'public' AS constraint_schema, \
         k.constraint_name, current_database() AS table_catalog, 'public' AS table_schema, \
         k.table_name, k.column_name, k.ordinal_position, \
         CAST(NULL AS int) AS position_in_unique_constraint \
         FROM tributary.key_columns k",
    ),
    (
        "referential_constraints",
        "SELECT CAST(NULL AS text) AS constraint_catalog, CAST(NULL AS text) AS constraint_schema, \
         CAST(NULL AS text) AS constraint_name, CAST(NULL AS text) AS unique_constraint_catalog, \
         CAST(NULL AS text) AS unique_constraint_schema, \
         CAST(NULL AS text) AS unique_constraint_name, CAST(NULL AS text) AS match_option, \
         CAST(NULL AS text) AS update_rule, CAST(NULL AS text) AS delete_rule WHERE false",
    ),
    (
        "constraint_column_usage",
        "SELECT current_database() AS table_catalog, 'public' AS table_schema, k.table_name, \
         k.column_name, current_database() AS constraint_catalog, \
         'public' AS constraint_schema, k.constraint_name \
         FROM tributary.key_columns k",
    ),
    (
        "check_constraints",
        "SELECT CAST(NULL AS text) AS constraint_catalog, CAST(NULL AS text) AS constraint_schema, \
         CAST(NULL AS text) AS constraint_name, CAST(NULL AS text) AS check_clause WHERE false",
    ),
    (
        "routines",
        "SELECT CAST(NULL AS text) AS specific_catalog, CAST(NULL AS text) AS specific_schema, \
         CAST(NULL AS text) AS specific_name, CAST(NULL AS text) AS routine_catalog, \
         CAST(NULL AS text) AS routine_schema, CAST(NULL AS text) AS routine_name, \
         CAST(NULL AS text) AS routine_type, CAST(NULL AS text) AS data_type, \
         CAST(NULL AS text) AS routine_body, CAST(NULL AS text) AS routine_definition, \
         CAST(NULL AS text) AS external_language WHERE false",
    ),
    (
        "parameters",
        "SELECT CAST(NULL AS text) AS specific_catalog, CAST(NULL AS text) AS specific_schema, \
         CAST(NULL AS text) AS specific_name, CAST(NULL AS int) AS ordinal_position, \
         CAST(NULL AS text) AS parameter_mode, CAST(NULL AS text) AS parameter_name, \
         CAST(NULL AS text) AS data_type WHERE false",
    ),
];

/// The `information_schema` schema: each of [`VIEWS`] planned with the session's context when
/// a statement reads it.
#[derive(Debug, Default)]
pub struct InformationSchema {
    /// The session's context, set once it exists; weak, as the context holds this schema.
    pub context: OnceLock<Weak<SessionContext>>,
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        VIEWS.iter().map(|(name, _)| name.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DataFusionResult<Option<Arc<dyn TableProvider>>> {
        let Some((_, query)) = VIEWS.iter().find(|(view, _)| *view == name) else {
            return Ok(None);
        };
        let context = self
            .context
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| DataFusionError::Internal("session context is gone".into()))?;
        let sql = query.replace("RELATIONS", RELATIONS);
        let plan = context.state().create_logical_plan(&sql).await?;
        Ok(Some(Arc::new(ViewTable::new(plan, Some(sql)))))
    }

    fn table_exist(&self, name: &str) -> bool {
        VIEWS.iter().any(|(view, _)| *view == name)
    }
}
