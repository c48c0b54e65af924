//! Bulk reads served from the films' stored wire form.
//!
//! Every write keeps each film's protobuf encoding beside its row ([`WIRE_FORM`]); StreamMovies
//! and ExportMovies answers are those bytes copied into messages, instead of every film being
//! read column by column, rebuilt and encoded again (which was most of a bulk read's cost).
//! The generated server would only accept the generated message types, so [`CatalogueRoutes`]
//! routes these two methods itself and hands every other method to the generated server:
//! StreamMovies through tonic's own gRPC machinery with the same limits; ExportMovies as a
//! response built here, its one message sent in the chunks the store reads it in, as they are
//! read (limited by `MAX_EXPORT_BYTES` before anything is sent). On the wire nothing changes:
//! both answers are `repeated Movie movies = 1`, byte for byte what the generated types encode.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
    time::SystemTime,
};

use futures::future::BoxFuture;
use prost::{
    DecodeError, Message,
    bytes::{Buf, BufMut, Bytes},
    encoding::{DecodeContext, WireType},
};
use tokio::sync::mpsc::UnboundedReceiver;
use tonic::{
    Status, Streaming,
    body::Body,
    codec::Codec,
    codegen::{Service, http},
    server::{Grpc, NamedService, ServerStreamingService},
};
use videostore_proto::catalogue::{self as pb, catalogue_service_server::CatalogueServiceServer};
use videostore_proto::codec::ProstCodec;

use crate::{
    domain::{Movie, MovieFields, MovieId},
    grpc::{CatalogueApi, store_error, to_proto},
    store::{StoreError, WireForm},
};

/// Each film as a `Movie` in field 1 of its message (tag, length, encoding).
pub(crate) const WIRE_FORM: WireForm = WireForm { version: 1, encode };

fn encode(id: MovieId, fields: &MovieFields, update_time: SystemTime, out: &mut Vec<u8>) {
    let movie = to_proto(Movie { id, fields: fields.clone(), update_time });
    prost::encoding::message::encode(1, &movie, out);
}

/// Films in wire form: the body of a StreamMoviesResponse or an ExportMoviesResponse. It is
/// only ever encoded; decoding into it skips every field.
#[derive(Debug, Clone, Default)]
pub(crate) struct EncodedMovies {
    bytes: Bytes,
}

impl EncodedMovies {
    /// Films in wire form, one after another.
    pub(crate) fn new(bytes: Bytes) -> Self {
        Self { bytes }
    }

    /// The films as the generated type.
    pub(crate) fn decode(self) -> Result<pb::StreamMoviesResponse, Status> {
        pb::StreamMoviesResponse::decode(self.bytes).map_err(|error| {
            tracing::error!(%error, "a stored film does not decode");
            Status::internal("internal error")
        })
    }
}

impl Message for EncodedMovies {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.bytes);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

const STREAM_MOVIES: &str = "/videostore.catalogue.v1.CatalogueService/StreamMovies";
const EXPORT_MOVIES: &str = "/videostore.catalogue.v1.CatalogueService/ExportMovies";

/// The catalogue's gRPC routes: StreamMovies and ExportMovies from the wire form, the rest
/// through the generated server. Cloned for every request, so it holds the handlers by `Arc`
/// (cloning them outright copied the token keys each time).
#[derive(Clone)]
pub(crate) struct CatalogueRoutes {
    api: Arc<CatalogueApi>,
    generated: CatalogueServiceServer<CatalogueApi>,
    max_decoding: usize,
    max_encoding: usize,
}

impl CatalogueRoutes {
    /// Routes to `api`, with these message size limits on every method.
    pub(crate) fn new(api: CatalogueApi, max_decoding: usize, max_encoding: usize) -> Self {
        let api = Arc::new(api);
        let generated = CatalogueServiceServer::from_arc(Arc::clone(&api))
            .max_decoding_message_size(max_decoding)
            .max_encoding_message_size(max_encoding);
        Self { api, generated, max_decoding, max_encoding }
    }

    fn grpc<Request: Message + Default + Send + 'static>(
        &self,
    ) -> Grpc<ProstCodec<EncodedMovies, Request>> {
        Grpc::new(ProstCodec::default())
            .apply_max_message_size_config(Some(self.max_decoding), Some(self.max_encoding))
    }
}

