//! Copies and prices for the sample films, so a new shop has stock to rent.

use videostore_kit::sample::{SAMPLE_FILMS, SplitMix64};

use crate::domain::{Inventory, MovieId};

/// Stock for sample films 1..=SAMPLE_FILMS: 1 to 6 copies, 0.99 to 4.99 a day, 7.99 to 24.99 to buy.
pub(crate) fn inventory() -> Vec<Inventory> {
    let mut rng = SplitMix64(0x5704_c0de_2026);
    (1..=SAMPLE_FILMS)
        .map(|movie_id| Inventory {
            movie_id: MovieId::new(movie_id),
            copies_owned: 1 + rng.below(6) as i32,
            currency: "EUR".to_owned(),
            rental_price_minor: 99 + 50 * rng.below(9) as i64,
            purchase_price_minor: 799 + 100 * rng.below(18) as i64,
        })
        .collect()
}
