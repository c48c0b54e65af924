//! The store with stock on PostgreSQL, over real gRPC: the rental rules, the race for the last
//! copies, retries, and persistence across a restart, as on SQLite.

use std::time::Duration;

use testkit::{StockBackend, TestStore, authed};
use tonic::Code;
use videostore_proto::{aggregator as agg, stock as pb};

use crate::stock::set_copies;

fn rent(movie_id: i64, days: i32, request_id: &str) -> pb::RentRequest {
    pb::RentRequest { movie_id, days, request_id: request_id.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_forty_customers_race_for_three_copies_and_retries_rent_once() {
    let store = TestStore::start_on(StockBackend::Postgres).await;
    set_copies(&store, 15, 3).await;
    let mut tokens = Vec::new();
    for index in 0..40 {
        tokens.push(store.customer(&format!("Racer{index}")).await.1);
    }
    let channel = TestStore::channel(store.stock().addr).await;
    let racers = tokens.iter().enumerate().map(|(index, token)| {
        let mut stock = pb::stock_service_client::StockServiceClient::new(channel.clone());
        let request = authed(rent(15, 1, &format!("race-{index}")), token);
        tokio::spawn(async move { stock.rent(request).await })
    });
    let mut won = 0;
    for result in futures::future::join_all(racers).await {
        match result.unwrap() {
            Ok(_) => won += 1,
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
    }
    assert_eq!(won, 3);

    // One customer's retries, all at once: one rental.
    set_copies(&store, 16, 5).await;
    let (_, token) = store.customer("Retrier").await;
    let retries = (0..10).map(|_| {
        let mut stock = pb::stock_service_client::StockServiceClient::new(channel.clone());
        let request = authed(rent(16, 2, "only-once"), &token);
        tokio::spawn(async move { stock.rent(request).await.map(|r| r.into_inner().id) })
    });
    let mut ids: Vec<i64> =
        futures::future::join_all(retries).await.into_iter().map(|r| r.unwrap().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 1);
    let mut stock = store.stock_client().await;
    let left = stock
        .get_availability(pb::GetAvailabilityRequest { movie_id: 16 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(left.copies_available, 4);
    let reused = stock.rent(authed(rent(16, 3, "only-once"), &token)).await.unwrap_err();
    assert_eq!(reused.code(), Code::InvalidArgument);
    assert!(store.stock_store().invariant_violations().await.unwrap().is_empty());
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_rentals_fees_and_accounts_survive_a_restart() {
    let mut store = TestStore::start_on(StockBackend::Postgres).await;
    set_copies(&store, 12, 1).await;
    let (_, token) = store.customer("Pia").await;
    let mut stock = store.stock_client().await;
    let rental = stock.rent(authed(rent(12, 1, "p1"), &token)).await.unwrap().into_inner();
    let sold_out = stock.rent(authed(rent(12, 1, "p2"), &token)).await.unwrap_err();
    assert_eq!(sold_out.code(), Code::FailedPrecondition);

    store.stop_stock().await;
    store.start_stock().await;
    // The same account signs in, its rental is there, and returning it late costs a day.
    let mut stock = store.stock_client().await;
    let mine: Vec<pb::Rental> = {
        use futures::StreamExt;
        stock
            .list_my_rentals(authed(pb::ListMyRentalsRequest { include_returned: true }, &token))
            .await
            .unwrap()
            .into_inner()
            .map(Result::unwrap)
            .collect()
            .await
    };
    assert_eq!(mine.iter().map(|r| r.id).collect::<Vec<_>>(), [rental.id]);
    store.clock.advance(Duration::from_secs(2 * 24 * 3600 + 60));
    let returned = stock
        .r#return(authed(pb::ReturnRequest { rental_id: rental.id }, &token))
        .await
        .unwrap()
        .into_inner();
    let price_per_day = rental.price.unwrap().minor_units;
    assert_eq!(returned.late_fee.unwrap().minor_units, 2 * price_per_day);

    // The store front reads stock from it like any other.
    let page = store
        .storefront_client()
        .await
        .get_movie_page(agg::GetMoviePageRequest { movie_id: 12, related_limit: 0 })
        .await
        .unwrap()
        .into_inner();
    let availability = page.stock.unwrap().availability.unwrap();
    assert_eq!((availability.copies_owned, availability.copies_available), (1, 1));
    store.stop().await;
}
