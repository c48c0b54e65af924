//! Films as the catalogue understands them, and the rules a film must follow.
//!
//! Validation lives here, not in the handlers, so that create, update and import share one set of
//! rules and one set of messages.

use std::time::SystemTime;

use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};
pub use videostore_kit::{error::Invalid, ids::MovieId};

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 300;
/// Most genres per film.
pub const MAX_GENRES: usize = 10;
/// Longest genre name, in characters.
pub const MAX_GENRE_CHARS: usize = 40;
/// Longest director name, in characters.
pub const MAX_DIRECTOR_CHARS: usize = 200;
/// Longest synopsis, in characters.
pub const MAX_SYNOPSIS_CHARS: usize = 5000;
/// Longest external key, in characters.
pub const MAX_EXTERNAL_KEY_CHARS: usize = 100;
/// Longest search text, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Longest list of distinct search words (each is one more condition on every title scanned).
pub const MAX_SEARCH_WORDS: usize = 8;
/// The first film ever shown publicly was in 1888.
pub const FIRST_FILM_YEAR: i32 = 1888;
/// Longest runtime accepted, in minutes.
pub const MAX_RUNTIME_MINUTES: i32 = 1000;

/// MPAA-style rating, stored as the proto enum's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rating(pub i32);

/// The writable fields of a film, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct MovieFields {
    /// Trimmed title.
    pub title: String,
    /// Year of release.
    pub release_year: i32,
    /// Distinct genres, in the order given.
    pub genres: Vec<String>,
    /// Minutes; 0 when unknown.
    pub runtime_minutes: i32,
    /// Director, possibly empty.
    pub director: String,
    /// MPAA-style rating.
    pub rating: Rating,
    /// Plot summary.
    pub synopsis: String,
    /// 0.0 to 10.0.
    pub audience_rating: f32,
    /// Key from an external system, unique when present.
    pub external_key: Option<String>,
}

/// A stored film.
#[derive(Debug, Clone, PartialEq)]
pub struct Movie {
    /// Server-assigned id.
    pub id: MovieId,
    /// Its fields.
    pub fields: MovieFields,
    /// Last change.
    pub update_time: SystemTime,
}

/// Unvalidated film fields as they come off the wire.
#[derive(Debug, Clone, Default)]
pub struct RawMovie {
    /// Title as sent.
    pub title: String,
    /// Year as sent.
    pub release_year: i32,
    /// Genres as sent.
    pub genres: Vec<String>,
    /// Runtime as sent.
    pub runtime_minutes: i32,
    /// Director as sent.
    pub director: String,
    /// Rating number as sent.
    pub rating: i32,
    /// Synopsis as sent.
    pub synopsis: String,
    /// Audience rating as sent.
    pub audience_rating: f32,
    /// External key as sent.
    pub external_key: String,
}

/// The latest release year accepted: films are announced up to a year ahead.
pub fn latest_year(now: SystemTime) -> i32 {
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // 365.2425 days per Gregorian year; exact enough for a bound a year ahead.
    1970 + (secs as f64 / 31_556_952.0) as i32 + 1
}

fn has_control_chars(text: &str) -> bool {
    text.chars().any(char::is_control)
}

fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<String, Invalid> {
    let trimmed = value.trim();
    if required && trimmed.is_empty() {
        return Err(Invalid::new(format!("{field} is required")));
    }
    let chars = trimmed.chars().count();
    if chars > max {
        return Err(Invalid::new(format!(
            "{field} is {chars} characters long; the limit is {max}"
        )));
    }
    if let Some(hidden) = videostore_kit::text::hidden_character(trimmed) {
        return Err(Invalid::new(videostore_kit::text::hidden_character_message(field, hidden)));
    }
    Ok(trimmed.to_owned())
}

