//! Event-time clauses sqlparser does not know: `WATERMARK FOR column AS column - INTERVAL '…'`
//! among the columns of CREATE TABLE and CREATE SOURCE, and `EMIT ON WINDOW CLOSE` after the
//! query of CREATE MATERIALIZED VIEW. They are cut out of the statement's tokens; what remains
//! is parsed as usual.

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Ident};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use super::identifier;
use crate::error::ParseError;

/// `WATERMARK FOR column AS expression`, as written; checked against the columns when the
/// relation is created.
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkClause {
    pub column: Ident,
    pub expression: Box<Expr>,
}

impl WatermarkClause {
    /// The column's name (folded as Postgres folds identifiers) and the delay in nanoseconds:
    /// the expression must be the column itself or the column minus a constant interval.
    pub fn resolve(&self) -> Result<(String, i64), ParseError> {
        let column = identifier(&self.column);
        let invalid = || {
            ParseError::InvalidWatermark(format!(
                "WATERMARK FOR {column} must be {column} or {column} - INTERVAL '...', not {}",
                self.expression
            ))
        };
        let names_column = |expression: &Expr| match expression {
            Expr::Identifier(ident) => identifier(ident) == column,
            Expr::Nested(inner) => {
                matches!(inner.as_ref(), Expr::Identifier(ident) if identifier(ident) == column)
            }
            _ => false,
        };
        match self.expression.as_ref() {
            expression if names_column(expression) => Ok((column, 0)),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Minus,
                right,
            } if names_column(left) => {
                let delay = super::windows::duration("WATERMARK", "delay", right, true)
                    .map_err(|error| ParseError::InvalidWatermark(error.to_string()))?;
                let delay = i64::try_from(delay).map_err(|_| invalid())?;
                Ok((column, delay))
            }
            _ => Err(invalid()),
        }
    }
}

/// What [`cut_event_time_clauses`] found in one statement.
pub(super) struct EventTimeClauses {
    pub watermark: Option<WatermarkClause>,
    pub emit_on_window_close: bool,
    /// The statement's tokens without the clauses.
    pub remaining: Vec<TokenWithSpan>,
    /// How many tokens the statement spans in the parser, clauses included.
    pub length: usize,
}

/// Finds the event-time clauses of the CREATE TABLE, CREATE SOURCE or CREATE MATERIALIZED VIEW
/// statement the parser stands at; `None` when it is another statement or has none.
pub(super) fn cut_event_time_clauses(
    parser: &Parser,
) -> Result<Option<EventTimeClauses>, ParserError> {
    let words: Vec<String> = (0..3)
        .map(|n| unquoted_word(&parser.peek_nth_token(n).token).unwrap_or_default())
        .collect();
    let first_words: Vec<&str> = words.iter().map(String::as_str).collect();
    let (column_list, query) = match first_words.as_slice() {
        ["CREATE", "TABLE" | "SOURCE", _] => (true, false),
        ["CREATE", "MATERIALIZED", "VIEW"] | ["CREATE", "VIEW", _] => (false, true),
        _ => return Ok(None),
    };
    // Only these statements pay for a second look at their tokens.
    let statement = statement_tokens(parser);
    let length = statement.len();
    let mut remaining = statement;
    let watermark = if column_list {
        cut_watermark(&mut remaining)?
    } else {
        None
    };
    let emit_on_window_close = query && cut_emit_on_window_close(&mut remaining);
    if watermark.is_none() && !emit_on_window_close {
        return Ok(None);
    }
    Ok(Some(EventTimeClauses {
        watermark,
        emit_on_window_close,
        remaining,
        length,
    }))
}

/// The tokens from the parser's position to the end of the statement (a `;` outside
/// parentheses, or the end of input), whitespace included.
fn statement_tokens(parser: &Parser) -> Vec<TokenWithSpan> {
    let mut tokens = Vec::new();
    let mut depth = 0usize;
    loop {
        let token = parser.peek_nth_token_no_skip(tokens.len());
        match token.token {
            Token::EOF => break,
            Token::SemiColon if depth == 0 => break,
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        tokens.push(token);
    }
    tokens
}

fn unquoted_word(token: &Token) -> Option<String> {
    match token {
        Token::Word(word) if word.quote_style.is_none() => Some(word.value.to_uppercase()),
        _ => None,
    }
}

/// Removes `WATERMARK FOR ...` from the first parenthesized list (the columns), with the comma
/// that separated it from its neighbours, and parses it.
fn cut_watermark(tokens: &mut Vec<TokenWithSpan>) -> Result<Option<WatermarkClause>, ParserError> {
    let Some(open) = tokens.iter().position(|token| token.token == Token::LParen) else {
        return Ok(None);
    };
    // Top-level elements of the list: (first token, end exclusive), and the closing paren.
    let mut depth = 0usize;
    let mut elements = Vec::new();
    let mut element_start = open + 1;
    for (index, token) in tokens.iter().enumerate().skip(open) {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    elements.push((element_start, index));
                    break;
                }
            }
            Token::Comma if depth == 1 => {
                elements.push((element_start, index));
                element_start = index + 1;
            }
            _ => {}
        }
    }
    let significant = |range: (usize, usize)| -> Vec<&TokenWithSpan> {
        tokens[range.0..range.1]
            .iter()
            .filter(|token| !matches!(token.token, Token::Whitespace(_)))
            .collect()
    };
    let Some(position) = elements.iter().position(|&range| {
        let words = significant(range);
        words.len() >= 2
            && unquoted_word(&words[0].token).as_deref() == Some("WATERMARK")
            && unquoted_word(&words[1].token).as_deref() == Some("FOR")
    }) else {
        return Ok(None);
    };
    let (start, end) = elements[position];
    let clause: Vec<TokenWithSpan> = significant((start, end))
        .into_iter()
        .skip(2)
        .cloned()
        .collect();
    let mut parser = Parser::new(&PostgreSqlDialect {}).with_tokens_with_locations(clause);
    let column = parser.parse_identifier()?;
    parser.expect_keyword(datafusion::sql::sqlparser::keywords::Keyword::AS)?;
    let expression = parser.parse_expr()?;
    if parser.peek_token().token != Token::EOF {
        return parser.expected("end of the WATERMARK clause", parser.peek_token());
    }
    // Cut the element with the comma before it (after it when it comes first).
    let cut = if position > 0 {
        (start - 1, end)
    } else if elements.len() > 1 {
        (start, end + 1)
    } else {
        (start, end)
    };
    tokens.drain(cut.0..cut.1);
    Ok(Some(WatermarkClause {
        column,
        expression: Box::new(expression),
    }))
}

/// Removes a trailing `EMIT ON WINDOW CLOSE`; whether there was one.
fn cut_emit_on_window_close(tokens: &mut Vec<TokenWithSpan>) -> bool {
    let significant: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(_, token)| !matches!(token.token, Token::Whitespace(_)))
        .map(|(index, _)| index)
        .collect();
    let [.., emit, on, window, close] = significant.as_slice() else {
        return false;
    };
    let expected = [
        (*emit, "EMIT"),
        (*on, "ON"),
        (*window, "WINDOW"),
        (*close, "CLOSE"),
    ];
    if expected
        .iter()
        .all(|(index, word)| unquoted_word(&tokens[*index].token).as_deref() == Some(word))
    {
        tokens.truncate(*emit);
        return true;
    }
    false
}
