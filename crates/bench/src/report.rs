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
    targets(&mut out, results);
    let _ = writeln!(out, "## Unary throughput and latency\n");
    let _ = writeln!(
        out,
        "Ratios are to the reference ceiling (a bare tonic server answering GetMovie with a fixed, same-size film) at the same concurrency, measured in one-second slices taking turns with each target's, so that the machine's changes of speed (tens of percent here, minute to minute) hit both alike. The ceiling row is the one measured beside catalogue GetMovie.\n"
    );
    let _ = writeln!(
        out,
        "| target | in flight | calls/s | ceiling calls/s, same slices | × ceiling | p50 ms | p99 ms | p99.9 ms | p99 × ceiling | errors |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for u in &results.unary {
        let m = &u.measured;
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.2} | {} | {} | {} | {:.2} | {} |",
            u.target,
            m.concurrency,
            m.throughput,
            u.ceiling_throughput,
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
                "`wrk -t1 -c10 -d{}s --latency` on `GET {}` (the aggregator's REST endpoint for one film: REST in; out, a stock lookup and, unless the page is in the aggregator's memory, a catalogue call): **{:.0} requests/s**, p50 {:.2} ms, p99 {:.2} ms, {} errors. The old chain (FastAPI calling gRPC per request) served {:.0} requests/s: {:.1}× as many now.",
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
    postgres_section(&mut out, &results.postgres);
    let _ = writeln!(out, "## Bulk delivery: the old comparison, redone\n");
    let _ = writeln!(
        out,
        "N films from the catalogue's database (SQLite) to a Rust client, timed from the request to the last film decoded; median of {} run(s) after one untimed warm-up run, the transports taking turns run by run (so that a slow spell of the machine falls on all of them alike). × ceiling is the time over the reference ceiling's (the same films streamed from memory in batches of 5000 by a bare tonic server, in the same rounds): what this machine could do at the time. CPU is seconds per run, of the serving processes (catalogue; plus the aggregator for REST; the ceiling for its rows) and of the client; page faults are the client's, per run. The REST client decodes the JSON array element by element as it arrives, as the gRPC clients decode each message as it arrives. The client's allocator (mimalloc) gives memory it frees back to the system lazily (`MADV_FREE`), not at once (`MADV_DONTNEED`, mimalloc's default), so that a unary answer's 300 MB is not faulted and zeroed afresh on every call; `MIMALLOC_PURGE_DECOMMITS=1` measures with mimalloc's default. The old figures are the prototype's (Python gateway, timed by hand in Postman).\n",
        results.bulk.first().map_or(0, |b| b.runs)
    );
    let _ = writeln!(
        out,
        "| films | transport | ours, s | × ceiling | best, s | CPU server, s | CPU client, s | client page faults | MB on the wire | messages | old, s | old ÷ ours |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for b in &results.bulk {
        // The same films streamed from memory in batches, in the same rounds: what the machine
        // could do at that time.
        let ceiling = results.bulk.iter().find(|c| {
            c.films == b.films
                && c.transport.starts_with("reference")
                && c.transport.contains("batches")
        });
        let vs_ceiling =
            ceiling.map_or(String::new(), |c| format!("{:.2}", b.seconds / c.seconds.max(1e-9)));
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
            "| {} | {} | {:.3} | {} | {:.3} | {:.2} | {:.2} | {} | {:.1} | {} | {} | {} |",
            b.films,
            b.transport,
            b.seconds,
            vs_ceiling,
            b.best_seconds,
            b.server_cpu_seconds,
            b.client_cpu_seconds,
            b.client_page_faults,
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
        "| subscribers | connections | rents | p50 ms | p99 ms | max ms | missed | stock RSS before → with, MiB | per subscriber, KB | CPU µs per delivery: stock, subscribers |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---|---:|---|");
    for f in &results.fanout {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} → {:.1} | {:.1} | {:.1}, {:.1} |",
            f.subscribers,
            f.connections,
            f.rents,
            ms(f.p50_us),
            ms(f.p99_us),
            ms(f.max_us),
            f.missed,
            f.stock_rss_before_kib as f64 / 1024.0,
            f.stock_rss_with_subscribers_kib as f64 / 1024.0,
            f.bytes_per_subscriber as f64 / 1000.0,
            f.stock_cpu_us_per_delivery,
            f.client_cpu_us_per_delivery
        );
    }
    let _ = writeln!(out);
    abuse_section(&mut out, &results.abuse);
    tracing_section(&mut out, &results.tracing);
    let _ = writeln!(out, "## Resident memory\n");
    let _ = writeln!(
        out,
        "RSS counts the pages of mapped files too: chiefly the catalogue's database, which SQLite \
         reads through a memory map, so after a bulk read most of the catalogue's RSS is the \
         database file in the page cache (which the kernel reclaims under pressure), not memory \
         the process allocated.\n"
    );
    let _ =
        writeln!(out, "| service | when | RSS MiB | of which mapped files, MiB | peak RSS MiB |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for m in &results.memory {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            m.service,
            m.when,
            m.rss_kib as f64 / 1024.0,
            m.file_kib as f64 / 1024.0,
            m.peak_rss_kib as f64 / 1024.0
        );
    }
    out
}