impl NamedService for CatalogueRoutes {
    const NAME: &'static str = <CatalogueServiceServer<CatalogueApi> as NamedService>::NAME;
}

impl Service<http::Request<Body>> for CatalogueRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match request.uri().path() {
            STREAM_MOVIES => {
                let mut grpc = self.grpc::<pb::StreamMoviesRequest>();
                let method = StreamWire(Arc::clone(&self.api));
                Box::pin(async move { Ok(grpc.server_streaming(method, request).await) })
            }
            EXPORT_MOVIES => {
                let api = Arc::clone(&self.api);
                let max_decoding = self.max_decoding;
                Box::pin(async move { Ok(export(&api, request, max_decoding).await) })
            }
            _ => self.generated.call(request),
        }
    }
}

struct StreamWire(Arc<CatalogueApi>);

impl ServerStreamingService<pb::StreamMoviesRequest> for StreamWire {
    type Response = EncodedMovies;
    type ResponseStream = crate::grpc::BoxStream<EncodedMovies>;
    type Future = BoxFuture<'static, Result<tonic::Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: tonic::Request<pb::StreamMoviesRequest>) -> Self::Future {
        let api = Arc::clone(&self.0);
        Box::pin(async move { api.stream_wire(request.into_inner()).map(tonic::Response::new) })
    }
}

/// ExportMovies, answered with the export's chunks as they are read: the message's 5-byte
/// header, then the chunks as the body's data (not copied into one buffer to be encoded), then
/// the trailers. Errors before the answer are trailers-only, as tonic makes them. A read that
/// fails part-way aborts the body (a reset stream over HTTP/2, a cut connection over HTTP/1.1):
/// trailers after half a message would be read as message bytes over gRPC-Web, and a client
/// must never take a cut-short message for a whole one.
async fn export(
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
            .ok_or_else(|| Status::invalid_argument("the request has no message"))?;
        api.export_wire(request).await
    };
    match export.await {
        Ok(export) => {
            let mut header = Vec::with_capacity(5);
            header.push(0); // Not compressed.
            let len = u32::try_from(export.bytes).expect("exports are limited far below 4 GiB");
            header.extend_from_slice(&len.to_be_bytes());
            let body = OneMessage {
                header: Some(Bytes::from(header)),
                owed: export.bytes,
                chunks: export.chunks,
                ended: false,
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
    chunks: UnboundedReceiver<Result<Vec<u8>, StoreError>>,
    ended: bool,
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
            None => store_error(StoreError::Backend(anyhow::anyhow!(
                "an export's read ended {} bytes short of its announced length",
                self.owed
            ))),
            Some(Err(error)) => store_error(error),
        };
        self.ended = true;
        if self.owed > 0 {
            // Half a message: abort rather than let trailers follow it.
            return Poll::Ready(Some(Err(status)));
        }
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from(status.code() as i32));
        if status.code() != tonic::Code::Ok {
            // `store_error`'s message for every internal cause; it needs no percent-encoding.
            trailers.insert("grpc-message", http::HeaderValue::from_static("internal error"));
        }
        Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Rating;

    #[test]
    fn stored_films_encode_exactly_as_the_generated_types_do() {
        let fields = MovieFields {
            title: "Amélie".into(),
            release_year: 2001,
            genres: vec!["Comedy".into(), "Romance".into()],
            runtime_minutes: 122,
            director: "Jean-Pierre Jeunet".into(),
            rating: Rating(4),
            synopsis: "A shy waitress decides to change the lives of those around her.".into(),
            audience_rating: 8.3,
            external_key: Some("tt0211915".into()),
        };
        let when = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let mut stored = Vec::new();
        for id in [7, 8] {
            (WIRE_FORM.encode)(id, &fields, when, &mut stored);
        }
        let expected = pb::StreamMoviesResponse {
            movies: [7, 8]
                .map(|id| to_proto(Movie { id, fields: fields.clone(), update_time: when }))
                .into(),
        };
        let answer = EncodedMovies::new(stored.into());
        assert_eq!(answer.encode_to_vec(), expected.encode_to_vec());
        assert_eq!(answer.decode().unwrap(), expected);
    }
}
