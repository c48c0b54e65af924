//! Configuration: every setting from a flag or an environment variable, with laptop defaults.

use std::{net::SocketAddr, path::PathBuf};

/// The catalogue server's settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "catalogue", about = "The video store's film catalogue (gRPC + gRPC-Web)")]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CATALOGUE_LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Folder for the embedded database and the generated token secret.
    #[arg(long, env = "VIDEOSTORE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Database URL; defaults to `sqlite://<data dir>/catalogue.db`.
    #[arg(long, env = "CATALOGUE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Secret that signs tokens (at least 32 bytes, shared by all services). Defaults to one
    /// generated once in the data folder.
    #[arg(long, env = "VIDEOSTORE_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// Browser origins allowed to call over gRPC-Web, comma-separated, or `*`.
    #[arg(
        long,
        env = "VIDEOSTORE_CORS_ORIGINS",
        default_value = "http://localhost:8080,http://127.0.0.1:8080,http://localhost:8000,http://127.0.0.1:8000"
    )]
    pub cors_origins: String,
    /// Fill an empty catalogue with the sample films on start.
    #[arg(long, env = "CATALOGUE_SEED", default_value_t = true, action = clap::ArgAction::Set)]
    pub seed: bool,
}

impl Config {
    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("catalogue.db").display()))
    }
}
