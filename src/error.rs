//! Typed errors per stage (parse, plan, catalog, execution, dataflow), joined into [`Error`],
//! each mapped to the SQLSTATE Postgres would send.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;

/// Errors while turning text into statements.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("{0}")]
    Syntax(String),
    /// A TUMBLE or HOP whose size or slide cannot make windows.
    #[error("{0}")]
    InvalidWindow(String),
    /// A WATERMARK FOR clause whose delay is not a constant interval behind its column.
    #[error("{0}")]
    InvalidWatermark(String),
    /// Nested deeper than `sql::depth` allows (or than the parser's recursion limit).
    #[error("{0}")]
    TooComplex(String),
}

/// Errors while planning a statement against the catalog.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    #[error("column \"{0}\" does not exist")]
    UndefinedColumn(String),
    #[error("column reference \"{0}\" is ambiguous")]
    AmbiguousColumn(String),
    #[error("column \"{0}\" specified more than once")]
    DuplicateColumn(String),
    #[error("column \"{0}\" named in key does not exist")]
    UndefinedKeyColumn(String),
    #[error("column \"{column}\" appears twice in {constraint} constraint")]
    DuplicateKeyColumn {
        column: String,
        constraint: &'static str,
    },
    /// A table definition Postgres refuses (two primary keys).
    #[error("{0}")]
    InvalidTableDefinition(String),
    /// DataFusion's own wording of a duplicate output name.
    #[error("{0}")]
    DuplicateAlias(String),
    #[error("{0}")]
    UndefinedFunction(String),
    #[error("{0}")]
    DatatypeMismatch(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("type \"{0}\" does not exist")]
    UndefinedType(String),
    #[error("unrecognized configuration parameter \"{0}\"")]
    UndefinedParameter(String),
    #[error("prepared statement \"{0}\" does not exist")]
    UndefinedPreparedStatement(String),
    #[error("{0}")]
    Syntax(String),
    /// A valid query that Tributary cannot do (yet); the message names the part.
    #[error("{0}")]
    Unsupported(String),
}

/// Errors from catalog changes (CREATE, DROP).
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("relation \"{0}\" already exists")]
    DuplicateObject(String),
    #[error("{kind} \"{name}\" does not exist")]
    UndefinedObject { kind: &'static str, name: String },
    /// The name of a pg_catalog relation, which a user's relation would shadow.
    #[error("relation name \"{0}\" is reserved: pg_catalog.{0} is a system relation")]
    ReservedName(String),
    /// `SECRET '<id>'` names no stored secret.
    #[error("secret \"{0}\" does not exist")]
    UndefinedSecret(String),
    #[error("cannot drop {kind} {name} because other objects depend on it ({dependents})")]
    DependentObjects {
        kind: &'static str,
        name: String,
        dependents: String,
    },
    #[error("\"{name}\" is not a {expected}")]
    WrongObjectType {
        name: String,
        expected: &'static str,
    },
    /// Another statement changed the relations this one read before it could apply its change.
    #[error("{0} changed while the statement ran; run it again")]
    ChangedMeanwhile(String),
}

