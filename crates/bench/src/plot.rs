//! SVG plots of a run: throughput against concurrency, latency percentiles, and the bulk
//! comparison with the old prototype.

use std::path::Path;

use plotters::prelude::*;

use crate::Results;

const COLOURS: [RGBColor; 6] = [
    RGBColor(90, 90, 90),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// Writes `throughput.svg`, `latency.svg` and `bulk.svg` into `out`.
pub(crate) fn write_all(results: &Results, out: &Path) -> anyhow::Result<()> {
    let to_anyhow = |error: Box<dyn std::error::Error>| anyhow::anyhow!("plotting: {error}");
    throughput(results, &out.join("throughput.svg")).map_err(to_anyhow)?;
    latency(results, &out.join("latency.svg")).map_err(to_anyhow)?;
    bulk(results, &out.join("bulk.svg")).map_err(to_anyhow)?;
    Ok(())
}

fn targets(results: &Results) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for unary in &results.unary {
        if !names.contains(&unary.target) {
            names.push(unary.target);
        }
    }
    names
}

/// Calls per second against calls in flight, one line per target (log-scaled concurrency).
fn throughput(results: &Results, path: &Path) -> Drawn {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_rate = results.unary.iter().map(|u| u.measured.throughput).fold(1.0, f64::max);
    let max_concurrency =
        results.unary.iter().map(|u| u.measured.concurrency).max().unwrap_or(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption("Unary throughput vs calls in flight", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0..max_concurrency * 1.2).log_scale(), 0.0..max_rate * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("calls in flight (log scale)")
        .y_desc("calls per second")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (index, target) in targets(results).into_iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<(f64, f64)> = results
            .unary
            .iter()
            .filter(|u| u.target == target)
            .map(|u| (u.measured.concurrency as f64, u.measured.throughput))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(target)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// p50, p99 and p99.9 per target at the highest concurrency measured, as grouped bars.
fn latency(results: &Results, path: &Path) -> Drawn {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = results.unary.iter().map(|u| u.measured.concurrency).max().unwrap_or(1);
    let rows: Vec<_> = results.unary.iter().filter(|u| u.measured.concurrency == top).collect();
    let max_ms = rows.iter().map(|u| u.measured.p999_us as f64 / 1000.0).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Latency at {top} calls in flight: p50, p99, p99.9"), ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(categories(rows.len()), 0.0..max_ms * 1.15)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len())
        .x_label_formatter(&|x| {
            if x.fract() != 0.0 {
                return String::new();
            }
            rows.get(x.round() as usize).map_or(String::new(), |u| short(u.target).to_owned())
        })
        .y_desc("milliseconds")
        .draw()?;
    for (series, (name, pick)) in [
        ("p50", (|u: &crate::UnaryResult| u.measured.p50_us) as fn(&crate::UnaryResult) -> u64),
        ("p99", |u: &crate::UnaryResult| u.measured.p99_us),
        ("p99.9", |u: &crate::UnaryResult| u.measured.p999_us),
    ]
    .into_iter()
    .enumerate()
    {
        let colour = COLOURS[series + 1];
        chart
            .draw_series(rows.iter().enumerate().map(|(index, u)| {
                let left = index as f64 - 0.35 + series as f64 * 0.23;
                Rectangle::new(
                    [(left, 0.0), (left + 0.2, pick(u) as f64 / 1000.0)],
                    colour.filled(),
                )
            }))?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// An x axis of `count` categories centred on 0, 1, ….
fn categories(count: usize) -> std::ops::Range<f64> {
    -0.5..count as f64 - 0.5
}

fn short(target: &str) -> &str {
    match target {
        t if t.starts_with("reference") => "ceiling",
        t if t.starts_with("catalogue") => "GetMovie",
        t if t.contains("GetMoviePage") => "GetMoviePage",
        t if t.contains("REST") => "REST film",
        other => other,
    }
}

/// Seconds to deliver the largest N, ours against the old prototype's, log scale.
fn bulk(results: &Results, path: &Path) -> Drawn {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let films = results.bulk.iter().map(|b| b.films).max().unwrap_or(0);
    let mut bars: Vec<(String, f64, RGBColor)> = Vec::new();
    if let Some((_, rest, unary, stream)) = crate::bulk::OLD.iter().find(|(n, ..)| *n == films) {
        bars.push(("old REST".into(), *rest, COLOURS[0]));
        bars.push(("old unary".into(), *unary, COLOURS[0]));
        bars.push(("old stream 1/msg".into(), *stream, COLOURS[0]));
    }
    for b in results.bulk.iter().filter(|b| b.films == films) {
        let label = match b.transport {
            t if t.starts_with("REST") => "REST",
            t if t.starts_with("gRPC-Web") => "gRPC-Web",
            t if t.contains("unary") => "unary",
            t if t.contains("one film per message (the old way)") => "stream 1/msg",
            t if t.contains("batches of 500 (") => "stream 500/msg",
            t if t.contains("5000") => "stream 5000/msg",
            _ => "ceiling (memory)",
        };
        bars.push((label.into(), b.seconds, COLOURS[1]));
    }
    let max = bars.iter().map(|(_, s, _)| *s).fold(0.01, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{films} films to a client: seconds (grey: old prototype; blue: ours)"),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(categories(bars.len()), (0.01..max * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len())
        .x_label_formatter(&|x| {
            if x.fract() != 0.0 {
                return String::new();
            }
            bars.get(x.round() as usize).map_or(String::new(), |(label, ..)| label.clone())
        })
        .y_desc("seconds (log scale)")
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(index, (_, seconds, colour))| {
        let left = index as f64 - 0.35;
        Rectangle::new([(left, 0.01), (left + 0.7, *seconds)], colour.filled())
    }))?;
    root.present()?;
    Ok(())
}
