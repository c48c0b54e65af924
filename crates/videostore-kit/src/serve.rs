//! One listener for everything a service speaks: gRPC over HTTP/2, gRPC-Web over HTTP/1.1 (for
//! browsers), plain HTTP routes (the aggregator's REST facade), with CORS for the configured
//! browser origins, the standard `grpc.health.v1` service and server reflection.
//!
//! Health, reflection and `/metrics` ([`crate::metrics`]) can move to a second, private port
//! (`VIDEOSTORE_ADMIN_ADDR`): a port that faces the public (the aggregator's, behind the
//! Ingress at `/`) then serves none of them, while the kubelet's probes and Prometheus reach
//! them on the private one.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;

use http::{HeaderName, HeaderValue, Method};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{service::Routes, transport::server::TcpIncoming};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Largest message a server sends, and the largest request of a bulk call (an ImportMovies
/// batch of 5,000 films). Small enough that a hostile client cannot make a server buffer
/// gigabytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Largest request message of every other call. The biggest valid one is a film with the
/// longest synopsis (about 25 KB); a WatchAvailability of 1,000 films with their versions is
/// about 15 KB. A larger message is refused (OUT_OF_RANGE) before it is decoded, so a
/// WatchAvailability with two million ids costs its sender, not the server.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// HTTP/2 streams one connection may have open at once (calls and live streams alike). The
/// bench's fan-out holds 1,000 watchers on one connection; a browser page holds a few. Past it,
/// a client's new calls wait for one to end (HTTP/2 flow control), so one connection cannot
/// hold an unbounded share of the server.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 1024;

/// Calls one connection may have waiting for their answer's head at once; more wait their
/// turn. (A stream's body does not hold a place: only its handler's start does.)
pub const MAX_CALLS_PER_CONNECTION: usize = 256;

/// Which browser origins may call the service directly (gRPC-Web from the web app).
#[derive(Debug, Clone)]
pub enum AllowedOrigins {
    /// Any origin (development only).
    Any,
    /// Exactly these origins, e.g. `http://localhost:8080`.
    List(Vec<HeaderValue>),
}

impl AllowedOrigins {
    /// Parses a comma-separated list; `*` alone means any origin.
    pub fn parse(list: &str) -> anyhow::Result<Self> {
        let list = list.trim();
        if list == "*" {
            return Ok(Self::Any);
        }
        let origins = list
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(|origin| {
                HeaderValue::from_str(origin)
                    .map_err(|_| anyhow::anyhow!("invalid CORS origin {origin:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self::List(origins))
    }
}

/// The CORS policy for gRPC-Web: the request headers a gRPC-Web client sends, and the response
/// headers it must be able to read (without `grpc-status` exposed, a browser sees every error as
/// "malformed response").
pub fn cors_layer(origins: &AllowedOrigins) -> CorsLayer {
    let allow_origin = match origins {
        AllowedOrigins::Any => AllowOrigin::any(),
        AllowedOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            HeaderName::from_static("authorization"),
            HeaderName::from_static("content-type"),
            HeaderName::from_static("x-grpc-web"),
            HeaderName::from_static("x-user-agent"),
            HeaderName::from_static("grpc-timeout"),
            // W3C trace context: the web app starts each call's trace.
            HeaderName::from_static("traceparent"),
            HeaderName::from_static("tracestate"),
        ])
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
        ])
        .max_age(Duration::from_secs(24 * 60 * 60))
}

/// The standard services every server carries, and the handle to report its health.
pub struct StandardServices {
    /// Sets the serving status of the server's services.
    pub health: HealthReporter,
    /// The service names reported, besides the server as a whole (`""`).
    names: Vec<String>,
    routes: Routes,
    /// The private port health and reflection are served on instead of the public one.
    admin: Option<TcpListener>,
    /// The server's metrics (`/metrics`, beside health).
    metrics: crate::metrics::Metrics,
}

impl StandardServices {
    /// Health (initially SERVING for `""` and each of `service_names`), reflection over the
    /// video store's descriptors and `metrics` at `/metrics`; on a private port of their own
    /// when `admin` is set (bound here, so that port 0 works in tests: see
    /// [`StandardServices::admin_addr`]).
    pub async fn new(
        service_names: &[&str],
        admin: Option<SocketAddr>,
        metrics: crate::metrics::Metrics,
    ) -> anyhow::Result<Self> {
        let admin = match admin {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the admin address {addr}"))?,
            ),
            None => None,
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_service_status("", ServingStatus::Serving).await;
        for name in service_names {
            health.set_service_status(*name, ServingStatus::Serving).await;
        }
        // Reflection in both versions (Python's grpcio-reflection, older grpcurl, Postman and
        // Evans speak v1alpha only), listing exactly the services this port answers.
        let listed = service_names.iter().copied().chain([
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]);
        let reflection = || {
            listed.clone().fold(
                tonic_reflection::server::Builder::configure()
                    // Both versions' descriptors, registered below, in both services.
                    .include_reflection_service(false)
                    .register_encoded_file_descriptor_set(videostore_proto::FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(
                        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
                    )
                    .register_encoded_file_descriptor_set(
                        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                    ),
                |builder, name| builder.with_service_name(name),
            )
        };
        let routes = Routes::new(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?);
        Ok(Self {
            health,
            names: service_names.iter().map(|n| (*n).to_owned()).collect(),
            routes,
            admin,
            metrics,
        })
    }

    /// The server's metrics, for the service to add its own to.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The private port health and reflection are served on, if they have one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|listener| listener.local_addr().ok())
    }

    /// Reports every service of this server as not serving (at shutdown).
    pub async fn set_not_serving(&self) {
        self.health.set_service_status("", ServingStatus::NotServing).await;
        for name in &self.names {
            self.health.set_service_status(name, ServingStatus::NotServing).await;
        }
    }

    /// The routes the service's own are added to: the standard ones, unless they live on the
    /// private port.
    pub fn routes(&self) -> Routes {
        if self.admin.is_some() { Routes::default() } else { self.routes.clone() }
    }
}

/// gRPC routes that also answer gRPC-Web (HTTP/1.1) calls from browsers, each call timed into
/// `metrics` and given its span ([`crate::trace`]), inside the translation, so both transports
/// count alike. Failures are not logged as errors here: most are the caller's mistakes, and the
/// services log each internal cause themselves, once (see `error`); `RUST_LOG=debug` shows
/// every answer's code.
///
/// The translation applies to these routes only: tonic-web refuses any other HTTP/1.1 request,
/// so plain HTTP routes (the REST facade) are merged in after this, outside the layer.
pub fn with_grpc_web(routes: Routes, metrics: &crate::metrics::Metrics) -> axum::Router {
    routes.into_axum_router().layer(metrics.layer()).layer(tonic_web::GrpcWebLayer::new())
}

/// How long in-flight calls get to finish after shutdown starts; then connections are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Serves `routes` on `listener` until `shutdown` is cancelled, then lets in-flight calls finish
/// (for at most [`SHUTDOWN_GRACE`]). A connection silent for `keepalive` is pinged, and closed
/// when the ping is not answered within a third of that.
///
/// `routes` is typically [`with_grpc_web`] of the service's gRPC routes, plus any plain HTTP
/// routes. The caller binds the listener (port 0 in tests) so it knows the address before
/// serving starts.
pub async fn serve(
    listener: TcpListener,
    routes: axum::Router,
    origins: &AllowedOrigins,
    keepalive: Duration,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    mut standard: StandardServices,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The private port stays up until the public one has drained, so that probes see the
    // NOT_SERVING of the shutdown rather than a refused connection.
    let admin_stop = CancellationToken::new();
    let admin = standard.admin.take().map(|listener| {
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        // Prometheus scrapes over HTTP/1.1.
        let routes = standard.routes.clone().into_axum_router().merge(standard.metrics.route());
        tokio::spawn(
            tonic::transport::Server::builder()
                .accept_http1(true)
                .add_routes(Routes::from(routes))
                .serve_with_incoming_shutdown(incoming, admin_stop.clone().cancelled_owned()),
        )
    });
    let routes = if admin.is_some() { routes } else { routes.merge(standard.metrics.route()) };
    let standard = &standard;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let on_shutdown = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            // Tell load balancers and `xtask up` first, then stop taking calls.
            standard.set_not_serving().await;
        }
    };
    let router = tonic::transport::Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(keepalive / 3))
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .concurrency_limit_per_connection(MAX_CALLS_PER_CONNECTION)
        .layer(cors_layer(origins))
        // Nearest the routes (tonic applies the first layer outermost).
        .layer(crate::timeout::AnswerTimeoutLayer::new(crate::timeout::ANSWER_WITHIN))
        .layer(tower::util::MapResponseLayer::new(crate::undecodable::answer_undecodable))
        .add_routes(Routes::from(routes));
    let server: std::pin::Pin<
        Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>,
    > = match tls {
        None => Box::pin(router.serve_with_incoming_shutdown(incoming, on_shutdown)),
        Some(tls) => Box::pin(
            router.serve_with_incoming_shutdown(crate::tls::incoming(incoming, tls), on_shutdown),
        ),
    };
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("in-flight calls did not finish within {SHUTDOWN_GRACE:?}; closing them");
        }
    }
    admin_stop.cancel();
    if let Some(admin) = admin {
        // Probes hold no long calls: a second is plenty, and a stuck one must not hold us.
        if let Ok(Ok(Err(error))) = tokio::time::timeout(Duration::from_secs(1), admin).await {
            tracing::warn!(%error, "the admin port failed");
        }
    }
    Ok(())
}
