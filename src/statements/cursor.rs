//! DECLARE, FETCH and CLOSE: cursors over a query's rows or over a subscription. Cursors live in
//! their transaction block and end with it, as in Postgres.

use std::collections::VecDeque;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ParamValues;
use datafusion::sql::sqlparser::ast::{Query, Statement};
use futures::FutureExt;

use super::subscribe::SubscriptionRows;
use crate::error::{ExecutionError, Result};
use crate::session::{CommandTag, QueryResult, Session};
use crate::sql::streaming::{Fetch, Subscribe};

/// An open cursor.
pub(crate) enum Cursor {
    /// A query's result, computed when the cursor was declared.
    Rows {
        schema: SchemaRef,
        batches: VecDeque<RecordBatch>,
    },
    /// A subscription; `pending` holds rows received but not fetched yet.
    Subscription {
        rows: SubscriptionRows,
        pending: VecDeque<RecordBatch>,
    },
}

impl Cursor {
    pub(crate) fn schema(&self) -> SchemaRef {
        match self {
            Cursor::Rows { schema, .. } => SchemaRef::clone(schema),
            Cursor::Subscription { rows, .. } => SchemaRef::clone(rows.schema()),
        }
    }
}

pub(super) async fn declare_query(
    session: &Session,
    name: &str,
    query: &Query,
    parameters: Option<ParamValues>,
) -> Result<QueryResult> {
    ensure_in_transaction(session)?;
    ensure_new(session, name).await?;
    let statement = Statement::Query(Box::new(query.clone()));
    let QueryResult::Rows { schema, batches } =
        super::query::execute(session, &statement, parameters)
            .await?
            .collected()
            .await?
    else {
        return Err(ExecutionError::Internal("a query returned no rows".into()).into());
    };
    let cursor = Cursor::Rows {
        schema,
        batches: batches.into(),
    };
    open(session, name, cursor).await
}

pub(super) async fn declare_subscription(
    session: &Session,
    name: &str,
    subscribe: &Subscribe,
) -> Result<QueryResult> {
    ensure_in_transaction(session)?;
    ensure_new(session, name).await?;
    let rows = super::subscribe::start(session, subscribe).await?;
    let cursor = Cursor::Subscription {
        rows,
        pending: VecDeque::new(),
    };
    open(session, name, cursor).await
}

/// FETCH: up to `count` rows (all for ALL). From a subscription it waits until at least one row
/// is there (or the timeout passes), then returns what has arrived.
pub(super) async fn fetch(session: &Session, fetch: &Fetch) -> Result<QueryResult> {
    let mut cursors = session.cursors.lock().await;
    let cursor = cursors
        .get_mut(&fetch.cursor)
        .ok_or_else(|| ExecutionError::UndefinedCursor(fetch.cursor.clone()))?;
    let schema = cursor.schema();
    let wanted = fetch.count.map_or(usize::MAX, |count| count as usize);
    let batches = match cursor {
        Cursor::Rows { batches, .. } => take_rows(batches, wanted),
        Cursor::Subscription { rows, pending } => {
            if pending.is_empty() && wanted > 0 {
                match wait(rows, fetch.timeout).await? {
                    Some(batch) => pending.push_back(batch),
                    None => return Ok(fetched(schema, Vec::new())),
                }
            }
            // Whatever else has arrived comes too, up to the count. `next_batch` can be dropped
            // unfinished: it only awaits the channel, which loses nothing then.
            let mut available: usize = pending.iter().map(RecordBatch::num_rows).sum();
            while available < wanted {
                match rows.next_batch().now_or_never() {
                    Some(batch) => {
                        let batch = batch?;
                        available += batch.num_rows();
                        pending.push_back(batch);
                    }
                    None => break,
                }
            }
            take_rows(pending, wanted)
        }
    };
    Ok(fetched(schema, batches))
}

/// The next batch of a subscription, or `None` if `timeout` passes first.
async fn wait(
    rows: &mut SubscriptionRows,
    timeout: Option<Duration>,
) -> Result<Option<RecordBatch>> {
    match timeout {
        None => rows.next_batch().await.map(Some),
        Some(timeout) => match tokio::time::timeout(timeout, rows.next_batch()).await {
            Ok(batch) => batch.map(Some),
            Err(_) => Ok(None),
        },
    }
}

pub(super) async fn close(session: &Session, name: Option<&str>) -> Result<QueryResult> {
    let mut cursors = session.cursors.lock().await;
    match name {
        None => cursors.clear(),
        Some(name) => {
            cursors
                .remove(name)
                .ok_or_else(|| ExecutionError::UndefinedCursor(name.to_string()))?;
        }
    }
    Ok(QueryResult::Command(CommandTag::new(if name.is_some() {
        "CLOSE CURSOR"
    } else {
        "CLOSE CURSOR ALL"
    })))
}

/// The schema FETCH from `name` returns, for the extended protocol's Describe.
pub(super) async fn fetch_schema(session: &Session, name: &str) -> Result<SchemaRef> {
    let cursors = session.cursors.lock().await;
    cursors
        .get(name)
        .map(Cursor::schema)
        .ok_or_else(|| ExecutionError::UndefinedCursor(name.to_string()).into())
}

fn ensure_in_transaction(session: &Session) -> Result<()> {
    if session.in_transaction() {
        Ok(())
    } else {
        Err(ExecutionError::NoActiveTransaction("DECLARE CURSOR").into())
    }
}

async fn ensure_new(session: &Session, name: &str) -> Result<()> {
    if session.cursors.lock().await.contains_key(name) {
        return Err(ExecutionError::DuplicateCursor(name.to_string()).into());
    }
    Ok(())
}

async fn open(session: &Session, name: &str, cursor: Cursor) -> Result<QueryResult> {
    session
        .cursors
        .lock()
        .await
        .insert(name.to_string(), cursor);
    Ok(QueryResult::Command(CommandTag::new("DECLARE CURSOR")))
}

fn fetched(schema: SchemaRef, batches: Vec<RecordBatch>) -> QueryResult {
    QueryResult::Fetched { schema, batches }
}

/// Takes up to `wanted` rows from the front of `batches`, splitting a batch if needed.
fn take_rows(batches: &mut VecDeque<RecordBatch>, wanted: usize) -> Vec<RecordBatch> {
    let mut taken = Vec::new();
    let mut remaining = wanted;
    while remaining > 0 {
        let Some(batch) = batches.pop_front() else {
            break;
        };
        if batch.num_rows() <= remaining {
            remaining -= batch.num_rows();
            taken.push(batch);
        } else {
            taken.push(batch.slice(0, remaining));
            batches.push_front(batch.slice(remaining, batch.num_rows() - remaining));
            remaining = 0;
        }
    }
    taken
}
