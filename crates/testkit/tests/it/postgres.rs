//! The store on PostgreSQL, over real gRPC: the rental rules, the race for the last copies,
//! retries, persistence across a restart, live availability across replicas, and the store
//! front balancing over them, as on SQLite.

use std::time::Duration;

use testkit::{Backend, TestStore, authed};
use tonic::Code;
use videostore_proto::{aggregator as agg, stock as pb};

use crate::stock::set_copies;

fn rent(movie_id: i64, days: i32, request_id: &str) -> pb::RentRequest {
    pb::RentRequest { movie_id, days, request_id: request_id.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_forty_customers_race_for_three_copies_and_retries_rent_once() {
    let store = TestStore::start_on(Backend::Postgres).await;
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
    let mut store = TestStore::start_on(Backend::Postgres).await;
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

/// Every change a watcher received, per film, in the order received.
type Seen = std::collections::HashMap<i64, Vec<i64>>;

/// Opens a watch of `films` on `stock` and collects every change's version per film until
/// `stop`; the first message (the current state) is returned apart.
async fn watch_until(
    stock: std::net::SocketAddr,
    films: Vec<i64>,
    resume_from: Vec<pb::FilmVersion>,
    stop: tokio_util::sync::CancellationToken,
) -> (Vec<pb::WatchAvailabilityResponse>, Seen) {
    let mut client =
        pb::stock_service_client::StockServiceClient::new(TestStore::channel(stock).await);
    let mut stream = client
        .watch_availability(pb::WatchAvailabilityRequest { movie_ids: films, resume_from })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let mut openings = vec![first];
    let mut seen = Seen::new();
    loop {
        let message = tokio::select! {
            message = stream.message() => message.unwrap(),
            () = stop.cancelled() => break,
        };
        let Some(message) = message else { break };
        if message.snapshot {
            openings.push(message);
            continue;
        }
        for availability in message.availabilities {
            seen.entry(availability.movie_id).or_default().push(availability.version);
        }
    }
    (openings, seen)
}

/// Each film's versions go up by exactly one from `from[film]` to `to[film]`.
fn assert_gap_free(seen: &Seen, from: &std::collections::HashMap<i64, i64>, to: &Seen) {
    for (film, versions) in seen {
        let start = from[film];
        let expected: Vec<i64> = (start + 1..=*to[film].last().unwrap()).collect();
        assert_eq!(versions, &expected, "film {film}: every version once, in order");
    }
}

async fn current_versions(store: &TestStore, films: &[i64]) -> std::collections::HashMap<i64, i64> {
    store
        .stock_client()
        .await
        .batch_get_availability(pb::BatchGetAvailabilityRequest { movie_ids: films.to_vec() })
        .await
        .unwrap()
        .into_inner()
        .availabilities
        .into_iter()
        .map(|a| (a.movie_id, a.version))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_one_replica_hears_every_change_made_on_another_in_order() {
    let store = TestStore::start_on(Backend::Postgres).await;
    let replica = store.spawn_stock_replica().await;
    let films = [31, 32, 33];
    for film in films {
        set_copies(&store, film, 2).await;
    }
    let before = current_versions(&store, &films).await;
    let stop = tokio_util::sync::CancellationToken::new();
    // Watchers on both replicas; rents and returns through both.
    let on_replica = tokio::spawn(watch_until(replica.addr, films.to_vec(), vec![], stop.clone()));
    let on_first =
        tokio::spawn(watch_until(store.stock().addr, films.to_vec(), vec![], stop.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, token) = store.customer("Walker").await;
    let addresses = [store.stock().addr, replica.addr];
    let mut workers = Vec::new();
    for (index, film) in films.iter().copied().enumerate() {
        let token = token.clone();
        let address = addresses[index % 2];
        workers.push(tokio::spawn(async move {
            let mut stock = pb::stock_service_client::StockServiceClient::new(
                TestStore::channel(address).await,
            );
            for round in 0..8 {
                let rental = stock
                    .rent(authed(rent(film, 1, &format!("{film}-{round}")), &token))
                    .await
                    .unwrap()
                    .into_inner();
                stock
                    .r#return(authed(pb::ReturnRequest { rental_id: rental.id }, &token))
                    .await
                    .unwrap();
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let after = current_versions(&store, &films).await;
    // Give the feed a moment to deliver the last changes, then stop watching.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    for watcher in [on_replica, on_first] {
        let (_, seen) = watcher.await.unwrap();
        let to: Seen = after.iter().map(|(film, version)| (*film, vec![*version])).collect();
        assert_eq!(seen.len(), films.len(), "every film changed: {seen:?}");
        assert_gap_free(&seen, &before, &to);
    }
    replica.stop().await;
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_connection_loses_no_change_and_a_client_resumes_where_it_was() {
    let store = TestStore::start_on(Backend::Postgres).await;
    let replica = store.spawn_stock_replica().await;
    let film = 35;
    set_copies(&store, film, 3).await;
    let before = current_versions(&store, &[film]).await;
    let (_, token) = store.customer("Killer").await;
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = tokio::spawn(watch_until(replica.addr, vec![film], vec![], stop.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut stock = store.stock_client().await;
    let (cluster, database) = store.stock_postgres().unwrap();
    for round in 0..12 {
        if round % 4 == 1 {
            // Every replica's listening connection is cut: the changes right after it are
            // committed while no replica listens (each waits 0.1 s before listening again), and
            // must be caught up from the table.
            let listening = "SELECT count(*) FROM pg_stat_activity \
                             WHERE application_name = 'videostore-stock-feed' \
                             AND datname = current_database()";
            for _ in 0..100 {
                if cluster.psql(database, listening).unwrap() == "2" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let killed = cluster
                .psql(
                    database,
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE application_name = 'videostore-stock-feed' \
                     AND datname = current_database()",
                )
                .unwrap();
            assert_eq!(killed, "2", "one listener per replica");
        }
        let rental = stock
            .rent(authed(rent(film, 1, &format!("k-{round}")), &token))
            .await
            .unwrap()
            .into_inner();
        stock.r#return(authed(pb::ReturnRequest { rental_id: rental.id }, &token)).await.unwrap();
    }
    let after = current_versions(&store, &[film]).await;
    // Each listener comes back within its first retry wait (0.1 s) and catches up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let (_, seen) = watcher.await.unwrap();
    let to: Seen = after.iter().map(|(film, version)| (*film, vec![*version])).collect();
    assert_gap_free(&seen, &before, &to);

    // A client that was away resumes from the version it had: it gets exactly what it missed.
    let had = *seen[&film].get(4).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let resume = vec![pb::FilmVersion { movie_id: film, version: had }];
    let resumed = tokio::spawn(watch_until(replica.addr, vec![film], resume, stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let (openings, seen_after) = resumed.await.unwrap();
    assert!(openings.iter().all(|m| !m.snapshot), "no current state for a resumed film");
    let mut missed: Vec<i64> =
        openings.iter().flat_map(|m| m.availabilities.iter().map(|a| a.version)).collect();
    missed.extend(seen_after.get(&film).cloned().unwrap_or_default());
    assert_eq!(missed, (had + 1..=after[&film]).collect::<Vec<_>>());
    replica.stop().await;
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_doorbell_never_rang_still_reaches_every_replica() {
    // A replica that dies between its commit and its notification: the change is in the
    // database, and nobody announced it. Every replica finds it by its next poll (each second).
    let store = TestStore::start_on(Backend::Postgres).await;
    let replica = store.spawn_stock_replica().await;
    let film = 36;
    set_copies(&store, film, 2).await;
    let before = current_versions(&store, &[film]).await[&film];
    // A live watcher on each replica: its first message (the current stock) says it is
    // subscribed, so what follows can only come through that replica's feed.
    let mut streams = Vec::new();
    for addr in [store.stock().addr, replica.addr] {
        let mut client =
            pb::stock_service_client::StockServiceClient::new(TestStore::channel(addr).await);
        let request = pb::WatchAvailabilityRequest { movie_ids: vec![film], resume_from: vec![] };
        let mut stream = client.watch_availability(request).await.unwrap().into_inner();
        assert!(stream.message().await.unwrap().unwrap().snapshot);
        streams.push(stream);
    }
    let (cluster, database) = store.stock_postgres().unwrap();
    for _ in 0..3 {
        cluster
            .psql(
                database,
                &format!(
                    "UPDATE inventory SET copies_owned = copies_owned + 1, \
                     copies_available = copies_available + 1, version = version + 1 \
                     WHERE movie_id = {film}"
                ),
            )
            .unwrap();
    }
    // The bound is one poll (a second); each watcher gets three.
    for mut stream in streams {
        let mut heard = Vec::new();
        let in_time = tokio::time::timeout(Duration::from_secs(3), async {
            while heard.last() != Some(&(before + 3)) {
                let message = stream.message().await.unwrap().unwrap();
                heard.extend(message.availabilities.iter().map(|a| a.version));
            }
        })
        .await;
        assert!(in_time.is_ok(), "heard only {heard:?} within 3 s");
        assert_eq!(heard, [before + 1, before + 2, before + 3]);
    }
    replica.stop().await;
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_front_balances_over_stock_replicas_and_rides_out_losing_either() {
    let mut store = TestStore::start_on(Backend::Postgres).await;
    let replica = store.spawn_stock_replica().await;
    let both = format!("{},{}", store.stock().url(), replica.url());
    let front =
        TestStore::spawn_aggregator(&store.catalogue.url(), &both, Duration::from_millis(500))
            .await;
    let mut pages =
        videostore_proto::aggregator::storefront_service_client::StorefrontServiceClient::new(
            TestStore::channel(front.addr).await,
        );
    // Every one of 20 pages in a row has its stock.
    let mut all_known = async || {
        for movie_id in 1..=20 {
            let page = pages
                .get_movie_page(agg::GetMoviePageRequest { movie_id, related_limit: 0 })
                .await
                .unwrap()
                .into_inner();
            if !page.stock.unwrap().known {
                return false;
            }
        }
        true
    };
    // Each replica answers SERVING within a probe or two.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(all_known().await);

    // The first replica goes away: after a probe it is out of the balance.
    store.stop_stock().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(all_known().await, "pages are served from the other replica");

    // It comes back and the other goes away: it is back in the balance.
    store.start_stock().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    replica.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(all_known().await, "the first replica is back in the balance");
    front.stop().await;
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_catalogue_lists_streams_exports_and_takes_staff_edits() {
    use futures::StreamExt;
    use videostore_proto::catalogue as cat;

    let store = TestStore::start_on(Backend::Postgres).await;
    let mut catalogue = store.catalogue_client().await.max_decoding_message_size(64 << 20);
    // Seeded: 600 films, listed in pages, streamed and exported alike.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = catalogue
            .list_movies(cat::ListMoviesRequest {
                order_by: cat::MovieOrder::Year as i32,
                page_size: 100,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.total_size, 600);
        paged.extend(page.movies.into_iter().map(|m| m.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let streamed: Vec<i64> = catalogue
        .stream_movies(cat::StreamMoviesRequest {
            order_by: cat::MovieOrder::Year as i32,
            batch_size: 64,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .flat_map(|batch| futures::stream::iter(batch.unwrap().movies))
        .map(|m| m.id)
        .collect()
        .await;
    assert_eq!(streamed, paged);
    let exported = catalogue
        .export_movies(cat::ExportMoviesRequest {
            order_by: cat::MovieOrder::Year as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exported.movies.iter().map(|m| m.id).collect::<Vec<_>>(), paged);

    // A staff edit is seen by the next read, the store front's REST export included.
    let staff = store.staff_token().await;
    let created = catalogue
        .create_movie(authed(
            cat::CreateMovieRequest {
                movie: Some(cat::Movie {
                    title: "Żywot Postgresa".into(),
                    release_year: 2026,
                    genres: vec!["Documentary".into()],
                    external_key: "pg-1".into(),
                    ..Default::default()
                }),
                request_id: "create-pg-1".into(),
            },
            &staff,
        ))
        .await
        .unwrap()
        .into_inner();
    let found = catalogue
        .list_movies(cat::ListMoviesRequest {
            filter: Some(cat::MovieFilter { query: "zywot".into(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.movies.iter().map(|m| m.id).collect::<Vec<_>>(), [created.id]);
    let json: serde_json::Value =
        reqwest::get(format!("{}/api/movies/export?q=zywot", store.aggregator.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(json[0]["title"], "Żywot Postgresa");
    catalogue
        .delete_movie(authed(cat::DeleteMovieRequest { id: created.id }, &staff))
        .await
        .unwrap();
    let gone = catalogue.get_movie(cat::GetMovieRequest { id: created.id }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    store.stop().await;
}

/// How long a film edited through one catalogue replica may be served stale by another: the
/// database notification's trip (milliseconds here), with room for a slow machine.
const FEED_BOUND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_film_edited_on_one_catalogue_replica_is_fresh_on_another_and_in_the_store_front() {
    use videostore_proto::catalogue as cat;

    let store = TestStore::start_on(Backend::Postgres).await;
    let replica = store.spawn_catalogue_replica().await;
    let mut on_a = store.catalogue_client().await;
    let mut on_b = cat::catalogue_service_client::CatalogueServiceClient::new(
        TestStore::channel(replica.addr).await,
    );
    // The store front over both replicas.
    let both = format!("{},{}", store.catalogue.url(), replica.url());
    let front =
        TestStore::spawn_aggregator(&both, &store.stock().url(), Duration::from_millis(500)).await;
    let mut pages =
        videostore_proto::aggregator::storefront_service_client::StorefrontServiceClient::new(
            TestStore::channel(front.addr).await,
        );
    let mut changes_on_b =
        on_b.watch_changes(cat::WatchChangesRequest {}).await.unwrap().into_inner();
    changes_on_b.message().await.unwrap(); // Opened.
    let staff = store.staff_token().await;
    let title_on = async |client: &mut cat::catalogue_service_client::CatalogueServiceClient<_>| {
        client.get_movie(cat::GetMovieRequest { id: 5 }).await.unwrap().into_inner().title
    };
    let page_title = async |pages: &mut videostore_proto::aggregator::storefront_service_client::StorefrontServiceClient<_>| {
        pages
            .get_movie_page(agg::GetMoviePageRequest { movie_id: 5, related_limit: 3 })
            .await
            .unwrap()
            .into_inner()
            .movie
            .unwrap()
            .title
    };
    tokio::time::sleep(Duration::from_secs(2)).await; // Both replicas in the front's balance.
    for round in 0..3 {
        // Read everywhere first, so every cache holds the film.
        let before = title_on(&mut on_b).await;
        for _ in 0..4 {
            page_title(&mut pages).await;
        }
        let title = format!("Renamed on A, round {round}");
        assert_ne!(before, title);
        on_a.update_movie(authed(
            cat::UpdateMovieRequest {
                movie: Some(cat::Movie { id: 5, title: title.clone(), ..Default::default() }),
                update_mask: Some(prost_types::FieldMask { paths: vec!["title".into()] }),
            },
            &staff,
        ))
        .await
        .unwrap();
        let edited = tokio::time::Instant::now();
        // Replica B announces it, and serves it within the bound (and from then on).
        let announced = tokio::time::timeout(FEED_BOUND, async {
            loop {
                let change = changes_on_b.message().await.unwrap().unwrap();
                if change.movie_ids.contains(&5) || change.everything {
                    break;
                }
            }
        })
        .await;
        assert!(announced.is_ok(), "replica B did not announce A's write in time");
        loop {
            if title_on(&mut on_b).await == title && page_title(&mut pages).await == title {
                break;
            }
            assert!(edited.elapsed() < FEED_BOUND, "still stale after {:?}", edited.elapsed());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..6 {
            assert_eq!(title_on(&mut on_b).await, title);
            assert_eq!(page_title(&mut pages).await, title);
        }
        if round == 1 {
            // B's listener is cut: until it listens again B serves from the database.
            let (cluster, _) = store.stock_postgres().unwrap();
            let catalogue_database = store.catalogue_postgres_database().unwrap();
            let killed = cluster
                .psql(
                    &catalogue_database,
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE application_name = 'videostore-catalogue-feed' \
                     AND datname = current_database()",
                )
                .unwrap();
            assert_eq!(killed, "2");
        }
    }

    // The number of films a listing's first page shows, kept by B, counts a film made on A
    // within the bound too.
    let total_on = async |client: &mut cat::catalogue_service_client::CatalogueServiceClient<_>| {
        let first_page = cat::ListMoviesRequest { page_size: 1, ..Default::default() };
        client.list_movies(first_page).await.unwrap().into_inner().total_size
    };
    let before = total_on(&mut on_b).await;
    assert_eq!(total_on(&mut on_b).await, before);
    let film = cat::Movie {
        title: "Counted on B".into(),
        release_year: 2026,
        genres: vec!["Documentary".into()],
        ..Default::default()
    };
    let request = cat::CreateMovieRequest { movie: Some(film), request_id: "count-on-b".into() };
    on_a.create_movie(authed(request, &staff)).await.unwrap();
    let created = tokio::time::Instant::now();
    while total_on(&mut on_b).await != before + 1 {
        assert!(created.elapsed() < FEED_BOUND, "B still counts {before} after {FEED_BOUND:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    front.stop().await;
    replica.stop().await;
    store.stop().await;
}
