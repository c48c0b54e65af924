//! Rentals, returns, late fees, purchases, idempotency, oversell, persistence and the desk.

use std::time::Duration;

use futures::StreamExt;
use testkit::{TestStore, authed};
use tonic::Code;
use videostore_proto::stock::{self as pb};

use crate::stock::set_copies;

fn rent(movie_id: i64, days: i32, request_id: &str) -> pb::RentRequest {
    pb::RentRequest { movie_id, days, request_id: request_id.into() }
}

#[tokio::test]
async fn rent_and_return_on_time_costs_the_rental_price_only() {
    let store = TestStore::start().await;
    set_copies(&store, 11, 2).await;
    let (customer_id, token) = store.customer("Fay").await;
    let mut stock = store.stock_client().await;
    let rental = stock.rent(authed(rent(11, 3, "a"), &token)).await.unwrap().into_inner();
    assert_eq!((rental.customer_id, rental.movie_id, rental.days), (customer_id, 11, 3));
    assert_eq!(rental.state, pb::RentalState::Open as i32);
    assert_eq!(rental.price.unwrap().minor_units, 900, "3 days at 3.00");
    let due = rental.due_at.unwrap().seconds - rental.rented_at.unwrap().seconds;
    assert_eq!(due, 3 * 24 * 3600);
    let available = |s: &mut pb::stock_service_client::StockServiceClient<_>| {
        let mut s = s.clone();
        async move {
            s.get_availability(pb::GetAvailabilityRequest { movie_id: 11 })
                .await
                .unwrap()
                .into_inner()
                .copies_available
        }
    };
    assert_eq!(available(&mut stock).await, 1);

    store.clock.advance(Duration::from_secs(2 * 24 * 3600));
    let returned = stock
        .r#return(authed(pb::ReturnRequest { rental_id: rental.id }, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(returned.state, pb::RentalState::Returned as i32);
    assert_eq!(returned.late_fee.unwrap().minor_units, 0);
    assert_eq!(available(&mut stock).await, 2);
    let again = stock
        .r#return(authed(pb::ReturnRequest { rental_id: rental.id }, &token))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    store.stop().await;
}

#[tokio::test]
async fn late_return_charges_the_daily_price_for_every_day_started() {
    let store = TestStore::start().await;
    set_copies(&store, 12, 1).await;
    let (_, token) = store.customer("Gus").await;
    let mut stock = store.stock_client().await;
    let rental = stock.rent(authed(rent(12, 2, "late"), &token)).await.unwrap().into_inner();
    // Due after 2 days; back after 3 days and 1 hour: 1 day and 1 hour late, so 2 days started.
    store.clock.advance(Duration::from_secs(3 * 24 * 3600 + 3600));
    let returned = stock
        .r#return(authed(pb::ReturnRequest { rental_id: rental.id }, &token))
        .await
        .unwrap()
        .into_inner();
    let fee = returned.late_fee.unwrap();
    assert_eq!((fee.currency_code.as_str(), fee.minor_units), ("EUR", 600));
    store.stop().await;
}

#[tokio::test]
async fn sold_out_unstocked_and_invalid_rentals_are_refused_clearly() {
    let store = TestStore::start().await;
    set_copies(&store, 13, 1).await;
    let (_, first) = store.customer("Hal").await;
    let (_, second) = store.customer("Ida").await;
    let mut stock = store.stock_client().await;
    stock.rent(authed(rent(13, 1, "x"), &first)).await.unwrap();
    let sold_out = stock.rent(authed(rent(13, 1, "y"), &second)).await.unwrap_err();
    assert_eq!(sold_out.code(), Code::FailedPrecondition);
    assert!(sold_out.message().contains("sold out"), "{}", sold_out.message());
    let buy = stock
        .purchase(authed(pb::PurchaseRequest { movie_id: 13, request_id: "p".into() }, &second))
        .await
        .unwrap_err();
    assert_eq!(buy.code(), Code::FailedPrecondition);
    assert_eq!(
        stock.rent(authed(rent(777_777, 1, "z"), &first)).await.unwrap_err().code(),
        Code::NotFound
    );
    for bad in [
        rent(13, 0, "d"),
        rent(13, 91, "d"),
        rent(13, 1, ""),
        rent(-1, 1, "d"),
        rent(13, 1, &"r".repeat(101)),
    ] {
        assert_eq!(
            stock.rent(authed(bad, &first)).await.unwrap_err().code(),
            Code::InvalidArgument
        );
    }
    assert_eq!(stock.rent(rent(13, 1, "anon")).await.unwrap_err().code(), Code::Unauthenticated);
    store.stop().await;
}

