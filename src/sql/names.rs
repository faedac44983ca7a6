//! Output column names as Postgres gives them (`count`, not DataFusion's `count(*)`).

use datafusion::sql::sqlparser::ast::{Expr, Ident, Query, SelectItem, SetExpr, TableFactor};

use super::identifier;

/// One entry per item of the outermost SELECT list: the Postgres name for an unaliased or aliased
/// expression, or `Wildcard` for `*` and `t.*` (whose columns keep their own names).
#[derive(Debug, Clone, PartialEq)]
pub enum OutputName {
    Named(String),
    Wildcard,
}

/// The names Postgres would give the output columns of `query`, or `None` if the query's shape
/// leaves DataFusion's names in place (VALUES, for instance).
pub fn output_names(query: &Query) -> Option<Vec<OutputName>> {
    let mut body = query.body.as_ref();
    // For set operations Postgres takes the names of the leftmost SELECT.
    loop {
        match body {
            SetExpr::SetOperation { left, .. } => body = left.as_ref(),
            SetExpr::Query(inner) => body = inner.body.as_ref(),
            _ => break,
        }
    }
    let SetExpr::Select(select) = body else {
        return None;
    };
    Some(
        select
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::UnnamedExpr(expression) => OutputName::Named(figure_name(expression)),
                SelectItem::ExprWithAlias { alias, .. } => OutputName::Named(identifier(alias)),
                SelectItem::ExprWithAliases { aliases, .. } => OutputName::Named(
                    aliases
                        .first()
                        .map(identifier)
                        .unwrap_or_else(|| "?column?".into()),
                ),
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(_, _) => {
                    OutputName::Wildcard
                }
            })
            .collect(),
    )
}

/// Postgres lets two output columns share a name (`SELECT count(*), count(*)`); DataFusion does
/// not. Items of a plain SELECT whose Postgres names collide get unique aliases for planning; the
/// result columns are renamed back to the Postgres names afterwards.
pub fn alias_duplicates(query: &Query) -> Option<Query> {
    let names = output_names(query)?;
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let duplicated = |name: &OutputName| {
        matches!(name, OutputName::Named(_))
            && names.iter().filter(|other| *other == name).count() > 1
    };
    if !names.iter().any(duplicated) {
        return None;
    }
    let mut select = select.as_ref().clone();
    for (index, (item, name)) in select.projection.iter_mut().zip(&names).enumerate() {
        let OutputName::Named(text) = name else {
            continue;
        };
        if !duplicated(name) {
            continue;
        }
        let expression = match item {
            SelectItem::UnnamedExpr(expression) => expression.clone(),
            SelectItem::ExprWithAlias { expr, .. } => expr.clone(),
            _ => continue,
        };
        *item = SelectItem::ExprWithAlias {
            expr: expression,
            alias: Ident::with_quote('"', format!("{text}#{index}")),
        };
    }
    let mut rewritten = query.clone();
    rewritten.body = Box::new(SetExpr::Select(Box::new(select)));
    Some(rewritten)
}

/// Gives the unaliased expressions of derived tables and CTEs their Postgres names as aliases,
/// so that `SELECT * FROM (SELECT current_database(), ...) AS c` (PgJDBC 42.7.5's getColumns)
/// has a column `current_database`, not DataFusion's `current_database()`. Names that two
/// items would share, and `?column?`, are left to DataFusion.
pub fn name_derived_columns(query: &mut Query) {
    if let Some(with) = &mut query.with {
        for table in &mut with.cte_tables {
            name_select_items(&mut table.query);
            name_derived_columns(&mut table.query);
        }
    }
    name_in_body(query.body.as_mut());
}

fn name_in_body(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for table in &mut select.from {
                name_in_factor(&mut table.relation);
                for join in &mut table.joins {
                    name_in_factor(&mut join.relation);
                }
            }
        }
        SetExpr::Query(query) => name_derived_columns(query),
        SetExpr::SetOperation { left, right, .. } => {
            name_in_body(left);
            name_in_body(right);
        }
        _ => {}
    }
}

fn name_in_factor(factor: &mut TableFactor) {
    match factor {
        TableFactor::Derived { subquery, .. } => {
            name_select_items(subquery);
            name_derived_columns(subquery);
        }
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => {
            name_in_factor(&mut table_with_joins.relation);
            for join in &mut table_with_joins.joins {
                name_in_factor(&mut join.relation);
            }
        }
        _ => {}
    }
}