/// Errors while evaluating data: in a query, a DML statement or a view's dataflow.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecutionError {
    #[error("division by zero")]
    DivisionByZero,
    /// The queries running together would need more than `--max-query-memory`.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    #[error("{0}")]
    NumericOutOfRange(String),
    #[error("{0}")]
    InvalidTextRepresentation(String),
    #[error("{0}")]
    InvalidDatetimeFormat(String),
    #[error("{0}")]
    DatetimeFieldOverflow(String),
    #[error("{0}")]
    NullValueNotAllowed(String),
    /// COPY data that does not follow its format (a missing column, an open quote).
    #[error("{0}")]
    BadCopyFileFormat(String),
    #[error("{0}")]
    InvalidBinaryRepresentation(String),
    #[error("{0}")]
    CharacterNotInRepertoire(String),
    /// A value of COPY data that its column's type does not accept, with where it was.
    #[error("{source} (COPY {context})")]
    CopyValue {
        context: String,
        source: Box<ExecutionError>,
    },
    /// The client ended COPY FROM STDIN with CopyFail.
    #[error("COPY from stdin failed: {0}")]
    CopyFailed(String),
    #[error(
        "null value in column \"{column}\" of relation \"{relation}\" violates not-null constraint"
    )]
    NotNullViolation { column: String, relation: String },
    /// `nextval` of a sequence that does not exist (a sequence is a relation in Postgres).
    #[error("relation \"{0}\" does not exist")]
    UndefinedSequence(String),
    /// A write that would give two rows one key; `detail` names the key (Postgres's DETAIL).
    #[error("duplicate key value violates unique constraint \"{constraint}\"")]
    UniqueViolation { constraint: String, detail: String },
    #[error("value too long for type character varying({0})")]
    StringTooLong(usize),
    #[error("materialized view \"{view}\" failed and must be recreated: {reason}")]
    ViewFailed {
        view: String,
        reason: Box<ExecutionError>,
    },
    #[error("{0}")]
    InvalidParameterValue(String),
    /// Text that is not a jsonb value.
    #[error(transparent)]
    Jsonb(#[from] crate::sql::jsonb::JsonbError),
    #[error("unrecognized configuration parameter \"{0}\"")]
    UndefinedParameter(String),
    #[error("canceling statement due to user request")]
    QueryCanceled,
    #[error(
        "the subscription to \"{relation}\" ended: the client fell more than {epochs} epochs behind its changes"
    )]
    SubscriptionLagged { relation: String, epochs: usize },
    #[error("the subscription to \"{0}\" ended: the relation was dropped")]
    SubscribedRelationDropped(String),
    #[error("cursor \"{0}\" does not exist")]
    UndefinedCursor(String),
    #[error("cursor \"{0}\" already exists")]
    DuplicateCursor(String),
    #[error("{0} can only be used in transaction blocks")]
    NoActiveTransaction(&'static str),
    #[error("canceling statement due to statement timeout")]
    StatementTimeout,
    #[error("the server is shutting down")]
    Shutdown,
    #[error("more than one row returned by a subquery used as an expression")]
    SubqueryReturnedRows,
    #[error("there is no parameter {0}")]
    NoSuchParameter(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Errors from Kafka connectors: reaching the broker, finding the topic, their options.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectorError {
    #[error("cannot reach Kafka broker {broker}: {reason}")]
    BrokerUnreachable { broker: String, reason: String },
    #[error("Kafka broker {broker} refused the credentials: {reason}")]
    Authentication { broker: String, reason: String },
    #[error("Kafka topic \"{0}\" does not exist")]
    UndefinedTopic(String),
    #[error("{0}")]
    InvalidOption(String),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("FLUSH gave up after {seconds} s: {waiting}")]
    FlushTimeout { seconds: u64, waiting: String },
}

/// Errors from the data directory: the write-ahead log, checkpoints and recovery.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// A file could not be written, synced or read (disk full, permissions, ...).
    #[error("could not {action} {path}: {reason}")]
    Io {
        action: &'static str,
        path: String,
        reason: String,
    },
    /// What is on disk fails its checksum or cannot be decoded.
    #[error("{path} is corrupted: {reason}")]
    Corrupted { path: String, reason: String },
    /// The data directory was written by a build with another on-disk format.
    #[error(
        "data directory {path} was written in format {found}; this build reads format {expected} only"
    )]
    IncompatibleFormat {
        path: String,
        found: String,
        expected: u32,
    },
    /// A write was applied in memory but could not be made durable, so it was undone.
    #[error("the write could not be made durable: {0}")]
    NotDurable(String),
}

