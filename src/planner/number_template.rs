//! Postgres's number templates (`'FM9,999.00'`): parsed once per pattern, then used to write a
//! number as text (`to_char`) or to read one from text (`to_number`), as Postgres does in the C
//! locale (decimal point `.`, group separator `,`).

use rust_decimal::{Decimal, RoundingStrategy};

#[derive(Debug, Clone, PartialEq)]
enum Element {
    /// `9` (a blank where the number has no digit) or `0` (a zero there).
    Digit {
        zero: bool,
    },
    /// `.` or `D`
    Point,
    /// `,` or `G`
    Group,
    /// `S`: the sign, `+` or `-`, next to the number.
    Sign,
    /// `MI`: `-` here when negative.
    Minus,
    /// `PL`: `+` here when positive.
    Plus,
    /// `SG`: `+` or `-` here.
    PlusOrMinus,
    /// `PR`: a negative number in angle brackets.
    Brackets,
    /// `L`: the currency symbol, a blank in the C locale.
    Currency,
    /// `V`: the number times ten to the number of digits after it.
    Shift,
    /// `TH` or `th`: the ordinal suffix of the whole number.
    Ordinal {
        upper: bool,
    },
    Literal(String),
}

/// A parsed number template.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberTemplate {
    elements: Vec<Element>,
    /// FM: no blanks for missing digits or the sign, no trailing zeros at `9` positions.
    fill_mode: bool,
}

