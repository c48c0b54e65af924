//! Wiring: open the store, seed it, bind the port, and serve until shutdown.

use std::{net::SocketAddr, sync::Arc, time::SystemTime};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use videostore_kit::{
    database::Backend,
    run::Server,
    serve::{self, AllowedOrigins, MAX_MESSAGE_BYTES, StandardServices},
    streams::{StreamCaps, StreamPlaces},
};

use crate::{
    config::Config,
    feed,
    grpc::CatalogueApi,
    seed,
    service::Catalogue,
    store::{CachedStore, CatalogueStore, PostgresStore, SqliteStore},
    wire::{CatalogueRoutes, wire_form},
};

/// Writes announced to WatchChanges that a watcher may fall behind by before it is told to
/// start over.
const ANNOUNCED_CHANGES: usize = 1024;

/// A catalogue server bound to its port, ready to run.
pub struct Application {
    listener: TcpListener,
    routes: tonic::service::Routes,
    standard: StandardServices,
    origins: AllowedOrigins,
    /// How long a silent connection goes before it is pinged.
    keepalive: std::time::Duration,
    /// TLS on the port, when configured.
    tls: Option<std::sync::Arc<videostore_kit::tls::ServerTls>>,
    shutdown: CancellationToken,
}

impl Application {
    /// Opens the database, seeds an empty one, and binds the listen address (port 0 picks a free
    /// port: see [`Application::local_addr`]).
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let origins = config.server.origins()?;
        let tls = config.server.tls()?;
        let keys = config.data.token_keys(None)?;
        let url = config.database_url();
        let (changes, _) = tokio::sync::broadcast::channel(ANNOUNCED_CHANGES);
        let metrics = videostore_kit::metrics::Metrics::new();
        let store: Arc<dyn CatalogueStore> = match Backend::of(&url)? {
            Backend::Sqlite => {
                let store = SqliteStore::open(&url, wire_form()).await?;
                store.register_metrics(&metrics);
                if config.seed {
                    seed_if_empty(&store).await?;
                }
                // This process is the database's only writer: its cache hears every write.
                let cached = CachedStore::new(store, changes.clone(), true);
                cached.register_metrics(&metrics);
                Arc::new(cached)
            }
            Backend::Postgres => {
                let store =
                    PostgresStore::open(&url, wire_form(), config.data.database_pool).await?;
                store.register_metrics(&metrics);
                if config.seed {
                    // Replicas may start together: the store lets one seed.
                    let films = seed::films();
                    let added = store
                        .seed_if_empty(&films, SystemTime::now())
                        .await
                        .context("seeding the catalogue")?;
                    if added > 0 {
                        tracing::info!(films = added, "seeded an empty catalogue");
                    }
                }
                // Other replicas' writes arrive through the feed; the cache serves while it
                // listens.
                let cached = CachedStore::new(store.clone(), changes.clone(), false);
                cached.register_metrics(&metrics);
                feed::start(&store, cached.control(), shutdown.clone()).await?;
                Arc::new(cached)
            }
        };
        let catalogue = Arc::new(Catalogue::new(store, changes));
        let caps =
            StreamCaps { per_process: config.max_streams, per_client: config.streams_per_client };
        let streams = Arc::new(StreamPlaces::new(caps, config.server.trusted()?));
        metrics.register("videostore_long_streams", "Long streams open", streams.open());
        let api = CatalogueApi::new(catalogue, keys, shutdown.clone(), streams);
        let standard = StandardServices::new(
            &["videostore.catalogue.v1.CatalogueService"],
            config.server.admin_listen,
            metrics,
        )
        .await?;
        let routes = standard.routes().add_service(CatalogueRoutes::new(api, MAX_MESSAGE_BYTES));
        let listen = config.server.listen;
        let listener =
            TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        Ok(Self {
            listener,
            routes,
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
            serve::with_grpc_web(self.routes, self.standard.metrics()),
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

async fn seed_if_empty(store: &dyn CatalogueStore) -> anyhow::Result<()> {
    if store.total().await? > 0 {
        return Ok(());
    }
    let films = seed::films();
    store.upsert_batch(&films, SystemTime::now()).await.context("seeding the catalogue")?;
    tracing::info!(films = films.len(), "seeded an empty catalogue");
    Ok(())
}
