//! The shared listing SQL (`store::listing`) as SQLite runs it.

use videostore_kit::sqlite::rusqlite::{self, Connection, types::Value};

use super::rows::movie_from_row;
use crate::{
    domain::{ListQuery, Movie},
    error::Error,
    store::listing::{Dialect, Param, Sql},
};

/// The SQLite value of a parameter.
fn value(param: &Param) -> Value {
    match param {
        Param::Int(value) => Value::Integer(*value),
        Param::Real(value) => Value::Real(*value),
        Param::Text(value) => Value::Text(value.clone()),
    }
}

/// A statement's parameters, as SQLite takes them.
pub(super) fn params(sql: &Sql) -> impl rusqlite::Params + '_ {
    rusqlite::params_from_iter(sql.params.iter().map(value))
}

/// A listing of `columns` (see [`Sql::listing`]).
pub(super) fn listing(columns: &str, query: &ListQuery) -> Sql {
    Sql::listing(Dialect::Sqlite, columns, query)
}

/// A statement starting with `text`.
pub(super) fn sql(text: impl Into<String>) -> Sql {
    Sql::new(Dialect::Sqlite, text)
}

/// The films `sql` yields; `expected` sizes the result up front, so a big page is not copied
/// again and again as it grows.
pub(super) fn query_movies(
    sql: &Sql,
    connection: &Connection,
    expected: usize,
) -> Result<Vec<Movie>, Error> {
    let mut statement = connection.prepare_cached(&sql.text)?;
    let mut movies = Vec::with_capacity(expected);
    for movie in statement.query_map(params(sql), movie_from_row)? {
        movies.push(movie?);
    }
    Ok(movies)
}
/// How many rows a listing of at most `limit` is likely to yield, to size its answer up front:
/// without a limit, the table's size (MAX(id) reads one b-tree edge, far less than regrowing
/// half a million films).
pub(super) fn expected_rows(connection: &Connection, limit: usize) -> rusqlite::Result<usize> {
    if limit < usize::MAX {
        return Ok(limit.min(10_000));
    }
    let max_id = connection
        .query_row("SELECT MAX(id) FROM movies", [], |row| row.get::<_, Option<i64>>(0))?;
    Ok(max_id.unwrap_or(0).clamp(0, 5_000_000) as usize)
}
