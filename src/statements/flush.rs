//! FLUSH: returns once every source has ingested what its topic held when FLUSH began and every
//! view reflects it, so scripts and tests wait for data without sleeping.

use crate::error::Result;
use crate::session::{CommandTag, QueryResult, Session};

pub(super) async fn execute(session: &Session) -> Result<QueryResult> {
    session.coordinator.flush().await?;
    Ok(QueryResult::Command(CommandTag::new("FLUSH")))
}
