//! Stock lookups of concurrent views, coalesced into shared BatchGetAvailability calls.
//!
//! Every view still reads stock after it was asked for, so it sees every write committed
//! before it (nothing is cached). But instead of one stock call per view, lookups that arrive
//! while [`IN_FLIGHT`] calls are already out wait for the next call and share it: when load is
//! light a lookup goes out at once, alone; under load each stock exchange serves many views,
//! with no timer and no added wait beyond the calls already in flight. Each lookup keeps its
//! own deadline: a caller that stops waiting gets "unknown" without holding the others.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::{Request, transport::Channel};
use videostore_kit::trace;
use videostore_proto::stock::{
    Availability, BatchGetAvailabilityRequest, stock_service_client::StockServiceClient,
};

/// Stock calls out at once; lookups arriving meanwhile are gathered for the next one.
const IN_FLIGHT: usize = 2;
/// Most ids in one call (stock's limit).
const MAX_IDS: usize = 1000;
/// Lookups queued at most before callers wait to queue.
const QUEUE: usize = 4096;

/// One view's lookup, answered with the stock of its ids in order, or `None` when stock failed
/// (logged once for the whole call).
struct Lookup {
    ids: Vec<i64>,
    /// The caller's trace, which the call that serves it is under or links to.
    caller: trace::Context,
    reply: oneshot::Sender<Option<Vec<Availability>>>,
}

/// The handle views look stock up through.
#[derive(Clone)]
pub(crate) struct StockBatcher {
    queue: mpsc::Sender<Lookup>,
}

impl StockBatcher {
    /// Starts the batching task over `stock`; each call may take up to `timeout`. The task ends
    /// when the last handle is dropped.
    pub(crate) fn start(stock: Channel, timeout: Duration) -> Self {
        let (queue, lookups) = mpsc::channel(QUEUE);
        let client = StockServiceClient::new(crate::upstream::traced(stock));
        tokio::spawn(gather(lookups, client, timeout));
        Self { queue }
    }

    /// The stock of `ids` (1 to 1000), in order, within `budget`: `None` when stock failed or
    /// did not answer in time.
    pub(crate) async fn lookup(
        &self,
        ids: Vec<i64>,
        budget: Duration,
    ) -> Option<Vec<Availability>> {
        let (reply, answer) = oneshot::channel();
        let asked = async {
            self.queue.send(Lookup { ids, reply, caller: trace::current() }).await.ok()?;
            answer.await.ok()
        };
        match tokio::time::timeout(budget, asked).await {
            Ok(answer) => answer.flatten(),
            Err(_) => {
                tracing::warn!(
                    budget_ms = budget.as_millis() as u64,
                    "stock too slow: availability unknown"
                );
                None
            }
        }
    }
}

/// Takes lookups as calls become free, each call carrying everything queued by then.
async fn gather(
    mut lookups: mpsc::Receiver<Lookup>,
    client: StockServiceClient<crate::upstream::Traced>,
    timeout: Duration,
) {
    let calls = Arc::new(Semaphore::new(IN_FLIGHT));
    // A lookup too big to join the last call goes first in the next.
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(lookup) => lookup,
            None => match lookups.recv().await {
                Some(lookup) => lookup,
                None => return,
            },
        };
        if first.reply.is_closed() {
            continue; // Its caller stopped waiting.
        }
        // Waiting here for a free call is what lets lookups gather behind it.
        let Ok(permit) = Arc::clone(&calls).acquire_owned().await else { return };
        let mut total = first.ids.len();
        let mut batch = vec![first];
        while total < MAX_IDS {
            let Ok(next) = lookups.try_recv() else { break };
            if next.reply.is_closed() {
                continue;
            }
            if total + next.ids.len() > MAX_IDS {
                carried = Some(next);
                break;
            }
            total += next.ids.len();
            batch.push(next);
        }
        let client = client.clone();
        tokio::spawn(async move {
            call(client, batch, timeout).await;
            drop(permit);
        });
    }
}

/// One BatchGetAvailability for `batch`, each lookup answered with its own ids in its order;
/// abandoned as soon as every caller in the batch has stopped waiting, to free its slot.
///
/// Traced as a span of the first caller's trace that links to every other caller's span, so
/// each caller's trace shows the stock call that served it.
async fn call(
    client: StockServiceClient<crate::upstream::Traced>,
    batch: Vec<Lookup>,
    timeout: Duration,
) {
    let lookups = trace::KeyValue::new("lookups", batch.len() as i64);
    let callers: Vec<trace::Context> = batch.iter().map(|lookup| lookup.caller.clone()).collect();
    trace::shared_span(
        "stock lookup",
        vec![lookups],
        &callers,
        call_traced(client, batch, timeout),
    )
    .await;
}

async fn call_traced(
    mut client: StockServiceClient<crate::upstream::Traced>,
    mut batch: Vec<Lookup>,
    timeout: Duration,
) {
    let mut ids: Vec<i64> = batch.iter().flat_map(|lookup| lookup.ids.iter().copied()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut request = Request::new(BatchGetAvailabilityRequest { movie_ids: ids });
    request.set_timeout(timeout);
    let everyone_gone =
        futures::future::join_all(batch.iter_mut().map(|lookup| lookup.reply.closed()));
    let answer = tokio::select! {
        answer = tokio::time::timeout(timeout, client.batch_get_availability(request)) => answer,
        _ = everyone_gone => return,
    };
    let found = match answer {
        Ok(Ok(response)) => Some(response.into_inner().availabilities),
        Ok(Err(status)) => {
            tracing::warn!(code = ?status.code(), message = status.message(), "stock call failed: availability unknown");
            None
        }
        // Each lookup has said so already, when its own budget ran out.
        Err(_) => None,
    };
    let found = found.map(|availabilities| {
        availabilities.into_iter().map(|a| (a.movie_id, a)).collect::<HashMap<_, _>>()
    });
    for lookup in batch {
        let answer = found.as_ref().and_then(|by_id| {
            lookup.ids.iter().map(|id| by_id.get(id).cloned().or_else(|| missing(*id))).collect()
        });
        // A caller that stopped waiting is not an error.
        let _ = lookup.reply.send(answer);
    }
}

/// Stock answered without a film it was asked for: a bug, logged; that view's stock is unknown.
fn missing(id: i64) -> Option<Availability> {
    tracing::error!(movie_id = id, "stock answered without a film it was asked for");
    None
}
