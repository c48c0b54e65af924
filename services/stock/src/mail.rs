//! Mail: the messages registration sends, and their delivery from the outbox.
//!
//! A mail is queued in the `outbox` table by the transaction that decides to send it (see
//! `StockStore::register`), so a registration and its mail commit together. The postman claims
//! queued mails, delivers them and removes them; a claim runs out after [`CLAIM_FOR`], so the
//! mails of a replica that died are delivered by another, perhaps twice, never lost.
//!
//! Delivery is to an SMTP relay (`VIDEOSTORE_SMTP_URL`, what a shop uses) or to a folder
//! (`VIDEOSTORE_MAIL_DIR`: one `.eml` file per mail, what a development machine and the tests
//! read). With neither, mail waits in the outbox.

use std::{
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use lettre::{
    AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor,
    message::header::ContentType,
    transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters},
};
use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::{Mail, OutboxMail, StockStore};

/// How long a sender holds the mails it claimed before another may deliver them (a batch
/// through a slow relay takes a connection per mail).
const CLAIM_FOR: Duration = Duration::from_secs(300);
/// Mails claimed at a time.
const BATCH: usize = 50;
/// How often the outbox is looked at without a wake-up (mail queued by another replica).
const POLL_EVERY: Duration = Duration::from_secs(2);
/// How long a confirmation code works.
pub(crate) const CONFIRM_WITHIN: Duration = Duration::from_secs(24 * 3600);
/// Characters of a confirmation code: 32 random bytes, URL-safe base64 without padding.
const CODE_CHARS: usize = 43;

/// What registration needs to write its mails, and the postman's doorbell.
#[derive(Debug, Clone)]
pub(crate) struct Mailer {
    /// Where the shop's web app is, for the links in mails.
    public_url: String,
    /// Rung after a mail is queued.
    wake: Arc<Notify>,
}

/// A confirmation code: the text mailed, and the hash the store keeps.
pub(crate) struct Code {
    /// What the user gets.
    pub(crate) text: String,
    /// SHA-256 of the text.
    pub(crate) hash: [u8; 32],
}

impl Code {
    /// A new random code.
    pub(crate) fn new() -> Self {
        let text = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let hash = Self::hash_of(&text);
        Self { text, hash }
    }

    /// The hash of a code a user sent back, or `None` when it cannot be a code.
    pub(crate) fn hash_of_sent(text: &str) -> Option<[u8; 32]> {
        let text = text.trim();
        let shaped = text.len() == CODE_CHARS
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        shaped.then(|| Self::hash_of(text))
    }

    fn hash_of(text: &str) -> [u8; 32] {
        Sha256::digest(text.as_bytes()).into()
    }
}

impl Mailer {
    /// Links in mails point at `public_url` (e.g. `https://shop.example`).
    pub(crate) fn new(public_url: &str) -> Self {
        Self { public_url: public_url.trim_end_matches('/').to_owned(), wake: Arc::default() }
    }

    /// The mail that finishes a registration. Nothing the registering caller typed is in it
    /// but the address it goes to: a stranger's registration cannot put words in a mail.
    pub(crate) fn confirmation(&self, to: &str, code: &Code, until: SystemTime) -> Mail {
        let until = videostore_display::time::date_time(Some(&until.into()));
        Mail {
            to: to.to_owned(),
            subject: "Confirm your Video Store account".to_owned(),
            body: format!(
                "Hello,\n\n\
                 to finish registering, open this link and give the password you chose:\n\n\
                 {url}/confirm#{code}\n\n\
                 or give the command line this code:\n\n\
                 videostore confirm {code} --password <the password you chose>\n\n\
                 {CODE_LINE}{code}\n\n\
                 It works until {until}. If you did not register, ignore this mail: no account \
                 is made without it and the password chosen at registration.\n",
                url = self.public_url,
                code = code.text,
            ),
        }
    }

