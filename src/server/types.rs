//! Postgres type OIDs ⇄ Arrow types.

use datafusion::arrow::datatypes::{DataType, IntervalUnit};
use pgwire::api::Type;

use crate::sql::types::TIMESTAMP_UNIT;

/// The type a parameter of `data_type` is described as. Unsigned 32-bit integers are oids:
/// catalog queries cast their parameters to `oid` (see `pg_catalog::rewrite`).
pub fn arrow_to_pg_type(data_type: &DataType) -> Option<Type> {
    match data_type {
        DataType::UInt32 => Some(Type::OID),
        DataType::LargeUtf8 => Some(Type::JSONB),
        DataType::List(element) if element.data_type() == &DataType::LargeUtf8 => {
            Some(Type::JSONB_ARRAY)
        }
        DataType::List(element) if element.data_type() == &DataType::UInt32 => {
            Some(Type::OID_ARRAY)
        }
        other => arrow_pg::datatypes::into_pg_type(other).ok(),
    }
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
        Type::JSON | Type::JSONB => crate::sql::jsonb::JSONB,
        Type::OID => DataType::UInt32,
        Type::OID_ARRAY => DataType::new_list(DataType::UInt32, true),
        Type::BOOL_ARRAY => DataType::new_list(DataType::Boolean, true),
        Type::INT2_ARRAY => DataType::new_list(DataType::Int16, true),
        Type::INT4_ARRAY => DataType::new_list(DataType::Int32, true),
        Type::INT8_ARRAY => DataType::new_list(DataType::Int64, true),
        Type::FLOAT4_ARRAY => DataType::new_list(DataType::Float32, true),
        Type::FLOAT8_ARRAY => DataType::new_list(DataType::Float64, true),
        Type::NUMERIC_ARRAY => DataType::new_list(DataType::Decimal128(38, 10), true),
        // "char" is pg_class.relkind's type: pgcli binds `relkind = ANY(%s)` with it.
        Type::TEXT_ARRAY
        | Type::VARCHAR_ARRAY
        | Type::BPCHAR_ARRAY
        | Type::NAME_ARRAY
        | Type::CHAR_ARRAY => DataType::new_list(DataType::Utf8, true),
        Type::DATE_ARRAY => DataType::new_list(DataType::Date32, true),
        Type::TIMESTAMP_ARRAY => {
            DataType::new_list(DataType::Timestamp(TIMESTAMP_UNIT, None), true)
        }
        Type::TIMESTAMPTZ_ARRAY => DataType::new_list(
            DataType::Timestamp(TIMESTAMP_UNIT, Some("+00:00".into())),
            true,
        ),
        Type::INTERVAL_ARRAY => {
            DataType::new_list(DataType::Interval(IntervalUnit::MonthDayNano), true)
        }
        _ => return None,
    })
}