/// Each target's throughput with every call's spans exported over its throughput without.
pub(crate) fn tracing_ratios(cost: &crate::traced::TracingCost) -> Vec<(&'static str, f64)> {
    cost.every_call.iter().map(|paired| (paired.target, paired.on_over_off)).collect()
}

fn tracing_section(out: &mut String, cost: &crate::traced::TracingCost) {
    let _ = writeln!(out, "\n## Tracing export\n");
    let _ = writeln!(
        out,
        "Three sets of the services at once: one without trace export, one exporting every call's spans (the default sampler, `parentbased_always_on`) over OTLP/gRPC to a receiver in the load generator (which counts them, {} in all, without decoding them, as a collector on another machine would cost these two cores nothing), one sampling one trace in ten (`OTEL_TRACES_SAMPLER=parentbased_traceidratio`, `OTEL_TRACES_SAMPLER_ARG=0.1`). Each exporting set is measured in one-second slices taking turns with the set without export, so both see the same machine.\n",
        cost.spans_received
    );
    let _ = writeln!(
        out,
        "| target | in flight | calls/s, export off | calls/s, every call | on ÷ off | p99 ms off | p99 ms on | one in ten ÷ off |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for every in &cost.every_call {
        let tenth = cost.one_in_ten.iter().find(|tenth| tenth.target == every.target);
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.2} | {} | {} | {} |",
            every.target,
            every.on.concurrency,
            every.off.throughput,
            every.on.throughput,
            every.on_over_off,
            ms(every.off.p99_us),
            ms(every.on.p99_us),
            tenth.map_or("—".into(), |t| format!("{:.2}", t.on_over_off)),
        );
    }
}

