//! Long `x IN (v1, v2, ...)` lists of constants in ad hoc queries become one set lookup, so
//! planning a list of a million values costs one expression instead of a million.
//!
//! DataFusion keeps every list item as its own expression through type coercion and each
//! optimizer pass (a 1.5 M-item list took 12.9 s and 1.5 GB to plan). The parser already folds
//! such a list into one call of [`MARKER_FUNCTION`] holding the constants as JSON
//! (`sql::long_lists`). Here, right after the SQL becomes a logical plan, that call (or a list
//! of at least [`LONG_LIST`] constants in a condition the parser left) tested against an integer
//! or text expression becomes [`InSet`]: a function of the tested expression holding the values
//! in a hash set. Any other call gets its list back, for DataFusion's `IN`. Shorter lists, lists
//! holding NULL or other types, and views (whose plans are stored and must serialize) keep
//! DataFusion's `IN`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, BooleanArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::expr::{InList, ScalarFunction};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

/// Lists at least this long become a set lookup; DataFusion's own `IN` plans shorter ones fast.
pub const LONG_LIST: usize = 1_000;

/// `tributary_in_list('[constants as JSON]', tested)`: a long list as the parser folds it.
pub const MARKER_FUNCTION: &str = "tributary_in_list";

/// Replaces every long list of constants in the conditions of `plan` (and of its subqueries)
/// by an [`InSet`].
pub fn replace_long_in_lists(plan: LogicalPlan) -> Result<LogicalPlan> {
    let rewritten = plan.transform_up_with_subqueries(|node| {
        let inputs = node.inputs();
        let mut schema = DFSchema::empty();
        for input in inputs {
            schema.merge(input.schema());
        }
        // Only conditions: they name no column, so a replacement named otherwise than the
        // expression it replaces changes no name a node above refers to.
        if !matches!(node, LogicalPlan::Filter(_)) {
            return Ok(Transformed::no(node));
        }
        node.map_expressions(|expression| {
            // Top down, so a replaced list's million constants are never visited.
            expression.transform_down(|inner| match inner {
                Expr::InList(list) if list.list.len() >= LONG_LIST => {
                    Ok(match in_set(&list, &schema) {
                        Some(replacement) => {
                            Transformed::new(replacement, true, TreeNodeRecursion::Jump)
                        }
                        None => Transformed::no(Expr::InList(list)),
                    })
                }
                Expr::ScalarFunction(call) if call.name() == MARKER_FUNCTION => {
                    let replacement = match marker_in_set(&call, &schema) {
                        Some(replacement) => replacement,
                        None => Expr::InList(unfold(call)?),
                    };
                    Ok(Transformed::new(replacement, true, TreeNodeRecursion::Jump))
                }
                other => Ok(Transformed::no(other)),
            })
        })
    })?;
    Ok(rewritten.data)
}

/// The set lookup for a marker call, read from its JSON straight into the set when the tested
/// expression's type matches the constants' kind.
fn marker_in_set(call: &ScalarFunction, schema: &DFSchema) -> Option<Expr> {
    let [Expr::Literal(ScalarValue::Utf8(Some(json)), _), tested] = call.args.as_slice() else {
        return None;
    };
    let tested_type = tested.get_type(schema).ok()?;
    let (values, items) = if is_integer(&tested_type) {
        let integers: Vec<i64> = serde_json::from_str(json).ok()?;
        let items = integers.len();
        (SetValues::Integers(integers.into_iter().collect()), items)
    } else if is_text(&tested_type) {
        let texts: Vec<Box<str>> = serde_json::from_str(json).ok()?;
        let items = texts.len();
        (SetValues::Texts(texts.into_iter().collect()), items)
    } else {
        return None;
    };
    Some(set_lookup(values, tested.clone(), false, items))
}

