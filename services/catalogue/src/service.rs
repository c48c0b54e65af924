//! The catalogue's operations in domain terms: what each call does once its request has been
//! read and its caller checked. The gRPC layer (`grpc`, `wire`) only translates.
//!
//! Every write goes through the store's read cache, which drops what the write changed and
//! announces it to `WatchChanges` once the write has ended (see `store::cache`), so no write can
//! forget to.

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use videostore_kit::trace::InSpan as _;

use crate::{
    domain::{Cursor, ListQuery, Movie, MovieFields, MovieId},
    error::Error,
    store::{CatalogueStore, Change, FieldChange, Upserted, WireExport, WirePage},
};

/// Films read from the database per statement while streaming, whatever the message size.
pub(crate) const READ_PAGE: usize = 5000;
/// Most bytes an export in one message may have.
pub(crate) const MAX_EXPORT_BYTES: usize = 256 * 1024 * 1024;
/// Exports one process runs at once. Each holds a database connection and, when filtered, up
/// to [`MAX_EXPORT_BYTES`] of films while it is sent; more are refused (RESOURCE_EXHAUSTED)
/// rather than queued, so that exports cannot take every connection from the pages.
pub(crate) const MAX_EXPORTS: usize = 2;

/// A running export, and its place among the [`MAX_EXPORTS`]: the place is given back when the
/// export is dropped (sent, or its client gone).
#[derive(Debug)]
pub(crate) struct Export {
    /// The films.
    pub(crate) wire: WireExport,
    /// Its place among the exports running at once.
    pub(crate) place: tokio::sync::OwnedSemaphorePermit,
}

/// Searches (listings with search words) running at once: one per two cores, at least one.
/// A search looks at every title (and counts its matches on its first page), so a flood of
/// searches would otherwise hold every database reader and CPU, and a film's page would wait
/// behind it (bench abuse: GetMovie's p99 went from 0.8 to 70 ms under 32 searching callers
/// over 20,000 films). Searches beyond this wait their turn; everything else goes ahead.
fn max_searches() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get() / 2).max(1)
}

/// One page of a listing.
#[derive(Debug)]
pub(crate) struct Page {
    /// The films, in order.
    pub(crate) movies: Vec<Movie>,
    /// Where the next page starts; `None` on the last page.
    pub(crate) next: Option<Cursor>,
    /// How many films match in all.
    pub(crate) total: i64,
}

/// The catalogue's operations.
pub(crate) struct Catalogue {
    /// Where films live (behind the read cache).
    store: Arc<dyn CatalogueStore>,
    /// Committed writes, as the cache announces them.
    changes: broadcast::Sender<Change>,
    /// Places for exports running at once.
    exports: Arc<tokio::sync::Semaphore>,
    /// Places for searches running at once.
    searches: tokio::sync::Semaphore,
}

impl Catalogue {
    /// Operations over `store`, whose writes are announced on `changes`.
    pub(crate) fn new(store: Arc<dyn CatalogueStore>, changes: broadcast::Sender<Change>) -> Self {
        Self {
            store,
            changes,
            exports: Arc::new(tokio::sync::Semaphore::new(MAX_EXPORTS)),
            searches: tokio::sync::Semaphore::new(max_searches()),
        }
    }

    /// One film.
    pub(crate) async fn movie(&self, id: MovieId) -> Result<Movie, Error> {
        self.store.get(id).await?.ok_or(Error::FilmNotFound(id))
    }

    /// A film, if there is one with this id.
    pub(crate) async fn find(&self, id: MovieId) -> Result<Option<Movie>, Error> {
        self.store.get(id).await
    }

    /// A film and up to `related` films sharing a genre with it, best rated first.
    pub(crate) async fn detail(
        &self,
        id: MovieId,
        related: usize,
    ) -> Result<(Movie, Vec<Movie>), Error> {
        let movie = self.movie(id).await?;
        let related = self.store.related(&movie, related).store_span("related films").await?;
        Ok((movie, related))
    }

    /// The films with these ids, in the order asked; NOT_FOUND names the first missing one.
    pub(crate) async fn movies(&self, ids: &[MovieId]) -> Result<Vec<Movie>, Error> {
        let found: HashMap<MovieId, Movie> = self
            .store
            .get_many(ids)
            .store_span("get films")
            .await?
            .into_iter()
            .map(|movie| (movie.id, movie))
            .collect();
        ids.iter().map(|id| found.get(id).cloned().ok_or(Error::FilmNotFound(*id))).collect()
    }

