//! Wiring: open the store, seed it, make sure the first staff account exists, bind, serve.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use videostore_kit::{
    auth::Role,
    database::Backend,
    run::Server,
    serve::{self, AllowedOrigins, MAX_MESSAGE_BYTES, MAX_REQUEST_BYTES, StandardServices},
};
use videostore_proto::stock::{
    account_service_server::AccountServiceServer, stock_service_server::StockServiceServer,
};

use crate::{
    clock::Clock,
    config::Config,
    domain,
    events::AvailabilityEvents,
    feed::Feed,
    grpc::{AccountApi, StockApi},
    limits::{Limits, WatchCaps},
    mail::{CONFIRM_WITHIN, Delivery, MailSettings, Mailer},
    passwords::Passwords,
    seed,
    service::{Publisher, Stock, Tokens},
    store::{CustomerCaps, NewAccount, PostgresStore, SqliteStore, StockStore},
};

/// A stock server bound to its port, ready to run.
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
    store: Arc<dyn StockStore>,
}

impl Application {
    /// Opens the database, stocks the sample films, creates the configured staff account, and
    /// binds the listen address (port 0 picks a free port: see [`Application::local_addr`]).
    pub async fn build(
        config: Config,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let origins = config.server.origins()?;
        let tls = config.server.tls()?;
        let signer = config.signing.signer(&config.data)?;
        let keys = config.data.token_keys(Some(&signer))?;
        let url = config.database_url();
        let events = AvailabilityEvents::new();
        let metrics = videostore_kit::metrics::Metrics::new();
        let (store, publisher): (Arc<dyn StockStore>, Publisher) = match Backend::of(&url)? {
            Backend::Sqlite => {
                let store = SqliteStore::open(&url).await?;
                store.register_metrics(&metrics);
                (Arc::new(store), Publisher::SoleWriter)
            }
            Backend::Postgres => {
                let store = PostgresStore::open(&url, config.data.database_pool).await?;
                store.register_metrics(&metrics);
                let feed = Feed::start(store.clone(), events.clone(), shutdown.clone()).await?;
                (Arc::new(store), Publisher::Feed(feed))
            }
        };
        if config.seed {
            let added = store
                .stock_missing(&seed::inventory())
                .await
                .context("stocking the sample films")?;
            if added > 0 {
                tracing::info!(films = added, "stocked the sample films");
            }
        }
        store
            .set_customer_caps(CustomerCaps {
                max_open_rentals: config.max_open_rentals,
                max_purchases_per_day: config.max_purchases_per_day,
            })
            .await
            .context("setting the customer caps")?;
        let passwords = Passwords::new();
        ensure_staff(&config, store.as_ref(), clock.as_ref(), &passwords).await?;
        // Request ids past their time are forgotten now, before serving, and then every while.
        let request_id_ttl = Duration::from_secs(config.request_id_ttl_hours.max(1) * 3600);
        let sweep = Sweep { store: Arc::clone(&store), clock: Arc::clone(&clock), request_id_ttl };
        sweep.once().await;
        tokio::spawn(sweep.every(SWEEP_EVERY, shutdown.clone()));
        let tokens = Tokens {
            signer,
            keys: keys.clone(),
            token_ttl: Duration::from_secs(config.token_ttl_minutes.max(1) * 60),
            refresh_ttl: Duration::from_secs(config.refresh_ttl_hours.max(1) * 3600),
        };
        passwords.register_metrics(&metrics);
        let mailer = Mailer::new(&config.public_url);
        let delivery = Delivery::configured(&MailSettings {
            folder: config.mail_dir.as_deref(),
            smtp_url: config.smtp_url.as_deref(),
            smtp_ca: config.smtp_ca.as_deref(),
            from: config.mail_from.as_deref(),
        })?;
        match delivery {
            Some(delivery) => {
                mailer.deliver(delivery, Arc::clone(&store), shutdown.clone());
            }
            None => tracing::warn!(
                "no SMTP relay (VIDEOSTORE_SMTP_URL) or mail folder (VIDEOSTORE_MAIL_DIR): \
                 registration mail waits in the database's outbox table"
            ),
        }
        let stock = Arc::new(Stock::new(
            Arc::clone(&store),
            events,
            publisher,
            clock,
            tokens,
            passwords,
            mailer,
        ));
        let limits = Arc::new(Limits::new(
            config.sign_ins_per_minute,
            config.writes_per_minute,
            WatchCaps { per_process: config.max_watches, per_client: config.watches_per_client },
            config.server.trusted()?,
        ));
        let heartbeat = Duration::from_millis(config.watch_heartbeat_ms.max(10));
        let standard = StandardServices::new(
            &["videostore.stock.v1.StockService", "videostore.stock.v1.AccountService"],
            config.server.admin_listen,
            metrics,
        )
        .await?;
        let api = StockApi::new(
            Arc::clone(&stock),
            keys.clone(),
            Arc::clone(&limits),
            shutdown.clone(),
            heartbeat,
        );
        api.register_metrics(standard.metrics());
        limits.register_metrics(standard.metrics());
        let routes = standard
            .routes()
            .add_service(
                StockServiceServer::new(api)
                    .max_decoding_message_size(MAX_REQUEST_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(
                AccountServiceServer::new(AccountApi::new(stock, keys, limits))
                    .max_decoding_message_size(MAX_REQUEST_BYTES)
                    .max_encoding_message_size(MAX_REQUEST_BYTES),
            );
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
            store,
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

    /// The store, for checks from tests and tools (e.g. the stock invariant).
    pub fn store(&self) -> Arc<dyn StockStore> {
        Arc::clone(&self.store)
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

/// How often request ids past their time are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(10 * 60);

/// Forgets the request ids older than their time to live (see `StockStore::expire_request_ids`),
/// expired registrations, and mail whose code no longer works (`forget_registrations`).
struct Sweep {
    store: Arc<dyn StockStore>,
    clock: Arc<dyn Clock>,
    request_id_ttl: Duration,
}

impl Sweep {
    async fn once(&self) {
        let Some(before) = self.clock.now().checked_sub(self.request_id_ttl) else { return };
        match self.store.expire_request_ids(before).await {
            Ok(0) => {}
            Ok(forgotten) => tracing::info!(forgotten, "forgot request ids past their time"),
            // Only later than planned: the next sweep tries again.
            Err(error) => tracing::warn!(error = %error, "forgetting old request ids failed"),
        }
        // Registrations and unsent mail live in wall-clock time, as their codes do.
        let now = SystemTime::now();
        let mail_before = now.checked_sub(CONFIRM_WITHIN).unwrap_or(now);
        match self.store.forget_registrations(now, mail_before).await {
            Ok((0, 0)) => {}
            Ok((registrations, mails)) => {
                tracing::info!(registrations, mails, "forgot expired registrations and mail")
            }
            Err(error) => tracing::warn!(error = %error, "forgetting expired registrations failed"),
        }
    }

    async fn every(self, period: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(period);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => self.once().await,
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// Creates the configured staff account if it does not exist. A customer account under that
/// email stops the start, unless promoting it was asked for with its own password.
async fn ensure_staff(
    config: &Config,
    store: &dyn StockStore,
    clock: &dyn Clock,
    passwords: &Passwords,
) -> anyhow::Result<()> {
    let Some(email) = &config.staff_email else {
        return Ok(());
    };
    let email = domain::check_email(email).context("VIDEOSTORE_STAFF_EMAIL")?;
    let existing = store.account_by_email(&email).await?;
    match existing {
        Some((account, _)) if account.role == Role::Staff => Ok(()),
        Some((account, password_hash)) => {
            // Someone registered the staff address through the shop: never made staff unless
            // the operator asks and proves the account is theirs.
            anyhow::ensure!(
                config.staff_promote_existing,
                "VIDEOSTORE_STAFF_EMAIL {email:?} is a customer account (id {}) registered \
                 through the shop; it is not made staff. Choose another staff email, or, if that \
                 account is yours, set VIDEOSTORE_STAFF_PROMOTE_EXISTING=true with its password \
                 as VIDEOSTORE_STAFF_PASSWORD",
                account.id
            );
            let password = config.staff_password.clone().context(
                "VIDEOSTORE_STAFF_PROMOTE_EXISTING needs the account's password as \
                 VIDEOSTORE_STAFF_PASSWORD",
            )?;
            anyhow::ensure!(
                passwords.verify(password, Some(password_hash)).await?,
                "VIDEOSTORE_STAFF_PASSWORD does not sign in to the customer account {email:?}: \
                 it is not made staff"
            );
            store.promote_to_staff(account.id).await?;
            tracing::warn!(%email, account = %account.id, "made the customer account staff, as \
                VIDEOSTORE_STAFF_PROMOTE_EXISTING asked");
            Ok(())
        }
        None => {
            let password = config.staff_password.clone().context(
                "VIDEOSTORE_STAFF_EMAIL is set but VIDEOSTORE_STAFF_PASSWORD is not: \
                 the staff account needs a password to be created",
            )?;
            let password =
                domain::check_password(&password).context("VIDEOSTORE_STAFF_PASSWORD")?;
            let password_hash = passwords.hash(password).await?;
            let created = store
                .create_account(&NewAccount {
                    email: email.clone(),
                    name: "Staff".to_owned(),
                    password_hash,
                    role: Role::Staff,
                    now: clock.now(),
                })
                .await;
            match created {
                Ok(_) => tracing::info!(%email, "created the configured staff account"),
                // Another replica starting at the same moment created it first.
                Err(crate::Error::EmailTaken(_)) => {
                    let made = store.account_by_email(&email).await?;
                    anyhow::ensure!(
                        made.is_some_and(|(account, _)| account.role == Role::Staff),
                        "the configured staff email {email:?} was just registered as a customer"
                    );
                }
                Err(error) => return Err(error.into()),
            }
            Ok(())
        }
    }
}
