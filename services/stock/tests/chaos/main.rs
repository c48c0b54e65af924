//! Three stock replicas on one PostgreSQL database, customers racing for a few copies and
//! retrying transport errors with the same request id on another replica, watchers resuming on
//! another replica when theirs dies, and replicas killed (SIGKILL) and restarted throughout.
//! Afterwards nothing is oversold, lost, doubled or skipped.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tonic::{Code, Request, transport::Channel};
use videostore_proto::stock::{self as pb, stock_service_client::StockServiceClient};

const REPLICAS: usize = 3;
const CUSTOMERS: usize = 32;
const FILMS: [i64; 4] = [1, 2, 3, 4];
const COPIES: i32 = 3;
const RUN: Duration = Duration::from_secs(8);
const STAFF: (&str, &str) = ("staff@chaos.test", "staff password 1");

/// One replica: a `stock` process on a port of its own.
struct Replica {
    addr: SocketAddr,
    child: Option<Child>,
}

impl Replica {
    fn start(&mut self, database: &str, data: &std::path::Path) {
        let child = Command::new(env!("CARGO_BIN_EXE_stock"))
            .env("STOCK_LISTEN_ADDR", self.addr.to_string())
            .env("STOCK_DATABASE_URL", database)
            .env("VIDEOSTORE_DATA_DIR", data)
            .env("VIDEOSTORE_MAIL_DIR", data.join("outbox"))
            // 32 racing clients from one address: the abuse limits are not what is tested.
            .env("STOCK_SIGN_INS_PER_MINUTE", "0")
            .env("STOCK_WRITES_PER_MINUTE", "0")
            .env("VIDEOSTORE_STAFF_EMAIL", STAFF.0)
            .env("VIDEOSTORE_STAFF_PASSWORD", STAFF.1)
            .env("STOCK_WATCH_HEARTBEAT_MS", "500")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(data.join(format!("replica-{}.log", self.addr.port())))
                    .unwrap(),
            )
            .spawn()
            .expect("the stock binary starts");
        self.child = Some(child);
    }

    /// SIGKILL: no graceful anything.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

async fn client(addr: SocketAddr) -> StockServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(300))
        .timeout(Duration::from_secs(3))
        .connect_lazy();
    StockServiceClient::new(channel)
}

