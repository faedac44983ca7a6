//! The Postgres wire protocol server: connections, simple and extended query protocols, result
//! encoding and error responses.

mod copy;
pub(crate) mod encode;
mod frames;
mod parameters;
mod security;
mod socket;
mod statement;
mod subscription;
pub(crate) mod types;

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::Sink;
use futures::SinkExt;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{Response, Tag};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionGuard, ConnectionHandle, ConnectionManager,
    PgWireServerHandlers,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::{NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::Describe;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::coordinator::{Coordinator, Durability};
use crate::error::{Error, ExecutionError, PlanError};
use crate::session::{QueryResult, Session, TransactionChange};
use crate::storage::directory::DataDirectory;
use statement::{PreparedStatement, StatementParser};

pub use security::{Credentials, TlsFiles};

/// How a server keeps its state and whom it lets in.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the log and checkpoints live; `None` keeps everything in memory (tests, demos).
    pub data_dir: Option<PathBuf>,
    /// How often the coordinator checkpoints.
    pub checkpoint_interval: Duration,
    /// With credentials, clients must authenticate with SCRAM-SHA-256 as that user; without,
    /// anyone connects (the local embedded default).
    pub credentials: Option<Credentials>,
    /// With a certificate and key, clients may encrypt their connection with TLS
    /// (`sslmode=require`).
    pub tls: Option<TlsFiles>,
    /// How many copies of each keyed operator (grouped aggregate, equality join, top-N per
    /// partition) share a view's keys and run side by side; by default one per core.
    pub workers: usize,
    /// Bytes that running queries may hold together (sorts, hash tables, ...): past it a
    /// query fails with 53200 rather than the server growing. By default a quarter of the
    /// machine's memory.
    pub max_query_memory: usize,
}

impl Config {
    pub fn in_memory() -> Self {
        Self {
            data_dir: None,
            checkpoint_interval: Duration::from_secs(1),
            credentials: None,
            tls: None,
            workers: default_workers(),
            max_query_memory: default_max_query_memory(),
        }
    }

    pub fn durable(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: Some(data_dir.into()),
            ..Self::in_memory()
        }
    }
}

/// A quarter of the machine's memory (`MemTotal`); 1 GiB where that cannot be read.
pub fn default_max_query_memory() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|meminfo| {
            meminfo.lines().find_map(|line| {
                let kib = line.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?;
                kib.trim().parse::<usize>().ok()
            })
        })
        .map_or(1 << 30, |kib| kib * 1024 / 4)
}

/// One worker per core the process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The runtime to serve on: tokio's multi-threaded one, with the stack a statement may need
/// on every thread (`sql::depth::THREAD_STACK_SIZE`; parsing, planning and ad hoc queries run
/// on its threads). [`run`] and [`serve`] work on any runtime, but on threads with tokio's
/// default 2 MiB stack a deeply nested statement can overflow it.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(crate::sql::depth::THREAD_STACK_SIZE)
        .build()
}

/// Serves Postgres clients on `listener` until `shutdown` turns true, keeping everything in
/// memory.
pub async fn run(listener: TcpListener, shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    serve(listener, shutdown, Config::in_memory()).await
}

