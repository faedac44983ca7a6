//! Dataflow plans: what maintains a materialized view, as a value. The planner lowers a query
//! to a [`DataflowPlan`]; [`super::render`] builds the live operators from it. The plan is what
//! EXPLAIN prints and what the catalog, the log and checkpoints store, so recovery rebuilds the
//! operators their saved state belongs to, found by [`OperatorId`].
//!
//! Scalar expressions are DataFusion logical expressions in DataFusion's own protobuf encoding,
//! each with the schema it reads, so a plan needs no planner to be rendered, only the functions
//! its expressions call.

use std::fmt::Write as _;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::logical_plan::from_proto::parse_expr;
use datafusion_proto::logical_plan::to_proto::serialize_expr;
use datafusion_proto::protobuf::LogicalExprNode;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::aggregate::{AggregateFunction, AggregatePhase};
use super::join::JoinKind;
use super::temporal_filter::{Bound, BoundKind};
use super::window::{Frame, WindowFunctionKind};
use crate::catalog::RelationId;
use crate::error::{DataflowError, ExecutionError};

/// Names one operator of a plan for the plan's whole life: edges and saved state refer to it.
pub type OperatorId = u32;

/// The operators maintaining one view and the edges between them, in topological order (every
/// node reads only relations and earlier nodes); the last node's output is the view's changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataflowPlan {
    pub nodes: Vec<PlanNode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanNode {
    pub id: OperatorId,
    pub operator: OperatorSpec,
    /// One per input port, in port order (a join's left input is port 0).
    pub inputs: Vec<Edge>,
}

/// Where a port's rows come from, and how they move between workers on the way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub from: Input,
    pub route: Route,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// The changes of a relation (table, source or view) outside the dataflow.
    Relation(RelationId),
    /// The output of an earlier node of the same plan.
    Operator(OperatorId),
}

/// How rows travel along an edge when a dataflow runs on several workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Route {
    /// Each row stays on the worker that has it: the operator is linear, any split will do.
    Forward,
    /// Each row goes to the worker owning the hash of its key: the operator's state and output
    /// for a key depend only on that key's rows.
    Hash(PartitionKeySpec),
    /// Each row is on the worker owning the hash of its key already (its input was hashed by
    /// the same columns, compared as the same types), so it stays there.
    Partitioned(PartitionKeySpec),
    /// Every row goes to one worker: the operator's state is one whole (a global aggregate, a
    /// join without equality keys, a top-N over all rows).
    Gather,
}

/// The key an edge hashes: expressions over the rows it carries, cast to the types the operator
/// compares them in (so equal keys from both sides of a join meet on one worker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionKeySpec {
    pub expressions: Vec<ScalarExpression>,
    pub types: Vec<TypeSpec>,
    /// When the edge hashes only some of the operator's key (its group, join or partition key;
    /// enough to keep equal keys together): their positions in it, in order. The worker owning a
    /// key's state is then the hash of those columns of it. `None`: the whole key, in order.
    pub key_positions: Option<Vec<usize>>,
}