fn abuse_section(out: &mut String, abuse: &crate::Abuse) {
    let _ = writeln!(out, "## Abuse: what the limits leave a real customer\n");
    let s = &abuse.sign_in;
    let _ = writeln!(
        out,
        "**Sign-in during a sign-in flood.** Stock with its limits as shipped; {} callers sign in \
         with wrong passwords for made-up emails as fast as they can, each call from an address \
         of its own (a distributed flood, which the per-address limit cannot stop). Meanwhile {} \
         real customers, each from their own address, sign in once each, 250 ms apart, \
         honouring the retry hint when told to wait. The flood had {} calls answered (wrong \
         credentials) and {} refused at once (the password queue full).\n",
        s.flood_concurrency, s.flooded.calls, s.flood_checked, s.flood_refused
    );
    let _ = writeln!(out, "| real sign-in | calls | p50 ms | max ms |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| alone | {} | {:.0} | {:.0} |",
        s.alone.calls, s.alone.p50_ms, s.alone.max_ms
    );
    let _ = writeln!(
        out,
        "| during the flood, until signed in (at most {} tries; {} gave up after 30 s) | {} | {:.0} | {:.0} |\n",
        s.most_tries, s.gave_up, s.flooded.calls, s.flooded.p50_ms, s.flooded.max_ms
    );
    let _ = writeln!(
        out,
        "**Memory under the most expensive requests**, each service flooded by {} callers:\n",
        abuse.big_requests.first().map_or(0, |b| b.measured.concurrency)
    );
    let _ = writeln!(out, "| service | request | calls/s | p99 ms | RSS before → peak, MiB |");
    let _ = writeln!(out, "|---|---|---:|---:|---|");
    for b in &abuse.big_requests {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {:.1} → {:.1} |",
            b.service,
            b.request,
            b.measured.throughput,
            ms(b.measured.p99_us),
            b.rss_before_kib as f64 / 1024.0,
            b.rss_peak_kib as f64 / 1024.0
        );
    }
    let f = &abuse.search;
    let _ = writeln!(
        out,
        "\n**GetMovie during worst-case searches** over {} films: {} callers search for eight \
         long words found in no title (every title is looked at); {} searches answered. GetMovie \
         from 4 callers on its own connection:\n",
        f.films, f.search_concurrency, f.searches
    );
    let _ = writeln!(out, "| GetMovie | calls/s | p50 ms | p99 ms |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for (when, m) in [("alone", &f.alone), ("during the searches", &f.flooded)] {
        let _ =
            writeln!(out, "| {when} | {:.0} | {} | {} |", m.throughput, ms(m.p50_us), ms(m.p99_us));
    }
    let _ = writeln!(out);
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured in this mode",
    }
}

