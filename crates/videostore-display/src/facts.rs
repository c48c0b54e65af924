//! A film's facts on one line (`2001 · PG-13 · 98 min · ★ 4.8`), leaving out what is not known:
//! a runtime or an audience rating of 0 is "not known", not a fact, and no genres leave no
//! dangling separator.

use videostore_proto::catalogue::Movie;

use crate::rating;

/// `98 min`, or nothing when the runtime is not known (0).
pub fn runtime(minutes: i32) -> Option<String> {
    (minutes > 0).then(|| format!("{minutes} min"))
}

/// `★ 4.8`, or nothing when no audience rating is known (0).
pub fn stars(audience_rating: f32) -> Option<String> {
    (audience_rating > 0.0).then(|| format!("★ {audience_rating:.1}"))
}

/// `Drama, Comedy`, or nothing.
pub fn genres(genres: &[String]) -> Option<String> {
    (!genres.is_empty()).then(|| genres.join(", "))
}

/// The known parts, joined by ` · `.
pub fn joined(parts: impl IntoIterator<Item = Option<String>>) -> String {
    parts.into_iter().flatten().collect::<Vec<_>>().join(" · ")
}

/// Year, rating, runtime and stars: a film page's line.
pub fn full(movie: &Movie) -> String {
    joined([
        Some(movie.release_year.to_string()),
        Some(rating::label(movie.rating).to_owned()),
        runtime(movie.runtime_minutes),
        stars(movie.audience_rating),
    ])
}

/// Year, rating and genres: a card's line.
pub fn card(movie: &Movie) -> String {
    joined([
        Some(movie.release_year.to_string()),
        Some(rating::label(movie.rating).to_owned()),
        genres(&movie.genres),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn film(runtime_minutes: i32, audience_rating: f32, genres: &[&str]) -> Movie {
        Movie {
            release_year: 2001,
            rating: 3,
            runtime_minutes,
            audience_rating,
            genres: genres.iter().map(|g| (*g).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn known_facts_are_shown_and_unknown_ones_left_out() {
        assert_eq!(full(&film(98, 4.8, &["Drama"])), "2001 · PG-13 · 98 min · ★ 4.8");
        assert_eq!(full(&film(0, 0.0, &[])), "2001 · PG-13");
        assert_eq!(card(&film(98, 4.8, &["Drama", "Comedy"])), "2001 · PG-13 · Drama, Comedy");
        assert_eq!(card(&film(98, 4.8, &[])), "2001 · PG-13");
        assert_eq!(stars(0.0), None);
        assert_eq!(runtime(0), None);
    }
}
