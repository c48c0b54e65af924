//! The gRPC surface: the only module that touches prost types. Handlers check requests and
//! callers, call the store, publish committed changes, and map errors to statuses.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use futures::Stream;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use videostore_kit::{
    auth::{Caller, TokenKeys},
    error::ServiceError,
};
use videostore_proto::stock::{
    self as pb, account_service_server::AccountService, stock_service_server::StockService,
};

use crate::{
    clock::Clock,
    domain::{
        self, Account, AccountId, Availability, Inventory, MovieId, Purchase, Rental, RentalId,
        Role,
    },
    events::AvailabilityEvents,
    passwords,
    store::{NewAccount, NewPurchase, NewRental, StockStore, StoreError},
};

/// Most films per batch read or watch.
const MAX_IDS: usize = 1000;
/// Films per snapshot message of a watch on every film.
const SNAPSHOT_CHUNK: usize = 1000;

/// What every handler shares.
pub(crate) struct Shared {
    /// Where stock, rentals and accounts live.
    pub(crate) store: Arc<dyn StockStore>,
    /// Committed changes, for watchers.
    pub(crate) events: AvailabilityEvents,
    /// Signs and verifies tokens.
    pub(crate) keys: TokenKeys,
    /// Now, for due dates and fees.
    pub(crate) clock: Arc<dyn Clock>,
    /// How long a token lives.
    pub(crate) token_ttl: Duration,
    /// Cancelled at shutdown, so long streams end.
    pub(crate) shutdown: CancellationToken,
    /// How often an idle watch stream sends a heartbeat.
    pub(crate) heartbeat: Duration,
}

/// `videostore.stock.v1.StockService`.
#[derive(Clone)]
pub(crate) struct StockApi(pub(crate) Arc<Shared>);

/// `videostore.stock.v1.AccountService`.
#[derive(Clone)]
pub(crate) struct AccountApi(pub(crate) Arc<Shared>);

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotStocked(id) => {
                ServiceError::not_found(format!("film {id} is not stocked by this shop"))
            }
            StoreError::SoldOut(id) => ServiceError::precondition(format!(
                "film {id} is sold out: no copy is available right now"
            )),
            StoreError::RentalNotFound(id) => {
                ServiceError::not_found(format!("no rental has id {id}"))
            }
            StoreError::AlreadyReturned(id) => {
                ServiceError::precondition(format!("rental {id} was already returned"))
            }
            StoreError::NotYourRental(id) => {
                ServiceError::PermissionDenied(format!("rental {id} is not one of yours"))
            }
            StoreError::RequestIdReused(id) => ServiceError::invalid(format!(
                "request_id {id:?} was already used for a different request"
            )),
            StoreError::EmailTaken(email) => ServiceError::AlreadyExists(format!(
                "an account with email {email:?} exists already"
            )),
            error @ StoreError::BelowRented { .. } => ServiceError::precondition(error.to_string()),
            StoreError::Backend(cause) => ServiceError::Internal(cause),
        }
    }
}

fn status(error: impl Into<ServiceError>) -> Status {
    error.into().into()
}

fn invalid(message: String) -> Status {
    Status::invalid_argument(message)
}

fn check_movie_id(id: MovieId) -> Result<MovieId, Status> {
    if id > 0 {
        Ok(id)
    } else {
        Err(Status::invalid_argument(format!("movie_id must be a positive number, not {id}")))
    }
}

fn check_ids(ids: &[MovieId], allow_empty: bool) -> Result<(), Status> {
    if ids.is_empty() && !allow_empty {
        return Err(Status::invalid_argument("movie_ids must name at least one film"));
    }
    if ids.len() > MAX_IDS {
        return Err(Status::invalid_argument(format!(
            "at most {MAX_IDS} films per call, not {}",
            ids.len()
        )));
    }
    ids.iter().try_for_each(|id| check_movie_id(*id).map(|_| ()))
}

