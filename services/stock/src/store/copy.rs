//! Moving a shop from the embedded database to PostgreSQL: the SQLite side reads its rows page
//! by page in id order; the PostgreSQL side writes them with their ids, in one transaction,
//! then checks the counts and the invariant before committing.

use std::time::{SystemTime, UNIX_EPOCH};

use videostore_kit::sqlite::rusqlite::{self, params};

use super::{
    PostgresStore, SqliteStore, StockStore,
    sqlite::{
        ACCOUNT_COLUMNS, PURCHASE_COLUMNS, RENTAL_COLUMNS, account_from_row, purchase_from_row,
        rental_from_row,
    },
};
use crate::{
    domain::{Account, Purchase, Rental, Role},
    error::Error,
};

/// Rows read from the source at a time.
const PAGE: usize = 5_000;

/// What a copy moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Stocked films (their copies, prices and version).
    pub stocked: u64,
    /// Accounts, with their password hashes.
    pub accounts: u64,
    /// Rentals, open and returned.
    pub rentals: u64,
    /// Purchases.
    pub purchases: u64,
}

impl SqliteStore {
    /// Up to `limit` accounts with ids after `after`, by id, each with its password hash (for
    /// copying the store elsewhere).
    pub(crate) async fn accounts_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(Account, String)>, Error> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS}, password_hash FROM accounts WHERE id > ? \
                 ORDER BY id LIMIT ?"
            ))?;
            let rows = statement
                .query_map(params![after, limit as i64], |row| {
                    Ok((account_from_row(row)?, row.get(6)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Up to `limit` rentals with ids after `after`, by id.
    pub(crate) async fn rentals_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Rental>, Error> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {RENTAL_COLUMNS} FROM rentals WHERE id > ? ORDER BY id LIMIT ?"
            ))?;
            let rows = statement
                .query_map(params![after, limit as i64], rental_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Up to `limit` purchases with ids after `after`, by id.
    pub(crate) async fn purchases_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Purchase>, Error> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {PURCHASE_COLUMNS} FROM purchases WHERE id > ? ORDER BY id LIMIT ?"
            ))?;
            let rows = statement
                .query_map(params![after, limit as i64], purchase_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// The highest id `table` ever gave (deleted rows' included), 0 for none.
    pub(crate) async fn highest_id(&self, table: &'static str) -> Result<i64, Error> {
        self.read(move |connection| {
            Ok(connection.query_row(
                &format!(
                    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?1), 0), \
                     coalesce((SELECT max(id) FROM {table}), 0))"
                ),
                [table],
                |row| row.get(0),
            )?)
        })
        .await
    }
}

