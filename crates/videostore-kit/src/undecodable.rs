//! A request whose bytes are not the message it should be is the caller's mistake: answered
//! INVALID_ARGUMENT, not the INTERNAL that tonic's decoding gives it.
//!
//! The decoder cannot tell a server's request from a client's answer (one codec serves both),
//! so it marks its failures ([`videostore_proto::codec::UNDECODABLE`]) and the server changes
//! their code in its answers ([`answer_undecodable`]). That reads only an answer's head, where
//! such a failure is: the request is decoded before the handler runs (or the handler returns the
//! failure before it answers). A bidirectional stream has answered its head before it reads a message: its
//! handler answers a message that does not decode with [`request_stream_error`].

use http::HeaderValue;
use tonic::body::Body;
use videostore_proto::codec::UNDECODABLE;

/// A request stream's failure, as the handler reading it answers it: bytes that are not the
/// message are the caller's mistake (INVALID_ARGUMENT); any other failure (the caller went
/// away) as it came.
pub fn request_stream_error(status: tonic::Status) -> tonic::Status {
    if status.code() == tonic::Code::Internal && status.message().starts_with(UNDECODABLE) {
        tonic::Status::invalid_argument(status.message())
    } else {
        status
    }
}

/// Whether a status in `headers` (or trailers) is the decoder's: bytes that are not the message.
pub(crate) fn is_undecodable(headers: &http::HeaderMap) -> bool {
    // The message is percent-encoded on the wire (its spaces are `%20`).
    headers.get("grpc-message").is_some_and(|message| {
        percent_encoding::percent_decode(message.as_bytes())
            .decode_utf8_lossy()
            .starts_with(UNDECODABLE)
    })
}

/// A server's answer, with the decoder's INTERNAL made INVALID_ARGUMENT. Wrap the routes in
/// `tower::util::MapResponseLayer::new(answer_undecodable)`.
pub fn answer_undecodable(mut response: http::Response<Body>) -> http::Response<Body> {
    let headers = response.headers_mut();
    if headers.get("grpc-status").is_some_and(|code| code == "13") && is_undecodable(headers) {
        headers.insert("grpc-status", HeaderValue::from_static("3"));
    }
    response
}
