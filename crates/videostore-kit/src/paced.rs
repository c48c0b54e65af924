//! Paced hand-off to a client that may read slowly or not at all: exports (the catalogue's
//! ExportMovies, the aggregator's REST download) read ahead of their client through a bounded
//! channel, so an unread export holds `capacity` items, not the catalogue; and a client that
//! takes nothing for `stall` is cut off, so it cannot hold a database connection, its snapshot,
//! an upstream stream or a place among the exports for as long as it likes.

use std::time::Duration;

use tokio::sync::mpsc;

/// How long an export's client may take nothing before it is cut off.
pub const EXPORT_STALL: Duration = Duration::from_secs(30);

/// The producer's end of a paced channel (see [`channel`]).
#[derive(Debug)]
pub struct Paced<T> {
    sender: mpsc::Sender<T>,
    stall: Duration,
}

impl<T> Clone for Paced<T> {
    fn clone(&self) -> Self {
        Self { sender: self.sender.clone(), stall: self.stall }
    }
}

/// A channel that holds at most `capacity` items the client has not taken, and whose sends give
/// up on a client that takes nothing for `stall`.
pub fn channel<T>(capacity: usize, stall: Duration) -> (Paced<T>, mpsc::Receiver<T>) {
    let (sender, receiver) = mpsc::channel(capacity);
    (Paced { sender, stall }, receiver)
}

impl<T> Paced<T> {
    /// Hands the client `item`, waiting while its buffer is full. Whether to go on: `false` when
    /// the client has gone, or took nothing for the stall time (then it is logged, at info: a
    /// slow client is not the server's fault).
    pub async fn send(&self, item: T) -> bool {
        match tokio::time::timeout(self.stall, self.sender.send(item)).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                tracing::info!(stall = ?self.stall, "an export's client took nothing; cut off");
                false
            }
        }
    }

    /// [`Paced::send`] from a blocking thread (a SQLite reader's), on `runtime`.
    pub fn send_blocking(&self, runtime: &tokio::runtime::Handle, item: T) -> bool {
        runtime.block_on(self.send(item))
    }

    /// Whether the client has gone.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that reads nothing: `capacity` items wait for it, the next send waits the stall
    /// time and then gives up; nothing more is held.
    #[tokio::test(start_paused = true)]
    async fn an_unread_channel_holds_its_capacity_then_cuts_the_client_off() {
        let (paced, mut client) = channel::<u32>(4, Duration::from_secs(30));
        let started = tokio::time::Instant::now();
        for item in 0..4 {
            assert!(paced.send(item).await, "room for item {item}");
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "the first four go at once");
        assert!(!paced.send(4).await, "a fifth waits for a client that never reads");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        // Only what had room was handed over.
        let mut held = Vec::new();
        while let Ok(item) = client.try_recv() {
            held.push(item);
        }
        assert_eq!(held, [0, 1, 2, 3]);
    }

    /// A slow client that takes something within each stall time gets everything.
    #[tokio::test(start_paused = true)]
    async fn a_slow_client_that_keeps_reading_gets_everything() {
        let (paced, mut client) = channel::<u32>(1, Duration::from_secs(30));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                tokio::time::sleep(Duration::from_secs(29)).await;
                match client.recv().await {
                    Some(item) => got.push(item),
                    None => return got,
                }
            }
        });
        for item in 0..5 {
            assert!(paced.send(item).await, "item {item} within the stall time");
        }
        drop(paced);
        assert_eq!(reader.await.unwrap(), [0, 1, 2, 3, 4]);
    }

    /// A client that has gone stops the producer at once.
    #[tokio::test(start_paused = true)]
    async fn a_client_that_has_gone_stops_the_producer_at_once() {
        let (paced, client) = channel::<u32>(4, Duration::from_secs(30));
        drop(client);
        assert!(paced.is_closed());
        let started = tokio::time::Instant::now();
        assert!(!paced.send(0).await);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
