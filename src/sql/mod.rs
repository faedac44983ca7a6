//! The Postgres dialect over DataFusion: parsing, Postgres column names and SQL types.

pub mod depth;
pub mod event_time;
pub mod functions_in_from;
pub mod intervals;
pub mod jsonb;
pub mod long_lists;
pub mod names;
pub mod set_returning;
pub mod streaming;
pub mod types;
pub mod values;
pub mod windows;

use std::fmt;

use datafusion::sql::sqlparser::ast::{self, ObjectName};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token};

use crate::error::{ParseError, PlanError};
pub use streaming::StreamingStatement;

/// One parsed statement: standard SQL as sqlparser knows it, or one of Tributary's own.
// Boxing would cost an allocation per statement to save stack in a value that is moved rarely;
// sqlparser's own statements are this large anyway.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Standard(datafusion::sql::sqlparser::ast::Statement),
    Streaming(StreamingStatement),
}

impl fmt::Display for Statement {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Standard(statement) => statement.fmt(formatter),
            Statement::Streaming(statement) => statement.fmt(formatter),
        }
    }
}

/// A duration as Postgres settings write one: a number of milliseconds, or a number with a unit
/// (us, ms, s, min, h, d, or the words: seconds, minute, ...), optionally quoted.
pub fn parse_duration(value: &str) -> Option<std::time::Duration> {
    let text = value.trim().trim_matches('\'').to_ascii_lowercase();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let milliseconds_per_unit = match unit.trim() {
        "" | "ms" | "millisecond" | "milliseconds" => 1.0,
        "us" | "microsecond" | "microseconds" => 0.001,
        "s" | "second" | "seconds" => 1_000.0,
        "min" | "minute" | "minutes" => 60_000.0,
        "h" | "hour" | "hours" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        _ => return None,
    };
    let milliseconds = number * milliseconds_per_unit;
    if !milliseconds.is_finite() || milliseconds < 0.0 {
        return None;
    }
    Some(std::time::Duration::from_secs_f64(milliseconds / 1000.0))
}

/// Splits and parses a query string into statements, in the Postgres dialect.
pub fn parse(sql: &str) -> Result<Vec<Statement>, ParseError> {
    let mut statements = parse_statements(sql)?;
    for statement in &mut statements {
        match statement {
            Statement::Standard(statement) => {
                windows::expand_time_windows(statement)?;
                values::subqueries_out_of_values(statement)?;
            }
            Statement::Streaming(StreamingStatement::CreateWindowCloseView {
                create,
                window_sizes,
                ..
            }) => {
                let mut view =
                    datafusion::sql::sqlparser::ast::Statement::CreateView((**create).clone());
                *window_sizes = windows::expand_time_windows(&mut view)?;
                if let datafusion::sql::sqlparser::ast::Statement::CreateView(expanded) = view {
                    **create = expanded;
                }
            }
            Statement::Streaming(StreamingStatement::DeclareQuery { query, .. }) => {
                let mut statement = ast::Statement::Query(query.clone());
                windows::expand_time_windows(&mut statement)?;
                let text = statement.to_string();
                let statement = crate::pg_catalog::rewrite::for_catalog_queries(&text, statement);
                if let ast::Statement::Query(rewritten) = statement {
                    *query = rewritten;
                }
            }
            Statement::Streaming(_) => {}
        }
    }
    Ok(statements)
}

/// What the parser's error means to a client: a syntax error, or nesting too deep to parse.
pub fn parser_error(error: &ParserError) -> ParseError {
    match error {
        ParserError::RecursionLimitExceeded => ParseError::TooComplex(format!(
            "statement too complex: nested more than {} levels deep",
            depth::PARSER_RECURSION_LIMIT
        )),
        other => {
            let message = other.to_string();
            ParseError::Syntax(
                message
                    .trim_start_matches("sql parser error: ")
                    .trim_start_matches("SQL error: ")
                    .to_string(),
            )
        }
    }
}

