//! Planning: the DataFusion context over snapshots, Postgres type rules, and lowering of
//! logical plans to incremental dataflows.

pub mod checked_arithmetic;
pub mod colocate;
pub mod context;
pub mod lower;
pub mod plan_functions;
pub mod postgres_avg;
pub mod postgres_casts;
pub mod postgres_types;
pub mod session_functions;
pub mod set_operations;
pub mod subqueries;
pub mod system;
pub mod temporal;
pub mod two_phase;

use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};

use crate::error::{PlanError, Result};

/// Compiles a logical expression over `schema` into one evaluated on whole batches. Subqueries
/// cannot be evaluated row by row here and are rejected, naming the subquery.
pub fn physical_expr(expression: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
    let mut subquery = None;
    let _ = expression.apply(|node| {
        if matches!(
            node,
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
        ) {
            subquery = Some(node.to_string());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if let Some(subquery) = subquery {
        return Err(PlanError::Unsupported(format!(
            "subquery {subquery} is not supported here yet"
        ))
        .into());
    }
    Ok(create_physical_expr(
        expression,
        schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )?)
}
