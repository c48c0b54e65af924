//! The gRPC surface: the only module that touches prost types. It checks requests, calls the
//! store, and turns results and errors into messages and statuses.

use std::{collections::HashMap, pin::Pin, sync::Arc, time::SystemTime};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use futures::{Stream, StreamExt};
use prost::bytes::Bytes;
use tokio::sync::{
    broadcast::{self, error::RecvError},
    mpsc,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use videostore_kit::{auth::TokenKeys, error::ServiceError};
use videostore_proto::catalogue::{self as pb, catalogue_service_server::CatalogueService};

use crate::{
    domain::{Cursor, Filter, Invalid, ListQuery, Movie, MovieFields, MovieId, Order, RawMovie},
    store::{CatalogueStore, Change, StoreError, Upserted, WireExport, WirePage},
    wire::EncodedMovies,
};

/// Default and largest page of ListMovies.
const DEFAULT_PAGE_SIZE: usize = 20;
const MAX_PAGE_SIZE: usize = 100;
/// Default and largest batch of StreamMovies.
const DEFAULT_BATCH_SIZE: usize = 500;
const MAX_BATCH_SIZE: usize = 5000;
/// Films read from the database per statement while streaming, whatever the message size.
const READ_PAGE: usize = 5000;
/// Most bytes an ExportMovies answer may have (the service's encoding limit is set to match).
pub(crate) const MAX_EXPORT_BYTES: usize = 256 * 1024 * 1024;
/// Largest BatchGetMovies.
const MAX_BATCH_GET: usize = 1000;
/// Default and largest related-films list.
const DEFAULT_RELATED: usize = 6;
const MAX_RELATED: usize = 20;
/// Longest CreateMovie request id.
const MAX_REQUEST_ID_CHARS: usize = 100;
/// How long a WatchChanges stream stays silent before it sends a heartbeat.
const WATCH_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(15);
/// Imported rows are committed in transactions of this many rows.
const IMPORT_BATCH: usize = 5000;
/// Most rejected rows listed in an import summary (all are counted).
const MAX_REJECTED_LISTED: usize = 10_000;

/// The catalogue's gRPC handlers.
#[derive(Clone)]
pub(crate) struct CatalogueApi {
    /// Where films live.
    store: Arc<dyn CatalogueStore>,
    /// Verifies staff tokens for writes.
    keys: TokenKeys,
    /// Cancelled at shutdown, so long streams end instead of holding the server open.
    shutdown: CancellationToken,
    /// Committed writes, announced by the store; each WatchChanges stream subscribes.
    changes: broadcast::Sender<Change>,
}

impl CatalogueApi {
    /// Handlers over `store`.
    pub(crate) fn new(
        store: Arc<dyn CatalogueStore>,
        keys: TokenKeys,
        shutdown: CancellationToken,
        changes: broadcast::Sender<Change>,
    ) -> Self {
        Self { store, keys, shutdown, changes }
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(id) => ServiceError::not_found(format!("no film has id {id}")),
            StoreError::DuplicateKey(key) => ServiceError::AlreadyExists(format!(
                "another film already has external key {key:?}"
            )),
            StoreError::Invalid(invalid) => ServiceError::InvalidArgument(invalid.0),
            StoreError::Backend(cause) => ServiceError::Internal(cause),
        }
    }
}

pub(crate) fn store_error(error: StoreError) -> Status {
    ServiceError::from(error).into()
}

fn invalid(error: Invalid) -> Status {
    Status::invalid_argument(error.0)
}

fn check_id(id: MovieId) -> Result<MovieId, Status> {
    if id <= 0 {
        return Err(Status::invalid_argument(format!("id must be a positive number, not {id}")));
    }
    Ok(id)
}

fn raw_from_proto(movie: &pb::Movie) -> RawMovie {
    RawMovie {
        title: movie.title.clone(),
        release_year: movie.release_year,
        genres: movie.genres.clone(),
        runtime_minutes: movie.runtime_minutes,
        director: movie.director.clone(),
        rating: movie.rating,
        synopsis: movie.synopsis.clone(),
        audience_rating: movie.audience_rating,
        external_key: movie.external_key.clone(),
    }
}

