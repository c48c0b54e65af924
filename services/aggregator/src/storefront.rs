//! The combined views, shared by the gRPC and REST front doors: one catalogue call and one stock
//! lookup per view, never one call per film, and never waiting on stock past the caller's
//! deadline. A film page's catalogue part usually comes from memory (see `films`); stock
//! lookups of concurrent views share calls (see `stock_batch`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tonic::{
    Request, Status,
    codegen::{Bytes, GrpcMethod, http::uri::PathAndQuery},
    transport::Channel,
};
use videostore_proto::{
    aggregator as pb,
    catalogue::{self, catalogue_service_client::CatalogueServiceClient},
    codec::RawCodec,
    stock,
};

use videostore_kit::ids::MovieId;

use crate::{
    error::Error,
    films::FilmPages,
    stock_batch::StockBatcher,
    upstream::{Traced, traced},
};

/// Time kept back from the caller's deadline to build and send the answer.
const ANSWER_MARGIN: Duration = Duration::from_millis(20);

/// Exports (`GET /api/movies/export`) one aggregator runs at once; more are refused with 429
/// and a `Retry-After`. Each costs the catalogue a stream and the aggregator a batch or two.
pub(crate) const MAX_EXPORTS: usize = 4;

/// The channels to the services behind the store front.
pub(crate) struct Upstream {
    /// The catalogue, for calls.
    pub(crate) catalogue: Channel,
    /// The catalogue again, on connections of its own, for exports.
    pub(crate) exports: Channel,
    /// Stock.
    pub(crate) stock: Channel,
}

/// Clients of the two services behind the store front.
#[derive(Clone)]
pub(crate) struct Storefront {
    /// The catalogue.
    catalogue: CatalogueServiceClient<Traced>,
    /// The catalogue's channel for exports, its connections their own.
    exports: Traced,
    /// Places for the exports running at once.
    export_places: Arc<tokio::sync::Semaphore>,
    /// Stock, through lookups shared by concurrent views.
    stock: StockBatcher,
    /// Longest wait for stock.
    stock_timeout: Duration,
    /// Film pages, while the catalogue's changes are followed.
    films: Arc<FilmPages>,
}

impl Storefront {
    /// Clients over lazily connected channels, so the services may start in any order.
    pub(crate) fn new(upstream: Upstream, stock_timeout: Duration, films: Arc<FilmPages>) -> Self {
        Self {
            catalogue: CatalogueServiceClient::new(traced(upstream.catalogue))
                .max_decoding_message_size(videostore_kit::serve::MAX_MESSAGE_BYTES),
            exports: traced(upstream.exports),
            export_places: Arc::new(tokio::sync::Semaphore::new(MAX_EXPORTS)),
            stock: StockBatcher::start(upstream.stock, stock_timeout),
            stock_timeout,
            films,
        }
    }

    /// A place among the [`MAX_EXPORTS`] exports running at once, or RESOURCE_EXHAUSTED.
    pub(crate) fn export_place(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        Arc::clone(&self.export_places).try_acquire_owned().map_err(|_| Error::TooManyExports)
    }

    /// Every film matching `request`, in batches straight from the catalogue, each batch the
    /// bytes of an encoded `StreamMoviesResponse` (for writing them out without decoding). On
    /// the exports' own connections.
    pub(crate) async fn stream_movie_bytes(
        &self,
        request: catalogue::StreamMoviesRequest,
    ) -> Result<tonic::Streaming<Bytes>, Error> {
        let mut grpc = tonic::client::Grpc::new(self.exports.clone())
            .max_decoding_message_size(videostore_kit::serve::MAX_MESSAGE_BYTES);
        grpc.ready().await.map_err(|error| {
            Error::upstream("catalogue")(Status::unavailable(format!("not ready: {error}")))
        })?;
        let mut request = Request::new(request);
        request
            .extensions_mut()
            .insert(GrpcMethod::new("videostore.catalogue.v1.CatalogueService", "StreamMovies"));
        let path =
            PathAndQuery::from_static("/videostore.catalogue.v1.CatalogueService/StreamMovies");
        let response = grpc
            .server_streaming(request, path, RawCodec::default())
            .await
            .map_err(Error::upstream("catalogue"))?;
        Ok(response.into_inner())
    }

