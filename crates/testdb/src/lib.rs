//! PostgreSQL clusters the project starts itself, so that nothing assumes a server is running:
//! throwaway ones for tests ([`Cluster`]), and the one `cargo xtask up --postgres` keeps in the
//! data folder ([`LocalCluster`]).
//!
//! [`Cluster::shared`] starts one cluster per test process (initdb into a temporary folder, as
//! the `postgres` user when the tests run as root, since initdb refuses root), listening on a
//! free port on 127.0.0.1 only with trust authentication, and stops it when the last test holding
//! it lets go. [`Cluster::database`] gives each test a database of its own.
//!
//! The binaries are Debian's (`/usr/lib/postgresql/<version>/bin`, which `cargo xtask test`
//! installs), or those in `VIDEOSTORE_PG_BIN`.

use std::{
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicUsize, Ordering},
    },
};

use anyhow::Context;

/// A running cluster; stopped when dropped.
#[derive(Debug)]
pub struct Cluster {
    /// Its data, socket and log (deleted after the stop).
    dir: tempfile::TempDir,
    /// Where it listens, on 127.0.0.1.
    port: u16,
    /// The PostgreSQL binaries.
    bin: PathBuf,
    /// Databases handed out so far, for unique names.
    databases: AtomicUsize,
}

/// How a cluster writes: fast (fsync off, for tests that never crash it) or durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync = off`: a crash of the machine could lose data, a crash of a process cannot.
    Fast,
    /// Every commit flushed: for tests that kill PostgreSQL itself.
    Durable,
}

impl Cluster {
    /// The cluster this test process shares, started if no test holds it now.
    pub fn shared() -> anyhow::Result<Arc<Self>> {
        static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(cluster) = shared.upgrade() {
            return Ok(cluster);
        }
        let cluster = Arc::new(Self::start(Durability::Fast)?);
        *shared = Arc::downgrade(&cluster);
        Ok(cluster)
    }