fn money(currency: &str, minor: i64) -> Option<pb::Money> {
    Some(pb::Money { currency_code: currency.to_owned(), minor_units: minor })
}

/// The wire form of a film's stock.
pub(crate) fn availability_to_proto(availability: &Availability) -> pb::Availability {
    pb::Availability {
        movie_id: availability.movie_id,
        stocked: true,
        copies_owned: availability.copies_owned,
        copies_available: availability.copies_available,
        rental_price_per_day: money(&availability.currency, availability.rental_price_minor),
        purchase_price: money(&availability.currency, availability.purchase_price_minor),
        version: availability.version,
    }
}

fn unstocked(movie_id: MovieId) -> pb::Availability {
    pb::Availability { movie_id, stocked: false, ..Default::default() }
}

fn rental_to_proto(rental: &Rental) -> pb::Rental {
    pb::Rental {
        id: rental.id,
        movie_id: rental.movie_id,
        customer_id: rental.customer_id,
        state: if rental.returned_at.is_some() {
            pb::RentalState::Returned
        } else {
            pb::RentalState::Open
        } as i32,
        days: rental.days,
        rented_at: Some(rental.rented_at.into()),
        due_at: Some(rental.due_at.into()),
        returned_at: rental.returned_at.map(Into::into),
        price: money(&rental.currency, rental.price_minor),
        late_fee: money(&rental.currency, rental.late_fee_minor),
        request_id: rental.request_id.clone(),
    }
}

fn purchase_to_proto(purchase: &Purchase) -> pb::Purchase {
    pb::Purchase {
        id: purchase.id,
        movie_id: purchase.movie_id,
        customer_id: purchase.customer_id,
        price: money(&purchase.currency, purchase.price_minor),
        purchased_at: Some(purchase.purchased_at.into()),
        request_id: purchase.request_id.clone(),
    }
}

fn account_to_proto(account: &Account) -> pb::Account {
    pb::Account {
        id: account.id,
        email: account.email.clone(),
        name: account.name.clone(),
        role: match account.role {
            Role::Customer => pb::Role::Customer,
            Role::Staff => pb::Role::Staff,
        } as i32,
        create_time: Some(account.created_at.into()),
    }
}

impl Shared {
    /// Rents a copy and publishes the committed change.
    async fn rent(
        &self,
        customer_id: AccountId,
        movie_id: MovieId,
        days: i32,
        request_id: &str,
    ) -> Result<(Rental, Option<Availability>), Status> {
        let movie_id = check_movie_id(movie_id)?;
        let days = domain::check_days(days).map_err(invalid)?;
        let request_id = domain::check_request_id(request_id).map_err(invalid)?;
        let outcome = self
            .store
            .rent(&NewRental { customer_id, movie_id, days, request_id, now: self.clock.now() })
            .await
            .map_err(status)?;
        if let Some(changed) = &outcome.changed {
            self.events.publish(changed.clone());
        }
        Ok((outcome.value, outcome.changed))
    }

    /// Closes a rental (a customer's own, or any for staff) and publishes the change.
    async fn return_rental(
        &self,
        caller: &Caller,
        rental_id: RentalId,
    ) -> Result<(Rental, Option<Availability>), Status> {
        if rental_id <= 0 {
            return Err(Status::invalid_argument(format!(
                "rental_id must be a positive number, not {rental_id}"
            )));
        }
        let only_of = (!caller.is_staff()).then_some(caller.account_id);
        let outcome =
            self.store.return_rental(rental_id, only_of, self.clock.now()).await.map_err(status)?;
        if let Some(changed) = &outcome.changed {
            self.events.publish(changed.clone());
        }
        Ok((outcome.value, outcome.changed))
    }

