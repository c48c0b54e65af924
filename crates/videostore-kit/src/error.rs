//! The one place where a service's failures become gRPC statuses and REST responses.
//!
//! Each service has one error enum whose variants a caller can act on, and says which canonical
//! [`Code`] each variant is ([`ServiceError`]). Handlers return that enum; [`status`] and
//! [`http_response`] turn it into what goes on the wire. Client mistakes are logged at DEBUG (a
//! burst of bad requests must not flood the log); an internal cause is logged once, here, at
//! ERROR with its cause chain, and the client reads only "internal error".

use http::StatusCode;
use tonic::Status;

/// The codes the video store answers with: a deliberately small set, each telling the caller
/// something different to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The request is wrong: fix it before trying again.
    InvalidArgument,
    /// The thing named does not exist.
    NotFound,
    /// The thing to create exists already.
    AlreadyExists,
    /// The store is not in a state that allows the call (sold out, already returned).
    FailedPrecondition,
    /// Sign in (again).
    Unauthenticated,
    /// Signed in, but not allowed to do this.
    PermissionDenied,
    /// Too much at once: slow down.
    ResourceExhausted,
    /// Try again shortly (shutting down, or a service behind this one is down).
    Unavailable,
    /// The caller's deadline passed before the answer was ready.
    DeadlineExceeded,
    /// A bug or an infrastructure failure; never the caller's fault.
    Internal,
}

impl Code {
    /// The gRPC status code.
    pub fn grpc(self) -> tonic::Code {
        match self {
            Self::InvalidArgument => tonic::Code::InvalidArgument,
            Self::NotFound => tonic::Code::NotFound,
            Self::AlreadyExists => tonic::Code::AlreadyExists,
            Self::FailedPrecondition => tonic::Code::FailedPrecondition,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::ResourceExhausted => tonic::Code::ResourceExhausted,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            Self::Internal => tonic::Code::Internal,
        }
    }

    /// The HTTP status of the REST facade, as google.rpc.Code documents the mapping.
    pub fn http(self) -> StatusCode {
        match self {
            Self::InvalidArgument | Self::FailedPrecondition => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::AlreadyExists => StatusCode::CONFLICT,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code's name, as gRPC spells it (`NOT_FOUND`): the REST error body's `code`.
    pub fn name(self) -> &'static str {
        match self {
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::FailedPrecondition => "FAILED_PRECONDITION",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Self::Unavailable => "UNAVAILABLE",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::Internal => "INTERNAL",
        }
    }
}

/// A service's error enum: which code each failure is. Its `Display` is the message a client
/// reads, for every code but [`Code::Internal`].
pub trait ServiceError: std::error::Error + Send + Sync + 'static {
    /// The canonical code of this failure.
    fn code(&self) -> Code;

    /// When trying again makes sense, for a refusal that passes with time (a rate limit, a
    /// full queue): sent as `google.rpc.RetryInfo` in the status details, and as `Retry-After`
    /// by the REST facade.
    fn retry_after(&self) -> Option<std::time::Duration> {
        None
    }
}

/// What the client may read of `error`, after logging it: its message, or "internal error"
/// (with the cause logged at ERROR, once).
fn reported(error: &dyn ServiceError) -> (Code, String) {
    let code = error.code();
    if code == Code::Internal {
        tracing::error!(error = %ErrorChain(error), "internal error");
        (code, "internal error".to_owned())
    } else {
        tracing::debug!(code = code.name(), message = %error, "request refused");
        (code, error.to_string())
    }
}

/// The gRPC status for `error`.
pub fn status(error: &dyn ServiceError) -> Status {
    let (code, message) = reported(error);
    match error.retry_after() {
        Some(delay) => {
            use tonic_types::{ErrorDetails, StatusExt};
            Status::with_error_details(
                code.grpc(),
                message,
                ErrorDetails::with_retry_info(Some(delay)),
            )
        }
        None => Status::new(code.grpc(), message),
    }
}

/// The `Retry-After` header value (whole seconds, at least 1) for `error`, if it has one.
pub fn retry_after_header(error: &dyn ServiceError) -> Option<http::HeaderValue> {
    let delay = error.retry_after()?;
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    Some(http::HeaderValue::from(seconds.max(1)))
}

/// The REST facade's answer for `error`: its HTTP status and
/// `{"error": {"code": "NOT_FOUND", "message": "…"}}`.
pub fn http_response(error: &dyn ServiceError) -> (StatusCode, ErrorJson) {
    let (code, message) = reported(error);
    (code.http(), ErrorJson { error: ErrorBody { code: code.name(), message } })
}

/// The REST facade's error body.
#[derive(Debug, serde::Serialize)]
pub struct ErrorJson {
    /// The error.
    pub error: ErrorBody,
}

/// What went wrong, for the REST facade.
#[derive(Debug, serde::Serialize)]
pub struct ErrorBody {
    /// The code's name, e.g. `NOT_FOUND`.
    pub code: &'static str,
    /// For a person to read.
    pub message: String,
}

/// An error and its causes, `: `-separated, as `anyhow` prints them with `{:#}`.
struct ErrorChain<'a>(&'a dyn ServiceError);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// A request field that breaks a rule, explained for a person to read (INVALID_ARGUMENT).
///
/// Every validator of every service returns this, so a rule's message reads the same whether it
/// comes from a create, an update or an import.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    /// A refusal with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl ServiceError for Invalid {
    fn code(&self) -> Code {
        Code::InvalidArgument
    }
}

impl From<Invalid> for Status {
    fn from(error: Invalid) -> Self {
        status(&error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Example {
        #[error("no film has id 7")]
        Missing,
        #[error(transparent)]
        Internal(anyhow::Error),
    }

    impl ServiceError for Example {
        fn code(&self) -> Code {
            match self {
                Self::Missing => Code::NotFound,
                Self::Internal(_) => Code::Internal,
            }
        }
    }

    #[test]
    fn mistakes_keep_their_message_and_internal_causes_stay_inside() {
        let refused = status(&Example::Missing);
        assert_eq!(
            (refused.code(), refused.message()),
            (tonic::Code::NotFound, "no film has id 7")
        );
        let cause = anyhow::anyhow!("disk I/O error").context("reading film 7");
        let internal = status(&Example::Internal(cause));
        assert_eq!(internal.code(), tonic::Code::Internal);
        assert_eq!(internal.message(), "internal error");
        let (http, body) = http_response(&Example::Missing);
        assert_eq!((http, body.error.code), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    }

    #[test]
    fn every_code_has_its_own_grpc_code_and_a_client_or_server_http_status() {
        use Code::*;
        let all = [
            InvalidArgument,
            NotFound,
            AlreadyExists,
            FailedPrecondition,
            Unauthenticated,
            PermissionDenied,
            ResourceExhausted,
            Unavailable,
            DeadlineExceeded,
            Internal,
        ];
        for code in all {
            // `DeadlineExceeded` -> `DEADLINE_EXCEEDED`.
            let grpc_name: String = format!("{:?}", code.grpc())
                .chars()
                .enumerate()
                .flat_map(|(i, c)| {
                    let gap = (i > 0 && c.is_ascii_uppercase()).then_some('_');
                    gap.into_iter().chain(Some(c.to_ascii_uppercase()))
                })
                .collect();
            assert_eq!(code.name(), grpc_name);
            let server_side = matches!(code, Unavailable | DeadlineExceeded | Internal);
            assert_eq!(code.http().is_server_error(), server_side, "{code:?}");
        }
        let distinct: std::collections::HashSet<_> = all.iter().map(|c| c.grpc()).collect();
        assert_eq!(distinct.len(), all.len());
    }
}
