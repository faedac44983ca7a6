//! Arrow results to Postgres rows (text or binary), via arrow-pg, with Postgres's float text.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arrow_pg::encoder::{Encoder, encode_value};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, IntervalMonthDayNanoType, IntervalUnit, SchemaRef,
    TimeUnit, TimestampMicrosecondType,
};
use futures::{Sink, SinkExt, stream};
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::DataRow;

use crate::error::ExecutionError;
use crate::statements::RowStream;

pub fn fields(schema: &SchemaRef, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    let mut fields = arrow_pg::datatypes::arrow_schema_to_pg_fields(schema, format, None)?;
    // jsonb is Tributary's use of LargeUtf8, which arrow-pg describes as text.
    for (index, field) in schema.fields().iter().enumerate() {
        if *field.data_type() == crate::sql::jsonb::JSONB {
            fields[index] = FieldInfo::new(
                field.name().clone(),
                None,
                None,
                pgwire::api::Type::JSONB,
                format.format_for(index),
            );
        }
    }
    Ok(fields)
}

/// A query response with every row encoded up front; results are materialized by DataFusion
/// anyway, and encoding eagerly reports encoding errors before the first row is sent.
pub fn query_response(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    format: &Format,
) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(fields(schema, format)?);
    let rows = data_rows(&fields, &batches)?;
    Ok(QueryResponse::new(
        fields,
        stream::iter(rows.into_iter().map(Ok)),
    ))
}

/// A query response whose rows are encoded a batch at a time as pgwire sends them. pgwire
/// feeds each row to the connection, which flushes when its buffer fills and waits while the
/// client does not read: so a client that stops reading stops the query, and the server holds
/// one batch of its rows. `cancel` (the client's cancel request) ends it with 57014.
pub fn streamed_query_response(
    rows: RowStream,
    format: &Format,
    cancel: Pin<Box<dyn Future<Output = ()> + Send>>,
) -> PgWireResult<QueryResponse> {
    /// What the row stream carries between rows.
    struct Encoding {
        rows: RowStream,
        fields: Arc<Vec<FieldInfo>>,
        encoded: std::vec::IntoIter<DataRow>,
        cancel: Pin<Box<dyn Future<Output = ()> + Send>>,
        failed: bool,
    }
    let fields = Arc::new(fields(&rows.schema, format)?);
    let state = Encoding {
        rows,
        fields: Arc::clone(&fields),
        encoded: Vec::new().into_iter(),
        cancel,
        failed: false,
    };
    let data_rows = stream::unfold(state, |mut state| async move {
        loop {
            if let Some(row) = state.encoded.next() {
                return Some((Ok(row), state));
            }
            if state.failed {
                return None;
            }
            let next = tokio::select! {
                next = state.rows.next() => next,
                () = &mut state.cancel => Some(Err(ExecutionError::QueryCanceled.into())),
            };
            let failure = match next {
                None => return None,
                Some(Ok(batch)) => match data_rows(&state.fields, &[batch]) {
                    Ok(rows) => {
                        state.encoded = rows.into_iter();
                        continue;
                    }
                    Err(error) => error,
                },
                Some(Err(error)) => super::to_pgwire_error(&error),
            };
            state.failed = true;
            return Some((Err(failure), state));
        }
    });
    Ok(QueryResponse::new(fields, data_rows))
}

/// Sends a query's rows to the client as DataRows, a batch at a time, as fast as it reads them
/// (`feed` flushes when the connection's buffer fills and waits while the socket is full);
/// returns how many were sent. For the extended protocol's Execute without a row limit, which
/// pgwire would otherwise collect whole before sending. `cancel` ends it with 57014.
pub async fn send_rows<C>(
    client: &mut C,
    mut rows: RowStream,
    format: &Format,
    cancel: impl Future<Output = ()>,
) -> PgWireResult<usize>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let fields = Arc::new(fields(&rows.schema, format)?);
    let mut cancel = std::pin::pin!(cancel);
    let mut sent = 0;
    loop {
        let next = tokio::select! {
            next = rows.next() => next,
            () = &mut cancel => Some(Err(ExecutionError::QueryCanceled.into())),
        };
        match next {
            None => return Ok(sent),
            Some(Ok(batch)) => {
                for row in data_rows(&fields, &[batch])? {
                    client.feed(PgWireBackendMessage::DataRow(row)).await?;
                    sent += 1;
                }
            }
            Some(Err(error)) => return Err(super::to_pgwire_error(&error)),
        }
    }
}

