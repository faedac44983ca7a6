//! Bounds how deeply a statement nests, so that no later stage (cloning, rewriting, planning,
//! lowering, evaluating, dropping: all recursive) overflows a thread's stack.
//!
//! sqlparser bounds what it parses by recursion (parentheses, prefix operators, subqueries),
//! but builds chains of infix operators (`1 + 1 + ...`, `a AND b AND ...`, casts, `IS NULL`)
//! and of set operations (`SELECT 1 UNION SELECT 2 ...`) in a loop, each link one level deeper
//! than the last. A statement is checked right after parsing: AND and OR chains are rebuilt as
//! balanced trees (the same truth table, logarithmic depth), and a statement that still nests
//! deeper than [`MAX_DEPTH`] is refused with 54001, taken apart without deep recursion.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Query, SetExpr, Value, Values, VisitMut, VisitorMut,
};

use crate::error::ParseError;

/// The deepest nesting of expressions (and set operations) a statement may have. Postgres, with
/// its default 2 MB `max_stack_depth`, answers a 2,000-term sum and refuses a 5,000-term one.
/// Depth also costs time: DataFusion names every level of a chain whenever it derives a plan's
/// schema, quadratic in the chain's length (a 2,000-term sum plans in 0.3 s, 4,000 in about 1 s
/// in a release build).
pub const MAX_DEPTH: usize = 4_000;

/// The stack of every thread that parses, plans, lowers or evaluates statements: room for
/// [`MAX_DEPTH`] levels in each recursive stage, in a debug build too. Only the pages a thread
/// touches are committed, so the size costs address space, not memory.
pub const THREAD_STACK_SIZE: usize = 128 << 20;

/// sqlparser's own bound on recursive parsing (its default is 50 nested parentheses or
/// subqueries), raised because each level is cheap next to [`THREAD_STACK_SIZE`].
pub const PARSER_RECURSION_LIMIT: usize = 500;

/// AND and OR chains with more links than this are rebuilt as balanced trees; a balanced tree's
/// own spines are shorter, so rebuilt ones are left alone.
const REBALANCE_LINKS: usize = 64;

/// Refused statements are cut into pieces no deeper than this before they are dropped.
const CUT_DEPTH: usize = 1_000;

/// Stack the check itself may need: [`MAX_DEPTH`] levels of sqlparser's visitor. On a thread
/// with less left, it runs on a stack of its own.
const CHECK_STACK: usize = 32 << 20;

/// Rebalances `node`'s AND and OR chains, and refuses it if it still nests deeper than
/// [`MAX_DEPTH`].
pub fn bound<T: VisitMut>(node: &mut T) -> Result<(), ParseError> {
    stacker::maybe_grow(CHECK_STACK, THREAD_STACK_SIZE, || {
        let mut bounder = Bounder::default();
        if node.visit(&mut bounder).is_break() {
            dismantle(node);
            return Err(ParseError::TooComplex(format!(
                "statement too complex: expressions nest more than {MAX_DEPTH} levels deep"
            )));
        }
        Ok(())
    })
}

/// Counts the depth on the way down and stops before it exceeds [`MAX_DEPTH`], so the walk
/// itself never goes deeper than that.
#[derive(Default)]
struct Bounder {
    depth: usize,
    /// What each query still open added for its chain of set operations.
    set_chains: Vec<usize>,
}

