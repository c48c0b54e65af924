//! ListMovies page tokens: where the next page starts, bound to the filter and order they were
//! issued for, as URL-safe base64 of a small JSON object.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::domain::{Cursor, Invalid};

/// Longest token accepted: an issued one is well under this.
const MAX_TOKEN_CHARS: usize = 2048;

#[derive(serde::Serialize, serde::Deserialize)]
struct PageToken {
    /// Fingerprint of the filter and order the token was issued for.
    f: u64,
    /// Where the next page starts.
    c: Cursor,
}

/// The token for the page starting at `cursor` of the listing with this fingerprint.
pub(crate) fn encode(fingerprint: u64, cursor: Cursor) -> String {
    let json = serde_json::to_vec(&PageToken { f: fingerprint, c: cursor })
        .expect("a page token always serialises");
    URL_SAFE_NO_PAD.encode(json)
}

/// Where the page of `token` starts; `None` for the first page (no token).
pub(crate) fn decode(token: &str, fingerprint: u64) -> Result<Option<Cursor>, Invalid> {
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
    Ok(Some(decoded.c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MovieId;

    #[test]
    fn page_token_round_trips_and_is_bound_to_its_filter() {
        let cursor = Cursor { title_key: "a".into(), year: 2000, rating: 7.5, id: MovieId::new(9) };
        let token = encode(42, cursor.clone());
        assert_eq!(decode(&token, 42).unwrap(), Some(cursor));
        assert!(decode(&token, 43).unwrap_err().0.contains("different filter"));
        assert!(decode("%%%", 42).is_err());
        assert!(decode(&"A".repeat(3000), 42).is_err());
        assert_eq!(decode("", 42).unwrap(), None);
    }
}