/// Every row of `batches` as a DataRow of `fields`.
pub fn data_rows(
    fields: &Arc<Vec<FieldInfo>>,
    batches: &[RecordBatch],
) -> PgWireResult<Vec<DataRow>> {
    let mut rows = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    let mut encoder = DataRowEncoder::new(Arc::clone(fields));
    for batch in batches {
        let schema = batch.schema();
        // Text timestamps are printed from microseconds; convert each such column once per
        // batch rather than once per cell.
        let text_columns = batch
            .columns()
            .iter()
            .zip(fields.iter())
            .map(|(array, pg_field)| match array.data_type() {
                DataType::Timestamp(unit, _)
                    if pg_field.format() == FieldFormat::Text && *unit != TimeUnit::Microsecond =>
                {
                    cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))
                        .map_err(|error| PgWireError::ApiError(Box::new(error)))
                }
                _ => Ok(Arc::clone(array)),
            })
            .collect::<PgWireResult<Vec<ArrayRef>>>()?;
        for row in 0..batch.num_rows() {
            for (column, pg_field) in fields.iter().enumerate() {
                let cell = Cell {
                    array: batch.column(column),
                    text_array: &text_columns[column],
                    row,
                };
                encode_cell(&mut encoder, &cell, schema.field(column), pg_field)?;
            }
            rows.push(encoder.take_row());
        }
    }
    Ok(rows)
}

/// One value to encode: its column as computed, and the same column as text formatting wants it.
struct Cell<'a> {
    array: &'a ArrayRef,
    text_array: &'a ArrayRef,
    row: usize,
}

fn encode_cell(
    encoder: &mut DataRowEncoder,
    cell: &Cell<'_>,
    arrow_field: &Field,
    pg_field: &FieldInfo,
) -> PgWireResult<()> {
    let Cell {
        array,
        text_array,
        row,
    } = *cell;
    if array.is_null(row) {
        return Encoder::encode_field(encoder, &None::<i8>, pg_field);
    }
    // jsonb's binary form: a version byte, then the text.
    if pg_field.format() == FieldFormat::Binary && *array.data_type() == crate::sql::jsonb::JSONB {
        let text = array.as_string::<i64>().value(row);
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.push(1u8);
        bytes.extend_from_slice(text.as_bytes());
        return Encoder::encode_field(encoder, &bytes, pg_field);
    }
    // Floats, timestamps and intervals in text format follow Postgres's output rules (shortest
    // exact digits; no zero fraction; '-1 days +02:00:00'), which arrow-pg does not; everything
    // else is arrow-pg's.
    if pg_field.format() == FieldFormat::Text {
        let text = match array.data_type() {
            DataType::Float64 => Some(postgres_float(
                array.as_primitive::<Float64Type>().value(row),
            )),
            DataType::Float32 => Some(postgres_float(
                array.as_primitive::<Float32Type>().value(row),
            )),
            DataType::Timestamp(_, timezone) => {
                let micros = text_array
                    .as_primitive::<TimestampMicrosecondType>()
                    .value(row);
                Some(postgres_timestamp(micros, timezone.is_some()))
            }
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                let interval = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
                Some(postgres_interval(
                    interval.months,
                    interval.days,
                    interval.nanoseconds / 1_000,
                ))
            }
            DataType::List(element) if has_postgres_text(element.data_type()) => {
                let text = postgres_array(&array.as_list::<i32>().value(row))?;
                // Written as plain text: pgwire would quote a string sent as an array type
                // once more, as if it were one element.
                let plain = FieldInfo::new(
                    pg_field.name().to_string(),
                    None,
                    None,
                    pgwire::api::Type::TEXT,
                    FieldFormat::Text,
                );
                return Encoder::encode_field(encoder, &text, &plain);
            }
            _ => None,
        };
        if let Some(text) = text {
            return Encoder::encode_field(encoder, &text, pg_field);
        }
    }
    encode_value(encoder, array, row, arrow_field, pg_field)
}

