//! How amounts, times and films are shown in a terminal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use videostore_proto::{
    catalogue::Movie,
    stock::{Availability, Money, Rental, RentalState},
};

/// `3.99 EUR`.
pub(crate) fn money(money: Option<&Money>) -> String {
    videostore_display::money::format(money)
}

/// A timestamp as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn time(timestamp: Option<&prost_types::Timestamp>) -> String {
    videostore_display::time::date_time(timestamp)
}

/// The MPAA label.
pub(crate) fn rating(rating: i32) -> &'static str {
    videostore_display::rating::label(rating)
}

/// One line per film.
pub(crate) fn movie_line(movie: &Movie) -> String {
    use videostore_display::facts;
    let rest = facts::joined([
        Some(rating(movie.rating).to_owned()),
        facts::genres(&movie.genres),
        facts::stars(movie.audience_rating),
    ]);
    format!("{:>6}  {} ({})  {rest}", movie.id, movie.title, movie.release_year)
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

    #[test]
    fn overdue_rentals_are_marked() {
        let rental = Rental {
            state: RentalState::Open as i32,
            due_at: Some(prost_types::Timestamp { seconds: 1000, nanos: 0 }),
            price: Some(Money { currency_code: "EUR".into(), minor_units: 598 }),
            ..Default::default()
        };
        let line = rental_line(&rental, SystemTime::now());
        assert!(line.contains("OVERDUE") && line.contains("5.98 EUR"), "{line}");
        assert!(!rental_line(&rental, UNIX_EPOCH).contains("OVERDUE"));
    }
}
