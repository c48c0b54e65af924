//! The stock store's one test suite, run against both backends so they cannot drift: the
//! embedded SQLite file and a real PostgreSQL (a throwaway cluster this test starts).

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use stock::{
    Error,
    domain::{AccountId, DAY, Inventory, MovieId, Rental, RentalId, Role},
    store::{
        CustomerCaps, Mail, NewAccount, NewPurchase, NewRegistration, NewRental, PostgresStore,
        RentalsAfter, SqliteStore, StockStore,
    },
};

#[tokio::test]
async fn the_sqlite_store_keeps_every_rule() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("stock.db").display());
    run_store_tests(Arc::new(SqliteStore::open(&url).await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_keeps_every_rule() {
    let cluster = testdb::Cluster::shared().unwrap();
    let url = cluster.database().unwrap();
    run_store_tests(Arc::new(PostgresStore::open(&url, 8).await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_stores_on_one_database_are_one_store() {
    // Two replicas: both migrate at once, and what one writes the other reads.
    let cluster = testdb::Cluster::shared().unwrap();
    let url = cluster.database().unwrap();
    let (a, b) = tokio::join!(PostgresStore::open(&url, 8), PostgresStore::open(&url, 8));
    let (a, b): (Arc<dyn StockStore>, Arc<dyn StockStore>) =
        (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
    a.stock_missing(&[inventory(1, 2)]).await.unwrap();
    let ann = customer(b.as_ref(), "ann@example.com").await;
    let made = a.rent(&rental(ann, 1, 3, "first")).await.unwrap();
    let retried = b.rent(&rental(ann, 1, 3, "first")).await.unwrap();
    assert_eq!(retried.value, made.value);
    assert!(retried.changed.is_none());
    assert_eq!(b.availability(&[MovieId::new(1)]).await.unwrap()[0].copies_available, 1);
    races(Arc::clone(&a), Arc::clone(&b)).await;
    caps(a, b).await;
}

fn inventory(movie_id: i64, copies: i32) -> Inventory {
    Inventory {
        movie_id: MovieId::new(movie_id),
        copies_owned: copies,
        currency: "EUR".into(),
        rental_price_minor: 250,
        purchase_price_minor: 1500,
    }
}

/// The clock every test starts at: a whole second, as both databases keep milliseconds.
fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn rental(customer_id: AccountId, movie_id: i64, days: i32, request_id: &str) -> NewRental {
    NewRental {
        customer_id,
        movie_id: MovieId::new(movie_id),
        days,
        request_id: request_id.into(),
        now: start(),
    }
}

async fn customer(store: &dyn StockStore, email: &str) -> AccountId {
    store
        .create_account(&NewAccount {
            email: email.into(),
            name: "Customer".into(),
            password_hash: "$argon2id$not-checked-here".into(),
            role: Role::Customer,
            now: start(),
        })
        .await
        .unwrap()
        .id
}

async fn assert_invariant(store: &dyn StockStore) {
    assert_eq!(store.invariant_violations().await.unwrap(), Vec::<MovieId>::new());
}

/// Every rental of a customer, read two at a time: every listing in this suite pages.
async fn rentals_of(
    store: &dyn StockStore,
    customer: AccountId,
    include_returned: bool,
) -> Vec<Rental> {
    let mut all: Vec<Rental> = Vec::new();
    loop {
        let after = all.last().map(RentalsAfter::after);
        let page = store.rentals_of(customer, include_returned, after, 2).await.unwrap();
        let done = page.len() < 2;
        all.extend(page);
        if done {
            return all;
        }
    }
}

async fn run_store_tests(store: Arc<dyn StockStore>) {
    stocking(store.as_ref()).await;
    accounts(store.as_ref()).await;
    registrations(store.as_ref()).await;
    outbox(store.as_ref()).await;
    renting_and_returning(store.as_ref()).await;
    late_fees(store.as_ref()).await;
    buying(store.as_ref()).await;
    request_ids_expire(store.as_ref()).await;
    history(store.as_ref()).await;
    long_histories_page(store.as_ref()).await;
    crowd(Arc::clone(&store), "crowd").await;
    races(Arc::clone(&store), Arc::clone(&store)).await;
    caps(Arc::clone(&store), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_makes_rents_and_returns_that_queue_together() {
    let cluster = testdb::Cluster::shared().unwrap();
    let url = cluster.database().unwrap();
    let store = PostgresStore::open(&url, 8).await.unwrap();
    let metrics = videostore_kit::metrics::Metrics::new();
    store.register_metrics(&metrics);
    let store: Arc<dyn StockStore> = Arc::new(store);
    for round in 0..3 {
        crowd(Arc::clone(&store), &format!("crowd{round}")).await;
    }
    // Calls made together: more calls than statements, for rents and for returns.
    let exposition = metrics.encode();
    let figure = |name: &str| -> f64 {
        let line = exposition.lines().find(|line| line.starts_with(name)).unwrap_or_else(|| {
            panic!("{name} is not on /metrics:\n{exposition}");
        });
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    for kind in ["rent", "return"] {
        let calls = figure(&format!("videostore_stock_{kind}_batch_size_sum"));
        let statements = figure(&format!("videostore_stock_{kind}_batch_size_count"));
        assert!(calls > statements, "{kind}s: {calls} calls in {statements} statements");
    }
}

/// Forty customers at once after twelve copies of four films, with retries, a reused request
/// id, an unstocked film and a customer over the cap among them; then every rental returned at
/// once, one of them twice and one by the wrong customer. Each call gets the answer it would
/// get alone (on PostgreSQL they are made several to a statement).
async fn crowd(store: Arc<dyn StockStore>, name: &str) {
    const FILMS: [i64; 4] = [90, 91, 92, 93];
    const COPIES: i32 = 3;
    for film in FILMS {
        store.set_inventory(&inventory(film, COPIES)).await.unwrap();
    }
    store
        .set_customer_caps(CustomerCaps { max_open_rentals: 1, max_purchases_per_day: 20 })
        .await
        .unwrap();
    let mut customers = Vec::new();
    for index in 0..40 {
        customers.push(customer(store.as_ref(), &format!("{name}-{index}@example.com")).await);
    }
    // Each customer rents one film; the first four send their rent twice (a retry racing the
    // first call); the fifth also sends its request id again for another film; the sixth also
    // rents a film nobody stocks; the seventh also rents a second film (over its cap of one).
    let mut asked = Vec::new();
    for (index, &customer) in customers.iter().enumerate() {
        let film = FILMS[index % FILMS.len()];
        asked.push((index, rental(customer, film, 1, name)));
        match index {
            0..4 => asked.push((index, rental(customer, film, 1, name))),
            4 => asked.push((index, rental(customer, FILMS[(index + 1) % 4], 1, name))),
            5 => asked.push((index, rental(customer, 999, 1, &format!("{name}-nowhere")))),
            6 => asked.push((index, rental(customer, FILMS[(index + 1) % 4], 1, "second"))),
            _ => {}
        }
    }
    let calls: Vec<_> = asked
        .iter()
        .map(|(_, rental)| {
            let (store, rental) = (Arc::clone(&store), rental.clone());
            tokio::spawn(async move { store.rent(&rental).await })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }

    let mut made: std::collections::BTreeMap<usize, Rental> = Default::default();
    let mut changes: Vec<stock::domain::Availability> = Vec::new();
    for ((index, asked), answer) in asked.iter().zip(answers) {
        match answer {
            Ok(outcome) => {
                let rental = outcome.value;
                assert_eq!(
                    (rental.customer_id, rental.movie_id),
                    (asked.customer_id, asked.movie_id)
                );
                assert_eq!((rental.price_minor, rental.days), (250, 1));
                if let Some(earlier) = made.insert(*index, rental.clone()) {
                    assert_eq!(earlier, rental, "a retry is answered with the first rental");
                }
                changes.extend(outcome.changed);
            }
            Err(Error::SoldOut(film)) => assert_eq!(film, asked.movie_id),
            Err(Error::NotStocked(film)) => assert_eq!((*index, film.get()), (5, 999)),
            Err(Error::RequestIdReused(_)) => assert_eq!(*index, 4),
            // The sixth's rent of a film nobody stocks may be refused for its cap first.
            Err(Error::TooManyOpenRentals(1)) => assert!([5, 6].contains(index), "{index}"),
            Err(other) => panic!("customer {index}'s rent got {other:?}"),
        }
    }
    assert_eq!(made.len(), FILMS.len() * COPIES as usize, "every copy rented, none twice");
    for film in FILMS {
        let out = made.values().filter(|rental| rental.movie_id.get() == film).count();
        assert_eq!(out, COPIES as usize, "film {film}");
        // What the last change of the film says is what the database holds.
        let last = changes.iter().filter(|c| c.movie_id.get() == film).max_by_key(|c| c.version);
        let now = store.availability(&[MovieId::new(film)]).await.unwrap().remove(0);
        assert_eq!(last, Some(&now), "film {film}");
        assert_eq!(now.copies_available, 0);
    }
    assert_invariant(store.as_ref()).await;

    // Every rental returned at once; the first twice; the second also by another customer.
    let rentals: Vec<Rental> = made.into_values().collect();
    let mut returns: Vec<(RentalId, Option<AccountId>)> =
        rentals.iter().map(|rental| (rental.id, Some(rental.customer_id))).collect();
    returns.push((rentals[0].id, None));
    returns.push((rentals[1].id, Some(rentals[2].customer_id)));
    let calls: Vec<_> = returns
        .iter()
        .map(|&(id, by)| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.return_rental(id, by, start()).await })
        })
        .collect();
    let (mut closed, mut twice, mut not_yours) = (Vec::new(), 0, 0);
    for (call, (id, by)) in calls.into_iter().zip(&returns) {
        match call.await.unwrap() {
            Ok(outcome) => {
                assert_eq!((outcome.value.id, outcome.value.returned_at), (*id, Some(start())));
                assert!(by.is_none_or(|by| by == outcome.value.customer_id));
                assert!(outcome.changed.is_some());
                closed.push(*id);
            }
            Err(Error::AlreadyReturned(returned)) => {
                assert_eq!(returned, rentals[0].id);
                twice += 1;
            }
            Err(Error::NotYourRental(other)) => {
                assert_eq!(other, rentals[1].id);
                not_yours += 1;
            }
            Err(other) => panic!("returning {id:?} got {other:?}"),
        }
    }
    closed.sort();
    let mut all: Vec<RentalId> = rentals.iter().map(|rental| rental.id).collect();
    all.sort();
    assert_eq!((closed, twice, not_yours), (all, 1, 1), "each rental closed once");
    for now in store.availability(&FILMS.map(MovieId::new)).await.unwrap() {
        assert_eq!(now.copies_available, COPIES, "film {}", now.movie_id.get());
    }
    assert_invariant(store.as_ref()).await;
    store
        .set_customer_caps(CustomerCaps { max_open_rentals: 10, max_purchases_per_day: 20 })
        .await
        .unwrap();
}

/// A customer's rentals read a page at a time, at any page size, are the whole list in order:
/// open ones by due date (ties by id), then returned ones, latest return first.
async fn long_histories_page(store: &dyn StockStore) {
    store.stock_missing(&[inventory(61, 50), inventory(62, 50)]).await.unwrap();
    let gus = customer(store, "gus@example.com").await;
    // Two of three are returned at once (at most 10 may be open), at repeating times, and
    // due dates repeat (1 to 3 days): the order leans on ids too.
    let mut made = Vec::new();
    for n in 0..23u64 {
        let new = rental(gus, 61 + (n % 2) as i64, 1 + (n % 3) as i32, &format!("gus-{n}"));
        let rented = store.rent(&new).await.unwrap().value;
        if n % 3 != 0 {
            let at = start() + Duration::from_secs(3_600 * (n % 4));
            store.return_rental(rented.id, Some(gus), at).await.unwrap();
        }
        made.push(rented);
    }
    for include_returned in [false, true] {
        let whole = store.rentals_of(gus, include_returned, None, usize::MAX).await.unwrap();
        assert_eq!(whole.len(), if include_returned { 23 } else { 8 });
        let key = |r: &Rental| {
            let after = RentalsAfter::after(r);
            (after.returned, after.key, after.id.get())
        };
        assert!(whole.windows(2).all(|w| key(&w[0]) < key(&w[1])), "in order, each once");
        for size in [1, 2, 3, 7, 23, 24] {
            let mut paged: Vec<Rental> = Vec::new();
            loop {
                let after = paged.last().map(RentalsAfter::after);
                let page = store.rentals_of(gus, include_returned, after, size).await.unwrap();
                assert!(page.len() <= size);
                let done = page.len() < size;
                paged.extend(page);
                if done {
                    break;
                }
            }
            assert_eq!(paged, whole, "pages of {size}");
        }
    }
    for rental in made.iter().step_by(3) {
        store.return_rental(rental.id, Some(gus), start()).await.unwrap();
    }
    assert_invariant(store).await;
}

/// The fee charged on return is the domain's rule to the second, whichever backend computes it.
async fn late_fees(store: &dyn StockStore) {
    store.stock_missing(&[inventory(41, 1)]).await.unwrap();
    let eve = customer(store, "late.eve@example.com").await;
    let due = start() + DAY * 2;
    let lateness = [
        Duration::ZERO,
        // Under a millisecond: both databases keep milliseconds, so this is on time.
        Duration::from_micros(500),
        Duration::from_millis(500),
        Duration::from_secs(1),
        DAY - Duration::from_millis(1),
        DAY,
        DAY + Duration::from_millis(999),
        DAY + Duration::from_secs(1),
        DAY * 9 + Duration::from_secs(3_600),
    ];
    for (n, late) in lateness.into_iter().enumerate() {
        let made = store.rent(&rental(eve, 41, 2, &format!("eve-{n}"))).await.unwrap().value;
        let returned = store.return_rental(made.id, Some(eve), due + late).await.unwrap().value;
        let stored = due + Duration::from_millis(late.as_millis() as u64);
        assert_eq!(returned.returned_at, Some(stored));
        let expected = stock::domain::late_fee(due, stored, 250);
        assert_eq!(returned.late_fee_minor, expected, "returned {late:?} late");
    }
    // Early costs nothing either.
    let made = store.rent(&rental(eve, 41, 2, "eve-early")).await.unwrap().value;
    let returned = store.return_rental(made.id, None, start()).await.unwrap().value;
    assert_eq!(returned.late_fee_minor, 0);
}

/// Every change is kept, per film in version order, one version per change.
async fn history(store: &dyn StockStore) {
    let movie = MovieId::new(40);
    let fay = customer(store, "fay@example.com").await;
    store.set_inventory(&inventory(40, 2)).await.unwrap();
    let rented = store.rent(&rental(fay, 40, 1, "h1")).await.unwrap().value;
    store.return_rental(rented.id, Some(fay), start()).await.unwrap();
    store.set_inventory(&inventory(40, 3)).await.unwrap();
    let all = store.changes(movie, 0, None).await.unwrap();
    let seen: Vec<(i64, i32, i32)> =
        all.iter().map(|a| (a.version, a.copies_owned, a.copies_available)).collect();
    assert_eq!(seen, [(1, 2, 2), (2, 2, 1), (3, 2, 2), (4, 3, 3)]);
    let some = store.changes(movie, 1, Some(3)).await.unwrap();
    assert_eq!(some.iter().map(|a| a.version).collect::<Vec<_>>(), [2, 3]);
    assert!(store.changes(movie, 4, None).await.unwrap().is_empty());
    let versions = store.versions().await.unwrap();
    assert!(versions.contains(&(movie, 4)), "{versions:?}");

    // Forgetting keeps each film's latest change.
    let forgotten =
        store.forget_changes(SystemTime::now() + Duration::from_secs(60)).await.unwrap();
    assert!(forgotten >= 3, "{forgotten}");
    let kept = store.changes(movie, 0, None).await.unwrap();
    assert_eq!(kept.iter().map(|a| a.version).collect::<Vec<_>>(), [4]);
    assert_eq!(store.forget_changes(SystemTime::UNIX_EPOCH).await.unwrap(), 0);
}

async fn stocking(store: &dyn StockStore) {
    assert_eq!(store.stock_missing(&[inventory(1, 2), inventory(2, 1)]).await.unwrap(), 2);
    assert_eq!(store.stock_missing(&[inventory(1, 9), inventory(3, 1)]).await.unwrap(), 1);
    let found =
        store.availability(&[MovieId::new(3), MovieId::new(1), MovieId::new(999)]).await.unwrap();
    let mut ids: Vec<i64> = found.iter().map(|a| a.movie_id.get()).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 3], "unstocked films are left out");
    let one = found.iter().find(|a| a.movie_id.get() == 1).unwrap();
    assert_eq!((one.copies_owned, one.copies_available), (2, 2), "stock_missing kept film 1");
    let all: Vec<i64> =
        store.all_availability().await.unwrap().iter().map(|a| a.movie_id.get()).collect();
    assert_eq!(all, [1, 2, 3]);

    let before = one.version;
    let set = store.set_inventory(&Inventory { copies_owned: 4, ..inventory(1, 0) }).await.unwrap();
    assert_eq!((set.copies_owned, set.copies_available), (4, 4));
    assert!(set.version > before, "every change bumps the version");
    let new = store.set_inventory(&inventory(4, 3)).await.unwrap();
    assert_eq!((new.copies_owned, new.copies_available), (3, 3));
}

async fn accounts(store: &dyn StockStore) {
    let ann = customer(store, "Ann@Example.com").await;
    let taken = store
        .create_account(&NewAccount {
            email: "ann@example.com".into(),
            name: "Other Ann".into(),
            password_hash: "x".into(),
            role: Role::Customer,
            now: start(),
        })
        .await
        .unwrap_err();
    assert!(matches!(taken, Error::EmailTaken(_)), "{taken:?}");
    let (found, hash) = store.account_by_email("ANN@example.COM").await.unwrap().unwrap();
    assert_eq!(
        (found.id, found.email.as_str(), found.role),
        (ann, "Ann@Example.com", Role::Customer)
    );
    assert_eq!(hash, "$argon2id$not-checked-here");
    assert_eq!(found.created_at, start());
    assert!(store.account_by_email("bob@example.com").await.unwrap().is_none());
    // A new account's sessions are at version 0; signing out and a role change each end them.
    assert_eq!(found.session_version, 0);
    store.end_sessions(ann).await.unwrap();
    assert_eq!(store.account(ann).await.unwrap().unwrap().session_version, 1);
    store.promote_to_staff(ann).await.unwrap();
    let promoted = store.account(ann).await.unwrap().unwrap();
    assert_eq!((promoted.role, promoted.session_version), (Role::Staff, 2));
    let (by_email, _) = store.account_by_email("ann@example.com").await.unwrap().unwrap();
    assert_eq!(by_email.session_version, 2);
    assert!(store.account(AccountId::new(987_654)).await.unwrap().is_none());
}

fn registration(email: &str, code: u8, expires_at: SystemTime) -> NewRegistration {
    NewRegistration {
        email: email.into(),
        name: format!("Name of {email}"),
        password_hash: format!("$argon2id$hash-{code}"),
        token_hash: [code; 32],
        expires_at,
    }
}

fn mail(to: &str, subject: &str) -> Mail {
    Mail { to: to.into(), subject: subject.into(), body: format!("{subject} for {to}") }
}

/// Queued mails, delivered (removed) as they are read.
async fn delivered(store: &dyn StockStore) -> Vec<Mail> {
    let now = SystemTime::now();
    let mails = store.claim_mail(now, now + Duration::from_secs(60), 100).await.unwrap();
    let ids: Vec<i64> = mails.iter().map(|mail| mail.id).collect();
    store.mail_sent(&ids).await.unwrap();
    mails.into_iter().map(|mail| mail.mail).collect()
}

/// A registration makes no account until it is confirmed; a taken email keeps nothing and gets
/// the other mail; a code works once, and not after its time.
async fn registrations(store: &dyn StockStore) {
    let now = start();
    let later = now + DAY;
    let (confirm, taken) = (mail("new@example.com", "confirm"), mail("new@example.com", "taken"));
    let free = store
        .register(&registration("new@example.com", 1, later), &confirm, &taken, now)
        .await
        .unwrap();
    assert!(free);
    assert!(store.account_by_email("new@example.com").await.unwrap().is_none(), "not yet");
    // Registered twice before confirming: both wait; the first confirmed makes the account.
    let again = registration("NEW@example.com", 2, later);
    assert!(store.register(&again, &confirm, &taken, now).await.unwrap());
    assert_eq!(delivered(store).await, vec![confirm.clone(), confirm.clone()]);
    assert!(store.confirm_registration(&[9; 32], now).await.unwrap().is_none(), "unknown code");
    let made = store.confirm_registration(&[1; 32], now).await.unwrap().unwrap();
    assert_eq!((made.email.as_str(), made.role), ("new@example.com", Role::Customer));
    let (found, hash) = store.account_by_email("new@example.com").await.unwrap().unwrap();
    assert_eq!((found.id, hash.as_str()), (made.id, "$argon2id$hash-1"));
    // Used once; the email's other registration now finds the address taken.
    assert!(store.confirm_registration(&[1; 32], now).await.unwrap().is_none());
    assert_eq!(
        store.registration(&[2; 32], now).await.unwrap().as_deref(),
        Some("$argon2id$hash-2")
    );
    let second = store.confirm_registration(&[2; 32], now).await.unwrap_err();
    assert!(matches!(second, Error::EmailTaken(_)), "{second:?}");
    // Now taken, in any case: the owner is told, and nothing is kept.
    let taken_now = store
        .register(&registration("New@Example.com", 3, later), &confirm, &taken, now)
        .await
        .unwrap();
    assert!(!taken_now);
    assert_eq!(delivered(store).await, vec![taken.clone()]);
    assert!(store.confirm_registration(&[3; 32], now).await.unwrap().is_none());
    // A registration confirmed after another made the account: ALREADY_EXISTS, kept to expire.
    store
        .register(&registration("race@example.com", 4, later), &confirm, &taken, now)
        .await
        .unwrap();
    store
        .create_account(&NewAccount {
            email: "Race@example.com".into(),
            name: "Racer".into(),
            password_hash: "x".into(),
            role: Role::Customer,
            now,
        })
        .await
        .unwrap();
    let raced = store.confirm_registration(&[4; 32], now).await.unwrap_err();
    assert!(matches!(raced, Error::EmailTaken(_)), "{raced:?}");
    // Past its time a code does not work, and the sweep forgets it and the unsent mail of its
    // time (whose code no longer works either).
    let late = registration("late@example.com", 5, now + DAY);
    store.register(&late, &confirm, &taken, now).await.unwrap();
    assert!(store.registration(&[5; 32], now + DAY * 2).await.unwrap().is_none());
    assert!(store.confirm_registration(&[5; 32], now + DAY * 2).await.unwrap().is_none());
    let (registrations, mails) =
        store.forget_registrations(now + DAY * 2, now + DAY).await.unwrap();
    assert!(registrations >= 1 && mails >= 1, "{registrations} {mails}");
    assert!(store.confirm_registration(&[5; 32], now).await.unwrap().is_none(), "forgotten");
    assert!(delivered(store).await.is_empty(), "its mail too");
}

/// Claimed mail is held from other senders until its claim runs out; sent mail is gone.
async fn outbox(store: &dyn StockStore) {
    let now = SystemTime::now();
    for n in 10..13 {
        let to = format!("box{n}@example.com");
        store
            .register(&registration(&to, n, now + DAY), &mail(&to, "c"), &mail(&to, "t"), now)
            .await
            .unwrap();
    }
    let first = store.claim_mail(now, now + Duration::from_secs(60), 2).await.unwrap();
    let to: Vec<&str> = first.iter().map(|mail| mail.mail.to.as_str()).collect();
    assert_eq!(to, ["box10@example.com", "box11@example.com"], "oldest first");
    let second = store.claim_mail(now, now + Duration::from_secs(60), 10).await.unwrap();
    assert_eq!(second.len(), 1, "the claimed two are held");
    assert_eq!(second[0].mail.to, "box12@example.com");
    store.mail_sent(&[second[0].id]).await.unwrap();
    // The first sender died: after its claim, another delivers its two.
    let after = now + Duration::from_secs(61);
    let again = store.claim_mail(after, after + Duration::from_secs(60), 10).await.unwrap();
    let ids = |mails: &[stock::store::OutboxMail]| mails.iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&first));
    store.mail_sent(&ids(&again)).await.unwrap();
    let late = now + Duration::from_secs(3600);
    assert!(store.claim_mail(late, late, 10).await.unwrap().is_empty(), "all sent");
}

async fn renting_and_returning(store: &dyn StockStore) {
    let cleo = customer(store, "cleo@example.com").await;
    let dan = customer(store, "dan@example.com").await;
    store.set_inventory(&inventory(10, 1)).await.unwrap();

    let made = store.rent(&rental(cleo, 10, 3, "cleo-1")).await.unwrap();
    let changed = made.changed.clone().expect("a new rental changes stock");
    assert_eq!((changed.copies_owned, changed.copies_available), (1, 0));
    let first = made.value;
    assert_eq!((first.movie_id.get(), first.days, first.price_minor), (10, 3, 750));
    assert_eq!((first.currency.as_str(), first.price_per_day_minor), ("EUR", 250));
    assert_eq!((first.rented_at, first.due_at), (start(), start() + DAY * 3));
    assert_eq!(first.returned_at, None);

    // A retry returns the first rental and changes nothing; the same id for another rental is
    // refused.
    let again = store.rent(&rental(cleo, 10, 3, "cleo-1")).await.unwrap();
    assert_eq!((again.value.clone(), again.changed), (first.clone(), None));
    let reused = store.rent(&rental(cleo, 10, 5, "cleo-1")).await.unwrap_err();
    assert!(matches!(reused, Error::RequestIdReused(_)), "{reused:?}");
    // The same id belongs to each customer: Dan's "cleo-1" is his own (but the film is out).
    let sold_out = store.rent(&rental(dan, 10, 1, "cleo-1")).await.unwrap_err();
    assert!(matches!(sold_out, Error::SoldOut(id) if id.get() == 10), "{sold_out:?}");
    let unstocked = store.rent(&rental(dan, 777, 1, "dan-1")).await.unwrap_err();
    assert!(matches!(unstocked, Error::NotStocked(id) if id.get() == 777), "{unstocked:?}");
    // A refused rental claimed nothing: the same id works once there is a copy.
    store.set_inventory(&inventory(10, 2)).await.unwrap();
    let dans = store.rent(&rental(dan, 10, 1, "cleo-1")).await.unwrap().value;
    assert_ne!(dans.id, first.id);
    assert_invariant(store).await;

    // Returns: only the customer's own, once; staff may return any; late costs a day's price
    // per day started.
    let not_yours = store.return_rental(first.id, Some(dan), start()).await.unwrap_err();
    assert!(matches!(not_yours, Error::NotYourRental(_)), "{not_yours:?}");
    let nowhere =
        store.return_rental(RentalId::new(987_654), Some(dan), start()).await.unwrap_err();
    assert!(matches!(nowhere, Error::NotYourRental(_)), "{nowhere:?}");
    let missing = store.return_rental(RentalId::new(987_654), None, start()).await.unwrap_err();
    assert!(matches!(missing, Error::RentalNotFound(_)), "{missing:?}");
    let late = start() + DAY * 4 + Duration::from_secs(60);
    let returned = store.return_rental(first.id, Some(cleo), late).await.unwrap();
    assert_eq!((returned.value.returned_at, returned.value.late_fee_minor), (Some(late), 500));
    assert_eq!(returned.changed.unwrap().copies_available, 1);
    let twice = store.return_rental(first.id, Some(cleo), late).await.unwrap_err();
    assert!(matches!(twice, Error::AlreadyReturned(_)), "{twice:?}");
    let by_staff = store.return_rental(dans.id, None, start()).await.unwrap();
    assert_eq!(by_staff.value.late_fee_minor, 0);

    // Fewer copies than are out on loan is refused; as many is fine.
    let out = store.rent(&rental(dan, 10, 2, "dan-2")).await.unwrap().value;
    let below = store.set_inventory(&inventory(10, 0)).await.unwrap_err();
    assert!(matches!(below, Error::BelowRented { rented: 1, owned: 0, .. }), "{below:?}");
    let exact = store.set_inventory(&inventory(10, 1)).await.unwrap();
    assert_eq!((exact.copies_owned, exact.copies_available), (1, 0));

    // A customer's rentals: open ones by due date, then returned ones, latest return first.
    let open = rentals_of(store, dan, false).await;
    assert_eq!(open.iter().map(|r| r.id).collect::<Vec<_>>(), [out.id]);
    let all = rentals_of(store, dan, true).await;
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [out.id, dans.id]);
    assert_eq!(rentals_of(store, cleo, true).await.len(), 1);
    store.return_rental(out.id, None, start()).await.unwrap();
    assert_invariant(store).await;
}

async fn buying(store: &dyn StockStore) {
    let eve = customer(store, "eve@example.com").await;
    store.set_inventory(&inventory(20, 2)).await.unwrap();
    let buy = |request_id: &str, movie_id: i64| NewPurchase {
        customer_id: eve,
        movie_id: MovieId::new(movie_id),
        request_id: request_id.into(),
        now: start(),
    };
    let bought = store.purchase(&buy("eve-1", 20)).await.unwrap();
    let changed = bought.changed.unwrap();
    assert_eq!((changed.copies_owned, changed.copies_available), (1, 1), "a bought copy leaves");
    assert_eq!((bought.value.price_minor, bought.value.currency.as_str()), (1500, "EUR"));
    assert_eq!(bought.value.purchased_at, start());
    let again = store.purchase(&buy("eve-1", 20)).await.unwrap();
    assert_eq!((again.value, again.changed), (bought.value, None));
    let reused = store.purchase(&buy("eve-1", 10)).await.unwrap_err();
    assert!(matches!(reused, Error::RequestIdReused(_)), "{reused:?}");
    store.purchase(&buy("eve-2", 20)).await.unwrap();
    let sold_out = store.purchase(&buy("eve-3", 20)).await.unwrap_err();
    assert!(matches!(sold_out, Error::SoldOut(_)), "{sold_out:?}");
    let unstocked = store.purchase(&buy("eve-4", 778)).await.unwrap_err();
    assert!(matches!(unstocked, Error::NotStocked(_)), "{unstocked:?}");
    assert_invariant(store).await;
}

/// A request id is remembered until it is expired, then it makes a new rental or purchase.
async fn request_ids_expire(store: &dyn StockStore) {
    store.stock_missing(&[inventory(42, 5)]).await.unwrap();
    let fay = customer(store, "keyed.fay@example.com").await;
    // Everything the other tests made (at `start()`) is forgotten first.
    let later = start() + DAY * 100;
    store.expire_request_ids(later).await.unwrap();
    let at =
        |request_id: &str, now: SystemTime| NewRental { now, ..rental(fay, 42, 1, request_id) };
    let old = store.rent(&at("fay-1", later)).await.unwrap().value;
    let newer = store.rent(&at("fay-2", later + DAY)).await.unwrap().value;
    let buy = |request_id: &str| NewPurchase {
        customer_id: fay,
        movie_id: MovieId::new(42),
        request_id: request_id.into(),
        now: later,
    };
    let bought = store.purchase(&buy("fay-buy")).await.unwrap().value;

    let forgotten = store.expire_request_ids(later + Duration::from_secs(3_600)).await.unwrap();
    assert_eq!(forgotten, 2, "the old rental's and the purchase's ids");
    // A forgotten id makes a new rental or purchase; a remembered one is still a retry.
    let again = store.rent(&at("fay-1", later + DAY * 2)).await.unwrap();
    assert!(again.changed.is_some(), "a new rental takes a copy");
    assert_ne!(again.value.id, old.id);
    let retried = store.rent(&at("fay-2", later + DAY)).await.unwrap();
    assert_eq!((retried.value.id, retried.changed), (newer.id, None));
    let bought_again = store.purchase(&buy("fay-buy")).await.unwrap();
    assert_ne!(bought_again.value.id, bought.id);
    // The first rental is kept; only its id is gone.
    let mine = rentals_of(store, fay, true).await;
    let first = mine.iter().find(|rental| rental.id == old.id).expect("the old rental is kept");
    assert_eq!(first.request_id, "");
    assert_eq!(store.expire_request_ids(later + Duration::from_secs(3_600)).await.unwrap(), 1);
    assert_invariant(store).await;
}

/// Many customers racing through `a` and `b` (the same store, or two replicas of it) for a film
/// with few copies, and one customer's retries racing each other.
async fn races(a: Arc<dyn StockStore>, b: Arc<dyn StockStore>) {
    const COPIES: i32 = 3;
    a.set_inventory(&inventory(30, COPIES)).await.unwrap();
    let mut customers = Vec::new();
    for index in 0..24 {
        customers.push(customer(a.as_ref(), &format!("racer{index}@example.com")).await);
    }
    let attempts: Vec<_> = customers
        .iter()
        .enumerate()
        .map(|(index, &customer)| {
            let store = if index % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            tokio::spawn(async move { store.rent(&rental(customer, 30, 1, "race")).await })
        })
        .collect();
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => won += 1,
            Err(Error::SoldOut(_)) => {}
            Err(other) => panic!("a racer got {other:?}"),
        }
    }
    assert_eq!(won, COPIES, "exactly as many rentals as copies");
    assert_eq!(a.availability(&[MovieId::new(30)]).await.unwrap()[0].copies_available, 0);

    // One customer's retries of one rental, all at once: one rental, the same for all.
    a.set_inventory(&inventory(31, 5)).await.unwrap();
    let retrier = customer(a.as_ref(), "retrier@example.com").await;
    let retries: Vec<_> = (0..12)
        .map(|index| {
            let store = if index % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            tokio::spawn(async move { store.rent(&rental(retrier, 31, 2, "once")).await })
        })
        .collect();
    let mut ids = Vec::new();
    let mut changes = 0;
    for retry in retries {
        let outcome = retry.await.unwrap().unwrap();
        changes += usize::from(outcome.changed.is_some());
        ids.push(outcome.value.id);
    }
    ids.dedup();
    assert_eq!((ids.len(), changes), (1, 1), "one rental, one change");
    assert_eq!(a.availability(&[MovieId::new(31)]).await.unwrap()[0].copies_available, 4);
    assert_invariant(a.as_ref()).await;
}