/// Errors raised inside an incremental operator.
#[derive(Debug, thiserror::Error)]
pub enum DataflowError {
    #[error(transparent)]
    Evaluation(#[from] ExecutionError),
}

/// Every error a statement can end with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Execution(#[from] ExecutionError),
    #[error(transparent)]
    Dataflow(#[from] DataflowError),
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The SQLSTATE a Postgres server would send for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::Parse(error) => match error {
                ParseError::Syntax(_) => "42601",
                ParseError::InvalidWindow(_) => "22023",
                ParseError::InvalidWatermark(_) => "22023",
                ParseError::TooComplex(_) => "54001",
            },
            Error::Plan(error) => match error {
                PlanError::UndefinedTable(_) => "42P01",
                PlanError::UndefinedColumn(_) => "42703",
                PlanError::AmbiguousColumn(_) => "42702",
                PlanError::DuplicateColumn(_)
                | PlanError::DuplicateAlias(_)
                | PlanError::DuplicateKeyColumn { .. } => "42701",
                PlanError::UndefinedKeyColumn(_) => "42703",
                PlanError::InvalidTableDefinition(_) => "42P16",
                PlanError::UndefinedFunction(_) => "42883",
                PlanError::DatatypeMismatch(_) => "42804",
                PlanError::InvalidParameter(_) => "42P02",
                PlanError::UndefinedParameter(_) | PlanError::UndefinedType(_) => "42704",
                PlanError::UndefinedPreparedStatement(_) => "26000",
                PlanError::Syntax(_) => "42601",
                PlanError::Unsupported(_) => "0A000",
            },
            Error::Catalog(error) => match error {
                CatalogError::DuplicateObject(_) => "42P07",
                CatalogError::UndefinedObject { .. } => "42P01",
                CatalogError::UndefinedSecret(_) => "42704",
                CatalogError::ReservedName(_) => "42939",
                CatalogError::DependentObjects { .. } => "2BP01",
                CatalogError::WrongObjectType { .. } => "42809",
                CatalogError::ChangedMeanwhile(_) => "40001",
            },
            Error::Execution(error) => error.sqlstate(),
            Error::Dataflow(error) => match error {
                DataflowError::Evaluation(error) => error.sqlstate(),
            },
            Error::Connector(error) => match error {
                // An external system failed: Postgres's class 58.
                ConnectorError::BrokerUnreachable { .. } | ConnectorError::Kafka(_) => "58000",
                ConnectorError::Authentication { .. } => "28000",
                ConnectorError::UndefinedTopic(_) => "42704",
                ConnectorError::InvalidOption(_) => "22023",
                ConnectorError::FlushTimeout { .. } => "57014",
            },
            Error::Storage(error) => match error {
                StorageError::Io { .. } | StorageError::NotDurable(_) => "58030",
                StorageError::Corrupted { .. } => "XX001",
                StorageError::IncompatibleFormat { .. } => "58000",
            },
        }
    }
}

impl ExecutionError {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ExecutionError::DivisionByZero => "22012",
            ExecutionError::OutOfMemory(_) => "53200",
            ExecutionError::NumericOutOfRange(_) => "22003",
            ExecutionError::InvalidTextRepresentation(_) => "22P02",
            ExecutionError::InvalidDatetimeFormat(_) => "22007",
            ExecutionError::DatetimeFieldOverflow(_) => "22008",
            ExecutionError::NullValueNotAllowed(_) => "22004",
            ExecutionError::BadCopyFileFormat(_) => "22P04",
            ExecutionError::InvalidBinaryRepresentation(_) => "22P03",
            ExecutionError::CharacterNotInRepertoire(_) => "22021",
            ExecutionError::CopyValue { source, .. } => source.sqlstate(),
            ExecutionError::CopyFailed(_) => "57014",
            ExecutionError::NotNullViolation { .. } => "23502",
            ExecutionError::UniqueViolation { .. } => "23505",
            ExecutionError::UndefinedSequence(_) => "42P01",
            ExecutionError::StringTooLong(_) => "22001",
            ExecutionError::ViewFailed { reason, .. } => reason.sqlstate(),
            ExecutionError::InvalidParameterValue(_) => "22023",
            ExecutionError::Jsonb(error) => match error {
                crate::sql::jsonb::JsonbError::Syntax(_) => "22P02",
                crate::sql::jsonb::JsonbError::NullCharacter => "22P05",
                crate::sql::jsonb::JsonbError::NumberOutOfRange => "22003",
                crate::sql::jsonb::JsonbError::TooDeep => "54001",
            },
            ExecutionError::UndefinedParameter(_) => "42704",
            ExecutionError::QueryCanceled => "57014",
            ExecutionError::SubscriptionLagged { .. } => "53400",
            ExecutionError::SubscribedRelationDropped(_) => "42P01",
            ExecutionError::UndefinedCursor(_) => "34000",
            ExecutionError::DuplicateCursor(_) => "42P03",
            ExecutionError::NoActiveTransaction(_) => "25P01",
            ExecutionError::StatementTimeout => "57014",
            ExecutionError::Shutdown => "57P01",
            ExecutionError::SubqueryReturnedRows => "21000",
            ExecutionError::NoSuchParameter(_) => "42P02",
            ExecutionError::Internal(_) => "XX000",
        }
    }
}

