//! What the fuzz targets check. Each check takes arbitrary bytes, feeds them to one piece of
//! the store that reads outside input, and panics when that piece panics or breaks a promise
//! it makes (a validated value must validate again to itself, an issued page token must read
//! back, a token edited by one byte must be refused).
//!
//! `fuzz/` holds the cargo-fuzz targets (nightly, libFuzzer) that call these; `cargo xtask
//! fuzz` runs them. This crate builds on stable so that `tests/replay.rs` runs every seed and
//! every input that once broke a check (`fuzz/regressions/<target>/`) in the ordinary tests.

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arbitrary::{Result, Unstructured};
use catalogue::{
    domain::{Cursor, Filter, MAX_GENRES, MAX_SEARCH_WORDS, MAX_TITLE_CHARS, MovieId, RawMovie},
    page_token::{self, Resume},
};
use videostore_kit::{
    auth::{Caller, KeyPairPem, Role, TokenKeys, TokenSigner},
    ids::AccountId,
    text::hidden_character,
};

/// A check: panics when the input breaks a promise.
pub type Check = fn(&[u8]);

/// Every check, by the name of its fuzz target.
pub const TARGETS: &[(&str, Check)] = &[
    ("import_json", import_json),
    ("import_csv", import_csv),
    ("movie", movie),
    ("search", search),
    ("account", account),
    ("page_token", page_token),
    ("tokens", tokens),
];

/// A fixed "now" (2025-06-01), so that a replayed input is judged as it was when found.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_748_736_000)
}

/// `movies import` of a JSON file: the reader, then the catalogue's checks of each film.
pub fn import_json(data: &[u8]) {
    import(data, false);
}

/// `movies import` of a CSV file: the reader, then the catalogue's checks of each film.
pub fn import_csv(data: &[u8]) {
    import(data, true);
}

fn import(data: &[u8], csv: bool) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(rows) = videostore_cli::rows::parse(text, csv) else { return };
    for (index, (row, parsed)) in rows.into_iter().enumerate() {
        assert_eq!(row, index + 1, "rows are numbered from 1 in file order");
        match parsed {
            Ok(movie) => check_movie(RawMovie::from(&movie)),
            Err(reason) => assert!(!reason.is_empty(), "a rejected row says why"),
        }
    }
}

/// CreateMovie / UpdateMovie / ImportMovies: a film's fields as any client may send them.
pub fn movie(data: &[u8]) {
    if let Ok(raw) = arbitrary_movie(&mut Unstructured::new(data)) {
        check_movie(raw);
    }
}

fn arbitrary_movie(u: &mut Unstructured<'_>) -> Result<RawMovie> {
    let genres = (0..u.int_in_range(0..=MAX_GENRES + 1)?)
        .map(|_| u.arbitrary::<String>())
        .collect::<Result<_>>()?;
    Ok(RawMovie {
        title: u.arbitrary()?,
        // Mostly plausible years, so that the later fields are reached.
        release_year: if u.ratio(1, 8)? { u.arbitrary()? } else { u.int_in_range(1880..=2030)? },
        genres,
        runtime_minutes: u.int_in_range(-5..=1005)?,
        director: u.arbitrary()?,
        rating: u.int_in_range(-1..=6)?,
        synopsis: u.arbitrary()?,
        audience_rating: u.arbitrary()?,
        external_key: u.arbitrary()?,
    })
}

/// A film's fields: checked without a panic; when accepted, cleaned up as promised, and
/// accepted again unchanged (an edit that sends a film back as read must not be refused).
fn check_movie(raw: RawMovie) {
    let Ok(fields) = raw.validate(now()) else { return };
    assert!(!fields.title.is_empty(), "a title is required");
    assert_eq!(fields.title.trim(), fields.title, "the title is trimmed");
    assert!(fields.title.chars().count() <= MAX_TITLE_CHARS, "the title fits its limit");
    for text in [&fields.title, &fields.director, &fields.synopsis] {
        assert_eq!(hidden_character(text), None, "no hidden characters in {text:?}");
    }
    assert!(fields.genres.len() <= MAX_GENRES, "at most {MAX_GENRES} genres");
    for (index, genre) in fields.genres.iter().enumerate() {
        assert!(
            !fields.genres[..index].iter().any(|seen| seen.eq_ignore_ascii_case(genre)),
            "genres are listed once: {:?}",
            fields.genres
        );
    }
    assert!((0.0..=10.0).contains(&fields.audience_rating), "the audience rating is 0 to 10");
    let again = RawMovie::from(&fields).validate(now());
    assert_eq!(again.as_ref(), Ok(&fields), "accepted fields are accepted again unchanged");
    // The cursor after this film must make a page token that reads back (the next page
    // after it must be reachable, however long its folded title).
    let cursor = Cursor {
        title_key: catalogue::domain::fold(&fields.title),
        year: fields.release_year,
        rating: f64::from(fields.audience_rating),
        id: MovieId::new(i64::MAX),
    };
    check_issued_page_token(u64::MAX, cursor, i64::MAX);
}

