//! WatchAvailability: the watched films' current stock, then every committed change to them,
//! a heartbeat when idle, and UNAVAILABLE at shutdown.
//!
//! Changes are published after their commit, so two commits may be announced out of order; the
//! per-film version drops anything older than what the client already has. A watcher that fell
//! too far behind is sent a fresh snapshot instead of the changes it missed.

use std::{collections::HashMap, collections::VecDeque, pin::Pin, sync::Arc, time::Duration};

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

/// The newest version sent of each film.
type Versions = HashMap<MovieId, i64, foldhash::fast::RandomState>;

/// One `WatchAvailability` stream.
///
/// A change wakes every watcher, so a wake-up is kept cheap: the shutdown and heartbeat futures
/// live as long as the stream (instead of being made afresh per message), and one lookup tells
/// whether a change is watched and new.
pub(super) struct Watch {
    stock: Arc<Stock>,
    ids: Vec<MovieId>,
    /// Watching every film (no ids asked for).
    every_film: bool,
    changes: broadcast::Receiver<Arc<Availability>>,
    /// Every watched film (or, watching every film, those seen so far).
    versions: Versions,
    /// Messages ready to go (the snapshot, or a fresh one after lagging).
    pending: VecDeque<pb::WatchAvailabilityResponse>,
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
        let mut first: VecDeque<pb::WatchAvailabilityResponse> = VecDeque::new();
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
            first.extend(snapshot);
        }
        let missed: Vec<pb::Availability> =
            resumed.iter().flatten().map(availability_to_proto).collect();
        if missed.is_empty() && first.is_empty() {
            // Nothing changed since: an empty change, so the stream opens at once.
            first.push_back(pb::WatchAvailabilityResponse::default());
        }
        for chunk in missed.chunks(SNAPSHOT_CHUNK) {
            first.push_back(pb::WatchAvailabilityResponse {
                snapshot: false,
                availabilities: chunk.to_vec(),
            });
        }
        let now = tokio::time::Instant::now();
        Ok(Self {
            stock,
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
                return Some(Ok(self.sent(message)));
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
                    match snapshot(&self.stock, &self.ids, self.every_film).await {
                        Ok(messages) => self.pending = messages.into(),
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
