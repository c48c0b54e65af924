//! `videostore`: the video store from a terminal, over the same gRPC contracts as the web app.
//!
//! Exit codes: 0 success; 1 the command failed (the message says why); 2 `movies import`
//! finished but rejected some rows (each is listed with its reason).

mod format;
mod rows;

use std::{
    io::Write,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, SystemTime},
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use tonic::{Request, transport::Channel};
use videostore_proto::{
    catalogue::{self as cat, catalogue_service_client::CatalogueServiceClient},
    stock::{
        self, account_service_client::AccountServiceClient,
        stock_service_client::StockServiceClient,
    },
};

/// The video store from the command line.
#[derive(Debug, Parser)]
#[command(name = "videostore", version, about)]
struct Cli {
    /// The catalogue service.
    #[arg(
        long,
        global = true,
        env = "VIDEOSTORE_CATALOGUE_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    catalogue: String,
    /// The stock service.
    #[arg(
        long,
        global = true,
        env = "VIDEOSTORE_STOCK_ADDR",
        default_value = "http://127.0.0.1:50052"
    )]
    stock: String,
    /// The aggregator.
    #[arg(
        long,
        global = true,
        env = "VIDEOSTORE_AGGREGATOR_ADDR",
        default_value = "http://127.0.0.1:8080"
    )]
    aggregator: String,
    /// A bearer token; defaults to the one `signin` saved.
    #[arg(long, global = true, env = "VIDEOSTORE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where `signin` saves the token.
    #[arg(long, global = true, env = "VIDEOSTORE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks that every service reports SERVING.
    Health {
        /// Print nothing; only the exit code tells.
        #[arg(long)]
        quiet: bool,
    },
    /// Creates a customer account.
    Signup {
        /// Email address.
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Password (at least 8 characters).
        #[arg(long, env = "VIDEOSTORE_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Signs in and saves the token for the next commands.
    Signin {
        /// Email address.
        #[arg(long)]
        email: String,
        /// Password.
        #[arg(long, env = "VIDEOSTORE_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Films: search, show, import, export.
    #[command(subcommand)]
    Movies(Movies),
    /// Rents a copy of a film.
    Rent {
        /// The film's id.
        movie: i64,
        /// For how many days.
        #[arg(long, default_value_t = 3)]
        days: i32,
        /// Idempotency key; a retry with the same key rents nothing more. Random by default.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Returns a rental.
    Return {
        /// The rental's id.
        rental: i64,
    },
    /// Buys a copy of a film.
    Buy {
        /// The film's id.
        movie: i64,
        /// Idempotency key. Random by default.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Lists your rentals, open ones first.
    Rentals {
        /// Only open rentals.
        #[arg(long)]
        open: bool,
    },
    /// Shows stock live: the current state, then every change.
    Watch {
        /// Films to watch; all stocked films when none.
        movies: Vec<i64>,
        /// Stop after this many changes (after the current state).
        #[arg(long)]
        changes: Option<usize>,
    },
    /// The rental desk (staff): type `rent EMAIL FILM [DAYS]`, `return RENTAL`, `quit`.
    Desk,
    /// Staff: sets the copies owned and prices of a film.
    SetStock {
        /// The film's id.
        movie: i64,
        /// Copies owned.
        #[arg(long)]
        copies: i32,
        /// Rental price per day in minor units (e.g. 299 for 2.99).
        #[arg(long)]
        rent_price: i64,
        /// Purchase price in minor units.
        #[arg(long)]
        buy_price: i64,
        /// ISO 4217 currency.
        #[arg(long, default_value = "EUR")]
        currency: String,
    },
}

#[derive(Debug, Subcommand)]
enum Movies {
    /// Searches titles (case- and accent-insensitive).
    Search {
        /// Words of the title.
        #[arg(default_value = "")]
        query: String,
        /// Only this genre.
        #[arg(long)]
        genre: Option<String>,
        /// Released in or after.
        #[arg(long)]
        from: Option<i32>,
        /// Released in or before.
        #[arg(long)]
        to: Option<i32>,
        /// title, year, rating or id.
        #[arg(long, default_value = "title")]
        order: String,
        /// Reverse the order.
        #[arg(long)]
        desc: bool,
        /// Films per page (max 100).
        #[arg(long, default_value_t = 20)]
        page_size: i32,
        /// Continue from a previous page's token.
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Shows one film and its stock.
    Show {
        /// The film's id.
        id: i64,
    },
    /// Imports films from a JSON array or CSV file (staff). Exit code 2 when rows were rejected.
    Import {
        /// The file (`.csv` for CSV with a header row; anything else is read as JSON).
        file: PathBuf,
    },
    /// Writes every film as JSON lines.
    Export {
        /// Output file; standard output by default.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

impl Cli {
    fn token_file(&self) -> Option<PathBuf> {
        self.token_file.clone().or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".config/videostore/token"))
        })
    }

    fn token(&self) -> anyhow::Result<String> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let path = self.token_file().context("no token: run `videostore signin` first")?;
        let token = std::fs::read_to_string(&path)
            .map_err(|_| anyhow::anyhow!("not signed in: run `videostore signin` first"))?;
        Ok(token.trim().to_owned())
    }

    fn authed<T>(&self, message: T) -> anyhow::Result<Request<T>> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token()?).parse().context("the token is not valid text")?,
        );
        Ok(request)
    }
}

