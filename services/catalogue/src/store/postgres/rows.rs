//! A film as rows: read from one, written into `movies` and `movie_genres` with its wire form.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use videostore_kit::postgres::{
    GenericClient, is_unique_violation,
    tokio_postgres::{self, Row, types::ToSql},
};

use crate::{
    domain::{Movie, MovieFields, MovieId, Rating, fold},
    error::Error,
    store::{
        WireForm,
        listing::{Param, Sql},
    },
};

/// `time` at the precision the database keeps (milliseconds).
pub(super) fn stored_time(time: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis(time).max(0) as u64)
}

pub(super) fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub(super) fn movie_from_row(row: &Row) -> Movie {
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
pub(super) fn params(sql: &Sql) -> Vec<Box<dyn ToSql + Sync + Send>> {
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

pub(super) fn borrowed(params: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|param| param.as_ref() as &(dyn ToSql + Sync)).collect()
}

pub(super) async fn query_movies(
    client: &impl GenericClient,
    sql: &Sql,
) -> Result<Vec<Movie>, Error> {
    let params = params(sql);
    let statement = client.prepare_cached(&sql.text).await?;
    Ok(client.query(&statement, &borrowed(&params)).await?.iter().map(movie_from_row).collect())
}

/// The wire form of `movie`.
pub(super) fn encoded(wire: &WireForm, movie: &Movie) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(256);
    (wire.encode)(movie.id, &movie.fields, movie.update_time, &mut buffer);
    buffer
}

/// Replaces the genre rows of film `id`.
pub(super) async fn write_genres(
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
pub(super) async fn next_id(client: &impl GenericClient) -> Result<MovieId, Error> {
    Ok(MovieId::new(client.query_one("SELECT nextval('movies_id_seq')", &[]).await?.get(0)))
}

/// Inserts `movie` (its id taken already), unless that would break a unique rule: another film
/// with its external key, or (with `request_id`) a film that request made already. False then:
/// the caller finds out which.
pub(in crate::store) async fn insert(
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
pub(super) async fn replace(
    client: &impl GenericClient,
    wire: &WireForm,
    movie: &Movie,
) -> Result<(), Error> {
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

pub(super) fn duplicate_key(error: tokio_postgres::Error, fields: &MovieFields) -> Error {
    if is_unique_violation(&error) {
        Error::DuplicateExternalKey(fields.external_key.clone().unwrap_or_default())
    } else {
        error.into()
    }
}
