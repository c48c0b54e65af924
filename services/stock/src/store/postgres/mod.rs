//! The PostgreSQL backend, for any number of stock replicas sharing one database.
//!
//! Nothing here relies on being the database's only writer. Every invariant is a conflict on
//! one row or one unique index, settled by PostgreSQL at READ COMMITTED:
//! - a copy is taken by one conditional `UPDATE … WHERE copies_available > 0`, and the CHECKs
//!   make a negative count impossible to commit;
//! - a rental or purchase is one statement, so one transaction: it takes a copy unless the
//!   request id made one already, and inserts the rental. `(customer_id, request_id)` is unique:
//!   a retry racing the first call on another replica waits for the first insert, fails on the
//!   index, is rolled back whole, and then reads the first call's result;
//! - a return is one conditional `UPDATE … WHERE returned_ms IS NULL`, with the copy put back
//!   in the same statement: of two racing returns, one finds the rental open.
//!
//! Each write is one statement because a round trip costs more than the SQL here: with a
//! transaction of four round trips per rent, 64 clients made 1,477 rent+return pairs a second on
//! this 2-core machine (pgbench), with one statement each 2,182. Rents and returns that queue
//! while the one before is in the database go together, several to a statement (`batch.rs`,
//! `rentals.rs`).

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use async_trait::async_trait;
use videostore_kit::postgres::{
    self, Connection, Listener, Migrations, Pool, is_unique_violation,
    tokio_postgres::{self, error::SqlState},
};

mod batch;
mod refused;
mod rentals;
mod rows;

use self::{
    batch::Batcher,
    refused::{Refused, purchase_refused},
    rentals::{Return, Sizes, batch},
    rows::{
        ACCOUNT_COLUMNS, INVENTORY_COLUMNS, PURCHASE_COLUMNS, RENTAL_COLUMNS, account_from_row,
        availability_at, availability_from_row, millis, prefixed, purchase_at, rental_from_row,
        role_text, time,
    },
};
use super::{
    CustomerCaps, Mail, NewAccount, NewPurchase, NewRegistration, NewRental, OutboxMail, Outcome,
    RentalsAfter, StockStore,
};
use crate::{
    domain::{Account, AccountId, Availability, Inventory, MovieId, Purchase, Rental, RentalId},
    error::Error,
};

/// The schema, one migration per file.
const MIGRATIONS: Migrations = &[
    include_str!("../../../migrations/postgres/0001_stock.sql"),
    include_str!("../../../migrations/postgres/0002_stock_events.sql"),
    include_str!("../../../migrations/postgres/0003_changes_in_notifications.sql"),
    include_str!("../../../migrations/postgres/0004_doorbell_after_commit.sql"),
    include_str!("../../../migrations/postgres/0005_request_ids_expire.sql"),
    include_str!("../../../migrations/postgres/0006_sessions.sql"),
    include_str!("../../../migrations/postgres/0007_customer_caps.sql"),
    include_str!("../../../migrations/postgres/0008_registrations.sql"),
];