impl From<DataFusionError> for Error {
    fn from(error: DataFusionError) -> Self {
        classify_datafusion(&error)
    }
}

impl From<ArrowError> for Error {
    fn from(error: ArrowError) -> Self {
        Error::Execution(classify_arrow(&error))
    }
}

impl From<ArrowError> for ExecutionError {
    fn from(error: ArrowError) -> Self {
        classify_arrow(&error)
    }
}

impl From<ArrowError> for DataflowError {
    fn from(error: ArrowError) -> Self {
        DataflowError::Evaluation(classify_arrow(&error))
    }
}

impl From<DataFusionError> for DataflowError {
    fn from(error: DataFusionError) -> Self {
        match classify_datafusion(&error) {
            Error::Execution(error) => DataflowError::Evaluation(error),
            Error::Dataflow(error) => error,
            other => DataflowError::Evaluation(ExecutionError::Internal(other.to_string())),
        }
    }
}

/// DataFusion reports most errors as strings; this is the one place that reads them and decides
/// what Postgres would have said.
fn classify_datafusion(error: &DataFusionError) -> Error {
    match error {
        DataFusionError::ArrowError(arrow, _) => Error::Execution(classify_arrow(arrow)),
        DataFusionError::SQL(parser, _) => crate::sql::parser_error(parser).into(),
        DataFusionError::NotImplemented(message) => PlanError::Unsupported(message.clone()).into(),
        DataFusionError::Plan(message) => classify_plan_message(message),
        DataFusionError::SchemaError(schema_error, _) => match schema_error.as_ref() {
            SchemaError::FieldNotFound { field, .. } => {
                PlanError::UndefinedColumn(field.name().to_string()).into()
            }
            SchemaError::AmbiguousReference { field } => {
                PlanError::AmbiguousColumn(field.name().to_string()).into()
            }
            SchemaError::DuplicateQualifiedField { name, .. }
            | SchemaError::DuplicateUnqualifiedField { name } => {
                PlanError::DuplicateColumn(name.clone()).into()
            }
        },
        DataFusionError::Execution(message) => match misreported_plan_error(message) {
            Some(error) => error,
            None => Error::Execution(classify_execution_message(message)),
        },
        DataFusionError::Configuration(message) => {
            ExecutionError::InvalidParameterValue(message.clone()).into()
        }
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            classify_datafusion(inner)
        }
        DataFusionError::Shared(inner) => classify_datafusion(inner),
        DataFusionError::Collection(errors) => match errors.first() {
            Some(first) => classify_datafusion(first),
            None => ExecutionError::Internal("empty error collection".into()).into(),
        },
        DataFusionError::External(inner) => match inner.downcast_ref::<ArrowError>() {
            Some(arrow) => Error::Execution(classify_arrow(arrow)),
            None if inner.is::<ExecutionError>() => match inner.downcast_ref::<ExecutionError>() {
                Some(execution) => Error::Execution(execution.clone()),
                None => ExecutionError::Internal(inner.to_string()).into(),
            },
            // A scan's own errors: reading a source back from Kafka, a failed view.
            None if inner.is::<Error>() => match inner.downcast_ref::<Error>() {
                Some(Error::Execution(execution)) => Error::Execution(execution.clone()),
                Some(Error::Connector(connector)) => Error::Connector(connector.clone()),
                Some(other) => ExecutionError::Internal(other.to_string()).into(),
                None => ExecutionError::Internal(inner.to_string()).into(),
            },
            None => match inner.downcast_ref::<DataFusionError>() {
                Some(datafusion) => classify_datafusion(datafusion),
                None => ExecutionError::Internal(inner.to_string()).into(),
            },
        },
        DataFusionError::IoError(io) => ExecutionError::Internal(io.to_string()).into(),
        // Parquet is compiled in (datafusion-pg-catalog asks for DataFusion's default features)
        // but Tributary reads no Parquet files.
        DataFusionError::ParquetError(parquet) => {
            ExecutionError::Internal(parquet.to_string()).into()
        }
        DataFusionError::ObjectStore(store) => ExecutionError::Internal(store.to_string()).into(),
        DataFusionError::ExecutionJoin(join) => ExecutionError::Internal(join.to_string()).into(),
        DataFusionError::ResourcesExhausted(message) => ExecutionError::OutOfMemory(format!(
            "{message} (the server's --max-query-memory bounds what running queries hold)"
        ))
        .into(),
        DataFusionError::Internal(message) => misreported_plan_error(message)
            .unwrap_or_else(|| classify_execution_message(message).into()),
        DataFusionError::Substrait(message) | DataFusionError::Ffi(message) => {
            ExecutionError::Internal(message.clone()).into()
        }
    }
}