/// Whether values of this type print in text their own way here rather than arrow-pg's.
fn has_postgres_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Float64
            | DataType::Float32
            | DataType::Timestamp(_, _)
            | DataType::Interval(IntervalUnit::MonthDayNano)
    )
}

/// An array of floats, timestamps or intervals as Postgres prints it: `{1.5,NULL}`,
/// `{"2026-01-02 03:04:05"}` (an element with a space, comma, quote, backslash or brace is
/// quoted).
fn postgres_array(values: &ArrayRef) -> PgWireResult<String> {
    let values = match values.data_type() {
        DataType::Timestamp(unit, _) if *unit != TimeUnit::Microsecond => {
            cast(values, &DataType::Timestamp(TimeUnit::Microsecond, None))
                .map_err(|error| PgWireError::ApiError(Box::new(error)))?
        }
        _ => Arc::clone(values),
    };
    let mut text = String::from("{");
    for index in 0..values.len() {
        if index > 0 {
            text.push(',');
        }
        if values.is_null(index) {
            text.push_str("NULL");
            continue;
        }
        let element = match values.data_type() {
            DataType::Float64 => postgres_float(values.as_primitive::<Float64Type>().value(index)),
            DataType::Float32 => postgres_float(values.as_primitive::<Float32Type>().value(index)),
            DataType::Timestamp(_, timezone) => postgres_timestamp(
                values
                    .as_primitive::<TimestampMicrosecondType>()
                    .value(index),
                timezone.is_some(),
            ),
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                let interval = values
                    .as_primitive::<IntervalMonthDayNanoType>()
                    .value(index);
                postgres_interval(interval.months, interval.days, interval.nanoseconds / 1_000)
            }
            other => {
                return Err(PgWireError::ApiError(
                    format!("no Postgres text for arrays of {other}").into(),
                ));
            }
        };
        if element.is_empty() || element.contains([' ', ',', '"', '\\', '{', '}']) {
            text.push('"');
            for character in element.chars() {
                if matches!(character, '"' | '\\') {
                    text.push('\\');
                }
                text.push(character);
            }
            text.push('"');
        } else {
            text.push_str(&element);
        }
    }
    text.push('}');
    Ok(text)
}

/// Postgres's interval output in its default style (IntervalStyle `postgres`): years, months and
/// days as words, then the time as `HH:MM:SS[.ffffff]`; a part after a negative one carries
/// its sign ('-1 days +02:00:00'), as Postgres's EncodeInterval writes them.
pub fn postgres_interval(months: i32, days: i32, microseconds: i64) -> String {
    let mut text = String::new();
    let mut is_zero = true;
    let mut is_before = false;
    let mut add_part = |text: &mut String, value: i64, unit: &str| {
        if value == 0 {
            return;
        }
        let space = if is_zero { "" } else { " " };
        let plus = if is_before && value > 0 { "+" } else { "" };
        let plural = if value != 1 { "s" } else { "" };
        text.push_str(&format!("{space}{plus}{value} {unit}{plural}"));
        is_before = value < 0;
        is_zero = false;
    };
    add_part(&mut text, i64::from(months / 12), "year");
    add_part(&mut text, i64::from(months % 12), "mon");
    add_part(&mut text, i64::from(days), "day");
    if is_zero || microseconds != 0 {
        let sign = if microseconds < 0 {
            "-"
        } else if is_before {
            "+"
        } else {
            ""
        };
        let magnitude = microseconds.unsigned_abs();
        let hours = magnitude / 3_600_000_000;
        let minutes = magnitude / 60_000_000 % 60;
        let seconds = magnitude / 1_000_000 % 60;
        let fraction = magnitude % 1_000_000;
        let space = if is_zero { "" } else { " " };
        text.push_str(&format!(
            "{space}{sign}{hours:02}:{minutes:02}:{seconds:02}"
        ));
        if fraction != 0 {
            let digits = format!("{fraction:06}");
            text.push('.');
            text.push_str(digits.trim_end_matches('0'));
        }
    }
    text
}