    /// A page of `query.limit` films, and where the next one starts. The total is counted on
    /// the first page only; later pages are given it (`known_total`, carried in the page
    /// token), so paging through 500,000 films does not count them again at every page.
    pub(crate) async fn list(
        &self,
        query: ListQuery,
        known_total: Option<i64>,
    ) -> Result<Page, Error> {
        let _place = if query.filter.words.is_empty() {
            None
        } else {
            Some(self.searches.acquire().await.expect("the semaphore is never closed"))
        };
        let limit = query.limit;
        // One film more than asked says whether there is a next page.
        let peek = ListQuery { limit: limit + 1, ..query };
        let count = async {
            match known_total {
                Some(total) => Ok(total),
                None => self.store.count(&peek.filter).store_span("count films").await,
            }
        };
        let (mut movies, total) =
            tokio::try_join!(self.store.list(&peek).store_span("list films"), count)?;
        let next = if movies.len() > limit {
            movies.truncate(limit);
            movies.last().map(Cursor::after)
        } else {
            None
        };
        Ok(Page { movies, next, total })
    }

    /// Adds a film. With a request id, a retry returns the film the first call created.
    pub(crate) async fn create(
        &self,
        fields: MovieFields,
        request_id: Option<&str>,
    ) -> Result<Movie, Error> {
        let (created, new) = self
            .store
            .create(&fields, request_id, SystemTime::now())
            .store_span("create film")
            .await?;
        if new {
            tracing::info!(id = %created.id, title = %created.fields.title, "film created");
        }
        Ok(created)
    }

    /// Changes a film: `change` computes its new fields from its current ones, in the write's
    /// transaction.
    pub(crate) async fn update(
        &self,
        id: MovieId,
        change: Box<FieldChange>,
    ) -> Result<Movie, Error> {
        self.store.update(id, change, SystemTime::now()).store_span("update film").await
    }

    /// Removes a film.
    pub(crate) async fn delete(&self, id: MovieId) -> Result<(), Error> {
        if self.store.delete(id).store_span("delete film").await? {
            tracing::info!(%id, "film deleted");
            Ok(())
        } else {
            Err(Error::FilmNotFound(id))
        }
    }

    /// Creates or updates (by external key) a batch of checked films, in one transaction.
    pub(crate) async fn write_batch(
        &self,
        rows: Vec<MovieFields>,
        now: SystemTime,
    ) -> Result<Vec<Upserted>, Error> {
        self.store.upsert_batch(&rows, now).store_span("import films").await
    }

    /// Every genre with its film count, by name.
    pub(crate) async fn genres(&self) -> Result<Vec<(String, i64)>, Error> {
        self.store.genres().store_span("genres").await
    }

    /// Every film of `query` (its cursor aside) in wire form, read one page of `page_size`
    /// ahead of the caller, until the caller drops the receiver or `shutdown`.
    pub(crate) fn read_pages(
        &self,
        mut query: ListQuery,
        page_size: usize,
        shutdown: CancellationToken,
    ) -> mpsc::Receiver<Result<WirePage, Error>> {
        let (pages, receiver) = mpsc::channel(1);
        let store = Arc::clone(&self.store);
        query.after = None;
        query.limit = page_size;
        tokio::spawn(async move {
            loop {
                let page = tokio::select! {
                    page = store.list_wire(&query) => page,
                    () = shutdown.cancelled() => return,
                };
                let page = match page {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = pages.send(Err(error)).await;
                        return;
                    }
                };
                let last_page = page.ends.len() < page_size;
                query.after = page.last.clone();
                if pages.send(Ok(page)).await.is_err() || last_page {
                    return; // The caller left, or that was everything.
                }
            }
        });
        receiver
    }

    /// Every film of `query` in wire form, for one message of at most [`MAX_EXPORT_BYTES`];
    /// RESOURCE_EXHAUSTED while [`MAX_EXPORTS`] are running.
    pub(crate) async fn export(&self, query: &ListQuery) -> Result<Export, Error> {
        let place =
            Arc::clone(&self.exports).try_acquire_owned().map_err(|_| Error::TooManyExports)?;
        match self.store.export_wire(query, MAX_EXPORT_BYTES).await? {
            Some(wire) => Ok(Export { wire, place }),
            None => Err(Error::ExportTooBig {
                films: self.store.count(&query.filter).await?,
                max_mib: MAX_EXPORT_BYTES >> 20,
            }),
        }
    }

    /// The writes committed from now on.
    pub(crate) fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}
