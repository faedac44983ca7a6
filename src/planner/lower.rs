//! Lowering: an optimized DataFusion `LogicalPlan` becomes an incremental dataflow, or is
//! rejected with 0A000 naming the part that cannot be maintained.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::type_coercion::binary::comparison_coercion;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;

use super::context::RelationProvider;
use crate::catalog::{RelationId, Watermark};
use crate::dataflow::aggregate::{Aggregate, AggregateCall, AggregateFunction, WindowClosing};
use crate::dataflow::exchange::{Exchange, OperatorFactory, PartitionKey};
use crate::dataflow::filter::Filter;
use crate::dataflow::join::{Join, JoinDefinition, JoinKind};
use crate::dataflow::project::Project;
use crate::dataflow::temporal_filter::TemporalFilter;
use crate::dataflow::top_n::{SortKey, TopN, TopNDefinition};
use crate::dataflow::union::Union;
use crate::dataflow::watermark::{LateRowFilter, WatermarkCell};
use crate::dataflow::{Dataflow, Node, Operator, Stream};
use crate::error::{Error, PlanError, Result};

/// When a materialized view emits its changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Emit {
    /// Every epoch, as its inputs change.
    OnUpdate,
    /// EMIT ON WINDOW CLOSE: each window's aggregate once, when the watermark passes its end.
    /// `window_sizes` are the sizes (nanoseconds) of the view's TUMBLE and HOP windows.
    OnWindowClose { window_sizes: Vec<i128> },
}

/// Lowers `plan` (already analyzed and optimized) into the dataflow that maintains it, its keyed
/// operators split over `workers` copies each.
pub fn lower(plan: &LogicalPlan, emit: Emit, workers: usize) -> Result<Dataflow> {
    let plan = super::subqueries::scalar_subqueries_as_joins(plan.clone())?;
    let mut builder = Builder {
        nodes: Vec::new(),
        workers,
        window_close: match emit {
            Emit::OnUpdate => None,
            Emit::OnWindowClose { window_sizes } => Some(WindowCloseBuilder {
                window_sizes,
                late_row_filters: Vec::new(),
                closing_aggregates: 0,
            }),
        },
    };
    let output = builder.lower_node(&plan)?;
    if let Some(window_close) = &builder.window_close {
        if window_close.late_row_filters.is_empty() {
            return Err(unsupported(
                "EMIT ON WINDOW CLOSE over relations without a WATERMARK",
            ));
        }
        if window_close.closing_aggregates == 0 {
            return Err(unsupported(
                "EMIT ON WINDOW CLOSE without an aggregate grouped by window_start or window_end",
            ));
        }
    }
    if output != Stream::Node(builder.nodes.len().wrapping_sub(1)) {
        // The view is its input as it stands (`SELECT * FROM t`): one pass-through node.
        builder.push(Union::new(nullable_schema(plan.schema())), vec![output]);
    }
    Ok(Dataflow::new(builder.nodes)?)
}

/// The nodes lowered so far, in topological order.
struct Builder {
    nodes: Vec<Node>,
    /// How many copies of each operator partitioned by key run side by side.
    workers: usize,
    window_close: Option<WindowCloseBuilder>,
}

/// What lowering a view that emits on window close keeps track of.
struct WindowCloseBuilder {
    window_sizes: Vec<i128>,
    /// One filter per relation with a watermark, shared by every scan of the relation (a HOP
    /// reads it once per window), so each late row is counted once.
    late_row_filters: Vec<(RelationId, Stream, WatermarkCell)>,
    closing_aggregates: usize,
}

fn unsupported(what: &str) -> Error {
    PlanError::Unsupported(format!("{what} is not supported in materialized views yet")).into()
}

impl Builder {
    fn push(&mut self, operator: impl Operator + 'static, inputs: Vec<Stream>) -> Stream {
        self.nodes.push(Node {
            operator: Box::new(operator),
            inputs,
        });
        Stream::Node(self.nodes.len() - 1)
    }

    /// `workers` copies of the operator `make` builds, behind an exchange that gives each the
    /// rows whose key (`keys`, one per input) it owns.
    fn push_partitioned(
        &mut self,
        keys: Vec<PartitionKey>,
        make: OperatorFactory,
        inputs: Vec<Stream>,
    ) -> Result<Stream> {
        Ok(self.push(Exchange::new(self.workers, keys, make)?, inputs))
    }

