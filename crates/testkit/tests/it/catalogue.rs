//! The catalogue: reads, search, paging, streaming, import, lookups and staff edits.

use catalogue::domain::fold;
use futures::StreamExt;
use testkit::{TestStore, authed};
use tonic::Code;
use videostore_proto::catalogue::{self as pb, MovieFilter, MovieOrder};

fn film(title: &str, year: i32, key: &str) -> pb::Movie {
    pb::Movie {
        title: title.into(),
        release_year: year,
        genres: vec!["Drama".into()],
        runtime_minutes: 100,
        director: "Someone".into(),
        rating: pb::MpaaRating::Pg as i32,
        synopsis: "A film.".into(),
        audience_rating: 7.0,
        external_key: key.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_new_store_has_hundreds_of_films_and_genres() {
    let store = TestStore::start().await;
    let mut client = store.catalogue_client().await;
    let page = client.list_movies(pb::ListMoviesRequest::default()).await.unwrap().into_inner();
    assert!(page.total_size >= 500, "only {} films", page.total_size);
    assert_eq!(page.movies.len(), 20, "default page size");
    assert!(!page.next_page_token.is_empty());
    let genres = client.list_genres(pb::ListGenresRequest {}).await.unwrap().into_inner().genres;
    assert!(genres.len() >= 10);
    assert!(genres.iter().all(|g| g.movie_count > 0));
    let movie = client.get_movie(pb::GetMovieRequest { id: 1 }).await.unwrap().into_inner();
    assert_eq!(movie.id, 1);
    assert!(!movie.title.is_empty());
    store.stop().await;
}

#[tokio::test]
async fn paging_visits_every_match_once_in_order() {
    let store = TestStore::start().await;
    let mut client = store.catalogue_client().await;
    for (order, descending) in [
        (MovieOrder::Title, false),
        (MovieOrder::Year, true),
        (MovieOrder::Rating, true),
        (MovieOrder::Year, false),
        (MovieOrder::Id, true),
    ] {
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut total;
        loop {
            let page = client
                .list_movies(pb::ListMoviesRequest {
                    filter: Some(MovieFilter {
                        min_year: 1980,
                        max_year: 2010,
                        ..Default::default()
                    }),
                    order_by: order as i32,
                    descending,
                    page_size: 37,
                    page_token: token.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            total = page.total_size;
            seen.extend(page.movies);
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(seen.len() as i64, total, "{order:?} desc={descending}");
        let mut ids: Vec<i64> = seen.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), seen.len(), "no film twice");
        assert!(seen.iter().all(|m| (1980..=2010).contains(&m.release_year)));
        for pair in seen.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            match (order, descending) {
                (MovieOrder::Year, true) => assert!(a.release_year >= b.release_year),
                (MovieOrder::Year, false) => assert!(a.release_year <= b.release_year),
                (MovieOrder::Rating, true) => assert!(a.audience_rating >= b.audience_rating),
                (MovieOrder::Id, _) => assert!(a.id > b.id),
                _ => assert!(fold(&a.title) <= fold(&b.title), "{} before {}", a.title, b.title),
            }
        }
    }
    store.stop().await;
}

#[tokio::test]
async fn search_ignores_case_and_accents() {
    let store = TestStore::start().await;
    let mut client = store.catalogue_client().await;
    let search = |query: &str| pb::ListMoviesRequest {
        filter: Some(MovieFilter { query: query.into(), ..Default::default() }),
        page_size: 100,
        ..Default::default()
    };
    let accented = client.list_movies(search("Amélie")).await.unwrap().into_inner();
    let plain = client.list_movies(search("AMELIE")).await.unwrap().into_inner();
    assert!(accented.total_size > 0, "the sample has Amélie films");
    assert_eq!(accented.total_size, plain.total_size);
    assert!(plain.movies.iter().all(|m| m.title.contains("Amélie")));
    let cyrillic = client.list_movies(search("тихий")).await.unwrap().into_inner();
    assert!(cyrillic.movies.iter().all(|m| m.title.to_lowercase().contains("тихий")));
    let none = client.list_movies(search("zzzz no such film")).await.unwrap().into_inner();
    assert_eq!((none.total_size, none.movies.len(), none.next_page_token.as_str()), (0, 0, ""));
    // LIKE wildcards in the query are literal characters.
    let percent = client.list_movies(search("%")).await.unwrap().into_inner();
    assert_eq!(percent.total_size, 0);
    store.stop().await;
}

#[tokio::test]
async fn genre_filter_and_bad_requests() {
    let store = TestStore::start().await;
    let mut client = store.catalogue_client().await;
    let drama = client
        .list_movies(pb::ListMoviesRequest {
            filter: Some(MovieFilter { genre: "drama".into(), ..Default::default() }),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(drama.total_size > 0);
    assert!(drama.movies.iter().all(|m| m.genres.iter().any(|g| g == "Drama")));

    let bad = [
        pb::ListMoviesRequest { page_size: 101, ..Default::default() },
        pb::ListMoviesRequest { page_size: -1, ..Default::default() },
        pb::ListMoviesRequest { page_token: "garbage".into(), ..Default::default() },
        pb::ListMoviesRequest {
            filter: Some(MovieFilter { min_year: 2000, max_year: 1990, ..Default::default() }),
            ..Default::default()
        },
        pb::ListMoviesRequest {
            filter: Some(MovieFilter { query: "x".repeat(500), ..Default::default() }),
            ..Default::default()
        },
    ];
    for request in bad {
        let status = client.list_movies(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(!status.message().is_empty());
    }
    // A token is bound to its filter.
    let first = client
        .list_movies(pb::ListMoviesRequest { page_size: 5, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let status = client
        .list_movies(pb::ListMoviesRequest {
            page_size: 5,
            page_token: first.next_page_token,
            filter: Some(MovieFilter { genre: "Drama".into(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        client.get_movie(pb::GetMovieRequest { id: 999_999 }).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        client.get_movie(pb::GetMovieRequest { id: -3 }).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    store.stop().await;
}

#[tokio::test]
async fn batch_get_and_detail() {
    let store = TestStore::start().await;
    let mut client = store.catalogue_client().await;
    let batch = client
        .batch_get_movies(pb::BatchGetMoviesRequest { ids: vec![3, 1, 2, 1] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.movies.iter().map(|m| m.id).collect::<Vec<_>>(), [3, 1, 2, 1]);
    let missing = client
        .batch_get_movies(pb::BatchGetMoviesRequest { ids: vec![1, 987_654] })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains("987654"));
    let too_many = client
        .batch_get_movies(pb::BatchGetMoviesRequest { ids: (1..=1001).collect() })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);

    let detail = client
        .get_movie_detail(pb::GetMovieDetailRequest { id: 10, related_limit: 4 })
        .await
        .unwrap()
        .into_inner();
    let movie = detail.movie.unwrap();
    assert_eq!(detail.related.len(), 4);
    for related in &detail.related {
        assert_ne!(related.id, movie.id);
        assert!(related.genres.iter().any(|g| movie.genres.contains(g)));
    }
    store.stop().await;
}

#[tokio::test]
async fn stream_movies_delivers_every_match_in_batches() {
    let store = TestStore::start().await;
    let mut client = store.catalogue_client().await;
    let total =
        client.list_movies(pb::ListMoviesRequest::default()).await.unwrap().into_inner().total_size;
    let mut stream = client
        .stream_movies(pb::StreamMoviesRequest { batch_size: 64, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let mut batches = 0;
    let mut films = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.unwrap();
        assert!(batch.movies.len() <= 64);
        batches += 1;
        films.extend(batch.movies);
    }
    assert_eq!(films.len() as i64, total);
    assert_eq!(batches, (total as usize).div_ceil(64));
    store.stop().await;
}

#[tokio::test]
async fn a_stream_cut_short_by_shutdown_ends_unavailable_never_ok() {
    let store = TestStore::start().await;
    // A slow reader: a 1 KiB flow-control window holds the server a few films ahead of it.
    let channel = tonic::transport::Channel::from_shared(store.catalogue.url())
        .unwrap()
        .initial_stream_window_size(1024)
        .connect()
        .await
        .unwrap();
    let mut stream = pb::catalogue_service_client::CatalogueServiceClient::new(channel)
        .stream_movies(pb::StreamMoviesRequest { batch_size: 1, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    stream.next().await.unwrap().unwrap();
    store.catalogue.begin_shutdown();
    // The films already on their way arrive; then the stream says the catalogue is going away
    // (so a client retries elsewhere), instead of ending as if the catalogue had no more films.
    let mut films = 1;
    let end = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await {
            Ok(Some(Ok(_))) => films += 1,
            Ok(Some(Err(status))) => break status,
            Ok(None) => panic!("the stream ended OK after {films} of 600 films at shutdown"),
            Err(_) => panic!("the stream neither went on nor ended after shutdown"),
        }
    };
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert!(films < 600, "{films} films");
    store.stop().await;
}

#[tokio::test]
async fn one_film_per_message_and_one_message_for_all_agree_with_the_listing() {
    let store = TestStore::start().await;
    let mut client = store.catalogue_client().await.max_decoding_message_size(64 << 20);
    let drama = || Some(MovieFilter { genre: "drama".into(), ..Default::default() });
    let total = client
        .list_movies(pb::ListMoviesRequest { filter: drama(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .total_size;
    assert!(total > 5);

    // The old way: one film per message.
    let mut stream = client
        .stream_movies(pb::StreamMoviesRequest {
            filter: drama(),
            order_by: MovieOrder::Year as i32,
            descending: true,
            batch_size: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.unwrap();
        assert_eq!(batch.movies.len(), 1);
        streamed.push(batch.movies[0].id);
    }

    // One message with everything, in the same order.
    let exported = client
        .export_movies(pb::ExportMoviesRequest {
            filter: drama(),
            order_by: MovieOrder::Year as i32,
            descending: true,
        })
        .await
        .unwrap()
        .into_inner()
        .movies;
    assert_eq!(exported.len() as i64, total);
    assert!(exported.iter().all(|m| m.genres.iter().any(|g| g == "Drama")));
    assert!(exported.windows(2).all(|w| w[0].release_year >= w[1].release_year));
    assert_eq!(exported.iter().map(|m| m.id).collect::<Vec<_>>(), streamed);

    let everything =
        client.export_movies(pb::ExportMoviesRequest::default()).await.unwrap().into_inner();
    assert_eq!(everything.movies.len(), 600);
    let nothing = client
        .export_movies(pb::ExportMoviesRequest {
            filter: Some(MovieFilter {
                query: "no such film anywhere".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(nothing.movies.is_empty());
    let bad = client
        .export_movies(pb::ExportMoviesRequest { order_by: 99, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    store.stop().await;
}

/// ExportMovies sends its message's length before reading its films (a total kept by the
/// database). If the films then disagree with it, no client takes a wrong or cut-short message
/// for the answer: over gRPC the call fails INTERNAL, over gRPC-Web it never ends OK.
#[tokio::test]
async fn an_export_whose_films_disagree_with_its_length_fails_whole() {
    let store = TestStore::start().await;
    let mut client = store.catalogue_client().await.max_decoding_message_size(64 << 20);
    let whole = client.export_movies(pb::ExportMoviesRequest::default()).await.unwrap();
    assert_eq!(whole.into_inner().movies.len(), 600);
    let database = rusqlite::Connection::open(store.dir.path().join("catalogue.db")).unwrap();
    for change in ["bytes + 1000", "bytes - 2000"] {
        database.execute(&format!("UPDATE wire_bytes SET bytes = {change}"), []).unwrap();
        let error = client.export_movies(pb::ExportMoviesRequest::default()).await.unwrap_err();
        assert_eq!(error.code(), Code::Internal, "{change}: {error:?}");
        assert!(!error.message().contains("wire"), "{change}: {error:?}");
        let web = testkit::grpc_web::call(
            &store.catalogue.url(),
            "/videostore.catalogue.v1.CatalogueService/ExportMovies",
            &pb::ExportMoviesRequest::default(),
            None,
            None,
        )
        .await;
        if let Ok(reply) = web {
            assert_ne!(reply.grpc_status(), Some(0), "{change}: gRPC-Web said OK");
        }
    }
    // A filtered export is sized by reading it, and listings never use the total.
    let filtered = client
        .export_movies(pb::ExportMoviesRequest {
            filter: Some(MovieFilter { genre: "drama".into(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!filtered.movies.is_empty());
    store.stop().await;
}

#[tokio::test]
async fn lookup_answers_each_id_as_it_arrives() {
    let store = TestStore::start().await;
    let mut client = store.catalogue_client().await;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut answers = client
        .lookup_movies(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    // One id at a time: each answer arrives before the next id is sent.
    for id in [5, 123_456, 7] {
        sender.send(pb::LookupMoviesRequest { id }).await.unwrap();
        let answer = answers.next().await.unwrap().unwrap();
        assert_eq!(answer.id, id);
        assert_eq!(answer.found, id != 123_456);
        assert_eq!(answer.movie.map(|m| m.id), (id != 123_456).then_some(id));
    }
    drop(sender);
    assert!(answers.next().await.is_none(), "the stream ends when the client's does");
    store.stop().await;
}

#[tokio::test]
async fn staff_create_update_delete() {
    let store = TestStore::start().await;
    let staff = store.staff_token().await;
    let (_, customer) = store.customer("Carol").await;
    let mut client = store.catalogue_client().await;
    let new = pb::CreateMovieRequest {
        movie: Some(film("Ночной дозор", 2004, "nd-1")),
        ..Default::default()
    };

    let anonymous = client.create_movie(new.clone()).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let forbidden = client.create_movie(authed(new.clone(), &customer)).await.unwrap_err();
    assert_eq!(forbidden.code(), Code::PermissionDenied);
    let forged = client.create_movie(authed(new.clone(), "not.a.token")).await.unwrap_err();
    assert_eq!(forged.code(), Code::Unauthenticated);

    let new = pb::CreateMovieRequest { request_id: "create-once".into(), ..new };
    let created = client.create_movie(authed(new.clone(), &staff)).await.unwrap().into_inner();
    // A retry with the same request id returns the same film and creates nothing.
    let retried = client.create_movie(authed(new.clone(), &staff)).await.unwrap().into_inner();
    assert_eq!(retried.id, created.id);
    // Without the request id, the same film is a duplicate of the external key.
    let new = pb::CreateMovieRequest { request_id: String::new(), ..new };
    assert!(created.id > 0);
    assert_eq!(created.title, "Ночной дозор");
    let duplicate = client.create_movie(authed(new, &staff)).await.unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);

    let invalid = client
        .create_movie(authed(
            pb::CreateMovieRequest { movie: Some(film("", 2004, "")), ..Default::default() },
            &staff,
        ))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(invalid.message().contains("title"));

    // Only the masked field changes.
    let patch = pb::Movie { id: created.id, title: "Night Watch".into(), ..Default::default() };
    let updated = client
        .update_movie(authed(
            pb::UpdateMovieRequest {
                movie: Some(patch),
                update_mask: Some(prost_types::FieldMask { paths: vec!["title".into()] }),
            },
            &staff,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.title, "Night Watch");
    assert_eq!(updated.release_year, 2004);
    assert_eq!(updated.external_key, "nd-1");
    let bad_mask = client
        .update_movie(authed(
            pb::UpdateMovieRequest {
                movie: Some(pb::Movie { id: created.id, ..Default::default() }),
                update_mask: Some(prost_types::FieldMask { paths: vec!["budget".into()] }),
            },
            &staff,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_mask.code(), Code::InvalidArgument);

    let found = client
        .list_movies(pb::ListMoviesRequest {
            filter: Some(MovieFilter { query: "night watch".into(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.movies.iter().map(|m| m.id).collect::<Vec<_>>(), [created.id]);

    let delete = pb::DeleteMovieRequest { id: created.id };
    assert_eq!(
        client.delete_movie(authed(delete, &customer)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    client.delete_movie(authed(delete, &staff)).await.unwrap();
    assert_eq!(
        client.delete_movie(authed(delete, &staff)).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        client.get_movie(pb::GetMovieRequest { id: created.id }).await.unwrap_err().code(),
        Code::NotFound
    );
    // A deleted film's id is never reused: its stock and rentals must not pass to a new film.
    let next = client
        .create_movie(authed(
            pb::CreateMovieRequest {
                movie: Some(film("After", 2010, "after-1")),
                ..Default::default()
            },
            &staff,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(next.id > created.id, "{} reused", next.id);
    store.stop().await;
}

#[tokio::test]
async fn import_takes_every_good_row_and_explains_every_bad_one() {
    let store = TestStore::start().await;
    let staff = store.staff_token().await;
    let mut client = store.catalogue_client().await;
    let rows = vec![
        film("Good One", 1999, "imp-1"),             // 0 created
        film("", 2001, "imp-2"),                     // 1 missing title
        film("千と千尋の神隠し", 2001, "imp-3"),     // 2 created, non-Latin
        film("Year Zero", 0, "imp-4"),               // 3 year 0
        film("Far Future", 3000, "imp-5"),           // 4 year 3000
        film("Good One Again", 2000, "imp-1"),       // 5 duplicate key in this file
        film(&"x".repeat(10 * 1024), 2000, "imp-6"), // 6 10 KB title
        film("Λόγος", 1985, "imp-7"),                // 7 created, Greek
        film("Seed update", 1977, "seed-0001"),      // 8 updates an existing film
    ];
    let request = futures::stream::iter(vec![
        pb::ImportMoviesRequest { movies: rows[..4].to_vec() },
        pb::ImportMoviesRequest { movies: rows[4..].to_vec() },
    ]);
    let anonymous = client.import_movies(request.clone()).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let summary = client.import_movies(authed(request, &staff)).await.unwrap().into_inner();
    assert_eq!((summary.created, summary.updated), (3, 1));
    let rejected: Vec<(i64, &str)> =
        summary.rejected.iter().map(|r| (r.index, r.reason.as_str())).collect();
    assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 3, 4, 5, 6]);
    assert!(rejected[0].1.contains("title is required"), "{}", rejected[0].1);
    assert!(rejected[1].1.contains("release_year"), "{}", rejected[1].1);
    assert!(rejected[2].1.contains("3000"), "{}", rejected[2].1);
    assert!(rejected[3].1.contains("appears twice"), "{}", rejected[3].1);
    assert!(rejected[4].1.contains("10240 characters"), "{}", rejected[4].1);

    let search = |q: &str| pb::ListMoviesRequest {
        filter: Some(MovieFilter { query: q.into(), ..Default::default() }),
        ..Default::default()
    };
    assert_eq!(client.list_movies(search("千と千尋")).await.unwrap().into_inner().total_size, 1);
    assert_eq!(client.list_movies(search("λόγος")).await.unwrap().into_inner().total_size, 1);
    let updated = client.get_movie(pb::GetMovieRequest { id: 1 }).await.unwrap().into_inner();
    assert_eq!((updated.title.as_str(), updated.release_year), ("Seed update", 1977));
    store.stop().await;
}

#[tokio::test]
async fn watch_changes_announces_each_committed_write_and_nothing_refused() {
    let store = TestStore::start().await;
    let staff = store.staff_token().await;
    let mut client = store.catalogue_client().await;
    let mut changes = client.watch_changes(pb::WatchChangesRequest {}).await.unwrap().into_inner();
    let mut next = async || {
        tokio::time::timeout(std::time::Duration::from_secs(5), changes.message())
            .await
            .expect("an announcement within 5 s")
            .unwrap()
            .expect("the stream stays open")
    };
    assert_eq!(next().await, pb::WatchChangesResponse::default(), "opens with an empty message");

    let created = client
        .create_movie(authed(
            pb::CreateMovieRequest {
                movie: Some(film("Watched", 2001, "w-1")),
                ..Default::default()
            },
            &staff,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next().await.movie_ids, [created.id]);

    // Refused writes change nothing and announce nothing: the next message is the delete's.
    let duplicate =
        pb::CreateMovieRequest { movie: Some(film("Again", 2001, "w-1")), ..Default::default() };
    assert_eq!(
        client.create_movie(authed(duplicate, &staff)).await.unwrap_err().code(),
        Code::AlreadyExists
    );
    let missing = pb::DeleteMovieRequest { id: 987_654 };
    assert_eq!(
        client.delete_movie(authed(missing, &staff)).await.unwrap_err().code(),
        Code::NotFound
    );
    client.delete_movie(authed(pb::DeleteMovieRequest { id: created.id }, &staff)).await.unwrap();
    let deleted = next().await;
    assert_eq!(deleted.movie_ids, [created.id]);
    assert!(!deleted.everything);

    // An import announces every film of each committed batch.
    let rows = (0..3).map(|n| film(&format!("Imported {n}"), 2002, &format!("w-import-{n}")));
    let import =
        futures::stream::iter(rows.map(|movie| pb::ImportMoviesRequest { movies: vec![movie] }));
    let summary = client.import_movies(authed(import, &staff)).await.unwrap().into_inner();
    assert_eq!(summary.created, 3);
    let mut announced = Vec::new();
    while announced.len() < 3 {
        announced.extend(next().await.movie_ids);
    }
    let imported = client
        .list_movies(pb::ListMoviesRequest {
            filter: Some(MovieFilter { query: "imported".into(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut ids: Vec<i64> = imported.movies.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    announced.sort_unstable();
    assert_eq!(announced, ids);
    store.stop().await;
}

/// A listing is counted once, on its first page: later pages carry that total in their token
/// (a 500,000-film catalogue is not counted again at every page), so a film added meanwhile
/// shows in a fresh listing's total, not in the pages of one begun before it.
#[tokio::test]
async fn a_listing_is_counted_on_its_first_page_only() {
    let store = TestStore::start().await;
    let staff = store.staff_token().await;
    let mut client = store.catalogue_client().await;
    let first = client
        .list_movies(pb::ListMoviesRequest { page_size: 10, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    client
        .create_movie(authed(
            pb::CreateMovieRequest {
                movie: Some(pb::Movie {
                    title: "Counted Later".into(),
                    release_year: 2020,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &staff,
        ))
        .await
        .unwrap();
    let second = client
        .list_movies(pb::ListMoviesRequest {
            page_size: 10,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.total_size, first.total_size, "the listing's own total");
    let fresh = client
        .list_movies(pb::ListMoviesRequest { page_size: 10, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fresh.total_size, first.total_size + 1);
    store.stop().await;
}
