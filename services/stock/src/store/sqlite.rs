//! The embedded SQLite backend.
//!
//! Every write goes through the single writer thread: concurrent renters queue there, and each
//! runs after the previous one (in the same group commit or an earlier one), which together with
//! the conditional decrement makes an oversell impossible. Reads use a pool of read-only connections; WAL mode lets them
//! run while the writer commits. Each method is one job on one connection.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use videostore_kit::sqlite::{
    Database, Migrations, is_unique_violation,
    rusqlite::{self, Connection, OptionalExtension, Row, params},
};

use super::{
    CustomerCaps, Mail, NewAccount, NewPurchase, NewRegistration, NewRental, OutboxMail, Outcome,
    RentalsAfter, StockStore,
};
use crate::{
    domain::{
        Account, AccountId, Availability, DAY, Inventory, MovieId, Purchase, Rental, RentalId,
        Role, late_fee,
    },
    error::Error,
};

/// The schema, one migration per file.
const MIGRATIONS: Migrations = &[
    include_str!("../../migrations/sqlite/0001_stock.sql"),
    include_str!("../../migrations/sqlite/0002_stock_events.sql"),
    include_str!("../../migrations/sqlite/0003_request_ids_expire.sql"),
    include_str!("../../migrations/sqlite/0004_sessions.sql"),
    include_str!("../../migrations/sqlite/0005_customer_caps.sql"),
    include_str!("../../migrations/sqlite/0006_registrations.sql"),
];

const INVENTORY_COLUMNS: &str = "movie_id, copies_owned, copies_available, currency, \
                                 rental_price_minor, purchase_price_minor, version";
pub(super) const RENTAL_COLUMNS: &str = "id, customer_id, movie_id, days, rented_ms, due_ms, returned_ms, \
                              currency, price_per_day_minor, price_minor, late_fee_minor, request_id";
pub(super) const PURCHASE_COLUMNS: &str =
    "id, customer_id, movie_id, currency, price_minor, purchased_ms, request_id";
pub(super) const ACCOUNT_COLUMNS: &str = "id, email, name, role, created_ms, session_version";

/// Stock, rentals and accounts in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    database: Database,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let database = Database::open_blocking_off(url, MIGRATIONS)
            .await
            .map_err(|e| e.context("opening the stock database"))?;
        Ok(Self { database })
    }

    /// Shows the database's connections and commits on `/metrics`.
    pub fn register_metrics(&self, metrics: &videostore_kit::metrics::Metrics) {
        self.database.metrics.register(metrics);
    }

    pub(super) async fn read<T, F>(&self, job: F) -> Result<T, Error>
    where
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        self.database.reader.run(move |connection| job(connection)).await?
    }

    /// Runs `job` in a transaction on the writer, committed (with whatever other writes are
    /// queued: group commit) when it returns `Ok`; an `Err` undoes just its own changes.
    async fn transact<T, F>(&self, job: F) -> Result<T, Error>
    where
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        self.database.writer.transact(job).await?
    }
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Self {
        Self::Internal(error.into())
    }
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn availability_from_row(row: &Row<'_>) -> rusqlite::Result<Availability> {
    Ok(Availability {
        movie_id: row.get(0)?,
        copies_owned: row.get(1)?,
        copies_available: row.get(2)?,
        currency: row.get(3)?,
        rental_price_minor: row.get(4)?,
        purchase_price_minor: row.get(5)?,
        version: row.get(6)?,
    })
}

pub(super) fn rental_from_row(row: &Row<'_>) -> rusqlite::Result<Rental> {
    Ok(Rental {
        id: row.get(0)?,
        customer_id: row.get(1)?,
        movie_id: row.get(2)?,
        days: row.get(3)?,
        rented_at: time(row.get(4)?),
        due_at: time(row.get(5)?),
        returned_at: row.get::<_, Option<i64>>(6)?.map(time),
        currency: row.get(7)?,
        price_per_day_minor: row.get(8)?,
        price_minor: row.get(9)?,
        late_fee_minor: row.get(10)?,
        // Empty once forgotten (see `expire_request_ids`).
        request_id: row.get::<_, Option<String>>(11)?.unwrap_or_default(),
    })
}