/// Starts the coordinator and, with a data directory, recovers what it holds. Returns the
/// coordinator ready for sessions, and a receiver that turns true once it has stopped (after
/// `shutdown` turns true and its last checkpoint is written).
pub async fn start_coordinator(
    config: &Config,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(Coordinator, watch::Receiver<bool>)> {
    let durability = match &config.data_dir {
        Some(path) => {
            let directory = DataDirectory::open(path).map_err(std::io::Error::other)?;
            Some(Durability::new(directory, config.checkpoint_interval)?)
        }
        None => None,
    };
    let paths = durability.as_ref().map(|durability| {
        let directory = durability.directory();
        (directory.checkpoint_directory(), directory.log_directory())
    });
    let (coordinator, stopped) = Coordinator::start(
        shutdown.clone(),
        durability,
        config.workers,
        config.max_query_memory,
    )?;
    if let Some((checkpoints, logs)) = paths {
        let report = crate::recovery::recover(&coordinator, &checkpoints, &logs)
            .await
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        tracing::info!(
            checkpoint = ?report.checkpoint_epoch,
            relations = report.relations,
            replayed = report.replayed,
            milliseconds = report.duration.as_millis() as u64,
            peak_memory_mib = report.peak_memory_kib.map(|kib| kib / 1024),
            "recovered"
        );
    }
    Ok((coordinator, stopped))
}

/// Serves Postgres clients on `listener` until `shutdown` turns true. Starts the coordinator
/// and, with a data directory, recovers what it holds before accepting anyone; every accepted
/// connection gets its own task and session, so a failing connection never affects another.
/// Returns after the coordinator's last checkpoint.
pub async fn serve(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    config: Config,
) -> std::io::Result<()> {
    let security = Arc::new(security::Security::new(
        config.credentials.as_ref(),
        config.tls.as_ref(),
    )?);
    let (coordinator, mut stopped) = start_coordinator(&config, shutdown.clone()).await?;
    // Shared by every connection: each registers itself at startup (under the process id and
    // secret key it was sent) and unregisters when it ends; a cancel request, which arrives on
    // a connection of its own, looks the target up here.
    let connections = Arc::new(ConnectionManager::new());
    tracing::info!(address = %listener.local_addr()?, "listening for Postgres clients");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        continue;
                    }
                };
                let coordinator = coordinator.clone();
                let connections = Arc::clone(&connections);
                let security = Arc::clone(&security);
                tokio::spawn(async move {
                    let handlers = match Connection::new(coordinator, connections, &security) {
                        Ok(handlers) => Arc::new(handlers),
                        Err(error) => {
                            tracing::error!(%error, "cannot create a session");
                            return;
                        }
                    };
                    let tls = security.tls.clone();
                    let coalescing = Arc::clone(&handlers.handler.coalescing);
                    let session = Arc::clone(&handlers.handler.session);
                    if let Err(error) =
                        socket::process_socket(socket, tls, handlers, coalescing).await
                    {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    session.drop_temporary_tables().await;
                });
            }
            _ = shutdown.changed() => {
                tracing::info!("shutting down");
                break;
            }
        }
    }
    // The coordinator writes its last checkpoint before it stops.
    let _ = stopped.wait_for(|stopped| *stopped).await;
    Ok(())
}

/// One client connection: its session and the protocol handlers around it.
struct Connection {
    handler: Arc<QueryHandler>,
    startup: Arc<security::Startup>,
    cancel: Arc<CancelRequests>,
}

impl Connection {
    fn new(
        coordinator: Coordinator,
        connections: Arc<ConnectionManager>,
        security: &security::Security,
    ) -> crate::error::Result<Self> {
        let session = Arc::new(Session::new(coordinator)?);
        let parser = Arc::new(StatementParser {
            session: Arc::clone(&session),
        });
        let handler = Arc::new(QueryHandler {
            session,
            parser,
            connections: Arc::clone(&connections),
            cancel: OnceLock::new(),
            copy_in: std::sync::Mutex::new(None),
            coalescing: Arc::default(),
        });
        Ok(Self {
            cancel: Arc::new(CancelRequests { connections }),
            startup: Arc::new(security.startup(Arc::clone(&handler))),
            handler,
        })
    }
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.handler)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.handler)
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        Arc::clone(&self.handler)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

struct QueryHandler {
    session: Arc<Session>,
    parser: Arc<StatementParser>,
    connections: Arc<ConnectionManager>,
    /// This connection's entry in `connections`, made at startup; the guard removes it when
    /// the connection ends.
    cancel: OnceLock<(Arc<ConnectionHandle>, ConnectionGuard)>,
    /// The COPY FROM STDIN this connection is receiving data for, from its CopyInResponse to
    /// the client's CopyDone or CopyFail. Only this connection's message loop takes it, one
    /// message at a time; never held across an await.
    copy_in: std::sync::Mutex<Option<copy::PendingCopy>>,
    /// Whether the connection's answers are being held for the last of pipelined messages;
    /// the message loop sets it, and a result that streams or waits for the client stops it.
    coalescing: Arc<frames::WriteCoalescing>,
}

/// Answers cancel requests: each arrives on a connection of its own and names its target by
/// the process id and secret key that connection was sent at startup.
struct CancelRequests {
    connections: Arc<ConnectionManager>,
}

#[async_trait]
impl pgwire::api::cancel::CancelHandler for CancelRequests {
    async fn on_cancel_request(&self, request: pgwire::messages::cancel::CancelRequest) {
        let found = self
            .connections
            .cancel(request.pid, &request.secret_key)
            .await;
        tracing::debug!(process = request.pid, found, "cancel request");
    }
}

/// A cancel request for the statement a connection is running: completes when one arrives.
/// Each query message (simple Query, or Execute) gets a fresh one, so a cancel request that
/// arrives between statements is forgotten, as in Postgres.
struct CancelSignal {
    receiver: Option<futures::channel::oneshot::Receiver<()>>,
}

