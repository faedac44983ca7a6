//! SQL column types (as Postgres spells them) to the Arrow types Tributary stores.

use datafusion::arrow::datatypes::{DataType, IntervalUnit, TimeUnit};
use datafusion::sql::sqlparser::ast::{DataType as SqlType, ExactNumberInfo, TimezoneInfo};

use crate::error::PlanError;

/// Postgres stores timestamps with microsecond precision; so does Tributary.
pub const TIMESTAMP_UNIT: TimeUnit = TimeUnit::Microsecond;

/// Unconstrained NUMERIC has no fixed scale in Postgres; Arrow decimals need one.
const DEFAULT_NUMERIC: DataType = DataType::Decimal128(38, 10);

pub fn arrow_type(sql_type: &SqlType) -> Result<DataType, PlanError> {
    Ok(match sql_type {
        SqlType::Boolean | SqlType::Bool => DataType::Boolean,
        SqlType::SmallInt(_) | SqlType::Int2(_) => DataType::Int16,
        SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) => DataType::Int32,
        SqlType::BigInt(_) | SqlType::Int8(_) => DataType::Int64,
        SqlType::Real | SqlType::Float4 => DataType::Float32,
        SqlType::DoublePrecision | SqlType::Float8 | SqlType::Double(_) => DataType::Float64,
        SqlType::Float(info) => match info {
            ExactNumberInfo::Precision(precision)
            | ExactNumberInfo::PrecisionAndScale(precision, _)
                if *precision <= 24 =>
            {
                DataType::Float32
            }
            _ => DataType::Float64,
        },
        SqlType::Numeric(info) | SqlType::Decimal(info) | SqlType::Dec(info) => match info {
            ExactNumberInfo::None => DEFAULT_NUMERIC,
            ExactNumberInfo::Precision(precision) => decimal(*precision, 0)?,
            ExactNumberInfo::PrecisionAndScale(precision, scale) => decimal(*precision, *scale)?,
        },
        SqlType::Text
        | SqlType::String(_)
        | SqlType::Varchar(_)
        | SqlType::CharacterVarying(_)
        | SqlType::CharVarying(_)
        | SqlType::Char(_)
        | SqlType::Character(_) => DataType::Utf8,
        SqlType::JSON | SqlType::JSONB => super::jsonb::JSONB,
        SqlType::Date => DataType::Date32,
        SqlType::Timestamp(_, timezone) => match timezone {
            TimezoneInfo::WithTimeZone | TimezoneInfo::Tz => {
                DataType::Timestamp(TIMESTAMP_UNIT, Some("+00:00".into()))
            }
            TimezoneInfo::None | TimezoneInfo::WithoutTimeZone => {
                DataType::Timestamp(TIMESTAMP_UNIT, None)
            }
        },
        SqlType::Interval { .. } => DataType::Interval(IntervalUnit::MonthDayNano),
        SqlType::Custom(name, modifiers) if modifiers.is_empty() => {
            match name.to_string().to_lowercase().as_str() {
                "timestamptz" => DataType::Timestamp(TIMESTAMP_UNIT, Some("+00:00".into())),
                "int2" | "smallserial" | "serial2" => DataType::Int16,
                "int4" | "serial" | "serial4" => DataType::Int32,
                "int8" | "bigserial" | "serial8" => DataType::Int64,
                "float4" => DataType::Float32,
                "float8" => DataType::Float64,
                "jsonb" | "json" => super::jsonb::JSONB,
                other => {
                    return Err(PlanError::UndefinedFunction(format!(
                        "type \"{other}\" does not exist"
                    )));
                }
            }
        }
        other => {
            return Err(PlanError::Unsupported(format!(
                "type {other} is not supported"
            )));
        }
    })
}

/// Whether a column type is `serial` (or `smallserial`, `bigserial`): an integer column whose
/// default is the next value of a sequence of its own.
pub fn is_serial(data_type: &SqlType) -> bool {
    matches!(data_type, SqlType::Custom(name, modifiers) if modifiers.is_empty()
    && matches!(
        name.to_string().to_lowercase().as_str(),
        "serial" | "serial2" | "serial4" | "serial8" | "smallserial" | "bigserial"
    ))
}

/// The column type a table made from a query's result (`CREATE TABLE ... AS`) gives a column
/// of `data_type`, as SQL; `None` for what a table cannot hold. A NULL column is text, as in
/// Postgres.
pub fn sql_type_name(data_type: &DataType) -> Option<String> {
    Some(match data_type {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "numeric(20, 0)".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal128(precision, scale) if *data_type != DEFAULT_NUMERIC => {
            format!("numeric({precision}, {scale})")
        }
        DataType::Decimal128(_, _) => "numeric".into(),
        DataType::Utf8 | DataType::Utf8View | DataType::Null => "text".into(),
        DataType::LargeUtf8 => "jsonb".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Interval(IntervalUnit::MonthDayNano) => "interval".into(),
        _ => return None,
    })
}

fn decimal(precision: u64, scale: i64) -> Result<DataType, PlanError> {
    if precision == 0 || precision > 38 {
        return Err(PlanError::Unsupported(format!(
            "NUMERIC precision {precision} must be between 1 and 38"
        )));
    }
    if scale < 0 || scale as u64 > precision {
        return Err(PlanError::Syntax(format!(
            "NUMERIC scale {scale} must be between 0 and precision {precision}"
        )));
    }
    Ok(DataType::Decimal128(precision as u8, scale as i8))
}

/// The maximum length of a VARCHAR(n) / CHAR(n) column, enforced on writes.
pub fn max_length(sql_type: &SqlType) -> Option<u64> {
    use datafusion::sql::sqlparser::ast::CharacterLength;
    let length = match sql_type {
        SqlType::Varchar(length)
        | SqlType::CharacterVarying(length)
        | SqlType::CharVarying(length) => length,
        _ => return None,
    };
    match length {
        Some(CharacterLength::IntegerLength { length, .. }) => Some(*length),
        _ => None,
    }
}
