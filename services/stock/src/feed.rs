//! The database feed of stock changes, for replicas on PostgreSQL: every replica publishes to its
//! own watchers every change any replica commits, per film in version order with no gaps and no
//! duplicates.
//!
//! Every change is written to `stock_events` in its own transaction by a trigger. Per film,
//! versions go up by one per change and commit in order (a change holds the film's row until it
//! commits), so hearing of version v means every earlier version can be read.
//!
//! The doorbell: after its commit, the replica that made a change notifies `stock_changes` with
//! the change itself. One task per replica sends them, as many changes to one notification as
//! have queued while the previous one was sent. (Notifying inside the write's transaction would
//! be simpler, but PostgreSQL then holds one database-wide lock from each such commit until it
//! is on disk: every write waited for the previous one's fsync, halving the rentals a second.)
//!
//! The follower, one task per replica:
//! - knows the version it has published of every film;
//! - on a notification or a change this replica committed, publishes the versions between what
//!   it knows and what it heard: the change in hand when it is the very next one (the usual
//!   case, with no read), else read from `stock_events`;
//! - every [`POLL`], reads the latest version of each film changed in the last [`WINDOW`] and
//!   publishes what it has not heard of: a replica that died between its commit and its
//!   doorbell, or a notification that failed, delays a change by [`POLL`] at most;
//! - after (re)connecting its listener, and every [`RESYNC`], compares every film's version
//!   with what it knows and publishes what it missed;
//! - asks its connection for a heartbeat, since a silent connection delivers nothing;
//! - forgets changes older than [`KEPT`] now and then (never a film's latest).

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use videostore_kit::postgres::Listener;

use crate::{
    domain::{Availability, MovieId},
    error::Error,
    events::AvailabilityEvents,
    store::{PostgresStore, StockStore},
};

/// How often recent changes are read, in case a doorbell never rang.
const POLL: Duration = Duration::from_secs(1);
/// How far back each poll reads. A change whose transaction began more than this before it
/// committed, whose doorbell never rang, is found by the next [`RESYNC`].
const WINDOW: Duration = Duration::from_secs(5);
/// How often every film's version is compared with the one published.
const RESYNC: Duration = Duration::from_secs(60);
/// A notification's payload is at most 8,000 bytes; one change takes at most ~110.
const PAYLOAD_LIMIT: usize = 7_800;
/// How often the listening connection must answer a query.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a change is kept for watchers that resume and replicas that reconnect.
const KEPT: Duration = Duration::from_secs(60 * 60);
/// How often old changes are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(10 * 60);
/// Waits between attempts to listen again.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// The handle through which this replica's own commits reach the feed and the other replicas.
#[derive(Clone)]
pub(crate) struct Feed {
    commits: mpsc::UnboundedSender<Availability>,
    doorbell: mpsc::UnboundedSender<Availability>,
}

impl Feed {
    /// Starts following the database's changes into `events`; returns once listening, so every
    /// change committed from then on will be published.
    pub(crate) async fn start(
        store: PostgresStore,
        events: AvailabilityEvents,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut follower = Follower { store, events, known: HashMap::new() };
        let listener = follower.store.listen().await?;
        // Everything committed before listening is history: start from the current versions.
        follower.known = follower.store.versions().await?.into_iter().collect();
        let (commits, received) = mpsc::unbounded_channel();
        let (doorbell, to_ring) = mpsc::unbounded_channel();
        tokio::spawn(ring(follower.store.clone(), to_ring));
        tokio::spawn(follower.run(listener, received, shutdown));
        Ok(Self { commits, doorbell })
    }

    /// A change this replica committed: published here at once when it is the next version,
    /// and announced to the other replicas.
    pub(crate) fn committed(&self, change: Availability) {
        // Both tasks end only at shutdown; a change then has nobody left to tell.
        let _ = self.doorbell.send(change.clone());
        let _ = self.commits.send(change);
    }
}

/// Rings the doorbell for every change this replica commits, with as many changes in one
/// notification as queued while the previous one was being sent. Ends when the feed is dropped.
async fn ring(store: PostgresStore, mut changes: mpsc::UnboundedReceiver<Availability>) {
    while let Some(first) = changes.recv().await {
        let payload = payload(&first, &mut changes);
        if let Err(error) = store.ring(&payload).await {
            // The other replicas' next poll finds these changes in the table.
            tracing::warn!(%error, "announcing stock changes failed");
        }
    }
}

