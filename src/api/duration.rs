//! Duration strings ("1h30m", "500ms", "0s") exactly as the CRD's rule admits them (Go duration
//! syntax: `([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+`), parsed with checked arithmetic: no input can
//! overflow, panic or take more than linear time.
#![deny(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::time::Duration;

/// Why a duration string was refused, in words for a person.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("is empty")]
    Empty,
    #[error("is negative")]
    Negative,
    #[error("is not a duration such as 30s, 10m or 1h30m")]
    Malformed,
    #[error("is too long a duration")]
    Overflow,
}

/// Nanoseconds per unit.
const UNITS: [(&str, u128); 6] = [
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a non-negative duration: one or more `<digits>[.<digits>]<unit>` with units ns, us,
/// ms, s, m, h.
pub fn parse(text: &str) -> Result<Duration, ParseError> {
    if text.is_empty() {
        return Err(ParseError::Empty);
    }
    if text.starts_with('-') {
        return Err(ParseError::Negative);
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (value, after) = component(rest)?;
        total = total.checked_add(value).ok_or(ParseError::Overflow)?;
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| ParseError::Overflow)?;
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| ParseError::Overflow)?;
    Ok(Duration::new(secs, nanos))
}

/// One `<number>[.<fraction>]<unit>`: its value in nanoseconds, and the text after it.
fn component(text: &str) -> Result<(u128, &str), ParseError> {
    let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let int_len = digits(text);
    let (int_part, after_int) = text.split_at(int_len);
    let (frac_part, after_number) = match after_int.strip_prefix('.') {
        Some(f) => {
            let n = digits(f);
            if n == 0 {
                return Err(ParseError::Malformed);
            }
            f.split_at(n)
        }
        None => ("", after_int),
    };
    if int_part.is_empty() {
        return Err(ParseError::Malformed);
    }
    let (_, scale, after_unit) = UNITS
        .iter()
        .rev()
        .filter_map(|(name, scale)| {
            after_number
                .strip_prefix(name)
                .map(|after| (*name, *scale, after))
        })
        // "ms" before "m": the longest unit that matches.
        .max_by_key(|(name, _, _)| name.len())
        .ok_or(ParseError::Malformed)?;
    let int_value = decimal(int_part)?;
    let mut value = int_value.checked_mul(scale).ok_or(ParseError::Overflow)?;
    // The fraction: as many digits as change the result (beyond 1 ns they do not).
    let mut place = scale;
    for d in frac_part.chars().filter_map(|c| c.to_digit(10)) {
        place /= 10;
        if place == 0 {
            break;
        }
        value = value
            .checked_add(
                u128::from(d)
                    .checked_mul(place)
                    .ok_or(ParseError::Overflow)?,
            )
            .ok_or(ParseError::Overflow)?;
    }
    Ok((value, after_unit))
}

/// A run of ASCII digits as a number; refuses values no duration could hold.
fn decimal(digits: &str) -> Result<u128, ParseError> {
    let mut value: u128 = 0;
    for d in digits.chars().filter_map(|c| c.to_digit(10)) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(d)))
            .ok_or(ParseError::Overflow)?;
        if value > u128::from(u64::MAX) {
            return Err(ParseError::Overflow);
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        let cases = [
            ("0s", Duration::ZERO),
            ("30s", Duration::from_secs(30)),
            ("10m", Duration::from_secs(600)),
            ("1h30m", Duration::from_secs(5400)),
            ("500ms", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            ("1.5h", Duration::from_secs(5400)),
            ("2us", Duration::from_micros(2)),
            ("7ns", Duration::from_nanos(7)),
            ("1h1m1s1ms", Duration::from_millis(3_661_001)),
            ("720h", Duration::from_secs(720 * 3600)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_durations_are_refused_with_a_reason() {
        let cases = [
            ("", ParseError::Empty),
            ("-1h", ParseError::Negative),
            ("10", ParseError::Malformed),
            ("10 minutes", ParseError::Malformed),
            ("30d", ParseError::Malformed),
            ("h", ParseError::Malformed),
            ("1.h", ParseError::Malformed),
            (".5s", ParseError::Malformed),
            ("0", ParseError::Malformed),
            ("+1h", ParseError::Malformed),
            ("2µs", ParseError::Malformed),
            (" 1h", ParseError::Malformed),
            ("99999999999999999999h", ParseError::Overflow),
            ("111111111111111111111111111111111h", ParseError::Overflow),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Err(expected), "{text}");
        }
        // Go's own maximum (about 292 years) parses; bounds are the caller's to apply.
        assert!(parse("2562047h").is_ok());
    }

    #[test]
    fn no_input_panics_and_long_input_is_linear() {
        // Every string of up to 3 characters over an alphabet of the grammar, plus long ones.
        let alphabet = [
            "0", "1", "9", ".", "h", "m", "s", "u", "n", "µ", "-", "+", " ", "x",
        ];
        let regex = |s: &str| {
            // The CRD's rule, written out: one or more <digits>[.<digits>]<unit>.
            let mut rest = s;
            if rest.is_empty() {
                return false;
            }
            while !rest.is_empty() {
                let n = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                if n == 0 {
                    return false;
                }
                rest = &rest[n..];
                if let Some(f) = rest.strip_prefix('.') {
                    let m = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
                    if m == 0 {
                        return false;
                    }
                    rest = &f[m..];
                }
                match ["ns", "us", "ms", "s", "m", "h"]
                    .iter()
                    .filter(|u| rest.starts_with(*u))
                    .max_by_key(|u| u.len())
                {
                    Some(u) => rest = &rest[u.len()..],
                    None => return false,
                }
            }
            true
        };
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    let text = format!("{a}{b}{c}");
                    assert_eq!(parse(&text).is_ok(), regex(&text), "{text:?}");
                }
            }
        }
        let long = "1h".repeat(100_000);
        assert!(parse(&long).is_ok());
        assert_eq!(
            parse(&format!("{}h", "9".repeat(100_000))),
            Err(ParseError::Overflow)
        );
        assert_eq!(parse(&"9".repeat(100_000)), Err(ParseError::Malformed));
    }
}
