//! Moving a shop from the embedded database to PostgreSQL: every film of a SQLite catalogue,
//! with its id, into an empty PostgreSQL one (see the `copy-store` tool).

use videostore_kit::database::Backend;

use crate::{
    store::{PostgresStore, SqliteStore},
    wire::wire_form,
};

/// Copies the catalogue at `from` (`sqlite://…`) into the empty one at `to` (`postgres://…`),
/// in one transaction, after which the two hold the same films. How many films.
pub async fn sqlite_to_postgres(from: &str, to: &str) -> anyhow::Result<u64> {
    anyhow::ensure!(
        Backend::of(from)? == Backend::Sqlite,
        "the catalogue to copy must be sqlite://"
    );
    anyhow::ensure!(
        Backend::of(to)? == Backend::Postgres,
        "the target catalogue must be postgres://"
    );
    let source = SqliteStore::open(from, wire_form()).await?;
    let target = PostgresStore::open(to, wire_form(), 2).await?;
    target.copy_from(&source).await
}