#[tokio::test]
async fn a_retried_rent_or_purchase_has_one_effect() {
    let store = TestStore::start().await;
    set_copies(&store, 14, 5).await;
    let (_, token) = store.customer("Jo").await;
    let mut stock = store.stock_client().await;
    let first = stock.rent(authed(rent(14, 2, "same-id"), &token)).await.unwrap().into_inner();
    let retry = stock.rent(authed(rent(14, 2, "same-id"), &token)).await.unwrap().into_inner();
    assert_eq!(first, retry);
    let misuse = stock.rent(authed(rent(14, 5, "same-id"), &token)).await.unwrap_err();
    assert_eq!(misuse.code(), Code::InvalidArgument);

    let buy = pb::PurchaseRequest { movie_id: 14, request_id: "buy-1".into() };
    let bought = stock.purchase(authed(buy.clone(), &token)).await.unwrap().into_inner();
    let again = stock.purchase(authed(buy, &token)).await.unwrap().into_inner();
    assert_eq!(bought, again);
    assert_eq!(bought.price.unwrap().minor_units, 1500);

    let after = stock
        .get_availability(pb::GetAvailabilityRequest { movie_id: 14 })
        .await
        .unwrap()
        .into_inner();
    // One rental out, one copy sold for good.
    assert_eq!((after.copies_owned, after.copies_available), (4, 3));
    let rentals: Vec<_> = stock
        .list_my_rentals(authed(pb::ListMyRentalsRequest { include_returned: true }, &token))
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(rentals.len(), 1);
    assert!(store.stock_store().invariant_violations().await.unwrap().is_empty());
    store.stop().await;
}

#[tokio::test]
async fn sixty_customers_racing_for_three_copies_never_oversell() {
    let store = TestStore::start().await;
    const COPIES: i32 = 3;
    const RACERS: usize = 60;
    set_copies(&store, 15, COPIES).await;
    let mut customers = Vec::new();
    for index in 0..RACERS {
        customers.push(store.customer(&format!("Racer{index}")).await.1);
    }
    let channel = TestStore::channel(store.stock().addr).await;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(RACERS));
    let racers = customers.into_iter().enumerate().map(|(index, token)| {
        let mut stock = pb::stock_service_client::StockServiceClient::new(channel.clone());
        let start = start.clone();
        tokio::spawn(async move {
            start.wait().await;
            stock.rent(authed(rent(15, 1, &format!("race-{index}")), &token)).await
        })
    });
    let results = futures::future::join_all(racers).await;
    let mut won = 0;
    for result in results {
        match result.unwrap() {
            Ok(_) => won += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{}", status.message())
            }
        }
    }
    assert_eq!(won, COPIES as usize);
    let after = store
        .stock_client()
        .await
        .get_availability(pb::GetAvailabilityRequest { movie_id: 15 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.copies_available, 0);
    assert!(store.stock_store().invariant_violations().await.unwrap().is_empty());
    store.stop().await;
}

#[tokio::test]
async fn a_long_history_is_listed_whole_and_in_order_across_pages() {
    let store = TestStore::start().await;
    set_copies(&store, 18, 1).await;
    let (_, ned) = store.customer("Ned").await;
    let mut stock = store.stock_client().await;
    // More rentals than a page (100) holds, each returned a minute after the one before.
    let mut rented = Vec::new();
    for n in 0..205 {
        let rental = stock.rent(authed(rent(18, 1, &format!("n{n}")), &ned)).await.unwrap();
        let id = rental.into_inner().id;
        store.clock.advance(Duration::from_secs(60));
        stock.r#return(authed(pb::ReturnRequest { rental_id: id }, &ned)).await.unwrap();
        rented.push(id);
    }
    let open = stock.rent(authed(rent(18, 1, "open"), &ned)).await.unwrap().into_inner();
    let listed: Vec<i64> = stock
        .list_my_rentals(authed(pb::ListMyRentalsRequest { include_returned: true }, &ned))
        .await
        .unwrap()
        .into_inner()
        .map(|rental| rental.unwrap().id)
        .collect()
        .await;
    let expected: Vec<i64> = std::iter::once(open.id).chain(rented.into_iter().rev()).collect();
    assert_eq!(listed, expected, "the open one, then the latest return first, each once");
    store.stop().await;
}

