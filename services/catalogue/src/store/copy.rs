//! Moving a shop from the embedded database to PostgreSQL: every film of a SQLite catalogue,
//! with its id, written into an empty PostgreSQL one in one transaction.

use super::{CatalogueStore, PostgresStore, SqliteStore, postgres::insert};

impl PostgresStore {
    /// Copies every film of `source` in, with its id, times and creating request id, in one
    /// transaction, and sets the id sequence past the highest id `source` ever gave. Refuses a
    /// store that has films. How many films it copied.
    pub(crate) async fn copy_from(&self, source: &SqliteStore) -> anyhow::Result<u64> {
        const PAGE: usize = 1_000;
        let mut client = self.connection().await?;
        let transaction = client.transaction().await?;
        let present: i64 = transaction.query_one("SELECT count(*) FROM movies", &[]).await?.get(0);
        anyhow::ensure!(
            present == 0,
            "the target catalogue has {present} films already: copy only into an empty store"
        );
        let mut copied = 0_u64;
        let mut after = 0;
        loop {
            let page = source.films_after(after, PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.id.get();
            for (movie, request_id) in &page {
                let inserted =
                    insert(&transaction, &self.wire, movie, request_id.as_deref()).await?;
                anyhow::ensure!(inserted, "film {} clashes with another's external key", movie.id);
            }
            copied += page.len() as u64;
        }
        let highest = source.highest_id().await?;
        transaction
            .execute(
                "SELECT setval('movies_id_seq', greatest($1::bigint, 1), $1::bigint > 0)",
                &[&highest],
            )
            .await?;
        let counted: i64 = transaction.query_one("SELECT count(*) FROM movies", &[]).await?.get(0);
        let expected = source.total().await?;
        anyhow::ensure!(
            counted == expected && copied == expected as u64,
            "copied {copied} films and the target counts {counted}, but the source has {expected}"
        );
        transaction.commit().await?;
        Ok(copied)
    }
}