    /// The mail to the owner of an address someone tried to register again.
    pub(crate) fn already_registered(&self, to: &str) -> Mail {
        Mail {
            to: to.to_owned(),
            subject: "Someone tried to register your address at Video Store".to_owned(),
            body: format!(
                "Hello,\n\n\
                 someone (perhaps you) tried to register a Video Store account with this \
                 address. It has an account already, so nothing was changed.\n\n\
                 If it was you, sign in at {url}/account.\n\n\
                 If it was not, you need not do anything.\n",
                url = self.public_url,
            ),
        }
    }

    /// Tells the postman a mail was queued.
    pub(crate) fn queued(&self) {
        self.wake.notify_one();
    }

    /// Delivers queued mails by `delivery` until `shutdown`: at once when this process queues
    /// one, and every [`POLL_EVERY`] for the others'.
    pub(crate) fn deliver(
        &self,
        delivery: Delivery,
        store: Arc<dyn StockStore>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let wake = Arc::clone(&self.wake);
        tokio::spawn(async move {
            loop {
                let full = match delivery.batch(store.as_ref()).await {
                    Ok(claimed) => claimed == BATCH,
                    Err(error) => {
                        // The mails stay queued and are tried again once their claim runs out.
                        tracing::warn!(error = %error, "delivering mail failed");
                        false
                    }
                };
                if full {
                    continue;
                }
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(POLL_EVERY) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        })
    }
}

/// Where the postman delivers, and as whom.
pub(crate) enum Delivery {
    /// One `.eml` file each into a folder: a development machine's inbox.
    Folder(PathBuf, Sender),
    /// To an SMTP relay.
    Smtp(AsyncSmtpTransport<Tokio1Executor>, Sender),
}

/// The `From` of the shop's mail.
type Sender = lettre::message::Mailbox;

/// The sender of a laptop's mail, which goes nowhere but a folder.
const FOLDER_FROM: &str = "Video Store <no-reply@videostore.invalid>";

/// How mail leaves, as configured.
pub(crate) struct MailSettings<'a> {
    /// A folder to write it into.
    pub(crate) folder: Option<&'a Path>,
    /// An SMTP relay's URL.
    pub(crate) smtp_url: Option<&'a str>,
    /// CA certificates (PEM, or a file of them) the relay's certificate is checked against.
    pub(crate) smtp_ca: Option<&'a str>,
    /// The sender, e.g. `Video Store <no-reply@shop.example>`.
    pub(crate) from: Option<&'a str>,
}

