//! The embedded SQLite backend.
//!
//! Writes go through the single writer connection (they queue there instead of failing with
//! SQLITE_BUSY) and reads through a pool of read-only connections; WAL mode lets the readers run
//! while the writer commits. Every method is one job on one connection, so a listing of any size
//! is one statement stepped on a blocking thread.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use videostore_kit::sqlite::{
    Database, Migrations, is_unique_violation,
    rusqlite::{
        self, Connection, OptionalExtension, Row, TransactionBehavior,
        types::{Type, Value, ValueRef},
    },
};

use super::{CatalogueStore, FieldChange, StoreError, Upserted, WireExport, WireForm, WirePage};
use crate::domain::{Cursor, Filter, ListQuery, Movie, MovieFields, MovieId, Order, Rating, fold};

/// The schema, one migration per file.
const MIGRATIONS: Migrations = &[
    include_str!("../../migrations/sqlite/0001_movies.sql"),
    include_str!("../../migrations/sqlite/0002_related_index.sql"),
    include_str!("../../migrations/sqlite/0003_wire_form.sql"),
    include_str!("../../migrations/sqlite/0004_wire_bytes.sql"),
];

/// Films re-encoded per statement when the wire form changes.
const REENCODE_BATCH: i64 = 1000;

/// Separates genres in the `genres` column; validation forbids control characters in names.
const GENRE_SEPARATOR: char = '\u{1f}';

/// The columns [`movie_from_row`] reads, in its order.
const COLUMNS: &str = "id, title, release_year, runtime_minutes, director, rating, synopsis, \
                       audience_rating, external_key, genres, update_time_ms";

