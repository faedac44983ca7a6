//! COPY's binary format: a signature, then per row a field count and each field as a length
//! and its value in the type's binary send format (the bytes of a binary DataRow), then -1.

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use datafusion::common::ScalarValue;
use pgwire::messages::data::DataRow;

use crate::error::{Error, ExecutionError};

/// What every binary COPY stream starts with.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// The field count that ends the data.
pub const BINARY_TRAILER: [u8; 2] = (-1i16).to_be_bytes();

/// Microseconds and days between the Unix epoch and Postgres's, 2000-01-01.
const POSTGRES_EPOCH_MICROSECONDS: i64 = 946_684_800_000_000;
const POSTGRES_EPOCH_DAYS: i32 = 10_957;

/// The signature, no flags, and no header extension.
pub fn binary_header() -> Vec<u8> {
    let mut header = SIGNATURE.to_vec();
    header.extend_from_slice(&0i32.to_be_bytes());
    header.extend_from_slice(&0i32.to_be_bytes());
    header
}

/// Appends a binary-format DataRow as one row of binary COPY data: the same fields after a
/// count.
pub fn binary_row(data: &mut Vec<u8>, row: &DataRow) {
    data.extend_from_slice(&row.field_count.to_be_bytes());
    data.extend_from_slice(&row.data);
}

/// Reads binary COPY data into one array per column of `types`.
pub fn decode(data: &[u8], types: &[DataType]) -> Result<Vec<ArrayRef>, Error> {
    let mut reader = Reader { data, position: 0 };
    if reader.take(SIGNATURE.len())? != SIGNATURE {
        return Err(invalid("COPY file signature not recognized"));
    }
    let flags = reader.int32()?;
    if flags & (1 << 16) != 0 {
        return Err(invalid("COPY data with OIDs is not supported"));
    }
    let extension = reader.int32()?;
    reader.take(usize::try_from(extension).map_err(|_| invalid("invalid COPY file header"))?)?;
    let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::new(); types.len()];
    let mut row = 0usize;
    loop {
        // A stream may end without the trailer when the client stops after its last row.
        if reader.position == data.len() {
            break;
        }
        let count = i16::from_be_bytes(
            reader
                .take(2)?
                .try_into()
                .map_err(|_| invalid("truncated row"))?,
        );
        if count == -1 {
            break;
        }
        row += 1;
        if count as usize != types.len() {
            return Err(ExecutionError::BadCopyFileFormat(format!(
                "row field count is {count}, expected {} (row {row})",
                types.len()
            ))
            .into());
        }
        for (values, data_type) in columns.iter_mut().zip(types) {
            let length = reader.int32()?;
            let raw = if length < 0 {
                None
            } else {
                Some(reader.take(length as usize)?)
            };
            values.push(value(raw, data_type).map_err(|error| match error {
                Error::Execution(ExecutionError::InvalidBinaryRepresentation(message)) => {
                    invalid(format!("{message} (row {row})"))
                }
                other => other,
            })?);
        }
    }
    columns
        .into_iter()
        .zip(types)
        .map(|(values, data_type)| {
            if values.is_empty() {
                return Ok(datafusion::arrow::array::new_empty_array(data_type));
            }
            Ok(ScalarValue::iter_to_array(values)?)
        })
        .collect()
}

struct Reader<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], Error> {
        let end = self
            .position
            .checked_add(length)
            .filter(|end| *end <= self.data.len())
            .ok_or_else(|| invalid("unexpected end of COPY data"))?;
        let bytes = &self.data[self.position..end];
        self.position = end;
        Ok(bytes)
    }

    fn int32(&mut self) -> Result<i32, Error> {
        let bytes = self.take(4)?;
        Ok(i32::from_be_bytes(
            bytes.try_into().map_err(|_| invalid("truncated field"))?,
        ))
    }
}

fn invalid(message: impl Into<String>) -> Error {
    ExecutionError::InvalidBinaryRepresentation(message.into()).into()
}

