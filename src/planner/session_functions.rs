//! SQL functions clients call to learn about their session: version(), current_setting(),
//! set_config(), current_database(), current_schema(), current_user and session_user. Each is
//! built per session around its
//! [`SessionVariables`].

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

use crate::error::ExecutionError;
use crate::session::SessionVariables;

/// What version() says: Postgres 16 for the tools that parse it, then Tributary's own.
pub fn version_text() -> String {
    format!(
        "PostgreSQL 16.6 (Tributary {}) on {}-unknown-linux-gnu, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    )
}

/// The functions, ready to register in the session's context.
pub fn session_functions(variables: Arc<SessionVariables>) -> Vec<ScalarUDF> {
    let user_variables = Arc::clone(&variables);
    let version = create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|_| Ok(text(version_text()))),
    );
    let database = {
        let variables = Arc::clone(&variables);
        create_udf(
            "current_database",
            vec![],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |_| Ok(text(named(&variables.database)))),
        )
    };
    let schema = {
        let variables = Arc::clone(&variables);
        create_udf(
            "current_schema",
            vec![],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |_| {
                // The first schema of the search path that exists; only `public` does.
                let path = variables.get("search_path").unwrap_or_default();
                let first = path
                    .split(',')
                    .map(|part| part.trim().trim_matches('"'))
                    .find(|part| *part == "public");
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(
                    first.map(str::to_string),
                )))
            }),
        )
    };
    let current_setting = {
        let variables = Arc::clone(&variables);
        create_udf(
            "current_setting",
            vec![DataType::Utf8],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |arguments| {
                map_rows(arguments, 1, |values| {
                    // Strict, as in Postgres: NULL in, NULL out.
                    let Some(name) = values[0] else {
                        return Ok(None);
                    };
                    variables.get(name).map(Some).ok_or_else(|| {
                        DataFusionError::External(Box::new(ExecutionError::UndefinedParameter(
                            name.to_string(),
                        )))
                    })
                })
            }),
        )
    };
    let set_config = create_udf(
        "set_config",
        vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
        DataType::Utf8,
        // It changes the session: never folded into a constant or skipped.
        Volatility::Volatile,
        Arc::new(move |arguments| {
            map_rows(&arguments[..2], 2, |values| {
                let (Some(name), value) = (values[0], values[1]) else {
                    return Ok(None);
                };
                let value = value.unwrap_or_default().to_string();
                variables.set(name, value.clone());
                Ok(Some(value))
            })
        }),
    );
    // The user who connected; there are no roles to switch to, so every one of SQL's user
    // functions names them.
    let users = ["current_user", "session_user"].map(|name| {
        let variables = Arc::clone(&user_variables);
        create_udf(
            name,
            vec![],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |_| Ok(text(named(&variables.user)))),
        )
    });
    let mut functions = vec![version, database, schema, current_setting, set_config];
    functions.extend(users);
    functions
}

/// The database or user the client named at startup; `tributary` before startup (recovery's
/// own sessions).
fn named(name: &std::sync::OnceLock<String>) -> String {
    name.get().cloned().unwrap_or_else(|| "tributary".into())
}

fn text(value: String) -> ColumnarValue {
    ColumnarValue::Scalar(ScalarValue::Utf8(Some(value)))
}

/// Applies `function` to the text arguments row by row (these functions see one row, or few).
fn map_rows(
    arguments: &[ColumnarValue],
    width: usize,
    mut function: impl FnMut(&[Option<&str>]) -> Result<Option<String>>,
) -> Result<ColumnarValue> {
    let rows = arguments
        .iter()
        .find_map(|argument| match argument {
            ColumnarValue::Array(array) => Some(array.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1);
    let arrays: Vec<ArrayRef> = arguments
        .iter()
        .take(width)
        .map(|argument| argument.to_array(rows))
        .collect::<Result<_>>()?;
    let texts = arrays
        .iter()
        .map(|array| {
            array
                .as_string_opt::<i32>()
                .ok_or_else(|| DataFusionError::Execution("expected text arguments".to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut output = StringBuilder::new();
    for row in 0..rows {
        let values: Vec<Option<&str>> = texts
            .iter()
            .map(|array| (!array.is_null(row)).then(|| array.value(row)))
            .collect();
        output.append_option(function(&values)?);
    }
    if rows == 1
        && arguments
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
    {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &output.finish(),
            0,
        )?));
    }
    Ok(ColumnarValue::Array(Arc::new(output.finish())))
}
