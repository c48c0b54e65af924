//! Rentals on the embedded database: customers renting and returning as fast as they can, then
//! the invariant checked from outside.

use std::{sync::Arc, time::Duration};

use serde::Serialize;
use tonic::Request;
use videostore_proto::stock::{
    self, account_service_client::AccountServiceClient, stock_service_client::StockServiceClient,
};

use crate::{clients::channels, load, services};

/// The rentals scenario.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RentalsResult {
    pub(crate) customers: usize,
    pub(crate) seconds: f64,
    pub(crate) pairs: u64,
    pub(crate) pairs_per_second: f64,
    pub(crate) failed_calls: u64,
    pub(crate) sold_out_refusals: u64,
    pub(crate) invariant_holds: bool,
    pub(crate) open_rentals_left: i64,
}

/// 64 customers renting and returning as fast as they can, spread over every stock replica;
/// then the invariant.
pub(crate) async fn rentals(
    running: &services::Running,
    duration: Duration,
) -> anyhow::Result<RentalsResult> {
    const CUSTOMERS: usize = 64;
    const FILMS: i64 = 8;
    // Four connections in all, spread over the replicas (each customer keeps to one).
    let per_replica = 4usize.div_ceil(running.stocks.len());
    let mut stock_channels = Vec::new();
    for replica in &running.stocks {
        stock_channels.extend(channels(*replica, per_replica).await?);
    }
    let mut accounts = AccountServiceClient::new(stock_channels[0].clone());
    let staff = accounts
        .sign_in(stock::SignInRequest {
            email: services::STAFF_EMAIL.into(),
            password: services::STAFF_PASSWORD.into(),
        })
        .await?
        .into_inner()
        .token;
    let mut stock_client = StockServiceClient::new(stock_channels[0].clone());
    for movie_id in 1..=FILMS {
        let mut request = Request::new(stock::SetInventoryRequest {
            movie_id,
            copies_owned: 10_000,
            rental_price_per_day: Some(stock::Money {
                currency_code: "EUR".into(),
                minor_units: 199,
            }),
            purchase_price: Some(stock::Money { currency_code: "EUR".into(), minor_units: 999 }),
        });
        request.metadata_mut().insert("authorization", format!("Bearer {staff}").parse()?);
        stock_client.set_inventory(request).await?;
    }
    let mut tokens = Vec::with_capacity(CUSTOMERS);
    for index in 0..CUSTOMERS {
        let register = tonic::Request::new(stock::RegisterRequest {
            email: format!("bench{index}@example.com"),
            name: format!("Bench {index}"),
            password: crate::clients::PASSWORD.into(),
        });
        tokens
            .push(crate::clients::register_with(&mut accounts, &running.mailbox, register).await?);
    }
    let tokens = Arc::new(tokens);
    let tokens_for_check = Arc::clone(&tokens);
    let pool = stock_channels.clone();
    let sold_out = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let refusals = Arc::clone(&sold_out);
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let measured = load::run(CUSTOMERS, duration, move |worker| {
        let mut client = StockServiceClient::new(pool[worker % pool.len()].clone());
        let token = tokens[worker].clone();
        let refusals = Arc::clone(&refusals);
        let sequence = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            let authed = |message| {
                let mut request = Request::new(message);
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
                request
            };
            let movie_id = 1 + (worker as i64 % FILMS);
            let rental = match client
                .rent(authed(stock::RentRequest {
                    movie_id,
                    days: 1,
                    request_id: format!("bench-{worker}-{sequence}"),
                }))
                .await
            {
                Ok(rental) => rental.into_inner(),
                Err(status) => {
                    if status.code() == tonic::Code::FailedPrecondition {
                        refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    return false;
                }
            };
            let returned = Request::new(stock::ReturnRequest { rental_id: rental.id });
            let mut returned = returned;
            returned
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
            client.r#return(returned).await.is_ok()
        }
    })
    .await;

    // The invariant, checked from outside: for every film, copies available = copies owned −
    // open rentals (counted from every customer's own list).
    let availability = stock_client
        .batch_get_availability(stock::BatchGetAvailabilityRequest {
            movie_ids: (1..=FILMS).collect(),
        })
        .await?
        .into_inner()
        .availabilities;
    let mut open = std::collections::HashMap::<i64, i64>::new();
    for token in tokens_for_check.iter() {
        let mut request = Request::new(stock::ListMyRentalsRequest { include_returned: false });
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
        let mut stream = stock_client.list_my_rentals(request).await?.into_inner();
        while let Some(rental) = stream.message().await? {
            *open.entry(rental.movie_id).or_default() += 1;
        }
    }
    let open_left: i64 = open.values().sum();
    let invariant_holds = availability.iter().all(|a| {
        i64::from(a.copies_available)
            == i64::from(a.copies_owned) - open.get(&a.movie_id).copied().unwrap_or(0)
    });
    Ok(RentalsResult {
        customers: CUSTOMERS,
        seconds: duration.as_secs_f64(),
        pairs: measured.calls,
        pairs_per_second: measured.throughput,
        failed_calls: measured.errors,
        sold_out_refusals: sold_out.load(std::sync::atomic::Ordering::Relaxed),
        invariant_holds,
        open_rentals_left: open_left,
    })
}
