//! Functions called in FROM, named as Postgres names them. A scalar function (`SELECT * FROM
//! upper($1) AS result`, which PgJDBC sends for `{? = call upper(?)}`) is a one-row table whose
//! one column is named after the alias, or the function: DataFusion looks for a table function
//! of that name, so the call becomes the subquery `(SELECT upper($1) AS result) AS result`. A
//! one-column set-returning function's column is named after its alias.

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArgumentList, FunctionArguments, Ident, Query, Select, SelectItem,
    SetExpr, TableAlias, TableAliasColumnDef, TableFactor, TableWithJoins,
};

/// Rewrites every FROM item of `query`'s SELECTs that calls a function `is_scalar` says is a
/// scalar (not a table) function.
pub fn rewrite(query: &mut Query, is_scalar: &dyn Fn(&str) -> bool) {
    rewrite_set(query.body.as_mut(), is_scalar);
    // Subqueries in expressions (`x IN (SELECT s[1] FROM string_to_array(...) s)`), at any
    // depth: the visitor reaches every expression of the tree.
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(query, |expression| {
        match expression {
            Expr::Subquery(subquery)
            | Expr::InSubquery { subquery, .. }
            | Expr::Exists { subquery, .. } => rewrite_set(subquery.body.as_mut(), is_scalar),
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

fn rewrite_set(body: &mut SetExpr, is_scalar: &dyn Fn(&str) -> bool) {
    match body {
        SetExpr::Select(select) => rewrite_select(select, is_scalar),
        SetExpr::Query(query) => rewrite(query, is_scalar),
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_set(left, is_scalar);
            rewrite_set(right, is_scalar);
        }
        _ => {}
    }
}

fn rewrite_select(select: &mut Select, is_scalar: &dyn Fn(&str) -> bool) {
    for table in &mut select.from {
        rewrite_table(table, is_scalar);
    }
}

fn rewrite_table(table: &mut TableWithJoins, is_scalar: &dyn Fn(&str) -> bool) {
    rewrite_factor(&mut table.relation, is_scalar);
    for join in &mut table.joins {
        rewrite_factor(&mut join.relation, is_scalar);
    }
}

fn rewrite_factor(factor: &mut TableFactor, is_scalar: &dyn Fn(&str) -> bool) {
    match factor {
        TableFactor::Table {
            name,
            alias,
            args: Some(args),
            ..
        } => {
            let Some(function) = name.0.last().and_then(|part| part.as_ident()) else {
                return;
            };
            let function_name = super::identifier(function);
            if name.0.len() > 2 {
                return;
            }
            if !is_scalar(&function_name) {
                // A set-returning function of one column aliased without a column list:
                // Postgres names the column after the alias (`generate_series(1, 3) AS i`
                // gives `i`, as Grafana's table list reads it); DataFusion calls it `value`.
                if matches!(function_name.as_str(), "generate_series" | "range")
                    && let Some(alias) = alias
                    && alias.columns.is_empty()
                {
                    alias.columns = vec![TableAliasColumnDef::from_name(super::identifier(
                        &alias.name,
                    ))];
                }
                return;
            }
            // The alias names the table and, without a column list, its one column.
            let column = match alias {
                Some(alias) if alias.columns.len() == 1 => alias.columns[0].name.clone(),
                Some(alias) => alias.name.clone(),
                None => Ident::new(function_name.clone()),
            };
            let call = Expr::Function(Function {
                name: name.clone(),
                uses_odbc_syntax: false,
                parameters: FunctionArguments::None,
                args: FunctionArguments::List(FunctionArgumentList {
                    duplicate_treatment: None,
                    args: args.args.clone(),
                    clauses: Vec::new(),
                }),
                filter: None,
                null_treatment: None,
                over: None,
                within_group: Vec::new(),
            });
            let Ok(mut subquery) = datafusion::sql::sqlparser::parser::Parser::new(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            )
            .try_with_sql("SELECT 1")
            .and_then(|mut parser| parser.parse_query()) else {
                return;
            };
            if let SetExpr::Select(select) = subquery.body.as_mut() {
                select.projection = vec![SelectItem::ExprWithAlias {
                    expr: call,
                    alias: column.clone(),
                }];
            }
            let alias = alias.clone().unwrap_or(TableAlias {
                explicit: true,
                name: Ident::new(function_name),
                columns: Vec::new(),
                at: None,
            });
            *factor = TableFactor::Derived {
                lateral: false,
                subquery,
                alias: Some(alias),
                sample: None,
            };
        }
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => rewrite_table(table_with_joins, is_scalar),
        TableFactor::Derived { subquery, .. } => rewrite(subquery, is_scalar),
        _ => {}
    }
}

/// Drops the parameters of type `void` (`is_void($n)`) from function calls in `query`'s FROM
/// items and expressions, as Postgres does: PgJDBC binds a CallableStatement's OUT parameters
/// so (`{? = call upper(?)}` is sent as `select * from upper($1,$2) as result`, `$1` void).
pub fn drop_void_arguments(
    statement: &mut datafusion::sql::sqlparser::ast::Statement,
    is_void: &dyn Fn(&str) -> bool,
) {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, Statement, Value};
    let keep = |argument: &FunctionArg| {
        !matches!(argument, FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(value)))
            if matches!(&value.value, Value::Placeholder(name) if is_void(name)))
    };
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(statement, |expression| {
        if let Expr::Function(function) = expression
            && let FunctionArguments::List(list) = &mut function.args
        {
            list.args.retain(keep);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    let Statement::Query(query) = statement else {
        return;
    };
    if let SetExpr::Select(select) = query.body.as_mut() {
        for table in &mut select.from {
            if let TableFactor::Table {
                args: Some(args), ..
            } = &mut table.relation
            {
                args.args.retain(keep);
            }
        }
    }
}