fn parse_statements(sql: &str) -> Result<Vec<Statement>, ParseError> {
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(depth::PARSER_RECURSION_LIMIT)
        .try_with_sql(sql)
        .map_err(|error| parser_error(&error))?;
    let syntax = |error: ParserError| parser_error(&error);
    let mut statements = Vec::new();
    let mut expecting_delimiter = false;
    loop {
        while parser.consume_token(&Token::SemiColon) {
            expecting_delimiter = false;
        }
        if parser.peek_token().token == Token::EOF {
            break;
        }
        if expecting_delimiter {
            return parser
                .expected("end of statement", parser.peek_token())
                .map_err(syntax);
        }
        let statement =
            if let Some(clauses) = event_time::cut_event_time_clauses(&parser).map_err(syntax)? {
                let start = parser.peek_token().span.start;
                let mut statement = with_event_time(
                    clauses.remaining,
                    clauses.watermark,
                    clauses.emit_on_window_close,
                )
                .map_err(syntax)?;
                for _ in 0..clauses.length {
                    parser.next_token_no_skip();
                }
                bound_streaming(&mut statement)?;
                let end = parser.peek_token().span.start;
                let text = stored_text(sql, start, end, &statement);
                statement.set_sql(&text);
                Statement::Streaming(statement)
            } else if streaming::starts_streaming_statement(&parser) {
                let start = parser.peek_token().span.start;
                let mut statement =
                    streaming::parse_streaming_statement(&mut parser).map_err(syntax)?;
                bound_streaming(&mut statement)?;
                let end = parser.peek_token().span.start;
                let text = stored_text(sql, start, end, &statement);
                statement.set_sql(&text);
                Statement::Streaming(statement)
            } else {
                let start = parser.peek_token().span.start;
                let mut statement = parser.parse_statement().map_err(syntax)?;
                // Before anything clones, rewrites or prints it.
                depth::bound(&mut statement)?;
                long_lists::fold_long_in_lists(&mut statement);
                intervals::normalize_interval_literals(&mut statement);
                let end = parser.peek_token().span.start;
                // Only queries are rewritten; finding a statement's text costs a scan of the input
                // up to it, which a script of many INSERTs should not pay for each.
                let statement = match statement {
                    query @ ast::Statement::Query(_) => {
                        crate::pg_catalog::rewrite::for_catalog_queries(
                            statement_text(sql, start, end),
                            query,
                        )
                    }
                    other => other,
                };
                Statement::Standard(statement)
            };
        statements.push(statement);
        expecting_delimiter = true;
    }
    Ok(statements)
}

/// [`prepare`] for the parts of Tributary's own statements that hold expressions.
fn bound_streaming(statement: &mut StreamingStatement) -> Result<(), ParseError> {
    match statement {
        StreamingStatement::CreateTable {
            create, watermark, ..
        } => {
            prepare(create.as_mut())?;
            prepare(watermark.expression.as_mut())
        }
        StreamingStatement::CreateSource(source) => {
            for column in &mut source.columns {
                prepare(column)?;
            }
            match &mut source.watermark {
                Some(watermark) => prepare(watermark.expression.as_mut()),
                None => Ok(()),
            }
        }
        StreamingStatement::CreateWindowCloseView { create, .. } => prepare(create.as_mut()),
        StreamingStatement::DeclareQuery { query, .. } => prepare(query.as_mut()),
        StreamingStatement::CreateConnection(_)
        | StreamingStatement::CreateSink(_)
        | StreamingStatement::Drop { .. }
        | StreamingStatement::Show(_)
        | StreamingStatement::Flush
        | StreamingStatement::Subscribe { .. }
        | StreamingStatement::Fetch(_)
        | StreamingStatement::Close(_)
        | StreamingStatement::ExplainView(_)
        | StreamingStatement::RefreshView(_)
        | StreamingStatement::Rename(_) => Ok(()),
    }
}

/// What every part of a statement holding expressions goes through once parsed: its depth
/// bounded ([`depth::bound`]) and its interval literals read as Postgres reads them
/// ([`intervals::normalize_interval_literals`]).
fn prepare<T: ast::VisitMut>(part: &mut T) -> Result<(), ParseError> {
    depth::bound(part)?;
    intervals::normalize_interval_literals(part);
    Ok(())
}

