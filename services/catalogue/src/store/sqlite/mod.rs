//! The embedded SQLite backend.
//!
//! Writes go through the single writer connection (they queue there instead of failing with
//! SQLITE_BUSY) and reads through a pool of read-only connections; WAL mode lets the readers run
//! while the writer commits. Every method is one job on one connection, so a listing of any size
//! is one statement stepped on a blocking thread.

mod export;
mod rows;
mod sql;

use std::time::SystemTime;

use anyhow::Context;
use async_trait::async_trait;
use videostore_kit::sqlite::{
    Database, Migrations,
    rusqlite::{
        self, Connection, OptionalExtension, TransactionBehavior,
        types::{Type, ValueRef},
    },
};

use self::{
    rows::{COLUMNS, duplicate_key, get_one, insert, movie_from_row, replace, stored_time},
    sql::{expected_rows, listing, params, query_movies, sql},
};
use super::{CatalogueStore, FieldChange, Upserted, WireExport, WireForm, WirePage};
use crate::{
    domain::{Cursor, Filter, ListQuery, Movie, MovieFields, MovieId, Order},
    error::Error,
};

/// The schema, one migration per file.
const MIGRATIONS: Migrations = &[
    include_str!("../../../migrations/sqlite/0001_movies.sql"),
    include_str!("../../../migrations/sqlite/0002_related_index.sql"),
    include_str!("../../../migrations/sqlite/0003_wire_form.sql"),
    include_str!("../../../migrations/sqlite/0004_wire_bytes.sql"),
];

/// Films re-encoded per statement when the wire form changes.
const REENCODE_BATCH: i64 = 1000;

/// Films in a SQLite file.
#[derive(Debug, Clone)]
pub(crate) struct SqliteStore {
    database: Database,
    /// How films are kept in wire form.
    wire: WireForm,
}

impl SqliteStore {
    /// Shows the database's connections and commits on `/metrics`.
    pub(crate) fn register_metrics(&self, metrics: &videostore_kit::metrics::Metrics) {
        self.database.metrics.register(metrics);
    }

    /// Opens (creating if needed) the database at `url` (`sqlite://path/to/file.db`), brings
    /// its schema up to date, and re-encodes every film if it holds another wire form.
    pub(crate) async fn open(url: &str, wire: WireForm) -> anyhow::Result<Self> {
        let database = Database::open_blocking_off(url, MIGRATIONS)
            .await
            .context("opening the catalogue database")?;
        let store = Self { database, wire };
        let encoded = store.reencode().await.context("encoding the films' wire form")?;
        if let Some(films) = encoded {
            tracing::info!(films, version = wire.version, "stored the films' wire form");
        }
        Ok(store)
    }

    /// Encodes every film again, in one transaction, unless the stored wire form is the
    /// encoder's version already; how many films were encoded, if any were.
    async fn reencode(&self) -> Result<Option<u64>, Error> {
        let wire = self.wire;
        self.write(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stored: Option<i64> = transaction
                .query_row("SELECT version FROM wire_form", [], |row| row.get(0))
                .optional()?;
            if stored == Some(wire.version) {
                return Ok(None);
            }
            let mut encoded = 0;
            let mut after = 0;
            let mut buffer = Vec::new();
            loop {
                let batch = transaction
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM movies WHERE id > ? ORDER BY id LIMIT ?"
                    ))?
                    .query_map([after, REENCODE_BATCH], movie_from_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                let mut update =
                    transaction.prepare_cached("UPDATE movies SET wire = ? WHERE id = ?")?;
                for movie in &batch {
                    buffer.clear();
                    (wire.encode)(movie.id, &movie.fields, movie.update_time, &mut buffer);
                    update.execute(rusqlite::params![buffer, movie.id])?;
                }
                encoded += batch.len() as u64;
                match batch.last() {
                    Some(last) if batch.len() as i64 == REENCODE_BATCH => after = last.id.get(),
                    _ => break,
                }
            }
            transaction.execute(
                "INSERT OR REPLACE INTO wire_form (singleton, version) VALUES (1, ?)",
                [wire.version],
            )?;
            transaction.commit()?;
            Ok(Some(encoded))
        })
        .await
    }

    /// Up to `limit` films with ids after `after`, by id, each with the request id that created
    /// it (for copying the store elsewhere).
    pub(crate) async fn films_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(Movie, Option<String>)>, Error> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {}, create_request FROM movies WHERE id > ? ORDER BY id LIMIT ?",
                rows::COLUMNS
            ))?;
            let films = statement
                .query_map(rusqlite::params![after, limit as i64], |row| {
                    Ok((rows::movie_from_row(row)?, row.get(11)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(films)
        })
        .await
    }

    /// The highest film id ever given (deleted films' included), 0 for none.
    pub(crate) async fn highest_id(&self) -> Result<i64, Error> {
        self.read(|connection| {
            Ok(connection.query_row(
                "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'movies'), 0), \
                 coalesce((SELECT max(id) FROM movies), 0))",
                [],
                |row| row.get(0),
            )?)
        })
        .await
    }

    async fn read<T, F>(&self, job: F) -> Result<T, Error>
    where
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        self.database.reader.run(move |connection| job(connection)).await?
    }

    async fn write<T, F>(&self, job: F) -> Result<T, Error>
    where
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        self.database.writer.run(job).await?
    }
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Self {
        Self::Internal(error.into())
    }
}

