//! The PostgreSQL backend, for any number of stock replicas sharing one database.
//!
//! Nothing here relies on being the database's only writer. Every invariant is a conflict on
//! one row or one unique index, settled by PostgreSQL at READ COMMITTED:
//! - a copy is taken by one conditional `UPDATE … WHERE copies_available > 0`, and the CHECKs
//!   make a negative count impossible to commit;
//! - a request id is claimed by inserting the rental or purchase (`ON CONFLICT DO NOTHING` on
//!   `(customer_id, request_id)`) before anything else in its transaction: a retry racing the
//!   first call on another replica waits for it, then finds its result;
//! - a return locks its rental row (`FOR UPDATE`) before closing it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use videostore_kit::postgres::{
    self, Connection, Listener, Migrations, Pool, is_unique_violation,
    tokio_postgres::{self, Row, error::SqlState},
};

use super::{NewAccount, NewPurchase, NewRental, Outcome, StockStore};
use crate::{
    domain::{
        Account, AccountId, Availability, DAY, Inventory, MovieId, Purchase, PurchaseId, Rental,
        RentalId, Role, late_fee,
    },
    error::Error,
};

/// The schema, one migration per file.
const MIGRATIONS: Migrations = &[
    include_str!("../../migrations/postgres/0001_stock.sql"),
    include_str!("../../migrations/postgres/0002_stock_events.sql"),
    include_str!("../../migrations/postgres/0003_changes_in_notifications.sql"),
];

const INVENTORY_COLUMNS: &str = "movie_id, copies_owned, copies_available, currency, \
                                 rental_price_minor, purchase_price_minor, version";
const RENTAL_COLUMNS: &str = "id, customer_id, movie_id, days, rented_ms, due_ms, returned_ms, \
                              currency, price_per_day_minor, price_minor, late_fee_minor, request_id";
const PURCHASE_COLUMNS: &str =
    "id, customer_id, movie_id, currency, price_minor, purchased_ms, request_id";
const ACCOUNT_COLUMNS: &str = "id, email, name, role, created_ms";