/// Exactly `N` bytes, or the error Postgres gives for a value of the wrong size.
fn sized<const N: usize>(raw: &[u8]) -> Result<[u8; N], Error> {
    raw.try_into()
        .map_err(|_| invalid("incorrect binary data format"))
}

/// One field's value as the column's type, from that type's binary send format (COPY's
/// fields, and the elements of a binary array parameter).
pub fn value(raw: Option<&[u8]>, data_type: &DataType) -> Result<ScalarValue, Error> {
    let Some(raw) = raw else {
        return Ok(ScalarValue::try_from(data_type)?);
    };
    Ok(match data_type {
        DataType::Boolean => ScalarValue::Boolean(Some(sized::<1>(raw)?[0] != 0)),
        DataType::Int16 => ScalarValue::Int16(Some(i16::from_be_bytes(sized(raw)?))),
        DataType::Int32 => ScalarValue::Int32(Some(i32::from_be_bytes(sized(raw)?))),
        DataType::Int64 => ScalarValue::Int64(Some(i64::from_be_bytes(sized(raw)?))),
        DataType::UInt32 => ScalarValue::UInt32(Some(u32::from_be_bytes(sized(raw)?))),
        DataType::Float32 => ScalarValue::Float32(Some(f32::from_be_bytes(sized(raw)?))),
        DataType::Float64 => ScalarValue::Float64(Some(f64::from_be_bytes(sized(raw)?))),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            // jsonb's binary form starts with its version number, 1.
            let raw = match (data_type, raw.split_first()) {
                (&crate::sql::jsonb::JSONB, Some((1, text))) => text,
                (&crate::sql::jsonb::JSONB, _) => {
                    return Err(ExecutionError::InvalidBinaryRepresentation(
                        "unsupported jsonb version number".into(),
                    )
                    .into());
                }
                _ => raw,
            };
            let text = std::str::from_utf8(raw).map_err(|_| {
                Error::from(ExecutionError::CharacterNotInRepertoire(
                    "invalid byte sequence for encoding \"UTF8\"".into(),
                ))
            })?;
            ScalarValue::Utf8(Some(text.to_string())).cast_to(data_type)?
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            ScalarValue::Binary(Some(raw.to_vec())).cast_to(data_type)?
        }
        DataType::Date32 => ScalarValue::Date32(Some(
            i32::from_be_bytes(sized(raw)?).saturating_add(POSTGRES_EPOCH_DAYS),
        )),
        DataType::Timestamp(unit, zone) => {
            let microseconds =
                i64::from_be_bytes(sized(raw)?).saturating_add(POSTGRES_EPOCH_MICROSECONDS);
            ScalarValue::TimestampMicrosecond(Some(microseconds), zone.clone())
                .cast_to(&DataType::Timestamp(*unit, zone.clone()))
                .map_err(|_| {
                    Error::from(ExecutionError::DatetimeFieldOverflow(
                        "timestamp out of range".into(),
                    ))
                })?
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let raw = sized::<16>(raw)?;
            let microseconds = i64::from_be_bytes(raw[0..8].try_into().unwrap_or_default());
            let days = i32::from_be_bytes(raw[8..12].try_into().unwrap_or_default());
            let months = i32::from_be_bytes(raw[12..16].try_into().unwrap_or_default());
            ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(
                months,
                days,
                microseconds.saturating_mul(1000),
            )))
        }
        DataType::Decimal128(precision, scale) => {
            ScalarValue::Decimal128(Some(numeric(raw, *precision, *scale)?), *precision, *scale)
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            ScalarValue::Time64Microsecond(Some(i64::from_be_bytes(sized(raw)?)))
        }
        other => {
            return Err(crate::error::PlanError::Unsupported(format!(
                "binary COPY into a column of type {} is not supported; use FORMAT text or csv",
                crate::server::arrow_type_name(other)
            ))
            .into());
        }
    })
}