impl VisitorMut for Bounder {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let links = set_operation_links(&query.body);
        self.depth += links;
        self.set_chains.push(links);
        if self.depth > MAX_DEPTH {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.depth -= self.set_chains.pop().unwrap_or(0);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return ControlFlow::Break(());
        }
        rebalance(expr);
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &mut Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// How many set operations are chained down the left of `body` (the parser nests them there).
fn set_operation_links(body: &SetExpr) -> usize {
    let mut links = 0;
    let mut current = body;
    while let SetExpr::SetOperation { left, .. } = current {
        links += 1;
        current = left;
    }
    links
}

/// If `expr` heads a long chain of one of AND and OR, rebuilds the chain as a balanced tree of
/// the same operands in the same order. Both operators are associative in SQL's three-valued
/// logic, and SQL leaves their evaluation order to the system.
fn rebalance(expr: &mut Expr) {
    let operator = match expr {
        Expr::BinaryOp {
            op: operator @ (BinaryOperator::And | BinaryOperator::Or),
            ..
        } => operator.clone(),
        _ => return,
    };
    let mut links = 0;
    let mut current = &*expr;
    while let Expr::BinaryOp { left, op, .. } = current
        && *op == operator
    {
        links += 1;
        current = left;
    }
    if links <= REBALANCE_LINKS {
        return;
    }
    // Unlink the chain from its head down, so no step recurses.
    let mut operands = Vec::with_capacity(links + 1);
    let mut current = std::mem::replace(expr, placeholder_expr());
    loop {
        match current {
            Expr::BinaryOp { left, op, right } if op == operator => {
                operands.push(*right);
                current = *left;
            }
            other => {
                operands.push(other);
                break;
            }
        }
    }
    operands.reverse();
    *expr = balanced(&mut operands.into_iter(), links + 1, &operator);
}

/// A balanced tree of the next `count` operands joined by `operator`; recursion as deep as the
/// tree, logarithmic in `count`.
fn balanced(
    operands: &mut impl Iterator<Item = Expr>,
    count: usize,
    operator: &BinaryOperator,
) -> Expr {
    if count == 1 {
        return operands.next().unwrap_or_else(placeholder_expr);
    }
    let left = balanced(operands, count / 2, operator);
    let right = balanced(operands, count - count / 2, operator);
    Expr::BinaryOp {
        left: Box::new(left),
        op: operator.clone(),
        right: Box::new(right),
    }
}

fn placeholder_expr() -> Expr {
    Expr::value(Value::Null)
}

fn placeholder_set() -> SetExpr {
    SetExpr::Values(Values {
        explicit_row: false,
        value_keyword: false,
        rows: Vec::new(),
    })
}

/// A piece cut off a refused statement, waiting to be cut further and dropped.
enum Piece {
    Expr(Box<Expr>),
    Set(Box<SetExpr>),
}

/// Drops what `node` holds without recursing deeper than [`CUT_DEPTH`] levels: pieces deeper
/// than that are cut off and taken apart one after another (dropping a deep tree whole would
/// recurse once per level).
fn dismantle<T: VisitMut>(node: &mut T) {
    let mut cutter = Cutter::default();
    let _ = node.visit(&mut cutter);
    while let Some(piece) = cutter.pieces.pop() {
        match piece {
            Piece::Expr(mut expr) => {
                cutter.depth = 0;
                let _ = expr.as_mut().visit(&mut cutter);
            }
            Piece::Set(set) => {
                // Unlink a chain of set operations in a loop; its operands are pieces.
                let mut current = set;
                let mut last = loop {
                    match *current {
                        SetExpr::SetOperation { left, right, .. } => {
                            cutter.pieces.push(Piece::Set(right));
                            current = left;
                        }
                        other => break other,
                    }
                };
                cutter.depth = 0;
                let _ = last.visit(&mut cutter);
            }
        }
    }
}

#[derive(Default)]
struct Cutter {
    depth: usize,
    pieces: Vec<Piece>,
}

impl VisitorMut for Cutter {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::SetOperation { left, right, .. } = query.body.as_mut() {
            self.pieces.push(Piece::Set(std::mem::replace(
                left,
                Box::new(placeholder_set()),
            )));
            self.pieces.push(Piece::Set(std::mem::replace(
                right,
                Box::new(placeholder_set()),
            )));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth >= CUT_DEPTH {
            self.pieces.push(Piece::Expr(Box::new(std::mem::replace(
                expr,
                placeholder_expr(),
            ))));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &mut Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> datafusion::sql::sqlparser::ast::Statement {
        use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
        use datafusion::sql::sqlparser::parser::Parser;
        Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut parser| parser.parse_statement())
            .expect("parses")
    }

    fn depth(expr: &Expr) -> usize {
        match expr {
            Expr::BinaryOp { left, right, .. } => 1 + depth(left).max(depth(right)),
            _ => 1,
        }
    }

    fn where_clause(statement: &datafusion::sql::sqlparser::ast::Statement) -> &Expr {
        let datafusion::sql::sqlparser::ast::Statement::Query(query) = statement else {
            panic!("a query");
        };
        let SetExpr::Select(select) = query.body.as_ref() else {
            panic!("a select");
        };
        select.selection.as_ref().expect("a WHERE")
    }

    #[test]
    fn long_and_chains_become_balanced_with_their_operands_in_order() {
        let conditions: Vec<String> = (0..1_000).map(|i| format!("a = {i}")).collect();
        let mut statement = parse(&format!(
            "SELECT 1 FROM t WHERE {}",
            conditions.join(" AND ")
        ));
        bound(&mut statement).expect("bounded");
        let condition = where_clause(&statement);
        assert!(depth(condition) <= 12, "depth {}", depth(condition));
        let text = condition.to_string();
        assert!(text.starts_with("a = 0 AND a = 1 AND"), "{text}");
        assert!(text.ends_with("a = 998 AND a = 999"), "{text}");
        assert_eq!(text.matches(" AND ").count(), 999);
    }

    #[test]
    fn short_chains_and_mixed_operators_stay_as_written() {
        let sql = "SELECT 1 FROM t WHERE a = 1 AND b = 2 OR c = 3 AND (d = 4 OR e = 5)";
        let mut statement = parse(sql);
        let written = statement.clone();
        bound(&mut statement).expect("bounded");
        assert_eq!(statement, written);
    }

    #[test]
    fn too_deep_sums_and_unions_are_refused_and_dropped_without_overflow() {
        for sql in [
            format!("SELECT {}", vec!["1"; 200_000].join(" + ")),
            vec!["SELECT 1"; 50_000].join(" UNION ALL "),
        ] {
            let mut statement = parse(&sql);
            let error = bound(&mut statement).expect_err("too deep");
            assert!(error.to_string().contains("too complex"), "{error}");
            drop(statement);
        }
    }

    #[test]
    fn sums_up_to_the_limit_pass() {
        let mut statement = parse(&format!("SELECT {}", vec!["1"; 2_000].join(" + ")));
        bound(&mut statement).expect("bounded");
        // Taken apart here: the test's thread has the default stack.
        dismantle(&mut statement);
    }
}