/// One customer cannot empty the shop: open rentals and purchases a day are capped, in the
/// write itself, even when the customer's calls race each other on two replicas.
async fn caps(a: Arc<dyn StockStore>, b: Arc<dyn StockStore>) {
    a.set_customer_caps(CustomerCaps { max_open_rentals: 3, max_purchases_per_day: 2 })
        .await
        .unwrap();
    for film in 60..80 {
        a.set_inventory(&inventory(film, 2)).await.unwrap();
    }
    // Twenty rentals of twenty films at once, half on each replica: three are made.
    let greedy = customer(a.as_ref(), "greedy@example.com").await;
    let rents: Vec<_> = (60..80)
        .map(|film| {
            let store = if film % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            let request_id = format!("greedy-{film}");
            tokio::spawn(async move { store.rent(&rental(greedy, film, 1, &request_id)).await })
        })
        .collect();
    let mut made = Vec::new();
    for rent in rents {
        match rent.await.unwrap() {
            Ok(outcome) => made.push(outcome.value),
            Err(Error::TooManyOpenRentals(3)) => {}
            Err(other) => panic!("a capped rental got {other:?}"),
        }
    }
    assert_eq!(made.len(), 3, "exactly the cap of open rentals");
    assert_eq!(rentals_of(a.as_ref(), greedy, false).await.len(), 3);
    assert_invariant(a.as_ref()).await;
    // A retry of a rental that was made is still answered; returning one makes room.
    let first = &made[0];
    let again =
        rental(greedy, first.movie_id.get(), 1, &format!("greedy-{}", first.movie_id.get()));
    assert_eq!(a.rent(&again).await.unwrap().value.id, first.id);
    a.return_rental(first.id, Some(greedy), start()).await.unwrap();
    a.rent(&rental(greedy, 79, 1, "greedy-again")).await.unwrap();
    let refused = b.rent(&rental(greedy, 78, 1, "greedy-more")).await.unwrap_err();
    assert!(matches!(refused, Error::TooManyOpenRentals(3)), "{refused:?}");

    // Purchases: two a day, racing or not; the next day, two more.
    let buyer = customer(a.as_ref(), "buyer@example.com").await;
    let buy = |store: &Arc<dyn StockStore>, film: i64, at: SystemTime| {
        let store = Arc::clone(store);
        tokio::spawn(async move {
            store
                .purchase(&NewPurchase {
                    customer_id: buyer,
                    movie_id: MovieId::new(film),
                    request_id: format!(
                        "buy-{film}-{}",
                        at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
                    ),
                    now: at,
                })
                .await
        })
    };
    let buys: Vec<_> =
        (60..70).map(|film| buy(if film % 2 == 0 { &a } else { &b }, film, start())).collect();
    let mut bought = 0;
    for purchase in buys {
        match purchase.await.unwrap() {
            Ok(_) => bought += 1,
            Err(Error::TooManyPurchases(2)) => {}
            Err(other) => panic!("a capped purchase got {other:?}"),
        }
    }
    assert_eq!(bought, 2, "exactly the cap of purchases a day");
    assert_invariant(a.as_ref()).await;
    let tomorrow = start() + DAY + Duration::from_secs(1);
    buy(&a, 70, tomorrow).await.unwrap().unwrap();
    a.set_customer_caps(CustomerCaps { max_open_rentals: 10, max_purchases_per_day: 20 })
        .await
        .unwrap();
}
