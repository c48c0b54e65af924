//! The availability badge: live from the one watch stream, else what the page loaded with.

use leptos::prelude::*;
use videostore_proto::stock::Availability;

use crate::live::Live;

/// What a badge says, and how it looks.
fn describe(availability: Option<&Availability>) -> (&'static str, String) {
    match availability {
        None => ("unknown", "Availability unknown".to_owned()),
        Some(a) if !a.stocked => ("unknown", "Not stocked".to_owned()),
        Some(a) if a.copies_available <= 0 => ("out", "Sold out".to_owned()),
        Some(a) if a.copies_available == 1 => ("low", format!("Last copy of {}", a.copies_owned)),
        Some(a) => ("ok", format!("{} of {} available", a.copies_available, a.copies_owned)),
    }
}

/// A film's availability, updating live.
#[component]
pub(crate) fn AvailabilityBadge(movie_id: i64, initial: Option<Availability>) -> impl IntoView {
    let live = expect_context::<Live>();
    let current = Signal::derive(move || live.get(movie_id).or_else(|| initial.clone()));
    view! {
        <span
            class=move || format!("badge {}", describe(current.get().as_ref()).0)
            data-movie-id=movie_id
            data-available=move || current.get().map(|a| a.copies_available.to_string()).unwrap_or_default()
            aria-live="polite"
        >
            {move || describe(current.get().as_ref()).1}
        </span>
    }
}