#[async_trait]
impl CatalogueStore for SqliteStore {
    async fn get(&self, id: MovieId) -> Result<Option<Movie>, Error> {
        self.read(move |connection| Ok(get_one(connection, id)?)).await
    }

    async fn get_many(&self, ids: &[MovieId]) -> Result<Vec<Movie>, Error> {
        let expected = ids.len();
        let ids = serde_json::to_string(ids).context("encoding ids")?;
        self.read(move |connection| {
            let mut sql = sql(format!(
                "SELECT {COLUMNS} FROM movies WHERE id IN (SELECT value FROM json_each("
            ));
            sql.bind(ids).push("))");
            query_movies(&sql, connection, expected)
        })
        .await
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<Movie>, Error> {
        let sql = listing(COLUMNS, query);
        let limit = query.limit;
        self.read(move |connection| {
            let expected = expected_rows(connection, limit)?;
            query_movies(&sql, connection, expected)
        })
        .await
    }

    async fn list_wire(&self, query: &ListQuery) -> Result<WirePage, Error> {
        // The cursor columns come from the same rows (a second read could see a newer title).
        // In id order the id is the whole cursor: the other columns are not read at all.
        let by_id = query.order == Order::Id;
        let columns =
            if by_id { "wire, id" } else { "wire, id, title_key, release_year, audience_rating" };
        let sql = listing(columns, query);
        let limit = query.limit;
        self.read(move |connection| {
            let expected = expected_rows(connection, limit)?;
            // About 250 bytes a film; a bigger answer grows by doubling past 64 MiB.
            let mut page = WirePage {
                bytes: Vec::with_capacity((expected * 256).min(64 << 20)),
                ends: Vec::with_capacity(expected),
                last: None,
            };
            let mut last =
                Cursor { title_key: String::new(), year: 0, rating: 0.0, id: MovieId::new(0) };
            let mut statement = connection.prepare_cached(&sql.text)?;
            let mut rows = statement.query(params(&sql))?;
            while let Some(row) = rows.next()? {
                last.id = row.get(1)?;
                let ValueRef::Blob(wire) = row.get_ref(0)? else {
                    return Err(Error::Internal(anyhow::anyhow!(
                        "film {} has no wire form",
                        last.id
                    )));
                };
                page.bytes.extend_from_slice(wire);
                page.ends.push(page.bytes.len());
                if by_id {
                    continue;
                }
                // Kept in one buffer, not allocated per film.
                last.title_key.clear();
                last.title_key.push_str(row.get_ref(2)?.as_str().map_err(|error| {
                    rusqlite::Error::FromSqlConversionFailure(2, Type::Text, Box::new(error))
                })?);
                last.year = row.get(3)?;
                last.rating = row.get(4)?;
            }
            if !page.ends.is_empty() {
                page.last = Some(last);
            }
            Ok(page)
        })
        .await
    }

    async fn export_wire(
        &self,
        query: &ListQuery,
        max_bytes: usize,
    ) -> Result<Option<WireExport>, Error> {
        export::export(self.database.reader.clone(), query, max_bytes).await
    }

    async fn count(&self, filter: &Filter) -> Result<i64, Error> {
        let mut sql = sql("SELECT COUNT(*) FROM movies");
        sql.push_filter(filter);
        self.read(move |connection| {
            Ok(connection.prepare_cached(&sql.text)?.query_row(params(&sql), |row| row.get(0))?)
        })
        .await
    }

    async fn related(&self, movie: &Movie, limit: usize) -> Result<Vec<Movie>, Error> {
        if movie.fields.genres.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        // The best `limit` of each genre come from the genre's rating index; the best
        // `limit` of their union are the answer.
        let mut sql = sql(format!("SELECT {COLUMNS} FROM movies WHERE id IN ("));
        for (index, genre) in movie.fields.genres.iter().enumerate() {
            if index > 0 {
                sql.push(" UNION ");
            }
            sql.push("SELECT movie_id FROM (SELECT movie_id FROM movie_genres WHERE genre = ")
                .bind(genre.clone())
                .push(" AND movie_id <> ")
                .bind(movie.id)
                .push(" ORDER BY audience_rating DESC, title_key ASC, movie_id ASC LIMIT ")
                .bind(limit as i64)
                .push(")");
        }
        sql.push(") ORDER BY audience_rating DESC, title_key ASC, id ASC LIMIT ")
            .bind(limit as i64);
        self.read(move |connection| query_movies(&sql, connection, limit)).await
    }

    async fn create(
        &self,
        fields: &MovieFields,
        request_id: Option<&str>,
        now: SystemTime,
    ) -> Result<(Movie, bool), Error> {
        let now = stored_time(now);
        let (fields, request_id) = (fields.clone(), request_id.map(str::to_owned));
        let wire = self.wire;
        self.write(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(request_id) = &request_id {
                let earlier = transaction
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM movies WHERE create_request = ?"
                    ))?
                    .query_row([request_id], movie_from_row)
                    .optional()?;
                if let Some(earlier) = earlier {
                    return Ok((earlier, false));
                }
            }
            let id =
                insert(&transaction, &wire, &fields, now).map_err(|e| duplicate_key(e, &fields))?;
            if let Some(request_id) = &request_id {
                transaction
                    .prepare_cached("UPDATE movies SET create_request = ? WHERE id = ?")?
                    .execute(rusqlite::params![request_id, id])?;
            }
            transaction.commit()?;
            Ok((Movie { id, fields, update_time: now }, true))
        })
        .await
    }

    async fn update(
        &self,
        id: MovieId,
        change: Box<FieldChange>,
        now: SystemTime,
    ) -> Result<Movie, Error> {
        let now = stored_time(now);
        let wire = self.wire;
        self.write(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current = get_one(&transaction, id)?.ok_or(Error::FilmNotFound(id))?;
            let fields = change(&current.fields).map_err(Error::Invalid)?;
            replace(&transaction, &wire, id, &fields, now)
                .map_err(|e| duplicate_key(e, &fields))?;
            transaction.commit()?;
            Ok(Movie { id, fields, update_time: now })
        })
        .await
    }

    async fn delete(&self, id: MovieId) -> Result<bool, Error> {
        self.write(move |connection| {
            Ok(connection.prepare_cached("DELETE FROM movies WHERE id = ?")?.execute([id])? > 0)
        })
        .await
    }

    async fn upsert_batch(
        &self,
        rows: &[MovieFields],
        now: SystemTime,
    ) -> Result<Vec<Upserted>, Error> {
        let rows = rows.to_vec();
        let (now, wire) = (stored_time(now), self.wire);
        self.write(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut outcomes = Vec::with_capacity(rows.len());
            for fields in &rows {
                let existing: Option<MovieId> = match &fields.external_key {
                    Some(key) => transaction
                        .prepare_cached("SELECT id FROM movies WHERE external_key = ?")?
                        .query_row([key], |row| row.get(0))
                        .optional()?,
                    None => None,
                };
                outcomes.push(match existing {
                    Some(id) => {
                        replace(&transaction, &wire, id, fields, now)?;
                        Upserted::Updated(id)
                    }
                    None => Upserted::Created(insert(&transaction, &wire, fields, now)?),
                });
            }
            transaction.commit()?;
            Ok(outcomes)
        })
        .await
    }

    async fn genres(&self) -> Result<Vec<(String, i64)>, Error> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT MIN(genre), COUNT(*) FROM movie_genres GROUP BY genre ORDER BY genre",
            )?;
            let genres = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(genres)
        })
        .await
    }

    async fn total(&self) -> Result<i64, Error> {
        self.read(|connection| {
            Ok(connection.query_row("SELECT COUNT(*) FROM movies", [], |row| row.get(0))?)
        })
        .await
    }
}
