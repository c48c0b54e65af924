//! The embedded SQLite backend.
//!
//! SQLite allows one writer at a time, so writes go through a one-connection pool: concurrent
//! renters queue there and each transaction sees the previous one's commit, which together with
//! the conditional decrement makes an oversell impossible. Reads use a pool of their own; WAL
//! mode lets them run while the writer commits.

use std::{
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use async_trait::async_trait;
use sqlx::{
    Row, SqliteConnection, SqlitePool,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
};

use super::{NewAccount, NewPurchase, NewRental, Outcome, StockStore, StoreError};
use crate::domain::{
    Account, AccountId, Availability, DAY, Inventory, MovieId, Purchase, Rental, RentalId, Role,
    late_fee,
};

const INVENTORY_COLUMNS: &str = "movie_id, copies_owned, copies_available, currency, \
                                 rental_price_minor, purchase_price_minor, version";
const RENTAL_COLUMNS: &str = "id, customer_id, movie_id, days, rented_ms, due_ms, returned_ms, \
                              currency, price_per_day_minor, price_minor, late_fee_minor, request_id";
const PURCHASE_COLUMNS: &str =
    "id, customer_id, movie_id, currency, price_minor, purchased_ms, request_id";
const ACCOUNT_COLUMNS: &str = "id, email, name, role, created_ms";

/// Stock, rentals and accounts in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid SQLite URL {url:?}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(parent) = options.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .with_context(|| format!("opening {url}"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .context("migrating the stock database")?;
        let readers = std::thread::available_parallelism().map_or(4, |n| n.get() * 2).max(4);
        let reader = SqlitePoolOptions::new()
            .max_connections(readers as u32)
            .connect_with(options.read_only(true))
            .await
            .with_context(|| format!("opening {url} for reading"))?;
        Ok(Self { reader, writer })
    }
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn availability_from_row(row: &SqliteRow) -> Result<Availability, sqlx::Error> {
    Ok(Availability {
        movie_id: row.try_get("movie_id")?,
        copies_owned: row.try_get("copies_owned")?,
        copies_available: row.try_get("copies_available")?,
        currency: row.try_get("currency")?,
        rental_price_minor: row.try_get("rental_price_minor")?,
        purchase_price_minor: row.try_get("purchase_price_minor")?,
        version: row.try_get("version")?,
    })
}

fn rental_from_row(row: &SqliteRow) -> Result<Rental, sqlx::Error> {
    Ok(Rental {
        id: row.try_get("id")?,
        customer_id: row.try_get("customer_id")?,
        movie_id: row.try_get("movie_id")?,
        days: row.try_get("days")?,
        rented_at: time(row.try_get("rented_ms")?),
        due_at: time(row.try_get("due_ms")?),
        returned_at: row.try_get::<Option<i64>, _>("returned_ms")?.map(time),
        currency: row.try_get("currency")?,
        price_per_day_minor: row.try_get("price_per_day_minor")?,
        price_minor: row.try_get("price_minor")?,
        late_fee_minor: row.try_get("late_fee_minor")?,
        request_id: row.try_get("request_id")?,
    })
}

fn purchase_from_row(row: &SqliteRow) -> Result<Purchase, sqlx::Error> {
    Ok(Purchase {
        id: row.try_get("id")?,
        customer_id: row.try_get("customer_id")?,
        movie_id: row.try_get("movie_id")?,
        currency: row.try_get("currency")?,
        price_minor: row.try_get("price_minor")?,
        purchased_at: time(row.try_get("purchased_ms")?),
        request_id: row.try_get("request_id")?,
    })
}

fn role_from_text(text: &str) -> Role {
    if text == "staff" { Role::Staff } else { Role::Customer }
}

fn role_text(role: Role) -> &'static str {
    match role {
        Role::Staff => "staff",
        Role::Customer => "customer",
    }
}

fn account_from_row(row: &SqliteRow) -> Result<Account, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(Account {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: role_from_text(&role),
        created_at: time(row.try_get("created_ms")?),
    })
}

