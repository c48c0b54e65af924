//! The old chain's measurement redone with the same outside tool: `wrk -t1 -c10` against the
//! aggregator's REST endpoint for one film (a REST call that fans out to gRPC, like the old
//! FastAPI gateway). wrk is used because the old figure (1,223 req/s) came from it; Debian's
//! `wrk` package is installed by `cargo xtask bench`.

use std::{process::Command, time::Duration};

use serde::Serialize;

/// The old chain: FastAPI calling a gRPC service per request, `wrk -t1 -c10`.
pub(crate) const OLD_CHAIN_RPS: f64 = 1223.0;

/// What wrk reported.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WrkResult {
    pub(crate) url_path: String,
    pub(crate) seconds: u64,
    pub(crate) requests_per_second: f64,
    /// Latency percentiles as wrk prints them (`--latency`), milliseconds.
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    /// Non-2xx/3xx responses and socket errors.
    pub(crate) errors: u64,
}

fn millis(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let value: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => return None,
    })
}

/// Runs wrk, or says why it could not.
pub(crate) fn run(base: &str, path: &str, duration: Duration) -> Result<WrkResult, String> {
    let output = Command::new("wrk")
        .args(["-t1", "-c10", &format!("-d{}s", duration.as_secs()), "--latency"])
        .arg(format!("{base}{path}"))
        .output()
        .map_err(|error| {
            format!("wrk is not installed ({error}); `cargo xtask bench` installs it")
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("wrk failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let field = |prefix: &str| {
        text.lines().find_map(|line| line.trim().strip_prefix(prefix).map(str::trim))
    };
    let requests_per_second = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let percentile = |p: &str| field(p).and_then(millis).unwrap_or(f64::NAN);
    let mut errors = 0;
    if let Some(non_2xx) = field("Non-2xx or 3xx responses:") {
        errors += non_2xx.parse::<u64>().unwrap_or(0);
    }
    if let Some(socket) = field("Socket errors:") {
        errors += socket
            .split(',')
            .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(WrkResult {
        url_path: path.to_owned(),
        seconds: duration.as_secs(),
        requests_per_second,
        p50_ms: percentile("50%"),
        p99_ms: percentile("99%"),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_durations() {
        assert_eq!(millis("812.00us"), Some(0.812));
        assert_eq!(millis("1.25ms"), Some(1.25));
        assert_eq!(millis("2.00s"), Some(2000.0));
        assert_eq!(millis("fast"), None);
    }
}
