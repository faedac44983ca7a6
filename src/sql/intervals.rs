//! Interval text as Postgres reads it (`'2 days 03:00:00'`, `'-1 day +2 hours'`,
//! `'1 day 01:02:03.5'`, `'P1DT2H'`, `'3 hours ago'`): for `INTERVAL '...'` literals, rewritten
//! while parsed into a form DataFusion reads, and for casts of text to interval
//! (`planner::postgres_casts`). Arrow's reader takes only `<number> <unit>` pairs.

use std::ops::ControlFlow;

use datafusion::arrow::datatypes::IntervalMonthDayNano;
use datafusion::sql::sqlparser::ast::{Expr, Value, VisitMut, VisitorMut};

const NANOS_PER_SECOND: f64 = 1e9;
const NANOS_PER_DAY: f64 = 86_400.0 * NANOS_PER_SECOND;
/// Postgres counts a fraction of a month as days of a 30-day month.
const DAYS_PER_MONTH: f64 = 30.0;

/// Rewrites every `INTERVAL '<text>'` without a unit after it whose text Postgres reads into the
/// same interval written as months, days and microseconds. Texts it cannot read are left for
/// DataFusion's own error.
pub fn normalize_interval_literals<T: VisitMut>(node: &mut T) {
    let _ = node.visit(&mut Literals);
}

struct Literals;

impl VisitorMut for Literals {
    type Break = ();

    fn post_visit_expr(&mut self, expression: &mut Expr) -> ControlFlow<()> {
        if let Expr::Interval(interval) = expression
            && interval.leading_field.is_none()
            && interval.last_field.is_none()
            && let Expr::Value(value) = interval.value.as_mut()
            && let Value::SingleQuotedString(text) = &mut value.value
            && let Ok(parsed) = parse_interval(text)
        {
            // Units both Arrow and Postgres read: the text is also what `EXPLAIN`, the stored
            // view and the Postgres oracle test see.
            *text = format!(
                "{} months {} days {} microseconds",
                parsed.months,
                parsed.days,
                parsed.nanoseconds / 1_000
            );
        }
        ControlFlow::Continue(())
    }
}

/// The interval `text` holds, read as Postgres reads interval input: `<number> <unit>` pairs
/// (units from microseconds to millennia, abbreviated or not, plural or not, fractions carried
/// down: 1.5 months is 1 month 15 days), clock times `[-]HH:MM[:SS[.fraction]]`, a number
/// before a clock time as days, a lone number as seconds, `@` and `ago`, and ISO 8601
/// (`P1Y2M3DT4H5M6.5S`). The error is Postgres's message.
pub fn parse_interval(text: &str) -> Result<IntervalMonthDayNano, String> {
    let invalid = || format!("invalid input syntax for type interval: \"{text}\"");
    let trimmed = text.trim();
    let mut total = Total::default();
    if let Some(iso) = trimmed.strip_prefix('P') {
        parse_iso(iso, &mut total).ok_or_else(invalid)?;
        return total.finish().ok_or_else(invalid);
    }
    let lower = trimmed.to_lowercase();
    let mut tokens: Vec<&str> = lower.split_whitespace().collect();
    if tokens.first() == Some(&"@") {
        tokens.remove(0);
    }
    let ago = tokens.last() == Some(&"ago");
    if ago {
        tokens.pop();
    }
    if tokens.is_empty() {
        return Err(invalid());
    }
    let mut index = 0;
    while index < tokens.len() {
        let token = tokens[index];
        if token.contains(':') {
            total.add_clock(token).ok_or_else(invalid)?;
            index += 1;
            continue;
        }
        // A number, with its unit attached (`2days`) or as the next token.
        let split = token
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(token.len());
        let (number, attached) = token.split_at(split);
        let amount: f64 = number.parse().map_err(|_| invalid())?;
        let unit = if !attached.is_empty() {
            attached
        } else if let Some(next) = tokens.get(index + 1)
            && next.starts_with(|c: char| c.is_ascii_alphabetic())
        {
            index += 1;
            next
        } else if tokens.get(index + 1).is_some_and(|next| next.contains(':')) {
            // `1 02:03:04`: days, then the time of day.
            "day"
        } else {
            "second"
        };
        total.add(amount, unit).ok_or_else(invalid)?;
        index += 1;
    }
    if ago {
        total.negate();
    }
    total.finish().ok_or_else(invalid)
}

/// An interval being summed: whole months and days, and nanoseconds, with fractions of months
/// and days carried down as Postgres does.
#[derive(Default)]
struct Total {
    months: f64,
    days: f64,
    nanoseconds: f64,
}

impl Total {
    fn add_months(&mut self, months: f64) {
        let whole = months.trunc();
        self.months += whole;
        self.add_days((months - whole) * DAYS_PER_MONTH);
    }

    fn add_days(&mut self, days: f64) {
        let whole = days.trunc();
        self.days += whole;
        self.nanoseconds += (days - whole) * NANOS_PER_DAY;
    }

