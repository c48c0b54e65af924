//! A film as a row: read from one, written into `movies` and `movie_genres`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use videostore_kit::sqlite::{
    is_unique_violation,
    rusqlite::{self, Connection, OptionalExtension, Row},
};

use crate::{
    domain::{Movie, MovieFields, MovieId, Rating, fold},
    error::Error,
    store::WireForm,
};

/// Separates genres in the `genres` column; validation forbids control characters in names.
const GENRE_SEPARATOR: char = '\u{1f}';

/// The columns [`movie_from_row`] reads, in its order.
pub(super) const COLUMNS: &str = "id, title, release_year, runtime_minutes, director, rating, \
                                  synopsis, audience_rating, external_key, genres, update_time_ms";

/// `time` at the precision the database keeps (milliseconds), so what a write returns equals
/// what a later read returns.
pub(super) fn stored_time(time: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis(time).max(0) as u64)
}

pub(super) fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub(super) fn movie_from_row(row: &Row<'_>) -> rusqlite::Result<Movie> {
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

pub(super) fn insert(
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
pub(super) fn replace(
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

pub(super) fn duplicate_key(error: rusqlite::Error, fields: &MovieFields) -> Error {
    if is_unique_violation(&error) {
        Error::DuplicateExternalKey(fields.external_key.clone().unwrap_or_default())
    } else {
        error.into()
    }
}

pub(super) fn get_one(connection: &Connection, id: MovieId) -> rusqlite::Result<Option<Movie>> {
    connection
        .prepare_cached(&format!("SELECT {COLUMNS} FROM movies WHERE id = ?"))?
        .query_row([id], movie_from_row)
        .optional()
}
