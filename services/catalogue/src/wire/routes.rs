//! The catalogue's gRPC routes: StreamMovies and ExportMovies from the wire form, every other
//! method through the generated server. ImportMovies alone takes big request messages (batches
//! of films); every other method's requests are held to `MAX_REQUEST_BYTES`.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tonic::{
    body::Body,
    codegen::{Service, http},
    server::{Grpc, NamedService},
};
use videostore_kit::serve::MAX_REQUEST_BYTES;
use videostore_proto::{
    catalogue::{self as pb, catalogue_service_server::CatalogueServiceServer},
    codec::ProstCodec,
};

use super::{EncodedMovies, export, stream::StreamMovies};

use crate::grpc::CatalogueApi;

const STREAM_MOVIES: &str = "/videostore.catalogue.v1.CatalogueService/StreamMovies";
const EXPORT_MOVIES: &str = "/videostore.catalogue.v1.CatalogueService/ExportMovies";
const IMPORT_MOVIES: &str = "/videostore.catalogue.v1.CatalogueService/ImportMovies";

/// The routes. Cloned for every request, so the handlers are held by `Arc`.
#[derive(Clone)]
pub(crate) struct CatalogueRoutes {
    api: Arc<CatalogueApi>,
    /// Every method but the ones below, taking small requests.
    generated: CatalogueServiceServer<CatalogueApi>,
    /// The same server taking batches of films, for ImportMovies.
    import: CatalogueServiceServer<CatalogueApi>,
    /// Largest message sent, and taken by ImportMovies (an export's one message has its own
    /// limit).
    max_message_bytes: usize,
}

impl CatalogueRoutes {
    /// Routes to `api`, sending messages of at most `max_message_bytes` and taking import
    /// batches of that size; other requests are held to `MAX_REQUEST_BYTES`.
    pub(crate) fn new(api: CatalogueApi, max_message_bytes: usize) -> Self {
        let api = Arc::new(api);
        let server = |max_request_bytes| {
            CatalogueServiceServer::from_arc(Arc::clone(&api))
                .max_decoding_message_size(max_request_bytes)
                .max_encoding_message_size(max_message_bytes)
        };
        let generated = server(MAX_REQUEST_BYTES.min(max_message_bytes));
        let import = server(max_message_bytes);
        Self { api, generated, import, max_message_bytes }
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
        let limit = Some(self.max_message_bytes);
        match request.uri().path() {
            STREAM_MOVIES => {
                let mut grpc =
                    Grpc::new(ProstCodec::<EncodedMovies, pb::StreamMoviesRequest>::default())
                        .apply_max_message_size_config(
                            Some(MAX_REQUEST_BYTES.min(self.max_message_bytes)),
                            limit,
                        );
                let method = StreamMovies(Arc::clone(&self.api));
                Box::pin(async move { Ok(grpc.server_streaming(method, request).await) })
            }
            EXPORT_MOVIES => {
                let api = Arc::clone(&self.api);
                let limit = MAX_REQUEST_BYTES.min(self.max_message_bytes);
                Box::pin(async move { Ok(export::answer(&api, request, limit).await) })
            }
            IMPORT_MOVIES => self.import.call(request),
            _ => self.generated.call(request),
        }
    }
}
