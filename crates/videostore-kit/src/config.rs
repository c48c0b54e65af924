//! Settings every server shares, flattened into each service's own `clap` configuration: every
//! setting is a flag and an environment variable, with laptop defaults.
//!
//! The listen address is shared too, but its variable and default differ per service
//! (`CATALOGUE_LISTEN_ADDR`, `127.0.0.1:50051`, …): each service sets them on its command with
//! `mut_arg("listen", …)`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::serve::AllowedOrigins;

/// Browser origins of the app as `cargo xtask up` serves it.
pub const DEFAULT_CORS_ORIGINS: &str = "http://localhost:8080,http://127.0.0.1:8080";

/// The origins of `trunk serve`'s live-reloading app, allowed only in development
/// (`cargo xtask up --dev` adds them).
pub const DEVELOPMENT_CORS_ORIGINS: &str = "http://localhost:8000,http://127.0.0.1:8000";

/// How a server listens: its address and which browsers may call it.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerConfig {
    /// Address to listen on.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Browser origins allowed to call over gRPC-Web (and REST), comma-separated, or `*`.
    #[arg(long, env = "VIDEOSTORE_CORS_ORIGINS", default_value = DEFAULT_CORS_ORIGINS)]
    pub cors_origins: String,
    /// Certificate chain (PEM) to speak TLS with on the port; with `--tls-key`.
    #[arg(long, env = "VIDEOSTORE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "VIDEOSTORE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A second, private address for health and reflection (plain gRPC): when set, they are
    /// served there only, not on `--listen` (whose port a public proxy may route to).
    #[arg(long, env = "VIDEOSTORE_ADMIN_ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Proxies whose `X-Forwarded-For` names the client, for per-client limits: addresses and
    /// networks, comma-separated (the front door, the Ingress controller's pods).
    #[arg(long, env = "VIDEOSTORE_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// A connection that has sent nothing for this many milliseconds is pinged (HTTP/2 PING);
    /// one that does not answer within a third of it (10 s by default) is closed, so a peer
    /// that vanished without a word does not hold its streams and places.
    #[arg(long, env = "VIDEOSTORE_HTTP2_KEEPALIVE_MS", default_value_t = 30_000)]
    pub http2_keepalive_ms: u64,
}

impl ServerConfig {
    /// Listens on `listen`, allowing any browser origin: for tests.
    pub fn for_tests(listen: SocketAddr) -> Self {
        Self {
            listen,
            cors_origins: "*".to_owned(),
            tls_cert: None,
            tls_key: None,
            admin_listen: None,
            trusted_proxies: String::new(),
            http2_keepalive_ms: 30_000,
        }
    }

    /// How long a silent connection goes before it is pinged (at least 100 ms).
    pub fn keepalive(&self) -> Duration {
        Duration::from_millis(self.http2_keepalive_ms.max(100))
    }

    /// The trusted proxies, parsed.
    pub fn trusted(&self) -> anyhow::Result<crate::limits::TrustedProxies> {
        crate::limits::TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|error| anyhow::anyhow!("VIDEOSTORE_TRUSTED_PROXIES: {error}"))
    }

    /// The TLS settings of the port, if it speaks TLS.
    pub fn tls(
        &self,
    ) -> anyhow::Result<Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(crate::tls::server_config(cert, key)?)),
            (None, None) => Ok(None),
            _ => anyhow::bail!("TLS needs both VIDEOSTORE_TLS_CERT and VIDEOSTORE_TLS_KEY"),
        }
    }

    /// The allowed origins, parsed.
    pub fn origins(&self) -> anyhow::Result<AllowedOrigins> {
        AllowedOrigins::parse(&self.cors_origins)
    }
}

/// Where a service that keeps data finds it, and the keys its tokens are checked with.
#[derive(Debug, Clone, clap::Args)]
pub struct DataConfig {
    /// Folder for the embedded database and the generated token keys.
    #[arg(long, env = "VIDEOSTORE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// The Ed25519 public keys tokens are verified with (SPKI PEM, one or more blocks: during a
    /// key rotation, the old and the new). Defaults to the key pair made once in the data
    /// folder.
    #[arg(long, env = "VIDEOSTORE_TOKEN_VERIFY_KEYS", hide_env_values = true)]
    pub token_verify_keys: Option<String>,
    /// On PostgreSQL, the connections this process keeps at most. Calls beyond it wait here,
    /// not in the database: keep the sum over all replicas near a few per database core (on
    /// 2 cores, 6 to 8 in all made the most rentals a second; 48 made half as many).
    #[arg(long, env = "VIDEOSTORE_DATABASE_POOL", default_value_t = 8)]
    pub database_pool: usize,
}

impl DataConfig {
    /// The `sqlite://` URL of `file` in the data folder: a service's default database.
    pub fn sqlite_url(&self, file: &str) -> String {
        format!("sqlite://{}", self.data_dir.join(file).display())
    }

    /// The keys tokens are verified with (and `signer`'s own, for the service that signs).
    pub fn token_keys(
        &self,
        signer: Option<&crate::auth::TokenSigner>,
    ) -> anyhow::Result<crate::auth::TokenKeys> {
        crate::keys::verifier(self.token_verify_keys.as_deref(), &self.data_dir, signer)
    }
}

/// The key tokens are signed with: stock's alone.
#[derive(Debug, Clone, clap::Args)]
pub struct SigningConfig {
    /// The Ed25519 private key that signs tokens (PKCS#8 PEM, as `openssl genpkey -algorithm
    /// ed25519` writes it). Defaults to the key pair made once in the data folder.
    #[arg(long, env = "VIDEOSTORE_TOKEN_SIGNING_KEY", hide_env_values = true)]
    pub token_signing_key: Option<String>,
}

impl SigningConfig {
    /// The signer, its key from configuration or the data folder.
    pub fn signer(&self, data: &DataConfig) -> anyhow::Result<crate::auth::TokenSigner> {
        crate::keys::signer(self.token_signing_key.as_deref(), &data.data_dir)
    }
}
