//! The storage seam. Handlers talk to [`CatalogueStore`] only; SQLite is the embedded default and
//! another backend (PostgreSQL) slots in as another implementation of the same trait.

mod cache;
mod copy;
mod listing;
mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

use std::time::SystemTime;

use async_trait::async_trait;

pub(crate) use self::{
    cache::{CacheControl, CachedStore},
    postgres::PostgresStore,
    sqlite::SqliteStore,
};
use crate::{
    domain::{Cursor, Filter, Invalid, ListQuery, Movie, MovieFields, MovieId},
    error::Error,
};

/// The outcome of one imported row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upserted {
    /// A new film was created.
    Created(MovieId),
    /// The film with the row's external key was updated.
    Updated(MovieId),
}

/// How the store keeps each film in wire form beside its row, so bulk reads copy bytes instead
/// of rebuilding every film field by field. The store treats the bytes as opaque: the gRPC layer
/// supplies the encoder, and a new `version` makes the store re-encode every film when it opens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WireForm {
    /// Bumped whenever `encode` writes something different for the same film.
    pub version: i64,
    /// Appends film `id` with these fields, last changed at the given time, to the buffer.
    pub encode: fn(MovieId, &MovieFields, SystemTime, &mut Vec<u8>),
}

/// One page of a listing in wire form.
#[derive(Debug, Default)]
pub(crate) struct WirePage {
    /// The films' stored encodings, one after another, in the order asked.
    pub bytes: Vec<u8>,
    /// Where each film's encoding ends in `bytes`.
    pub ends: Vec<usize>,
    /// The cursor just after the page's last film (`None` for an empty page). In id order only
    /// its id is read (the rest is left empty): it is a cursor for that order only.
    pub last: Option<Cursor>,
}

/// A whole listing in wire form, for a one-message export: the films' stored encodings one after
/// another, in chunks (so a big answer is neither regrown nor copied again to be sent). An
/// export of the whole catalogue arrives while it is read; a filtered one is read whole first,
/// since only its films can tell its size.
#[derive(Debug)]
pub(crate) struct WireExport {
    /// Bytes in all the chunks: the message's length, known before they arrive.
    pub bytes: usize,
    /// The encodings in the order asked; a film may continue from one chunk into the next. A
    /// failure part-way is the last item. At most [`EXPORT_BUFFER`] chunks wait in it.
    pub chunks: tokio::sync::mpsc::Receiver<Result<Vec<u8>, Error>>,
}

/// How many read chunks an export holds for a client that has not taken them yet. The read
/// waits for the client beyond that, so an unread export costs a few MiB, not the catalogue.
pub(crate) const EXPORT_BUFFER: usize = 4;

/// The read's end of an export's chunks: it holds [`EXPORT_BUFFER`] chunks for the client, and
/// gives up on a client that takes none for `EXPORT_STALL` (30 s: one that reads less than a
/// chunk, 1 MiB, in that time), so that it cannot hold a database connection and its snapshot
/// for as long as it likes.
pub(crate) type ExportSender = videostore_kit::paced::Paced<Result<Vec<u8>, Error>>;

/// A channel for an export's chunks (see [`ExportSender`]).
pub(crate) fn export_channel() -> (ExportSender, tokio::sync::mpsc::Receiver<Result<Vec<u8>, Error>>)
{
    videostore_kit::paced::channel(EXPORT_BUFFER, videostore_kit::paced::EXPORT_STALL)
}

/// A write, as announced to those who watch the catalogue (after it committed, or when its
/// outcome is unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// These films were created, changed or deleted.
    Films(std::sync::Arc<[MovieId]>),
    /// Anything may have changed.
    Everything,
}

/// Computes a film's new fields from its current ones, or says why the change is invalid.
pub(crate) type FieldChange = dyn Fn(&MovieFields) -> Result<MovieFields, Invalid> + Send + Sync;

/// Film storage.
#[async_trait]
pub(crate) trait CatalogueStore: Send + Sync + 'static {
    /// One film.
    async fn get(&self, id: MovieId) -> Result<Option<Movie>, Error>;
    /// The films with these ids that exist, in no particular order.
    async fn get_many(&self, ids: &[MovieId]) -> Result<Vec<Movie>, Error>;
    /// One page of a listing.
    async fn list(&self, query: &ListQuery) -> Result<Vec<Movie>, Error>;
    /// The same page as [`CatalogueStore::list`], as the films' stored wire form.
    async fn list_wire(&self, query: &ListQuery) -> Result<WirePage, Error>;
    /// Every film matching `query` (its `after` and `limit` are ignored) in wire form, its size
    /// and its films from one consistent snapshot; `None` if it is more than `max_bytes`.
    async fn export_wire(
        &self,
        query: &ListQuery,
        max_bytes: usize,
    ) -> Result<Option<WireExport>, Error>;
    /// How many films match.
    async fn count(&self, filter: &Filter) -> Result<i64, Error>;
    /// Films sharing a genre with `movie`, best rated first.
    async fn related(&self, movie: &Movie, limit: usize) -> Result<Vec<Movie>, Error>;
    /// Adds a film. With a request id, a second call with the same id returns the film the first
    /// one created (and `false`: nothing new was created).
    async fn create(
        &self,
        fields: &MovieFields,
        request_id: Option<&str>,
        now: SystemTime,
    ) -> Result<(Movie, bool), Error>;
    /// Reads a film, computes its new fields with `change`, and writes them, in one transaction
    /// (so concurrent partial updates cannot undo each other).
    async fn update(
        &self,
        id: MovieId,
        change: Box<FieldChange>,
        now: SystemTime,
    ) -> Result<Movie, Error>;
    /// Removes a film; false when there was none.
    async fn delete(&self, id: MovieId) -> Result<bool, Error>;
    /// Creates or updates (by external key) a batch of films in one transaction.
    async fn upsert_batch(
        &self,
        rows: &[MovieFields],
        now: SystemTime,
    ) -> Result<Vec<Upserted>, Error>;
    /// Every genre with its film count, by name.
    async fn genres(&self) -> Result<Vec<(String, i64)>, Error>;
    /// How many films there are.
    async fn total(&self) -> Result<i64, Error>;
}
