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
pub(crate) fn AvailabilityBadge(
    movie_id: i64,
    initial: Option<Availability>,
    /// Announce changes to screen readers (the film page's main badge only, not every card).
    #[prop(optional)]
    announce: bool,
) -> impl IntoView {
    let live = expect_context::<Live>();
    // The newer of what the page loaded and what the live stream sent.
    let current = Signal::derive(move || match (live.get(movie_id), initial.clone()) {
        (Some(streamed), Some(loaded)) if loaded.version > streamed.version => Some(loaded),
        (Some(streamed), _) => Some(streamed),
        (None, loaded) => loaded,
    });
    view! {
        <span
            class=move || format!("badge {}", describe(current.get().as_ref()).0)
            data-movie-id=movie_id
            aria-live=announce.then_some("polite")
            data-available=move || current.get().map(|a| a.copies_available.to_string()).unwrap_or_default()
        >
            {move || describe(current.get().as_ref()).1}
        </span>
    }
}
