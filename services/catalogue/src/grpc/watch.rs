//! WatchChanges: an opening message once the stream is subscribed, then the films each committed
//! write touched, `everything` when this watcher missed some, a heartbeat when idle, and
//! UNAVAILABLE at shutdown.

use std::time::Duration;

use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use videostore_proto::catalogue as pb;

use crate::{error::Error, store::Change};

/// How long a WatchChanges stream stays silent before it sends a heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// One WatchChanges stream.
pub(super) struct ChangeWatch {
    changes: broadcast::Receiver<Change>,
    heartbeat: tokio::time::Interval,
    shutdown: CancellationToken,
    /// The opening message was sent.
    opened: bool,
    /// The stream ended.
    finished: bool,
}

impl ChangeWatch {
    /// A watch of `changes` (subscribed already) that ends at `shutdown`.
    pub(super) fn new(changes: broadcast::Receiver<Change>, shutdown: CancellationToken) -> Self {
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { changes, heartbeat, shutdown, opened: false, finished: false }
    }

    /// The next message; `None` once the stream has ended.
    pub(super) async fn next(&mut self) -> Option<Result<pb::WatchChangesResponse, Status>> {
        if self.finished {
            return None;
        }
        if !std::mem::replace(&mut self.opened, true) {
            // Subscribed already: every write committed from here on is announced.
            return Some(Ok(pb::WatchChangesResponse::default()));
        }
        let everything = || pb::WatchChangesResponse { movie_ids: Vec::new(), everything: true };
        tokio::select! {
            change = self.changes.recv() => {
                self.heartbeat.reset();
                match change {
                    Ok(Change::Films(ids)) => Some(Ok(pb::WatchChangesResponse {
                        movie_ids: ids.iter().map(|id| id.get()).collect(),
                        everything: false,
                    })),
                    // Lagged: changes were dropped for this reader.
                    Ok(Change::Everything) | Err(RecvError::Lagged(_)) => Some(Ok(everything())),
                    Err(RecvError::Closed) => self.end(),
                }
            }
            _ = self.heartbeat.tick() => Some(Ok(pb::WatchChangesResponse::default())),
            () = self.shutdown.cancelled() => self.end(),
        }
    }

    fn end(&mut self) -> Option<Result<pb::WatchChangesResponse, Status>> {
        self.finished = true;
        Some(Err(Error::ShuttingDown.into()))
    }
}