    fn add(&mut self, amount: f64, unit: &str) -> Option<()> {
        let seconds = |factor: f64| amount * factor * NANOS_PER_SECOND;
        match unit {
            "microsecond" | "microseconds" | "usec" | "usecs" | "us" => {
                self.nanoseconds += seconds(1e-6)
            }
            "millisecond" | "milliseconds" | "msec" | "msecs" | "ms" => {
                self.nanoseconds += seconds(1e-3)
            }
            "second" | "seconds" | "sec" | "secs" | "s" => self.nanoseconds += seconds(1.0),
            "minute" | "minutes" | "min" | "mins" | "m" => self.nanoseconds += seconds(60.0),
            "hour" | "hours" | "hr" | "hrs" | "h" => self.nanoseconds += seconds(3600.0),
            "day" | "days" | "d" => self.add_days(amount),
            "week" | "weeks" | "w" => self.add_days(amount * 7.0),
            "month" | "months" | "mon" | "mons" => self.add_months(amount),
            "year" | "years" | "yr" | "yrs" | "y" => self.add_months(amount * 12.0),
            "decade" | "decades" => self.add_months(amount * 120.0),
            "century" | "centuries" => self.add_months(amount * 1200.0),
            "millennium" | "millennia" | "millenniums" => self.add_months(amount * 12_000.0),
            _ => return None,
        }
        Some(())
    }

    /// `[+-]HH:MM[:SS[.fraction]]`
    fn add_clock(&mut self, token: &str) -> Option<()> {
        let (negative, digits) = match token.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, token.strip_prefix('+').unwrap_or(token)),
        };
        let mut parts = digits.split(':');
        let hours: f64 = whole_number(parts.next()?)?;
        let minutes: f64 = whole_number(parts.next()?)?;
        let seconds: f64 = match parts.next() {
            Some(seconds) if !seconds.is_empty() => seconds.parse().ok()?,
            Some(_) => return None,
            None => 0.0,
        };
        if parts.next().is_some() || minutes >= 60.0 || !(0.0..60.0).contains(&seconds) {
            return None;
        }
        let nanoseconds = ((hours * 60.0 + minutes) * 60.0 + seconds) * NANOS_PER_SECOND;
        self.nanoseconds += if negative { -nanoseconds } else { nanoseconds };
        Some(())
    }

    fn negate(&mut self) {
        self.months = -self.months;
        self.days = -self.days;
        self.nanoseconds = -self.nanoseconds;
    }

    /// The interval, its nanoseconds rounded to microseconds as Postgres keeps them; `None`
    /// when a part overflows.
    fn finish(&self) -> Option<IntervalMonthDayNano> {
        let micros = (self.nanoseconds / 1_000.0).round();
        let fits = |value: f64, limit: f64| value.is_finite() && value.abs() <= limit;
        if !fits(self.months, f64::from(i32::MAX))
            || !fits(self.days, f64::from(i32::MAX))
            || !fits(micros, i64::MAX as f64 / 1_000.0)
        {
            return None;
        }
        Some(IntervalMonthDayNano::new(
            self.months as i32,
            self.days as i32,
            micros as i64 * 1_000,
        ))
    }
}

fn whole_number(text: &str) -> Option<f64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// ISO 8601 durations after their `P`: `1Y2M3W4DT5H6M7.5S` (M before T is months, after it
/// minutes).
fn parse_iso(text: &str, total: &mut Total) -> Option<()> {
    let mut in_time = false;
    let mut number = String::new();
    let mut read_any = false;
    for character in text.chars() {
        match character {
            'T' | 't' if number.is_empty() => in_time = true,
            '0'..='9' | '.' | '-' | '+' => number.push(character),
            designator => {
                let amount: f64 = number.parse().ok()?;
                number.clear();
                let unit = match (designator.to_ascii_uppercase(), in_time) {
                    ('Y', false) => "year",
                    ('M', false) => "month",
                    ('W', false) => "week",
                    ('D', false) => "day",
                    ('H', true) => "hour",
                    ('M', true) => "minute",
                    ('S', true) => "second",
                    _ => return None,
                };
                total.add(amount, unit)?;
                read_any = true;
            }
        }
    }
    (number.is_empty() && read_any).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (i32, i32, i64) {
        let interval = parse_interval(text).unwrap_or_else(|error| panic!("{error}"));
        (interval.months, interval.days, interval.nanoseconds)
    }

    const HOUR: i64 = 3_600_000_000_000;

    #[test]
    fn reads_what_postgres_reads() {
        assert_eq!(read("2 days 03:00:00"), (0, 2, 3 * HOUR));
        assert_eq!(read("03:00:00"), (0, 0, 3 * HOUR));
        assert_eq!(read("1 day 01:02:03.5"), (0, 1, HOUR + 123_500_000_000));
        assert_eq!(read("-1 day +2 hours"), (0, -1, 2 * HOUR));
        assert_eq!(read("1 minute"), (0, 0, 60_000_000_000));
        assert_eq!(read("1.5 months"), (1, 15, 0));
        assert_eq!(read("1.5 days"), (0, 1, 12 * HOUR));
        assert_eq!(read("1 year 2 mons 3 days"), (14, 3, 0));
        assert_eq!(read("@ 3 hours ago"), (0, 0, -3 * HOUR));
        assert_eq!(
            read("P1Y2M3DT4H5M6.5S"),
            (14, 3, 4 * HOUR + 306_500_000_000)
        );
        assert_eq!(read("PT1H"), (0, 0, HOUR));
        assert_eq!(read("1 02:00:00"), (0, 1, 2 * HOUR));
        assert_eq!(read("90"), (0, 0, 90_000_000_000));
        assert_eq!(read("2weeks"), (0, 14, 0));
        assert_eq!(read("-01:30"), (0, 0, -HOUR - HOUR / 2));
        assert!(parse_interval("tomorrow").is_err());
        assert!(parse_interval("1 fortnight").is_err());
        assert!(parse_interval("10:75:00").is_err());
        assert!(parse_interval("").is_err());
    }
}
