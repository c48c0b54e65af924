//! What the services log: client mistakes never at ERROR (a burst of bad requests must not
//! flood the log), an internal failure once at ERROR with its cause, and never its cause to the
//! client.

use std::sync::{Arc, Mutex};

use testkit::{TestStore, authed};
use tonic::Code;
use tracing::{Level, field::Visit};
use tracing_subscriber::{Layer, layer::SubscriberExt};
use videostore_proto::{aggregator as agg, catalogue as pb, stock};

/// One event: its level and every field, `name=value` joined by spaces.
type Event = (Level, String);

/// Records every event emitted on this thread while it is the default subscriber.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push((*event.metadata().level(), fields.0));
    }
}

impl Recorder {
    fn errors(&self) -> Vec<String> {
        let events = self.0.lock().unwrap();
        events.iter().filter(|(level, _)| *level == Level::ERROR).map(|(_, f)| f.clone()).collect()
    }
}

#[tokio::test]
async fn bad_requests_are_not_logged_as_errors_and_an_internal_failure_is_logged_once() {
    // The test's runtime has one thread, which runs every server task: all their events come
    // here.
    let recorder = Recorder::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(recorder.clone()));
    let store = TestStore::start().await;
    let (_, customer) = store.customer("Mallory").await;
    let mut catalogue = store.catalogue_client().await;
    let mut stock_client = store.stock_client().await;
    let mut accounts = store.account_client().await;
    let mut storefront = store.storefront_client().await;

    for _ in 0..3 {
        let refused = [
            catalogue.get_movie(pb::GetMovieRequest { id: 0 }).await.unwrap_err().code(),
            catalogue.get_movie(pb::GetMovieRequest { id: 999_999 }).await.unwrap_err().code(),
            catalogue
                .list_movies(pb::ListMoviesRequest {
                    page_token: "forged".into(),
                    ..Default::default()
                })
                .await
                .unwrap_err()
                .code(),
            catalogue
                .delete_movie(authed(pb::DeleteMovieRequest { id: 1 }, &customer))
                .await
                .unwrap_err()
                .code(),
            catalogue.delete_movie(pb::DeleteMovieRequest { id: 1 }).await.unwrap_err().code(),
            stock_client
                .rent(authed(
                    stock::RentRequest { movie_id: 1, days: 500, request_id: "x".into() },
                    &customer,
                ))
                .await
                .unwrap_err()
                .code(),
            stock_client
                .r#return(authed(stock::ReturnRequest { rental_id: 424_242 }, &customer))
                .await
                .unwrap_err()
                .code(),
            accounts
                .sign_in(stock::SignInRequest {
                    email: "mallory@example.com".into(),
                    password: "guess guess".into(),
                })
                .await
                .unwrap_err()
                .code(),
            storefront
                .get_movie_page(agg::GetMoviePageRequest { movie_id: -1, related_limit: 0 })
                .await
                .unwrap_err()
                .code(),
            storefront
                .get_movie_page(agg::GetMoviePageRequest { movie_id: 999_999, related_limit: 0 })
                .await
                .unwrap_err()
                .code(),
        ];
        assert_eq!(
            refused,
            [
                Code::InvalidArgument,
                Code::NotFound,
                Code::InvalidArgument,
                Code::PermissionDenied,
                Code::Unauthenticated,
                Code::InvalidArgument,
                Code::PermissionDenied,
                Code::Unauthenticated,
                Code::InvalidArgument,
                Code::NotFound,
            ]
        );
        let http = reqwest::Client::new();
        for path in ["/api/movies/0", "/api/movies/8?related=abc", "/api/movies?order=price"] {
            let response =
                http.get(format!("{}{path}", store.aggregator.url())).send().await.unwrap();
            assert_eq!(response.status(), 400, "{path}");
        }
    }
    assert_eq!(recorder.errors(), Vec::<String>::new(), "client mistakes logged as errors");

    // An internal failure: the stored total of the films' wire forms no longer matches them.
    let database = rusqlite::Connection::open(store.dir.path().join("catalogue.db")).unwrap();
    database.execute("UPDATE wire_bytes SET bytes = bytes + 1000", []).unwrap();
    let mut big = store.catalogue_client().await.max_decoding_message_size(64 << 20);
    let failed = big.export_movies(pb::ExportMoviesRequest::default()).await.unwrap_err();
    // The answer was cut off mid-message (its length was sent first): the client sees the
    // stream break, never the cause.
    assert_eq!(failed.code(), Code::Internal);
    assert!(!failed.message().contains("kept total"), "{failed:?}");
    let errors = recorder.errors();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("kept total"), "the cause is logged: {errors:?}");
    store.stop().await;
}
