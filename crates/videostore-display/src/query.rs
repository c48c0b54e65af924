//! The store front's filters as a URL query string, so a search can be bookmarked and shared:
//! `?q=amelie&genre=Drama&from=1990&to=2000&order=year&desc=1&page=<token>`.

/// What the store front shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorefrontQuery {
    /// Free-text title search.
    pub text: String,
    /// Genre, empty for all.
    pub genre: String,
    /// Released in or after (0: no bound).
    pub from: i32,
    /// Released in or before (0: no bound).
    pub to: i32,
    /// An order's name (see [`crate::order`]); empty is by title.
    pub order: String,
    /// Reverse order.
    pub descending: bool,
    /// Page token, empty for the first page.
    pub page: String,
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                match u8::from_str_radix(&text[index + 1..index + 3], 16) {
                    Ok(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl StorefrontQuery {
    /// Reads a query string (with or without the leading `?`). Unknown keys and malformed
    /// numbers are ignored: a hand-edited URL still opens the shop.
    pub fn parse(query: &str) -> Self {
        let mut parsed = Self::default();
        for pair in query.trim_start_matches('?').split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value);
            match key {
                "q" => parsed.text = value,
                "genre" => parsed.genre = value,
                "from" => parsed.from = value.parse().unwrap_or(0),
                "to" => parsed.to = value.parse().unwrap_or(0),
                "order" if crate::order::parse(&value).is_some() => parsed.order = value,
                "desc" => parsed.descending = value == "1" || value == "true",
                "page" => parsed.page = value,
                _ => {}
            }
        }
        parsed
    }

    /// The query string (with the leading `?`, or empty when everything is default).
    pub fn to_query_string(&self) -> String {
        let mut parts = Vec::new();
        if !self.text.is_empty() {
            parts.push(format!("q={}", encode(&self.text)));
        }
        if !self.genre.is_empty() {
            parts.push(format!("genre={}", encode(&self.genre)));
        }
        if self.from > 0 {
            parts.push(format!("from={}", self.from));
        }
        if self.to > 0 {
            parts.push(format!("to={}", self.to));
        }
        if !self.order.is_empty() && self.order != "title" {
            parts.push(format!("order={}", self.order));
        }
        if self.descending {
            parts.push("desc=1".into());
        }
        if !self.page.is_empty() {
            parts.push(format!("page={}", encode(&self.page)));
        }
        if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
    }

    /// The same filters from the first page (after any filter changes).
    pub fn first_page(mut self) -> Self {
        self.page.clear();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_filter_including_unicode() {
        let query = StorefrontQuery {
            text: "Amélie & co".into(),
            genre: "Science Fiction".into(),
            from: 1990,
            to: 2005,
            order: "year".into(),
            descending: true,
            page: "eyJmIjox+/=".into(),
        };
        let text = query.to_query_string();
        assert!(text.starts_with("?q=Am%C3%A9lie+%26+co&genre=Science+Fiction&from=1990"));
        assert_eq!(StorefrontQuery::parse(&text), query);
    }

    #[test]
    fn defaults_make_an_empty_query_and_junk_is_ignored() {
        assert_eq!(StorefrontQuery::default().to_query_string(), "");
        let parsed = StorefrontQuery::parse("?from=abc&order=price&x=1&q=%ZZ");
        assert_eq!(parsed.from, 0);
        assert_eq!(parsed.order, "");
        assert_eq!(parsed.text, "%ZZ");
    }

    #[test]
    fn changing_a_filter_starts_from_the_first_page() {
        let query = StorefrontQuery { page: "abc".into(), ..Default::default() };
        assert_eq!(query.first_page().page, "");
    }
}
