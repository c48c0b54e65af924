//! Request sizes held per method: every call's request is refused past 64 KiB before it is
//! decoded, except ImportMovies batches; the largest valid requests still pass.

use testkit::{TestStore, authed};
use tonic::Code;
use videostore_proto::{catalogue as cat, stock};

fn film(key: String, synopsis: String) -> cat::Movie {
    cat::Movie {
        title: format!("Film {key}"),
        release_year: 2001,
        genres: vec!["Drama".into()],
        runtime_minutes: 100,
        director: "Someone".into(),
        rating: cat::MpaaRating::Pg as i32,
        synopsis,
        audience_rating: 7.0,
        external_key: key,
        ..Default::default()
    }
}

#[tokio::test]
async fn oversized_requests_are_refused_before_decoding_and_imports_still_take_batches() {
    let store = TestStore::start().await;
    let staff = store.staff_token().await;

    // Two million ids (about 6 MB) to a call that takes at most 1,000.
    let mut stock_client = store.stock_client().await;
    let huge = stock::WatchAvailabilityRequest {
        movie_ids: (1..=2_000_000).collect(),
        resume_from: Vec::new(),
    };
    let refused = stock_client.watch_availability(huge).await.unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert!(refused.message().contains("too large"), "{}", refused.message());
    // The largest valid one passes, and the server is none the worse.
    let most = stock::WatchAvailabilityRequest {
        movie_ids: (1..=1_000).collect(),
        resume_from: (1..=1_000)
            .map(|id| stock::FilmVersion { movie_id: id, version: 1 << 40 })
            .collect(),
    };
    stock_client.watch_availability(most).await.unwrap();
    stock_client.get_availability(stock::GetAvailabilityRequest { movie_id: 3 }).await.unwrap();

    // A film's longest synopsis (5,000 four-byte characters) is fine; 100 KB is refused
    // before decoding (it used to be decoded, then found too long).
    let mut catalogue = store.catalogue_client().await;
    let create = |key: &str, synopsis: String| {
        authed(
            cat::CreateMovieRequest {
                movie: Some(film(key.into(), synopsis)),
                request_id: String::new(),
            },
            &staff,
        )
    };
    catalogue.create_movie(create("longest", "🎬".repeat(5_000))).await.unwrap();
    let refused =
        catalogue.create_movie(create("too-long", "x".repeat(100_000))).await.unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");

    // An import batch of about 1.2 MB in one message is taken.
    let batch: Vec<cat::Movie> =
        (0..2_000).map(|i| film(format!("batch-{i}"), "s".repeat(500))).collect();
    let summary = catalogue
        .import_movies(authed(
            futures::stream::iter([cat::ImportMoviesRequest { movies: batch }]),
            &staff,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((summary.created, summary.rejected_count), (2_000, 0));
    store.stop().await;
}