/// Films in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    database: Database,
    /// How films are kept in wire form.
    wire: WireForm,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path/to/file.db`), brings
    /// its schema up to date, and re-encodes every film if it holds another wire form.
    pub async fn open(url: &str, wire: WireForm) -> anyhow::Result<Self> {
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
    async fn reencode(&self) -> Result<Option<u64>, StoreError> {
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
                    Some(last) if batch.len() as i64 == REENCODE_BATCH => after = last.id,
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

    async fn read<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.database.reader.run(move |connection| job(connection)).await?
    }

    async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.database.writer.run(job).await?
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Backend(error.into())
    }
}

/// `time` at the precision the database keeps (milliseconds), so what a write returns equals
/// what a later read returns.
fn stored_time(time: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis(time).max(0) as u64)
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn movie_from_row(row: &Row<'_>) -> rusqlite::Result<Movie> {
    let genres: String = row.get(9)?;
    let update_ms: i64 = row.get(10)?;
    let audience_rating: f64 = row.get(7)?;
    Ok(Movie {
        id: row.get(0)?,
        fields: MovieFields {
            title: row.get(1)?,
            release_year: row.get(2)?,
            genres: genres
                .split(GENRE_SEPARATOR)
                .filter(|genre| !genre.is_empty())
                .map(str::to_owned)
                .collect(),
            runtime_minutes: row.get(3)?,
            director: row.get(4)?,
            rating: Rating(row.get(5)?),
            synopsis: row.get(6)?,
            audience_rating: audience_rating as f32,
            external_key: row.get(8)?,
        },
        update_time: UNIX_EPOCH + Duration::from_millis(update_ms.max(0) as u64),
    })
}

/// SQL text with its positional parameters, built up piece by piece.
#[derive(Default)]
struct Sql {
    text: String,
    params: Vec<Value>,
}

impl Sql {
    fn new(text: impl Into<String>) -> Self {
        Self { text: text.into(), params: Vec::new() }
    }

    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.text.push('?');
        self.params.push(value.into());
        self
    }

    /// A listing of `columns`: filtered, after the cursor, in order, at most `limit` rows.
    fn listing(columns: &str, query: &ListQuery) -> Self {
        let mut sql = Sql::new(format!("SELECT {columns} FROM movies"));
        push_filter(&mut sql, &query.filter);
        push_keyset(&mut sql, query);
        sql.push(order_clause(query));
        if let Ok(limit) = i64::try_from(query.limit) {
            sql.push(" LIMIT ").bind(limit);
        }
        sql
    }

    /// The films the statement yields; `expected` sizes the result up front (a page of 5,000
    /// films grown by doubling spent a third of a bulk read copying itself).
    fn query_movies(
        &self,
        connection: &Connection,
        expected: usize,
    ) -> Result<Vec<Movie>, StoreError> {
        let mut statement = connection.prepare_cached(&self.text)?;
        let mut movies = Vec::with_capacity(expected);
        for movie in
            statement.query_map(rusqlite::params_from_iter(self.params.iter()), movie_from_row)?
        {
            movies.push(movie?);
        }
        Ok(movies)
    }
}

/// The size of an export's chunks: big enough that each is one cheap allocation and one write,
/// small in tests so that films straddle chunks.
const EXPORT_CHUNK: usize = if cfg!(test) { 1000 } else { 1 << 20 };

/// An export's read, on a reader connection: the size first, then the films in chunks.
struct Exporter {
    size: Option<oneshot::Sender<Result<Option<usize>, StoreError>>>,
    chunks: mpsc::UnboundedSender<Result<Vec<u8>, StoreError>>,
}

impl Exporter {
    fn run(
        &mut self,
        connection: &mut Connection,
        sql: &Sql,
        whole_table: bool,
        max_bytes: usize,
    ) -> Result<(), StoreError> {
        // One transaction: the size and the films come from one snapshot.
        let transaction = connection.transaction()?;
        if !whole_table {
            // Only the films can tell a filtered export's size: all are read before any is sent.
            let (mut chunks, mut bytes) = (Vec::new(), 0);
            let complete = read_chunks(&transaction, sql, |chunk| {
                bytes += chunk.len();
                chunks.push(chunk);
                // Stop at the limit, or when the caller has gone.
                Ok(bytes <= max_bytes && !self.chunks.is_closed())
            })?;
            if !complete {
                if bytes > max_bytes {
                    self.announce(None);
                }
                return Ok(());
            }
            self.announce(Some(bytes));
            for chunk in chunks {
                let _ = self.chunks.send(Ok(chunk));
            }
            return Ok(());
        }
        let bytes: i64 =
            transaction.query_row("SELECT bytes FROM wire_bytes", [], |row| row.get(0))?;
        let bytes = usize::try_from(bytes).context("a negative wire total")?;
        if bytes > max_bytes {
            self.announce(None);
            return Ok(());
        }
        self.announce(Some(bytes));
        let mut sent = 0;
        let complete = read_chunks(&transaction, sql, |chunk| {
            sent += chunk.len();
            // The message's length is on its way: a film more than it counts must not follow.
            if sent > bytes {
                return Err(StoreError::Backend(anyhow::anyhow!(
                    "the films' wire forms are more than their kept total of {bytes} bytes"
                )));
            }
            Ok(self.chunks.send(Ok(chunk)).is_ok()) // Stop when the caller has gone.
        })?;
        if complete && sent != bytes {
            return Err(StoreError::Backend(anyhow::anyhow!(
                "the films' wire forms are {sent} bytes, not their kept total of {bytes}"
            )));
        }
        Ok(())
    }

    fn announce(&mut self, size: Option<usize>) {
        if let Some(sender) = self.size.take() {
            let _ = sender.send(Ok(size));
        }
    }

    /// Tells the caller of a failure: instead of the size if it was not sent yet, else as the
    /// chunks' last item.
    fn fail(&mut self, error: StoreError) {
        match self.size.take() {
            Some(sender) => {
                let _ = sender.send(Err(error));
            }
            None => {
                let _ = self.chunks.send(Err(error));
            }
        }
    }
}

/// The films of `sql` (selecting `wire, id`) in chunks of [`EXPORT_CHUNK`] filled to the brim (a
/// film may continue in the next), each handed to `each`, which says whether to go on. Whether
/// every film was read.
fn read_chunks(
    connection: &Connection,
    sql: &Sql,
    mut each: impl FnMut(Vec<u8>) -> Result<bool, StoreError>,
) -> Result<bool, StoreError> {
    let mut chunk = Vec::with_capacity(EXPORT_CHUNK);
    let mut statement = connection.prepare_cached(&sql.text)?;
    let mut rows = statement.query(rusqlite::params_from_iter(sql.params.iter()))?;
    while let Some(row) = rows.next()? {
        let ValueRef::Blob(mut wire) = row.get_ref(0)? else {
            let id: i64 = row.get(1)?;
            return Err(StoreError::Backend(anyhow::anyhow!("film {id} has no wire form")));
        };
        while !wire.is_empty() {
            let room = EXPORT_CHUNK - chunk.len();
            let (now, rest) = wire.split_at(room.min(wire.len()));
            chunk.extend_from_slice(now);
            wire = rest;
            if chunk.len() == EXPORT_CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(EXPORT_CHUNK));
                if !each(full)? {
                    return Ok(false);
                }
            }
        }
    }
    if !chunk.is_empty() && !each(chunk)? {
        return Ok(false);
    }
    Ok(true)
}

/// How many rows a listing of at most `limit` is likely to yield, to size its answer up front:
/// without a limit, the table's size (MAX(id) reads one b-tree edge, far less than regrowing
/// half a million films).
fn expected_rows(connection: &Connection, limit: usize) -> rusqlite::Result<usize> {
    if limit < usize::MAX {
        return Ok(limit.min(10_000));
    }
    let max_id = connection
        .query_row("SELECT MAX(id) FROM movies", [], |row| row.get::<_, Option<i64>>(0))?;
    Ok(max_id.unwrap_or(0).clamp(0, 5_000_000) as usize)
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn like_contains(word: &str) -> String {
    let mut pattern = String::with_capacity(word.len() + 2);
    pattern.push('%');
    for c in word.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn push_filter(sql: &mut Sql, filter: &Filter) {
    sql.push(" WHERE 1 = 1");
    for word in &filter.words {
        sql.push(" AND title_key LIKE ").bind(like_contains(word)).push(" ESCAPE '\\'");
    }
    if let Some(genre) = &filter.genre {
        sql.push(" AND id IN (SELECT movie_id FROM movie_genres WHERE genre = ")
            .bind(genre.clone())
            .push(")");
    }
    if let Some(min) = filter.min_year {
        sql.push(" AND release_year >= ").bind(i64::from(min));
    }
    if let Some(max) = filter.max_year {
        sql.push(" AND release_year <= ").bind(i64::from(max));
    }
}

fn push_keyset(sql: &mut Sql, query: &ListQuery) {
    let Some(after) = &query.after else { return };
    let op = if query.descending { "<" } else { ">" };
    match query.order {
        Order::Id => {
            sql.push(&format!(" AND id {op} ")).bind(after.id);
        }
        Order::Title => {
            sql.push(&format!(" AND (title_key, id) {op} ("))
                .bind(after.title_key.clone())
                .push(", ")
                .bind(after.id)
                .push(")");
        }
        Order::Year | Order::Rating => {
            let (column, value) = if query.order == Order::Year {
                ("release_year", Value::Integer(i64::from(after.year)))
            } else {
                ("audience_rating", Value::Real(after.rating))
            };
            sql.push(&format!(" AND ({column} {op} "))
                .bind(value.clone())
                .push(&format!(" OR ({column} = "))
                .bind(value)
                .push(" AND (title_key, id) > (")
                .bind(after.title_key.clone())
                .push(", ")
                .bind(after.id)
                .push(")))");
        }
    }
}

fn order_clause(query: &ListQuery) -> &'static str {
    match (query.order, query.descending) {
        (Order::Title, false) => " ORDER BY title_key ASC, id ASC",
        (Order::Title, true) => " ORDER BY title_key DESC, id DESC",
        (Order::Year, false) => " ORDER BY release_year ASC, title_key ASC, id ASC",
        (Order::Year, true) => " ORDER BY release_year DESC, title_key ASC, id ASC",
        (Order::Rating, false) => " ORDER BY audience_rating ASC, title_key ASC, id ASC",
        (Order::Rating, true) => " ORDER BY audience_rating DESC, title_key ASC, id ASC",
        (Order::Id, false) => " ORDER BY id ASC",
        (Order::Id, true) => " ORDER BY id DESC",
    }
}

fn joined_genres(fields: &MovieFields) -> String {
    let mut joined = String::new();
    for (index, genre) in fields.genres.iter().enumerate() {
        if index > 0 {
            joined.push(GENRE_SEPARATOR);
        }
        joined.push_str(genre);
    }
    joined
}

fn write_genres(
    connection: &Connection,
    id: MovieId,
    fields: &MovieFields,
) -> rusqlite::Result<()> {
    connection.prepare_cached("DELETE FROM movie_genres WHERE movie_id = ?")?.execute([id])?;
    let mut insert = connection.prepare_cached(
        "INSERT OR IGNORE INTO movie_genres (movie_id, genre, audience_rating, title_key) \
         VALUES (?, ?, ?, ?)",
    )?;
    let title_key = fold(&fields.title);
    for genre in &fields.genres {
        insert.execute(rusqlite::params![
            id,
            genre,
            f64::from(fields.audience_rating),
            title_key
        ])?;
    }
    Ok(())
}

/// The wire form of a film as written.
fn encoded(wire: &WireForm, id: MovieId, fields: &MovieFields, now: SystemTime) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(256);
    (wire.encode)(id, fields, now, &mut buffer);
    buffer
}

fn insert(
    connection: &Connection,
    wire: &WireForm,
    fields: &MovieFields,
    now: SystemTime,
) -> rusqlite::Result<MovieId> {
    let id = connection
        .prepare_cached(
            "INSERT INTO movies (title, title_key, release_year, runtime_minutes, director, \
             rating, synopsis, audience_rating, external_key, genres, update_time_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )?
        .query_row(
            rusqlite::params![
                fields.title,
                fold(&fields.title),
                fields.release_year,
                fields.runtime_minutes,
                fields.director,
                fields.rating.0,
                fields.synopsis,
                f64::from(fields.audience_rating),
                fields.external_key,
                joined_genres(fields),
                millis(now),
            ],
            |row| row.get(0),
        )?;
    // The id is in the wire form, and known only now.
    connection
        .prepare_cached("UPDATE movies SET wire = ? WHERE id = ?")?
        .execute(rusqlite::params![encoded(wire, id, fields, now), id])?;
    write_genres(connection, id, fields)?;
    Ok(id)
}

/// Returns whether a row was updated.
fn replace(
    connection: &Connection,
    wire: &WireForm,
    id: MovieId,
    fields: &MovieFields,
    now: SystemTime,
) -> rusqlite::Result<bool> {
    let updated = connection
        .prepare_cached(
            "UPDATE movies SET title = ?, title_key = ?, release_year = ?, runtime_minutes = ?, \
             director = ?, rating = ?, synopsis = ?, audience_rating = ?, external_key = ?, \
             genres = ?, update_time_ms = ?, wire = ? WHERE id = ?",
        )?
        .execute(rusqlite::params![
            fields.title,
            fold(&fields.title),
            fields.release_year,
            fields.runtime_minutes,
            fields.director,
            fields.rating.0,
            fields.synopsis,
            f64::from(fields.audience_rating),
            fields.external_key,
            joined_genres(fields),
            millis(now),
            encoded(wire, id, fields, now),
            id,
        ])?;
    if updated == 0 {
        return Ok(false);
    }
    write_genres(connection, id, fields)?;
    Ok(true)
}

fn duplicate_key(error: rusqlite::Error, fields: &MovieFields) -> StoreError {
    if is_unique_violation(&error) {
        StoreError::DuplicateKey(fields.external_key.clone().unwrap_or_default())
    } else {
        error.into()
    }
}

fn get_one(connection: &Connection, id: MovieId) -> rusqlite::Result<Option<Movie>> {
    connection
        .prepare_cached(&format!("SELECT {COLUMNS} FROM movies WHERE id = ?"))?
        .query_row([id], movie_from_row)
        .optional()
}

#[async_trait]
impl CatalogueStore for SqliteStore {
    async fn get(&self, id: MovieId) -> Result<Option<Movie>, StoreError> {
        self.read(move |connection| Ok(get_one(connection, id)?)).await
    }

    async fn get_many(&self, ids: &[MovieId]) -> Result<Vec<Movie>, StoreError> {
        let expected = ids.len();
        let ids = serde_json::to_string(ids).context("encoding ids")?;
        self.read(move |connection| {
            let mut sql = Sql::new(format!(
                "SELECT {COLUMNS} FROM movies WHERE id IN (SELECT value FROM json_each("
            ));
            sql.bind(ids).push("))");
            sql.query_movies(connection, expected)
        })
        .await
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<Movie>, StoreError> {
        let sql = Sql::listing(COLUMNS, query);
        let limit = query.limit;
        self.read(move |connection| {
            let expected = expected_rows(connection, limit)?;
            sql.query_movies(connection, expected)
        })
        .await
    }

    async fn list_wire(&self, query: &ListQuery) -> Result<WirePage, StoreError> {
        // The cursor columns come from the same rows (a second read could see a newer title).
        // In id order the id is the whole cursor: the other columns are not read at all.
        let by_id = query.order == Order::Id;
        let columns =
            if by_id { "wire, id" } else { "wire, id, title_key, release_year, audience_rating" };
        let sql = Sql::listing(columns, query);
        let limit = query.limit;
        self.read(move |connection| {
            let expected = expected_rows(connection, limit)?;
            // About 250 bytes a film; a bigger answer grows by doubling past 64 MiB.
            let mut page = WirePage {
                bytes: Vec::with_capacity((expected * 256).min(64 << 20)),
                ends: Vec::with_capacity(expected),
                last: None,
            };
            let mut last = Cursor { title_key: String::new(), year: 0, rating: 0.0, id: 0 };
            let mut statement = connection.prepare_cached(&sql.text)?;
            let mut rows = statement.query(rusqlite::params_from_iter(sql.params.iter()))?;
            while let Some(row) = rows.next()? {
                last.id = row.get(1)?;
                let ValueRef::Blob(wire) = row.get_ref(0)? else {
                    return Err(StoreError::Backend(anyhow::anyhow!(
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
    ) -> Result<Option<WireExport>, StoreError> {
        let query = ListQuery { after: None, limit: usize::MAX, ..query.clone() };
        let sql = Sql::listing("wire, id", &query);
        let whole_table = query.filter == Filter::default();
        let (size_sender, size) = oneshot::channel();
        let (chunk_sender, chunks) = mpsc::unbounded_channel();
        let (failure_sender, failure) = oneshot::channel();
        let failures = chunk_sender.clone();
        let reader = self.database.reader.clone();
        // The read goes on after the size is known, while the films are being sent; it never
        // waits for the client (the export is at most `max_bytes`), so a slow one cannot hold
        // a connection.
        tokio::spawn(async move {
            let job = reader.run(move |connection| {
                let mut exporter = Exporter { size: Some(size_sender), chunks: chunk_sender };
                if let Err(error) = exporter.run(connection, &sql, whole_table, max_bytes) {
                    exporter.fail(error);
                }
            });
            if let Err(error) = job.await {
                // The job and its senders are gone (it panicked, or the pool is closed): the
                // caller hears why here, whether it still waits for the size or reads chunks.
                if let Err(error) = failure_sender.send(error) {
                    let _ = failures.send(Err(StoreError::Backend(error)));
                }
            }
        });
        match size.await {
            Ok(Ok(Some(bytes))) => Ok(Some(WireExport { bytes, chunks })),
            Ok(Ok(None)) => Ok(None),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(StoreError::Backend(
                failure
                    .await
                    .unwrap_or_else(|_| anyhow::anyhow!("an export's read ended without a word")),
            )),
        }
    }

    async fn count(&self, filter: &Filter) -> Result<i64, StoreError> {
        let mut sql = Sql::new("SELECT COUNT(*) FROM movies");
        push_filter(&mut sql, filter);
        self.read(move |connection| {
            Ok(connection
                .prepare_cached(&sql.text)?
                .query_row(rusqlite::params_from_iter(sql.params.iter()), |row| row.get(0))?)
        })
        .await
    }

    async fn related(&self, movie: &Movie, limit: usize) -> Result<Vec<Movie>, StoreError> {
        if movie.fields.genres.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        // The best `limit` of each genre come from the genre's rating index; the best
        // `limit` of their union are the answer.
        let mut sql = Sql::new(format!("SELECT {COLUMNS} FROM movies WHERE id IN ("));
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
        self.read(move |connection| sql.query_movies(connection, limit)).await
    }

    async fn create(
        &self,
        fields: &MovieFields,
        request_id: Option<&str>,
        now: SystemTime,
    ) -> Result<(Movie, bool), StoreError> {
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
    ) -> Result<Movie, StoreError> {
        let now = stored_time(now);
        let wire = self.wire;
        self.write(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current = get_one(&transaction, id)?.ok_or(StoreError::NotFound(id))?;
            let fields = change(&current.fields).map_err(StoreError::Invalid)?;
            replace(&transaction, &wire, id, &fields, now)
                .map_err(|e| duplicate_key(e, &fields))?;
            transaction.commit()?;
            Ok(Movie { id, fields, update_time: now })
        })
        .await
    }

    async fn delete(&self, id: MovieId) -> Result<bool, StoreError> {
        self.write(move |connection| {
            Ok(connection.prepare_cached("DELETE FROM movies WHERE id = ?")?.execute([id])? > 0)
        })
        .await
    }

    async fn upsert_batch(
        &self,
        rows: &[MovieFields],
        now: SystemTime,
    ) -> Result<Vec<Upserted>, StoreError> {
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

    async fn genres(&self) -> Result<Vec<(String, i64)>, StoreError> {
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

    async fn total(&self) -> Result<i64, StoreError> {
        self.read(|connection| {
            Ok(connection.query_row("SELECT COUNT(*) FROM movies", [], |row| row.get(0))?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use videostore_proto::catalogue as pb;

    use super::*;
    use crate::{grpc::to_proto, wire::WIRE_FORM};

    async fn open(path: &std::path::Path, wire: WireForm) -> SqliteStore {
        SqliteStore::open(&format!("sqlite://{}", path.display()), wire).await.unwrap()
    }

    fn everything(order: Order, descending: bool) -> ListQuery {
        ListQuery { filter: Filter::default(), order, descending, after: None, limit: usize::MAX }
    }

    /// Every film of the listing, read in wire-form pages of `limit`, decoded.
    async fn wire_listing(
        store: &SqliteStore,
        mut query: ListQuery,
        limit: usize,
    ) -> Vec<pb::Movie> {
        query.limit = limit;
        let mut films = Vec::new();
        loop {
            let page = store.list_wire(&query).await.unwrap();
            assert_eq!(page.ends.last().copied().unwrap_or(0), page.bytes.len());
            let decoded = pb::StreamMoviesResponse::decode(page.bytes.as_slice()).unwrap();
            assert_eq!(decoded.movies.len(), page.ends.len());
            films.extend(decoded.movies);
            if page.ends.len() < limit {
                return films;
            }
            query.after = page.last;
        }
    }

    #[tokio::test]
    async fn the_wire_form_follows_every_write_and_every_encoder_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalogue.db");
        let store = open(&path, WIRE_FORM).await;
        let now = SystemTime::now();
        let seed = crate::seed::films();
        store.upsert_batch(&seed, now).await.unwrap();
        // An import that updates a film by its key, a creation, an update, a deletion.
        let mut renamed = seed[3].clone();
        renamed.title = "Renamed by import".into();
        store.upsert_batch(&[renamed], now).await.unwrap();
        let mut fresh = seed[5].clone();
        fresh.external_key = Some("fresh".into());
        let (created, _) = store.create(&fresh, None, now).await.unwrap();
        let change = |fields: &MovieFields| -> Result<MovieFields, crate::domain::Invalid> {
            Ok(MovieFields { genres: vec!["Western".into()], ..fields.clone() })
        };
        store.update(9, Box::new(change), now).await.unwrap();
        assert!(store.delete(10).await.unwrap());

        for order in [Order::Title, Order::Year, Order::Rating, Order::Id] {
            for descending in [false, true] {
                let query = everything(order, descending);
                let expected: Vec<_> =
                    store.list(&query).await.unwrap().into_iter().map(to_proto).collect();
                assert_eq!(wire_listing(&store, query.clone(), 7).await, expected, "{order:?}");
                // The same films as one export, in chunks filled to the brim.
                let (bytes, chunks) = exported(&store, &query, usize::MAX).await.unwrap();
                let (last, full) = chunks.split_last().unwrap();
                assert!(!full.is_empty() && full.iter().all(|chunk| chunk.len() == EXPORT_CHUNK));
                assert!(!last.is_empty() && last.len() <= EXPORT_CHUNK);
                let whole = chunks.concat();
                assert_eq!(whole.len(), bytes);
                let exported = pb::StreamMoviesResponse::decode(whole.as_slice()).unwrap().movies;
                assert_eq!(exported, expected, "{order:?}");
            }
        }
        assert_kept_total(&store).await;
        // A filtered export (sized by reading it) and the limits of both kinds.
        let dramas = ListQuery {
            filter: Filter { genre: Some("Drama".into()), ..Filter::default() },
            ..everything(Order::Year, true)
        };
        let expected: Vec<_> =
            store.list(&dramas).await.unwrap().into_iter().map(to_proto).collect();
        assert!(expected.len() > 10);
        let (bytes, chunks) = exported(&store, &dramas, usize::MAX).await.unwrap();
        let whole = chunks.concat();
        assert_eq!(whole.len(), bytes);
        let exported_dramas = pb::StreamMoviesResponse::decode(whole.as_slice()).unwrap().movies;
        assert_eq!(exported_dramas, expected);
        assert!(exported(&store, &dramas, bytes).await.is_some());
        assert!(exported(&store, &dramas, bytes - 1).await.is_none());
        let query = everything(Order::Title, false);
        let (bytes, _) = exported(&store, &query, usize::MAX).await.unwrap();
        assert!(exported(&store, &query, bytes).await.is_some());
        assert!(exported(&store, &query, bytes - 1).await.is_none());
        let films = wire_listing(&store, everything(Order::Id, false), 1000).await;
        assert!(films.iter().any(|film| film.title == "Renamed by import"));
        assert!(films.iter().any(|film| film.id == created.id));
        assert_eq!(films.iter().find(|film| film.id == 9).unwrap().genres, ["Western"]);
        assert!(films.iter().all(|film| film.id != 10));
        drop(store);

        // A new encoder version re-encodes every film when the store opens; the same one
        // does not.
        fn id_only(id: MovieId, _: &MovieFields, _: SystemTime, out: &mut Vec<u8>) {
            out.extend_from_slice(&id.to_le_bytes());
        }
        let store = open(&path, WireForm { version: 2, encode: id_only }).await;
        let page = store.list_wire(&everything(Order::Id, false)).await.unwrap();
        let ids: Vec<u8> = films.iter().flat_map(|film| film.id.to_le_bytes()).collect();
        assert_eq!(page.bytes, ids);
        assert_kept_total(&store).await;
        drop(store);
        let store = open(&path, WIRE_FORM).await;
        let query = everything(Order::Id, false);
        let expected: Vec<_> =
            store.list(&query).await.unwrap().into_iter().map(to_proto).collect();
        assert_eq!(wire_listing(&store, query, 1000).await, expected);
        assert_kept_total(&store).await;
    }

    /// The export of `query`: its announced size and its chunks, or `None` if over `max`.
    async fn exported(
        store: &SqliteStore,
        query: &ListQuery,
        max: usize,
    ) -> Option<(usize, Vec<Vec<u8>>)> {
        let mut export = store.export_wire(query, max).await.unwrap()?;
        let mut chunks = Vec::new();
        while let Some(chunk) = export.chunks.recv().await {
            chunks.push(chunk.unwrap());
        }
        Some((export.bytes, chunks))
    }

    /// The triggers' total of the wire forms is their sum.
    async fn assert_kept_total(store: &SqliteStore) {
        let (kept, sum): (i64, i64) = store
            .read(|connection| {
                Ok(connection.query_row(
                    "SELECT bytes, (SELECT SUM(LENGTH(wire)) FROM movies) FROM wire_bytes",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?)
            })
            .await
            .unwrap();
        assert!(sum > 0);
        assert_eq!(kept, sum);
    }
}