impl NumberTemplate {
    /// Refuses what is not written yet: `EEEE` (scientific) and `RN` (Roman numerals).
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let characters: Vec<char> = pattern.chars().collect();
        let mut elements = Vec::new();
        let mut fill_mode = false;
        let mut position = 0;
        while position < characters.len() {
            let upper: String = characters[position..]
                .iter()
                .take(4)
                .collect::<String>()
                .to_uppercase();
            let (element, length) = if upper.starts_with("EEEE") || upper.starts_with("RN") {
                return Err(format!(
                    "the number template \"{pattern}\" uses {}, which is not supported yet",
                    if upper.starts_with("RN") {
                        "RN"
                    } else {
                        "EEEE"
                    }
                ));
            } else if upper.starts_with("FM") {
                fill_mode = true;
                position += 2;
                continue;
            } else if upper.starts_with("MI") {
                (Element::Minus, 2)
            } else if upper.starts_with("PL") {
                (Element::Plus, 2)
            } else if upper.starts_with("SG") {
                (Element::PlusOrMinus, 2)
            } else if upper.starts_with("PR") {
                (Element::Brackets, 2)
            } else if upper.starts_with("TH") {
                (
                    Element::Ordinal {
                        upper: characters[position] == 'T',
                    },
                    2,
                )
            } else {
                match characters[position] {
                    '9' => (Element::Digit { zero: false }, 1),
                    '0' => (Element::Digit { zero: true }, 1),
                    '.' | 'D' | 'd' => (Element::Point, 1),
                    ',' | 'G' | 'g' => (Element::Group, 1),
                    'S' | 's' => (Element::Sign, 1),
                    'L' | 'l' => (Element::Currency, 1),
                    'V' | 'v' => (Element::Shift, 1),
                    '"' => {
                        let text: String = characters[position + 1..]
                            .iter()
                            .take_while(|c| **c != '"')
                            .collect();
                        let length = text.chars().count() + 2;
                        (Element::Literal(text), length)
                    }
                    other => (Element::Literal(other.to_string()), 1),
                }
            };
            elements.push(element);
            position += length;
        }
        Ok(Self {
            elements,
            fill_mode,
        })
    }

    fn point_index(&self) -> Option<usize> {
        self.elements
            .iter()
            .position(|element| *element == Element::Point)
    }

    /// Digit positions before the point (all of them without one) and after it.
    fn positions(&self) -> (usize, usize) {
        let is_digit = |element: &&Element| matches!(element, Element::Digit { .. });
        match self.point_index() {
            Some(point) => (
                self.elements[..point].iter().filter(is_digit).count(),
                self.elements[point..].iter().filter(is_digit).count(),
            ),
            None => (self.elements.iter().filter(is_digit).count(), 0),
        }
    }

    /// Digits after `V`: the number is multiplied by ten to their count.
    fn shift(&self) -> u32 {
        match self
            .elements
            .iter()
            .position(|element| *element == Element::Shift)
        {
            Some(index) => self.elements[index..]
                .iter()
                .filter(|element| matches!(element, Element::Digit { .. }))
                .count() as u32,
            None => 0,
        }
    }

    /// The digits after the point the template keeps: what `to_number` gives as its scale.
    pub fn scale(&self) -> u32 {
        self.positions().1 as u32
    }

    /// `value` written in the template, as `to_char` does. A NUMERIC's half rounds away from
    /// zero; a float's to even (Postgres writes floats with C's printf).
    pub fn format(&self, value: Decimal, float: bool) -> String {
        let (integer_positions, fraction_positions) = self.positions();
        let shifted = value * Decimal::from(10u64.pow(self.shift()));
        let strategy = if float {
            RoundingStrategy::MidpointNearestEven
        } else {
            RoundingStrategy::MidpointAwayFromZero
        };
        let rounded = shifted.round_dp_with_strategy(fraction_positions as u32, strategy);
        let negative = rounded.is_sign_negative() && !rounded.is_zero();
        let text = rounded.abs().to_string();
        let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
        // A zero whole part is not written when there are digits after the point.
        let mut whole = if whole == "0" && fraction_positions > 0 {
            String::new()
        } else {
            whole.to_string()
        };
        let mut fraction: Vec<char> = fraction.chars().collect();
        fraction.resize(fraction_positions, '0');
        if self.fill_mode {
            // Trailing zeros go where the template has 9, not 0.
            let fraction_templates: Vec<bool> = self.point_index().map_or(Vec::new(), |point| {
                self.elements[point..]
                    .iter()
                    .filter_map(|element| match element {
                        Element::Digit { zero } => Some(*zero),
                        _ => None,
                    })
                    .collect()
            });
            while fraction.last() == Some(&'0')
                && fraction_templates.get(fraction.len() - 1) == Some(&false)
            {
                fraction.pop();
            }
            if whole.is_empty() && fraction.is_empty() {
                whole = "0".into();
            }
        }
        let overflow = whole.chars().count() > integer_positions;
        let explicit_sign = self.elements.iter().any(|element| {
            matches!(
                element,
                Element::Sign | Element::Minus | Element::PlusOrMinus | Element::Brackets
            )
        });
        let sign_first = self
            .elements
            .iter()
            .position(|element| *element == Element::Sign)
            .is_some_and(|sign| {
                self.elements[..sign]
                    .iter()
                    .all(|element| !matches!(element, Element::Digit { .. } | Element::Point))
            });
        let brackets = self.elements.contains(&Element::Brackets);
        // The sign written just before the number's first character.
        let mut pending: Option<char> = if sign_first {
            Some(if negative { '-' } else { '+' })
        } else if brackets {
            Some(if negative { '<' } else { ' ' })
        } else if !explicit_sign {
            Some(if negative { '-' } else { ' ' })
        } else {
            None
        };
        if self.fill_mode && pending == Some(' ') {
            pending = None;
        }
        let whole: Vec<char> = whole.chars().collect();
        let mut out = String::new();
        let mut started = false;
        let mut integer_index = 0;
        let mut fraction_index = 0;
        let mut after_point = false;
        let blank = |out: &mut String| {
            if !self.fill_mode {
                out.push(' ');
            }
        };
        let start = |out: &mut String, pending: &mut Option<char>, started: &mut bool| {
            if let Some(sign) = pending.take() {
                out.push(sign);
            }
            *started = true;
        };
        for element in &self.elements {
            match element {
                Element::Digit { zero } if !after_point => {
                    let missing = integer_positions - whole.len().min(integer_positions);
                    if overflow {
                        start(&mut out, &mut pending, &mut started);
                        out.push('#');
                    } else if integer_index >= missing {
                        start(&mut out, &mut pending, &mut started);
                        out.push(whole[integer_index - missing]);
                    } else if *zero || started {
                        start(&mut out, &mut pending, &mut started);
                        out.push('0');
                    } else {
                        blank(&mut out);
                    }
                    integer_index += 1;
                }
                Element::Digit { .. } => {
                    if overflow {
                        out.push('#');
                    } else if let Some(digit) = fraction.get(fraction_index) {
                        out.push(*digit);
                    }
                    fraction_index += 1;
                }
                Element::Point => {
                    start(&mut out, &mut pending, &mut started);
                    out.push('.');
                    after_point = true;
                }
                Element::Group => {
                    if started {
                        out.push(',');
                    } else {
                        blank(&mut out);
                    }
                }
                Element::Sign => {
                    if !sign_first {
                        out.push(if negative { '-' } else { '+' });
                    }
                }
                Element::Minus => {
                    if negative {
                        out.push('-');
                    } else {
                        blank(&mut out);
                    }
                }
                Element::Plus => {
                    if negative {
                        blank(&mut out);
                    } else {
                        out.push('+');
                    }
                }
                Element::PlusOrMinus => out.push(if negative { '-' } else { '+' }),
                Element::Brackets => {
                    if negative {
                        out.push('>');
                    } else {
                        blank(&mut out);
                    }
                }
                Element::Currency => out.push(' '),
                Element::Shift => {}
                Element::Ordinal { upper } => {
                    // Postgres gives negative numbers no ordinal suffix.
                    if !overflow && !negative {
                        let whole_number = rounded.abs().trunc();
                        let last_two = (whole_number % Decimal::from(100))
                            .to_string()
                            .parse::<u32>()
                            .unwrap_or(0);
                        let suffix = match (last_two, last_two % 10) {
                            (11..=13, _) => "th",
                            (_, 1) => "st",
                            (_, 2) => "nd",
                            (_, 3) => "rd",
                            _ => "th",
                        };
                        if *upper {
                            out.push_str(&suffix.to_uppercase());
                        } else {
                            out.push_str(suffix);
                        }
                    }
                }
                Element::Literal(text) => out.push_str(text),
            }
        }
        if let Some(sign) = pending
            && sign != ' '
        {
            out.insert(0, sign);
        }
        out
    }

    /// The number `text` holds in the template, as `to_number` reads it: its sign (`-`, or
    /// angle brackets), at most as many digits before the point as the template has positions
    /// and after it (the rest cut off); anything else in the text is skipped. `None` when it
    /// holds no digit.
    pub fn read(&self, text: &str) -> Option<Decimal> {
        let (integer_positions, fraction_positions) = self.positions();
        let has_point = self.point_index().is_some();
        let mut negative = false;
        let mut whole = String::new();
        let mut fraction = String::new();
        let mut after_point = false;
        for character in text.chars() {
            match character {
                '-' | '<' => negative = true,
                '.' if has_point => after_point = true,
                digit if digit.is_ascii_digit() => {
                    if after_point {
                        if fraction.len() < fraction_positions {
                            fraction.push(digit);
                        }
                    } else if whole.len() < integer_positions {
                        whole.push(digit);
                    }
                }
                _ => {}
            }
        }
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let scale = self.scale();
        while fraction.len() < fraction_positions {
            fraction.push('0');
        }
        let digits = format!("{}{fraction}", if whole.is_empty() { "0" } else { &whole });
        let mantissa: i128 = digits.parse().ok()?;
        let value = Decimal::try_from_i128_with_scale(mantissa, scale).ok()?;
        Some(if negative { -value } else { value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn written(value: &str, pattern: &str) -> String {
        NumberTemplate::parse(pattern)
            .unwrap()
            .format(Decimal::from_str(value).unwrap(), false)
    }

    #[test]
    fn writes_what_postgres_writes() {
        // Each expected text is what PostgreSQL 15 returns for the same call.
        let cases = [
            ("1234.5", "9999.99", " 1234.50"),
            ("1234.5", "FM9999.99", "1234.5"),
            ("-12", "999", " -12"),
            ("1234567", "9,999,999", " 1,234,567"),
            ("0.5", "0.99", " 0.50"),
            ("42", "FM000", "042"),
            ("12.345", "99D99", " 12.35"),
            ("0.5", "9.99", "  .50"),
            ("0", "999", "   0"),
            ("0", "FM999", "0"),
            ("-0.5", "9.99", " -.50"),
            ("12345", "999", " ###"),
            ("-12345", "999.9", "-###.#"),
            ("-12", "S999", " -12"),
            ("12", "S999", " +12"),
            ("-12", "999S", " 12-"),
            ("-12", "MI999", "- 12"),
            ("12", "MI999", "  12"),
            ("-12", "999MI", " 12-"),
            ("12", "PL999", "+  12"),
            ("-12", "PL999", "  -12"),
            ("-12", "SG999", "- 12"),
            ("12", "SG999", "+ 12"),
            ("-12", "999PR", " <12>"),
            ("12", "999PR", "  12 "),
            ("1234.567", "FM9,999.00", "1,234.57"),
            ("1234.5", "FM9G999D00", "1,234.50"),
            ("1", "FM9.99", "1."),
            ("1", "FM9.00", "1.00"),
            ("1.005", "FM0.00", "1.01"),
            ("2.5", "FM9", "3"),
            ("-2.5", "FM9", "-3"),
            ("12", "L999", "   12"),
            ("12", "\"USD\" 999", "USD   12"),
            ("3", "FM9th", "3rd"),
            ("-7", "FM9th", "-7"),
            ("12", "999V9", "  120"),
            ("0", "9.99", "  .00"),
            ("0", "99", "  0"),
            ("5", "9.99", " 5.00"),
            ("0.5", "99.99", "   .50"),
            ("12", "9,999", "    12"),
            ("12", "FM9,999", "12"),
            ("12345", "FM999", "###"),
            ("0", "FM9.99", "0."),
            ("0.5", "FM9.99", ".5"),
            ("-1234.5", "FM9,999.99", "-1,234.5"),
            ("1234.5", "0000.00", " 1234.50"),
            ("-5", "00", "-05"),
            ("5", "FM00.0", "05.0"),
            ("7", "9 9 9", "     7"),
            ("12.5", "99", " 13"),
            ("-0.001", "9.99", "  .00"),
        ];
        for (value, pattern, expected) in cases {
            assert_eq!(written(value, pattern), expected, "{value} / {pattern}");
        }
        let float = |value: &str, pattern: &str| {
            NumberTemplate::parse(pattern)
                .unwrap()
                .format(Decimal::from_str(value).unwrap(), true)
        };
        assert_eq!(float("0.25", "9999.9"), "     .2");
        assert_eq!(float("-2.5", "SG9"), "-2");
    }

    #[test]
    fn reads_what_postgres_reads() {
        let cases = [
            ("12,345.67", "99,999.99", "12345.67"),
            ("-12.5", "S99.9", "-12.5"),
            ("$1,000", "L9,999", "1000"),
            (" 1234.50", "9999.99", "1234.50"),
            ("<12>", "999PR", "-12"),
            ("12-", "99MI", "-12"),
            ("abc12", "99999", "12"),
            ("12.345", "99.99", "12.34"),
            ("123", "9", "1"),
            ("  -1,234.5", "99,999.9", "-1234.5"),
        ];
        for (text, pattern, expected) in cases {
            let read = NumberTemplate::parse(pattern).unwrap().read(text);
            assert_eq!(read, Decimal::from_str(expected).ok(), "{text} / {pattern}");
        }
        assert_eq!(NumberTemplate::parse("999").unwrap().read(" "), None);
    }
}