/// The list a marker call folded: its constants as literals, as the SQL planner makes them.
fn unfold(call: ScalarFunction) -> Result<InList> {
    let [constants, tested] = <[Expr; 2]>::try_from(call.args).map_err(|_| {
        DataFusionError::Plan(format!("{MARKER_FUNCTION} takes a list and a value"))
    })?;
    let Expr::Literal(ScalarValue::Utf8(Some(json)), _) = constants else {
        return Err(DataFusionError::Plan(format!(
            "{MARKER_FUNCTION} takes its list as one text constant"
        )));
    };
    let items: Vec<serde_json::Value> = serde_json::from_str(&json)
        .map_err(|error| DataFusionError::Plan(format!("{MARKER_FUNCTION}: {error}")))?;
    let list = items
        .into_iter()
        .map(|item| match item {
            serde_json::Value::Number(number) => number
                .as_i64()
                .map(|number| Expr::Literal(ScalarValue::Int64(Some(number)), None)),
            serde_json::Value::String(text) => {
                Some(Expr::Literal(ScalarValue::Utf8(Some(text)), None))
            }
            _ => None,
        })
        .collect::<Option<Vec<Expr>>>()
        .ok_or_else(|| {
            DataFusionError::Plan(format!(
                "{MARKER_FUNCTION} takes whole numbers or texts only"
            ))
        })?;
    Ok(InList::new(Box::new(tested), list, false))
}

/// The set lookup for `list`, when its values and the tested expression have a type it keeps.
fn in_set(list: &InList, schema: &DFSchema) -> Option<Expr> {
    let tested = list.expr.get_type(schema).ok()?;
    let values = if is_integer(&tested) {
        let integers = list
            .list
            .iter()
            .map(integer_constant)
            .collect::<Option<hashbrown::HashSet<i64>>>()?;
        SetValues::Integers(integers)
    } else if is_text(&tested) {
        let texts = list
            .list
            .iter()
            .map(|item| match item {
                Expr::Literal(ScalarValue::Utf8(Some(text)), _) => Some(Box::from(text.as_str())),
                _ => None,
            })
            .collect::<Option<hashbrown::HashSet<Box<str>>>>()?;
        SetValues::Texts(texts)
    } else {
        return None;
    };
    Some(set_lookup(
        values,
        (*list.expr).clone(),
        list.negated,
        list.list.len(),
    ))
}

/// `tested [NOT] IN` the set, as a call of an [`InSet`] of its own.
fn set_lookup(values: SetValues, tested: Expr, negated: bool, items: usize) -> Expr {
    let function = InSet {
        values: Arc::new(values),
        negated,
        name: format!(
            "{}in_list_of_{items}_values",
            if negated { "not_" } else { "" }
        ),
        signature: Signature::any(1, Volatility::Immutable),
    };
    Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(function)),
        vec![tested],
    ))
}

/// Integer types whose every value an i64 holds exactly.
fn is_integer(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
    )
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// An integer constant as the SQL planner writes one: a literal, or a negated literal.
fn integer_constant(item: &Expr) -> Option<i64> {
    match item {
        Expr::Literal(ScalarValue::Int64(Some(value)), _) => Some(*value),
        Expr::Negative(inner) => match inner.as_ref() {
            Expr::Literal(ScalarValue::Int64(Some(value)), _) => value.checked_neg(),
            _ => None,
        },
        _ => None,
    }
}

/// The marker as a function the SQL planner resolves (registered in every session). Planning
/// replaces each call, so running one means a plan skipped that step: an error, not a guess at
/// how its types compare.
pub fn marker_function() -> ScalarUDF {
    ScalarUDF::new_from_impl(Marker {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Marker {
    signature: Signature,
}

impl ScalarUDFImpl for Marker {
    fn name(&self) -> &str {
        MARKER_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(DataFusionError::NotImplemented(format!(
            "{MARKER_FUNCTION} outside a query's WHERE"
        )))
    }
}

#[derive(Debug)]
enum SetValues {
    Integers(hashbrown::HashSet<i64>),
    Texts(hashbrown::HashSet<Box<str>>),
}

/// `tested [NOT] IN (values)` over a set made once per statement. NULL tested gives NULL; the
/// list holds no NULL, so a value not found is false (true for NOT IN), as in Postgres.
#[derive(Debug)]
struct InSet {
    values: Arc<SetValues>,
    negated: bool,
    /// What EXPLAIN shows: `in_list_of_N_values` (or `not_in_...`).
    name: String,
    signature: Signature,
}

// Two lookups are the same function when they share their set: comparing a million values to
// decide that would cost what this replaces.
impl PartialEq for InSet {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.values, &other.values) && self.negated == other.negated
    }
}

impl Eq for InSet {}

impl Hash for InSet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.values), state);
        self.negated.hash(state);
    }
}

