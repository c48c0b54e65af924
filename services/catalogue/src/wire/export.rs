//! ExportMovies from the wire form: the whole answer is one message, sent as its 5-byte header,
//! then the chunks the store reads, as they are read (never copied into one buffer), then the
//! trailers.

use std::task::{Context, Poll};

use prost::bytes::Bytes;
use tokio::sync::mpsc::Receiver;
use tonic::{Status, Streaming, body::Body, codec::Codec, codegen::http};
use videostore_proto::{catalogue as pb, codec::ProstCodec};

use super::EncodedMovies;
use crate::{
    domain::{Invalid, ListQuery},
    error::Error,
    grpc::{CatalogueApi, filter_from_proto, order_from_proto},
};

/// ExportMovies, answered with the export's chunks as they are read: the message's 5-byte
/// header, then the chunks as the body's data (not copied into one buffer to be encoded), then
/// the trailers. Errors before the answer are trailers-only, as tonic makes them. A read that
/// fails part-way aborts the body (a reset stream over HTTP/2, a cut connection over HTTP/1.1):
/// trailers after half a message would be read as message bytes over gRPC-Web, and a client
/// must never take a cut-short message for a whole one.
pub(super) async fn answer(
    api: &CatalogueApi,
    request: http::Request<Body>,
    max_decoding: usize,
) -> http::Response<Body> {
    let decoder = ProstCodec::<EncodedMovies, pb::ExportMoviesRequest>::default().decoder();
    let body = request.into_body();
    let export = async {
        let request = Streaming::new_request(decoder, body, None, Some(max_decoding))
            .message()
            .await?
            .ok_or_else(|| Invalid::new("the request has no message"))?;
        let query = ListQuery {
            filter: filter_from_proto(request.filter.as_ref())?,
            order: order_from_proto(request.order_by)?,
            descending: request.descending,
            after: None,
            limit: usize::MAX,
        };
        Ok::<_, Status>(api.catalogue.export(&query).await?)
    };
    match export.await {
        Ok(export) => {
            let mut header = Vec::with_capacity(5);
            header.push(0); // Not compressed.
            let len =
                u32::try_from(export.wire.bytes).expect("exports are limited far below 4 GiB");
            header.extend_from_slice(&len.to_be_bytes());
            let body = OneMessage {
                header: Some(Bytes::from(header)),
                owed: export.wire.bytes,
                chunks: export.wire.chunks,
                ended: false,
                _export: export.place,
            };
            let mut response = http::Response::new(Body::new(body));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            response
        }
        Err(status) => status.into_http(),
    }
}

/// A unary answer's body: one message in pieces as they arrive, then its status.
struct OneMessage {
    header: Option<Bytes>,
    /// Bytes of the message not sent yet.
    owed: usize,
    chunks: Receiver<Result<Vec<u8>, Error>>,
    ended: bool,
    /// The export's place among those running at once, held until the body is dropped.
    _export: tokio::sync::OwnedSemaphorePermit,
}

impl http_body::Body for OneMessage {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(header) = self.header.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(header))));
        }
        let status = match std::task::ready!(self.chunks.poll_recv(cx)) {
            Some(Ok(chunk)) => {
                // The store never sends more than it announced (it fails instead).
                self.owed = self.owed.saturating_sub(chunk.len());
                return Poll::Ready(Some(Ok(http_body::Frame::data(chunk.into()))));
            }
            None if self.owed == 0 => Status::ok(""),
            None => Status::from(Error::internal(format!(
                "an export's read ended {} bytes short of its announced length",
                self.owed
            ))),
            Some(Err(error)) => Status::from(error),
        };
        self.ended = true;
        if self.owed > 0 {
            // Half a message: abort rather than let trailers follow it.
            return Poll::Ready(Some(Err(status)));
        }
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from(status.code() as i32));
        if status.code() != tonic::Code::Ok {
            // The message of every internal cause; it needs no percent-encoding.
            trailers.insert("grpc-message", http::HeaderValue::from_static("internal error"));
        }
        Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}
