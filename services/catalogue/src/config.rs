//! Configuration: every setting from a flag or an environment variable, with laptop defaults.

use videostore_kit::config::{DataConfig, ServerConfig};

/// The catalogue server's settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "catalogue",
    about = "The video store's film catalogue (gRPC + gRPC-Web)",
    mut_arg("listen", |arg| arg.env("CATALOGUE_LISTEN_ADDR").default_value("127.0.0.1:50051"))
)]
pub struct Config {
    /// Where it listens, and for which browsers.
    #[command(flatten)]
    pub server: ServerConfig,
    /// Its data folder and token key.
    #[command(flatten)]
    pub data: DataConfig,
    /// Database URL; defaults to `sqlite://<data dir>/catalogue.db`.
    #[arg(long, env = "CATALOGUE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Fill an empty catalogue with the sample films on start.
    #[arg(long, env = "CATALOGUE_SEED", default_value_t = true, action = clap::ArgAction::Set)]
    pub seed: bool,
    /// Long streams (WatchChanges, LookupMovies) one process holds at most.
    #[arg(long, env = "CATALOGUE_MAX_STREAMS", default_value_t = 10_000)]
    pub max_streams: usize,
    /// Long streams one client address may hold at once; 0 for no limit.
    #[arg(long, env = "CATALOGUE_STREAMS_PER_CLIENT", default_value_t = 100)]
    pub streams_per_client: u32,
}

impl Config {
    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| self.data.sqlite_url("catalogue.db"))
    }
}
