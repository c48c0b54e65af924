//! The `videostore` binary against the real services.

use std::{process::Stdio, time::Duration};

use testkit::{STAFF_EMAIL, STAFF_PASSWORD, TestStore};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt},
    process::Command,
};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A `videostore` command pointed at `store`, with its own home for the token file.
fn cli(store: &TestStore, home: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_videostore"));
    command
        .env_clear()
        .env("HOME", home)
        .env("VIDEOSTORE_CATALOGUE_ADDR", store.catalogue.url())
        .env(
            "VIDEOSTORE_STOCK_ADDR",
            store.stock.as_ref().map(|s| s.url()).unwrap_or_else(|| "http://127.0.0.1:1".into()),
        )
        .env("VIDEOSTORE_AGGREGATOR_ADDR", store.aggregator.url())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn run(mut command: Command) -> Run {
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the command finishes")
        .expect("the command runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn videostore(store: &TestStore, home: &std::path::Path, args: &[&str]) -> Run {
    let mut command = cli(store, home);
    command.args(args);
    run(command).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_every_bad_row_and_exits_2() {
    let store = TestStore::start().await;
    let home = tempfile::tempdir().unwrap();
    let signin = videostore(
        &store,
        home.path(),
        &["signin", "--email", STAFF_EMAIL, "--password", STAFF_PASSWORD],
    )
    .await;
    assert_eq!(signin.code, 0, "{}", signin.stderr);
    let long_title = "x".repeat(10 * 1024);
    let file = home.path().join("films.json");
    std::fs::write(
        &file,
        serde_json::json!([
            {"title": "Good", "release_year": 2001, "genres": ["Drama"], "external_key": "cli-1"},
            {"title": "", "release_year": 2001, "external_key": "cli-2"},
            {"title": "Год", "release_year": 0, "external_key": "cli-3"},
            {"title": "Later", "release_year": 3000, "external_key": "cli-4"},
            {"title": "Dup", "release_year": 2002, "external_key": "cli-1"},
            {"title": long_title, "release_year": 2002, "external_key": "cli-5"},
            {"title": "Not a year", "release_year": "soon"},
            {"title": "東京物語", "release_year": 1953, "rating": "G", "external_key": "cli-6"}
        ])
        .to_string(),
    )
    .unwrap();
    let import =
        videostore(&store, home.path(), &["movies", "import", file.to_str().unwrap()]).await;
    assert_eq!(import.code, 2, "{}\n{}", import.stdout, import.stderr);
    assert!(import.stdout.contains("2 created, 0 updated, 6 rejected"), "{}", import.stdout);
    for expected in [
        "row 2 [cli-2]: title is required",
        "row 3 [cli-3]: release_year is required",
        "row 4 [cli-4]: release_year 3000 is out of range",
        "row 5 [cli-1]: external_key \"cli-1\" appears twice",
        "row 6 [cli-5]: title is 10240 characters long",
        "row 7: release_year \"soon\" is not a number",
    ] {
        assert!(import.stdout.contains(expected), "missing {expected:?} in\n{}", import.stdout);
    }

    let csv = home.path().join("films.csv");
    std::fs::write(
        &csv,
        "title,release_year,genres,rating,external_key\nGood CSV,1999,Comedy|Drama,PG-13,csv-1\n",
    )
    .unwrap();
    let import =
        videostore(&store, home.path(), &["movies", "import", csv.to_str().unwrap()]).await;
    assert_eq!(import.code, 0, "{}", import.stdout);
    assert!(import.stdout.contains("1 created"));
    let search = videostore(&store, home.path(), &["movies", "search", "東京"]).await;
    assert!(search.stdout.contains("東京物語 (1953)"), "{}", search.stdout);
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_every_film_as_json_lines() {
    let store = TestStore::start().await;
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("films.jsonl");
    let export =
        videostore(&store, home.path(), &["movies", "export", "-o", out.to_str().unwrap()]).await;
    assert_eq!(export.code, 0, "{}", export.stderr);
    let text = std::fs::read_to_string(&out).unwrap();
    let films: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(films.len(), 600);
    assert!(films.iter().all(|f| f["title"].as_str().is_some_and(|t| !t.is_empty())));
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_signs_up_rents_returns_and_buys() {
    let store = TestStore::start().await;
    let home = tempfile::tempdir().unwrap();
    let not_signed_in = videostore(&store, home.path(), &["rent", "3"]).await;
    assert_eq!(not_signed_in.code, 1);
    assert!(not_signed_in.stderr.contains("signin"), "{}", not_signed_in.stderr);
    let signup = videostore(
        &store,
        home.path(),
        &["signup", "--email", "cli@example.com", "--name", "Cli", "--password", "cli password"],
    )
    .await;
    assert_eq!(signup.code, 0, "{}", signup.stderr);
    assert!(signup.stdout.contains("videostore confirm"), "{}", signup.stdout);
    let early = videostore(
        &store,
        home.path(),
        &["signin", "--email", "cli@example.com", "--password", "cli password"],
    )
    .await;
    assert_eq!(early.code, 1, "no account before the confirmation");
    let code = store
        .mailbox()
        .confirmation_code("cli@example.com", Duration::from_secs(10))
        .await
        .expect("a confirmation mail");
    let stranger = ["confirm", &code, "--password", "not mine"];
    let stranger = videostore(&store, home.path(), &stranger).await;
    assert_eq!(stranger.code, 1);
    assert!(stranger.stderr.contains("chosen when registering"), "{}", stranger.stderr);
    let confirm =
        videostore(&store, home.path(), &["confirm", &code, "--password", "cli password"]).await;
    assert_eq!(confirm.code, 0, "{}", confirm.stderr);
    assert!(confirm.stdout.contains("Welcome, Cli!"), "{}", confirm.stdout);
    let used =
        videostore(&store, home.path(), &["confirm", &code, "--password", "cli password"]).await;
    assert_eq!(used.code, 1);
    assert!(used.stderr.contains("used already"), "{}", used.stderr);
    let signin = videostore(
        &store,
        home.path(),
        &["signin", "--email", "cli@example.com", "--password", "cli password"],
    )
    .await;
    assert_eq!(signin.code, 0, "{}", signin.stderr);
    // The saved token is the owner's only.
    {
        use std::os::unix::fs::PermissionsExt;
        let token = home.path().join(".config/videostore/token");
        let mode = std::fs::metadata(&token).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", token.display());
    }
    let rent =
        videostore(&store, home.path(), &["rent", "3", "--days", "2", "--request-id", "cli-rent"])
            .await;
    assert_eq!(rent.code, 0, "{}", rent.stderr);
    assert!(rent.stdout.contains("2 day(s)") && rent.stdout.contains("open"), "{}", rent.stdout);
    let rental_id: String = rent.stdout.split_whitespace().nth(1).unwrap().to_owned();
    let retry =
        videostore(&store, home.path(), &["rent", "3", "--days", "2", "--request-id", "cli-rent"])
            .await;
    assert_eq!(
        retry.stdout.split_whitespace().nth(1).unwrap(),
        rental_id,
        "a retry returns the same rental"
    );
    let rentals = videostore(&store, home.path(), &["rentals"]).await;
    assert_eq!(rentals.stdout.lines().count(), 1, "{}", rentals.stdout);
    let returned = videostore(&store, home.path(), &["return", &rental_id]).await;
    assert!(returned.stdout.contains("returned"), "{}", returned.stdout);
    let again = videostore(&store, home.path(), &["return", &rental_id]).await;
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already returned"), "{}", again.stderr);
    let buy = videostore(&store, home.path(), &["buy", "3"]).await;
    assert!(buy.stdout.contains("Bought film 3 for"), "{}", buy.stdout);
    let show = videostore(&store, home.path(), &["movies", "show", "3"]).await;
    assert!(show.stdout.contains("Stock:"), "{}", show.stdout);

    // An access token about to expire is refreshed before the call, and the new one saved.
    let path = home.path().join(".config/videostore/token");
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    saved["expires_at"] = 0.into();
    std::fs::write(&path, saved.to_string()).unwrap();
    let rentals = videostore(&store, home.path(), &["rentals"]).await;
    assert_eq!(rentals.code, 0, "{}", rentals.stderr);
    let refreshed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // Saved again, with the new token's expiry (the token itself may be the same to the
    // byte within one second: Ed25519 signatures are deterministic).
    assert!(refreshed["expires_at"].as_i64().unwrap() > 0, "{refreshed}");

    // Signing out ends the session everywhere: a copy of the saved session kept elsewhere
    // cannot refresh any more.
    let copy = home.path().join("copy");
    let mut expired = refreshed.clone();
    expired["expires_at"] = 0.into();
    std::fs::write(&copy, expired.to_string()).unwrap();
    let signout = videostore(&store, home.path(), &["signout"]).await;
    assert_eq!(signout.code, 0, "{}", signout.stderr);
    assert!(signout.stdout.contains("Signed out everywhere"), "{}", signout.stdout);
    assert!(!path.exists());
    let after = videostore(&store, home.path(), &["rentals"]).await;
    assert_eq!(after.code, 1);
    assert!(after.stderr.contains("signin"), "{}", after.stderr);
    let copy = copy.to_str().unwrap();
    let elsewhere = videostore(&store, home.path(), &["--token-file", copy, "rentals"]).await;
    assert_eq!(elsewhere.code, 1);
    assert!(elsewhere.stderr.contains("session has ended"), "{}", elsewhere.stderr);
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_and_watch_work_together() {
    let store = TestStore::start().await;
    let home = tempfile::tempdir().unwrap();
    store.register("walkin@example.com", "Walk In", "walk in please").await;
    let mut watch = cli(&store, home.path());
    watch.args(["watch", "5", "--changes", "2"]).stdout(Stdio::piped());
    let mut watcher = watch.spawn().unwrap();
    let mut watched = tokio::io::BufReader::new(watcher.stdout.take().unwrap()).lines();
    // The first line is the current state: from then on the watcher is subscribed.
    let first = tokio::time::timeout(Duration::from_secs(10), watched.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.contains("now") && first.contains("film      5"), "{first}");

    let token = store.staff_token().await;
    let mut desk = cli(&store, home.path());
    desk.arg("desk")
        .env("VIDEOSTORE_TOKEN", &token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = desk.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"rent walkin@example.com 5 2\nrent nobody@example.com 5\nbogus\n")
        .await
        .unwrap();
    stdin.write_all(b"return 1\nquit\n").await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("[c1] ok: rental     1"), "{stdout}");
    assert!(stdout.contains("[c2] refused: no customer has email"), "{stdout}");
    assert!(stderr.contains("unknown command \"bogus\""), "{stderr}");
    assert!(stdout.contains("[c4] ok:") && stdout.contains("returned"), "{stdout}");
    assert!(stdout.contains("Rental desk closed."));

    let mut changes = Vec::new();
    while let Some(line) =
        tokio::time::timeout(Duration::from_secs(10), watched.next_line()).await.unwrap().unwrap()
    {
        changes.push(line);
    }
    assert_eq!(changes.len(), 2, "{changes:?}");
    // "film 5: N of M available": one copy goes out with the rental and comes back.
    let available = |line: &str| -> i32 {
        line.split(": ").nth(1).unwrap().split(" of ").next().unwrap().parse().unwrap()
    };
    assert!(changes.iter().all(|line| line.contains("change")), "{changes:?}");
    assert_eq!(available(&changes[0]), available(&first) - 1, "{first} then {changes:?}");
    assert_eq!(available(&changes[1]), available(&first), "{first} then {changes:?}");
    assert!(watcher.wait().await.unwrap().success(), "watch stops by itself after --changes 2");
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_tells_when_a_service_is_down() {
    let mut store = TestStore::start().await;
    let home = tempfile::tempdir().unwrap();
    let healthy = videostore(&store, home.path(), &["health"]).await;
    assert_eq!(healthy.code, 0, "{}", healthy.stdout);
    assert_eq!(healthy.stdout.matches("SERVING").count(), 3);
    let stock_url = store.stock().url();
    store.stop_stock().await;
    let mut command = cli(&store, home.path());
    command.env("VIDEOSTORE_STOCK_ADDR", stock_url).arg("health");
    let down = run(command).await;
    assert_eq!(down.code, 1);
    assert!(down.stdout.contains("UNREACHABLE"), "{}", down.stdout);
    store.stop().await;
}
