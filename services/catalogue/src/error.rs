//! Everything a catalogue call can fail with, and which canonical code each failure is.
//!
//! Handlers, the service and the store all return [`Error`]; it becomes a gRPC status in one
//! place (`videostore_kit::error::status`), which logs an internal cause once.

use tonic::Status;
use videostore_kit::{
    auth::AuthError,
    error::{Code, Invalid, ServiceError},
    ids::MovieId,
};

/// A failed catalogue call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field breaks a rule.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No token, a bad one, or not staff.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// No film has this id.
    #[error("no film has id {0}")]
    FilmNotFound(MovieId),
    /// Another film already has this external key.
    #[error("another film already has external key {0:?}")]
    DuplicateExternalKey(String),
    /// An export too big for one message.
    #[error(
        "{films} films match, more than the {max_mib} MiB one message may carry; read them with \
         StreamMovies"
    )]
    ExportTooBig {
        /// Films matching.
        films: i64,
        /// The limit, in MiB.
        max_mib: usize,
    },
    /// As many exports as one server runs at once are running.
    #[error(
        "{} exports are running, as many as this server runs at once; try again in a few seconds",
        crate::service::MAX_EXPORTS
    )]
    TooManyExports,
    /// As many long streams as one server or one client may hold are open.
    #[error("too many long streams from {whose}; close one or try again shortly")]
    TooManyStreams {
        /// `this address` or `this server (…)`.
        whose: &'static str,
    },
    /// The server is stopping: reconnect (to another replica, or once it is back).
    #[error("the catalogue is shutting down; reconnect")]
    ShuttingDown,
    /// A bug or a database failure; the client reads only "internal error".
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ServiceError for Error {
    fn code(&self) -> Code {
        match self {
            Self::Invalid(_) => Code::InvalidArgument,
            Self::Auth(error) => error.code(),
            Self::FilmNotFound(_) => Code::NotFound,
            Self::DuplicateExternalKey(_) => Code::AlreadyExists,
            Self::ExportTooBig { .. } => Code::FailedPrecondition,
            Self::TooManyExports | Self::TooManyStreams { .. } => Code::ResourceExhausted,
            Self::ShuttingDown => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        matches!(self, Self::TooManyExports | Self::TooManyStreams { .. })
            .then_some(std::time::Duration::from_secs(5))
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        videostore_kit::error::status(&error)
    }
}

impl Error {
    /// An internal failure with this explanation (for the log, never the client).
    pub(crate) fn internal(message: impl std::fmt::Display) -> Self {
        Self::Internal(anyhow::anyhow!("{message}"))
    }
}
