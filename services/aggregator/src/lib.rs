//! The store-front aggregator: combined views (film + availability + prices) in one round trip,
//! over gRPC, gRPC-Web and a REST/JSON facade on one port.
//!
//! # Layout
//! - [`config`]: flags and environment.
//! - [`startup`]: [`startup::Application`] binds, wires and serves.
//! - `error`: every way a call can fail, and its canonical code (gRPC and REST alike).
//! - `storefront`: the views — one catalogue call and one batched stock call each, bounded by
//!   the caller's deadline; stock failures degrade to "availability unknown".
//! - `films`: film pages kept in memory while the catalogue's WatchChanges stream is followed.
//! - `stock_batch`: stock lookups of concurrent views coalesced into shared batch calls.
//! - `grpc`: `StorefrontService` handlers.
//! - `rest`: `GET /api/movies`, `GET /api/movies/{id}` and `GET /api/movies/export`.
//! - `json_export`: the export's JSON, written straight from the catalogue's protobuf bytes.
//! - `upstream`: channels to catalogue and stock, balanced per request over their replicas.
//! - `web`: the browser app (trunk's `dist/`), with the services' addresses written in.

pub mod config;
mod error;
mod films;
mod grpc;
mod json_export;
mod rest;
pub mod startup;
mod stock_batch;
mod storefront;
mod upstream;
mod web;
