//! How amounts, times and films are shown in a terminal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use videostore_proto::{
    catalogue::{Movie, MpaaRating},
    stock::{Availability, Money, Rental, RentalState},
};

/// Decimal places of a currency's minor unit (ISO 4217); 2 for all but a few.
fn minor_digits(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "ISK" | "CLP" | "VND" | "HUF" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" => 3,
        _ => 2,
    }
}

/// `3.99 EUR`.
pub(crate) fn money(money: Option<&Money>) -> String {
    let Some(money) = money else {
        return "-".into();
    };
    let digits = minor_digits(&money.currency_code);
    let sign = if money.minor_units < 0 { "-" } else { "" };
    let abs = money.minor_units.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{abs} {}", money.currency_code);
    }
    let scale = 10u64.pow(digits);
    format!(
        "{sign}{}.{:0width$} {}",
        abs / scale,
        abs % scale,
        money.currency_code,
        width = digits as usize
    )
}

/// A timestamp as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn time(timestamp: Option<&prost_types::Timestamp>) -> String {
    let Some(timestamp) = timestamp else {
        return "-".into();
    };
    let secs = timestamp.seconds;
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rest / 3600, rest % 3600 / 60)
}

/// Days since 1970-01-01 to a Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The MPAA label.
pub(crate) fn rating(rating: i32) -> &'static str {
    match MpaaRating::try_from(rating) {
        Ok(MpaaRating::G) => "G",
        Ok(MpaaRating::Pg) => "PG",
        Ok(MpaaRating::Pg13) => "PG-13",
        Ok(MpaaRating::R) => "R",
        Ok(MpaaRating::Nc17) => "NC-17",
        _ => "NR",
    }
}

/// One line per film.
pub(crate) fn movie_line(movie: &Movie) -> String {
    format!(
        "{:>6}  {} ({})  {}  {}  ★ {:.1}",
        movie.id,
        movie.title,
        movie.release_year,
        rating(movie.rating),
        movie.genres.join(", "),
        movie.audience_rating
    )
}

/// `2 of 5 available, 1.99 EUR/day, 9.99 EUR to buy`.
pub(crate) fn availability(availability: &Availability) -> String {
    if !availability.stocked {
        return "not stocked".into();
    }
    format!(
        "{} of {} available, {}/day, {} to buy",
        availability.copies_available,
        availability.copies_owned,
        money(availability.rental_price_per_day.as_ref()),
        money(availability.purchase_price.as_ref())
    )
}

/// One line per rental, with overdue marked.
pub(crate) fn rental_line(rental: &Rental, now: SystemTime) -> String {
    let open = rental.state == RentalState::Open as i32;
    let overdue = open
        && rental
            .due_at
            .as_ref()
            .is_some_and(|due| UNIX_EPOCH + Duration::from_secs(due.seconds.max(0) as u64) < now);
    let state = match (open, overdue) {
        (true, true) => "OVERDUE".to_owned(),
        (true, false) => "open".to_owned(),
        (false, _) => format!("returned {}", time(rental.returned_at.as_ref())),
    };
    let fee = rental.late_fee.as_ref().filter(|fee| fee.minor_units > 0);
    format!(
        "rental {:>5}  film {:>6}  {} day(s) for {}  due {}  {}{}",
        rental.id,
        rental.movie_id,
        rental.days,
        money(rental.price.as_ref()),
        time(rental.due_at.as_ref()),
        state,
        fee.map(|fee| format!("  late fee {}", money(Some(fee)))).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(minor: i64) -> Money {
        Money { currency_code: "EUR".into(), minor_units: minor }
    }

    #[test]
    fn money_uses_the_currency_minor_unit() {
        assert_eq!(money(Some(&eur(399))), "3.99 EUR");
        assert_eq!(money(Some(&eur(5))), "0.05 EUR");
        assert_eq!(money(Some(&eur(-1250))), "-12.50 EUR");
        assert_eq!(
            money(Some(&Money { currency_code: "JPY".into(), minor_units: 500 })),
            "500 JPY"
        );
        assert_eq!(money(None), "-");
    }

    #[test]
    fn times_are_shown_as_utc_dates() {
        let t = prost_types::Timestamp { seconds: 951_782_400, nanos: 0 }; // 2000-02-29
        assert_eq!(time(Some(&t)), "2000-02-29 00:00 UTC");
        let t = prost_types::Timestamp { seconds: 1_795_000_000 + 3_600, nanos: 0 };
        assert!(time(Some(&t)).starts_with("2026-"));
    }

    #[test]
    fn overdue_rentals_are_marked() {
        let rental = Rental {
            state: RentalState::Open as i32,
            due_at: Some(prost_types::Timestamp { seconds: 1000, nanos: 0 }),
            ..Default::default()
        };
        assert!(rental_line(&rental, SystemTime::now()).contains("OVERDUE"));
        assert!(!rental_line(&rental, UNIX_EPOCH).contains("OVERDUE"));
    }
}
