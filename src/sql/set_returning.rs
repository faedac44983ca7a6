//! Postgres's set-returning jsonb functions as DataFusion plans them: a call in the select list
//! (`SELECT id, jsonb_array_elements(tags) FROM t`) is `unnest` of the function's list form,
//! named after the function as Postgres names it; a call in FROM (`FROM t,
//! jsonb_array_elements(t.tags) AS tag`) is `unnest` there, its column `value` (or, for
//! `jsonb_object_keys`, the alias), as Postgres names it.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArgumentList, FunctionArguments, Ident, ObjectName, ObjectNamePart,
    Query, SelectItem, SetExpr, TableAlias, TableAliasColumnDef, TableFactor, TableFunctionArgs,
    visit_expressions_mut,
};

/// The set-returning functions rewritten here, the list function each expands, and the name of
/// the column a call in FROM gives (`None`: the alias, or the function's name).
const FUNCTIONS: [(&str, &str, Option<&str>); 6] = [
    (
        "jsonb_array_elements",
        "jsonb_array_elements_list",
        Some("value"),
    ),
    (
        "json_array_elements",
        "jsonb_array_elements_list",
        Some("value"),
    ),
    (
        "jsonb_array_elements_text",
        "jsonb_array_elements_text_list",
        Some("value"),
    ),
    (
        "json_array_elements_text",
        "jsonb_array_elements_text_list",
        Some("value"),
    ),
    ("jsonb_object_keys", "jsonb_object_keys_list", None),
    ("json_object_keys", "jsonb_object_keys_list", None),
];

fn list_function(name: &str) -> Option<(&'static str, Option<&'static str>)> {
    FUNCTIONS
        .iter()
        .find(|(function, _, _)| name.eq_ignore_ascii_case(function))
        .map(|(_, list, column)| (*list, *column))
}

fn function_name(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Some(ident.value.to_lowercase()),
        [
            ObjectNamePart::Identifier(schema),
            ObjectNamePart::Identifier(ident),
        ] if schema.value.eq_ignore_ascii_case("pg_catalog") => Some(ident.value.to_lowercase()),
        _ => None,
    }
}

/// The name of a call's one column: the alias's column list, else the function's own column
/// name (`value`), else the alias, else the function's name.
fn call_column(column: Option<&str>, alias: Option<&TableAlias>, function: &str) -> Ident {
    match (column, alias) {
        (_, Some(alias)) if !alias.columns.is_empty() => alias.columns[0].name.clone(),
        (Some(column), _) => Ident::new(column),
        (None, Some(alias)) => alias.name.clone(),
        (None, None) => Ident::new(function),
    }
}

fn call(name: &str, args: FunctionArguments) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args,
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

fn unnest_of(list: &str, args: FunctionArguments) -> Expr {
    call(
        "unnest",
        FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![datafusion::sql::sqlparser::ast::FunctionArg::Unnamed(
                datafusion::sql::sqlparser::ast::FunctionArgExpr::Expr(call(list, args)),
            )],
            clauses: Vec::new(),
        }),
    )
}

/// Rewrites every call of a set-returning jsonb function in `query`.
pub fn rewrite(query: &mut Query) {
    // Select items first, so an unaliased call keeps the function's name.
    name_select_items(query.body.as_mut());
    let _ = visit_expressions_mut(query, |expression| {
        if let Expr::Function(function) = expression
            && let Some(name) = function_name(&function.name)
            && let Some((list, _)) = list_function(&name)
            && function.over.is_none()
        {
            *expression = unnest_of(list, function.args.clone());
        }
        ControlFlow::<()>::Continue(())
    });
    lateral_calls(query);
    rewrite_from(query.body.as_mut());
}

