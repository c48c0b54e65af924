//! The catalogue store's one test suite, run against both backends so they cannot drift: the
//! embedded SQLite file and a real PostgreSQL (a throwaway cluster the test starts).

use std::{future::Future, sync::Arc, time::SystemTime};

use prost::Message;
use videostore_proto::catalogue as pb;

use super::{CatalogueStore, PostgresStore, SqliteStore, Upserted, WireForm};
use crate::{
    domain::{Filter, Invalid, ListQuery, MovieFields, MovieId, Order},
    error::Error,
    grpc::movie_to_proto as to_proto,
    wire::wire_form,
};

/// The size of an export's chunks in test builds, in both backends.
const EXPORT_CHUNK: usize = 1000;

#[tokio::test]
async fn the_sqlite_store_keeps_every_rule() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("catalogue.db").display());
    run_store_tests(|wire| {
        let url = url.clone();
        async move { Arc::new(SqliteStore::open(&url, wire).await.unwrap()) as Arc<dyn CatalogueStore> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_keeps_every_rule() {
    let cluster = testdb::Cluster::shared().unwrap();
    let url = cluster.database().unwrap();
    run_store_tests(|wire| {
        let url = url.clone();
        async move {
            Arc::new(PostgresStore::open(&url, wire, 8).await.unwrap()) as Arc<dyn CatalogueStore>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_seeding_an_empty_catalogue_together_seed_it_once_with_ids_in_order() {
    // Two replicas starting at once on an empty database: one seeds, the other finds films, and
    // the sample films get the ids 1, 2, … that the sample stock is kept under.
    let cluster = testdb::Cluster::shared().unwrap();
    let url = cluster.database().unwrap();
    let (a, b) = tokio::join!(
        PostgresStore::open(&url, wire_form(), 4),
        PostgresStore::open(&url, wire_form(), 4)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let films = crate::seed::films();
    let now = SystemTime::now();
    let (from_a, from_b) = tokio::join!(a.seed_if_empty(&films, now), b.seed_if_empty(&films, now));
    let mut added = [from_a.unwrap(), from_b.unwrap()];
    added.sort();
    assert_eq!(added, [0, films.len()], "one replica seeds");
    let ids: Vec<i64> = a
        .list(&everything(Order::Title, false))
        .await
        .unwrap()
        .iter()
        .map(|movie| movie.id.get())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(ids, (1..=films.len() as i64).collect::<Vec<_>>());
}

/// Every test, on the store `open` opens (again, with another wire form, when asked).
async fn run_store_tests<F, O>(open: O)
where
    O: Fn(WireForm) -> F,
    F: Future<Output = Arc<dyn CatalogueStore>>,
{
    let store = open(wire_form()).await;
    wire_form_follows_every_write(store.as_ref()).await;
    reads_and_refusals(store.as_ref()).await;
    drop(store);
    wire_form_follows_the_encoder(&open).await;
}

fn everything(order: Order, descending: bool) -> ListQuery {
    ListQuery { filter: Filter::default(), order, descending, after: None, limit: usize::MAX }
}

/// Every film of the listing, read in wire-form pages of `limit`, decoded.
async fn wire_listing(
    store: &dyn CatalogueStore,
    mut query: ListQuery,
    limit: usize,
) -> Vec<pb::Movie> {
    query.limit = limit;
    let mut films = Vec::new();
    loop {
        let page = store.list_wire(&query).await.unwrap();
        assert_eq!(page.ends.last().copied().unwrap_or(0), page.bytes.len());
        let decoded = pb::StreamMoviesResponse::decode(page.bytes.as_slice()).unwrap();
        assert_eq!(decoded.movies.len(), page.ends.len());
        films.extend(decoded.movies);
        if page.ends.len() < limit {
            return films;
        }
        query.after = page.last;
    }
}

async fn wire_form_follows_every_write(store: &dyn CatalogueStore) {
    let now = SystemTime::now();
    let seed = crate::seed::films();
    store.upsert_batch(&seed, now).await.unwrap();
    // An import that updates a film by its key, a creation, an update, a deletion.
    let mut renamed = seed[3].clone();
    renamed.title = "Renamed by import".into();
    store.upsert_batch(&[renamed], now).await.unwrap();
    let mut fresh = seed[5].clone();
    fresh.external_key = Some("fresh".into());
    let (created, _) = store.create(&fresh, None, now).await.unwrap();
    let change = |fields: &MovieFields| -> Result<MovieFields, crate::domain::Invalid> {
        Ok(MovieFields { genres: vec!["Western".into()], ..fields.clone() })
    };
    store.update(MovieId::new(9), Box::new(change), now).await.unwrap();
    assert!(store.delete(MovieId::new(10)).await.unwrap());

    for order in [Order::Title, Order::Year, Order::Rating, Order::Id] {
        for descending in [false, true] {
            let query = everything(order, descending);
            let expected: Vec<_> =
                store.list(&query).await.unwrap().into_iter().map(to_proto).collect();
            assert_eq!(wire_listing(store, query.clone(), 7).await, expected, "{order:?}");
            // The same films as one export, in chunks filled to the brim.
            let (bytes, chunks) = exported(store, &query, usize::MAX).await.unwrap();
            let (last, full) = chunks.split_last().unwrap();
            assert!(!full.is_empty() && full.iter().all(|chunk| chunk.len() == EXPORT_CHUNK));
            assert!(!last.is_empty() && last.len() <= EXPORT_CHUNK);
            let whole = chunks.concat();
            assert_eq!(whole.len(), bytes);
            let exported = pb::StreamMoviesResponse::decode(whole.as_slice()).unwrap().movies;
            assert_eq!(exported, expected, "{order:?}");
        }
    }
    assert_kept_total(store).await;
    // A filtered export (sized by reading it) and the limits of both kinds.
    let dramas = ListQuery {
        filter: Filter { genre: Some("Drama".into()), ..Filter::default() },
        ..everything(Order::Year, true)
    };
    let expected: Vec<_> = store.list(&dramas).await.unwrap().into_iter().map(to_proto).collect();
    assert!(expected.len() > 10);
    let (bytes, chunks) = exported(store, &dramas, usize::MAX).await.unwrap();
    let whole = chunks.concat();
    assert_eq!(whole.len(), bytes);
    let exported_dramas = pb::StreamMoviesResponse::decode(whole.as_slice()).unwrap().movies;
    assert_eq!(exported_dramas, expected);
    assert!(exported(store, &dramas, bytes).await.is_some());
    assert!(exported(store, &dramas, bytes - 1).await.is_none());
    let query = everything(Order::Title, false);
    let (bytes, _) = exported(store, &query, usize::MAX).await.unwrap();
    assert!(exported(store, &query, bytes).await.is_some());
    assert!(exported(store, &query, bytes - 1).await.is_none());
    let films = wire_listing(store, everything(Order::Id, false), 1000).await;
    assert!(films.iter().any(|film| film.title == "Renamed by import"));
    assert!(films.iter().any(|film| film.id == created.id.get()));
    assert_eq!(films.iter().find(|film| film.id == 9).unwrap().genres, ["Western"]);
    assert!(films.iter().all(|film| film.id != 10));
}

/// A new encoder version re-encodes every film when the store opens; the same one does not.
async fn wire_form_follows_the_encoder<F, O>(open: &O)
where
    O: Fn(WireForm) -> F,
    F: Future<Output = Arc<dyn CatalogueStore>>,
{
    fn id_only(id: MovieId, _: &MovieFields, _: SystemTime, out: &mut Vec<u8>) {
        out.extend_from_slice(&id.get().to_le_bytes());
    }
    let store = open(WireForm { version: 2, encode: id_only }).await;
    let films = store.list(&everything(Order::Id, false)).await.unwrap();
    let page = store.list_wire(&everything(Order::Id, false)).await.unwrap();
    let ids: Vec<u8> = films.iter().flat_map(|film| film.id.get().to_le_bytes()).collect();
    assert_eq!(page.bytes, ids);
    assert_kept_total(store.as_ref()).await;
    drop(store);
    let store = open(wire_form()).await;
    let query = everything(Order::Id, false);
    let expected: Vec<_> = store.list(&query).await.unwrap().into_iter().map(to_proto).collect();
    assert_eq!(wire_listing(store.as_ref(), query, 1000).await, expected);
    assert_kept_total(store.as_ref()).await;
}

/// The export of `query`: its announced size and its chunks, or `None` if over `max`.
async fn exported(
    store: &dyn CatalogueStore,
    query: &ListQuery,
    max: usize,
) -> Option<(usize, Vec<Vec<u8>>)> {
    let mut export = store.export_wire(query, max).await.unwrap()?;
    let mut chunks = Vec::new();
    while let Some(chunk) = export.chunks.recv().await {
        chunks.push(chunk.unwrap());
    }
    Some((export.bytes, chunks))
}

/// The kept total of the wire forms (which a whole-catalogue export announces) is their sum.
async fn assert_kept_total(store: &dyn CatalogueStore) {
    let query = everything(Order::Id, false);
    let (announced, _) = exported(store, &query, usize::MAX).await.unwrap();
    let listed = store.list_wire(&query).await.unwrap().bytes.len();
    assert!(listed > 0);
    assert_eq!(announced, listed);
}

/// Reads of every kind, paging, and the refusals of writes.
async fn reads_and_refusals(store: &dyn CatalogueStore) {
    let now = SystemTime::now();
    // Paging through every order and direction, with and without a filter, visits each match
    // once, in the order of the whole listing.
    let filters = [
        Filter::default(),
        Filter::new("the", "", 0, 0).unwrap(),
        Filter::new("", "drama", 1970, 2005).unwrap(),
    ];
    for filter in &filters {
        let total = store.count(filter).await.unwrap();
        for order in [Order::Title, Order::Year, Order::Rating, Order::Id] {
            for descending in [false, true] {
                let whole = ListQuery { filter: filter.clone(), ..everything(order, descending) };
                let all: Vec<MovieId> =
                    store.list(&whole).await.unwrap().iter().map(|m| m.id).collect();
                assert_eq!(all.len() as i64, total, "{filter:?} {order:?}");
                let mut paged = Vec::new();
                let mut query = ListQuery { limit: 13, ..whole.clone() };
                loop {
                    let page = store.list(&query).await.unwrap();
                    paged.extend(page.iter().map(|m| m.id));
                    if page.len() < 13 {
                        break;
                    }
                    query.after = page.last().map(crate::domain::Cursor::after);
                }
                assert_eq!(paged, all, "{filter:?} {order:?} {descending}");
            }
        }
    }
    // Search folds case and accents.
    let amelie = Filter::new("AMELIE", "", 0, 0).unwrap();
    let found = store.list(&ListQuery { filter: amelie, ..everything(Order::Title, false) }).await;
    assert!(found.unwrap().iter().all(|m| crate::domain::fold(&m.fields.title).contains("amelie")));

    // One film, several, related ones (sharing a genre, best rated first, never itself).
    let seven = store.get(MovieId::new(7)).await.unwrap().unwrap();
    assert!(store.get(MovieId::new(987_654)).await.unwrap().is_none());
    let many = store.get_many(&[MovieId::new(7), MovieId::new(987_654), MovieId::new(8)]).await;
    let mut ids: Vec<i64> = many.unwrap().iter().map(|m| m.id.get()).collect();
    ids.sort_unstable();
    assert_eq!(ids, [7, 8]);
    let related = store.related(&seven, 6).await.unwrap();
    assert!(!related.is_empty() && related.len() <= 6);
    let lower =
        |genres: &[String]| -> Vec<String> { genres.iter().map(|g| g.to_lowercase()).collect() };
    for film in &related {
        assert_ne!(film.id, seven.id);
        assert!(lower(&film.fields.genres).iter().any(|g| lower(&seven.fields.genres).contains(g)));
    }
    assert!(related.windows(2).all(|w| w[0].fields.audience_rating >= w[1].fields.audience_rating));
    let genres = store.genres().await.unwrap();
    assert!(genres.windows(2).all(|w| w[0].0.to_lowercase() < w[1].0.to_lowercase()));
    let dramas = genres.iter().find(|(name, _)| name == "Drama").unwrap().1;
    let drama = Filter::new("", "DRAMA", 0, 0).unwrap();
    assert_eq!(store.count(&drama).await.unwrap(), dramas, "genres match case-insensitively");
    assert_eq!(store.total().await.unwrap(), store.count(&Filter::default()).await.unwrap());

    // A create with a request id happens once; keys are unique; updates and deletes of a film
    // that is not there are refused, and so is a change that breaks a rule.
    let mut fields = seven.fields.clone();
    fields.external_key = Some("created-once".into());
    let (first, new) = store.create(&fields, Some("req-1"), now).await.unwrap();
    assert!(new);
    let (again, new) = store.create(&fields, Some("req-1"), now).await.unwrap();
    assert!(!new);
    assert_eq!(again, first);
    let taken = store.create(&fields, Some("req-2"), now).await.unwrap_err();
    assert!(matches!(taken, Error::DuplicateExternalKey(_)), "{taken:?}");
    let keyed = |key: &'static str| {
        move |current: &MovieFields| -> Result<MovieFields, Invalid> {
            Ok(MovieFields { external_key: Some(key.into()), ..current.clone() })
        }
    };
    let clash = store.update(MovieId::new(8), Box::new(keyed("created-once")), now).await;
    assert!(matches!(clash, Err(Error::DuplicateExternalKey(_))), "{clash:?}");
    let missing = store.update(MovieId::new(987_654), Box::new(keyed("x")), now).await;
    assert!(matches!(missing, Err(Error::FilmNotFound(_))), "{missing:?}");
    let refused = |_: &MovieFields| -> Result<MovieFields, Invalid> { Err(Invalid::new("no")) };
    let invalid = store.update(MovieId::new(8), Box::new(refused), now).await;
    assert!(matches!(invalid, Err(Error::Invalid(_))), "{invalid:?}");
    assert!(!store.delete(MovieId::new(987_654)).await.unwrap());
    // An import updates by key and creates the rest.
    let mut renamed = fields.clone();
    renamed.title = "Renamed by key".into();
    let mut fresh = fields.clone();
    fresh.external_key = Some("imported-fresh".into());
    let outcomes = store.upsert_batch(&[renamed, fresh], now).await.unwrap();
    assert_eq!(outcomes[0], Upserted::Updated(first.id));
    assert!(matches!(outcomes[1], Upserted::Created(id) if id > first.id));
    assert_eq!(store.get(first.id).await.unwrap().unwrap().fields.title, "Renamed by key");
    assert_kept_total(store).await;
}
