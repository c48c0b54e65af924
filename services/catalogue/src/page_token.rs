//! ListMovies page tokens: where the next page starts, bound to the filter and order they were
//! issued for, and the listing's total as the first page counted it (so that later pages need
//! no COUNT), as URL-safe base64 of a small JSON object.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::domain::{Cursor, Invalid, MAX_TITLE_CHARS};

/// Longest token accepted: the longest one issued. Its cursor holds the last film's folded
/// title: at most [`MAX_TITLE_CHARS`] characters, each folding to at most 18 (U+FDFA's
/// compatibility decomposition is Unicode's longest) of at most 4 bytes; under 200 bytes more
/// JSON; base64 writes 4 characters for 3 bytes. (It was once 2,048, which a title of Arabic
/// ligatures outgrew: the page after that film could not be read.)
pub const MAX_TOKEN_CHARS: usize = (MAX_TITLE_CHARS * 18 * 4 + 200).div_ceil(3) * 4;

#[derive(serde::Serialize, serde::Deserialize)]
struct PageToken {
    /// Fingerprint of the filter and order the token was issued for.
    f: u64,
    /// Where the next page starts.
    c: Cursor,
    /// How many films matched when the first page was read (absent from older tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<i64>,
}

/// Where a page starts, and the listing's total if an earlier page counted it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    /// The cursor.
    pub after: Cursor,
    /// The total.
    pub total: Option<i64>,
}

/// The token for the page starting at `cursor` of the listing with this fingerprint and total.
pub fn encode(fingerprint: u64, cursor: Cursor, total: i64) -> String {
    let json = serde_json::to_vec(&PageToken { f: fingerprint, c: cursor, t: Some(total) })
        .expect("a page token always serialises");
    URL_SAFE_NO_PAD.encode(json)
}

/// Where the page of `token` starts; `None` for the first page (no token).
pub fn decode(token: &str, fingerprint: u64) -> Result<Option<Resume>, Invalid> {
    if token.is_empty() {
        return Ok(None);
    }
    let malformed = || Invalid::new("page_token is not a token this service issued");
    if token.len() > MAX_TOKEN_CHARS {
        return Err(malformed());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| malformed())?;
    let decoded: PageToken = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    if decoded.f != fingerprint {
        return Err(Invalid::new("page_token was issued for a different filter or order"));
    }
    if decoded.t.is_some_and(|total| total < 0) {
        return Err(malformed());
    }
    Ok(Some(Resume { after: decoded.c, total: decoded.t }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MovieId;

    #[test]
    fn page_token_round_trips_and_is_bound_to_its_filter() {
        let cursor = Cursor { title_key: "a".into(), year: 2000, rating: 7.5, id: MovieId::new(9) };
        let token = encode(42, cursor.clone(), 600);
        assert_eq!(decode(&token, 42).unwrap(), Some(Resume { after: cursor, total: Some(600) }));
        assert!(decode(&token, 43).unwrap_err().0.contains("different filter"));
        assert!(decode("%%%", 42).is_err());
        assert!(decode(&"A".repeat(3000), 42).is_err());
        assert_eq!(decode("", 42).unwrap(), None);
    }

    #[test]
    fn the_page_after_the_longest_folded_title_can_be_read() {
        let title = "\u{FDFA}".repeat(MAX_TITLE_CHARS);
        let title_key = crate::domain::fold(&title);
        assert_eq!(title_key.chars().count(), MAX_TITLE_CHARS * 18);
        let cursor = Cursor { title_key, year: 2000, rating: 7.5, id: MovieId::new(i64::MAX) };
        let token = encode(u64::MAX, cursor.clone(), i64::MAX);
        assert!(token.len() <= MAX_TOKEN_CHARS);
        let resume = Resume { after: cursor, total: Some(i64::MAX) };
        assert_eq!(decode(&token, u64::MAX).unwrap(), Some(resume));
    }
}