fn classify_plan_message(message: &str) -> Error {
    let lower = message.to_lowercase();
    if lower.contains("step cannot be zero") {
        // generate_series(start, stop, 0) in FROM.
        return ExecutionError::InvalidParameterValue("step size cannot equal zero".into()).into();
    }
    if let Some(name) = quoted_table_not_found(message) {
        return PlanError::UndefinedTable(name).into();
    }
    if lower.contains("invalid function")
        || lower.contains("no function matches")
        || lower.contains("failed to coerce arguments")
        || lower.contains("function '") && lower.contains("does not exist")
    {
        return PlanError::UndefinedFunction(message.to_string()).into();
    }
    if lower.contains("cannot infer common")
        || lower.contains("cannot be cast")
        || lower.contains("cannot coerce")
        || lower.contains("there isn't a common type")
        || lower.contains("cannot automatically convert")
        || lower.contains("unsupported cast")
        || lower.contains("is not a boolean")
        || lower.contains("unsupported arithmetic")
        || lower.contains("cannot get result type")
    {
        return PlanError::DatatypeMismatch(message.to_string()).into();
    }
    if lower.contains("projections require unique expression names") {
        return PlanError::DuplicateAlias(message.to_string()).into();
    }
    if lower.contains("not supported") || lower.contains("unsupported") {
        return PlanError::Unsupported(message.to_string()).into();
    }
    PlanError::Syntax(message.to_string()).into()
}

/// DataFusion says `table 'datafusion.public.t' not found`; Postgres says `relation "t" does not
/// exist`.
fn quoted_table_not_found(message: &str) -> Option<String> {
    let rest = message.strip_prefix("table '")?;
    let end = rest.find("' not found")?;
    let qualified = &rest[..end];
    Some(
        qualified
            .rsplit('.')
            .next()
            .unwrap_or(qualified)
            .to_string(),
    )
}