/// ListMovies' filter: search words, genre and year bounds.
pub fn search(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(query), Ok(genre), Ok(min_year), Ok(max_year)) = (
        u.arbitrary::<String>(),
        u.arbitrary::<String>(),
        u.int_in_range(-2..=10_001),
        u.int_in_range(-2..=10_001),
    ) else {
        return;
    };
    let Ok(filter) = Filter::new(&query, &genre, min_year, max_year) else { return };
    assert!(filter.words.len() <= MAX_SEARCH_WORDS, "at most {MAX_SEARCH_WORDS} words");
    assert!(filter.words.is_sorted(), "words are sorted: {:?}", filter.words);
    for (index, word) in filter.words.iter().enumerate() {
        assert!(!word.is_empty() && !word.contains(char::is_whitespace), "word {word:?}");
        for (other_index, other) in filter.words.iter().enumerate() {
            assert!(
                index == other_index || !other.contains(word.as_str()),
                "{word:?} narrows nothing next to {other:?}"
            );
        }
    }
    // Equal filters give equal fingerprints, so a page token is honoured for its own listing.
    let again = Filter::new(&query, &genre, min_year, max_year).expect("accepted once");
    assert_eq!(again, filter);
}

/// Register / SignIn / rentals / SetInventory: email, name, password, request id, days,
/// currency and price checks. An accepted email is one the mail sender can address.
pub fn account(data: &[u8]) {
    use stock::domain::{
        MAX_RENTAL_DAYS, check_currency, check_days, check_email, check_name, check_password,
        check_price, check_request_id,
    };
    let mut u = Unstructured::new(data);
    let (Ok(email), Ok(name), Ok(password), Ok(request_id)) = (
        u.arbitrary::<String>(),
        u.arbitrary::<String>(),
        u.arbitrary::<String>(),
        u.arbitrary::<String>(),
    ) else {
        return;
    };
    if let Ok(clean) = check_email(&email) {
        assert_eq!(check_email(&clean).ok().as_ref(), Some(&clean), "emails settle");
        assert!(clean.contains('@') && !clean.contains(char::is_whitespace), "{clean:?}");
        assert_eq!(hidden_character(&clean), None);
    }
    if let Ok(clean) = check_name(&name) {
        assert_eq!(check_name(&clean).ok().as_ref(), Some(&clean), "names settle");
        assert_eq!(hidden_character(&clean), None);
    }
    // The password as stored must be the password as later typed: normalising twice changes
    // nothing, or a registered password could never sign in.
    if let Ok(normalized) = check_password(&password) {
        assert_eq!(check_password(&normalized).ok().as_ref(), Some(&normalized));
        assert_eq!(stock::domain::normalize_password(&password), normalized);
    }
    if let Ok(clean) = check_request_id(&request_id) {
        assert_eq!(check_request_id(&clean).ok().as_ref(), Some(&clean), "request ids settle");
    }
    // Rentals and stock: days, currencies and prices.
    let (Ok(days), Ok(currency), Ok(price)) =
        (u.arbitrary::<i32>(), u.arbitrary::<String>(), u.arbitrary::<i64>())
    else {
        return;
    };
    if let Ok(days) = check_days(days) {
        assert!((1..=MAX_RENTAL_DAYS).contains(&days), "{days}");
    }
    if let Ok(code) = check_currency(&currency) {
        assert!(code.len() == 3 && code == currency, "{currency:?} became {code:?}");
    }
    if let Ok(minor) = check_price("price", price) {
        assert!(minor >= 0 && minor == price, "{price} became {minor}");
    }
}