    /// Current stock of `ids` (stocked or not), in the order asked.
    /// Known films come from the latest committed values; the rest from the database.
    async fn snapshot(&self, ids: &[MovieId]) -> Result<Vec<pb::Availability>, Status> {
        let mut known = self.events.latest(ids);
        let missing: Vec<MovieId> =
            ids.iter().zip(&known).filter(|(_, k)| k.is_none()).map(|(id, _)| *id).collect();
        let mut read: std::collections::HashMap<MovieId, Availability> =
            std::collections::HashMap::new();
        if !missing.is_empty() {
            for availability in self.store.availability(&missing).await.map_err(status)? {
                self.events.remember(availability.clone());
                read.insert(availability.movie_id, availability);
            }
        }
        Ok(ids
            .iter()
            .zip(known.iter_mut())
            .map(|(id, known)| match known.take() {
                Some(availability) => availability_to_proto(&availability),
                None => read.get(id).map_or_else(|| unstocked(*id), availability_to_proto),
            })
            .collect())
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl StockService for StockApi {
    async fn get_availability(
        &self,
        request: Request<pb::GetAvailabilityRequest>,
    ) -> Result<Response<pb::Availability>, Status> {
        let id = check_movie_id(request.get_ref().movie_id)?;
        let mut snapshot = self.0.snapshot(&[id]).await?;
        Ok(Response::new(snapshot.remove(0)))
    }

    async fn batch_get_availability(
        &self,
        request: Request<pb::BatchGetAvailabilityRequest>,
    ) -> Result<Response<pb::BatchGetAvailabilityResponse>, Status> {
        let ids = &request.get_ref().movie_ids;
        check_ids(ids, false)?;
        Ok(Response::new(pb::BatchGetAvailabilityResponse {
            availabilities: self.0.snapshot(ids).await?,
        }))
    }

    type WatchAvailabilityStream = BoxStream<pb::WatchAvailabilityResponse>;

    async fn watch_availability(
        &self,
        request: Request<pb::WatchAvailabilityRequest>,
    ) -> Result<Response<Self::WatchAvailabilityStream>, Status> {
        let ids = request.into_inner().movie_ids;
        check_ids(&ids, true)?;
        // A watched film starts at version 0: older than any it can have.
        let versions: Versions = ids.iter().map(|&id| (id, 0)).collect();
        let shared = Arc::clone(&self.0);
        // Subscribe before reading the snapshot, so no change committed in between is lost.
        let changes = shared.events.subscribe();
        let first = watch_snapshot(&shared, &ids).await?;
        let every = shared.heartbeat;
        let now = tokio::time::Instant::now();
        let shutdown = Box::pin(shared.shutdown.clone().cancelled_owned());
        let watch = Watch {
            shared,
            every_film: ids.is_empty(),
            ids,
            changes,
            versions,
            pending: first.into(),
            heartbeat: Box::pin(tokio::time::sleep_until(now + every)),
            every,
            last_sent: now,
            shutdown,
            finished: false,
        };
        // The response stream is the watch itself: no task or channel per subscriber, so a
        // change reaches each of 10,000 subscribers with one wake-up and one encode.
        let stream = futures::stream::unfold(watch, |mut watch| async move {
            let next = watch.next().await?;
            Some((next, watch))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn rent(
        &self,
        request: Request<pb::RentRequest>,
    ) -> Result<Response<pb::Rental>, Status> {
        let caller = self.0.keys.require_signed_in(request.metadata())?;
        let request = request.into_inner();
        let (rental, _) = self
            .0
            .rent(caller.account_id, request.movie_id, request.days, &request.request_id)
            .await?;
        Ok(Response::new(rental_to_proto(&rental)))
    }

    async fn r#return(
        &self,
        request: Request<pb::ReturnRequest>,
    ) -> Result<Response<pb::Rental>, Status> {
        let caller = self.0.keys.require_signed_in(request.metadata())?;
        let (rental, _) = self.0.return_rental(&caller, request.get_ref().rental_id).await?;
        Ok(Response::new(rental_to_proto(&rental)))
    }

    async fn purchase(
        &self,
        request: Request<pb::PurchaseRequest>,
    ) -> Result<Response<pb::Purchase>, Status> {
        let caller = self.0.keys.require_signed_in(request.metadata())?;
        let request = request.into_inner();
        let movie_id = check_movie_id(request.movie_id)?;
        let request_id = domain::check_request_id(&request.request_id).map_err(invalid)?;
        let outcome = self
            .0
            .store
            .purchase(&NewPurchase {
                customer_id: caller.account_id,
                movie_id,
                request_id,
                now: self.0.clock.now(),
            })
            .await
            .map_err(status)?;
        if let Some(changed) = outcome.changed {
            self.0.events.publish(changed);
        }
        Ok(Response::new(purchase_to_proto(&outcome.value)))
    }

    type ListMyRentalsStream = BoxStream<pb::Rental>;

    async fn list_my_rentals(
        &self,
        request: Request<pb::ListMyRentalsRequest>,
    ) -> Result<Response<Self::ListMyRentalsStream>, Status> {
        let caller = self.0.keys.require_signed_in(request.metadata())?;
        let rentals = self
            .0
            .store
            .rentals_of(caller.account_id, request.get_ref().include_returned)
            .await
            .map_err(status)?;
        let stream = tokio_stream::iter(rentals.into_iter().map(|r| Ok(rental_to_proto(&r))));
        Ok(Response::new(Box::pin(stream)))
    }

    type RentalDeskStream = BoxStream<pb::DeskEvent>;

    async fn rental_desk(
        &self,
        request: Request<Streaming<pb::DeskCommand>>,
    ) -> Result<Response<Self::RentalDeskStream>, Status> {
        let staff = self.0.keys.require_staff(request.metadata())?;
        let commands = request.into_inner();
        let shared = Arc::clone(&self.0);
        let changes = shared.events.subscribe();
        let (sender, receiver) = mpsc::channel(32);
        tokio::spawn(run_desk(shared, staff, commands, changes, sender));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn set_inventory(
        &self,
        request: Request<pb::SetInventoryRequest>,
    ) -> Result<Response<pb::Availability>, Status> {
        let staff = self.0.keys.require_staff(request.metadata())?;
        let request = request.into_inner();
        let movie_id = check_movie_id(request.movie_id)?;
        if !(0..=domain::MAX_COPIES).contains(&request.copies_owned) {
            return Err(Status::invalid_argument(format!(
                "copies_owned must be between 0 and {}, not {}",
                domain::MAX_COPIES,
                request.copies_owned
            )));
        }
        let rent = request
            .rental_price_per_day
            .ok_or_else(|| Status::invalid_argument("rental_price_per_day is required"))?;
        let buy = request
            .purchase_price
            .ok_or_else(|| Status::invalid_argument("purchase_price is required"))?;
        let currency = domain::check_currency(&rent.currency_code).map_err(invalid)?;
        if buy.currency_code != currency {
            return Err(Status::invalid_argument(format!(
                "both prices must be in the same currency ({currency} and {:?})",
                buy.currency_code
            )));
        }
        let inventory = Inventory {
            movie_id,
            copies_owned: request.copies_owned,
            currency,
            rental_price_minor: domain::check_price("rental_price_per_day", rent.minor_units)
                .map_err(invalid)?,
            purchase_price_minor: domain::check_price("purchase_price", buy.minor_units)
                .map_err(invalid)?,
        };
        let availability = self.0.store.set_inventory(&inventory).await.map_err(status)?;
        tracing::info!(staff = %staff.email, movie_id, copies = inventory.copies_owned, "stock set");
        self.0.events.publish(availability.clone());
        Ok(Response::new(availability_to_proto(&availability)))
    }
}

/// Sends `message` unless the client has gone or the server is shutting down; false to stop.
async fn send_or_stop<T>(
    sender: &mpsc::Sender<Result<T, Status>>,
    message: Result<T, Status>,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        sent = sender.send(message) => sent.is_ok(),
        () = shutdown.cancelled() => false,
    }
}

/// Tells a streaming client that the server is going away, so it knows to reconnect.
fn say_shutting_down<T>(sender: &mpsc::Sender<Result<T, Status>>) {
    let _ =
        sender.try_send(Err(Status::unavailable("the stock service is shutting down; reconnect")));
}

/// The newest version sent of each film.
type Versions = HashMap<MovieId, i64, foldhash::fast::RandomState>;

/// One `WatchAvailability` stream: the snapshot, then committed changes of the watched films.
///
/// Changes are published after their commit, so two commits may be announced out of order; the
/// per-film version drops anything older than what the client already has.
///
/// A change wakes every watcher, so each wake-up is kept cheap: the shutdown and heartbeat
/// futures live as long as the stream (a fresh one per message registered a waiter with the
/// shutdown token and re-armed a timer, under their locks, 10,000 times per change), and one
/// lookup tells whether a change is watched and new.
struct Watch {
    shared: Arc<Shared>,
    ids: Vec<MovieId>,
    /// Watching every film (no ids asked for).
    every_film: bool,
    changes: tokio::sync::broadcast::Receiver<Arc<Availability>>,
    /// Every watched film (or, watching every film, those seen so far).
    versions: Versions,
    /// Messages ready to go (the snapshot, or a re-snapshot after lagging).
    pending: std::collections::VecDeque<pb::WatchAvailabilityResponse>,
    /// An idle stream sends an empty message every `every`, so clients can tell a quiet stream
    /// from a dead connection: the timer is due `every` after the last message; a message sent
    /// meanwhile only moves `last_sent`, and the timer is pushed back when it fires too early.
    heartbeat: Pin<Box<tokio::time::Sleep>>,
    every: Duration,
    last_sent: tokio::time::Instant,
    shutdown: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    finished: bool,
}

impl Watch {
    /// The next message, or `None` when the stream is over.
    async fn next(&mut self) -> Option<Result<pb::WatchAvailabilityResponse, Status>> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(message) = self.pending.pop_front() {
                if message.snapshot {
                    for availability in &message.availabilities {
                        self.versions.insert(availability.movie_id, availability.version);
                    }
                }
                return Some(Ok(self.sent(message)));
            }
            let received = tokio::select! {
                received = self.changes.recv() => received,
                () = self.heartbeat.as_mut() => {
                    let due = self.last_sent + self.every;
                    let now = tokio::time::Instant::now();
                    if due > now {
                        self.heartbeat.as_mut().reset(due);
                        continue;
                    }
                    self.heartbeat.as_mut().reset(now + self.every);
                    return Some(Ok(self.sent(pb::WatchAvailabilityResponse {
                        snapshot: false,
                        availabilities: Vec::new(),
                    })));
                }
                () = self.shutdown.as_mut() => {
                    self.finished = true;
                    return Some(Err(Status::unavailable(
                        "the stock service is shutting down; reconnect",
                    )));
                }
            };
            match received {
                Ok(change) => {
                    let mut batch = Vec::new();
                    if self.fresh(&change) {
                        batch.push(availability_to_proto(&change));
                    }
                    // Coalesce changes that are already waiting into one message.
                    while batch.len() < SNAPSHOT_CHUNK {
                        match self.changes.try_recv() {
                            Ok(change) if self.fresh(&change) => {
                                batch.push(availability_to_proto(&change));
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    if !batch.is_empty() {
                        return Some(Ok(self.sent(pb::WatchAvailabilityResponse {
                            snapshot: false,
                            availabilities: batch,
                        })));
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "slow watcher: sending a fresh snapshot");
                    match watch_snapshot(&self.shared, &self.ids).await {
                        Ok(messages) => self.pending = messages.into(),
                        Err(status) => {
                            self.finished = true;
                            return Some(Err(status));
                        }
                    }
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Whether `change` is for a watched film and newer than what was sent.
    fn fresh(&mut self, change: &Availability) -> bool {
        let seen = match self.versions.get_mut(&change.movie_id) {
            Some(seen) => seen,
            None if self.every_film => self.versions.entry(change.movie_id).or_insert(0),
            None => return false,
        };
        if change.version <= *seen {
            return false;
        }
        *seen = change.version;
        true
    }

    /// `message`, noted as sent now (the heartbeat counts from it).
    fn sent(&mut self, message: pb::WatchAvailabilityResponse) -> pb::WatchAvailabilityResponse {
        self.last_sent = tokio::time::Instant::now();
        message
    }
}

fn availability_event(availability: &Availability) -> pb::DeskEvent {
    pb::DeskEvent {
        event: Some(pb::desk_event::Event::Availability(availability_to_proto(availability))),
    }
}

/// One rental desk: runs commands in order, answering each with its result and the stock change
/// it made, and passes on changes made elsewhere to the films this desk has touched.
async fn run_desk(
    shared: Arc<Shared>,
    staff: Caller,
    mut commands: Streaming<pb::DeskCommand>,
    mut changes: tokio::sync::broadcast::Receiver<Arc<Availability>>,
    sender: mpsc::Sender<Result<pb::DeskEvent, Status>>,
) {
    let shutdown = &shared.shutdown;
    // Films this desk has touched, with the newest version it has sent for each.
    let mut touched: HashMap<MovieId, i64> = HashMap::new();
    loop {
        let mut events = Vec::new();
        tokio::select! {
            command = commands.message() => {
                let command = match command {
                    Ok(Some(command)) => command,
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(%status, "desk stream ended by the client");
                        return;
                    }
                };
                let (result, changed) = desk_command(&shared, &staff, command).await;
                events.push(pb::DeskEvent { event: Some(pb::desk_event::Event::Result(result)) });
                if let Some(changed) = changed {
                    let seen = touched.entry(changed.movie_id).or_insert(0);
                    if changed.version > *seen {
                        *seen = changed.version;
                        events.push(availability_event(&changed));
                    }
                }
            }
            change = changes.recv() => {
                let updates: Vec<Availability> = match change {
                    Ok(change) => vec![(*change).clone()],
                    Err(RecvError::Lagged(_)) => {
                        // Missed changes: read the touched films' stock again.
                        let ids: Vec<MovieId> = touched.keys().copied().collect();
                        match shared.store.availability(&ids).await {
                            Ok(current) => current,
                            Err(error) => {
                                send_or_stop(&sender, Err(status(error)), shutdown).await;
                                return;
                            }
                        }
                    }
                    Err(RecvError::Closed) => return,
                };
                for update in updates {
                    if let Some(seen) = touched.get_mut(&update.movie_id)
                        && update.version > *seen
                    {
                        *seen = update.version;
                        events.push(availability_event(&update));
                    }
                }
            }
            () = shutdown.cancelled() => {
                say_shutting_down(&sender);
                return;
            }
        }
        for event in events {
            if !send_or_stop(&sender, Ok(event), shutdown).await {
                if shutdown.is_cancelled() {
                    say_shutting_down(&sender);
                }
                return;
            }
        }
    }
}

async fn watch_snapshot(
    shared: &Shared,
    ids: &[MovieId],
) -> Result<Vec<pb::WatchAvailabilityResponse>, Status> {
    let availabilities = if ids.is_empty() {
        shared
            .store
            .all_availability()
            .await
            .map_err(status)?
            .iter()
            .map(availability_to_proto)
            .collect()
    } else {
        shared.snapshot(ids).await?
    };
    if availabilities.is_empty() {
        return Ok(vec![pb::WatchAvailabilityResponse { snapshot: true, availabilities }]);
    }
    Ok(availabilities
        .chunks(SNAPSHOT_CHUNK)
        .map(|chunk| pb::WatchAvailabilityResponse {
            snapshot: true,
            availabilities: chunk.to_vec(),
        })
        .collect())
}

/// Runs one desk command; a failure becomes an error result, never the end of the desk.
async fn desk_command(
    shared: &Shared,
    staff: &Caller,
    command: pb::DeskCommand,
) -> (pb::DeskResult, Option<Availability>) {
    let outcome: Result<(Rental, Option<Availability>), Status> = async {
        match command.action {
            Some(pb::desk_command::Action::Rent(rent)) => {
                let email = domain::check_email(&rent.customer_email).map_err(invalid)?;
                let (customer, _) =
                    shared.store.account_by_email(&email).await.map_err(status)?.ok_or_else(
                        || Status::not_found(format!("no customer has email {email:?}")),
                    )?;
                shared.rent(customer.id, rent.movie_id, rent.days, &rent.request_id).await
            }
            Some(pb::desk_command::Action::Return(ret)) => {
                shared.return_rental(staff, ret.rental_id).await
            }
            None => Err(Status::invalid_argument("a desk command needs a rent or return action")),
        }
    }
    .await;
    match outcome {
        Ok((rental, changed)) => (
            pb::DeskResult {
                command_id: command.command_id,
                code: 0,
                message: String::new(),
                rental: Some(rental_to_proto(&rental)),
            },
            changed,
        ),
        Err(status) => (
            pb::DeskResult {
                command_id: command.command_id,
                code: status.code() as i32,
                message: status.message().to_owned(),
                rental: None,
            },
            None,
        ),
    }
}

#[tonic::async_trait]
impl AccountService for AccountApi {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let request = request.into_inner();
        let email = domain::check_email(&request.email).map_err(invalid)?;
        let name = domain::check_name(&request.name).map_err(invalid)?;
        domain::check_password(&request.password).map_err(invalid)?;
        let password_hash = passwords::hash(request.password).await.map_err(status)?;
        let account = self
            .0
            .store
            .create_account(&NewAccount {
                email,
                name,
                password_hash,
                role: Role::Customer,
                now: self.0.clock.now(),
            })
            .await
            .map_err(status)?;
        tracing::info!(account = account.id, "customer registered");
        Ok(Response::new(account_to_proto(&account)))
    }

    async fn sign_in(
        &self,
        request: Request<pb::SignInRequest>,
    ) -> Result<Response<pb::SignInResponse>, Status> {
        let request = request.into_inner();
        let wrong = || Status::unauthenticated("wrong email or password");
        if request.email.len() > 254 || request.password.chars().count() > 128 {
            return Err(wrong());
        }
        let found = self.0.store.account_by_email(request.email.trim()).await.map_err(status)?;
        let (account, stored) = match found {
            Some((account, hash)) => (Some(account), Some(hash)),
            None => (None, None),
        };
        let matches = passwords::verify(request.password, stored).await.map_err(status)?;
        let account = match account {
            Some(account) if matches => account,
            _ => return Err(wrong()),
        };
        let caller =
            Caller { account_id: account.id, email: account.email.clone(), role: account.role };
        let issued = self
            .0
            .keys
            // Token lifetimes are wall-clock time, not the business clock.
            .issue(&caller, std::time::SystemTime::now(), self.0.token_ttl)
            .map_err(status)?;
        Ok(Response::new(pb::SignInResponse {
            token: issued.token,
            expire_time: Some(issued.expires_at.into()),
            account: Some(account_to_proto(&account)),
        }))
    }

    async fn get_me(
        &self,
        request: Request<pb::GetMeRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let caller = self.0.keys.require_signed_in(request.metadata())?;
        let account =
            self.0.store.account(caller.account_id).await.map_err(status)?.ok_or_else(|| {
                Status::unauthenticated("the account of this token no longer exists")
            })?;
        Ok(Response::new(account_to_proto(&account)))
    }
}