/// Aliases the unaliased, non-column items of a query's own SELECT with their Postgres names.
fn name_select_items(query: &mut Query) {
    let Some(names) = output_names(query) else {
        return;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    for (item, name) in select.projection.iter_mut().zip(&names) {
        let OutputName::Named(text) = name else {
            continue;
        };
        let unique = names.iter().filter(|other| *other == name).count() == 1;
        if let SelectItem::UnnamedExpr(expression) = item
            && unique
            && text != "?column?"
            && !matches!(
                expression,
                Expr::Identifier(_) | Expr::CompoundIdentifier(_)
            )
        {
            *item = SelectItem::ExprWithAlias {
                expr: expression.clone(),
                alias: Ident::with_quote('"', text.clone()),
            };
        }
    }
}

/// Applies `names` to `actual` (the planned columns' names): named items by position; a single
/// wildcard spans whatever columns the named items leave. With several wildcards the planned
/// names stay.
pub fn apply(names: &[OutputName], actual: &[String]) -> Vec<String> {
    let wildcards = names
        .iter()
        .filter(|name| **name == OutputName::Wildcard)
        .count();
    if wildcards > 1
        || (wildcards == 0 && names.len() != actual.len())
        || names.len() - wildcards > actual.len()
    {
        return actual.to_vec();
    }
    let wildcard_width = actual.len() - (names.len() - wildcards);
    let mut result = Vec::with_capacity(actual.len());
    let mut position = 0;
    for name in names {
        match name {
            OutputName::Named(name) => {
                result.push(name.clone());
                position += 1;
            }
            OutputName::Wildcard => {
                result.extend(actual[position..position + wildcard_width].iter().cloned());
                position += wildcard_width;
            }
        }
    }
    result
}

/// Postgres's FigureColname: the column name of an unaliased expression.
fn figure_name(expression: &Expr) -> String {
    figure(expression).unwrap_or_else(|| "?column?".to_string())
}

fn figure(expression: &Expr) -> Option<String> {
    match expression {
        Expr::Identifier(ident) => Some(identifier(ident)),
        Expr::CompoundIdentifier(parts) => parts.last().map(identifier),
        Expr::Function(function) => function
            .name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map(identifier),
        Expr::Nested(inner) => figure(inner),
        Expr::Cast {
            expr, data_type, ..
        } => figure(expr).or_else(|| Some(type_name(data_type))),
        Expr::Case { .. } => Some("case".into()),
        Expr::TypedString(typed) => Some(type_name(&typed.data_type)),
        Expr::Interval(_) => Some("interval".into()),
        Expr::Array(_) => Some("array".into()),
        Expr::Exists { .. } => Some("exists".into()),
        Expr::Extract { .. } => Some("extract".into()),
        Expr::Substring { .. } => Some("substring".into()),
        Expr::Position { .. } => Some("position".into()),
        Expr::Trim { .. } => Some("btrim".into()),
        Expr::Ceil { .. } => Some("ceil".into()),
        Expr::Floor { .. } => Some("floor".into()),
        Expr::Overlay { .. } => Some("overlay".into()),
        Expr::Collate { expr, .. } => figure(expr),
        // A scalar subquery's column is named after the one column it selects.
        Expr::Subquery(query) => match output_names(query)?.into_iter().next()? {
            OutputName::Named(name) => Some(name),
            OutputName::Wildcard => None,
        },
        _ => None,
    }
}

/// The Postgres internal name of a type, which Postgres uses to name a cast column.
fn type_name(data_type: &datafusion::sql::sqlparser::ast::DataType) -> String {
    use datafusion::sql::sqlparser::ast::DataType as SqlType;
    match data_type {
        SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) => "int4".into(),
        SqlType::BigInt(_) | SqlType::Int8(_) => "int8".into(),
        SqlType::SmallInt(_) | SqlType::Int2(_) => "int2".into(),
        SqlType::Real | SqlType::Float4 => "float4".into(),
        SqlType::DoublePrecision | SqlType::Float8 | SqlType::Double(_) => "float8".into(),
        SqlType::Numeric(_) | SqlType::Decimal(_) => "numeric".into(),
        SqlType::Boolean | SqlType::Bool => "bool".into(),
        SqlType::Varchar(_) | SqlType::CharacterVarying(_) => "varchar".into(),
        SqlType::Timestamp(_, timezone) => {
            use datafusion::sql::sqlparser::ast::TimezoneInfo;
            match timezone {
                TimezoneInfo::WithTimeZone | TimezoneInfo::Tz => "timestamptz".into(),
                _ => "timestamp".into(),
            }
        }
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> Vec<OutputName> {
        let statements = crate::sql::parse(sql).expect("parses");
        let crate::sql::Statement::Standard(datafusion::sql::sqlparser::ast::Statement::Query(
            query,
        )) = &statements[0]
        else {
            panic!("not a query")
        };
        output_names(query).expect("select")
    }

    #[test]
    fn postgres_names() {
        assert_eq!(
            names(
                "SELECT count(*), sum(t.x), x, t.y AS Z, 1, x::int, CASE WHEN x THEN 1 END, TIMESTAMP '2020-01-01' FROM t"
            ),
            [
                "count",
                "sum",
                "x",
                "z",
                "?column?",
                "x",
                "case",
                "timestamp"
            ]
            .map(|n| OutputName::Named(n.to_string()))
            .to_vec()
        );
    }

    #[test]
    fn wildcard_spans_the_rest() {
        let applied = apply(
            &[OutputName::Named("count".into()), OutputName::Wildcard],
            &["count(*)".into(), "a".into(), "b".into()],
        );
        assert_eq!(applied, vec!["count", "a", "b"]);
    }
}
