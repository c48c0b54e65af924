//! ChromeDriver, Chromium sessions, waiting, and screenshots.

use std::{
    future::Future,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};

/// Serialises the browser tests of this binary.
pub(crate) async fn lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A ChromeDriver process on a free local port.
pub(crate) struct Browser {
    driver: Child,
    url: String,
    profiles: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver and waits until it accepts connections.
    pub(crate) async fn start() -> Self {
        assert!(
            std::path::Path::new(&testkit::web_dir()).join("index.html").exists(),
            "the web app is not built: run `cargo xtask test` (it builds it with trunk)"
        );
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        // A process group of its own, so that stopping it stops every Chromium it started:
        // killing ChromeDriver alone leaves them running.
        let driver = Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (cargo xtask test installs Debian's chromium-driver)");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { driver, url, profiles: tempfile::tempdir().unwrap() }
    }

    /// A new headless Chromium with its own empty profile.
    pub(crate) async fn session(&self) -> Client {
        let profile = tempfile::tempdir_in(self.profiles.path()).unwrap().keep();
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    // The front door's certificate is from a CA the test made a moment ago.
                    "--ignore-certificate-errors",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let capabilities = capabilities.as_object().unwrap().clone();

        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }

    /// Stops ChromeDriver and every Chromium it started.
    pub(crate) fn stop(self) {
        drop(self);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: ChromeDriver and its browsers.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

/// Polls `check` every 10 ms until it holds; fails the test after 15 s.
pub(crate) async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The text of the first element matching `css`, or empty.
pub(crate) async fn text_of(page: &Client, css: &str) -> String {
    match page.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The header's live-connection state (`idle`, `connecting`, `live`, `reconnecting`).
pub(crate) async fn live_state(page: &Client) -> String {
    match page.find(Locator::Css("[data-live]")).await {
        Ok(element) => element.attr("data-live").await.ok().flatten().unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The copies available that the film page's badge shows (`data-available`), if it shows any.
pub(crate) async fn badge_available(page: &Client) -> Option<String> {
    page.find(Locator::Css("aside .badge")).await.ok()?.attr("data-available").await.ok()?
}

/// The titles of the film cards on the page.
pub(crate) async fn card_titles(page: &Client) -> Vec<String> {
    let mut titles = Vec::new();
    if let Ok(cards) = page.find_all(Locator::Css("li.card h2")).await {
        for card in cards {
            titles.push(card.text().await.unwrap_or_default());
        }
    }
    titles
}

/// Registers through the account page, then opens the link from the confirmation mail, which
/// signs the new account in.
pub(crate) async fn register(
    page: &Client,
    base: &str,
    mailbox: &stock::mail::Mailbox,
    (name, email, password): (&str, &str, &str),
) {
    page.goto(&format!("{base}/account")).await.unwrap();
    page.wait()
        .for_element(Locator::Css("input[name=name]"))
        .await
        .unwrap()
        .send_keys(name)
        .await
        .unwrap();
    page.find(Locator::Css("input[name=new-email]")).await.unwrap().send_keys(email).await.unwrap();
    page.find(Locator::Css("input[name=new-password]"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    page.find(Locator::Css("button[name=register]")).await.unwrap().click().await.unwrap();
    let told = page.wait().for_element(Locator::Css("[data-outcome=ok]")).await.unwrap();
    let told = told.text().await.unwrap();
    assert!(told.contains(&format!("mailed to {email}")), "{told}");
    let code = mailbox
        .confirmation_code(email, std::time::Duration::from_secs(10))
        .await
        .expect("a confirmation mail");
    let mail = mailbox.to(email).unwrap().pop().unwrap();
    let link = format!("/confirm#{code}");
    assert!(mail.body.contains(&link), "{}", mail.body);
    page.goto(&format!("{base}{link}")).await.unwrap();
    page.wait()
        .for_element(Locator::Css("form[aria-label=Confirm] input[name=password]"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    page.find(Locator::Css("button[name=confirm]")).await.unwrap().click().await.unwrap();
    let welcome = page.wait().for_element(Locator::Css("[data-outcome=ok]")).await.unwrap();
    let welcome = welcome.text().await.unwrap();
    assert!(welcome.starts_with(&format!("Welcome, {name}!")), "{welcome}");
    let address = page.current_url().await.unwrap();
    assert_eq!(address.fragment(), None, "the code leaves the address bar");
}

/// Saves a PNG of the page under `target/screenshots/`.
pub(crate) async fn screenshot(page: &Client, name: &str) {
    let png = page.screenshot().await.unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Signs in through the account page.
pub(crate) async fn sign_in(page: &Client, base: &str, email: &str, password: &str) {
    page.goto(&format!("{base}/account")).await.unwrap();
    page.wait()
        .for_element(Locator::Css("input[name=email]"))
        .await
        .unwrap()
        .send_keys(email)
        .await
        .unwrap();
    page.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    page.find(Locator::Css("button[name=sign-in]")).await.unwrap().click().await.unwrap();
    page.wait().for_element(Locator::Css("button[name=sign-out]")).await.unwrap();
}

/// Signs out through the account page, and waits until the app has forgotten the session (it
/// does once stock answered SignOut: a page loaded before that would still be signed in).
pub(crate) async fn sign_out(page: &Client, base: &str) {
    page.goto(&format!("{base}/account")).await.unwrap();
    page.wait()
        .for_element(Locator::Css("button[name=sign-out]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the sign-out notice", || async {
        text_of(page, "main p.status.info").await.contains("Signed out everywhere")
    })
    .await;
}
