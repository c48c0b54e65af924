//! The embedded SQLite backend.
//!
//! SQLite allows one writer at a time, so writes go through a one-connection pool (they queue in
//! the pool instead of failing with SQLITE_BUSY) and reads through a pool of their own; WAL mode
//! lets the readers run while the writer commits.

use std::{
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use async_trait::async_trait;
use sqlx::{
    QueryBuilder, Row, Sqlite, SqlitePool,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
};

use super::{CatalogueStore, FieldChange, StoreError, Upserted};
use crate::domain::{Filter, ListQuery, Movie, MovieFields, MovieId, Order, Rating, fold};

/// Separates genres in the `genres` column; validation forbids control characters in names.
const GENRE_SEPARATOR: char = '\u{1f}';

const COLUMNS: &str = "id, title, release_year, runtime_minutes, director, rating, synopsis, \
                       audience_rating, external_key, genres, update_time_ms";

/// Films in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path/to/file.db`) and brings
    /// its schema up to date.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid SQLite URL {url:?}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(parent) = options.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("opening {url}"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .context("migrating the catalogue database")?;
        let readers = std::thread::available_parallelism().map_or(4, |n| n.get() * 2).max(4);
        let reader = SqlitePoolOptions::new()
            .max_connections(readers as u32)
            .connect_with(options.read_only(true))
            .await
            .with_context(|| format!("opening {url} for reading"))?;
        Ok(Self { reader, writer })
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

fn movie_from_row(row: &SqliteRow) -> Result<Movie, sqlx::Error> {
    let genres: String = row.try_get("genres")?;
    let update_ms: i64 = row.try_get("update_time_ms")?;
    let audience_rating: f64 = row.try_get("audience_rating")?;
    Ok(Movie {
        id: row.try_get("id")?,
        fields: MovieFields {
            title: row.try_get("title")?,
            release_year: row.try_get("release_year")?,
            genres: genres
                .split(GENRE_SEPARATOR)
                .filter(|genre| !genre.is_empty())
                .map(str::to_owned)
                .collect(),
            runtime_minutes: row.try_get("runtime_minutes")?,
            director: row.try_get("director")?,
            rating: Rating(row.try_get("rating")?),
            synopsis: row.try_get("synopsis")?,
            audience_rating: audience_rating as f32,
            external_key: row.try_get("external_key")?,
        },
        update_time: UNIX_EPOCH + Duration::from_millis(update_ms.max(0) as u64),
    })
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

fn push_filter(builder: &mut QueryBuilder<'_, Sqlite>, filter: &Filter) {
    builder.push(" WHERE 1 = 1");
    for word in &filter.words {
        builder.push(" AND title_key LIKE ").push_bind(like_contains(word)).push(" ESCAPE '\\'");
    }
    if let Some(genre) = &filter.genre {
        builder
            .push(" AND id IN (SELECT movie_id FROM movie_genres WHERE genre = ")
            .push_bind(genre.clone())
            .push(")");
    }
    if let Some(min) = filter.min_year {
        builder.push(" AND release_year >= ").push_bind(min);
    }
    if let Some(max) = filter.max_year {
        builder.push(" AND release_year <= ").push_bind(max);
    }
}

fn push_keyset(builder: &mut QueryBuilder<'_, Sqlite>, query: &ListQuery) {
    let Some(after) = &query.after else { return };
    match query.order {
        Order::Title => {
            let op = if query.descending { "<" } else { ">" };
            builder
                .push(format!(" AND (title_key, id) {op} ("))
                .push_bind(after.title_key.clone())
                .push(", ")
                .push_bind(after.id)
                .push(")");
        }
        Order::Year | Order::Rating => {
            let column =
                if query.order == Order::Year { "release_year" } else { "audience_rating" };
            let op = if query.descending { "<" } else { ">" };
            builder.push(format!(" AND ({column} {op} "));
            if query.order == Order::Year {
                builder.push_bind(after.year);
            } else {
                builder.push_bind(after.rating);
            }
            builder.push(format!(" OR ({column} = "));
            if query.order == Order::Year {
                builder.push_bind(after.year);
            } else {
                builder.push_bind(after.rating);
            }
            builder
                .push(" AND (title_key, id) > (")
                .push_bind(after.title_key.clone())
                .push(", ")
                .push_bind(after.id)
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

async fn write_genres(
    connection: &mut sqlx::SqliteConnection,
    id: MovieId,
    fields: &MovieFields,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM movie_genres WHERE movie_id = ?")
        .bind(id)
        .execute(&mut *connection)
        .await?;
    for genre in &fields.genres {
        sqlx::query("INSERT OR IGNORE INTO movie_genres (movie_id, genre) VALUES (?, ?)")
            .bind(id)
            .bind(genre)
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

async fn insert(
    connection: &mut sqlx::SqliteConnection,
    fields: &MovieFields,
    now: SystemTime,
) -> Result<MovieId, sqlx::Error> {
    let id: MovieId = sqlx::query_scalar(
        "INSERT INTO movies (title, title_key, release_year, runtime_minutes, director, rating, \
         synopsis, audience_rating, external_key, genres, update_time_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&fields.title)
    .bind(fold(&fields.title))
    .bind(fields.release_year)
    .bind(fields.runtime_minutes)
    .bind(&fields.director)
    .bind(fields.rating.0)
    .bind(&fields.synopsis)
    .bind(f64::from(fields.audience_rating))
    .bind(&fields.external_key)
    .bind(joined_genres(fields))
    .bind(millis(now))
    .fetch_one(&mut *connection)
    .await?;
    write_genres(connection, id, fields).await?;
    Ok(id)
}

/// Returns whether a row was updated.
async fn replace(
    connection: &mut sqlx::SqliteConnection,
    id: MovieId,
    fields: &MovieFields,
    now: SystemTime,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE movies SET title = ?, title_key = ?, release_year = ?, runtime_minutes = ?, \
         director = ?, rating = ?, synopsis = ?, audience_rating = ?, external_key = ?, \
         genres = ?, update_time_ms = ? WHERE id = ?",
    )
    .bind(&fields.title)
    .bind(fold(&fields.title))
    .bind(fields.release_year)
    .bind(fields.runtime_minutes)
    .bind(&fields.director)
    .bind(fields.rating.0)
    .bind(&fields.synopsis)
    .bind(f64::from(fields.audience_rating))
    .bind(&fields.external_key)
    .bind(joined_genres(fields))
    .bind(millis(now))
    .bind(id)
    .execute(&mut *connection)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(false);
    }
    write_genres(connection, id, fields).await?;
    Ok(true)
}

fn duplicate_key(error: sqlx::Error, fields: &MovieFields) -> StoreError {
    match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => {
            StoreError::DuplicateKey(fields.external_key.clone().unwrap_or_default())
        }
        _ => error.into(),
    }
}

#[async_trait]
impl CatalogueStore for SqliteStore {
    async fn get(&self, id: MovieId) -> Result<Option<Movie>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM movies WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(movie_from_row).transpose()?)
    }

    async fn get_many(&self, ids: &[MovieId]) -> Result<Vec<Movie>, StoreError> {
        let ids = serde_json::to_string(ids).context("encoding ids")?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM movies WHERE id IN (SELECT value FROM json_each(?))"
        ))
        .bind(ids)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(movie_from_row).collect::<Result<_, _>>()?)
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<Movie>, StoreError> {
        let mut builder = QueryBuilder::new(format!("SELECT {COLUMNS} FROM movies"));
        push_filter(&mut builder, &query.filter);
        push_keyset(&mut builder, query);
        builder.push(order_clause(query));
        builder.push(" LIMIT ").push_bind(query.limit as i64);
        let rows = builder.build().fetch_all(&self.reader).await?;
        Ok(rows.iter().map(movie_from_row).collect::<Result<_, _>>()?)
    }

    async fn count(&self, filter: &Filter) -> Result<i64, StoreError> {
        let mut builder = QueryBuilder::new("SELECT COUNT(*) FROM movies");
        push_filter(&mut builder, filter);
        Ok(builder.build_query_scalar().fetch_one(&self.reader).await?)
    }

    async fn related(&self, movie: &Movie, limit: usize) -> Result<Vec<Movie>, StoreError> {
        if movie.fields.genres.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut builder = QueryBuilder::new(format!("SELECT {COLUMNS} FROM movies WHERE id <> "));
        builder.push_bind(movie.id);
        builder.push(" AND id IN (SELECT movie_id FROM movie_genres WHERE genre IN (");
        let mut separated = builder.separated(", ");
        for genre in &movie.fields.genres {
            separated.push_bind(genre.clone());
        }
        builder.push(")) ORDER BY audience_rating DESC, title_key ASC, id ASC LIMIT ");
        builder.push_bind(limit as i64);
        let rows = builder.build().fetch_all(&self.reader).await?;
        Ok(rows.iter().map(movie_from_row).collect::<Result<_, _>>()?)
    }

    async fn create(
        &self,
        fields: &MovieFields,
        request_id: Option<&str>,
        now: SystemTime,
    ) -> Result<(Movie, bool), StoreError> {
        let now = stored_time(now);
        let mut transaction = self.writer.begin().await?;
        if let Some(request_id) = request_id {
            let earlier =
                sqlx::query(&format!("SELECT {COLUMNS} FROM movies WHERE create_request = ?"))
                    .bind(request_id)
                    .fetch_optional(&mut *transaction)
                    .await?;
            if let Some(row) = earlier {
                return Ok((movie_from_row(&row)?, false));
            }
        }
        let id = insert(&mut transaction, fields, now)
            .await
            .map_err(|error| duplicate_key(error, fields))?;
        if let Some(request_id) = request_id {
            sqlx::query("UPDATE movies SET create_request = ? WHERE id = ?")
                .bind(request_id)
                .bind(id)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        let movie = Movie { id, fields: fields.clone(), update_time: now };
        Ok((movie, true))
    }

    async fn update(
        &self,
        id: MovieId,
        change: &FieldChange,
        now: SystemTime,
    ) -> Result<Movie, StoreError> {
        let now = stored_time(now);
        let mut transaction = self.writer.begin().await?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM movies WHERE id = ?"))
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await?
            .ok_or(StoreError::NotFound(id))?;
        let current = movie_from_row(&row)?;
        let fields = change(&current.fields).map_err(StoreError::Invalid)?;
        replace(&mut transaction, id, &fields, now)
            .await
            .map_err(|error| duplicate_key(error, &fields))?;
        transaction.commit().await?;
        Ok(Movie { id, fields, update_time: now })
    }

    async fn delete(&self, id: MovieId) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM movies WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    async fn upsert_batch(
        &self,
        rows: &[MovieFields],
        now: SystemTime,
    ) -> Result<Vec<Upserted>, StoreError> {
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut transaction = self.writer.begin().await?;
        for fields in rows {
            let existing: Option<MovieId> = match &fields.external_key {
                Some(key) => {
                    sqlx::query_scalar("SELECT id FROM movies WHERE external_key = ?")
                        .bind(key)
                        .fetch_optional(&mut *transaction)
                        .await?
                }
                None => None,
            };
            let outcome = match existing {
                Some(id) => {
                    replace(&mut transaction, id, fields, now).await?;
                    Upserted::Updated(id)
                }
                None => Upserted::Created(insert(&mut transaction, fields, now).await?),
            };
            outcomes.push(outcome);
        }
        transaction.commit().await?;
        Ok(outcomes)
    }

    async fn genres(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT MIN(genre) AS name, COUNT(*) AS movies FROM movie_genres \
             GROUP BY genre ORDER BY genre",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|row| Ok((row.try_get("name")?, row.try_get("movies")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn total(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM movies").fetch_one(&self.reader).await?)
    }
}
