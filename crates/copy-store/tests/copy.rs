//! Moving a shop: a store used on SQLite (films added and deleted, customers renting, returning
//! late and buying) is copied by `videostore-copy-store` into empty PostgreSQL databases, and the
//! store started on those serves the same shop; a second copy into them is refused.

use std::{process::Command, time::Duration};

use futures::StreamExt;
use testkit::{TestStore, authed};
use videostore_proto::{catalogue as cat, stock as pb};

const EMAIL: &str = "mover@example.com";
const PASSWORD: &str = "mover password";

fn film(title: &str, key: &str) -> cat::Movie {
    cat::Movie {
        title: title.into(),
        release_year: 2001,
        genres: vec!["Drama".into()],
        runtime_minutes: 100,
        director: "Someone".into(),
        rating: cat::MpaaRating::Pg as i32,
        synopsis: "A film.".into(),
        audience_rating: 7.0,
        external_key: key.into(),
        ..Default::default()
    }
}

fn money(minor_units: i64) -> Option<pb::Money> {
    Some(pb::Money { currency_code: "EUR".into(), minor_units })
}

/// What a customer and anyone see of the shop.
#[derive(Debug, PartialEq)]
struct Seen {
    films: i64,
    kept: cat::Movie,
    rentals: Vec<pb::Rental>,
    stock: Vec<pb::Availability>,
}

async fn seen(store: &TestStore, kept: i64, token: &str) -> Seen {
    let mut catalogue = store.catalogue_client().await;
    let page = catalogue.list_movies(cat::ListMoviesRequest::default()).await.unwrap();
    let kept = catalogue.get_movie(cat::GetMovieRequest { id: kept }).await.unwrap().into_inner();
    let rentals: Vec<pb::Rental> = store
        .stock_client()
        .await
        .list_my_rentals(authed(pb::ListMyRentalsRequest { include_returned: true }, token))
        .await
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect()
        .await;
    let stock = store
        .stock_client()
        .await
        .batch_get_availability(pb::BatchGetAvailabilityRequest {
            movie_ids: vec![1, 2, 3, kept.id],
        })
        .await
        .unwrap()
        .into_inner()
        .availabilities;
    Seen { films: page.into_inner().total_size, kept, rentals, stock }
}

fn copy_store(data_dir: &std::path::Path, catalogue: &str, stock: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_videostore-copy-store"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--catalogue-to", catalogue, "--stock-to", stock])
        .env_remove("CATALOGUE_DATABASE_URL")
        .env_remove("STOCK_DATABASE_URL")
        .output()
        .expect("the copy tool runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_on_sqlite_moves_to_postgres_whole_and_only_once() {
    // A shop used for a while on the embedded databases.
    let store = TestStore::start().await;
    let staff = store.staff_token().await;
    let mut catalogue = store.catalogue_client().await;
    let create = |title: &str, key: &str, request_id: &str| cat::CreateMovieRequest {
        movie: Some(film(title, key)),
        request_id: request_id.into(),
    };
    let kept = catalogue
        .create_movie(authed(create("Kept", "kept-1", "create-kept"), &staff))
        .await
        .unwrap()
        .into_inner();
    let gone = catalogue
        .create_movie(authed(create("Gone", "gone-1", ""), &staff))
        .await
        .unwrap()
        .into_inner();
    catalogue.delete_movie(authed(cat::DeleteMovieRequest { id: gone.id }, &staff)).await.unwrap();
    let mut stock = store.stock_client().await;
    for movie_id in [1, 2, 3, kept.id] {
        let inventory = pb::SetInventoryRequest {
            movie_id,
            copies_owned: 4,
            rental_price_per_day: money(250),
            purchase_price: money(1500),
        };
        stock.set_inventory(authed(inventory, &staff)).await.unwrap();
    }
    let token = store.register(EMAIL, "Mover", PASSWORD).await.token;
    let rent = |movie_id, request_id: &str| pb::RentRequest {
        movie_id,
        days: 2,
        request_id: request_id.into(),
    };
    let open = stock.rent(authed(rent(kept.id, "open-rental"), &token)).await.unwrap().into_inner();
    let late = stock.rent(authed(rent(2, "late-rental"), &token)).await.unwrap().into_inner();
    store.clock.advance(Duration::from_secs(3 * 24 * 3600));
    let returned = stock
        .r#return(authed(pb::ReturnRequest { rental_id: late.id }, &token))
        .await
        .unwrap()
        .into_inner();
    assert!(returned.late_fee.unwrap().minor_units > 0);
    let purchase = pb::PurchaseRequest { movie_id: 3, request_id: "bought".into() };
    stock.purchase(authed(purchase, &token)).await.unwrap();
    let before = seen(&store, kept.id, &token).await;
    let data = store.stop_keeping_data().await;

    // Copied into empty PostgreSQL databases.
    let cluster = testdb::Cluster::shared().unwrap();
    let (catalogue_url, stock_url) = (cluster.database().unwrap(), cluster.database().unwrap());
    let copied = copy_store(data.path(), &catalogue_url, &stock_url);
    let said = String::from_utf8_lossy(&copied.stdout);
    assert!(copied.status.success(), "{said}{}", String::from_utf8_lossy(&copied.stderr));
    assert!(said.contains(&format!("copied {} films", before.films)), "{said}");
    assert!(said.contains("2 rentals, 1 purchases"), "{said}");

    // The store on PostgreSQL is the same shop.
    let moved =
        TestStore::start_on_databases(cluster.clone(), catalogue_url.clone(), stock_url.clone())
            .await;
    let token = moved.sign_in(EMAIL, PASSWORD).await;
    let after = seen(&moved, kept.id, &token).await;
    assert_eq!(after, before);
    assert_eq!(after.rentals.iter().find(|r| r.id == open.id).unwrap().returned_at, None);
    // A retry of a rental made before the move still finds it; new ids follow the old ones,
    // and a deleted film's id is never given again.
    let mut stock = moved.stock_client().await;
    let retried = stock.rent(authed(rent(kept.id, "open-rental"), &token)).await.unwrap();
    assert_eq!(retried.into_inner().id, open.id);
    let new = stock.rent(authed(rent(1, "after-the-move"), &token)).await.unwrap().into_inner();
    assert!(new.id > late.id.max(open.id));
    let staff = moved.staff_token().await;
    let newer = moved
        .catalogue_client()
        .await
        .create_movie(authed(create("New", "new-1", ""), &staff))
        .await
        .unwrap()
        .into_inner();
    assert!(newer.id > gone.id, "{} reuses an id up to {}", newer.id, gone.id);
    moved.stop().await;

    // A second copy finds the targets in use and writes nothing.
    let again = copy_store(data.path(), &catalogue_url, &stock_url);
    assert!(!again.status.success());
    let complaint = String::from_utf8_lossy(&again.stderr);
    assert!(complaint.contains("copy only into an empty store"), "{complaint}");
    let films = cluster
        .psql(catalogue_url.rsplit('/').next().unwrap(), "SELECT count(*) FROM movies")
        .unwrap();
    assert_eq!(films, (before.films + 1).to_string());
}