/// A call reading columns of the FROM item before it (`FROM t, jsonb_array_elements(t.tags) AS
/// tag`, `t CROSS JOIN LATERAL ...`, `t JOIN LATERAL ... ON true`), which DataFusion cannot run
/// as a lateral join, becomes `unnest` in the select list of that item: `FROM (SELECT t.*,
/// unnest(jsonb_array_elements_list(t.tags)) AS value FROM t) AS t`, the call's alias in
/// column references (`tag.value`) becoming the item's.
fn lateral_calls(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    for table in &mut select.from {
        if let TableFactor::Derived { subquery, .. } = &mut table.relation {
            lateral_calls(subquery);
        }
    }
    let Some(call) = lateral_call(select) else {
        return;
    };
    let LateralCall {
        source,
        source_alias,
        list,
        arguments,
        call_alias,
        column,
    } = call;
    let arguments = arguments
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let sql =
        format!("SELECT {source_alias}.*, unnest({list}({arguments})) AS {column} FROM {source}");
    let Ok(subquery) = datafusion::sql::sqlparser::parser::Parser::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
    )
    .try_with_sql(&sql)
    .and_then(|mut parser| parser.parse_query()) else {
        return;
    };
    select.from = vec![datafusion::sql::sqlparser::ast::TableWithJoins {
        relation: TableFactor::Derived {
            lateral: false,
            subquery,
            alias: Some(TableAlias {
                explicit: true,
                name: source_alias.clone(),
                columns: Vec::new(),
                at: None,
            }),
            sample: None,
        },
        joins: Vec::new(),
    }];
    if let Some(call_alias) = call_alias {
        let _ = visit_expressions_mut(query, |expression| {
            match expression {
                Expr::CompoundIdentifier(parts)
                    if parts.len() == 2 && parts[0].value == call_alias.value =>
                {
                    parts[0] = source_alias.clone();
                }
                // The alias alone is the call's value, as Postgres reads a whole-row
                // reference to a function of one column.
                Expr::Identifier(name) if name.value == call_alias.value => {
                    *expression =
                        Expr::CompoundIdentifier(vec![source_alias.clone(), column.clone()]);
                }
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
    }
}

struct LateralCall {
    /// The FROM item the call reads, as written (with its alias).
    source: TableFactor,
    /// The name its columns are qualified with.
    source_alias: Ident,
    list: &'static str,
    arguments: Vec<datafusion::sql::sqlparser::ast::FunctionArg>,
    call_alias: Option<Ident>,
    /// The name of the call's one column.
    column: Ident,
}

/// Takes a set-returning call that reads the FROM item before it out of `select`'s FROM, if
/// FROM is that item and the call alone.
fn lateral_call(select: &mut datafusion::sql::sqlparser::ast::Select) -> Option<LateralCall> {
    use datafusion::sql::sqlparser::ast::{JoinConstraint, JoinOperator, Value};
    let (source, call) = match select.from.as_slice() {
        [first, second] if first.joins.is_empty() && second.joins.is_empty() => {
            (&first.relation, &second.relation)
        }
        [only] if only.joins.len() == 1 => {
            let always = |constraint: &JoinConstraint| match constraint {
                JoinConstraint::None => true,
                JoinConstraint::On(Expr::Value(value)) => {
                    matches!(value.value, Value::Boolean(true))
                }
                _ => false,
            };
            match &only.joins[0].join_operator {
                JoinOperator::CrossJoin(constraint)
                | JoinOperator::Join(constraint)
                | JoinOperator::Inner(constraint)
                    if always(constraint) => {}
                _ => return None,
            }
            (&only.relation, &only.joins[0].relation)
        }
        _ => return None,
    };
    let source_alias = match source {
        TableFactor::Table {
            alias: Some(alias), ..
        }
        | TableFactor::Derived {
            alias: Some(alias), ..
        } => alias.name.clone(),
        TableFactor::Table {
            name, alias: None, ..
        } => name.0.last()?.as_ident()?.clone(),
        _ => return None,
    };
    let (name, arguments, alias) = match call {
        TableFactor::Table {
            name,
            args: Some(TableFunctionArgs { args, .. }),
            alias,
            ..
        } => (name, args, alias),
        TableFactor::Function {
            name, args, alias, ..
        } => (name, args, alias),
        _ => return None,
    };
    let function = function_name(name)?;
    let (list, column) = list_function(&function)?;
    // A call of constants is an UNNEST of its own (see `rewrite_factor`).
    let mut reads_columns = false;
    for argument in arguments {
        let mut argument = argument.clone();
        let _ = visit_expressions_mut(&mut argument, |expression| {
            if matches!(
                expression,
                Expr::Identifier(_) | Expr::CompoundIdentifier(_)
            ) {
                reads_columns = true;
            }
            ControlFlow::<()>::Continue(())
        });
    }
    if !reads_columns {
        return None;
    }
    let column = call_column(column, alias.as_ref(), &function);
    let lateral = LateralCall {
        source: source.clone(),
        source_alias,
        list,
        arguments: arguments.clone(),
        call_alias: alias.as_ref().map(|alias| alias.name.clone()),
        column,
    };
    Some(lateral)
}

fn name_select_items(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(Expr::Function(function)) = item
                    && let Some(name) = function_name(&function.name)
                    && list_function(&name).is_some()
                {
                    *item = SelectItem::ExprWithAlias {
                        expr: Expr::Function(function.clone()),
                        alias: Ident::new(name),
                    };
                }
            }
            for table in &mut select.from {
                for factor in std::iter::once(&mut table.relation)
                    .chain(table.joins.iter_mut().map(|join| &mut join.relation))
                {
                    if let TableFactor::Derived { subquery, .. } = factor {
                        name_select_items(subquery.body.as_mut());
                    }
                }
            }
        }
        SetExpr::Query(query) => name_select_items(query.body.as_mut()),
        SetExpr::SetOperation { left, right, .. } => {
            name_select_items(left);
            name_select_items(right);
        }
        _ => {}
    }
}