/// Parses a statement whose event-time clauses were cut out of its tokens, and puts them back
/// into the statement.
fn with_event_time(
    tokens: Vec<datafusion::sql::sqlparser::tokenizer::TokenWithSpan>,
    watermark: Option<event_time::WatermarkClause>,
    emit_on_window_close: bool,
) -> Result<StreamingStatement, ParserError> {
    use datafusion::sql::sqlparser::ast::Statement as Ast;
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(depth::PARSER_RECURSION_LIMIT)
        .with_tokens_with_locations(tokens);
    let statement = if streaming::starts_streaming_statement(&parser) {
        match streaming::parse_streaming_statement(&mut parser)? {
            StreamingStatement::CreateSource(mut source) if !emit_on_window_close => {
                source.watermark = watermark;
                StreamingStatement::CreateSource(source)
            }
            _ => {
                return Err(ParserError::ParserError(
                    "WATERMARK FOR belongs among the columns of CREATE TABLE or CREATE SOURCE"
                        .into(),
                ));
            }
        }
    } else {
        match (parser.parse_statement()?, watermark) {
            (Ast::CreateTable(create), Some(watermark)) if !emit_on_window_close => {
                StreamingStatement::CreateTable {
                    sql: String::new(),
                    create: Box::new(create),
                    watermark,
                }
            }
            (Ast::CreateView(create), None) if create.materialized => {
                StreamingStatement::CreateWindowCloseView {
                    sql: String::new(),
                    create: Box::new(create),
                    window_sizes: Vec::new(),
                }
            }
            (Ast::CreateView(_), None) => {
                return Err(ParserError::ParserError(
                    "EMIT ON WINDOW CLOSE needs a materialized view".into(),
                ));
            }
            _ => {
                return Err(ParserError::ParserError(
                    "WATERMARK FOR belongs among the columns of CREATE TABLE or CREATE SOURCE"
                        .into(),
                ));
            }
        }
    };
    if parser.peek_token().token != Token::EOF {
        return parser.expected("end of statement", parser.peek_token());
    }
    Ok(statement)
}

/// The text between two token positions; `end` at line 0 (the end of input) means the rest.
fn statement_text(sql: &str, start: Location, end: Location) -> &str {
    let from = byte_offset(sql, start).unwrap_or(0);
    let to = byte_offset(sql, end).unwrap_or(sql.len()).max(from);
    sql[from..to].trim()
}

/// Where a token position is in `sql`; `None` at line 0 (the end of input).
fn byte_offset(sql: &str, location: Location) -> Option<usize> {
    if location.line == 0 {
        return None;
    }
    let line_start = if location.line == 1 {
        0
    } else {
        sql.match_indices('\n')
            .nth(location.line as usize - 2)
            .map(|(index, _)| index + 1)?
    };
    let line = &sql[line_start..];
    Some(
        line_start
            + line
                .char_indices()
                .nth(location.column as usize - 1)
                .map(|(index, _)| index)
                .unwrap_or(line.len()),
    )
}

/// A Tributary statement's text as the catalog keeps it: each secret given inline
/// (`'sasl.password' = '...'`) replaced by the reference `SECRET '<id>'` it is stored under.
fn stored_text(
    sql: &str,
    start: Location,
    end: Location,
    statement: &StreamingStatement,
) -> String {
    let from = byte_offset(sql, start).unwrap_or(0);
    let to = byte_offset(sql, end).unwrap_or(sql.len()).max(from);
    let mut secrets: Vec<(usize, usize, &str)> = statement
        .inline_secrets()
        .filter_map(|(span, id)| {
            let value_start = byte_offset(sql, span.start)?;
            let value_end = byte_offset(sql, span.end).unwrap_or(sql.len());
            (from <= value_start && value_end <= to).then_some((value_start, value_end, id))
        })
        .collect();
    secrets.sort_unstable();
    let mut text = String::with_capacity(to - from);
    let mut written = from;
    for (value_start, value_end, id) in secrets {
        text.push_str(&sql[written..value_start]);
        text.push_str(&format!("SECRET '{id}'"));
        written = value_end;
    }
    text.push_str(&sql[written..to]);
    text.trim().to_string()
}

/// The name a relation is stored under: Postgres folds unquoted identifiers to lower case, and
/// `public.` (the only user schema) may be spelled out, after the database's name too
/// (`"analytics"."public"."orders"`, as dbt writes names): the server holds one database, under
/// whatever name a client connects with.
pub fn relation_name(name: &ObjectName) -> Result<String, PlanError> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) => Ok(identifier(ident)),
            None => Err(PlanError::Syntax(format!("invalid relation name {name}"))),
        })
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [name] => Ok(name.clone()),
        [schema, name] | [_, schema, name] if schema == "public" => Ok(name.clone()),
        _ => Err(PlanError::Unsupported(format!(
            "relation names outside schema public are not supported: {name}"
        ))),
    }
}

