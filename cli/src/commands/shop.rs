//! Renting, returning and buying, the customer's rentals, and staff stock settings.

use std::{process::ExitCode, time::SystemTime};

use futures::StreamExt;
use videostore_proto::stock::{self, stock_service_client::StockServiceClient};

use super::{call_error, channel};
use crate::{Cli, format};

/// Rents a copy of a film; a fresh request id unless one is given (a retry).
pub(crate) async fn rent(
    cli: &Cli,
    movie_id: i64,
    days: i32,
    request_id: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut client = StockServiceClient::new(channel(&cli.stock).await?);
    let request_id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let rental = client
        .rent(cli.authed(stock::RentRequest { movie_id, days, request_id }).await?)
        .await
        .map_err(call_error)?
        .into_inner();
    println!("{}", format::rental_line(&rental, SystemTime::now()));
    Ok(ExitCode::SUCCESS)
}

/// Returns a rental.
pub(crate) async fn give_back(cli: &Cli, rental_id: i64) -> anyhow::Result<ExitCode> {
    let mut client = StockServiceClient::new(channel(&cli.stock).await?);
    let rental = client
        .r#return(cli.authed(stock::ReturnRequest { rental_id }).await?)
        .await
        .map_err(call_error)?
        .into_inner();
    println!("{}", format::rental_line(&rental, SystemTime::now()));
    Ok(ExitCode::SUCCESS)
}

/// Buys a copy of a film.
pub(crate) async fn buy(
    cli: &Cli,
    movie_id: i64,
    request_id: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut client = StockServiceClient::new(channel(&cli.stock).await?);
    let request_id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let purchase = client
        .purchase(cli.authed(stock::PurchaseRequest { movie_id, request_id }).await?)
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

/// Lists the caller's rentals, open ones first.
pub(crate) async fn rentals(cli: &Cli, open_only: bool) -> anyhow::Result<ExitCode> {
    let mut client = StockServiceClient::new(channel(&cli.stock).await?);
    let mut rentals = client
        .list_my_rentals(
            cli.authed(stock::ListMyRentalsRequest { include_returned: !open_only }).await?,
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

/// A film's prices, in minor units of one currency.
pub(crate) struct Prices<'a> {
    /// Per day of rental.
    pub(crate) rent: i64,
    /// To buy.
    pub(crate) buy: i64,
    /// ISO 4217 code.
    pub(crate) currency: &'a str,
}

/// Staff: sets the copies owned and prices of a film.
pub(crate) async fn set_stock(
    cli: &Cli,
    movie_id: i64,
    copies_owned: i32,
    prices: Prices<'_>,
) -> anyhow::Result<ExitCode> {
    let mut client = StockServiceClient::new(channel(&cli.stock).await?);
    let money = |minor| {
        Some(stock::Money { currency_code: prices.currency.to_owned(), minor_units: minor })
    };
    let availability = client
        .set_inventory(
            cli.authed(stock::SetInventoryRequest {
                movie_id,
                copies_owned,
                rental_price_per_day: money(prices.rent),
                purchase_price: money(prices.buy),
            })
            .await?,
        )
        .await
        .map_err(call_error)?
        .into_inner();
    println!("film {}: {}", availability.movie_id, format::availability(&availability));
    Ok(ExitCode::SUCCESS)
}