impl Delivery {
    /// The delivery configured: a folder, an SMTP relay (`smtp://host[:port]` plain and without
    /// credentials, `smtp://[user:password@]host[:port]?tls=required` for STARTTLS, or
    /// `smtps://…` for TLS; the relay's certificate checked against `smtp_ca`, else the
    /// system's roots), or neither (mail waits in the outbox). Anything that could only fail
    /// later, or send a password in the clear, is refused here.
    pub(crate) fn configured(settings: &MailSettings<'_>) -> anyhow::Result<Option<Self>> {
        let from = |default: Option<&str>| -> anyhow::Result<Sender> {
            let from = settings.from.or(default).context(
                "a relay needs the shop's sender address: set VIDEOSTORE_MAIL_FROM (a relay \
                 refuses mail from an address it cannot check)",
            )?;
            from.parse().with_context(|| format!("VIDEOSTORE_MAIL_FROM {from:?} is not an address"))
        };
        let url = match (settings.folder, settings.smtp_url) {
            (Some(_), Some(_)) => anyhow::bail!(
                "set a mail folder (VIDEOSTORE_MAIL_DIR) or an SMTP relay (VIDEOSTORE_SMTP_URL), \
                 not both"
            ),
            (Some(folder), None) => {
                videostore_kit::private::dir(folder)?;
                return Ok(Some(Self::Folder(folder.to_owned(), from(Some(FOLDER_FROM))?)));
            }
            (None, None) => return Ok(None),
            (None, Some(url)) => url,
        };
        let parsed = url::Url::parse(url).context("VIDEOSTORE_SMTP_URL is not a URL")?;
        let host = parsed.host_str().unwrap_or_default().to_owned();
        let tls =
            parsed.query_pairs().find(|(key, _)| key == "tls").map(|(_, value)| value.into_owned());
        let secure = match (parsed.scheme(), tls.as_deref()) {
            ("smtps", None) => true,
            ("smtp", Some("required")) => true,
            ("smtp", None) => false,
            _ => anyhow::bail!(
                "VIDEOSTORE_SMTP_URL: smtp://host[:port] (plain), \
                 smtp://[user:password@]host[:port]?tls=required (STARTTLS) or smtps://… (TLS); \
                 opportunistic TLS would fall back to plain text unnoticed"
            ),
        };
        let credentials = !parsed.username().is_empty() || parsed.password().is_some();
        anyhow::ensure!(
            secure || !credentials,
            "VIDEOSTORE_SMTP_URL has a password but no TLS: it would cross the network in the \
             clear (use ?tls=required or smtps://)"
        );
        anyhow::ensure!(
            secure || settings.smtp_ca.is_none(),
            "VIDEOSTORE_SMTP_CA is set but VIDEOSTORE_SMTP_URL has no TLS"
        );
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .context("VIDEOSTORE_SMTP_URL")?
            .timeout(Some(SMTP_TIMEOUT));
        match (secure, settings.smtp_ca) {
            (true, Some(ca)) => {
                let pem = if ca.trim_start().starts_with("-----BEGIN") {
                    ca.as_bytes().to_vec()
                } else {
                    std::fs::read(ca).with_context(|| format!("reading VIDEOSTORE_SMTP_CA {ca}"))?
                };
                let parameters = TlsParameters::builder(host)
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(
                        Certificate::from_pem(&pem).context("VIDEOSTORE_SMTP_CA")?,
                    )
                    .build_rustls()
                    .context("VIDEOSTORE_SMTP_CA")?;
                builder = builder.tls(if parsed.scheme() == "smtps" {
                    Tls::Wrapper(parameters)
                } else {
                    Tls::Required(parameters)
                });
            }
            (true, None) => anyhow::ensure!(
                !rustls_native_certs::load_native_certs().certs.is_empty(),
                "this system has no root certificates to check the mail relay with (the images \
                 have none): give its CA in VIDEOSTORE_SMTP_CA"
            ),
            (false, _) => {}
        }
        Ok(Some(Self::Smtp(builder.build(), from(None)?)))
    }

    /// Claims up to [`BATCH`] mails, delivers them and removes the delivered ones from the
    /// outbox. How many were claimed.
    async fn batch(&self, store: &dyn StockStore) -> anyhow::Result<usize> {
        let now = SystemTime::now();
        let mails = store.claim_mail(now, now + CLAIM_FOR, BATCH).await?;
        if mails.is_empty() {
            return Ok(0);
        }
        let claimed = mails.len();
        let delivered = match self {
            Self::Folder(folder, from) => {
                let (folder, from) = (folder.clone(), from.clone());
                tokio::task::spawn_blocking(move || write_mails(&folder, &from, &mails)).await??
            }
            Self::Smtp(relay, from) => send(relay, from, &mails).await,
        };
        store.mail_sent(&delivered).await?;
        Ok(claimed)
    }
}

