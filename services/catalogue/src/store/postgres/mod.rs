//! The PostgreSQL backend: the same films, listings and wire form as the SQLite store (both pass
//! one store suite), for catalogue replicas sharing one database.
//!
//! Writes are transactions at READ COMMITTED: an update locks its film's row (`FOR UPDATE`)
//! before computing the new fields; a create claims its request id by the unique
//! `create_request` (`ON CONFLICT DO NOTHING`), so a retry racing the first call on another
//! replica waits for it and then finds its film. Exports read in one REPEATABLE READ
//! transaction, so the total size and the films come from one snapshot.

use std::time::SystemTime;

use anyhow::Context;
use async_trait::async_trait;
use tokio::sync::oneshot;
use videostore_kit::postgres::{
    self, Connection, GenericClient, Listener, Migrations, Pool, tokio_postgres,
};

mod export;
mod rows;

pub(super) use self::rows::insert;
use self::{export::export, rows::*};
use super::{
    CatalogueStore, FieldChange, Upserted, WireExport, WireForm, WirePage,
    listing::{Dialect, Sql},
};
use crate::{
    domain::{Cursor, Filter, ListQuery, Movie, MovieFields, MovieId, Order},
    error::Error,
};

/// The schema, one migration per file.
const MIGRATIONS: Migrations = &[
    include_str!("../../../migrations/postgres/0001_movies.sql"),
    include_str!("../../../migrations/postgres/0002_movie_changes.sql"),
];

/// The columns [`movie_from_row`] reads, in its order.
const COLUMNS: &str = "id, title, release_year, runtime_minutes, director, rating, synopsis, \
                       audience_rating, external_key, genres, update_time_ms";

/// The size of an export's chunks (as the SQLite store's).
const EXPORT_CHUNK: usize = if cfg!(test) { 1000 } else { 1 << 20 };

/// Films in a PostgreSQL database.
#[derive(Clone)]
pub(crate) struct PostgresStore {
    pool: Pool,
    /// How films are kept in wire form.
    pub(super) wire: WireForm,
    /// Where it is, for the listening connection of the feed.
    url: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Internal(error.into())
    }
}

impl PostgresStore {
    /// Shows the pool's connections on `/metrics`.
    pub(crate) fn register_metrics(&self, metrics: &videostore_kit::metrics::Metrics) {
        videostore_kit::db_metrics::register_pool(&self.pool, metrics);
    }

    /// Connects to the database at `url` with at most `connections`, brings its schema up to
    /// date, and re-encodes every film if it holds another wire form.
    pub(crate) async fn open(
        url: &str,
        wire: WireForm,
        connections: usize,
    ) -> anyhow::Result<Self> {
        let pool = postgres::open(url, MIGRATIONS, connections)
            .await
            .context("opening the catalogue database")?;
        let store = Self { pool, wire, url: url.to_owned() };
        if let Some(films) = store.reencode().await.context("encoding the films' wire form")? {
            tracing::info!(films, version = wire.version, "stored the films' wire form");
        }
        Ok(store)
    }

    /// A connection of its own listening to the `movie_changes` notifications (see
    /// `crate::feed`), named `videostore-catalogue-feed` in `pg_stat_activity`.
    pub(crate) async fn listen(&self) -> anyhow::Result<Listener> {
        postgres::listen(&self.url, "movie_changes", "videostore-catalogue-feed").await
    }

    pub(super) async fn connection(&self) -> Result<Connection, Error> {
        self.pool.get().await.context("taking a database connection").map_err(Error::Internal)
    }

