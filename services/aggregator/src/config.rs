//! Configuration: every setting from a flag or an environment variable, with laptop defaults.

use std::time::Duration;

use videostore_kit::config::ServerConfig;

/// The aggregator's settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "aggregator",
    about = "The video store's store front (gRPC, gRPC-Web and REST/JSON)",
    mut_arg("listen", |arg| arg.env("AGGREGATOR_LISTEN_ADDR").default_value("127.0.0.1:8080"))
)]
pub struct Config {
    /// Where it listens, and for which browsers.
    #[command(flatten)]
    pub server: ServerConfig,
    /// The catalogue service: one address or several, comma-separated; a host name stands for
    /// every address it resolves to (a Kubernetes headless Service).
    #[arg(long, env = "CATALOGUE_SERVICE_ADDR", default_value = "http://127.0.0.1:50051")]
    pub catalogue_addr: String,
    /// The stock service: one address or several, as for the catalogue.
    #[arg(long, env = "STOCK_SERVICE_ADDR", default_value = "http://127.0.0.1:50052")]
    pub stock_addr: String,
    /// Longest wait for stock before answering with availability unknown, in milliseconds.
    #[arg(long, env = "AGGREGATOR_STOCK_TIMEOUT_MS", default_value_t = 300)]
    pub stock_timeout_ms: u64,
    /// Deadline for a call that sets none (REST calls, gRPC calls without `grpc-timeout`), in
    /// milliseconds.
    #[arg(long, env = "AGGREGATOR_DEFAULT_DEADLINE_MS", default_value_t = 3000)]
    pub default_deadline_ms: u64,
    /// Folder of the built browser app (trunk's `dist`), served at `/`.
    #[arg(long, env = "AGGREGATOR_WEB_DIR", default_value = "dist")]
    pub web_dir: std::path::PathBuf,
    /// The CA certificate (PEM) that signs catalogue's and stock's certificates, for `https://`
    /// addresses.
    #[arg(long, env = "VIDEOSTORE_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// The catalogue's address as browsers reach it; defaults to `--catalogue-addr`. `/` means
    /// the page's own origin, behind a proxy that routes the catalogue's paths there (the
    /// Ingress, `cargo xtask up --front`).
    #[arg(long, env = "PUBLIC_CATALOGUE_URL")]
    pub public_catalogue_url: Option<String>,
    /// Stock's address as browsers reach it; defaults to `--stock-addr`; `/` as for the
    /// catalogue.
    #[arg(long, env = "PUBLIC_STOCK_URL")]
    pub public_stock_url: Option<String>,
}

impl Config {
    /// The stock wait.
    pub fn stock_timeout(&self) -> Duration {
        Duration::from_millis(self.stock_timeout_ms.max(1))
    }

    /// The default deadline.
    pub fn default_deadline(&self) -> Duration {
        Duration::from_millis(self.default_deadline_ms.max(1))
    }
}
