//! A time limit on a gRPC call's answer: a call whose answer has not begun within the limit is
//! answered DEADLINE_EXCEEDED, and its handler dropped (with whatever it held).
//!
//! Only the wait for the answer's head is limited. A stream's body (WatchAvailability,
//! StreamMovies, the desk) runs as long as it runs, and the calls that read a whole client
//! stream before they answer are exempt ([`READS_A_STREAM_FIRST`]). A client's own shorter
//! `grpc-timeout` is the client's business (tonic answers it), not this layer's.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use tonic::{Status, body::Body};

/// Calls that answer only after the client's whole stream, however long that takes.
pub const READS_A_STREAM_FIRST: &[&str] =
    &["/videostore.catalogue.v1.CatalogueService/ImportMovies"];

/// How long a call's answer may take to begin.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// Wraps a server's routes in [`AnswerTimeout`].
#[derive(Debug, Clone, Copy)]
pub struct AnswerTimeoutLayer {
    limit: Duration,
}

impl AnswerTimeoutLayer {
    /// Answers must begin within `limit`.
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl<S> tower::Layer<S> for AnswerTimeoutLayer {
    type Service = AnswerTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AnswerTimeout { inner, limit: self.limit }
    }
}

/// See the module's description.
#[derive(Debug, Clone)]
pub struct AnswerTimeout<S> {
    inner: S,
    limit: Duration,
}

impl<S, B> tower::Service<http::Request<B>> for AnswerTimeout<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
        let limited = grpc && !READS_A_STREAM_FIRST.contains(&request.uri().path());
        let answer = self.inner.call(request);
        if !limited {
            return Box::pin(answer);
        }
        let limit = self.limit;
        Box::pin(async move {
            match tokio::time::timeout(limit, answer).await {
                Ok(answered) => answered,
                Err(_) => {
                    tracing::warn!(?limit, "a call did not answer in time; it was given up");
                    let message = format!("the call did not answer within {} s", limit.as_secs());
                    Ok(Status::deadline_exceeded(message).into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use tower::{Layer as _, Service as _, ServiceExt as _};

    use super::*;

    fn call(path: &str) -> http::Request<()> {
        http::Request::post(path).header("content-type", "application/grpc").body(()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_is_cut_and_exempt_calls_and_plain_http_are_not() {
        let slow = tower::service_fn(|_: http::Request<()>| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        });
        let mut service = AnswerTimeoutLayer::new(Duration::from_secs(30)).layer(slow);
        let cut = service.ready().await.unwrap().call(call("/a.B/Slow")).await.unwrap();
        assert_eq!(cut.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");
        let import = service.ready().await.unwrap().call(call(READS_A_STREAM_FIRST[0])).await;
        assert!(import.unwrap().headers().get("grpc-status").is_none(), "not cut");
        let rest = http::Request::get("/api/movies").body(()).unwrap();
        let rest = service.ready().await.unwrap().call(rest).await.unwrap();
        assert!(rest.headers().get("grpc-status").is_none(), "not cut");
    }

    /// Every call that reads its client's whole stream before answering is exempt: a new one
    /// added to the contracts fails this until it is listed.
    #[test]
    fn every_client_streaming_call_with_one_answer_is_exempt() {
        let set =
            prost_types::FileDescriptorSet::decode(videostore_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut reading_first = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    if method.client_streaming() && !method.server_streaming() {
                        reading_first.push(format!(
                            "/{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        assert!(!reading_first.is_empty());
        assert_eq!(reading_first, READS_A_STREAM_FIRST);
    }
}
