//! `movies import`: a file's rows checked here, then streamed to the catalogue (client
//! streaming), with every rejected row listed by its row number in the file.

use std::{path::Path, process::ExitCode};

use futures::StreamExt;
use videostore_proto::catalogue as cat;

use super::call_error;
use crate::{Cli, rows};

/// Films per message of the import stream.
const ROWS_PER_MESSAGE: usize = 500;

/// Imports films from a JSON array or CSV file (staff); exit code 2 when rows were rejected.
pub(crate) async fn import(cli: &Cli, file: &Path) -> anyhow::Result<ExitCode> {
    let mut catalogue = super::movies::catalogue(cli).await?;
    let rows = rows::read(file)?;
    let mut problems: Vec<(usize, String, String)> = Vec::new();
    let mut sent_rows: Vec<usize> = Vec::new(); // stream index -> file row number
    let mut films: Vec<cat::Movie> = Vec::new();
    for (row, parsed) in rows {
        match parsed {
            Ok(movie) => {
                sent_rows.push(row);
                films.push(movie);
            }
            Err(reason) => problems.push((row, String::new(), reason)),
        }
    }
    let progress = indicatif::ProgressBar::new(films.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} films sent {msg}")
            .expect("a valid template"),
    );
    let messages: Vec<cat::ImportMoviesRequest> = films
        .chunks(ROWS_PER_MESSAGE)
        .map(|chunk| cat::ImportMoviesRequest { movies: chunk.to_vec() })
        .collect();
    let progress_for_stream = progress.clone();
    let outbound = tokio_stream::iter(messages).map(move |message| {
        progress_for_stream.inc(message.movies.len() as u64);
        message
    });
    let summary = catalogue
        .import_movies(cli.authed(outbound).await?)
        .await
        .map_err(call_error)?
        .into_inner();
    progress.finish_and_clear();
    let unlisted = summary.rejected_count - summary.rejected.len() as i64;
    let rejected_total = problems.len() as i64 + summary.rejected_count;
    for rejected in summary.rejected {
        let row = sent_rows.get(rejected.index as usize).copied().unwrap_or(0);
        problems.push((row, rejected.external_key, rejected.reason));
    }
    problems.sort_by_key(|problem| problem.0);
    println!(
        "Imported {}: {} created, {} updated, {} rejected.",
        file.display(),
        summary.created,
        summary.updated,
        rejected_total
    );
    for (row, key, reason) in &problems {
        let key = if key.is_empty() { String::new() } else { format!(" [{key}]") };
        println!("  row {row}{key}: {reason}");
    }
    if unlisted > 0 {
        println!("  … and {unlisted} more rejected rows not listed by the service.");
    }
    Ok(if rejected_total == 0 { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
