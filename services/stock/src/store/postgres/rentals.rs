//! Rents and returns: one call to a statement, or a batch of them to one (see `batch.rs`).
//!
//! Either way a write is one statement, so one transaction in one round trip, and every rule
//! is settled inside it by PostgreSQL: a copy is taken only from a row with one to give
//! (`CHECK (copies_available >= 0)` behind it), a request id that made a rental already makes
//! nothing, `(customer_id, request_id)` is unique, and a rental is closed only while open.

use std::time::SystemTime;

use prometheus_client::metrics::histogram::Histogram;
use videostore_kit::postgres::{Pool, is_unique_violation, tokio_postgres::Row};

use super::{
    connection,
    refused::{Refused, rent_refused, return_refused},
    rows::{INVENTORY_COLUMNS, RENTAL_COLUMNS, availability_at, millis, prefixed, rental_at},
};
use crate::{
    domain::{AccountId, DAY, Rental, RentalId},
    error::Error,
    store::{NewRental, Outcome},
};

/// Upper bounds of the calls-per-statement buckets (a batch holds at most `batch::MOST`).
const SIZES: [f64; 6] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0];

/// How many calls each statement made, for `/metrics`: the batches that went to the database
/// whole, and one per call made alone.
#[derive(Clone)]
pub(super) struct Sizes {
    pub(super) rents: Histogram,
    pub(super) returns: Histogram,
}

impl Default for Sizes {
    fn default() -> Self {
        Self { rents: Histogram::new(SIZES), returns: Histogram::new(SIZES) }
    }
}

/// A return to make.
pub(super) struct Return {
    pub(super) rental_id: RentalId,
    /// Only if it is this customer's (`None`: staff, any rental).
    pub(super) customer: Option<AccountId>,
    pub(super) now: SystemTime,
}

/// A call that can be made alone or with others of its kind in one statement.
pub(super) trait Batched: Sized {
    /// Several calls in one statement, answered in order; an error means the statement made
    /// nothing.
    async fn together(
        pool: &Pool,
        calls: &[Self],
    ) -> Result<Vec<Result<Outcome<Rental>, Error>>, Error>;
    /// One call in its own statement.
    async fn alone(pool: &Pool, call: &Self) -> Result<Outcome<Rental>, Error>;
}

impl Batched for NewRental {
    async fn together(
        pool: &Pool,
        calls: &[Self],
    ) -> Result<Vec<Result<Outcome<Rental>, Error>>, Error> {
        rent_together(pool, calls).await
    }
    async fn alone(pool: &Pool, call: &Self) -> Result<Outcome<Rental>, Error> {
        rent_one(pool, call).await
    }
}

impl Batched for Return {
    async fn together(
        pool: &Pool,
        calls: &[Self],
    ) -> Result<Vec<Result<Outcome<Rental>, Error>>, Error> {
        return_together(pool, calls).await
    }
    async fn alone(pool: &Pool, call: &Self) -> Result<Outcome<Rental>, Error> {
        return_one(pool, call).await
    }
}

/// The answers to a batch of `calls`, in order: made together in one statement when there are
/// several, else (or when that statement failed and so made nothing) each alone; `sizes`
/// counts the calls each statement made.
pub(super) async fn batch<Call: Batched>(
    pool: &Pool,
    sizes: &Histogram,
    calls: Vec<Call>,
) -> Vec<Result<Outcome<Rental>, Error>> {
    if calls.len() > 1 {
        match Call::together(pool, &calls).await {
            Ok(answers) => {
                sizes.observe(calls.len() as f64);
                return answers;
            }
            Err(Error::DatabaseUnavailable(cause)) => return unavailable(&cause, calls.len()),
            Err(error) => {
                tracing::debug!(%error, calls = calls.len(), "a batch made one by one");
            }
        }
    }
    let mut answers = Vec::with_capacity(calls.len());
    for call in &calls {
        sizes.observe(1.0);
        answers.push(Call::alone(pool, call).await);
    }
    answers
}

/// The answers to the `calls` of a batch whose connection was lost: whether its statement
/// committed is unknown, so each is answered as a single call would be, unavailable (a rent's
/// retry, same request id, then finds what was made). A batch that failed otherwise (a customer
/// over a cap, a request id twice in it, a deadlock) made nothing, and its calls are made one by
/// one, each getting its own answer.
fn unavailable<Answer>(cause: &anyhow::Error, calls: usize) -> Vec<Result<Answer, Error>> {
    (0..calls).map(|_| Err(Error::DatabaseUnavailable(anyhow::anyhow!("{cause:#}")))).collect()
}