/// Stock, rentals and accounts in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Where it is, for the listening connection of the feed.
    url: String,
    /// Rents, several to a statement.
    rents: Arc<Batcher<NewRental, Outcome<Rental>>>,
    /// Returns, several to a statement.
    returns: Arc<Batcher<Return, Outcome<Rental>>>,
    /// Calls per statement of both.
    sizes: Sizes,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` with at most `connections`, and brings its schema up
    /// to date.
    pub async fn open(url: &str, connections: usize) -> anyhow::Result<Self> {
        let pool = postgres::open(url, MIGRATIONS, connections)
            .await
            .context("opening the stock database")?;
        // The batching tasks hold the pool, not the store: they end when the store is dropped.
        let sizes = Sizes::default();
        let rents = Batcher::start({
            let (pool, sizes) = (pool.clone(), sizes.rents.clone());
            move |rentals| {
                let (pool, sizes) = (pool.clone(), sizes.clone());
                async move { batch(&pool, &sizes, rentals).await }
            }
        });
        let returns = Batcher::start({
            let (pool, sizes) = (pool.clone(), sizes.returns.clone());
            move |returns| {
                let (pool, sizes) = (pool.clone(), sizes.clone());
                async move { batch(&pool, &sizes, returns).await }
            }
        });
        Ok(Self { pool, url: url.to_owned(), rents, returns, sizes })
    }

    /// Shows the pool's connections and the batches' sizes on `/metrics`.
    pub fn register_metrics(&self, metrics: &videostore_kit::metrics::Metrics) {
        videostore_kit::db_metrics::register_pool(&self.pool, metrics);
        metrics.register(
            "videostore_stock_rent_batch_size",
            "Rents made by one statement (several when they queued together)",
            self.sizes.rents.clone(),
        );
        metrics.register(
            "videostore_stock_return_batch_size",
            "Returns made by one statement (several when they queued together)",
            self.sizes.returns.clone(),
        );
    }

    /// A connection of its own listening to the `stock_changes` notifications (see
    /// `crate::feed`), named `videostore-stock-feed` in `pg_stat_activity`.
    pub(crate) async fn listen(&self) -> anyhow::Result<Listener> {
        postgres::listen(&self.url, "stock_changes", "videostore-stock-feed").await
    }

    /// Notifies `stock_changes` with `payload`, after the changes it announces committed.
    pub(crate) async fn ring(&self, payload: &str) -> Result<(), Error> {
        let client = self.connection().await?;
        let statement = client.prepare_cached("SELECT pg_notify('stock_changes', $1)").await?;
        client.execute(&statement, &[&payload]).await?;
        Ok(())
    }

    /// The latest version of every film changed in the last `within` (by the database's clock,
    /// from the start of the change's transaction).
    pub(crate) async fn recent_versions(
        &self,
        within: Duration,
    ) -> Result<Vec<(MovieId, i64)>, Error> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(
                "SELECT movie_id, max(version) FROM stock_events \
                 WHERE committed_at > now() - make_interval(secs => $1) GROUP BY movie_id",
            )
            .await?;
        let rows = client.query(&statement, &[&within.as_secs_f64()]).await?;
        Ok(rows.iter().map(|row| (MovieId::new(row.get(0)), row.get(1))).collect())
    }

    pub(super) async fn connection(&self) -> Result<Connection, Error> {
        connection(&self.pool).await
    }
}

/// A connection from `pool`.
async fn connection(pool: &Pool) -> Result<Connection, Error> {
    pool.get().await.map_err(|error| {
        tracing::warn!(%error, "no connection to the stock database");
        Error::DatabaseUnavailable(anyhow::Error::new(error).context("taking a connection"))
    })
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        const DOWN: [SqlState; 3] =
            [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW];
        // A customer cap (migration 0007), its number in the detail.
        let cap =
            || error.as_db_error().and_then(|db| db.detail()).and_then(|cap| cap.parse().ok());
        match error.code().map(SqlState::code) {
            Some("VS001") => return Self::TooManyOpenRentals(cap().unwrap_or_default()),
            Some("VS002") => return Self::TooManyPurchases(cap().unwrap_or_default()),
            _ => {}
        }
        let lost = error.is_closed()
            || error.code().is_some_and(|code| DOWN.contains(code))
            || std::error::Error::source(&error)
                .is_some_and(|source| source.is::<std::io::Error>());
        if lost {
            // The outcome of a call cut off mid-commit is unknown: its retry (same request id)
            // finds it.
            tracing::warn!(%error, "lost the stock database");
            Self::DatabaseUnavailable(error.into())
        } else {
            Self::Internal(error.into())
        }
    }
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
        self.rents.call(rental.clone()).await
    }

    async fn return_rental(
        &self,
        rental_id: RentalId,
        customer: Option<AccountId>,
        now: SystemTime,
    ) -> Result<Outcome<Rental>, Error> {
        self.returns.call(Return { rental_id, customer, now }).await
    }

    async fn purchase(&self, purchase: &NewPurchase) -> Result<Outcome<Purchase>, Error> {
        let client = self.connection().await?;
        // As a rental: one statement takes a copy for good unless this request id bought one.
        let statement = client
            .prepare_cached(&format!(
                "WITH taken AS (UPDATE inventory SET copies_available = copies_available - 1, \
                 copies_owned = copies_owned - 1, version = version + 1 \
                 WHERE movie_id = $1 AND copies_available > 0 \
                 AND NOT EXISTS (SELECT 1 FROM purchases WHERE customer_id = $2 AND request_id = $4) \
                 RETURNING {INVENTORY_COLUMNS}), \
                 made AS (INSERT INTO purchases (customer_id, movie_id, currency, price_minor, \
                 purchased_ms, request_id) \
                 SELECT $2::bigint, movie_id, currency, purchase_price_minor, $3::bigint, $4::text \
                 FROM taken RETURNING {PURCHASE_COLUMNS}) \
                 SELECT {}, {} FROM taken, made",
                prefixed("taken", INVENTORY_COLUMNS),
                prefixed("made", PURCHASE_COLUMNS),
            ))
            .await?;
        let made = client
            .query_opt(
                &statement,
                &[
                    &purchase.movie_id.get(),
                    &purchase.customer_id.get(),
                    &millis(purchase.now),
                    &purchase.request_id,
                ],
            )
            .await;
        let refused = match made {
            Ok(Some(row)) => {
                return Ok(Outcome {
                    value: purchase_at(&row, 7),
                    changed: Some(availability_at(&row, 0)),
                });
            }
            Ok(None) => purchase_refused(&client, purchase).await?,
            Err(error) if is_unique_violation(&error) => {
                match purchase_refused(&client, purchase).await? {
                    found @ (Refused::Retry(_) | Refused::Error(Error::RequestIdReused(_))) => {
                        found
                    }
                    Refused::Error(_) => return Err(error.into()),
                }
            }
            Err(error) => return Err(error.into()),
        };
        match refused {
            Refused::Retry(earlier) => Ok(Outcome { value: earlier, changed: None }),
            Refused::Error(error) => Err(error),
        }
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
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {RENTAL_COLUMNS} FROM rentals WHERE customer_id = $1{filter} \
                 AND (returned_ms IS NOT NULL, \
                      CASE WHEN returned_ms IS NULL THEN due_ms ELSE -returned_ms END, id) \
                     > ($2, $3, $4) \
                 ORDER BY returned_ms IS NOT NULL, \
                 CASE WHEN returned_ms IS NULL THEN due_ms ELSE -returned_ms END, id \
                 LIMIT $5"
            ))
            .await?;
        Ok(client
            .query(
                &statement,
                &[&customer_id.get(), &after.returned, &after.key, &after.id.get(), &limit],
            )
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

    async fn register(
        &self,
        registration: &NewRegistration,
        confirm: &Mail,
        taken: &Mail,
        now: SystemTime,
    ) -> Result<bool, Error> {
        let client = self.connection().await?;
        let sweep =
            client.prepare_cached("DELETE FROM registrations WHERE expires_ms < $1").await?;
        client.execute(&sweep, &[&millis(now)]).await?;
        // One statement, so one transaction: keep the registration if the email is free, and
        // queue the mail that fits. Two registrations of a free email both wait; the first
        // confirmed makes the account.
        let statement = client
            .prepare_cached(
                "WITH known AS (SELECT EXISTS (SELECT 1 FROM accounts \
                 WHERE lower(email) = lower($1)) AS taken), \
                 kept AS (INSERT INTO registrations \
                 (token_hash, email, name, password_hash, expires_ms) \
                 SELECT $2, $1, $3, $4, $5 FROM known WHERE NOT known.taken), \
                 queued AS (INSERT INTO outbox (recipient, subject, body, created_ms) \
                 SELECT CASE WHEN known.taken THEN $11 ELSE $12 END, \
                 CASE WHEN known.taken THEN $6 ELSE $8 END, \
                 CASE WHEN known.taken THEN $7 ELSE $9 END, $10 FROM known) \
                 SELECT taken FROM known",
            )
            .await?;
        let row = client
            .query_one(
                &statement,
                &[
                    &registration.email,
                    &registration.token_hash.as_slice(),
                    &registration.name,
                    &registration.password_hash,
                    &millis(registration.expires_at),
                    &taken.subject,
                    &taken.body,
                    &confirm.subject,
                    &confirm.body,
                    &millis(now),
                    &taken.to,
                    &confirm.to,
                ],
            )
            .await?;
        Ok(!row.get::<_, bool>(0))
    }

    async fn registration(
        &self,
        token_hash: &[u8; 32],
        now: SystemTime,
    ) -> Result<Option<String>, Error> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(
                "SELECT password_hash FROM registrations WHERE token_hash = $1 AND expires_ms >= $2",
            )
            .await?;
        let row = client.query_opt(&statement, &[&token_hash.as_slice(), &millis(now)]).await?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn confirm_registration(
        &self,
        token_hash: &[u8; 32],
        now: SystemTime,
    ) -> Result<Option<Account>, Error> {
        let client = self.connection().await?;
        // One statement: take the registration and make its account. It touches no other
        // registration of the email, so two confirmations of one address never wait for each
        // other in turn: the second waits only for the first's account, and then breaks the
        // unique index, which undoes it all and leaves its registration to expire.
        let statement = client
            .prepare_cached(&format!(
                "WITH waiting AS (DELETE FROM registrations \
                 WHERE token_hash = $1 AND expires_ms >= $2 \
                 RETURNING email, name, password_hash) \
                 INSERT INTO accounts (email, name, password_hash, role, created_ms) \
                 SELECT email, name, password_hash, 'customer', $2 FROM waiting \
                 RETURNING {ACCOUNT_COLUMNS}"
            ))
            .await?;
        match client.query_opt(&statement, &[&token_hash.as_slice(), &millis(now)]).await {
            Ok(row) => Ok(row.map(|row| account_from_row(&row))),
            Err(error) if is_unique_violation(&error) => {
                let email = client
                    .query_opt(
                        "SELECT email FROM registrations WHERE token_hash = $1",
                        &[&token_hash.as_slice()],
                    )
                    .await?
                    .map(|row| row.get::<_, String>(0))
                    .unwrap_or_default();
                Err(Error::EmailTaken(email))
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn claim_mail(
        &self,
        now: SystemTime,
        until: SystemTime,
        limit: usize,
    ) -> Result<Vec<OutboxMail>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(
                "UPDATE outbox SET claimed_until_ms = $1 WHERE id IN \
                 (SELECT id FROM outbox WHERE claimed_until_ms < $2 ORDER BY id LIMIT $3 \
                 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, created_ms, recipient, subject, body",
            )
            .await?;
        let mut mails: Vec<OutboxMail> = client
            .query(&statement, &[&millis(until), &millis(now), &limit])
            .await?
            .iter()
            .map(|row| OutboxMail {
                id: row.get(0),
                queued_at: time(row.get(1)),
                mail: Mail { to: row.get(2), subject: row.get(3), body: row.get(4) },
            })
            .collect();
        mails.sort_by_key(|mail| mail.id);
        Ok(mails)
    }

    async fn forget_registrations(
        &self,
        now: SystemTime,
        mail_before: SystemTime,
    ) -> Result<(u64, u64), Error> {
        let client = self.connection().await?;
        let registrations = client
            .execute("DELETE FROM registrations WHERE expires_ms < $1", &[&millis(now)])
            .await?;
        let mails = client
            .execute("DELETE FROM outbox WHERE created_ms < $1", &[&millis(mail_before)])
            .await?;
        Ok((registrations, mails))
    }

    async fn mail_sent(&self, ids: &[i64]) -> Result<(), Error> {
        let client = self.connection().await?;
        let statement = client.prepare_cached("DELETE FROM outbox WHERE id = ANY($1)").await?;
        client.execute(&statement, &[&ids]).await?;
        Ok(())
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
            .map(|row| (account_from_row(&row), row.get(6))))
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
        client
            .execute(
                "UPDATE accounts SET role = 'staff', session_version = session_version + 1 \
                 WHERE id = $1",
                &[&id.get()],
            )
            .await?;
        Ok(())
    }

    async fn set_customer_caps(&self, caps: CustomerCaps) -> Result<(), Error> {
        let client = self.connection().await?;
        client
            .execute(
                "UPDATE customer_caps SET max_open_rentals = $1, max_purchases_per_day = $2",
                &[&(caps.max_open_rentals as i32), &(caps.max_purchases_per_day as i32)],
            )
            .await?;
        Ok(())
    }

    async fn end_sessions(&self, id: AccountId) -> Result<(), Error> {
        let client = self.connection().await?;
        client
            .execute(
                "UPDATE accounts SET session_version = session_version + 1 WHERE id = $1",
                &[&id.get()],
            )
            .await?;
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

    async fn expire_request_ids(&self, before: SystemTime) -> Result<u64, Error> {
        let client = self.connection().await?;
        let mut forgotten = 0;
        // A thousand rows a statement, so no sweep holds many rows' locks for long.
        for (table, made) in [("rentals", "rented_ms"), ("purchases", "purchased_ms")] {
            let statement = client
                .prepare_cached(&format!(
                    "UPDATE {table} SET request_id = NULL WHERE id IN (SELECT id FROM {table} \
                     WHERE request_id IS NOT NULL AND {made} < $1 LIMIT 1000)"
                ))
                .await?;
            loop {
                let done = client.execute(&statement, &[&millis(before)]).await?;
                forgotten += done;
                if done < 1000 {
                    break;
                }
            }
        }
        Ok(forgotten)
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
