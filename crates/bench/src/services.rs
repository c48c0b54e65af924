//! Starting the release binaries on free local ports over a fresh database, waiting until they
//! report SERVING, reading their memory, and stopping them.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde::Serialize;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The staff account the benchmark creates.
pub(crate) const STAFF_EMAIL: &str = "bench-staff@example.com";
/// Its password.
pub(crate) const STAFF_PASSWORD: &str = "bench staff password";

/// Resident memory of one service at one moment.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Memory {
    pub(crate) service: &'static str,
    pub(crate) when: &'static str,
    /// Resident set now, KiB (VmRSS).
    pub(crate) rss_kib: u64,
    /// Highest resident set so far, KiB (VmHWM).
    pub(crate) peak_rss_kib: u64,
    /// Of the resident set now, the pages of mapped files, KiB (RssFile): chiefly the database,
    /// which SQLite reads through a memory map; the kernel drops them under pressure.
    pub(crate) file_kib: u64,
}

/// Database connections of all the stock replicas together (see the services'
/// `--database-pool`): on this 2-core machine, 6 to 8 in all made the most rentals a second.
const STOCK_CONNECTIONS: usize = 8;

/// Where the services keep their data when it is PostgreSQL.
pub(crate) struct OnPostgres {
    /// The catalogue's database.
    pub(crate) catalogue_url: String,
    /// Stock's database.
    pub(crate) stock_url: String,
    /// How many stock processes share it.
    pub(crate) stock_replicas: usize,
}

/// Whether the services run with their abuse limits.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limits {
    /// Off: the scenarios measure throughput.
    Off,
    /// As shipped, with 127.0.0.1 a trusted proxy.
    AsShipped,
}

/// The services under test.
pub(crate) struct Running {
    pub(crate) catalogue: SocketAddr,
    /// The first stock replica.
    pub(crate) stock: SocketAddr,
    /// Every stock replica.
    pub(crate) stocks: Vec<SocketAddr>,
    pub(crate) aggregator: SocketAddr,
    pub(crate) ceiling: SocketAddr,
    /// The mail stock delivers (customers' confirmation codes).
    pub(crate) mailbox: stock::mail::Mailbox,
    children: Vec<(&'static str, Child)>,
    /// The databases' folder: a fresh temporary one, or `BENCH_DATA_DIR` when set (kept between
    /// runs, so `bench bulk` can skip a long import while profiling).
    _data: Data,
}

enum Data {
    Fresh(tempfile::TempDir),
    Kept(std::path::PathBuf),
}

impl Data {
    fn path(&self) -> &Path {
        match self {
            Data::Fresh(dir) => dir.path(),
            Data::Kept(path) => path,
        }
    }
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

async fn wait_serving(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(channel) =
            tonic::transport::Channel::from_shared(format!("http://{addr}"))?.connect().await
            && let Ok(response) = HealthClient::new(channel)
                .check(HealthCheckRequest { service: String::new() })
                .await
            && response.into_inner().status == ServingStatus::Serving as i32
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{addr} did not report SERVING within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok()
            })
        })
        .unwrap_or(0)
}

/// CPU time process `pid` has used so far (user + system), seconds.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 =
        after_name.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux.
}

/// Minor page faults of process `pid` so far: each a fresh page of memory the kernel zeroed.
pub(crate) fn minor_faults(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // minflt is the 10th field, the 8th after the command name.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name.split_whitespace().nth(7).and_then(|f| f.parse().ok()).unwrap_or(0)
}

/// Resident memory of process `pid` now, KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// `model name` and core count, for the report.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

impl Running {
    /// Starts catalogue, stock, aggregator and the ceiling from `bin_dir`; with `seed`, the
    /// catalogue opens with its 600 sample films, without, empty (the bulk scenario fills it).
    pub(crate) async fn start(bin_dir: &Path, seed: bool) -> anyhow::Result<Self> {
        Self::start_on(bin_dir, seed, None, Limits::Off).await
    }

