//! Point reads: `SELECT columns FROM v WHERE k = $1` on a materialized view (or a table by its
//! primary key) whose equalities fix the leading columns of the arrangement's order, answered
//! by a binary search in the arrangement of the pinned snapshot: no DataFusion planning, no
//! scan. Anything else, or anything this path is not sure to answer as Postgres would (a value
//! that needs a cast Postgres might refuse, a float key), goes to DataFusion as usual.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Query, SelectItem, SetExpr, Statement, TableFactor, Value,
};

use crate::catalog::RelationKind;
use crate::coordinator::snapshot::RelationData;
use crate::error::Result;
use crate::session::{QueryResult, Session};
use crate::sql::{identifier, relation_name};
use crate::storage::ArrangementSnapshot;

/// The rows of `statement` when it is a point read; `None` when DataFusion must answer it.
pub(super) fn execute(
    session: &Session,
    statement: &Statement,
    parameters: Option<&ParamValues>,
) -> Result<Option<QueryResult>> {
    let Statement::Query(query) = statement else {
        return Ok(None);
    };
    let Some(shape) = PointRead::of(query) else {
        return Ok(None);
    };
    let snapshot = session.pinned.get();
    let Ok(name) = relation_name(shape.relation) else {
        return Ok(None);
    };
    let Some(relation) = snapshot.catalog.get(&name) else {
        return Ok(None);
    };
    let arrangement = match (relation.kind, snapshot.data.get(&relation.id)) {
        (RelationKind::MaterializedView, Some(RelationData::View(view))) => view.clone(),
        (RelationKind::Table, Some(RelationData::Table(table))) => match table.primary_index() {
            Some(index) => index,
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    let Some(order) = arrangement.order() else {
        return Ok(None);
    };
    let schema = Arc::clone(arrangement.schema());
    let column_of = |name: String| schema.index_of(&name).ok();

    // The equalities must fix the first columns of the order, each once, and nothing else.
    let mut fixed: HashMap<usize, &Expr> = HashMap::new();
    for (column, value) in &shape.equalities {
        let Some(column) = shape.column(column).and_then(column_of) else {
            return Ok(None);
        };
        if fixed.insert(column, value).is_some() {
            return Ok(None);
        }
    }
    let mut probes: Vec<ArrayRef> = Vec::with_capacity(fixed.len());
    for position in 0..fixed.len() {
        let Some(column) = order.column_at(position) else {
            return Ok(None);
        };
        let Some(value) = fixed.get(&column) else {
            return Ok(None);
        };
        match probe(value, schema.field(column).data_type(), parameters) {
            Probe::Value(value) => probes.push(value.to_array()?),
            // `k = NULL` is true for no row.
            Probe::Null => probes.clear(),
            Probe::Unsure => return Ok(None),
        }
        if probes.is_empty() {
            break;
        }
    }

    let mut columns: Vec<(usize, String)> = Vec::new();
    for item in shape.projection {
        match item {
            SelectItem::Wildcard(options) if options.to_string().is_empty() => {
                columns.extend(
                    schema
                        .fields()
                        .iter()
                        .enumerate()
                        .map(|(index, field)| (index, field.name().clone())),
                );
            }
            SelectItem::UnnamedExpr(expr) => {
                let Some(index) = shape.column(expr).and_then(column_of) else {
                    return Ok(None);
                };
                columns.push((index, schema.field(index).name().clone()));
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                let Some(index) = shape.column(expr).and_then(column_of) else {
                    return Ok(None);
                };
                columns.push((index, identifier(alias)));
            }
            _ => return Ok(None),
        }
    }
    let rows = if probes.is_empty() {
        RecordBatch::new_empty(Arc::clone(&schema))
    } else {
        lookup(&arrangement, &probes)?
    };
    let fields: Vec<Field> = columns
        .iter()
        .map(|(index, name)| schema.field(*index).clone().with_name(name))
        .collect();
    let output = super::query::postgres_schema(statement, &Arc::new(Schema::new(fields)));
    let projected: Vec<ArrayRef> = columns
        .iter()
        .map(|(index, _)| Arc::clone(rows.column(*index)))
        .collect();
    let batch = RecordBatch::try_new_with_options(
        Arc::clone(&output),
        projected,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.num_rows())),
    )?;
    Ok(Some(QueryResult::Rows {
        schema: output,
        batches: vec![batch],
    }))
}

fn lookup(arrangement: &ArrangementSnapshot, probes: &[ArrayRef]) -> Result<RecordBatch> {
    let Some(order) = arrangement.order() else {
        return Ok(RecordBatch::new_empty(Arc::clone(arrangement.schema())));
    };
    let encoded = order.encode_prefix(probes)?;
    Ok(arrangement.lookup(&encoded)?)
}

/// A SELECT of plain columns from one relation, filtered by a conjunction of equalities between
/// a column and a constant or parameter: the only shape a point read answers.
struct PointRead<'a> {
    relation: &'a datafusion::sql::sqlparser::ast::ObjectName,
    /// What the relation is called in the query (its alias, else its last name part).
    qualifier: String,
    projection: &'a [SelectItem],
    /// (column reference, value) per equality.
    equalities: Vec<(&'a Expr, &'a Expr)>,
}