/// ListMovies page tokens: any text is read without a panic; one that is accepted names its
/// listing and reads back the same when issued again; every issued token reads back.
pub fn page_token(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(fingerprint) = u.arbitrary::<u64>() else { return };
    if u.arbitrary::<bool>().unwrap_or(false) {
        let Ok(cursor) = arbitrary_cursor(&mut u) else { return };
        let total = u.int_in_range(0..=i64::MAX).unwrap_or(0);
        check_issued_page_token(fingerprint, cursor, total);
        return;
    }
    let Ok(token) = u.arbitrary::<&str>() else { return };
    match page_token::decode(token, fingerprint) {
        Ok(None) => assert!(token.is_empty(), "only no token is the first page"),
        Ok(Some(resume)) => {
            assert!(resume.total.is_none_or(|total| total >= 0), "totals are never negative");
            assert!(
                page_token::decode(token, fingerprint ^ 1).is_err(),
                "a token is refused for another listing"
            );
            if let Some(total) = resume.total {
                check_issued_page_token(fingerprint, resume.after, total);
            }
        }
        Err(invalid) => assert!(!invalid.0.is_empty(), "a refusal says why"),
    }
}

fn arbitrary_cursor(u: &mut Unstructured<'_>) -> Result<Cursor> {
    let rating: f64 = u.arbitrary()?;
    Ok(Cursor {
        title_key: u.arbitrary()?,
        year: u.arbitrary()?,
        rating: if rating.is_finite() { rating } else { 0.0 },
        id: MovieId::new(u.int_in_range(1..=i64::MAX)?),
    })
}

fn check_issued_page_token(fingerprint: u64, cursor: Cursor, total: i64) {
    let token = page_token::encode(fingerprint, cursor.clone(), total);
    assert_eq!(
        page_token::decode(&token, fingerprint).ok(),
        Some(Some(Resume { after: cursor, total: Some(total) })),
        "an issued page token ({} characters) reads back",
        token.len()
    );
}

struct Tokens {
    keys: TokenKeys,
    access: String,
    refresh: String,
}

fn issued_tokens() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let pair = KeyPairPem::generate().expect("an Ed25519 key pair");
        let signer = TokenSigner::from_pem(&pair.private).expect("its private key");
        let keys = TokenKeys::new("", Some(&signer)).expect("the signer's own key");
        let caller = Caller {
            account_id: AccountId::new(7),
            email: "customer@example.com".into(),
            role: Role::Customer,
        };
        // Issued now and valid for a day: the edits below, not the clock, must refuse them.
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        Tokens {
            access: signer.issue(&caller, now, day).expect("a token").token,
            refresh: signer.issue_refresh(caller.account_id, 1, now, day).expect("a token").token,
            keys,
        }
    })
}

/// Bearer and refresh tokens: any text is refused without a panic (only stock's key signs),
/// and so is every edit of an issued token, however small.
pub fn tokens(data: &[u8]) {
    let issued = issued_tokens();
    let refused = |token: &str| {
        issued.keys.verify(token).is_err() && issued.keys.verify_refresh(token).is_err()
    };
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(
            text == issued.access || text == issued.refresh || refused(text),
            "an unsigned token was accepted: {text:?}"
        );
    }
    let mut u = Unstructured::new(data);
    let Ok(edit_refresh) = u.arbitrary::<bool>() else { return };
    let original = if edit_refresh { &issued.refresh } else { &issued.access };
    let (Ok(at), Ok(removed), Ok(inserted)) =
        (u.choose_index(original.len() + 1), u.int_in_range(0..=3usize), u.arbitrary::<&str>())
    else {
        return;
    };
    let end = (at + removed).min(original.len());
    let edited = format!("{}{inserted}{}", &original[..at], &original[end..]);
    if edited == *original {
        assert_eq!(issued.keys.verify(&edited).is_ok(), !edit_refresh, "access is access only");
        assert_eq!(issued.keys.verify_refresh(&edited).is_ok(), edit_refresh);
    } else {
        assert!(refused(&edited), "an edited token was accepted: {edited:?}");
    }
}
