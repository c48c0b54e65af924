//! Test harness: the real catalogue, stock and aggregator servers, started in-process on
//! `127.0.0.1:0` over a temporary data folder, with typed clients and helpers.
//!
//! # Layout
//! - [`TestStore`]: the whole store; start, stop and restart single services.
//! - [`grpc_web`]: a minimal gRPC-Web client, as a browser speaks it.
//! - [`front::FrontedStore`]: the store with replicas behind the front door (nginx).
//! - [`authed`]: attach a bearer token to a request.

pub mod front;
pub mod grpc_web;
pub mod otlp;
pub mod smtp;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, transport::Channel};
use videostore_kit::{
    auth::KeyPairPem,
    config::{DataConfig, ServerConfig, SigningConfig},
};
use videostore_proto::{
    aggregator::storefront_service_client::StorefrontServiceClient,
    catalogue::catalogue_service_client::CatalogueServiceClient,
    stock::{
        self as stock_pb, account_service_client::AccountServiceClient,
        stock_service_client::StockServiceClient,
    },
};

pub use stock::clock::ManualClock;

/// The staff account every test store has.
pub const STAFF_EMAIL: &str = "staff@videostore.test";
/// Its password.
pub const STAFF_PASSWORD: &str = "staff password 1";

/// The cap of open rentals per customer in test stores: above what any test rents at once
/// (30, in the concurrent-changes test), below what would take long to reach.
pub const MAX_OPEN_RENTALS: u32 = 40;

/// One running server.
pub struct Service {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Service {
    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts a graceful shutdown without waiting for it (a test then watches its streams end);
    /// [`Service::stop`] still waits for the end.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Graceful shutdown: waits until the server has stopped.
    pub async fn stop(self) {
        self.shutdown.cancel();
        match tokio::time::timeout(Duration::from_secs(10), self.handle).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => panic!("server failed: {error:#}"),
            Ok(Err(join)) => panic!("server task panicked: {join}"),
            Err(_) => panic!("server did not stop within 10 s of shutdown"),
        }
    }
}

/// The whole store on ephemeral ports.
pub struct TestStore {
    /// The data folder (deleted on drop).
    pub dir: tempfile::TempDir,
    /// The token keys: stock signs with the private one, every service verifies with the
    /// public one (configured, as a deployment does).
    pub keys: KeyPairPem,
    /// The stock service's clock.
    pub clock: Arc<ManualClock>,
    /// Catalogue server.
    pub catalogue: Service,
    /// Stock server (`None` while stopped).
    pub stock: Option<Service>,
    /// Aggregator server.
    pub aggregator: Service,
    /// Where stock listened last; a restart reuses it so the aggregator finds it again.
    stock_addr: SocketAddr,
    heartbeat_ms: u64,
    stock_store: Option<Arc<dyn stock::store::StockStore>>,
    /// Stock's database, when it is not the SQLite file in `dir`.
    stock_database: Option<String>,
    /// The catalogue's database, when it is not the SQLite file in `dir`.
    catalogue_database: Option<String>,
    /// The PostgreSQL cluster those databases live in, kept running while the store is.
    _cluster: Option<Arc<testdb::Cluster>>,
}

/// Where catalogue and stock keep their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite files (the default).
    Sqlite,
    /// A database each on a throwaway PostgreSQL cluster.
    Postgres,
}

/// A socket on 127.0.0.1 that takes connections and never answers: a hung service. Until
/// dropped.
pub struct BlackHole {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl BlackHole {
    /// Starts listening.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Self { addr, task }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The folder in the data folder stock delivers mail to.
const MAIL_DIR: &str = "outbox";

/// The production heartbeat; tests that need a quicker one say so.
const HEARTBEAT_MS: u64 = 15_000;

fn data_config(data: &std::path::Path, keys: &KeyPairPem) -> DataConfig {
    DataConfig {
        data_dir: data.to_path_buf(),
        token_verify_keys: Some(keys.public.clone()),
        database_pool: 8,
    }
}

fn stock_config(
    data: &std::path::Path,
    keys: &KeyPairPem,
    listen: SocketAddr,
    heartbeat_ms: u64,
    database_url: Option<String>,
) -> stock::config::Config {
    stock::config::Config {
        server: ServerConfig::for_tests(listen),
        data: data_config(data, keys),
        signing: SigningConfig { token_signing_key: Some(keys.private.clone()) },
        database_url,
        token_ttl_minutes: 60,
        refresh_ttl_hours: 24,
        max_open_rentals: MAX_OPEN_RENTALS,
        max_purchases_per_day: 20,
        sign_ins_per_minute: 0,
        writes_per_minute: 0,
        max_watches: 20_000,
        watches_per_client: 100,
        seed: true,
        staff_email: Some(STAFF_EMAIL.into()),
        staff_password: Some(STAFF_PASSWORD.into()),
        staff_promote_existing: false,
        mail_dir: Some(data.join(MAIL_DIR)),
        smtp_url: None,
        smtp_ca: None,
        mail_from: None,
        public_url: "http://shop.test".into(),
        watch_heartbeat_ms: heartbeat_ms,
        request_id_ttl_hours: 24,
    }
}

async fn spawn_stock(
    data: &std::path::Path,
    keys: &KeyPairPem,
    listen: SocketAddr,
    clock: Arc<ManualClock>,
    heartbeat_ms: u64,
    database_url: Option<String>,
) -> (Service, Arc<dyn stock::store::StockStore>) {
    let shutdown = CancellationToken::new();
    let app = stock::startup::Application::build(
        stock_config(data, keys, listen, heartbeat_ms, database_url),
        clock,
        shutdown.clone(),
    )
    .await
    .expect("stock starts");
    let addr = app.local_addr();
    let store = app.store();
    let handle = tokio::spawn(app.run());
    (Service { addr, shutdown, handle }, store)
}

impl TestStore {
    /// Starts catalogue, stock and aggregator with the sample data and one staff account.
    pub async fn start() -> Self {
        Self::start_with(Duration::from_millis(300)).await
    }