    /// Appends the nodes computing `plan` and returns the stream of its changes.
    fn lower_node(&mut self, plan: &LogicalPlan) -> Result<Stream> {
        for expression in plan.expressions() {
            // A filter's comparisons with now() become a temporal filter (below); every other
            // volatile call is refused.
            let temporal =
                matches!(plan, LogicalPlan::Filter(_)) && super::temporal::reads_clock(&expression);
            if expression.is_volatile() && !temporal {
                return Err(PlanError::Unsupported(format!(
                    "volatile function in materialized view: {}",
                    super::temporal::shown(&expression)
                ))
                .into());
            }
        }
        match plan {
            LogicalPlan::TableScan(scan) => {
                if scan.fetch.is_some() {
                    return Err(unsupported("LIMIT"));
                }
                let provider = source_as_provider(&scan.source)?;
                let Some(relation) = provider.downcast_ref::<RelationProvider>() else {
                    return Err(unsupported(&format!("reading {}", scan.table_name)));
                };
                let source_schema = relation.relation().schema.clone();
                let source_dfschema =
                    DFSchema::try_from_qualified_schema(scan.table_name.clone(), &source_schema)?;
                let mut stream = Stream::Relation(relation.id());
                if let (Some(watermark), Some(_)) =
                    (relation.relation().watermark, &self.window_close)
                {
                    stream = self.late_row_filter(relation.id(), watermark);
                }
                for filter in &scan.filters {
                    let predicate = physical(filter, &source_dfschema)?;
                    stream = self.push(Filter::new(predicate), vec![stream]);
                }
                if let Some(projection) = &scan.projection {
                    let expressions = projection
                        .iter()
                        .map(|&index| {
                            let column = Expr::Column(datafusion::common::Column::new(
                                Some(scan.table_name.clone()),
                                source_schema.field(index).name(),
                            ));
                            physical(&column, &source_dfschema)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let schema = nullable_schema(&scan.projected_schema);
                    stream = self.push(Project::new(expressions, schema), vec![stream]);
                }
                Ok(stream)
            }
            LogicalPlan::Projection(projection) => {
                let input = self.lower_node(&projection.input)?;
                let expressions = projection
                    .expr
                    .iter()
                    .map(|expression| physical(expression, projection.input.schema()))
                    .collect::<Result<Vec<_>>>()?;
                let schema = nullable_schema(&projection.schema);
                Ok(self.push(Project::new(expressions, schema), vec![input]))
            }
            LogicalPlan::Filter(filter) => {
                if let Some((window, projections)) = window_below(&filter.input) {
                    return self.lower_row_number_filter(filter, window, &projections);
                }
                let mut stream = self.lower_node(&filter.input)?;
                let schema = filter.input.schema();
                let (temporal, plain): (Vec<Expr>, Vec<Expr>) =
                    split_conjunction(&filter.predicate)
                        .into_iter()
                        .cloned()
                        .partition(super::temporal::reads_clock);
                if let Some(predicate) = conjunction(plain) {
                    if predicate.is_volatile() {
                        return Err(PlanError::Unsupported(format!(
                            "volatile function in materialized view: {predicate}"
                        ))
                        .into());
                    }
                    stream = self.push(Filter::new(physical(&predicate, schema)?), vec![stream]);
                }
                if !temporal.is_empty() {
                    let bounds = temporal
                        .iter()
                        .map(|conjunct| {
                            let (row_side, bound) = super::temporal::bound(conjunct)?;
                            if row_side.is_volatile() {
                                return Err(unsupported(&format!(
                                    "volatile function in {conjunct}"
                                )));
                            }
                            Ok((physical(&row_side, schema)?, bound))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let operator = TemporalFilter::new(bounds, nullable_schema(schema))?;
                    stream = self.push(operator, vec![stream]);
                }
                Ok(stream)
            }
            LogicalPlan::Aggregate(aggregate) => {
                let input = self.lower_node(&aggregate.input)?;
                let input_schema = aggregate.input.schema();
                if aggregate
                    .group_expr
                    .iter()
                    .any(|e| matches!(e, Expr::GroupingSet(_)))
                {
                    return Err(unsupported("GROUPING SETS, ROLLUP and CUBE"));
                }
                let group_expressions = aggregate
                    .group_expr
                    .iter()
                    .map(|expression| physical(expression, input_schema))
                    .collect::<Result<Vec<_>>>()?;
                let group_types = aggregate
                    .group_expr
                    .iter()
                    .map(|expression| expression.get_type(input_schema.as_ref()))
                    .collect::<datafusion::error::Result<Vec<_>>>()?;
                let output_schema = nullable_schema(&aggregate.schema);
                let calls = aggregate
                    .aggr_expr
                    .iter()
                    .enumerate()
                    .map(|(index, expression)| {
                        let output_type = output_schema
                            .field(group_expressions.len() + index)
                            .data_type()
                            .clone();
                        aggregate_call(expression, input_schema, output_type)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let closing = self.window_closing(&aggregate.group_expr)?;
                if group_expressions.is_empty() {
                    // A global aggregate has one group: nothing to partition.
                    let operator = Aggregate::new(Vec::new(), Vec::new(), calls, output_schema)?;
                    return Ok(self.push(operator, vec![input]));
                }
                let key = PartitionKey::new(group_expressions.clone(), group_types.clone())?;
                let make: OperatorFactory = Box::new(move || {
                    let mut operator = Aggregate::new(
                        group_expressions.clone(),
                        group_types.clone(),
                        calls.clone(),
                        Arc::clone(&output_schema),
                    )?;
                    if let Some(closing) = &closing {
                        operator = operator.close_windows(closing.clone())?;
                    }
                    Ok(Box::new(operator))
                });
                self.push_partitioned(vec![key], make, vec![input])
            }
            LogicalPlan::Join(join) => self.lower_join(join),
            LogicalPlan::Union(union) => {
                let inputs = union
                    .inputs
                    .iter()
                    .map(|input| self.lower_node(input))
                    .collect::<Result<Vec<_>>>()?;
                Ok(self.push(Union::new(nullable_schema(&union.schema)), inputs))
            }
            LogicalPlan::SubqueryAlias(alias) => self.lower_node(&alias.input),
            LogicalPlan::Sort(sort) => match sort.fetch {
                Some(fetch) => self.lower_top_n(sort, 0, Some(fetch)),
                // A view is a set; an ORDER BY without LIMIT in its definition does not change it.
                None => self.lower_node(&sort.input),
            },
            LogicalPlan::Limit(limit) => {
                use datafusion::logical_expr::{FetchType, SkipType};
                let (SkipType::Literal(offset), FetchType::Literal(fetch)) =
                    (limit.get_skip_type()?, limit.get_fetch_type()?)
                else {
                    return Err(unsupported("LIMIT or OFFSET that is not a constant"));
                };
                match limit.input.as_ref() {
                    LogicalPlan::Sort(sort) => self.lower_top_n(sort, offset, fetch),
                    _ => Err(unsupported("LIMIT or OFFSET without ORDER BY")),
                }
            }
            LogicalPlan::Distinct(_) => Err(unsupported("DISTINCT ON")),
            LogicalPlan::Window(window) => self.lower_row_number(window, None, &[], None),
            LogicalPlan::Subquery(_) => Err(unsupported("subqueries")),
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
                Err(unsupported("a query without FROM"))
            }
            LogicalPlan::Unnest(_) => Err(unsupported("UNNEST")),
            LogicalPlan::RecursiveQuery(_) => Err(unsupported("WITH RECURSIVE")),
            LogicalPlan::Repartition(_) => Err(unsupported("repartitioning")),
            LogicalPlan::Extension(_) => Err(unsupported("extension plan nodes")),
            LogicalPlan::Statement(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::DescribeTable(_) => Err(unsupported("a statement")),
        }
    }

    /// The stream of a watermarked relation's changes without the late ones: the relation's
    /// filter, made on its first scan.
    fn late_row_filter(&mut self, relation: RelationId, watermark: Watermark) -> Stream {
        if let Some(window_close) = &self.window_close
            && let Some((_, stream, _)) = window_close
                .late_row_filters
                .iter()
                .find(|(id, _, _)| *id == relation)
        {
            return *stream;
        }
        let cell = WatermarkCell::default();
        let filter = LateRowFilter::new(
            relation,
            watermark.column,
            watermark.delay_nanoseconds,
            cell.clone(),
        );
        let stream = self.push(filter, vec![Stream::Relation(relation)]);
        if let Some(window_close) = &mut self.window_close {
            window_close.late_row_filters.push((relation, stream, cell));
        }
        stream
    }

    /// For a view that emits on window close, how an aggregate grouped by `window_end` (or
    /// `window_start` of windows of one size) closes its groups; `None` for other aggregates.
    fn window_closing(&mut self, group_expressions: &[Expr]) -> Result<Option<WindowClosing>> {
        let Some(window_close) = &mut self.window_close else {
            return Ok(None);
        };
        let column_named = |wanted: &str| {
            group_expressions.iter().position(
                |expression| matches!(expression, Expr::Column(column) if column.name == wanted),
            )
        };
        let (group_column, end_offset_nanoseconds) = match (
            column_named("window_end"),
            column_named("window_start"),
        ) {
            (Some(column), _) => (column, 0),
            (None, Some(column)) => {
                let mut sizes = window_close.window_sizes.clone();
                sizes.sort_unstable();
                sizes.dedup();
                match sizes.as_slice() {
                    [size] => (
                        column,
                        i64::try_from(*size).map_err(|_| unsupported("a window this long"))?,
                    ),
                    _ => {
                        return Err(unsupported(
                            "EMIT ON WINDOW CLOSE grouped by window_start of windows of different sizes (group by window_end)",
                        ));
                    }
                }
            }
            (None, None) => return Ok(None),
        };
        if window_close.late_row_filters.is_empty() {
            return Ok(None);
        }
        window_close.closing_aggregates += 1;
        Ok(Some(WindowClosing {
            group_column,
            end_offset_nanoseconds,
            watermarks: window_close
                .late_row_filters
                .iter()
                .map(|(_, _, cell)| cell.clone())
                .collect(),
        }))
    }

    fn lower_join(&mut self, join: &datafusion::logical_expr::Join) -> Result<Stream> {
        use datafusion::common::{JoinType, NullEquality};
        let kind = match join.join_type {
            JoinType::Inner => JoinKind::Inner,
            JoinType::Left => JoinKind::Left,
            JoinType::Right => JoinKind::Right,
            JoinType::Full => JoinKind::Full,
            JoinType::LeftSemi => JoinKind::LeftSemi,
            JoinType::RightSemi => JoinKind::RightSemi,
            JoinType::LeftAnti => JoinKind::LeftAnti,
            JoinType::RightAnti => JoinKind::RightAnti,
            JoinType::LeftMark => JoinKind::LeftMark,
            JoinType::RightMark => JoinKind::RightMark,
        };
        if join.null_aware && join.filter.is_some() {
            return Err(unsupported("NOT IN with a correlated condition"));
        }
        let left = self.lower_node(&join.left)?;
        let right = self.lower_node(&join.right)?;
        let left_schema = join.left.schema();
        let right_schema = join.right.schema();
        let mut left_keys = Vec::with_capacity(join.on.len());
        let mut right_keys = Vec::with_capacity(join.on.len());
        let mut key_types = Vec::with_capacity(join.on.len());
        for (left_key, right_key) in &join.on {
            let left_type = left_key.get_type(left_schema.as_ref())?;
            let right_type = right_key.get_type(right_schema.as_ref())?;
            let key_type = if left_type == right_type {
                left_type
            } else {
                comparison_coercion(&left_type, &right_type).ok_or_else(|| {
                    PlanError::Unsupported(format!(
                        "joining {left_type} with {right_type} ({left_key} = {right_key})"
                    ))
                })?
            };
            left_keys.push(physical(left_key, left_schema)?);
            right_keys.push(physical(right_key, right_schema)?);
            key_types.push(key_type);
        }
        if join.on.is_empty() {
            // A join without equality keys (a cross join, or only a non-equality ON condition):
            // every row has the same key, so every pair is a candidate.
            left_keys.push(literal(true));
            right_keys.push(literal(true));
            key_types.push(datafusion::arrow::datatypes::DataType::Boolean);
        }
        let filter = match &join.filter {
            Some(filter) => {
                let pair_schema = left_schema.join(right_schema)?;
                Some(physical(filter, &pair_schema)?)
            }
            None => None,
        };
        let definition = JoinDefinition {
            kind,
            left_keys,
            right_keys,
            key_types,
            filter,
            nulls_equal: join.null_equality == NullEquality::NullEqualsNull,
            null_aware: join.null_aware,
            left_schema: nullable_schema(left_schema),
            right_schema: nullable_schema(right_schema),
            output_schema: nullable_schema(&join.schema),
        };
        if definition.null_aware || join.on.is_empty() {
            // NOT IN's regime depends on every right row, and a join without equality keys
            // gives every row the same key: neither splits by key.
            return Ok(self.push(Join::new(definition)?, vec![left, right]));
        }
        let keys = vec![
            PartitionKey::new(definition.left_keys.clone(), definition.key_types.clone())?,
            PartitionKey::new(definition.right_keys.clone(), definition.key_types.clone())?,
        ];
        let make: OperatorFactory = Box::new(move || Ok(Box::new(Join::new(definition.clone())?)));
        self.push_partitioned(keys, make, vec![left, right])
    }

    fn lower_top_n(
        &mut self,
        sort: &datafusion::logical_expr::Sort,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Stream> {
        let input = self.lower_node(&sort.input)?;
        let input_schema = sort.input.schema();
        let definition = TopNDefinition {
            partition_by: Vec::new(),
            partition_types: Vec::new(),
            order_by: sort_keys(&sort.expr, input_schema)?,
            offset,
            limit,
            row_number: false,
            input_schema: nullable_schema(input_schema),
            output_schema: nullable_schema(sort.input.schema()),
        };
        Ok(self.push(TopN::new(definition)?, vec![input]))
    }

    /// `WHERE rn <= n` over `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...) AS rn`: top-N per
    /// partition. The other conditions of the WHERE apply to its output.
    fn lower_row_number_filter(
        &mut self,
        filter: &datafusion::logical_expr::Filter,
        window: &datafusion::logical_expr::Window,
        projections: &[&datafusion::logical_expr::Projection],
    ) -> Result<Stream> {
        if super::temporal::reads_clock(&filter.predicate) {
            return Err(unsupported("now() in a filter over ROW_NUMBER()"));
        }
        let number_column = window
            .schema
            .fields()
            .last()
            .map(|field| field.name().clone())
            .unwrap_or_default();
        let mut limit = None;
        let mut rest = Vec::new();
        for conjunct in split_conjunction(&filter.predicate) {
            match (limit, row_number_bound(conjunct, &number_column)) {
                (None, Some(bound)) => limit = Some(bound),
                _ => rest.push(conjunct.clone()),
            }
        }
        if limit.is_none() {
            // Filtered on something else: every row keeps its number, then the filter applies.
            rest = vec![filter.predicate.clone()];
        }
        let remaining = conjunction(rest).map(|predicate| (predicate, filter.input.schema()));
        self.lower_row_number(window, limit, projections, remaining)
    }

    /// ROW_NUMBER() OVER (PARTITION BY ... [ORDER BY ...]): a top-N per partition that keeps the
    /// first `limit` rows (all of them when `None`), numbered; then the column-only `projections`
    /// above the window and the `remaining` filter (over the schema it names).
    fn lower_row_number(
        &mut self,
        window: &datafusion::logical_expr::Window,
        limit: Option<usize>,
        projections: &[&datafusion::logical_expr::Projection],
        remaining: Option<(Expr, &datafusion::common::DFSchemaRef)>,
    ) -> Result<Stream> {
        let not_supported = || unsupported("a window function (OVER) other than ROW_NUMBER()");
        let [Expr::WindowFunction(function)] = window.window_expr.as_slice() else {
            return Err(not_supported());
        };
        if function.fun.name() != "row_number" {
            return Err(not_supported());
        }
        let input = self.lower_node(&window.input)?;
        let input_schema = window.input.schema();
        let definition = TopNDefinition {
            partition_by: function
                .params
                .partition_by
                .iter()
                .map(|expression| physical(expression, input_schema))
                .collect::<Result<Vec<_>>>()?,
            partition_types: function
                .params
                .partition_by
                .iter()
                .map(|expression| expression.get_type(input_schema.as_ref()))
                .collect::<datafusion::error::Result<Vec<_>>>()?,
            order_by: sort_keys(&function.params.order_by, input_schema)?,
            offset: 0,
            limit,
            row_number: true,
            input_schema: nullable_schema(input_schema),
            output_schema: nullable_schema(&window.schema),
        };
        let mut stream = if definition.partition_by.is_empty() {
            self.push(TopN::new(definition)?, vec![input])
        } else {
            let key = PartitionKey::new(
                definition.partition_by.clone(),
                definition.partition_types.clone(),
            )?;
            let make: OperatorFactory =
                Box::new(move || Ok(Box::new(TopN::new(definition.clone())?)));
            self.push_partitioned(vec![key], make, vec![input])?
        };
        for projection in projections.iter().rev() {
            let expressions = projection
                .expr
                .iter()
                .map(|expression| physical(expression, projection.input.schema()))
                .collect::<Result<Vec<_>>>()?;
            let schema = nullable_schema(&projection.schema);
            stream = self.push(Project::new(expressions, schema), vec![stream]);
        }
        if let Some((predicate, schema)) = remaining {
            let predicate = physical(&predicate, schema)?;
            stream = self.push(Filter::new(predicate), vec![stream]);
        }
        Ok(stream)
    }
}

/// The window node under `plan`, seen through column-only projections (outermost first),
/// which keep the row number column's name.
fn window_below(
    plan: &LogicalPlan,
) -> Option<(
    &datafusion::logical_expr::Window,
    Vec<&datafusion::logical_expr::Projection>,
)> {
    let mut projections = Vec::new();
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Window(window) => return Some((window, projections)),
            LogicalPlan::Projection(projection)
                if projection
                    .expr
                    .iter()
                    .all(|expression| matches!(expression, Expr::Column(_))) =>
            {
                projections.push(projection);
                node = &projection.input;
            }
            _ => return None,
        }
    }
}

fn sort_keys(
    expressions: &[datafusion::logical_expr::SortExpr],
    schema: &DFSchema,
) -> Result<Vec<SortKey>> {
    expressions
        .iter()
        .map(|sort| {
            Ok(SortKey {
                expression: physical(&sort.expr, schema)?,
                data_type: sort.expr.get_type(schema)?,
                descending: !sort.asc,
                nulls_first: sort.nulls_first,
            })
        })
        .collect()
}

/// The number of rows `conjunct` keeps when it bounds the row number column: `rn <= n`,
/// `rn < n`, `rn = 1` (either way round).
fn row_number_bound(conjunct: &Expr, number_column: &str) -> Option<usize> {
    use datafusion::logical_expr::{BinaryExpr, Operator as Comparison};
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = conjunct else {
        return None;
    };
    let strip = |expression: &Expr| -> Expr {
        match expression {
            Expr::Cast(cast) => cast.expr.as_ref().clone(),
            other => other.clone(),
        }
    };
    let (column, op, value) = match (strip(left), strip(right)) {
        (Expr::Column(column), Expr::Literal(value, _)) => (column, *op, value),
        (Expr::Literal(value, _), Expr::Column(column)) => (column, op.swap()?, value),
        _ => return None,
    };
    if column.name != number_column {
        return None;
    }
    let value = match value
        .cast_to(&datafusion::arrow::datatypes::DataType::Int64)
        .ok()?
    {
        datafusion::common::ScalarValue::Int64(Some(value)) => value,
        _ => return None,
    };
    let kept = match op {
        Comparison::LtEq => value,
        Comparison::Lt => value - 1,
        Comparison::Eq if value == 1 => 1,
        _ => return None,
    };
    usize::try_from(kept.max(0)).ok()
}

fn literal(value: bool) -> Arc<dyn PhysicalExpr> {
    datafusion::physical_expr::expressions::lit(value)
}

fn aggregate_call(
    expression: &Expr,
    input_schema: &DFSchema,
    output_type: datafusion::arrow::datatypes::DataType,
) -> Result<AggregateCall> {
    let inner = match expression {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    let Expr::AggregateFunction(function) = inner else {
        return Err(unsupported(&format!("aggregate expression {expression}")));
    };
    let name = function.func.name();
    let params = &function.params;
    use AggregateFunction::*;
    let aggregate_function = match name {
        "count" => Count,
        "sum" => Sum,
        "avg" => Avg,
        "min" => Min,
        "max" => Max,
        "bool_and" => BoolAnd,
        "bool_or" => BoolOr,
        "var" => VarianceSample,
        "var_pop" => VariancePopulation,
        "stddev" => StddevSample,
        "stddev_pop" => StddevPopulation,
        "string_agg" => StringAgg,
        "array_agg" => ArrayAgg,
        other => return Err(unsupported(&format!("aggregate function {other}"))),
    };
    if params.null_treatment == Some(datafusion::logical_expr::expr::NullTreatment::IgnoreNulls) {
        return Err(unsupported(&format!("{name}(...) IGNORE NULLS")));
    }
    let (argument, delimiter) = match (aggregate_function, params.args.as_slice()) {
        (StringAgg, [argument, Expr::Literal(delimiter, _)]) => {
            let delimiter = match delimiter.cast_to(&datafusion::arrow::datatypes::DataType::Utf8) {
                Ok(datafusion::common::ScalarValue::Utf8(delimiter)) => {
                    delimiter.unwrap_or_default()
                }
                _ => return Err(unsupported("a string_agg delimiter that is not text")),
            };
            (argument, delimiter)
        }
        (StringAgg, _) => return Err(unsupported("a string_agg delimiter that is not a constant")),
        (_, [argument]) => (argument, String::new()),
        (_, arguments) => {
            return Err(unsupported(&format!(
                "{name} with {} arguments",
                arguments.len()
            )));
        }
    };
    // Only string_agg and array_agg depend on the order of their input.
    let order_by = match aggregate_function {
        StringAgg | ArrayAgg => sort_keys(&params.order_by, input_schema)?,
        _ => Vec::new(),
    };
    let filter = match &params.filter {
        Some(filter) => Some(physical(filter, input_schema)?),
        None => None,
    };
    Ok(AggregateCall {
        function: aggregate_function,
        argument: physical(argument, input_schema)?,
        input_type: argument.get_type(input_schema)?,
        output_type,
        distinct: params.distinct,
        filter,
        order_by,
        delimiter,
    })
}

fn physical(expression: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
    let expression = fixed_intervals_as_durations(expression.clone(), schema)?;
    super::physical_expr(&expression, schema)
}

/// `timestamp ± INTERVAL` without months or days (as in TUMBLE and HOP windows and most
/// event-time conditions) becomes `timestamp ± duration`: the same
/// instant, computed as one integer addition per row instead of Arrow's calendar arithmetic,
/// which converts every value to a date and time and back (a third of Nexmark q5's time).
fn fixed_intervals_as_durations(expression: Expr, schema: &DFSchema) -> Result<Expr> {
    use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, TimeUnit};
    use datafusion::common::ScalarValue;
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::{BinaryExpr, Operator};
    let rewritten = expression.transform_up(|node| {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &node else {
            return Ok(Transformed::no(node));
        };
        let Expr::Literal(
            ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano {
                months: 0,
                days: 0,
                nanoseconds,
            })),
            _,
        ) = right.as_ref()
        else {
            return Ok(Transformed::no(node));
        };
        if !matches!(op, Operator::Plus | Operator::Minus) {
            return Ok(Transformed::no(node));
        }
        let duration = match left.get_type(schema)? {
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                ScalarValue::DurationNanosecond(Some(*nanoseconds))
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) if nanoseconds % 1_000 == 0 => {
                ScalarValue::DurationMicrosecond(Some(nanoseconds / 1_000))
            }
            DataType::Timestamp(TimeUnit::Millisecond, _) if nanoseconds % 1_000_000 == 0 => {
                ScalarValue::DurationMillisecond(Some(nanoseconds / 1_000_000))
            }
            DataType::Timestamp(TimeUnit::Second, _) if nanoseconds % 1_000_000_000 == 0 => {
                ScalarValue::DurationSecond(Some(nanoseconds / 1_000_000_000))
            }
            _ => return Ok(Transformed::no(node)),
        };
        Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
            left.clone(),
            *op,
            Box::new(Expr::Literal(duration, None)),
        ))))
    })?;
    Ok(rewritten.data)
}

/// The Arrow schema of a plan node with every column nullable: views carry no NOT NULL
/// constraints, and DataFusion's nullability inference must not reject a legitimate NULL.
pub fn nullable_schema(schema: &DFSchema) -> SchemaRef {
    crate::catalog::without_constraints(schema.as_arrow())
}
