//! A read cache in front of any [`CatalogueStore`]: single films and film-page "related" lists,
//! the two reads every film page makes, and the number of films each filter matches, which the
//! first page of every listing shows (a COUNT over a 500,000-film catalogue each time otherwise).
//!
//! Coherence: every write through this process drops what it may have changed — the films it
//! touched and all related lists — once it has ended (an unknown outcome drops everything). On
//! SQLite this process is its database's only writer, so that is every write. On PostgreSQL the
//! other replicas' writes arrive through the feed (`crate::feed`), which drops them the same way,
//! and the cache serves and fills only while the feed is listening ([`CacheControl::set_live`]). Each write
//! runs in a task of its own, so a caller that goes away cannot stop it between its commit and
//! that bookkeeping. A read that missed fills the cache only if no write ended while it was
//! reading (an epoch counter), so a value read before a write can never be cached after it.
//! Listings and searches themselves are not cached: they go to the database.
//!
//! Each write is then announced on a broadcast channel, which feeds WatchChanges: other
//! services' caches of catalogue data follow this one.

use prometheus_client::metrics::counter::Counter;
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::SystemTime,
};

use async_trait::async_trait;
use quick_cache::sync::Cache;
use tokio::sync::broadcast;

use super::{CatalogueStore, Change, FieldChange, Upserted, WireExport, WirePage};
use crate::{
    domain::{Filter, ListQuery, Movie, MovieFields, MovieId},
    error::Error,
};

/// Films kept at most; a film is about 0.5 KB in memory.
const FILMS: usize = 20_000;
/// Related lists kept at most.
const RELATED: usize = 5_000;
/// Filters whose count is kept at most (a search made of random words takes a place until
/// evicted, never more than this in all).
const COUNTS: usize = 1_000;

/// `S` with a read cache.
pub(crate) struct CachedStore<S> {
    inner: S,
    cache: Arc<Shared>,
}

/// What the cache holds, shared with the writes' tasks and the feed.
struct Shared {
    films: Cache<MovieId, Movie>,
    related: Cache<(MovieId, usize), Arc<Vec<Movie>>>,
    /// Films matching each filter.
    counts: Cache<Filter, i64>,
    /// Every write that can change the database reaches `invalidate`: serve and fill only then.
    live: AtomicBool,
    /// Bumped (under `fill`) after every write.
    epoch: AtomicU64,
    /// Serialises cache fills with invalidations.
    fill: Mutex<()>,
    /// Film lookups answered from the cache, and those that were not (shown at `/metrics`).
    hits: Counter,
    misses: Counter,
    /// Where writes are announced.
    changes: broadcast::Sender<Change>,
}

/// The feed's hold on a cache: other replicas' writes, and whether they are heard at all.
#[derive(Clone)]
pub(crate) struct CacheControl(Arc<Shared>);

impl CacheControl {
    /// Another replica's write: forget what it changed, and announce it.
    pub(crate) fn changed(&self, change: Change) {
        self.0.invalidate(change);
    }

    /// Whether every write is heard from now on: when it changes, the cache starts over (empty)
    /// and `Everything` is announced.
    pub(crate) fn set_live(&self, live: bool) {
        {
            let _guard = self.0.lock();
            self.0.live.store(live, Ordering::Release);
        }
        self.0.invalidate(Change::Everything);
    }
}

impl<S: CatalogueStore + Clone> CachedStore<S> {
    /// Wraps `inner`, announcing every write on `changes`. With `live`, every write that can
    /// change the database goes through this store; otherwise the cache serves nothing until
    /// told ([`CacheControl::set_live`]).
    pub(crate) fn new(inner: S, changes: broadcast::Sender<Change>, live: bool) -> Self {
        let cache = Shared {
            films: Cache::new(FILMS),
            related: Cache::new(RELATED),
            counts: Cache::new(COUNTS),
            live: AtomicBool::new(live),
            epoch: AtomicU64::new(0),
            fill: Mutex::new(()),
            hits: Counter::default(),
            misses: Counter::default(),
            changes,
        };
        Self { inner, cache: Arc::new(cache) }
    }

