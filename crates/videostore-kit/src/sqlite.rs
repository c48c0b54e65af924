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
//!
//! The writer is a thread that owns the read-write connection. Besides exclusive jobs
//! ([`Writer::run`], which manage their own transaction), it takes small transactional jobs
//! ([`Writer::transact`]) and commits whatever is queued together (group commit): each job runs
//! in a savepoint of one shared transaction and is rolled back alone if it fails; its caller
//! hears back only after the COMMIT, and hears of a failed COMMIT. Under load, one commit and
//! one thread hand-off serve many rentals instead of one each.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
pub use rusqlite;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

pub use crate::db_metrics::SqliteMetrics;

/// Schema migrations, applied in order; migration `n` (1-based) brings `PRAGMA user_version`
/// to `n`.
pub type Migrations = &'static [&'static str];

/// A reader pool and a writer over one database file.
#[derive(Clone)]
pub struct Database {
    /// Read-only connections, for queries.
    pub reader: Pool,
    /// The thread that owns the read-write connection; every write goes through it.
    pub writer: Writer,
    /// Its figures for `/metrics` ([`SqliteMetrics::register`]).
    pub metrics: SqliteMetrics,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

/// The file a `sqlite://path` or `sqlite:path` URL names (query parameters dropped).
pub fn file_from_url(url: &str) -> anyhow::Result<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"));
    let Some(rest) = rest else {
        anyhow::bail!("{url:?} is not a sqlite:// URL");
    };
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
///
/// `synchronous = FULL`: every commit is on disk before it is acknowledged, so a rental or a
/// film edit answered OK survives a power cut or an OS crash, not only a crash of the process
/// (NORMAL, WAL's usual setting, may lose the last commits then). Group commit pays for it: one
/// fsync covers every write of a group (`bench rentals --seconds 15`, three runs each: 6,642 to
/// 7,483 rent/return pairs a second with NORMAL, 7,344 to 8,221 with FULL: no cost measurable).
fn configure(connection: &Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(Duration::from_secs(10))?;
    connection.set_prepared_statement_cache_capacity(64);
    connection.pragma_update(None, "foreign_keys", true)?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    // 32 MiB of page cache (negative: KiB).
    connection.pragma_update(None, "cache_size", -32_768)?;
    Ok(())
}

/// Applies the migrations `connection`'s schema has not seen yet, each in its own transaction.
fn migrate(connection: &mut Connection, migrations: Migrations) -> anyhow::Result<()> {
    let applied: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
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
    /// [`Database::open`] on a blocking thread (it does file I/O and runs migrations), for
    /// async start-up code.
    pub async fn open_blocking_off(url: &str, migrations: Migrations) -> anyhow::Result<Self> {
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || Self::open(&url, migrations))
            .await
            .context("the task opening the database failed")?
    }

    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(url: &str, migrations: Migrations) -> anyhow::Result<Self> {
        let path = file_from_url(url)?;
        // The folder and the database (its journal files take its mode) are the owner's only.
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            crate::private::dir(parent)?;
        }
        crate::private::file(&path)?;
        for journal in ["-wal", "-shm"] {
            let mut name = path.clone().into_os_string();
            name.push(journal);
            crate::private::tighten(Path::new(&name), 0o600)?;
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
        let metrics = SqliteMetrics::default();
        Ok(Self {
            reader: Pool::new(readers, metrics.clone()),
            writer: Writer::start(writer, metrics.clone())?,
            metrics,
        })
    }
}

fn open_reader(path: &Path) -> anyhow::Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} for reading", path.display()))?;
    configure(&connection)?;
    // Readers map the file instead of copying pages through read(2): a scan of 500,000 films
    // then costs no system call per page. The mapping is address space, not memory; pages are
    // the kernel's page cache, shared and reclaimable.
    connection.pragma_update(None, "mmap_size", 1_i64 << 30)?;
    Ok(connection)
}

struct Shared {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    metrics: SqliteMetrics,
}

