//! `cargo xtask fuzz [--seconds N] [TARGET…]`: builds the cargo-fuzz targets in `fuzz/` (pinned
//! nightly, libFuzzer) and runs each for N seconds (default 60; `cargo xtask test` runs them for
//! [`SHORT_SECONDS`]), then prints how many inputs each tried.
//!
//! Each run starts from the target's seeds (`fuzz/seeds/<target>/`), the inputs that once broke
//! it (`fuzz/regressions/<target>/`) and what earlier runs on this machine found
//! (`target/fuzz/corpus/<target>/`, where new inputs go). An input that breaks a check is saved
//! by libFuzzer in `fuzz/artifacts/<target>/`: copy it into `fuzz/regressions/<target>/`, where
//! the ordinary tests replay it (crates/fuzzing/tests/replay.rs), and fix the bug.
//!
//! Without AddressSanitizer (`--sanitizer none`): it finds memory errors, which the project's
//! code (`unsafe_code = "forbid"`) cannot make, and the targets reach no C code; the time goes
//! to more inputs instead.

use std::{path::Path, process::Command, time::Instant};

use crate::{Result, root, tools};

/// Seconds per target in `cargo xtask test`'s short run.
pub(crate) const SHORT_SECONDS: u64 = 15;

pub(crate) fn run(args: &[String]) -> Result {
    let mut seconds = 60;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--seconds" {
            seconds = args
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|&n| n > 0)
                .ok_or("--seconds takes a whole number of seconds")?;
        } else {
            targets.push(arg.clone());
        }
    }
    fuzz(seconds, &targets)
}

/// Builds the targets and runs each (every one when `targets` is empty) for `seconds`.
pub(crate) fn fuzz(seconds: u64, targets: &[String]) -> Result {
    tools::ensure_fuzz_tools()?;
    let all = list()?;
    if let Some(unknown) = targets.iter().find(|t| !all.contains(t)) {
        return Err(format!("no fuzz target {unknown}: there are {}", all.join(", ")));
    }
    let targets = if targets.is_empty() { all } else { targets.to_vec() };
    let started = Instant::now();
    let mut build = cargo_fuzz();
    build.args(["build", "--sanitizer", "none", "--target-dir", "target/fuzz"]);
    crate::run(build, "cargo fuzz build")?;
    eprintln!("xtask: fuzz targets built in {:.0?}", started.elapsed());

    let mut report = Vec::new();
    for target in &targets {
        let corpus = root().join("target/fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        let mut command = cargo_fuzz();
        command
            .args(["run", target, "--sanitizer", "none", "--target-dir", "target/fuzz"])
            .arg(&corpus);
        for folder in ["fuzz/seeds", "fuzz/regressions"] {
            let inputs = root().join(folder).join(target);
            if inputs.is_dir() {
                command.arg(inputs);
            }
        }
        // A slow input is a finding too (a hang in a validator is a denial of service).
        command.args(["--", &format!("-max_total_time={seconds}"), "-timeout=5"]);
        let output = command.output().map_err(|e| format!("cargo fuzz run: cannot start: {e}"))?;
        let log = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            return Err(format!(
                "fuzz target {target} found an input that breaks it: libFuzzer saved it in \
                 fuzz/artifacts/{target}/. Copy it into fuzz/regressions/{target}/ (the tests \
                 replay it) and fix the bug"
            ));
        }
        let runs = log
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("Done ")?.split(' ').next()?.parse::<u64>().ok())
            .ok_or_else(|| format!("fuzz target {target}: libFuzzer printed no run count"))?;
        let found = std::fs::read_dir(&corpus).map_or(0, Iterator::count);
        eprintln!("xtask: fuzz {target}: {runs} inputs in {seconds} s, no failure");
        report.push(format!("| {target} | {runs} | {} | {found} |", runs / seconds));
    }
    println!("| fuzz target | inputs | per second | corpus |\n|---|---|---|---|");
    for line in report {
        println!("{line}");
    }
    Ok(())
}

/// `cargo fuzz` on the pinned nightly, from the repository root.
fn cargo_fuzz() -> Command {
    let mut command = Command::new("rustup");
    command
        .args(["run", tools::FUZZ_NIGHTLY, "cargo", "fuzz"])
        .current_dir(root())
        .env("PATH", tools::path_with_tools())
        // The stable cargo that runs xtask says who it is; the nightly one must not inherit it.
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN");
    command
}

/// The targets `fuzz/Cargo.toml` declares.
fn list() -> Result<Vec<String>> {
    let manifest = root().join("fuzz/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| format!("{}: {e}", Path::new(&manifest).display()))?;
    let names: Vec<String> = text
        .split("[[bin]]")
        .skip(1)
        .filter_map(|block| {
            let line = block.lines().find(|l| l.trim_start().starts_with("name"))?;
            Some(line.split('"').nth(1)?.to_owned())
        })
        .collect();
    if names.is_empty() { Err("fuzz/Cargo.toml declares no targets".into()) } else { Ok(names) }
}