    /// Encodes every film again, unless the stored wire form is the encoder's version already.
    async fn reencode(&self) -> Result<Option<u64>, Error> {
        let mut client = self.connection().await?;
        let transaction = client.transaction().await?;
        // Replicas opening together: one encodes, the others wait and find it done. The lock
        // comes first: reading with FOR UPDATE and then locking the table deadlocked two
        // replicas opening an empty database (each held the row-share lock the other's table
        // lock waited for).
        transaction.execute("LOCK TABLE wire_form IN EXCLUSIVE MODE", &[]).await?;
        let stored: Option<i64> = transaction
            .query_opt("SELECT version FROM wire_form", &[])
            .await?
            .map(|row| row.get(0));
        if stored == Some(self.wire.version) {
            return Ok(None);
        }
        let rows = transaction.query(&format!("SELECT {COLUMNS} FROM movies"), &[]).await?;
        let update = transaction.prepare("UPDATE movies SET wire = $1 WHERE id = $2").await?;
        for row in &rows {
            let movie = movie_from_row(row);
            transaction.execute(&update, &[&encoded(&self.wire, &movie), &movie.id.get()]).await?;
        }
        transaction
            .execute(
                "INSERT INTO wire_form (singleton, version) VALUES (1, $1) \
                 ON CONFLICT (singleton) DO UPDATE SET version = excluded.version",
                &[&self.wire.version],
            )
            .await?;
        transaction.commit().await?;
        Ok(Some(rows.len() as u64))
    }
}

/// Creates or updates (by external key) each of `rows`, in `transaction`.
async fn upsert(
    transaction: &impl GenericClient,
    wire: &WireForm,
    rows: &[MovieFields],
    now: SystemTime,
) -> Result<Vec<Upserted>, Error> {
    let now = stored_time(now);
    let find =
        transaction.prepare("SELECT id FROM movies WHERE external_key = $1 FOR UPDATE").await?;
    let mut outcomes = Vec::with_capacity(rows.len());
    for fields in rows {
        // The film with the row's key is updated; if there is none, one is inserted; and if
        // another import inserts it meanwhile, the insert waits for it, does nothing, and
        // that film is updated.
        let mut outcome = None;
        for _ in 0..2 {
            let existing: Option<i64> = match &fields.external_key {
                Some(key) => transaction.query_opt(&find, &[key]).await?.map(|row| row.get(0)),
                None => None,
            };
            if let Some(id) = existing {
                let id = MovieId::new(id);
                let movie = Movie { id, fields: fields.clone(), update_time: now };
                replace(transaction, wire, &movie).await?;
                outcome = Some(Upserted::Updated(id));
                break;
            }
            let id = next_id(transaction).await?;
            let movie = Movie { id, fields: fields.clone(), update_time: now };
            if insert(transaction, wire, &movie, None).await? {
                outcome = Some(Upserted::Created(id));
                break;
            }
        }
        let outcome = outcome.ok_or_else(|| {
            Error::DuplicateExternalKey(fields.external_key.clone().unwrap_or_default())
        })?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The advisory lock replicas take to seed an empty catalogue one at a time.
const SEED_LOCK: i64 = 0x7669_6465_6f73_6565; // "videosee"

impl PostgresStore {
    /// Adds `films` if the catalogue has none; how many it added. Replicas starting together
    /// take turns (an advisory lock), so only the first seeds and the films get the ids 1, 2, …
    /// in order, the ids the sample stock is kept under.
    pub(crate) async fn seed_if_empty(
        &self,
        films: &[MovieFields],
        now: SystemTime,
    ) -> Result<usize, Error> {
        let mut client = self.connection().await?;
        let transaction = client.transaction().await?;
        transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&SEED_LOCK]).await?;
        let present: i64 = transaction.query_one("SELECT count(*) FROM movies", &[]).await?.get(0);
        if present > 0 {
            return Ok(0);
        }
        upsert(&transaction, &self.wire, films, now).await?;
        transaction.commit().await?;
        Ok(films.len())
    }
}