/// Takes one copy off the shelf, or says why not.
async fn take_copy(
    connection: &mut SqliteConnection,
    movie_id: MovieId,
    leaves_stock: bool,
) -> Result<Availability, StoreError> {
    let owned_delta = i32::from(leaves_stock);
    let row = sqlx::query(&format!(
        "UPDATE inventory SET copies_available = copies_available - 1, \
         copies_owned = copies_owned - ?, version = version + 1 \
         WHERE movie_id = ? AND copies_available > 0 RETURNING {INVENTORY_COLUMNS}"
    ))
    .bind(owned_delta)
    .bind(movie_id)
    .fetch_optional(&mut *connection)
    .await?;
    match row {
        Some(row) => Ok(availability_from_row(&row)?),
        None => {
            let stocked: Option<i64> =
                sqlx::query_scalar("SELECT movie_id FROM inventory WHERE movie_id = ?")
                    .bind(movie_id)
                    .fetch_optional(&mut *connection)
                    .await?;
            Err(if stocked.is_some() {
                StoreError::SoldOut(movie_id)
            } else {
                StoreError::NotStocked(movie_id)
            })
        }
    }
}

#[async_trait]
impl StockStore for SqliteStore {
    async fn availability(&self, ids: &[MovieId]) -> Result<Vec<Availability>, StoreError> {
        let ids = format!("[{}]", ids.iter().map(i64::to_string).collect::<Vec<_>>().join(","));
        let rows = sqlx::query(&format!(
            "SELECT {INVENTORY_COLUMNS} FROM inventory \
             WHERE movie_id IN (SELECT value FROM json_each(?))"
        ))
        .bind(ids)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(availability_from_row).collect::<Result<_, _>>()?)
    }

    async fn all_availability(&self) -> Result<Vec<Availability>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {INVENTORY_COLUMNS} FROM inventory ORDER BY movie_id"))
                .fetch_all(&self.reader)
                .await?;
        Ok(rows.iter().map(availability_from_row).collect::<Result<_, _>>()?)
    }

    async fn set_inventory(&self, inventory: &Inventory) -> Result<Availability, StoreError> {
        let mut transaction = self.writer.begin().await?;
        let rented: i32 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM rentals WHERE movie_id = ? AND returned_ms IS NULL",
        )
        .bind(inventory.movie_id)
        .fetch_one(&mut *transaction)
        .await?;
        if inventory.copies_owned < rented {
            return Err(StoreError::BelowRented {
                movie_id: inventory.movie_id,
                rented,
                owned: inventory.copies_owned,
            });
        }
        let row = sqlx::query(&format!(
            "INSERT INTO inventory (movie_id, copies_owned, copies_available, currency, \
             rental_price_minor, purchase_price_minor, version) VALUES (?, ?, ?, ?, ?, ?, 1) \
             ON CONFLICT (movie_id) DO UPDATE SET copies_owned = excluded.copies_owned, \
             copies_available = excluded.copies_available, currency = excluded.currency, \
             rental_price_minor = excluded.rental_price_minor, \
             purchase_price_minor = excluded.purchase_price_minor, version = version + 1 \
             RETURNING {INVENTORY_COLUMNS}"
        ))
        .bind(inventory.movie_id)
        .bind(inventory.copies_owned)
        .bind(inventory.copies_owned - rented)
        .bind(&inventory.currency)
        .bind(inventory.rental_price_minor)
        .bind(inventory.purchase_price_minor)
        .fetch_one(&mut *transaction)
        .await?;
        let availability = availability_from_row(&row)?;
        transaction.commit().await?;
        Ok(availability)
    }

    async fn stock_missing(&self, rows: &[Inventory]) -> Result<u64, StoreError> {
        let mut transaction = self.writer.begin().await?;
        let mut added = 0;
        for inventory in rows {
            added += sqlx::query(
                "INSERT OR IGNORE INTO inventory (movie_id, copies_owned, copies_available, \
                 currency, rental_price_minor, purchase_price_minor, version) \
                 VALUES (?, ?, ?, ?, ?, ?, 1)",
            )
            .bind(inventory.movie_id)
            .bind(inventory.copies_owned)
            .bind(inventory.copies_owned)
            .bind(&inventory.currency)
            .bind(inventory.rental_price_minor)
            .bind(inventory.purchase_price_minor)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        }
        transaction.commit().await?;
        Ok(added)
    }

    async fn rent(&self, rental: &NewRental) -> Result<Outcome<Rental>, StoreError> {
        let mut transaction = self.writer.begin().await?;
        let earlier = sqlx::query(&format!(
            "SELECT {RENTAL_COLUMNS} FROM rentals WHERE customer_id = ? AND request_id = ?"
        ))
        .bind(rental.customer_id)
        .bind(&rental.request_id)
        .fetch_optional(&mut *transaction)
        .await?;
        if let Some(row) = earlier {
            let earlier = rental_from_row(&row)?;
            if earlier.movie_id != rental.movie_id || earlier.days != rental.days {
                return Err(StoreError::RequestIdReused(rental.request_id.clone()));
            }
            return Ok(Outcome { value: earlier, changed: None });
        }
        let availability = take_copy(&mut transaction, rental.movie_id, false).await?;
        let due_at = rental.now + DAY * rental.days as u32;
        let price = availability.rental_price_minor.saturating_mul(i64::from(rental.days));
        let row = sqlx::query(&format!(
            "INSERT INTO rentals (customer_id, movie_id, days, rented_ms, due_ms, currency, \
             price_per_day_minor, price_minor, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             RETURNING {RENTAL_COLUMNS}"
        ))
        .bind(rental.customer_id)
        .bind(rental.movie_id)
        .bind(rental.days)
        .bind(millis(rental.now))
        .bind(millis(due_at))
        .bind(&availability.currency)
        .bind(availability.rental_price_minor)
        .bind(price)
        .bind(&rental.request_id)
        .fetch_one(&mut *transaction)
        .await?;
        let made = rental_from_row(&row)?;
        transaction.commit().await?;
        Ok(Outcome { value: made, changed: Some(availability) })
    }

    async fn return_rental(
        &self,
        rental_id: RentalId,
        customer: Option<AccountId>,
        now: SystemTime,
    ) -> Result<Outcome<Rental>, StoreError> {
        let mut transaction = self.writer.begin().await?;
        let row = sqlx::query(&format!("SELECT {RENTAL_COLUMNS} FROM rentals WHERE id = ?"))
            .bind(rental_id)
            .fetch_optional(&mut *transaction)
            .await?;
        let rental = match row {
            Some(row) => rental_from_row(&row)?,
            None if customer.is_some() => return Err(StoreError::NotYourRental(rental_id)),
            None => return Err(StoreError::RentalNotFound(rental_id)),
        };
        if customer.is_some_and(|customer| customer != rental.customer_id) {
            return Err(StoreError::NotYourRental(rental_id));
        }
        if rental.returned_at.is_some() {
            return Err(StoreError::AlreadyReturned(rental_id));
        }
        let fee = late_fee(rental.due_at, now, rental.price_per_day_minor);
        let row = sqlx::query(&format!(
            "UPDATE rentals SET returned_ms = ?, late_fee_minor = ? \
             WHERE id = ? AND returned_ms IS NULL RETURNING {RENTAL_COLUMNS}"
        ))
        .bind(millis(now))
        .bind(fee)
        .bind(rental_id)
        .fetch_one(&mut *transaction)
        .await?;
        let returned = rental_from_row(&row)?;
        let row = sqlx::query(&format!(
            "UPDATE inventory SET copies_available = copies_available + 1, version = version + 1 \
             WHERE movie_id = ? RETURNING {INVENTORY_COLUMNS}"
        ))
        .bind(returned.movie_id)
        .fetch_one(&mut *transaction)
        .await?;
        let availability = availability_from_row(&row)?;
        transaction.commit().await?;
        Ok(Outcome { value: returned, changed: Some(availability) })
    }

    async fn purchase(&self, purchase: &NewPurchase) -> Result<Outcome<Purchase>, StoreError> {
        let mut transaction = self.writer.begin().await?;
        let earlier = sqlx::query(&format!(
            "SELECT {PURCHASE_COLUMNS} FROM purchases WHERE customer_id = ? AND request_id = ?"
        ))
        .bind(purchase.customer_id)
        .bind(&purchase.request_id)
        .fetch_optional(&mut *transaction)
        .await?;
        if let Some(row) = earlier {
            let earlier = purchase_from_row(&row)?;
            if earlier.movie_id != purchase.movie_id {
                return Err(StoreError::RequestIdReused(purchase.request_id.clone()));
            }
            return Ok(Outcome { value: earlier, changed: None });
        }
        let availability = take_copy(&mut transaction, purchase.movie_id, true).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO purchases (customer_id, movie_id, currency, price_minor, purchased_ms, \
             request_id) VALUES (?, ?, ?, ?, ?, ?) RETURNING {PURCHASE_COLUMNS}"
        ))
        .bind(purchase.customer_id)
        .bind(purchase.movie_id)
        .bind(&availability.currency)
        .bind(availability.purchase_price_minor)
        .bind(millis(purchase.now))
        .bind(&purchase.request_id)
        .fetch_one(&mut *transaction)
        .await?;
        let made = purchase_from_row(&row)?;
        transaction.commit().await?;
        Ok(Outcome { value: made, changed: Some(availability) })
    }

    async fn rentals_of(
        &self,
        customer_id: AccountId,
        include_returned: bool,
    ) -> Result<Vec<Rental>, StoreError> {
        let filter = if include_returned { "" } else { " AND returned_ms IS NULL" };
        let rows = sqlx::query(&format!(
            "SELECT {RENTAL_COLUMNS} FROM rentals WHERE customer_id = ?{filter} \
             ORDER BY returned_ms IS NOT NULL, \
             CASE WHEN returned_ms IS NULL THEN due_ms ELSE -returned_ms END, id"
        ))
        .bind(customer_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(rental_from_row).collect::<Result<_, _>>()?)
    }

    async fn create_account(&self, account: &NewAccount) -> Result<Account, StoreError> {
        let result = sqlx::query(&format!(
            "INSERT INTO accounts (email, name, password_hash, role, created_ms) \
             VALUES (?, ?, ?, ?, ?) RETURNING {ACCOUNT_COLUMNS}"
        ))
        .bind(&account.email)
        .bind(&account.name)
        .bind(&account.password_hash)
        .bind(role_text(account.role))
        .bind(millis(account.now))
        .fetch_one(&self.writer)
        .await;
        match result {
            Ok(row) => Ok(account_from_row(&row)?),
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                Err(StoreError::EmailTaken(account.email.clone()))
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn account_by_email(&self, email: &str) -> Result<Option<(Account, String)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS}, password_hash FROM accounts WHERE email = ?"
        ))
        .bind(email)
        .fetch_optional(&self.reader)
        .await?;
        Ok(match row {
            Some(row) => Some((account_from_row(&row)?, row.try_get("password_hash")?)),
            None => None,
        })
    }

    async fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(account_from_row).transpose()?)
    }

    async fn promote_to_staff(&self, id: AccountId) -> Result<(), StoreError> {
        sqlx::query("UPDATE accounts SET role = 'staff' WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn invariant_violations(&self) -> Result<Vec<MovieId>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT i.movie_id FROM inventory i \
             WHERE i.copies_available <> i.copies_owned - \
             (SELECT COUNT(*) FROM rentals r WHERE r.movie_id = i.movie_id AND r.returned_ms IS NULL)",
        )
        .fetch_all(&self.reader)
        .await?)
    }
}
