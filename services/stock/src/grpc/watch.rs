//! WatchAvailability: the watched films' current stock, then every committed change to them,
//! a heartbeat when idle, and UNAVAILABLE at shutdown.
//!
//! Changes are published after their commit, so two commits may be announced out of order; the
//! per-film version drops anything older than what the client already has. A watcher that fell
//! too far behind is sent a fresh snapshot instead of the changes it missed. Watchers of every
//! film that fall behind in one burst share one read of the whole stock ([`LagSnapshots`]):
//! a thousand slow clients cost one scan, not a thousand.

use std::{
    collections::{HashMap, VecDeque},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use prometheus_client::metrics::counter::Counter;

use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::Status;
use videostore_proto::stock as pb;

use super::convert::{availability_to_proto, stock_to_proto};
use crate::{
    domain::{Availability, MovieId},
    error::Error,
    service::Stock,
};

/// Films per snapshot message of a watch on every film, and most changes in one message.
const SNAPSHOT_CHUNK: usize = 1000;

/// How long a shared snapshot is kept for watchers that fall behind later in the same burst.
const SHARED_SNAPSHOT_KEPT: Duration = Duration::from_secs(10);

/// Messages of a snapshot, shared between the watchers sending it.
type SharedMessages = Arc<[Arc<pb::WatchAvailabilityResponse>]>;

/// The every-film snapshot last read for watchers that fell behind, with how many changes had
/// been published when its read began: it holds every one of those, so it serves any watcher
/// whose missed changes were published by then. Reads are one at a time; a watcher waiting
/// for one is served by it when it can be. The snapshot is let go of a while after it was
/// read, so a quiet shop holds no copy of its stock.
#[derive(Debug, Default)]
pub(crate) struct LagSnapshots {
    latest: Arc<tokio::sync::Mutex<Option<(u64, SharedMessages)>>>,
    /// How many times the whole stock was read for watchers that fell behind.
    reads: Counter,
    /// How many times a watcher fell behind and was sent a fresh snapshot.
    resyncs: Counter,
}

impl LagSnapshots {
    /// A snapshot of every film holding at least the first `published` changes.
    async fn covering(&self, stock: &Stock, published: u64) -> Result<SharedMessages, Error> {
        let mut latest = self.latest.lock().await;
        if let Some((read_at, messages)) = latest.as_ref()
            && *read_at >= published
        {
            return Ok(Arc::clone(messages));
        }
        let read_at = stock.changes_published();
        let messages: SharedMessages =
            snapshot(stock, &[], true).await?.into_iter().map(Arc::new).collect();
        self.reads.inc();
        tracing::debug!(read_at, "read every film's stock for watchers that fell behind");
        *latest = Some((read_at, Arc::clone(&messages)));
        let slot = Arc::clone(&self.latest);
        let kept = Arc::downgrade(&messages);
        tokio::spawn(async move {
            tokio::time::sleep(SHARED_SNAPSHOT_KEPT).await;
            let mut latest = slot.lock().await;
            if latest
                .as_ref()
                .is_some_and(|(_, held)| kept.upgrade().is_some_and(|k| Arc::ptr_eq(held, &k)))
            {
                *latest = None;
            }
        });
        Ok(messages)
    }

    /// How many times the whole stock was read for watchers that fell behind.
    #[cfg(test)]
    fn reads(&self) -> u64 {
        self.reads.get()
    }

    /// Shows the resyncs and the reads for them at `/metrics`.
    pub(crate) fn register_metrics(&self, metrics: &videostore_kit::metrics::Metrics) {
        let help = "Times a watcher fell behind and was sent a fresh snapshot";
        metrics.register("videostore_watch_resyncs", help, self.resyncs.clone());
        let help = "Reads of every film's stock for watchers that fell behind (shared)";
        metrics.register("videostore_watch_snapshot_reads", help, self.reads.clone());
    }
}

/// The newest version sent of each film.
type Versions = HashMap<MovieId, i64, foldhash::fast::RandomState>;

/// One `WatchAvailability` stream.
///
/// A change wakes every watcher, so a wake-up is kept cheap: the shutdown and heartbeat futures
/// live as long as the stream (instead of being made afresh per message), and one lookup tells
/// whether a change is watched and new.
pub(super) struct Watch {
    stock: Arc<Stock>,
    lag_snapshots: Arc<LagSnapshots>,
    ids: Vec<MovieId>,
    /// Watching every film (no ids asked for).
    every_film: bool,
    changes: broadcast::Receiver<Arc<Availability>>,
    /// Every watched film (or, watching every film, those seen so far).
    versions: Versions,
    /// Messages ready to go (the snapshot, or a fresh one after lagging, maybe shared).
    pending: VecDeque<Arc<pb::WatchAvailabilityResponse>>,
    /// An idle stream sends an empty message every `every`, so clients can tell a quiet stream
    /// from a dead connection: the timer is due `every` after the last message; a message sent
    /// meanwhile only moves `last_sent`, and the timer is pushed back when it fires too early.
    heartbeat: Pin<Box<tokio::time::Sleep>>,
    every: Duration,
    last_sent: tokio::time::Instant,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    finished: bool,
}

impl Watch {
    /// A watch of `ids` (none: every film). Its first messages are the current stock, except for
    /// the films of `resume_from`: for those, the changes after the version the client has.
    pub(super) async fn start(
        stock: Arc<Stock>,
        lag_snapshots: Arc<LagSnapshots>,
        ids: Vec<MovieId>,
        resume_from: Vec<(MovieId, i64)>,
        every: Duration,
        shutdown: WaitForCancellationFutureOwned,
    ) -> Result<Self, Error> {
        let every_film = ids.is_empty();
        // A watched film starts at version 0: older than any it can have.
        let mut versions: Versions = ids.iter().map(|&id| (id, 0)).collect();
        // Subscribe before reading anything, so no change committed in between is lost.
        let changes = stock.subscribe();
        let mut resumed = Vec::new();
        let mut resumed_ids = Vec::new();
        for (movie_id, version) in resume_from {
            if (!every_film && !versions.contains_key(&movie_id)) || resumed_ids.contains(&movie_id)
            {
                continue; // Not watched, or named twice.
            }
            let missed = stock.changes_after(movie_id, version).await?;
            // Only when the changes kept follow on from the client's version; otherwise the
            // film is in the snapshot.
            if missed.first().is_none_or(|first| first.version == version + 1) {
                versions.insert(movie_id, version);
                resumed_ids.push(movie_id);
                resumed.push(missed);
            }
        }
        let mut first: VecDeque<Arc<pb::WatchAvailabilityResponse>> = VecDeque::new();
        let snapshot_ids: Vec<MovieId> =
            ids.iter().copied().filter(|id| !resumed_ids.contains(id)).collect();
        if resumed_ids.is_empty() || !snapshot_ids.is_empty() || every_film {
            let mut snapshot = snapshot(&stock, &snapshot_ids, every_film).await?;
            if every_film {
                // The films resumed are not sent again in the snapshot.
                for message in &mut snapshot {
                    message
                        .availabilities
                        .retain(|a| !resumed_ids.contains(&MovieId::new(a.movie_id)));
                }
            }
            first.extend(snapshot.into_iter().map(Arc::new));
        }
        let missed: Vec<pb::Availability> =
            resumed.iter().flatten().map(availability_to_proto).collect();
        if missed.is_empty() && first.is_empty() {
            // Nothing changed since: an empty change, so the stream opens at once.
            first.push_back(Arc::default());
        }
        for chunk in missed.chunks(SNAPSHOT_CHUNK) {
            first.push_back(Arc::new(pb::WatchAvailabilityResponse {
                snapshot: false,
                availabilities: chunk.to_vec(),
            }));
        }
        let now = tokio::time::Instant::now();
        Ok(Self {
            stock,
            lag_snapshots,
            every_film,
            ids,
            changes,
            versions,
            pending: first,
            heartbeat: Box::pin(tokio::time::sleep_until(now + every)),
            every,
            last_sent: now,
            shutdown: Box::pin(shutdown),
            finished: false,
        })
    }

    /// The next message, or `None` when the stream is over.
    pub(super) async fn next(&mut self) -> Option<Result<pb::WatchAvailabilityResponse, Status>> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(message) = self.pending.pop_front() {
                // The snapshot sets each film's version; changes (resumed) only move it up.
                for availability in &message.availabilities {
                    let id = MovieId::new(availability.movie_id);
                    let seen = self.versions.entry(id).or_insert(0);
                    if message.snapshot || availability.version > *seen {
                        *seen = availability.version;
                    }
                }
                // Sent as its own copy: the other watchers sharing it still need theirs.
                return Some(Ok(self.sent(Arc::unwrap_or_clone(message))));
            }
            let received = tokio::select! {
                received = self.changes.recv() => received,
                () = self.heartbeat.as_mut() => {
                    let due = self.last_sent + self.every;
                    let now = tokio::time::Instant::now();
                    if due > now {
                        self.heartbeat.as_mut().reset(due);
                        continue;
                    }
                    self.heartbeat.as_mut().reset(now + self.every);
                    return Some(Ok(self.sent(pb::WatchAvailabilityResponse {
                        snapshot: false,
                        availabilities: Vec::new(),
                    })));
                }
                () = self.shutdown.as_mut() => {
                    self.finished = true;
                    return Some(Err(Error::ShuttingDown.into()));
                }
            };
            match received {
                Ok(change) => {
                    let mut batch = Vec::new();
                    if self.fresh(&change) {
                        batch.push(availability_to_proto(&change));
                    }
                    // Coalesce changes that are already waiting into one message.
                    while batch.len() < SNAPSHOT_CHUNK {
                        match self.changes.try_recv() {
                            Ok(change) if self.fresh(&change) => {
                                batch.push(availability_to_proto(&change));
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    if !batch.is_empty() {
                        return Some(Ok(self.sent(pb::WatchAvailabilityResponse {
                            snapshot: false,
                            availabilities: batch,
                        })));
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "slow watcher: sending a fresh snapshot");
                    self.lag_snapshots.resyncs.inc();
                    // Counted now, this includes every change this watcher missed.
                    let published = self.stock.changes_published();
                    let fresh = if self.every_film {
                        self.lag_snapshots
                            .covering(&self.stock, published)
                            .await
                            .map(|shared| shared.iter().cloned().collect())
                    } else {
                        snapshot(&self.stock, &self.ids, false)
                            .await
                            .map(|messages| messages.into_iter().map(Arc::new).collect())
                    };
                    match fresh {
                        Ok(messages) => self.pending = messages,
                        Err(error) => {
                            self.finished = true;
                            return Some(Err(error.into()));
                        }
                    }
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Whether `change` is for a watched film and newer than what was sent.
    fn fresh(&mut self, change: &Availability) -> bool {
        let seen = match self.versions.get_mut(&change.movie_id) {
            Some(seen) => seen,
            None if self.every_film => self.versions.entry(change.movie_id).or_insert(0),
            None => return false,
        };
        if change.version <= *seen {
            return false;
        }
        *seen = change.version;
        true
    }

    /// `message`, noted as sent now (the heartbeat counts from it).
    fn sent(&mut self, message: pb::WatchAvailabilityResponse) -> pb::WatchAvailabilityResponse {
        self.last_sent = tokio::time::Instant::now();
        message
    }
}

/// The current stock of `ids` (every stocked film with `every_film`), in snapshot messages.
async fn snapshot(
    stock: &Stock,
    ids: &[MovieId],
    every_film: bool,
) -> Result<Vec<pb::WatchAvailabilityResponse>, Error> {
    let availabilities: Vec<pb::Availability> = if every_film {
        stock.all_availability().await?.iter().map(availability_to_proto).collect()
    } else if ids.is_empty() {
        Vec::new()
    } else {
        stock
            .availability(ids)
            .await?
            .iter()
            .map(|(id, stock)| stock_to_proto(*id, stock.as_deref()))
            .collect()
    };
    if availabilities.is_empty() {
        return Ok(vec![pb::WatchAvailabilityResponse { snapshot: true, availabilities }]);
    }
    Ok(availabilities
        .chunks(SNAPSHOT_CHUNK)
        .map(|chunk| pb::WatchAvailabilityResponse {
            snapshot: true,
            availabilities: chunk.to_vec(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;
    use videostore_kit::auth::{Caller, KeyPairPem, Role, TokenKeys, TokenSigner};

    use super::*;
    use crate::{
        clock::SystemClock,
        domain::{AccountId, Inventory},
        events::AvailabilityEvents,
        passwords::Passwords,
        service::{Publisher, Tokens},
        store::{SqliteStore, StockStore},
    };

    fn inventory(movie_id: i64, copies_owned: i32) -> Inventory {
        Inventory {
            movie_id: MovieId::new(movie_id),
            copies_owned,
            currency: "EUR".into(),
            rental_price_minor: 100,
            purchase_price_minor: 1000,
        }
    }

    /// Stock over a new SQLite file with films 1 to 5, where a watcher may fall `behind`
    /// changes behind.
    async fn stock(dir: &tempfile::TempDir, behind: usize) -> Arc<Stock> {
        let url = format!("sqlite://{}", dir.path().join("stock.db").display());
        let store: Arc<dyn StockStore> = Arc::new(SqliteStore::open(&url).await.unwrap());
        for id in 1..=5 {
            store.set_inventory(&inventory(id, 3)).await.unwrap();
        }
        let pair = KeyPairPem::generate().unwrap();
        let signer = TokenSigner::from_pem(&pair.private).unwrap();
        let keys = TokenKeys::new("", Some(&signer)).unwrap();
        let hour = Duration::from_secs(3600);
        let tokens = Tokens { signer, keys, token_ttl: hour, refresh_ttl: hour };
        let events = AvailabilityEvents::with_capacity(behind);
        let clock = Arc::new(SystemClock);
        let mailer = crate::mail::Mailer::new("http://shop.test");
        let publisher = Publisher::SoleWriter;
        Arc::new(Stock::new(store, events, publisher, clock, tokens, Passwords::new(), mailer))
    }

    /// Sets films 1 to 5 twenty times over; film `f` ends with `last + f - 1` copies.
    async fn burst(stock: &Stock, last: i32) {
        let staff =
            Caller { account_id: AccountId::new(1), email: "s@x.test".into(), role: Role::Staff };
        for n in 0..20 {
            let film = 1 + i64::from(n % 5);
            stock.set_inventory(&staff, &inventory(film, last - 15 + n)).await.unwrap();
        }
    }

    fn copies(message: &pb::WatchAvailabilityResponse) -> Vec<(i64, i32)> {
        message.availabilities.iter().map(|a| (a.movie_id, a.copies_owned)).collect()
    }

    #[tokio::test]
    async fn watchers_that_fall_behind_together_share_one_read_of_the_stock() {
        let dir = tempfile::tempdir().unwrap();
        let stock = stock(&dir, 8).await;
        let shared = Arc::new(LagSnapshots::default());
        let open = CancellationToken::new();
        let mut watches = Vec::new();
        for _ in 0..10 {
            let hour = Duration::from_secs(3600);
            let cancelled = open.clone().cancelled_owned();
            let every_film = Vec::new();
            let mut watch = Watch::start(
                Arc::clone(&stock),
                Arc::clone(&shared),
                every_film,
                Vec::new(),
                hour,
                cancelled,
            )
            .await
            .unwrap();
            assert!(watch.next().await.unwrap().unwrap().snapshot);
            watches.push(watch);
        }

        // Twenty changes, more than a watcher may fall behind: each is sent the stock as it
        // is now, all from one read.
        burst(&stock, 20).await;
        let now: Vec<(i64, i32)> = (1..=5).map(|f| (f, 20 + f as i32 - 1)).collect();
        for watch in &mut watches {
            let fresh = watch.next().await.unwrap().unwrap();
            assert!(fresh.snapshot, "{fresh:?}");
            assert_eq!(copies(&fresh), now);
        }
        assert_eq!(shared.reads(), 1, "ten watchers behind, one read");

        // Behind again, after newer changes: the shared snapshot is too old for it.
        burst(&stock, 40).await;
        let fresh = watches[0].next().await.unwrap().unwrap();
        let now: Vec<(i64, i32)> = (1..=5).map(|f| (f, 40 + f as i32 - 1)).collect();
        assert_eq!((fresh.snapshot, copies(&fresh)), (true, now));
        assert_eq!(shared.reads(), 2);
    }
}