fn raw_from_fields(fields: &MovieFields) -> RawMovie {
    RawMovie {
        title: fields.title.clone(),
        release_year: fields.release_year,
        genres: fields.genres.clone(),
        runtime_minutes: fields.runtime_minutes,
        director: fields.director.clone(),
        rating: fields.rating.0,
        synopsis: fields.synopsis.clone(),
        audience_rating: fields.audience_rating,
        external_key: fields.external_key.clone().unwrap_or_default(),
    }
}

/// The wire form of a stored film.
pub(crate) fn to_proto(movie: Movie) -> pb::Movie {
    let Movie { id, fields, update_time } = movie;
    pb::Movie {
        id,
        title: fields.title,
        release_year: fields.release_year,
        genres: fields.genres,
        runtime_minutes: fields.runtime_minutes,
        director: fields.director,
        rating: fields.rating.0,
        synopsis: fields.synopsis,
        audience_rating: fields.audience_rating,
        external_key: fields.external_key.unwrap_or_default(),
        update_time: Some(update_time.into()),
    }
}

fn order_from_proto(order: i32) -> Result<Order, Status> {
    match pb::MovieOrder::try_from(order) {
        Ok(pb::MovieOrder::Unspecified | pb::MovieOrder::Title) => Ok(Order::Title),
        Ok(pb::MovieOrder::Year) => Ok(Order::Year),
        Ok(pb::MovieOrder::Rating) => Ok(Order::Rating),
        Ok(pb::MovieOrder::Id) => Ok(Order::Id),
        Err(_) => Err(Status::invalid_argument(format!("order_by {order} is not a known order"))),
    }
}

fn filter_from_proto(filter: Option<&pb::MovieFilter>) -> Result<Filter, Status> {
    let default = pb::MovieFilter::default();
    let filter = filter.unwrap_or(&default);
    Filter::new(&filter.query, &filter.genre, filter.min_year, filter.max_year).map_err(invalid)
}

fn bounded(value: i32, name: &str, default: usize, max: usize) -> Result<usize, Status> {
    match value {
        0 => Ok(default),
        v if v < 0 => Err(Status::invalid_argument(format!("{name} must not be negative"))),
        v if v as usize > max => {
            Err(Status::invalid_argument(format!("{name} {v} is over the limit of {max}")))
        }
        v => Ok(v as usize),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PageToken {
    /// Fingerprint of the filter and order the token was issued for.
    f: u64,
    /// Where the next page starts.
    c: Cursor,
}

fn encode_token(fingerprint: u64, cursor: Cursor) -> String {
    let json = serde_json::to_vec(&PageToken { f: fingerprint, c: cursor })
        .expect("a page token always serialises");
    URL_SAFE_NO_PAD.encode(json)
}

fn decode_token(token: &str, fingerprint: u64) -> Result<Option<Cursor>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let malformed = || Status::invalid_argument("page_token is not a token this service issued");
    if token.len() > 2048 {
        return Err(malformed());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| malformed())?;
    let decoded: PageToken = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    if decoded.f != fingerprint {
        return Err(Status::invalid_argument(
            "page_token was issued for a different filter or order",
        ));
    }
    Ok(Some(decoded.c))
}

/// Applies an update mask: the masked fields of `patch` replace those of `current`.
fn apply_mask(current: RawMovie, patch: &pb::Movie, paths: &[String]) -> Result<RawMovie, Status> {
    let incoming = raw_from_proto(patch);
    if paths.is_empty() {
        return Ok(incoming);
    }
    let mut merged = current;
    for path in paths {
        match path.as_str() {
            "title" => merged.title = incoming.title.clone(),
            "release_year" => merged.release_year = incoming.release_year,
            "genres" => merged.genres = incoming.genres.clone(),
            "runtime_minutes" => merged.runtime_minutes = incoming.runtime_minutes,
            "director" => merged.director = incoming.director.clone(),
            "rating" => merged.rating = incoming.rating,
            "synopsis" => merged.synopsis = incoming.synopsis.clone(),
            "audience_rating" => merged.audience_rating = incoming.audience_rating,
            "external_key" => merged.external_key = incoming.external_key.clone(),
            "id" | "update_time" => {
                return Err(Status::invalid_argument(format!(
                    "update_mask path {path:?} is output only"
                )));
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "update_mask path {other:?} is not a field of Movie"
                )));
            }
        }
    }
    Ok(merged)
}