    /// Like [`TestStore::start`], with the stock service's clock starting at `clock_start`
    /// (e.g. days in the past, to make rentals overdue by the wall clock).
    pub async fn start_at(clock_start: SystemTime) -> Self {
        Self::start_full(Duration::from_millis(300), clock_start, HEARTBEAT_MS).await
    }

    /// Like [`TestStore::start`], with idle watch streams sending a heartbeat this often.
    pub async fn start_with_heartbeat(every: Duration) -> Self {
        Self::start_full(Duration::from_millis(300), SystemTime::now(), every.as_millis() as u64)
            .await
    }

    /// Like [`TestStore::start`], with the aggregator's stock timeout set.
    pub async fn start_with(stock_timeout: Duration) -> Self {
        Self::start_full(stock_timeout, SystemTime::now(), HEARTBEAT_MS).await
    }

    /// Like [`TestStore::start`], with catalogue's and stock's data where `backend` says.
    pub async fn start_on(backend: Backend) -> Self {
        let databases = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let cluster = testdb::Cluster::shared().expect("a PostgreSQL cluster starts");
                let catalogue = cluster.database().expect("a database is created");
                let stock = cluster.database().expect("a database is created");
                Some((cluster, catalogue, stock))
            }
        };
        Self::start_full_on(Duration::from_millis(300), SystemTime::now(), HEARTBEAT_MS, databases)
            .await
    }

    async fn start_full(
        stock_timeout: Duration,
        clock_start: SystemTime,
        heartbeat_ms: u64,
    ) -> Self {
        Self::start_full_on(stock_timeout, clock_start, heartbeat_ms, None).await
    }

