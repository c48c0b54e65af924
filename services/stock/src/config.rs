//! Configuration: every setting from a flag or an environment variable, with laptop defaults.

use std::{net::SocketAddr, path::PathBuf};

/// The stock server's settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "stock",
    about = "The video store's stock, rentals and accounts (gRPC + gRPC-Web)"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "STOCK_LISTEN_ADDR", default_value = "127.0.0.1:50052")]
    pub listen: SocketAddr,
    /// Folder for the embedded database and the generated token secret.
    #[arg(long, env = "VIDEOSTORE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Database URL; defaults to `sqlite://<data dir>/stock.db`.
    #[arg(long, env = "STOCK_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Secret that signs tokens (at least 32 bytes, shared by all services). Defaults to one
    /// generated once in the data folder.
    #[arg(long, env = "VIDEOSTORE_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// How long a sign-in token stays valid, in minutes.
    #[arg(long, env = "VIDEOSTORE_TOKEN_TTL_MINUTES", default_value_t = 12 * 60)]
    pub token_ttl_minutes: u64,
    /// Browser origins allowed to call over gRPC-Web, comma-separated, or `*`.
    #[arg(
        long,
        env = "VIDEOSTORE_CORS_ORIGINS",
        default_value = "http://localhost:8080,http://127.0.0.1:8080,http://localhost:8000,http://127.0.0.1:8000"
    )]
    pub cors_origins: String,
    /// How often an idle WatchAvailability stream sends a heartbeat, in milliseconds.
    #[arg(long, env = "STOCK_WATCH_HEARTBEAT_MS", default_value_t = 15_000)]
    pub watch_heartbeat_ms: u64,
    /// Stock the sample films (ids 1 to 600) that are not stocked yet, on start.
    #[arg(long, env = "STOCK_SEED", default_value_t = true, action = clap::ArgAction::Set)]
    pub seed: bool,
    /// Email of a staff account to make sure exists (the shop's first staff member).
    #[arg(long, env = "VIDEOSTORE_STAFF_EMAIL")]
    pub staff_email: Option<String>,
    /// Password for that staff account, used only when it is created.
    #[arg(long, env = "VIDEOSTORE_STAFF_PASSWORD", hide_env_values = true)]
    pub staff_password: Option<String>,
}

impl Config {
    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("stock.db").display()))
    }
}