/// Errors in the statement that DataFusion reports from execution or as internal (found by
/// `tests/fuzz.rs`): no function or operator takes these arguments (`1 LIKE 2`), a VALUES row
/// of types that cannot be cast to its column's.
fn misreported_plan_error(message: &str) -> Option<Error> {
    if message.contains("failed to match any signature")
        || message.contains("user-defined coercion failed")
        || message.starts_with("[return_type]") && message.contains("not supported for")
        || message.contains("Invalid string/binary operation")
    {
        Some(PlanError::UndefinedFunction(message.to_string()).into())
    } else if message.contains("Types don't match and no valid cast exists") {
        Some(PlanError::DatatypeMismatch(message.to_string()).into())
    } else if message.contains("ScalarSubqueryExpr evaluated before the subquery was executed") {
        // DataFusion plans no scalar subquery inside VALUES (`sql::values` rewrites the lists
        // it can see).
        Some(
            PlanError::Unsupported(
                "a subquery inside VALUES is not supported; INSERT ... SELECT takes one".into(),
            )
            .into(),
        )
    } else {
        None
    }
}

fn classify_execution_message(message: &str) -> ExecutionError {
    let lower = message.to_lowercase();
    if lower.contains("divide by zero") || lower.contains("division by zero") {
        ExecutionError::DivisionByZero
    } else if lower.starts_with("date/time field value out of range")
        || lower.contains("is invalid for the 12-hour clock")
    {
        // to_timestamp and to_date (`planner::postgres_formats`), in Postgres's words.
        ExecutionError::DatetimeFieldOverflow(message.to_string())
    } else if lower.starts_with("invalid value \"") && lower.contains("\" for \"") {
        ExecutionError::InvalidDatetimeFormat(message.to_string())
    } else if lower.starts_with("invalid input syntax for type") {
        ExecutionError::InvalidTextRepresentation(message.to_string())
    } else if lower.contains("overflow")
        || lower.contains("out of range")
        || lower.contains("too large to store in a decimal")
        || lower.contains("too small to store in a decimal")
    {
        ExecutionError::NumericOutOfRange(message.to_string())
    } else if lower.contains("step can't be 0") {
        // generate_series(start, stop, 0).
        ExecutionError::InvalidParameterValue("step size cannot equal zero".into())
    } else if lower.contains("scalar subquery returned more than one row") {
        ExecutionError::SubqueryReturnedRows
    } else if let Some(placeholder) = unprovided_placeholder(message) {
        ExecutionError::NoSuchParameter(placeholder.to_string())
    } else {
        ExecutionError::Internal(message.to_string())
    }
}

/// DataFusion says `Placeholder '$1' was not provided a value for execution.` when a statement
/// without bound parameters (a simple query) uses one.
fn unprovided_placeholder(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("Placeholder '")?;
    let (placeholder, rest) = rest.split_once('\'')?;
    rest.contains("was not provided a value")
        .then_some(placeholder)
}

/// Arrow's errors name the failed kernel; map them onto Postgres's data exceptions.
/// Arrow's "Cannot cast string 'x' to value of Int32 type" as Postgres says it: `invalid input
/// syntax for type integer: "x"`.
fn postgres_input_syntax(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("Cannot cast string '")
        .or_else(|| message.strip_prefix("Cannot cast value '"))?;
    let (value, arrow_type) = rest.rsplit_once("' to value of ")?;
    let arrow_type = arrow_type.strip_suffix(" type")?;
    let postgres_type = match arrow_type {
        "Int16" => "smallint",
        "Int32" => "integer",
        "Int64" => "bigint",
        "Float32" => "real",
        "Float64" => "double precision",
        "Boolean" => "boolean",
        decimal if decimal.starts_with("Decimal") => "numeric",
        _ => return None,
    };
    Some(format!(
        "invalid input syntax for type {postgres_type}: \"{value}\""
    ))
}

