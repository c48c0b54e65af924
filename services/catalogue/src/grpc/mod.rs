//! The gRPC surface: each handler reads its request (`convert`), checks its caller, calls the
//! service and writes the answer. Errors leave as [`Error`] and become statuses in one place.
//!
//! StreamMovies and ExportMovies are answered from the films' stored wire form by
//! [`crate::wire::CatalogueRoutes`], ahead of the generated server.

mod convert;
mod import;
mod lookup;
mod watch;

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use videostore_kit::{
    auth::TokenKeys,
    streams::{StreamPlace, StreamPlaces},
};
use videostore_proto::catalogue::{self as pb, catalogue_service_server::CatalogueService};

pub(crate) use self::convert::{bounded, filter_from_proto, movie_to_proto, order_from_proto};
use self::watch::ChangeWatch;
use crate::{
    domain::{Invalid, ListQuery, MovieFields, MovieId, RawMovie},
    error::Error,
    page_token,
    service::Catalogue,
};

/// Default and largest page of ListMovies.
const DEFAULT_PAGE_SIZE: usize = 20;
const MAX_PAGE_SIZE: usize = 100;
/// Largest BatchGetMovies.
const MAX_BATCH_GET: usize = 1000;
/// Default and largest related-films list.
const DEFAULT_RELATED: usize = 6;
const MAX_RELATED: usize = 20;
/// Longest CreateMovie request id.
const MAX_REQUEST_ID_CHARS: usize = 100;

/// A stream of answers, as the generated server takes it.
pub(crate) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The catalogue's gRPC handlers.
#[derive(Clone)]
pub(crate) struct CatalogueApi {
    /// The operations.
    pub(crate) catalogue: Arc<Catalogue>,
    /// Verifies staff tokens for writes.
    keys: TokenKeys,
    /// Cancelled at shutdown, so long streams end instead of holding the server open.
    pub(crate) shutdown: CancellationToken,
    /// Places for long streams, per process and per client.
    streams: Arc<StreamPlaces>,
}

impl CatalogueApi {
    /// Handlers over `catalogue`.
    pub(crate) fn new(
        catalogue: Arc<Catalogue>,
        keys: TokenKeys,
        shutdown: CancellationToken,
        streams: Arc<StreamPlaces>,
    ) -> Self {
        Self { catalogue, keys, shutdown, streams }
    }

    /// A place for a long stream of the request's client.
    fn stream_place<T>(&self, request: &Request<T>) -> Result<StreamPlace, Error> {
        self.streams.take(request).map_err(|full| Error::TooManyStreams { whose: full.whose() })
    }
}

#[tonic::async_trait]
impl CatalogueService for CatalogueApi {
    async fn get_movie(
        &self,
        request: Request<pb::GetMovieRequest>,
    ) -> Result<Response<pb::Movie>, Status> {
        let id = MovieId::parse("id", request.get_ref().id)?;
        let movie = self.catalogue.movie(id).await?;
        Ok(Response::new(movie_to_proto(movie)))
    }

    async fn get_movie_detail(
        &self,
        request: Request<pb::GetMovieDetailRequest>,
    ) -> Result<Response<pb::MovieDetail>, Status> {
        let request = request.into_inner();
        let id = MovieId::parse("id", request.id)?;
        let related =
            bounded(request.related_limit, "related_limit", DEFAULT_RELATED, MAX_RELATED)?;
        let (movie, related) = self.catalogue.detail(id, related).await?;
        Ok(Response::new(pb::MovieDetail {
            movie: Some(movie_to_proto(movie)),
            related: related.into_iter().map(movie_to_proto).collect(),
        }))
    }

    async fn batch_get_movies(
        &self,
        request: Request<pb::BatchGetMoviesRequest>,
    ) -> Result<Response<pb::BatchGetMoviesResponse>, Status> {
        let ids = batch_ids(&request.get_ref().ids)?;
        let movies = self.catalogue.movies(&ids).await?;
        Ok(Response::new(pb::BatchGetMoviesResponse {
            movies: movies.into_iter().map(movie_to_proto).collect(),
        }))
    }

