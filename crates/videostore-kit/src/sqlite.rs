//! The embedded SQLite database both stateful services use: one writer connection, a few reader
//! connections, each query run on tokio's blocking threads.
//!
//! SQLite allows one writer at a time, so writes queue for the single writer connection instead
//! of failing with `SQLITE_BUSY`; WAL mode lets readers run while it commits. A job gets a
//! connection for its whole duration and runs synchronously (rusqlite), so a statement that
//! yields 500,000 rows costs 500,000 `sqlite3_step` calls and nothing more — no hop between
//! threads per row.
//!
//! Jobs are cancellation-safe: the blocking side owns the connection and puts it back when the
//! job ends, even if the caller has stopped waiting or the job panicked.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
pub use rusqlite;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::Semaphore;

/// Schema migrations, applied in order; migration `n` (1-based) brings `PRAGMA user_version`
/// to `n`.
pub type Migrations = &'static [&'static str];

/// A reader pool and a writer over one database file.
#[derive(Clone)]
pub struct Database {
    /// Read-only connections, for queries.
    pub reader: Pool,
    /// The single read-write connection; every write goes through it.
    pub writer: Pool,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

/// The file a `sqlite://path`, `sqlite:path` or plain path names (query parameters dropped).
pub fn file_from_url(url: &str) -> anyhow::Result<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    let path = rest.split('?').next().unwrap_or_default();
    anyhow::ensure!(
        !path.is_empty() && !path.starts_with(":memory:"),
        "the database URL {url:?} must name a file (an in-memory database cannot be shared by \
         the reader and writer connections)"
    );
    Ok(PathBuf::from(path))
}

/// Settings every connection gets. The page cache is a ceiling, filled only as pages are
/// used: a small database costs little memory, a big one (500,000 films) stays fast.
fn configure(connection: &Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(Duration::from_secs(10))?;
    connection.set_prepared_statement_cache_capacity(64);
    connection.pragma_update(None, "foreign_keys", true)?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    // 32 MiB of page cache (negative: KiB).
    connection.pragma_update(None, "cache_size", -32_768)?;
    Ok(())
}

/// Applies the migrations `connection`'s schema has not seen yet, each in its own transaction.
fn migrate(connection: &mut Connection, migrations: Migrations) -> anyhow::Result<()> {
    let mut applied: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if applied == 0 {
        // Databases made by the first release, which used sqlx's migration table.
        let legacy: Option<i64> = connection
            .query_row("SELECT MAX(version) FROM _sqlx_migrations WHERE success", [], |row| {
                row.get(0)
            })
            .optional()
            .unwrap_or(None)
            .flatten();
        if let Some(version) = legacy {
            applied = version;
            connection.pragma_update(None, "user_version", applied)?;
        }
    }
    anyhow::ensure!(
        applied <= migrations.len() as i64,
        "the database has schema version {applied}, newer than this program knows ({}); \
         use a newer release",
        migrations.len()
    );
    for (index, sql) in migrations.iter().enumerate().skip(applied as usize) {
        let version = index as i64 + 1;
        let transaction = connection.transaction()?;
        transaction
            .execute_batch(sql)
            .with_context(|| format!("applying schema migration {version}"))?;
        transaction.pragma_update(None, "user_version", version)?;
        transaction.commit()?;
    }
    Ok(())
}

impl Database {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(url: &str, migrations: Migrations) -> anyhow::Result<Self> {
        let path = file_from_url(url)?;
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
        }
        let mut writer = Connection::open(&path)
            .with_context(|| format!("opening the database {}", path.display()))?;
        let mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        anyhow::ensure!(
            mode.eq_ignore_ascii_case("wal"),
            "{} does not support WAL mode (got {mode})",
            path.display()
        );
        configure(&writer)?;
        migrate(&mut writer, migrations)
            .with_context(|| format!("migrating the database {}", path.display()))?;
        let count = std::thread::available_parallelism().map_or(4, |n| n.get() * 2).max(4);
        let readers = (0..count).map(|_| open_reader(&path)).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { reader: Pool::new(readers), writer: Pool::new(vec![writer]) })
    }
}

fn open_reader(path: &Path) -> anyhow::Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} for reading", path.display()))?;
    configure(&connection)?;
    Ok(connection)
}

struct Shared {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

/// A fixed set of connections; [`Pool::run`] lends one to a job.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    fn new(connections: Vec<Connection>) -> Self {
        let permits = Arc::new(Semaphore::new(connections.len()));
        Self { shared: Arc::new(Shared { idle: Mutex::new(connections), permits }) }
    }

    /// Runs `job` with a connection of this pool on a blocking thread, waiting for a free
    /// connection first. A job that panics is reported as an error; its connection (with any
    /// open transaction rolled back) goes back to the pool.
    pub async fn run<T, F>(&self, job: F) -> anyhow::Result<T>
    where
        F: FnOnce(&mut Connection) -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = Arc::clone(&self.shared.permits)
            .acquire_owned()
            .await
            .context("the database is closed")?;
        let shared = Arc::clone(&self.shared);
        let outcome = tokio::task::spawn_blocking(move || {
            let mut connection = shared
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop()
                .expect("a permit stands for an idle connection");
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut connection)));
            if !connection.is_autocommit() {
                // Only a panic mid-transaction leaves one open; never lend it out half done.
                let _ = connection.execute_batch("ROLLBACK");
            }
            shared.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(connection);
            drop(permit);
            result
        })
        .await
        .context("a database job was cancelled")?;
        outcome.map_err(|_| anyhow::anyhow!("a database job panicked"))
    }
}

/// Whether `error` is a UNIQUE constraint violation.
pub fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATIONS: Migrations = &[
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE);",
        "ALTER TABLE t ADD COLUMN extra INTEGER;",
    ];

    #[test]
    fn urls_name_files() {
        assert_eq!(file_from_url("sqlite://data/x.db").unwrap(), PathBuf::from("data/x.db"));
        assert_eq!(
            file_from_url("sqlite:///tmp/x.db?mode=rwc").unwrap(),
            PathBuf::from("/tmp/x.db")
        );
        assert_eq!(file_from_url("x.db").unwrap(), PathBuf::from("x.db"));
        assert!(file_from_url("sqlite::memory:").is_err());
    }

    #[tokio::test]
    async fn migrates_once_and_survives_a_panicking_job() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("a/b.db").display());
        let database = Database::open(&url, MIGRATIONS).unwrap();
        database
            .writer
            .run(|c| c.execute("INSERT INTO t (name, extra) VALUES ('x', 1)", []))
            .await
            .unwrap()
            .unwrap();
        let duplicate = database
            .writer
            .run(|c| c.execute("INSERT INTO t (name) VALUES ('x')", []))
            .await
            .unwrap()
            .unwrap_err();
        assert!(is_unique_violation(&duplicate));
        let panicked = database
            .writer
            .run(|c| {
                let transaction = c.transaction().unwrap();
                transaction.execute("INSERT INTO t (name) VALUES ('y')", []).unwrap();
                panic!("boom");
            })
            .await;
        assert!(panicked.is_err());
        let names: i64 = database
            .reader
            .run(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(names, 1, "the panicked job's insert was rolled back");
        drop(database);
        let again = Database::open(&url, MIGRATIONS).unwrap();
        let version: i64 = again
            .reader
            .run(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(version, 2);
    }
}
