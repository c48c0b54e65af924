//! `watch`: live stock over WatchAvailability (server streaming).

use std::{io::Write, process::ExitCode};

use futures::StreamExt;
use videostore_proto::stock::{self, stock_service_client::StockServiceClient};

use super::{call_error, channel};
use crate::{Cli, format};

/// Prints the stock of `movies` (every stocked film when none), then every change, until
/// Ctrl-C or `stop_after` changes.
pub(crate) async fn watch(
    cli: &Cli,
    movies: Vec<i64>,
    stop_after: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let mut client = StockServiceClient::new(channel(&cli.stock).await?);
    let mut stream = client
        .watch_availability(stock::WatchAvailabilityRequest {
            movie_ids: movies,
            resume_from: Vec::new(),
        })
        .await
        .map_err(call_error)?
        .into_inner();
    let mut changes = 0;
    let mut stdout = std::io::stdout();
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            _ = tokio::signal::ctrl_c() => break,
        };
        let Some(message) = message else {
            println!("The stock service closed the stream.");
            break;
        };
        let message = message.map_err(call_error)?;
        let label = if message.snapshot { "now" } else { "change" };
        for availability in &message.availabilities {
            writeln!(
                stdout,
                "{label:>6}  film {:>6}: {}",
                availability.movie_id,
                format::availability(availability)
            )?;
        }
        stdout.flush()?;
        if !message.snapshot {
            changes += message.availabilities.len();
            if stop_after.is_some_and(|limit| changes >= limit) {
                break;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
