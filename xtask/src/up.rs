//! `cargo xtask up`: the whole store on this machine, until Ctrl-C.
//!
//! - Default: one catalogue, one stock and the store front on the embedded SQLite databases in
//!   `data/`, at 127.0.0.1:50051, :50052 and :8080 (the `*_LISTEN_ADDR` variables change them).
//! - `--postgres`: on a PostgreSQL cluster kept in `data/postgres` (created on first use).
//! - `--replicas N` (with `--postgres`): N catalogue and N stock processes on one database; the
//!   store front balances over them. Replicas beyond the first take free ports.
//! - `--front`: the shape of the Kubernetes deployment: nginx in front (`crates/front-door`,
//!   the Ingress's routing table) on https://127.0.0.1:8443 (`FRONT_LISTEN_ADDR`) with a local
//!   CA made once in `data/front/ca.pem`; the app calls catalogue and stock through it; the store
//!   front's health and reflection move to a private port.
//!
//! - `--observe`: also Debian's Prometheus on http://127.0.0.1:9090 (`PROMETHEUS_LISTEN_ADDR`),
//!   scraping every service and evaluating the RED recording rules (see `observe`).
//!
//! A service process that stops is started again, as Kubernetes would; one that stops five
//! times within a minute stops the store.

use std::{
    env,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crate::{Result, cargo, release_dir, root, run, tools};

/// What `up` was asked for.
pub(crate) struct Options {
    postgres: bool,
    front: bool,
    replicas: usize,
    /// Also allow the origins of `trunk serve` (development only).
    dev: bool,
    /// Also run Prometheus, scraping the services.
    observe: bool,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut options =
            Self { postgres: false, front: false, replicas: 1, dev: false, observe: false };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--postgres" => options.postgres = true,
                "--front" => options.front = true,
                "--dev" => options.dev = true,
                "--observe" => options.observe = true,
                "--replicas" => {
                    options.replicas = args
                        .next()
                        .and_then(|n| n.parse().ok())
                        .filter(|n| (1..=8).contains(n))
                        .ok_or("--replicas takes a number from 1 to 8")?;
                }
                other => return Err(format!("up: unknown option {other}")),
            }
        }
        if options.replicas > 1 && !options.postgres {
            return Err("replicas share one database: use --replicas with --postgres".into());
        }
        Ok(options)
    }
}

/// One service process to keep running.
struct Process {
    /// `catalogue`, `stock` or `aggregator`.
    program: &'static str,
    /// `catalogue 2` etc., for messages.
    label: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// When it stopped unexpectedly, lately.
    exits: Vec<Instant>,
}