    async fn start_full_on(
        stock_timeout: Duration,
        clock_start: SystemTime,
        heartbeat_ms: u64,
        databases: Option<(Arc<testdb::Cluster>, String, String)>,
    ) -> Self {
        let (cluster, catalogue_database, stock_database) = match databases {
            Some((cluster, catalogue, stock)) => (Some(cluster), Some(catalogue), Some(stock)),
            None => (None, None, None),
        };
        // Logs only on request (TEST_LOG=1), so a failing test's output stays readable.
        if std::env::var_os("TEST_LOG").is_some() {
            videostore_kit::telemetry::init("tests");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = KeyPairPem::generate().expect("a token key pair");
        let catalogue =
            Self::spawn_catalogue(dir.path().to_path_buf(), &keys, catalogue_database.clone())
                .await;
        let clock = Arc::new(ManualClock::new(clock_start));
        let (stock, stock_store) = spawn_stock(
            dir.path(),
            &keys,
            "127.0.0.1:0".parse().unwrap(),
            Arc::clone(&clock),
            heartbeat_ms,
            stock_database.clone(),
        )
        .await;
        let aggregator =
            Self::spawn_aggregator(&catalogue.url(), &stock.url(), stock_timeout).await;
        Self {
            stock_addr: stock.addr,
            heartbeat_ms,
            dir,
            keys,
            clock,
            catalogue,
            stock: Some(stock),
            aggregator,
            stock_store: Some(stock_store),
            stock_database,
            catalogue_database,
            _cluster: cluster,
        }
    }

    async fn spawn_catalogue(
        data: PathBuf,
        keys: &KeyPairPem,
        database_url: Option<String>,
    ) -> Service {
        let shutdown = CancellationToken::new();
        let config = catalogue::config::Config {
            server: ServerConfig::for_tests("127.0.0.1:0".parse().unwrap()),
            data: data_config(&data, keys),
            database_url,
            seed: true,
            max_streams: 10_000,
            // One test opens 1,024 streams from here (it::limits).
            streams_per_client: 2_000,
        };
        let app = catalogue::startup::Application::build(config, shutdown.clone())
            .await
            .expect("catalogue starts");
        let addr = app.local_addr();
        Service { addr, shutdown, handle: tokio::spawn(app.run()) }
    }

    /// Starts an aggregator against any catalogue and stock addresses.
    pub async fn spawn_aggregator(
        catalogue: &str,
        stock: &str,
        stock_timeout: Duration,
    ) -> Service {
        Self::spawn_aggregator_with(Self::aggregator_config(catalogue, stock, stock_timeout))
            .await
            .0
    }

    /// Starts an aggregator with `config`; also returns its admin address, if it has one.
    pub async fn spawn_aggregator_with(
        config: aggregator::config::Config,
    ) -> (Service, Option<SocketAddr>) {
        let shutdown = CancellationToken::new();
        let app = aggregator::startup::Application::build(config, shutdown.clone())
            .await
            .expect("aggregator starts");
        let (addr, admin) = (app.local_addr(), app.admin_addr());
        (Service { addr, shutdown, handle: tokio::spawn(app.run()) }, admin)
    }

    /// The settings of a catalogue of a test's own, on `data_dir`: SQLite, not seeded, the key
    /// pair it makes there, any origin, the shipped stream caps. For a test to change, then
    /// start with `catalogue::startup::Application::build`.
    pub fn catalogue_config(data_dir: &std::path::Path) -> catalogue::config::Config {
        catalogue::config::Config {
            server: ServerConfig::for_tests("127.0.0.1:0".parse().unwrap()),
            data: DataConfig {
                data_dir: data_dir.to_path_buf(),
                token_verify_keys: None,
                database_pool: 8,
            },
            database_url: None,
            seed: false,
            max_streams: 10_000,
            streams_per_client: 100,
        }
    }

    /// The settings [`TestStore::spawn_aggregator`] uses, for a test to change before
    /// [`TestStore::spawn_aggregator_with`].
    pub fn aggregator_config(
        catalogue: &str,
        stock: &str,
        stock_timeout: Duration,
    ) -> aggregator::config::Config {
        aggregator::config::Config {
            server: ServerConfig::for_tests("127.0.0.1:0".parse().unwrap()),
            catalogue_addr: catalogue.to_owned(),
            stock_addr: stock.to_owned(),
            stock_timeout_ms: stock_timeout.as_millis() as u64,
            default_deadline_ms: 2000,
            web_dir: web_dir(),
            tls_ca: None,
            public_catalogue_url: None,
            public_stock_url: None,
        }
    }

    /// Stops the stock service (gracefully).
    pub async fn stop_stock(&mut self) {
        if let Some(stock) = self.stock.take() {
            stock.stop().await;
        }
        self.stock_store = None;
    }

    /// Starts the stock service again on the same port and data folder.
    pub async fn start_stock(&mut self) {
        assert!(self.stock.is_none(), "stock is already running");
        let (stock, store) = spawn_stock(
            self.dir.path(),
            &self.keys,
            self.stock_addr,
            Arc::clone(&self.clock),
            self.heartbeat_ms,
            self.stock_database.clone(),
        )
        .await;
        self.stock = Some(stock);
        self.stock_store = Some(store);
    }

    /// Starts another stock server on the same database (a replica: stock's database must be
    /// PostgreSQL), on a port of its own.
    pub async fn spawn_stock_replica(&self) -> Service {
        assert!(self.stock_database.is_some(), "replicas share a PostgreSQL database");
        let (replica, _) = spawn_stock(
            self.dir.path(),
            &self.keys,
            "127.0.0.1:0".parse().unwrap(),
            Arc::clone(&self.clock),
            self.heartbeat_ms,
            self.stock_database.clone(),
        )
        .await;
        replica
    }

    /// Starts another catalogue server on the same database (a replica: the catalogue's
    /// database must be PostgreSQL), on a port of its own.
    pub async fn spawn_catalogue_replica(&self) -> Service {
        assert!(self.catalogue_database.is_some(), "replicas share a PostgreSQL database");
        Self::spawn_catalogue(
            self.dir.path().to_path_buf(),
            &self.keys,
            self.catalogue_database.clone(),
        )
        .await
    }

    /// The name of the PostgreSQL database the catalogue runs on, if it does.
    pub fn catalogue_postgres_database(&self) -> Option<String> {
        self.catalogue_database.as_deref()?.rsplit('/').next().map(str::to_owned)
    }

    /// The PostgreSQL cluster and database stock runs on, if it does.
    pub fn stock_postgres(&self) -> Option<(&testdb::Cluster, &str)> {
        let database = self.stock_database.as_deref()?;
        let name = database.rsplit('/').next()?;
        Some((self._cluster.as_deref()?, name))
    }

    /// The running stock server.
    pub fn stock(&self) -> &Service {
        self.stock.as_ref().expect("stock is running")
    }

    /// Direct access to stock's storage, for invariant checks.
    pub fn stock_store(&self) -> Arc<dyn stock::store::StockStore> {
        Arc::clone(self.stock_store.as_ref().expect("stock is running"))
    }

    /// A channel to an address.
    pub async fn channel(addr: SocketAddr) -> Channel {
        Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.expect("connects")
    }

    /// A catalogue client.
    pub async fn catalogue_client(&self) -> CatalogueServiceClient<Channel> {
        CatalogueServiceClient::new(Self::channel(self.catalogue.addr).await)
    }

    /// A stock client.
    pub async fn stock_client(&self) -> StockServiceClient<Channel> {
        StockServiceClient::new(Self::channel(self.stock().addr).await)
    }

    /// An account client.
    pub async fn account_client(&self) -> AccountServiceClient<Channel> {
        AccountServiceClient::new(Self::channel(self.stock().addr).await)
    }

    /// An aggregator client.
    pub async fn storefront_client(&self) -> StorefrontServiceClient<Channel> {
        StorefrontServiceClient::new(Self::channel(self.aggregator.addr).await)
    }

    /// Signs in and returns the token.
    pub async fn sign_in(&self, email: &str, password: &str) -> String {
        self.account_client()
            .await
            .sign_in(stock_pb::SignInRequest { email: email.into(), password: password.into() })
            .await
            .expect("sign in")
            .into_inner()
            .token
    }

    /// A staff token.
    pub async fn staff_token(&self) -> String {
        self.sign_in(STAFF_EMAIL, STAFF_PASSWORD).await
    }

    /// The settings the store's stock server runs with (on a free port), for a test to change
    /// and start a stock server of its own with.
    pub fn stock_config(&self) -> stock::config::Config {
        stock_config(
            self.dir.path(),
            &self.keys,
            "127.0.0.1:0".parse().unwrap(),
            self.heartbeat_ms,
            self.stock_database.clone(),
        )
    }

    /// The mail stock delivered (confirmation codes among it).
    pub fn mailbox(&self) -> stock::mail::Mailbox {
        stock::mail::Mailbox::new(self.dir.path().join(MAIL_DIR))
    }

    /// Registers an account as a customer does: Register, the code from the mail, ConfirmEmail.
    /// The signed-in answer.
    pub async fn register(
        &self,
        email: &str,
        name: &str,
        password: &str,
    ) -> stock_pb::SignInResponse {
        let mut accounts = self.account_client().await;
        let request = stock_pb::RegisterRequest {
            email: email.into(),
            name: name.into(),
            password: password.into(),
        };
        accounts.register(request).await.expect("register");
        let code = self
            .mailbox()
            .confirmation_code(email, Duration::from_secs(10))
            .await
            .expect("a confirmation mail within 10 s");
        accounts
            .confirm_email(stock_pb::ConfirmEmailRequest { code, password: password.into() })
            .await
            .expect("confirm the email")
            .into_inner()
    }

    /// Registers a new customer (unique email from `name`) and returns its id and token.
    pub async fn customer(&self, name: &str) -> (i64, String) {
        let email =
            format!("{}-{}@example.com", name.to_lowercase(), uuid::Uuid::new_v4().simple());
        let signed = self.register(&email, name, "customer password").await;
        (signed.account.expect("the signed-in account").id, signed.token)
    }

    /// Starts catalogue, stock and aggregator on these databases of `cluster` (URLs).
    pub async fn start_on_databases(
        cluster: Arc<testdb::Cluster>,
        catalogue: String,
        stock: String,
    ) -> Self {
        let databases = Some((cluster, catalogue, stock));
        Self::start_full_on(Duration::from_millis(300), SystemTime::now(), HEARTBEAT_MS, databases)
            .await
    }

    /// Stops every service and hands over the data folder (with the SQLite databases).
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        self.stop_stock().await;
        self.aggregator.stop().await;
        self.catalogue.stop().await;
        self.dir
    }

    /// Stops every service.
    pub async fn stop(mut self) {
        self.stop_stock().await;
        self.aggregator.stop().await;
        self.catalogue.stop().await;
    }
}

/// The built browser app: `VIDEOSTORE_WEB_DIR`, else `dist/` at the workspace root.
pub fn web_dir() -> PathBuf {
    std::env::var_os("VIDEOSTORE_WEB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist"))
}

/// `message` with `authorization: Bearer <token>`.
pub fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("ascii token"));
    request
}
