//! `desk`: the staff rental desk over RentalDesk (bidirectional streaming) — commands typed in,
//! results and stock changes printed as they come.

use std::{process::ExitCode, time::SystemTime};

use futures::StreamExt;
use videostore_proto::stock::{self, stock_service_client::StockServiceClient};

use super::{call_error, channel};
use crate::{Cli, format};

/// One typed line as a desk command; `None` for an empty line.
fn parse_desk_line(line: &str, counter: usize) -> Result<Option<stock::DeskCommand>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let command_id = format!("c{counter}");
    let number = |word: Option<&&str>, what: &str| -> Result<i64, String> {
        word.ok_or_else(|| format!("missing {what}"))?
            .parse()
            .map_err(|_| format!("{what} must be a number"))
    };
    let action = match words.first().copied() {
        None => return Ok(None),
        Some("rent") => {
            let email = words.get(1).ok_or("usage: rent EMAIL FILM [DAYS]")?.to_string();
            let movie_id = number(words.get(2), "FILM")?;
            let days = match words.get(3) {
                Some(days) => {
                    days.parse().map_err(|_| "DAYS must be a number from 1 to 90".to_owned())?
                }
                None => 3,
            };
            stock::desk_command::Action::Rent(stock::DeskRent {
                customer_email: email,
                movie_id,
                days,
                request_id: uuid::Uuid::new_v4().to_string(),
            })
        }
        Some("return") => stock::desk_command::Action::Return(stock::DeskReturn {
            rental_id: number(words.get(1), "RENTAL")?,
        }),
        Some(other) => {
            return Err(format!("unknown command {other:?}: use rent, return or quit"));
        }
    };
    Ok(Some(stock::DeskCommand { command_id, action: Some(action) }))
}

/// Runs the desk: commands typed on standard input, results and stock changes printed.
pub(crate) async fn desk(cli: &Cli) -> anyhow::Result<ExitCode> {
    use tokio::io::AsyncBufReadExt;
    let mut client = StockServiceClient::new(channel(&cli.stock).await?);
    let (sender, receiver) = tokio::sync::mpsc::channel::<stock::DeskCommand>(16);
    let mut events = client
        .rental_desk(cli.authed(tokio_stream::wrappers::ReceiverStream::new(receiver)).await?)
        .await
        .map_err(call_error)?
        .into_inner();
    println!("Rental desk open. Commands: rent EMAIL FILM [DAYS] | return RENTAL | quit");
    let reader = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut counter = 0;
        while let Ok(Some(line)) = lines.next_line().await {
            let line = line.trim();
            if line == "quit" || line == "exit" {
                break;
            }
            counter += 1;
            match parse_desk_line(line, counter) {
                Ok(Some(command)) => {
                    if sender.send(command).await.is_err() {
                        break;
                    }
                }
                Ok(None) => {}
                Err(message) => eprintln!("{message}"),
            }
        }
        // Dropping the sender ends our side of the stream; the desk then closes.
    });
    while let Some(event) = events.next().await {
        match event.map_err(call_error)?.event {
            Some(stock::desk_event::Event::Result(result)) if result.code == 0 => {
                if let Some(rental) = result.rental {
                    println!(
                        "[{}] ok: {}",
                        result.command_id,
                        format::rental_line(&rental, SystemTime::now())
                    );
                }
            }
            Some(stock::desk_event::Event::Result(result)) => {
                println!("[{}] refused: {}", result.command_id, result.message);
            }
            Some(stock::desk_event::Event::Availability(availability)) => {
                println!(
                    "stock   film {}: {}",
                    availability.movie_id,
                    format::availability(&availability)
                );
            }
            None => {}
        }
    }
    reader.abort();
    println!("Rental desk closed.");
    Ok(ExitCode::SUCCESS)
}
