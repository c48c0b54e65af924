//! Money: integer minor units of a currency, shown with the currency's own number of decimals.

use videostore_proto::stock::Money;

/// Decimal places of a currency's minor unit (ISO 4217): 2 for most, 0 or 3 for a few.
pub fn minor_digits(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "ISK" | "CLP" | "VND" | "HUF" | "PYG" | "UGX" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" | "LYD" | "IQD" => 3,
        _ => 2,
    }
}

/// `3.99 EUR`, `-12.50 EUR`, `500 JPY`; `-` when there is no amount.
pub fn format(money: Option<&Money>) -> String {
    let Some(money) = money else { return "-".into() };
    format_minor(money.minor_units, &money.currency_code)
}

/// Like [`format`], from the parts.
pub fn format_minor(minor: i64, currency: &str) -> String {
    let digits = minor_digits(currency);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{abs} {currency}");
    }
    let scale = 10u64.pow(digits);
    format!("{sign}{}.{:0width$} {currency}", abs / scale, abs % scale, width = digits as usize)
}

/// Reads an amount typed by a person (`2.99`, `3`, `0.5`) into minor units of `currency`.
pub fn parse_minor(text: &str, currency: &str) -> Result<i64, String> {
    let text = text.trim();
    let digits = minor_digits(currency) as usize;
    let invalid = || format!("{text:?} is not an amount like 2.99");
    let (whole, fraction) = text.split_once(['.', ',']).unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    if fraction.len() > digits {
        return Err(format!("{currency} amounts have at most {digits} decimals"));
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| invalid())? };
    let fraction: i64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<digits$}").parse().map_err(|_| invalid())?
    };
    whole
        .checked_mul(10i64.pow(digits as u32))
        .and_then(|units| units.checked_add(fraction))
        .ok_or_else(invalid)
}

/// The total of `days` days at `per_day`, in the same currency.
pub fn times(per_day: &Money, days: i32) -> Money {
    Money {
        currency_code: per_day.currency_code.clone(),
        minor_units: per_day.minor_units.saturating_mul(i64::from(days)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(minor: i64) -> Money {
        Money { currency_code: "EUR".into(), minor_units: minor }
    }

    #[test]
    fn amounts_use_the_currency_minor_unit() {
        assert_eq!(format(Some(&eur(399))), "3.99 EUR");
        assert_eq!(format(Some(&eur(5))), "0.05 EUR");
        assert_eq!(format(Some(&eur(0))), "0.00 EUR");
        assert_eq!(format(Some(&eur(-1250))), "-12.50 EUR");
        assert_eq!(format_minor(500, "JPY"), "500 JPY");
        assert_eq!(format_minor(1500, "KWD"), "1.500 KWD");
        assert_eq!(format(None), "-");
    }

    #[test]
    fn typed_amounts_become_minor_units() {
        assert_eq!(parse_minor("2.99", "EUR"), Ok(299));
        assert_eq!(parse_minor(" 3 ", "EUR"), Ok(300));
        assert_eq!(parse_minor("0.5", "EUR"), Ok(50));
        assert_eq!(parse_minor("1,25", "EUR"), Ok(125));
        assert_eq!(parse_minor("500", "JPY"), Ok(500));
        assert!(parse_minor("2.999", "EUR").is_err());
        assert!(parse_minor("-1", "EUR").is_err());
        assert!(parse_minor("abc", "EUR").is_err());
        assert!(parse_minor("", "EUR").is_err());
        assert!(parse_minor("99999999999999999999", "EUR").is_err());
    }

    #[test]
    fn rental_totals_multiply_the_daily_price() {
        assert_eq!(times(&eur(299), 3), eur(897));
        assert_eq!(times(&eur(i64::MAX), 2).minor_units, i64::MAX, "saturates, never wraps");
    }
}
