//! Long `x IN (constants)` lists in queries' WHERE clauses, folded while parsed into one call
//! holding the constants as one JSON text, so what follows (catalog rewrites, clones, planning)
//! sees one node instead of a million. `planner::long_in_lists` turns the call into a set
//! lookup.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Query, Select, Statement, UnaryOperator,
    Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::planner::long_in_lists::{LONG_LIST, MARKER_FUNCTION};

/// Folds every long list of integer or single-quoted text constants in a query's WHERE clauses.
/// Only there: a condition names no column, so the set lookup planned for it can be named as it
/// likes. Other statements keep their lists: a view's plan is stored and must not name the
/// marker.
pub fn fold_long_in_lists(statement: &mut Statement) {
    if !is_query_or_its_explain(statement) {
        return;
    }
    let _ = statement.visit(&mut WhereClauses);
}

/// Visits every SELECT after the queries nested in it, and folds the lists of its WHERE.
struct WhereClauses;

impl VisitorMut for WhereClauses {
    type Break = ();

    fn post_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        if let Some(condition) = &mut select.selection {
            let _ = condition.visit(&mut Lists { nested_queries: 0 });
        }
        ControlFlow::Continue(())
    }
}

/// Folds the long lists of one condition, leaving those of the queries nested in it (their own
/// WHERE lists are folded already; the rest are theirs to keep).
struct Lists {
    nested_queries: usize,
}

impl VisitorMut for Lists {
    type Break = ();

    fn pre_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.nested_queries += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.nested_queries -= 1;
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expression: &mut Expr) -> ControlFlow<()> {
        if self.nested_queries == 0
            && let Expr::InList {
                expr,
                list,
                negated,
            } = expression
            && list.len() >= LONG_LIST
            && let Some(constants) = constants_as_json(list)
            && let Some(call) = marker_call(constants, (**expr).clone())
        {
            // NOT IN is NOT of IN when the list holds no NULL: both are NULL for a NULL tested.
            *expression = if *negated {
                Expr::UnaryOp {
                    op: UnaryOperator::Not,
                    expr: Box::new(Expr::Nested(Box::new(call))),
                }
            } else {
                call
            };
        }
        ControlFlow::Continue(())
    }
}

/// A SELECT, or EXPLAIN of one: statements whose plans are run and dropped, never stored.
pub fn is_query_or_its_explain(statement: &Statement) -> bool {
    match statement {
        Statement::Query(_) => true,
        Statement::Explain { statement, .. } => matches!(statement.as_ref(), Statement::Query(_)),
        _ => false,
    }
}

/// The list as a JSON array, when every item is a whole number that fits 64 bits or a plain
/// quoted text, all of one kind.
fn constants_as_json(list: &[Expr]) -> Option<String> {
    let mut json = String::with_capacity(list.len() * 8);
    json.push('[');
    let texts = matches!(
        list.first(),
        Some(Expr::Value(value)) if matches!(value.value, Value::SingleQuotedString(_))
    );
    for (position, item) in list.iter().enumerate() {
        if position > 0 {
            json.push(',');
        }
        if texts {
            let Expr::Value(value) = item else {
                return None;
            };
            let Value::SingleQuotedString(text) = &value.value else {
                return None;
            };
            json.push_str(&serde_json::to_string(text).ok()?);
        } else {
            json.push_str(&integer(item)?.to_string());
        }
    }
    json.push(']');
    Some(json)
}

fn integer(item: &Expr) -> Option<i64> {
    match item {
        Expr::Value(value) => match &value.value {
            Value::Number(digits, false) => digits.parse().ok(),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => integer(expr)?.checked_neg(),
        _ => None,
    }
}

/// `tributary_in_list('[...]', tested)`, made by parsing a template so the call has every
/// field sqlparser gives a call.
fn marker_call(constants: String, tested: Expr) -> Option<Expr> {
    let mut call = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("{MARKER_FUNCTION}('', NULL)"))
        .ok()?
        .parse_expr()
        .ok()?;
    let Expr::Function(function) = &mut call else {
        return None;
    };
    let FunctionArguments::List(arguments) = &mut function.args else {
        return None;
    };
    arguments.args = vec![
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
            Value::SingleQuotedString(constants),
        ))),
        FunctionArg::Unnamed(FunctionArgExpr::Expr(tested)),
    ];
    Some(call)
}
