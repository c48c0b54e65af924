//! StreamMovies from the wire form: one task reads the films a page of [`READ_PAGE`] at a time,
//! one page ahead of the response, and the response cuts each page into messages of the asked
//! batch size without copying. A page's messages are all ready at once, so the encoder packs
//! small ones into big writes. A stream cut short by shutdown ends UNAVAILABLE, never OK.

use std::sync::Arc;

use futures::future::BoxFuture;
use prost::bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Status, server::ServerStreamingService};
use videostore_proto::catalogue as pb;

use super::EncodedMovies;
use crate::{
    domain::{Invalid, ListQuery},
    error::Error,
    grpc::{BoxStream, CatalogueApi, bounded, filter_from_proto, order_from_proto},
    service::READ_PAGE,
    store::WirePage,
};

/// Default and largest batch of StreamMovies.
const DEFAULT_BATCH_SIZE: usize = 500;
const MAX_BATCH_SIZE: usize = 5000;
/// Most bytes of films in one streamed message: well under the message size limit, whatever
/// the batch size asked for.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// StreamMovies, as tonic's server-streaming machinery calls it.
pub(super) struct StreamMovies(pub(super) Arc<CatalogueApi>);

impl ServerStreamingService<pb::StreamMoviesRequest> for StreamMovies {
    type Response = EncodedMovies;
    type ResponseStream = BoxStream<EncodedMovies>;
    type Future = BoxFuture<'static, Result<tonic::Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: tonic::Request<pb::StreamMoviesRequest>) -> Self::Future {
        let api = Arc::clone(&self.0);
        Box::pin(async move { Ok(tonic::Response::new(stream(&api, request.into_inner())?)) })
    }
}

/// Every film matching `request`, in messages of the stored wire form.
fn stream(
    api: &CatalogueApi,
    request: pb::StreamMoviesRequest,
) -> Result<BoxStream<EncodedMovies>, Invalid> {
    let query = ListQuery {
        filter: filter_from_proto(request.filter.as_ref())?,
        order: order_from_proto(request.order_by)?,
        descending: request.descending,
        after: None,
        limit: usize::MAX,
    };
    let batch = bounded(request.batch_size, "batch_size", DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE)?;
    let pages = api.catalogue.read_pages(query, batch.max(READ_PAGE), api.shutdown.clone());
    let messages =
        Messages { pages, current: None, batch, shutdown: api.shutdown.clone(), finished: false };
    Ok(Box::pin(futures::stream::unfold(messages, Messages::next)))
}

/// StreamMovies' messages: the pages the reader sends, each cut into messages as it is sent.
struct Messages {
    pages: mpsc::Receiver<Result<WirePage, Error>>,
    current: Option<Box<dyn Iterator<Item = EncodedMovies> + Send>>,
    batch: usize,
    shutdown: CancellationToken,
    finished: bool,
}

impl Messages {
    /// The next message, and the state after it; `None` at the end.
    async fn next(mut self) -> Option<(Result<EncodedMovies, Status>, Self)> {
        loop {
            if self.finished {
                return None;
            }
            if self.shutdown.is_cancelled() {
                self.finished = true;
                return Some((Err(Error::ShuttingDown.into()), self));
            }
            if let Some(message) = self.current.as_mut().and_then(Iterator::next) {
                return Some((Ok(message), self));
            }
            let page = tokio::select! {
                page = self.pages.recv() => page,
                () = self.shutdown.cancelled() => continue,
            };
            match page {
                Some(Ok(page)) => self.current = Some(Box::new(cut(page, self.batch))),
                Some(Err(error)) => {
                    self.finished = true;
                    return Some((Err(error.into()), self));
                }
                // The reader finished: that was everything.
                None => return None,
            }
        }
    }
}

/// Cuts a page of films in wire form into messages of at most `batch` films and
/// [`MAX_BATCH_BYTES`] (at least one film each), without copying them.
fn cut(page: WirePage, batch: usize) -> impl Iterator<Item = EncodedMovies> {
    let bytes = Bytes::from(page.bytes);
    let ends = page.ends;
    let (mut start, mut next) = (0, 0);
    std::iter::from_fn(move || {
        let first = next;
        let mut end = *ends.get(next)?;
        next += 1;
        while next < ends.len() && next - first < batch && ends[next] - start <= MAX_BATCH_BYTES {
            end = ends[next];
            next += 1;
        }
        let message = EncodedMovies::new(bytes.slice(start..end));
        start = end;
        Some(message)
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// A page of `films` films in wire form, each `size` bytes.
    fn page(films: usize, size: usize) -> WirePage {
        let mut page = WirePage::default();
        for index in 0..films {
            page.bytes.extend(std::iter::repeat_n(index as u8, size));
            page.ends.push(page.bytes.len());
        }
        page
    }

    #[test]
    fn pages_are_cut_by_film_count_and_by_size_and_never_split_a_film() {
        // Films per message, for films of `size` bytes.
        let counts = |page: WirePage, batch: usize, size: usize| -> Vec<usize> {
            cut(page, batch).map(|message| message.encoded_len() / size).collect()
        };
        assert_eq!(counts(page(1200, 100), 500, 100), [500, 500, 200]);
        assert_eq!(counts(page(3, 100), 1, 100), [1, 1, 1]);
        assert!(cut(WirePage::default(), 500).next().is_none());

        // 500 films of 20 kB are 10 MB: more than one message may carry, whatever the batch.
        let messages: Vec<_> = cut(page(500, 20_000), 500).collect();
        assert!(messages.len() >= 3);
        let mut film = 0;
        for message in &messages {
            assert!(message.encoded_len() <= MAX_BATCH_BYTES);
            // Each message holds whole films, in order.
            for chunk in message.encode_to_vec().chunks(20_000) {
                assert_eq!(chunk, vec![film as u8; 20_000]);
                film += 1;
            }
        }
        assert_eq!(film, 500);
        // A film bigger than the cap still goes, alone.
        let big = MAX_BATCH_BYTES + 1;
        assert_eq!(counts(page(2, big), 500, big), [1, 1]);
    }
}