fn rewrite_from(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for table in &mut select.from {
                for factor in std::iter::once(&mut table.relation)
                    .chain(table.joins.iter_mut().map(|join| &mut join.relation))
                {
                    rewrite_factor(factor);
                }
            }
        }
        SetExpr::Query(query) => rewrite_from(query.body.as_mut()),
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_from(left);
            rewrite_from(right);
        }
        _ => {}
    }
}

/// `jsonb_array_elements(x) AS e` in FROM becomes `unnest(jsonb_array_elements_list(x)) AS
/// e(value)`.
fn rewrite_factor(factor: &mut TableFactor) {
    match factor {
        TableFactor::Table {
            name,
            alias,
            args: Some(TableFunctionArgs { args, .. }),
            ..
        } => {
            let Some(function) = function_name(name) else {
                return;
            };
            let Some((list, column)) = list_function(&function) else {
                return;
            };
            let column = call_column(column, alias.as_ref(), &function);
            let arguments = FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: None,
                args: args.clone(),
                clauses: Vec::new(),
            });
            let table_alias = TableAlias {
                explicit: true,
                name: alias
                    .as_ref()
                    .map(|alias| alias.name.clone())
                    .unwrap_or_else(|| Ident::new(function.clone())),
                columns: vec![TableAliasColumnDef {
                    name: column,
                    data_type: None,
                }],
                at: None,
            };
            *factor = TableFactor::UNNEST {
                alias: Some(table_alias),
                array_exprs: vec![call(list, arguments)],
                with_offset: false,
                with_offset_alias: None,
                with_ordinality: false,
            };
        }
        TableFactor::Derived { subquery, .. } => rewrite_from(subquery.body.as_mut()),
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => {
            rewrite_factor(&mut table_with_joins.relation);
            for join in &mut table_with_joins.joins {
                rewrite_factor(&mut join.relation);
            }
        }
        _ => {}
    }
}
