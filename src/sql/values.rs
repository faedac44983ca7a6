//! VALUES lists whose rows hold a subquery, rewritten as one SELECT per row joined by UNION ALL:
//! DataFusion plans no subquery inside VALUES (it fails when the row is computed), Postgres
//! takes one (`INSERT INTO t VALUES ((SELECT max(id) FROM t) + 1, ...)`).
//!
//! Each SELECT names its columns `column1`, `column2`, ... as VALUES does, so a query reading
//! the list by name sees what it would have. Lists without subqueries are left alone: VALUES
//! is the cheaper plan.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Query, SetExpr, Statement, Values, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::ParseError;

/// Rewrites every VALUES list in `statement` that holds a subquery.
pub fn subqueries_out_of_values(statement: &mut Statement) -> Result<(), ParseError> {
    match statement.visit(&mut ValuesRewriter) {
        ControlFlow::Break(error) => Err(error),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct ValuesRewriter;

impl VisitorMut for ValuesRewriter {
    type Break = ParseError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Self::Break> {
        match rewrite_set_expression(&mut query.body) {
            Ok(()) => ControlFlow::Continue(()),
            Err(error) => ControlFlow::Break(error),
        }
    }
}

fn rewrite_set_expression(body: &mut SetExpr) -> Result<(), ParseError> {
    match body {
        SetExpr::Values(values) if holds_subquery(values) => {
            *body = selects_of(values)?;
            Ok(())
        }
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_set_expression(left)?;
            rewrite_set_expression(right)
        }
        _ => Ok(()),
    }
}

fn holds_subquery(values: &Values) -> bool {
    struct FindSubquery;
    impl Visitor for FindSubquery {
        type Break = ();
        fn pre_visit_expr(&mut self, expression: &Expr) -> ControlFlow<()> {
            match expression {
                Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    values.visit(&mut FindSubquery).is_break()
}

/// `SELECT row1 UNION ALL SELECT row2 ...`, made as text and parsed again: the rows' own text
/// is what the parser read, so printing and reading it back keeps them as they were.
fn selects_of(values: &Values) -> Result<SetExpr, ParseError> {
    let selects: Vec<String> = values
        .rows
        .iter()
        .map(|row| {
            let columns: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(index, expression)| format!("{expression} AS column{}", index + 1))
                .collect();
            format!("SELECT {}", columns.join(", "))
        })
        .collect();
    let text = selects.join(" UNION ALL ");
    let query = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&text)
        .and_then(|mut parser| parser.parse_query())
        .map_err(|error| super::parser_error(&error))?;
    Ok(*query.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        subqueries_out_of_values(&mut statements[0]).expect("rewrites");
        statements[0].to_string()
    }

    #[test]
    fn only_lists_with_a_subquery_become_selects() {
        assert_eq!(
            rewritten("INSERT INTO t VALUES ((SELECT max(a) FROM t) + 1, 'x'), (2, 'y')"),
            "INSERT INTO t SELECT (SELECT max(a) FROM t) + 1 AS column1, 'x' AS column2 \
             UNION ALL SELECT 2 AS column1, 'y' AS column2"
        );
        assert_eq!(
            rewritten("INSERT INTO t VALUES (1, 'x'), (2, 'y')"),
            "INSERT INTO t VALUES (1, 'x'), (2, 'y')"
        );
        assert_eq!(
            rewritten("SELECT * FROM (VALUES (EXISTS (SELECT 1 FROM t))) AS v"),
            "SELECT * FROM (SELECT EXISTS (SELECT 1 FROM t) AS column1) AS v"
        );
    }
}