/// Most bytes of films in one streamed message: well under the message size limit, whatever
/// the batch size asked for.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// StreamMovies' messages: the pages the reader sends, each cut into messages as it is sent.
struct Messages {
    pages: mpsc::Receiver<Result<WirePage, Status>>,
    current: Option<Box<dyn Iterator<Item = EncodedMovies> + Send>>,
    batch: usize,
    shutdown: CancellationToken,
    finished: bool,
}

impl Messages {
    /// The next message, and the state after it; `None` at the end.
    async fn next(mut self) -> Option<(Result<EncodedMovies, Status>, Self)> {
        let shutting_down = || Status::unavailable("the catalogue is shutting down");
        loop {
            if self.finished {
                return None;
            }
            if self.shutdown.is_cancelled() {
                self.finished = true;
                return Some((Err(shutting_down()), self));
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
                Some(Err(status)) => {
                    self.finished = true;
                    return Some((Err(status), self));
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

pub(crate) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl CatalogueService for CatalogueApi {
    async fn get_movie(
        &self,
        request: Request<pb::GetMovieRequest>,
    ) -> Result<Response<pb::Movie>, Status> {
        let id = check_id(request.get_ref().id)?;
        match self.store.get(id).await.map_err(store_error)? {
            Some(movie) => Ok(Response::new(to_proto(movie))),
            None => Err(Status::not_found(format!("no film has id {id}"))),
        }
    }

    async fn get_movie_detail(
        &self,
        request: Request<pb::GetMovieDetailRequest>,
    ) -> Result<Response<pb::MovieDetail>, Status> {
        let request = request.into_inner();
        let id = check_id(request.id)?;
        let limit = bounded(request.related_limit, "related_limit", DEFAULT_RELATED, MAX_RELATED)?;
        let movie = self
            .store
            .get(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| Status::not_found(format!("no film has id {id}")))?;
        let related = self.store.related(&movie, limit).await.map_err(store_error)?;
        Ok(Response::new(pb::MovieDetail {
            movie: Some(to_proto(movie)),
            related: related.into_iter().map(to_proto).collect(),
        }))
    }

    async fn batch_get_movies(
        &self,
        request: Request<pb::BatchGetMoviesRequest>,
    ) -> Result<Response<pb::BatchGetMoviesResponse>, Status> {
        let ids = &request.get_ref().ids;
        if ids.is_empty() {
            return Err(Status::invalid_argument("ids must name at least one film"));
        }
        if ids.len() > MAX_BATCH_GET {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_BATCH_GET} ids per call, not {}",
                ids.len()
            )));
        }
        for id in ids {
            check_id(*id)?;
        }
        let found: HashMap<MovieId, Movie> = self
            .store
            .get_many(ids)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|movie| (movie.id, movie))
            .collect();
        let movies = ids
            .iter()
            .map(|id| {
                found
                    .get(id)
                    .cloned()
                    .map(to_proto)
                    .ok_or_else(|| Status::not_found(format!("no film has id {id}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Response::new(pb::BatchGetMoviesResponse { movies }))
    }

    async fn list_movies(
        &self,
        request: Request<pb::ListMoviesRequest>,
    ) -> Result<Response<pb::ListMoviesResponse>, Status> {
        let request = request.into_inner();
        let filter = filter_from_proto(request.filter.as_ref())?;
        let order = order_from_proto(request.order_by)?;
        let limit = bounded(request.page_size, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let fingerprint = filter.fingerprint(order, request.descending);
        let after = decode_token(&request.page_token, fingerprint)?;
        let query = ListQuery {
            filter: filter.clone(),
            order,
            descending: request.descending,
            after,
            limit: limit + 1,
        };
        let (page, total) = tokio::try_join!(self.store.list(&query), self.store.count(&filter))
            .map_err(store_error)?;
        let mut page = page;
        let next_page_token = if page.len() > limit {
            page.truncate(limit);
            page.last()
                .map(|last| encode_token(fingerprint, Cursor::after(last)))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListMoviesResponse {
            movies: page.into_iter().map(to_proto).collect(),
            next_page_token,
            total_size: total,
        }))
    }

    type StreamMoviesStream = BoxStream<pb::StreamMoviesResponse>;

    /// Decodes the batches [`CatalogueApi::stream_wire`] makes. The server routes StreamMovies
    /// to the wire form directly (see `wire.rs`); this is for a server mounted without it.
    async fn stream_movies(
        &self,
        request: Request<pb::StreamMoviesRequest>,
    ) -> Result<Response<Self::StreamMoviesStream>, Status> {
        let batches = self.stream_wire(request.into_inner())?;
        Ok(Response::new(Box::pin(batches.map(|batch| batch?.decode()))))
    }

    /// Decodes the answer [`CatalogueApi::export_wire`] makes (see `stream_movies`).
    async fn export_movies(
        &self,
        request: Request<pb::ExportMoviesRequest>,
    ) -> Result<Response<pb::ExportMoviesResponse>, Status> {
        let mut export = self.export_wire(request.into_inner()).await?;
        let mut bytes = Vec::with_capacity(export.bytes);
        while let Some(chunk) = export.chunks.recv().await {
            bytes.extend_from_slice(&chunk.map_err(store_error)?);
        }
        let movies = EncodedMovies::new(bytes.into()).decode()?;
        Ok(Response::new(pb::ExportMoviesResponse { movies: movies.movies }))
    }

    async fn import_movies(
        &self,
        request: Request<Streaming<pb::ImportMoviesRequest>>,
    ) -> Result<Response<pb::ImportMoviesResponse>, Status> {
        let caller = self.keys.require_staff(request.metadata())?;
        let mut stream = request.into_inner();
        let mut summary = pb::ImportMoviesResponse::default();
        let mut keys_seen: HashMap<String, i64> = HashMap::new();
        let mut pending: Vec<MovieFields> = Vec::with_capacity(IMPORT_BATCH);
        // One batch is written while the next is read and checked; at most one is in flight,
        // so batches commit in stream order.
        let mut writing: Option<tokio::task::JoinHandle<Result<Vec<Upserted>, Status>>> = None;
        let mut index: i64 = 0;
        let now = SystemTime::now();
        while let Some(message) = stream.message().await? {
            for row in message.movies {
                let row_index = index;
                index += 1;
                let external_key = row.external_key.trim().to_owned();
                let fields = match raw_from_proto(&row).validate(now) {
                    Ok(fields) => fields,
                    Err(reason) => {
                        reject(&mut summary, row_index, &external_key, reason.0);
                        continue;
                    }
                };
                if let Some(key) = &fields.external_key {
                    if let Some(first) = keys_seen.get(key) {
                        let reason = format!(
                            "external_key {key:?} appears twice in this import (first at row {first})"
                        );
                        reject(&mut summary, row_index, &external_key, reason);
                        continue;
                    }
                    keys_seen.insert(key.clone(), row_index);
                }
                pending.push(fields);
                if pending.len() >= IMPORT_BATCH {
                    count_written(writing.take(), &mut summary).await?;
                    let batch = std::mem::replace(&mut pending, Vec::with_capacity(IMPORT_BATCH));
                    let store = Arc::clone(&self.store);
                    writing = Some(tokio::spawn(async move {
                        store.upsert_batch(&batch, now).await.map_err(store_error)
                    }));
                }
            }
        }
        count_written(writing.take(), &mut summary).await?;
        if !pending.is_empty() {
            let outcomes = self.store.upsert_batch(&pending, now).await.map_err(store_error)?;
            count_outcomes(outcomes, &mut summary);
        }
        tracing::info!(
            staff = %caller.email,
            created = summary.created,
            updated = summary.updated,
            rejected = summary.rejected.len(),
            "import finished"
        );
        Ok(Response::new(summary))
    }

    type LookupMoviesStream = BoxStream<pb::LookupMoviesResponse>;

    async fn lookup_movies(
        &self,
        request: Request<Streaming<pb::LookupMoviesRequest>>,
    ) -> Result<Response<Self::LookupMoviesStream>, Status> {
        let mut inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(16);
        let store = Arc::clone(&self.store);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = inbound.message() => next,
                    () = shutdown.cancelled() => return,
                };
                let id = match next {
                    Ok(Some(lookup)) => lookup.id,
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(%status, "lookup stream ended by the client");
                        return;
                    }
                };
                let answer = if id <= 0 {
                    Ok(pb::LookupMoviesResponse { id, found: false, movie: None })
                } else {
                    match store.get(id).await {
                        Ok(movie) => Ok(pb::LookupMoviesResponse {
                            id,
                            found: movie.is_some(),
                            movie: movie.map(to_proto),
                        }),
                        Err(error) => Err(store_error(error)),
                    }
                };
                let failed = answer.is_err();
                let sent = tokio::select! {
                    sent = sender.send(answer) => sent.is_ok(),
                    () = shutdown.cancelled() => false,
                };
                if !sent || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn create_movie(
        &self,
        request: Request<pb::CreateMovieRequest>,
    ) -> Result<Response<pb::Movie>, Status> {
        self.keys.require_staff(request.metadata())?;
        let request = request.into_inner();
        let movie = request.movie.ok_or_else(|| Status::invalid_argument("movie is required"))?;
        let request_id = request.request_id.trim();
        if request_id.chars().count() > MAX_REQUEST_ID_CHARS {
            return Err(Status::invalid_argument(format!(
                "request_id is longer than {MAX_REQUEST_ID_CHARS} characters"
            )));
        }
        let now = SystemTime::now();
        let fields = raw_from_proto(&movie).validate(now).map_err(invalid)?;
        let (created, new) = self
            .store
            .create(&fields, (!request_id.is_empty()).then_some(request_id), now)
            .await
            .map_err(store_error)?;
        if new {
            tracing::info!(id = created.id, title = %created.fields.title, "film created");
        }
        Ok(Response::new(to_proto(created)))
    }

    async fn update_movie(
        &self,
        request: Request<pb::UpdateMovieRequest>,
    ) -> Result<Response<pb::Movie>, Status> {
        self.keys.require_staff(request.metadata())?;
        let request = request.into_inner();
        let patch = request.movie.ok_or_else(|| Status::invalid_argument("movie is required"))?;
        let id = check_id(patch.id)?;
        let paths = request.update_mask.map(|mask| mask.paths).unwrap_or_default();
        // Check the mask before touching the store: inside the transaction only the merge and
        // the film's own rules are left to check.
        apply_mask(RawMovie::default(), &patch, &paths)?;
        let now = SystemTime::now();
        let change = move |current: &MovieFields| -> Result<MovieFields, Invalid> {
            let merged = apply_mask(raw_from_fields(current), &patch, &paths)
                .map_err(|status| Invalid(status.message().to_owned()))?;
            merged.validate(now)
        };
        let updated = self.store.update(id, Box::new(change), now).await.map_err(store_error)?;
        Ok(Response::new(to_proto(updated)))
    }

    async fn delete_movie(
        &self,
        request: Request<pb::DeleteMovieRequest>,
    ) -> Result<Response<()>, Status> {
        self.keys.require_staff(request.metadata())?;
        let id = check_id(request.get_ref().id)?;
        if self.store.delete(id).await.map_err(store_error)? {
            tracing::info!(id, "film deleted");
            Ok(Response::new(()))
        } else {
            Err(Status::not_found(format!("no film has id {id}")))
        }
    }

    async fn list_genres(
        &self,
        _request: Request<pb::ListGenresRequest>,
    ) -> Result<Response<pb::ListGenresResponse>, Status> {
        let genres = self.store.genres().await.map_err(store_error)?;
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
        _: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        let mut heartbeat = tokio::time::interval_at(
            tokio::time::Instant::now() + WATCH_HEARTBEAT,
            WATCH_HEARTBEAT,
        );
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watch = ChangeWatch {
            changes: self.changes.subscribe(),
            heartbeat,
            shutdown: self.shutdown.clone(),
            opened: false,
            finished: false,
        };
        // The stream is the watch itself: no task or channel per watcher.
        let stream = futures::stream::unfold(watch, |mut watch| async move {
            let next = watch.next().await?;
            Some((next, watch))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// One WatchChanges stream.
struct ChangeWatch {
    changes: broadcast::Receiver<Change>,
    heartbeat: tokio::time::Interval,
    shutdown: CancellationToken,
    /// The opening message was sent.
    opened: bool,
    /// The stream ended.
    finished: bool,
}

impl ChangeWatch {
    async fn next(&mut self) -> Option<Result<pb::WatchChangesResponse, Status>> {
        if self.finished {
            return None;
        }
        if !std::mem::replace(&mut self.opened, true) {
            // Subscribed already: every write committed from here on is announced.
            return Some(Ok(pb::WatchChangesResponse::default()));
        }
        let everything = || pb::WatchChangesResponse { movie_ids: Vec::new(), everything: true };
        tokio::select! {
            change = self.changes.recv() => {
                self.heartbeat.reset();
                match change {
                    Ok(Change::Films(ids)) => Some(Ok(pb::WatchChangesResponse {
                        movie_ids: ids.to_vec(),
                        everything: false,
                    })),
                    // Lagged: changes were dropped for this reader.
                    Ok(Change::Everything) | Err(RecvError::Lagged(_)) => Some(Ok(everything())),
                    Err(RecvError::Closed) => self.end(),
                }
            }
            _ = self.heartbeat.tick() => Some(Ok(pb::WatchChangesResponse::default())),
            () = self.shutdown.cancelled() => self.end(),
        }
    }

    fn end(&mut self) -> Option<Result<pb::WatchChangesResponse, Status>> {
        self.finished = true;
        Some(Err(Status::unavailable("the catalogue is shutting down; reconnect")))
    }
}

impl CatalogueApi {
    /// StreamMovies: every film matching the request, in messages of the stored wire form.
    pub(crate) fn stream_wire(
        &self,
        request: pb::StreamMoviesRequest,
    ) -> Result<BoxStream<EncodedMovies>, Status> {
        let filter = filter_from_proto(request.filter.as_ref())?;
        let order = order_from_proto(request.order_by)?;
        let batch = bounded(request.batch_size, "batch_size", DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE)?;
        let store = Arc::clone(&self.store);
        let shutdown = self.shutdown.clone();
        // Read the database in big pages whatever the message size asked for (a page is one
        // statement on one connection), one page ahead of the response, which cuts each page
        // into messages without copying them: the next read overlaps the sending of the last.
        // The messages of a page are all ready at once, so the encoder packs small ones into
        // big writes (through a channel of a few messages, a stream of one film per message
        // took a write system call and a task switch for every four films).
        let (pages_in, pages) = mpsc::channel::<Result<WirePage, Status>>(1);
        let page_size = batch.max(READ_PAGE);
        let read_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut query = ListQuery {
                filter,
                order,
                descending: request.descending,
                after: None,
                limit: page_size,
            };
            loop {
                let page = tokio::select! {
                    page = store.list_wire(&query) => page,
                    () = read_shutdown.cancelled() => return,
                };
                let page = match page {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = pages_in.send(Err(store_error(error))).await;
                        return;
                    }
                };
                let last_page = page.ends.len() < page_size;
                query.after = page.last.clone();
                if pages_in.send(Ok(page)).await.is_err() || last_page {
                    return; // The response was dropped, or that was everything.
                }
            }
        });
        let messages = Messages { pages, current: None, batch, shutdown, finished: false };
        Ok(Box::pin(futures::stream::unfold(messages, Messages::next)))
    }

    /// ExportMovies: every film matching the request, the body of one message of the stored
    /// wire form, from one consistent snapshot, arriving as it is read.
    pub(crate) async fn export_wire(
        &self,
        request: pb::ExportMoviesRequest,
    ) -> Result<WireExport, Status> {
        let query = ListQuery {
            filter: filter_from_proto(request.filter.as_ref())?,
            order: order_from_proto(request.order_by)?,
            descending: request.descending,
            after: None,
            limit: usize::MAX,
        };
        match self.store.export_wire(&query, MAX_EXPORT_BYTES).await.map_err(store_error)? {
            Some(export) => Ok(export),
            None => {
                let films = self.store.count(&query.filter).await.map_err(store_error)?;
                Err(Status::failed_precondition(format!(
                    "{films} films match, more than the {} MiB one message may carry; \
                     read them with StreamMovies",
                    MAX_EXPORT_BYTES >> 20
                )))
            }
        }
    }
}

/// Counts a rejected row, and lists it while the list is short enough to send.
fn reject(summary: &mut pb::ImportMoviesResponse, index: i64, external_key: &str, reason: String) {
    summary.rejected_count += 1;
    if summary.rejected.len() < MAX_REJECTED_LISTED {
        // The key is echoed to help find the row, but a rejected key may itself be huge.
        let external_key: String = external_key.chars().take(100).collect();
        summary.rejected.push(pb::RejectedRow { index, external_key, reason });
    }
}

/// Waits for the batch being written, if any, and counts what it did.
async fn count_written(
    writing: Option<tokio::task::JoinHandle<Result<Vec<Upserted>, Status>>>,
    summary: &mut pb::ImportMoviesResponse,
) -> Result<(), Status> {
    if let Some(writing) = writing {
        let outcomes = writing.await.map_err(|error| {
            tracing::error!(%error, "an import batch task failed");
            Status::internal("the import failed")
        })??;
        count_outcomes(outcomes, summary);
    }
    Ok(())
}

fn count_outcomes(outcomes: Vec<Upserted>, summary: &mut pb::ImportMoviesResponse) {
    for outcome in outcomes {
        match outcome {
            Upserted::Created(_) => summary.created += 1,
            Upserted::Updated(_) => summary.updated += 1,
        }
    }
}

#[cfg(test)]
mod tests {
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
            cut(page, batch).map(|message| prost::Message::encoded_len(&message) / size).collect()
        };
        assert_eq!(counts(page(1200, 100), 500, 100), [500, 500, 200]);
        assert_eq!(counts(page(3, 100), 1, 100), [1, 1, 1]);
        assert!(cut(WirePage::default(), 500).next().is_none());

        // 500 films of 20 kB are 10 MB: more than one message may carry, whatever the batch.
        let messages: Vec<_> = cut(page(500, 20_000), 500).collect();
        assert!(messages.len() >= 3);
        let mut film = 0;
        for message in &messages {
            assert!(prost::Message::encoded_len(message) <= MAX_BATCH_BYTES);
            // Each message holds whole films, in order.
            for chunk in prost::Message::encode_to_vec(message).chunks(20_000) {
                assert_eq!(chunk, vec![film as u8; 20_000]);
                film += 1;
            }
        }
        assert_eq!(film, 500);
        // A film bigger than the cap still goes, alone.
        let big = MAX_BATCH_BYTES + 1;
        assert_eq!(counts(page(2, big), 500, big), [1, 1]);
    }

    #[test]
    fn page_token_round_trips_and_is_bound_to_its_filter() {
        let cursor = Cursor { title_key: "a".into(), year: 2000, rating: 7.5, id: 9 };
        let token = encode_token(42, cursor.clone());
        assert_eq!(decode_token(&token, 42).unwrap(), Some(cursor));
        assert_eq!(decode_token(&token, 43).unwrap_err().code(), tonic::Code::InvalidArgument);
        assert_eq!(decode_token("%%%", 42).unwrap_err().code(), tonic::Code::InvalidArgument);
        assert_eq!(decode_token("", 42).unwrap(), None);
    }

    #[test]
    fn update_mask_rejects_unknown_and_output_only_paths() {
        let patch = pb::Movie { title: "New".into(), ..Default::default() };
        let current = RawMovie { title: "Old".into(), release_year: 1999, ..Default::default() };
        let merged = apply_mask(current.clone(), &patch, &["title".into()]).unwrap();
        assert_eq!((merged.title.as_str(), merged.release_year), ("New", 1999));
        assert!(apply_mask(current.clone(), &patch, &["id".into()]).is_err());
        assert!(apply_mask(current, &patch, &["colour".into()]).is_err());
    }
}