    /// Like [`Running::start`] (seeded), with the abuse limits as shipped, behind 127.0.0.1 as
    /// a trusted proxy (so a caller can name the client it speaks for in `x-forwarded-for`).
    pub(crate) async fn start_with_limits(bin_dir: &Path) -> anyhow::Result<Self> {
        Self::start_on(bin_dir, true, None, Limits::AsShipped).await
    }

    /// Like [`Running::start`], with the catalogue and stock on PostgreSQL when `postgres` says
    /// where, stock as that many replicas (the aggregator balances over them).
    pub(crate) async fn start_on(
        bin_dir: &Path,
        seed: bool,
        postgres: Option<&OnPostgres>,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        Self::start_exporting(bin_dir, seed, postgres, limits, None).await
    }

    /// Like [`Running::start`] (seeded), on fresh data of its own whatever `BENCH_DATA_DIR`
    /// says (the tracing scenario runs several at once); with `otlp`, every service exports
    /// its traces over OTLP there, sampling the given ratio of the traces it starts (`None`:
    /// the default, every one).
    pub(crate) async fn start_traced(
        bin_dir: &Path,
        otlp: Option<(SocketAddr, Option<f64>)>,
    ) -> anyhow::Result<Self> {
        Self::start_exporting(bin_dir, true, None, Limits::Off, Some(otlp)).await
    }

