//! One client connection's state, and `Session::execute`: parse → plan → run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::sql::Statement;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::execution::SessionState;
use datafusion::prelude::SessionContext;

use crate::catalog::RelationId;
use crate::coordinator::Coordinator;
use crate::error::{ExecutionError, Result, lock};
use crate::planner::context::{PinnedSnapshot, session_context};
use crate::statements;
use crate::storage::wal::RelationRecord;

/// What a statement returns to the client.
#[derive(Debug)]
pub enum QueryResult {
    /// Rows, with Postgres's column names.
    Rows {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    /// A query's rows as they are made (see [`crate::statements::RowStream`]).
    Streamed(crate::statements::RowStream),
    /// A command's completion tag (`INSERT 0 3`, `CREATE TABLE`, ...).
    Command(CommandTag),
    /// Rows FETCHed from a cursor (tagged `FETCH n`).
    Fetched {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    /// A subscription the server streams to the client, as rows or (`copy`) as COPY data, until
    /// the client cancels it or goes away.
    Subscription {
        rows: crate::statements::SubscriptionRows,
        copy: bool,
    },
    /// Rows a write returned (`INSERT ... RETURNING`), under the write's completion tag.
    Returning {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        tag: CommandTag,
    },
    /// COPY FROM STDIN: the server takes the client's data and hands it to
    /// [`Session::finish_copy`].
    CopyIn(crate::statements::CopyIn),
    /// COPY TO STDOUT: rows the server sends as COPY data.
    CopyOut(crate::statements::CopyOut),
}

impl QueryResult {
    /// The result with a query's rows all made: [`QueryResult::Rows`] for
    /// [`QueryResult::Streamed`], anything else as it is.
    pub async fn collected(self) -> Result<Self> {
        match self {
            QueryResult::Streamed(rows) => {
                let schema = rows.schema.clone();
                Ok(QueryResult::Rows {
                    schema,
                    batches: rows.collect().await?,
                })
            }
            other => Ok(other),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandTag {
    pub command: String,
    pub rows: Option<u64>,
    /// Transaction control statements change the connection's transaction status.
    pub transaction: Option<TransactionChange>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TransactionChange {
    Begin,
    End,
}

impl CommandTag {
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            rows: None,
            transaction: None,
        }
    }

    pub fn with_rows(command: impl Into<String>, rows: u64) -> Self {
        Self {
            command: command.into(),
            rows: Some(rows),
            transaction: None,
        }
    }
}

/// What the extended protocol learns of a statement before running it.
#[derive(Debug, Clone, Default)]
pub struct Description {
    pub parameter_types: Vec<Option<DataType>>,
    /// `None` for statements that return no rows.
    pub result_schema: Option<SchemaRef>,
}

/// A client's session. Statements run one at a time; each pins the newest complete snapshot
/// first, so everything it reads comes from one epoch.
pub struct Session {
    pub(crate) coordinator: Coordinator,
    pub(crate) pinned: Arc<PinnedSnapshot>,
    /// The DataFusion context; its `public` schema plans plain views through a weak reference to
    /// it. Statements use `state`, except those that read the clock (see `cached_plan`).
    pub(crate) context: Arc<SessionContext>,
    /// The context's state, taken once: Tributary never changes DataFusion's configuration after
    /// the session starts, and cloning the state per statement costs about as much as planning a
    /// small statement.
    pub(crate) state: SessionState,
    /// Run-time parameters (SET, SHOW, RESET, current_setting, set_config) and who is connected;
    /// shared with the session's SQL functions.
    pub(crate) variables: Arc<SessionVariables>,
    /// Plans by statement text, with the catalog version they were made at. Only this session's
    /// statements touch it; the lock is never held across an await.
    pub(crate) plans: Mutex<HashMap<String, CachedPlan>>,
    /// Set only in the session recovery replays statements with: the relation being recreated
    /// (its id, and what its CREATE resolved against the broker the first time).
    pub(crate) recovering: Mutex<Option<RelationRecord>>,
    /// Open cursors by name (DECLARE). Held across FETCH's wait for a subscription's next rows;
    /// only this session's statements, which run one at a time, take it.
    pub(crate) cursors: tokio::sync::Mutex<HashMap<String, crate::statements::Cursor>>,
    /// Whether a transaction block is open (BEGIN until COMMIT or ROLLBACK).
    in_transaction: std::sync::atomic::AtomicBool,
    /// Tables this session made with CREATE TEMPORARY TABLE, by id and name: dropped when the
    /// connection ends. Only this session's statements and its connection's end take the lock,
    /// never across an await.
    temporary_tables: Mutex<Vec<(RelationId, String)>>,
}

/// Parameters every session starts with, as Postgres 16 reports them: (name, value, what it is).
#[rustfmt::skip]
pub const DEFAULT_SETTINGS: &[(&str, &str, &str)] = &[
    ("application_name", "", "Sets the application name to be reported in statistics and logs."),
    ("client_encoding", "UTF8", "Sets the client's character set encoding."),
    ("datestyle", "ISO, MDY", "Sets the display format for date and time values."),
    ("extra_float_digits", "1", "Sets the number of digits displayed for floating-point values."),
    ("integer_datetimes", "on", "Shows whether datetimes are integer based."),
    ("intervalstyle", "postgres", "Sets the display format for interval values."),
    ("search_path", "public", "Sets the schema search order for names that are not schema-qualified."),
    ("server_encoding", "UTF8", "Shows the server (database) character set encoding."),
    ("server_version", "16.6", "Shows the server version (Postgres-compatible)."),
    ("server_version_num", "160006", "Shows the server version as an integer."),
    ("standard_conforming_strings", "on", "Causes '...' strings to treat backslashes literally."),
    ("statement_timeout", "0", "Sets the maximum allowed duration of any query (0: no limit)."),
    ("timezone", "UTC", "Sets the time zone for displaying and interpreting time stamps."),
    ("transaction_isolation", "read committed", "Sets the current transaction's isolation level."),
];

/// A session's run-time parameters and identity. The lock is held only to read or write one
/// entry; statements of this session and its SQL functions are the only users.
#[derive(Debug, Default)]
pub struct SessionVariables {
    /// Parameters changed from their defaults in this session.
    settings: Mutex<HashMap<String, String>>,
    /// Parameters the client gave at startup (application_name, say): what RESET returns to.
    startup: Mutex<HashMap<String, String>>,
    /// The database and user the client named at startup (any are accepted).
    pub database: std::sync::OnceLock<String>,
    pub user: std::sync::OnceLock<String>,
}

impl SessionVariables {
    fn settings(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        lock(&self.settings)
    }

    /// A parameter's current value; `None` for a name no one set and no default has.
    pub fn get(&self, name: &str) -> Option<String> {
        let name = name.to_lowercase();
        self.settings()
            .get(&name)
            .cloned()
            .or_else(|| self.initial(&name))
    }

    /// What a parameter is when the session has not SET it.
    fn initial(&self, name: &str) -> Option<String> {
        lock(&self.startup).get(name).cloned().or_else(|| {
            DEFAULT_SETTINGS
                .iter()
                .find(|(known, _, _)| *known == name)
                .map(|(_, value, _)| value.to_string())
        })
    }

    /// A parameter the client gave when it connected.
    pub fn set_startup(&self, name: &str, value: String) {
        lock(&self.startup).insert(name.to_lowercase(), value);
    }

    pub fn set(&self, name: &str, value: String) {
        self.settings().insert(name.to_lowercase(), value);
    }

    pub fn reset(&self, name: &str) {
        self.settings().remove(&name.to_lowercase());
    }

    pub fn reset_all(&self) {
        self.settings().clear();
    }

    /// Every parameter with its value and description, by name.
    pub fn all(&self) -> Vec<(String, String, String)> {
        let mut names: Vec<String> = DEFAULT_SETTINGS
            .iter()
            .map(|(name, _, _)| name.to_string())
            .chain(lock(&self.startup).keys().cloned())
            .chain(self.settings().keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let value = self.get(&name).unwrap_or_default();
                let description = DEFAULT_SETTINGS
                    .iter()
                    .find(|(known, _, _)| *known == name)
                    .map(|(_, _, description)| description.to_string())
                    .unwrap_or_default();
                (name, value, description)
            })
            .collect()
    }
}

/// A plan kept for a statement the session runs again (prepared statements, repeated queries).
pub(crate) struct CachedPlan {
    pub catalog_version: u64,
    pub plan: datafusion::logical_expr::LogicalPlan,
}

impl Session {
    pub fn new(coordinator: Coordinator) -> Result<Self> {
        let pinned = Arc::new(PinnedSnapshot::default());
        let variables = Arc::new(SessionVariables::default());
        let context = session_context(
            Arc::clone(&pinned),
            Arc::clone(&variables),
            coordinator.query_runtime(),
        )?;
        let state = context.state();
        Ok(Self {
            coordinator,
            pinned,
            context,
            state,
            variables,
            plans: Mutex::new(HashMap::new()),
            recovering: Mutex::new(None),
            cursors: tokio::sync::Mutex::new(HashMap::new()),
            in_transaction: std::sync::atomic::AtomicBool::new(false),
            temporary_tables: Mutex::new(Vec::new()),
        })
    }

    /// Notes that this session created table `name` as TEMPORARY.
    pub(crate) fn remember_temporary_table(&self, name: &str) {
        if let Some(table) = self.coordinator.snapshot().catalog.get(name) {
            lock(&self.temporary_tables).push((table.id, name.to_string()));
        }
    }

    /// Drops the temporary tables this session made that still exist under the name it gave
    /// them, as Postgres does when the session ends. (They are ordinary tables meanwhile,
    /// visible to every session, and a crash leaves them behind.)
    pub async fn drop_temporary_tables(&self) {
        let tables = std::mem::take(&mut *lock(&self.temporary_tables));
        let snapshot = self.coordinator.snapshot();
        let names: Vec<String> = tables
            .into_iter()
            .filter(|(id, name)| {
                snapshot
                    .catalog
                    .get(name)
                    .is_some_and(|table| table.id == *id)
            })
            .map(|(_, name)| name)
            .collect();
        if names.is_empty() {
            return;
        }
        if let Err(error) = self
            .coordinator
            .drop_relations(crate::catalog::RelationKind::Table, names, true, true)
            .await
        {
            tracing::warn!(%error, "could not drop a session's temporary tables");
        }
    }

    /// The relation recovery is recreating with the statement running now, if any.
    pub(crate) fn recovering(&self) -> Option<RelationRecord> {
        lock(&self.recovering).clone()
    }

    /// Runs every statement in `sql`, stopping at the first error.
    pub async fn execute(&self, sql: &str) -> Result<Vec<QueryResult>> {
        let mut results = Vec::new();
        for statement in crate::sql::parse(sql)? {
            results.push(self.execute_statement(&statement, None).await?);
        }
        Ok(results)
    }

    /// Runs one parsed statement, with the parameter values of a bound portal if any; a query's
    /// rows are all made before this returns (see [`QueryResult::collected`]).
    pub async fn execute_statement(
        &self,
        statement: &Statement,
        parameters: Option<ParamValues>,
    ) -> Result<QueryResult> {
        self.execute_interruptible(statement, parameters, std::future::pending())
            .await?
            .collected()
            .await
    }

    /// Runs one statement; if it only reads (a query, FETCH, FLUSH) and `interrupt` completes
    /// first (a cancel request), it stops with 57014. Writes and DDL run to the end: each is
    /// applied in its epoch as a whole, and giving up on waiting would not undo it.
    pub async fn execute_interruptible(
        &self,
        statement: &Statement,
        parameters: Option<ParamValues>,
        interrupt: impl std::future::Future<Output = ()>,
    ) -> Result<QueryResult> {
        self.pinned.pin(self.coordinator.snapshot());
        // A panic while planning or running one statement must not take the connection (or the
        // server) down: it becomes an internal error and the session stays usable.
        let run = statements::execute(self, statement, parameters);
        let run = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run));
        let started = tokio::time::Instant::now();
        let limit = statement_timeout(&self.variables)?;
        let outcome = if statements::only_reads(statement) {
            // Dropping the statement's future stops its execution.
            tokio::select! {
                outcome = run => outcome,
                _ = sleep_for(limit) => return Err(ExecutionError::StatementTimeout.into()),
                _ = interrupt => return Err(ExecutionError::QueryCanceled.into()),
            }
        } else {
            run.await
        };
        let result = match outcome {
            // The statement_timeout holds until the last row is made.
            Ok(Ok(QueryResult::Streamed(mut rows))) => {
                rows.deadline = limit.map(|limit| started + limit);
                Ok(QueryResult::Streamed(rows))
            }
            Ok(result) => result,
            Err(panic) => {
                let message = crate::error::panic_message(&panic);
                tracing::error!(%message, %statement, "statement panicked");
                Err(ExecutionError::Internal(message).into())
            }
        };
        if let Ok(QueryResult::Command(CommandTag {
            transaction: Some(change),
            ..
        })) = &result
        {
            self.transaction_changed(*change).await;
        }
        result
    }

    /// Writes the data a client sent for `COPY ... FROM STDIN` (all of it, after CopyDone) to
    /// its table as one change; the completion tag says how many rows.
    pub async fn finish_copy(
        &self,
        copy: crate::statements::CopyIn,
        data: &[u8],
    ) -> Result<CommandTag> {
        let run = crate::statements::finish_copy(self, copy, data);
        match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await {
            Ok(rows) => Ok(CommandTag::with_rows("COPY", rows?)),
            Err(panic) => {
                let message = crate::error::panic_message(&panic);
                tracing::error!(%message, "COPY FROM STDIN panicked");
                Err(ExecutionError::Internal(message).into())
            }
        }
    }

    /// The columns FETCH from an open cursor returns.
    pub async fn cursor_schema(&self, name: &str) -> Option<SchemaRef> {
        self.cursors
            .lock()
            .await
            .get(name)
            .map(|cursor| cursor.schema())
    }

    pub(crate) fn in_transaction(&self) -> bool {
        self.in_transaction
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A transaction block begins or ends; its end closes its cursors.
    pub(crate) async fn transaction_changed(&self, change: TransactionChange) {
        let open = change == TransactionChange::Begin;
        self.in_transaction
            .store(open, std::sync::atomic::Ordering::Relaxed);
        if !open {
            self.cursors.lock().await.clear();
        }
    }

    /// Drops every cached plan (DISCARD, DEALLOCATE ALL).
    pub(crate) fn forget_plans(&self) {
        if let Ok(mut plans) = self.plans.lock() {
            plans.clear();
        }
    }

    /// Parameter types and result columns of a statement, without running it.
    pub async fn describe(&self, statement: &Statement) -> Result<Description> {
        self.pinned.pin(self.coordinator.snapshot());
        let run = statements::describe(self, statement);
        match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await {
            Ok(result) => result,
            Err(panic) => Err(ExecutionError::Internal(crate::error::panic_message(&panic)).into()),
        }
    }
}

/// Sleeps for `limit`, or forever without one.
async fn sleep_for(limit: Option<std::time::Duration>) {
    match limit {
        Some(limit) => tokio::time::sleep(limit).await,
        None => std::future::pending().await,
    }
}

/// The session's statement_timeout: `None` for 0 (no limit).
fn statement_timeout(variables: &SessionVariables) -> Result<Option<std::time::Duration>> {
    parse_statement_timeout(&variables.get("statement_timeout").unwrap_or_default())
}

/// A statement_timeout in Postgres's forms: a number of milliseconds, or a number with a unit
/// (us, ms, s, min, h, d); `None` for 0 (no limit).
pub(crate) fn parse_statement_timeout(value: &str) -> Result<Option<std::time::Duration>> {
    let duration = crate::sql::parse_duration(value).ok_or_else(|| {
        ExecutionError::InvalidParameterValue(format!(
            "invalid value for parameter \"statement_timeout\": \"{value}\""
        ))
    })?;
    Ok((!duration.is_zero()).then_some(duration))
}
