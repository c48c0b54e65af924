//! Committed stock changes, fanned out to every live watcher.
//!
//! Writers publish the availability their transaction committed; each `WatchAvailability` stream
//! and rental desk subscribes. A watcher that falls too far behind is told so (`Lagged`) and
//! re-reads a snapshot instead of silently missing changes.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::domain::Availability;

/// How many changes a slow watcher may fall behind before it must resynchronise.
const BUFFERED_CHANGES: usize = 4096;

/// The fan-out of committed availability changes.
#[derive(Debug, Clone)]
pub struct AvailabilityEvents {
    sender: broadcast::Sender<Arc<Availability>>,
}

impl Default for AvailabilityEvents {
    fn default() -> Self {
        Self::new()
    }
}

impl AvailabilityEvents {
    /// A fan-out with no subscribers.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(BUFFERED_CHANGES);
        Self { sender }
    }

    /// Announces a committed change. Having no watchers is fine.
    pub fn publish(&self, availability: Availability) {
        let _ = self.sender.send(Arc::new(availability));
    }

    /// A receiver of every change published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Availability>> {
        self.sender.subscribe()
    }

    /// How many watchers are subscribed.
    pub fn watchers(&self) -> usize {
        self.sender.receiver_count()
    }
}
