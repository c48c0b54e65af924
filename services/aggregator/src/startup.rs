//! Wiring: channels to catalogue and stock (balanced over their replicas), gRPC and REST on one
//! port, serve until shutdown.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use videostore_kit::{
    run::Server,
    serve::{self, AllowedOrigins, MAX_MESSAGE_BYTES, MAX_REQUEST_BYTES, StandardServices},
};
use videostore_proto::aggregator::storefront_service_server::StorefrontServiceServer;

use crate::{
    config::Config,
    films::FilmPages,
    grpc::StorefrontApi,
    rest,
    storefront::{MAX_EXPORTS, Storefront, Upstream},
    upstream::{self, Purpose},
    web,
};

/// An aggregator bound to its port, ready to run.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    standard: StandardServices,
    origins: AllowedOrigins,
    /// How long a silent connection goes before it is pinged.
    keepalive: std::time::Duration,
    /// TLS on the port, when configured.
    tls: Option<std::sync::Arc<videostore_kit::tls::ServerTls>>,
    shutdown: CancellationToken,
}

impl Application {
    /// Prepares the clients (connected lazily: the services may start in any order) and binds.
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let origins = config.server.origins()?;
        let tls = config.server.tls()?;
        let ca = config.tls_ca.as_deref().map(videostore_kit::tls::read_ca).transpose()?;
        let catalogue = upstream::channel(
            "catalogue",
            &config.catalogue_addr,
            ca.as_deref(),
            Purpose::Calls,
            shutdown.clone(),
        )?;
        // Exports have connections of their own: a download whose client stalls stops reading
        // its stream, which must never hold up the pages' calls.
        let exports = upstream::channel(
            "catalogue",
            &config.catalogue_addr,
            ca.as_deref(),
            Purpose::Exports { exports: MAX_EXPORTS as u32 },
            shutdown.clone(),
        )?;
        let stock = upstream::channel(
            "stock",
            &config.stock_addr,
            ca.as_deref(),
            Purpose::Calls,
            shutdown.clone(),
        )?;
        let films = Arc::new(FilmPages::default());
        tokio::spawn(Arc::clone(&films).follow(catalogue.clone(), shutdown.clone()));
        let storefront =
            Storefront::new(Upstream { catalogue, exports, stock }, config.stock_timeout(), films);
        let api = StorefrontApi {
            storefront: storefront.clone(),
            default_deadline: config.default_deadline(),
        };
        let standard = StandardServices::new(
            &["videostore.aggregator.v1.StorefrontService"],
            config.server.admin_listen,
            videostore_kit::metrics::Metrics::new(),
        )
        .await?;
        let grpc = standard.routes().add_service(
            StorefrontServiceServer::new(api)
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        );
        let mut router = serve::with_grpc_web(grpc, standard.metrics());
        let endpoints = web::PublicEndpoints {
            catalogue: config
                .public_catalogue_url
                .clone()
                .unwrap_or_else(|| config.catalogue_addr.clone()),
            stock: config.public_stock_url.clone().unwrap_or_else(|| config.stock_addr.clone()),
            aggregator: String::new(),
        };
        let mut pages = rest::router(storefront, config.default_deadline());
        if let Some(app) = web::router(config.web_dir.clone(), &endpoints) {
            pages = pages.merge(app);
        }
        router = router.merge(web::with_security_headers(pages));
        let listen = config.server.listen;
        let listener =
            TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        Ok(Self {
            listener,
            router,
            standard,
            origins,
            keepalive: config.server.keepalive(),
            tls,
            shutdown,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The private address of health and reflection, when they have one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.standard.admin_addr()
    }

    /// Serves until the shutdown token is cancelled and in-flight calls have finished.
    pub async fn run(self) -> anyhow::Result<()> {
        serve::serve(
            self.listener,
            self.router,
            &self.origins,
            self.keepalive,
            self.tls,
            self.standard,
            self.shutdown,
        )
        .await
    }
}

impl Server for Application {
    fn local_addr(&self) -> SocketAddr {
        Application::local_addr(self)
    }

    fn run(self) -> impl Future<Output = anyhow::Result<()>> {
        Application::run(self)
    }
}
