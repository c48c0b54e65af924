//! Stock: availability reads, staff inventory, and the live availability stream.

use std::time::Duration;

use futures::StreamExt;
use testkit::{TestStore, authed};
use tonic::Code;
use videostore_proto::stock::{self as pb};

fn eur(minor: i64) -> Option<pb::Money> {
    Some(pb::Money { currency_code: "EUR".into(), minor_units: minor })
}

pub(crate) async fn set_copies(store: &TestStore, movie_id: i64, copies: i32) -> pb::Availability {
    let staff = store.staff_token().await;
    store
        .stock_client()
        .await
        .set_inventory(authed(
            pb::SetInventoryRequest {
                movie_id,
                copies_owned: copies,
                rental_price_per_day: eur(300),
                purchase_price: eur(1500),
            },
            &staff,
        ))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn availability_of_stocked_and_unstocked_films() {
    let store = TestStore::start().await;
    let mut stock = store.stock_client().await;
    let one = stock
        .get_availability(pb::GetAvailabilityRequest { movie_id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert!(one.stocked && one.copies_owned > 0 && one.copies_available == one.copies_owned);
    assert_eq!(one.rental_price_per_day.unwrap().currency_code, "EUR");
    let batch = stock
        .batch_get_availability(pb::BatchGetAvailabilityRequest { movie_ids: vec![2, 900_000, 1] })
        .await
        .unwrap()
        .into_inner()
        .availabilities;
    assert_eq!(
        batch.iter().map(|a| (a.movie_id, a.stocked)).collect::<Vec<_>>(),
        [(2, true), (900_000, false), (1, true)]
    );
    let status = stock
        .batch_get_availability(pb::BatchGetAvailabilityRequest { movie_ids: vec![] })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    store.stop().await;
}

#[tokio::test]
async fn set_inventory_is_staff_only_and_validated() {
    let store = TestStore::start().await;
    let (_, customer) = store.customer("Dan").await;
    let staff = store.staff_token().await;
    let mut stock = store.stock_client().await;
    let request = pb::SetInventoryRequest {
        movie_id: 42,
        copies_owned: 3,
        rental_price_per_day: eur(250),
        purchase_price: eur(1999),
    };
    assert_eq!(
        stock.set_inventory(request.clone()).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        stock.set_inventory(authed(request.clone(), &customer)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let set = stock.set_inventory(authed(request.clone(), &staff)).await.unwrap().into_inner();
    assert_eq!((set.copies_owned, set.copies_available), (3, 3));
    assert_eq!(set.purchase_price.unwrap().minor_units, 1999);

    for bad in [
        pb::SetInventoryRequest { copies_owned: -1, ..request.clone() },
        pb::SetInventoryRequest { rental_price_per_day: eur(-5), ..request.clone() },
        pb::SetInventoryRequest {
            purchase_price: Some(pb::Money { currency_code: "USD".into(), minor_units: 10 }),
            ..request.clone()
        },
        pb::SetInventoryRequest { rental_price_per_day: None, ..request.clone() },
        pb::SetInventoryRequest { movie_id: 0, ..request.clone() },
    ] {
        let status = stock.set_inventory(authed(bad, &staff)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    }
    store.stop().await;
}

#[tokio::test]
async fn watch_sends_the_current_state_then_each_committed_change() {
    let store = TestStore::start().await;
    set_copies(&store, 7, 2).await;
    let mut stock = store.stock_client().await;
    let mut watch = stock
        .watch_availability(pb::WatchAvailabilityRequest {
            movie_ids: vec![7, 8],
            resume_from: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert!(first.snapshot);
    assert_eq!(first.availabilities.iter().map(|a| a.movie_id).collect::<Vec<_>>(), [7, 8]);
    assert_eq!(first.availabilities[0].copies_available, 2);

    let (_, token) = store.customer("Eve").await;
    // A change to a film nobody watches here is not sent.
    stock
        .rent(authed(pb::RentRequest { movie_id: 9, days: 1, request_id: "r9".into() }, &token))
        .await
        .unwrap();
    let rental = stock
        .rent(authed(pb::RentRequest { movie_id: 7, days: 1, request_id: "r7".into() }, &token))
        .await
        .unwrap()
        .into_inner();
    let change =
        tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap().unwrap();
    assert!(!change.snapshot);
    assert_eq!(change.availabilities.len(), 1);
    assert_eq!(
        (change.availabilities[0].movie_id, change.availabilities[0].copies_available),
        (7, 1)
    );
    let version = change.availabilities[0].version;

    stock.r#return(authed(pb::ReturnRequest { rental_id: rental.id }, &token)).await.unwrap();
    let back =
        tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(back.availabilities[0].copies_available, 2);
    assert!(back.availabilities[0].version > version);
    store.stop().await;
}

#[tokio::test]
async fn a_reconnecting_watcher_resumes_from_the_versions_it_has() {
    let store = TestStore::start().await;
    set_copies(&store, 18, 3).await;
    set_copies(&store, 19, 3).await;
    let mut stock = store.stock_client().await;
    let first = stock
        .watch_availability(pb::WatchAvailabilityRequest {
            movie_ids: vec![18, 19],
            resume_from: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    let had: Vec<pb::FilmVersion> = first
        .availabilities
        .iter()
        .map(|a| pb::FilmVersion { movie_id: a.movie_id, version: a.version })
        .collect();
    // While the client is away: two changes to film 18, none to film 19.
    let (_, token) = store.customer("Ray").await;
    let rental = stock
        .rent(authed(pb::RentRequest { movie_id: 18, days: 1, request_id: "a".into() }, &token))
        .await
        .unwrap()
        .into_inner();
    stock.r#return(authed(pb::ReturnRequest { rental_id: rental.id }, &token)).await.unwrap();

    let mut resumed = stock
        .watch_availability(pb::WatchAvailabilityRequest {
            movie_ids: vec![18, 19],
            resume_from: had.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let missed = resumed.next().await.unwrap().unwrap();
    assert!(!missed.snapshot, "a resumed film gets its changes, not its current state");
    let versions: Vec<(i64, i64, i32)> =
        missed.availabilities.iter().map(|a| (a.movie_id, a.version, a.copies_available)).collect();
    let v = had[0].version;
    assert_eq!(versions, [(18, v + 1, 2), (18, v + 2, 3)]);
    // Nothing is sent twice: the next message is the next change.
    stock
        .rent(authed(pb::RentRequest { movie_id: 19, days: 1, request_id: "b".into() }, &token))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), resumed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.availabilities[0].movie_id, 19);
    assert_eq!(next.availabilities[0].version, had[1].version + 1);

    // Nothing changed since the versions given: an empty change, and the stream is open.
    let now = pb::FilmVersion { movie_id: 18, version: v + 2 };
    let quiet = stock
        .watch_availability(pb::WatchAvailabilityRequest {
            movie_ids: vec![18],
            resume_from: vec![now],
        })
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert!(!quiet.snapshot && quiet.availabilities.is_empty());
    let bad = stock
        .watch_availability(pb::WatchAvailabilityRequest {
            movie_ids: vec![18],
            resume_from: vec![pb::FilmVersion { movie_id: 18, version: -1 }],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    store.stop().await;
}

#[tokio::test]
async fn watch_of_everything_and_clean_end_at_shutdown() {
    let mut store = TestStore::start().await;
    let mut stock = store.stock_client().await;
    let mut watch = stock
        .watch_availability(pb::WatchAvailabilityRequest {
            movie_ids: vec![],
            resume_from: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut snapshot = 0;
    while snapshot < 600 {
        let message = watch.next().await.unwrap().unwrap();
        assert!(message.snapshot);
        snapshot += message.availabilities.len();
    }
    assert_eq!(snapshot, 600);
    // Graceful shutdown ends the stream instead of hanging the server.
    store.stop_stock().await;
    // The stream ends with UNAVAILABLE, so a client knows to reconnect rather than stop.
    let end = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap();
    let status = end.expect("a final status").expect_err("an error status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_never_see_stock_go_backwards_under_concurrent_changes() {
    let store = TestStore::start().await;
    set_copies(&store, 22, 40).await;
    let mut watch = store
        .stock_client()
        .await
        .watch_availability(pb::WatchAvailabilityRequest {
            movie_ids: vec![22],
            resume_from: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let snapshot = watch.next().await.unwrap().unwrap();
    let mut version = snapshot.availabilities[0].version;
    let (_, token) = store.customer("Busy").await;
    let channel = TestStore::channel(store.stock().addr).await;
    let renters = (0..30).map(|index| {
        let mut stock = pb::stock_service_client::StockServiceClient::new(channel.clone());
        let token = token.clone();
        tokio::spawn(async move {
            stock
                .rent(authed(
                    pb::RentRequest { movie_id: 22, days: 1, request_id: format!("busy-{index}") },
                    &token,
                ))
                .await
                .unwrap()
        })
    });
    futures::future::join_all(renters).await;
    let mut last = snapshot.availabilities[0].copies_available;
    while last != 10 {
        let message = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("changes keep coming until the final state")
            .unwrap()
            .unwrap();
        for availability in message.availabilities {
            assert!(
                availability.version > version,
                "version went from {version} to {}",
                availability.version
            );
            assert!(availability.copies_available < last, "stock went backwards");
            version = availability.version;
            last = availability.copies_available;
        }
    }
    let now = store
        .stock_client()
        .await
        .get_availability(pb::GetAvailabilityRequest { movie_id: 22 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((now.copies_available, now.version), (10, version));
    store.stop().await;
}

#[tokio::test]
async fn an_idle_watch_sends_heartbeats() {
    let store = TestStore::start_with_heartbeat(Duration::from_millis(100)).await;
    let mut watch = store
        .stock_client()
        .await
        .watch_availability(pb::WatchAvailabilityRequest {
            movie_ids: vec![3],
            resume_from: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(watch.next().await.unwrap().unwrap().snapshot);
    for _ in 0..2 {
        let beat = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(!beat.snapshot && beat.availabilities.is_empty(), "{beat:?}");
    }
    // One every 100 ms: a second brings about ten, not a flood and not silence.
    let mut beats = 0;
    let second = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(second);
    loop {
        tokio::select! {
            beat = watch.next() => {
                assert!(beat.unwrap().unwrap().availabilities.is_empty());
                beats += 1;
            }
            () = &mut second => break,
        }
    }
    assert!((3..=15).contains(&beats), "{beats} heartbeats in a second, one per 100 ms asked");
    store.stop().await;
}
