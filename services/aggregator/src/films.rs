//! Film pages from the catalogue (a film with its related films), kept in memory while the
//! catalogue's announcements of its writes are followed.
//!
//! Coherence: a background task follows the catalogue's WatchChanges stream. The cache serves
//! only while that stream is open (from its opening message on); every announced write empties
//! it (one film's change can change any film's related list), and so does losing the stream. A
//! read that missed fills the cache only if nothing was emptied while it read (an epoch), so a
//! page read before a write is never kept past the write's announcement. A page served from
//! here is therefore at most as old as an announcement's trip from the catalogue. Stock is
//! never cached: it is asked for on every page.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use quick_cache::sync::Cache;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use videostore_proto::catalogue::{
    MovieDetail, WatchChangesRequest, catalogue_service_client::CatalogueServiceClient,
};

/// Pages kept at most (a page of seven films is a few KB).
const PAGES: usize = 4096;
/// The catalogue sends a heartbeat after 15 idle seconds; this much silence means the
/// connection is dead.
const SILENCE: Duration = Duration::from_secs(45);
/// Waits between attempts to follow the catalogue again.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// A page's key: the film and how many related films were asked for.
pub(crate) type PageKey = (i64, i32);

/// Cached film pages.
pub(crate) struct FilmPages {
    pages: Cache<PageKey, Arc<MovieDetail>>,
    /// True while the catalogue's changes are followed: only then may the cache serve or fill.
    live: AtomicBool,
    /// Bumped (under `fill`) whenever the cache is emptied.
    epoch: AtomicU64,
    /// Serialises fills with emptying.
    fill: Mutex<()>,
}

impl Default for FilmPages {
    fn default() -> Self {
        Self {
            pages: Cache::new(PAGES),
            live: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            fill: Mutex::new(()),
        }
    }
}

impl FilmPages {
    /// The cached page, while the cache is live.
    pub(crate) fn get(&self, key: &PageKey) -> Option<Arc<MovieDetail>> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        self.pages.get(key)
    }

    /// Before reading a page that missed: a ticket to fill it with, while the cache is live.
    pub(crate) fn ticket(&self) -> Option<u64> {
        let epoch = self.epoch.load(Ordering::Acquire);
        self.live.load(Ordering::Acquire).then_some(epoch)
    }

    /// Keeps a page read with `ticket`, unless the cache was emptied since.
    pub(crate) fn fill(&self, ticket: u64, key: PageKey, page: Arc<MovieDetail>) {
        let _guard = self.fill.lock().unwrap_or_else(PoisonError::into_inner);
        if self.live.load(Ordering::Acquire) && self.epoch.load(Ordering::Acquire) == ticket {
            self.pages.insert(key, page);
        }
    }

    /// Forgets every page, and serves from now on only if `live`.
    fn reset(&self, live: bool) {
        let _guard = self.fill.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.live.store(live, Ordering::Release);
        self.pages.clear();
    }

    /// Follows the catalogue's changes until `shutdown`, reconnecting when the stream is lost.
    pub(crate) async fn follow(self: Arc<Self>, catalogue: Channel, shutdown: CancellationToken) {
        let mut client = CatalogueServiceClient::new(catalogue);
        let mut retry = FIRST_RETRY;
        loop {
            let opened = tokio::select! {
                opened = self.follow_once(&mut client) => opened,
                () = shutdown.cancelled() => false,
            };
            self.reset(false);
            if opened {
                tracing::warn!(
                    "lost the catalogue's change stream: film pages uncached until it is back"
                );
                retry = FIRST_RETRY;
            }
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                () = shutdown.cancelled() => return,
            }
            retry = (retry * 2).min(LAST_RETRY);
        }
    }

    /// One WatchChanges stream, until it ends or falls silent; whether it opened.
    async fn follow_once(&self, client: &mut CatalogueServiceClient<Channel>) -> bool {
        let Ok(response) = client.watch_changes(WatchChangesRequest {}).await else {
            return false;
        };
        let mut changes = response.into_inner();
        let mut opened = false;
        loop {
            match tokio::time::timeout(SILENCE, changes.message()).await {
                Ok(Ok(Some(change))) => {
                    if !opened {
                        // Every write from here on will be announced: the cache may serve.
                        opened = true;
                        self.reset(true);
                        tracing::info!("following the catalogue's changes: film pages cached");
                    } else if change.everything || !change.movie_ids.is_empty() {
                        self.reset(true);
                    }
                }
                Ok(Ok(None) | Err(_)) | Err(_) => return opened,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(title: &str) -> Arc<MovieDetail> {
        Arc::new(MovieDetail {
            movie: Some(videostore_proto::catalogue::Movie {
                title: title.into(),
                ..Default::default()
            }),
            related: Vec::new(),
        })
    }

    #[test]
    fn serves_only_while_live_and_never_keeps_a_page_read_before_a_reset() {
        let pages = FilmPages::default();
        // Not following the catalogue: nothing is kept.
        assert_eq!(pages.ticket(), None);
        pages.fill(0, (1, 0), page("a"));
        assert!(pages.get(&(1, 0)).is_none());

        pages.reset(true);
        let ticket = pages.ticket().unwrap();
        pages.fill(ticket, (1, 0), page("a"));
        assert_eq!(pages.get(&(1, 0)).unwrap().movie.as_ref().unwrap().title, "a");

        // A write is announced while a page is being read: that page is not kept.
        let ticket = pages.ticket().unwrap();
        pages.reset(true);
        pages.fill(ticket, (2, 0), page("stale"));
        assert!(pages.get(&(2, 0)).is_none());
        assert!(pages.get(&(1, 0)).is_none(), "the announcement emptied the cache");

        // The stream is lost: nothing is served.
        let ticket = pages.ticket().unwrap();
        pages.fill(ticket, (3, 0), page("c"));
        pages.reset(false);
        assert!(pages.get(&(3, 0)).is_none());
        assert_eq!(pages.ticket(), None);
    }
}