async fn wait_serving(addr: SocketAddr) {
    for _ in 0..600 {
        let ready =
            client(addr).await.get_availability(pb::GetAvailabilityRequest { movie_id: 1 }).await;
        if ready.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("replica {addr} did not start");
}

/// Every replica's log, for a failure's message.
fn logs(data: &std::path::Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(data).unwrap().flatten() {
        if entry.file_name().to_string_lossy().ends_with(".log") {
            all.push_str(&format!("== {:?}\n", entry.file_name()));
            all.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    all
}

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// A failure of the replica or the connection, not an answer: worth the same call elsewhere.
fn is_transport(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    ) || (status.code() == Code::Internal && status.message().contains("h2"))
}

async fn sign_in(addr: SocketAddr, email: &str, password: &str) -> String {
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    pb::account_service_client::AccountServiceClient::new(channel)
        .sign_in(pb::SignInRequest { email: email.into(), password: password.into() })
        .await
        .unwrap()
        .into_inner()
        .token
}

/// Registers on the replica at `addr` as a customer does (the code from the mail that the
/// replicas deliver into `data`), and returns the new account's token.
async fn register(addr: SocketAddr, data: &std::path::Path, email: &str, password: &str) -> String {
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut accounts = pb::account_service_client::AccountServiceClient::new(channel);
    let request = pb::RegisterRequest {
        email: email.into(),
        name: email.split('@').next().unwrap().into(),
        password: password.into(),
    };
    accounts.register(request).await.unwrap();
    let code = stock::mail::Mailbox::new(data.join("outbox"))
        .confirmation_code(email, Duration::from_secs(10))
        .await
        .expect("a confirmation mail within 10 s");
    let confirm = pb::ConfirmEmailRequest { code, password: password.into() };
    accounts.confirm_email(confirm).await.unwrap().into_inner().token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_killed_mid_run_lose_no_rental_oversell_nothing_and_skip_no_change() {
    let cluster = testdb::Cluster::shared().unwrap();
    let database = cluster.database().unwrap();
    let name = database.rsplit('/').next().unwrap().to_owned();
    let data = tempfile::tempdir().unwrap();
    let mut replicas: Vec<Replica> =
        (0..REPLICAS).map(|_| Replica { addr: free_port(), child: None }).collect();
    for replica in &mut replicas {
        replica.start(&database, data.path());
    }
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    for addr in &addrs {
        if tokio::time::timeout(Duration::from_secs(20), wait_serving(*addr)).await.is_err() {
            panic!("replica {addr} did not start:\n{}", logs(data.path()));
        }
    }

    // Few copies of a few films; customers signed up on any replica.
    let staff = sign_in(addrs[0], STAFF.0, STAFF.1).await;
    let mut stock = client(addrs[0]).await;
    for movie_id in FILMS {
        let money = |minor| Some(pb::Money { currency_code: "EUR".into(), minor_units: minor });
        stock
            .set_inventory(authed(
                pb::SetInventoryRequest {
                    movie_id,
                    copies_owned: COPIES,
                    rental_price_per_day: money(199),
                    purchase_price: money(999),
                },
                &staff,
            ))
            .await
            .unwrap();
    }
    let mut tokens = Vec::new();
    for index in 0..CUSTOMERS {
        let email = format!("racer{index}@chaos.test");
        tokens.push(register(addrs[index % REPLICAS], data.path(), &email, "racer password").await);
    }
    let start_versions: HashMap<i64, i64> = stock
        .batch_get_availability(pb::BatchGetAvailabilityRequest { movie_ids: FILMS.to_vec() })
        .await
        .unwrap()
        .into_inner()
        .availabilities
        .into_iter()
        .map(|a| (a.movie_id, a.version))
        .collect();

    // Customers stop first; watchers once the last change has had time to reach them.
    let renting = Arc::new(AtomicBool::new(true));
    let running = Arc::new(AtomicBool::new(true));
    // Watchers: one per replica to begin with, each moving to the next replica (resuming from the
    // versions it has) when its stream breaks.
    let mut watchers = Vec::new();
    for first in 0..REPLICAS {
        let (addrs, running, start) = (addrs.clone(), Arc::clone(&running), start_versions.clone());
        watchers.push(tokio::spawn(async move {
            let mut seen: HashMap<i64, Vec<i64>> = HashMap::new();
            let mut at = first;
            let mut resumes = 0;
            while running.load(Ordering::SeqCst) {
                let resume_from: Vec<pb::FilmVersion> = FILMS
                    .iter()
                    .map(|&movie_id| pb::FilmVersion {
                        movie_id,
                        version: seen
                            .get(&movie_id)
                            .and_then(|v| v.last().copied())
                            .unwrap_or(start[&movie_id]),
                    })
                    .collect();
                let mut watch = client(addrs[at]).await;
                let request =
                    pb::WatchAvailabilityRequest { movie_ids: FILMS.to_vec(), resume_from };
                let opened =
                    tokio::time::timeout(Duration::from_secs(2), watch.watch_availability(request))
                        .await;
                if let Ok(Ok(stream)) = opened {
                    let mut stream = stream.into_inner();
                    loop {
                        let next =
                            tokio::time::timeout(Duration::from_secs(2), stream.message()).await;
                        match next {
                            Ok(Ok(Some(message))) => {
                                assert!(
                                    !message.snapshot,
                                    "resumed films get changes, never a snapshot"
                                );
                                for a in message.availabilities {
                                    seen.entry(a.movie_id).or_default().push(a.version);
                                }
                            }
                            _ => break,
                        }
                        if !running.load(Ordering::SeqCst) {
                            break;
                        }
                    }
                }
                resumes += 1;
                at = (at + 1) % REPLICAS;
            }
            (seen, resumes)
        }));
    }

    // Customers: rent and return as fast as they can, retrying a transport error with the same
    // request id on the next replica; every rental acknowledged is remembered.
    let acknowledged: Arc<Mutex<HashMap<(usize, String), i64>>> = Arc::default();
    // Calls that failed in transport and went to another replica.
    let retried = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut customers = Vec::new();
    for (index, token) in tokens.into_iter().enumerate() {
        let (addrs, renting, acknowledged, retried) =
            (addrs.clone(), Arc::clone(&renting), Arc::clone(&acknowledged), Arc::clone(&retried));
        customers.push(tokio::spawn(async move {
            // One channel per replica, reconnecting by itself after a replica comes back.
            let mut clients = Vec::new();
            for addr in &addrs {
                clients.push(client(*addr).await);
            }
            let mut round = 0;
            let mut at = index % REPLICAS;
            while renting.load(Ordering::SeqCst) {
                round += 1;
                let request_id = format!("c{index}-r{round}");
                let movie_id = FILMS[(index + round) % FILMS.len()];
                let mut rented = None;
                for _attempt in 0..20 {
                    let stock = &mut clients[at];
                    let request =
                        pb::RentRequest { movie_id, days: 1, request_id: request_id.clone() };
                    match stock.rent(authed(request, &token)).await {
                        Ok(rental) => {
                            rented = Some(rental.into_inner().id);
                            break;
                        }
                        Err(status) if is_transport(&status) => {
                            retried.fetch_add(1, Ordering::Relaxed);
                            at = (at + 1) % REPLICAS;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(status) => {
                            assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                            break;
                        }
                    }
                }
                let Some(rental_id) = rented else { continue };
                acknowledged.lock().unwrap().insert((index, request_id), rental_id);
                for _attempt in 0..20 {
                    let stock = &mut clients[at];
                    match stock.r#return(authed(pb::ReturnRequest { rental_id }, &token)).await {
                        Ok(_) => break,
                        Err(status) if is_transport(&status) => {
                            at = (at + 1) % REPLICAS;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        // A retried return whose first attempt committed.
                        Err(status) if status.code() == Code::FailedPrecondition => break,
                        Err(status) => panic!("return: {status:?}"),
                    }
                }
            }
        }));
    }

    // Chaos: a replica killed every ~1.2 s, and restarted on its port 0.4 s later.
    let started = tokio::time::Instant::now();
    let mut kills = 0;
    while started.elapsed() < RUN {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let victim = kills % REPLICAS;
        replicas[victim].kill();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(400)).await;
        replicas[victim].start(&database, data.path());
    }
    for addr in &addrs {
        if tokio::time::timeout(Duration::from_secs(20), wait_serving(*addr)).await.is_err() {
            panic!("replica {addr} did not come back:\n{}", logs(data.path()));
        }
    }
    // Customers finish their last round; the last changes reach the watchers; all stop.
    renting.store(false, Ordering::SeqCst);
    for customer in customers {
        customer.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.store(false, Ordering::SeqCst);
    let mut seen_by_watchers = Vec::new();
    for watcher in watchers {
        seen_by_watchers.push(watcher.await.unwrap());
    }

    // Every acknowledged rental is in the database, once.
    let acknowledged = acknowledged.lock().unwrap().clone();
    let retried = retried.load(Ordering::Relaxed);
    eprintln!(
        "chaos: {kills} kills, {} rentals acknowledged, {retried} rents retried elsewhere",
        acknowledged.len()
    );
    assert!(acknowledged.len() > 50, "the run rented something: {}", acknowledged.len());
    assert!(retried > 0, "the kills interrupted calls");
    let ids: Vec<String> = acknowledged.values().map(i64::to_string).collect();
    let stored = cluster
        .psql(&name, &format!("SELECT count(*) FROM rentals WHERE id IN ({})", ids.join(",")))
        .unwrap();
    let distinct: HashSet<&i64> = acknowledged.values().collect();
    assert_eq!(stored, distinct.len().to_string());
    assert_eq!(distinct.len(), acknowledged.len(), "two requests were answered with one rental");
    // Per request id, one rental only.
    let twice = cluster
        .psql(&name, "SELECT count(*) FROM (SELECT 1 FROM rentals GROUP BY customer_id, request_id HAVING count(*) > 1) t")
        .unwrap();
    assert_eq!(twice, "0");
    // No film oversold, and the invariant holds.
    let broken = cluster
        .psql(
            &name,
            "SELECT count(*) FROM inventory i WHERE copies_available < 0 \
             OR copies_available <> copies_owned - (SELECT count(*) FROM rentals r \
             WHERE r.movie_id = i.movie_id AND r.returned_ms IS NULL)",
        )
        .unwrap();
    assert_eq!(broken, "0");
    // The history has no gap.
    let gaps = cluster
        .psql(
            &name,
            "SELECT count(*) FROM (SELECT movie_id FROM stock_events GROUP BY movie_id \
             HAVING max(version) - min(version) + 1 <> count(*)) t",
        )
        .unwrap();
    assert_eq!(gaps, "0");
    // Every watcher saw every version of every film once, in order, across its replicas.
    let end_versions: HashMap<i64, i64> = cluster
        .psql(
            &name,
            "SELECT movie_id || ':' || version FROM inventory WHERE movie_id IN (1, 2, 3, 4)",
        )
        .unwrap()
        .lines()
        .map(|line| {
            let (movie, version) = line.split_once(':').unwrap();
            (movie.parse().unwrap(), version.parse().unwrap())
        })
        .collect();
    for (seen, resumes) in &seen_by_watchers {
        assert!(*resumes > 1, "the watcher moved replicas");
        for movie_id in FILMS {
            let expected: Vec<i64> =
                (start_versions[&movie_id] + 1..=end_versions[&movie_id]).collect();
            assert_eq!(
                seen.get(&movie_id).cloned().unwrap_or_default(),
                expected,
                "film {movie_id}"
            );
        }
    }
}

/// Whether a failed call may have failed for the database or the connection (retry it, with the
/// same request id); anything else is an answer.
fn is_retryable(status: &tonic::Status) -> bool {
    is_transport(status) || status.code() == Code::Unavailable
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_crashing_mid_run_loses_no_acknowledged_rental() {
    // A durable cluster of its own (fsync and synchronous commit on), stopped at once twice
    // mid-run — `pg_ctl stop -m immediate`: every PostgreSQL process quits without a checkpoint,
    // and the restart recovers from the log — while customers rent and return through two
    // replicas, retrying every unanswered call with the same request id.
    let cluster = testdb::Cluster::start(testdb::Durability::Durable).unwrap();
    let database = cluster.database().unwrap();
    let name = database.rsplit('/').next().unwrap().to_owned();
    let data = tempfile::tempdir().unwrap();
    let mut replicas: Vec<Replica> =
        (0..2).map(|_| Replica { addr: free_port(), child: None }).collect();
    for replica in &mut replicas {
        replica.start(&database, data.path());
    }
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    for addr in &addrs {
        if tokio::time::timeout(Duration::from_secs(20), wait_serving(*addr)).await.is_err() {
            panic!("replica {addr} did not start:\n{}", logs(data.path()));
        }
    }
    let staff = sign_in(addrs[0], STAFF.0, STAFF.1).await;
    let mut stock = client(addrs[0]).await;
    for movie_id in FILMS {
        let money = |minor| Some(pb::Money { currency_code: "EUR".into(), minor_units: minor });
        let inventory = pb::SetInventoryRequest {
            movie_id,
            copies_owned: 1_000,
            rental_price_per_day: money(199),
            purchase_price: money(999),
        };
        stock.set_inventory(authed(inventory, &staff)).await.unwrap();
    }
    let start_versions = versions(&cluster, &name);
    let mut tokens = Vec::new();
    for index in 0..8 {
        let email = format!("crash{index}@chaos.test");
        tokens.push(register(addrs[0], data.path(), &email, "crash password").await);
    }

    // A watcher on the second replica, which must miss nothing while its feed reconnects. It
    // stops once it has heard the last versions, which it is told when the run is over.
    let (last_versions, last) = tokio::sync::watch::channel(None::<HashMap<i64, i64>>);
    let watcher = {
        let start = start_versions.clone();
        let addr = addrs[1];
        // From the versions before the run, whenever its stream opens.
        let resume_from: Vec<pb::FilmVersion> = start_versions
            .iter()
            .map(|(&movie_id, &version)| pb::FilmVersion { movie_id, version })
            .collect();
        tokio::spawn(async move {
            let mut seen: HashMap<i64, Vec<i64>> = HashMap::new();
            let request = pb::WatchAvailabilityRequest { movie_ids: FILMS.to_vec(), resume_from };
            let mut stream =
                client(addr).await.watch_availability(request).await.unwrap().into_inner();
            loop {
                let heard_last = last.borrow().as_ref().is_some_and(|last| {
                    FILMS.iter().all(|film| {
                        let heard = seen.get(film).and_then(|v| v.last()).unwrap_or(&start[film]);
                        *heard >= last[film]
                    })
                });
                if heard_last {
                    break;
                }
                let Ok(message) =
                    tokio::time::timeout(Duration::from_millis(200), stream.message()).await
                else {
                    continue;
                };
                let message =
                    message.expect("the replica stays up").expect("the stream stays open");
                assert!(!message.snapshot, "resumed films get changes, never a snapshot");
                for availability in message.availabilities {
                    seen.entry(availability.movie_id).or_default().push(availability.version);
                }
            }
            seen
        })
    };

    let renting = Arc::new(AtomicBool::new(true));
    let acknowledged = Arc::new(Mutex::new(HashMap::<String, i64>::new()));
    let unanswered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut customers = Vec::new();
    for (index, token) in tokens.into_iter().enumerate() {
        let (renting, acknowledged, unanswered, addrs) =
            (renting.clone(), acknowledged.clone(), unanswered.clone(), addrs.clone());
        customers.push(tokio::spawn(async move {
            let mut round = 0;
            while renting.load(Ordering::SeqCst) {
                let request_id = format!("crash{index}-{round}");
                let movie_id = FILMS[round % FILMS.len()];
                round += 1;
                let mut attempt = index;
                let rental = loop {
                    let rent =
                        pb::RentRequest { movie_id, days: 1, request_id: request_id.clone() };
                    let mut stock = client(addrs[attempt % addrs.len()]).await;
                    match stock.rent(authed(rent, &token)).await {
                        Ok(rental) => break rental.into_inner(),
                        Err(status) if is_retryable(&status) => {
                            unanswered.fetch_add(1, Ordering::Relaxed);
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(status) => panic!("rent {request_id}: {status:?}"),
                    }
                };
                acknowledged.lock().unwrap().insert(request_id.clone(), rental.id);
                loop {
                    let back = pb::ReturnRequest { rental_id: rental.id };
                    let mut stock = client(addrs[attempt % addrs.len()]).await;
                    match stock.r#return(authed(back, &token)).await {
                        Ok(_) => break,
                        // An earlier try was committed; its answer was lost.
                        Err(status) if status.code() == Code::FailedPrecondition => break,
                        Err(status) if is_retryable(&status) => {
                            unanswered.fetch_add(1, Ordering::Relaxed);
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(status) => panic!("return {request_id}: {status:?}"),
                    }
                }
            }
        }));
    }
    let crashes = 2;
    for _ in 0..crashes {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let cluster_crash = tokio::task::block_in_place(|| cluster.crash());
        cluster_crash.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        tokio::task::block_in_place(|| cluster.restart()).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    renting.store(false, Ordering::SeqCst);
    let customers_done =
        tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(customers))
            .await
            .unwrap_or_else(|_| {
                panic!("customers still waiting a minute on:\n{}", logs(data.path()))
            });
    for customer in customers_done {
        customer.unwrap();
    }
    // The last changes reach the watcher within a poll (a second); five are allowed.
    let end_versions = versions(&cluster, &name);
    last_versions.send_replace(Some(end_versions.clone()));
    let seen = tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .expect("the watcher heard the last changes within 5 s")
        .unwrap();

    let acknowledged = acknowledged.lock().unwrap().clone();
    let unanswered = unanswered.load(Ordering::Relaxed);
    eprintln!(
        "database crash: {crashes} crashes, {} rentals acknowledged, {unanswered} calls retried",
        acknowledged.len()
    );
    assert!(unanswered > 0, "the crashes interrupted calls");
    // Every acknowledged rental is stored under its request id, returned; nothing else is.
    let stored: HashMap<String, i64> = cluster
        .psql(
            &name,
            "SELECT request_id || ' ' || id || ' ' || (returned_ms IS NOT NULL) FROM rentals",
        )
        .unwrap()
        .lines()
        .map(|line| {
            let mut fields = line.split(' ');
            let (request_id, id, returned) =
                (fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap());
            assert_eq!(returned, "true", "rental {id} ({request_id}) was returned");
            (request_id.to_owned(), id.parse().unwrap())
        })
        .collect();
    assert_eq!(stored, acknowledged, "the rentals stored are exactly those acknowledged");
    let broken = cluster
        .psql(
            &name,
            "SELECT count(*) FROM inventory i WHERE copies_available <> copies_owned - \
             (SELECT count(*) FROM rentals r WHERE r.movie_id = i.movie_id AND r.returned_ms IS NULL)",
        )
        .unwrap();
    assert_eq!(broken, "0");
    // The watcher on the other replica saw every version once, in order.
    for movie_id in FILMS {
        let expected: Vec<i64> =
            (start_versions[&movie_id] + 1..=end_versions[&movie_id]).collect();
        assert_eq!(seen.get(&movie_id).cloned().unwrap_or_default(), expected, "film {movie_id}");
    }
}

/// Each of `FILMS`' version, read from the database.
fn versions(cluster: &testdb::Cluster, database: &str) -> HashMap<i64, i64> {
    cluster
        .psql(
            database,
            "SELECT movie_id || ':' || version FROM inventory WHERE movie_id IN (1, 2, 3, 4)",
        )
        .unwrap()
        .lines()
        .map(|line| {
            let (movie, version) = line.split_once(':').unwrap();
            (movie.parse().unwrap(), version.parse().unwrap())
        })
        .collect()
}
