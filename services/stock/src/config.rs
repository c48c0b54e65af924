//! Configuration: every setting from a flag or an environment variable, with laptop defaults.

use videostore_kit::config::{DataConfig, ServerConfig, SigningConfig};

/// The stock server's settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "stock",
    about = "The video store's stock, rentals and accounts (gRPC + gRPC-Web)",
    mut_arg("listen", |arg| arg.env("STOCK_LISTEN_ADDR").default_value("127.0.0.1:50052"))
)]
pub struct Config {
    /// Where it listens, and for which browsers.
    #[command(flatten)]
    pub server: ServerConfig,
    /// Its data folder and the keys tokens are verified with.
    #[command(flatten)]
    pub data: DataConfig,
    /// The key tokens are signed with (stock's alone).
    #[command(flatten)]
    pub signing: SigningConfig,
    /// Database URL; defaults to `sqlite://<data dir>/stock.db`.
    #[arg(long, env = "STOCK_DATABASE_URL")]
    pub database_url: Option<String>,
    /// How long an access token stays valid, in minutes: how long a sign-out or a role change
    /// takes at most to reach every service. Clients refresh it before then.
    #[arg(long, env = "VIDEOSTORE_TOKEN_TTL_MINUTES", default_value_t = 15)]
    pub token_ttl_minutes: u64,
    /// How long a refresh token stays valid, in hours (a session without a sign-in).
    #[arg(long, env = "VIDEOSTORE_REFRESH_TTL_HOURS", default_value_t = 30 * 24)]
    pub refresh_ttl_hours: u64,
    /// Sign-ins and registrations one client (address) may make a minute; 0 for no limit.
    #[arg(long, env = "STOCK_SIGN_INS_PER_MINUTE", default_value_t = 30)]
    pub sign_ins_per_minute: u32,
    /// Rentals, returns, purchases and stock changes one account may make a minute; 0 for no
    /// limit.
    #[arg(long, env = "STOCK_WRITES_PER_MINUTE", default_value_t = 120)]
    pub writes_per_minute: u32,
    /// Live streams (WatchAvailability) one process holds at most.
    #[arg(long, env = "STOCK_MAX_WATCHES", default_value_t = 20_000)]
    pub max_watches: usize,
    /// Live streams one client address may hold at once; 0 for no limit.
    #[arg(long, env = "STOCK_WATCHES_PER_CLIENT", default_value_t = 100)]
    pub watches_per_client: u32,
    /// Rentals one customer may have open at once.
    #[arg(long, env = "STOCK_MAX_OPEN_RENTALS", default_value_t = 10)]
    pub max_open_rentals: u32,
    /// Films one customer may buy in any 24 hours.
    #[arg(long, env = "STOCK_MAX_PURCHASES_PER_DAY", default_value_t = 20)]
    pub max_purchases_per_day: u32,
    /// How long a rental's or purchase's request id is remembered, in hours: a retry within it
    /// returns the first result; after it, the same id makes a new one.
    #[arg(long, env = "STOCK_REQUEST_ID_TTL_HOURS", default_value_t = 24)]
    pub request_id_ttl_hours: u64,
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
    /// A customer account already registered under the staff email is never made staff
    /// silently (anyone could register the address first): the server refuses to start. With
    /// this set it is made staff, if the staff password signs in to it.
    #[arg(
        long,
        env = "VIDEOSTORE_STAFF_PROMOTE_EXISTING",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub staff_promote_existing: bool,
    /// Folder mail (registration codes) is delivered to, one `.eml` file each (a development
    /// machine's inbox). Without it or an SMTP relay, mail waits in the database's `outbox`.
    #[arg(long, env = "VIDEOSTORE_MAIL_DIR")]
    pub mail_dir: Option<std::path::PathBuf>,
    /// SMTP relay mail is sent through: `smtp://host[:port]` (plain, no password),
    /// `smtp://[user:password@]host[:port]?tls=required` (STARTTLS) or `smtps://…` (TLS).
    #[arg(long, env = "VIDEOSTORE_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// CA certificates a TLS relay's certificate is checked against: PEM text, or a file of
    /// it; without it, the system's.
    #[arg(long, env = "VIDEOSTORE_SMTP_CA")]
    pub smtp_ca: Option<String>,
    /// The shop's sender address (`Video Store <no-reply@shop.example>`); needed with a relay.
    #[arg(long, env = "VIDEOSTORE_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// Where customers open the shop's web app: links in mail start with it.
    #[arg(long, env = "VIDEOSTORE_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub public_url: String,
}

impl Config {
    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| self.data.sqlite_url("stock.db"))
    }
}
