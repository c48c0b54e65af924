//! Between the wire's messages and the stock service's domain types, checking what comes in.

use videostore_proto::stock as pb;

use crate::{
    domain::{self, Account, Availability, Invalid, Inventory, MovieId, Purchase, Rental, Role},
    service::RentRequest,
};

/// Most films per batch read or watch.
pub(super) const MAX_IDS: usize = 1000;

/// The film ids of a batch read (at least one) or a watch (none: every film).
pub(super) fn movie_ids(ids: &[i64], allow_empty: bool) -> Result<Vec<MovieId>, Invalid> {
    if ids.is_empty() && !allow_empty {
        return Err(Invalid::new("movie_ids must name at least one film"));
    }
    if ids.len() > MAX_IDS {
        return Err(Invalid(format!("at most {MAX_IDS} films per call, not {}", ids.len())));
    }
    ids.iter().map(|&id| MovieId::parse("movie_ids", id)).collect()
}

/// The versions a reconnecting watcher resumes from: at most [`MAX_IDS`], each a film id and a
/// version that is not negative.
pub(super) fn resume_from(versions: &[pb::FilmVersion]) -> Result<Vec<(MovieId, i64)>, Invalid> {
    if versions.len() > MAX_IDS {
        return Err(Invalid(format!(
            "resume_from has at most {MAX_IDS} films, not {}",
            versions.len()
        )));
    }
    versions
        .iter()
        .map(|resume| {
            let movie_id = MovieId::parse("resume_from.movie_id", resume.movie_id)?;
            if resume.version < 0 {
                return Err(Invalid(format!(
                    "resume_from.version must not be negative, not {}",
                    resume.version
                )));
            }
            Ok((movie_id, resume.version))
        })
        .collect()
}

/// A rent request's checked fields.
pub(super) fn rent_request(
    movie_id: i64,
    days: i32,
    request_id: &str,
) -> Result<RentRequest, Invalid> {
    Ok(RentRequest {
        movie_id: MovieId::parse("movie_id", movie_id)?,
        days: domain::check_days(days)?,
        request_id: domain::check_request_id(request_id)?,
    })
}

/// A SetInventory's checked fields.
pub(super) fn inventory(request: &pb::SetInventoryRequest) -> Result<Inventory, Invalid> {
    let movie_id = MovieId::parse("movie_id", request.movie_id)?;
    if !(0..=domain::MAX_COPIES).contains(&request.copies_owned) {
        return Err(Invalid(format!(
            "copies_owned must be between 0 and {}, not {}",
            domain::MAX_COPIES,
            request.copies_owned
        )));
    }
    let rent = request
        .rental_price_per_day
        .as_ref()
        .ok_or_else(|| Invalid::new("rental_price_per_day is required"))?;
    let buy = request
        .purchase_price
        .as_ref()
        .ok_or_else(|| Invalid::new("purchase_price is required"))?;
    let currency = domain::check_currency(&rent.currency_code)?;
    if buy.currency_code != currency {
        return Err(Invalid(format!(
            "both prices must be in the same currency ({currency} and {:?})",
            buy.currency_code
        )));
    }
    Ok(Inventory {
        movie_id,
        copies_owned: request.copies_owned,
        currency,
        rental_price_minor: domain::check_price("rental_price_per_day", rent.minor_units)?,
        purchase_price_minor: domain::check_price("purchase_price", buy.minor_units)?,
    })
}

fn money(currency: &str, minor: i64) -> Option<pb::Money> {
    Some(pb::Money { currency_code: currency.to_owned(), minor_units: minor })
}

/// A stocked film's stock, as the wire carries it.
pub(super) fn availability_to_proto(availability: &Availability) -> pb::Availability {
    pb::Availability {
        movie_id: availability.movie_id.get(),
        stocked: true,
        copies_owned: availability.copies_owned,
        copies_available: availability.copies_available,
        rental_price_per_day: money(&availability.currency, availability.rental_price_minor),
        purchase_price: money(&availability.currency, availability.purchase_price_minor),
        version: availability.version,
    }
}

/// A film's stock, stocked or not.
pub(super) fn stock_to_proto(movie_id: MovieId, stock: Option<&Availability>) -> pb::Availability {
    match stock {
        Some(availability) => availability_to_proto(availability),
        None => pb::Availability { movie_id: movie_id.get(), stocked: false, ..Default::default() },
    }
}

/// A rental, as the wire carries it.
pub(super) fn rental_to_proto(rental: &Rental) -> pb::Rental {
    pb::Rental {
        id: rental.id.get(),
        movie_id: rental.movie_id.get(),
        customer_id: rental.customer_id.get(),
        state: if rental.returned_at.is_some() {
            pb::RentalState::Returned
        } else {
            pb::RentalState::Open
        } as i32,
        days: rental.days,
        rented_at: Some(rental.rented_at.into()),
        due_at: Some(rental.due_at.into()),
        returned_at: rental.returned_at.map(Into::into),
        price: money(&rental.currency, rental.price_minor),
        late_fee: money(&rental.currency, rental.late_fee_minor),
        request_id: rental.request_id.clone(),
    }
}

/// A purchase, as the wire carries it.
pub(super) fn purchase_to_proto(purchase: &Purchase) -> pb::Purchase {
    pb::Purchase {
        id: purchase.id.get(),
        movie_id: purchase.movie_id.get(),
        customer_id: purchase.customer_id.get(),
        price: money(&purchase.currency, purchase.price_minor),
        purchased_at: Some(purchase.purchased_at.into()),
        request_id: purchase.request_id.clone(),
    }
}

/// An account, as the wire carries it.
pub(super) fn account_to_proto(account: &Account) -> pb::Account {
    pb::Account {
        id: account.id.get(),
        email: account.email.clone(),
        name: account.name.clone(),
        role: match account.role {
            Role::Customer => pb::Role::Customer,
            Role::Staff => pb::Role::Staff,
        } as i32,
        create_time: Some(account.created_at.into()),
    }
}
