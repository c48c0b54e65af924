//! `movies search`, `movies show` and `movies export`.

use std::{io::Write, path::Path, process::ExitCode};

use anyhow::Context;
use futures::StreamExt;
use tonic::transport::Channel;
use videostore_display::order;
use videostore_proto::{
    catalogue::{self as cat, catalogue_service_client::CatalogueServiceClient},
    stock::{self, stock_service_client::StockServiceClient},
};

use super::{call_error, channel};
use crate::{Cli, format};

/// Largest message the CLI takes from the catalogue.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// A catalogue client.
pub(crate) async fn catalogue(cli: &Cli) -> anyhow::Result<CatalogueServiceClient<Channel>> {
    Ok(CatalogueServiceClient::new(channel(&cli.catalogue).await?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES))
}

/// What `movies search` asks for.
pub(crate) struct Search<'a> {
    /// Words of the title.
    pub(crate) query: &'a str,
    /// Only this genre.
    pub(crate) genre: Option<&'a str>,
    /// Released in or after.
    pub(crate) from: Option<i32>,
    /// Released in or before.
    pub(crate) to: Option<i32>,
    /// The order's name.
    pub(crate) order: &'a str,
    /// Reversed.
    pub(crate) descending: bool,
    /// Films per page.
    pub(crate) page_size: i32,
    /// Where to continue.
    pub(crate) page_token: &'a str,
}

/// Searches titles (case- and accent-insensitive) and prints a page.
pub(crate) async fn search(cli: &Cli, search: Search<'_>) -> anyhow::Result<ExitCode> {
    let order = order::parse(search.order).with_context(|| {
        format!("--order {:?} is not one of {}", search.order, order::NAMES.join(", "))
    })?;
    let page = catalogue(cli)
        .await?
        .list_movies(cat::ListMoviesRequest {
            filter: Some(cat::MovieFilter {
                query: search.query.to_owned(),
                genre: search.genre.unwrap_or_default().to_owned(),
                min_year: search.from.unwrap_or(0),
                max_year: search.to.unwrap_or(0),
            }),
            order_by: order as i32,
            descending: search.descending,
            page_size: search.page_size,
            page_token: search.page_token.to_owned(),
        })
        .await
        .map_err(call_error)?
        .into_inner();
    for movie in &page.movies {
        println!("{}", format::movie_line(movie));
    }
    println!("{} of {} matching films.", page.movies.len(), page.total_size);
    if !page.next_page_token.is_empty() {
        println!("More: --page-token {}", page.next_page_token);
    }
    Ok(ExitCode::SUCCESS)
}

/// Shows one film and its stock.
pub(crate) async fn show(cli: &Cli, id: i64) -> anyhow::Result<ExitCode> {
    let movie = catalogue(cli)
        .await?
        .get_movie(cat::GetMovieRequest { id })
        .await
        .map_err(call_error)?
        .into_inner();
    println!("{}", format::movie_line(&movie));
    if !movie.director.is_empty() {
        println!("Directed by {}, {} min.", movie.director, movie.runtime_minutes);
    }
    if !movie.synopsis.is_empty() {
        println!("{}", movie.synopsis);
    }
    match channel(&cli.stock).await {
        Ok(channel) => {
            let availability = StockServiceClient::new(channel)
                .get_availability(stock::GetAvailabilityRequest { movie_id: id })
                .await
                .map_err(call_error)?
                .into_inner();
            println!("Stock: {}", format::availability(&availability));
        }
        Err(_) => println!("Stock: unknown (the stock service is not reachable)"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes every film as JSON lines, to `output` or standard output.
pub(crate) async fn export(cli: &Cli, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut stream = catalogue(cli)
        .await?
        .stream_movies(cat::StreamMoviesRequest { batch_size: 1000, ..Default::default() })
        .await
        .map_err(call_error)?
        .into_inner();
    let mut out: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut count = 0;
    while let Some(batch) = stream.next().await {
        for movie in batch.map_err(call_error)?.movies {
            serde_json::to_writer(&mut out, &movie_json(&movie))?;
            out.write_all(b"\n")?;
            count += 1;
        }
    }
    out.flush()?;
    if output.is_some() {
        eprintln!("Exported {count} films.");
    }
    Ok(ExitCode::SUCCESS)
}

/// A film as JSON, in the same shape `movies import` reads.
fn movie_json(movie: &cat::Movie) -> serde_json::Value {
    serde_json::json!({
        "id": movie.id,
        "title": movie.title,
        "release_year": movie.release_year,
        "genres": movie.genres,
        "runtime_minutes": movie.runtime_minutes,
        "director": movie.director,
        "rating": format::rating(movie.rating),
        "synopsis": movie.synopsis,
        "audience_rating": movie.audience_rating,
        "external_key": movie.external_key,
    })
}
