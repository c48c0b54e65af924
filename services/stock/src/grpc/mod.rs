//! The gRPC surface: each handler reads its request (`convert`), checks its caller, calls the
//! service and writes the answer. Errors leave as [`Error`] and become statuses in one place.

mod account;
mod convert;
mod desk;
mod watch;

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use videostore_kit::auth::TokenKeys;
use videostore_proto::stock::{self as pb, stock_service_server::StockService};

pub(crate) use self::account::AccountApi;
use self::{
    convert::{
        availability_to_proto, movie_ids, purchase_to_proto, rent_request, rental_to_proto,
        stock_to_proto,
    },
    watch::{LagSnapshots, Watch},
};
use crate::{
    domain::{self, MovieId, RentalId},
    limits::Limits,
    service::Stock,
};

/// Answers a desk stream may queue before the desk waits for the client to read.
const DESK_QUEUE: usize = 32;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// `videostore.stock.v1.StockService`.
#[derive(Clone)]
pub(crate) struct StockApi {
    /// The operations.
    stock: Arc<Stock>,
    /// Verifies callers' tokens.
    keys: TokenKeys,
    /// Writes per account.
    limits: Arc<Limits>,
    /// Cancelled at shutdown, so long streams end.
    shutdown: CancellationToken,
    /// How often an idle watch stream sends a heartbeat.
    heartbeat: Duration,
    /// The snapshot shared by watchers of every film that fell behind.
    lag_snapshots: Arc<LagSnapshots>,
}

impl StockApi {
    /// Handlers over `stock`.
    pub(crate) fn new(
        stock: Arc<Stock>,
        keys: TokenKeys,
        limits: Arc<Limits>,
        shutdown: CancellationToken,
        heartbeat: Duration,
    ) -> Self {
        Self { stock, keys, limits, shutdown, heartbeat, lag_snapshots: Arc::default() }
    }

    /// Shows the live streams' figures at `/metrics`.
    pub(crate) fn register_metrics(&self, metrics: &videostore_kit::metrics::Metrics) {
        self.lag_snapshots.register_metrics(metrics);
    }
}

#[tonic::async_trait]
impl StockService for StockApi {
    async fn get_availability(
        &self,
        request: Request<pb::GetAvailabilityRequest>,
    ) -> Result<Response<pb::Availability>, Status> {
        let id = MovieId::parse("movie_id", request.get_ref().movie_id)?;
        let found = self.stock.availability(&[id]).await?;
        let stock = found.first().and_then(|(_, stock)| stock.as_deref());
        Ok(Response::new(stock_to_proto(id, stock)))
    }

    async fn batch_get_availability(
        &self,
        request: Request<pb::BatchGetAvailabilityRequest>,
    ) -> Result<Response<pb::BatchGetAvailabilityResponse>, Status> {
        let ids = movie_ids(&request.get_ref().movie_ids, false)?;
        let found = self.stock.availability(&ids).await?;
        Ok(Response::new(pb::BatchGetAvailabilityResponse {
            availabilities: found
                .iter()
                .map(|(id, stock)| stock_to_proto(*id, stock.as_deref()))
                .collect(),
        }))
    }

    type WatchAvailabilityStream = BoxStream<pb::WatchAvailabilityResponse>;

    async fn watch_availability(
        &self,
        request: Request<pb::WatchAvailabilityRequest>,
    ) -> Result<Response<Self::WatchAvailabilityStream>, Status> {
        let ids = movie_ids(&request.get_ref().movie_ids, true)?;
        let resume = convert::resume_from(&request.get_ref().resume_from)?;
        // Its place among the live streams, held as long as the stream is.
        let place = self.limits.watch_place(&request)?;
        let shutdown = self.shutdown.clone().cancelled_owned();
        let stock = Arc::clone(&self.stock);
        let lag_snapshots = Arc::clone(&self.lag_snapshots);
        let watch =
            Watch::start(stock, lag_snapshots, ids, resume, self.heartbeat, shutdown).await?;
        // The response stream is the watch itself: no task or channel per subscriber, so a
        // change reaches each subscriber with one wake-up and one encode.
        let stream = futures::stream::unfold((watch, place), |(mut watch, place)| async move {
            let next = watch.next().await?;
            Some((next, (watch, place)))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn rent(
        &self,
        request: Request<pb::RentRequest>,
    ) -> Result<Response<pb::Rental>, Status> {
        let caller = self.keys.require_signed_in(request.metadata())?;
        self.limits.write(caller.account_id)?;
        let request = request.into_inner();
        let rent = rent_request(request.movie_id, request.days, &request.request_id)?;
        let (rental, _) = self.stock.rent(caller.account_id, rent).await?;
        Ok(Response::new(rental_to_proto(&rental)))
    }

    async fn r#return(
        &self,
        request: Request<pb::ReturnRequest>,
    ) -> Result<Response<pb::Rental>, Status> {
        let caller = self.keys.require_signed_in(request.metadata())?;
        self.limits.write(caller.account_id)?;
        let rental_id = RentalId::parse("rental_id", request.get_ref().rental_id)?;
        let (rental, _) = self.stock.return_rental(&caller, rental_id).await?;
        Ok(Response::new(rental_to_proto(&rental)))
    }

    async fn purchase(
        &self,
        request: Request<pb::PurchaseRequest>,
    ) -> Result<Response<pb::Purchase>, Status> {
        let caller = self.keys.require_signed_in(request.metadata())?;
        self.limits.write(caller.account_id)?;
        let request = request.into_inner();
        let movie_id = MovieId::parse("movie_id", request.movie_id)?;
        let request_id = domain::check_request_id(&request.request_id)?;
        let purchase = self.stock.purchase(caller.account_id, movie_id, request_id).await?;
        Ok(Response::new(purchase_to_proto(&purchase)))
    }

    type ListMyRentalsStream = BoxStream<pb::Rental>;

    async fn list_my_rentals(
        &self,
        request: Request<pb::ListMyRentalsRequest>,
    ) -> Result<Response<Self::ListMyRentalsStream>, Status> {
        let caller = self.keys.require_signed_in(request.metadata())?;
        let include_returned = request.get_ref().include_returned;
        let rentals = self.stock.rentals_of(caller.account_id, include_returned);
        let stream = rentals.map(|rental| match rental {
            Ok(rental) => Ok(rental_to_proto(&rental)),
            Err(error) => Err(Status::from(error)),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    type RentalDeskStream = BoxStream<pb::DeskEvent>;

    async fn rental_desk(
        &self,
        request: Request<Streaming<pb::DeskCommand>>,
    ) -> Result<Response<Self::RentalDeskStream>, Status> {
        let staff = self.keys.require_staff_session(request.metadata())?;
        let commands = request.into_inner();
        let changes = self.stock.subscribe();
        let (sender, receiver) = tokio::sync::mpsc::channel(DESK_QUEUE);
        let stock = Arc::clone(&self.stock);
        let shutdown = self.shutdown.clone();
        tokio::spawn(desk::run(stock, staff, commands, changes, sender, shutdown));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn set_inventory(
        &self,
        request: Request<pb::SetInventoryRequest>,
    ) -> Result<Response<pb::Availability>, Status> {
        let staff = self.keys.require_staff(request.metadata())?;
        self.limits.write(staff.account_id)?;
        let inventory = convert::inventory(request.get_ref())?;
        let availability = self.stock.set_inventory(&staff, &inventory).await?;
        Ok(Response::new(availability_to_proto(&availability)))
    }
}