/// How long one exchange with the SMTP relay may take: connecting and signing in, or one mail.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `mails` through `relay`, in order; the ids of those it is done with.
///
/// The relay is tried first (connection, TLS, sign-in): when that fails, it is the relay's
/// fault or the configuration's, not a mail's, and every mail waits. A mail the relay then
/// refuses (an unknown mailbox, an address it cannot take) stays queued and is tried again
/// until its code expires, while the mails after it go on; at a failure of the relay itself
/// (down, busy, silent) the batch stops. Nothing is dropped on the relay's word.
async fn send(
    relay: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Sender,
    mails: &[OutboxMail],
) -> Vec<i64> {
    let mut done = Vec::with_capacity(mails.len());
    match tokio::time::timeout(SMTP_TIMEOUT, relay.test_connection()).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            tracing::warn!("the mail relay did not answer; mail waits");
            return done;
        }
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "the mail relay cannot be used; mail waits");
            return done;
        }
        Err(_) => {
            tracing::warn!("the mail relay did not answer within {SMTP_TIMEOUT:?}; mail waits");
            return done;
        }
    }
    for mail in mails {
        let message = match message(mail, from) {
            Ok(message) => message,
            Err(error) => {
                // It cannot become a message now or ever: nothing to wait for.
                tracing::warn!(mail = mail.id, error = %error, "a queued mail cannot be sent; dropped");
                done.push(mail.id);
                continue;
            }
        };
        match tokio::time::timeout(SMTP_TIMEOUT, relay.send(message)).await {
            Ok(Ok(_)) => done.push(mail.id),
            Ok(Err(error)) if error.is_permanent() || error.is_client() => {
                tracing::warn!(mail = mail.id, error = %error, "the mail relay refused a mail; it waits");
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "the mail relay cannot take mail now; mail waits");
                break;
            }
            Err(_) => {
                tracing::warn!("the mail relay did not answer within {SMTP_TIMEOUT:?}; mail waits");
                break;
            }
        }
    }
    done
}

/// The message of a queued mail: plain text, 7bit where every line is short enough, else
/// quoted-printable (lettre chooses).
fn message(mail: &OutboxMail, from: &Sender) -> anyhow::Result<Message> {
    let queued = mail.queued_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let to: lettre::Address = mail.mail.to.parse().context("the recipient's address")?;
    Ok(Message::builder()
        .from(from.clone())
        .to(lettre::message::Mailbox::new(None, to))
        .subject(&mail.mail.subject)
        .date(mail.queued_at)
        .message_id(Some(format!("<{queued}.{}@videostore>", mail.id)))
        .header(ContentType::TEXT_PLAIN)
        .body(mail.mail.body.clone())?)
}

/// Writes `mails` into `folder` and syncs it; the ids written (a mail that cannot be made a
/// message is dropped, and logged).
fn write_mails(folder: &Path, from: &Sender, mails: &[OutboxMail]) -> std::io::Result<Vec<i64>> {
    let mut done = Vec::with_capacity(mails.len());
    for mail in mails {
        match message(mail, from) {
            Ok(message) => write_mail(folder, mail, &message.formatted())?,
            Err(error) => {
                tracing::warn!(mail = mail.id, error = %error, "a queued mail cannot be written; dropped");
            }
        }
        done.push(mail.id);
    }
    // The new names on disk before the outbox forgets the mails.
    std::fs::File::open(folder)?.sync_all()?;
    Ok(done)
}

/// Writes one mail as `<queued ms>-<id>.eml` (names sort in the order mail was queued),
/// readable by its owner only. It is written under a temporary name and then renamed, so a
/// reader of the folder never sees half a mail.
fn write_mail(folder: &Path, mail: &OutboxMail, message: &[u8]) -> std::io::Result<()> {
    let queued = mail.queued_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let name = format!("{queued:013}-{:012}.eml", mail.id);
    let partial = folder.join(format!(".{name}.partial"));
    let _ = std::fs::remove_file(&partial);
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&partial)?;
    file.write_all(message)?;
    file.sync_all()?;
    std::fs::rename(&partial, folder.join(name))
}

/// Reads the folder the postman delivers to (`VIDEOSTORE_MAIL_DIR`): for the tools and tests
/// of a development machine, which get their confirmation codes there.
#[derive(Debug, Clone)]
pub struct Mailbox {
    folder: PathBuf,
}