/// One rent in one statement: take a copy unless this request id made a rental already, and
/// insert the rental priced from the row it took.
async fn rent_one(pool: &Pool, rental: &NewRental) -> Result<Outcome<Rental>, Error> {
    let client = connection(pool).await?;
    let due_at = rental.now + DAY * rental.days as u32;
    let statement = client
        .prepare_cached(&format!(
            "WITH taken AS (UPDATE inventory SET copies_available = copies_available - 1, \
             version = version + 1 WHERE movie_id = $1 AND copies_available > 0 \
             AND NOT EXISTS (SELECT 1 FROM rentals WHERE customer_id = $2 AND request_id = $6) \
             RETURNING {INVENTORY_COLUMNS}), \
             made AS (INSERT INTO rentals (customer_id, movie_id, days, rented_ms, due_ms, \
             currency, price_per_day_minor, price_minor, request_id) \
             SELECT $2::bigint, movie_id, $3::integer, $4::bigint, $5::bigint, currency, \
             rental_price_minor, rental_price_minor * $3::integer, $6::text FROM taken \
             RETURNING {RENTAL_COLUMNS}) \
             SELECT {}, {} FROM taken, made",
            prefixed("taken", INVENTORY_COLUMNS),
            prefixed("made", RENTAL_COLUMNS),
        ))
        .await?;
    let made = client
        .query_opt(
            &statement,
            &[
                &rental.movie_id.get(),
                &rental.customer_id.get(),
                &rental.days,
                &millis(rental.now),
                &millis(due_at),
                &rental.request_id,
            ],
        )
        .await;
    let refused = match made {
        Ok(Some(row)) => {
            return Ok(Outcome {
                value: rental_at(&row, 7),
                changed: Some(availability_at(&row, 0)),
            });
        }
        // Nothing taken: a retry, or no copy to take.
        Ok(None) => rent_refused(&client, rental).await?,
        // A retry racing the first call on another replica: the first inserted, this one
        // waited for it and was rolled back whole. Its answer is the first call's.
        Err(error) if is_unique_violation(&error) => match rent_refused(&client, rental).await? {
            found @ (Refused::Retry(_) | Refused::Error(Error::RequestIdReused(_))) => found,
            // Another unique rule broke: not a retry, a fault.
            Refused::Error(_) => return Err(error.into()),
        },
        Err(error) => return Err(error.into()),
    };
    refused_answer(refused)
}

/// What a rent that took no copy answers.
fn refused_answer(refused: Refused<Rental>) -> Result<Outcome<Rental>, Error> {
    match refused {
        Refused::Retry(earlier) => Ok(Outcome { value: earlier, changed: None }),
        Refused::Error(error) => Err(error),
    }
}

