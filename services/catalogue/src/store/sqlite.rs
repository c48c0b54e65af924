//! The embedded SQLite backend.
//!
//! Writes go through the single writer connection (they queue there instead of failing with
//! SQLITE_BUSY) and reads through a pool of read-only connections; WAL mode lets the readers run
//! while the writer commits. Every method is one job on one connection, so a listing of any size
//! is one statement stepped on a blocking thread.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use videostore_kit::sqlite::{
    Database, Migrations, is_unique_violation,
    rusqlite::{self, Connection, OptionalExtension, Row, TransactionBehavior, types::Value},
};

use super::{CatalogueStore, FieldChange, StoreError, Upserted};
use crate::domain::{Filter, ListQuery, Movie, MovieFields, MovieId, Order, Rating, fold};

/// The schema, one migration per file.
const MIGRATIONS: Migrations = &[
    include_str!("../../migrations/sqlite/0001_movies.sql"),
    include_str!("../../migrations/sqlite/0002_related_index.sql"),
];

/// Separates genres in the `genres` column; validation forbids control characters in names.
const GENRE_SEPARATOR: char = '\u{1f}';

/// The columns [`movie_from_row`] reads, in its order.
const COLUMNS: &str = "id, title, release_year, runtime_minutes, director, rating, synopsis, \
                       audience_rating, external_key, genres, update_time_ms";

/// Films in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    database: Database,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path/to/file.db`) and brings
    /// its schema up to date.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let database = Database::open_blocking_off(url, MIGRATIONS)
            .await
            .context("opening the catalogue database")?;
        Ok(Self { database })
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

fn insert(
    connection: &Connection,
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
    write_genres(connection, id, fields)?;
    Ok(id)
}

/// Returns whether a row was updated.
fn replace(
    connection: &Connection,
    id: MovieId,
    fields: &MovieFields,
    now: SystemTime,
) -> rusqlite::Result<bool> {
    let updated = connection
        .prepare_cached(
            "UPDATE movies SET title = ?, title_key = ?, release_year = ?, runtime_minutes = ?, \
             director = ?, rating = ?, synopsis = ?, audience_rating = ?, external_key = ?, \
             genres = ?, update_time_ms = ? WHERE id = ?",
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
        let mut sql = Sql::new(format!("SELECT {COLUMNS} FROM movies"));
        push_filter(&mut sql, &query.filter);
        push_keyset(&mut sql, query);
        sql.push(order_clause(query));
        let expected = match i64::try_from(query.limit) {
            Ok(limit) => {
                sql.push(" LIMIT ").bind(limit);
                query.limit.min(10_000)
            }
            Err(_) => 0,
        };
        self.read(move |connection| {
            // Without a limit, size the answer by the table (one cheap COUNT on the rowid
            // b-tree's header pages is far less than regrowing half a million films).
            let expected = if expected == 0 {
                connection
                    .query_row("SELECT MAX(id) FROM movies", [], |row| {
                        row.get::<_, Option<i64>>(0)
                    })?
                    .unwrap_or(0)
                    .clamp(0, 5_000_000) as usize
            } else {
                expected
            };
            sql.query_movies(connection, expected)
        })
        .await
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
            let id = insert(&transaction, &fields, now).map_err(|e| duplicate_key(e, &fields))?;
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
        self.write(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current = get_one(&transaction, id)?.ok_or(StoreError::NotFound(id))?;
            let fields = change(&current.fields).map_err(StoreError::Invalid)?;
            replace(&transaction, id, &fields, now).map_err(|e| duplicate_key(e, &fields))?;
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
                        replace(&transaction, id, fields, now)?;
                        Upserted::Updated(id)
                    }
                    None => Upserted::Created(insert(&transaction, fields, now)?),
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
