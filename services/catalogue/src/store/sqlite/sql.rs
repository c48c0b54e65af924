//! Listings as SQL: the filter, the keyset after a cursor and the order, built up with their
//! parameters.

use videostore_kit::sqlite::rusqlite::{self, Connection, types::Value};

use super::rows::movie_from_row;
use crate::{
    domain::{Filter, ListQuery, Movie, Order},
    error::Error,
};

/// SQL text with its positional parameters, built up piece by piece.
#[derive(Default)]
pub(super) struct Sql {
    pub(super) text: String,
    pub(super) params: Vec<Value>,
}

impl Sql {
    pub(super) fn new(text: impl Into<String>) -> Self {
        Self { text: text.into(), params: Vec::new() }
    }

    pub(super) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    pub(super) fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.text.push('?');
        self.params.push(value.into());
        self
    }

    /// A listing of `columns`: filtered, after the cursor, in order, at most `limit` rows.
    pub(super) fn listing(columns: &str, query: &ListQuery) -> Self {
        let mut sql = Sql::new(format!("SELECT {columns} FROM movies"));
        push_filter(&mut sql, &query.filter);
        push_keyset(&mut sql, query);
        sql.push(order_clause(query));
        if let Ok(limit) = i64::try_from(query.limit) {
            sql.push(" LIMIT ").bind(limit);
        }
        sql
    }

    /// The films the statement yields; `expected` sizes the result up front, so a big page is
    /// not copied again and again as it grows.
    pub(super) fn query_movies(
        &self,
        connection: &Connection,
        expected: usize,
    ) -> Result<Vec<Movie>, Error> {
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

pub(super) fn push_filter(sql: &mut Sql, filter: &Filter) {
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
