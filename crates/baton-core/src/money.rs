use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

const MICROS_PER_CREDIT: i64 = 1_000_000;

/// An amount of credits in integer micro-credits. Money is never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Credits(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid amount `{0}`: expected a number of credits with at most 6 decimals, like 12 or 0.25")]
pub struct InvalidCredits(pub String);

impl Credits {
    pub const ZERO: Credits = Credits(0);

    pub fn from_micros(micros: i64) -> Credits {
        Credits(micros)
    }

    pub fn micros(self) -> i64 {
        self.0
    }
}

impl FromStr for Credits {
    type Err = InvalidCredits;

    fn from_str(text: &str) -> Result<Credits, InvalidCredits> {
        let invalid = || InvalidCredits(text.to_owned());
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = match unsigned.split_once('.') {
            Some((_, "")) => return Err(invalid()),
            Some(parts) => parts,
            None => (unsigned, ""),
        };
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 6 {
            return Err(invalid());
        }
        let whole: i64 = whole.parse().map_err(|_| invalid())?;
        let fraction: i64 = format!("{fraction:0<6}").parse().map_err(|_| invalid())?;
        let micros = whole.checked_mul(MICROS_PER_CREDIT).and_then(|m| m.checked_add(fraction)).ok_or_else(invalid)?;
        Ok(Credits(if negative { -micros } else { micros }))
    }
}

impl fmt::Display for Credits {
    /// At least two decimals, more only when they carry something: `12.50`, `0.000123`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / MICROS_PER_CREDIT as u64;
        let fraction = format!("{:06}", abs % MICROS_PER_CREDIT as u64);
        let trimmed = fraction.trim_end_matches('0');
        let shown = if trimmed.len() < 2 { &fraction[..2] } else { trimmed };
        write!(f, "{sign}{whole}.{shown}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints() {
        let cases = [
            ("12", 12_000_000, "12.00"),
            ("0.25", 250_000, "0.25"),
            ("0.000123", 123, "0.000123"),
            ("-1.5", -1_500_000, "-1.50"),
        ];
        for (text, micros, shown) in cases {
            let credits: Credits = text.parse().unwrap();
            assert_eq!(credits.micros(), micros, "{text}");
            assert_eq!(credits.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_an_amount() {
        for bad in ["", ".5", "1.", "1.0000001", "1e3", "NaN", "1,5", "99999999999999999999", "--1"] {
            assert_eq!(bad.parse::<Credits>(), Err(InvalidCredits(bad.to_owned())), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn display_parses_back(micros in -1_000_000_000_000_i64..1_000_000_000_000) {
            let credits = Credits::from_micros(micros);
            prop_assert_eq!(credits.to_string().parse::<Credits>(), Ok(credits));
        }
    }
}
