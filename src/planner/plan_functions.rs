//! The functions a stored dataflow plan's expressions call, for writing plans and reading them
//! back: DataFusion's, pg_catalog's and the session's by name, and Tributary's own casts with the
//! type each produces.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result as DataFusionResult};
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::{Extension, LogicalPlan, ScalarUDF};
use datafusion_proto::logical_plan::LogicalExtensionCodec;

use super::postgres_casts::PostgresTimeCast;
use crate::dataflow::plan::{Functions, TypeSpec};

/// What plans made in `state`'s session encode their functions with and are rendered with.
pub fn plan_functions(state: &SessionState) -> Functions {
    Functions {
        context: state.task_ctx(),
        codec: Arc::new(TributaryFunctions),
    }
}

/// Writes a [`PostgresTimeCast`] as its target type; every other function goes by name alone.
/// Plans hold only scalar expressions, so plan nodes and tables are never encoded.
#[derive(Debug)]
struct TributaryFunctions;

impl LogicalExtensionCodec for TributaryFunctions {
    fn try_decode(
        &self,
        _buf: &[u8],
        _inputs: &[LogicalPlan],
        _ctx: &TaskContext,
    ) -> DataFusionResult<Extension> {
        Err(not_in_plans("extension plan nodes"))
    }

    fn try_encode(&self, _node: &Extension, _buf: &mut Vec<u8>) -> DataFusionResult<()> {
        Err(not_in_plans("extension plan nodes"))
    }

    fn try_decode_table_provider(
        &self,
        _buf: &[u8],
        _table_ref: &TableReference,
        _schema: SchemaRef,
        _ctx: &TaskContext,
    ) -> DataFusionResult<Arc<dyn TableProvider>> {
        Err(not_in_plans("tables"))
    }

    fn try_encode_table_provider(
        &self,
        _table_ref: &TableReference,
        _node: Arc<dyn TableProvider>,
        _buf: &mut Vec<u8>,
    ) -> DataFusionResult<()> {
        Err(not_in_plans("tables"))
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> DataFusionResult<()> {
        if let Some(cast) = node.inner().downcast_ref::<PostgresTimeCast>() {
            let target = TypeSpec::new(cast.target())
                .map_err(|error| DataFusionError::Plan(error.to_string()))?;
            buf.extend_from_slice(target.bytes());
        }
        Ok(())
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DataFusionResult<Arc<ScalarUDF>> {
        if name != PostgresTimeCast::NAME {
            return Err(DataFusionError::Plan(format!("unknown function {name}")));
        }
        let target = TypeSpec::from_bytes(buf)
            .decode()
            .map_err(|error| DataFusionError::Plan(error.to_string()))?;
        Ok(Arc::new(ScalarUDF::new_from_impl(PostgresTimeCast::new(
            target,
        ))))
    }
}

fn not_in_plans(what: &str) -> DataFusionError {
    DataFusionError::NotImplemented(format!("{what} do not appear in dataflow plans"))
}
