//! Tributary's own statements (CREATE SOURCE / SINK / CONNECTION, their DROP and SHOW, FLUSH),
//! parsed with sqlparser's parser so they mix freely with standard statements in one string.

use std::fmt;

use datafusion::sql::sqlparser::ast::{ColumnDef, CreateTable, CreateView};
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Span, Token};

use super::event_time::WatermarkClause;
use super::identifier;
use crate::storage::secrets::{SecretValue, is_secret_property};

/// A statement sqlparser does not know.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamingStatement {
    CreateConnection(CreateConnection),
    CreateSource(CreateSource),
    CreateSink(CreateSink),
    Drop {
        kind: ConnectorKind,
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    Show(ConnectorKind),
    /// Waits until every source has ingested what its topics held when FLUSH began.
    Flush,
    /// CREATE TABLE with a WATERMARK among its columns.
    CreateTable {
        /// The statement as written: what the catalog keeps and recovery plans again.
        sql: String,
        create: Box<CreateTable>,
        watermark: WatermarkClause,
    },
    /// CREATE MATERIALIZED VIEW ... EMIT ON WINDOW CLOSE.
    CreateWindowCloseView {
        /// The statement as written: what the catalog keeps and recovery plans again.
        sql: String,
        /// With its TUMBLE and HOP windows expanded.
        create: Box<CreateView>,
        /// The sizes of those windows, in nanoseconds.
        window_sizes: Vec<i128>,
    },
    /// `SUBSCRIBE [TO] relation [WITH (SNAPSHOT = false)]`, streamed as rows, as
    /// `COPY (SUBSCRIBE ...) TO STDOUT`, or behind a cursor.
    Subscribe {
        subscribe: Subscribe,
        output: SubscribeOutput,
    },
    /// `DECLARE name CURSOR FOR query`: the query's rows, fetched a few at a time.
    DeclareQuery {
        cursor: String,
        query: Box<datafusion::sql::sqlparser::ast::Query>,
    },
    /// `FETCH [count | ALL] [FROM | IN] cursor [WITH (TIMEOUT = 'interval')]`.
    Fetch(Fetch),
    /// `CLOSE cursor` or `CLOSE ALL` (`None`).
    Close(Option<String>),
    /// `EXPLAIN MATERIALIZED VIEW name`: the dataflow that maintains an existing view.
    ExplainView(String),
    /// `REFRESH MATERIALIZED VIEW name`: accepted for tools that send it; every view is always
    /// up to date.
    RefreshView(String),
    /// `ALTER VIEW` / `ALTER MATERIALIZED VIEW ... RENAME TO`, which sqlparser does not parse
    /// (ALTER TABLE's RENAME comes from sqlparser and becomes the same statement).
    Rename(Rename),
}

/// `ALTER TABLE | VIEW | MATERIALIZED VIEW [IF EXISTS] name RENAME TO new_name`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rename {
    pub target: RenameTarget,
    pub if_exists: bool,
    pub name: String,
    pub new_name: String,
}

/// The kind of relation an ALTER statement names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameTarget {
    /// ALTER TABLE, which Postgres lets rename views and materialized views too.
    Table,
    View,
    MaterializedView,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    pub relation: String,
    /// Whether the relation's current rows come first (the default), or only later changes.
    pub snapshot: bool,
}