/// Several rents in one statement (as docs/bench/pgbench-batch.sql measured it):
/// - rents whose request id made a rental already take nothing (they are answered after);
/// - the others are numbered per film in the batch's order, and each film gives at most the
///   copies it has, to the first of them;
/// - the films are locked in the order of their ids before any is changed, so two batches on
///   two replicas wait for each other rather than deadlock, and each film's version goes up
///   once for the batch;
/// - the rentals are inserted in the order of their customers, whose cap checks (migration
///   0007) take the customers' locks in that order for the same reason.
///
/// A rent that got no copy is answered as a single one would be: its earlier rental if it is a
/// retry, else sold out or not stocked. An error fails the whole statement, which made nothing.
async fn rent_together(
    pool: &Pool,
    rentals: &[NewRental],
) -> Result<Vec<Result<Outcome<Rental>, Error>>, Error> {
    let client = connection(pool).await?;
    let statement = client
        .prepare_cached(&format!(
            "WITH asked AS (SELECT * FROM unnest($1::integer[], $2::bigint[], $3::bigint[], \
             $4::integer[], $5::bigint[], $6::bigint[], $7::text[]) \
             AS asked (idx, customer_id, movie_id, days, rented_ms, due_ms, request_id)), \
             fresh AS (SELECT asked.*, \
             row_number() OVER (PARTITION BY movie_id ORDER BY idx) AS place FROM asked \
             WHERE NOT EXISTS (SELECT 1 FROM rentals r WHERE r.customer_id = asked.customer_id \
             AND r.request_id = asked.request_id)), \
             wanted AS (SELECT movie_id, count(*)::integer AS n FROM fresh GROUP BY movie_id), \
             locked AS MATERIALIZED (SELECT i.movie_id, i.copies_available AS before \
             FROM inventory i WHERE i.movie_id IN (SELECT movie_id FROM wanted) \
             AND i.copies_available > 0 ORDER BY i.movie_id FOR NO KEY UPDATE), \
             taken AS (UPDATE inventory i \
             SET copies_available = i.copies_available - least(w.n, l.before), \
             version = i.version + 1 FROM wanted w JOIN locked l USING (movie_id) \
             WHERE i.movie_id = w.movie_id \
             RETURNING {}, least(w.n, l.before) AS granted), \
             made AS (INSERT INTO rentals (customer_id, movie_id, days, rented_ms, due_ms, \
             currency, price_per_day_minor, price_minor, request_id) \
             SELECT f.customer_id, f.movie_id, f.days, f.rented_ms, f.due_ms, t.currency, \
             t.rental_price_minor, t.rental_price_minor * f.days, f.request_id \
             FROM fresh f JOIN taken t ON t.movie_id = f.movie_id AND f.place <= t.granted \
             ORDER BY f.customer_id RETURNING {RENTAL_COLUMNS}) \
             SELECT f.idx, {}, {} FROM made \
             JOIN fresh f ON f.customer_id = made.customer_id AND f.request_id = made.request_id \
             JOIN taken ON taken.movie_id = made.movie_id",
            prefixed("i", INVENTORY_COLUMNS),
            prefixed("taken", INVENTORY_COLUMNS),
            prefixed("made", RENTAL_COLUMNS),
        ))
        .await?;
    let idx: Vec<i32> = (0..rentals.len() as i32).collect();
    let customers: Vec<i64> = rentals.iter().map(|r| r.customer_id.get()).collect();
    let movies: Vec<i64> = rentals.iter().map(|r| r.movie_id.get()).collect();
    let days: Vec<i32> = rentals.iter().map(|r| r.days).collect();
    let rented: Vec<i64> = rentals.iter().map(|r| millis(r.now)).collect();
    let due: Vec<i64> = rentals.iter().map(|r| millis(r.now + DAY * r.days as u32)).collect();
    let request_ids: Vec<&str> = rentals.iter().map(|r| r.request_id.as_str()).collect();
    let rows = client
        .query(&statement, &[&idx, &customers, &movies, &days, &rented, &due, &request_ids])
        .await?;
    let made = made_by_call(&rows, rentals.len())?;
    let mut answers = Vec::with_capacity(rentals.len());
    for (rental, made) in rentals.iter().zip(made) {
        answers.push(match made {
            Some(made) => Ok(made),
            None => match rent_refused(&client, rental).await {
                Ok(refused) => refused_answer(refused),
                Err(error) => Err(error),
            },
        });
    }
    Ok(answers)
}

/// One return in one statement: close the rental if it is open (and the customer's), charging
/// the late fee of `domain::late_fee` (a day's price per day started after the due date; the
/// store suite checks both backends against it), and put the copy back.
async fn return_one(pool: &Pool, call: &Return) -> Result<Outcome<Rental>, Error> {
    let client = connection(pool).await?;
    let statement = client
        .prepare_cached(&format!(
            "WITH returned AS (UPDATE rentals SET returned_ms = $2::bigint, \
             late_fee_minor = {} \
             WHERE id = $1 AND returned_ms IS NULL \
             AND customer_id = coalesce($3::bigint, customer_id) \
             RETURNING {RENTAL_COLUMNS}), \
             back AS (UPDATE inventory SET copies_available = copies_available + 1, \
             version = version + 1 FROM returned WHERE inventory.movie_id = returned.movie_id \
             RETURNING {}) \
             SELECT {}, {} FROM back, returned",
            late_fee("$2::bigint"),
            prefixed("inventory", INVENTORY_COLUMNS),
            prefixed("back", INVENTORY_COLUMNS),
            prefixed("returned", RENTAL_COLUMNS),
        ))
        .await?;
    let customer_id = call.customer.map(AccountId::get);
    let returned = client
        .query_opt(&statement, &[&call.rental_id.get(), &millis(call.now), &customer_id])
        .await?;
    match returned {
        Some(row) => {
            Ok(Outcome { value: rental_at(&row, 7), changed: Some(availability_at(&row, 0)) })
        }
        None => Err(return_refused(&client, call.rental_id, call.customer).await?),
    }
}