/// A fixed set of connections; [`Pool::run`] lends one to a job.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    fn new(connections: Vec<Connection>, metrics: SqliteMetrics) -> Self {
        let permits = Arc::new(Semaphore::new(connections.len()));
        metrics.readers.set(connections.len() as i64);
        Self { shared: Arc::new(Shared { idle: Mutex::new(connections), permits, metrics }) }
    }

    /// Runs `job` with a connection of this pool on a blocking thread, waiting for a free
    /// connection first. A job that panics is reported as an error; its connection (with any
    /// open transaction rolled back) goes back to the pool.
    pub async fn run<T, F>(&self, job: F) -> anyhow::Result<T>
    where
        F: FnOnce(&mut Connection) -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = {
            // Counted while it waits, also when its caller gives up waiting.
            let _waiting = Counted::new(&self.shared.metrics.reader_waiters);
            Arc::clone(&self.shared.permits).acquire_owned().await
        };
        let permit = permit.context("the database is closed")?;
        let shared = Arc::clone(&self.shared);
        shared.metrics.readers_in_use.inc();
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
            shared.metrics.readers_in_use.dec();
            drop(permit);
            result
        })
        .await
        .context("a database job was cancelled")?;
        outcome.map_err(|_| anyhow::anyhow!("a database job panicked"))
    }
}

/// One more on `gauge` while it lives.
struct Counted<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> Counted<'a> {
    fn new(gauge: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Most jobs committed together.
const GROUP_LIMIT: usize = 256;

type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A job of a group commit: says whether to keep its changes, and how to answer its caller.
type GroupedJob = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

enum WriteJob {
    /// Runs alone, with the connection to itself.
    Exclusive(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Runs in a savepoint of a shared transaction: says whether it succeeded (keep its
    /// changes) and how to answer once the commit's outcome is known.
    Grouped(GroupedJob),
}

/// The writer thread's handle; cloning shares the thread.
#[derive(Clone)]
pub struct Writer {
    jobs: std::sync::mpsc::Sender<WriteJob>,
    queue: prometheus_client::metrics::gauge::Gauge,
}

impl Writer {
    fn start(connection: Connection, metrics: SqliteMetrics) -> anyhow::Result<Self> {
        let (jobs, queue) = std::sync::mpsc::channel::<WriteJob>();
        let waiting = metrics.writer_queue.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(connection, &queue, &metrics))
            .context("starting the database writer thread")?;
        Ok(Self { jobs, queue: waiting })
    }

    fn submit(&self, job: WriteJob) -> anyhow::Result<()> {
        self.queue.inc();
        self.jobs.send(job).map_err(|_| {
            self.queue.dec();
            anyhow::anyhow!("the database writer has stopped")
        })
    }

    /// Runs `job` alone with the read-write connection (it manages its own transaction).
    pub async fn run<T, F>(&self, job: F) -> anyhow::Result<T>
    where
        F: FnOnce(&mut Connection) -> T + Send + 'static,
        T: Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        self.submit(WriteJob::Exclusive(Box::new(move |connection| {
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(connection)));
            if !connection.is_autocommit() {
                let _ = connection.execute_batch("ROLLBACK");
            }
            let _ = done.send(outcome.map_err(|_| anyhow::anyhow!("a database job panicked")));
        })))?;
        result.await.map_err(|_| anyhow::anyhow!("the database writer has stopped"))?
    }

    /// Runs `job` in a transaction, committed together with whatever other jobs are queued. An
    /// `Err` from the job undoes just its own changes and comes back as `Ok(Err(..))`; the
    /// outer error is for the database failing (the commit included).
    pub async fn transact<T, E, F>(&self, job: F) -> anyhow::Result<Result<T, E>>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel::<anyhow::Result<Result<T, E>>>();
        self.submit(WriteJob::Grouped(Box::new(
            move |connection| match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                job(connection)
            })) {
                Ok(Ok(value)) => (
                    true,
                    Box::new(move |commit: Result<(), String>| {
                        let _ = done.send(
                            commit.map(|()| Ok(value)).map_err(|error| anyhow::anyhow!(error)),
                        );
                    }) as Reply,
                ),
                Ok(Err(error)) => (
                    false,
                    Box::new(move |_| {
                        let _ = done.send(Ok(Err(error)));
                    }),
                ),
                Err(_) => (
                    false,
                    Box::new(move |_| {
                        let _ = done.send(Err(anyhow::anyhow!("a database job panicked")));
                    }),
                ),
            },
        )))?;
        result.await.map_err(|_| anyhow::anyhow!("the database writer has stopped"))?
    }
}