    /// `traced`: started by [`Running::start_traced`].
    async fn start_exporting(
        bin_dir: &Path,
        seed: bool,
        postgres: Option<&OnPostgres>,
        limits: Limits,
        traced: Option<Option<(SocketAddr, Option<f64>)>>,
    ) -> anyhow::Result<Self> {
        let otlp = traced.flatten();
        let data = match std::env::var_os("BENCH_DATA_DIR") {
            Some(path) if postgres.is_none() && traced.is_none() => {
                std::fs::create_dir_all(&path)?;
                Data::Kept(path.into())
            }
            _ => Data::Fresh(tempfile::tempdir()?),
        };
        let replicas = postgres.map_or(1, |postgres| postgres.stock_replicas.max(1));
        let stocks: Vec<SocketAddr> =
            (0..replicas).map(|_| free_port()).collect::<Result<_, _>>()?;
        let (catalogue, stock, aggregator, ceiling) =
            (free_port()?, stocks[0], free_port()?, free_port()?);
        // Children are held by `running` as they start: if anything fails, its drop ends them.
        let mut running = Self {
            catalogue,
            stock,
            stocks: stocks.clone(),
            aggregator,
            ceiling,
            mailbox: stock::mail::Mailbox::new(data.path().join("outbox")),
            children: Vec::new(),
            _data: data,
        };
        let data = running._data.path().to_path_buf();
        let stock_list =
            stocks.iter().map(|addr| format!("http://{addr}")).collect::<Vec<_>>().join(",");
        let spawn =
            |name: &'static str, stock: SocketAddr| -> anyhow::Result<(&'static str, Child)> {
                let mut command = server_command(bin_dir.join(name));
                command
                    .env("VIDEOSTORE_DATA_DIR", &data)
                    .env("VIDEOSTORE_MAIL_DIR", data.join("outbox"))
                    .env("CATALOGUE_LISTEN_ADDR", catalogue.to_string())
                    .env("STOCK_LISTEN_ADDR", stock.to_string())
                    .env("AGGREGATOR_LISTEN_ADDR", aggregator.to_string())
                    .env("CATALOGUE_SERVICE_ADDR", format!("http://{catalogue}"))
                    .env("STOCK_SERVICE_ADDR", &stock_list)
                    .env("VIDEOSTORE_STAFF_EMAIL", STAFF_EMAIL)
                    .env("VIDEOSTORE_STAFF_PASSWORD", STAFF_PASSWORD)
                    .env("AGGREGATOR_WEB_DIR", data.join("no-web-app"))
                    .env("CATALOGUE_SEED", seed.to_string())
                    // Per-request logs would measure the terminal, not the service.
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null());
                match limits {
                    // Throughput is measured here, not the abuse limits.
                    Limits::Off => command
                        .env("STOCK_SIGN_INS_PER_MINUTE", "0")
                        .env("STOCK_WRITES_PER_MINUTE", "0")
                        .env("STOCK_MAX_OPEN_RENTALS", "1000")
                        .env("STOCK_WATCHES_PER_CLIENT", "0"),
                    Limits::AsShipped => command.env("VIDEOSTORE_TRUSTED_PROXIES", "127.0.0.1"),
                };
                if let Some((otlp, ratio)) = otlp {
                    command.env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"));
                    if let Some(ratio) = ratio {
                        command
                            .env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
                            .env("OTEL_TRACES_SAMPLER_ARG", ratio.to_string());
                    }
                }
                if let Some(postgres) = postgres {
                    // Sized as an operator would: the stock replicas share a few connections
                    // per database core between them.
                    command
                        .env("CATALOGUE_DATABASE_URL", &postgres.catalogue_url)
                        .env("STOCK_DATABASE_URL", &postgres.stock_url);
                    if name == "stock" {
                        let pool = STOCK_CONNECTIONS.div_ceil(replicas);
                        command.env("VIDEOSTORE_DATABASE_POOL", pool.to_string());
                    }
                }
                let child = command.spawn().map_err(|e| {
                    anyhow::anyhow!("starting {}: {e} (build with cargo xtask bench)", name)
                })?;
                Ok((name, child))
            };
        running.children.push(spawn("catalogue", stock)?);
        // The first replica first: it migrates and seeds alone, the others find it done.
        running.children.push(spawn("stock", stock)?);
        wait_serving(stock).await?;
        for replica in &stocks[1..] {
            running.children.push(spawn("stock", *replica)?);
        }
        running.children.push(spawn("aggregator", stock)?);
        for addr in stocks.iter().copied().chain([catalogue, aggregator]) {
            wait_serving(addr).await?;
        }
        // The ceiling answers with a real film of the real size.
        let film = if !seed {
            crate::bulk::film(1)
        } else {
            let channel = tonic::transport::Channel::from_shared(format!("http://{catalogue}"))?
                .connect()
                .await?;
            videostore_proto::catalogue::catalogue_service_client::CatalogueServiceClient::new(
                channel,
            )
            .get_movie(videostore_proto::catalogue::GetMovieRequest { id: 1 })
            .await?
            .into_inner()
        };
        let film_path = data.join("ceiling-film.pb");
        std::fs::write(&film_path, prost::Message::encode_to_vec(&film))?;
        let child = server_command(bin_dir.join("bench"))
            .args(["ceiling", "--listen", &ceiling.to_string(), "--film"])
            .arg(&film_path)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting the ceiling (bench): {e}"))?;
        running.children.push(("ceiling", child));
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(ceiling).await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "the ceiling did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(running)
    }

    /// The process id of a service.
    pub(crate) fn pid(&self, service: &str) -> Option<u32> {
        self.children.iter().find(|(name, _)| *name == service).map(|(_, child)| child.id())
    }

    /// Resident memory of each service now.
    pub(crate) fn memory(&self, when: &'static str) -> anyhow::Result<Vec<Memory>> {
        Ok(self
            .children
            .iter()
            .filter(|(name, _)| *name != "ceiling")
            .map(|(service, child)| Memory {
                service,
                when,
                rss_kib: status_kib(child.id(), "VmRSS:"),
                peak_rss_kib: status_kib(child.id(), "VmHWM:"),
                file_kib: status_kib(child.id(), "RssFile:"),
            })
            .collect())
    }

    /// SIGTERM to every service, then wait.
    pub(crate) fn stop(&mut self) {
        for (_, child) in &self.children {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        for (_, child) in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A server process of the bench (a service or the ceiling): without the load generator's
/// allocator settings (`MIMALLOC_*`), so that servers run with their own allocator's defaults.
fn server_command(program: std::path::PathBuf) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MIMALLOC_") {
            command.env_remove(name);
        }
    }
    command
}
