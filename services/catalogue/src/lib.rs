//! The film catalogue service.
//!
//! # Layout
//! - [`config`]: flags and environment.
//! - [`startup`]: [`startup::Application`] binds, wires and serves.
//! - `grpc`: the handlers; with `wire`, the only modules that touch prost types.
//! - `wire`: StreamMovies and ExportMovies served from the films' stored wire form.
//! - [`domain`]: films, validation rules, search folding, page cursors.
//! - [`store`]: the storage trait and its SQLite implementation.
//! - [`seed`]: the deterministic sample films of a new store.

pub mod config;
pub mod domain;
mod grpc;
pub mod seed;
pub mod startup;
pub mod store;
mod wire;
