//! TUMBLE and HOP time windows: table functions in FROM, expanded into the subqueries that
//! compute them, so the planner and the dataflow see ordinary projections and unions.
//!
//! `TUMBLE(relation, time_column, size)` adds `window_start` (the time rounded down to a
//! multiple of `size`, counted from 1970-01-01 00:00:00) and `window_end` (`window_start + size`).
//! `HOP(relation, time_column, slide, size)` puts each row in the `size / slide` windows of
//! length `size`, starting every `slide`, that contain its time: one branch of a UNION ALL per
//! window, each a linear projection, so a row whose time changes moves between windows.

use std::ops::ControlFlow;

use datafusion::arrow::compute::kernels::cast_utils::parse_interval_month_day_nano;
use datafusion::arrow::datatypes::IntervalMonthDayNano;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Ident, Statement, TableAlias, TableFactor, Value, VisitMut,
    VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::ParseError;

/// HOP makes one UNION ALL branch per window a row falls in; beyond this many the plan grows
/// too large to be worth it.
const MOST_WINDOWS_PER_ROW: i64 = 100;

const NANOSECONDS_PER_DAY: i128 = 86_400 * 1_000_000_000;

/// Replaces every TUMBLE(...) and HOP(...) in `statement`'s FROM clauses by its subquery, and
/// returns the windows' sizes in nanoseconds.
pub fn expand_time_windows(statement: &mut Statement) -> Result<Vec<i128>, ParseError> {
    let mut expander = WindowExpander::default();
    match statement.visit(&mut expander) {
        ControlFlow::Break(error) => Err(error),
        ControlFlow::Continue(()) => Ok(expander.sizes),
    }
}

#[derive(Default)]
struct WindowExpander {
    sizes: Vec<i128>,
}

impl VisitorMut for WindowExpander {
    type Break = ParseError;

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<ParseError> {
        let TableFactor::Table {
            name,
            alias,
            args: Some(arguments),
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let function = name.to_string().to_lowercase();
        if function != "tumble" && function != "hop" {
            return ControlFlow::Continue(());
        }
        let expanded = window_subquery(&function, &arguments.args, alias.take());
        match expanded {
            Ok((derived, size)) => {
                self.sizes.push(size);
                *factor = derived;
                ControlFlow::Continue(())
            }
            Err(error) => ControlFlow::Break(error),
        }
    }
}

fn invalid(message: String) -> ParseError {
    ParseError::InvalidWindow(message)
}

fn window_subquery(
    function: &str,
    arguments: &[FunctionArg],
    alias: Option<TableAlias>,
) -> Result<(TableFactor, i128), ParseError> {
    let name = function.to_uppercase();
    let expressions = arguments
        .iter()
        .map(|argument| match argument {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(expression)) => Ok(expression),
            other => Err(invalid(format!(
                "{name} does not take the argument {other}"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (relation, time, slide, size) = match (function, expressions.as_slice()) {
        ("tumble", [relation, time, size]) => (relation, time, *size, *size),
        ("hop", [relation, time, slide, size]) => (relation, time, *slide, *size),
        _ => {
            return Err(invalid(format!(
                "{name} takes (relation, time column, {}), not {} arguments",
                if function == "hop" {
                    "slide, size"
                } else {
                    "size"
                },
                expressions.len()
            )));
        }
    };
    let relation = match relation {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => relation.to_string(),
        other => {
            return Err(invalid(format!(
                "the first argument of {name} must name a table, source or view, not {other}"
            )));
        }
    };
    let size_nanoseconds = duration(&name, "size", size, false)?;
    let slide_nanoseconds = duration(&name, "slide", slide, false)?;
    if size_nanoseconds % slide_nanoseconds != 0 {
        return Err(invalid(format!(
            "HOP size ({size}) must be a multiple of its slide ({slide})"
        )));
    }
    let windows = size_nanoseconds / slide_nanoseconds;
    if windows > i128::from(MOST_WINDOWS_PER_ROW) {
        return Err(invalid(format!(
            "HOP puts each row in {windows} windows (size / slide); at most {MOST_WINDOWS_PER_ROW} are supported"
        )));
    }
    // The origin spelled as an untyped literal takes the time column's type, with or without
    // a time zone; this is also how Postgres spells date_bin.
    let start = format!("date_bin({slide}, {time}, '1970-01-01 00:00:00')");
    let branches: Vec<String> = (0..windows)
        .map(|window| {
            let offset = window * slide_nanoseconds;
            // Microseconds where they suffice: Postgres's resolution.
            let window_start = match offset {
                0 => start.clone(),
                offset if offset % 1000 == 0 => {
                    format!("{start} - INTERVAL '{} microseconds'", offset / 1000)
                }
                offset => format!("{start} - INTERVAL '{offset} nanoseconds'"),
            };
            format!(
                "SELECT *, {window_start} AS window_start, {window_start} + {size} AS window_end FROM {relation}"
            )
        })
        .collect();
    let sql = branches.join(" UNION ALL ");
    let subquery = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut parser| parser.parse_query())
        .map_err(|error| invalid(format!("{name}: {error}")))?;
    let alias = alias.unwrap_or_else(|| {
        // Unaliased, the window keeps the relation's name for qualified column references.
        let last = relation.rsplit('.').next().unwrap_or(&relation);
        TableAlias {
            explicit: true,
            name: Ident::new(last.trim_matches('"')),
            columns: Vec::new(),
            at: None,
        }
    });
    let derived = TableFactor::Derived {
        lateral: false,
        subquery,
        alias: Some(alias),
        sample: None,
    };
    Ok((derived, size_nanoseconds))
}

/// A window length in nanoseconds: a constant, positive interval without months (a month has
/// no fixed length). `zero_allowed` admits a zero interval too.
pub(super) fn duration(
    function: &str,
    what: &str,
    expression: &Expr,
    zero_allowed: bool,
) -> Result<i128, ParseError> {
    let not_constant = || {
        invalid(format!(
            "the {what} of {function} must be a constant interval such as INTERVAL '10 seconds', not {expression}"
        ))
    };
    let Expr::Interval(interval) = expression else {
        return Err(not_constant());
    };
    let Expr::Value(value) = interval.value.as_ref() else {
        return Err(not_constant());
    };
    let text = match &value.value {
        Value::SingleQuotedString(text) => text.clone(),
        _ => return Err(not_constant()),
    };
    let text = match &interval.leading_field {
        Some(field) => format!("{text} {field}"),
        None => text,
    };
    let parsed: IntervalMonthDayNano =
        parse_interval_month_day_nano(&text).map_err(|_| not_constant())?;
    if parsed.months != 0 {
        return Err(invalid(format!(
            "the {what} of {function} must not count months or years ({expression})"
        )));
    }
    let nanoseconds =
        i128::from(parsed.days) * NANOSECONDS_PER_DAY + i128::from(parsed.nanoseconds);
    if nanoseconds < 0 || (nanoseconds == 0 && !zero_allowed) {
        let bound = if zero_allowed {
            "must not be negative"
        } else {
            "must be positive"
        };
        return Err(invalid(format!(
            "the {what} of {function} {bound}, not {expression}"
        )));
    }
    Ok(nanoseconds)
}
