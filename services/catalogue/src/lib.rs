//! The film catalogue service.
//!
//! # Layout
//! - [`config`]: flags and environment.
//! - [`startup`]: [`startup::Application`] binds, wires and serves.
//! - `grpc`: the handlers — read the request, check the caller, call the service, answer.
//! - `wire`: StreamMovies and ExportMovies answered from the films' stored wire form.
//! - `service`: the catalogue's operations in domain terms.
//! - `error`: every way a call can fail, and its canonical code.
//! - [`domain`]: films, validation rules, search folding, page cursors.
//! - `store`: the storage trait, its SQLite and PostgreSQL implementations, and the read cache
//!   in front of them.
//! - `feed`: on PostgreSQL, the other replicas' writes, which the read cache and WatchChanges
//!   follow.
//! - [`page_token`]: ListMovies page tokens (public for the fuzz targets).
//! - `seed`: the deterministic sample films of a new store.

pub mod config;
pub mod copy;
pub mod domain;
mod error;
mod feed;
mod grpc;
pub mod page_token;
mod seed;
mod service;
pub mod startup;
mod store;
mod wire;
