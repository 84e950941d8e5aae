//! Amounts on the command line: base units (`1500000`) or AIT with the `ait` suffix (`1.5ait`).
//!
//! Parsed with integer arithmetic only: a float would round `0.1ait` to something that is not
//! 100000 units, and an amount signed into a transaction must be exactly what the user typed.
//! A decimal point without the suffix is refused, so `1.5` can never be silently read as units.

use aitbc_chain::params::AIT;

/// Decimal places of one AIT (`AIT` = 10^6 units).
pub const AIT_DECIMALS: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("empty amount")]
    Empty,
    #[error("amounts cannot be negative")]
    Negative,
    #[error(
        "expected base units (digits only) or AIT with the `ait` suffix, \
         e.g. 1500000 or 1.5ait"
    )]
    Malformed,
    #[error("a decimal amount needs the `ait` suffix (e.g. 1.5ait); base units are whole")]
    DecimalWithoutSuffix,
    #[error("at most {AIT_DECIMALS} decimal places: 1 AIT is 10^6 units")]
    TooManyDecimals,
    #[error("amount does not fit in 64 bits of base units")]
    Overflow,
}

/// Parses an amount into base units. See the module doc for the accepted forms.
pub fn parse_amount(text: &str) -> Result<u64, AmountError> {
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    if text.starts_with('-') {
        return Err(AmountError::Negative);
    }
    match text.strip_suffix("ait") {
        Some(ait) => parse_ait(ait),
        None if text.contains('.') => Err(AmountError::DecimalWithoutSuffix),
        None => parse_digits(text),
    }
}

/// `text` without its suffix: `<whole>` or `<whole>.<fraction>`, both non-empty digit runs.
fn parse_ait(text: &str) -> Result<u64, AmountError> {
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if text.contains('.') && frac.is_empty() {
        return Err(AmountError::Malformed);
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AmountError::Malformed);
    }
    if frac.len() > AIT_DECIMALS {
        return Err(AmountError::TooManyDecimals);
    }
    let whole = parse_digits(whole)?;
    // Right-pad the fraction to six digits: "5" is 500000 units.
    let frac_units = if frac.is_empty() {
        0
    } else {
        parse_digits(frac)? * 10u64.pow((AIT_DECIMALS - frac.len()) as u32)
    };
    whole
        .checked_mul(AIT)
        .and_then(|w| w.checked_add(frac_units))
        .ok_or(AmountError::Overflow)
}

/// A non-empty run of ASCII digits as a u64. `str::parse` alone would accept a leading `+`.
fn parse_digits(text: &str) -> Result<u64, AmountError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AmountError::Malformed);
    }
    text.parse::<u64>().map_err(|_| AmountError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_units_and_ait() {
        let good: [(&str, u64); 12] = [
            ("0", 0),
            ("1", 1),
            ("1500000", 1_500_000),
            ("18446744073709551615", u64::MAX),
            ("1ait", AIT),
            ("0ait", 0),
            ("1.5ait", 1_500_000),
            ("0.000001ait", 1),
            ("0.1ait", 100_000),
            ("007.250000ait", 7_250_000),
            ("18446744073709.551615ait", u64::MAX),
            ("1000ait", 1_000 * AIT),
        ];
        for (text, units) in good {
            assert_eq!(parse_amount(text), Ok(units), "{text}");
        }
    }

    #[test]
    fn rejects_every_bad_form() {
        use AmountError::*;
        let bad: [(&str, AmountError); 22] = [
            ("", Empty),
            ("ait", Empty),
            ("-1", Negative),
            ("-1.5ait", Negative),
            ("+1", Malformed),
            ("+1ait", Malformed),
            (" 1", Malformed),
            ("1 ", Malformed),
            ("1 ait", Malformed),
            ("1_000", Malformed),
            ("1e6", Malformed),
            ("0x10", Malformed),
            (".5ait", Malformed),
            ("1.ait", Malformed),
            ("1.2.3ait", Malformed),
            ("1.5AIT", DecimalWithoutSuffix),
            ("1.5", DecimalWithoutSuffix),
            ("1.5 ait", Malformed),
            ("0.0000001ait", TooManyDecimals),
            ("18446744073709551616", Overflow),
            ("18446744073709.551616ait", Overflow),
            ("18446744073710ait", Overflow),
        ];
        for (text, err) in bad {
            assert_eq!(parse_amount(text), Err(err), "{text:?}");
        }
    }
}