/// A delivered mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The address.
    pub to: String,
    /// Its subject.
    pub subject: String,
    /// Its text.
    pub body: String,
}

impl Delivered {
    /// A message as the postman writes or sends it (RFC 5322, its body 7bit or
    /// quoted-printable).
    pub fn parse(text: &str) -> std::io::Result<Self> {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let header = |field: &str| {
            head.split("\r\n").find_map(|line| line.strip_prefix(field)).unwrap_or("").to_owned()
        };
        let to = header("To: ");
        let to = to.trim_start_matches('<').trim_end_matches('>').to_owned();
        let body = if header("Content-Transfer-Encoding: ") == "quoted-printable" {
            let decoded = quoted_printable::decode(body, quoted_printable::ParseMode::Robust)
                .map_err(std::io::Error::other)?;
            String::from_utf8_lossy(&decoded).into_owned()
        } else {
            body.to_owned()
        };
        Ok(Self { to, subject: header("Subject: "), body: body.replace("\r\n", "\n") })
    }

    /// The confirmation code in it, if it is a confirmation mail.
    pub fn confirmation_code(&self) -> Option<&str> {
        self.body.lines().find_map(|line| line.strip_prefix(CODE_LINE)).map(str::trim)
    }
}

/// The line of a confirmation mail that holds its code.
const CODE_LINE: &str = "Confirmation code: ";

impl Mailbox {
    /// The mail delivered to `folder`.
    pub fn new(folder: impl Into<PathBuf>) -> Self {
        Self { folder: folder.into() }
    }

