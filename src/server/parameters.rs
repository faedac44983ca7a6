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
    let utf8 = |raw: &[u8]| -> Result<String, Error> {
        String::from_utf8(raw.to_vec()).map_err(|_| {
            ExecutionError::InvalidTextRepresentation(format!(
                "parameter ${} is not valid UTF-8",
                index + 1
            ))
            .into()
        })
    };
    if *target == crate::sql::jsonb::JSONB {
        // jsonb's binary form is a version byte (1) and the text; json's is the text.
        let text = match portal.parameter_format.format_for(index) {
            FieldFormat::Binary if *pg_type == Type::JSONB => match raw.split_first() {
                Some((1, text)) => utf8(text)?,
                _ => {
                    return Err(ExecutionError::InvalidBinaryRepresentation(format!(
                        "parameter ${}: unsupported jsonb version number",
                        index + 1
                    ))
                    .into());
                }
            },
            _ => utf8(raw)?,
        };
        let canonical =
            crate::sql::jsonb::Jsonb::canonical(&text).map_err(ExecutionError::Jsonb)?;
        return Ok(ScalarValue::LargeUtf8(Some(canonical)));
    }
    if let DataType::List(element) = target {
        return match portal.parameter_format.format_for(index) {
            FieldFormat::Text => {
                crate::planner::postgres_arrays::array_from_text(&utf8(raw)?, element)
            }
            FieldFormat::Binary => crate::planner::postgres_arrays::array_from_binary(raw, element),
        };
    }
    let value = match portal.parameter_format.format_for(index) {
        FieldFormat::Text => {
            let text = utf8(raw)?;
            let text = match target {
                DataType::Date32 | DataType::Timestamp(_, None) => {
                    without_utc_offset(&text).to_string()
                }
                DataType::Interval(_) => interval_units(&text),
                _ => text,
            };
            ScalarValue::Utf8(Some(text))
        }
        FieldFormat::Binary => decode_binary(portal, index, pg_type)?,
    };
    if value.data_type() == *target {
        return Ok(value);
    }
    Ok(value.cast_to(target)?)
}

/// An interval as Postgres writes it (`1 day 02:00:00`, `-01:30`) in the units Arrow's parser
/// reads (`1 day 2 hours 0 minutes 0 seconds`): node-postgres and psycopg send intervals so.
fn interval_units(text: &str) -> String {
    text.split_whitespace()
        .map(|word| {
            let (sign, clock) = match word.strip_prefix('-') {
                Some(rest) => ("-", rest),
                None => ("", word.strip_prefix('+').unwrap_or(word)),
            };
            let parts: Vec<&str> = clock.split(':').collect();
            let numeric = |part: &&str| {
                !part.is_empty() && part.chars().all(|c| c.is_ascii_digit() || c == '.')
            };
            if !(2..=3).contains(&parts.len()) || !parts.iter().all(numeric) {
                return word.to_string();
            }
            let units = ["hours", "minutes", "seconds"];
            parts
                .iter()
                .zip(units)
                .map(|(value, unit)| format!("{sign}{value} {unit}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A date or timestamp without time zone ignores the UTC offset written after it, as Postgres
/// does: PgJDBC sends `setDate` as `2026-01-02 +00` and `setTimestamp` with the JVM's offset.
fn without_utc_offset(text: &str) -> &str {
    let trimmed = text.trim_end();
    let Some(sign) = trimmed.rfind(['+', '-']) else {
        return text;
    };
    let offset = &trimmed[sign + 1..];
    // The sign must follow a time or a space (not the dashes of the date itself), and what
    // comes after it must read as hh, hh:mm or hh:mm:ss.
    let follows_time = trimmed[..sign]
        .chars()
        .last()
        .is_some_and(|before| before == ' ' || before.is_ascii_digit())
        && trimmed[..sign].contains([' ', 'T', ':']);
    let is_offset = !offset.is_empty()
        && offset.len() <= 8
        && offset
            .split(':')
            .all(|part| part.len() == 2 && part.chars().all(|c| c.is_ascii_digit()));
    if follows_time && is_offset {
        trimmed[..sign].trim_end()
    } else {
        text
    }
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
        Type::OID => ScalarValue::UInt32(portal.parameter::<u32>(index, pg_type).map_err(invalid)?),
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
        Type::INTERVAL => match portal.parameters.get(index).cloned().flatten() {
            None => ScalarValue::IntervalMonthDayNano(None),
            // Microseconds (8 bytes), then days and months (4 bytes each), big-endian.
            Some(bytes) => {
                let raw: [u8; 16] = bytes.as_ref().try_into().map_err(|_| {
                    Error::from(ExecutionError::InvalidTextRepresentation(format!(
                        "parameter ${}: a binary interval is 16 bytes, not {}",
                        index + 1,
                        bytes.len()
                    )))
                })?;
                let microseconds = i64::from_be_bytes(raw[0..8].try_into().unwrap_or_default());
                let days = i32::from_be_bytes(raw[8..12].try_into().unwrap_or_default());
                let months = i32::from_be_bytes(raw[12..16].try_into().unwrap_or_default());
                ScalarValue::IntervalMonthDayNano(Some(
                    datafusion::arrow::datatypes::IntervalMonthDayNano::new(
                        months,
                        days,
                        microseconds.saturating_mul(1000),
                    ),
                ))
            }
        },
        ref other => {
            return Err(PlanError::Unsupported(format!(
                "binary parameters of type {} are not supported; send them as text",
                other.name()
            ))
            .into());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{interval_units, without_utc_offset};

    #[test]
    fn clock_times_in_intervals_become_units() {
        assert_eq!(
            interval_units("1 day 02:00:00"),
            "1 day 02 hours 00 minutes 00 seconds"
        );
        assert_eq!(interval_units("-01:30"), "-01 hours -30 minutes");
        assert_eq!(
            interval_units("3 mons 00:00:01.5"),
            "3 mons 00 hours 00 minutes 01.5 seconds"
        );
        assert_eq!(interval_units("5 seconds"), "5 seconds");
    }

    #[test]
    fn offsets_after_dates_and_times_are_dropped() {
        assert_eq!(without_utc_offset("2026-01-02 +00"), "2026-01-02");
        assert_eq!(
            without_utc_offset("2026-01-02 03:04:05+01"),
            "2026-01-02 03:04:05"
        );
        assert_eq!(
            without_utc_offset("2026-01-02 03:04:05.5-05:30"),
            "2026-01-02 03:04:05.5"
        );
        assert_eq!(without_utc_offset("2026-01-02"), "2026-01-02");
        assert_eq!(
            without_utc_offset("2026-01-02 03:04:05"),
            "2026-01-02 03:04:05"
        );
        assert_eq!(without_utc_offset("-2026"), "-2026");
    }
}