/// The targets, each checked against this run, and what bounds the ones missed.
fn targets(out: &mut String, results: &Results) {
    let _ = writeln!(out, "## Targets\n");
    let _ = writeln!(out, "| target | this run | |\n|---|---|---|");
    let at = |target: &str, concurrency: usize| {
        results.unary.iter().find(|u| u.target == target && u.measured.concurrency == concurrency)
    };
    let get_movie = at("catalogue GetMovie", 64);
    let _ = writeln!(
        out,
        "| GetMovie ≥ 0.8× ceiling at 64 in flight, p99 ≤ 1.5× | {} | {} |",
        get_movie.map_or("—".into(), |u| format!(
            "{:.2}×, p99 {:.2}×",
            u.throughput_vs_ceiling, u.p99_vs_ceiling
        )),
        verdict(get_movie.map(|u| u.throughput_vs_ceiling >= 0.8 && u.p99_vs_ceiling <= 1.5))
    );
    let ratios = tracing_ratios(&results.tracing);
    let worst = ratios.iter().map(|(_, ratio)| *ratio).reduce(f64::min);
    let _ = writeln!(
        out,
        "| GetMovie and GetMoviePage with trace export on ≥ 0.9× off | {} | {} |",
        if ratios.is_empty() {
            "—".to_owned()
        } else {
            ratios
                .iter()
                .map(|(target, ratio)| format!("{target} {ratio:.2}×"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        verdict(worst.map(|worst| worst >= 0.9))
    );
    let page = at("aggregator GetMoviePage", 64);
    let _ = writeln!(
        out,
        "| GetMoviePage ≥ 0.4× ceiling at 64 in flight | {} | {} |",
        page.map_or("—".into(), |u| format!("{:.2}×", u.throughput_vs_ceiling)),
        verdict(page.map(|u| u.throughput_vs_ceiling >= 0.4))
    );
    let _ = writeln!(
        out,
        "| REST film endpoint ≥ 6,000 req/s, `wrk -t1 -c10` | {} | {} |",
        results
            .wrk
            .as_ref()
            .map_or("—".into(), |w| format!("{:.0} req/s", w.requests_per_second)),
        verdict(results.wrk.as_ref().ok().map(|w| w.requests_per_second >= 6000.0))
    );
    let bulk = |needle: &str| {
        results
            .bulk
            .iter()
            .find(|b| b.films == 500_000 && b.transport.contains(needle))
            .map(|b| b.seconds)
    };
    let (batched, unary, rest) =
        (bulk("batches of 500 (StreamMovies"), bulk("unary"), bulk("REST"));
    let seconds = |value: Option<f64>| value.map_or("—".into(), |s| format!("{s:.3} s"));
    let ceiling = bulk("reference ceiling: stream from memory, batches");
    for (name, value, limit) in
        [("batched stream", batched, 0.4), ("unary", unary, 0.6), ("REST/JSON", rest, 1.0)]
    {
        let vs_ceiling = value
            .zip(ceiling)
            .map_or(String::new(), |(v, c)| format!(" ({:.2}× ceiling)", v / c.max(1e-9)));
        let _ = writeln!(
            out,
            "| 500,000 films, {name} ≤ {limit} s | {}{vs_ceiling} | {} |",
            seconds(value),
            verdict(value.map(|v| v <= limit))
        );
    }
    let _ = writeln!(
        out,
        "| batched stream at least as fast as unary (500,000) | {} vs {} | {} |",
        seconds(batched),
        seconds(unary),
        verdict(batched.zip(unary).map(|(b, u)| b <= u))
    );
    let r = &results.rentals;
    let _ = writeln!(
        out,
        "| rentals ≥ 2,000/s, zero oversell | {:.0}/s, invariant {} | {} |",
        r.pairs_per_second,
        if r.invariant_holds { "holds" } else { "BROKEN" },
        verdict(Some(r.pairs_per_second >= 2000.0 && r.invariant_holds))
    );
    let ten_k = results.fanout.iter().find(|f| f.subscribers == 10_000);
    let _ = writeln!(
        out,
        "| 10,000 subscribers, p99 ≤ 100 ms, ≤ 20 KB each | {} | {} |",
        ten_k.map_or("—".into(), |f| format!(
            "p99 {:.0} ms, {:.1} KB each, {} missed",
            f.p99_us as f64 / 1000.0,
            f.bytes_per_subscriber as f64 / 1000.0,
            f.missed
        )),
        verdict(
            ten_k.map(|f| f.p99_us <= 100_000 && f.bytes_per_subscriber <= 20_000 && f.missed == 0)
        )
    );
    let idle: Vec<_> = results.memory.iter().filter(|m| m.when == "idle").collect();
    let _ = writeln!(
        out,
        "| each service ≤ 30 MB idle | {} | {} |",
        idle.iter()
            .map(|m| format!("{} {:.1} MiB", m.service, m.rss_kib as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", "),
        verdict(Some(idle.iter().all(|m| m.rss_kib * 1024 <= 30_000_000)))
    );
    // On PostgreSQL.
    let pg = &results.postgres;
    let three = pg.rentals.iter().find(|(replicas, _)| *replicas == 3).map(|(_, r)| r);
    let _ = writeln!(
        out,
        "| PostgreSQL: rentals ≥ 2,000/s on 3 replicas, zero oversell | {} | {} |",
        three.map_or("—".into(), |r| format!(
            "{:.0}/s, invariant {}",
            r.pairs_per_second,
            if r.invariant_holds { "holds" } else { "BROKEN" }
        )),
        verdict(three.map(|r| r.pairs_per_second >= 2000.0 && r.invariant_holds))
    );
    let _ = writeln!(
        out,
        "| PostgreSQL: {} subscribers over 3 replicas, p99 ≤ 100 ms | p99 {} ms, {} missed | {} |",
        pg.fanout.subscribers,
        ms(pg.fanout.p99_us),
        pg.fanout.missed,
        verdict(Some(pg.fanout.p99_us <= 100_000 && pg.fanout.missed == 0))
    );
    let pg_get = pg.unary.iter().find(|u| u.target == "catalogue GetMovie");
    let _ = writeln!(
        out,
        "| PostgreSQL: GetMovie ≥ 0.7× ceiling at 64 in flight | {} | {} |",
        pg_get.map_or("—".into(), |u| format!("{:.2}×", u.throughput_vs_ceiling)),
        verdict(pg_get.map(|u| u.throughput_vs_ceiling >= 0.7))
    );
    // What bounds each kind of miss, from perf on this machine; said only when missed.
    let mut bounds = Vec::new();
    if page.is_some_and(|u| u.throughput_vs_ceiling < 0.4) {
        bounds.push(
            "a film page is two gRPC exchanges (client to aggregator, plus a share of a batched \
             stock call) carrying seven films to encode and decode, against the ceiling's one \
             exchange of one film",
        );
    }
    if [(batched, 0.4), (unary, 0.6), (rest, 1.0)]
        .iter()
        .any(|(v, limit)| v.is_some_and(|v| v > *limit))
    {
        bounds.push(
            "bulk delivery is bound by the client and by this machine's speed, which drifts \
             by tens of percent from minute to minute (the × ceiling column compares each \
             figure with the same films streamed from memory in the same rounds): decoding the \
             films costs a Rust client as much CPU as serving them costs the catalogue, \
             whatever the transport (see the CPU columns); a unary answer is held whole, so the \
             client decodes only after the last byte and keeps every film at once (see the \
             page-fault column), where a stream reuses one batch's memory; \
             REST/JSON runs three processes on two cores (the catalogue reading, the \
             aggregator writing JSON from the protobuf bytes, the client parsing the JSON)",
        );
    }
    if ten_k.is_some_and(|f| f.p99_us > 100_000) {
        bounds.push(
            "a 10,000-subscriber burst is one HTTP/2 frame through the body layers and one \
             client decode per subscriber",
        );
    }
    if !bounds.is_empty() {
        let _ = writeln!(
            out,
            "\nWhat bounds the misses (perf on this 2-core machine, load generator included): {}.\n",
            bounds.join("; ")
        );
    }
    if let Some(one_by_one) = bulk("reference ceiling: stream from memory, one film") {
        let _ = writeln!(
            out,
            "\nThe issue set the bulk targets where a bare tonic server streamed 500,000 films one \
             per message in about 0.4 s; in this run the ceiling took {one_by_one:.3} s to do \
             that.\n"
        );
    }
}

/// The store on PostgreSQL, beside the SQLite figures above.
fn postgres_section(out: &mut String, pg: &crate::postgres::PostgresResults) {
    let _ = writeln!(out, "## On PostgreSQL\n");
    let _ = writeln!(
        out,
        "The same services with their data in a PostgreSQL 15 cluster the bench starts for the \
         run (durable: fsync and synchronous commit on), on this machine beside the services and \
         the load generator. Stock runs as one replica, then as three sharing the database \
         (customers spread over them; the aggregator balances over them).\n"
    );
    let _ = writeln!(
        out,
        "| stock replicas | rent+return pairs/s | failed calls | sold-out refusals | invariant |\n|---:|---:|---:|---:|---|"
    );
    for (replicas, r) in &pg.rentals {
        let _ = writeln!(
            out,
            "| {replicas} | {:.0} | {} | {} | {} |",
            r.pairs_per_second,
            r.failed_calls,
            r.sold_out_refusals,
            if r.invariant_holds { "holds" } else { "BROKEN" }
        );
    }
    let f = &pg.fanout;
    let _ = writeln!(
        out,
        "\n{} `WatchAvailability` subscribers spread over the three replicas, {} rents committed \
         through one of them, each timed from just before the Rent call to every subscriber \
         decoding it (two thirds of the subscribers hear it through the database's feed): p50 \
         {} ms, p99 {} ms, max {} ms, {} missed.\n",
        f.subscribers,
        f.rents,
        ms(f.p50_us),
        ms(f.p99_us),
        ms(f.max_us),
        f.missed
    );
    let _ = writeln!(
        out,
        "| target, catalogue on PostgreSQL | in flight | calls/s | × ceiling | p99 ms | p99 × ceiling |\n|---|---:|---:|---:|---:|---:|"
    );
    for u in &pg.unary {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.2} | {} | {:.2} |",
            u.target,
            u.measured.concurrency,
            u.measured.throughput,
            u.throughput_vs_ceiling,
            ms(u.measured.p99_us),
            u.p99_vs_ceiling
        );
    }
    let _ = writeln!(out);
}
