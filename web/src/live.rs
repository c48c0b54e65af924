//! Live availability: ONE `WatchAvailability` stream for all the films on screen, re-opened when
//! that set changes and reconnected with backoff after a drop, resuming from the versions shown.
//! (A browser has six HTTP/1.1 connections per origin and each open stream holds one: never a
//! stream per card.)

use std::collections::HashMap;

use futures::{FutureExt, StreamExt, channel::mpsc};
use leptos::{prelude::*, task::spawn_local};
use videostore_proto::stock::{Availability, FilmVersion, WatchAvailabilityResponse};

use crate::api::Api;

/// The state of the live connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LiveState {
    /// Nothing to watch.
    Idle,
    /// Opening the stream.
    Connecting,
    /// Changes arrive as they commit.
    Live,
    /// The stream dropped; trying again.
    Reconnecting,
}

/// The latest stock of the films on screen, and the connection state.
#[derive(Clone, Copy)]
pub(crate) struct Live {
    /// Latest known stock per film.
    pub(crate) stock: RwSignal<HashMap<i64, Availability>>,
    /// The connection.
    pub(crate) state: RwSignal<LiveState>,
    wanted: RwSignal<Vec<i64>>,
}

impl Live {
    /// Starts the one stream loop of the app.
    pub(crate) fn start(api: Api) -> Self {
        let live = Self {
            stock: RwSignal::new(HashMap::new()),
            state: RwSignal::new(LiveState::Idle),
            wanted: RwSignal::new(Vec::new()),
        };
        let (notify, changes) = mpsc::unbounded::<()>();
        Effect::new(move |_| {
            live.wanted.track();
            let _ = notify.unbounded_send(());
        });
        spawn_local(run(api, live, changes));
        live
    }

    /// Watches exactly these films (the ones on screen now).
    pub(crate) fn watch(&self, mut ids: Vec<i64>) {
        ids.sort_unstable();
        ids.dedup();
        if self.wanted.get_untracked() != ids {
            self.wanted.set(ids);
        }
    }

    /// The latest stock of one film, if the stream has sent it.
    pub(crate) fn get(&self, movie_id: i64) -> Option<Availability> {
        self.stock.with(|stock| stock.get(&movie_id).cloned())
    }

    fn apply(&self, message: WatchAvailabilityResponse) {
        self.stock.update(|stock| {
            for availability in message.availabilities {
                let newer = stock
                    .get(&availability.movie_id)
                    .is_none_or(|known| message.snapshot || availability.version >= known.version);
                if newer {
                    stock.insert(availability.movie_id, availability);
                }
            }
        });
    }
}

async fn sleep_or_change(millis: u32, changes: &mut mpsc::UnboundedReceiver<()>) {
    let sleep = gloo_timers::future::TimeoutFuture::new(millis).fuse();
    let change = changes.next().fuse();
    futures::pin_mut!(sleep, change);
    futures::select! {
        _ = sleep => {},
        _ = change => {},
    }
}

async fn run(api: Api, live: Live, mut changes: mpsc::UnboundedReceiver<()>) {
    const FIRST_RETRY_MS: u32 = 500;
    const MAX_RETRY_MS: u32 = 8_000;
    const SILENCE_MS: u32 = 40_000;
    let mut retry = FIRST_RETRY_MS;
    loop {
        // Coalesce bursts of changes to the set into one re-open.
        while changes.try_recv().is_ok() {}
        let ids = live.wanted.get_untracked();
        if ids.is_empty() {
            live.state.set(LiveState::Idle);
            if changes.next().await.is_none() {
                return;
            }
            continue;
        }
        if live.state.get_untracked() != LiveState::Reconnecting {
            live.state.set(LiveState::Connecting);
        }
        // Films already on screen resume from the version shown: nothing committed while the
        // stream was down (or being re-opened) is missed.
        let resume_from: Vec<FilmVersion> = live.stock.with_untracked(|stock| {
            ids.iter()
                .filter_map(|id| stock.get(id))
                .map(|known| FilmVersion { movie_id: known.movie_id, version: known.version })
                .collect()
        });
        let opened = {
            let open = api.watch(ids, resume_from).fuse();
            let change = changes.next().fuse();
            futures::pin_mut!(open, change);
            futures::select! {
                opened = open => Some(opened),
                _ = change => None,
            }
        };
        let mut stream = match opened {
            None => continue, // The set changed while opening: open the new one.
            Some(Ok(stream)) => stream,
            Some(Err(_)) => {
                live.state.set(LiveState::Reconnecting);
                sleep_or_change(retry, &mut changes).await;
                retry = (retry * 2).min(MAX_RETRY_MS);
                continue;
            }
        };
        live.state.set(LiveState::Live);
        retry = FIRST_RETRY_MS;
        loop {
            // The server sends a heartbeat every 15 s; silence for much longer means the
            // connection died without closing (a sleeping laptop, a dropped network).
            let next = async {
                let message = stream.message().fuse();
                let silence = gloo_timers::future::TimeoutFuture::new(SILENCE_MS).fuse();
                futures::pin_mut!(message, silence);
                futures::select! {
                    message = message => message.map_err(|_| ()),
                    _ = silence => Err(()),
                }
            }
            .fuse();
            let change = changes.next().fuse();
            futures::pin_mut!(next, change);
            let dropped = futures::select! {
                message = next => match message {
                    Ok(Some(message)) => {
                        live.apply(message);
                        false
                    }
                    Ok(None) | Err(()) => true,
                },
                _ = change => break, // Re-open with the new set (dropping this fetch aborts it).
            };
            if dropped {
                live.state.set(LiveState::Reconnecting);
                sleep_or_change(retry, &mut changes).await;
                retry = (retry * 2).min(MAX_RETRY_MS);
                break;
            }
        }
    }
}
