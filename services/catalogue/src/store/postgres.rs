//! The PostgreSQL backend: the same films, listings and wire form as the SQLite store (both pass
//! one store suite), for catalogue replicas sharing one database.
//!
//! Writes are transactions at READ COMMITTED: an update locks its film's row (`FOR UPDATE`)
//! before computing the new fields; a create claims its request id by the unique
//! `create_request` (`ON CONFLICT DO NOTHING`), so a retry racing the first call on another
//! replica waits for it and then finds its film. Exports read in one REPEATABLE READ
//! transaction, so the total size and the films come from one snapshot.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use futures::{StreamExt, pin_mut};
use tokio::sync::{mpsc, oneshot};
use videostore_kit::postgres::{
    self, Connection, GenericClient, Listener, Migrations, Pool, is_unique_violation,
    tokio_postgres::{self, IsolationLevel, Row, types::ToSql},
};

use super::{
    CatalogueStore, FieldChange, Upserted, WireExport, WireForm, WirePage,
    listing::{Dialect, Param, Sql},
};
use crate::{
    domain::{Cursor, Filter, ListQuery, Movie, MovieFields, MovieId, Order, Rating, fold},
    error::Error,
};

/// The schema, one migration per file.
const MIGRATIONS: Migrations = &[
    include_str!("../../migrations/postgres/0001_movies.sql"),
    include_str!("../../migrations/postgres/0002_movie_changes.sql"),
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
    wire: WireForm,
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

    async fn connection(&self) -> Result<Connection, Error> {
        self.pool.get().await.context("taking a database connection").map_err(Error::Internal)
    }

    /// Encodes every film again, unless the stored wire form is the encoder's version already.
    async fn reencode(&self) -> Result<Option<u64>, Error> {
        let mut client = self.connection().await?;
        let transaction = client.transaction().await?;
        // Replicas opening together: one encodes, the others wait and find it done.
        let stored: Option<i64> = transaction
            .query_opt("SELECT version FROM wire_form FOR UPDATE", &[])
            .await?
            .map(|row| row.get(0));
        if stored == Some(self.wire.version) {
            return Ok(None);
        }
        if stored.is_none() {
            transaction.execute("LOCK TABLE wire_form IN EXCLUSIVE MODE", &[]).await?;
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

/// `time` at the precision the database keeps (milliseconds).
fn stored_time(time: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis(time).max(0) as u64)
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn movie_from_row(row: &Row) -> Movie {
    let audience_rating: f64 = row.get(7);
    let update_ms: i64 = row.get(10);
    Movie {
        id: MovieId::new(row.get(0)),
        fields: MovieFields {
            title: row.get(1),
            release_year: row.get(2),
            genres: row.get(9),
            runtime_minutes: row.get(3),
            director: row.get(4),
            rating: Rating(row.get(5)),
            synopsis: row.get(6),
            audience_rating: audience_rating as f32,
            external_key: row.get(8),
        },
        update_time: UNIX_EPOCH + Duration::from_millis(update_ms.max(0) as u64),
    }
}

/// The parameters of `sql`, as tokio-postgres takes them.
fn params(sql: &Sql) -> Vec<Box<dyn ToSql + Sync + Send>> {
    sql.params
        .iter()
        .map(|param| -> Box<dyn ToSql + Sync + Send> {
            match param {
                Param::Int(value) => Box::new(*value),
                Param::Real(value) => Box::new(*value),
                Param::Text(value) => Box::new(value.clone()),
            }
        })
        .collect()
}

fn borrowed(params: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|param| param.as_ref() as &(dyn ToSql + Sync)).collect()
}

async fn query_movies(client: &impl GenericClient, sql: &Sql) -> Result<Vec<Movie>, Error> {
    let params = params(sql);
    let statement = client.prepare_cached(&sql.text).await?;
    Ok(client.query(&statement, &borrowed(&params)).await?.iter().map(movie_from_row).collect())
}

/// The wire form of `movie`.
fn encoded(wire: &WireForm, movie: &Movie) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(256);
    (wire.encode)(movie.id, &movie.fields, movie.update_time, &mut buffer);
    buffer
}

/// Replaces the genre rows of film `id`.
async fn write_genres(
    client: &impl GenericClient,
    id: MovieId,
    fields: &MovieFields,
) -> Result<(), Error> {
    client.execute("DELETE FROM movie_genres WHERE movie_id = $1", &[&id.get()]).await?;
    if fields.genres.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = fields.genres.iter().map(|genre| genre.to_lowercase()).collect();
    client
        .execute(
            "INSERT INTO movie_genres (movie_id, genre, genre_key, audience_rating, title_key) \
             SELECT $1, genre, genre_key, $4, $5 FROM UNNEST($2::TEXT[], $3::TEXT[]) \
                 AS g (genre, genre_key) \
             ON CONFLICT DO NOTHING",
            &[
                &id.get(),
                &fields.genres,
                &keys,
                &f64::from(fields.audience_rating),
                &fold(&fields.title),
            ],
        )
        .await?;
    Ok(())
}

/// A new film's id, from the sequence.
async fn next_id(client: &impl GenericClient) -> Result<MovieId, Error> {
    Ok(MovieId::new(client.query_one("SELECT nextval('movies_id_seq')", &[]).await?.get(0)))
}

/// Inserts `movie` (its id taken already), unless that would break a unique rule: another film
/// with its external key, or (with `request_id`) a film that request made already. False then:
/// the caller finds out which.
async fn insert(
    client: &impl GenericClient,
    wire: &WireForm,
    movie: &Movie,
    request_id: Option<&str>,
) -> Result<bool, Error> {
    let fields = &movie.fields;
    let inserted = client
        .execute(
            "INSERT INTO movies (id, title, title_key, release_year, runtime_minutes, director, \
             rating, synopsis, audience_rating, external_key, genres, update_time_ms, \
             create_request, wire) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT DO NOTHING",
            &[
                &movie.id.get(),
                &fields.title,
                &fold(&fields.title),
                &fields.release_year,
                &fields.runtime_minutes,
                &fields.director,
                &fields.rating.0,
                &fields.synopsis,
                &f64::from(fields.audience_rating),
                &fields.external_key,
                &fields.genres,
                &millis(movie.update_time),
                &request_id,
                &encoded(wire, movie),
            ],
        )
        .await?;
    if inserted == 0 {
        return Ok(false);
    }
    write_genres(client, movie.id, fields).await?;
    Ok(true)
}

/// Writes `movie`'s fields over its row.
async fn replace(client: &impl GenericClient, wire: &WireForm, movie: &Movie) -> Result<(), Error> {
    let fields = &movie.fields;
    client
        .execute(
            "UPDATE movies SET title = $2, title_key = $3, release_year = $4, \
             runtime_minutes = $5, director = $6, rating = $7, synopsis = $8, \
             audience_rating = $9, external_key = $10, genres = $11, update_time_ms = $12, \
             wire = $13 WHERE id = $1",
            &[
                &movie.id.get(),
                &fields.title,
                &fold(&fields.title),
                &fields.release_year,
                &fields.runtime_minutes,
                &fields.director,
                &fields.rating.0,
                &fields.synopsis,
                &f64::from(fields.audience_rating),
                &fields.external_key,
                &fields.genres,
                &millis(movie.update_time),
                &encoded(wire, movie),
            ],
        )
        .await
        .map_err(|error| duplicate_key(error, fields))?;
    write_genres(client, movie.id, fields).await
}

fn duplicate_key(error: tokio_postgres::Error, fields: &MovieFields) -> Error {
    if is_unique_violation(&error) {
        Error::DuplicateExternalKey(fields.external_key.clone().unwrap_or_default())
    } else {
        error.into()
    }
}

/// An export's read: the size first (through `size`), then the films in chunks.
async fn export(
    mut client: Connection,
    sql: Sql,
    whole_table: bool,
    max_bytes: usize,
    size: oneshot::Sender<Result<Option<usize>, Error>>,
    chunks: mpsc::UnboundedSender<Result<Vec<u8>, Error>>,
) -> Result<(), Error> {
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    // The kept total first: a connection answers one query at a time, in order.
    let total: Option<i64> = if whole_table {
        Some(transaction.query_one("SELECT bytes FROM wire_bytes", &[]).await?.get(0))
    } else {
        None
    };
    let params = params(&sql);
    let rows = transaction.query_raw(&sql.text, borrowed(&params)).await?;
    pin_mut!(rows);
    let mut chunk = Vec::with_capacity(EXPORT_CHUNK.min(max_bytes.saturating_add(1)));
    let Some(total) = total else {
        // Only the films can tell a filtered export's size: all are read before any is sent.
        let mut read = Vec::new();
        let mut bytes = 0;
        while let Some(row) = rows.next().await {
            let row = row?;
            let wire: &[u8] = row.get(0);
            bytes += wire.len();
            if bytes > max_bytes {
                let _ = size.send(Ok(None));
                return Ok(());
            }
            fill(&mut chunk, &mut read, wire);
            if chunks.is_closed() {
                return Ok(());
            }
        }
        if !chunk.is_empty() {
            read.push(chunk);
        }
        let _ = size.send(Ok(Some(bytes)));
        for piece in read {
            let _ = chunks.send(Ok(piece));
        }
        return Ok(());
    };
    let total = usize::try_from(total).context("a negative wire total")?;
    if total > max_bytes {
        let _ = size.send(Ok(None));
        return Ok(());
    }
    let _ = size.send(Ok(Some(total)));
    let mut sent = 0;
    let mut full = Vec::new();
    while let Some(row) = rows.next().await {
        let row = row?;
        let wire: &[u8] = row.get(0);
        sent += wire.len();
        if sent > total {
            let _ = chunks.send(Err(Error::internal(format!(
                "the films' wire forms are more than their kept total of {total} bytes"
            ))));
            return Ok(());
        }
        fill(&mut chunk, &mut full, wire);
        for piece in full.drain(..) {
            if chunks.send(Ok(piece)).is_err() {
                return Ok(()); // The caller has gone.
            }
        }
    }
    if !chunk.is_empty() {
        let _ = chunks.send(Ok(chunk));
    }
    if sent != total {
        let _ = chunks.send(Err(Error::internal(format!(
            "the films' wire forms are {sent} bytes, not their kept total of {total}"
        ))));
    }
    Ok(())
}

/// Appends `wire` to `chunk`, moving every chunk filled to [`EXPORT_CHUNK`] into `full`.
fn fill(chunk: &mut Vec<u8>, full: &mut Vec<Vec<u8>>, mut wire: &[u8]) {
    while !wire.is_empty() {
        let room = EXPORT_CHUNK - chunk.len();
        let (now, rest) = wire.split_at(room.min(wire.len()));
        chunk.extend_from_slice(now);
        wire = rest;
        if chunk.len() == EXPORT_CHUNK {
            full.push(std::mem::replace(chunk, Vec::with_capacity(EXPORT_CHUNK)));
        }
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
        let (chunk_sender, chunks) = mpsc::unbounded_channel();
        let failures = chunk_sender.clone();
        let (failure_sender, failure) = oneshot::channel();
        // The read goes on after the size is known, while the films are being sent; it never
        // waits for the client (the export is at most `max_bytes`).
        tokio::spawn(async move {
            let read = export(client, sql, whole_table, max_bytes, size_sender, chunk_sender);
            if let Err(error) = read.await {
                // The caller hears why: instead of the size if it still waits for it, else as
                // the chunks' last item.
                if let Err(error) = failure_sender.send(error) {
                    let _ = failures.send(Err(error));
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
        let now = stored_time(now);
        let mut client = self.connection().await?;
        let transaction = client.transaction().await?;
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
                    replace(&transaction, &self.wire, &movie).await?;
                    outcome = Some(Upserted::Updated(id));
                    break;
                }
                let id = next_id(&transaction).await?;
                let movie = Movie { id, fields: fields.clone(), update_time: now };
                if insert(&transaction, &self.wire, &movie, None).await? {
                    outcome = Some(Upserted::Created(id));
                    break;
                }
            }
            let outcome = outcome.ok_or_else(|| {
                Error::DuplicateExternalKey(fields.external_key.clone().unwrap_or_default())
            })?;
            outcomes.push(outcome);
        }
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
