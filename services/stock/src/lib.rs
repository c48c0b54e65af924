//! The stock service: copies and prices, accounts, rentals, returns, late fees, purchases, and
//! live availability.
//!
//! # Layout
//! - [`config`]: flags and environment.
//! - [`startup`]: [`startup::Application`] binds, wires and serves.
//! - `grpc`: the handlers of `StockService` and `AccountService` — read the request, check the
//!   caller, call the service, answer; `grpc::watch` and `grpc::desk` are the long streams.
//! - `service`: the operations in domain terms; every write publishes what it committed.
//! - `error`: every way a call can fail, and its canonical code.
//! - [`domain`]: money, rentals, late fees, input rules (the types the store speaks).
//! - [`store`]: the storage trait and its SQLite implementation.
//! - `events`: the fan-out of committed availability changes to watchers.
//! - `feed`: on PostgreSQL, every replica's commits, in order, from the database.
//! - `passwords`: Argon2id hashing.
//! - `mail`: registration mail, and its delivery from the outbox table.
//! - [`clock`]: the time source, replaceable in tests.
//! - `seed`: stock for the sample films.

pub mod clock;
pub mod config;
pub mod copy;
pub mod domain;
mod error;
mod events;
mod feed;
mod grpc;
mod limits;
pub mod mail;
mod passwords;
mod seed;
mod service;
pub mod startup;
pub mod store;

pub use error::Error;
