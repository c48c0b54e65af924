//! Everything a store-front call can fail with, and which canonical code each failure is.
//!
//! The views return [`Error`]; it becomes a gRPC status or a REST error response in one place
//! (`videostore_kit::error`), which logs an internal cause once.

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use tonic::Status;
use videostore_kit::error::{Code, Invalid, ServiceError};

/// A failed store-front call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A request field breaks a rule.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// A service behind the store front refused or failed.
    #[error("{}", upstream_message(service, status))]
    Upstream {
        /// `catalogue` or `stock`.
        service: &'static str,
        /// What it answered.
        status: Status,
    },
    /// As many exports as the store front runs at once are running.
    #[error(
        "{} exports are running, as many as run at once; try again in a few seconds",
        crate::storefront::MAX_EXPORTS
    )]
    TooManyExports,
    /// A bug; the client reads only "internal error".
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// What `service` answered, as this service's error. A service that is down is worth a
    /// warning in the log; its other answers are logged where they are turned into a response.
    pub(crate) fn upstream(service: &'static str) -> impl Fn(Status) -> Self {
        move |status| {
            if status.code() == tonic::Code::Unavailable {
                tracing::warn!(service, message = status.message(), "upstream unavailable");
            }
            Self::Upstream { service, status }
        }
    }

    /// An internal failure with this explanation (for the log, never the client).
    pub(crate) fn internal(message: impl std::fmt::Display) -> Self {
        Self::Internal(anyhow::anyhow!("{message}"))
    }
}

/// The code the store front answers with when `status` came from upstream: the caller's own
/// mistakes pass through; the rest is the store front's failure.
fn upstream_code(status: &Status) -> Code {
    match status.code() {
        tonic::Code::InvalidArgument => Code::InvalidArgument,
        tonic::Code::NotFound => Code::NotFound,
        tonic::Code::FailedPrecondition => Code::FailedPrecondition,
        tonic::Code::ResourceExhausted => Code::ResourceExhausted,
        tonic::Code::Unauthenticated => Code::Unauthenticated,
        tonic::Code::PermissionDenied => Code::PermissionDenied,
        tonic::Code::Unavailable => Code::Unavailable,
        // A client-side timeout ends the call CANCELLED: the caller's deadline passed.
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

fn upstream_message(service: &str, status: &Status) -> String {
    match upstream_code(status) {
        Code::Unavailable => format!("the {service} service is unavailable; try again shortly"),
        Code::DeadlineExceeded => format!("the {service} service did not answer in time"),
        // Logged, never sent: the upstream's own words on its failure.
        Code::Internal => {
            format!("{service} answered {:?}: {}", status.code(), status.message())
        }
        _ => status.message().to_owned(),
    }
}

impl ServiceError for Error {
    fn code(&self) -> Code {
        match self {
            Self::Invalid(_) => Code::InvalidArgument,
            Self::Upstream { status, .. } => upstream_code(status),
            Self::TooManyExports => Code::ResourceExhausted,
            Self::Internal(_) => Code::Internal,
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::TooManyExports => Some(std::time::Duration::from_secs(5)),
            // A limit behind the store front: its hint passes through.
            Self::Upstream { status, .. } => {
                use tonic_types::StatusExt;
                status.get_details_retry_info().and_then(|info| info.retry_delay)
            }
            _ => None,
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        videostore_kit::error::status(&error)
    }
}

/// The REST facade's answer: the code's HTTP status and
/// `{"error": {"code": "NOT_FOUND", "message": "…"}}`, with a `Retry-After` (seconds) where
/// trying again later will do.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, body) = videostore_kit::error::http_response(&self);
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = videostore_kit::error::retry_after_header(&self) {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_answers_keep_the_callers_mistakes_and_hide_the_rest() {
        let from = |status| Error::upstream("catalogue")(status);
        let missing = from(Status::not_found("no film has id 9"));
        assert_eq!(
            (missing.code(), missing.to_string().as_str()),
            (Code::NotFound, "no film has id 9")
        );
        let down = from(Status::unavailable("connection refused"));
        assert_eq!(down.code(), Code::Unavailable);
        assert_eq!(down.to_string(), "the catalogue service is unavailable; try again shortly");
        assert_eq!(from(Status::cancelled("Timeout expired")).code(), Code::DeadlineExceeded);
        let broken = Status::from(from(Status::data_loss("disk gone")));
        assert_eq!((broken.code(), broken.message()), (tonic::Code::Internal, "internal error"));
    }
}
