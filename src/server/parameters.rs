//! Bound parameter values (text or binary, typed or untyped) to DataFusion scalars.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ParamValues, ScalarValue};
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::api::results::FieldFormat;

use crate::error::{Error, ExecutionError, PlanError};
use crate::server::statement::PreparedStatement;
use crate::server::types::pg_type_to_arrow;

/// Decodes every parameter of `portal`. The target type of `$n` is what DataFusion inferred for
/// it, else what the client declared, else text.
pub fn decode(portal: &Portal<PreparedStatement>) -> Result<ParamValues, Error> {
    let statement = &portal.statement;
    let mut values = Vec::with_capacity(portal.parameter_len());
    for index in 0..portal.parameter_len() {
        let declared = statement.parameter_types.get(index).cloned().flatten();
        let inferred = statement
            .statement
            .parameter_types
            .get(index)
            .cloned()
            .flatten();
        let pg_type = declared
            .clone()
            .or_else(|| {
                inferred
                    .as_ref()
                    .and_then(crate::server::types::arrow_to_pg_type)
            })
            .unwrap_or(Type::UNKNOWN);
        let target = inferred
            .or_else(|| declared.as_ref().and_then(pg_type_to_arrow))
            .unwrap_or(DataType::Utf8);
        values.push(decode_one(portal, index, &pg_type, &target)?);
    }
    Ok(ParamValues::from(values))
}

fn decode_one(
    portal: &Portal<PreparedStatement>,
    index: usize,
    pg_type: &Type,
    target: &DataType,
) -> Result<ScalarValue, Error> {
    let Some(Some(raw)) = portal.parameters.get(index) else {
        return Ok(ScalarValue::try_from(target)?);
    };
    let value = match portal.parameter_format.format_for(index) {
        FieldFormat::Text => {
            let text = std::str::from_utf8(raw).map_err(|_| {
                ExecutionError::InvalidTextRepresentation(format!(
                    "parameter ${} is not valid UTF-8",
                    index + 1
                ))
            })?;
            ScalarValue::Utf8(Some(text.to_string()))
        }
        FieldFormat::Binary => decode_binary(portal, index, pg_type)?,
    };
    if value.data_type() == *target {
        return Ok(value);
    }
    Ok(value.cast_to(target)?)
}

fn decode_binary(
    portal: &Portal<PreparedStatement>,
    index: usize,
    pg_type: &Type,
) -> Result<ScalarValue, Error> {
    let invalid = |error: pgwire::error::PgWireError| -> Error {
        ExecutionError::InvalidTextRepresentation(format!("parameter ${}: {error}", index + 1))
            .into()
    };
    Ok(match *pg_type {
        Type::BOOL => {
            ScalarValue::Boolean(portal.parameter::<bool>(index, pg_type).map_err(invalid)?)
        }
        Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(index, pg_type).map_err(invalid)?),
        Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(index, pg_type).map_err(invalid)?),
        Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(index, pg_type).map_err(invalid)?),
        Type::FLOAT4 => {
            ScalarValue::Float32(portal.parameter::<f32>(index, pg_type).map_err(invalid)?)
        }
        Type::FLOAT8 => {
            ScalarValue::Float64(portal.parameter::<f64>(index, pg_type).map_err(invalid)?)
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            ScalarValue::Utf8(
                portal
                    .parameter::<String>(index, pg_type)
                    .map_err(invalid)?,
            )
        }
        Type::NUMERIC => {
            let value = portal
                .parameter::<rust_decimal::Decimal>(index, pg_type)
                .map_err(invalid)?;
            match value {
                Some(decimal) => {
                    ScalarValue::Decimal128(Some(decimal.mantissa()), 38, decimal.scale() as i8)
                }
                None => ScalarValue::Decimal128(None, 38, 0),
            }
        }
        Type::DATE => {
            let value = portal
                .parameter::<NaiveDate>(index, pg_type)
                .map_err(invalid)?;
            ScalarValue::Date32(value.map(|date| (date - NaiveDate::default()).num_days() as i32))
        }
        Type::TIMESTAMP => {
            let value = portal
                .parameter::<NaiveDateTime>(index, pg_type)
                .map_err(invalid)?;
            ScalarValue::TimestampMicrosecond(value.map(|t| t.and_utc().timestamp_micros()), None)
        }
        Type::TIMESTAMPTZ => {
            let value = portal
                .parameter::<DateTime<FixedOffset>>(index, pg_type)
                .map_err(invalid)?;
            ScalarValue::TimestampMicrosecond(
                value.map(|t| t.timestamp_micros()),
                Some("+00:00".into()),
            )
        }
        Type::BYTEA => ScalarValue::Binary(
            portal
                .parameter::<Vec<u8>>(index, pg_type)
                .map_err(invalid)?,
        ),
        ref other => {
            return Err(PlanError::Unsupported(format!(
                "binary parameters of type {} are not supported; send them as text",
                other.name()
            ))
            .into());
        }
    })
}
