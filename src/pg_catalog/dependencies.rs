//! What views read, as Postgres's catalogs describe it: a pg_rewrite `_RETURN` rule per view and
//! materialized view, and pg_depend rows from each rule to its own view and to every relation the
//! view reads. dbt reads these to learn which views a `DROP ... CASCADE` takes with it.

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::error::Result as DataFusionResult;

use super::keys::batch_by_name;
use crate::catalog::{Relation, RelationKind};
use crate::coordinator::Snapshot;

/// Rule oids: the relation's id above this base, which lies between the library's relation
/// oids (from 16384) and the key oids (from 1,000,000).
const RULE_OID_BASE: i64 = 500_000;

/// pg_rewrite's and pg_class's oids in pg_class: pg_depend's `classid` and `refclassid`.
const PG_REWRITE: i64 = 2618;
const PG_CLASS: i64 = 1259;

/// The views and materialized views with a pg_class row: (view's oid, view).
fn views<'a>(
    snapshot: &'a Snapshot,
    relation_oids: &'a HashMap<String, i64>,
) -> impl Iterator<Item = (i64, &'a Relation)> + 'a {
    snapshot.catalog.relations().filter_map(|relation| {
        let oid = *relation_oids.get(&relation.name)?;
        matches!(
            relation.kind,
            RelationKind::View | RelationKind::MaterializedView
        )
        .then_some((oid, relation.as_ref()))
    })
}

fn rule_oid(view: &Relation) -> i64 {
    RULE_OID_BASE + view.id as i64
}

/// pg_rewrite: each view's `_RETURN` rule.
pub(super) fn rule_rows(
    schema: &SchemaRef,
    snapshot: &Snapshot,
    relation_oids: &HashMap<String, i64>,
) -> DataFusionResult<RecordBatch> {
    let rows = views(snapshot, relation_oids)
        .map(|(view_oid, view)| {
            HashMap::from([
                ("oid", ScalarValue::Int64(Some(rule_oid(view)))),
                ("rulename", ScalarValue::from("_RETURN")),
                ("ev_class", ScalarValue::Int64(Some(view_oid))),
                // A SELECT rule, always enabled, instead of reading the view's own storage.
                ("ev_type", ScalarValue::from("1")),
                ("ev_enabled", ScalarValue::from("O")),
                ("is_instead", ScalarValue::Boolean(Some(true))),
                ("ev_qual", ScalarValue::from("<>")),
            ])
        })
        .collect();
    batch_by_name(schema, rows)
}

/// pg_depend: each view's rule on its view (internal, 'i') and on what it reads (normal, 'n').
pub(super) fn dependency_rows(
    schema: &SchemaRef,
    snapshot: &Snapshot,
    relation_oids: &HashMap<String, i64>,
) -> DataFusionResult<RecordBatch> {
    let oid_of = |id| {
        let relation = snapshot.catalog.by_id(id)?;
        relation_oids.get(&relation.name).copied()
    };
    let dependency = |rule: i64, referenced: i64, kind: &str| {
        HashMap::from([
            ("classid", ScalarValue::Int64(Some(PG_REWRITE))),
            ("objid", ScalarValue::Int64(Some(rule))),
            ("objsubid", ScalarValue::Int64(Some(0))),
            ("refclassid", ScalarValue::Int64(Some(PG_CLASS))),
            ("refobjid", ScalarValue::Int64(Some(referenced))),
            ("refobjsubid", ScalarValue::Int64(Some(0))),
            ("deptype", ScalarValue::from(kind)),
        ])
    };
    let mut rows = Vec::new();
    for (view_oid, view) in views(snapshot, relation_oids) {
        rows.push(dependency(rule_oid(view), view_oid, "i"));
        for read in view.depends_on.iter().filter_map(|&id| oid_of(id)) {
            rows.push(dependency(rule_oid(view), read, "n"));
        }
    }
    batch_by_name(schema, rows)
}
