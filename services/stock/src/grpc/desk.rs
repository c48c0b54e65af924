//! RentalDesk: a staff member's bidirectional stream. Commands (rent to a walk-in customer,
//! take a return) run in order, each answered with its result and the stock change it made;
//! changes made elsewhere to the films this desk has touched are passed on as they commit.

use std::{collections::HashMap, sync::Arc};

use tokio::sync::{
    broadcast::{self, error::RecvError},
    mpsc,
};
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};
use videostore_kit::{
    auth::{Caller, Session},
    error::ServiceError,
};
use videostore_proto::stock as pb;

use super::convert::{availability_to_proto, rent_request, rental_to_proto};
use crate::{
    domain::{self, Availability, Invalid, MovieId, Rental, RentalId},
    error::Error,
    service::Stock,
};

/// Runs one desk until the staff member ends it, the client goes away or the server shuts down.
pub(super) async fn run(
    stock: Arc<Stock>,
    staff: Session,
    mut commands: Streaming<pb::DeskCommand>,
    mut changes: broadcast::Receiver<Arc<Availability>>,
    sender: mpsc::Sender<Result<pb::DeskEvent, Status>>,
    shutdown: CancellationToken,
) {
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
                        // Bytes that are not a command are answered; a caller that went away
                        // hears nothing, whatever is sent.
                        tracing::debug!(%status, "desk stream ended by the client");
                        let refused = videostore_kit::undecodable::request_stream_error(status);
                        send_or_stop(&sender, Err(refused), &shutdown).await;
                        return;
                    }
                };
                // The token is checked again at every command: a desk left open does not
                // outlive it.
                if let Err(expired) = staff.check(std::time::SystemTime::now()) {
                    send_or_stop(&sender, Err(expired.into()), &shutdown).await;
                    return;
                }
                let (result, changed) = command_result(&stock, &staff.caller, command).await;
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
                        match stock.availability(&ids).await {
                            Ok(current) => current
                                .into_iter()
                                .filter_map(|(_, stock)| stock.map(|a| (*a).clone()))
                                .collect(),
                            Err(error) => {
                                send_or_stop(&sender, Err(error.into()), &shutdown).await;
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
            if !send_or_stop(&sender, Ok(event), &shutdown).await {
                if shutdown.is_cancelled() {
                    say_shutting_down(&sender);
                }
                return;
            }
        }
    }
}

/// Runs one command; a failure becomes an error result, never the end of the desk.
async fn command_result(
    stock: &Stock,
    staff: &Caller,
    command: pb::DeskCommand,
) -> (pb::DeskResult, Option<Availability>) {
    match run_command(stock, staff, command.action).await {
        Ok((rental, changed)) => (
            pb::DeskResult {
                command_id: command.command_id,
                code: 0,
                message: String::new(),
                rental: Some(rental_to_proto(&rental)),
            },
            changed,
        ),
        Err(error) => {
            // The same code and message a unary call would answer with.
            let status = videostore_kit::error::status(&error as &dyn ServiceError);
            let result = pb::DeskResult {
                command_id: command.command_id,
                code: status.code() as i32,
                message: status.message().to_owned(),
                rental: None,
            };
            (result, None)
        }
    }
}

async fn run_command(
    stock: &Stock,
    staff: &Caller,
    action: Option<pb::desk_command::Action>,
) -> Result<(Rental, Option<Availability>), Error> {
    match action {
        Some(pb::desk_command::Action::Rent(rent)) => {
            let email = domain::check_email(&rent.customer_email)?;
            let request = rent_request(rent.movie_id, rent.days, &rent.request_id)?;
            stock.rent_to(&email, request).await
        }
        Some(pb::desk_command::Action::Return(ret)) => {
            let rental_id = RentalId::parse("rental_id", ret.rental_id)?;
            stock.return_rental(staff, rental_id).await
        }
        None => Err(Invalid::new("a desk command needs a rent or return action").into()),
    }
}

fn availability_event(availability: &Availability) -> pb::DeskEvent {
    pb::DeskEvent {
        event: Some(pb::desk_event::Event::Availability(availability_to_proto(availability))),
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
    let _ = sender.try_send(Err(Error::ShuttingDown.into()));
}
