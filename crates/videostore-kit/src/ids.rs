//! The store's identifiers, one type each, so that a rental's id can never be passed where a
//! film's is expected.
//!
//! Every id is a positive 64-bit number assigned by a database. An id from a request is checked
//! once, by [`MovieId::parse`] and its siblings; an id read back from the database is trusted
//! ([`MovieId::new`]).

use std::fmt;

use crate::error::Invalid;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize,
            serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// An id the store assigned (read from the database, or known to exist).
            pub const fn new(value: i64) -> Self {
                Self(value)
            }

            /// An id from a request's `field`: refused unless it is a positive number.
            pub fn parse(field: &str, value: i64) -> Result<Self, Invalid> {
                if value > 0 {
                    Ok(Self(value))
                } else {
                    Err(Invalid(format!("{field} must be a positive number, not {value}")))
                }
            }

            /// The number, for the wire and the database.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        #[cfg(feature = "sqlite")]
        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.0.into())
            }
        }

        #[cfg(feature = "sqlite")]
        impl From<$name> for rusqlite::types::Value {
            fn from(id: $name) -> Self {
                Self::Integer(id.0)
            }
        }

        #[cfg(feature = "sqlite")]
        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                i64::column_result(value).map(Self)
            }
        }
    };
}

id!(
    /// A film, in the catalogue and in stock (the sample films are ids 1 to 600 in both).
    MovieId
);
id!(
    /// An account (a customer or a staff member), kept by stock.
    AccountId
);
id!(
    /// A rental.
    RentalId
);
id!(
    /// A purchase.
    PurchaseId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_requests_are_positive() {
        assert_eq!(MovieId::parse("movie_id", 42).unwrap().get(), 42);
        let zero = RentalId::parse("rental_id", 0).unwrap_err();
        assert_eq!(zero.0, "rental_id must be a positive number, not 0");
        assert!(AccountId::parse("id", -3).is_err());
        assert_eq!(MovieId::new(7).to_string(), "7");
        assert_eq!(serde_json::to_string(&MovieId::new(7)).unwrap(), "7");
    }
}
