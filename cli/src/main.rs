//! `videostore`: the video store from a terminal, over the same gRPC contracts as the web app.
//!
//! Exit codes: 0 success; 1 the command failed (the message says why); 2 `movies import`
//! finished but rejected some rows (each is listed with its reason).

mod commands;
mod format;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tonic::Request;
use videostore_cli::rows;

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
    /// Starts a customer account: a confirmation code is mailed to the address.
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
    /// Finishes a signup with the code from its mail, and signs the new account in.
    Confirm {
        /// The confirmation code from the mail.
        code: String,
        /// The password given to `signup`.
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
    /// Signs out everywhere (every session of the account ends) and forgets the saved token.
    Signout,
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
    /// Where the token is saved.
    fn token_file(&self) -> Option<PathBuf> {
        self.token_file.clone().or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".config/videostore/token"))
        })
    }

    /// The bearer token: given, or saved by `signin` (refreshed when about to expire).
    async fn token(&self) -> anyhow::Result<String> {
        match &self.token {
            Some(token) => Ok(token.clone()),
            None => commands::account::saved_token(self).await,
        }
    }

    /// `message` with the bearer token attached.
    async fn authed<T>(&self, message: T) -> anyhow::Result<Request<T>> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token().await?)
                .parse()
                .context("the token is not valid text")?,
        );
        Ok(request)
    }
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
        Command::Health { quiet } => commands::health::check(&cli, *quiet).await,
        Command::Signup { email, name, password } => {
            commands::account::signup(&cli, email, name, password).await
        }
        Command::Confirm { code, password } => {
            commands::account::confirm(&cli, code, password).await
        }
        Command::Signin { email, password } => {
            commands::account::signin(&cli, email, password).await
        }
        Command::Signout => commands::account::signout(&cli).await,
        Command::Movies(Movies::Search {
            query,
            genre,
            from,
            to,
            order,
            desc,
            page_size,
            page_token,
        }) => {
            let search = commands::movies::Search {
                query,
                genre: genre.as_deref(),
                from: *from,
                to: *to,
                order,
                descending: *desc,
                page_size: *page_size,
                page_token,
            };
            commands::movies::search(&cli, search).await
        }
        Command::Movies(Movies::Show { id }) => commands::movies::show(&cli, *id).await,
        Command::Movies(Movies::Import { file }) => commands::import::import(&cli, file).await,
        Command::Movies(Movies::Export { output }) => {
            commands::movies::export(&cli, output.as_deref()).await
        }
        Command::Rent { movie, days, request_id } => {
            commands::shop::rent(&cli, *movie, *days, request_id.clone()).await
        }
        Command::Return { rental } => commands::shop::give_back(&cli, *rental).await,
        Command::Buy { movie, request_id } => {
            commands::shop::buy(&cli, *movie, request_id.clone()).await
        }
        Command::Rentals { open } => commands::shop::rentals(&cli, *open).await,
        Command::Watch { movies, changes } => {
            commands::watch::watch(&cli, movies.clone(), *changes).await
        }
        Command::Desk => commands::desk::desk(&cli).await,
        Command::SetStock { movie, copies, rent_price, buy_price, currency } => {
            let prices = commands::shop::Prices { rent: *rent_price, buy: *buy_price, currency };
            commands::shop::set_stock(&cli, *movie, *copies, prices).await
        }
    }
}
