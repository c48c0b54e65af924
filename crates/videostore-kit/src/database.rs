//! Which database a service's URL names: the embedded SQLite file (one process per database) or
//! PostgreSQL (any number of replicas).

/// A database backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://path/to/file.db`: the embedded default.
    Sqlite,
    /// `postgres://user@host:port/database` (or `postgresql://`).
    Postgres,
}

impl Backend {
    /// The backend `url` names; anything but the two schemes is refused, so that a typo is a
    /// clear startup error rather than a file of that name.
    pub fn of(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            let shown = redact(url);
            anyhow::bail!(
                "the database URL {shown:?} must start with sqlite:// (the embedded database) or \
                 postgres:// (PostgreSQL)"
            )
        }
    }
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(
            redact("postgres://shop:s3cret@db:5432/videostore"),
            "postgres://shop:***@db:5432/videostore"
        );
        assert_eq!(redact("postgres://shop@db/videostore"), "postgres://shop@db/videostore");
        assert_eq!(redact("postgres:///videostore"), "postgres:///videostore");
    }

    #[test]
    fn urls_name_their_backend_or_are_refused() {
        assert_eq!(Backend::of("sqlite://data/stock.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("postgres://shop@db/videostore").unwrap(), Backend::Postgres);
        assert_eq!(Backend::of("postgresql://shop@db/videostore").unwrap(), Backend::Postgres);
        for wrong in ["data/stock.db", "mysql://db/shop", "postgres:/db", ""] {
            let error = Backend::of(wrong).unwrap_err().to_string();
            assert!(error.contains("must start with sqlite://"), "{wrong}: {error}");
        }
        let hidden = Backend::of("mysql://shop:s3cret@db/shop").unwrap_err().to_string();
        assert!(!hidden.contains("s3cret"), "{hidden}");
    }
}
