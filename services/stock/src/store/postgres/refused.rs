//! Why a rent or purchase statement took no copy: read after the statement, off the fast path.

use videostore_kit::postgres::Connection;

use super::rows::{PURCHASE_COLUMNS, RENTAL_COLUMNS, purchase_from_row, rental_from_row};
use crate::{
    domain::{AccountId, MovieId, Purchase, Rental, RentalId},
    error::Error,
    store::{NewPurchase, NewRental},
};

/// Why a rent or purchase statement took no copy.
pub(super) enum Refused<T> {
    /// The request id made one already: this is a retry, answered with what it made.
    Retry(T),
    /// Refused (or the same request id used for something else).
    Error(Error),
}

/// Why a rental took no copy, read after the statement.
pub(super) async fn rent_refused(
    client: &Connection,
    rental: &NewRental,
) -> Result<Refused<Rental>, Error> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {RENTAL_COLUMNS} FROM rentals WHERE customer_id = $1 AND request_id = $2"
        ))
        .await?;
    let earlier =
        client.query_opt(&statement, &[&rental.customer_id.get(), &rental.request_id]).await?;
    if let Some(row) = earlier {
        let earlier = rental_from_row(&row);
        if earlier.movie_id != rental.movie_id || earlier.days != rental.days {
            return Ok(Refused::Error(Error::RequestIdReused(rental.request_id.clone())));
        }
        return Ok(Refused::Retry(earlier));
    }
    Ok(Refused::Error(no_copy(client, rental.movie_id).await?))
}

/// Why a purchase took no copy, read after the statement.
pub(super) async fn purchase_refused(
    client: &Connection,
    purchase: &NewPurchase,
) -> Result<Refused<Purchase>, Error> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {PURCHASE_COLUMNS} FROM purchases WHERE customer_id = $1 AND request_id = $2"
        ))
        .await?;
    let earlier =
        client.query_opt(&statement, &[&purchase.customer_id.get(), &purchase.request_id]).await?;
    if let Some(row) = earlier {
        let earlier = purchase_from_row(&row);
        if earlier.movie_id != purchase.movie_id {
            return Ok(Refused::Error(Error::RequestIdReused(purchase.request_id.clone())));
        }
        return Ok(Refused::Retry(earlier));
    }
    Ok(Refused::Error(no_copy(client, purchase.movie_id).await?))
}

/// Sold out, or not stocked at all.
async fn no_copy(client: &Connection, movie_id: MovieId) -> Result<Error, Error> {
    let statement = client.prepare_cached("SELECT 1 FROM inventory WHERE movie_id = $1").await?;
    let stocked = client.query_opt(&statement, &[&movie_id.get()]).await?.is_some();
    Ok(if stocked { Error::SoldOut(movie_id) } else { Error::NotStocked(movie_id) })
}

/// Why a return closed nothing, read after the statement.
pub(super) async fn return_refused(
    client: &Connection,
    rental_id: RentalId,
    customer: Option<AccountId>,
) -> Result<Error, Error> {
    let statement =
        client.prepare_cached("SELECT customer_id, returned_ms FROM rentals WHERE id = $1").await?;
    let found = client.query_opt(&statement, &[&rental_id.get()]).await?;
    Ok(match found {
        Some(row) if customer.is_some_and(|c| c.get() != row.get::<_, i64>(0)) => {
            Error::NotYourRental(rental_id)
        }
        Some(_) => Error::AlreadyReturned(rental_id),
        // A customer is not told whether someone else's rental exists.
        None if customer.is_some() => Error::NotYourRental(rental_id),
        None => Error::RentalNotFound(rental_id),
    })
}
