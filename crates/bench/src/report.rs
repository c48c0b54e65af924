//! `report.md`: the tables a person reads.

use std::fmt::Write;

use crate::Results;

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// The report.
pub(crate) fn markdown(results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Video store benchmark ({} run)\n", results.mode);
    let _ = writeln!(
        out,
        "Machine: {}. Services: release builds, each its own process; load from a separate process on the same machine (127.0.0.1). Command: `cargo xtask bench{}`.\n",
        results.machine,
        if results.mode == "quick" { " --quick" } else { "" }
    );
    let _ = writeln!(out, "## Unary throughput and latency\n");
    let _ = writeln!(
        out,
        "Ratios are to the reference ceiling (a bare tonic server answering GetMovie with a fixed, same-size film) at the same concurrency, in the same run.\n"
    );
    let _ = writeln!(
        out,
        "| target | in flight | calls/s | × ceiling | p50 ms | p99 ms | p99.9 ms | p99 × ceiling | errors |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for u in &results.unary {
        let m = &u.measured;
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.2} | {} | {} | {} | {:.2} | {} |",
            u.target,
            m.concurrency,
            m.throughput,
            u.throughput_vs_ceiling,
            ms(m.p50_us),
            ms(m.p99_us),
            ms(m.p999_us),
            u.p99_vs_ceiling,
            m.errors
        );
    }
    let _ = writeln!(out, "\n### The old chain's test: `wrk -t1 -c10`\n");
    match &results.wrk {
        Ok(w) => {
            let _ = writeln!(
                out,
                "`wrk -t1 -c10 -d{}s --latency` on `GET {}` (the aggregator's REST endpoint for one film: REST in, two gRPC calls out): **{:.0} requests/s**, p50 {:.2} ms, p99 {:.2} ms, {} errors. The old chain (FastAPI calling gRPC per request) served {:.0} requests/s: {:.1}× as many now.",
                w.seconds,
                w.url_path,
                w.requests_per_second,
                w.p50_ms,
                w.p99_ms,
                w.errors,
                crate::wrk::OLD_CHAIN_RPS,
                w.requests_per_second / crate::wrk::OLD_CHAIN_RPS
            );
        }
        Err(reason) => {
            let _ = writeln!(out, "Not measured: {reason}.");
        }
    }
    let _ = writeln!(
        out,
        "\nPlots: `throughput.svg` (calls/s against calls in flight), `latency.svg` (p50/p99/p99.9 at the highest concurrency), `bulk.svg` (the comparison below)."
    );
    let r = &results.rentals;
    let _ = writeln!(out, "\n## Rentals on the embedded database (SQLite)\n");
    let _ = writeln!(
        out,
        "{} customers renting and returning for {:.0} s: **{:.0} committed rent+return pairs/s** ({} pairs, {} failed calls, {} sold-out refusals). Invariant (copies available = owned − open rentals, checked from outside): **{}**; open rentals left: {}.\n",
        r.customers,
        r.seconds,
        r.pairs_per_second,
        r.pairs,
        r.failed_calls,
        r.sold_out_refusals,
        if r.invariant_holds { "holds" } else { "BROKEN" },
        r.open_rentals_left
    );
    let _ = writeln!(out, "## Bulk delivery: the old comparison, redone\n");
    let _ = writeln!(
        out,
        "N films from the catalogue's database (SQLite) to a Rust client, timed from the request to the last film decoded; median of {} run(s). The old figures are the prototype's (Python gateway, timed by hand in Postman).\n",
        results.bulk.first().map_or(0, |b| b.runs)
    );
    let _ = writeln!(
        out,
        "| films | transport | ours, s | best, s | MB on the wire | messages | old, s | old ÷ ours |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|");
    for b in &results.bulk {
        let old = crate::bulk::OLD.iter().find(|(n, ..)| *n == b.films).and_then(
            |(_, rest, unary, stream)| {
                if b.transport.starts_with("REST") {
                    Some(*rest)
                } else if b.transport.contains("unary") {
                    Some(*unary)
                } else if b.transport.contains("one film per message (the old way)") {
                    Some(*stream)
                } else {
                    None
                }
            },
        );
        let (old_s, ratio) = match old {
            Some(old) => (format!("{old:.2}"), format!("{:.0}×", old / b.seconds.max(1e-9))),
            None => ("".into(), "".into()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.3} | {:.1} | {} | {} | {} |",
            b.films,
            b.transport,
            b.seconds,
            b.best_seconds,
            b.bytes as f64 / 1e6,
            b.messages,
            old_s,
            ratio
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "## Live availability fan-out\n");
    let _ = writeln!(
        out,
        "N `WatchAvailability` subscribers held by one stock process (100 streams per HTTP/2 connection); rents committed one at a time, each timed from just before the Rent call (so including the commit) to every subscriber decoding the change.\n"
    );
    let _ = writeln!(
        out,
        "| subscribers | connections | rents | p50 ms | p99 ms | max ms | missed | stock RSS before → with, MiB | per subscriber, KB |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    for f in &results.fanout {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} → {:.1} | {:.1} |",
            f.subscribers,
            f.connections,
            f.rents,
            ms(f.p50_us),
            ms(f.p99_us),
            ms(f.max_us),
            f.missed,
            f.stock_rss_before_kib as f64 / 1024.0,
            f.stock_rss_with_subscribers_kib as f64 / 1024.0,
            f.bytes_per_subscriber as f64 / 1000.0
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "## Resident memory\n");
    let _ = writeln!(out, "| service | when | RSS MiB | peak RSS MiB |");
    let _ = writeln!(out, "|---|---|---:|---:|");
    for m in &results.memory {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} |",
            m.service,
            m.when,
            m.rss_kib as f64 / 1024.0,
            m.peak_rss_kib as f64 / 1024.0
        );
    }
    out
}