/// One notification: `first` and the changes queued after it, as many as fit, each once (the
/// rents of one batch on one film share the film's one new version).
fn payload(first: &Availability, queued: &mut mpsc::UnboundedReceiver<Availability>) -> String {
    let mut payload = encode(first);
    let mut announced = vec![(first.movie_id, first.version)];
    while payload.len() < PAYLOAD_LIMIT {
        let Ok(next) = queued.try_recv() else { break };
        if announced.contains(&(next.movie_id, next.version)) {
            continue;
        }
        announced.push((next.movie_id, next.version));
        payload.push(';');
        payload.push_str(&encode(&next));
    }
    payload
}

struct Follower {
    store: PostgresStore,
    events: AvailabilityEvents,
    /// The version published of every film.
    known: HashMap<MovieId, i64>,
}

impl Follower {
    async fn run(
        mut self,
        listener: Listener,
        mut commits: mpsc::UnboundedReceiver<Availability>,
        shutdown: CancellationToken,
    ) {
        let mut listener = Some(listener);
        let mut retry = FIRST_RETRY;
        let mut forget = tokio::time::interval(FORGET_EVERY);
        let mut poll = tokio::time::interval(POLL);
        let mut resync = tokio::time::interval(RESYNC);
        resync.tick().await;
        loop {
            let mut listening = match listener.take() {
                Some(listening) => listening,
                None => match self.store.listen().await {
                    Ok(listening) => {
                        // Notifications were lost while not listening: catch up from the table.
                        match self.catch_up().await {
                            Ok(()) => {
                                tracing::info!("listening to stock changes again");
                                retry = FIRST_RETRY;
                                listening
                            }
                            Err(error) => {
                                tracing::warn!(%error, "catching up on stock changes failed");
                                if wait_or_stop(&mut retry, &shutdown).await {
                                    return;
                                }
                                continue;
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "cannot listen to stock changes"
                        );
                        if wait_or_stop(&mut retry, &shutdown).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            let mut heartbeat = tokio::time::interval(HEARTBEAT);
            heartbeat.tick().await;
            let lost = loop {
                let delivered = tokio::select! {
                    rang = listening.next() => match rang {
                        Ok(payload) => self.heard(&payload).await,
                        Err(error) => break format!("{error:#}"),
                    },
                    Some(change) = commits.recv() => {
                        self.deliver(change.movie_id, change.version, Some(change)).await
                    }
                    _ = heartbeat.tick() => {
                        if listening.alive(HEARTBEAT).await {
                            Ok(())
                        } else {
                            break "the listening connection stopped answering".to_owned();
                        }
                    }
                    _ = poll.tick() => self.poll().await,
                    _ = resync.tick() => self.catch_up().await,
                    _ = forget.tick() => {
                        let before = SystemTime::now() - KEPT;
                        self.store.forget_changes(before).await.map(drop)
                    }
                    () = shutdown.cancelled() => return,
                };
                if let Err(error) = delivered {
                    break format!("{error}");
                }
            };
            tracing::warn!(cause = lost, "stopped listening to stock changes; listening again");
            // Not at once: a connection that keeps being cut must not become a busy loop.
            if wait_or_stop(&mut retry, &shutdown).await {
                return;
            }
        }
    }

    /// Publishes the versions of `movie_id` after the one known, up to `version`.
    async fn deliver(
        &mut self,
        movie_id: MovieId,
        version: i64,
        change: Option<Availability>,
    ) -> Result<(), Error> {
        let known = self.known.get(&movie_id).copied().unwrap_or(0);
        if version <= known {
            return Ok(()); // Heard already (a replica's own commit is heard twice).
        }
        let changes = match change {
            Some(change) if version == known + 1 => vec![change],
            _ => self.store.changes(movie_id, known, Some(version)).await?,
        };
        if changes.first().is_some_and(|first| first.version > known + 1) {
            tracing::warn!(
                %movie_id,
                known,
                first = changes[0].version,
                "stock changes were forgotten before this replica heard of them"
            );
        }
        for change in changes {
            self.known.insert(movie_id, change.version);
            self.events.publish(change);
        }
        Ok(())
    }

    /// Publishes the changes a notification announces.
    async fn heard(&mut self, payload: &str) -> Result<(), Error> {
        for (movie_id, version, change) in payload.split(';').filter_map(parse) {
            self.deliver(movie_id, version, change).await?;
        }
        Ok(())
    }

    /// Publishes the recent changes no doorbell announced.
    async fn poll(&mut self) -> Result<(), Error> {
        for (movie_id, version) in self.store.recent_versions(WINDOW).await? {
            self.deliver(movie_id, version, None).await?;
        }
        Ok(())
    }

    /// Publishes every change committed and not yet heard of.
    async fn catch_up(&mut self) -> Result<(), Error> {
        for (movie_id, version) in self.store.versions().await? {
            self.deliver(movie_id, version, None).await?;
        }
        Ok(())
    }
}

/// One change in a notification: `"film:version:owned:available:currency:rent:buy"`.
fn encode(change: &Availability) -> String {
    format!(
        "{}:{}:{}:{}:{}:{}:{}",
        change.movie_id.get(),
        change.version,
        change.copies_owned,
        change.copies_available,
        change.currency,
        change.rental_price_minor,
        change.purchase_price_minor
    )
}

/// One change in a notification (`;` separates changes): the film, the version, and the change
/// itself (see [`encode`]; the trigger of older schemas sent only the first two).
fn parse(payload: &str) -> Option<(MovieId, i64, Option<Availability>)> {
    let mut fields = payload.split(':');
    let movie_id = MovieId::new(fields.next()?.parse().ok()?);
    let version: i64 = fields.next()?.parse().ok()?;
    let mut rest = || fields.next();
    let change = (|| {
        Some(Availability {
            movie_id,
            version,
            copies_owned: rest()?.parse().ok()?,
            copies_available: rest()?.parse().ok()?,
            currency: rest()?.to_owned(),
            rental_price_minor: rest()?.parse().ok()?,
            purchase_price_minor: rest()?.parse().ok()?,
        })
    })();
    Some((movie_id, version, change))
}

/// Waits `retry` (doubling it for next time); true if shutdown came first.
async fn wait_or_stop(retry: &mut Duration, shutdown: &CancellationToken) -> bool {
    let wait = *retry;
    *retry = (*retry * 2).min(LAST_RETRY);
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        () = shutdown.cancelled() => true,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_change_is_announced_once() {
        let change = |movie: i64, version: i64| super::Availability {
            movie_id: super::MovieId::new(movie),
            version,
            copies_owned: 3,
            copies_available: 1,
            currency: "EUR".to_owned(),
            rental_price_minor: 199,
            purchase_price_minor: 999,
        };
        let (queue, mut queued) = tokio::sync::mpsc::unbounded_channel();
        // Three rents of one batch on film 1 (one version), one on film 2, then film 1 again.
        for (movie, version) in [(1, 7), (1, 7), (2, 4), (1, 7), (1, 8)] {
            queue.send(change(movie, version)).unwrap();
        }
        let first = queued.try_recv().unwrap();
        let payload = super::payload(&first, &mut queued);
        let announced: Vec<_> =
            payload.split(';').map(|one| super::parse(one).map(|(m, v, _)| (m.get(), v))).collect();
        assert_eq!(announced, [Some((1, 7)), Some((2, 4)), Some((1, 8))], "{payload}");
    }

    #[test]
    fn payloads_carry_the_change() {
        let (movie, version, change) = super::parse("42:7:3:1:EUR:199:999").unwrap();
        assert_eq!((movie.get(), version), (42, 7));
        let change = change.unwrap();
        assert_eq!((change.copies_owned, change.copies_available), (3, 1));
        assert_eq!((change.currency.as_str(), change.rental_price_minor), ("EUR", 199));
        assert_eq!(change.purchase_price_minor, 999);
        let (_, _, bare) = super::parse("42:7").unwrap();
        assert!(bare.is_none(), "the change is then read from the table");
        assert!(super::parse("42").is_none());
        assert!(super::parse("x:7").is_none());
    }

    #[test]
    fn what_is_encoded_parses_back() {
        let change = super::Availability {
            movie_id: super::MovieId::new(i64::MAX),
            version: i64::MAX,
            copies_owned: i32::MAX,
            copies_available: i32::MAX,
            currency: "EUR".to_owned(),
            rental_price_minor: i64::MAX,
            purchase_price_minor: i64::MAX,
        };
        let encoded = super::encode(&change);
        assert!(encoded.len() + 1 < 8_000 - super::PAYLOAD_LIMIT, "a change always fits");
        let (movie, version, parsed) = super::parse(&encoded).unwrap();
        assert_eq!((movie, version), (change.movie_id, change.version));
        assert_eq!(parsed.unwrap(), change);
    }
}