async fn channel(address: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(address.to_owned())
        .with_context(|| format!("invalid address {address:?}"))?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .with_context(|| format!("cannot reach {address}"))
}

/// A failed call as a human message: the service's message, with the code for scripts.
fn call_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", status.message(), status.code())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Health { quiet } => health(&cli, *quiet).await,
        Command::Signup { email, name, password } => {
            let mut accounts = AccountServiceClient::new(channel(&cli.stock).await?);
            let account = accounts
                .register(stock::RegisterRequest {
                    email: email.clone(),
                    name: name.clone(),
                    password: password.clone(),
                })
                .await
                .map_err(call_error)?
                .into_inner();
            println!(
                "Welcome, {}! Account {} created; now `videostore signin`.",
                account.name, account.id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Signin { email, password } => {
            let mut accounts = AccountServiceClient::new(channel(&cli.stock).await?);
            let signed_in = accounts
                .sign_in(stock::SignInRequest { email: email.clone(), password: password.clone() })
                .await
                .map_err(call_error)?
                .into_inner();
            let path = cli.token_file().context("no place to save the token: set --token-file")?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &signed_in.token)
                .with_context(|| format!("saving {}", path.display()))?;
            let name = signed_in.account.map(|a| a.name).unwrap_or_default();
            println!("Signed in as {name} until {}.", format::time(signed_in.expire_time.as_ref()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Movies(movies) => run_movies(&cli, movies).await,
        Command::Rent { movie, days, request_id } => {
            let mut client = StockServiceClient::new(channel(&cli.stock).await?);
            let request_id = request_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let rental = client
                .rent(cli.authed(stock::RentRequest {
                    movie_id: *movie,
                    days: *days,
                    request_id,
                })?)
                .await
                .map_err(call_error)?
                .into_inner();
            println!("{}", format::rental_line(&rental, SystemTime::now()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Return { rental } => {
            let mut client = StockServiceClient::new(channel(&cli.stock).await?);
            let rental = client
                .r#return(cli.authed(stock::ReturnRequest { rental_id: *rental })?)
                .await
                .map_err(call_error)?
                .into_inner();
            println!("{}", format::rental_line(&rental, SystemTime::now()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Buy { movie, request_id } => {
            let mut client = StockServiceClient::new(channel(&cli.stock).await?);
            let request_id = request_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let purchase = client
                .purchase(cli.authed(stock::PurchaseRequest { movie_id: *movie, request_id })?)
                .await
                .map_err(call_error)?
                .into_inner();
            println!(
                "Bought film {} for {} (purchase {}).",
                purchase.movie_id,
                format::money(purchase.price.as_ref()),
                purchase.id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Rentals { open } => {
            let mut client = StockServiceClient::new(channel(&cli.stock).await?);
            let mut rentals = client
                .list_my_rentals(
                    cli.authed(stock::ListMyRentalsRequest { include_returned: !open })?,
                )
                .await
                .map_err(call_error)?
                .into_inner();
            let now = SystemTime::now();
            let mut count = 0;
            while let Some(rental) = rentals.next().await {
                println!("{}", format::rental_line(&rental.map_err(call_error)?, now));
                count += 1;
            }
            if count == 0 {
                println!("No rentals.");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch { movies, changes } => watch(&cli, movies.clone(), *changes).await,
        Command::Desk => desk(&cli).await,
        Command::SetStock { movie, copies, rent_price, buy_price, currency } => {
            let mut client = StockServiceClient::new(channel(&cli.stock).await?);
            let money =
                |minor| Some(stock::Money { currency_code: currency.clone(), minor_units: minor });
            let availability = client
                .set_inventory(cli.authed(stock::SetInventoryRequest {
                    movie_id: *movie,
                    copies_owned: *copies,
                    rental_price_per_day: money(*rent_price),
                    purchase_price: money(*buy_price),
                })?)
                .await
                .map_err(call_error)?
                .into_inner();
            println!("film {}: {}", availability.movie_id, format::availability(&availability));
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn health(cli: &Cli, quiet: bool) -> anyhow::Result<ExitCode> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let mut all_serving = true;
    for (name, address) in
        [("catalogue", &cli.catalogue), ("stock", &cli.stock), ("aggregator", &cli.aggregator)]
    {
        let status = match channel(address).await {
            Ok(channel) => {
                let mut request = Request::new(HealthCheckRequest { service: String::new() });
                request.set_timeout(Duration::from_secs(2));
                match HealthClient::new(channel).check(request).await {
                    Ok(response) => ServingStatus::try_from(response.into_inner().status)
                        .map_or("UNKNOWN", |s| s.as_str_name()),
                    Err(_) => "NOT ANSWERING",
                }
            }
            Err(_) => "UNREACHABLE",
        };
        all_serving &= status == "SERVING";
        if !quiet {
            println!("{name:<11} {address:<28} {status}");
        }
    }
    Ok(if all_serving { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn order(name: &str) -> anyhow::Result<cat::MovieOrder> {
    Ok(match name {
        "title" => cat::MovieOrder::Title,
        "year" => cat::MovieOrder::Year,
        "rating" => cat::MovieOrder::Rating,
        "id" => cat::MovieOrder::Id,
        other => bail!("--order {other:?} is not one of title, year, rating, id"),
    })
}

async fn run_movies(cli: &Cli, command: &Movies) -> anyhow::Result<ExitCode> {
    let mut catalogue = CatalogueServiceClient::new(channel(&cli.catalogue).await?)
        .max_decoding_message_size(16 * 1024 * 1024);
    match command {
        Movies::Search {
            query,
            genre,
            from,
            to,
            order: order_name,
            desc,
            page_size,
            page_token,
        } => {
            let page = catalogue
                .list_movies(cat::ListMoviesRequest {
                    filter: Some(cat::MovieFilter {
                        query: query.clone(),
                        genre: genre.clone().unwrap_or_default(),
                        min_year: from.unwrap_or(0),
                        max_year: to.unwrap_or(0),
                    }),
                    order_by: order(order_name)? as i32,
                    descending: *desc,
                    page_size: *page_size,
                    page_token: page_token.clone(),
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
        Movies::Show { id } => {
            let movie = catalogue
                .get_movie(cat::GetMovieRequest { id: *id })
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
                        .get_availability(stock::GetAvailabilityRequest { movie_id: *id })
                        .await
                        .map_err(call_error)?
                        .into_inner();
                    println!("Stock: {}", format::availability(&availability));
                }
                Err(_) => println!("Stock: unknown (the stock service is not reachable)"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Movies::Import { file } => import(cli, &mut catalogue, file).await,
        Movies::Export { output } => {
            let mut stream = catalogue
                .stream_movies(cat::StreamMoviesRequest { batch_size: 1000, ..Default::default() })
                .await
                .map_err(call_error)?
                .into_inner();
            let mut out: Box<dyn Write> = match output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
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
    }
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

async fn import(
    cli: &Cli,
    catalogue: &mut CatalogueServiceClient<Channel>,
    file: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    const ROWS_PER_MESSAGE: usize = 500;
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
    let summary =
        catalogue.import_movies(cli.authed(outbound)?).await.map_err(call_error)?.into_inner();
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

async fn watch(cli: &Cli, movies: Vec<i64>, stop_after: Option<usize>) -> anyhow::Result<ExitCode> {
    let mut client = StockServiceClient::new(channel(&cli.stock).await?);
    let mut stream = client
        .watch_availability(stock::WatchAvailabilityRequest { movie_ids: movies })
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

async fn desk(cli: &Cli) -> anyhow::Result<ExitCode> {
    use tokio::io::AsyncBufReadExt;
    let mut client = StockServiceClient::new(channel(&cli.stock).await?);
    let (sender, receiver) = tokio::sync::mpsc::channel::<stock::DeskCommand>(16);
    let mut events = client
        .rental_desk(cli.authed(tokio_stream::wrappers::ReceiverStream::new(receiver))?)
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