impl RawMovie {
    /// Checks every field and returns the cleaned-up values, or the first problem found.
    pub fn validate(self, now: SystemTime) -> Result<MovieFields, Invalid> {
        let title = check_text("title", &self.title, MAX_TITLE_CHARS, true)?;
        if has_control_chars(&title) {
            return Err(Invalid::new("title must not contain control characters"));
        }
        let latest = latest_year(now);
        if self.release_year == 0 {
            return Err(Invalid::new("release_year is required"));
        }
        if !(FIRST_FILM_YEAR..=latest).contains(&self.release_year) {
            return Err(Invalid::new(format!(
                "release_year {} is out of range ({FIRST_FILM_YEAR} to {latest})",
                self.release_year
            )));
        }
        if self.genres.len() > MAX_GENRES {
            return Err(Invalid::new(format!(
                "a film has at most {MAX_GENRES} genres, not {}",
                self.genres.len()
            )));
        }
        let mut genres: Vec<String> = Vec::with_capacity(self.genres.len());
        for genre in &self.genres {
            let genre = check_text("a genre", genre, MAX_GENRE_CHARS, true)?;
            if has_control_chars(&genre) {
                return Err(Invalid::new("genres must not contain control characters"));
            }
            if !genres.iter().any(|seen| seen.eq_ignore_ascii_case(&genre)) {
                genres.push(genre);
            }
        }
        if !(0..=MAX_RUNTIME_MINUTES).contains(&self.runtime_minutes) {
            return Err(Invalid::new(format!(
                "runtime_minutes {} is out of range (0 to {MAX_RUNTIME_MINUTES})",
                self.runtime_minutes
            )));
        }
        let director = check_text("director", &self.director, MAX_DIRECTOR_CHARS, false)?;
        if !(0..=5).contains(&self.rating) {
            return Err(Invalid::new(format!("rating {} is not a known MPAA rating", self.rating)));
        }
        let synopsis = check_text("synopsis", &self.synopsis, MAX_SYNOPSIS_CHARS, false)?;
        if !self.audience_rating.is_finite() || !(0.0..=10.0).contains(&self.audience_rating) {
            return Err(Invalid::new(format!(
                "audience_rating {} is out of range (0 to 10)",
                self.audience_rating
            )));
        }
        let external_key =
            check_text("external_key", &self.external_key, MAX_EXTERNAL_KEY_CHARS, false)?;
        if has_control_chars(&external_key) {
            return Err(Invalid::new("external_key must not contain control characters"));
        }
        Ok(MovieFields {
            title,
            release_year: self.release_year,
            genres,
            runtime_minutes: self.runtime_minutes,
            director,
            rating: Rating(self.rating),
            synopsis,
            audience_rating: self.audience_rating,
            external_key: (!external_key.is_empty()).then_some(external_key),
        })
    }
}

/// Folds text for search and ordering: compatibility-decomposed, accents dropped, lower case.
/// "Amélie" and "AMELIE" fold to the same key; non-Latin scripts keep their letters.
pub fn fold(text: &str) -> String {
    text.nfkd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}

/// The order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Order {
    /// By folded title, then id.
    Title,
    /// By year, then folded title, then id.
    Year,
    /// By audience rating, then folded title, then id.
    Rating,
    /// By id: the order films were added in.
    Id,
}

/// A validated film filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Filter {
    /// Folded search words; every one must appear in the folded title.
    pub words: Vec<String>,
    /// Genre name, matched case-insensitively.
    pub genre: Option<String>,
    /// Lower year bound, inclusive.
    pub min_year: Option<i32>,
    /// Upper year bound, inclusive.
    pub max_year: Option<i32>,
}

/// The folded words of a search that each narrow it: repeats go, and so does a word inside
/// another (every title with "theater" has "the"). Sorted, so word order does not matter.
fn search_words(query: &str) -> Vec<String> {
    let mut words: Vec<String> = fold(query).split_whitespace().map(str::to_owned).collect();
    words.sort();
    words.dedup();
    let all = words.clone();
    words.retain(|word| !all.iter().any(|other| other != word && other.contains(word.as_str())));
    words
}

impl Filter {
    /// Validates the wire filter.
    pub fn new(query: &str, genre: &str, min_year: i32, max_year: i32) -> Result<Self, Invalid> {
        let query = check_text("query", query, MAX_QUERY_CHARS, false)?;
        let genre = check_text("genre", genre, MAX_GENRE_CHARS, false)?;
        if min_year < 0 || max_year < 0 {
            return Err(Invalid::new("year bounds must not be negative"));
        }
        if min_year > 9999 || max_year > 9999 {
            return Err(Invalid::new("year bounds must be at most 9999"));
        }
        if min_year > 0 && max_year > 0 && min_year > max_year {
            return Err(Invalid::new(format!("min_year {min_year} is after max_year {max_year}")));
        }
        let words = search_words(&query);
        if words.len() > MAX_SEARCH_WORDS {
            return Err(Invalid::new(format!(
                "a search has at most {MAX_SEARCH_WORDS} different words, not {}",
                words.len()
            )));
        }
        Ok(Self {
            words,
            genre: (!genre.is_empty()).then_some(genre),
            min_year: (min_year > 0).then_some(min_year),
            max_year: (max_year > 0).then_some(max_year),
        })
    }

    /// A stable fingerprint, written into page tokens so a token is only used with its filter.
    pub fn fingerprint(&self, order: Order, descending: bool) -> u64 {
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for byte in bytes {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
            hash ^= 0xff;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        };
        for word in &self.words {
            feed(word.as_bytes());
        }
        feed(b"|");
        feed(self.genre.as_deref().map(str::to_lowercase).unwrap_or_default().as_bytes());
        feed(&self.min_year.unwrap_or(0).to_le_bytes());
        feed(&self.max_year.unwrap_or(0).to_le_bytes());
        feed(&[order as u8, u8::from(descending)]);
        hash
    }
}