    /// A film page within `deadline`.
    pub(crate) async fn movie_page(
        &self,
        request: pb::GetMoviePageRequest,
        deadline: Duration,
    ) -> Result<pb::MoviePage, Error> {
        MovieId::parse("movie_id", request.movie_id)?;
        let started = Instant::now();
        // Both go out at once: the film's id is all stock needs.
        let (detail, stock) = tokio::join!(
            self.movie_detail(&request, deadline),
            self.availability(vec![request.movie_id], started, deadline),
        );
        let detail = detail?;
        let stock = stock.and_then(|mut found| found.pop());
        Ok(pb::MoviePage {
            movie: detail.movie.clone(),
            stock: Some(stock_info(stock)),
            related: detail.related.clone(),
        })
    }

    /// The catalogue's part of a film page: from memory, or asked for (and then kept).
    async fn movie_detail(
        &self,
        request: &pb::GetMoviePageRequest,
        deadline: Duration,
    ) -> Result<Arc<catalogue::MovieDetail>, Error> {
        let key = (request.movie_id, request.related_limit);
        if let Some(detail) = self.films.get(&key) {
            return Ok(detail);
        }
        let ticket = self.films.ticket();
        let detail_request = within(
            catalogue::GetMovieDetailRequest {
                id: request.movie_id,
                related_limit: request.related_limit,
            },
            deadline,
        );
        let detail = self
            .catalogue
            .clone()
            .get_movie_detail(detail_request)
            .await
            .map_err(Error::upstream("catalogue"))?;
        let detail = Arc::new(detail.into_inner());
        if let Some(ticket) = ticket {
            self.films.fill(ticket, key, Arc::clone(&detail));
        }
        Ok(detail)
    }

    /// A page of the store front within `deadline`.
    pub(crate) async fn list(
        &self,
        request: pb::ListStorefrontRequest,
        deadline: Duration,
    ) -> Result<pb::ListStorefrontResponse, Error> {
        let started = Instant::now();
        let list_request = within(
            catalogue::ListMoviesRequest {
                filter: request.filter,
                order_by: request.order_by,
                descending: request.descending,
                page_size: request.page_size,
                page_token: request.page_token,
            },
            deadline,
        );
        let page = self
            .catalogue
            .clone()
            .list_movies(list_request)
            .await
            .map_err(Error::upstream("catalogue"))?;
        let page = page.into_inner();
        let ids: Vec<i64> = page.movies.iter().map(|movie| movie.id).collect();
        let mut stock = if ids.is_empty() {
            Some(Vec::new())
        } else {
            self.availability(ids, started, deadline).await
        };
        let items = page
            .movies
            .into_iter()
            .enumerate()
            .map(|(index, movie)| {
                let availability =
                    stock.as_mut().and_then(|found| found.get_mut(index).map(std::mem::take));
                pb::StorefrontItem { movie: Some(movie), stock: Some(stock_info(availability)) }
            })
            .collect();
        Ok(pb::ListStorefrontResponse {
            items,
            next_page_token: page.next_page_token,
            total_size: page.total_size,
        })
    }

    /// Stock of `ids` in order, or `None` when stock did not answer within its budget: the
    /// smaller of the configured stock timeout and what is left of the caller's deadline.
    async fn availability(
        &self,
        ids: Vec<i64>,
        started: Instant,
        deadline: Duration,
    ) -> Option<Vec<stock::Availability>> {
        let left = deadline.saturating_sub(started.elapsed()).saturating_sub(ANSWER_MARGIN);
        let budget = left.min(self.stock_timeout);
        if budget.is_zero() {
            return None;
        }
        self.stock.lookup(ids, budget).await
    }
}

/// A catalogue request that must be answered within the caller's `deadline`, less the time kept
/// back to build and send the answer.
fn within<T>(message: T, deadline: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(deadline.saturating_sub(ANSWER_MARGIN).max(ANSWER_MARGIN));
    request
}

fn stock_info(availability: Option<stock::Availability>) -> pb::StockInfo {
    pb::StockInfo { known: availability.is_some(), availability }
}