/// Postgres's timestamp output: fractional seconds only when non-zero, without trailing zeros;
/// `+00` for timestamptz (the session time zone is UTC).
pub fn postgres_timestamp(micros: i64, with_timezone: bool) -> String {
    let Some(time) = chrono::DateTime::from_timestamp_micros(micros) else {
        return micros.to_string();
    };
    let mut text = time.format("%Y-%m-%d %H:%M:%S").to_string();
    let fraction = micros.rem_euclid(1_000_000);
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    if with_timezone {
        text.push_str("+00");
    }
    text
}

/// Postgres's float output with `extra_float_digits` ≥ 1 (the default since Postgres 12).
pub fn postgres_float<F: std::fmt::LowerExp + Into<f64> + Copy>(value: F) -> String {
    let as_f64: f64 = value.into();
    if as_f64.is_nan() {
        return "NaN".into();
    }
    if as_f64.is_infinite() {
        return if as_f64 > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if as_f64 == 0.0 {
        return if as_f64.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // `{:e}` prints the shortest digits that read back exactly: "-1.2345e3".
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if !(-4..15).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        return format!(
            "{sign}{first}{fraction}e{exponent_sign}{:02}",
            exponent.abs()
        );
    }
    if exponent < 0 {
        let zeros = "0".repeat((-exponent - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let point = exponent as usize + 1;
    if digits.len() <= point {
        format!("{sign}{digits}{}", "0".repeat(point - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..point], &digits[point..])
    }
}

#[cfg(test)]
mod tests {
    use super::{postgres_float, postgres_interval};

    #[test]
    fn floats_print_as_postgres_prints_them() {
        assert_eq!(postgres_float(750750.0f64), "750750");
        assert_eq!(postgres_float(1.5f64), "1.5");
        assert_eq!(postgres_float(0.1f64 + 0.2), "0.30000000000000004");
        assert_eq!(postgres_float(1e15f64), "1e+15");
        assert_eq!(postgres_float(123456789012345.0f64), "123456789012345");
        assert_eq!(postgres_float(0.0001f64), "0.0001");
        assert_eq!(postgres_float(0.00001f64), "1e-05");
        assert_eq!(postgres_float(-2.5f32), "-2.5");
        assert_eq!(postgres_float(100f64), "100");
    }

    #[test]
    fn intervals_print_as_postgres_prints_them() {
        // Each expected text is what Postgres 15 prints for the same interval.
        let hour = 3_600_000_000i64;
        for (months, days, microseconds, expected) in [
            (0, 1, 2 * hour, "1 day 02:00:00"),
            (3, 0, 0, "3 mons"),
            (14, 0, 0, "1 year 2 mons"),
            (-3, 0, 0, "-3 mons"),
            (0, 0, 0, "00:00:00"),
            (0, 0, 90 * 60_000_000, "01:30:00"),
            (0, -1, 2 * hour, "-1 days +02:00:00"),
            (0, 2, -hour, "2 days -01:00:00"),
            (0, 0, 25 * hour + 250_000, "25:00:00.25"),
            (-13, -1, -1, "-1 years -1 mons -1 days -00:00:00.000001"),
        ] {
            assert_eq!(postgres_interval(months, days, microseconds), expected);
        }
    }

    #[test]
    fn timestamps_print_as_postgres_prints_them() {
        assert_eq!(super::postgres_timestamp(0, false), "1970-01-01 00:00:00");
        assert_eq!(
            super::postgres_timestamp(1_500_000, true),
            "1970-01-01 00:00:01.5+00"
        );
    }
}