    /// Shows the film lookups the cache answered, and those it did not, at `/metrics`.
    pub(crate) fn register_metrics(&self, metrics: &videostore_kit::metrics::Metrics) {
        let help = "Film lookups answered from the read cache";
        metrics.register("videostore_cache_hits", help, self.cache.hits.clone());
        let help = "Film lookups the read cache could not answer";
        metrics.register("videostore_cache_misses", help, self.cache.misses.clone());
    }

    /// The hold a feed of other replicas' writes has on this cache.
    pub(crate) fn control(&self) -> CacheControl {
        CacheControl(Arc::clone(&self.cache))
    }

    /// Runs `write` on the wrapped store in a task of its own, then drops and announces what
    /// `changed` says it changed (everything, if the write failed in the database).
    async fn write<T, W, F>(
        &self,
        write: W,
        changed: impl FnOnce(&T) -> Vec<MovieId> + Send + 'static,
    ) -> Result<T, Error>
    where
        W: FnOnce(S) -> F,
        F: Future<Output = Result<T, Error>> + Send + 'static,
        T: Send + 'static,
    {
        let cache = Arc::clone(&self.cache);
        let done = write(self.inner.clone());
        let task = tokio::spawn(async move {
            let result = done.await;
            let change = match &result {
                Ok(value) => Some(changed(value))
                    .filter(|films| !films.is_empty())
                    .map(|films| Change::Films(films.into())),
                // The outcome is unknown: anything may have changed.
                Err(Error::Internal(_)) => Some(Change::Everything),
                // Refused before writing anything.
                Err(_) => None,
            };
            if let Some(change) = change {
                cache.invalidate(change);
            }
            result
        });
        task.await.unwrap_or_else(|failed| {
            // The write may have committed before it panicked: trust nothing cached.
            self.cache.invalidate(Change::Everything);
            Err(Error::internal(format!("a catalogue write failed: {failed}")))
        })
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.fill.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the cache may serve.
    fn serves(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Runs `fill` only if no write has finished since `epoch` was read, and the cache is live.
    fn fill_if_current(&self, epoch: u64, fill: impl FnOnce()) {
        let _guard = self.lock();
        if self.epoch.load(Ordering::Acquire) == epoch && self.serves() {
            fill();
        }
    }

    /// After a write: forget what it changed, every related list and every count, then
    /// announce it.
    fn invalidate(&self, change: Change) {
        {
            let _guard = self.lock();
            self.epoch.fetch_add(1, Ordering::AcqRel);
            match &change {
                Change::Films(films) => {
                    for id in films.iter() {
                        self.films.remove(id);
                    }
                }
                Change::Everything => self.films.clear(),
            }
            self.related.clear();
            self.counts.clear();
        }
        // No watcher is not an error.
        let _ = self.changes.send(change);
    }
}

#[async_trait]
impl<S: CatalogueStore + Clone> CatalogueStore for CachedStore<S> {
    async fn get(&self, id: MovieId) -> Result<Option<Movie>, Error> {
        let cache = &self.cache;
        if cache.serves()
            && let Some(movie) = cache.films.get(&id)
        {
            cache.hits.inc();
            return Ok(Some(movie));
        }
        cache.misses.inc();
        let epoch = cache.epoch.load(Ordering::Acquire);
        let found = self.inner.get(id).await?;
        if let Some(movie) = &found {
            cache.fill_if_current(epoch, || cache.films.insert(id, movie.clone()));
        }
        Ok(found)
    }

    async fn get_many(&self, ids: &[MovieId]) -> Result<Vec<Movie>, Error> {
        self.inner.get_many(ids).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<Movie>, Error> {
        self.inner.list(query).await
    }

    async fn list_wire(&self, query: &ListQuery) -> Result<WirePage, Error> {
        self.inner.list_wire(query).await
    }

    async fn export_wire(
        &self,
        query: &ListQuery,
        max_bytes: usize,
    ) -> Result<Option<WireExport>, Error> {
        self.inner.export_wire(query, max_bytes).await
    }

    async fn count(&self, filter: &Filter) -> Result<i64, Error> {
        let cache = &self.cache;
        if cache.serves()
            && let Some(count) = cache.counts.get(filter)
        {
            return Ok(count);
        }
        let epoch = cache.epoch.load(Ordering::Acquire);
        let count = self.inner.count(filter).await?;
        cache.fill_if_current(epoch, || cache.counts.insert(filter.clone(), count));
        Ok(count)
    }

    async fn related(&self, movie: &Movie, limit: usize) -> Result<Vec<Movie>, Error> {
        let (cache, key) = (&self.cache, (movie.id, limit));
        if cache.serves()
            && let Some(related) = cache.related.get(&key)
        {
            return Ok(related.as_ref().clone());
        }
        let epoch = cache.epoch.load(Ordering::Acquire);
        let related = self.inner.related(movie, limit).await?;
        cache.fill_if_current(epoch, || cache.related.insert(key, Arc::new(related.clone())));
        Ok(related)
    }

    async fn create(
        &self,
        fields: &MovieFields,
        request_id: Option<&str>,
        now: SystemTime,
    ) -> Result<(Movie, bool), Error> {
        let (fields, request_id) = (fields.clone(), request_id.map(str::to_owned));
        self.write(
            move |store| async move { store.create(&fields, request_id.as_deref(), now).await },
            // A retry that found the film it made before changed nothing.
            |(movie, new)| if *new { vec![movie.id] } else { Vec::new() },
        )
        .await
    }

    async fn update(
        &self,
        id: MovieId,
        change: Box<FieldChange>,
        now: SystemTime,
    ) -> Result<Movie, Error> {
        self.write(
            move |store| async move { store.update(id, change, now).await },
            move |_| vec![id],
        )
        .await
    }

    async fn delete(&self, id: MovieId) -> Result<bool, Error> {
        self.write(
            move |store| async move { store.delete(id).await },
            move |&deleted| {
                if deleted { vec![id] } else { Vec::new() }
            },
        )
        .await
    }

    async fn upsert_batch(
        &self,
        rows: &[MovieFields],
        now: SystemTime,
    ) -> Result<Vec<Upserted>, Error> {
        let rows = rows.to_vec();
        self.write(
            move |store| async move { store.upsert_batch(&rows, now).await },
            |outcomes| {
                outcomes
                    .iter()
                    .map(|outcome| match outcome {
                        Upserted::Created(id) | Upserted::Updated(id) => *id,
                    })
                    .collect()
            },
        )
        .await
    }

    async fn genres(&self) -> Result<Vec<(String, i64)>, Error> {
        self.inner.genres().await
    }

    async fn total(&self) -> Result<i64, Error> {
        self.inner.total().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::{Invalid, Order},
        store::SqliteStore,
    };

    async fn store() -> (tempfile::TempDir, CachedStore<SqliteStore>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("catalogue.db").display());
        let inner = SqliteStore::open(&url, crate::wire::wire_form()).await.unwrap();
        inner.upsert_batch(&crate::seed::films(), SystemTime::now()).await.unwrap();
        (dir, CachedStore::new(inner, broadcast::channel(16).0, true))
    }

    /// The related films as the definition says: sharing a genre, best rated first, then by
    /// folded title and id.
    async fn related_by_definition(
        store: &CachedStore<SqliteStore>,
        movie: &Movie,
    ) -> Vec<MovieId> {
        let everything = ListQuery {
            filter: Filter::default(),
            order: Order::Rating,
            descending: true,
            after: None,
            limit: usize::MAX,
        };
        let lower = |genres: &[String]| -> Vec<String> {
            genres.iter().map(|g| g.to_lowercase()).collect()
        };
        let wanted = lower(&movie.fields.genres);
        store
            .list(&everything)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| {
                m.id != movie.id && lower(&m.fields.genres).iter().any(|g| wanted.contains(g))
            })
            .map(|m| m.id)
            .take(6)
            .collect()
    }

    #[tokio::test]
    async fn reads_after_writes_see_the_writes() {
        let (_dir, store) = store().await;
        let film = store.get(MovieId::new(7)).await.unwrap().unwrap();
        let related = store.related(&film, 6).await.unwrap();
        let ids: Vec<_> = related.iter().map(|m| m.id).collect();
        assert_eq!(ids, related_by_definition(&store, &film).await);

        // Make the last related film the best rated of all (and first by title among the best
        // rated): it must move to the front.
        let promoted = *ids.last().unwrap();
        let change = |current: &MovieFields| -> Result<MovieFields, Invalid> {
            Ok(MovieFields { audience_rating: 10.0, title: "0 promoted".into(), ..current.clone() })
        };
        store.update(promoted, Box::new(change), SystemTime::now()).await.unwrap();
        assert_eq!(store.get(promoted).await.unwrap().unwrap().fields.title, "0 promoted");
        let again = store.related(&film, 6).await.unwrap();
        assert_eq!(again[0].id, promoted);
        assert_eq!(
            again.iter().map(|m| m.id).collect::<Vec<_>>(),
            related_by_definition(&store, &film).await
        );

        assert!(store.delete(promoted).await.unwrap());
        assert!(store.get(promoted).await.unwrap().is_none());
        assert!(store.related(&film, 6).await.unwrap().iter().all(|m| m.id != promoted));
    }

    #[tokio::test]
    async fn counts_are_kept_until_a_write_through_the_cache() {
        let (_dir, store) = store().await;
        let all = Filter::default();
        let westerns = Filter { genre: Some("western".into()), ..Filter::default() };
        let films = store.count(&all).await.unwrap();
        let before = store.count(&westerns).await.unwrap();
        let western = |title: &str| MovieFields {
            title: title.into(),
            genres: vec!["Western".into()],
            external_key: None,
            ..crate::seed::films()[0].clone()
        };

        // A write the cache does not see (another process's, with no feed): the counts it
        // keeps are what it answers, so it did not count again.
        store.inner.create(&western("Unseen"), None, SystemTime::now()).await.unwrap();
        assert_eq!(store.count(&all).await.unwrap(), films);
        assert_eq!(store.count(&westerns).await.unwrap(), before);

        // A write through it: every count is read afresh, both new films in it.
        let (made, _) = store.create(&western("Seen"), None, SystemTime::now()).await.unwrap();
        assert_eq!(store.count(&all).await.unwrap(), films + 2);
        assert_eq!(store.count(&westerns).await.unwrap(), before + 2);
        assert!(store.delete(made.id).await.unwrap());
        assert_eq!(store.count(&westerns).await.unwrap(), before + 1);
    }

    #[tokio::test]
    async fn a_write_whose_caller_went_away_still_ends_in_the_cache_and_is_announced() {
        let (_dir, plain) = store().await;
        let (changes, mut announced) = broadcast::channel(16);
        let store = CachedStore::new(plain.inner.clone(), changes, true);
        assert_ne!(store.get(MovieId::new(5)).await.unwrap().unwrap().fields.title, "Renamed");

        // The caller starts the write and goes away before it ends.
        let change = |current: &MovieFields| -> Result<MovieFields, Invalid> {
            Ok(MovieFields { title: "Renamed".into(), ..current.clone() })
        };
        {
            let write = store.update(MovieId::new(5), Box::new(change), SystemTime::now());
            tokio::pin!(write);
            assert!(futures::poll!(write.as_mut()).is_pending());
        }
        // A read meanwhile may see the old film, but must not keep it past the write.
        let _ = store.get(MovieId::new(5)).await.unwrap();
        let change = tokio::time::timeout(std::time::Duration::from_secs(5), announced.recv())
            .await
            .expect("the write is announced")
            .unwrap();
        assert_eq!(change, Change::Films([MovieId::new(5)].into()));
        assert_eq!(store.get(MovieId::new(5)).await.unwrap().unwrap().fields.title, "Renamed");
    }
}