/// An identifier as Postgres resolves it: folded to lower case unless quoted.
pub fn identifier(ident: &datafusion::sql::sqlparser::ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka_options(statement: &Statement) -> (&str, &streaming::KafkaOptions) {
        match statement {
            Statement::Streaming(StreamingStatement::CreateConnection(create)) => {
                (&create.sql, &create.kafka)
            }
            Statement::Streaming(StreamingStatement::CreateSource(create)) => {
                (&create.sql, &create.kafka)
            }
            other => panic!("not a connector: {other}"),
        }
    }

    #[test]
    fn inline_secrets_are_stored_as_references_to_their_ids() {
        let sql = "CREATE CONNECTION k TO KAFKA (BROKER 'b:1', PROPERTIES (\n  'sasl.username' = 'ü', 'sasl.password' = 'hunter''2'));
            CREATE SOURCE s (n INT, t TIMESTAMP, WATERMARK FOR t AS t - INTERVAL '1' SECOND)
              FROM KAFKA (BROKER 'b:1', TOPIC 't', PROPERTIES ('ssl.key.password' = 'k€y', 'sasl.password' = SECRET 'secret-given')) FORMAT JSON";
        let statements = parse(sql).expect("parses");
        let (connection_sql, connection) = kafka_options(&statements[0]);
        assert_eq!(
            connection.properties,
            [("sasl.username".into(), "ü".into())]
        );
        let [secret] = connection.secrets.as_slice() else {
            panic!("one secret: {:?}", connection.secrets)
        };
        assert_eq!(secret.key, "sasl.password");
        assert_eq!(
            secret.value.as_ref().map(|value| value.expose()),
            Some("hunter'2")
        );
        assert_eq!(
            connection_sql,
            format!(
                "CREATE CONNECTION k TO KAFKA (BROKER 'b:1', PROPERTIES (\n  'sasl.username' = 'ü', 'sasl.password' = SECRET '{}'))",
                secret.id
            )
        );
        // The stored text names the secret and holds no value: what recovery parses again.
        let again = parse(connection_sql).expect("the stored text parses");
        let (stored_sql, stored) = kafka_options(&again[0]);
        assert_eq!(stored_sql, connection_sql);
        assert_eq!(stored.secrets[0].id, secret.id);
        assert_eq!(stored.secrets[0].value, None);

        let (source_sql, source) = kafka_options(&statements[1]);
        assert!(!source_sql.contains("k€y"), "{source_sql}");
        assert!(source_sql.contains("'sasl.password' = SECRET 'secret-given'"));
        assert!(source_sql.ends_with("FORMAT JSON"), "{source_sql}");
        let ids: Vec<&str> = source.secrets.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids[1], "secret-given");
        assert!(source_sql.contains(&format!("'ssl.key.password' = SECRET '{}'", ids[0])));
        assert!(format!("{statements:?}").contains("****"));
        assert!(!format!("{statements:?}").contains("hunter"));
    }

    #[test]
    fn streaming_statements_keep_their_own_text() {
        let sql = "SELECT 1;\n  CREATE CONNECTION k TO KAFKA (BROKER 'ä:1');\nCREATE SINK s FROM v\n  INTO KAFKA (CONNECTION k, TOPIC 't') KEY (a)";
        let statements = parse(sql).expect("parses");
        let texts: Vec<&str> = statements
            .iter()
            .filter_map(|statement| match statement {
                Statement::Streaming(StreamingStatement::CreateConnection(create)) => {
                    Some(create.sql.as_str())
                }
                Statement::Streaming(StreamingStatement::CreateSink(create)) => {
                    Some(create.sql.as_str())
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            texts,
            [
                "CREATE CONNECTION k TO KAFKA (BROKER 'ä:1')",
                "CREATE SINK s FROM v\n  INTO KAFKA (CONNECTION k, TOPIC 't') KEY (a)"
            ]
        );
    }
}
