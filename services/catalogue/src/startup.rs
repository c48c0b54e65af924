//! Wiring: open the store, seed it, bind the port, and serve until shutdown.

use std::{net::SocketAddr, sync::Arc, time::SystemTime};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use videostore_kit::{
    auth::TokenKeys,
    secret,
    serve::{self, AllowedOrigins, MAX_MESSAGE_BYTES, StandardServices},
};

use crate::{
    config::Config,
    grpc::{self, CatalogueApi},
    seed,
    store::{CachedStore, CatalogueStore, SqliteStore},
    wire::{CatalogueRoutes, WIRE_FORM},
};

/// A catalogue server bound to its port, ready to run.
pub struct Application {
    listener: TcpListener,
    routes: tonic::service::Routes,
    standard: StandardServices,
    origins: AllowedOrigins,
    shutdown: CancellationToken,
}

impl Application {
    /// Opens the database, seeds an empty one, and binds the listen address (port 0 picks a free
    /// port: see [`Application::local_addr`]).
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let origins = AllowedOrigins::parse(&config.cors_origins)?;
        let secret = secret::load_or_create(config.token_secret.as_deref(), &config.data_dir)?;
        let keys = TokenKeys::new(&secret)?;
        let store = SqliteStore::open(&config.database_url(), WIRE_FORM).await?;
        if config.seed {
            seed_if_empty(&store).await?;
        }
        // Writes announced to WatchChanges; a watcher this far behind is told to start over.
        let (changes, _) = tokio::sync::broadcast::channel(1024);
        let store = Arc::new(CachedStore::new(store, changes.clone()));
        let api = CatalogueApi::new(store, keys, shutdown.clone(), changes);
        let standard = StandardServices::new(&["videostore.catalogue.v1.CatalogueService"]).await?;
        // Only ExportMovies answers can be this big (from the generated server, which is used
        // only when the wire routes are not mounted); it checks its own limit first.
        let routes = standard.routes().add_service(CatalogueRoutes::new(
            api,
            MAX_MESSAGE_BYTES,
            grpc::MAX_EXPORT_BYTES + 1024,
        ));
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Ok(Self { listener, routes, standard, origins, shutdown })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until the shutdown token is cancelled and in-flight calls have finished.
    pub async fn run(self) -> anyhow::Result<()> {
        serve::serve(
            self.listener,
            serve::with_grpc_web(self.routes),
            &self.origins,
            &self.standard,
            self.shutdown,
        )
        .await
    }
}

async fn seed_if_empty(store: &SqliteStore) -> anyhow::Result<()> {
    if store.total().await.map_err(|e| anyhow::anyhow!(e))? > 0 {
        return Ok(());
    }
    let films = seed::films();
    store
        .upsert_batch(&films, SystemTime::now())
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("seeding the catalogue")?;
    tracing::info!(films = films.len(), "seeded an empty catalogue");
    Ok(())
}
