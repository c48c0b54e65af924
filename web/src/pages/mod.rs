//! One module per page.

pub(crate) mod account;
pub(crate) mod movie;
pub(crate) mod rentals;
pub(crate) mod staff;
pub(crate) mod storefront;
