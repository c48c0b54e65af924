//! Listing orders by name, as people write them in a URL (`order=year`) or on the command line
//! (`--order year`).

use videostore_proto::catalogue::MovieOrder;

/// The names [`parse`] knows, in the order to list them.
pub const NAMES: [&str; 4] = ["title", "year", "rating", "id"];

/// The order called `name`; empty is by title. `None` for a name that is not an order.
pub fn parse(name: &str) -> Option<MovieOrder> {
    match name {
        "" | "title" => Some(MovieOrder::Title),
        "year" => Some(MovieOrder::Year),
        "rating" => Some(MovieOrder::Rating),
        "id" => Some(MovieOrder::Id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_and_nothing_else_does() {
        for name in NAMES {
            assert!(parse(name).is_some(), "{name}");
        }
        assert_eq!(parse(""), Some(MovieOrder::Title));
        assert_eq!(parse("year"), Some(MovieOrder::Year));
        assert_eq!(parse("Year"), None);
        assert_eq!(parse("colour"), None);
    }
}
