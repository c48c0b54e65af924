//! A database's figures on `/metrics`: how busy its connections are and, on SQLite, how writes
//! are committed.
//!
//! Both backends:
//! - `videostore_db_connections`: connections the process may hold (SQLite: its readers;
//!   PostgreSQL: the pool's size, `VIDEOSTORE_DATABASE_POOL`);
//! - `videostore_db_connections_in_use`;
//! - `videostore_db_connection_waiters`: calls waiting for a connection (all in use).
//!
//! SQLite, whose one writer thread commits what is queued together (group commit):
//! - `videostore_db_writer_queue`: writes waiting for the writer;
//! - `videostore_db_commit_duration_seconds`: one group, from BEGIN to the synced COMMIT;
//! - `videostore_db_commit_writes`: writes per commit (under load, one commit serves many).
//!
//! PostgreSQL commits each write on its own connection; its time is in the call's duration and
//! its store span.

use prometheus_client::metrics::{gauge::Gauge, histogram::Histogram};
#[cfg(feature = "postgres")]
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::gauge::ConstGauge,
};

use crate::metrics::Metrics;

/// Upper bounds of the commit duration buckets, in seconds: a synced commit takes a
/// millisecond or two on an SSD.
const COMMIT_SECONDS: [f64; 12] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// Upper bounds of the writes-per-commit buckets (a group holds at most 256).
const COMMIT_WRITES: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// An embedded (SQLite) database's figures. Clones share them.
#[derive(Debug, Clone)]
pub struct SqliteMetrics {
    pub(crate) readers: Gauge,
    pub(crate) readers_in_use: Gauge,
    pub(crate) reader_waiters: Gauge,
    pub(crate) writer_queue: Gauge,
    pub(crate) commit_seconds: Histogram,
    pub(crate) commit_writes: Histogram,
}

impl Default for SqliteMetrics {
    fn default() -> Self {
        Self {
            readers: Gauge::default(),
            readers_in_use: Gauge::default(),
            reader_waiters: Gauge::default(),
            writer_queue: Gauge::default(),
            commit_seconds: Histogram::new(COMMIT_SECONDS),
            commit_writes: Histogram::new(COMMIT_WRITES),
        }
    }
}

impl SqliteMetrics {
    /// Shows them on `/metrics`.
    pub fn register(&self, metrics: &Metrics) {
        metrics.register(
            "videostore_db_connections",
            "Database connections the process may hold",
            self.readers.clone(),
        );
        metrics.register(
            "videostore_db_connections_in_use",
            "Database connections lent to a call",
            self.readers_in_use.clone(),
        );
        metrics.register(
            "videostore_db_connection_waiters",
            "Calls waiting for a database connection",
            self.reader_waiters.clone(),
        );
        metrics.register(
            "videostore_db_writer_queue",
            "Writes waiting for the database writer",
            self.writer_queue.clone(),
        );
        metrics.register_with_unit(
            "videostore_db_commit_duration",
            "Group commits, from BEGIN to the synced COMMIT",
            prometheus_client::registry::Unit::Seconds,
            self.commit_seconds.clone(),
        );
        metrics.register(
            "videostore_db_commit_writes",
            "Writes committed together",
            self.commit_writes.clone(),
        );
    }
}

/// Shows a PostgreSQL pool's connections on `/metrics`, read at each scrape.
#[cfg(feature = "postgres")]
pub fn register_pool(pool: &deadpool_postgres::Pool, metrics: &Metrics) {
    metrics.register_collector(Box::new(PoolFigures(pool.clone())));
}

#[cfg(feature = "postgres")]
struct PoolFigures(deadpool_postgres::Pool);

#[cfg(feature = "postgres")]
impl std::fmt::Debug for PoolFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolFigures").finish_non_exhaustive()
    }
}

#[cfg(feature = "postgres")]
impl Collector for PoolFigures {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let status = self.0.status();
        let in_use = status.size.saturating_sub(status.available);
        for (name, help, value) in [
            (
                "videostore_db_connections",
                "Database connections the process may hold",
                status.max_size,
            ),
            ("videostore_db_connections_in_use", "Database connections lent to a call", in_use),
            (
                "videostore_db_connection_waiters",
                "Calls waiting for a database connection",
                status.waiting,
            ),
        ] {
            let gauge = ConstGauge::new(value as i64);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}
