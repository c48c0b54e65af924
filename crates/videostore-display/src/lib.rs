//! How the video store shows things to people, shared by the CLI and the browser app so both say
//! the same thing the same way.
//!
//! # Layout
//! - [`money`]: integer minor units as `3.99 EUR`.
//! - [`time`]: timestamps as dates, due dates and "overdue".
//! - [`rating`]: MPAA labels.
//! - [`facts`]: a film's known facts on one line (nothing shown for what is not known).
//! - [`order`]: listing orders by name.
//! - [`query`]: the store front's filters as a URL query string (bookmarkable searches).

pub mod facts;
pub mod money;
pub mod order;
pub mod query;
pub mod rating;
pub mod time;
