//! `videostore.aggregator.v1.StorefrontService`: the caller's deadline (`grpc-timeout`) bounds
//! every downstream call.

use std::time::Duration;

use tonic::{Request, Response, Status};
use videostore_proto::aggregator::{self as pb, storefront_service_server::StorefrontService};

use crate::storefront::Storefront;

/// The gRPC handlers.
#[derive(Clone)]
pub(crate) struct StorefrontApi {
    /// The views.
    pub(crate) storefront: Storefront,
    /// Deadline for calls that set none.
    pub(crate) default_deadline: Duration,
}

impl StorefrontApi {
    fn deadline<T>(&self, request: &Request<T>) -> Duration {
        videostore_kit::deadline::from_metadata(request.metadata()).unwrap_or(self.default_deadline)
    }
}

#[tonic::async_trait]
impl StorefrontService for StorefrontApi {
    async fn get_movie_page(
        &self,
        request: Request<pb::GetMoviePageRequest>,
    ) -> Result<Response<pb::MoviePage>, Status> {
        let deadline = self.deadline(&request);
        let page = self.storefront.movie_page(request.into_inner(), deadline).await?;
        Ok(Response::new(page))
    }

    async fn list_storefront(
        &self,
        request: Request<pb::ListStorefrontRequest>,
    ) -> Result<Response<pb::ListStorefrontResponse>, Status> {
        let deadline = self.deadline(&request);
        let page = self.storefront.list(request.into_inner(), deadline).await?;
        Ok(Response::new(page))
    }
}