/// Where a page starts: the sort key of the last film of the previous page.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// Folded title of the last film.
    pub title_key: String,
    /// Its year.
    pub year: i32,
    /// Its audience rating.
    pub rating: f64,
    /// Its id.
    pub id: MovieId,
}

impl Cursor {
    /// The cursor just after `movie`.
    pub fn after(movie: &Movie) -> Self {
        Self {
            title_key: fold(&movie.fields.title),
            year: movie.fields.release_year,
            rating: f64::from(movie.fields.audience_rating),
            id: movie.id,
        }
    }
}

/// A page request: filter, order and where to start.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Which films.
    pub filter: Filter,
    /// Order.
    pub order: Order,
    /// Reversed order.
    pub descending: bool,
    /// Start after this film; `None` for the first page.
    pub after: Option<Cursor>,
    /// Page size.
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> RawMovie {
        RawMovie {
            title: "  Stalker ".into(),
            release_year: 1979,
            genres: vec!["Drama".into(), "Science Fiction".into(), "drama".into()],
            runtime_minutes: 161,
            director: "Andrei Tarkovsky".into(),
            rating: 2,
            synopsis: String::new(),
            audience_rating: 8.1,
            external_key: String::new(),
        }
    }

    #[test]
    fn valid_film_is_cleaned_up() {
        let fields = good().validate(SystemTime::now()).unwrap();
        assert_eq!(fields.title, "Stalker");
        assert_eq!(fields.genres, ["Drama", "Science Fiction"]);
        assert_eq!(fields.external_key, None);
    }

    #[test]
    fn bad_fields_are_named_in_the_message() {
        let now = SystemTime::now();
        let cases: Vec<(RawMovie, &str)> = vec![
            (RawMovie { title: " ".into(), ..good() }, "title is required"),
            (RawMovie { release_year: 0, ..good() }, "release_year is required"),
            (RawMovie { release_year: 3000, ..good() }, "release_year 3000 is out of range"),
            (RawMovie { title: "x".repeat(10_000), ..good() }, "title is 10000 characters long"),
            (RawMovie { runtime_minutes: -5, ..good() }, "runtime_minutes -5"),
            (RawMovie { audience_rating: f32::NAN, ..good() }, "audience_rating"),
            (RawMovie { rating: 9, ..good() }, "rating 9"),
            (RawMovie { title: "Evil\u{202E}txt.exe".into(), ..good() }, "title must not contain"),
            (RawMovie { director: "\u{3164}".into(), ..good() }, "director must not contain"),
        ];
        for (raw, expected) in cases {
            let error = raw.validate(now).unwrap_err();
            assert!(error.0.contains(expected), "{:?} should contain {expected:?}", error.0);
        }
    }

    #[test]
    fn folding_ignores_case_and_accents_but_keeps_other_scripts() {
        assert_eq!(fold("Amélie"), fold("AMELIE"));
        assert_eq!(fold("Ça Ira"), "ca ira");
        assert_eq!(fold("Сталкер"), "сталкер");
        assert_eq!(fold("千と千尋の神隠し"), "千と千尋の神隠し");
    }

    #[test]
    fn search_words_are_deduplicated_and_capped() {
        let words = |query: &str| Filter::new(query, "", 0, 0).map(|filter| filter.words);
        assert_eq!(words("Amélie amelie AMELIE").unwrap(), ["amelie"]);
        assert_eq!(words("the Theater").unwrap(), ["theater"]);
        assert_eq!(words("river the").unwrap(), words("the river").unwrap());
        assert_eq!(words(&"a ".repeat(100)).unwrap(), ["a"]);
        assert!(words("one two three four five six seven eight").is_ok());
        let refused = words("one two three four five six seven eight nine").unwrap_err();
        assert!(refused.to_string().contains("at most 8 different words"), "{refused}");
    }

    #[test]
    fn filter_fingerprint_depends_on_every_part() {
        let a = Filter::new("star", "", 0, 0).unwrap();
        let b = Filter::new("star", "Drama", 0, 0).unwrap();
        assert_ne!(a.fingerprint(Order::Title, false), b.fingerprint(Order::Title, false));
        assert_ne!(a.fingerprint(Order::Title, false), a.fingerprint(Order::Title, true));
        assert_ne!(a.fingerprint(Order::Title, false), a.fingerprint(Order::Year, false));
        assert_eq!(a.fingerprint(Order::Title, false), a.fingerprint(Order::Title, false));
    }

    #[test]
    fn inverted_year_range_is_invalid() {
        assert!(Filter::new("", "", 2000, 1990).is_err());
    }
}