#[async_trait]
impl CatalogueStore for PostgresStore {
    async fn get(&self, id: MovieId) -> Result<Option<Movie>, Error> {
        let client = self.connection().await?;
        let statement =
            client.prepare_cached(&format!("SELECT {COLUMNS} FROM movies WHERE id = $1")).await?;
        Ok(client.query_opt(&statement, &[&id.get()]).await?.map(|row| movie_from_row(&row)))
    }

    async fn get_many(&self, ids: &[MovieId]) -> Result<Vec<Movie>, Error> {
        let ids: Vec<i64> = ids.iter().map(|id| id.get()).collect();
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(&format!("SELECT {COLUMNS} FROM movies WHERE id = ANY($1)"))
            .await?;
        Ok(client.query(&statement, &[&ids]).await?.iter().map(movie_from_row).collect())
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<Movie>, Error> {
        let client = self.connection().await?;
        query_movies(&client, &Sql::listing(Dialect::Postgres, COLUMNS, query)).await
    }

    async fn list_wire(&self, query: &ListQuery) -> Result<WirePage, Error> {
        let by_id = query.order == Order::Id;
        let columns =
            if by_id { "wire, id" } else { "wire, id, title_key, release_year, audience_rating" };
        let sql = Sql::listing(Dialect::Postgres, columns, query);
        let client = self.connection().await?;
        let params = params(&sql);
        let statement = client.prepare_cached(&sql.text).await?;
        let rows = client.query(&statement, &borrowed(&params)).await?;
        let mut page = WirePage {
            bytes: Vec::with_capacity(rows.len() * 256),
            ends: Vec::with_capacity(rows.len()),
            last: None,
        };
        for row in &rows {
            let wire: &[u8] = row.get(0);
            page.bytes.extend_from_slice(wire);
            page.ends.push(page.bytes.len());
        }
        page.last = rows.last().map(|row| Cursor {
            id: MovieId::new(row.get(1)),
            title_key: if by_id { String::new() } else { row.get(2) },
            year: if by_id { 0 } else { row.get(3) },
            rating: if by_id { 0.0 } else { row.get(4) },
        });
        Ok(page)
    }

    async fn export_wire(
        &self,
        query: &ListQuery,
        max_bytes: usize,
    ) -> Result<Option<WireExport>, Error> {
        let query = ListQuery { after: None, limit: usize::MAX, ..query.clone() };
        let sql = Sql::listing(Dialect::Postgres, "wire", &query);
        let whole_table = query.filter == Filter::default();
        let client = self.connection().await?;
        let (size_sender, size) = oneshot::channel();
        let (chunk_sender, chunks) = super::export_channel();
        let failures = chunk_sender.clone();
        let (failure_sender, failure) = oneshot::channel();
        // The read goes on after the size is known, while the films are being sent, a few
        // chunks ahead of the client (for at most `EXPORT_STALL` per chunk).
        tokio::spawn(async move {
            let read = export(client, sql, whole_table, max_bytes, size_sender, chunk_sender);
            if let Err(error) = read.await {
                // The caller hears why: instead of the size if it still waits for it, else as
                // the chunks' last item.
                if let Err(error) = failure_sender.send(error) {
                    let _ = failures.send(Err(error)).await;
                }
            }
        });
        match size.await {
            Ok(Ok(Some(bytes))) => Ok(Some(WireExport { bytes, chunks })),
            Ok(Ok(None)) => Ok(None),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(failure
                .await
                .unwrap_or_else(|_| Error::internal("an export's read ended without a word"))),
        }
    }

    async fn count(&self, filter: &Filter) -> Result<i64, Error> {
        let mut sql = Sql::new(Dialect::Postgres, "SELECT COUNT(*) FROM movies");
        sql.push_filter(filter);
        let client = self.connection().await?;
        let params = params(&sql);
        let statement = client.prepare_cached(&sql.text).await?;
        Ok(client.query_one(&statement, &borrowed(&params)).await?.get(0))
    }

    async fn related(&self, movie: &Movie, limit: usize) -> Result<Vec<Movie>, Error> {
        if movie.fields.genres.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        // The best `limit` of each genre come from the genre's rating index; the best `limit`
        // of their union are the answer.
        let mut sql =
            Sql::new(Dialect::Postgres, format!("SELECT {COLUMNS} FROM movies WHERE id IN ("));
        for (index, genre) in movie.fields.genres.iter().enumerate() {
            if index > 0 {
                sql.push(" UNION ");
            }
            sql.push("(SELECT movie_id FROM movie_genres WHERE genre_key = ")
                .bind(genre.to_lowercase())
                .push(" AND movie_id <> ")
                .bind(movie.id)
                .push(" ORDER BY audience_rating DESC, title_key ASC, movie_id ASC LIMIT ")
                .bind(limit as i64)
                .push(")");
        }
        sql.push(") ORDER BY audience_rating DESC, title_key ASC, id ASC LIMIT ")
            .bind(limit as i64);
        let client = self.connection().await?;
        query_movies(&client, &sql).await
    }

    async fn create(
        &self,
        fields: &MovieFields,
        request_id: Option<&str>,
        now: SystemTime,
    ) -> Result<(Movie, bool), Error> {
        let mut client = self.connection().await?;
        let transaction = client.transaction().await?;
        let movie = Movie {
            id: next_id(&transaction).await?,
            fields: fields.clone(),
            update_time: stored_time(now),
        };
        if insert(&transaction, &self.wire, &movie, request_id).await? {
            transaction.commit().await?;
            return Ok((movie, true));
        }
        // A retry (the first call made the film and committed: its insert was waited for), or
        // another film has the external key.
        let earlier = transaction
            .query_opt(
                &format!("SELECT {COLUMNS} FROM movies WHERE create_request = $1"),
                &[&request_id],
            )
            .await?;
        match earlier {
            Some(earlier) => Ok((movie_from_row(&earlier), false)),
            None => {
                Err(Error::DuplicateExternalKey(fields.external_key.clone().unwrap_or_default()))
            }
        }
    }

    async fn update(
        &self,
        id: MovieId,
        change: Box<FieldChange>,
        now: SystemTime,
    ) -> Result<Movie, Error> {
        let mut client = self.connection().await?;
        let transaction = client.transaction().await?;
        let current = transaction
            .query_opt(
                &format!("SELECT {COLUMNS} FROM movies WHERE id = $1 FOR UPDATE"),
                &[&id.get()],
            )
            .await?
            .map(|row| movie_from_row(&row))
            .ok_or(Error::FilmNotFound(id))?;
        let fields = change(&current.fields)?;
        let movie = Movie { id, fields, update_time: stored_time(now) };
        replace(&transaction, &self.wire, &movie).await?;
        transaction.commit().await?;
        Ok(movie)
    }

    async fn delete(&self, id: MovieId) -> Result<bool, Error> {
        let client = self.connection().await?;
        Ok(client.execute("DELETE FROM movies WHERE id = $1", &[&id.get()]).await? > 0)
    }

    async fn upsert_batch(
        &self,
        rows: &[MovieFields],
        now: SystemTime,
    ) -> Result<Vec<Upserted>, Error> {
        let mut client = self.connection().await?;
        let transaction = client.transaction().await?;
        let outcomes = upsert(&transaction, &self.wire, rows, now).await?;
        transaction.commit().await?;
        Ok(outcomes)
    }

    async fn genres(&self) -> Result<Vec<(String, i64)>, Error> {
        let client = self.connection().await?;
        let rows = client
            .query(
                "SELECT MIN(genre COLLATE \"C\"), COUNT(*) FROM movie_genres \
                 GROUP BY genre_key ORDER BY genre_key",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    async fn total(&self) -> Result<i64, Error> {
        let client = self.connection().await?;
        Ok(client.query_one("SELECT COUNT(*) FROM movies", &[]).await?.get(0))
    }
}