impl CancelSignal {
    async fn start(handler: &QueryHandler) -> Self {
        let receiver = match handler.cancel.get() {
            Some((handle, _)) => Some(handle.start_query().await),
            None => None,
        };
        Self { receiver }
    }

    /// Moves the signal out (for a result streamed after the statement returned), leaving one
    /// that never fires.
    fn take(&mut self) -> Self {
        Self {
            receiver: self.receiver.take(),
        }
    }

    /// Completes when the client's cancel request arrives; never, if none does.
    async fn requested(&mut self) {
        match self.receiver.as_mut() {
            Some(receiver) => {
                if receiver.await.is_err() {
                    // The handle was replaced or the connection is ending: no cancel will come.
                    self.receiver = None;
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}

/// Without passwords any user name and database are accepted (the embedded default); with
/// them, [`security::Startup`] authenticates first and then calls [`QueryHandler::connected`].
#[async_trait]
impl NoopStartupHandler for QueryHandler {
    async fn post_startup<C>(
        &self,
        client: &mut C,
        _message: pgwire::messages::PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.connected(client);
        Ok(())
    }
}

impl QueryHandler {
    /// The client is in: remember who connected (for current_database() and the like), and
    /// let cancel requests find the connection.
    fn connected<C: ClientInfo>(&self, client: &C) {
        // Registered here rather than through pgwire's own hook: pgwire would then race every
        // statement against cancel requests, writes included, and a write that has reached the
        // coordinator is applied whether or not anyone still waits for it.
        let (process, secret_key) = client.pid_and_secret_key();
        let _ = self
            .cancel
            .set(self.connections.register(process, secret_key));
        let metadata = client.metadata();
        let variables = &self.session.variables;
        if let Some(user) = metadata.get(pgwire::api::METADATA_USER) {
            let _ = variables.user.set(user.clone());
        }
        let database = metadata
            .get(pgwire::api::METADATA_DATABASE)
            .or_else(|| metadata.get(pgwire::api::METADATA_USER));
        if let Some(database) = database {
            let _ = variables.database.set(database.clone());
        }
        for name in [
            pgwire::api::METADATA_APPLICATION_NAME,
            pgwire::api::METADATA_CLIENT_ENCODING,
        ] {
            if let Some(value) = metadata.get(name) {
                variables.set_startup(name, value.clone());
            }
        }
        // `options=-c statement_timeout=5s` (libpq's PGOPTIONS, psycopg's `options`): the
        // session starts with those settings, and RESET returns to them.
        if let Some(options) = metadata.get("options") {
            for (name, value) in startup_options(options) {
                variables.set_startup(&name, value);
            }
        }
    }
}

/// The settings in a startup packet's `options`: `-c name=value` and `--name=value`, separated
/// by spaces, a backslash keeping the character after it (a space in a value). Dashes in a
/// name are underscores, as Postgres reads them.
fn startup_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut characters = options.chars();
    while let Some(character) = characters.next() {
        match character {
            '\\' => word.extend(characters.next()),
            ' ' | '\t' => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            other => word.push(other),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut settings = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let setting = if word == "-c" {
            words.next()
        } else if let Some(setting) = word.strip_prefix("--") {
            Some(setting.to_string())
        } else {
            word.strip_prefix("-c").map(str::to_string)
        };
        if let Some((name, value)) = setting
            .as_deref()
            .and_then(|setting| setting.split_once('='))
        {
            settings.push((name.replace('-', "_").to_lowercase(), value.to_string()));
        }
    }
    settings
}

/// The Postgres name of the type an Arrow type is sent as (`int4`, `bool`, ...).
pub fn arrow_type_name(data_type: &datafusion::arrow::datatypes::DataType) -> String {
    types::arrow_to_pg_type(data_type)
        .map(|pg_type| pg_type.name().to_string())
        .unwrap_or_else(|| data_type.to_string())
}

/// The ErrorResponse for an error: its SQLSTATE and message.
pub(crate) fn to_pgwire_error(error: &Error) -> PgWireError {
    if let Error::Execution(crate::error::ExecutionError::Internal(message)) = error {
        tracing::error!(%message, "internal error");
    }
    PgWireError::UserError(Box::new(error_info(error)))
}

fn error_response(error: &Error) -> Response {
    Response::Error(Box::new(error_info(error)))
}

/// An error's fields: its SQLSTATE and message, and where the statement was (the CONTEXT line
/// psql prints) when it says.
fn error_info(error: &Error) -> ErrorInfo {
    let mut info = ErrorInfo::new(
        "ERROR".to_owned(),
        error.sqlstate().to_owned(),
        error.to_string(),
    );
    match error {
        Error::Execution(ExecutionError::CopyValue { context, source }) => {
            info.message = source.to_string();
            info.where_context = Some(format!("COPY {context}"));
        }
        Error::Execution(ExecutionError::UniqueViolation { detail, .. }) => {
            info.detail = Some(detail.clone());
        }
        _ => {}
    }
    info
}

/// The response to a statement's result; `cancel` ends a streamed query's rows. A subscription
/// is streamed before this is reached; the caller passes what ended it as an error instead.
fn to_response(
    result: QueryResult,
    format: &Format,
    mut cancel: CancelSignal,
) -> PgWireResult<Response> {
    Ok(match result {
        QueryResult::Rows { schema, batches } => {
            Response::Query(encode::query_response(&schema, batches, format)?)
        }
        QueryResult::Streamed(rows) => Response::Query(encode::streamed_query_response(
            rows,
            format,
            Box::pin(async move { cancel.requested().await }),
        )?),
        QueryResult::Fetched { schema, batches } => {
            let mut response = encode::query_response(&schema, batches, format)?;
            response.set_command_tag("FETCH");
            Response::Query(response)
        }
        // pgwire adds the row count to the tag ("INSERT 0" and 2 rows: "INSERT 0 2").
        QueryResult::Returning {
            schema,
            batches,
            tag,
        } => {
            let mut response = encode::query_response(&schema, batches, format)?;
            response.set_command_tag(&tag.command);
            Response::Query(response)
        }
        QueryResult::Subscription { .. } | QueryResult::CopyIn(_) | QueryResult::CopyOut(_) => {
            let error = Error::from(ExecutionError::Internal(
                "a subscription or COPY reached the response without being streamed".into(),
            ));
            error_response(&error)
        }
        QueryResult::Command(tag) => {
            let mut pg_tag = Tag::new(&tag.command);
            if let Some(rows) = tag.rows {
                pg_tag = pg_tag.with_rows(rows as usize);
            }
            match tag.transaction {
                Some(TransactionChange::Begin) => Response::TransactionStart(pg_tag),
                Some(TransactionChange::End) => Response::TransactionEnd(pg_tag),
                None => Response::Execution(pg_tag),
            }
        }
    })
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = match crate::sql::parse(query) {
            Ok(statements) => statements,
            Err(error) => return Ok(vec![error_response(&error.into())]),
        };
        // A subscription is streamed to the client as it runs, which would put its messages
        // before the responses of the statements ahead of it.
        if statements.len() > 1 && statements.iter().any(streams_to_client) {
            let error = PlanError::Unsupported(
                "SUBSCRIBE or COPY in a query string with other statements: send it alone".into(),
            );
            return Ok(vec![error_response(&error.into())]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        let mut cancel = CancelSignal::start(self).await;
        // Postgres runs a multi-statement query until the first error and reports that error last.
        let count = statements.len();
        for (position, statement) in statements.into_iter().enumerate() {
            let run = self
                .session
                .execute_interruptible(&statement, None, cancel.requested());
            let result = match run.await {
                // The responses are sent after the last statement has run: only the last one's
                // rows can stream, the others' are made now (cancel still stops them).
                Ok(QueryResult::Streamed(rows)) if position + 1 < count => {
                    let schema = rows.schema.clone();
                    tokio::select! {
                        batches = rows.collect() => batches
                            .map(|batches| QueryResult::Rows { schema, batches }),
                        () = cancel.requested() => Err(ExecutionError::QueryCanceled.into()),
                    }
                }
                other => other,
            };
            match result {
                Ok(QueryResult::Subscription { rows, copy }) => {
                    // The simple protocol describes the rows itself, always as text.
                    let output = subscription::Output::new(copy, Format::UnifiedText, true);
                    let ended = subscription::stream(client, rows, output, &mut cancel).await?;
                    responses.push(error_response(&ended));
                }
                Ok(QueryResult::CopyIn(copy)) => responses.push(self.start_copy_in(copy)),
                Ok(QueryResult::CopyOut(copy)) => {
                    match copy::send_out(client, copy, &mut cancel).await? {
                        Ok(response) => responses.push(response),
                        Err(error) => responses.push(error_response(&error)),
                    }
                }
                Ok(result) => {
                    // Only the last statement's rows stream (see above).
                    let signal = if position + 1 == count {
                        cancel.take()
                    } else {
                        CancelSignal { receiver: None }
                    };
                    responses.push(to_response(result, &Format::UnifiedText, signal)?)
                }
                Err(error) => {
                    responses.push(error_response(&error));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = PreparedStatement;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    /// Describing a statement that returns no rows but takes parameters (`INSERT ... VALUES
    /// ($1)`) must answer ParameterDescription and NoData; pgwire's default sends an empty
    /// RowDescription instead, and PgJDBC then expects rows from the INSERT.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        const STATEMENT: u8 = b'S';
        const PORTAL: u8 = b'P';
        let name = message.name.as_deref().unwrap_or("");
        // A cursor made by DECLARE is a portal too, in Postgres: psycopg's server-side cursors
        // describe it by name before they FETCH from it.
        if message.target_type == PORTAL
            && client.portal_store().get_portal(name).is_none()
            && let Some(schema) = self.session.cursor_schema(name).await
        {
            let fields = encode::fields(&schema, &Format::UnifiedText)?;
            client
                .send(PgWireBackendMessage::RowDescription(RowDescription::new(
                    fields.iter().map(Into::into).collect(),
                )))
                .await?;
            return Ok(());
        }
        if message.target_type == STATEMENT
            && let Some(Entry::Value(statement)) = client.portal_store().get_statement(name)
            && statement.statement.result_schema.is_none()
        {
            let described = self.do_describe_statement(client, &statement).await?;
            client
                .send(PgWireBackendMessage::ParameterDescription(
                    ParameterDescription::new(
                        described.parameters.iter().map(|t| t.oid()).collect(),
                    ),
                ))
                .await?;
            client
                .send(PgWireBackendMessage::NoData(NoData::default()))
                .await?;
            return Ok(());
        }
        self._on_describe(client, message).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let parameters = parameters::decode(portal).map_err(|error| to_pgwire_error(&error))?;
        let parameters = if portal.parameter_len() == 0 {
            None
        } else {
            Some(parameters)
        };
        let statement = &portal.statement.statement.statement;
        let mut cancel = CancelSignal::start(self).await;
        let run = self
            .session
            .execute_interruptible(statement, parameters, cancel.requested());
        let result = run.await;
        // A result whose rows are made as they are sent, or that waits for the client's COPY
        // data, goes out as it comes.
        if matches!(
            result,
            Ok(QueryResult::Subscription { .. }
                | QueryResult::CopyIn(_)
                | QueryResult::CopyOut(_)
                | QueryResult::Streamed(_))
        ) {
            self.coalescing.hold(false);
        }
        match result {
            Ok(QueryResult::Subscription { rows, copy }) => {
                // Describe already sent the row description; Bind chose the formats.
                let format = portal.result_column_format.clone();
                let output = subscription::Output::new(copy, format, false);
                let ended = subscription::stream(client, rows, output, &mut cancel).await?;
                Err(to_pgwire_error(&ended))
            }
            Ok(QueryResult::CopyIn(copy)) => Ok(self.start_copy_in(copy)),
            Ok(QueryResult::CopyOut(copy)) => copy::send_out(client, copy, &mut cancel)
                .await?
                .map_err(|error| to_pgwire_error(&error)),
            // Without a row limit pgwire would collect the portal's rows before sending any:
            // they go out here as they are made, and pgwire sends the completion.
            Ok(QueryResult::Streamed(rows)) if max_rows == 0 => {
                let format = portal.result_column_format.clone();
                let sent = encode::send_rows(client, rows, &format, cancel.requested()).await?;
                Ok(Response::Execution(Tag::new("SELECT").with_rows(sent)))
            }
            Ok(result) => to_response(result, &portal.result_column_format, cancel),
            Err(error) => Err(to_pgwire_error(&error)),
        }
    }
}

/// Whether a statement's result is streamed to the client while it runs (SUBSCRIBE, alone or in
/// COPY), or it exchanges COPY data with the client.
fn streams_to_client(statement: &crate::sql::Statement) -> bool {
    matches!(
        statement,
        crate::sql::Statement::Standard(datafusion::sql::sqlparser::ast::Statement::Copy { .. })
    ) || matches!(
        statement,
        crate::sql::Statement::Streaming(crate::sql::StreamingStatement::Subscribe {
            output: crate::sql::streaming::SubscribeOutput::Rows
                | crate::sql::streaming::SubscribeOutput::Copy,
            ..
        })
    )
}

#[cfg(test)]
mod tests {
    use super::startup_options;

    #[test]
    fn startup_options_are_settings() {
        assert_eq!(
            startup_options("-c statement_timeout=5s --application-name=a\\ b -cDateStyle=ISO"),
            vec![
                ("statement_timeout".to_string(), "5s".to_string()),
                ("application_name".to_string(), "a b".to_string()),
                ("datestyle".to_string(), "ISO".to_string()),
            ]
        );
    }
}
