//! LookupMovies: answers each id as it arrives on the request stream, in order, until the client
//! ends its stream or the server shuts down.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};
use videostore_proto::catalogue as pb;

use super::convert::movie_to_proto;
use crate::{domain::MovieId, service::Catalogue};

/// Answers the lookups of `inbound` on `answers`; an answer that fails ends the stream.
pub(super) async fn answer(
    catalogue: Arc<Catalogue>,
    mut inbound: Streaming<pb::LookupMoviesRequest>,
    answers: mpsc::Sender<Result<pb::LookupMoviesResponse, Status>>,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            next = inbound.message() => next,
            () = shutdown.cancelled() => return,
        };
        let id = match next {
            Ok(Some(lookup)) => lookup.id,
            Ok(None) => return,
            Err(status) => {
                // Bytes that are not a lookup are answered; a caller that went away hears
                // nothing, whatever is sent.
                tracing::debug!(%status, "lookup stream ended by the client");
                let refused = Err(videostore_kit::undecodable::request_stream_error(status));
                tokio::select! {
                    _ = answers.send(refused) => {}
                    () = shutdown.cancelled() => {}
                }
                return;
            }
        };
        // An id that cannot exist is simply not found.
        let found = match MovieId::parse("id", id) {
            Ok(movie_id) => catalogue.find(movie_id).await,
            Err(_) => Ok(None),
        };
        let answer = found
            .map(|movie| pb::LookupMoviesResponse {
                id,
                found: movie.is_some(),
                movie: movie.map(movie_to_proto),
            })
            .map_err(Status::from);
        let failed = answer.is_err();
        let sent = tokio::select! {
            sent = answers.send(answer) => sent.is_ok(),
            () = shutdown.cancelled() => false,
        };
        if !sent || failed {
            return;
        }
    }
}