impl PostgresStore {
    /// Copies everything `source` holds in, keeping every id, in one transaction. Refuses a
    /// store that holds anything; checks that the counts match and the invariant holds before
    /// committing.
    pub(crate) async fn copy_from(&self, source: &SqliteStore) -> anyhow::Result<Copied> {
        let mut client = self.connection().await?;
        let transaction = client.transaction().await?;
        let present: i64 = transaction
            .query_one(
                "SELECT (SELECT count(*) FROM inventory) + (SELECT count(*) FROM accounts) \
                 + (SELECT count(*) FROM rentals) + (SELECT count(*) FROM purchases)",
                &[],
            )
            .await?
            .get(0);
        anyhow::ensure!(
            present == 0,
            "the target stock database holds {present} rows already: copy only into an empty \
             store (start no stock service on it before copying)"
        );

        // Stock: the trigger starts each film's history at its current version.
        let stock = source.all_availability().await?;
        transaction
            .execute(
                "INSERT INTO inventory (movie_id, copies_owned, copies_available, currency, \
                 rental_price_minor, purchase_price_minor, version) \
                 SELECT * FROM unnest($1::bigint[], $2::integer[], $3::integer[], $4::text[], \
                 $5::bigint[], $6::bigint[], $7::bigint[])",
                &[
                    &stock.iter().map(|s| s.movie_id.get()).collect::<Vec<_>>(),
                    &stock.iter().map(|s| s.copies_owned).collect::<Vec<_>>(),
                    &stock.iter().map(|s| s.copies_available).collect::<Vec<_>>(),
                    &stock.iter().map(|s| s.currency.as_str()).collect::<Vec<_>>(),
                    &stock.iter().map(|s| s.rental_price_minor).collect::<Vec<_>>(),
                    &stock.iter().map(|s| s.purchase_price_minor).collect::<Vec<_>>(),
                    &stock.iter().map(|s| s.version).collect::<Vec<_>>(),
                ],
            )
            .await?;

        let mut copied =
            Copied { stocked: stock.len() as u64, accounts: 0, rentals: 0, purchases: 0 };
        let mut after = 0;
        loop {
            let page = source.accounts_after(after, PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.id.get();
            copied.accounts += page.len() as u64;
            let accounts: Vec<&Account> = page.iter().map(|(account, _)| account).collect();
            transaction
                .execute(
                    "INSERT INTO accounts \
                     (id, email, name, password_hash, role, created_ms, session_version) \
                     OVERRIDING SYSTEM VALUE SELECT * FROM unnest($1::bigint[], $2::text[], \
                     $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[])",
                    &[
                        &accounts.iter().map(|a| a.id.get()).collect::<Vec<_>>(),
                        &accounts.iter().map(|a| a.email.as_str()).collect::<Vec<_>>(),
                        &accounts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
                        &page.iter().map(|(_, hash)| hash.as_str()).collect::<Vec<_>>(),
                        &accounts.iter().map(|a| role_text(a.role)).collect::<Vec<_>>(),
                        &accounts.iter().map(|a| millis(a.created_at)).collect::<Vec<_>>(),
                        &accounts.iter().map(|a| a.session_version).collect::<Vec<_>>(),
                    ],
                )
                .await?;
        }
        // The shop's history is copied as it is, even where it is over today's customer caps;
        // stock sets them again from its configuration when it starts.
        transaction
            .execute(
                "UPDATE customer_caps SET max_open_rentals = 2147483647, \
                 max_purchases_per_day = 2147483647",
                &[],
            )
            .await?;
        let mut after = 0;
        loop {
            let page = source.rentals_after(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id.get();
            copied.rentals += page.len() as u64;
            let rentals: &[Rental] = &page;
            transaction
                .execute(
                    "INSERT INTO rentals (id, customer_id, movie_id, days, rented_ms, due_ms, \
                     returned_ms, currency, price_per_day_minor, price_minor, late_fee_minor, \
                     request_id) OVERRIDING SYSTEM VALUE SELECT * FROM unnest($1::bigint[], \
                     $2::bigint[], $3::bigint[], $4::integer[], $5::bigint[], $6::bigint[], \
                     $7::bigint[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], \
                     $12::text[])",
                    &[
                        &rentals.iter().map(|r| r.id.get()).collect::<Vec<_>>(),
                        &rentals.iter().map(|r| r.customer_id.get()).collect::<Vec<_>>(),
                        &rentals.iter().map(|r| r.movie_id.get()).collect::<Vec<_>>(),
                        &rentals.iter().map(|r| r.days).collect::<Vec<_>>(),
                        &rentals.iter().map(|r| millis(r.rented_at)).collect::<Vec<_>>(),
                        &rentals.iter().map(|r| millis(r.due_at)).collect::<Vec<_>>(),
                        &rentals.iter().map(|r| r.returned_at.map(millis)).collect::<Vec<_>>(),
                        &rentals.iter().map(|r| r.currency.as_str()).collect::<Vec<_>>(),
                        &rentals.iter().map(|r| r.price_per_day_minor).collect::<Vec<_>>(),
                        &rentals.iter().map(|r| r.price_minor).collect::<Vec<_>>(),
                        &rentals.iter().map(|r| r.late_fee_minor).collect::<Vec<_>>(),
                        &rentals.iter().map(|r| remembered(&r.request_id)).collect::<Vec<_>>(),
                    ],
                )
                .await?;
        }
        let mut after = 0;
        loop {
            let page = source.purchases_after(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id.get();
            copied.purchases += page.len() as u64;
            let purchases: &[Purchase] = &page;
            transaction
                .execute(
                    "INSERT INTO purchases (id, customer_id, movie_id, currency, price_minor, \
                     purchased_ms, request_id) OVERRIDING SYSTEM VALUE SELECT * FROM \
                     unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], \
                     $6::bigint[], $7::text[])",
                    &[
                        &purchases.iter().map(|p| p.id.get()).collect::<Vec<_>>(),
                        &purchases.iter().map(|p| p.customer_id.get()).collect::<Vec<_>>(),
                        &purchases.iter().map(|p| p.movie_id.get()).collect::<Vec<_>>(),
                        &purchases.iter().map(|p| p.currency.as_str()).collect::<Vec<_>>(),
                        &purchases.iter().map(|p| p.price_minor).collect::<Vec<_>>(),
                        &purchases.iter().map(|p| millis(p.purchased_at)).collect::<Vec<_>>(),
                        &purchases.iter().map(|p| remembered(&p.request_id)).collect::<Vec<_>>(),
                    ],
                )
                .await?;
        }

        // New ids continue after the highest the source ever gave.
        for table in ["accounts", "rentals", "purchases"] {
            let highest = source.highest_id(table).await?;
            transaction
                .execute(
                    "SELECT setval(pg_get_serial_sequence($1::text, 'id'), greatest($2::bigint, 1), $2::bigint > 0)",
                    &[&table, &highest],
                )
                .await?;
        }

        // The same counts on both sides, and the invariant.
        let counted = transaction
            .query_one(
                "SELECT (SELECT count(*) FROM inventory), (SELECT count(*) FROM accounts), \
                 (SELECT count(*) FROM rentals), (SELECT count(*) FROM purchases)",
                &[],
            )
            .await?;
        let target = Copied {
            stocked: counted.get::<_, i64>(0) as u64,
            accounts: counted.get::<_, i64>(1) as u64,
            rentals: counted.get::<_, i64>(2) as u64,
            purchases: counted.get::<_, i64>(3) as u64,
        };
        let source_counts = source.counts().await?;
        anyhow::ensure!(
            target == copied && copied == source_counts,
            "the source holds {source_counts:?}, {copied:?} were copied, the target holds {target:?}"
        );
        let broken: i64 = transaction
            .query_one(
                "SELECT count(*) FROM inventory i WHERE copies_available <> copies_owned - \
                 (SELECT count(*) FROM rentals r WHERE r.movie_id = i.movie_id \
                 AND r.returned_ms IS NULL)",
                &[],
            )
            .await?
            .get(0);
        anyhow::ensure!(
            broken == 0,
            "{broken} films' copies do not add up in the source (available ≠ owned − open \
             rentals); nothing was copied"
        );
        transaction.commit().await?;
        Ok(copied)
    }
}

impl SqliteStore {
    /// How many rows each table holds.
    async fn counts(&self) -> Result<Copied, Error> {
        self.read(|connection| {
            Ok(connection.query_row(
                "SELECT (SELECT count(*) FROM inventory), (SELECT count(*) FROM accounts), \
                 (SELECT count(*) FROM rentals), (SELECT count(*) FROM purchases)",
                [],
                |row| {
                    Ok(Copied {
                        stocked: row.get::<_, i64>(0)? as u64,
                        accounts: row.get::<_, i64>(1)? as u64,
                        rentals: row.get::<_, i64>(2)? as u64,
                        purchases: row.get::<_, i64>(3)? as u64,
                    })
                },
            )?)
        })
        .await
    }
}

/// A request id as stored: `None` once forgotten (read back as empty).
fn remembered(request_id: &str) -> Option<&str> {
    (!request_id.is_empty()).then_some(request_id)
}

fn role_text(role: Role) -> &'static str {
    match role {
        Role::Staff => "staff",
        Role::Customer => "customer",
    }
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
