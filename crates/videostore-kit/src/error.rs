//! The one place where a service's failures become gRPC statuses.
//!
//! Callers get a canonical code and a human message. Internal causes (a database error, a bug) are
//! logged once, here, with their cause chain, and the client only sees "internal error".

use tonic::Status;

/// A failure a handler reports. Every variant but `Internal` is the caller's to act on.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed: a field is missing, too long, out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// The thing named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The system is not in a state that allows the call (sold out, already returned).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Bad or missing credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the right.
    #[error("{0}")]
    PermissionDenied(String),
    /// The server is shutting down or a dependency is down.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else: a bug or an infrastructure failure. Never shown to the client.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ServiceError {
    /// An INVALID_ARGUMENT error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }

    /// A NOT_FOUND error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    /// A FAILED_PRECONDITION error.
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::FailedPrecondition(message.into())
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::InvalidArgument(message) => Status::invalid_argument(message),
            ServiceError::NotFound(message) => Status::not_found(message),
            ServiceError::AlreadyExists(message) => Status::already_exists(message),
            ServiceError::FailedPrecondition(message) => Status::failed_precondition(message),
            ServiceError::Unauthenticated(message) => Status::unauthenticated(message),
            ServiceError::PermissionDenied(message) => Status::permission_denied(message),
            ServiceError::Unavailable(message) => Status::unavailable(message),
            ServiceError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                Status::internal("internal error")
            }
        }
    }
}
