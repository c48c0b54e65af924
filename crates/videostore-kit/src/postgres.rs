//! PostgreSQL, for a store run as several replicas: a connection pool (tokio-postgres with
//! deadpool) and schema migrations that are safe when several replicas start at once.
//!
//! Every connection runs at READ COMMITTED with `synchronous_commit = on` (so nothing
//! acknowledged is lost if a process crashes); the stores' invariants are written as conflicts on
//! one row or one unique index, never as a read followed by a write.
//!
//! Migrations: `schema_migrations` records each applied version. They are applied in one
//! transaction holding a transaction-scoped advisory lock, so of two replicas starting together
//! one migrates and the other waits, then finds nothing left to do.

use std::time::Duration;

use anyhow::Context;
pub use deadpool_postgres::{GenericClient, Object as Connection, Pool, Transaction};
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
pub use tokio_postgres;
use tokio_postgres::{NoTls, error::SqlState};

use crate::database::redact;

/// Schema migrations, applied in order; migration `n` (1-based) is version `n`.
pub type Migrations = &'static [&'static str];

/// The advisory lock taken while migrating (any number unique to this project will do).
const MIGRATION_LOCK: i64 = 0x7669_6465_6f73_746f; // "videosto"

/// Opens a pool of at most `connections` on `url` (`postgres://user@host:port/database`) and
/// brings the schema up to date.
pub async fn open(url: &str, migrations: Migrations, connections: usize) -> anyhow::Result<Pool> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("the database URL {:?} does not parse", redact(url)))?;
    config
        .options("-c synchronous_commit=on -c default_transaction_isolation=read\\ committed")
        .connect_timeout(Duration::from_secs(5));
    if config.get_application_name().is_none() {
        config.application_name("videostore");
    }
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    let pool = Pool::builder(manager)
        .max_size(connections.max(1))
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .context("building the database pool")?;
    let mut connection =
        pool.get().await.with_context(|| format!("connecting to the database {}", redact(url)))?;
    migrate(&mut connection, migrations).await.context("migrating the database")?;
    Ok(pool)
}

/// Applies the migrations the database has not seen yet.
async fn migrate(connection: &mut Connection, migrations: Migrations) -> anyhow::Result<()> {
    let transaction = connection.transaction().await?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let applied: i32 = transaction
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        applied as usize <= migrations.len(),
        "the database has schema version {applied}, newer than this program knows ({}); use \
         a newer release",
        migrations.len()
    );
    for (index, sql) in migrations.iter().enumerate().skip(applied as usize) {
        let version = index as i32 + 1;
        transaction
            .batch_execute(sql)
            .await
            .with_context(|| format!("applying schema migration {version}"))?;
        transaction
            .execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&version])
            .await?;
    }
    transaction.commit().await?;
    Ok(())
}

/// A connection of its own that listens on a notification channel.
///
/// Notifications are only a doorbell: they are lost while the connection is down, so after
/// [`listen`] returns (listening), a caller reads what it may have missed from the database.
pub struct Listener {
    /// The connection's client, for the heartbeat ([`Listener::alive`]).
    client: tokio_postgres::Client,
    /// Notifications as they arrive; an error or the end when the connection is lost.
    notifications: tokio::sync::mpsc::UnboundedReceiver<
        Result<tokio_postgres::Notification, tokio_postgres::Error>,
    >,
}

impl Listener {
    /// The next notification's payload; `Err` when the connection was lost.
    pub async fn next(&mut self) -> anyhow::Result<String> {
        match self.notifications.recv().await {
            Some(Ok(notification)) => Ok(notification.payload().to_owned()),
            Some(Err(error)) => Err(error).context("the listening connection failed"),
            None => anyhow::bail!("the listening connection closed"),
        }
    }

    /// Whether the connection still answers within `patience` (a silent connection can look
    /// open while no notification will ever arrive on it).
    pub async fn alive(&self, patience: Duration) -> bool {
        matches!(
            tokio::time::timeout(patience, self.client.simple_query("SELECT 1")).await,
            Ok(Ok(_))
        )
    }
}

/// Opens a connection to `url` named `application_name` and listens on `channel`.
pub async fn listen(url: &str, channel: &str, application_name: &str) -> anyhow::Result<Listener> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("the database URL {:?} does not parse", redact(url)))?;
    config
        .application_name(application_name)
        .connect_timeout(Duration::from_secs(5))
        .keepalives_idle(Duration::from_secs(10));
    let (client, mut connection) = config.connect(NoTls).await.context("connecting to listen")?;
    let (sender, notifications) = tokio::sync::mpsc::unbounded_channel();
    // The connection's messages are read here, which also drives its queries.
    tokio::spawn(async move {
        loop {
            let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
            let forwarded = match message {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(notification))) => {
                    sender.send(Ok(notification))
                }
                Some(Ok(_notice)) => continue,
                Some(Err(error)) => {
                    let _ = sender.send(Err(error));
                    return;
                }
                None => return,
            };
            if forwarded.is_err() {
                return; // The listener was dropped.
            }
        }
    });
    // Identifiers cannot be parameters; channel names here are the code's own constants.
    client.batch_execute(&format!("LISTEN {channel}")).await.context("LISTEN")?;
    Ok(Listener { client, notifications })
}

/// Whether `error` is a UNIQUE constraint violation.
pub fn is_unique_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}
