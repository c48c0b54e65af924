//! Committed stock changes, fanned out to every live watcher, and the latest of each kept for
//! reads.
//!
//! Writers publish the availability their transaction committed; each `WatchAvailability` stream
//! and rental desk subscribes. A watcher that falls too far behind is told so (`Lagged`) and
//! re-reads a snapshot instead of silently missing changes.
//!
//! The same committed values answer availability reads ([`AvailabilityEvents::latest`]): every
//! write that changes a film's stock publishes it, and a value only ever replaces an older
//! version, so a read that raced a write (and read the row before it) can never overwrite what
//! the write published. Films nobody has read or changed are not held.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::broadcast;

use crate::domain::{Availability, MovieId};

/// How many changes a slow watcher may fall behind before it must resynchronise.
const BUFFERED_CHANGES: usize = 4096;

/// The fan-out of committed availability changes.
#[derive(Debug, Clone)]
pub(crate) struct AvailabilityEvents {
    sender: broadcast::Sender<Arc<Availability>>,
    latest: Arc<RwLock<HashMap<MovieId, Arc<Availability>>>>,
    /// How many changes have been published: counted before each is sent, so a watcher told
    /// it missed changes can read here a count that includes them.
    published: Arc<AtomicU64>,
}

impl Default for AvailabilityEvents {
    fn default() -> Self {
        Self::new()
    }
}

impl AvailabilityEvents {
    /// A fan-out with no subscribers.
    pub(crate) fn new() -> Self {
        Self::with_capacity(BUFFERED_CHANGES)
    }

    /// A fan-out where a watcher may fall `capacity` changes behind.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity);
        Self { sender, latest: Arc::default(), published: Arc::default() }
    }

    /// Announces a committed change. Having no watchers is fine.
    pub(crate) fn publish(&self, availability: Availability) {
        let availability = Arc::new(availability);
        self.remember_shared(&availability);
        self.published.fetch_add(1, Ordering::SeqCst);
        let _ = self.sender.send(availability);
    }

    /// How many changes have been published so far.
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }

    /// Keeps `availability`, read from the database, unless a newer version is known.
    pub(crate) fn remember(&self, availability: Arc<Availability>) {
        self.remember_shared(&availability);
    }

    fn remember_shared(&self, availability: &Arc<Availability>) {
        let mut latest = self.latest.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let newer = latest
            .get(&availability.movie_id)
            .is_none_or(|known| known.version < availability.version);
        if newer {
            latest.insert(availability.movie_id, Arc::clone(availability));
        }
    }

    /// The latest committed stock of each of `ids` that is known here (`None` where the
    /// database must be asked).
    pub(crate) fn latest(&self, ids: &[MovieId]) -> Vec<Option<Arc<Availability>>> {
        let latest = self.latest.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        ids.iter().map(|id| latest.get(id).cloned()).collect()
    }

    /// A receiver of every change published from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Availability>> {
        self.sender.subscribe()
    }
}
