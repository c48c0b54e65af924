//! The stock service: copies and prices, accounts, rentals, returns, late fees, purchases, and
//! live availability.
//!
//! # Layout
//! - [`config`]: flags and environment.
//! - [`startup`]: [`startup::Application`] binds, wires and serves.
//! - `grpc`: the handlers of `StockService` and `AccountService` — the only module that touches
//!   prost types.
//! - [`domain`]: money, rentals, late fees, input rules.
//! - [`store`]: the storage trait and its SQLite implementation.
//! - [`events`]: the fan-out of committed availability changes to watchers.
//! - [`passwords`]: Argon2id hashing.
//! - [`clock`]: the time source, replaceable in tests.
//! - [`seed`]: stock for the sample films.

pub mod clock;
pub mod config;
pub mod domain;
pub mod events;
mod grpc;
pub mod passwords;
pub mod seed;
pub mod startup;
pub mod store;
