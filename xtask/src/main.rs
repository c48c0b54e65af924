//! `cargo xtask <command>`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `up [--postgres] [--front] [--replicas N] [--dev]`: builds the browser app and the services in
//!   release and runs the whole store, until Ctrl-C: on the embedded database, or PostgreSQL;
//!   with `--front`, behind nginx as on Kubernetes (HTTPS, HTTP/2, the Ingress's routes), with
//!   N replicas of catalogue and stock (see `up.rs`).
//! - `test`: installs what the tests need (if missing), builds the browser app, and runs every
//!   test of the workspace, the browser tests in headless Chromium among them.
//! - `tools`: installs the pinned tools only (wasm32 target, trunk, wasm-bindgen-cli, wasm-opt,
//!   and with `--browser` Chromium and ChromeDriver). Fast when they are present.
//! - `web`: builds the browser app (`trunk build --release`) into `dist/`.
//! - `bench [--quick]`: builds the services in release and runs the benchmarks, writing
//!   `target/bench/report.md` and `results.json`; `test` runs the quick mode as a smoke test.
//! - `fuzz [--seconds N] [TARGET…]`: runs the fuzz targets in `fuzz/` (see `fuzz.rs`); `test`
//!   runs each for a few seconds.
//! - `k8s`: renders, validates and lints the Kubernetes manifests (`test` does too).
//! - `images`: the services' OCI images, built and proven self-contained (`test` does too).

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

mod fuzz;
mod images;
mod k8s;
mod observe;
mod tools;
mod up;

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("up") => up::Options::parse(&args[1..]).and_then(up::up),
        Some("test") => test(&args[1..]),
        Some("tools") => tools::ensure(args.iter().any(|a| a == "--browser")),
        Some("web") => tools::ensure(false).and_then(|()| tools::build_web()),
        Some("bench") => bench(args.iter().any(|a| a == "--quick")),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("k8s") => k8s::check().and_then(|()| observe::check()),
        Some("images") => images::build(),
        _ => {
            eprintln!(
                "usage: cargo xtask <up [--postgres] [--front] [--replicas N] [--dev] [--observe] | test [cargo test args] | bench [--quick] | fuzz [--seconds N] [TARGET…] | tools [--browser] | web | k8s | images>"
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
pub(crate) fn release_dir() -> PathBuf {
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
    // The Prometheus rules and configuration `up --observe` uses.
    observe::check()?;
    images::build()?;
    // Every fuzz target, briefly: longer runs are `cargo xtask fuzz --seconds N`.
    fuzz::fuzz(fuzz::SHORT_SECONDS, &[])?;

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

/// Formatting, clippy on every crate (the browser app for wasm32): any warning fails. Then the
/// dependency policy (deny.toml): licences, duplicate versions, sources.
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
    run(web, "cargo clippy of the browser app (wasm32)")?;
    tools::ensure_cargo_deny()?;
    let mut deny = cargo();
    deny.args(["deny", "--locked", "check", "bans", "licenses", "sources"])
        .env("PATH", tools::path_with_tools());
    run(deny, "cargo deny check (the policy is deny.toml)")
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