pub(super) fn purchase_from_row(row: &Row<'_>) -> rusqlite::Result<Purchase> {
    Ok(Purchase {
        id: row.get(0)?,
        customer_id: row.get(1)?,
        movie_id: row.get(2)?,
        currency: row.get(3)?,
        price_minor: row.get(4)?,
        purchased_at: time(row.get(5)?),
        request_id: row.get::<_, Option<String>>(6)?.unwrap_or_default(),
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

pub(super) fn account_from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    let role: String = row.get(3)?;
    Ok(Account {
        id: row.get(0)?,
        email: row.get(1)?,
        name: row.get(2)?,
        role: role_from_text(&role),
        created_at: time(row.get(4)?),
        session_version: row.get(5)?,
    })
}

/// Takes one copy off the shelf, or says why not.
fn take_copy(
    connection: &Connection,
    movie_id: MovieId,
    leaves_stock: bool,
) -> Result<Availability, Error> {
    let owned_delta = i32::from(leaves_stock);
    let taken = connection
        .prepare_cached(&format!(
            "UPDATE inventory SET copies_available = copies_available - 1, \
             copies_owned = copies_owned - ?, version = version + 1 \
             WHERE movie_id = ? AND copies_available > 0 RETURNING {INVENTORY_COLUMNS}"
        ))?
        .query_row(params![owned_delta, movie_id], availability_from_row)
        .optional()?;
    match taken {
        Some(availability) => Ok(availability),
        None => {
            let stocked = connection
                .prepare_cached("SELECT 1 FROM inventory WHERE movie_id = ?")?
                .exists([movie_id])?;
            Err(if stocked { Error::SoldOut(movie_id) } else { Error::NotStocked(movie_id) })
        }
    }
}

#[async_trait]
impl StockStore for SqliteStore {
    async fn availability(&self, ids: &[MovieId]) -> Result<Vec<Availability>, Error> {
        let ids = format!("[{}]", ids.iter().map(MovieId::to_string).collect::<Vec<_>>().join(","));
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {INVENTORY_COLUMNS} FROM inventory \
                 WHERE movie_id IN (SELECT value FROM json_each(?))"
            ))?;
            let found =
                statement.query_map([ids], availability_from_row)?.collect::<Result<_, _>>()?;
            Ok(found)
        })
        .await
    }

    async fn all_availability(&self) -> Result<Vec<Availability>, Error> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {INVENTORY_COLUMNS} FROM inventory ORDER BY movie_id"
            ))?;
            let all = statement.query_map([], availability_from_row)?.collect::<Result<_, _>>()?;
            Ok(all)
        })
        .await
    }

    async fn set_inventory(&self, inventory: &Inventory) -> Result<Availability, Error> {
        let inventory = inventory.clone();
        self.transact(move |connection| {
            let rented: i32 = connection
                .prepare_cached(
                    "SELECT COUNT(*) FROM rentals WHERE movie_id = ? AND returned_ms IS NULL",
                )?
                .query_row([inventory.movie_id], |row| row.get(0))?;
            if inventory.copies_owned < rented {
                return Err(Error::BelowRented {
                    movie_id: inventory.movie_id,
                    rented,
                    owned: inventory.copies_owned,
                });
            }
            Ok(connection
                .prepare_cached(&format!(
                    "INSERT INTO inventory (movie_id, copies_owned, copies_available, currency, \
                     rental_price_minor, purchase_price_minor, version) \
                     VALUES (?, ?, ?, ?, ?, ?, 1) \
                     ON CONFLICT (movie_id) DO UPDATE SET copies_owned = excluded.copies_owned, \
                     copies_available = excluded.copies_available, currency = excluded.currency, \
                     rental_price_minor = excluded.rental_price_minor, \
                     purchase_price_minor = excluded.purchase_price_minor, \
                     version = version + 1 RETURNING {INVENTORY_COLUMNS}"
                ))?
                .query_row(
                    params![
                        inventory.movie_id,
                        inventory.copies_owned,
                        inventory.copies_owned - rented,
                        inventory.currency,
                        inventory.rental_price_minor,
                        inventory.purchase_price_minor,
                    ],
                    availability_from_row,
                )?)
        })
        .await
    }

    async fn stock_missing(&self, rows: &[Inventory]) -> Result<u64, Error> {
        let rows = rows.to_vec();
        self.transact(move |connection| {
            let mut insert = connection.prepare_cached(
                "INSERT OR IGNORE INTO inventory (movie_id, copies_owned, copies_available, \
                 currency, rental_price_minor, purchase_price_minor, version) \
                 VALUES (?, ?, ?, ?, ?, ?, 1)",
            )?;
            let mut added = 0;
            for inventory in &rows {
                added += insert.execute(params![
                    inventory.movie_id,
                    inventory.copies_owned,
                    inventory.copies_owned,
                    inventory.currency,
                    inventory.rental_price_minor,
                    inventory.purchase_price_minor,
                ])? as u64;
            }
            Ok(added)
        })
        .await
    }

    async fn rent(&self, rental: &NewRental) -> Result<Outcome<Rental>, Error> {
        let rental = rental.clone();
        self.transact(move |connection| {
            let earlier = connection
                .prepare_cached(&format!(
                    "SELECT {RENTAL_COLUMNS} FROM rentals WHERE customer_id = ? AND request_id = ?"
                ))?
                .query_row(params![rental.customer_id, rental.request_id], rental_from_row)
                .optional()?;
            if let Some(earlier) = earlier {
                if earlier.movie_id != rental.movie_id || earlier.days != rental.days {
                    return Err(Error::RequestIdReused(rental.request_id.clone()));
                }
                return Ok(Outcome { value: earlier, changed: None });
            }
            // One writer: what this reads stays true until the rental is written.
            let (cap, held): (u32, u32) = connection
                .prepare_cached(
                    "SELECT max_open_rentals, (SELECT count(*) FROM rentals WHERE customer_id = ? \
                     AND returned_ms IS NULL) FROM customer_caps",
                )?
                .query_row([rental.customer_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
            if held >= cap {
                return Err(Error::TooManyOpenRentals(cap));
            }
            let availability = take_copy(connection, rental.movie_id, false)?;
            let due_at = rental.now + DAY * rental.days as u32;
            let price = availability.rental_price_minor.saturating_mul(i64::from(rental.days));
            let made = connection
                .prepare_cached(&format!(
                    "INSERT INTO rentals (customer_id, movie_id, days, rented_ms, due_ms, \
                     currency, price_per_day_minor, price_minor, request_id) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {RENTAL_COLUMNS}"
                ))?
                .query_row(
                    params![
                        rental.customer_id,
                        rental.movie_id,
                        rental.days,
                        millis(rental.now),
                        millis(due_at),
                        availability.currency,
                        availability.rental_price_minor,
                        price,
                        rental.request_id,
                    ],
                    rental_from_row,
                )?;
            Ok(Outcome { value: made, changed: Some(availability) })
        })
        .await
    }

    async fn return_rental(
        &self,
        rental_id: RentalId,
        customer: Option<AccountId>,
        now: SystemTime,
    ) -> Result<Outcome<Rental>, Error> {
        self.transact(move |connection| {
            let rental = connection
                .prepare_cached(&format!("SELECT {RENTAL_COLUMNS} FROM rentals WHERE id = ?"))?
                .query_row([rental_id], rental_from_row)
                .optional()?;
            let rental = match rental {
                Some(rental) => rental,
                None if customer.is_some() => return Err(Error::NotYourRental(rental_id)),
                None => return Err(Error::RentalNotFound(rental_id)),
            };
            if customer.is_some_and(|customer| customer != rental.customer_id) {
                return Err(Error::NotYourRental(rental_id));
            }
            if rental.returned_at.is_some() {
                return Err(Error::AlreadyReturned(rental_id));
            }
            // Charged on the return time as stored (milliseconds), as PostgreSQL does.
            let fee = late_fee(rental.due_at, time(millis(now)), rental.price_per_day_minor);
            let returned = connection
                .prepare_cached(&format!(
                    "UPDATE rentals SET returned_ms = ?, late_fee_minor = ? \
                     WHERE id = ? AND returned_ms IS NULL RETURNING {RENTAL_COLUMNS}"
                ))?
                .query_row(params![millis(now), fee, rental_id], rental_from_row)?;
            let availability = connection
                .prepare_cached(&format!(
                    "UPDATE inventory SET copies_available = copies_available + 1, \
                     version = version + 1 WHERE movie_id = ? RETURNING {INVENTORY_COLUMNS}"
                ))?
                .query_row([returned.movie_id], availability_from_row)?;
            Ok(Outcome { value: returned, changed: Some(availability) })
        })
        .await
    }

    async fn purchase(&self, purchase: &NewPurchase) -> Result<Outcome<Purchase>, Error> {
        let purchase = purchase.clone();
        self.transact(move |connection| {
            let earlier = connection
                .prepare_cached(&format!(
                    "SELECT {PURCHASE_COLUMNS} FROM purchases \
                     WHERE customer_id = ? AND request_id = ?"
                ))?
                .query_row(params![purchase.customer_id, purchase.request_id], purchase_from_row)
                .optional()?;
            if let Some(earlier) = earlier {
                if earlier.movie_id != purchase.movie_id {
                    return Err(Error::RequestIdReused(purchase.request_id.clone()));
                }
                return Ok(Outcome { value: earlier, changed: None });
            }
            let day_ago = millis(purchase.now) - 86_400_000;
            let (cap, held): (u32, u32) = connection
                .prepare_cached(
                    "SELECT max_purchases_per_day, (SELECT count(*) FROM purchases \
                     WHERE customer_id = ? AND purchased_ms > ?) FROM customer_caps",
                )?
                .query_row(params![purchase.customer_id, day_ago], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            if held >= cap {
                return Err(Error::TooManyPurchases(cap));
            }
            let availability = take_copy(connection, purchase.movie_id, true)?;
            let made = connection
                .prepare_cached(&format!(
                    "INSERT INTO purchases (customer_id, movie_id, currency, price_minor, \
                     purchased_ms, request_id) VALUES (?, ?, ?, ?, ?, ?) \
                     RETURNING {PURCHASE_COLUMNS}"
                ))?
                .query_row(
                    params![
                        purchase.customer_id,
                        purchase.movie_id,
                        availability.currency,
                        availability.purchase_price_minor,
                        millis(purchase.now),
                        purchase.request_id,
                    ],
                    purchase_from_row,
                )?;
            Ok(Outcome { value: made, changed: Some(availability) })
        })
        .await
    }

    async fn rentals_of(
        &self,
        customer_id: AccountId,
        include_returned: bool,
        after: Option<RentalsAfter>,
        limit: usize,
    ) -> Result<Vec<Rental>, Error> {
        let filter = if include_returned { "" } else { " AND returned_ms IS NULL" };
        // Before the first rental of all: not returned, the smallest key, id 0.
        let after =
            after.unwrap_or(RentalsAfter { returned: false, key: i64::MIN, id: RentalId::new(0) });
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {RENTAL_COLUMNS} FROM rentals WHERE customer_id = ?1{filter} \
                 AND (returned_ms IS NOT NULL, \
                      CASE WHEN returned_ms IS NULL THEN due_ms ELSE -returned_ms END, id) \
                     > (?2, ?3, ?4) \
                 ORDER BY returned_ms IS NOT NULL, \
                 CASE WHEN returned_ms IS NULL THEN due_ms ELSE -returned_ms END, id \
                 LIMIT ?5"
            ))?;
            let rentals = statement
                .query_map(
                    params![customer_id, after.returned, after.key, after.id, limit],
                    rental_from_row,
                )?
                .collect::<Result<_, _>>()?;
            Ok(rentals)
        })
        .await
    }

    async fn create_account(&self, account: &NewAccount) -> Result<Account, Error> {
        let account = account.clone();
        self.transact(move |connection| {
            connection
                .prepare_cached(&format!(
                    "INSERT INTO accounts (email, name, password_hash, role, created_ms) \
                     VALUES (?, ?, ?, ?, ?) RETURNING {ACCOUNT_COLUMNS}"
                ))?
                .query_row(
                    params![
                        account.email,
                        account.name,
                        account.password_hash,
                        role_text(account.role),
                        millis(account.now),
                    ],
                    account_from_row,
                )
                .map_err(|error| {
                    if is_unique_violation(&error) {
                        Error::EmailTaken(account.email.clone())
                    } else {
                        error.into()
                    }
                })
        })
        .await
    }

    async fn register(
        &self,
        registration: &NewRegistration,
        confirm: &Mail,
        taken: &Mail,
        now: SystemTime,
    ) -> Result<bool, Error> {
        let (registration, confirm, taken) = (registration.clone(), confirm.clone(), taken.clone());
        self.transact(move |connection| {
            let exists = connection
                .prepare_cached("SELECT 1 FROM accounts WHERE email = ?")?
                .exists([&registration.email])?;
            if !exists {
                connection
                    .prepare_cached(
                        "INSERT INTO registrations \
                         (token_hash, email, name, password_hash, expires_ms) \
                         VALUES (?, ?, ?, ?, ?)",
                    )?
                    .execute(params![
                        registration.token_hash,
                        registration.email,
                        registration.name,
                        registration.password_hash,
                        millis(registration.expires_at),
                    ])?;
            }
            let mail = if exists { taken } else { confirm };
            connection
                .prepare_cached(
                    "INSERT INTO outbox (recipient, subject, body, created_ms) VALUES (?, ?, ?, ?)",
                )?
                .execute(params![mail.to, mail.subject, mail.body, millis(now)])?;
            Ok(!exists)
        })
        .await
    }

    async fn registration(
        &self,
        token_hash: &[u8; 32],
        now: SystemTime,
    ) -> Result<Option<String>, Error> {
        let token_hash = *token_hash;
        self.read(move |connection| {
            Ok(connection
                .prepare_cached(
                    "SELECT password_hash FROM registrations \
                     WHERE token_hash = ? AND expires_ms >= ?",
                )?
                .query_row(params![token_hash, millis(now)], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    async fn confirm_registration(
        &self,
        token_hash: &[u8; 32],
        now: SystemTime,
    ) -> Result<Option<Account>, Error> {
        let token_hash = *token_hash;
        self.transact(move |connection| {
            let waiting = connection
                .prepare_cached(
                    "DELETE FROM registrations WHERE token_hash = ? AND expires_ms >= ? \
                     RETURNING email, name, password_hash",
                )?
                .query_row(params![token_hash, millis(now)], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                })
                .optional()?;
            let Some((email, name, password_hash)) = waiting else { return Ok(None) };
            let account = connection
                .prepare_cached(&format!(
                    "INSERT INTO accounts (email, name, password_hash, role, created_ms) \
                     VALUES (?, ?, ?, 'customer', ?) RETURNING {ACCOUNT_COLUMNS}"
                ))?
                .query_row(params![email, name, password_hash, millis(now)], account_from_row)
                .map_err(|error| {
                    if is_unique_violation(&error) {
                        Error::EmailTaken(email.clone())
                    } else {
                        error.into()
                    }
                })?;
            Ok(Some(account))
        })
        .await
    }

    async fn claim_mail(
        &self,
        now: SystemTime,
        until: SystemTime,
        limit: usize,
    ) -> Result<Vec<OutboxMail>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Asked every few seconds: a look through a reader first, so that an empty outbox costs
        // the single writer (and its commit) nothing.
        let waiting = self
            .read(move |connection| {
                Ok(connection
                    .prepare_cached("SELECT 1 FROM outbox WHERE claimed_until_ms < ? LIMIT 1")?
                    .exists([millis(now)])?)
            })
            .await?;
        if !waiting {
            return Ok(Vec::new());
        }
        self.transact(move |connection| {
            let mut mails = connection
                .prepare_cached(
                    "UPDATE outbox SET claimed_until_ms = ? WHERE id IN \
                     (SELECT id FROM outbox WHERE claimed_until_ms < ? ORDER BY id LIMIT ?) \
                     RETURNING id, created_ms, recipient, subject, body",
                )?
                .query_map(params![millis(until), millis(now), limit], |row| {
                    Ok(OutboxMail {
                        id: row.get(0)?,
                        queued_at: time(row.get(1)?),
                        mail: Mail { to: row.get(2)?, subject: row.get(3)?, body: row.get(4)? },
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            mails.sort_by_key(|mail| mail.id);
            Ok(mails)
        })
        .await
    }

    async fn forget_registrations(
        &self,
        now: SystemTime,
        mail_before: SystemTime,
    ) -> Result<(u64, u64), Error> {
        self.transact(move |connection| {
            let registrations = connection
                .prepare_cached("DELETE FROM registrations WHERE expires_ms < ?")?
                .execute([millis(now)])?;
            let mails = connection
                .prepare_cached("DELETE FROM outbox WHERE created_ms < ?")?
                .execute([millis(mail_before)])?;
            Ok((registrations as u64, mails as u64))
        })
        .await
    }

    async fn mail_sent(&self, ids: &[i64]) -> Result<(), Error> {
        let ids = ids.to_vec();
        self.transact(move |connection| {
            let mut delete = connection.prepare_cached("DELETE FROM outbox WHERE id = ?")?;
            for id in ids {
                delete.execute([id])?;
            }
            Ok(())
        })
        .await
    }

    async fn account_by_email(&self, email: &str) -> Result<Option<(Account, String)>, Error> {
        let email = email.to_owned();
        self.read(move |connection| {
            Ok(connection
                .prepare_cached(&format!(
                    "SELECT {ACCOUNT_COLUMNS}, password_hash FROM accounts WHERE email = ?"
                ))?
                .query_row([email], |row| Ok((account_from_row(row)?, row.get(6)?)))
                .optional()?)
        })
        .await
    }

    async fn account(&self, id: AccountId) -> Result<Option<Account>, Error> {
        self.read(move |connection| {
            Ok(connection
                .prepare_cached(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?"))?
                .query_row([id], account_from_row)
                .optional()?)
        })
        .await
    }

    async fn promote_to_staff(&self, id: AccountId) -> Result<(), Error> {
        self.transact(move |connection| {
            connection
                .prepare_cached(
                    "UPDATE accounts SET role = 'staff', session_version = session_version + 1 \
                     WHERE id = ?",
                )?
                .execute([id])?;
            Ok(())
        })
        .await
    }

    async fn set_customer_caps(&self, caps: CustomerCaps) -> Result<(), Error> {
        self.transact(move |connection| {
            connection.execute(
                "UPDATE customer_caps SET max_open_rentals = ?, max_purchases_per_day = ?",
                params![caps.max_open_rentals, caps.max_purchases_per_day],
            )?;
            Ok(())
        })
        .await
    }

    async fn end_sessions(&self, id: AccountId) -> Result<(), Error> {
        self.transact(move |connection| {
            connection
                .prepare_cached(
                    "UPDATE accounts SET session_version = session_version + 1 WHERE id = ?",
                )?
                .execute([id])?;
            Ok(())
        })
        .await
    }

    async fn changes(
        &self,
        movie_id: MovieId,
        after: i64,
        upto: Option<i64>,
    ) -> Result<Vec<Availability>, Error> {
        let upto = upto.unwrap_or(i64::MAX);
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {INVENTORY_COLUMNS} FROM stock_events \
                 WHERE movie_id = ? AND version > ? AND version <= ? ORDER BY version"
            ))?;
            let changes = statement
                .query_map(params![movie_id, after, upto], availability_from_row)?
                .collect::<Result<_, _>>()?;
            Ok(changes)
        })
        .await
    }

    async fn expire_request_ids(&self, before: SystemTime) -> Result<u64, Error> {
        let mut forgotten = 0;
        // A thousand rows a transaction, so the sweep never holds the writer for long.
        for (table, made) in [("rentals", "rented_ms"), ("purchases", "purchased_ms")] {
            let sql = format!(
                "UPDATE {table} SET request_id = NULL WHERE id IN (SELECT id FROM {table} \
                 WHERE request_id IS NOT NULL AND {made} < ? LIMIT 1000)"
            );
            loop {
                let sql = sql.clone();
                let done = self
                    .transact(move |connection| {
                        Ok(connection.prepare_cached(&sql)?.execute([millis(before)])? as u64)
                    })
                    .await?;
                forgotten += done;
                if done < 1000 {
                    break;
                }
            }
        }
        Ok(forgotten)
    }

    async fn forget_changes(&self, before: SystemTime) -> Result<u64, Error> {
        self.transact(move |connection| {
            Ok(connection
                .prepare_cached(
                    "DELETE FROM stock_events WHERE committed_ms < ? AND version < \
                     (SELECT version FROM inventory i WHERE i.movie_id = stock_events.movie_id)",
                )?
                .execute([millis(before)])? as u64)
        })
        .await
    }

    async fn versions(&self) -> Result<Vec<(MovieId, i64)>, Error> {
        self.read(|connection| {
            let mut statement =
                connection.prepare_cached("SELECT movie_id, version FROM inventory")?;
            let versions = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(versions)
        })
        .await
    }

    async fn invariant_violations(&self) -> Result<Vec<MovieId>, Error> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT i.movie_id FROM inventory i \
                 WHERE i.copies_available <> i.copies_owned - (SELECT COUNT(*) FROM rentals r \
                 WHERE r.movie_id = i.movie_id AND r.returned_ms IS NULL)",
            )?;
            let ids = statement.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?;
            Ok(ids)
        })
        .await
    }
}
