//! Lowering: an optimized DataFusion `LogicalPlan` becomes the plan of an incremental dataflow
//! (a [`DataflowPlan`]: operators with ids and the edges between them), or is rejected with
//! 0A000 naming the part that cannot be maintained.

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::type_coercion::binary::comparison_coercion;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};

use super::context::RelationProvider;
use crate::catalog::{RelationId, Watermark};
use crate::dataflow::aggregate::{AggregateFunction, AggregatePhase};
use crate::dataflow::join::JoinKind;
use crate::dataflow::plan::{
    AggregateCallSpec, AggregateSpec, DataflowPlan, Edge, Functions, Input, JoinSpec, OperatorId,
    OperatorSpec, PartitionKeySpec, PlanNode, Route, ScalarExpression, SchemaSpec, SortKeySpec,
    TopNSpec, TypeSpec, WindowCallSpec, WindowClosingSpec, WindowSpec,
};
use crate::dataflow::window::{Frame, WindowFunctionKind};
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

/// Lowers `plan` (already analyzed and optimized) into the plan of the dataflow that maintains
/// it. Its expressions are encoded with `functions`.
pub fn lower(plan: &LogicalPlan, emit: Emit, functions: &Functions) -> Result<DataflowPlan> {
    let plan = super::subqueries::scalar_subqueries_as_joins(plan.clone())?;
    let mut builder = Builder {
        nodes: Vec::new(),
        functions,
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
    let last = builder.nodes.last().map(|node| Input::Operator(node.id));
    if Some(output) != last {
        // The view is its input as it stands (`SELECT * FROM t`): one pass-through node.
        let operator = OperatorSpec::Union {
            output: schema_spec(plan.schema())?,
        };
        builder.push(operator, vec![forward(output)]);
    }
    let mut plan = DataflowPlan {
        nodes: builder.nodes,
    };
    super::colocate::colocate(&mut plan)?;
    Ok(plan)
}

/// The nodes lowered so far, in topological order; a node's id is its position.
struct Builder<'a> {
    nodes: Vec<PlanNode>,
    functions: &'a Functions,
    window_close: Option<WindowCloseBuilder>,
}

/// What lowering a view that emits on window close keeps track of.
struct WindowCloseBuilder {
    window_sizes: Vec<i128>,
    /// One filter per relation with a watermark, shared by every scan of the relation (a HOP
    /// reads it once per window), so each late row is counted once.
    late_row_filters: Vec<(RelationId, OperatorId)>,
    closing_aggregates: usize,
}

fn unsupported(what: &str) -> Error {
    PlanError::Unsupported(format!("{what} is not supported in materialized views yet")).into()
}

/// An edge along which rows stay on their worker.
fn forward(from: Input) -> Edge {
    Edge {
        from,
        route: Route::Forward,
    }
}

/// An edge that brings every row to one worker.
fn gather(from: Input) -> Edge {
    Edge {
        from,
        route: Route::Gather,
    }
}

/// An edge that brings each row to the worker owning its `key` (expressions over the rows it
/// carries, compared as `types`); without a key every row has the same one, so all meet on one
/// worker.
fn by_key(from: Input, key: &[ScalarExpression], types: &[TypeSpec]) -> Edge {
    if key.is_empty() {
        return gather(from);
    }
    Edge {
        from,
        route: Route::Hash(PartitionKeySpec {
            expressions: key.to_vec(),
            types: types.to_vec(),
            key_positions: None,
        }),
    }
}

