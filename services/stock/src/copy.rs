//! Moving a shop from the embedded database to PostgreSQL: the stock, accounts, rentals and
//! purchases of a SQLite store, with their ids, into an empty PostgreSQL one (see the
//! `copy-store` tool).

use videostore_kit::database::Backend;

pub use crate::store::Copied;
use crate::store::{PostgresStore, SqliteStore};

/// Copies the stock store at `from` (`sqlite://…`) into the empty one at `to` (`postgres://…`)
/// in one transaction, checking the counts and the invariant before it commits.
pub async fn sqlite_to_postgres(from: &str, to: &str) -> anyhow::Result<Copied> {
    anyhow::ensure!(
        Backend::of(from)? == Backend::Sqlite,
        "the stock store to copy must be sqlite://"
    );
    anyhow::ensure!(
        Backend::of(to)? == Backend::Postgres,
        "the target stock store must be postgres://"
    );
    let source = SqliteStore::open(from).await?;
    let target = PostgresStore::open(to, 2).await?;
    target.copy_from(&source).await
}
