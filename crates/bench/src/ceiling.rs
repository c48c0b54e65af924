//! The reference ceiling: a minimal tonic server answering `GetMovie` with one fixed film of
//! the same size as a real one, and nothing else. Unary figures are reported as a ratio to it,
//! so they hold on a noisy machine. For bulk delivery it also streams the N films the bulk
//! scenario's catalogue holds (N from the `x-films` request header), the same films with the same
//! bytes, straight from memory: the transport's own ceiling, with no database behind it. (Copies
//! of one film would be a kinder ceiling: the first film is 10% smaller than the average one, and
//! a client decoding the same strings over and over stays in its caches.)

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tonic::{Request, Response, Status, Streaming};
use videostore_proto::catalogue::{
    self as pb,
    catalogue_service_server::{CatalogueService, CatalogueServiceServer},
};

struct Ceiling {
    film: pb::Movie,
    /// The bulk scenario's films, made by the first stream that asks for this many (untimed: the
    /// bench's warm-up round).
    films: Mutex<Arc<[pb::Movie]>>,
}

impl Ceiling {
    /// The first `count` films of the bulk scenario.
    fn films(&self, count: usize) -> Arc<[pb::Movie]> {
        let mut films = self.films.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if films.len() < count {
            *films = (0..count).map(crate::bulk::stored_film).collect();
        }
        Arc::clone(&films)
    }
}

fn unimplemented<T>() -> Result<T, Status> {
    Err(Status::unimplemented("the reference ceiling only answers GetMovie"))
}

type Stream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl CatalogueService for Ceiling {
    async fn get_movie(
        &self,
        _: Request<pb::GetMovieRequest>,
    ) -> Result<Response<pb::Movie>, Status> {
        Ok(Response::new(self.film.clone()))
    }
    async fn get_movie_detail(
        &self,
        _: Request<pb::GetMovieDetailRequest>,
    ) -> Result<Response<pb::MovieDetail>, Status> {
        unimplemented()
    }
    async fn batch_get_movies(
        &self,
        _: Request<pb::BatchGetMoviesRequest>,
    ) -> Result<Response<pb::BatchGetMoviesResponse>, Status> {
        unimplemented()
    }
    async fn list_movies(
        &self,
        _: Request<pb::ListMoviesRequest>,
    ) -> Result<Response<pb::ListMoviesResponse>, Status> {
        unimplemented()
    }
    type StreamMoviesStream = Stream<pb::StreamMoviesResponse>;
    async fn stream_movies(
        &self,
        request: Request<pb::StreamMoviesRequest>,
    ) -> Result<Response<Self::StreamMoviesStream>, Status> {
        let films: usize = request
            .metadata()
            .get("x-films")
            .and_then(|value| value.to_str().ok()?.parse().ok())
            .ok_or_else(|| Status::invalid_argument("x-films header missing"))?;
        let batch = request.get_ref().batch_size.max(1) as usize;
        let all = self.films(films);
        let stream = futures::stream::iter((0..films).step_by(batch).map(move |first| {
            let movies = all[first..(first + batch).min(films)].to_vec();
            Ok(pb::StreamMoviesResponse { movies })
        }));
        Ok(Response::new(Box::pin(stream)))
    }
    async fn export_movies(
        &self,
        _: Request<pb::ExportMoviesRequest>,
    ) -> Result<Response<pb::ExportMoviesResponse>, Status> {
        unimplemented()
    }
    async fn import_movies(
        &self,
        _: Request<Streaming<pb::ImportMoviesRequest>>,
    ) -> Result<Response<pb::ImportMoviesResponse>, Status> {
        unimplemented()
    }
    type LookupMoviesStream = Stream<pb::LookupMoviesResponse>;
    async fn lookup_movies(
        &self,
        _: Request<Streaming<pb::LookupMoviesRequest>>,
    ) -> Result<Response<Self::LookupMoviesStream>, Status> {
        unimplemented()
    }
    async fn create_movie(
        &self,
        _: Request<pb::CreateMovieRequest>,
    ) -> Result<Response<pb::Movie>, Status> {
        unimplemented()
    }
    async fn update_movie(
        &self,
        _: Request<pb::UpdateMovieRequest>,
    ) -> Result<Response<pb::Movie>, Status> {
        unimplemented()
    }
    async fn delete_movie(
        &self,
        _: Request<pb::DeleteMovieRequest>,
    ) -> Result<Response<()>, Status> {
        unimplemented()
    }
    async fn list_genres(
        &self,
        _: Request<pb::ListGenresRequest>,
    ) -> Result<Response<pb::ListGenresResponse>, Status> {
        unimplemented()
    }
    type WatchChangesStream = Stream<pb::WatchChangesResponse>;
    async fn watch_changes(
        &self,
        _: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        unimplemented()
    }
}

/// Serves the ceiling on `listen` until the process is killed.
pub(crate) async fn serve(listen: SocketAddr, film: pb::Movie) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(CatalogueServiceServer::new(Ceiling { film, films: Mutex::new(Arc::new([])) }))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