/// One operator and everything it is built from. Expressions are over the schema named beside
/// them (`input`, or `left` and `right` for a join).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OperatorSpec {
    Filter {
        input: SchemaSpec,
        predicate: ScalarExpression,
    },
    Project {
        input: SchemaSpec,
        expressions: Vec<ScalarExpression>,
        output: SchemaSpec,
    },
    /// Comparisons of a row's expression with the clock (`ts > now() - INTERVAL '1 hour'`).
    TemporalFilter {
        input: SchemaSpec,
        bounds: Vec<(ScalarExpression, BoundSpec)>,
    },
    /// Keeps changes behind a relation's watermark out of a view that emits on window close.
    LateRowFilter {
        relation: RelationId,
        time_column: usize,
        delay_nanoseconds: i64,
    },
    Aggregate(AggregateSpec),
    Join(JoinSpec),
    TopN(TopNSpec),
    Window(WindowSpec),
    /// Expands list columns into a row per element (set-returning functions in the select
    /// list). Output column i is input column `sources[i]`, expanded when it is in `lists`.
    Unnest {
        input: SchemaSpec,
        sources: Vec<usize>,
        lists: Vec<usize>,
        output: SchemaSpec,
    },
    /// Passes every input through: UNION ALL, or a view that is its input as it stands.
    Union {
        output: SchemaSpec,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateSpec {
    pub input: SchemaSpec,
    pub group_by: Vec<ScalarExpression>,
    pub group_types: Vec<TypeSpec>,
    pub calls: Vec<AggregateCallSpec>,
    pub output: SchemaSpec,
    /// Set when the view emits each window once, when the watermark closes it.
    pub closing: Option<WindowClosingSpec>,
    /// Which half of a two-phase aggregation this is, if it is one. A final aggregate's input is
    /// the partial aggregate's output, and its calls' arguments are their first state column.
    #[serde(default)]
    pub phase: AggregatePhase,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateCallSpec {
    pub function: AggregateFunction,
    pub argument: ScalarExpression,
    pub input_type: TypeSpec,
    pub output_type: TypeSpec,
    pub distinct: bool,
    pub filter: Option<ScalarExpression>,
    pub order_by: Vec<SortKeySpec>,
    pub delimiter: String,
    /// The call as the query planned it, for EXPLAIN.
    pub shown: String,
}

/// How an aggregate that emits on window close finds a group's window end, and whose watermarks
/// close it: the late-row filters (by id) of the relations the view reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowClosingSpec {
    pub group_column: usize,
    pub end_offset_nanoseconds: i64,
    pub watermarks: Vec<OperatorId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinSpec {
    pub kind: JoinKind,
    pub left: SchemaSpec,
    pub right: SchemaSpec,
    pub left_keys: Vec<ScalarExpression>,
    pub right_keys: Vec<ScalarExpression>,
    pub key_types: Vec<TypeSpec>,
    /// The ON condition beyond the equalities, over the left columns followed by the right.
    pub filter: Option<ScalarExpression>,
    pub nulls_equal: bool,
    pub null_aware: bool,
    pub output: SchemaSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopNSpec {
    pub input: SchemaSpec,
    pub partition_by: Vec<ScalarExpression>,
    pub partition_types: Vec<TypeSpec>,
    pub order_by: Vec<SortKeySpec>,
    pub offset: usize,
    pub limit: Option<usize>,
    pub row_number: bool,
    pub output: SchemaSpec,
}

/// Window functions sharing one PARTITION BY and ORDER BY; the output is the input's columns,
/// then one per call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSpec {
    pub input: SchemaSpec,
    pub partition_by: Vec<ScalarExpression>,
    pub partition_types: Vec<TypeSpec>,
    pub order_by: Vec<SortKeySpec>,
    pub calls: Vec<WindowCallSpec>,
    pub output: SchemaSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowCallSpec {
    pub kind: WindowFunctionKind,
    /// The value argument, if any, then LAG/LEAD's default.
    pub arguments: Vec<ScalarExpression>,
    /// LAG/LEAD's distance.
    pub offset: usize,
    pub frame: Frame,
    pub output_type: TypeSpec,
    /// The call as the query planned it, for EXPLAIN.
    pub shown: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SortKeySpec {
    pub expression: ScalarExpression,
    pub data_type: TypeSpec,
    pub descending: bool,
    pub nulls_first: bool,
}

/// A temporal filter's bound, as [`Bound`] holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundSpec {
    pub kind: BoundKind,
    pub offset_nanoseconds: i64,
}

impl From<Bound> for BoundSpec {
    fn from(bound: Bound) -> Self {
        Self {
            kind: bound.kind,
            offset_nanoseconds: bound.offset_nanoseconds,
        }
    }
}

impl From<BoundSpec> for Bound {
    fn from(bound: BoundSpec) -> Self {
        Self {
            kind: bound.kind,
            offset_nanoseconds: bound.offset_nanoseconds,
        }
    }
}

/// What encodes and decodes the functions a plan's expressions call: DataFusion's own and the
/// session's are found by name in `context`; `codec` writes and reads the ones that carry
/// settings of their own (the planner's, such as a cast's target type).
#[derive(Clone)]
pub struct Functions {
    pub context: Arc<TaskContext>,
    pub codec: Arc<dyn LogicalExtensionCodec>,
}

/// A DataFusion logical expression, in DataFusion's protobuf encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalarExpression {
    #[serde(with = "hex_bytes")]
    encoded: Vec<u8>,
    /// As DataFusion prints it, for EXPLAIN.
    shown: String,
    /// Set when the expression is a plain column of the schema it reads: its position. Rows
    /// partitioned by a column stay partitioned through expressions that only pass it on.
    column: Option<usize>,
}

impl ScalarExpression {
    pub fn new(expression: &Expr, functions: &Functions) -> Result<Self, DataflowError> {
        let message = serialize_expr(expression, functions.codec.as_ref())
            .map_err(|error| encoding_error("an expression", error))?;
        let encoded = message.encode_to_vec();
        // prost refuses to decode messages nested more than 100 deep: an expression that
        // could not be read back is refused now, not when a restart renders the plan.
        LogicalExprNode::decode(encoded.as_slice())
            .map_err(|error| encoding_error("an expression", error))?;
        Ok(Self {
            encoded,
            shown: expression.to_string(),
            column: None,
        })
    }

    /// The same expression, known to be column `position` of the schema it reads.
    pub fn at_column(self, position: usize) -> Self {
        Self {
            column: Some(position),
            ..self
        }
    }

    /// The column the expression is, if it is a plain one.
    pub fn column(&self) -> Option<usize> {
        self.column
    }

    /// The expression again, its functions resolved by `functions`.
    pub fn decode(&self, functions: &Functions) -> Result<Expr, DataflowError> {
        let message = LogicalExprNode::decode(self.encoded.as_slice())
            .map_err(|error| decoding_error("an expression", error))?;
        parse_expr(&message, &functions.context, functions.codec.as_ref())
            .map_err(|error| decoding_error("an expression", error))
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// A schema with its columns' qualifiers (`t.k`), which expressions over it name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaSpec(#[serde(with = "hex_bytes")] Vec<u8>);

impl SchemaSpec {
    pub fn new(schema: &DFSchema) -> Result<Self, DataflowError> {
        let message = datafusion_proto::protobuf::DfSchema::try_from(schema)
            .map_err(|error| encoding_error("a schema", error))?;
        Ok(Self(message.encode_to_vec()))
    }

    pub fn decode(&self) -> Result<DFSchema, DataflowError> {
        let message = datafusion_proto::protobuf::DfSchema::decode(self.0.as_slice())
            .map_err(|error| decoding_error("a schema", error))?;
        DFSchema::try_from(&message).map_err(|error| decoding_error("a schema", error))
    }

    /// The Arrow schema operators carry: every column nullable, as views have no constraints.
    pub fn arrow(&self) -> Result<SchemaRef, DataflowError> {
        Ok(crate::catalog::without_constraints(
            self.decode()?.as_arrow(),
        ))
    }
}

/// An Arrow data type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeSpec(#[serde(with = "hex_bytes")] Vec<u8>);

impl TypeSpec {
    pub fn new(data_type: &DataType) -> Result<Self, DataflowError> {
        let message = datafusion_proto::protobuf::ArrowType::try_from(data_type)
            .map_err(|error| encoding_error("a type", error))?;
        Ok(Self(message.encode_to_vec()))
    }

    pub fn decode(&self) -> Result<DataType, DataflowError> {
        let message = datafusion_proto::protobuf::ArrowType::decode(self.0.as_slice())
            .map_err(|error| decoding_error("a type", error))?;
        DataType::try_from(&message).map_err(|error| decoding_error("a type", error))
    }

    /// The encoding, for a function whose settings include a type.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// What [`TypeSpec::bytes`] gave.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

fn encoding_error(what: &str, error: impl std::fmt::Display) -> DataflowError {
    ExecutionError::Internal(format!("cannot encode {what} of a dataflow plan: {error}")).into()
}

fn decoding_error(what: &str, error: impl std::fmt::Display) -> DataflowError {
    ExecutionError::Internal(format!("cannot decode {what} of a dataflow plan: {error}")).into()
}

impl OperatorSpec {
    /// The schema the expressions of input `port`'s partition key are over.
    pub fn input_schema(&self, port: usize) -> Option<&SchemaSpec> {
        match (self, port) {
            (
                OperatorSpec::Filter { input, .. }
                | OperatorSpec::Project { input, .. }
                | OperatorSpec::Unnest { input, .. }
                | OperatorSpec::TemporalFilter { input, .. },
                0,
            ) => Some(input),
            (OperatorSpec::Aggregate(aggregate), 0) => Some(&aggregate.input),
            (OperatorSpec::TopN(top_n), 0) => Some(&top_n.input),
            (OperatorSpec::Window(window), 0) => Some(&window.input),
            (OperatorSpec::Join(join), 0) => Some(&join.left),
            (OperatorSpec::Join(join), 1) => Some(&join.right),
            _ => None,
        }
    }

    /// One line for EXPLAIN: the operator and what it computes.
    fn explain(&self) -> String {
        let list = |expressions: &[ScalarExpression]| {
            expressions
                .iter()
                .map(ScalarExpression::shown)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sort = |keys: &[SortKeySpec]| {
            keys.iter()
                .map(|key| {
                    format!(
                        "{} {} NULLS {}",
                        key.expression.shown(),
                        if key.descending { "DESC" } else { "ASC" },
                        if key.nulls_first { "FIRST" } else { "LAST" }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            OperatorSpec::Filter { predicate, .. } => format!("Filter: {}", predicate.shown()),
            OperatorSpec::Project { expressions, .. } => format!("Project: {}", list(expressions)),
            OperatorSpec::Unnest { lists, .. } => format!("Unnest: columns {lists:?}"),
            OperatorSpec::TemporalFilter { bounds, .. } => {
                let bounds: Vec<String> = bounds
                    .iter()
                    .map(|(expression, bound)| {
                        let comparison = match bound.kind {
                            BoundKind::Before => ">",
                            BoundKind::AtOrBefore => ">=",
                            BoundKind::After => "<",
                            BoundKind::AtOrAfter => "<=",
                        };
                        format!(
                            "{} {comparison} now() + {} ns",
                            expression.shown(),
                            bound.offset_nanoseconds
                        )
                    })
                    .collect();
                format!("TemporalFilter: {}", bounds.join(" AND "))
            }
            OperatorSpec::LateRowFilter {
                relation,
                time_column,
                delay_nanoseconds,
            } => format!(
                "LateRowFilter: column {time_column} of relation {relation}, watermark {delay_nanoseconds} ns behind"
            ),
            OperatorSpec::Aggregate(aggregate) => {
                let calls: Vec<&str> = aggregate
                    .calls
                    .iter()
                    .map(|call| call.shown.as_str())
                    .collect();
                let phase = match aggregate.phase {
                    AggregatePhase::Whole => "",
                    AggregatePhase::Partial => " (partial)",
                    AggregatePhase::Final => " (final)",
                };
                let mut line = format!(
                    "Aggregate{phase}: group by [{}], [{}]",
                    list(&aggregate.group_by),
                    calls.join(", ")
                );
                if aggregate.closing.is_some() {
                    line.push_str(", emit on window close");
                }
                line
            }
            OperatorSpec::Join(join) => {
                let mut line = format!("Join {:?}: ", join.kind);
                let pairs: Vec<String> = join
                    .left_keys
                    .iter()
                    .zip(&join.right_keys)
                    .map(|(left, right)| format!("{} = {}", left.shown(), right.shown()))
                    .collect();
                line.push_str(&pairs.join(" AND "));
                if let Some(filter) = &join.filter {
                    let _ = write!(line, ", filter: {}", filter.shown());
                }
                line
            }
            OperatorSpec::TopN(top_n) => {
                let mut line = String::from(if top_n.row_number {
                    "TopN (row_number):"
                } else {
                    "TopN:"
                });
                if !top_n.partition_by.is_empty() {
                    let _ = write!(line, " partition by [{}]", list(&top_n.partition_by));
                }
                let _ = write!(line, " order by [{}]", sort(&top_n.order_by));
                if let Some(limit) = top_n.limit {
                    let _ = write!(line, " limit {limit}");
                }
                if top_n.offset > 0 {
                    let _ = write!(line, " offset {}", top_n.offset);
                }
                line
            }
            OperatorSpec::Window(window) => {
                let calls: Vec<&str> = window
                    .calls
                    .iter()
                    .map(|call| call.shown.as_str())
                    .collect();
                let mut line = format!("Window: {}", calls.join(", "));
                if !window.partition_by.is_empty() {
                    let _ = write!(line, " partition by [{}]", list(&window.partition_by));
                }
                if !window.order_by.is_empty() {
                    let _ = write!(line, " order by [{}]", sort(&window.order_by));
                }
                line
            }
            OperatorSpec::Union { .. } => "Union".to_string(),
        }
    }
}

impl DataflowPlan {
    /// One line per node, in topological order: its id, operator and inputs (relations by the
    /// name `relation_name` gives, operators by id), with the route of each input that is not
    /// forwarded.
    pub fn explain(&self, relation_name: impl Fn(RelationId) -> String) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| {
                let inputs: Vec<String> = node
                    .inputs
                    .iter()
                    .map(|edge| {
                        let from = match edge.from {
                            Input::Relation(id) => relation_name(id),
                            Input::Operator(id) => format!("#{id}"),
                        };
                        let shown = |key: &PartitionKeySpec| {
                            key.expressions
                                .iter()
                                .map(ScalarExpression::shown)
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        match &edge.route {
                            Route::Forward => from,
                            Route::Gather => format!("{from} gathered"),
                            Route::Hash(key) => format!("{from} by hash({})", shown(key)),
                            Route::Partitioned(key) => {
                                format!("{from} already by hash({})", shown(key))
                            }
                        }
                    })
                    .collect();
                format!(
                    "#{} {} <- {}",
                    node.id,
                    node.operator.explain(),
                    inputs.join(", ")
                )
            })
            .collect()
    }

    /// The plan as stored in the catalog, the log and checkpoints.
    pub fn to_json(&self) -> Result<String, DataflowError> {
        serde_json::to_string(self).map_err(|error| encoding_error("the whole", error))
    }

    pub fn from_json(text: &str) -> Result<Self, DataflowError> {
        serde_json::from_str(text).map_err(|error| decoding_error("the whole", error))
    }
}

/// Bytes as a hex string: protobuf encodings inside the plan's JSON.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(bytes.len() * 2);
        for byte in bytes {
            text.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
            text.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
        }
        serializer.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.len() % 2 != 0 {
            return Err(D::Error::custom("hex text of odd length"));
        }
        (0..text.len())
            .step_by(2)
            .map(|at| {
                text.get(at..at + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| D::Error::custom("not hex"))
            })
            .collect()
    }
}
