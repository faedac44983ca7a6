//! DROP SOURCE / SINK / CONNECTION [IF EXISTS] names [CASCADE]: stops the connectors.

use crate::catalog::RelationKind;
use crate::error::Result;
use crate::session::{CommandTag, QueryResult, Session};
use crate::sql::streaming::ConnectorKind;

pub(super) async fn execute(
    session: &Session,
    kind: ConnectorKind,
    names: &[String],
    if_exists: bool,
    cascade: bool,
) -> Result<QueryResult> {
    let (kind, tag) = match kind {
        ConnectorKind::Source => (RelationKind::Source, "DROP SOURCE"),
        ConnectorKind::Sink => (RelationKind::Sink, "DROP SINK"),
        ConnectorKind::Connection => (RelationKind::Connection, "DROP CONNECTION"),
    };
    session
        .coordinator
        .drop_relations(kind, names.to_vec(), if_exists, cascade)
        .await?;
    Ok(QueryResult::Command(CommandTag::new(tag)))
}