pub fn classify_arrow(error: &ArrowError) -> ExecutionError {
    match error {
        ArrowError::DivideByZero => ExecutionError::DivisionByZero,
        ArrowError::ArithmeticOverflow(message) => {
            ExecutionError::NumericOutOfRange(message.clone())
        }
        ArrowError::CastError(message) | ArrowError::ParseError(message) => {
            let lower = message.to_lowercase();
            if lower.contains("overflow")
                || lower.contains("out of range")
                || lower.contains("can't cast value")
                || lower.contains("too large")
                || lower.contains("precision")
            {
                ExecutionError::NumericOutOfRange(message.clone())
            } else if lower.contains("timestamp")
                || lower.contains("date")
                || lower.contains("time")
            {
                ExecutionError::InvalidDatetimeFormat(message.clone())
            } else {
                ExecutionError::InvalidTextRepresentation(
                    postgres_input_syntax(message).unwrap_or_else(|| message.clone()),
                )
            }
        }
        ArrowError::ComputeError(message) | ArrowError::InvalidArgumentError(message) => {
            classify_execution_message(message)
        }
        ArrowError::ExternalError(inner) if inner.is::<ExecutionError>() => {
            match inner.downcast_ref::<ExecutionError>() {
                Some(execution) => execution.clone(),
                None => ExecutionError::Internal(inner.to_string()),
            }
        }
        ArrowError::ExternalError(inner) => match inner.downcast_ref::<DataFusionError>() {
            Some(datafusion) => match classify_datafusion(datafusion) {
                Error::Execution(error) => error,
                other => ExecutionError::Internal(other.to_string()),
            },
            None => ExecutionError::Internal(inner.to_string()),
        },
        ArrowError::NotYetImplemented(message)
        | ArrowError::MemoryError(message)
        | ArrowError::SchemaError(message)
        | ArrowError::CsvError(message)
        | ArrowError::JsonError(message)
        | ArrowError::AvroError(message)
        | ArrowError::IpcError(message)
        | ArrowError::CDataInterface(message)
        | ArrowError::ParquetError(message) => ExecutionError::Internal(message.clone()),
        ArrowError::IoError(message, _) => ExecutionError::Internal(message.clone()),
        ArrowError::DictionaryKeyOverflowError
        | ArrowError::RunEndIndexOverflowError
        | ArrowError::OffsetOverflowError(_) => {
            ExecutionError::NumericOutOfRange(error.to_string())
        }
    }
}

/// The text of a caught panic, for the error or state that reports it.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".to_string())
}

/// Locks a mutex whose data stays valid even if a holder panicked (settings, counters, text).
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DataFusion's internal and execution errors that are the statement's fault (found by
    /// `tests/fuzz.rs`) get the SQLSTATE of their kind; the rest stay internal.
    #[test]
    fn misreported_datafusion_errors_get_their_kind() {
        let cases = [
            (
                DataFusionError::Internal("Invalid string/binary operation: Int32 LIKE Int32".into()),
                "42883",
            ),
            (
                DataFusionError::Internal(
                    "Function 'md5' failed to match any signature, errors: ...".into(),
                ),
                "42883",
            ),
            (
                DataFusionError::Execution(
                    "Types don't match and no valid cast exists, received data of type Binary for field of type Int32".into(),
                ),
                "42804",
            ),
            (
                DataFusionError::Execution("Scalar subquery returned more than one row".into()),
                "21000",
            ),
            (
                DataFusionError::Execution(
                    "Placeholder '$1' was not provided a value for execution.".into(),
                ),
                "42P02",
            ),
            (
                DataFusionError::Internal(
                    "step can't be 0 for function generate_series(start [, stop, step])".into(),
                ),
                "22023",
            ),
            (DataFusionError::Plan("Step cannot be zero".into()), "22023"),
            (
                DataFusionError::Execution(
                    "2147483647.00 is too large to store in a Decimal128 of precision 5. Max is 999.99".into(),
                ),
                "22003",
            ),
            (DataFusionError::Internal("an invariant broke".into()), "XX000"),
        ];
        for (error, sqlstate) in cases {
            assert_eq!(Error::from(error).sqlstate(), sqlstate);
        }
        assert_eq!(
            unprovided_placeholder("Placeholder '$12' was not provided a value for execution."),
            Some("$12")
        );
    }
}