impl Builder<'_> {
    fn push(&mut self, operator: OperatorSpec, inputs: Vec<Edge>) -> Input {
        let id = self.nodes.len() as OperatorId;
        self.nodes.push(PlanNode {
            id,
            operator,
            inputs,
        });
        Input::Operator(id)
    }

    /// `expression` over `schema` as a plan holds it. It is compiled here too, so that what
    /// cannot be evaluated is refused when the view is created, with its SQLSTATE.
    fn expression(&self, expression: &Expr, schema: &DFSchema) -> Result<ScalarExpression> {
        super::physical_expr(expression, schema)?;
        let stored = ScalarExpression::new(expression, self.functions).map_err(|error| {
            PlanError::Unsupported(format!(
                "the expression {expression} cannot be stored in a dataflow plan: {error}"
            ))
        })?;
        Ok(match expression {
            Expr::Column(column) => match schema.index_of_column(column) {
                Ok(position) => stored.at_column(position),
                Err(_) => stored,
            },
            _ => stored,
        })
    }

    fn expressions(
        &self,
        expressions: &[Expr],
        schema: &DFSchema,
    ) -> Result<Vec<ScalarExpression>> {
        expressions
            .iter()
            .map(|expression| self.expression(expression, schema))
            .collect()
    }

    /// Appends the nodes computing `plan` and returns the stream of its changes.
    fn lower_node(&mut self, plan: &LogicalPlan) -> Result<Input> {
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
                let source_spec = schema_spec(&source_dfschema)?;
                let mut stream = Input::Relation(relation.id());
                if let (Some(watermark), Some(_)) =
                    (relation.relation().watermark, &self.window_close)
                {
                    stream = self.late_row_filter(relation.id(), watermark);
                }
                for filter in &scan.filters {
                    let operator = OperatorSpec::Filter {
                        input: source_spec.clone(),
                        predicate: self.expression(filter, &source_dfschema)?,
                    };
                    stream = self.push(operator, vec![forward(stream)]);
                }
                if let Some(projection) = &scan.projection {
                    let columns: Vec<Expr> = projection
                        .iter()
                        .map(|&index| {
                            Expr::Column(datafusion::common::Column::new(
                                Some(scan.table_name.clone()),
                                source_schema.field(index).name(),
                            ))
                        })
                        .collect();
                    let operator = OperatorSpec::Project {
                        input: source_spec,
                        expressions: self.expressions(&columns, &source_dfschema)?,
                        output: schema_spec(&scan.projected_schema)?,
                    };
                    stream = self.push(operator, vec![forward(stream)]);
                }
                Ok(stream)
            }
            LogicalPlan::Projection(projection) => {
                let input = self.lower_node(&projection.input)?;
                let operator = self.projection(projection)?;
                Ok(self.push(operator, vec![forward(input)]))
            }
            LogicalPlan::Filter(filter) => {
                if let Some((window, projections)) = window_below(&filter.input)
                    && let Some(stream) =
                        self.lower_row_number_filter(filter, window, &projections)?
                {
                    return Ok(stream);
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
                    let operator = OperatorSpec::Filter {
                        input: schema_spec(schema)?,
                        predicate: self.expression(&predicate, schema)?,
                    };
                    stream = self.push(operator, vec![forward(stream)]);
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
                            Ok((self.expression(&row_side, schema)?, bound.into()))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let operator = OperatorSpec::TemporalFilter {
                        input: schema_spec(schema)?,
                        bounds,
                    };
                    stream = self.push(operator, vec![forward(stream)]);
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
                let group_by = self.expressions(&aggregate.group_expr, input_schema)?;
                let group_types = types(&aggregate.group_expr, input_schema)?;
                let output_schema = nullable_schema(&aggregate.schema);
                let calls = aggregate
                    .aggr_expr
                    .iter()
                    .enumerate()
                    .map(|(index, expression)| {
                        let output_type = output_schema
                            .field(group_by.len() + index)
                            .data_type()
                            .clone();
                        aggregate_call(self, expression, input_schema, output_type)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let closing = self.window_closing(&aggregate.group_expr)?;
                let spec = AggregateSpec {
                    input: schema_spec(input_schema)?,
                    group_by,
                    group_types,
                    calls,
                    output: schema_spec(&aggregate.schema)?,
                    closing,
                    phase: AggregatePhase::Whole,
                };
                let (input, spec) = if super::two_phase::worthwhile(aggregate, &spec)? {
                    let (partial, final_aggregate) =
                        super::two_phase::split(spec, &aggregate.schema, self.functions)?;
                    let edge = Edge {
                        from: input,
                        route: super::two_phase::partial_route(&partial),
                    };
                    let partial = OperatorSpec::Aggregate(partial);
                    (self.push(partial, vec![edge]), final_aggregate)
                } else {
                    (input, spec)
                };
                // A global aggregate has one group: its rows (or partial states) meet on one
                // worker.
                let edge = by_key(input, &spec.group_by, &spec.group_types);
                Ok(self.push(OperatorSpec::Aggregate(spec), vec![edge]))
            }
            LogicalPlan::Join(join) => self.lower_join(join),
            LogicalPlan::Union(union) => {
                let inputs = union
                    .inputs
                    .iter()
                    .map(|input| Ok(forward(self.lower_node(input)?)))
                    .collect::<Result<Vec<_>>>()?;
                let operator = OperatorSpec::Union {
                    output: schema_spec(&union.schema)?,
                };
                Ok(self.push(operator, inputs))
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
            LogicalPlan::Window(window) => self.lower_window(window),
            LogicalPlan::Subquery(_) => Err(unsupported("subqueries")),
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
                Err(unsupported("a query without FROM"))
            }
            LogicalPlan::Unnest(unnest) => {
                if !unnest.struct_type_columns.is_empty()
                    || unnest
                        .list_type_columns
                        .iter()
                        .any(|(_, list)| list.depth != 1)
                {
                    return Err(unsupported("UNNEST of structs or nested lists"));
                }
                let input = self.lower_node(&unnest.input)?;
                let operator = OperatorSpec::Unnest {
                    input: schema_spec(unnest.input.schema())?,
                    sources: unnest.dependency_indices.clone(),
                    lists: unnest
                        .list_type_columns
                        .iter()
                        .map(|(column, _)| *column)
                        .collect(),
                    output: schema_spec(&unnest.schema)?,
                };
                Ok(self.push(operator, vec![forward(input)]))
            }
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
    fn late_row_filter(&mut self, relation: RelationId, watermark: Watermark) -> Input {
        if let Some(window_close) = &self.window_close
            && let Some((_, filter)) = window_close
                .late_row_filters
                .iter()
                .find(|(id, _)| *id == relation)
        {
            return Input::Operator(*filter);
        }
        let operator = OperatorSpec::LateRowFilter {
            relation,
            time_column: watermark.column,
            delay_nanoseconds: watermark.delay_nanoseconds,
        };
        // The watermark is the greatest event time of all the relation's rows: one filter sees
        // them all.
        let stream = self.push(operator, vec![gather(Input::Relation(relation))]);
        if let (Some(window_close), Input::Operator(filter)) = (&mut self.window_close, stream) {
            window_close.late_row_filters.push((relation, filter));
        }
        stream
    }

    /// For a view that emits on window close, how an aggregate grouped by `window_end` (or
    /// `window_start` of windows of one size) closes its groups; `None` for other aggregates.
    fn window_closing(&mut self, group_expressions: &[Expr]) -> Result<Option<WindowClosingSpec>> {
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
        Ok(Some(WindowClosingSpec {
            group_column,
            end_offset_nanoseconds,
            watermarks: window_close
                .late_row_filters
                .iter()
                .map(|(_, filter)| *filter)
                .collect(),
        }))
    }

    fn lower_join(&mut self, join: &datafusion::logical_expr::Join) -> Result<Input> {
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
            left_keys.push(self.expression(left_key, left_schema)?);
            right_keys.push(self.expression(right_key, right_schema)?);
            key_types.push(type_spec(&key_type)?);
        }
        if join.on.is_empty() {
            // A join without equality keys (a cross join, or only a non-equality ON condition):
            // every row has the same key, so every pair is a candidate.
            let always = Expr::Literal(datafusion::common::ScalarValue::Boolean(Some(true)), None);
            left_keys.push(self.expression(&always, left_schema)?);
            right_keys.push(self.expression(&always, right_schema)?);
            key_types.push(type_spec(&DataType::Boolean)?);
        }
        let filter = match &join.filter {
            Some(filter) => {
                let pair_schema = left_schema.join(right_schema)?;
                Some(self.expression(filter, &pair_schema)?)
            }
            None => None,
        };
        let edges = if join.null_aware || join.on.is_empty() {
            // NOT IN's regime depends on every right row, and a join without equality keys
            // gives every row the same key: neither splits by key.
            vec![gather(left), gather(right)]
        } else {
            vec![
                by_key(left, &left_keys, &key_types),
                by_key(right, &right_keys, &key_types),
            ]
        };
        let operator = OperatorSpec::Join(JoinSpec {
            kind,
            left: schema_spec(left_schema)?,
            right: schema_spec(right_schema)?,
            left_keys,
            right_keys,
            key_types,
            filter,
            nulls_equal: join.null_equality == NullEquality::NullEqualsNull,
            null_aware: join.null_aware,
            output: schema_spec(&join.schema)?,
        });
        Ok(self.push(operator, edges))
    }

    fn lower_top_n(
        &mut self,
        sort: &datafusion::logical_expr::Sort,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Input> {
        let input = self.lower_node(&sort.input)?;
        let input_schema = sort.input.schema();
        let operator = OperatorSpec::TopN(TopNSpec {
            input: schema_spec(input_schema)?,
            partition_by: Vec::new(),
            partition_types: Vec::new(),
            order_by: self.sort_keys(&sort.expr, input_schema)?,
            offset,
            limit,
            row_number: false,
            output: schema_spec(input_schema)?,
        });
        Ok(self.push(operator, vec![gather(input)]))
    }

    /// `WHERE rn <= n` over `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...) AS rn`: top-N per
    /// partition. The other conditions of the WHERE apply to its output. `None` when the
    /// filter does not bound a lone ROW_NUMBER(): the window and the filter are then lowered
    /// as they are.
    fn lower_row_number_filter(
        &mut self,
        filter: &datafusion::logical_expr::Filter,
        window: &datafusion::logical_expr::Window,
        projections: &[&datafusion::logical_expr::Projection],
    ) -> Result<Option<Input>> {
        let [Expr::WindowFunction(function)] = window.window_expr.as_slice() else {
            return Ok(None);
        };
        if function.fun.name() != "row_number" {
            return Ok(None);
        }
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
        let Some(limit) = limit else {
            return Ok(None);
        };
        let remaining = conjunction(rest).map(|predicate| (predicate, filter.input.schema()));
        self.lower_row_number(window, function, limit, projections, remaining)
            .map(Some)
    }

    /// `function`, the window's ROW_NUMBER() OVER (PARTITION BY ... [ORDER BY ...]): a top-N per
    /// partition that keeps the first `limit` rows, numbered; then the `projections` above the
    /// window and the `remaining` filter (over the schema it names).
    fn lower_row_number(
        &mut self,
        window: &datafusion::logical_expr::Window,
        function: &datafusion::logical_expr::expr::WindowFunction,
        limit: usize,
        projections: &[&datafusion::logical_expr::Projection],
        remaining: Option<(Expr, &datafusion::common::DFSchemaRef)>,
    ) -> Result<Input> {
        let input = self.lower_node(&window.input)?;
        let input_schema = window.input.schema();
        let partition_by = self.expressions(&function.params.partition_by, input_schema)?;
        let partition_types = types(&function.params.partition_by, input_schema)?;
        let edge = by_key(input, &partition_by, &partition_types);
        let operator = OperatorSpec::TopN(TopNSpec {
            input: schema_spec(input_schema)?,
            partition_by,
            partition_types,
            order_by: self.sort_keys(&function.params.order_by, input_schema)?,
            offset: 0,
            limit: Some(limit),
            row_number: true,
            output: schema_spec(&window.schema)?,
        });
        let mut stream = self.push(operator, vec![edge]);
        for projection in projections.iter().rev() {
            let operator = self.projection(projection)?;
            stream = self.push(operator, vec![forward(stream)]);
        }
        if let Some((predicate, schema)) = remaining {
            let operator = OperatorSpec::Filter {
                input: schema_spec(schema)?,
                predicate: self.expression(&predicate, schema)?,
            };
            stream = self.push(operator, vec![forward(stream)]);
        }
        Ok(stream)
    }

    /// Window functions (OVER) sharing one PARTITION BY and ORDER BY: a window operator per
    /// partition key, which keeps each partition's rows in order.
    fn lower_window(&mut self, window: &datafusion::logical_expr::Window) -> Result<Input> {
        let input_schema = window.input.schema();
        let functions: Vec<&datafusion::logical_expr::expr::WindowFunction> = window
            .window_expr
            .iter()
            .map(|expression| match expression {
                Expr::WindowFunction(function) => Ok(function.as_ref()),
                Expr::Alias(alias) => match alias.expr.as_ref() {
                    Expr::WindowFunction(function) => Ok(function.as_ref()),
                    other => Err(unsupported(&format!("window expression {other}"))),
                },
                other => Err(unsupported(&format!("window expression {other}"))),
            })
            .collect::<Result<_>>()?;
        let Some(first) = functions.first() else {
            return self.lower_node(&window.input);
        };
        let (partition_by, order_by) = (&first.params.partition_by, &first.params.order_by);
        if functions.iter().any(|function| {
            function.params.partition_by != *partition_by || function.params.order_by != *order_by
        }) {
            return Err(unsupported(
                "window functions with different PARTITION BY or ORDER BY in one window",
            ));
        }
        let first_output = input_schema.fields().len();
        let calls = functions
            .iter()
            .enumerate()
            .map(|(place, function)| {
                let output_type = window.schema.field(first_output + place).data_type();
                self.window_call(function, input_schema, output_type)
            })
            .collect::<Result<Vec<_>>>()?;
        let input = self.lower_node(&window.input)?;
        let partition_by_expressions = self.expressions(partition_by, input_schema)?;
        let partition_types = types(partition_by, input_schema)?;
        let edge = by_key(input, &partition_by_expressions, &partition_types);
        let operator = OperatorSpec::Window(WindowSpec {
            input: schema_spec(input_schema)?,
            partition_by: partition_by_expressions,
            partition_types,
            order_by: self.sort_keys(order_by, input_schema)?,
            calls,
            output: schema_spec(&window.schema)?,
        });
        Ok(self.push(operator, vec![edge]))
    }

    fn window_call(
        &self,
        function: &datafusion::logical_expr::expr::WindowFunction,
        schema: &DFSchema,
        output_type: &DataType,
    ) -> Result<WindowCallSpec> {
        use WindowFunctionKind::*;
        use datafusion::logical_expr::WindowFunctionDefinition;
        let name = function.fun.name().to_lowercase();
        let params = &function.params;
        let shown = function.fun.to_string();
        let kind = match (&function.fun, name.as_str()) {
            (WindowFunctionDefinition::WindowUDF(_), "row_number") => RowNumber,
            (WindowFunctionDefinition::WindowUDF(_), "rank") => Rank,
            (WindowFunctionDefinition::WindowUDF(_), "dense_rank") => DenseRank,
            (WindowFunctionDefinition::WindowUDF(_), "lag") => Lag,
            (WindowFunctionDefinition::WindowUDF(_), "lead") => Lead,
            (WindowFunctionDefinition::WindowUDF(_), "first_value") => FirstValue,
            (WindowFunctionDefinition::WindowUDF(_), "last_value") => LastValue,
            (WindowFunctionDefinition::AggregateUDF(_), "count") => Count,
            (WindowFunctionDefinition::AggregateUDF(_), "sum") => Sum,
            (WindowFunctionDefinition::AggregateUDF(_), "avg") => Avg,
            (WindowFunctionDefinition::AggregateUDF(_), "min") => Min,
            (WindowFunctionDefinition::AggregateUDF(_), "max") => Max,
            _ => return Err(unsupported(&format!("window function {name}"))),
        };
        if params.distinct || params.filter.is_some() {
            return Err(unsupported(&format!(
                "DISTINCT or FILTER in window function {name}"
            )));
        }
        if params.null_treatment == Some(datafusion::logical_expr::expr::NullTreatment::IgnoreNulls)
        {
            return Err(unsupported(&format!("{name}(...) IGNORE NULLS")));
        }
        if kind == Sum
            && !(output_type.is_integer()
                || output_type.is_floating()
                || matches!(output_type, DataType::Decimal128(_, _)))
        {
            return Err(unsupported(&format!(
                "window function sum over {output_type}"
            )));
        }
        if kind == Avg && !matches!(output_type, DataType::Float64 | DataType::Decimal128(_, _)) {
            return Err(unsupported(&format!(
                "window function avg over {output_type}"
            )));
        }
        let (mut kind, mut offset) = (kind, 0usize);
        let arguments: Vec<&Expr> = match kind {
            RowNumber | Rank | DenseRank => Vec::new(),
            Lag | Lead => {
                let [value, rest @ ..] = params.args.as_slice() else {
                    return Err(unsupported(&format!("{name} without an argument")));
                };
                let distance = match rest.first() {
                    None => 1,
                    Some(Expr::Literal(distance, _)) => match distance.cast_to(&DataType::Int64) {
                        Ok(datafusion::common::ScalarValue::Int64(Some(distance))) => distance,
                        _ => {
                            return Err(unsupported(&format!(
                                "{name} with an offset that is not an integer"
                            )));
                        }
                    },
                    Some(_) => {
                        return Err(unsupported(&format!(
                            "{name} with an offset that is not a constant"
                        )));
                    }
                };
                if distance < 0 {
                    kind = if kind == Lag { Lead } else { Lag };
                }
                offset = usize::try_from(distance.unsigned_abs())
                    .map_err(|_| unsupported(&format!("{name} with an offset this large")))?;
                std::iter::once(value).chain(rest.get(1)).collect()
            }
            _ => params.args.iter().take(1).collect(),
        };
        let arguments = arguments
            .into_iter()
            .map(|argument| self.expression(argument, schema))
            .collect::<Result<Vec<_>>>()?;
        let frame = window_frame(&params.window_frame, !params.order_by.is_empty())?;
        Ok(WindowCallSpec {
            kind,
            arguments,
            offset,
            frame,
            output_type: type_spec(output_type)?,
            shown,
        })
    }

    fn projection(
        &self,
        projection: &datafusion::logical_expr::Projection,
    ) -> Result<OperatorSpec> {
        let input = projection.input.schema();
        Ok(OperatorSpec::Project {
            input: schema_spec(input)?,
            expressions: self.expressions(&projection.expr, input)?,
            output: schema_spec(&projection.schema)?,
        })
    }

    fn sort_keys(
        &self,
        expressions: &[datafusion::logical_expr::SortExpr],
        schema: &DFSchema,
    ) -> Result<Vec<SortKeySpec>> {
        expressions
            .iter()
            .map(|sort| {
                Ok(SortKeySpec {
                    expression: self.expression(&sort.expr, schema)?,
                    data_type: type_spec(&sort.expr.get_type(schema)?)?,
                    descending: !sort.asc,
                    nulls_first: sort.nulls_first,
                })
            })
            .collect()
    }
}

/// The frame a window function reads, as the window operator maintains it.
fn window_frame(frame: &datafusion::logical_expr::WindowFrame, ordered: bool) -> Result<Frame> {
    use datafusion::logical_expr::{WindowFrameBound, WindowFrameUnits};
    let offset = |value: &datafusion::common::ScalarValue| -> Option<i64> {
        match value.cast_to(&DataType::Int64) {
            Ok(datafusion::common::ScalarValue::Int64(Some(offset))) => Some(offset),
            _ => None,
        }
    };
    let unbounded = |bound: &WindowFrameBound| match bound {
        WindowFrameBound::Preceding(value) | WindowFrameBound::Following(value) => value.is_null(),
        WindowFrameBound::CurrentRow => false,
    };
    let rows_offset = |bound: &WindowFrameBound| match bound {
        WindowFrameBound::CurrentRow => Some(0),
        WindowFrameBound::Preceding(value) => offset(value).map(|offset| -offset),
        WindowFrameBound::Following(value) => offset(value),
    };
    let start_unbounded = matches!(&frame.start_bound, WindowFrameBound::Preceding(_))
        && unbounded(&frame.start_bound);
    let end_unbounded =
        matches!(&frame.end_bound, WindowFrameBound::Following(_)) && unbounded(&frame.end_bound);
    let frame = match (frame.units, &frame.end_bound) {
        _ if start_unbounded && end_unbounded => Frame::Partition,
        (_, WindowFrameBound::CurrentRow) if start_unbounded && !ordered => Frame::Partition,
        (WindowFrameUnits::Rows, WindowFrameBound::CurrentRow) if start_unbounded => {
            Frame::ThroughRow
        }
        (_, WindowFrameBound::CurrentRow) if start_unbounded => Frame::ThroughPeers,
        (WindowFrameUnits::Rows, end) if !start_unbounded && !unbounded(end) => {
            match (rows_offset(&frame.start_bound), rows_offset(end)) {
                (Some(start), Some(end)) => Frame::Rows { start, end },
                _ => return Err(unsupported(&format!("window frame {frame}"))),
            }
        }
        _ => return Err(unsupported(&format!("window frame {frame}"))),
    };
    Ok(frame)
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
            // Columns only, or a column cast and named as it was (the row number as BIGINT,
            // planner::postgres_types).
            LogicalPlan::Projection(projection)
                if projection.expr.iter().all(|expression| match expression {
                    Expr::Column(_) => true,
                    Expr::Alias(alias) => matches!(
                        alias.expr.as_ref(),
                        Expr::Cast(cast) if matches!(cast.expr.as_ref(), Expr::Column(_))
                    ),
                    _ => false,
                }) =>
            {
                projections.push(projection);
                node = &projection.input;
            }
            _ => return None,
        }
    }
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

/// One aggregate of the SELECT list, as an aggregate operator computes it.
fn aggregate_call(
    builder: &Builder<'_>,
    expression: &Expr,
    input_schema: &DFSchema,
    output_type: DataType,
) -> Result<AggregateCallSpec> {
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
    let argument_type = argument.get_type(input_schema)?;
    let interval_sum = aggregate_function == Sum && matches!(argument_type, DataType::Interval(_));
    if matches!(aggregate_function, Sum | Avg)
        && !(argument_type.is_integer()
            || argument_type.is_floating()
            || matches!(argument_type, DataType::Decimal128(_, _))
            || interval_sum)
    {
        // Their states are exact integer, decimal or float sums (dataflow::aggregate).
        let type_name = match argument_type {
            DataType::Interval(_) => "interval".to_string(),
            other => other.to_string(),
        };
        return Err(unsupported(&format!("{name} over {type_name}")));
    }
    // Only string_agg and array_agg depend on the order of their input.
    let order_by = match aggregate_function {
        StringAgg | ArrayAgg => builder.sort_keys(&params.order_by, input_schema)?,
        _ => Vec::new(),
    };
    let filter = match &params.filter {
        Some(filter) => Some(builder.expression(filter, input_schema)?),
        None => None,
    };
    Ok(AggregateCallSpec {
        function: aggregate_function,
        argument: builder.expression(argument, input_schema)?,
        input_type: type_spec(&argument_type)?,
        output_type: type_spec(&output_type)?,
        distinct: params.distinct,
        filter,
        order_by,
        delimiter,
        shown: inner.to_string(),
    })
}

fn schema_spec(schema: &DFSchema) -> Result<SchemaSpec> {
    Ok(SchemaSpec::new(schema)?)
}

fn type_spec(data_type: &DataType) -> Result<TypeSpec> {
    Ok(TypeSpec::new(data_type)?)
}

/// The types of `expressions` over `schema`.
fn types(expressions: &[Expr], schema: &DFSchema) -> Result<Vec<TypeSpec>> {
    expressions
        .iter()
        .map(|expression| type_spec(&expression.get_type(schema)?))
        .collect()
}

/// The Arrow schema of a plan node with every column nullable: views carry no NOT NULL
/// constraints, and DataFusion's nullability inference must not reject a legitimate NULL.
pub fn nullable_schema(schema: &DFSchema) -> SchemaRef {
    crate::catalog::without_constraints(schema.as_arrow())
}
