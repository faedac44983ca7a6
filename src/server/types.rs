//! Postgres type OIDs ⇄ Arrow types.

use datafusion::arrow::datatypes::{DataType, IntervalUnit};
use pgwire::api::Type;

use crate::sql::types::TIMESTAMP_UNIT;

pub fn arrow_to_pg_type(data_type: &DataType) -> Option<Type> {
    arrow_pg::datatypes::into_pg_type(data_type).ok()
}

/// The Arrow type a parameter the client declared as `pg_type` decodes to.
pub fn pg_type_to_arrow(pg_type: &Type) -> Option<DataType> {
    Some(match *pg_type {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::NUMERIC => DataType::Decimal128(38, 10),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => DataType::Utf8,
        Type::DATE => DataType::Date32,
        Type::TIMESTAMP => DataType::Timestamp(TIMESTAMP_UNIT, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TIMESTAMP_UNIT, Some("+00:00".into())),
        Type::INTERVAL => DataType::Interval(IntervalUnit::MonthDayNano),
        Type::BYTEA => DataType::Binary,
        _ => return None,
    })
}