#[tokio::test]
async fn customers_see_and_return_only_their_own_rentals() {
    let store = TestStore::start().await;
    set_copies(&store, 16, 3).await;
    set_copies(&store, 17, 3).await;
    let (_, kim) = store.customer("Kim").await;
    let (_, lee) = store.customer("Lee").await;
    let mut stock = store.stock_client().await;
    let kims = stock.rent(authed(rent(16, 1, "k1"), &kim)).await.unwrap().into_inner();
    let kims_second = stock.rent(authed(rent(17, 5, "k2"), &kim)).await.unwrap().into_inner();
    let lees = stock.rent(authed(rent(16, 2, "l1"), &lee)).await.unwrap().into_inner();

    let denied =
        stock.r#return(authed(pb::ReturnRequest { rental_id: kims.id }, &lee)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    stock.r#return(authed(pb::ReturnRequest { rental_id: kims.id }, &kim)).await.unwrap();

    let listed: Vec<pb::Rental> = stock
        .list_my_rentals(authed(pb::ListMyRentalsRequest { include_returned: true }, &kim))
        .await
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [kims_second.id, kims.id],
        "open first"
    );
    assert!(listed.iter().all(|r| r.id != lees.id));
    let open_only: Vec<_> = stock
        .list_my_rentals(authed(pb::ListMyRentalsRequest { include_returned: false }, &kim))
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(open_only.len(), 1);
    // Staff may close anyone's rental.
    let staff = store.staff_token().await;
    stock.r#return(authed(pb::ReturnRequest { rental_id: lees.id }, &staff)).await.unwrap();
    assert_eq!(
        stock.list_my_rentals(pb::ListMyRentalsRequest::default()).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    store.stop().await;
}

