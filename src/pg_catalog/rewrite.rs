//! The queries clients send about the catalog, rewritten into SQL DataFusion plans:
//! datafusion-pg-catalog's rules (`OPERATOR(pg_catalog.~)`, `COLLATE`, `::regclass`, qualified
//! function names, ...) and its replacements for psql queries not worth planning.

use std::ops::ControlFlow;
use std::sync::OnceLock;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, ObjectName,
    SelectItem, SetExpr, Statement, Value, visit_expressions, visit_expressions_mut,
    visit_relations,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

/// Functions about the catalog whose names do not start with `pg_`.
const CATALOG_FUNCTIONS: &[&str] = &[
    "to_regtype",
    "to_regclass",
    "format_type",
    "obj_description",
    "col_description",
    "shobj_description",
    "has_table_privilege",
    "has_schema_privilege",
    "has_database_privilege",
    "current_schemas",
];

/// Whether a statement reads the catalogs: a relation of pg_catalog or information_schema (or
/// named `pg_...`), a `pg_...` or `pg_catalog.` function, or a cast to a `reg...` type. Only
/// those go through the rewrite, whose rules are meant for catalog queries (one drops
/// subqueries from SELECT lists).
fn reads_catalog(statement: &Statement) -> bool {
    let catalog_name = |name: &ObjectName| {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|part| part.as_ident())
            .map(|ident| ident.value.to_ascii_lowercase())
            .collect();
        parts
            .iter()
            .any(|part| part == "pg_catalog" || part == "information_schema")
            || parts.last().is_some_and(|last| {
                last.starts_with("pg_") || CATALOG_FUNCTIONS.contains(&last.as_str())
            })
    };
    let relations = visit_relations(statement, |relation| {
        if catalog_name(relation) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    if relations.is_break() {
        return true;
    }
    visit_expressions(statement, |expression| match expression {
        Expr::Function(function) if catalog_name(&function.name) => ControlFlow::Break(()),
        Expr::Cast { data_type, .. }
            if data_type.to_string().to_ascii_lowercase().contains("reg") =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// Runs `rule` on every expression of `statement`, innermost first.
fn apply(statement: &mut Statement, rule: fn(&mut Expr)) {
    let _ = visit_expressions_mut(statement, |expression| {
        rule(expression);
        ControlFlow::<()>::Continue(())
    });
}

/// `statement` (parsed from `text`) as DataFusion can plan it: rewritten when it reads the
/// catalogs, unchanged otherwise or when the rewrite does not give one statement back.
pub fn for_catalog_queries(text: &str, mut statement: Statement) -> Statement {
    if !matches!(statement, Statement::Query(_)) {
        return statement;
    }
    let with_catalog_oids = system_catalog_casts(text);
    let text = with_catalog_oids.as_deref().unwrap_or(text);
    apply(&mut statement, like_escapes);
    apply(&mut statement, current_catalog);
    if !reads_catalog(&statement) {
        return statement;
    }
    // The library parses the text again, so the rewrites above run again after it.
    static PARSER: OnceLock<PostgresCompatibilityParser> = OnceLock::new();
    let parser = PARSER.get_or_init(PostgresCompatibilityParser::new);
    // Its replacement list turns Grafana's search_path lookup (`trim(s[i]) = '"$user"' THEN
    // user ...`) into '' for servers without current_setting(), which makes Grafana's table
    // list empty; Tributary has current_setting(), so that query keeps its text and only the
    // library's rewrite rules run.
    let grafana_search_path = text.contains(r#"'"$user"'"#)
        && text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains(r#"'"$user"' THEN user"#);
    let mut statement = if grafana_search_path {
        parser.rewrite(statement)
    } else {
        match parser.parse(text) {
            // Parsed again, long AND and OR chains are long again (`sql::depth`).
            Ok(mut statements) if statements.len() == 1 => match statements.pop() {
                Some(mut reparsed) => match crate::sql::depth::bound(&mut reparsed) {
                    Ok(()) => reparsed,
                    Err(_) => statement,
                },
                None => statement,
            },
            _ => statement,
        }
    };
    apply(&mut statement, empty_relation_options);
    apply(&mut statement, array_subqueries);
    apply(&mut statement, view_definitions);
    apply(&mut statement, name_to_oid);
    apply(&mut statement, like_escapes);
    apply(&mut statement, current_catalog);
    apply(&mut statement, information_schema_functions);
    apply(&mut statement, record_fields);
    apply(&mut statement, expand_arrays);
    apply(&mut statement, function_names);
    apply(&mut statement, composite_type_attributes);
    apply(&mut statement, oid_parameters);
    apply(&mut statement, scalar_subqueries);
    apply(&mut statement, index_keys);
    apply(&mut statement, key_subscripts);
    apply(&mut statement, type_names);
    statement
}

/// `x::regtype::text` (pgcli's column completion, asyncpg's type introspection) is the type's
/// name in Postgres, which is `format_type(x, NULL)` (`-` for 0); the library's regtype prints
/// the number.
fn type_names(expression: &mut Expr) {
    use datafusion::sql::sqlparser::ast::DataType as SqlType;
    let Expr::Cast {
        expr: inner,
        data_type: SqlType::Text,
        ..
    } = expression
    else {
        return;
    };
    let Expr::Cast {
        expr: oid,
        data_type: SqlType::Custom(name, modifiers),
        ..
    } = inner.as_ref()
    else {
        return;
    };
    if modifiers.is_empty()
        && last_name_is(name, "regtype")
        && let Some(call) = parse_expr(&format!(
            "CASE WHEN ({oid}) = 0 THEN '-' ELSE format_type({oid}, NULL) END"
        ))
    {
        *expression = call;
    }
}

/// `con.conkey[pos.n]`, `tmp.I_INDOPTION[k]` (PgJDBC's key and index lookups): the library holds
/// these int2vector and array columns as text, which DataFusion cannot subscript; the element
/// comes from the column's numbers (`pg_key_elements`). An int2vector or oidvector (`ind...`)
/// counts from 0, an array (`con...`) from 1, as in Postgres.
fn key_subscripts(expression: &mut Expr) {
    use datafusion::sql::sqlparser::ast::Subscript;
    let Expr::CompoundFieldAccess { root, access_chain } = expression else {
        return;
    };
    // `con.conkey[1]` is the root `con`, then `.conkey`, then `[1]`.
    let Some((AccessExpr::Subscript(Subscript::Index { index }), before)) =
        access_chain.split_last()
    else {
        return;
    };
    let array = if before.is_empty() {
        root.as_ref().clone()
    } else {
        Expr::CompoundFieldAccess {
            root: root.clone(),
            access_chain: before.to_vec(),
        }
    };
    let column = array.to_string().to_ascii_lowercase();
    let column = column.rsplit('.').next().unwrap_or_default();
    let vectors = ["indkey", "indclass", "indoption", "indcollation"];
    let arrays = ["conkey", "confkey", "conpfeqop"];
    // PgJDBC's getIndexInfo subscripts `indoption` under the alias `I_INDOPTION`.
    let position = if vectors.iter().any(|key| column.ends_with(key)) {
        format!("({index}) + 1")
    } else if arrays.iter().any(|key| column.ends_with(key)) {
        format!("({index})")
    } else {
        return;
    };
    let replacement =
        format!("CAST(array_element(pg_key_elements({array}), {position}) AS SMALLINT)");
    if let Some(element) = parse_expr(&replacement) {
        *expression = element;
    }
}

/// `information_schema._pg_expandarray(i.indkey)` (PgJDBC's getPrimaryKeys and getIndexInfo),
/// a set-returning function in a SELECT list, expands to a row per key column: the same as
/// `unnest` of the records `pg_expandarray` makes (the schema is already gone, see
/// [`information_schema_functions`]).
fn expand_arrays(expression: &mut Expr) {
    let Some(argument) = first_argument_of(expression, "_pg_expandarray") else {
        return;
    };
    if let Some(call) = parse_expr(&format!("unnest(pg_expandarray({argument}))")) {
        *expression = call;
    }
}

/// A parameter cast to `oid` or `oid[]` (`ti.oid = any($1::oid[])`, asyncpg's type
/// introspection) is cast to an unsigned integer instead, which the server describes to the
/// client as `oid` / `oid[]` (`server::types`): asyncpg binds its own introspection's
/// parameters only with the codecs it has built in, and `int4[]` is not one of them.
fn oid_parameters(expression: &mut Expr) {
    use datafusion::sql::sqlparser::ast::{ArrayElemTypeDef, DataType as SqlType};
    let Expr::Cast {
        expr, data_type, ..
    } = expression
    else {
        return;
    };
    if !matches!(expr.as_ref(), Expr::Value(value) if matches!(value.value, Value::Placeholder(_)))
    {
        return;
    }
    let is_oid = |data_type: &SqlType| {
        matches!(data_type, SqlType::Custom(name, modifiers)
            if modifiers.is_empty() && last_name_is(name, "oid"))
    };
    match data_type {
        SqlType::Array(
            ArrayElemTypeDef::SquareBracket(element, _) | ArrayElemTypeDef::AngleBracket(element),
        ) if is_oid(element) => **element = SqlType::IntUnsigned(None),
        single if is_oid(single) => *single = SqlType::IntUnsigned(None),
        _ => {}
    }
}

/// `CASE WHEN t.typtype = 'c' THEN (SELECT array_agg(...) ...) ELSE NULL END`, a composite
/// type's attribute types or names (asyncpg's type introspection), is a NULL `text[]`: there
/// are no composite types. Typed so: asyncpg decodes its own introspection's result with the
/// codecs it has built in, which cover `text[]` and not the `int4[]` array_agg would give.
fn composite_type_attributes(expression: &mut Expr) {
    let Expr::Case {
        operand: None,
        conditions,
        else_result,
        ..
    } = expression
    else {
        return;
    };
    let asks_composite = matches!(conditions.as_slice(), [when] if when.condition.to_string()
        .to_ascii_lowercase()
        .replace(' ', "")
        .ends_with("typtype='c'"));
    let otherwise_null = else_result
        .as_deref()
        .is_none_or(|result| matches!(result, Expr::Value(value) if value.value == Value::Null));
    if asks_composite
        && otherwise_null
        && let Some(null) = parse_expr("CAST(NULL AS text[])")
    {
        *expression = null;
    }
}

/// SQL's special functions written without parentheses: `current_catalog` (PgJDBC's
/// getSchemas selects it) is `current_database()`; `user` and `current_role` (Grafana's table
/// list compares schemas with `user`), `current_user` and `session_user` name the user. All
/// are reserved words in Postgres, never columns.
fn current_catalog(expression: &mut Expr) {
    // sqlparser reads each as a function call without parentheses, or as a column.
    let name = match expression {
        Expr::Identifier(ident) if ident.quote_style.is_none() => ident.value.to_ascii_lowercase(),
        Expr::Function(function) if matches!(function.args, FunctionArguments::None) => function
            .name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map(|ident| ident.value.to_ascii_lowercase())
            .unwrap_or_default(),
        _ => return,
    };
    let call = match name.as_str() {
        "current_catalog" => "current_database()",
        "user" | "current_user" | "current_role" => "current_user()",
        "session_user" => "session_user()",
        _ => return,
    };
    if let Some(call) = parse_expr(call) {
        *expression = call;
    }
}

/// `(record).field` (PgJDBC reads `(information_schema._pg_expandarray(i.indkey)).n`), which
/// DataFusion's SQL planner refuses on an expression, becomes `get_field(record, 'field')`.
fn record_fields(expression: &mut Expr) {
    let Expr::CompoundFieldAccess { root, access_chain } = expression else {
        return;
    };
    let mut sql = root.to_string();
    for access in access_chain.iter() {
        match access {
            AccessExpr::Dot(Expr::Identifier(field)) => {
                sql = format!("get_field({sql}, '{}')", field.value.replace('\'', "''"));
            }
            _ => return,
        }
    }
    if let Some(call) = parse_expr(&sql) {
        *expression = call;
    }
}

/// `information_schema._pg_expandarray(...)`: functions are registered without a schema.
fn information_schema_functions(expression: &mut Expr) {
    if let Expr::Function(function) = expression
        && function.name.0.len() == 2
        && function.name.0[0]
            .as_ident()
            .is_some_and(|schema| schema.value.eq_ignore_ascii_case("information_schema"))
    {
        function.name.0.remove(0);
    }
}

/// `typinput = 'pg_catalog.array_in'::regproc` (PgJDBC asks so whether a type is an array):
/// the library's regproc columns of pg_type hold function names, while its rewrite of the cast
/// looks the function's oid up in pg_proc. Compared with such a column, the cast (or that
/// lookup) becomes the bare function name.
/// pg_type's columns naming functions.
const FUNCTION_NAME_COLUMNS: [&str; 4] = ["typinput", "typoutput", "typreceive", "typsend"];

fn function_names(expression: &mut Expr) {
    let Expr::BinaryOp { left, right, .. } = expression else {
        return;
    };
    let names_function = |column: &Expr| {
        let text = column.to_string().to_ascii_lowercase();
        FUNCTION_NAME_COLUMNS
            .iter()
            .any(|name| text.rsplit('.').next() == Some(name))
    };
    if names_function(left)
        && let Some(name) = function_name(right)
    {
        **right = Expr::value(Value::SingleQuotedString(name));
    } else if names_function(right)
        && let Some(name) = function_name(left)
    {
        **left = Expr::value(Value::SingleQuotedString(name));
    }
}

/// The function a `'name'::regproc` cast, or the library's pg_proc lookup of one, names,
/// without its schema.
fn function_name(expression: &Expr) -> Option<String> {
    let quoted = match expression {
        Expr::Cast {
            expr, data_type, ..
        } if data_type
            .to_string()
            .to_ascii_lowercase()
            .ends_with("regproc") =>
        {
            expr.to_string()
        }
        Expr::Subquery(query) => {
            let text = query.to_string();
            let lookup = text.find("proname = ")?;
            if !text.contains("pg_proc") {
                return None;
            }
            text[lookup + "proname = ".len()..].to_string()
        }
        _ => return None,
    };
    let name = quoted.strip_prefix('\'')?.split('\'').next()?;
    Some(name.rsplit('.').next().unwrap_or(name).to_string())
}

/// psql 15's `\d+` lists a relation's storage options with
/// `array_to_string(c.reloptions || array(select ... unnest(tc.reloptions) ...), ', ')`;
/// Tributary's relations have none, so the call becomes `''`.
fn empty_relation_options(expression: &mut Expr) {
    let Expr::Function(function) = expression else {
        return;
    };
    let named = last_name_is(&function.name, "array_to_string");
    let FunctionArguments::List(arguments) = &function.args else {
        return;
    };
    let reads_options = arguments.args.first().is_some_and(|argument| {
        matches!(argument, FunctionArg::Unnamed(FunctionArgExpr::Expr(first))
            if first.to_string().to_ascii_lowercase().contains("reloptions"))
    });
    if named && reads_options {
        *expression = Expr::value(Value::SingleQuotedString(String::new()));
    }
}

/// `ARRAY(SELECT x ...)` (psql's `\du` lists role memberships so), which DataFusion does not
/// know, becomes the scalar subquery `(SELECT array_agg(element) FROM (SELECT x ...) AS
/// array_subquery(element))`, which it decorrelates.
fn array_subqueries(expression: &mut Expr) {
    let Expr::Function(function) = expression else {
        return;
    };
    let FunctionArguments::Subquery(query) = &function.args else {
        return;
    };
    if !function.name.to_string().eq_ignore_ascii_case("array") {
        return;
    }
    let sql = format!(
        "SELECT array_agg(array_subquery.element) FROM ({query}) AS array_subquery(element)"
    );
    if let Some(query) = parse_query(&sql) {
        *expression = Expr::Subquery(query);
    }
}

/// `pg_get_viewdef(oid [, pretty])` becomes a subquery over pg_views and pg_matviews (which
/// hold the definitions) joined with pg_class (which numbers the relations).
fn view_definitions(expression: &mut Expr) {
    let Some(relation) = first_argument_of(expression, "pg_get_viewdef") else {
        return;
    };
    let sql = format!(
        "SELECT views.definition FROM pg_catalog.pg_class AS classes \
         JOIN (SELECT viewname AS name, definition FROM pg_catalog.pg_views \
               UNION ALL SELECT matviewname, definition FROM pg_catalog.pg_matviews) AS views \
         ON views.name = classes.relname WHERE classes.oid = ({relation})"
    );
    if let Some(query) = parse_query(&sql) {
        *expression = Expr::Subquery(query);
    }
}

/// `to_regtype(name)` and `to_regclass(name)`: the oid of the type or relation so named, or
/// NULL, as subqueries over pg_type and pg_class (names without a schema).
fn name_to_oid(expression: &mut Expr) {
    for (function, table, column) in [
        ("to_regtype", "pg_type", "typname"),
        ("to_regclass", "pg_class", "relname"),
    ] {
        if let Some(argument) = first_argument_of(expression, function) {
            let sql = format!(
                "SELECT max(oid) FROM pg_catalog.{table} WHERE {column} = CAST(({argument}) AS TEXT)"
            );
            if let Some(query) = parse_query(&sql) {
                *expression = Expr::Subquery(query);
            }
            break;
        }
    }
}

/// The oids Postgres gives its system catalogs, fixed in its headers. Catalog queries name them
/// with `'pg_rewrite'::regclass` (dbt's view dependencies, pg_depend's `classid`), and pg_class
/// here lists only the user's relations.
const SYSTEM_CATALOG_OIDS: &[(&str, i64)] = &[
    ("pg_aggregate", 2600),
    ("pg_am", 2601),
    ("pg_attrdef", 2604),
    ("pg_attribute", 1249),
    ("pg_authid", 1260),
    ("pg_cast", 2605),
    ("pg_class", 1259),
    ("pg_collation", 3456),
    ("pg_constraint", 2606),
    ("pg_database", 1262),
    ("pg_depend", 2608),
    ("pg_description", 2609),
    ("pg_enum", 3501),
    ("pg_extension", 3079),
    ("pg_index", 2610),
    ("pg_inherits", 2611),
    ("pg_language", 2612),
    ("pg_namespace", 2615),
    ("pg_opclass", 2616),
    ("pg_operator", 2617),
    ("pg_proc", 1255),
    ("pg_range", 3541),
    ("pg_rewrite", 2618),
    ("pg_sequence", 2224),
    ("pg_shdescription", 2396),
    ("pg_statistic", 2619),
    ("pg_tablespace", 1213),
    ("pg_trigger", 2620),
    ("pg_type", 1247),
];

/// `text` with each `'pg_class'::regclass` (or `'pg_catalog.pg_class'::pg_catalog.regclass`)
/// naming a system catalog replaced by the catalog's oid; `None` when there is none. Done on
/// the text, which the library parses again, before its rule turns the cast into a lookup in
/// pg_class.
fn system_catalog_casts(text: &str) -> Option<String> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let mut tokens = Tokenizer::new(&PostgreSqlDialect {}, text)
        .tokenize()
        .ok()?;
    let word_is = |token: Option<&Token>, expected: &str| matches!(token, Some(Token::Word(word)) if word.value.eq_ignore_ascii_case(expected));
    let mut replaced = false;
    let mut index = 0;
    while index < tokens.len() {
        let oid = match &tokens[index] {
            Token::SingleQuotedString(name) => {
                let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
                SYSTEM_CATALOG_OIDS
                    .iter()
                    .find(|(catalog, _)| *catalog == name)
                    .map(|(_, oid)| *oid)
            }
            _ => None,
        };
        let Some(oid) = oid else {
            index += 1;
            continue;
        };
        // `::regclass` or `::pg_catalog.regclass` right after the literal.
        let cast_length = match (tokens.get(index + 1), tokens.get(index + 2)) {
            (Some(Token::DoubleColon), next) if word_is(next, "regclass") => 2,
            (Some(Token::DoubleColon), next)
                if word_is(next, "pg_catalog")
                    && tokens.get(index + 3) == Some(&Token::Period)
                    && word_is(tokens.get(index + 4), "regclass") =>
            {
                4
            }
            _ => 0,
        };
        if cast_length > 0 {
            tokens.splice(
                index..=index + cast_length,
                [Token::Number(oid.to_string(), false)],
            );
            replaced = true;
        }
        index += 1;
    }
    replaced.then(|| tokens.iter().map(ToString::to_string).collect())
}

/// `x LIKE pattern ESCAPE 'c'` (SQLAlchemy escapes with '/'): DataFusion knows only the
/// backslash, so the pattern's backslashes are doubled and its escape character becomes a
/// backslash. (A doubled escape character then reads as an escaped backslash.)
fn like_escapes(expression: &mut Expr) {
    let (Expr::Like {
        pattern,
        escape_char,
        ..
    }
    | Expr::ILike {
        pattern,
        escape_char,
        ..
    }) = expression
    else {
        return;
    };
    let Some(Value::SingleQuotedString(escape)) = escape_char.as_ref().map(|c| &c.value) else {
        return;
    };
    if escape == "\\" {
        return;
    }
    let sql = format!(
        "replace(replace({pattern}, '\\', '\\\\'), '{}', '\\')",
        escape.replace('\'', "''")
    );
    if let Some(rewritten) = parse_expr(&sql) {
        **pattern = rewritten;
        *escape_char = None;
    }
}

/// Catalog queries look up one value with a correlated subquery that is not an aggregate
/// (`(SELECT collname FROM pg_collation WHERE oid = a.attcollation)`), which DataFusion cannot
/// decorrelate. One that selects a column takes `max()` of it (at most one row matches a
/// catalog key); one that computes something (`pg_get_expr(...)` of a default,
/// `json_build_object(...)` of an identity) asks about what Tributary does not have, and is
/// NULL.
fn scalar_subqueries(expression: &mut Expr) {
    let Expr::Subquery(query) = expression else {
        return;
    };
    // A recursive one walks a hierarchy Tributary's catalog does not have: asyncpg's type
    // introspection follows a domain's base types (`WITH RECURSIVE typebases ...`), and there
    // are no domains.
    if query.with.as_ref().is_some_and(|with| with.recursive) {
        *expression = Expr::value(Value::Null);
        return;
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(keys, _) if keys.is_empty());
    if grouped || select.projection.len() != 1 || aggregates(&select.projection[0]) {
        return;
    }
    let (SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }) =
        &mut select.projection[0]
    else {
        return;
    };
    match value {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
            if let Some(maximum) = parse_expr(&format!("max({value})")) {
                *value = maximum;
            }
        }
        _ => *expression = Expr::value(Value::Null),
    }
}

/// Whether a SELECT item calls an aggregate (of those catalog queries use).
fn aggregates(item: &SelectItem) -> bool {
    let text = item.to_string().to_ascii_lowercase();
    [
        "count(",
        "max(",
        "min(",
        "sum(",
        "array_agg(",
        "string_agg(",
        "bool_or(",
        "bool_and(",
    ]
    .iter()
    .any(|aggregate| text.contains(aggregate))
}

/// SQLAlchemy lists index and constraint columns with `unnest(indkey)` (and indclass, conkey,
/// ...) and `generate_subscripts(indkey, 1)`, over int2vectors and arrays the library holds as
/// text and DataFusion lacks generate_subscripts: both become `unnest` of the column's numbers
/// (`pg_key_elements`) or their positions (`pg_key_subscripts`), which DataFusion expands side
/// by side in one SELECT list as Postgres does.
fn index_keys(expression: &mut Expr) {
    let replacement = if let Some(argument) = first_argument_of(expression, "generate_subscripts") {
        // The dimension stays in the call: SQLAlchemy binds it as a parameter
        // (`$1::INTEGER`), which must still be there to be described as an int.
        let dimension = match argument_of(expression, "generate_subscripts", 1) {
            Some(dimension) => format!(", {dimension}"),
            None => String::new(),
        };
        format!("unnest(pg_key_subscripts({argument}{dimension}))")
    } else if let Some(argument) = first_argument_of(expression, "unnest") {
        if !matches!(argument, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
            return;
        }
        let text = argument.to_string().to_ascii_lowercase();
        let column = text.rsplit('.').next().unwrap_or_default();
        if !(column.starts_with("ind") || column.starts_with("con")) {
            return;
        }
        format!("unnest(pg_key_elements({argument}))")
    } else {
        return;
    };
    if let Some(call) = parse_expr(&replacement) {
        *expression = call;
    }
}

/// Whether the last part of a (possibly schema-qualified) name is `wanted`.
fn last_name_is(name: &ObjectName, wanted: &str) -> bool {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .is_some_and(|ident| ident.value.eq_ignore_ascii_case(wanted))
}

/// The first argument of a call to `function`, when `expression` is one.
fn first_argument_of(expression: &Expr, function: &str) -> Option<Expr> {
    argument_of(expression, function, 0)
}

/// The argument at `position` of a call to `function`.
fn argument_of(expression: &Expr, function: &str, position: usize) -> Option<Expr> {
    let Expr::Function(call) = expression else {
        return None;
    };
    if !last_name_is(&call.name, function) {
        return None;
    }
    let FunctionArguments::List(arguments) = &call.args else {
        return None;
    };
    match arguments.args.get(position) {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(argument))) => Some(argument.clone()),
        _ => None,
    }
}

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_expr())
        .ok()
}

fn parse_query(sql: &str) -> Option<Box<datafusion::sql::sqlparser::ast::Query>> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_query())
        .ok()
}
