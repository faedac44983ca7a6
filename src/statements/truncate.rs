//! TRUNCATE: every row of each table named is deleted, as `DELETE FROM` without WHERE deletes
//! them (views reading the tables see the deletions).

use datafusion::sql::sqlparser::ast::{Truncate, TruncateIdentityOption};

use super::table_named;
use crate::coordinator::TableChange;
use crate::error::{PlanError, Result};
use crate::session::{CommandTag, QueryResult, Session};
use crate::sql::relation_name;

pub(super) async fn execute(session: &Session, truncate: &Truncate) -> Result<QueryResult> {
    if matches!(truncate.identity, Some(TruncateIdentityOption::Restart)) {
        return Err(PlanError::Unsupported(
            "TRUNCATE ... RESTART IDENTITY is not supported: sequences continue where they are"
                .into(),
        )
        .into());
    }
    // Every name is checked before any table is emptied. Tables are emptied one write each:
    // a failure midway leaves the earlier ones empty.
    let tables = truncate
        .table_names
        .iter()
        .map(|target| table_named(session, &relation_name(&target.name)?))
        .collect::<Result<Vec<_>>>()?;
    for table in tables {
        session
            .coordinator
            .write(table.id, TableChange::Delete { predicate: None })
            .await?;
    }
    Ok(QueryResult::Command(CommandTag::new("TRUNCATE TABLE")))
}
