//! Listings as SQL, for both backends: the filter, the keyset after a cursor and the order, built
//! up with their parameters. One builder, so the two backends list films the same way.

use crate::domain::{Filter, ListQuery, Order};

/// The SQL dialect a statement is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `?` placeholders; genres compared case-insensitively by the column's collation.
    Sqlite,
    /// `$n` placeholders, each cast to its type; genres compared by a lower-cased key.
    Postgres,
}

/// A parameter's value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(String),
}

impl From<i64> for Param {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<crate::domain::MovieId> for Param {
    fn from(value: crate::domain::MovieId) -> Self {
        Self::Int(value.get())
    }
}

impl From<f64> for Param {
    fn from(value: f64) -> Self {
        Self::Real(value)
    }
}

impl From<String> for Param {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

/// SQL text with its positional parameters, built up piece by piece.
#[derive(Debug)]
pub(crate) struct Sql {
    /// The statement.
    pub(crate) text: String,
    /// Its parameters, in order.
    pub(crate) params: Vec<Param>,
    dialect: Dialect,
}

impl Sql {
    /// A statement starting with `text`.
    pub(crate) fn new(dialect: Dialect, text: impl Into<String>) -> Self {
        Self { text: text.into(), params: Vec::new(), dialect }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `value`.
    pub(crate) fn bind(&mut self, value: impl Into<Param>) -> &mut Self {
        let value = value.into();
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => {
                let cast = match value {
                    Param::Int(_) => "BIGINT",
                    Param::Real(_) => "DOUBLE PRECISION",
                    Param::Text(_) => "TEXT",
                };
                self.text.push_str(&format!("${}::{cast}", self.params.len() + 1));
            }
        }
        self.params.push(value);
        self
    }

    /// A listing of `columns`: filtered, after the cursor, in order, at most `limit` rows.
    pub(crate) fn listing(dialect: Dialect, columns: &str, query: &ListQuery) -> Self {
        let mut sql = Sql::new(dialect, format!("SELECT {columns} FROM movies"));
        sql.push_filter(&query.filter);
        sql.push_keyset(query);
        sql.push(order_clause(query));
        if let Ok(limit) = i64::try_from(query.limit) {
            sql.push(" LIMIT ").bind(limit);
        }
        sql
    }

    /// ` WHERE …` keeping the films `filter` matches.
    pub(crate) fn push_filter(&mut self, filter: &Filter) {
        self.push(" WHERE 1 = 1");
        for word in &filter.words {
            self.push(" AND title_key LIKE ").bind(like_contains(word)).push(" ESCAPE '\\'");
        }
        if let Some(genre) = &filter.genre {
            match self.dialect {
                Dialect::Sqlite => {
                    self.push(" AND id IN (SELECT movie_id FROM movie_genres WHERE genre = ")
                }
                Dialect::Postgres => {
                    self.push(" AND id IN (SELECT movie_id FROM movie_genres WHERE genre_key = ")
                }
            };
            let genre = match self.dialect {
                Dialect::Sqlite => genre.clone(),
                Dialect::Postgres => genre.to_lowercase(),
            };
            self.bind(genre).push(")");
        }
        if let Some(min) = filter.min_year {
            self.push(" AND release_year >= ").bind(i64::from(min));
        }
        if let Some(max) = filter.max_year {
            self.push(" AND release_year <= ").bind(i64::from(max));
        }
    }

    fn push_keyset(&mut self, query: &ListQuery) {
        let Some(after) = &query.after else { return };
        let op = if query.descending { "<" } else { ">" };
        match query.order {
            Order::Id => {
                self.push(&format!(" AND id {op} ")).bind(after.id.get());
            }
            Order::Title => {
                self.push(&format!(" AND (title_key, id) {op} ("))
                    .bind(after.title_key.clone())
                    .push(", ")
                    .bind(after.id.get())
                    .push(")");
            }
            Order::Year | Order::Rating => {
                let (column, value) = if query.order == Order::Year {
                    ("release_year", Param::Int(i64::from(after.year)))
                } else {
                    ("audience_rating", Param::Real(after.rating))
                };
                self.push(&format!(" AND ({column} {op} "))
                    .bind(value.clone())
                    .push(&format!(" OR ({column} = "))
                    .bind(value)
                    .push(" AND (title_key, id) > (")
                    .bind(after.title_key.clone())
                    .push(", ")
                    .bind(after.id.get())
                    .push(")))");
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Cursor, MovieId};

    #[test]
    fn both_dialects_say_the_same_with_their_own_placeholders() {
        let query = ListQuery {
            filter: Filter::new("b_c", "Drama", 1990, 0).unwrap(),
            order: Order::Rating,
            descending: true,
            after: Some(Cursor {
                title_key: "m".into(),
                year: 0,
                rating: 7.5,
                id: MovieId::new(9),
            }),
            limit: 20,
        };
        let sqlite = Sql::listing(Dialect::Sqlite, "id", &query);
        let postgres = Sql::listing(Dialect::Postgres, "id", &query);
        assert_eq!(sqlite.params.len(), postgres.params.len());
        assert_eq!(sqlite.params[0], Param::Text("%b\\_c%".into()));
        assert_eq!(sqlite.params[1], Param::Text("Drama".into()));
        assert_eq!(postgres.params[1], Param::Text("drama".into()));
        assert!(sqlite.text.contains("LIMIT ?") && !sqlite.text.contains('$'));
        assert!(postgres.text.contains("LIMIT $8::BIGINT") && !postgres.text.contains('?'));
    }
}