/// The writer thread: exclusive jobs one by one, grouped jobs in shared transactions.
fn write_loop(
    mut connection: Connection,
    queue: &std::sync::mpsc::Receiver<WriteJob>,
    metrics: &SqliteMetrics,
) {
    let mut next = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match queue.recv() {
                Ok(job) => {
                    metrics.writer_queue.dec();
                    job
                }
                Err(_) => return, // Every handle is gone: the database is closed.
            },
        };
        match job {
            WriteJob::Exclusive(job) => job(&mut connection),
            WriteJob::Grouped(first) => {
                let mut group = vec![first];
                while group.len() < GROUP_LIMIT {
                    match queue.try_recv() {
                        Ok(WriteJob::Grouped(job)) => {
                            metrics.writer_queue.dec();
                            group.push(job);
                        }
                        Ok(exclusive) => {
                            metrics.writer_queue.dec();
                            next = Some(exclusive);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                metrics.commit_writes.observe(group.len() as f64);
                let started = std::time::Instant::now();
                commit_group(&connection, group);
                metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
            }
        }
    }
}

fn commit_group(connection: &Connection, group: Vec<GroupedJob>) {
    let mut replies = Vec::with_capacity(group.len());
    let outcome = (|| -> rusqlite::Result<()> {
        connection.execute_batch("BEGIN IMMEDIATE")?;
        for job in group {
            connection.execute_batch("SAVEPOINT job")?;
            let (keep, reply) = job(connection);
            replies.push(reply);
            if keep {
                connection.execute_batch("RELEASE job")?;
            } else {
                connection.execute_batch("ROLLBACK TO job; RELEASE job")?;
            }
        }
        connection.execute_batch("COMMIT")
    })();
    let outcome = outcome.map_err(|error| {
        if !connection.is_autocommit() {
            let _ = connection.execute_batch("ROLLBACK");
        }
        error.to_string()
    });
    for reply in replies {
        reply(outcome.clone());
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
        assert!(file_from_url("x.db").is_err());
        assert!(file_from_url("postgres://db/shop").is_err());
        assert!(file_from_url("sqlite::memory:").is_err());
    }

    #[tokio::test]
    async fn the_database_and_its_journal_are_the_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data/p.db");
        let database = Database::open(&format!("sqlite://{}", file.display()), MIGRATIONS).unwrap();
        database
            .writer
            .run(|c| c.execute("INSERT INTO t (name) VALUES ('x')", []))
            .await
            .unwrap()
            .unwrap();
        let mode = |name: &str| {
            let path = dir.path().join(name);
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode("data"), 0o700);
        assert_eq!(mode("data/p.db"), 0o600);
        assert_eq!(mode("data/p.db-wal"), 0o600);
        assert_eq!(mode("data/p.db-shm"), 0o600);
    }

    #[tokio::test]
    async fn every_commit_is_synced_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let database = Database::open(&url, MIGRATIONS).unwrap();
        let synchronous: i64 = database
            .writer
            .run(|c| c.pragma_query_value(None, "synchronous", |row| row.get(0)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(synchronous, 2, "FULL");
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

        // Grouped jobs: each keeps or loses only its own changes.
        let jobs: Vec<_> = (0..50)
            .map(|n| {
                let writer = database.writer.clone();
                tokio::spawn(async move {
                    writer
                        .transact(move |c| {
                            c.execute(
                                "INSERT INTO t (name, extra) VALUES (?, ?)",
                                (format!("g{n}"), n as i64),
                            )
                            .map_err(|e| e.to_string())?;
                            if n % 5 == 0 { Err(format!("job {n} refused")) } else { Ok(n) }
                        })
                        .await
                })
            })
            .collect();
        let mut kept = 0;
        for (n, job) in jobs.into_iter().enumerate() {
            match job.await.unwrap().unwrap() {
                Ok(value) => {
                    assert_eq!(value, n);
                    kept += 1;
                }
                Err(reason) => assert_eq!(reason, format!("job {n} refused")),
            }
        }
        assert_eq!(kept, 40);
        let names: i64 = database
            .reader
            .run(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(names, 41, "the panicked job's and the refused jobs' inserts were undone");
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