    /// Every mail delivered so far, oldest first (none while the folder does not exist).
    pub fn read(&self) -> std::io::Result<Vec<Delivered>> {
        let entries = match std::fs::read_dir(&self.folder) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut names = Vec::new();
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".eml") && !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        let mut mails = Vec::with_capacity(names.len());
        for name in names {
            let text = std::fs::read_to_string(self.folder.join(&name))?;
            mails.push(Delivered::parse(&text)?);
        }
        Ok(mails)
    }

    /// Mail delivered to `to` (compared case-insensitively), oldest first.
    pub fn to(&self, to: &str) -> std::io::Result<Vec<Delivered>> {
        let mut mails = self.read()?;
        mails.retain(|mail| mail.to.eq_ignore_ascii_case(to.trim()));
        Ok(mails)
    }

    /// The mail to `to` after the first `seen` of them, waiting up to `wait` for it to be
    /// delivered; `None` when none came in time.
    pub async fn next_to(
        &self,
        to: &str,
        seen: usize,
        wait: Duration,
    ) -> std::io::Result<Option<Delivered>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(mail) = self.to(to)?.into_iter().nth(seen) {
                return Ok(Some(mail));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The newest confirmation code mailed to `to`, waiting up to `wait` for a first one. (It
    /// does not wait for a newer one: to see the answer to a second registration of an address,
    /// count its mails before with [`Mailbox::to`], then wait with [`Mailbox::next_to`].)
    pub async fn confirmation_code(&self, to: &str, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mails = self.to(to).ok()?;
            if let Some(code) = mails.iter().rev().find_map(Delivered::confirmation_code) {
                return Some(code.to_owned());
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.next_to(to, mails.len(), left).await.ok()??;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_43_url_safe_characters_and_only_its_own_text_hashes_to_it() {
        let code = Code::new();
        assert_eq!(code.text.len(), CODE_CHARS);
        assert_eq!(Code::hash_of_sent(&code.text), Some(code.hash));
        assert_eq!(Code::hash_of_sent(&format!(" {} ", code.text)), Some(code.hash));
        assert_ne!(Code::new().hash, code.hash, "two codes differ");
        assert_eq!(Code::hash_of_sent("short"), None);
        assert_eq!(Code::hash_of_sent(&"=".repeat(CODE_CHARS)), None);
    }

    #[test]
    fn the_confirmation_mail_carries_the_link_and_the_code() {
        let mailer = Mailer::new("https://shop.example/");
        let code = Code::new();
        let mail = mailer.confirmation("ann@example.com", &code, SystemTime::now());
        assert_eq!(mail.to, "ann@example.com");
        assert!(mail.body.contains(&format!("https://shop.example/confirm#{}", code.text)));
        assert!(mail.body.contains(&format!("Confirmation code: {}\n", code.text)));
    }

    fn mailbox_files(folder: &Path) -> Vec<std::ffi::OsString> {
        let mut names: Vec<_> =
            std::fs::read_dir(folder).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        names.sort();
        names
    }

    #[test]
    fn relay_settings_that_could_only_fail_later_or_leak_a_password_are_refused() {
        let relay = |url: &'static str, ca: Option<&'static str>, from: Option<&'static str>| {
            let settings = MailSettings { folder: None, smtp_url: Some(url), smtp_ca: ca, from };
            Delivery::configured(&settings).err().map(|error| format!("{error:#}"))
        };
        let from = Some("shop@example.com");
        let refused = relay("smtp://user:secret@relay.example:25", None, from).unwrap();
        assert!(refused.contains("in the clear") && !refused.contains("secret"), "{refused}");
        let refused = relay("smtp://relay.example?tls=opportunistic", None, from).unwrap();
        assert!(refused.contains("opportunistic"), "{refused}");
        let refused = relay("smtp://relay.example", Some("/nowhere/ca.pem"), from).unwrap();
        assert!(refused.contains("no TLS"), "{refused}");
        let refused = relay("smtp://relay.example", None, None).unwrap();
        assert!(refused.contains("VIDEOSTORE_MAIL_FROM"), "{refused}");
        let refused = relay("smtp://relay.example", None, Some("not an address")).unwrap();
        assert!(refused.contains("not an address"), "{refused}");
        assert_eq!(relay("smtp://relay.example:2525", None, from), None, "plain, no password");
        let both = MailSettings {
            folder: Some(Path::new("/tmp")),
            smtp_url: Some("smtp://relay.example"),
            smtp_ca: None,
            from,
        };
        assert!(Delivery::configured(&both).is_err());
    }

    #[test]
    fn the_mailbox_reads_what_the_postman_writes() {
        let folder = tempfile::tempdir().unwrap();
        // Long enough that the link's line is too long for 7bit: the file is quoted-printable.
        let mailer = Mailer::new("https://a-video-store-with-a-long-name.example.com");
        let code = Code::new();
        let mails = [
            mailer.confirmation("Ann@Example.com", &code, SystemTime::now()),
            mailer.already_registered("bob@example.com"),
        ];
        let queued_at = SystemTime::now();
        let outbox: Vec<OutboxMail> = (0..)
            .zip(&mails)
            .map(|(id, mail)| OutboxMail { id, queued_at, mail: mail.clone() })
            .collect();
        let from = FOLDER_FROM.parse().unwrap();
        assert_eq!(write_mails(folder.path(), &from, &outbox).unwrap(), [0, 1]);
        for name in mailbox_files(folder.path()) {
            let mode = std::fs::metadata(folder.path().join(name)).unwrap().permissions();
            assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        }
        let mailbox = Mailbox::new(folder.path());
        let read = mailbox.read().unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(
            (read[0].to.as_str(), read[0].subject.as_str()),
            ("Ann@Example.com", mails[0].subject.as_str())
        );
        let file =
            std::fs::read_to_string(folder.path().join(mailbox_files(folder.path())[0].clone()));
        assert!(file.unwrap().contains("Content-Transfer-Encoding: quoted-printable"));
        assert_eq!(read[0].body, mails[0].body, "decoded whole");
        assert_eq!(read[0].confirmation_code(), Some(code.text.as_str()));
        assert_eq!(read[1].confirmation_code(), None);
        assert_eq!(mailbox.to("ann@example.com").unwrap().len(), 1);
    }
}
