//! MPAA-style rating labels.

use videostore_proto::catalogue::MpaaRating;

/// `PG-13`, or `NR` when not rated.
pub fn label(rating: i32) -> &'static str {
    match MpaaRating::try_from(rating) {
        Ok(MpaaRating::G) => "G",
        Ok(MpaaRating::Pg) => "PG",
        Ok(MpaaRating::Pg13) => "PG-13",
        Ok(MpaaRating::R) => "R",
        Ok(MpaaRating::Nc17) => "NC-17",
        _ => "NR",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels() {
        assert_eq!(super::label(3), "PG-13");
        assert_eq!(super::label(0), "NR");
        assert_eq!(super::label(99), "NR");
    }
}