/// Several returns in one statement: each closes its rental if open (and the caller's), then
/// the copies go back, the films locked in the order of their ids (as in [`rent_together`]),
/// each film's version up once for the batch. The same rental twice in a batch is closed once;
/// the other call finds it returned.
async fn return_together(
    pool: &Pool,
    returns: &[Return],
) -> Result<Vec<Result<Outcome<Rental>, Error>>, Error> {
    let client = connection(pool).await?;
    let statement = client
        .prepare_cached(&format!(
            "WITH asked AS (SELECT * FROM unnest($1::integer[], $2::bigint[], $3::bigint[], \
             $4::bigint[]) AS asked (idx, rental_id, now_ms, caller)), \
             returned AS (UPDATE rentals SET returned_ms = asked.now_ms, late_fee_minor = {} \
             FROM asked WHERE rentals.id = asked.rental_id AND rentals.returned_ms IS NULL \
             AND rentals.customer_id = coalesce(asked.caller, rentals.customer_id) \
             RETURNING asked.idx, {}), \
             per AS (SELECT movie_id, count(*)::integer AS n FROM returned GROUP BY movie_id), \
             locked AS MATERIALIZED (SELECT i.movie_id FROM inventory i \
             WHERE i.movie_id IN (SELECT movie_id FROM per) \
             ORDER BY i.movie_id FOR NO KEY UPDATE), \
             back AS (UPDATE inventory i SET copies_available = i.copies_available + per.n, \
             version = i.version + 1 FROM per JOIN locked USING (movie_id) \
             WHERE i.movie_id = per.movie_id RETURNING {}) \
             SELECT returned.idx, {}, {} FROM returned \
             JOIN back ON back.movie_id = returned.movie_id",
            late_fee("asked.now_ms"),
            prefixed("rentals", RENTAL_COLUMNS),
            prefixed("i", INVENTORY_COLUMNS),
            prefixed("back", INVENTORY_COLUMNS),
            prefixed("returned", RENTAL_COLUMNS),
        ))
        .await?;
    let idx: Vec<i32> = (0..returns.len() as i32).collect();
    let ids: Vec<i64> = returns.iter().map(|r| r.rental_id.get()).collect();
    let now: Vec<i64> = returns.iter().map(|r| millis(r.now)).collect();
    let callers: Vec<Option<i64>> =
        returns.iter().map(|r| r.customer.map(AccountId::get)).collect();
    let rows = client.query(&statement, &[&idx, &ids, &now, &callers]).await?;
    let made = made_by_call(&rows, returns.len())?;
    let mut answers = Vec::with_capacity(returns.len());
    for (call, made) in returns.iter().zip(made) {
        answers.push(match made {
            Some(made) => Ok(made),
            None => match return_refused(&client, call.rental_id, call.customer).await {
                Ok(error) | Err(error) => Err(error),
            },
        });
    }
    Ok(answers)
}

/// What a batch statement made, by call: each row is a call's index in the batch, the film's
/// stock after the batch (`INVENTORY_COLUMNS`), and the rental (`RENTAL_COLUMNS`).
fn made_by_call(rows: &[Row], calls: usize) -> Result<Vec<Option<Outcome<Rental>>>, Error> {
    let mut made: Vec<Option<Outcome<Rental>>> = (0..calls).map(|_| None).collect();
    for row in rows {
        let at = usize::try_from(row.get::<_, i32>(0)).ok().filter(|&at| at < calls);
        let Some(at) = at else {
            return Err(Error::Internal(anyhow::anyhow!(
                "a batch answered a call it was not asked"
            )));
        };
        made[at] =
            Some(Outcome { value: rental_at(row, 8), changed: Some(availability_at(row, 1)) });
    }
    Ok(made)
}

/// The late fee of a rental returned at `now` (SQL, in milliseconds): a day's price per day
/// started after the due date.
fn late_fee(now: &str) -> String {
    let day = DAY.as_secs();
    format!(
        "CASE WHEN {now} > due_ms THEN price_per_day_minor * \
         GREATEST(1, (({now} - due_ms) / 1000 + {day} - 1) / {day}) ELSE 0 END"
    )
}