impl<'a> PointRead<'a> {
    fn of(query: &'a Query) -> Option<Self> {
        let SetExpr::Select(select) = query.body.as_ref() else {
            return None;
        };
        let [from] = select.from.as_slice() else {
            return None;
        };
        let TableFactor::Table {
            name, alias, args, ..
        } = &from.relation
        else {
            return None;
        };
        let selection = select.selection.as_ref()?;
        if args.is_some() || !from.joins.is_empty() || select.projection.is_empty() {
            return None;
        }
        // Any clause beyond SELECT, FROM and WHERE (DISTINCT, GROUP BY, ORDER BY, LIMIT, WITH,
        // a lock...) shows in the statement's text: it must be exactly these three.
        let projection = select
            .projection
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if query.to_string() != format!("SELECT {projection} FROM {from} WHERE {selection}") {
            return None;
        }
        let qualifier = match alias {
            Some(alias) if alias.columns.is_empty() => identifier(&alias.name),
            Some(_) => return None,
            None => identifier(name.0.last()?.as_ident()?),
        };
        let mut equalities = Vec::new();
        conjuncts(selection, &mut equalities)?;
        Some(Self {
            relation: name,
            qualifier,
            projection: &select.projection,
            equalities,
        })
    }

    /// The column an expression names: `c`, or `t.c` with the relation's name or alias.
    fn column(&self, expr: &Expr) -> Option<String> {
        match expr {
            Expr::Identifier(name) => Some(identifier(name)),
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [relation, column] if identifier(relation) == self.qualifier => {
                    Some(identifier(column))
                }
                _ => None,
            },
            Expr::Nested(inner) => self.column(inner),
            _ => None,
        }
    }
}

/// The equalities of an AND of `column = value`, each with the column side first.
fn conjuncts<'a>(expr: &'a Expr, equalities: &mut Vec<(&'a Expr, &'a Expr)>) -> Option<()> {
    match expr {
        Expr::Nested(inner) => conjuncts(inner, equalities),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, equalities)?;
            conjuncts(right, equalities)
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            let is_value = |expr: &Expr| matches!(expr, Expr::Value(_));
            if is_value(right) && !is_value(left) {
                equalities.push((left, right));
            } else if is_value(left) && !is_value(right) {
                equalities.push((right, left));
            } else {
                return None;
            }
            Some(())
        }
        _ => None,
    }
}

enum Probe {
    Value(ScalarValue),
    Null,
    /// The value would need a conversion this path does not make exactly as Postgres does.
    Unsure,
}

/// The value a column is compared with, in the column's type.
fn probe(value: &Expr, column: &DataType, parameters: Option<&ParamValues>) -> Probe {
    if !key_type(column) {
        return Probe::Unsure;
    }
    let Expr::Value(value) = value else {
        return Probe::Unsure;
    };
    let scalar = match &value.value {
        Value::Placeholder(name) => {
            let Some(parameters) = parameters else {
                return Probe::Unsure;
            };
            match parameters.get_placeholders_with_values(name) {
                Ok(scalar) => scalar.value,
                Err(_) => return Probe::Unsure,
            }
        }
        Value::Null => return Probe::Null,
        Value::Number(digits, false) if is_integer(column) => match digits.parse::<i64>() {
            Ok(number) => ScalarValue::Int64(Some(number)),
            Err(_) => return Probe::Unsure,
        },
        Value::SingleQuotedString(text) if matches!(column, DataType::Utf8) => {
            ScalarValue::Utf8(Some(text.clone()))
        }
        Value::Boolean(truth) if matches!(column, DataType::Boolean) => {
            ScalarValue::Boolean(Some(*truth))
        }
        _ => return Probe::Unsure,
    };
    if scalar.is_null() {
        return Probe::Null;
    }
    if scalar.data_type() == *column {
        return Probe::Value(scalar);
    }
    // A parameter or literal of another integer width: exact when it casts there and back.
    if is_integer(column)
        && is_integer(&scalar.data_type())
        && let Ok(cast) = scalar.cast_to(column)
        && cast.cast_to(&scalar.data_type()).ok().as_ref() == Some(&scalar)
    {
        return Probe::Value(cast);
    }
    Probe::Unsure
}

fn is_integer(data_type: &DataType) -> bool {
    data_type.is_integer()
}

/// Types whose equality is their encoding's: a float's is not (0 = -0, NaN's rules).
fn key_type(data_type: &DataType) -> bool {
    is_integer(data_type)
        || matches!(
            data_type,
            DataType::Utf8
                | DataType::Boolean
                | DataType::Date32
                | DataType::Decimal128(_, _)
                | DataType::Timestamp(_, _)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(sql: &str) -> Box<Query> {
        match crate::sql::parse(sql).expect("parses").remove(0) {
            crate::sql::Statement::Standard(Statement::Query(query)) => query,
            other => panic!("not a query: {other:?}"),
        }
    }

    #[test]
    fn only_plain_equalities_on_one_relation_are_point_reads() {
        for sql in [
            "SELECT * FROM v WHERE k = $1",
            "SELECT a, b AS c FROM v WHERE k = 1 AND (j = 'x')",
            "SELECT x.a FROM v AS x WHERE x.k = $1",
        ] {
            assert!(PointRead::of(&query(sql)).is_some(), "{sql}");
        }
        for sql in [
            "SELECT * FROM v WHERE k = $1 ORDER BY a",
            "SELECT * FROM v WHERE k = $1 LIMIT 1",
            "SELECT DISTINCT a FROM v WHERE k = 1",
            "SELECT * FROM v WHERE k > 1",
            "SELECT * FROM v WHERE k = 1 OR k = 2",
            "SELECT * FROM v, w WHERE k = 1",
            "SELECT * FROM v WHERE k = j",
            "WITH w AS (SELECT 1) SELECT * FROM v WHERE k = 1",
            "SELECT * FROM v",
            "SELECT count(*) FROM v WHERE k = 1 GROUP BY a",
        ] {
            assert!(PointRead::of(&query(sql)).is_none(), "{sql}");
        }
    }
}