#[tokio::test]
async fn rentals_and_stock_survive_a_restart() {
    let mut store = TestStore::start().await;
    set_copies(&store, 18, 2).await;
    let (_, token) = store.customer("Max").await;
    let rental = store
        .stock_client()
        .await
        .rent(authed(rent(18, 4, "persist"), &token))
        .await
        .unwrap()
        .into_inner();
    store.stop_stock().await;
    store.start_stock().await;
    let mut stock = store.stock_client().await;
    let after = stock
        .get_availability(pb::GetAvailabilityRequest { movie_id: 18 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((after.copies_owned, after.copies_available), (2, 1));
    // The token still works, the rental is still there, and a retry still finds it.
    let retry = stock.rent(authed(rent(18, 4, "persist"), &token)).await.unwrap().into_inner();
    assert_eq!(retry.id, rental.id);
    let listed: Vec<_> = stock
        .list_my_rentals(authed(pb::ListMyRentalsRequest::default(), &token))
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(listed.len(), 1);
    store.stop().await;
}

#[tokio::test]
async fn a_request_id_is_remembered_for_a_day_then_makes_a_new_rental() {
    let mut store = TestStore::start().await;
    set_copies(&store, 19, 3).await;
    let (_, token) = store.customer("Kim").await;
    let mut stock = store.stock_client().await;
    let first = stock.rent(authed(rent(19, 1, "kim-1"), &token)).await.unwrap().into_inner();
    // Within the day (and across a restart) the same id is a retry.
    store.clock.advance(Duration::from_secs(23 * 3600));
    store.stop_stock().await;
    store.start_stock().await;
    let mut stock = store.stock_client().await;
    let retry = stock.rent(authed(rent(19, 1, "kim-1"), &token)).await.unwrap().into_inner();
    assert_eq!(retry.id, first.id);
    // A day on, the service forgets it (at start, and every ten minutes): a new rental.
    store.clock.advance(Duration::from_secs(2 * 3600));
    store.stop_stock().await;
    store.start_stock().await;
    let mut stock = store.stock_client().await;
    let second = stock.rent(authed(rent(19, 1, "kim-1"), &token)).await.unwrap().into_inner();
    assert_ne!(second.id, first.id);
    let left = stock
        .get_availability(pb::GetAvailabilityRequest { movie_id: 19 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(left.copies_available, 1, "two rentals, two copies out");
    store.stop().await;
}

#[tokio::test]
async fn rental_desk_serves_walk_ins_and_reports_stock_changes() {
    let store = TestStore::start().await;
    set_copies(&store, 19, 1).await;
    store.register("walkin@example.com", "Walk In", "walk in please").await;
    let (_, customer) = store.customer("Ned").await;
    let staff = store.staff_token().await;
    let mut stock = store.stock_client().await;

    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let refused = stock
        .rental_desk(authed(
            tokio_stream::wrappers::ReceiverStream::new(tokio::sync::mpsc::channel(1).1),
            &customer,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let mut events = stock
        .rental_desk(authed(tokio_stream::wrappers::ReceiverStream::new(receiver), &staff))
        .await
        .unwrap()
        .into_inner();
    let command =
        |id: &str, action| pb::DeskCommand { command_id: id.into(), action: Some(action) };
    sender
        .send(command(
            "c1",
            pb::desk_command::Action::Rent(pb::DeskRent {
                customer_email: "WALKIN@example.com".into(),
                movie_id: 19,
                days: 2,
                request_id: "desk-1".into(),
            }),
        ))
        .await
        .unwrap();
    let pb::desk_event::Event::Result(result) = next_event(&mut events).await else {
        panic!("result first")
    };
    assert_eq!((result.command_id.as_str(), result.code), ("c1", 0));
    let rental = result.rental.unwrap();
    let pb::desk_event::Event::Availability(change) = next_event(&mut events).await else {
        panic!("then the change")
    };
    assert_eq!((change.movie_id, change.copies_available), (19, 0));

    // A failing command gives an error result; the desk stays open.
    sender
        .send(command(
            "c2",
            pb::desk_command::Action::Rent(pb::DeskRent {
                customer_email: "nobody@example.com".into(),
                movie_id: 19,
                days: 1,
                request_id: "desk-2".into(),
            }),
        ))
        .await
        .unwrap();
    let pb::desk_event::Event::Result(result) = next_event(&mut events).await else {
        panic!("result")
    };
    assert_eq!((result.command_id.as_str(), result.code), ("c2", Code::NotFound as i32));
    assert!(result.message.contains("nobody@example.com"));

    sender
        .send(command(
            "c3",
            pb::desk_command::Action::Return(pb::DeskReturn { rental_id: rental.id }),
        ))
        .await
        .unwrap();
    let pb::desk_event::Event::Result(result) = next_event(&mut events).await else {
        panic!("result")
    };
    assert_eq!((result.command_id.as_str(), result.code), ("c3", 0));
    let pb::desk_event::Event::Availability(change) = next_event(&mut events).await else {
        panic!("change")
    };
    assert_eq!(change.copies_available, 1);

    // A change made elsewhere to a film this desk touched shows up too.
    let online = stock.rent(authed(rent(19, 1, "online"), &customer)).await.unwrap().into_inner();
    let pb::desk_event::Event::Availability(change) = next_event(&mut events).await else {
        panic!("change")
    };
    assert_eq!(change.copies_available, 0);
    stock.r#return(authed(pb::ReturnRequest { rental_id: online.id }, &customer)).await.unwrap();
    drop(sender);
    store.stop().await;
}

async fn next_event(events: &mut tonic::Streaming<pb::DeskEvent>) -> pb::desk_event::Event {
    tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("a desk event within 5 s")
        .expect("the desk stream is open")
        .expect("no error")
        .event
        .expect("an event")
}

#[tokio::test]
async fn twenty_buyers_for_two_copies_buy_exactly_two() {
    let store = TestStore::start().await;
    set_copies(&store, 23, 2).await;
    let mut buyers = Vec::new();
    for index in 0..20 {
        buyers.push(store.customer(&format!("Buyer{index}")).await.1);
    }
    let channel = TestStore::channel(store.stock().addr).await;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(buyers.len()));
    let attempts = buyers.into_iter().enumerate().map(|(index, token)| {
        let mut stock = pb::stock_service_client::StockServiceClient::new(channel.clone());
        let start = start.clone();
        tokio::spawn(async move {
            start.wait().await;
            stock
                .purchase(authed(
                    pb::PurchaseRequest { movie_id: 23, request_id: format!("buy-{index}") },
                    &token,
                ))
                .await
        })
    });
    let mut bought = 0;
    for attempt in futures::future::join_all(attempts).await {
        match attempt.unwrap() {
            Ok(_) => bought += 1,
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition),
        }
    }
    assert_eq!(bought, 2);
    let after = store
        .stock_client()
        .await
        .get_availability(pb::GetAvailabilityRequest { movie_id: 23 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (after.copies_owned, after.copies_available),
        (0, 0),
        "bought copies leave stock for good"
    );
    assert!(store.stock_store().invariant_violations().await.unwrap().is_empty());
    store.stop().await;
}

/// One customer cannot empty the shop: past the cap of open rentals a rental is refused with
/// what to do, and returning one makes room again.
#[tokio::test]
async fn a_customer_past_the_cap_of_open_rentals_is_told_to_return_one() {
    let store = TestStore::start().await;
    let (_, token) = store.customer("Greedy").await;
    let mut stock = store.stock_client().await;
    let rent = |movie_id: i64| {
        authed(
            pb::RentRequest { movie_id, days: 1, request_id: format!("greedy-{movie_id}") },
            &token,
        )
    };
    let mut first = None;
    let cap = i64::from(testkit::MAX_OPEN_RENTALS);
    for film in 1..=cap {
        let rental = stock.rent(rent(film)).await.unwrap().into_inner();
        first.get_or_insert(rental.id);
    }
    let refused = stock.rent(rent(cap + 1)).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("return one first"), "{}", refused.message());
    let film_11 = stock.get_availability(pb::GetAvailabilityRequest { movie_id: cap + 1 }).await;
    let before = film_11.unwrap().into_inner().copies_available;
    stock.r#return(authed(pb::ReturnRequest { rental_id: first.unwrap() }, &token)).await.unwrap();
    stock.rent(rent(cap + 1)).await.unwrap();
    let film_11 = stock.get_availability(pb::GetAvailabilityRequest { movie_id: cap + 1 }).await;
    assert_eq!(film_11.unwrap().into_inner().copies_available, before - 1);
    store.stop().await;
}
