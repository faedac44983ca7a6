//! DROP TABLE / VIEW / MATERIALIZED VIEW, refused while dependents exist unless CASCADE.

use datafusion::sql::sqlparser::ast::{ObjectName, ObjectType};

use crate::catalog::RelationKind;
use crate::error::{PlanError, Result};
use crate::session::{CommandTag, QueryResult, Session};
use crate::sql::relation_name;

pub(super) async fn execute(
    session: &Session,
    object_type: ObjectType,
    if_exists: bool,
    names: &[ObjectName],
    cascade: bool,
) -> Result<QueryResult> {
    let (kind, tag) = match object_type {
        ObjectType::Table => (RelationKind::Table, "DROP TABLE"),
        ObjectType::View => (RelationKind::View, "DROP VIEW"),
        ObjectType::MaterializedView => (RelationKind::MaterializedView, "DROP MATERIALIZED VIEW"),
        other => {
            return Err(PlanError::Unsupported(format!("DROP {other} is not supported")).into());
        }
    };
    let names = names
        .iter()
        .map(relation_name)
        .collect::<Result<Vec<_>, _>>()?;
    session
        .coordinator
        .drop_relations(kind, names, if_exists, cascade)
        .await?;
    Ok(QueryResult::Command(CommandTag::new(tag)))
}
