//! `cargo xtask <command>`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `up`: builds the browser app and the services in release and runs the whole store on the
//!   embedded database, until Ctrl-C.
//! - `test`: installs what the tests need (if missing), builds the browser app, and runs every
//!   test of the workspace, the browser tests in headless Chromium among them.
//! - `tools`: installs the pinned tools only (wasm32 target, trunk, wasm-bindgen-cli, wasm-opt,
//!   and with `--browser` Chromium and ChromeDriver). Fast when they are present.
//! - `web`: builds the browser app (`trunk build --release`) into `dist/`.
//! - `bench [--quick]`: builds the services in release and runs the benchmarks, writing
//!   `target/bench/report.md` and `results.json`; `test` runs the quick mode as a smoke test.
//! - `k8s`: renders, validates and lints the Kubernetes manifests (`test` does too).
//! - `images`: the services' OCI images, built and proven self-contained (`test` does too).

use std::{
    env,
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

mod images;
mod k8s;
mod tools;

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("up") => up(args.iter().any(|a| a == "--postgres")),
        Some("test") => test(&args[1..]),
        Some("tools") => tools::ensure(args.iter().any(|a| a == "--browser")),
        Some("web") => tools::ensure(false).and_then(|()| tools::build_web()),
        Some("bench") => bench(args.iter().any(|a| a == "--quick")),
        Some("k8s") => k8s::check(),
        Some("images") => images::build(),
        _ => {
            eprintln!(
                "usage: cargo xtask <up [--postgres] | test [cargo test args] | bench [--quick] | tools [--browser] | web | k8s | images>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's folder).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Where cargo puts release binaries.
fn release_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("release")
}

pub(crate) fn cargo() -> Command {
    let mut command = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root());
    command
}

pub(crate) fn run(mut command: Command, what: &str) -> Result {
    let status = command.status().map_err(|e| format!("{what}: cannot start: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{what} failed ({status})")) }
}

/// `cargo xtask test`: every test of the workspace.
fn test(extra: &[String]) -> Result {
    let started = Instant::now();
    // The browser app (which also proves the contracts build for wasm32 without server or
    // transport code), and the tools and browser its tests need.
    tools::ensure(true)?;
    lint()?;
    tools::build_web()?;
    // The benchmark harness, once, in its quick mode: a smoke test that it still works.
    bench(true)?;
    // The deployment: rendered, validated and linted (no cluster runs here), and the images,
    // built and run from their unpacked layers.
    k8s::check()?;
    images::build()?;

    let mut command = cargo();
    // Unit and integration tests of every crate but the wasm-only app (its logic is tested
    // natively in videostore-display, its behaviour in headless Chromium); no doc tests exist.
    command
        .args(["test", "--workspace", "--exclude", "web", "--locked", "--lib", "--bins", "--tests"])
        .env("PATH", tools::path_with_tools())
        .args(extra);
    command.stdout(std::process::Stdio::piped());
    let mut child = command.spawn().map_err(|e| format!("cargo test: cannot start: {e}"))?;
    let (mut passed, mut failed) = (0u64, 0u64);
    let stdout = child.stdout.take().expect("piped stdout");
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.map_err(|e| format!("reading cargo test output: {e}"))?;
        println!("{line}");
        if let Some((p, f)) = parse_test_result(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait().map_err(|e| format!("cargo test: {e}"))?;
    println!("summary: {passed} passed, {failed} failed");
    if !status.success() {
        return Err(format!("cargo test failed ({status})"));
    }
    if passed == 0 {
        return Err("no test ran".into());
    }
    eprintln!("xtask: all {passed} tests passed in {:.0?}", started.elapsed());
    Ok(())
}

/// Formatting, and clippy on every crate (the browser app for wasm32): any warning fails.
fn lint() -> Result {
    tools::ensure_lint_tools()?;
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt, "cargo fmt --check (run `cargo fmt --all`)")?;
    let deny_warnings = ["--", "-D", "warnings"];
    let mut host = cargo();
    host.args(["clippy", "--workspace", "--exclude", "web", "--all-targets", "--locked"])
        .args(deny_warnings);
    run(host, "cargo clippy")?;
    let mut web = cargo();
    web.args(["clippy", "-p", "web", "--target", "wasm32-unknown-unknown", "--locked"])
        .args(deny_warnings);
    run(web, "cargo clippy of the browser app (wasm32)")
}

/// `test result: ok. 34 passed; 0 failed; …` → (34, 0).
fn parse_test_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let count = |word: &str| {
        rest.split(';')
            .find_map(|part| {
                part.trim()
                    .trim_start_matches("ok.")
                    .trim_start_matches("FAILED.")
                    .trim()
                    .strip_suffix(word)
            })
            .and_then(|n| n.trim().parse().ok())
    };
    Some((count(" passed")?, count(" failed")?))
}

/// `cargo xtask bench [--quick]`: release builds, then the load generator in its own process.
fn bench(quick: bool) -> Result {
    if !quick {
        tools::ensure_wrk()?;
    }
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "bench",
        "-p",
        "catalogue",
        "-p",
        "stock",
        "-p",
        "aggregator",
    ]);
    run(build, "building the benchmark and the services")?;
    let bin = release_dir();
    let out = bin.parent().expect("target dir").join("bench");
    let mut bench = Command::new(bin.join("bench"));
    bench.arg("run").arg("--bin-dir").arg(&bin).arg("--out").arg(&out).current_dir(root());
    if quick {
        bench.arg("--quick");
    }
    run(bench, "the benchmark")?;
    println!("{}", std::fs::read_to_string(out.join("report.md")).unwrap_or_default());
    Ok(())
}

