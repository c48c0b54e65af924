//! Plumbing shared by the catalogue, stock and aggregator servers.
//!
//! # Layout
//! - [`auth`]: signed, expiring bearer tokens (HS256 JWT) — issued by stock, verified by every
//!   service on its own, without a call to stock.
//! - [`serve`]: one listener serving gRPC (HTTP/2), gRPC-Web (HTTP/1.1) and plain HTTP routes, with
//!   CORS, standard health and server reflection, and graceful shutdown.
//! - [`error`]: canonical codes, the trait each service's error enum implements, and the one
//!   mapping to gRPC statuses and REST responses; [`error::Invalid`] for every validator.
//! - [`ids`]: the store's identifiers, one type each.
//! - [`config`]: the settings every server shares, flattened into each service's own.
//! - [`run`]: what every service's `main` does.
//! - [`shutdown`]: SIGINT/SIGTERM into a cancellation token that streaming handlers watch.
//! - [`deadline`]: the caller's `grpc-timeout`, for propagating deadlines downstream.
//! - [`telemetry`]: logs, and OpenTelemetry traces exported over OTLP (`otlp`: the exporter,
//!   which writes each batch straight into the protocol's bytes); [`trace`]: a span per call on
//!   both sides of every RPC, and trace context across the wire.
//! - [`sample`]: the sample data a new store opens with, shared by catalogue and stock.
//! - [`database`]: which backend a database URL names; [`db_metrics`]: its connections and
//!   commits on `/metrics`.
//! - `sqlite` (feature `sqlite`): the embedded database — a writer and a reader pool on
//!   blocking threads, with schema migrations.
//! - `postgres` (feature `postgres`): PostgreSQL — a connection pool, and migrations that are
//!   safe when replicas start together.
//! - [`keys`]: the token keys, from configuration or made once under the data folder.
//! - [`limits`]: who a call comes from, and rate limits per client or account.
//! - [`timeout`]: a time limit on a call's answer; [`undecodable`]: bytes that are not the
//!   request are INVALID_ARGUMENT.
//! - [`runtime`]: the servers' tokio runtime (no LIFO slot: frames leave in batches).

pub mod auth;
pub mod config;
pub mod database;
pub mod db_metrics;
pub mod deadline;
pub mod error;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod metrics;
mod otlp;
pub mod paced;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod private;
pub mod run;
pub mod runtime;
pub mod sample;
pub mod serve;
pub mod shutdown;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod streams;
pub mod telemetry;
pub mod text;
pub mod timeout;
pub mod tls;
pub mod trace;
pub mod undecodable;