/// Where a subscription's rows go.
#[derive(Debug, Clone, PartialEq)]
pub enum SubscribeOutput {
    /// Data rows of one never-ending result.
    Rows,
    /// COPY data in text format.
    Copy,
    /// A cursor of this name, read with FETCH.
    Cursor(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fetch {
    pub cursor: String,
    /// How many rows at most; `None` for ALL.
    pub count: Option<u64>,
    /// How long a FETCH from a subscription waits for its first row; `None` waits until one
    /// comes.
    pub timeout: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorKind {
    Source,
    Sink,
    Connection,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateConnection {
    /// The statement as written: what the catalog keeps and recovery plans again.
    pub sql: String,
    pub name: String,
    pub if_not_exists: bool,
    pub kafka: KafkaOptions,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateSource {
    /// The statement as written: what the catalog keeps and recovery plans again.
    pub sql: String,
    pub name: String,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub kafka: KafkaOptions,
    pub format: Format,
    pub envelope: Envelope,
    pub include: Vec<Include>,
    /// `ERRORS TO KAFKA TOPIC 'name'`: malformed messages are also forwarded there.
    pub errors_topic: Option<String>,
    /// `WATERMARK FOR column AS ...` among the columns.
    pub watermark: Option<WatermarkClause>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateSink {
    /// The statement as written: what the catalog keeps and recovery plans again.
    pub sql: String,
    pub name: String,
    pub if_not_exists: bool,
    pub from: String,
    pub kafka: KafkaOptions,
    pub key: Vec<String>,
    pub format: Format,
    pub envelope: Envelope,
}

/// The `(...)` after `KAFKA` or `TO KAFKA`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KafkaOptions {
    pub broker: Option<String>,
    pub connection: Option<String>,
    pub topic: Option<String>,
    pub start: Option<StartOffset>,
    /// librdkafka settings passed through (security, SASL, ...), but for secrets.
    pub properties: Vec<(String, String)>,
    /// The properties whose values are secrets (`crate::storage::secrets`).
    pub secrets: Vec<SecretProperty>,
}

/// A secret Kafka property: given inline (a password among the PROPERTIES) or as
/// `SECRET '<id>'`, the form every statement is stored in.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretProperty {
    pub key: String,
    /// What the secret is stored under.
    pub id: String,
    /// A value given inline: the statement stores it under `id` before it is logged.
    pub value: Option<SecretValue>,
    /// Where the inline value was written, so the stored text can leave it out.
    pub span: Option<Span>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StartOffset {
    Earliest,
    Latest,
    /// Milliseconds since the epoch: each partition starts at the first message at or after it.
    Timestamp(String),
    /// One offset per partition, in partition order.
    Offsets(Vec<i64>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    Json,
    Csv { header: bool, delimiter: u8 },
    Text,
    Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    None,
    Upsert,
    Debezium,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeKind {
    Key,
    Partition,
    Offset,
    Timestamp,
    Headers,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub kind: IncludeKind,
    pub alias: Option<String>,
}

impl Include {
    /// The column's name: its alias, or Materialize's default.
    pub fn column_name(&self) -> String {
        if let Some(alias) = &self.alias {
            return alias.clone();
        }
        match self.kind {
            IncludeKind::Key => "key",
            IncludeKind::Partition => "partition",
            IncludeKind::Offset => "offset",
            IncludeKind::Timestamp => "timestamp",
            IncludeKind::Headers => "headers",
        }
        .to_string()
    }
}

impl fmt::Display for StreamingStatement {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Used in logs and as part of cache keys; the debug form names every part.
        write!(formatter, "{self:?}")
    }
}

impl StreamingStatement {
    /// Keeps the statement's own text in the CREATE statements that need it later.
    /// Where each secret given inline was written, and the id it is stored under.
    pub(super) fn inline_secrets(&self) -> impl Iterator<Item = (Span, &str)> {
        let options = match self {
            StreamingStatement::CreateConnection(create) => Some(&create.kafka),
            StreamingStatement::CreateSource(create) => Some(&create.kafka),
            StreamingStatement::CreateSink(create) => Some(&create.kafka),
            StreamingStatement::CreateTable { .. }
            | StreamingStatement::CreateWindowCloseView { .. }
            | StreamingStatement::Drop { .. }
            | StreamingStatement::Show(_)
            | StreamingStatement::Flush
            | StreamingStatement::Subscribe { .. }
            | StreamingStatement::DeclareQuery { .. }
            | StreamingStatement::Fetch(_)
            | StreamingStatement::Close(_)
            | StreamingStatement::ExplainView(_)
            | StreamingStatement::RefreshView(_)
            | StreamingStatement::Rename(_) => None,
        };
        options
            .into_iter()
            .flat_map(|options| &options.secrets)
            .filter_map(|secret| Some((secret.span?, secret.id.as_str())))
    }

    pub(super) fn set_sql(&mut self, text: &str) {
        match self {
            StreamingStatement::CreateConnection(create) => create.sql = text.to_string(),
            StreamingStatement::CreateSource(create) => create.sql = text.to_string(),
            StreamingStatement::CreateSink(create) => create.sql = text.to_string(),
            StreamingStatement::CreateTable { sql, .. }
            | StreamingStatement::CreateWindowCloseView { sql, .. } => *sql = text.to_string(),
            StreamingStatement::Drop { .. }
            | StreamingStatement::Show(_)
            | StreamingStatement::Flush
            | StreamingStatement::Subscribe { .. }
            | StreamingStatement::DeclareQuery { .. }
            | StreamingStatement::Fetch(_)
            | StreamingStatement::Close(_)
            | StreamingStatement::ExplainView(_)
            | StreamingStatement::RefreshView(_)
            | StreamingStatement::Rename(_) => {}
        }
    }
}

/// A `CREATE SINK ... FROM relation ...` statement as written, reading `new_relation` instead:
/// the name after its first FROM is replaced, every other token kept as it was (secrets
/// included). `None` when the text is not such a statement.
pub fn sink_reading(sql: &str, new_relation: &str) -> Option<String> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Tokenizer, Word};
    // sqlparser prints a quoted word without escaping quotes inside it.
    if new_relation.contains('"') {
        return None;
    }
    let mut tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let is_word = |token: &Token, expected: &str| matches!(token, Token::Word(word) if word.quote_style.is_none() && word.value.eq_ignore_ascii_case(expected));
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&index| !matches!(tokens[index], Token::Whitespace(_)))
        .collect();
    if !(is_word(&tokens[*significant.first()?], "CREATE")
        && is_word(&tokens[*significant.get(1)?], "SINK"))
    {
        return None;
    }
    let from = significant
        .iter()
        .position(|&index| is_word(&tokens[index], "FROM"))?;
    // The relation's name: words joined by periods (`public.totals`), with nothing between.
    let first = *significant.get(from + 1)?;
    if !matches!(tokens[first], Token::Word(_)) {
        return None;
    }
    let mut last = first;
    while matches!(tokens.get(last + 1), Some(Token::Period))
        && matches!(tokens.get(last + 2), Some(Token::Word(_)))
    {
        last += 2;
    }
    tokens.splice(
        first..=last,
        [Token::Word(Word {
            value: new_relation.to_string(),
            quote_style: Some('"'),
            keyword: datafusion::sql::sqlparser::keywords::Keyword::NoKeyword,
        })],
    );
    Some(tokens.iter().map(ToString::to_string).collect())
}

/// Whether the parser stands at the start of one of Tributary's statements.
pub(super) fn starts_streaming_statement(parser: &Parser) -> bool {
    let word = |n: usize| match parser.peek_nth_token(n).token {
        Token::Word(word) if word.quote_style.is_none() => word.value.to_uppercase(),
        _ => String::new(),
    };
    match word(0).as_str() {
        "FLUSH" | "SUBSCRIBE" | "FETCH" | "CLOSE" | "DECLARE" => true,
        "COPY" => {
            parser.peek_nth_token(1).token == Token::LParen && word(2).as_str() == "SUBSCRIBE"
        }
        "EXPLAIN" | "REFRESH" => word(1) == "MATERIALIZED" && word(2) == "VIEW",
        "ALTER" => word(1) == "VIEW" || (word(1) == "MATERIALIZED" && word(2) == "VIEW"),
        "CREATE" => matches!(word(1).as_str(), "SOURCE" | "SINK" | "CONNECTION"),
        "DROP" => matches!(word(1).as_str(), "SOURCE" | "SINK" | "CONNECTION"),
        "SHOW" => matches!(word(1).as_str(), "SOURCES" | "SINKS" | "CONNECTIONS"),
        _ => false,
    }
}

/// Parses one of Tributary's statements; the caller checked [`starts_streaming_statement`].
pub(super) fn parse_streaming_statement(
    parser: &mut Parser,
) -> Result<StreamingStatement, ParserError> {
    if word(parser, "FLUSH") {
        return Ok(StreamingStatement::Flush);
    }
    if let Some(statement) = cursor_statement(parser)? {
        return Ok(statement);
    }
    if words(parser, &["EXPLAIN", "MATERIALIZED", "VIEW"]) {
        return Ok(StreamingStatement::ExplainView(name_from(parser)?));
    }
    if words(parser, &["REFRESH", "MATERIALIZED", "VIEW"]) {
        let _ = word(parser, "CONCURRENTLY");
        let name = name_from(parser)?;
        // WITH NO DATA would empty the view in Postgres; here a view always holds its rows.
        if word(parser, "WITH") {
            let _ = word(parser, "NO");
            expect_word(parser, "DATA")?;
        }
        return Ok(StreamingStatement::RefreshView(name));
    }
    if word(parser, "ALTER") {
        let target = if words(parser, &["MATERIALIZED", "VIEW"]) {
            RenameTarget::MaterializedView
        } else {
            expect_word(parser, "VIEW")?;
            RenameTarget::View
        };
        let if_exists = words(parser, &["IF", "EXISTS"]);
        let name = name_from(parser)?;
        // Postgres's other ALTER VIEW forms (owner, schema, column defaults, options) have no
        // meaning here.
        expect_word(parser, "RENAME")?;
        expect_word(parser, "TO")?;
        let new_name = identifier(&parser.parse_identifier()?);
        return Ok(StreamingStatement::Rename(Rename {
            target,
            if_exists,
            name,
            new_name,
        }));
    }
    if word(parser, "SHOW") {
        let kind = if word(parser, "SOURCES") {
            ConnectorKind::Source
        } else if word(parser, "SINKS") {
            ConnectorKind::Sink
        } else {
            expect_word(parser, "CONNECTIONS")?;
            ConnectorKind::Connection
        };
        return Ok(StreamingStatement::Show(kind));
    }
    if word(parser, "DROP") {
        let kind = connector_kind(parser)?;
        let if_exists = words(parser, &["IF", "EXISTS"]);
        let names = parser.parse_comma_separated(name)?;
        let cascade = word(parser, "CASCADE");
        if !cascade {
            word(parser, "RESTRICT");
        }
        return Ok(StreamingStatement::Drop {
            kind,
            names,
            if_exists,
            cascade,
        });
    }
    expect_word(parser, "CREATE")?;
    match connector_kind(parser)? {
        ConnectorKind::Connection => {
            let if_not_exists = words(parser, &["IF", "NOT", "EXISTS"]);
            let name = name(parser)?;
            expect_word(parser, "TO")?;
            expect_word(parser, "KAFKA")?;
            let kafka = kafka_options(parser)?;
            Ok(StreamingStatement::CreateConnection(CreateConnection {
                sql: String::new(),
                name,
                if_not_exists,
                kafka,
            }))
        }
        ConnectorKind::Source => create_source(parser).map(StreamingStatement::CreateSource),
        ConnectorKind::Sink => create_sink(parser).map(StreamingStatement::CreateSink),
    }
}

/// SUBSCRIBE in its three forms, DECLARE, FETCH and CLOSE; `None` for anything else.
fn cursor_statement(parser: &mut Parser) -> Result<Option<StreamingStatement>, ParserError> {
    if word(parser, "SUBSCRIBE") {
        return Ok(Some(StreamingStatement::Subscribe {
            subscribe: subscribe(parser)?,
            output: SubscribeOutput::Rows,
        }));
    }
    if word(parser, "COPY") {
        parser.expect_token(&Token::LParen)?;
        expect_word(parser, "SUBSCRIBE")?;
        let subscribe = subscribe(parser)?;
        parser.expect_token(&Token::RParen)?;
        expect_word(parser, "TO")?;
        expect_word(parser, "STDOUT")?;
        // Text is the only format: `WITH (FORMAT TEXT)` and `(FORMAT text)` say so.
        let _ = word(parser, "WITH");
        if parser.consume_token(&Token::LParen) {
            expect_word(parser, "FORMAT")?;
            expect_word(parser, "TEXT")?;
            parser.expect_token(&Token::RParen)?;
        }
        return Ok(Some(StreamingStatement::Subscribe {
            subscribe,
            output: SubscribeOutput::Copy,
        }));
    }
    if word(parser, "DECLARE") {
        let cursor = name(parser)?;
        // Postgres's cursor options; every cursor here reads forward only and ends with its
        // transaction, whatever they say.
        while words(parser, &["NO", "SCROLL"])
            || word(parser, "SCROLL")
            || word(parser, "BINARY")
            || word(parser, "INSENSITIVE")
            || word(parser, "ASENSITIVE")
        {}
        expect_word(parser, "CURSOR")?;
        if words(parser, &["WITH", "HOLD"]) {
            return Err(ParserError::ParserError(
                "WITH HOLD cursors are not supported".into(),
            ));
        }
        let _ = words(parser, &["WITHOUT", "HOLD"]);
        expect_word(parser, "FOR")?;
        if word(parser, "SUBSCRIBE") {
            return Ok(Some(StreamingStatement::Subscribe {
                subscribe: subscribe(parser)?,
                output: SubscribeOutput::Cursor(cursor),
            }));
        }
        let query = parser.parse_query()?;
        return Ok(Some(StreamingStatement::DeclareQuery { cursor, query }));
    }
    if word(parser, "FETCH") {
        return fetch(parser).map(|fetch| Some(StreamingStatement::Fetch(fetch)));
    }
    if word(parser, "CLOSE") {
        let cursor = if word(parser, "ALL") {
            None
        } else {
            Some(name(parser)?)
        };
        return Ok(Some(StreamingStatement::Close(cursor)));
    }
    Ok(None)
}

/// What follows SUBSCRIBE: `[TO] relation [WITH (SNAPSHOT [=] true | false)]`.
fn subscribe(parser: &mut Parser) -> Result<Subscribe, ParserError> {
    let _ = word(parser, "TO");
    let relation = name_from(parser)?;
    let mut snapshot = true;
    if word(parser, "WITH") {
        parser.expect_token(&Token::LParen)?;
        loop {
            expect_word(parser, "SNAPSHOT")?;
            let _ = parser.consume_token(&Token::Eq);
            snapshot = if word(parser, "FALSE") {
                false
            } else {
                let _ = word(parser, "TRUE");
                true
            };
            if !parser.consume_token(&Token::Comma) {
                break;
            }
        }
        parser.expect_token(&Token::RParen)?;
    }
    Ok(Subscribe { relation, snapshot })
}

/// What follows FETCH: `[FORWARD | NEXT] [count | ALL] [FROM | IN] cursor [WITH (TIMEOUT
/// [=] 'interval')]`.
fn fetch(parser: &mut Parser) -> Result<Fetch, ParserError> {
    let mut count = Some(1);
    if word(parser, "NEXT") {
    } else {
        let forward = word(parser, "FORWARD");
        if word(parser, "ALL") {
            count = None;
        } else if let Token::Number(..) = parser.peek_token_ref().token {
            count = Some(parser.parse_literal_uint()?);
        } else if forward {
            // FORWARD alone is one row.
        }
    }
    let _ = word(parser, "FROM") || word(parser, "IN");
    let cursor = name(parser)?;
    let mut timeout = None;
    if word(parser, "WITH") {
        parser.expect_token(&Token::LParen)?;
        expect_word(parser, "TIMEOUT")?;
        let _ = parser.consume_token(&Token::Eq);
        let text = literal(parser)?;
        timeout =
            Some(super::parse_duration(&text).ok_or_else(|| {
                ParserError::ParserError(format!("invalid FETCH timeout '{text}'"))
            })?);
        parser.expect_token(&Token::RParen)?;
    }
    Ok(Fetch {
        cursor,
        count,
        timeout,
    })
}

fn create_source(parser: &mut Parser) -> Result<CreateSource, ParserError> {
    let if_not_exists = words(parser, &["IF", "NOT", "EXISTS"]);
    let name = name(parser)?;
    let (columns, constraints) = parser.parse_columns()?;
    if !constraints.is_empty() {
        return parser.expected("column definitions", parser.peek_token());
    }
    expect_word(parser, "FROM")?;
    expect_word(parser, "KAFKA")?;
    let kafka = kafka_options(parser)?;
    let mut source = CreateSource {
        sql: String::new(),
        name,
        if_not_exists,
        columns,
        kafka,
        format: Format::Json,
        envelope: Envelope::None,
        include: Vec::new(),
        errors_topic: None,
        watermark: None,
    };
    // The clauses after FROM KAFKA may come in any order, each at most once.
    let mut seen = Vec::new();
    loop {
        let clause = if word(parser, "FORMAT") {
            source.format = format(parser)?;
            "FORMAT"
        } else if word(parser, "ENVELOPE") {
            source.envelope = envelope(parser)?;
            "ENVELOPE"
        } else if word(parser, "INCLUDE") {
            source.include = parser.parse_comma_separated(include)?;
            "INCLUDE"
        } else if word(parser, "ERRORS") {
            expect_word(parser, "TO")?;
            expect_word(parser, "KAFKA")?;
            expect_word(parser, "TOPIC")?;
            source.errors_topic = Some(parser.parse_literal_string()?);
            "ERRORS"
        } else {
            break;
        };
        if seen.contains(&clause) {
            return Err(ParserError::ParserError(format!(
                "{clause} given more than once"
            )));
        }
        seen.push(clause);
    }
    Ok(source)
}

fn create_sink(parser: &mut Parser) -> Result<CreateSink, ParserError> {
    let if_not_exists = words(parser, &["IF", "NOT", "EXISTS"]);
    let sink_name = name(parser)?;
    expect_word(parser, "FROM")?;
    let from = name_from(parser)?;
    expect_word(parser, "INTO")?;
    expect_word(parser, "KAFKA")?;
    let kafka = kafka_options(parser)?;
    let mut sink = CreateSink {
        sql: String::new(),
        name: sink_name,
        if_not_exists,
        from,
        kafka,
        key: Vec::new(),
        format: Format::Json,
        envelope: Envelope::Upsert,
    };
    loop {
        if word(parser, "KEY") {
            parser.expect_token(&Token::LParen)?;
            sink.key = parser.parse_comma_separated(name)?;
            parser.expect_token(&Token::RParen)?;
        } else if word(parser, "FORMAT") {
            sink.format = format(parser)?;
        } else if word(parser, "ENVELOPE") {
            sink.envelope = envelope(parser)?;
        } else {
            break;
        }
    }
    Ok(sink)
}

fn kafka_options(parser: &mut Parser) -> Result<KafkaOptions, ParserError> {
    let mut options = KafkaOptions::default();
    parser.expect_token(&Token::LParen)?;
    loop {
        if word(parser, "BROKER") || word(parser, "BROKERS") {
            options.broker = Some(parser.parse_literal_string()?);
        } else if word(parser, "TOPIC") {
            options.topic = Some(parser.parse_literal_string()?);
        } else if word(parser, "CONNECTION") {
            options.connection = Some(name(parser)?);
        } else if words(parser, &["START", "OFFSET"]) {
            options.start = Some(start_offset(parser)?);
        } else if words(parser, &["START", "TIMESTAMP"]) {
            options.start = Some(StartOffset::Timestamp(literal(parser)?));
        } else if word(parser, "PROPERTIES") {
            parser.expect_token(&Token::LParen)?;
            let properties = parser.parse_comma_separated(|parser| {
                let key = literal(parser)?;
                let _ = parser.consume_token(&Token::Eq);
                property_value(parser, key)
            })?;
            for property in properties {
                match property {
                    Property::Plain(key, value) => options.properties.push((key, value)),
                    Property::Secret(secret) => options.secrets.push(secret),
                }
            }
            parser.expect_token(&Token::RParen)?;
        } else {
            return parser.expected(
                "BROKER, TOPIC, CONNECTION, START OFFSET or PROPERTIES",
                parser.peek_token(),
            );
        }
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    parser.expect_token(&Token::RParen)?;
    Ok(options)
}

fn start_offset(parser: &mut Parser) -> Result<StartOffset, ParserError> {
    if parser.consume_token(&Token::LParen) {
        let offsets = parser.parse_comma_separated(|parser| {
            let negative = parser.consume_token(&Token::Minus);
            let value = parser.parse_literal_uint()? as i64;
            Ok(if negative { -value } else { value })
        })?;
        parser.expect_token(&Token::RParen)?;
        return Ok(StartOffset::Offsets(offsets));
    }
    let text = literal(parser)?;
    Ok(match text.to_lowercase().as_str() {
        "earliest" | "beginning" => StartOffset::Earliest,
        "latest" | "end" => StartOffset::Latest,
        _ => StartOffset::Timestamp(text),
    })
}

fn format(parser: &mut Parser) -> Result<Format, ParserError> {
    if word(parser, "JSON") {
        Ok(Format::Json)
    } else if word(parser, "CSV") {
        let mut header = false;
        let mut delimiter = b',';
        if parser.consume_token(&Token::LParen) {
            loop {
                if word(parser, "HEADER") {
                    header = !word(parser, "FALSE");
                    word(parser, "TRUE");
                } else if word(parser, "DELIMITER") {
                    let text = parser.parse_literal_string()?;
                    match text.as_bytes() {
                        [byte] => delimiter = *byte,
                        _ => {
                            return Err(ParserError::ParserError(format!(
                                "CSV DELIMITER must be one byte, not '{text}'"
                            )));
                        }
                    }
                } else {
                    return parser.expected("HEADER or DELIMITER", parser.peek_token());
                }
                if !parser.consume_token(&Token::Comma) {
                    break;
                }
            }
            parser.expect_token(&Token::RParen)?;
        }
        Ok(Format::Csv { header, delimiter })
    } else if word(parser, "TEXT") {
        Ok(Format::Text)
    } else if word(parser, "BYTES") {
        Ok(Format::Bytes)
    } else {
        parser.expected("JSON, CSV, TEXT or BYTES", parser.peek_token())
    }
}

fn envelope(parser: &mut Parser) -> Result<Envelope, ParserError> {
    if word(parser, "NONE") {
        Ok(Envelope::None)
    } else if word(parser, "UPSERT") {
        Ok(Envelope::Upsert)
    } else if word(parser, "DEBEZIUM") {
        Ok(Envelope::Debezium)
    } else {
        parser.expected("NONE, UPSERT or DEBEZIUM", parser.peek_token())
    }
}

fn include(parser: &mut Parser) -> Result<Include, ParserError> {
    let kind = if word(parser, "KEY") {
        IncludeKind::Key
    } else if word(parser, "PARTITION") {
        IncludeKind::Partition
    } else if word(parser, "OFFSET") {
        IncludeKind::Offset
    } else if word(parser, "TIMESTAMP") {
        IncludeKind::Timestamp
    } else if word(parser, "HEADERS") {
        IncludeKind::Headers
    } else {
        return parser.expected(
            "KEY, PARTITION, OFFSET, TIMESTAMP or HEADERS",
            parser.peek_token(),
        );
    };
    let alias = if word(parser, "AS") {
        Some(name(parser)?)
    } else {
        None
    };
    Ok(Include { kind, alias })
}

fn connector_kind(parser: &mut Parser) -> Result<ConnectorKind, ParserError> {
    if word(parser, "SOURCE") {
        Ok(ConnectorKind::Source)
    } else if word(parser, "SINK") {
        Ok(ConnectorKind::Sink)
    } else if word(parser, "CONNECTION") {
        Ok(ConnectorKind::Connection)
    } else {
        parser.expected("SOURCE, SINK or CONNECTION", parser.peek_token())
    }
}

/// A relation or connection name, folded as Postgres folds identifiers.
fn name(parser: &mut Parser) -> Result<String, ParserError> {
    Ok(identifier(&parser.parse_identifier()?))
}

/// The view after `CREATE SINK ... FROM`, which may be spelled `public.name`.
fn name_from(parser: &mut Parser) -> Result<String, ParserError> {
    let object = parser.parse_object_name(false)?;
    super::relation_name(&object).map_err(|error| ParserError::ParserError(error.to_string()))
}

/// A string, number or bare word, as text.
enum Property {
    Plain(String, String),
    Secret(SecretProperty),
}

/// A property's value: plain, or a secret (`SECRET '<id>'`, or any value of a property
/// [`is_secret_property`] names).
fn property_value(parser: &mut Parser, key: String) -> Result<Property, ParserError> {
    let reference = matches!(&parser.peek_token_ref().token,
        Token::Word(word) if word.quote_style.is_none() && word.value.eq_ignore_ascii_case("SECRET"))
        && matches!(parser.peek_nth_token(1).token, Token::SingleQuotedString(_));
    if reference {
        parser.next_token();
        let id = literal(parser)?;
        return Ok(Property::Secret(SecretProperty {
            key,
            id,
            value: None,
            span: None,
        }));
    }
    let span = parser.peek_token().span;
    let value = literal(parser)?;
    if !is_secret_property(&key) {
        return Ok(Property::Plain(key, value));
    }
    Ok(Property::Secret(SecretProperty {
        key,
        id: crate::storage::directory::random_id("secret-"),
        value: Some(SecretValue::new(value)),
        span: Some(span),
    }))
}

fn literal(parser: &mut Parser) -> Result<String, ParserError> {
    let token = parser.next_token();
    match token.token {
        Token::SingleQuotedString(text) | Token::DoubleQuotedString(text) => Ok(text),
        Token::Number(number, _) => Ok(number),
        Token::Word(word) => Ok(word.value),
        _ => parser.expected("a string", token),
    }
}

/// Consumes the word `expected` (case-insensitive, unquoted) if it comes next.
fn word(parser: &mut Parser, expected: &str) -> bool {
    let found = matches!(&parser.peek_token_ref().token,
        Token::Word(word) if word.quote_style.is_none() && word.value.eq_ignore_ascii_case(expected));
    if found {
        parser.next_token();
    }
    found
}

/// Consumes the words `expected` if all of them come next, and nothing otherwise.
fn words(parser: &mut Parser, expected: &[&str]) -> bool {
    let all = expected.iter().enumerate().all(|(n, expected)| {
        matches!(&parser.peek_nth_token(n).token,
            Token::Word(word) if word.quote_style.is_none() && word.value.eq_ignore_ascii_case(expected))
    });
    if all {
        for _ in expected {
            parser.next_token();
        }
    }
    all
}

fn expect_word(parser: &mut Parser, expected: &str) -> Result<(), ParserError> {
    if word(parser, expected) {
        Ok(())
    } else {
        parser.expected(expected, parser.peek_token())
    }
}