/// Stock, rentals and accounts in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Where it is, for the listening connection of the feed.
    url: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` and brings its schema up to date.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let pool = postgres::open(url, MIGRATIONS).await.context("opening the stock database")?;
        Ok(Self { pool, url: url.to_owned() })
    }

    /// A connection of its own listening to the `stock_changes` notifications (see
    /// `crate::feed`), named `videostore-stock-feed` in `pg_stat_activity`.
    pub(crate) async fn listen(&self) -> anyhow::Result<Listener> {
        postgres::listen(&self.url, "stock_changes", "videostore-stock-feed").await
    }

    async fn connection(&self) -> Result<Connection, Error> {
        self.pool.get().await.context("taking a database connection").map_err(Error::Internal)
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Internal(error.into())
    }
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// `INVENTORY_COLUMNS` from `row`, starting at column `at`.
fn availability_at(row: &Row, at: usize) -> Availability {
    Availability {
        movie_id: MovieId::new(row.get(at)),
        copies_owned: row.get(at + 1),
        copies_available: row.get(at + 2),
        currency: row.get(at + 3),
        rental_price_minor: row.get(at + 4),
        purchase_price_minor: row.get(at + 5),
        version: row.get(at + 6),
    }
}

fn availability_from_row(row: &Row) -> Availability {
    availability_at(row, 0)
}

fn rental_from_row(row: &Row) -> Rental {
    rental_at(row, 0)
}

/// `RENTAL_COLUMNS` from `row`, starting at column `at`.
fn rental_at(row: &Row, at: usize) -> Rental {
    Rental {
        id: RentalId::new(row.get(at)),
        customer_id: AccountId::new(row.get(at + 1)),
        movie_id: MovieId::new(row.get(at + 2)),
        days: row.get(at + 3),
        rented_at: time(row.get(at + 4)),
        due_at: time(row.get(at + 5)),
        returned_at: row.get::<_, Option<i64>>(at + 6).map(time),
        currency: row.get(at + 7),
        price_per_day_minor: row.get(at + 8),
        price_minor: row.get(at + 9),
        late_fee_minor: row.get(at + 10),
        request_id: row.get(at + 11),
    }
}

fn purchase_from_row(row: &Row) -> Purchase {
    purchase_at(row, 0)
}

/// `PURCHASE_COLUMNS` from `row`, starting at column `at`.
fn purchase_at(row: &Row, at: usize) -> Purchase {
    Purchase {
        id: PurchaseId::new(row.get(at)),
        customer_id: AccountId::new(row.get(at + 1)),
        movie_id: MovieId::new(row.get(at + 2)),
        currency: row.get(at + 3),
        price_minor: row.get(at + 4),
        purchased_at: time(row.get(at + 5)),
        request_id: row.get(at + 6),
    }
}

fn role_text(role: Role) -> &'static str {
    match role {
        Role::Staff => "staff",
        Role::Customer => "customer",
    }
}

fn account_from_row(row: &Row) -> Account {
    let role: &str = row.get(3);
    Account {
        id: AccountId::new(row.get(0)),
        email: row.get(1),
        name: row.get(2),
        role: if role == "staff" { Role::Staff } else { Role::Customer },
        created_at: time(row.get(4)),
    }
}

/// Whether `error` is a foreign key violation (a film that is not stocked).
fn is_foreign_key_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
}

#[async_trait]
impl StockStore for PostgresStore {
    async fn availability(&self, ids: &[MovieId]) -> Result<Vec<Availability>, Error> {
        let ids: Vec<i64> = ids.iter().map(|id| id.get()).collect();
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {INVENTORY_COLUMNS} FROM inventory WHERE movie_id = ANY($1)"
            ))
            .await?;
        Ok(client.query(&statement, &[&ids]).await?.iter().map(availability_from_row).collect())
    }

    async fn all_availability(&self) -> Result<Vec<Availability>, Error> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!("SELECT {INVENTORY_COLUMNS} FROM inventory ORDER BY movie_id"))
            .await?;
        Ok(client.query(&statement, &[]).await?.iter().map(availability_from_row).collect())
    }

    async fn set_inventory(&self, inventory: &Inventory) -> Result<Availability, Error> {
        let client = self.connection().await?;
        // One statement on one row: the copies out on loan (owned − available, which the
        // invariant says are the open rentals) stay out, and the update is refused if they are
        // more than the copies to own.
        let statement = client
            .prepare_cached(&format!(
                "INSERT INTO inventory (movie_id, copies_owned, copies_available, currency, \
                 rental_price_minor, purchase_price_minor, version) \
                 VALUES ($1, $2, $2, $3, $4, $5, 1) \
                 ON CONFLICT (movie_id) DO UPDATE SET copies_owned = excluded.copies_owned, \
                 copies_available = excluded.copies_owned \
                     - (inventory.copies_owned - inventory.copies_available), \
                 currency = excluded.currency, rental_price_minor = excluded.rental_price_minor, \
                 purchase_price_minor = excluded.purchase_price_minor, \
                 version = inventory.version + 1 \
                 WHERE excluded.copies_owned >= inventory.copies_owned - inventory.copies_available \
                 RETURNING {INVENTORY_COLUMNS}"
            ))
            .await?;
        let updated = client
            .query_opt(
                &statement,
                &[
                    &inventory.movie_id.get(),
                    &inventory.copies_owned,
                    &inventory.currency,
                    &inventory.rental_price_minor,
                    &inventory.purchase_price_minor,
                ],
            )
            .await?;
        match updated {
            Some(row) => Ok(availability_from_row(&row)),
            None => {
                let rented: i32 = client
            .query_one(
                &client.prepare_cached("SELECT copies_owned - copies_available FROM inventory WHERE movie_id = $1").await?,
                &[&inventory.movie_id.get()],
                    )
                    .await?
                    .get(0);
                Err(Error::BelowRented {
                    movie_id: inventory.movie_id,
                    rented,
                    owned: inventory.copies_owned,
                })
            }
        }
    }

    async fn stock_missing(&self, rows: &[Inventory]) -> Result<u64, Error> {
        let ids: Vec<i64> = rows.iter().map(|row| row.movie_id.get()).collect();
        let copies: Vec<i32> = rows.iter().map(|row| row.copies_owned).collect();
        let currencies: Vec<&str> = rows.iter().map(|row| row.currency.as_str()).collect();
        let rent: Vec<i64> = rows.iter().map(|row| row.rental_price_minor).collect();
        let buy: Vec<i64> = rows.iter().map(|row| row.purchase_price_minor).collect();
        let client = self.connection().await?;
        Ok(client
            .execute(
                &client.prepare_cached("INSERT INTO inventory (movie_id, copies_owned, copies_available, currency, \
                 rental_price_minor, purchase_price_minor, version) \
                 SELECT id, copies, copies, currency, rent, buy, 1 \
                 FROM UNNEST($1::BIGINT[], $2::INTEGER[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[]) \
                     AS stock (id, copies, currency, rent, buy) \
                 ON CONFLICT (movie_id) DO NOTHING").await?,
                &[&ids, &copies, &currencies, &rent, &buy],
            )
            .await?)
    }

    async fn rent(&self, rental: &NewRental) -> Result<Outcome<Rental>, Error> {
        let mut client = self.connection().await?;
        let transaction = client.transaction().await?;
        let due_at = rental.now + DAY * rental.days as u32;
        // Claim the request id first: the rental row, priced once the copy is taken.
        let claimed = transaction
            .query_opt(
                &transaction.prepare_cached("INSERT INTO rentals (customer_id, movie_id, days, rented_ms, due_ms, currency, \
                 price_per_day_minor, price_minor, request_id) \
                 VALUES ($1, $2, $3, $4, $5, '', 0, 0, $6) \
                 ON CONFLICT (customer_id, request_id) DO NOTHING RETURNING id").await?,
                &[
                    &rental.customer_id.get(),
                    &rental.movie_id.get(),
                    &rental.days,
                    &millis(rental.now),
                    &millis(due_at),
                    &rental.request_id,
                ],
            )
            .await;
        let id: i64 = match claimed {
            Ok(Some(row)) => row.get(0),
            Ok(None) => {
                // A retry: the first call committed (its insert was waited for).
                let earlier = transaction
                    .query_one(
                        &transaction
                            .prepare_cached(&format!(
                                "SELECT {RENTAL_COLUMNS} FROM rentals \
                             WHERE customer_id = $1 AND request_id = $2"
                            ))
                            .await?,
                        &[&rental.customer_id.get(), &rental.request_id],
                    )
                    .await?;
                let earlier = rental_from_row(&earlier);
                if earlier.movie_id != rental.movie_id || earlier.days != rental.days {
                    return Err(Error::RequestIdReused(rental.request_id.clone()));
                }
                return Ok(Outcome { value: earlier, changed: None });
            }
            Err(error) if is_foreign_key_violation(&error) => {
                return Err(Error::NotStocked(rental.movie_id));
            }
            Err(error) => return Err(error.into()),
        };
        // Take a copy and price the rental from the same inventory row, in one statement.
        let taken = transaction
            .query_opt(
                &transaction.prepare_cached(&format!(
                    "WITH taken AS (UPDATE inventory SET copies_available = copies_available - 1, \
                 version = version + 1 WHERE movie_id = $1 AND copies_available > 0 \
                 RETURNING {INVENTORY_COLUMNS}) \
                 UPDATE rentals SET currency = taken.currency, \
                 price_per_day_minor = taken.rental_price_minor, \
                 price_minor = taken.rental_price_minor * rentals.days \
                 FROM taken WHERE rentals.id = $2 \
                 RETURNING {}, {}",
                    prefixed("taken", INVENTORY_COLUMNS),
                    prefixed("rentals", RENTAL_COLUMNS),
                )).await?,
                &[&rental.movie_id.get(), &id],
            )
            .await?;
        // Sold out: dropping the transaction rolls the claim back.
        let Some(row) = taken else { return Err(Error::SoldOut(rental.movie_id)) };
        let changed = availability_at(&row, 0);
        let made = rental_at(&row, 7);
        transaction.commit().await?;
        Ok(Outcome { value: made, changed: Some(changed) })
    }

    async fn return_rental(
        &self,
        rental_id: RentalId,
        customer: Option<AccountId>,
        now: SystemTime,
    ) -> Result<Outcome<Rental>, Error> {
        let mut client = self.connection().await?;
        let transaction = client.transaction().await?;
        let rental = transaction
            .query_opt(
                &transaction
                    .prepare_cached(&format!(
                        "SELECT {RENTAL_COLUMNS} FROM rentals WHERE id = $1 FOR UPDATE"
                    ))
                    .await?,
                &[&rental_id.get()],
            )
            .await?
            .map(|row| rental_from_row(&row));
        let rental = match rental {
            Some(rental) => rental,
            // A customer is not told whether someone else's rental exists.
            None if customer.is_some() => return Err(Error::NotYourRental(rental_id)),
            None => return Err(Error::RentalNotFound(rental_id)),
        };
        if customer.is_some_and(|customer| customer != rental.customer_id) {
            return Err(Error::NotYourRental(rental_id));
        }
        if rental.returned_at.is_some() {
            return Err(Error::AlreadyReturned(rental_id));
        }
        let fee = late_fee(rental.due_at, now, rental.price_per_day_minor);
        let returned = transaction
            .query_one(
                &transaction
                    .prepare_cached(&format!(
                        "UPDATE rentals SET returned_ms = $1, late_fee_minor = $2 \
                     WHERE id = $3 AND returned_ms IS NULL RETURNING {RENTAL_COLUMNS}"
                    ))
                    .await?,
                &[&millis(now), &fee, &rental_id.get()],
            )
            .await?;
        let returned = rental_from_row(&returned);
        let availability = transaction
            .query_one(
                &transaction
                    .prepare_cached(&format!(
                        "UPDATE inventory SET copies_available = copies_available + 1, \
                     version = version + 1 WHERE movie_id = $1 RETURNING {INVENTORY_COLUMNS}"
                    ))
                    .await?,
                &[&returned.movie_id.get()],
            )
            .await?;
        let availability = availability_from_row(&availability);
        transaction.commit().await?;
        Ok(Outcome { value: returned, changed: Some(availability) })
    }

    async fn purchase(&self, purchase: &NewPurchase) -> Result<Outcome<Purchase>, Error> {
        let mut client = self.connection().await?;
        let transaction = client.transaction().await?;
        let claimed = transaction
            .query_opt(
                &transaction
                    .prepare_cached(
                        "INSERT INTO purchases (customer_id, movie_id, currency, price_minor, \
                 purchased_ms, request_id) VALUES ($1, $2, '', 0, $3, $4) \
                 ON CONFLICT (customer_id, request_id) DO NOTHING RETURNING id",
                    )
                    .await?,
                &[
                    &purchase.customer_id.get(),
                    &purchase.movie_id.get(),
                    &millis(purchase.now),
                    &purchase.request_id,
                ],
            )
            .await;
        let id: i64 = match claimed {
            Ok(Some(row)) => row.get(0),
            Ok(None) => {
                let earlier = transaction
                    .query_one(
                        &transaction
                            .prepare_cached(&format!(
                                "SELECT {PURCHASE_COLUMNS} FROM purchases \
                             WHERE customer_id = $1 AND request_id = $2"
                            ))
                            .await?,
                        &[&purchase.customer_id.get(), &purchase.request_id],
                    )
                    .await?;
                let earlier = purchase_from_row(&earlier);
                if earlier.movie_id != purchase.movie_id {
                    return Err(Error::RequestIdReused(purchase.request_id.clone()));
                }
                return Ok(Outcome { value: earlier, changed: None });
            }
            Err(error) if is_foreign_key_violation(&error) => {
                return Err(Error::NotStocked(purchase.movie_id));
            }
            Err(error) => return Err(error.into()),
        };
        let taken = transaction
            .query_opt(
                &transaction.prepare_cached(&format!(
                    "WITH taken AS (UPDATE inventory SET copies_available = copies_available - 1, \
                 copies_owned = copies_owned - 1, version = version + 1 \
                 WHERE movie_id = $1 AND copies_available > 0 RETURNING {INVENTORY_COLUMNS}) \
                 UPDATE purchases SET currency = taken.currency, \
                 price_minor = taken.purchase_price_minor \
                 FROM taken WHERE purchases.id = $2 \
                 RETURNING {}, {}",
                    prefixed("taken", INVENTORY_COLUMNS),
                    prefixed("purchases", PURCHASE_COLUMNS),
                )).await?,
                &[&purchase.movie_id.get(), &id],
            )
            .await?;
        let Some(row) = taken else { return Err(Error::SoldOut(purchase.movie_id)) };
        let changed = availability_at(&row, 0);
        let made = purchase_at(&row, 7);
        transaction.commit().await?;
        Ok(Outcome { value: made, changed: Some(changed) })
    }

    async fn rentals_of(
        &self,
        customer_id: AccountId,
        include_returned: bool,
    ) -> Result<Vec<Rental>, Error> {
        let filter = if include_returned { "" } else { " AND returned_ms IS NULL" };
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {RENTAL_COLUMNS} FROM rentals WHERE customer_id = $1{filter} \
                 ORDER BY returned_ms IS NOT NULL, \
                 CASE WHEN returned_ms IS NULL THEN due_ms ELSE -returned_ms END, id"
            ))
            .await?;
        Ok(client
            .query(&statement, &[&customer_id.get()])
            .await?
            .iter()
            .map(rental_from_row)
            .collect())
    }

    async fn create_account(&self, account: &NewAccount) -> Result<Account, Error> {
        let client = self.connection().await?;
        let created = client
            .query_one(
                &client
                    .prepare_cached(&format!(
                        "INSERT INTO accounts (email, name, password_hash, role, created_ms) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING {ACCOUNT_COLUMNS}"
                    ))
                    .await?,
                &[
                    &account.email,
                    &account.name,
                    &account.password_hash,
                    &role_text(account.role),
                    &millis(account.now),
                ],
            )
            .await
            .map_err(|error| {
                if is_unique_violation(&error) {
                    Error::EmailTaken(account.email.clone())
                } else {
                    error.into()
                }
            })?;
        Ok(account_from_row(&created))
    }

    async fn account_by_email(&self, email: &str) -> Result<Option<(Account, String)>, Error> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS}, password_hash FROM accounts WHERE lower(email) = lower($1)"
            ))
            .await?;
        Ok(client
            .query_opt(&statement, &[&email])
            .await?
            .map(|row| (account_from_row(&row), row.get(5))))
    }

    async fn account(&self, id: AccountId) -> Result<Option<Account>, Error> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"))
            .await?;
        Ok(client.query_opt(&statement, &[&id.get()]).await?.map(|row| account_from_row(&row)))
    }

    async fn promote_to_staff(&self, id: AccountId) -> Result<(), Error> {
        let client = self.connection().await?;
        client.execute("UPDATE accounts SET role = 'staff' WHERE id = $1", &[&id.get()]).await?;
        Ok(())
    }

    async fn changes(
        &self,
        movie_id: MovieId,
        after: i64,
        upto: Option<i64>,
    ) -> Result<Vec<Availability>, Error> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {INVENTORY_COLUMNS} FROM stock_events \
                 WHERE movie_id = $1 AND version > $2 AND version <= $3 ORDER BY version"
            ))
            .await?;
        let upto = upto.unwrap_or(i64::MAX);
        let rows = client.query(&statement, &[&movie_id.get(), &after, &upto]).await?;
        Ok(rows.iter().map(availability_from_row).collect())
    }

    async fn forget_changes(&self, before: SystemTime) -> Result<u64, Error> {
        let client = self.connection().await?;
        let before = before.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        Ok(client
            .execute(
                &client.prepare_cached("DELETE FROM stock_events e WHERE committed_at < to_timestamp($1) AND version < \
                 (SELECT version FROM inventory i WHERE i.movie_id = e.movie_id)").await?,
                &[&before],
            )
            .await?)
    }

    async fn versions(&self) -> Result<Vec<(MovieId, i64)>, Error> {
        let client = self.connection().await?;
        let rows = client.query("SELECT movie_id, version FROM inventory", &[]).await?;
        Ok(rows.iter().map(|row| (MovieId::new(row.get(0)), row.get(1))).collect())
    }

    async fn invariant_violations(&self) -> Result<Vec<MovieId>, Error> {
        let client = self.connection().await?;
        let rows = client
            .query(
                "SELECT i.movie_id FROM inventory i \
                 WHERE i.copies_available <> i.copies_owned - (SELECT COUNT(*) FROM rentals r \
                 WHERE r.movie_id = i.movie_id AND r.returned_ms IS NULL)",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|row| MovieId::new(row.get(0))).collect())
    }
}

/// `columns` (comma-separated), each prefixed with `table.`.
fn prefixed(table: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|column| format!("{table}.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}