pub(crate) fn up(options: Options) -> Result {
    let started = Instant::now();
    tools::ensure(false)?;
    if options.postgres {
        tools::ensure_postgres()?;
    }
    if options.front {
        tools::ensure_nginx()?;
    }
    tools::build_web()?;
    let mut build = cargo();
    build.args(["build", "--release", "--locked"]).args(
        ["catalogue", "stock", "aggregator", "videostore-cli"].iter().flat_map(|p| ["-p", p]),
    );
    run(build, "building the services")?;
    let built = started.elapsed();

    let root = root();
    let bin = release_dir();
    let data =
        env::var_os("VIDEOSTORE_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("data"));
    std::fs::create_dir_all(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
    let var = |name: &str, default: &str| env::var(name).unwrap_or_else(|_| default.to_owned());
    let staff_email = var("VIDEOSTORE_STAFF_EMAIL", "staff@videostore.local");
    let staff_password = match env::var("VIDEOSTORE_STAFF_PASSWORD") {
        Ok(password) => password,
        Err(_) => staff_password(&data)?,
    };

    // Dropped last: the services stop before their database does.
    let mut databases: Vec<(&str, String)> = Vec::new();
    let _cluster = if options.postgres {
        let port: u16 =
            env::var("VIDEOSTORE_PG_PORT").ok().and_then(|port| port.parse().ok()).unwrap_or(55432);
        let cluster = testdb::LocalCluster::start(&data.join("postgres"), port)
            .map_err(|e| format!("starting PostgreSQL: {e:#}"))?;
        for (variable, name) in
            [("CATALOGUE_DATABASE_URL", "catalogue"), ("STOCK_DATABASE_URL", "stock")]
        {
            let url = cluster.database(name).map_err(|e| format!("{e:#}"))?;
            databases.push((variable, url));
        }
        Some(cluster)
    } else {
        None
    };

    // Addresses: the first replica of each service where the variables say, the others on
    // free ports.
    let replicas = |first: &str| -> Result<Vec<String>> {
        let mut addresses = vec![first.to_owned()];
        for _ in 1..options.replicas {
            let port = crate::images::free_port()?;
            addresses.push(format!("127.0.0.1:{port}"));
        }
        Ok(addresses)
    };
    let catalogues = replicas(&var("CATALOGUE_LISTEN_ADDR", "127.0.0.1:50051"))?;
    let stocks = replicas(&var("STOCK_LISTEN_ADDR", "127.0.0.1:50052"))?;
    let aggregator = var("AGGREGATOR_LISTEN_ADDR", "127.0.0.1:8080");
    let front: Option<SocketAddr> = if options.front {
        let listen = var("FRONT_LISTEN_ADDR", "127.0.0.1:8443");
        Some(listen.parse().map_err(|_| format!("FRONT_LISTEN_ADDR={listen}: not an address"))?)
    } else {
        None
    };
    // Behind the front door, the store front's health and reflection leave its public port.
    let aggregator_admin = match front {
        Some(_) => Some(format!("127.0.0.1:{}", crate::images::free_port()?)),
        None => None,
    };
    let list = |addresses: &[String]| {
        addresses.iter().map(|a| format!("http://{a}")).collect::<Vec<_>>().join(",")
    };

    // Mail (registration codes) is delivered as files here, and links in it open the app.
    let outbox = data.join("outbox");
    let public_url = match front {
        Some(listen) => format!("https://{listen}"),
        None => format!("http://{aggregator}"),
    };
    let common: Vec<(String, String)> = [
        ("VIDEOSTORE_DATA_DIR", data.display().to_string()),
        ("VIDEOSTORE_MAIL_DIR", outbox.display().to_string()),
        ("VIDEOSTORE_PUBLIC_URL", public_url),
        ("VIDEOSTORE_STAFF_EMAIL", staff_email.clone()),
        ("VIDEOSTORE_STAFF_PASSWORD", staff_password.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(databases.iter().map(|(k, v)| ((*k).to_owned(), v.clone())))
    // Behind the front door every browser comes from nginx on 127.0.0.1: its X-Forwarded-For
    // names the client the per-client limits count.
    .chain(front.map(|_| ("VIDEOSTORE_TRUSTED_PROXIES".to_owned(), "127.0.0.1".to_owned())))
    // `trunk serve`'s app (README: "Developing the web app") is let in only when asked for:
    // the services' defaults allow the app they serve themselves, and no other origin.
    .chain(options.dev.then(|| {
        let origins = "http://localhost:8080,http://127.0.0.1:8080,\
                       http://localhost:8000,http://127.0.0.1:8000";
        ("VIDEOSTORE_CORS_ORIGINS".to_owned(), origins.to_owned())
    }))
    .collect();
    // Replicas share one pool budget: a few connections per database core in all.
    let pool = (8 / options.replicas).max(2).to_string();
    let mut processes: Vec<Process> = Vec::new();
    for (program, addresses, listen_var) in [
        ("catalogue", &catalogues, "CATALOGUE_LISTEN_ADDR"),
        ("stock", &stocks, "STOCK_LISTEN_ADDR"),
    ] {
        for (index, address) in addresses.iter().enumerate() {
            let mut env = common.clone();
            env.push((listen_var.to_owned(), address.clone()));
            env.push(("VIDEOSTORE_DATABASE_POOL".to_owned(), pool.clone()));
            let label = if options.replicas > 1 {
                format!("{program} {}", index + 1)
            } else {
                program.to_owned()
            };
            processes.push(Process { program, label, env, child: None, exits: Vec::new() });
        }
    }
    let mut env = common.clone();
    env.push(("AGGREGATOR_LISTEN_ADDR".to_owned(), aggregator.clone()));
    env.push(("CATALOGUE_SERVICE_ADDR".to_owned(), list(&catalogues)));
    env.push(("STOCK_SERVICE_ADDR".to_owned(), list(&stocks)));
    if let Some(admin) = &aggregator_admin {
        env.push(("VIDEOSTORE_ADMIN_ADDR".to_owned(), admin.clone()));
        env.push(("PUBLIC_CATALOGUE_URL".to_owned(), "/".to_owned()));
        env.push(("PUBLIC_STOCK_URL".to_owned(), "/".to_owned()));
    }
    processes.push(Process {
        program: "aggregator",
        label: "aggregator".to_owned(),
        env,
        child: None,
        exits: Vec::new(),
    });

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;
    }
    for process in &mut processes {
        if let Err(error) = start(process, &bin, &root) {
            stop_all(&mut processes);
            return Err(error);
        }
    }

    // Every replica SERVING (the store front on its private port, when it has one).
    let health = |index: usize| {
        let pick = |addresses: &[String]| addresses[index.min(addresses.len() - 1)].clone();
        Command::new(bin.join("videostore"))
            .args(["health", "--quiet"])
            .env("VIDEOSTORE_CATALOGUE_ADDR", format!("http://{}", pick(&catalogues)))
            .env("VIDEOSTORE_STOCK_ADDR", format!("http://{}", pick(&stocks)))
            .env(
                "VIDEOSTORE_AGGREGATOR_ADDR",
                format!("http://{}", aggregator_admin.as_ref().unwrap_or(&aggregator)),
            )
            .status()
            .is_ok_and(|status| status.success())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ready = 0;
    while ready < options.replicas {
        if let Some(label) = processes.iter_mut().find_map(exited) {
            stop_all(&mut processes);
            return Err(format!("{label} exited during start-up (see its log above)"));
        }
        if health(ready) {
            ready += 1;
            continue;
        }
        if Instant::now() > deadline || stop.load(Ordering::SeqCst) {
            stop_all(&mut processes);
            return Err("the services did not all report SERVING within 60 s".into());
        }
        thread::sleep(Duration::from_millis(100));
    }
    let door = match front {
        Some(listen) => {
            let address = |a: &String| a.parse::<SocketAddr>().map_err(|e| format!("{a}: {e}"));
            let backends = front_door::Backends {
                catalogue: catalogues.iter().map(address).collect::<Result<_>>()?,
                stock: stocks.iter().map(address).collect::<Result<_>>()?,
                aggregator: vec![address(&aggregator)?],
            };
            match front_door::FrontDoor::start(&data.join("front"), listen, &backends) {
                Ok(door) => Some(door),
                Err(error) => {
                    stop_all(&mut processes);
                    return Err(format!("starting the front door: {error:#}"));
                }
            }
        }
        None => None,
    };

    let prometheus = if options.observe {
        let listen = var("PROMETHEUS_LISTEN_ADDR", "127.0.0.1:9090");
        // The store front's metrics are on its private port when it has one.
        let jobs = [
            ("catalogue", catalogues.clone()),
            ("stock", stocks.clone()),
            ("aggregator", vec![aggregator_admin.clone().unwrap_or_else(|| aggregator.clone())]),
        ];
        match crate::observe::Prometheus::start(&data, &listen, &jobs) {
            Ok(prometheus) => Some(prometheus),
            Err(error) => {
                if let Some(door) = door {
                    door.stop();
                }
                stop_all(&mut processes);
                return Err(format!("starting Prometheus: {error}"));
            }
        }
    } else {
        None
    };

    println!();
    let total = started.elapsed();
    println!(
        "The video store is up, {:.1} s after the command: {:.1} s building, {:.1} s starting.",
        total.as_secs_f64(),
        built.as_secs_f64(),
        (total - built).as_secs_f64()
    );
    println!("Every service reports SERVING.");
    println!();
    if let Some(door) = &door {
        println!("  open        {}/  (or https://localhost:{}/)", door.url(), door.addr().port());
        println!(
            "              HTTPS and HTTP/2 by nginx; the Ingress's routes; trust the local CA"
        );
        println!("              {} to skip the warning", data.join("front/ca.pem").display());
        println!();
    }
    println!("  service     address                     speaks");
    let app = if door.is_some() { "; the app at the front door" } else { ", the app" };
    println!("  aggregator  http://{aggregator:<22}  gRPC, gRPC-Web, REST (GET /api/movies){app}");
    for address in &catalogues {
        println!("  catalogue   http://{address:<22}  gRPC, gRPC-Web");
    }
    for address in &stocks {
        println!("  stock       http://{address:<22}  gRPC, gRPC-Web");
    }
    if let Some(admin) = &aggregator_admin {
        println!("  (the store front's health and reflection: http://{admin})");
    }
    println!();
    if let Some(prometheus) = &prometheus {
        println!(
            "  prometheus  {:<28}  scrapes /metrics every 5 s; recording rules:",
            prometheus.url
        );
        println!("              videostore:rpc_calls:rate1m, videostore:rpc_error_ratio:rate1m,");
        println!(
            "              videostore:rpc_duration_seconds:p99_5m (k8s/components/observability)"
        );
        println!();
    }
    println!("  data        {}", data.display());
    for (variable, url) in &databases {
        println!("  database    {variable}={url}");
    }
    println!("  staff       {staff_email} / {staff_password}");
    println!("  mail        {}  (registration codes, one .eml file each)", outbox.display());
    println!("  CLI         {} --help", bin.join("videostore").display());
    println!();
    println!("Press Ctrl-C to stop.");

    let mut door = door;
    let mut prometheus = prometheus;
    let mut failure = None;
    while !stop.load(Ordering::SeqCst) && failure.is_none() {
        if let Some(prometheus) = &mut prometheus
            && !prometheus.is_running()
        {
            failure = Some("Prometheus stopped (see its log above)".to_owned());
            break;
        }
        if let Some(door) = &mut door
            && !door.is_running()
        {
            failure = Some("the front door (nginx) stopped; see data/front/error.log".to_owned());
            break;
        }
        for process in &mut processes {
            let Some(label) = exited(process) else { continue };
            let now = Instant::now();
            process.exits.retain(|at| now.duration_since(*at) < Duration::from_secs(60));
            process.exits.push(now);
            if process.exits.len() >= 5 {
                failure = Some(format!("{label} stopped five times within a minute"));
                break;
            }
            eprintln!("xtask: {label} stopped unexpectedly; starting it again");
            if let Err(error) = start(process, &bin, &root) {
                failure = Some(error);
                break;
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    println!("Stopping…");
    if let Some(prometheus) = prometheus {
        prometheus.stop();
    }
    if let Some(door) = door {
        door.stop();
    }
    stop_all(&mut processes);
    println!("Stopped.");
    failure.map_or(Ok(()), Err)
}

fn start(process: &mut Process, bin: &Path, root: &Path) -> Result {
    let child = Command::new(bin.join(process.program))
        .current_dir(root)
        .envs(process.env.iter().map(|(k, v)| (k, v)))
        .spawn()
        .map_err(|e| format!("starting {}: {e}", process.label))?;
    process.child = Some(child);
    Ok(())
}

/// The process's label if it has exited (it is then no longer running).
fn exited(process: &mut Process) -> Option<String> {
    let child = process.child.as_mut()?;
    if matches!(child.try_wait(), Ok(Some(_))) {
        process.child = None;
        return Some(process.label.clone());
    }
    None
}

/// SIGTERM to every child (graceful shutdown), then waits; SIGKILL after 15 s.
fn stop_all(processes: &mut [Process]) {
    for child in processes.iter().filter_map(|p| p.child.as_ref()) {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for process in processes.iter_mut() {
        let Some(child) = process.child.as_mut() else { continue };
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    eprintln!("xtask: {} did not stop in time; killing it", process.label);
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => thread::sleep(Duration::from_millis(50)),
            }
        }
        process.child = None;
    }
}

/// A password for the first staff account, made once and kept in the data folder.
fn staff_password(data: &Path) -> Result<String> {
    let path = data.join("staff-password");
    if let Ok(password) = std::fs::read_to_string(&path) {
        return Ok(password.trim().to_owned());
    }
    let mut bytes = [0u8; 12];
    let mut random =
        std::fs::File::open("/dev/urandom").map_err(|e| format!("/dev/urandom: {e}"))?;
    std::io::Read::read_exact(&mut random, &mut bytes).map_err(|e| format!("/dev/urandom: {e}"))?;
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, password.as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(password)
}