    async fn list_movies(
        &self,
        request: Request<pb::ListMoviesRequest>,
    ) -> Result<Response<pb::ListMoviesResponse>, Status> {
        let request = request.into_inner();
        let read = || -> Result<(ListQuery, u64, Option<i64>), Invalid> {
            let filter = filter_from_proto(request.filter.as_ref())?;
            let order = order_from_proto(request.order_by)?;
            let limit = bounded(request.page_size, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
            let fingerprint = filter.fingerprint(order, request.descending);
            let resume = page_token::decode(&request.page_token, fingerprint)?;
            let (after, total) = match resume {
                Some(resume) => (Some(resume.after), resume.total),
                None => (None, None),
            };
            Ok((
                ListQuery { filter, order, descending: request.descending, after, limit },
                fingerprint,
                total,
            ))
        };
        let (query, fingerprint, known_total) = read()?;
        let page = self.catalogue.list(query, known_total).await?;
        Ok(Response::new(pb::ListMoviesResponse {
            movies: page.movies.into_iter().map(movie_to_proto).collect(),
            next_page_token: page
                .next
                .map(|cursor| page_token::encode(fingerprint, cursor, page.total))
                .unwrap_or_default(),
            total_size: page.total,
        }))
    }

    type StreamMoviesStream = BoxStream<pb::StreamMoviesResponse>;

    /// Never called: [`crate::wire::CatalogueRoutes`] answers StreamMovies before the generated
    /// server sees it (the trait still needs the method).
    async fn stream_movies(
        &self,
        _: Request<pb::StreamMoviesRequest>,
    ) -> Result<Response<Self::StreamMoviesStream>, Status> {
        Err(Error::internal("StreamMovies reached the generated server, not the wire route").into())
    }

    /// Never called: see [`CatalogueApi::stream_movies`].
    async fn export_movies(
        &self,
        _: Request<pb::ExportMoviesRequest>,
    ) -> Result<Response<pb::ExportMoviesResponse>, Status> {
        Err(Error::internal("ExportMovies reached the generated server, not the wire route").into())
    }

    async fn import_movies(
        &self,
        request: Request<Streaming<pb::ImportMoviesRequest>>,
    ) -> Result<Response<pb::ImportMoviesResponse>, Status> {
        let staff = self.keys.require_staff_session(request.metadata())?;
        let summary = import::import(&self.catalogue, &staff, request.into_inner()).await?;
        tracing::info!(
            staff = %staff.caller.email,
            created = summary.created,
            updated = summary.updated,
            rejected = summary.rejected_count,
            "import finished"
        );
        Ok(Response::new(summary))
    }

    type LookupMoviesStream = BoxStream<pb::LookupMoviesResponse>;

    async fn lookup_movies(
        &self,
        request: Request<Streaming<pb::LookupMoviesRequest>>,
    ) -> Result<Response<Self::LookupMoviesStream>, Status> {
        let place = self.stream_place(&request)?;
        let (answers, receiver) = tokio::sync::mpsc::channel(16);
        let catalogue = Arc::clone(&self.catalogue);
        let shutdown = self.shutdown.clone();
        let lookups = lookup::answer(catalogue, request.into_inner(), answers, shutdown);
        // The place is held while the lookups are answered.
        tokio::spawn(async move {
            lookups.await;
            drop(place);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn create_movie(
        &self,
        request: Request<pb::CreateMovieRequest>,
    ) -> Result<Response<pb::Movie>, Status> {
        self.keys.require_staff(request.metadata())?;
        let request = request.into_inner();
        let (fields, request_id) = new_film(&request)?;
        let created = self.catalogue.create(fields, request_id).await?;
        Ok(Response::new(movie_to_proto(created)))
    }

    async fn update_movie(
        &self,
        request: Request<pb::UpdateMovieRequest>,
    ) -> Result<Response<pb::Movie>, Status> {
        self.keys.require_staff(request.metadata())?;
        let request = request.into_inner();
        let patch = request.movie.ok_or_else(|| Invalid::new("movie is required"))?;
        let id = MovieId::parse("id", patch.id)?;
        let paths = request.update_mask.map(|mask| mask.paths).unwrap_or_default();
        // The mask is checked before the store is touched: inside the write's transaction only
        // the merge and the film's own rules are left to check.
        convert::check_mask(&paths)?;
        let change = move |current: &MovieFields| -> Result<MovieFields, Invalid> {
            convert::merge(current, &patch, &paths)?.validate(std::time::SystemTime::now())
        };
        let updated = self.catalogue.update(id, Box::new(change)).await?;
        Ok(Response::new(movie_to_proto(updated)))
    }

    async fn delete_movie(
        &self,
        request: Request<pb::DeleteMovieRequest>,
    ) -> Result<Response<()>, Status> {
        self.keys.require_staff(request.metadata())?;
        let id = MovieId::parse("id", request.get_ref().id)?;
        self.catalogue.delete(id).await?;
        Ok(Response::new(()))
    }

    async fn list_genres(
        &self,
        _request: Request<pb::ListGenresRequest>,
    ) -> Result<Response<pb::ListGenresResponse>, Status> {
        let genres = self.catalogue.genres().await?;
        Ok(Response::new(pb::ListGenresResponse {
            genres: genres
                .into_iter()
                .map(|(name, movie_count)| pb::Genre { name, movie_count })
                .collect(),
        }))
    }

    type WatchChangesStream = BoxStream<pb::WatchChangesResponse>;

    async fn watch_changes(
        &self,
        request: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        let place = self.stream_place(&request)?;
        let watch = ChangeWatch::new(self.catalogue.changes(), self.shutdown.clone());
        // The stream is the watch itself (holding its place): no task or channel per watcher.
        let stream = futures::stream::unfold((watch, place), |(mut watch, place)| async move {
            let next = watch.next().await?;
            Some((next, (watch, place)))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The ids of a BatchGetMovies: 1 to [`MAX_BATCH_GET`] film ids.
fn batch_ids(ids: &[i64]) -> Result<Vec<MovieId>, Invalid> {
    if ids.is_empty() {
        return Err(Invalid::new("ids must name at least one film"));
    }
    if ids.len() > MAX_BATCH_GET {
        return Err(Invalid(format!("at most {MAX_BATCH_GET} ids per call, not {}", ids.len())));
    }
    ids.iter().map(|&id| MovieId::parse("ids", id)).collect()
}

/// A CreateMovie's checked film and request id.
fn new_film(request: &pb::CreateMovieRequest) -> Result<(MovieFields, Option<&str>), Invalid> {
    let movie = request.movie.as_ref().ok_or_else(|| Invalid::new("movie is required"))?;
    let request_id = request.request_id.trim();
    if request_id.chars().count() > MAX_REQUEST_ID_CHARS {
        return Err(Invalid(format!(
            "request_id is longer than {MAX_REQUEST_ID_CHARS} characters"
        )));
    }
    let fields = RawMovie::from(movie).validate(std::time::SystemTime::now())?;
    Ok((fields, (!request_id.is_empty()).then_some(request_id)))
}
