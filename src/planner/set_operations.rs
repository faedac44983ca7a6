//! INTERSECT ALL and EXCEPT ALL with Postgres's multiplicities.
//!
//! DataFusion plans them as a semi and an anti join, which keep every copy of a left row that
//! has a partner (or has none): `{1,1,1} INTERSECT ALL {1}` would give three rows, where
//! Postgres gives one. Numbering the copies fixes it: each side numbers the copies of each of
//! its rows (`row_number() OVER (PARTITION BY every column)`), the distinct INTERSECT or
//! EXCEPT then pairs copy i with copy i, and the numbers are dropped, leaving min(m, n) copies
//! for INTERSECT ALL and max(m − n, 0) for EXCEPT ALL. The rewritten query is ordinary SQL, so
//! ad hoc queries and materialized views (a row-numbering top-N feeding a semi or anti join)
//! both get it.

use datafusion::sql::parser::Statement as DataFusionStatement;
use datafusion::sql::sqlparser::ast::{
    Query, SetExpr, SetOperator, SetQuantifier, Statement, With,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::{PlanError, Result};
use crate::session::Session;

/// Rewrites every INTERSECT ALL and EXCEPT ALL in `query` (and its subqueries in set
/// operations) as described in the module documentation.
pub(crate) async fn rewrite_all_set_operations(session: &Session, query: &mut Query) -> Result<()> {
    if !has_all_set_operation(&query.body) {
        return Ok(());
    }
    let with = query.with.clone();
    rewrite(session, &with, &mut query.body).await
}

fn has_all_set_operation(body: &SetExpr) -> bool {
    match body {
        SetExpr::SetOperation {
            op,
            set_quantifier,
            left,
            right,
        } => {
            (matches!(op, SetOperator::Intersect | SetOperator::Except)
                && *set_quantifier == SetQuantifier::All)
                || has_all_set_operation(left)
                || has_all_set_operation(right)
        }
        SetExpr::Query(query) => has_all_set_operation(&query.body),
        _ => false,
    }
}

async fn rewrite(session: &Session, with: &Option<With>, body: &mut SetExpr) -> Result<()> {
    let SetExpr::SetOperation {
        op,
        set_quantifier,
        left,
        right,
    } = body
    else {
        return Ok(());
    };
    Box::pin(rewrite(session, with, left)).await?;
    Box::pin(rewrite(session, with, right)).await?;
    if !matches!(op, SetOperator::Intersect | SetOperator::Except)
        || *set_quantifier != SetQuantifier::All
    {
        return Ok(());
    }
    let names = column_names(session, with, left).await?;
    let numbered: Vec<String> = (1..=names.len()).map(|i| format!("__c{i}")).collect();
    let columns = numbered.join(", ");
    let side = |body: &SetExpr, alias: &str| {
        format!(
            "SELECT * FROM (SELECT {alias}.*, row_number() OVER (PARTITION BY {columns}) AS __copy \
             FROM ({body}) AS {alias}({columns})) AS {alias}_numbered"
        )
    };
    let outputs: Vec<String> = numbered
        .iter()
        .zip(&names)
        .map(|(column, name)| format!("{column} AS \"{}\"", name.replace('"', "\"\"")))
        .collect();
    let operator = if *op == SetOperator::Intersect {
        "INTERSECT"
    } else {
        "EXCEPT"
    };
    let sql = format!(
        "SELECT {} FROM ({} {operator} {}) AS __set_operation_all",
        outputs.join(", "),
        side(left, "__left"),
        side(right, "__right"),
    );
    let mut query = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut parser| parser.parse_query())
        .map_err(|error| PlanError::Syntax(format!("{operator} ALL: {error}")))?;
    // The sides' text parses back into chains as long as the statement's before it was
    // bounded (`sql::depth`).
    crate::sql::depth::bound(query.as_mut())?;
    *body = SetExpr::Query(query);
    Ok(())
}

/// The output column names of one side of a set operation, planned with the query's WITH.
async fn column_names(
    session: &Session,
    with: &Option<With>,
    body: &SetExpr,
) -> Result<Vec<String>> {
    let query = Query {
        with: with.clone(),
        body: Box::new(body.clone()),
        order_by: None,
        limit_clause: None,
        fetch: None,
        locks: Vec::new(),
        for_clause: None,
        settings: None,
        format_clause: None,
        pipe_operators: Vec::new(),
    };
    let plan = session
        .state
        .statement_to_plan(DataFusionStatement::Statement(Box::new(Statement::Query(
            Box::new(query),
        ))))
        .await?;
    Ok(plan
        .schema()
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .collect())
}