impl ScalarUDFImpl for InSet {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (tested, scalar) = match &args.args[0] {
            ColumnarValue::Array(array) => (Arc::clone(array), false),
            ColumnarValue::Scalar(value) => (value.to_array()?, true),
        };
        let found: BooleanArray = match self.values.as_ref() {
            SetValues::Integers(values) => {
                let integers = cast(&tested, &DataType::Int64)?;
                integers
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|value| value.map(|value| values.contains(&value) != self.negated))
                    .collect()
            }
            SetValues::Texts(values) => {
                let texts = cast(&tested, &DataType::Utf8)?;
                texts
                    .as_string::<i32>()
                    .iter()
                    .map(|value| value.map(|value| values.contains(value) != self.negated))
                    .collect()
            }
        };
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &found, 0,
            )?));
        }
        Ok(ColumnarValue::Array(Arc::new(found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::prelude::SessionContext;

    async fn count(context: &SessionContext, sql: &str) -> (i64, String) {
        let raw = context
            .state()
            .create_logical_plan(sql)
            .await
            .expect("plan");
        let plan = replace_long_in_lists(raw).expect("rewrite");
        let shown = plan.display_indent().to_string();
        let batches = context
            .execute_logical_plan(plan)
            .await
            .expect("run")
            .collect()
            .await
            .expect("collect");
        let counted = batches[0].column(0).as_primitive::<Int64Type>().value(0);
        (counted, shown)
    }

    #[tokio::test]
    async fn long_lists_become_sets_with_in_semantics() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int32, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let numbers: Vec<Option<i32>> = (-5..5_000).map(Some).chain([None]).collect();
        let texts: Vec<Option<String>> = numbers
            .iter()
            .map(|number| number.map(|number| format!("v{number}")))
            .collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(numbers)),
                Arc::new(StringArray::from(texts)),
            ],
        )
        .expect("batch");
        let context = SessionContext::new();
        context.register_batch("t", batch).expect("register");

        let evens: Vec<String> = (-4..3_000).step_by(2).map(|n| n.to_string()).collect();
        let list = evens.join(", ");
        let (found, shown) = count(
            &context,
            &format!("SELECT count(*) FROM t WHERE i IN ({list})"),
        )
        .await;
        assert_eq!(found, 1_502, "{shown}");
        assert!(shown.contains("in_list_of_1502_values(t.i)"), "{shown}");
        // NULL is neither in nor out of the list.
        let (outside, _) = count(
            &context,
            &format!("SELECT count(*) FROM t WHERE i NOT IN ({list})"),
        )
        .await;
        assert_eq!(outside, 5_005 - 1_502);

        let quoted: Vec<String> = (0..2_000).map(|n| format!("'v{n}'")).collect();
        let (found, shown) = count(
            &context,
            &format!(
                "SELECT count(*) FROM t WHERE s IN ({}, 'absent')",
                quoted.join(", ")
            ),
        )
        .await;
        assert_eq!(found, 2_000, "{shown}");
        assert!(shown.contains("in_list_of_2001_values(t.s)"), "{shown}");

        // A list holding NULL keeps DataFusion's IN (x NOT IN (..., NULL) is never true).
        let (none, shown) = count(
            &context,
            &format!("SELECT count(*) FROM t WHERE i NOT IN ({list}, NULL)"),
        )
        .await;
        assert_eq!(none, 0);
        assert!(!shown.contains("in_list_of"), "{shown}");
    }
}