    /// A cluster of its own (for a test that stops or kills it).
    pub fn start(durability: Durability) -> anyhow::Result<Self> {
        let bin = binaries()?;
        let dir = tempfile::Builder::new().prefix("videostore-pg-").tempdir()?;
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown").args(["-R", "postgres:"]).arg(dir.path()), "chown")?;
        }
        let data = dir.path().join("data");
        run(
            postgres_command(&bin.join("initdb"), as_postgres)
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
                .args(["--locale=C"]),
            "initdb",
        )?;
        let fsync = if durability == Durability::Durable { "on" } else { "off" };
        let mut last_error = None;
        // A free port may be taken between finding it and binding it: try a few.
        for _ in 0..5 {
            let port = free_port()?;
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync={fsync} \
                 -c synchronous_commit=on -c full_page_writes={fsync} -c max_connections=300",
                dir.path().display()
            );
            let started = run(
                postgres_command(&bin.join("pg_ctl"), as_postgres)
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(dir.path().join("log"))
                    .args(["-w", "-t", "30", "-o", &options, "start"]),
                "pg_ctl start",
            );
            match started {
                Ok(()) => {
                    guard(&bin, &data, dir.path(), as_postgres);
                    return Ok(Self { dir, port, bin, databases: AtomicUsize::new(0) });
                }
                Err(error) => last_error = Some(error),
            }
        }
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        Err(last_error.expect("tried at least once")).with_context(|| format!("server log:\n{log}"))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> anyhow::Result<String> {
        let name = format!("test_{}", self.databases.fetch_add(1, Ordering::Relaxed));
        run(
            Command::new(self.bin.join("createdb"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
                .arg(&name),
            "createdb",
        )?;
        Ok(self.url(&name))
    }

    /// Runs `sql` on `database` with psql, returning what it printed (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
            .args(["-d", database, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .context("running psql")?;
        anyhow::ensure!(
            output.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Stops the server at once, like a crash (`pg_ctl stop -m immediate`).
    pub fn crash(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["-m", "immediate", "stop"])
    }

    /// Starts it again after [`Cluster::crash`], on the same port.
    pub fn restart(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let log = log.to_str().context("a UTF-8 temporary path")?;
        self.pg_ctl(&["-l", log, "-w", "-t", "30", "-o", &options, "start"])
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        run(
            postgres_command(&self.bin.join("pg_ctl"), is_root())
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(args),
            "pg_ctl",
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}

/// Stops the cluster in `data` (and removes `dir`) once this process has ended, however it
/// ended: a test process killed by a timeout runs no destructor, and must not leave a server
/// running. A normal end stops it first, in [`Cluster`]'s drop.
fn guard(bin: &Path, data: &Path, dir: &Path, as_postgres: bool) {
    let stop = format!(
        "{}{} -D '{}' -m immediate stop",
        if as_postgres { "runuser -u postgres -- " } else { "" },
        bin.join("pg_ctl").display(),
        data.display()
    );
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display()
    );
    // A group of its own, so that a signal to the test's process group (`timeout`, a CI's
    // kill) does not end the guard with it.
    let spawned = Command::new("sh")
        .process_group(0)
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(error) = spawned {
        eprintln!("testdb: no guard for the test cluster ({error}); it is stopped on drop only");
    }
}

/// A cluster kept in a folder of its own (created on first use, reused after), listening on
/// 127.0.0.1 only, durable; stopped (fast: in-flight transactions rolled back) when dropped.
#[derive(Debug)]
pub struct LocalCluster {
    data: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl LocalCluster {
    /// Starts the cluster in `dir` on `port`, creating it first if `dir` holds none.
    pub fn start(dir: &Path, port: u16) -> anyhow::Result<Self> {
        let bin = binaries()?;
        let as_postgres = is_root();
        let data = dir.join("data");
        if !data.join("PG_VERSION").is_file() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            if as_postgres {
                run(Command::new("chown").args(["-R", "postgres:"]).arg(dir), "chown")?;
            }
            run(
                postgres_command(&bin.join("initdb"), as_postgres).arg("-D").arg(&data).args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]),
                "initdb",
            )?;
        }
        let cluster = Self { data, port, bin };
        let options =
            format!("-p {port} -k {} -c listen_addresses=127.0.0.1", dir.canonicalize()?.display());
        let log = dir.join("log");
        let log = log.to_str().context("a UTF-8 path")?;
        run(
            postgres_command(&cluster.bin.join("pg_ctl"), as_postgres)
                .arg("-D")
                .arg(&cluster.data)
                .args(["-l", log, "-w", "-t", "60", "-o", &options, "start"]),
            "pg_ctl start (is another server using the port, or this cluster already running?)",
        )?;
        Ok(cluster)
    }

    /// The URL of `database`, created if it does not exist.
    pub fn database(&self, database: &str) -> anyhow::Result<String> {
        let port = self.port.to_string();
        let exists = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-X", "-A", "-t", "-c"])
            .arg(format!("SELECT 1 FROM pg_database WHERE datname = '{database}'"))
            .output()
            .context("running psql")?;
        if String::from_utf8_lossy(&exists.stdout).trim() != "1" {
            run(
                Command::new(self.bin.join("createdb")).args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    database,
                ]),
                "createdb",
            )?;
        }
        Ok(format!("postgres://postgres@127.0.0.1:{}/{database}", self.port))
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = run(
            postgres_command(&self.bin.join("pg_ctl"), is_root())
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "stop"]),
            "pg_ctl stop",
        );
    }
}

/// The folder of the PostgreSQL binaries: `VIDEOSTORE_PG_BIN`, else the newest Debian version.
fn binaries() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("VIDEOSTORE_PG_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): `cargo xtask test` \
         installs it, or set VIDEOSTORE_PG_BIN",
    )
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

/// `program`, run as the `postgres` user when `as_postgres`.
fn postgres_command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output =
        command.stdin(Stdio::null()).output().with_context(|| format!("{what}: cannot start"))?;
    anyhow::ensure!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
