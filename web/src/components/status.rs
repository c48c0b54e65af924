//! Loading and error messages.

use leptos::prelude::*;

/// The state of a call a page is waiting on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Load<T> {
    /// Not asked yet, or asked again.
    Loading,
    /// Here it is.
    Ready(T),
    /// It failed, with a message for a person.
    Failed(String),
}

/// "Loading…", announced to screen readers.
#[component]
pub(crate) fn Loading(#[prop(into)] what: String) -> impl IntoView {
    view! { <p class="status info" role="status" aria-busy="true">{format!("Loading {what}…")}</p> }
}

/// An error message, announced to screen readers.
#[component]
pub(crate) fn ErrorMessage(#[prop(into)] message: String) -> impl IntoView {
    view! { <p class="status error" role="alert">{message}</p> }
}
