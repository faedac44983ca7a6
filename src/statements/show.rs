//! SHOW TABLES, SHOW VIEWS, SHOW MATERIALIZED VIEWS: one `name` column, sorted.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::Statement;

use crate::catalog::RelationKind;
use crate::error::Result;
use crate::session::{QueryResult, Session};

pub(super) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("name", DataType::Utf8, false)]))
}

pub(super) fn execute(session: &Session, statement: &Statement) -> Result<QueryResult> {
    let kind = match statement {
        Statement::ShowViews {
            materialized: true, ..
        } => RelationKind::MaterializedView,
        Statement::ShowViews { .. } => RelationKind::View,
        _ => RelationKind::Table,
    };
    let snapshot = session.pinned.get();
    // The catalog iterates in name order.
    let names: Vec<String> = snapshot
        .catalog
        .relations()
        .filter(|relation| relation.kind == kind)
        .map(|relation| relation.name.clone())
        .collect();
    let schema = schema();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(names))],
    )?;
    Ok(QueryResult::Rows {
        schema,
        batches: vec![batch],
    })
}
