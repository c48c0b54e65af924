//! The browser app through the front door (nginx with the Ingress's routes, HTTPS, HTTP/2) with
//! two replicas of catalogue and stock on PostgreSQL: the production shape, on 127.0.0.1.

use std::time::Instant;

use base64::Engine;
use fantoccini::{Client, Locator};
use prost::Message;
use testkit::{Backend, authed, front::FrontedStore};
use videostore_proto::stock;

use crate::harness::{self, Browser, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_front_door_a_rent_in_one_browser_changes_the_badge_in_another() {
    let _one_at_a_time = harness::lock().await;
    let front = FrontedStore::start(Backend::Postgres, 2).await;
    let base = front.url();
    crate::rent_in_one_window_watch_in_another(&front.store, &base, "front door, 2 replicas").await;
    front.stop().await;
}

/// The state of the streams [`OPEN_STREAMS`] opened in the page.
#[derive(Debug, serde::Deserialize)]
struct Streams {
    /// Per stream: data chunks received, and whether it has ended.
    chunks: Vec<u32>,
    ended: Vec<bool>,
}

/// Opens ten WatchAvailability streams with `fetch` in the page, through the page's own origin,
/// and answers once each has its first chunk (the snapshot); then keeps counting.
const OPEN_STREAMS: &str = r#"
const body = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
const answer = arguments[arguments.length - 1];
const live = { chunks: Array(10).fill(0), ended: Array(10).fill(false) };
window.__streams = live;
let opened = 0;
for (let i = 0; i < 10; i++) {
  fetch('/videostore.stock.v1.StockService/WatchAvailability', {
    method: 'POST',
    headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1' },
    body,
  }).then(async response => {
    const reader = response.body.getReader();
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      live.chunks[i] += 1;
      if (live.chunks[i] === 1 && ++opened === 10) answer(true);
    }
  }).catch(() => {}).finally(() => { live.ended[i] = true; });
}
"#;

async fn streams(page: &Client) -> Streams {
    let value = page.execute("return window.__streams;", vec![]).await.unwrap();
    serde_json::from_value(value).unwrap()
}

/// Ten live streams in one page do not starve its other calls (over HTTP/1.1 a browser opens
/// six connections per origin, and the seventh call would wait); a replica killed ends only its
/// own streams, and the app's own live stream comes back by itself, whichever replica it was on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_live_streams_share_one_page_and_a_killed_replica_is_survived() {
    let _one_at_a_time = harness::lock().await;
    let mut front = FrontedStore::start(Backend::Postgres, 2).await;
    let base = front.url();
    let browser = Browser::start().await;
    let page = browser.session().await;
    page.goto(&base).await.unwrap();
    page.wait().for_element(Locator::Css("li.card")).await.unwrap();
    wait_for("the page's live stream", || async { harness::live_state(&page).await == "live" })
        .await;

    // Ten more streams, each open with its snapshot.
    let watch = stock::WatchAvailabilityRequest { movie_ids: vec![21], resume_from: Vec::new() };
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(watch.encoded_len() as u32).to_be_bytes());
    framed.extend_from_slice(&watch.encode_to_vec());
    let body = base64::engine::general_purpose::STANDARD.encode(&framed);
    let opened = page
        .execute_async(OPEN_STREAMS, vec![body.into()])
        .await
        .expect("ten streams open at once (over HTTP/1.1 a browser stops at six per origin)");
    assert_eq!(opened, serde_json::Value::Bool(true));

    // The page's own calls still go through: search as you type.
    page.find(Locator::Css("input[name=q]")).await.unwrap().send_keys("amelie").await.unwrap();
    wait_for("the search beside ten open streams", || async {
        let titles = harness::card_titles(&page).await;
        !titles.is_empty() && titles.iter().all(|t| t.contains("Amélie"))
    })
    .await;
    let open = streams(&page).await;
    assert!(open.ended.iter().all(|ended| !ended), "{open:?}");
    // All of it over HTTP/2: the page and every finished call.
    let protocols = page
        .execute(
            "return performance.getEntriesByType('navigation').concat(
                performance.getEntriesByType('resource')
                    .filter(e => e.name.includes('/videostore.')))
                .map(e => e.nextHopProtocol);",
            vec![],
        )
        .await
        .unwrap();
    let protocols: Vec<String> = serde_json::from_value(protocols).unwrap();
    assert!(protocols.len() > 2, "{protocols:?}");
    assert!(protocols.iter().all(|p| p == "h2"), "{protocols:?}");

    // Kill one stock replica: its streams end, the others carry the next change.
    front.kill_stock(0);
    let (_, token) = front.store.customer("Killer").await;
    let mut stock_client = front.store.stock_client().await;
    stock_client
        .rent(authed(
            stock::RentRequest { movie_id: 21, days: 1, request_id: "after-kill".into() },
            &token,
        ))
        .await
        .unwrap();
    wait_for("each stream to end or carry the change", || async {
        let now = streams(&page).await;
        now.ended.iter().zip(&now.chunks).all(|(ended, chunks)| *ended || *chunks >= 2)
    })
    .await;
    let after = streams(&page).await;
    let ended = after.ended.iter().filter(|ended| **ended).count();
    eprintln!("killing one of two replicas ended {ended} of 10 streams");
    assert!((1..10).contains(&ended), "round robin put streams on both replicas: {after:?}");

    // The app's own stream, on a film page. With replica 0 down it is on replica 1; start 0
    // again and kill 1: the stream surely dies, and must come back by itself (no reload).
    page.goto(&format!("{base}/movies/21")).await.unwrap();
    page.wait().for_element(Locator::Css("aside .badge")).await.unwrap();
    wait_for("the film page's live stream", || async {
        harness::live_state(&page).await == "live"
    })
    .await;
    page.execute("window.__same_page = true;", vec![]).await.unwrap();
    front.restart_stock(0).await;
    front.kill_stock(1);
    let killed = Instant::now();
    for round in 0..2 {
        let before: i64 = harness::badge_available(&page).await.unwrap().parse().unwrap();
        let rental = stock_client
            .rent(authed(
                stock::RentRequest {
                    movie_id: 21,
                    days: 1,
                    request_id: format!("recover-{round}"),
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        wait_for("the page to show a rent made after the kill", || async {
            harness::badge_available(&page).await == Some((before - 1).to_string())
        })
        .await;
        if round == 0 {
            eprintln!("replica killed → page live and current again: {:?}", killed.elapsed());
        }
        stock_client
            .r#return(authed(stock::ReturnRequest { rental_id: rental.id }, &token))
            .await
            .unwrap();
        wait_for("the return", || async {
            harness::badge_available(&page).await == Some(before.to_string())
        })
        .await;
    }
    assert_eq!(harness::live_state(&page).await, "live");
    let same = page.execute("return window.__same_page === true;", vec![]).await.unwrap();
    assert_eq!(same, serde_json::Value::Bool(true), "the page recovered without a reload");

    page.close().await.unwrap();
    browser.stop();
    front.stop().await;
}
