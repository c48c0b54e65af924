//! Everything a stock or account call can fail with, and which canonical code each failure is.
//!
//! Handlers, the service and the store all return [`Error`]; it becomes a gRPC status in one
//! place (`videostore_kit::error::status`), which logs an internal cause once.

use tonic::Status;
use videostore_kit::{
    auth::AuthError,
    error::{Code, Invalid, ServiceError},
};

use crate::domain::{MovieId, RentalId};

/// A failed stock or account call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field breaks a rule.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No token, a bad one, or not staff.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The film is not stocked.
    #[error("film {0} is not stocked by this shop")]
    NotStocked(MovieId),
    /// No copy is on the shelf.
    #[error("film {0} is sold out: no copy is available right now")]
    SoldOut(MovieId),
    /// No such rental.
    #[error("no rental has id {0}")]
    RentalNotFound(RentalId),
    /// The rental was returned already.
    #[error("rental {0} was already returned")]
    AlreadyReturned(RentalId),
    /// The rental belongs to another customer.
    #[error("rental {0} is not one of yours")]
    NotYourRental(RentalId),
    /// The customer has as many films out as one account may.
    #[error("you have {0} films out, as many as one account may: return one first")]
    TooManyOpenRentals(u32),
    /// The customer has bought as many films in a day as one account may.
    #[error(
        "you have bought {0} films in the last 24 hours, as many as one account may: try again \
         tomorrow"
    )]
    TooManyPurchases(u32),
    /// The request id was used before, for a different request.
    #[error("request_id {0:?} was already used for a different request")]
    RequestIdReused(String),
    /// No registration waits for this confirmation code.
    #[error(
        "no registration waits for this code: it was used already, or it is over 24 hours old \
         (register again)"
    )]
    NoSuchRegistration,
    /// A confirmation with another password than the registration's.
    #[error(
        "this is not the password chosen when registering; if you did not register, ignore the \
         mail: no account is made without that password"
    )]
    NotTheRegisteredPassword,
    /// The confirmed registration's email got an account meanwhile.
    #[error("{0:?} has an account already: sign in")]
    RegisteredAlready(String),
    /// An account has this email already.
    #[error("an account with email {0:?} exists already")]
    EmailTaken(String),
    /// No customer has this email (the rental desk).
    #[error("no customer has email {0:?}")]
    NoSuchCustomer(String),
    /// Fewer copies than are rented out.
    #[error("film {movie_id} has {rented} copies rented out; it cannot own only {owned}")]
    BelowRented {
        /// The film.
        movie_id: MovieId,
        /// Copies rented out.
        rented: i32,
        /// Copies asked for.
        owned: i32,
    },
    /// The email and password do not match an account.
    #[error("wrong email or password")]
    WrongCredentials,
    /// The account a valid token names was deleted.
    #[error("the account of this token no longer exists")]
    AccountGone,
    /// A refresh token of a session that has ended (signed out, or the role changed).
    #[error("this session has ended: sign in again")]
    SessionEnded,
    /// Too many calls of one kind from one client or account.
    #[error("too many {what}; try again in {} s", retry_after.as_secs().max(1))]
    TooManyCalls {
        /// What was counted.
        what: &'static str,
        /// When one more is allowed.
        retry_after: std::time::Duration,
    },
    /// As many live streams as one server or one client may hold are open.
    #[error("too many live streams from {whose}; close one or try again shortly")]
    TooManyWatches {
        /// `this address` or `this server`.
        whose: &'static str,
    },
    /// Too many failed sign-ins for this email lately.
    #[error(
        "too many failed sign-ins for this email; try again in {} s",
        .0.as_secs().max(1)
    )]
    SignInsPaused(std::time::Duration),
    /// Too many sign-ins and registrations are waiting for Argon2: the call may be retried.
    #[error("too many sign-ins at once; try again in a second")]
    PasswordsBusy,
    /// The server is stopping: reconnect (to another replica, or once it is back).
    #[error("the stock service is shutting down; reconnect")]
    ShuttingDown,
    /// The database cannot be reached (down, restarting, or every connection busy for long):
    /// the call may be retried, with the same request id.
    #[error("the stock database is unreachable right now; try again shortly")]
    DatabaseUnavailable(#[source] anyhow::Error),
    /// A bug or a database failure; the client reads only "internal error".
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ServiceError for Error {
    fn code(&self) -> Code {
        match self {
            Self::Invalid(_) | Self::RequestIdReused(_) => Code::InvalidArgument,
            Self::TooManyOpenRentals(_) => Code::FailedPrecondition,
            Self::TooManyPurchases(_) => Code::ResourceExhausted,
            Self::Auth(error) => error.code(),
            Self::NotStocked(_)
            | Self::RentalNotFound(_)
            | Self::NoSuchCustomer(_)
            | Self::NoSuchRegistration => Code::NotFound,
            Self::SoldOut(_) | Self::AlreadyReturned(_) | Self::BelowRented { .. } => {
                Code::FailedPrecondition
            }
            Self::NotYourRental(_) => Code::PermissionDenied,
            Self::EmailTaken(_) | Self::RegisteredAlready(_) => Code::AlreadyExists,
            Self::WrongCredentials
            | Self::AccountGone
            | Self::SessionEnded
            | Self::NotTheRegisteredPassword => Code::Unauthenticated,
            Self::ShuttingDown | Self::DatabaseUnavailable(_) => Code::Unavailable,
            Self::PasswordsBusy
            | Self::TooManyCalls { .. }
            | Self::SignInsPaused(_)
            | Self::TooManyWatches { .. } => Code::ResourceExhausted,
            Self::Internal(_) => Code::Internal,
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::TooManyCalls { retry_after, .. } => Some(*retry_after),
            Self::SignInsPaused(wait) => Some(*wait),
            Self::PasswordsBusy => Some(std::time::Duration::from_secs(1)),
            Self::TooManyWatches { .. } => Some(std::time::Duration::from_secs(5)),
            _ => None,
        }
    }
}

impl From<crate::passwords::PasswordError> for Error {
    fn from(error: crate::passwords::PasswordError) -> Self {
        match error {
            crate::passwords::PasswordError::Busy => Self::PasswordsBusy,
            crate::passwords::PasswordError::Failed(error) => Self::Internal(error),
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        videostore_kit::error::status(&error)
    }
}
