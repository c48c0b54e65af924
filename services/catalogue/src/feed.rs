//! The database feed of film changes, for catalogue replicas on PostgreSQL: every replica drops
//! from its read cache, and announces to its WatchChanges streams, every change any replica
//! commits.
//!
//! A trigger notifies `movie_changes` with the film's id when a change commits. Notifications are
//! lost while a listener is down, so the cache serves only while this replica listens: when the
//! listener is lost the cache stops serving (and everything is announced changed); once it
//! listens again the cache starts over, empty. A heartbeat query finds a connection that has gone
//! silent. The delay between a commit on one replica and its effect on another is the
//! notification's trip: milliseconds on one machine (the tests check under a second).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use videostore_kit::postgres::Listener;

use crate::{
    domain::MovieId,
    store::{CacheControl, Change, PostgresStore},
};

/// How often the listening connection must answer a query.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Waits between attempts to listen again.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// Starts following the database's film changes into `cache`; returns once listening, with the
/// cache live.
pub(crate) async fn start(
    store: &PostgresStore,
    cache: CacheControl,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = store.listen().await?;
    cache.set_live(true);
    tokio::spawn(follow(store.clone(), cache, listener, shutdown));
    Ok(())
}

async fn follow(
    store: PostgresStore,
    cache: CacheControl,
    listener: Listener,
    shutdown: CancellationToken,
) {
    let mut listener = Some(listener);
    let mut retry = FIRST_RETRY;
    loop {
        let mut listening = match listener.take() {
            Some(listening) => listening,
            None => match store.listen().await {
                Ok(listening) => {
                    cache.set_live(true);
                    tracing::info!("listening to film changes again: the read cache serves");
                    retry = FIRST_RETRY;
                    listening
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "cannot listen to film changes");
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
            tokio::select! {
                rang = listening.next() => match rang {
                    Ok(payload) => cache.changed(change(&payload)),
                    Err(error) => break format!("{error:#}"),
                },
                _ = heartbeat.tick() => {
                    if !listening.alive(HEARTBEAT).await {
                        break "the listening connection stopped answering".to_owned();
                    }
                }
                () = shutdown.cancelled() => return,
            }
        };
        cache.set_live(false);
        tracing::warn!(cause = lost, "stopped listening to film changes: the read cache is off");
        if wait_or_stop(&mut retry, &shutdown).await {
            return;
        }
    }
}

/// The change a notification names: one film, or (a payload this code does not know)
/// anything.
fn change(payload: &str) -> Change {
    match payload.parse() {
        Ok(id) => Change::Films([MovieId::new(id)].into()),
        Err(_) => Change::Everything,
    }
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
    use super::*;

    #[test]
    fn a_payload_names_a_film_or_anything() {
        assert_eq!(change("42"), Change::Films([MovieId::new(42)].into()));
        assert_eq!(change("x"), Change::Everything);
    }
}