/// Where each service listens, from the same variables the services read.
struct Addresses {
    catalogue: String,
    stock: String,
    aggregator: String,
}

impl Addresses {
    fn from_env() -> Self {
        let var = |name: &str, default: &str| env::var(name).unwrap_or_else(|_| default.to_owned());
        Self {
            catalogue: var("CATALOGUE_LISTEN_ADDR", "127.0.0.1:50051"),
            stock: var("STOCK_LISTEN_ADDR", "127.0.0.1:50052"),
            aggregator: var("AGGREGATOR_LISTEN_ADDR", "127.0.0.1:8080"),
        }
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
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, password.as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(password)
}

/// `cargo xtask up`: the whole store on the embedded database, until Ctrl-C.
/// `cargo xtask up [--postgres]`: the whole store, on its embedded databases or on a PostgreSQL
/// cluster kept in the data folder (created on first use).
fn up(postgres: bool) -> Result {
    tools::ensure(false)?;
    if postgres {
        tools::ensure_postgres()?;
    }
    tools::build_web()?;
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "catalogue",
        "-p",
        "stock",
        "-p",
        "aggregator",
        "-p",
        "videostore-cli",
    ]);
    run(build, "building the services")?;

    let root = root();
    let bin = release_dir();
    let data =
        env::var_os("VIDEOSTORE_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("data"));
    std::fs::create_dir_all(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
    let addresses = Addresses::from_env();
    let staff_email =
        env::var("VIDEOSTORE_STAFF_EMAIL").unwrap_or_else(|_| "staff@videostore.local".into());
    let staff_password = match env::var("VIDEOSTORE_STAFF_PASSWORD") {
        Ok(password) => password,
        Err(_) => staff_password(&data)?,
    };

    // Dropped last: the services stop before their database does.
    let mut databases: Vec<(&str, String)> = Vec::new();
    let _cluster = if postgres {
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

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;
    }

    let spawn = |name: &str| -> Result<Child> {
        let mut command = Command::new(bin.join(name));
        command
            .current_dir(&root)
            .env("VIDEOSTORE_DATA_DIR", &data)
            .env("CATALOGUE_LISTEN_ADDR", &addresses.catalogue)
            .env("STOCK_LISTEN_ADDR", &addresses.stock)
            .env("AGGREGATOR_LISTEN_ADDR", &addresses.aggregator)
            .env("CATALOGUE_SERVICE_ADDR", format!("http://{}", addresses.catalogue))
            .env("STOCK_SERVICE_ADDR", format!("http://{}", addresses.stock))
            .env("VIDEOSTORE_STAFF_EMAIL", &staff_email)
            .env("VIDEOSTORE_STAFF_PASSWORD", &staff_password)
            .envs(databases.iter().map(|(variable, url)| (*variable, url)));
        command.spawn().map_err(|e| format!("starting {name}: {e}"))
    };
    let mut children: Vec<(&str, Child)> = Vec::new();
    for name in ["catalogue", "stock", "aggregator"] {
        match spawn(name) {
            Ok(child) => children.push((name, child)),
            Err(error) => {
                stop_all(&mut children);
                return Err(error);
            }
        }
    }

    let health = || {
        Command::new(bin.join("videostore"))
            .args(["health", "--quiet"])
            .env("VIDEOSTORE_CATALOGUE_ADDR", format!("http://{}", addresses.catalogue))
            .env("VIDEOSTORE_STOCK_ADDR", format!("http://{}", addresses.stock))
            .env("VIDEOSTORE_AGGREGATOR_ADDR", format!("http://{}", addresses.aggregator))
            .status()
            .is_ok_and(|status| status.success())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(name) = exited(&mut children) {
            stop_all(&mut children);
            return Err(format!("{name} exited during start-up (see its log above)"));
        }
        if health() {
            break;
        }
        if Instant::now() > deadline || stop.load(Ordering::SeqCst) {
            stop_all(&mut children);
            return Err("the services did not all report SERVING within 60 s".into());
        }
        thread::sleep(Duration::from_millis(200));
    }

    println!();
    println!("The video store is up. Every service reports SERVING.");
    println!();
    println!("  service     address                     speaks");
    println!(
        "  aggregator  http://{:<22}  gRPC, gRPC-Web, REST (GET /api/movies)",
        addresses.aggregator
    );
    println!("  catalogue   http://{:<22}  gRPC, gRPC-Web", addresses.catalogue);
    println!("  stock       http://{:<22}  gRPC, gRPC-Web", addresses.stock);
    println!();
    println!("  data        {}", data.display());
    for (variable, url) in &databases {
        println!("  database    {variable}={url}");
    }
    println!("  staff       {staff_email} / {staff_password}");
    println!("  CLI         {} --help", bin.join("videostore").display());
    println!();
    println!("Press Ctrl-C to stop.");

    while !stop.load(Ordering::SeqCst) {
        if let Some(name) = exited(&mut children) {
            eprintln!("xtask: {name} stopped unexpectedly; stopping the others");
            stop_all(&mut children);
            return Err(format!("{name} stopped unexpectedly"));
        }
        thread::sleep(Duration::from_millis(200));
    }
    println!("Stopping…");
    stop_all(&mut children);
    println!("Stopped.");
    Ok(())
}

/// The name of a child that has exited, if any.
fn exited(children: &mut [(&str, Child)]) -> Option<String> {
    for (name, child) in children.iter_mut() {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return Some((*name).to_owned());
        }
    }
    None
}

/// SIGTERM to every child (graceful shutdown), then waits; SIGKILL after 15 s.
fn stop_all(children: &mut Vec<(&str, Child)>) {
    for (_, child) in children.iter() {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for (name, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    eprintln!("xtask: {name} did not stop in time; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    children.clear();
}