/// Postgres's binary numeric (digit count, weight, sign, display scale, then base-10000
/// digits) as a decimal's unscaled value at `scale`, rounded half away from zero.
fn numeric(raw: &[u8], precision: u8, scale: i8) -> Result<i128, Error> {
    let word = |index: usize| -> Result<u16, Error> {
        raw.get(index * 2..index * 2 + 2)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u16::from_be_bytes)
            .ok_or_else(|| invalid("incorrect binary data format"))
    };
    let digit_count = word(0)? as usize;
    let weight = word(1)? as i16 as i32;
    let sign = word(2)?;
    if raw.len() != 8 + digit_count * 2 {
        return Err(invalid("incorrect binary data format"));
    }
    match sign {
        0x0000 | 0x4000 => {}
        _ => {
            return Err(ExecutionError::InvalidTextRepresentation(
                "NaN and Infinity cannot be stored in a numeric column here".into(),
            )
            .into());
        }
    }
    let out_of_range = || {
        Error::from(ExecutionError::NumericOutOfRange(
            "numeric field overflow".into(),
        ))
    };
    let mut unscaled: i128 = 0;
    for index in 0..digit_count {
        let digit = i128::from(word(4 + index)?);
        unscaled = unscaled
            .checked_mul(10_000)
            .and_then(|value| value.checked_add(digit))
            .ok_or_else(out_of_range)?;
    }
    // The digits read so far are worth 10000^(weight - digit_count + 1) each.
    let exponent = 4 * (weight - digit_count as i32 + 1) + i32::from(scale);
    if exponent >= 0 {
        unscaled = 10i128
            .checked_pow(exponent as u32)
            .and_then(|factor| unscaled.checked_mul(factor))
            .ok_or_else(out_of_range)?;
    } else {
        let divisor = 10i128.checked_pow((-exponent) as u32);
        unscaled = match divisor {
            Some(divisor) => {
                let rounded = unscaled / divisor;
                if (unscaled % divisor) * 2 >= divisor {
                    rounded + 1
                } else {
                    rounded
                }
            }
            None => 0,
        };
    }
    if unscaled >= 10i128.pow(u32::from(precision.min(38))) {
        return Err(out_of_range());
    }
    Ok(if sign == 0x4000 { -unscaled } else { unscaled })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(weight: i16, negative: bool, digits: &[u16]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(digits.len() as u16).to_be_bytes());
        raw.extend_from_slice(&weight.to_be_bytes());
        raw.extend_from_slice(&(if negative { 0x4000u16 } else { 0 }).to_be_bytes());
        raw.extend_from_slice(&0u16.to_be_bytes());
        for digit in digits {
            raw.extend_from_slice(&digit.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numerics_scale_and_round() {
        // 12345.678 = 1 2345 . 6780
        let raw = numeric_bytes(1, false, &[1, 2345, 6780]);
        assert_eq!(numeric(&raw, 10, 3).unwrap(), 12_345_678);
        assert_eq!(numeric(&raw, 10, 2).unwrap(), 1_234_568);
        assert_eq!(numeric(&raw, 10, 0).unwrap(), 12_346);
        let negative = numeric_bytes(-1, true, &[5000]);
        assert_eq!(numeric(&negative, 10, 2).unwrap(), -50);
        assert_eq!(numeric(&raw, 4, 2).unwrap_err().sqlstate(), "22003");
    }

    #[test]
    fn rows_read_back_with_their_types() {
        let mut data = binary_header();
        data.extend_from_slice(&2i16.to_be_bytes());
        data.extend_from_slice(&4i32.to_be_bytes());
        data.extend_from_slice(&7i32.to_be_bytes());
        data.extend_from_slice(&(-1i32).to_be_bytes());
        data.extend_from_slice(&BINARY_TRAILER);
        let arrays = decode(&data, &[DataType::Int32, DataType::Utf8]).unwrap();
        assert_eq!(arrays[0].len(), 1);
        assert_eq!(arrays[1].null_count(), 1);
        let error = decode(b"PGCOPY", &[DataType::Int32]).unwrap_err();
        assert_eq!(error.sqlstate(), "22P03");
    }
}
